"""The replica side applying events to a real LocalStore: twice is harmless, older never wins,
tombstones stop late writes, batches apply like single events."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from cluster_helpers import run

from rs3gw.cluster import stamps
from rs3gw.cluster.conflicts import ConflictResolver
from rs3gw.cluster.events import CreateBucket, DeleteObject, PutObject
from rs3gw.cluster.hlc import HybridClock
from rs3gw.cluster.receiver import Receiver
from rs3gw.cluster.stats import ReplicationStats
from rs3gw.cluster.versions import ObjectVersion
from rs3gw.storage import LocalStore, ObjectMeta, Segment


async def _chunks(data: bytes, step: int = 70_000) -> Any:
    for i in range(0, len(data), step):
        yield data[i:i + step]


def _put(v: ObjectVersion, key: str, data: bytes, parts: list[int] | None = None) -> PutObject:
    md5 = hashlib.md5(data).hexdigest()
    sizes = parts or [len(data)]
    segs, off = [], 0
    for n in sizes:
        segs.append(Segment(os.urandom(16).hex(), n, hashlib.md5(data[off:off + n]).hexdigest()))
        off += n
    meta = ObjectMeta(bucket="bkt", key=key, vid=os.urandom(16).hex(), size=len(data),
                      etag=md5 if parts is None else f"{md5}-{len(sizes)}", last_modified=1.0,
                      segments=segs, parts_count=len(sizes) if parts else None, owner_id="o")
    v = stamps.with_etag(v, meta.etag)
    return PutObject(event_id=v.hlc, bucket="bkt", vector=v.vector, created=v.created, meta=meta)


def _read(store: LocalStore, key: str) -> bytes | None:
    async def go() -> bytes | None:
        meta = await store.get_object("bkt", key)
        if meta is None:
            return None
        r = await store.open_reader(meta)
        return b"".join([bytes(c) async for c in r])
    return go()  # type: ignore[return-value]


def test_events_apply_once_older_never_wins_tombstones_hold(tmp_path: Path) -> None:
    async def main() -> None:
        store = LocalStore(tmp_path / "r")
        await store.open()
        try:
            stamper = stamps.Stamper("node-r", HybridClock("node-r"), ConflictResolver(),
                                     ConflictResolver())
            rx = Receiver(store, stamper, ReplicationStats())
            a, b = HybridClock("node-a"), HybridClock("node-b")
            v0 = ObjectVersion.first("node-a", a.now())
            await rx.apply_event(CreateBucket(event_id=v0.hlc, bucket="bkt", vector=v0.vector,
                                              owner_id="o", region="us-east-1",
                                              creation_date=1.0), None)
            big = os.urandom(300_000)
            v1 = stamps.local_write(a, "node-a", [])
            e1 = _put(v1, "k", big)
            assert await rx.apply_event(e1, _chunks(big)) is True
            assert await rx.apply_event(e1, _chunks(big)) is False       # twice: harmless
            assert await _read(store, "k") == big
            v2 = stamps.local_write(b, "node-b", [e1.version])
            small = b"newer"
            e2 = _put(v2, "k", small)
            assert await rx.apply_event(e2, _chunks(small)) is True
            assert await rx.apply_event(e1, _chunks(big)) is False       # older, late: loses
            assert await _read(store, "k") == small
            v3 = stamps.local_write(a, "node-a", [e2.version], tombstone=True)
            tomb = DeleteObject(event_id=v3.hlc, bucket="bkt", vector=v3.vector,
                                created=v3.created, object_key="k")
            assert await rx.apply_event(tomb, None) is True
            assert await rx.apply_event(tomb, None) is False
            assert await rx.apply_event(e2, _chunks(small)) is False     # no resurrection
            assert await store.get_object("bkt", "k") is None
            # A multipart object arrives as one stream and is stored segment by segment.
            mp = os.urandom(5 << 20) + os.urandom(1000)
            v4 = stamps.local_write(b, "node-b", [tomb.version])
            e4 = _put(v4, "k", mp, parts=[5 << 20, 1000])
            assert await rx.apply_event(e4, _chunks(mp, 1 << 20)) is True
            meta = await store.get_object("bkt", "k")
            assert meta is not None and meta.parts_count == 2 and len(meta.segments) == 2
            assert await _read(store, "k") == mp
            stamp = await store.item_stamp("object", "bkt", "k")
            assert stamps.decode(stamp) == e4.version
        finally:
            await store.close()
    run(main())
