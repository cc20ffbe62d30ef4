"""The coordinator's machinery shared by every cluster-mode write and read: liveness pre-checks,
shipping an event to replicas with the mode's counting (and queueing whoever missed it), asking
replicas for their stamps, and finding the newest copy of a key.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable
from typing import Any

from rs3gw.storage import LocalStore
from rs3gw.storage.types import (
    ObjectMeta,
    StorageError,
    Unavailable,
)

from . import stamps
from .events import (
    DeleteObject,
    PutObject,
    ReplicationEvent,
)
from .fanout import FanOutWriter
from .node import ClusterNode
from .receiver import object_from_map
from .versions import ObjectVersion

log = logging.getLogger("rs3gw.cluster.replicate")

HEAD_TIMEOUT_S = 2.0


@dataclasses.dataclass
class RemoteMeta(ObjectMeta):
    """An object whose newest copy is on another node."""
    source: str = ""
    stamp: bytes | None = None


@dataclasses.dataclass
class Newest:
    node: str | None            # who holds it (None: nobody, or the newest is a tombstone)
    meta: ObjectMeta | None
    version: ObjectVersion | None
    known: list[ObjectVersion | None]    # every stamp seen, for stamping a write over them
    stamp_by_node: dict[str, ObjectVersion | None]

class Replicator:
    def __init__(self, local: LocalStore, node: ClusterNode) -> None:
        self.local = local
        self.node = node
        self._fanouts: dict[str, FanOutWriter] = {}
        self._background: set[asyncio.Task[Any]] = set()
        node.front = self       # the owner side of rep.mpu runs this node's multipart calls

    # LocalStore attributes the server reads.
    @property
    def io_backend(self) -> str:
        return self.local.io_backend

    @property
    def direct_io(self) -> str:
        return self.local.direct_io

    async def close(self) -> None:
        for t in list(self._background):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await t

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- replication plumbing -----------------------------------------------------------------

    def _precheck(self, replica_set: list[str], need: int) -> None:
        live = sum(1 for n in replica_set if self.node.live(n))
        if live < need:
            raise Unavailable(f"{self.node.mode} write needs {need} of {len(replica_set)} replicas; "
                              f"{live} reachable")

    async def _apply_remote(self, dest: str, ev: ReplicationEvent) -> bool:
        if isinstance(ev, PutObject) and ev.meta.size:
            src = await self.node._local_source(ev)
            if src is None:
                raise StorageError("the local copy changed before it was shipped")
            meta, reader = src
            try:
                reply = await self.node.call(dest, "rep.apply", {"ev": ev.encode()}, stream=reader,
                                             stream_length=meta.size)
            finally:
                close = getattr(reader, "aclose", None)
                if close is not None:
                    await close()
            self.node.stats.sent(meta.size)
        else:
            reply = await self.node.call(dest, "rep.apply", {"ev": ev.encode()})
        return bool(reply.body.get("applied"))

    async def _ship(self, ev: ReplicationEvent, targets: list[str], need: int,
                    queue_also: Iterable[str] = (), drop_hint: bool = False) -> None:
        """Ship an event committed here to ``targets``; return once ``need`` of them committed
        (the rest go on in the background). Whoever fails or is down gets it queued; so do
        ``queue_also`` (no waiting). Raises Unavailable if ``need`` cannot be met. ``drop_hint``:
        this node is outside the replica set; once every target committed, its copy goes."""
        live = [t for t in targets if self.node.live(t)]
        later = [t for t in targets if t not in live] + list(queue_also)
        tasks = {asyncio.get_running_loop().create_task(self._apply_remote(t, ev)): t for t in live}
        ok = 0
        pending = set(tasks)
        failed: list[str] = []
        while pending and ok < need:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for d in done:
                if d.exception() is None:
                    ok += 1
                    await self._delivered(tasks[d], ev)
                else:
                    failed.append(tasks[d])
                    log.debug("replicating %s to %s: %s", ev.OP, tasks[d], d.exception())
        await self.node.enqueue(ev, later + failed)
        hint = drop_hint and not later and not failed
        if pending:
            self._spawn(self._finish_ship(ev, {p: tasks[p] for p in pending}, hint))
        elif hint:
            await self.node.drop_hint(ev)
        if ok < need:
            raise Unavailable(f"{ev.OP} reached {ok} of the {need} replicas it needs")

    async def _settle(self, ev: ReplicationEvent, tasks: dict[asyncio.Task[Any], str]) -> list[str]:
        """Wait for replica requests still in flight; the destinations that failed."""
        failed = []
        for task, dest in tasks.items():
            try:
                await task
                await self._delivered(dest, ev)
            except Exception:  # noqa: BLE001 - the caller queues it for a retry
                failed.append(dest)
        return failed

    async def _finish_ship(self, ev: ReplicationEvent, tasks: dict[asyncio.Task[Any], str],
                           drop_hint: bool = False) -> None:
        failed = await self._settle(ev, tasks)
        await self.node.enqueue(ev, failed)
        if drop_hint and not failed:
            await self.node.drop_hint(ev)

    async def _delivered(self, dest: str, ev: ReplicationEvent) -> None:
        self.node.stats.delivered(dest, 1, 0, [lag(ev)])
        if isinstance(ev, DeleteObject) and self.node.queue is not None:
            await self.node.queue.ack_tombstone(dest, ev.event_id)

    async def _ship_object(self, ev: ReplicationEvent, replicas: list[str]) -> None:
        me = self.node.node_id
        need = self.node.required() - (1 if me in replicas else 0)
        await self._ship(ev, [n for n in replicas if n != me], max(0, need),
                         drop_hint=me not in replicas)

    async def _heads(self, bucket: str, key: str, nodes: Iterable[str],
                     ) -> dict[str, tuple[ObjectVersion | None, ObjectMeta | None]]:
        async def one(n: str) -> tuple[ObjectVersion | None, ObjectMeta | None]:
            reply = await self.node.call(n, "rep.head", {"b": bucket, "k": key},
                                         timeout_s=HEAD_TIMEOUT_S)
            m = reply.body.get("m")
            return stamps.decode(reply.body.get("stamp")), object_from_map(m) if m else None
        names = [n for n in nodes if n != self.node.node_id and self.node.live(n)]
        results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        return {n: r for n, r in zip(names, results, strict=True) if not isinstance(r, BaseException)}

    async def _newest(self, bucket: str, key: str) -> Newest:
        me = self.node.node_id
        replicas = self.node.replicas(bucket, key)
        (meta, blob), heads = await asyncio.gather(self.local.lookup_versioned(bucket, key),
                                                   self._heads(bucket, key, replicas))
        cands: dict[str, tuple[ObjectVersion | None, ObjectMeta | None]] = {
            me: (stamps.decode(blob), meta), **heads}
        if all(v is None and m is None for v, m in cands.values()):
            # Nobody in the replica set has heard of it: placement may have changed since it was
            # written (a node joined); ask everyone else before answering NoSuchKey.
            cands.update(await self._heads(bucket, key, self.node.others()))
        best = stamps.newest((v for v, _ in cands.values()), self.node.read_resolver)
        known = [v for v, _ in cands.values()]
        by_node = {n: v for n, (v, _) in cands.items()}
        if best is None:
            # Unstamped data (written before cluster mode was on): the local copy, if any.
            for n, (_v, m) in cands.items():
                if m is not None:
                    return Newest(n, m, None, known, by_node)
            return Newest(None, None, None, known, by_node)
        if best.tombstone:
            return Newest(None, None, best, known, by_node)
        order = [me] + [n for n in cands if n != me]
        for n in order:
            v, m = cands[n]
            if v is not None and m is not None and v.same_write(best):
                return Newest(n, m, best, known, by_node)
        return Newest(None, None, best, known, by_node)

    def _as_served(self, n: Newest) -> ObjectMeta | None:
        if n.meta is None or n.node == self.node.node_id:
            return n.meta
        fields = {f.name: getattr(n.meta, f.name) for f in dataclasses.fields(ObjectMeta)}
        return RemoteMeta(**fields, source=n.node or "",
                          stamp=stamps.encode(n.version) if n.version else None)


def lag(ev: ReplicationEvent) -> float:
    """From the write's stamp to now: how far behind the replica was when it committed."""
    return max(0.0, time.time() - ev.event_id.wall_time_s)




