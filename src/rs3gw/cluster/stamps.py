"""Version stamps as the storage engine keeps them (opaque bytes in table item_versions), and the
two things the cluster does with them: stamp a new local write, and judge an incoming one.
``Stamper`` holds this node's clock and conflict rules and does both.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import msgpack

from rs3gw.storage import NULL_VERSION, Judge, ObjectMeta, Verdict

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


def judge(incoming: ReplicationEvent | ObjectVersion, resolver: ConflictResolver) -> Judge:
    """The storage Judge for ``incoming``: events.decide over the stored stamp."""
    def run(local_blob: bytes | None) -> Verdict:
        d = decide(decode(local_blob), incoming, resolver)
        if d.action is Action.SKIP or not d.changed or d.version is None:
            return Verdict(False, None)
        return Verdict(d.incoming_data, encode(d.version), d.version.tombstone)
    return run


def version_seq(v: ObjectVersion) -> bytes:
    """Where the version a write makes sorts among its key's versions, the same on every node:
    its HLC (8 bytes, the layout storage's own version ids use) then 8 bytes of its origin
    node, so that two nodes' writes in one millisecond never collide. Its hex is the version id
    of a write to an Enabled bucket: unique cluster-wide and ordered by the write's clock."""
    order = (v.hlc.physical_ms << 16) | min(v.hlc.logical, 0xFFFF)
    return order.to_bytes(8, "big") + hashlib.blake2b(v.origin.encode("utf-8", "surrogatepass"),
                                                      digest_size=8).digest()


def name_version(meta: ObjectMeta, v: ObjectVersion, mode: str | None) -> bytes:
    """A write to a bucket with versioning state ``mode`` makes a version: its id (Enabled) or
    "null" (Suspended) and its place among the key's versions come from the write's stamp, so
    every replica names and orders it alike and two nodes' concurrent writes are two versions.
    Returns the seq (b"" and nothing named for an unversioned bucket)."""
    if mode is None:
        return b""
    seq = version_seq(v)
    meta.version_id = seq.hex() if mode == "Enabled" else NULL_VERSION
    return seq


def with_etag(v: ObjectVersion, etag: str) -> ObjectVersion:
    return ObjectVersion(v.vector, v.hlc, v.origin, etag, v.tombstone, v.created)


def same_write_as(v: ObjectVersion) -> Callable[[bytes], bool]:
    """A StampTest: the stored stamp is this very write (whatever its vector became by merges)."""
    def test(blob: bytes) -> bool:
        stored = decode(blob)
        return stored is not None and stored.same_write(v)
    return test


def is_tombstone_of(blob: bytes, event_key: bytes) -> bool:
    v = decode(blob)
    return v is not None and v.tombstone and v.hlc.sort_key() == event_key


class Stamper:
    """This node's clock and conflict rules. Conflicts are counted where a write is applied
    (``resolver``); picking the newest copy to serve a read uses the same rule with a resolver of
    its own, so reads do not count as conflicts."""

    def __init__(self, node_id: str, clock: HybridClock, resolver: ConflictResolver,
                 read_resolver: ConflictResolver) -> None:
        self.node_id = node_id
        self.clock = clock
        self.resolver = resolver
        self.read_resolver = read_resolver

    def stamp(self, known: Iterable[ObjectVersion | None], *, etag: str = "",
              tombstone: bool = False) -> ObjectVersion:
        """A write made here over everything known of the item (see local_write)."""
        return local_write(self.clock, self.node_id, known, etag=etag, tombstone=tombstone)

    def judge(self, incoming: ReplicationEvent | ObjectVersion) -> Judge:
        return judge(incoming, self.resolver)

    def newest(self, versions: Iterable[ObjectVersion | None]) -> ObjectVersion | None:
        return newest(versions, self.read_resolver)
