"""The replica side: the handlers that store what coordinators send, and answer their reads.

- StageObject + stream: write the body to a tmp file (or keep it, if small) and hold it,
  uncommitted, under a stage id; the reply carries the item's current stamp and ETag here, so the
  coordinator can stamp its write over everything the replicas know.
- CommitStaged: apply the PutObject event to the staged body (judged first).
- AbortStaged: drop a staged body. A staged body nobody commits is dropped after STAGE_TTL_S, and
  at restart by the store's tmp sweep: an aborted write leaves nothing visible.
- ApplyEvent [+ stream for a PutObject]: stage and commit in one step (queued delivery, hand-off,
  the local-first writes: copy, multipart completion, tags).
- ApplyBatch + stream: an rs3gw._core.batch frame of events (small bodies as their data).
- HeadObject, GetObject (+ the bytes as the reply stream), ListObjects: a replica's reads.

Every apply is judged in the store's write transaction (storage.ReplicaStore), so an event that
arrives twice, late or out of order never wins wrongly.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from rs3gw._core import load
from rs3gw.storage import NoSuchBucket, ReplicaStore, WriteResult

from . import stamps
from .events import (
    CreateBucket,
    DeleteBucket,
    DeleteBucketConfig,
    DeleteBucketPolicy,
    DeleteBucketTagging,
    DeleteObject,
    EventDecodeError,
    PutBucketConfig,
    PutBucketPolicy,
    PutBucketTagging,
    PutObject,
    ReplicationEvent,
    decode_event,
)
from .messages import (
    AbortStaged,
    Applied,
    ApplyBatch,
    ApplyEvent,
    BatchApplied,
    CommitStaged,
    Done,
    GetObject,
    HeadObject,
    ListObjects,
    ListVersions,
    ObjectHead,
    ObjectsPage,
    Staged,
    StageObject,
    VersionsPage,
)
from .objectdata import local_meta, one_chunk, read_segments, write_stream
from .rpc import Inbound, Rpc, Streamed
from .stats import ReplicationStats
from .transport import RemoteError, StreamIn

# RS3GW_CORE picks the compiled framing or its reference twin (rs3gw._core.load).
framing = load("batch")

STAGE_TTL_S = 300.0
STAGED_MAX = 1024
BATCH_FRAME_BYTES_MAX = 64 << 20


@dataclass
class StagedBody:
    bucket: str
    key: str
    data: list[WriteResult]
    expires: float
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Receiver:
    def __init__(self, store: ReplicaStore, stamper: stamps.Stamper,
                 stats: ReplicationStats) -> None:
        self._store = store
        self._stamper = stamper
        self._stats = stats
        self._staged: dict[str, StagedBody] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def serve(self, rpc: Rpc) -> None:
        rpc.serve(StageObject, self.on_stage)
        rpc.serve(CommitStaged, self.on_commit)
        rpc.serve(AbortStaged, self.on_abort)
        rpc.serve(ApplyEvent, self.on_apply)
        rpc.serve(ApplyBatch, self.on_batch)
        rpc.serve(HeadObject, self.on_head)
        rpc.serve(GetObject, self.on_get)
        rpc.serve(ListObjects, self.on_list)
        rpc.serve(ListVersions, self.on_list_versions)

    def start(self) -> None:
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
                    await self._store.discard_write(d)

    # --- writes -------------------------------------------------------------------------------

    async def on_stage(self, req: StageObject, inb: Inbound) -> Staged:
        if len(self._staged) >= STAGED_MAX:
            raise RemoteError("SlowDown", "too many staged writes")
        if await self._store.get_bucket(req.bucket) is None:
            raise RemoteError("NoSuchBucket", req.bucket)
        meta, stamp = await self._store.stored_version(req.bucket, req.key)
        data = await write_stream(self._store, inb.stream, tuple(req.algos))
        sid = uuid.uuid4().hex
        self._staged[sid] = StagedBody(req.bucket, req.key, [data], time.monotonic() + STAGE_TTL_S)
        self._stats.bytes_in += data.size
        return Staged(sid=sid, stamp=stamp, etag=meta.etag if meta is not None else None,
                      md5=data.md5_hex)

    async def on_commit(self, req: CommitStaged, _in: Inbound) -> Applied:
        ev = req.event
        st = self._staged.pop(req.sid, None)
        if st is None:
            raise RemoteError("NoSuchStage", "staged body expired or unknown")
        if not isinstance(ev, PutObject) or (ev.bucket, ev.key) != (st.bucket, st.key):
            for d in st.data:
                await self._store.discard_write(d)
            raise RemoteError("BadRequest", "CommitStaged must carry the staged object's PutObject")
        try:
            return Applied(applied=await self.apply_put(ev, st.data))
        except NoSuchBucket as e:
            raise RemoteError("NoSuchBucket", str(e)) from None

    async def on_abort(self, req: AbortStaged, _in: Inbound) -> Done:
        await self._drop(req.sid)
        return Done()

    async def on_apply(self, req: ApplyEvent, inb: Inbound) -> Applied:
        try:
            return Applied(applied=await self.apply_event(req.event, inb.stream))
        except NoSuchBucket as e:
            raise RemoteError("NoSuchBucket", str(e)) from None

    async def on_batch(self, _req: ApplyBatch, inb: Inbound) -> BatchApplied:
        if inb.stream is None:
            raise RemoteError("BadRequest", "ApplyBatch without a frame")
        dec = framing.BatchDecoder(max_frame_bytes=BATCH_FRAME_BYTES_MAX)
        items: list[tuple[Any, Any]] = []
        try:
            async for chunk in inb.stream:
                items.extend(dec.feed(chunk))
            dec.close()
        except ValueError as e:
            raise RemoteError("BadFrame", str(e)) from e
        results: list[bool | None] = []
        for d, data in items:
            try:
                ev = decode_event(d)
            except EventDecodeError as e:
                raise RemoteError("BadMessage", f"ApplyBatch event: {e}") from e
            stream = one_chunk(bytes(data)) if data is not None else None
            try:
                results.append(await self.apply_event(ev, stream))
            except NoSuchBucket:
                results.append(None)      # the bucket's own event is still on its way: retry
        return BatchApplied(applied=results)

    async def apply_event(self, ev: ReplicationEvent,
                          stream: AsyncIterator[bytes] | StreamIn | None) -> bool:
        store, judge = self._store, self._stamper.judge(ev)
        if isinstance(ev, PutObject):
            if ev.meta.delete_marker:
                # A versioned bucket's delete marker: a version with no bytes at all.
                if isinstance(stream, StreamIn):
                    await stream.discard()
                return await store.apply_object(dataclasses.replace(ev.meta, segments=[]), (),
                                                judge, ev.seq)
            if stream is None and ev.data_length:
                raise RemoteError("BadRequest", "PutObject event without its bytes")
            current = stamps.decode(await store.item_stamp(*ev.item))
            if current is not None and (current.same_write(ev.version)
                                        or current.vector.dominates(ev.version.vector)):
                if isinstance(stream, StreamIn):
                    await stream.discard()
                return False      # a duplicate or an older write: no bytes written for it
            data = await read_segments(store, stream or one_chunk(b""), ev.meta)
            self._stats.bytes_in += ev.meta.size
            return await self.apply_put(ev, data)
        if isinstance(ev, DeleteObject):
            return await store.apply_tombstone(ev.bucket, ev.key, judge, ev.version_id)
        if isinstance(ev, CreateBucket):
            return await store.apply_bucket(ev.bucket, ev.owner_id, ev.region, ev.creation_date,
                                            judge, ev.configs)
        if isinstance(ev, DeleteBucket):
            return await store.apply_bucket_delete(ev.bucket, judge)
        if isinstance(ev, (PutBucketPolicy, PutBucketTagging)):
            return await store.apply_bucket_config(ev.bucket, ev.ITEM, ev.document, judge)
        if isinstance(ev, (DeleteBucketPolicy, DeleteBucketTagging)):
            return await store.apply_bucket_config(ev.bucket, ev.ITEM, None, judge)
        if isinstance(ev, PutBucketConfig):
            return await store.apply_bucket_config(ev.bucket, ev.kind, ev.document, judge)
        if isinstance(ev, DeleteBucketConfig):
            return await store.apply_bucket_config(ev.bucket, ev.kind, None, judge)
        raise RemoteError("BadRequest", f"no applier for {ev.OP}")

    async def apply_put(self, ev: PutObject, data: list[WriteResult]) -> bool:
        try:
            meta = local_meta(ev.meta, data)
        except BaseException:
            for d in data:
                await self._store.discard_write(d)
            raise
        return await self._store.apply_object(meta, tuple(data), self._stamper.judge(ev), ev.seq)

    # --- reads --------------------------------------------------------------------------------

    async def on_head(self, req: HeadObject, _in: Inbound) -> ObjectHead:
        meta, stamp = await self._store.stored_version(req.bucket, req.key, req.version_id)
        return ObjectHead(stamp=stamp, meta=meta)

    async def on_get(self, req: GetObject, _in: Inbound) -> ObjectHead | Streamed[ObjectHead]:
        meta, stamp = await self._store.stored_version(req.bucket, req.key, req.version_id)
        if meta is None or meta.delete_marker:
            return ObjectHead(stamp=stamp, meta=None)
        if req.stamp is not None and req.stamp != stamp:
            return ObjectHead(stamp=stamp, meta=meta, stale=True)
        end = meta.size - 1 if req.end is None else req.end
        length = max(0, end - req.start + 1)
        head = ObjectHead(stamp=stamp, meta=meta)
        if length == 0:
            return head
        reader = await self._store.open_reader(meta, req.start, end)
        self._stats.bytes_out += length
        return Streamed(head, _closing(reader), length)

    async def on_list(self, req: ListObjects, _in: Inbound) -> ObjectsPage:
        try:
            page = await self._store.list_objects(req.bucket, prefix=req.prefix,
                                                  delimiter=req.delimiter, after=req.after,
                                                  max_keys=req.max_keys)
        except NoSuchBucket as e:
            raise RemoteError("NoSuchBucket", str(e)) from None
        return ObjectsPage(entries=page.entries, prefixes=page.common_prefixes,
                           truncated=page.is_truncated)

    async def on_list_versions(self, req: ListVersions, _in: Inbound) -> VersionsPage:
        try:
            page = await self._store.list_object_versions(
                req.bucket, prefix=req.prefix, delimiter=req.delimiter, key_marker=req.key_marker,
                max_keys=req.max_keys, marker_order=req.marker_order)
        except NoSuchBucket as e:
            raise RemoteError("NoSuchBucket", str(e)) from None
        return VersionsPage(entries=page.entries, prefixes=page.common_prefixes,
                            truncated=page.is_truncated)


async def _closing(reader: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The reader's chunks; the reader is closed however the stream ends (it holds files)."""
    try:
        async for chunk in reader:
            yield chunk
    finally:
        close = getattr(reader, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


__all__ = ["Receiver"]
