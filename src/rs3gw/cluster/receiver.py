"""The replica side: transport handlers that store what coordinators send, and answer their reads.

Messages (all ``rep.*``; bodies are msgpack maps, object bytes travel as the raw stream):

- ``rep.stage`` {b, k, algos} + stream: write the body to a tmp file (or keep it, if small) and
  hold it, uncommitted, under a stage id; reply {sid, stamp, etag}: the item's current stamp and
  ETag here, so the coordinator can stamp its write over everything the replicas know.
- ``rep.commit`` {sid, ev}: apply the PutObject event to the staged body (decide() first).
- ``rep.abort`` {sid}: drop a staged body. A staged body nobody commits is dropped after
  STAGE_TTL_S, and at restart by the store's tmp sweep: an aborted write leaves nothing visible.
- ``rep.apply`` {ev} [+ stream for a PutObject]: stage and commit in one step (queued delivery,
  hand-off, the local-first writes: copy, multipart completion, tags).
- ``rep.batch`` stream: an rs3gw._core.batch frame of events (small bodies as their data).
- ``rep.head`` {b, k}: {stamp, m} the item's stamp and the object's metadata (an event map).
- ``rep.get`` {b, k, s, e}: the metadata and bytes [s, e] as the reply stream.
- ``rep.list`` {b, p, d, a, n}: one page of this node's keys (the coordinator merges the pages).
- ``rep.mpu`` {op, ...} [+ stream]: multipart calls for an upload this node owns (uploads.py).
- ``rep.ae_digest`` / ``rep.ae_keys``: anti-entropy digests and entries (antientropy.py).
- ``rep.gc`` {b, k, eid}: drop the key's tombstone if it is still that one (cluster/tombstones.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rs3gw.storage import objects, versioned
from rs3gw.storage.types import NoSuchBucket, ObjectMeta, Segment, WriteResult

from . import stamps
from .events import (
    CreateBucket,
    DeleteBucket,
    DeleteBucketPolicy,
    DeleteBucketTagging,
    DeleteObject,
    EventDecodeError,
    PutBucketPolicy,
    PutBucketTagging,
    PutObject,
    ReplicationEvent,
    decode_event,
)
from .transport import Message, RemoteError, Reply, StreamIn

if TYPE_CHECKING:
    from .node import ClusterNode

log = logging.getLogger("rs3gw.cluster.receiver")

STAGE_TTL_S = 300.0
STAGED_MAX = 1024
BATCH_FRAME_BYTES_MAX = 64 << 20


@dataclass
class Staged:
    bucket: str
    key: str
    data: list[WriteResult]
    expires: float
    done: asyncio.Event = field(default_factory=asyncio.Event)


def object_map(meta: ObjectMeta) -> dict[str, Any]:
    """An object's metadata in the PutObject event encoding (no version needed here)."""
    from .hlc import HLCTimestamp
    from .versions import VersionVector
    ev = PutObject(event_id=HLCTimestamp(0, 0, "x"), bucket=meta.bucket, vector=VersionVector(),
                   meta=meta)
    return ev.encode()


def object_from_map(d: dict[str, Any]) -> ObjectMeta:
    ev = decode_event(d)
    assert isinstance(ev, PutObject)
    return ev.meta


async def read_segments(node: ClusterNode, stream: AsyncIterator[bytes] | StreamIn,
                        meta: ObjectMeta, algos: tuple[str, ...] = ()) -> list[WriteResult]:
    """Write an object's bytes as this node's own data: one writer per segment, in order; a
    single-segment object may end up inline, a multipart one is always files."""
    store = node.store
    sizes = [s.size for s in meta.segments] or [meta.size]
    multi = len(sizes) > 1
    results: list[WriteResult] = []
    writers = []
    try:
        it = stream.__aiter__()
        carry = b""
        for size in sizes:
            w = store.begin_write(algos, inline=not multi)
            writers.append(w)
            left = size
            while left:
                if not carry:
                    carry = bytes(await it.__anext__())
                take = carry[:left]
                carry = carry[left:]
                await w.write(take)
                left -= len(take)
            results.append(await w.finish())
        if carry:
            raise RemoteError("BadStream", "more bytes than the object's segments")
        return results
    except StopAsyncIteration:
        for w in writers:
            await w.abort()
        raise RemoteError("BadStream", "the stream ended before the object's last byte") from None
    except BaseException:
        for w in writers:
            with contextlib.suppress(Exception):
                await w.abort()
        for r in results:
            with contextlib.suppress(Exception):
                await store.discard_write(r)
        raise


def local_meta(meta: ObjectMeta, data: list[WriteResult]) -> ObjectMeta:
    """The event's metadata with this node's own data ids (where bytes live is each node's
    business; ObjectMeta.vid stays the writer's, it names the version)."""
    segs = []
    src = meta.segments or [Segment(meta.vid, meta.size, meta.etag, dict(meta.checksums))]
    for seg, d in zip(src, data, strict=True):
        if d.size != seg.size:
            raise RemoteError("BadStream", f"segment of {d.size} bytes, expected {seg.size}")
        segs.append(Segment(d.vid, d.size, seg.etag, dict(seg.checksums), d.inline is not None))
    if meta.segments and src[0].etag != data[0].md5_hex and len(src) == 1:
        raise RemoteError("BadDigest", "object bytes do not match the event's ETag")
    return replace(meta, segments=segs, headers=dict(meta.headers), checksums=dict(meta.checksums),
                   tags=dict(meta.tags))


class Receiver:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self._staged: dict[str, Staged] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def register(self) -> None:
        t = self.node.transport
        for name, fn in (("rep.stage", self.on_stage), ("rep.commit", self.on_commit),
                         ("rep.abort", self.on_abort), ("rep.apply", self.on_apply),
                         ("rep.batch", self.on_batch), ("rep.head", self.on_head),
                         ("rep.get", self.on_get), ("rep.list", self.on_list),
                         ("rep.gc", self.on_gc), ("rep.mpu", self.on_mpu),
                         ("rep.ae_digest", self.on_ae_digest), ("rep.ae_keys", self.on_ae_keys)):
            t.register(name, fn)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for sid in list(self._staged):
            await self._drop(sid)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(STAGE_TTL_S / 4, 30.0))
            now = time.monotonic()
            for sid, st in list(self._staged.items()):
                if st.expires < now:
                    await self._drop(sid)

    async def _drop(self, sid: str) -> None:
        st = self._staged.pop(sid, None)
        if st is not None:
            for d in st.data:
                with contextlib.suppress(Exception):
                    await self.node.store.discard_write(d)

    # --- writes -------------------------------------------------------------------------------

    async def on_stage(self, msg: Message) -> dict[str, Any]:
        b, k = _str(msg.body, "b"), _str(msg.body, "k")
        algos = tuple(msg.body.get("algos") or ())
        if len(self._staged) >= STAGED_MAX:
            raise RemoteError("SlowDown", "too many staged writes")
        if await self.node.store.get_bucket(b) is None:
            raise RemoteError("NoSuchBucket", b)
        meta, stamp = await self.node.store.lookup_versioned(b, k)
        w = self.node.store.begin_write(algos)
        try:
            if msg.stream is not None:      # none at all for an empty body
                async for chunk in msg.stream:
                    await w.write(chunk)
            data = await w.finish()
        except BaseException:
            await w.abort()
            raise
        sid = uuid.uuid4().hex
        self._staged[sid] = Staged(b, k, [data], time.monotonic() + STAGE_TTL_S)
        self.node.stats.bytes_in += data.size
        return {"sid": sid, "stamp": stamp, "etag": meta.etag if meta is not None else None,
                "md5": data.md5_hex}

    async def on_commit(self, msg: Message) -> dict[str, Any]:
        ev = _event(msg.body.get("ev"))
        st = self._staged.pop(_str(msg.body, "sid"), None)
        if st is None:
            raise RemoteError("NoSuchStage", "staged body expired or unknown")
        if not isinstance(ev, PutObject) or (ev.bucket, ev.key) != (st.bucket, st.key):
            for d in st.data:
                await self.node.store.discard_write(d)
            raise RemoteError("BadRequest", "rep.commit must carry the staged object's PutObject")
        try:
            return {"applied": await self.apply_put(ev, st.data)}
        except NoSuchBucket as e:
            raise RemoteError("NoSuchBucket", str(e)) from None

    async def on_abort(self, msg: Message) -> dict[str, Any]:
        await self._drop(_str(msg.body, "sid"))
        return {}

    async def on_apply(self, msg: Message) -> dict[str, Any]:
        ev = _event(msg.body.get("ev"))
        try:
            return {"applied": await self.apply_event(ev, msg.stream)}
        except NoSuchBucket as e:
            raise RemoteError("NoSuchBucket", str(e)) from None

    async def on_batch(self, msg: Message) -> dict[str, Any]:
        from rs3gw._core import batch
        if msg.stream is None:
            raise RemoteError("BadRequest", "rep.batch without a frame")
        dec = batch.BatchDecoder(max_frame_bytes=BATCH_FRAME_BYTES_MAX)
        items: list[tuple[dict[Any, Any], Any]] = []
        try:
            async for chunk in msg.stream:
                items.extend(dec.feed(chunk))
            dec.close()
        except ValueError as e:
            raise RemoteError("BadFrame", str(e)) from e
        results: list[bool | None] = []
        for d, data in items:
            ev = _event(d)
            stream = _one_chunk(bytes(data)) if data is not None else None
            try:
                results.append(await self.apply_event(ev, stream))
            except NoSuchBucket:
                results.append(None)      # the bucket's own event is still on its way: retry
        return {"applied": results}

    async def apply_event(self, ev: ReplicationEvent, stream: Any) -> bool:
        node = self.node
        if isinstance(ev, PutObject):
            if stream is None and ev.data_length:
                raise RemoteError("BadRequest", "PutObject event without its bytes")
            current = stamps.decode(await node.store.item_stamp("object", ev.bucket, ev.key))
            if current is not None and (current.same_write(ev.version)
                                        or current.vector.dominates(ev.version.vector)):
                if stream is not None and isinstance(stream, StreamIn):
                    await stream.discard()
                return False      # a duplicate or an older write: no bytes written for it
            data = await read_segments(node, stream or _one_chunk(b""), ev.meta)
            node.stats.bytes_in += ev.meta.size
            return await self.apply_put(ev, data)
        if isinstance(ev, DeleteObject):
            taken, _ = await node.store.apply_versioned(
                "object", ev.bucket, ev.key, stamps.judge(ev, node.resolver),
                lambda txn: versioned.delete_replica(txn, ev.bucket, ev.key))
            return taken
        kind = ev.ITEM
        body = _bucket_body(ev)
        taken, _ = await node.store.apply_versioned(kind, ev.bucket, "", stamps.judge(ev, node.resolver),
                                                    body)
        return taken

    async def apply_put(self, ev: PutObject, data: list[WriteResult]) -> bool:
        node = self.node
        try:
            meta = local_meta(ev.meta, data)
        except BaseException:
            for d in data:
                await node.store.discard_write(d)
            raise
        inline = data[0].inline if len(data) == 1 else None
        taken, _ = await node.store.apply_versioned(
            "object", ev.bucket, ev.key, stamps.judge(ev, node.resolver),
            lambda txn: versioned.put_replica(txn, meta, inline), new_data=tuple(data))
        return taken

    async def on_mpu(self, msg: Message) -> dict[str, Any]:
        from rs3gw.storage.multipart import InvalidPart
        from rs3gw.storage.types import NoSuchUpload, PreconditionFailed, Unavailable

        from .uploads import serve
        if self.node.front is None:
            raise RemoteError("Unavailable", "this node is not serving S3 yet")
        try:
            return await serve(self.node.front, msg.body, msg.stream)
        except (NoSuchUpload, InvalidPart, PreconditionFailed, NoSuchBucket) as e:
            raise RemoteError(type(e).__name__, str(e)) from None
        except Unavailable as e:
            raise RemoteError("Unavailable", str(e)) from None

    async def on_ae_digest(self, msg: Message) -> dict[str, Any]:
        from .antientropy import on_digest
        return await on_digest(self.node, msg)

    async def on_ae_keys(self, msg: Message) -> dict[str, Any]:
        from .antientropy import on_keys
        return await on_keys(self.node, msg)

    async def on_gc(self, msg: Message) -> dict[str, Any]:
        from .tombstones import is_tombstone_of
        eid = msg.body.get("eid")
        if not isinstance(eid, bytes):
            raise RemoteError("BadRequest", "rep.gc needs the tombstone's event id")
        dropped = await self.node.store.forget_stamp(
            "object", _str(msg.body, "b"), _str(msg.body, "k"),
            lambda blob: is_tombstone_of(blob, eid))
        return {"dropped": dropped}

    # --- reads --------------------------------------------------------------------------------

    async def on_head(self, msg: Message) -> dict[str, Any]:
        b, k = _str(msg.body, "b"), _str(msg.body, "k")
        meta, stamp = await self.node.store.lookup_versioned(b, k)
        return {"stamp": stamp, "m": object_map(meta) if meta is not None else None}

    async def on_get(self, msg: Message) -> Reply:
        b, k = _str(msg.body, "b"), _str(msg.body, "k")
        meta, stamp = await self.node.store.lookup_versioned(b, k)
        if meta is None:
            return Reply({"stamp": stamp, "m": None})
        want = msg.body.get("stamp")
        if want is not None and want != stamp:
            return Reply({"stamp": stamp, "m": object_map(meta), "stale": True})
        start = int(msg.body.get("s", 0))
        end = msg.body.get("e")
        end = meta.size - 1 if end is None else int(end)
        length = max(0, end - start + 1)
        if length == 0:
            return Reply({"stamp": stamp, "m": object_map(meta)})
        reader = await self.node.store.open_reader(meta, start, end)
        self.node.stats.bytes_out += length
        return Reply({"stamp": stamp, "m": object_map(meta)}, stream=_counted(reader),
                     stream_length=length)

    async def on_list(self, msg: Message) -> dict[str, Any]:
        body = msg.body
        try:
            page = await self.node.store.list_objects(
                _str(body, "b"), prefix=body.get("p", ""), delimiter=body.get("d", ""),
                after=body.get("a", ""), max_keys=int(body.get("n", 1000)))
        except NoSuchBucket as e:
            raise RemoteError("NoSuchBucket", str(e)) from None
        return {"e": [[e.key, e.size, e.etag, e.last_modified, e.owner_id, e.checksum_algorithms]
                      for e in page.entries],
                "cp": page.common_prefixes, "t": page.is_truncated}


def _bucket_body(ev: ReplicationEvent) -> Any:
    b = ev.bucket
    if isinstance(ev, CreateBucket):
        return lambda txn: versioned.create_bucket_replica(txn, b, ev.owner_id, ev.region,
                                                           ev.creation_date)
    if isinstance(ev, DeleteBucket):
        return lambda txn: versioned.delete_bucket_replica(txn, b)
    if isinstance(ev, (PutBucketPolicy, PutBucketTagging)):
        return lambda txn: objects.set_bucket_config(txn, b, ev.ITEM, ev.document)
    if isinstance(ev, (DeleteBucketPolicy, DeleteBucketTagging)):
        return lambda txn: objects.set_bucket_config(txn, b, ev.ITEM, None)
    raise RemoteError("BadRequest", f"no applier for {ev.OP}")


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


async def _counted(reader: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        async for chunk in reader:
            yield chunk
    finally:
        close = getattr(reader, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


def _str(body: dict[str, Any], k: str) -> str:
    v = body.get(k)
    if not isinstance(v, str):
        raise RemoteError("BadRequest", f"field {k!r} must be a string")
    return v


def _event(d: Any) -> ReplicationEvent:
    try:
        return decode_event(d)
    except EventDecodeError as e:
        raise RemoteError("BadEvent", str(e)) from e


__all__ = ["Receiver", "object_from_map", "object_map", "read_segments"]
