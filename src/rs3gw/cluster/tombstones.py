"""Tombstone garbage collection, driven by the node that coordinated the delete.

A delete leaves a tombstone stamp on every replica so that an older write arriving late (from a
queue, a hand-off) cannot bring the object back. The coordinator's queue tracks who holds each
tombstone (direct commits and queued deliveries both ack). Once every node of the object's
replica set holds it, the coordinator asks each of them to drop it (ForgetTombstone, only if their
stamp is still that very tombstone), then drops its own and forgets it. A replica that cannot be
reached keeps the tombstone until a later round. In a versioned bucket the tombstone is one
version's (DeleteObject with a version id): collected the same way, under the version's item.
"""
from __future__ import annotations

import asyncio
import functools
import logging

from rs3gw.storage import VERSION_KIND, ReplicaStore, split_item

from . import stamps
from .messages import ForgetTombstone, Forgotten
from .peers import Peers
from .queue import ReplicationQueue
from .rpc import Inbound, Rpc
from .topology import Topology
from .transport import TransportError

log = logging.getLogger("rs3gw.cluster.tombstones")

GC_BATCH = 500


def _kind(item: str) -> str:
    """Tombstones name their item: an object's key, or one version (storage.version_item)."""
    return "object" if split_item(item)[1] is None else VERSION_KIND


class TombstoneCollector:
    def __init__(self, queue: ReplicationQueue, store: ReplicaStore, topology: Topology,
                 peers: Peers, *, interval_s: float) -> None:
        self._queue = queue
        self._store = store
        self._topology = topology
        self._peers = peers
        self._interval_s = interval_s

    def serve(self, rpc: Rpc) -> None:
        rpc.serve(ForgetTombstone, self.on_forget)

    async def on_forget(self, req: ForgetTombstone, _in: Inbound) -> Forgotten:
        dropped = await self._store.forget_stamp(
            _kind(req.key), req.bucket, req.key,
            functools.partial(stamps.is_tombstone_of, event_key=req.event_key))
        return Forgotten(dropped=dropped)

    async def collect(self) -> int:
        """One round; returns the number of tombstones collected everywhere."""
        me = self._topology.node_id
        ready = await self._queue.collectable_tombstones(
            lambda b, k: set(self._topology.replicas(b, split_item(k)[0])) | {me}, limit=GC_BATCH)
        done = []
        for t in ready:
            eid = t.event_id.sort_key()
            ok = True
            for n in self._topology.replicas(t.bucket, split_item(t.key)[0]):
                if n == me:
                    continue
                try:
                    await self._peers.call(n, ForgetTombstone(bucket=t.bucket, key=t.key,
                                                              event_key=eid))
                except (TransportError, OSError) as e:
                    log.debug("tombstone gc of %s/%s on %s: %s", t.bucket, t.key, n, e)
                    ok = False
            if ok:
                await self._store.forget_stamp(_kind(t.key), t.bucket, t.key,
                                               functools.partial(stamps.is_tombstone_of,
                                                                 event_key=eid))
                done.append(t.event_id)
        if done:
            await self._queue.forget_tombstones(done)
        return len(done)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                n = await self.collect()
                if n:
                    log.debug("collected %d tombstones", n)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("tombstone garbage collection failed")
