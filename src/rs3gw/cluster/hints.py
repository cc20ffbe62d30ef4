"""Hints: a coordinator outside an object's replica set keeps the bytes of a write only while some
replica still misses it (the queue ships from that copy: hinted hand-off). Once every replica
holds the version, or a newer one, the copy goes; its stamp stays, as what this node has seen."""
from __future__ import annotations

from rs3gw.storage import ReplicaStore, Verdict

from . import stamps
from .events import PutObject, ReplicationEvent
from .messages import HeadObject
from .peers import Peers
from .topology import Topology
from .transport import TransportError


class Hints:
    def __init__(self, store: ReplicaStore, topology: Topology, peers: Peers) -> None:
        self._store = store
        self._topology = topology
        self._peers = peers

    async def drop(self, ev: ReplicationEvent) -> None:
        """Remove this node's copy of the object if it is still that very version."""
        mine = stamps.encode(ev.version)
        version_id = ev.meta.version_id if isinstance(ev, PutObject) else None
        await self._store.apply_tombstone(ev.bucket, ev.key,
                                          lambda local: Verdict(local == mine, None), version_id)

    async def delivered(self, ev: PutObject) -> None:
        """A queued copy reached a replica: if this node is outside the key's replica set and
        every replica now has this version (or a newer one), the hint has done its job."""
        replicas = self._topology.replicas(ev.bucket, ev.key)
        if self._topology.node_id in replicas or not all(self._topology.live(n) for n in replicas):
            return
        for n in replicas:
            try:
                head = await self._peers.call(n, HeadObject(bucket=ev.bucket, key=ev.key,
                                                            version_id=ev.meta.version_id))
            except (TransportError, OSError):
                return
            theirs = stamps.decode(head.stamp)
            if theirs is None or not (theirs.same_write(ev.version)
                                      or theirs.vector.dominates(ev.version.vector)):
                return
        await self.drop(ev)
