"""Coordinator: what every cluster-mode write and read of this node does with the other replicas.

Writes: check that the mode's count of replicas is reachable before anything becomes visible
(``precheck``: a write that could not be acknowledged fails with 503 first); ship an event
committed here to the replicas and return once the mode's count committed (``ship``: the rest
finish in the background; whoever fails or is down gets the event queued); keep the tombstone
bookkeeping of deletes. Reads: ask the replicas for their stamps and find the newest copy of a
key (``newest``), served from whoever holds it (``as_served``).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Coroutine, Iterable
from typing import Any

from rs3gw.storage import ObjectMeta, ReplicaStore, StorageError, Unavailable

from . import stamps
from .delivery import Delivery
from .events import DeleteObject, ReplicationEvent
from .hints import Hints
from .messages import HeadObject
from .peers import Peers
from .pusher import Pusher
from .stats import ReplicationStats
from .topology import Topology
from .versions import ObjectVersion

log = logging.getLogger("rs3gw.cluster.coordinator")

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


def lag(ev: ReplicationEvent) -> float:
    """From the write's stamp to now: how far behind the replica was when it committed."""
    return max(0.0, time.time() - ev.event_id.wall_time_s)


class Coordinator:
    def __init__(self, store: ReplicaStore, topology: Topology, peers: Peers, delivery: Delivery,
                 pusher: Pusher, hints: Hints, stamper: stamps.Stamper,
                 stats: ReplicationStats) -> None:
        self.store = store
        self.topology = topology
        self.peers = peers
        self.delivery = delivery
        self.stamper = stamper
        self.stats = stats
        self._pusher = pusher
        self._hints = hints
        self._background: set[asyncio.Task[Any]] = set()

    async def close(self) -> None:
        """Wait for the replica requests still finishing in the background."""
        for t in list(self._background):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await t

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- writes -------------------------------------------------------------------------------

    def precheck(self, replica_set: list[str], need: int) -> None:
        live = sum(1 for n in replica_set if self.topology.live(n))
        if live < need:
            raise Unavailable(f"{self.topology.mode} write needs {need} of {len(replica_set)} "
                              f"replicas; {live} reachable")

    async def apply_remote(self, dest: str, ev: ReplicationEvent) -> bool:
        applied = await self._pusher.push(dest, ev)
        if applied is None:
            raise StorageError("the local copy changed before it was shipped")
        return applied

    async def ship(self, ev: ReplicationEvent, targets: list[str], need: int,
                   queue_also: Iterable[str] = (), drop_hint: bool = False) -> None:
        """Ship an event committed here to ``targets``; return once ``need`` of them committed
        (the rest go on in the background). Whoever fails or is down gets it queued; so do
        ``queue_also`` (no waiting). Raises Unavailable if ``need`` cannot be met. ``drop_hint``:
        this node is outside the replica set; once every target committed, its copy goes."""
        live = [t for t in targets if self.topology.live(t)]
        later = [t for t in targets if t not in live] + list(queue_also)
        loop = asyncio.get_running_loop()
        tasks = {loop.create_task(self.apply_remote(t, ev)): t for t in live}
        ok = 0
        pending = set(tasks)
        failed: list[str] = []
        while pending and ok < need:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for d in done:
                if d.exception() is None:
                    ok += 1
                    await self.delivered(tasks[d], ev)
                else:
                    failed.append(tasks[d])
                    log.debug("replicating %s to %s: %s", ev.OP, tasks[d], d.exception())
        await self.delivery.enqueue(ev, later + failed)
        hint = drop_hint and not later and not failed
        if pending:
            self.spawn(self._finish_ship(ev, {p: tasks[p] for p in pending}, hint))
        elif hint:
            await self._hints.drop(ev)
        if ok < need:
            raise Unavailable(f"{ev.OP} reached {ok} of the {need} replicas it needs")

    async def settle(self, ev: ReplicationEvent, tasks: dict[asyncio.Task[Any], str]) -> list[str]:
        """Wait for replica requests still in flight; the destinations that failed."""
        failed = []
        for task, dest in tasks.items():
            try:
                await task
                await self.delivered(dest, ev)
            except Exception:  # noqa: BLE001 - the caller queues it for a retry
                failed.append(dest)
        return failed

    async def _finish_ship(self, ev: ReplicationEvent, tasks: dict[asyncio.Task[Any], str],
                           drop_hint: bool = False) -> None:
        failed = await self.settle(ev, tasks)
        await self.delivery.enqueue(ev, failed)
        if drop_hint and not failed:
            await self._hints.drop(ev)

    async def delivered(self, dest: str, ev: ReplicationEvent) -> None:
        self.stats.delivered(dest, 1, 0, [lag(ev)])
        if isinstance(ev, DeleteObject):
            await self.delivery.queue.ack_tombstone(dest, ev.event_id)

    async def record_tombstone(self, ev: DeleteObject) -> None:
        """This node holds the delete's tombstone (collected once every replica holds it)."""
        await self.delivery.queue.record_tombstone(ev.event_id, ev.bucket, ev.item[2],
                                                   acked_by=[self.topology.node_id])

    async def ship_object(self, ev: ReplicationEvent, replicas: list[str]) -> None:
        """Ship an object write committed here with the mode's counting against the factor."""
        me = self.topology.node_id
        need = self.topology.required() - (1 if me in replicas else 0)
        await self.ship(ev, [n for n in replicas if n != me], max(0, need),
                        drop_hint=me not in replicas)

    # --- reads --------------------------------------------------------------------------------

    async def heads(self, bucket: str, key: str, nodes: Iterable[str],
                    version_id: str | None = None,
                    ) -> dict[str, tuple[ObjectVersion | None, ObjectMeta | None]]:
        async def one(n: str) -> tuple[ObjectVersion | None, ObjectMeta | None]:
            head = await self.peers.call(n, HeadObject(bucket=bucket, key=key,
                                                       version_id=version_id),
                                         timeout_s=HEAD_TIMEOUT_S)
            return stamps.decode(head.stamp), head.meta
        names = [n for n in nodes if n != self.topology.node_id and self.topology.live(n)]
        results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        return {n: r for n, r in zip(names, results, strict=True) if not isinstance(r, BaseException)}

    async def newest(self, bucket: str, key: str, version_id: str | None = None) -> Newest:
        """The newest copy of the key's current object among the live replicas (with
        ``version_id``: of that version, a delete marker included)."""
        me = self.topology.node_id
        replicas = self.topology.replicas(bucket, key)
        (meta, blob), heads = await asyncio.gather(
            self.store.stored_version(bucket, key, version_id),
            self.heads(bucket, key, replicas, version_id))
        cands: dict[str, tuple[ObjectVersion | None, ObjectMeta | None]] = {
            me: (stamps.decode(blob), meta), **heads}
        if all(v is None and m is None for v, m in cands.values()):
            # Nobody in the replica set has heard of it: placement may have changed since it was
            # written (a node joined); ask everyone else before answering NoSuchKey.
            cands.update(await self.heads(bucket, key, self.topology.others(), version_id))
        best = self.stamper.newest(v for v, _ in cands.values())
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

    def as_served(self, n: Newest) -> ObjectMeta | None:
        if n.meta is None or n.node == self.topology.node_id:
            return n.meta
        fields = {f.name: getattr(n.meta, f.name) for f in dataclasses.fields(ObjectMeta)}
        return RemoteMeta(**fields, source=n.node or "",
                          stamp=stamps.encode(n.version) if n.version else None)


__all__ = ["Coordinator", "Newest", "RemoteMeta", "lag"]
