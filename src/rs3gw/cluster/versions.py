"""Version vectors and the version stamp every replicated item carries.

A version vector maps node id -> counter: the number of writes to this item the version has seen
from each node (absent = 0). Comparing two vectors tells whether one version saw the other
(BEFORE/AFTER), they are the same (EQUAL), or neither saw the other (CONCURRENT: a conflict).

How a node stamps a local write: ``new = stored.vector.increment(self_node_id)`` where stored is the
item's current version (tombstones included; an empty vector when there is none). Incrementing the
stored vector, never a fresh one, is what makes a causal overwrite dominate what it overwrote.

ObjectVersion is the whole stamp of one version of one item: vector, HLC timestamp, origin node,
etag, tombstone flag, and the HLC of the write that created the item's lineage (``created``: the
first-write-wins strategy ranks by it; a write over a stored version, tombstone included, inherits
the stored ``created``; only a write over nothing starts a new lineage with its own HLC).
"""
from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .hlc import NODE_ID_BYTES_MAX, HLCTimestamp

COUNTER_MAX = (1 << 63) - 1
# Entries accepted from the wire: one per node that ever wrote the item, far above any cluster
# this gateway targets. Locally built vectors are bounded by the membership size.
VECTOR_ENTRIES_MAX = 1024


class VersionDecodeError(ValueError):
    """A version vector or stamp from the wire is malformed."""


class Ordering(enum.Enum):
    """How version a relates to version b (``a.compare(b)``)."""
    BEFORE = "before"           # b saw a: a is dominated
    AFTER = "after"             # a saw b: a dominates
    EQUAL = "equal"
    CONCURRENT = "concurrent"   # neither saw the other


def _check_node(node: Any) -> str:
    if not isinstance(node, str) or not node \
            or len(node.encode("utf-8", "surrogatepass")) > NODE_ID_BYTES_MAX:
        raise ValueError(f"version vector node id must be 1..{NODE_ID_BYTES_MAX} bytes: {node!r}")
    return node


def _check_counter(n: Any) -> int:
    if type(n) is not int or not 0 <= n <= COUNTER_MAX:
        raise ValueError(f"version vector counter out of range: {n!r}")
    return n


class VersionVector(Mapping[str, int]):
    """Immutable {node_id: counter}; zero counters are dropped, so equal histories compare equal."""

    __slots__ = ("_d", "_hash")

    def __init__(self, entries: Mapping[str, int] | Iterable[tuple[str, int]] = ()) -> None:
        items = entries.items() if isinstance(entries, Mapping) else entries
        d: dict[str, int] = {}
        for node, n in items:
            if node in d:
                raise ValueError(f"version vector names node {node!r} twice")
            if _check_counter(n):
                d[_check_node(node)] = n
        self._d = d
        self._hash: int | None = None

    # Mapping: vv[node] raises KeyError for an absent node, like a dict; counter() reads 0.
    def __getitem__(self, node: str) -> int:
        return self._d[node]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VersionVector):
            return self._d == other._d
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._d.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"VersionVector({dict(sorted(self._d.items()))!r})"

    def counter(self, node: str) -> int:
        return self._d.get(node, 0)

    def increment(self, node: str) -> VersionVector:
        n = self._d.get(_check_node(node), 0)
        if n >= COUNTER_MAX:
            raise OverflowError(f"version vector counter of {node!r} is at its maximum")
        out = dict(self._d)
        out[node] = n + 1
        return VersionVector(out)

    def merge(self, other: VersionVector) -> VersionVector:
        """The least vector that dominates (or equals) both: the entry-wise maximum."""
        out = dict(self._d)
        for node, n in other._d.items():
            if n > out.get(node, 0):
                out[node] = n
        return VersionVector(out)

    def dominates(self, other: VersionVector) -> bool:
        """self saw everything other saw (AFTER or EQUAL)."""
        d = self._d
        return all(d.get(node, 0) >= n for node, n in other._d.items())

    def compare(self, other: VersionVector) -> Ordering:
        ge = self.dominates(other)
        le = other.dominates(self)
        if ge and le:
            return Ordering.EQUAL
        if ge:
            return Ordering.AFTER
        if le:
            return Ordering.BEFORE
        return Ordering.CONCURRENT

    def sort_key(self) -> tuple[tuple[str, int], ...]:
        """A canonical form, for deterministic tie-breaks between versions."""
        return tuple(sorted(self._d.items()))

    def encode(self) -> dict[str, int]:
        """msgpack-ready: a map node -> counter (zero entries are never present)."""
        return dict(self._d)

    @classmethod
    def decode(cls, obj: Any) -> VersionVector:
        if not isinstance(obj, dict):
            raise VersionDecodeError(f"version vector must be a map, got {type(obj).__name__}")
        if len(obj) > VECTOR_ENTRIES_MAX:
            raise VersionDecodeError(f"version vector has {len(obj)} entries, the limit is {VECTOR_ENTRIES_MAX}")
        return cls(obj)


EMPTY = VersionVector()


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """The version stamp of one version of one replicated item (an object, a bucket, a bucket
    configuration document)."""
    vector: VersionVector
    hlc: HLCTimestamp
    origin: str                         # node that made the write
    etag: str = ""
    tombstone: bool = False
    created: HLCTimestamp | None = None  # lineage start (see module doc); None: this write's hlc

    def __post_init__(self) -> None:
        if self.created == self.hlc:    # one spelling per stamp: equal stamps compare equal
            object.__setattr__(self, "created", None)

    @property
    def lineage(self) -> HLCTimestamp:
        return self.hlc if self.created is None else self.created

    def same_write(self, other: ObjectVersion) -> bool:
        """Both stamps describe the same write (its vector may since have been merged)."""
        return (self.hlc, self.origin, self.etag, self.tombstone, self.lineage) == \
            (other.hlc, other.origin, other.etag, other.tombstone, other.lineage)

    def order_key(self) -> tuple[Any, ...]:
        """A total order over versions, identical on every node: HLC, then origin node, then etag,
        then whatever is left (tombstone, vector, lineage) so no two distinct stamps tie."""
        return (self.hlc, self.origin, self.etag, self.tombstone, self.vector.sort_key(), self.lineage)

    def successor(self, node_id: str, hlc: HLCTimestamp, etag: str = "",
                  tombstone: bool = False) -> ObjectVersion:
        """The stamp of a local write over this version (tombstones included)."""
        return ObjectVersion(self.vector.increment(node_id), hlc, node_id, etag, tombstone, self.lineage)

    @staticmethod
    def first(node_id: str, hlc: HLCTimestamp, etag: str = "", tombstone: bool = False) -> ObjectVersion:
        """The stamp of a local write over nothing: a new lineage."""
        return ObjectVersion(EMPTY.increment(node_id), hlc, node_id, etag, tombstone)

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {"vv": self.vector.encode(), "t": self.hlc.encode(), "o": self.origin}
        if self.etag:
            out["e"] = self.etag
        if self.tombstone:
            out["x"] = True
        if self.created is not None:
            out["c"] = self.created.encode()
        return out

    @classmethod
    def decode(cls, obj: Any) -> ObjectVersion:
        if not isinstance(obj, dict):
            raise VersionDecodeError(f"object version must be a map, got {type(obj).__name__}")
        try:
            etag, tomb = obj.get("e", ""), obj.get("x", False)
            if not isinstance(etag, str) or not isinstance(tomb, bool):
                raise VersionDecodeError("object version: bad etag or tombstone flag")
            created = HLCTimestamp.decode(obj["c"]) if "c" in obj else None
            return cls(VersionVector.decode(obj["vv"]), HLCTimestamp.decode(obj["t"]),
                       _check_node(obj["o"]), etag, tomb, created)
        except KeyError as e:
            raise VersionDecodeError(f"object version: missing field {e}") from e
