"""ClusterStore: what the S3 layer talks to in cluster mode (storage.ObjectStore, as LocalStore);
every write is stamped and replicated, every read is answered from the newest copy. Bucket-level
writes are BucketOps', multipart uploads Uploads'; the object writes and reads are here.

Writes (this node coordinates whatever request it receives):
- PutObject with a known length, sync or quorum mode: the body streams once from the client, into
  a local tmp file and, through StageObject, to every live remote replica while it arrives.
  Nothing is visible anywhere until enough replicas hold the bytes; then the write is stamped over
  every version the replicas reported and committed (CommitStaged). The client gets its answer
  once the mode's count committed (sync: all, quorum: a majority, returning as soon as it has one);
  the others finish in the background, and any replica that missed it gets the event queued.
- Everything else (async mode, bodies of unknown length, copies, multipart completion, tags,
  deletes, bucket changes): commit here, stamped, then ship (ApplyEvent) with the same counting.
  Before committing, the mode's count of live replicas is checked so that a write that cannot be
  acknowledged fails with 503 before anything is visible.
- A coordinator outside an object's replica set keeps the bytes only when some replica missed the
  write: it is then the hint the queue ships from (hinted hand-off).
Reads: the newest version among this node and the live replicas (HeadObject), bytes from whoever
holds it. Listings merge one page from every live node.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from rs3gw.storage import (
    NULL_VERSION,
    OBJECT_LOCK,
    VERSIONING,
    BucketInfo,
    DeleteResult,
    ListPage,
    LocalStore,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
    ObjectLocked,
    ObjectLockNotEnabled,
    ObjectMeta,
    ObjectSink,
    ObjectStore,
    PartInfo,
    ReplicaStore,
    StorageError,
    Unavailable,
    UploadInfo,
    VersionEntry,
    VersionIsDeleteMarker,
    VersionPage,
    WriteResult,
    check_bucket_config,
    check_conditions,
    check_delete_lock,
    check_retention_change,
    parse_version_id,
)

from . import stamps
from .bucket_ops import BucketOps
from .coordinator import Coordinator, Newest, RemoteMeta, lag
from .events import DeleteObject, PutObject
from .fanout import FanOutWriter
from .messages import (
    Applied,
    CommitStaged,
    GetObject,
    ListObjects,
    ListVersions,
    ObjectsPage,
    VersionsPage,
)
from .objectdata import local_meta, read_segments
from .peers import Peers
from .reads import RemoteReader, merge_pages, merge_version_pages
from .stats import ReplicationStats
from .topology import Topology
from .transport import RemoteError, TransportError
from .uploads import Uploads

log = logging.getLogger("rs3gw.cluster.store")


class ClusterStore:
    """The S3 layer's store in cluster mode."""

    def __init__(self, local: ReplicaStore, coordinator: Coordinator, buckets: BucketOps,
                 uploads: Uploads, topology: Topology, peers: Peers, stamper: stamps.Stamper,
                 stats: ReplicationStats, *, stall_s: float) -> None:
        self.local = local
        self._coord = coordinator
        self._buckets = buckets
        self._uploads = uploads
        self._topology = topology
        self._peers = peers
        self._stamper = stamper
        self._stats = stats
        self._stall_s = stall_s         # a replica that stops reading a staged body is dropped
        self._fanouts: dict[str, FanOutWriter] = {}

    # --- buckets (BucketOps) ------------------------------------------------------------------

    async def get_bucket(self, name: str) -> BucketInfo | None:
        return await self.local.get_bucket(name)

    async def list_buckets(self) -> list[BucketInfo]:
        return await self.local.list_buckets()

    async def create_bucket(self, name: str, owner_id: str, region: str,
                            configs: dict[str, bytes] | None = None) -> BucketInfo:
        return await self._buckets.create_bucket(name, owner_id, region, configs)

    async def delete_bucket(self, name: str) -> None:
        await self._buckets.delete_bucket(name)

    async def set_bucket_config(self, bucket: str, kind: str, value: bytes | None) -> None:
        if kind in (OBJECT_LOCK, VERSIONING):
            # Judged here, before any node changes: replicas apply what the coordinator decided
            # (the versioning state and the lock may reach one of them in either order).
            info = await self.local.get_bucket(bucket)
            if info is None:
                raise NoSuchBucket(bucket)
            mode = info.configs.get(VERSIONING)
            check_bucket_config(kind, value, None if mode is None else bytes(mode).decode(),
                                OBJECT_LOCK in info.configs)
        await self._buckets.set_bucket_config(bucket, kind, value)

    async def _mode(self, bucket: str) -> str | None:
        """The bucket's versioning state (None: never versioned), as this node knows it."""
        info = await self.local.get_bucket(bucket)
        if info is None:
            raise NoSuchBucket(bucket)
        raw = info.configs.get(VERSIONING)
        return None if raw is None else bytes(raw).decode()

    # --- object writes ------------------------------------------------------------------------

    def begin_write(self, checksum_algos: Iterable[str] = (), *, inline: bool = True,
                    target: tuple[str, str, int | None] | None = None) -> ObjectSink:
        local = self.local.begin_write(checksum_algos, inline=inline)
        if target is None or self._topology.mode == "async":
            return local
        bucket, key, size = target
        if size is None:
            return local        # no length to announce: committed here first, then shipped
        me = self._topology.node_id
        remote = [n for n in self._topology.replicas(bucket, key)
                  if n != me and self._topology.live(n)]
        if not remote:
            return local
        return FanOutWriter(self._peers, self._stats, self._fanouts, local, bucket, key, size,
                            tuple(sorted(set(checksum_algos))), remote, stall_s=self._stall_s)

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
            assert data is not None
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

    async def _put_staged(self, meta: ObjectMeta, data: WriteResult, fan: FanOutWriter,
                          if_match: str | None, if_none_match: bool) -> ObjectMeta | None:
        topo = self._topology
        me = topo.node_id
        replicas = topo.replicas(meta.bucket, meta.key)
        local_in = me in replicas
        need = topo.required()
        have = len(fan.stages) + (1 if local_in else 0)
        if have < need:
            await fan.release()
            raise Unavailable(f"{topo.mode} write needs {need} of {len(replicas)} replicas; "
                              f"{have} received the body ({'; '.join(fan.failed.values())})")
        try:
            mode = await self._mode(meta.bucket)
            local_meta_now, blob = await self.local.stored_version(meta.bucket, meta.key)
            known = [stamps.decode(blob)] + [stamps.decode(st.stamp) for st in fan.stages.values()]
            newest = self._stamper.newest(known)
            # Conditional writes are judged against the newest ETag any holder reported.
            current_etag = None
            if newest is not None and not newest.tombstone and newest.etag:
                current_etag = newest.etag      # (a delete marker's stamp has no ETag)
            cur = None if current_etag is None else dataclasses.replace(
                local_meta_now or meta, etag=current_etag)
            check_conditions(cur, if_match, if_none_match)
            self._finalize_meta(meta, data)
            v = self._stamper.stamp(known, etag=meta.etag)
            seq = stamps.name_version(meta, v, mode)
            ev = PutObject(event_id=v.hlc, bucket=meta.bucket, vector=v.vector, created=v.created,
                           meta=meta, seq=seq)
        except BaseException:
            await fan.release()
            raise
        missing = [n for n in replicas if n != me and n not in fan.stages]
        keep_local = local_in or bool(missing)
        commits: dict[asyncio.Task[Any], str] = {}
        loop = asyncio.get_running_loop()
        if keep_local:
            commits[loop.create_task(self._commit_local(ev, data))] = me
        for n, staged in fan.stages.items():
            commits[loop.create_task(self._commit_remote(n, staged.sid, ev))] = n
        counted = {t for t, n in commits.items() if n in replicas}
        ok, failed = 0, []
        pending = set(commits)
        while pending and ok < need:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for d in done:
                if d.exception() is None:
                    ok += d in counted
                    if commits[d] != me:
                        self._stats.delivered(commits[d], 1, 0, [lag(ev)])
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
        await self._coord.delivery.enqueue(ev, missing + remote_failed)
        rest = {p: commits[p] for p in pending if commits[p] != me}
        if rest:
            # Answered before the slowest replicas: they finish in the background. Until they
            # have, the uncommitted local copy is kept, to become a hint if one of them fails.
            hint = None if keep_local else data
            self._coord.spawn(self._finish_staged(ev, rest, hint))
        elif not keep_local:
            await self.local.discard_write(data)
        for p in pending:
            if commits[p] == me:
                await p
        if ok < need:
            raise Unavailable(f"write committed on {ok} of the {need} replicas it needs; it will "
                              "reach the others")
        return None

    async def _commit_remote(self, node: str, sid: str, ev: PutObject) -> Applied:
        return await self._peers.call(node, CommitStaged(sid=sid, event=ev))

    async def _finish_staged(self, ev: PutObject, tasks: dict[asyncio.Task[Any], str],
                             hint: WriteResult | None) -> None:
        failed = await self._coord.settle(ev, tasks)
        if hint is not None:
            if failed:
                await self._commit_local(ev, hint)
            else:
                await self.local.discard_write(hint)
        await self._coord.delivery.enqueue(ev, failed)

    async def _commit_local(self, ev: PutObject, data: WriteResult) -> bool:
        return await self.local.apply_object(local_meta(ev.meta, [data]), (data,),
                                             self._stamper.judge(ev), ev.seq)

    async def _put_local_first(self, meta: ObjectMeta, data: WriteResult | None,
                               if_match: str | None, if_none_match: bool) -> ObjectMeta | None:
        topo = self._topology
        replicas = topo.replicas(meta.bucket, meta.key)
        try:
            self._coord.precheck(replicas, topo.required())
            mode = await self._mode(meta.bucket)
            newest = await self._coord.newest(meta.bucket, meta.key)
            check_conditions(newest.meta, if_match, if_none_match)
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
        v = self._stamper.stamp(newest.known, etag=meta.etag)
        seq = stamps.name_version(meta, v, mode)
        ev = PutObject(event_id=v.hlc, bucket=meta.bucket, vector=v.vector, created=v.created,
                       meta=meta, seq=seq)
        await self.local.apply_object(local_meta(meta, new_data), tuple(new_data),
                                      self._stamper.judge(ev), seq)
        await self._coord.ship_object(ev, replicas)
        return newest.meta

    async def _fetch_bytes(self, newest: Newest, meta: ObjectMeta) -> list[WriteResult]:
        if newest.meta is None:
            raise NoSuchKey(meta.key)
        src = self._coord.as_served(newest)
        assert src is not None
        if src.size == 0 and not src.segments:
            return []
        reader = await self.open_reader(src)
        try:
            return await read_segments(self.local, reader, src)
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

    async def delete_object(self, bucket: str, key: str, version_id: str | None = None, *,
                            owner_id: str = "", bypass_governance: bool = False) -> DeleteResult:
        mode = await self._mode(bucket)
        if mode is None:
            if version_id not in (None, NULL_VERSION):
                return DeleteResult(version_id)   # an unversioned bucket: no such version
            await self._delete(bucket, key)
            return DeleteResult(version_id)
        if version_id is None:
            return await self._add_marker(bucket, key, mode, owner_id)
        return await self._delete_version(bucket, key, version_id, bypass_governance)

    async def _add_marker(self, bucket: str, key: str, mode: str, owner_id: str) -> DeleteResult:
        """DELETE without a version id in a versioned bucket: a delete marker, a version of its
        own (written and counted like a PUT with no body)."""
        topo = self._topology
        replicas = topo.replicas(bucket, key)
        self._coord.precheck(replicas, topo.required())
        newest = await self._coord.newest(bucket, key)
        v = self._stamper.stamp(newest.known)
        marker = ObjectMeta(bucket=bucket, key=key, vid="", size=0, etag="",
                            last_modified=time.time(), owner_id=owner_id)
        seq = stamps.name_version(marker, v, mode)
        marker.delete_marker = True
        ev = PutObject(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created,
                       meta=marker, seq=seq)
        await self.local.apply_object(dataclasses.replace(marker), (), self._stamper.judge(ev), seq)
        await self._coord.ship_object(ev, replicas)
        return DeleteResult(marker.version_id, True)

    async def _delete_version(self, bucket: str, key: str, version_id: str,
                              bypass_governance: bool = False) -> DeleteResult:
        """DELETE with a version id: that version's tombstone, on every replica (and queued for
        the ones that are down), collected like an object's once all of them hold it. Object
        lock is judged here, on the newest copy of the version; the replicas then apply the
        tombstone as they get it."""
        topo = self._topology
        replicas = topo.replicas(bucket, key)
        self._coord.precheck(replicas, topo.required())
        found = await self._coord.newest(bucket, key, version_id)
        if found.version is None or found.version.tombstone:
            return DeleteResult(version_id)   # no such version anywhere: nothing to delete
        was_marker = found.meta is not None and found.meta.delete_marker
        if found.meta is not None:
            check_delete_lock(found.meta, bypass_governance)
        v = self._stamper.stamp(found.known, tombstone=True)
        ev = DeleteObject(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created,
                          object_key=key, version_id=version_id)
        await self.local.apply_tombstone(bucket, key, self._stamper.judge(ev), version_id)
        await self._coord.record_tombstone(ev)
        me = topo.node_id
        need = topo.required() - (1 if me in replicas else 0)
        outside = [n for n in topo.others() if n not in replicas]
        await self._coord.ship(ev, [n for n in replicas if n != me], max(0, need),
                               queue_also=outside)
        return DeleteResult(version_id, was_marker)

    async def _delete(self, bucket: str, key: str) -> ObjectMeta | None:
        topo = self._topology
        replicas = topo.replicas(bucket, key)
        self._coord.precheck(replicas, topo.required())
        newest = await self._coord.newest(bucket, key)
        v = self._stamper.stamp(newest.known, tombstone=True)
        ev = DeleteObject(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created,
                          object_key=key)
        await self.local.apply_tombstone(bucket, key, self._stamper.judge(ev))
        await self._coord.record_tombstone(ev)
        me = topo.node_id
        need = topo.required() - (1 if me in replicas else 0)
        # Nodes outside the replica set may hold a hint copy: they get the tombstone too.
        outside = [n for n in topo.others() if n not in replicas]
        await self._coord.ship(ev, [n for n in replicas if n != me], max(0, need),
                               queue_also=outside)
        return newest.meta

    async def delete_objects(self, bucket: str, items: list[tuple[str, str | None]], *,
                             owner_id: str = "", bypass_governance: bool = False,
                             ) -> list[DeleteResult]:
        if await self.local.get_bucket(bucket) is None:
            raise NoSuchBucket(bucket)
        out = []
        for k, v in items:
            try:
                out.append(await self.delete_object(bucket, k, v, owner_id=owner_id,
                                                    bypass_governance=bypass_governance))
            except ObjectLocked:
                out.append(DeleteResult(v, locked=True))    # refused alone, as on one node
        return out

    async def delete_if_unchanged(self, bucket: str, key: str, version_id: str, etag: str,
                                  last_modified: float, *, current: bool, owner_id: str = "",
                                  ) -> DeleteResult | None:
        """Judged against the newest copy, then deleted as DeleteObject is: two steps, not one
        across the replicas (a write landing between them is deleted with it)."""
        found = await self.get_object(bucket, key, None if current else version_id)
        if (found is None or (current and found.delete_marker)
                or (found.version_id or NULL_VERSION) != version_id
                or found.etag != etag or found.last_modified != last_modified):
            return None
        return await self.delete_object(bucket, key, None if current else version_id,
                                        owner_id=owner_id)

    async def set_object_tags(self, bucket: str, key: str, tags: dict[str, str],
                              version_id: str | None = None) -> ObjectMeta:
        if await self._mode(bucket) is not None:
            return await self._rewrite_version(bucket, key, version_id,
                                               lambda m: dataclasses.replace(m, tags=dict(tags)))
        _only_null(version_id)
        newest = await self._coord.newest(bucket, key)
        if newest.meta is None:
            raise NoSuchKey(key)
        meta = dataclasses.replace(newest.meta, tags=dict(tags), headers=dict(newest.meta.headers),
                                   checksums=dict(newest.meta.checksums),
                                   segments=list(newest.meta.segments))
        await self._put_local_first(meta, None, None, False)
        return meta

    async def set_object_retention(self, bucket: str, key: str, version_id: str | None,
                                   mode: str | None, until_ms: int | None, *,
                                   bypass_governance: bool = False) -> ObjectMeta:
        """The version is written again with its new retention (as a tag change is), judged
        against the newest copy of it: every replica enforces the same lock."""
        await self._require_lock(bucket)

        def change(m: ObjectMeta) -> ObjectMeta:
            check_retention_change(m, mode, until_ms, int(time.time() * 1000), bypass_governance)
            return dataclasses.replace(m, lock_mode=mode, lock_until_ms=until_ms)
        return await self._rewrite_version(bucket, key, version_id, change)

    async def set_object_legal_hold(self, bucket: str, key: str, version_id: str | None,
                                    on: bool) -> ObjectMeta:
        await self._require_lock(bucket)
        return await self._rewrite_version(bucket, key, version_id,
                                           lambda m: dataclasses.replace(m, legal_hold=on))

    async def _require_lock(self, bucket: str) -> None:
        info = await self.local.get_bucket(bucket)
        if info is None:
            raise NoSuchBucket(bucket)
        if OBJECT_LOCK not in info.configs:
            raise ObjectLockNotEnabled(bucket)

    # --- reads --------------------------------------------------------------------------------

    async def get_object(self, bucket: str, key: str,
                         version_id: str | None = None) -> ObjectMeta | None:
        if await self._mode(bucket) is None:
            _only_null(version_id)
            return self._coord.as_served(await self._coord.newest(bucket, key))
        if version_id is not None:
            return self._coord.as_served(await self._coord.newest(bucket, key, version_id))
        newest = await self._coord.newest(bucket, key)
        return self._coord.as_served(newest) or await self._marker(bucket, key, newest)

    async def _marker(self, bucket: str, key: str, newest: Newest) -> ObjectMeta | None:
        """No current object, but the key has versions: its newest may be a delete marker, which
        S3 names in the 404 (x-amz-delete-marker, x-amz-version-id)."""
        if newest.version is None or newest.version.tombstone:
            return None
        top = await self._newest_version_entry(bucket, key)
        if top is None or not top.delete_marker:
            return None
        return ObjectMeta(bucket=bucket, key=key, vid="", size=0, etag="",
                          last_modified=top.last_modified, owner_id=top.owner_id,
                          version_id=top.version_id, delete_marker=True)

    async def _newest_version_entry(self, bucket: str, key: str) -> VersionEntry | None:
        page = await self.list_object_versions(bucket, prefix=key, max_keys=1)
        if page.entries and page.entries[0].key == key:
            return page.entries[0]
        return None

    async def lookup_object(self, bucket: str, key: str, *, with_body: bool,
                            version_id: str | None = None,
                            ) -> tuple[BucketInfo | None, ObjectMeta | None, bytes | None]:
        info = await self.local.get_bucket(bucket)
        if info is None:
            return None, None, None
        if VERSIONING in info.configs:
            # A versioned bucket: the version asked for (or the current one, or its marker);
            # bytes through open_reader.
            return info, await self.get_object(bucket, key, version_id), None
        if version_id not in (None, NULL_VERSION):
            return info, None, None     # no such version: the handler answers, once authorised
        newest = await self._coord.newest(bucket, key)
        if newest.node == self._topology.node_id and with_body:
            info2, meta, body = await self.local.lookup_object(bucket, key, with_body=True)
            if meta is not None and newest.meta is not None and meta.vid == newest.meta.vid:
                return info2 or info, meta, body
        return info, self._coord.as_served(newest), None

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
            answer = await self._peers.call_streamed(
                meta.source, GetObject(bucket=meta.bucket, key=meta.key, start=start, end=end,
                                       stamp=meta.stamp, version_id=meta.version_id))
        except (TransportError, OSError) as e:
            raise Unavailable(f"the node holding {meta.key!r} did not answer: {e}") from e
        if answer.reply.stale or answer.reply.meta is None:
            if answer.stream is not None:
                await answer.stream.discard()
            raise NoSuchKey(meta.key)      # replaced or deleted since it was looked up
        return RemoteReader(answer.stream, max(0, end - start + 1))

    async def list_objects(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                           after: str = "", max_keys: int = 1000) -> ListPage:
        local = await self.local.list_objects(bucket, prefix=prefix, delimiter=delimiter,
                                              after=after, max_keys=max_keys)
        pages = [local]
        req = ListObjects(bucket=bucket, prefix=prefix, delimiter=delimiter, after=after,
                          max_keys=max_keys)
        for g in await self._ask_live_peers(req):
            assert isinstance(g, ObjectsPage)
            pages.append(ListPage(list(g.entries), list(g.prefixes), g.truncated, None))
        return merge_pages(pages, max_keys)

    async def _ask_live_peers(self, req: ListObjects | ListVersions) -> list[Any]:
        """The listing replies of every live peer at once; a peer without the bucket (its
        CreateBucket still on its way) or that fails is left out of the merge."""
        peers = [n for n in self._topology.others() if self._topology.live(n)]
        got = await asyncio.gather(*(self._peers.call(n, req) for n in peers),
                                   return_exceptions=True)
        out = []
        for n, g in zip(peers, got, strict=True):
            if isinstance(g, RemoteError) and g.code == "NoSuchBucket":
                continue
            if isinstance(g, BaseException):
                log.debug("%s on %s failed: %s", type(req).__name__, n, g)
                continue
            out.append(g)
        return out

    async def list_object_versions(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                                   key_marker: str = "", version_id_marker: str = "",
                                   max_keys: int = 1000) -> VersionPage:
        """A versioned bucket: one page merged from every live node's (a key's versions live on
        its replicas; each node lists what it holds). Else each key's one version is "null"."""
        if await self._mode(bucket) is not None:
            return await self._merged_versions(bucket, prefix, delimiter, key_marker,
                                               version_id_marker, max_keys)
        page = await self.list_objects(bucket, prefix=prefix, delimiter=delimiter,
                                       after=key_marker, max_keys=max_keys)
        entries = [VersionEntry(key=e.key, version_id=NULL_VERSION, is_latest=True,
                                delete_marker=False, size=e.size, etag=e.etag,
                                last_modified=e.last_modified, owner_id=e.owner_id,
                                checksum_algorithms=list(e.checksum_algorithms))
                   for e in page.entries]
        last_is_key = bool(entries) and page.next_key == entries[-1].key
        return VersionPage(entries, page.common_prefixes, page.is_truncated, page.next_key,
                           NULL_VERSION if page.is_truncated and last_is_key else None)

    async def _merged_versions(self, bucket: str, prefix: str, delimiter: str, key_marker: str,
                               version_id_marker: str, max_keys: int) -> VersionPage:
        order = None
        if key_marker and version_id_marker:
            # Nodes resume by where the marker version sorts: one of them may not hold it.
            order = await self._version_order(bucket, key_marker, version_id_marker)
        local = await self.local.list_object_versions(
            bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            version_id_marker=version_id_marker if order is None else "", max_keys=max_keys,
            marker_order=order)
        pages = [(local.entries, local.common_prefixes, local.is_truncated)]
        req = ListVersions(bucket=bucket, prefix=prefix, delimiter=delimiter,
                           key_marker=key_marker, marker_order=order, max_keys=max_keys)
        for g in await self._ask_live_peers(req):
            assert isinstance(g, VersionsPage)
            pages.append((list(g.entries), list(g.prefixes), g.truncated))
        return merge_version_pages(pages, max_keys)

    async def _version_order(self, bucket: str, key: str, version_id: str) -> bytes | None:
        """Where a version sorts: what its id spells, or (the null version) the seq a holder
        stored for it."""
        seq = parse_version_id(version_id)
        if seq is not None:
            return seq
        meta, _, seq = await self.local.stored_entry(bucket, key, version_id)
        if meta is not None and seq:
            return seq
        page = await self._merged_versions(bucket, key, "", "", "", 1000)
        for e in page.entries:
            if e.key == key and e.version_id == version_id:
                return e.order
        return None

    async def _rewrite_version(self, bucket: str, key: str, version_id: str | None,
                               change: Callable[[ObjectMeta], ObjectMeta]) -> ObjectMeta:
        """Change one version's metadata (tags, lock) on every replica: the version is written
        again under its own id and place, with a stamp over the one it had."""
        topo = self._topology
        replicas = topo.replicas(bucket, key)
        self._coord.precheck(replicas, topo.required())
        if version_id is None:
            current = await self._coord.newest(bucket, key)
            if current.meta is None:
                raise NoSuchKey(key)
            version_id = current.meta.version_id or NULL_VERSION
        found = await self._coord.newest(bucket, key, version_id)
        if found.meta is None:
            raise NoSuchVersion(version_id)
        if found.meta.delete_marker:
            raise VersionIsDeleteMarker(version_id)
        order = await self._version_order(bucket, key, version_id)
        if order is None:
            raise NoSuchVersion(version_id)
        src = self._coord.as_served(found)
        assert src is not None
        new_data = await self._fetch_bytes(found, src)
        meta = change(dataclasses.replace(found.meta, headers=dict(found.meta.headers),
                                          checksums=dict(found.meta.checksums),
                                          segments=list(found.meta.segments),
                                          version_id=version_id))
        if isinstance(meta, RemoteMeta):
            meta = ObjectMeta(**{f.name: getattr(meta, f.name)
                                 for f in dataclasses.fields(ObjectMeta)})
        v = self._stamper.stamp(found.known, etag=meta.etag)
        ev = PutObject(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created,
                       meta=meta, seq=order)
        await self.local.apply_object(local_meta(meta, new_data), tuple(new_data),
                                      self._stamper.judge(ev), order)
        await self._coord.ship_object(ev, replicas)
        return meta

    # --- multipart uploads (Uploads) ----------------------------------------------------------

    async def create_upload(self, info: UploadInfo) -> UploadInfo:
        return await self._uploads.create_upload(info)

    async def get_upload(self, bucket: str, upload_id: str) -> UploadInfo:
        return await self._uploads.get_upload(bucket, upload_id)

    async def put_part(self, bucket: str, upload_id: str, part_number: int, data: WriteResult,
                       checksums: dict[str, str]) -> PartInfo:
        return await self._uploads.put_part(bucket, upload_id, part_number, data, checksums)

    async def list_parts(self, bucket: str, upload_id: str, *, part_marker: int = 0,
                         max_parts: int = 1000) -> tuple[list[PartInfo], bool]:
        return await self._uploads.list_parts(bucket, upload_id, part_marker=part_marker,
                                              max_parts=max_parts)

    async def complete_upload(self, bucket: str, upload_id: str, meta: ObjectMeta,
                              part_numbers: list[int], *, if_match: str | None = None,
                              if_none_match: bool = False) -> ObjectMeta:
        return await self._uploads.complete_upload(bucket, upload_id, meta, part_numbers,
                                                   if_match=if_match, if_none_match=if_none_match)

    async def abort_upload(self, bucket: str, upload_id: str) -> None:
        await self._uploads.abort_upload(bucket, upload_id)

    async def list_uploads(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                           key_marker: str = "", upload_id_marker: str = "",
                           max_uploads: int = 1000) -> tuple[list[UploadInfo], list[str], bool]:
        return await self._uploads.list_uploads(
            bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            upload_id_marker=upload_id_marker, max_uploads=max_uploads)


def _only_null(version_id: str | None) -> None:
    if version_id not in (None, NULL_VERSION):
        raise NoSuchVersion(version_id)


def _implements_object_store(store: ClusterStore) -> ObjectStore:
    return store    # mypy checks here that ClusterStore keeps the whole protocol


__all__ = ["ClusterStore", "RemoteMeta"]
