"""Version stamps as the storage engine keeps them (opaque bytes in table item_versions), and the
two things the cluster does with them: stamp a new local write, and judge an incoming one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import msgpack

from rs3gw.storage.versioned import Verdict

from .conflicts import ConflictResolver
from .events import Action, ReplicationEvent, decide
from .hlc import ClockDriftError, HybridClock
from .versions import ObjectVersion, VersionVector


def encode(v: ObjectVersion) -> bytes:
    out: bytes = msgpack.packb(v.encode(), use_bin_type=True)
    return out


def decode(blob: bytes | None) -> ObjectVersion | None:
    if blob is None:
        return None
    return ObjectVersion.decode(msgpack.unpackb(blob, raw=False))


def newest(versions: Iterable[ObjectVersion | None], resolver: ConflictResolver) -> ObjectVersion | None:
    """The version every node would end with given these (the resolver decides concurrent ones)."""
    best: ObjectVersion | None = None
    for v in versions:
        if v is None:
            continue
        if best is None:
            best = v
        elif not best.same_write(v):
            best = resolver.resolve(best, v).winner
    return best


def local_write(clock: HybridClock, node_id: str, known: Iterable[ObjectVersion | None], *,
                etag: str = "", tombstone: bool = False) -> ObjectVersion:
    """The stamp of a write made here over everything this node knows of the item (its own
    version and what the replicas reported): it dominates all of them, so a sequential write
    through any node never counts as a conflict with the one before it."""
    seen = [v for v in known if v is not None]
    for v in seen:
        try:
            clock.update(v.hlc)
        except ClockDriftError:
            pass        # a peer far ahead: our stamp stays ours; the vector still orders it
    hlc = clock.now()
    if not seen:
        return ObjectVersion.first(node_id, hlc, etag, tombstone)
    merged = VersionVector()
    for v in seen:
        merged = merged.merge(v.vector)
    base = max(seen, key=lambda v: v.order_key())
    return ObjectVersion(merged.increment(node_id), hlc, node_id, etag, tombstone, base.lineage)


def judge(incoming: ReplicationEvent | ObjectVersion, resolver: ConflictResolver,
          ) -> Callable[[bytes | None], Verdict]:
    """The ``decide`` for LocalStore.apply_versioned: events.decide over the stored stamp."""
    def run(local_blob: bytes | None) -> Verdict:
        d = decide(decode(local_blob), incoming, resolver)
        if d.action is Action.SKIP or not d.changed or d.version is None:
            return Verdict(False, None)
        return Verdict(d.incoming_data, encode(d.version), d.version.tombstone)
    return run


def with_etag(v: ObjectVersion, etag: str) -> ObjectVersion:
    return ObjectVersion(v.vector, v.hlc, v.origin, etag, v.tombstone, v.created)
