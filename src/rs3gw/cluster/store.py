"""ClusterStore: what the S3 layer talks to in cluster mode. Same methods as LocalStore; every
write is stamped and replicated, every read is answered from the newest copy.

Writes (this node coordinates whatever request it receives):
- PutObject with a known length, sync or quorum mode: the body streams once from the client, into
  a local tmp file and, through ``rep.stage``, to every live remote replica while it arrives.
  Nothing is visible anywhere until enough replicas hold the bytes; then the write is stamped over
  every version the replicas reported and committed (``rep.commit``). The client gets its answer
  once the mode's count committed (sync: all, quorum: a majority, returning as soon as it has one);
  the others finish in the background, and any replica that missed it gets the event queued.
- Everything else (async mode, bodies of unknown length, copies, multipart completion, tags,
  deletes, bucket changes): commit here, stamped, then ship (``rep.apply``) with the same counting.
  Before committing, the mode's count of live replicas is checked so that a write that cannot be
  acknowledged fails with 503 before anything is visible.
- A coordinator outside an object's replica set keeps the bytes only when some replica missed the
  write: it is then the hint the queue ships from (hinted hand-off).
Reads: the newest version among this node and the live replicas (rep.head), bytes from whoever
holds it. Listings merge one page from every live node.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from rs3gw.storage import LocalStore, objects, versioned
from rs3gw.storage.types import (
    BucketInfo,
    ListEntry,
    ListPage,
    NoSuchBucket,
    NoSuchKey,
    ObjectMeta,
    StorageError,
    Unavailable,
    WriteResult,
)

from . import stamps
from .bucket_ops import BucketOps
from .events import DeleteObject, PutObject
from .fanout import FanOutWriter
from .reads import RemoteReader, merge_pages
from .receiver import local_meta, read_segments
from .replicate import Newest, RemoteMeta, lag
from .transport import RemoteError, TransportError
from .uploads import UploadOps

log = logging.getLogger("rs3gw.cluster.store")


class ClusterStore(BucketOps, UploadOps):
    """The S3 layer's store in cluster mode (same methods as LocalStore)."""

    # --- object writes ------------------------------------------------------------------------

    def begin_write(self, checksum_algos: Iterable[str] = (), *, inline: bool = True,
                    target: tuple[str, str, int | None] | None = None) -> Any:
        local = self.local.begin_write(checksum_algos, inline=inline)
        if target is None or self.node.mode == "async":
            return local
        bucket, key, size = target
        if size is None:
            return local        # no length to announce: committed here first, then shipped
        remote = [n for n in self.node.replicas(bucket, key)
                  if n != self.node.node_id and self.node.live(n)]
        if not remote:
            return local
        return FanOutWriter(self, local, bucket, key, size, tuple(sorted(set(checksum_algos))),
                            remote)

    async def discard_write(self, data: WriteResult) -> None:
        fan = self._fanouts.pop(data.vid, None)
        if fan is not None:
            await fan.release()
        await self.local.discard_write(data)

    async def put_object(self, meta: ObjectMeta, data: WriteResult | None, *,
                         if_match: str | None = None,
                         if_none_match: bool = False) -> ObjectMeta | None:
        fan = self._fanouts.pop(data.vid, None) if data is not None else None
        if fan is not None:
            return await self._put_staged(meta, data, fan, if_match, if_none_match)
        return await self._put_local_first(meta, data, if_match, if_none_match)

    def _finalize_meta(self, meta: ObjectMeta, data: WriteResult) -> None:
        meta.vid = data.vid
        meta.size = data.size
        if not meta.etag:
            meta.etag = data.md5_hex
        if not meta.last_modified:
            meta.last_modified = time.time()
        for seg in meta.segments:
            if seg.vid == data.vid:
                seg.inline = data.inline is not None

    async def _put_staged(self, meta: ObjectMeta, data: WriteResult | None, fan: FanOutWriter,
                          if_match: str | None, if_none_match: bool) -> ObjectMeta | None:
        assert data is not None
        node = self.node
        me = node.node_id
        replicas = node.replicas(meta.bucket, meta.key)
        local_in = me in replicas
        need = node.required()
        have = len(fan.stages) + (1 if local_in else 0)
        if have < need:
            await fan.release()
            raise Unavailable(f"{node.mode} write needs {need} of {len(replicas)} replicas; "
                              f"{have} received the body ({'; '.join(fan.failed.values())})")
        try:
            local_meta_now, blob = await self.local.lookup_versioned(meta.bucket, meta.key)
            known = [stamps.decode(blob)] + [stamps.decode(b.get("stamp")) for b in fan.stages.values()]
            newest = stamps.newest(known, node.read_resolver)
            # Conditional writes are judged against the newest ETag any holder reported.
            current_etag = None
            if newest is not None and not newest.tombstone:
                current_etag = newest.etag
            cur = None if current_etag is None else dataclasses.replace(
                local_meta_now or meta, etag=current_etag)
            objects.check_conditions(cur, if_match, if_none_match)
            self._finalize_meta(meta, data)
            v = stamps.local_write(node.clock, me, known, etag=meta.etag)
            ev = PutObject(event_id=v.hlc, bucket=meta.bucket, vector=v.vector, created=v.created,
                           meta=meta)
        except BaseException:
            await fan.release()
            raise
        missing = [n for n in replicas if n != me and n not in fan.stages]
        keep_local = local_in or bool(missing)
        commits: dict[asyncio.Task[Any], str] = {}
        loop = asyncio.get_running_loop()
        if keep_local:
            commits[loop.create_task(self._commit_local(ev, data))] = me
        for n, body in fan.stages.items():
            commits[loop.create_task(node.call(n, "rep.commit", {"sid": body.get("sid"),
                                                                 "ev": ev.encode()}))] = n
        counted = {t for t, n in commits.items() if n in replicas}
        ok, failed = 0, []
        pending = set(commits)
        while pending and ok < need:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for d in done:
                if d.exception() is None:
                    ok += d in counted
                    if commits[d] != me:
                        node.stats.delivered(commits[d], 1, 0, [lag(ev)])
                else:
                    failed.append(commits[d])
                    log.debug("commit of %s/%s on %s failed: %s", meta.bucket, meta.key,
                              commits[d], d.exception())
        if me in failed:
            # The hint (or local replica) failed to commit: nothing can be queued from here.
            raise StorageError(f"local commit failed: {failed}")
        remote_failed = [n for n in failed if n != me]
        if not keep_local and remote_failed:
            # A replica took the bytes but not the commit: this node's copy becomes the hint the
            # queue ships from, as if that replica had been down from the start.
            await self._commit_local(ev, data)
            keep_local = True
        await node.enqueue(ev, missing + remote_failed)
        rest = {p: commits[p] for p in pending if commits[p] != me}
        if rest:
            # Answered before the slowest replicas: they finish in the background. Until they
            # have, the uncommitted local copy is kept, to become a hint if one of them fails.
            hint = None if keep_local else data
            self._spawn(self._finish_staged(ev, rest, hint))
        elif not keep_local:
            await self.local.discard_write(data)
        for p in pending:
            if commits[p] == me:
                await p
        if ok < need:
            raise Unavailable(f"write committed on {ok} of the {need} replicas it needs; it will "
                              "reach the others")
        return None

    async def _finish_staged(self, ev: PutObject, tasks: dict[asyncio.Task[Any], str],
                             hint: WriteResult | None) -> None:
        failed = await self._settle(ev, tasks)
        if hint is not None:
            if failed:
                await self._commit_local(ev, hint)
            else:
                await self.local.discard_write(hint)
        await self.node.enqueue(ev, failed)

    async def _commit_local(self, ev: PutObject, data: WriteResult) -> bool:
        meta = local_meta(ev.meta, [data])
        taken, _ = await self.local.apply_versioned(
            "object", ev.bucket, ev.key, stamps.judge(ev, self.node.resolver),
            lambda txn: versioned.put_replica(txn, meta, data.inline), new_data=(data,))
        return taken

    async def _put_local_first(self, meta: ObjectMeta, data: WriteResult | None,
                               if_match: str | None, if_none_match: bool) -> ObjectMeta | None:
        node = self.node
        replicas = node.replicas(meta.bucket, meta.key)
        try:
            self._precheck(replicas, node.required())
            newest = await self._newest(meta.bucket, meta.key)
            objects.check_conditions(newest.meta, if_match, if_none_match)
            new_data: list[WriteResult]
            if data is not None:
                self._finalize_meta(meta, data)
                new_data = [data]
            else:
                # A metadata-only rewrite: take a copy of the bytes it names (they may be on
                # another node; here they become this node's own files).
                new_data = await self._fetch_bytes(newest, meta)
        except BaseException:
            if data is not None:
                await self.local.discard_write(data)
            raise
        v = stamps.local_write(node.clock, node.node_id, newest.known, etag=meta.etag)
        ev = PutObject(event_id=v.hlc, bucket=meta.bucket, vector=v.vector, created=v.created,
                       meta=meta)
        stored = local_meta(meta, new_data)
        inline = new_data[0].inline if len(new_data) == 1 else None
        await self.local.apply_versioned(
            "object", meta.bucket, meta.key, stamps.judge(ev, node.resolver),
            lambda txn: versioned.put_replica(txn, stored, inline), new_data=tuple(new_data))
        await self._ship_object(ev, replicas)
        return newest.meta

    async def _fetch_bytes(self, newest: Newest, meta: ObjectMeta) -> list[WriteResult]:
        if newest.meta is None:
            raise NoSuchKey(meta.key)
        src = self._as_served(newest)
        assert src is not None
        reader = await self.open_reader(src)
        try:
            return await read_segments(self.node, reader, src)
        finally:
            close = getattr(reader, "aclose", None)
            if close is not None:
                await close()

    async def copy_data(self, src: ObjectMeta, start: int, end_inclusive: int,
                        checksum_algos: Iterable[str] = ()) -> WriteResult:
        if not isinstance(src, RemoteMeta):
            return await self.local.copy_data(src, start, end_inclusive, checksum_algos)
        w = self.local.begin_write(checksum_algos)
        reader = await self.open_reader(src, start, end_inclusive)
        try:
            async for chunk in reader:
                await w.write(chunk)
            return await w.finish()
        except BaseException:
            await w.abort()
            raise

    async def delete_object(self, bucket: str, key: str) -> ObjectMeta | None:
        node = self.node
        replicas = node.replicas(bucket, key)
        self._precheck(replicas, node.required())
        newest = await self._newest(bucket, key)
        v = stamps.local_write(node.clock, node.node_id, newest.known, tombstone=True)
        ev = DeleteObject(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created,
                          object_key=key)
        await self.local.apply_versioned("object", bucket, key, stamps.judge(ev, node.resolver),
                                         lambda txn: versioned.delete_replica(txn, bucket, key))
        me = node.node_id
        if node.queue is not None:
            await node.queue.record_tombstone(ev.event_id, bucket, key, acked_by=[me])
        need = node.required() - (1 if me in replicas else 0)
        # Nodes outside the replica set may hold a hint copy: they get the tombstone too.
        outside = [n for n in node.others() if n not in replicas]
        await self._ship(ev, [n for n in replicas if n != me], max(0, need), queue_also=outside)
        return newest.meta

    async def delete_objects(self, bucket: str, keys: list[str]) -> list[ObjectMeta | None]:
        if await self.local.get_bucket(bucket) is None:
            raise NoSuchBucket(bucket)
        return [await self.delete_object(bucket, k) for k in keys]

    async def set_object_tags(self, bucket: str, key: str, tags: dict[str, str]) -> ObjectMeta:
        newest = await self._newest(bucket, key)
        if newest.meta is None:
            raise NoSuchKey(key)
        meta = dataclasses.replace(newest.meta, tags=dict(tags), headers=dict(newest.meta.headers),
                                   checksums=dict(newest.meta.checksums),
                                   segments=list(newest.meta.segments))
        await self._put_local_first(meta, None, None, False)
        return meta

    # --- reads --------------------------------------------------------------------------------

    async def get_object(self, bucket: str, key: str) -> ObjectMeta | None:
        return self._as_served(await self._newest(bucket, key))

    async def lookup_object(self, bucket: str, key: str, *, with_body: bool,
                            ) -> tuple[BucketInfo | None, ObjectMeta | None, bytes | None]:
        info = await self.local.get_bucket(bucket)
        if info is None:
            return None, None, None
        newest = await self._newest(bucket, key)
        if newest.node == self.node.node_id and with_body:
            info2, meta, body = await self.local.lookup_object(bucket, key, with_body=True)
            if meta is not None and newest.meta is not None and meta.vid == newest.meta.vid:
                return info2 or info, meta, body
        return info, self._as_served(newest), None

    @staticmethod
    def body_reader(body: bytes, start: int, end_inclusive: int,
                    chunk_bytes: int = 1 << 20) -> AsyncIterator[bytes]:
        return LocalStore.body_reader(body, start, end_inclusive, chunk_bytes)

    async def open_reader(self, meta: ObjectMeta, start: int = 0,
                          end_inclusive: int | None = None,
                          chunk_bytes: int = 1 << 20) -> AsyncIterator[bytes]:
        if not isinstance(meta, RemoteMeta):
            return await self.local.open_reader(meta, start, end_inclusive, chunk_bytes)
        end = meta.size - 1 if end_inclusive is None else end_inclusive
        try:
            reply = await self.node.call_bulk_reply(
                meta.source, "rep.get", {"b": meta.bucket, "k": meta.key, "s": start, "e": end,
                                         "stamp": meta.stamp})
        except (TransportError, OSError) as e:
            raise Unavailable(f"the node holding {meta.key!r} did not answer: {e}") from e
        if reply.body.get("stale") or reply.body.get("m") is None:
            raise NoSuchKey(meta.key)      # replaced or deleted since it was looked up
        return RemoteReader(reply.stream, max(0, end - start + 1))

    async def list_objects(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                           after: str = "", max_keys: int = 1000) -> ListPage:
        local = await self.local.list_objects(bucket, prefix=prefix, delimiter=delimiter,
                                              after=after, max_keys=max_keys)
        pages = [local]
        peers = [n for n in self.node.others() if self.node.live(n)]

        async def one(n: str) -> ListPage:
            r = await self.node.call(n, "rep.list", {"b": bucket, "p": prefix, "d": delimiter,
                                                     "a": after, "n": max_keys})
            return ListPage([ListEntry(e[0], e[1], e[2], e[3], e[4], list(e[5]))
                             for e in r.body.get("e", [])], list(r.body.get("cp", [])),
                            bool(r.body.get("t")), None)
        got = await asyncio.gather(*(one(n) for n in peers), return_exceptions=True)
        for n, g in zip(peers, got, strict=True):
            if isinstance(g, RemoteError) and g.code == "NoSuchBucket":
                continue
            if isinstance(g, BaseException):
                log.debug("listing on %s failed: %s", n, g)
                continue
            pages.append(g)
        return merge_pages(pages, max_keys)



__all__ = ["ClusterStore", "RemoteMeta"]
