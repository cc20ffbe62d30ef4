"""Graceful leave: before a node goes, every object it holds (and every tombstone) is offered to the
replica set it will have without this node. Each target is asked for its stamp first, so what it
already has is not sent again; applying is idempotent either way.
"""
from __future__ import annotations

import logging

from rs3gw.storage import OBJECT_KINDS, ReplicaStore, split_item

from . import stamps
from .messages import HeadObject
from .peers import Peers
from .placement import Placement
from .pusher import Pusher
from .topology import Topology
from .transport import TransportError
from .versions import ObjectVersion

log = logging.getLogger("rs3gw.cluster.handoff")

SCAN_PAGE = 500


class HandOff:
    def __init__(self, store: ReplicaStore, topology: Topology, peers: Peers,
                 pusher: Pusher) -> None:
        self._store = store
        self._topology = topology
        self._peers = peers
        self._pusher = pusher

    async def run(self) -> int:
        """Returns the number of copies sent."""
        remaining = self._topology.others()
        if not remaining:
            return 0
        after = Placement(self._topology.factor, remaining)
        sent = 0
        for kind in OBJECT_KINDS:
            sent += await self._offer(kind, after)
        log.info("leave: handed off %d object copies", sent)
        return sent

    async def _offer(self, kind: str, after: Placement) -> int:
        sent = 0
        cursor = ("", "")
        while True:
            rows = await self._store.scan_stamps(kind, cursor, SCAN_PAGE)
            if not rows:
                return sent
            for row in rows:
                cursor = (row.bucket, row.key)
                v = stamps.decode(row.stamp)
                if v is None:
                    continue
                ev = await self._pusher.event_for(row.bucket, row.key, v)
                if ev is None:
                    continue
                key, version_id = split_item(row.key)
                for target in after.replicas(row.bucket, key):
                    if not self._topology.live(target):
                        continue
                    try:
                        if await self._has(target, row.bucket, key, version_id, v):
                            continue
                        if await self._pusher.push(target, ev) is None:
                            break
                        sent += 1
                    except (TransportError, OSError) as e:
                        log.warning("hand-off of %s/%s to %s failed: %s", row.bucket, key,
                                    target, e)

    async def _has(self, target: str, bucket: str, key: str, version_id: str | None,
                   v: ObjectVersion) -> bool:
        head = await self._peers.call(target, HeadObject(bucket=bucket, key=key,
                                                         version_id=version_id))
        theirs = stamps.decode(head.stamp)
        return theirs is not None and (theirs.same_write(v) or theirs.vector.dominates(v.vector))
