"""Graceful leave: before a node goes, every object it holds (and every tombstone) is offered to the
replica set it will have without this node. Each target is asked for its stamp first, so what it
already has is not sent again; applying is idempotent either way.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import stamps
from .events import DeleteObject, PutObject, ReplicationEvent
from .membership import NodeState
from .placement import Placement
from .transport import TransportError

if TYPE_CHECKING:
    from .node import ClusterNode

log = logging.getLogger("rs3gw.cluster.handoff")

SCAN_PAGE = 500


async def hand_off(node: ClusterNode) -> int:
    """Returns the number of copies sent."""
    remaining = [m.node_id for m in node.membership.members()
                 if m.node_id != node.node_id and m.state is not NodeState.LEAVING]
    if not remaining:
        return 0
    after = Placement(node.factor, remaining)
    sent = 0
    cursor = ("", "")
    while True:
        rows = await node.store.list_stamps("object", cursor, SCAN_PAGE)
        if not rows:
            break
        for bucket, key, blob, _tomb in rows:
            cursor = (bucket, key)
            v = stamps.decode(blob)
            if v is None:
                continue
            ev = await event_for(node, bucket, key, v)
            if ev is None:
                continue
            for target in after.replicas(bucket, key):
                if not node.live(target):
                    continue
                try:
                    if await _has(node, target, bucket, key, v):
                        continue
                    if not await push_event(node, target, ev):
                        break
                    sent += 1
                except (TransportError, OSError) as e:
                    log.warning("hand-off of %s/%s to %s failed: %s", bucket, key, target, e)
    log.info("leave: handed off %d object copies", sent)
    return sent


async def push_event(node: ClusterNode, target: str, ev: ReplicationEvent) -> bool:
    """Send one event this node holds (with the object's bytes for a PutObject) to ``target``;
    False if the local copy changed meanwhile (nothing was sent). Transport errors propagate."""
    if isinstance(ev, PutObject) and ev.meta.size:
        src = await node._local_source(ev)
        if src is None:
            return False
        meta, reader = src
        try:
            await node.call(target, "rep.apply", {"ev": ev.encode()}, stream=reader,
                            stream_length=meta.size)
        finally:
            close = getattr(reader, "aclose", None)
            if close is not None:
                await close()
        node.stats.sent(meta.size)
    else:
        await node.call(target, "rep.apply", {"ev": ev.encode()})
    return True


async def _has(node: ClusterNode, target: str, bucket: str, key: str, v: object) -> bool:
    reply = await node.call(target, "rep.head", {"b": bucket, "k": key})
    theirs = stamps.decode(reply.body.get("stamp"))
    assert hasattr(v, "vector")
    return theirs is not None and (theirs.same_write(v) or  # type: ignore[arg-type]
                                   theirs.vector.dominates(v.vector))


async def event_for(node: ClusterNode, bucket: str, key: str, v: object) -> ReplicationEvent | None:
    from .versions import ObjectVersion
    assert isinstance(v, ObjectVersion)
    if v.tombstone:
        return DeleteObject(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created,
                            object_key=key)
    meta, _ = await node.store.lookup_versioned(bucket, key)
    if meta is None:
        return None
    return PutObject(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created, meta=meta)
