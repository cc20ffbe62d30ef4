"""Tombstone garbage collection, driven by the node that coordinated the delete.

A delete leaves a tombstone stamp on every replica so that an older write arriving late (from a
queue, a hand-off) cannot bring the object back. The coordinator's queue tracks who holds each
tombstone (direct commits and queued deliveries both ack). Once every node of the object's
replica set holds it, the coordinator asks each of them to drop it (rep.gc, only if their stamp
is still that very tombstone), then drops its own and forgets it. A replica that cannot be reached
keeps the tombstone until a later round.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING

from . import stamps
from .transport import TransportError

if TYPE_CHECKING:
    from .node import ClusterNode

log = logging.getLogger("rs3gw.cluster.tombstones")

GC_BATCH = 500


def _matches(blob: bytes, *, eid_key: bytes) -> bool:
    return is_tombstone_of(blob, eid_key)


def is_tombstone_of(blob: bytes, eid_key: bytes) -> bool:
    v = stamps.decode(blob)
    return v is not None and v.tombstone and v.hlc.sort_key() == eid_key


async def collect(node: ClusterNode) -> int:
    """One round; returns the number of tombstones collected everywhere."""
    q = node.queue
    if q is None:
        return 0
    me = node.node_id
    ready = await q.collectable_tombstones(
        lambda b, k: set(node.replicas(b, k)) | {me}, limit=GC_BATCH)
    done = []
    for t in ready:
        eid = t.event_id.sort_key()
        ok = True
        for n in node.replicas(t.bucket, t.key):
            if n == me:
                continue
            try:
                await node.call(n, "rep.gc", {"b": t.bucket, "k": t.key, "eid": eid})
            except (TransportError, OSError) as e:
                log.debug("tombstone gc of %s/%s on %s: %s", t.bucket, t.key, n, e)
                ok = False
        if ok:
            await node.store.forget_stamp("object", t.bucket, t.key,
                                          functools.partial(_matches, eid_key=eid))
            done.append(t.event_id)
    if done:
        await q.forget_tombstones(done)
    return len(done)


async def gc_loop(node: ClusterNode) -> None:
    while True:
        await asyncio.sleep(node.cfg.tombstone_gc_interval_s)
        try:
            n = await collect(node)
            if n:
                log.debug("collected %d tombstones", n)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("tombstone garbage collection failed")
