"""Version vectors: compare/merge laws, increment, encoding; the ObjectVersion stamp."""
from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rs3gw.cluster.hlc import HLCTimestamp
from rs3gw.cluster.versions import (
    EMPTY,
    VECTOR_ENTRIES_MAX,
    ObjectVersion,
    Ordering,
    VersionDecodeError,
    VersionVector,
)

vectors = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 4)).map(VersionVector)
FLIP = {Ordering.BEFORE: Ordering.AFTER, Ordering.AFTER: Ordering.BEFORE,
        Ordering.EQUAL: Ordering.EQUAL, Ordering.CONCURRENT: Ordering.CONCURRENT}


@given(a=vectors, b=vectors)
def test_compare_is_antisymmetric_and_equal_means_equal(a: VersionVector, b: VersionVector) -> None:
    assert b.compare(a) is FLIP[a.compare(b)]
    assert (a.compare(b) is Ordering.EQUAL) == (a == b)
    assert a.compare(a) is Ordering.EQUAL
    if a == b:
        assert hash(a) == hash(b)


@given(a=vectors, b=vectors, c=vectors)
def test_merge_is_a_join(a: VersionVector, b: VersionVector, c: VersionVector) -> None:
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a
    m = a.merge(b)
    assert m.dominates(a) and m.dominates(b)
    # the least such vector: anything dominating both dominates the merge
    if c.dominates(a) and c.dominates(b):
        assert c.dominates(m)
    if a.dominates(b) and b.dominates(c):
        assert a.dominates(c)


@given(a=vectors, node=st.sampled_from(["a", "b", "e"]))
def test_increment_is_strictly_after(a: VersionVector, node: str) -> None:
    n = a.increment(node)
    assert n.compare(a) is Ordering.AFTER
    assert n.counter(node) == a.counter(node) + 1
    assert a.increment("a").merge(a.increment("b")).compare(a.increment("a")) is Ordering.AFTER
    assert a.increment("a").compare(a.increment("b")) is Ordering.CONCURRENT


@given(a=vectors)
def test_encoding_round_trips(a: VersionVector) -> None:
    wire = msgpack.packb(a.encode(), use_bin_type=True)
    assert VersionVector.decode(msgpack.unpackb(wire, raw=False)) == a
    assert 0 not in a.encode().values()


def test_zero_entries_are_dropped_and_absent_reads_zero() -> None:
    v = VersionVector({"a": 0, "b": 2})
    assert v == VersionVector({"b": 2}) and len(v) == 1 and v.counter("a") == 0
    with pytest.raises(KeyError):
        v["a"]


@pytest.mark.parametrize("bad", [[("a", 1)], {"a": -1}, {"a": True}, {"a": 1.0}, {"": 1}, {1: 1},
                                 {"x" * 200: 1}, {f"n{i}": 1 for i in range(VECTOR_ENTRIES_MAX + 1)}])
def test_bad_vectors_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        VersionVector.decode(bad)


def test_object_version_stamps() -> None:
    t1, t2 = HLCTimestamp(10, 0, "a"), HLCTimestamp(20, 0, "b")
    first = ObjectVersion.first("a", t1, "e1")
    assert first.vector == EMPTY.increment("a") and first.lineage == t1 and first.created is None
    over = first.successor("b", t2, "e2")
    assert over.vector.compare(first.vector) is Ordering.AFTER
    assert over.lineage == t1 and over.origin == "b"
    tomb = over.successor("a", HLCTimestamp(30, 0, "a"), tombstone=True)
    for v in (first, over, tomb):
        assert ObjectVersion.decode(msgpack.unpackb(msgpack.packb(v.encode()), raw=False)) == v
    assert ObjectVersion(first.vector, t1, "a", "e1", created=t1) == first     # one spelling per stamp
    with pytest.raises(VersionDecodeError):
        ObjectVersion.decode({"vv": {}, "t": t1.encode()})
