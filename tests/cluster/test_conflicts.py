"""Conflict resolution: dominated versions lose, concurrent ones resolve deterministically and
symmetrically under every strategy, counters count, custom resolvers load once and are checked."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rs3gw.cluster.conflicts import (
    ConflictConfigError,
    ConflictResolver,
    Strategy,
    load_resolver,
)
from rs3gw.cluster.hlc import HLCTimestamp
from rs3gw.cluster.versions import ObjectVersion, Ordering, VersionVector

CALLS: list[tuple[ObjectVersion, ObjectVersion]] = []


def keep_smaller_etag(a: ObjectVersion, b: ObjectVersion) -> ObjectVersion:
    """A custom resolver: the version with the smaller etag, vectors merged."""
    CALLS.append((a, b))
    win = min((a, b), key=lambda v: (v.etag, v.order_key()))
    return ObjectVersion(a.vector.merge(b.vector), win.hlc, win.origin, win.etag, win.tombstone, win.created)


def broken(a: ObjectVersion, b: ObjectVersion) -> ObjectVersion:
    raise RuntimeError("boom")


def invents_a_version(a: ObjectVersion, b: ObjectVersion) -> ObjectVersion:
    return ObjectVersion(a.vector.merge(b.vector), a.hlc, a.origin, "not-either", a.tombstone)


def drops_the_vector(a: ObjectVersion, b: ObjectVersion) -> ObjectVersion:
    return ObjectVersion(VersionVector(), b.hlc, b.origin, b.etag, b.tombstone, b.created)


CUSTOM = f"{__name__}:keep_smaller_etag"

nodes = st.sampled_from(["a", "b", "c"])
stamps = st.builds(HLCTimestamp, st.integers(0, 3), st.integers(0, 2), nodes)
versions = st.builds(ObjectVersion,
                     st.dictionaries(nodes, st.integers(0, 3)).map(VersionVector),
                     stamps, nodes, st.sampled_from(["", "e1", "e2"]), st.booleans(),
                     st.one_of(st.none(), stamps))


def resolvers() -> list[ConflictResolver]:
    return [ConflictResolver(Strategy.LAST_WRITE_WINS), ConflictResolver(Strategy.FIRST_WRITE_WINS),
            ConflictResolver(Strategy.VECTOR_CLOCK_MERGE), ConflictResolver(Strategy.CUSTOM, custom=CUSTOM)]


@given(a=versions, b=versions)
def test_resolution_is_symmetric_for_every_strategy(a: ObjectVersion, b: ObjectVersion) -> None:
    for r in resolvers():
        ab, ba = r.resolve(a, b), r.resolve(b, a)
        assert ab == ba, r.strategy
        order = a.vector.compare(b.vector)
        if order is Ordering.AFTER:
            assert ab.winner is a and not ab.conflict
        elif order is Ordering.BEFORE:
            assert ab.winner is b and not ab.conflict
        elif ab.conflict:
            # the result is one of the two writes, and it stays at least as new as that write.
            # Both inputs can name the same write (same HLC, origin and ETag) with different
            # vectors: the winner then only has to be that write at least as new as one of them.
            assert any(ab.winner.same_write(src) and ab.winner.vector.dominates(src.vector)
                       for src in (a, b))


@given(a=versions, node=nodes, etag=st.sampled_from(["", "x"]), tomb=st.booleans())
def test_a_dominated_version_always_loses(a: ObjectVersion, node: str, etag: str, tomb: bool) -> None:
    # Even with an older HLC and an older lineage: causality beats every strategy.
    newer = ObjectVersion(a.vector.increment(node), HLCTimestamp(0, 0, "a"), node, etag, tomb,
                          HLCTimestamp(0, 0, "a"))
    for r in resolvers():
        for x, y in ((a, newer), (newer, a)):
            res = r.resolve(x, y)
            assert res.winner is newer and not res.conflict
        assert sum(r.stats.conflicts_total.values()) == 0


def _pair() -> tuple[ObjectVersion, ObjectVersion]:
    base = VersionVector({"a": 1})
    early = ObjectVersion(base.increment("b"), HLCTimestamp(100, 0, "b"), "b", "e-early",
                          created=HLCTimestamp(5, 0, "a"))
    late = ObjectVersion(base.increment("c"), HLCTimestamp(200, 0, "c"), "c", "e-late",
                         created=HLCTimestamp(50, 0, "c"))
    return early, late


def test_last_write_wins_keeps_the_later_write_as_written() -> None:
    early, late = _pair()
    r = ConflictResolver("last_write_wins")
    res = r.resolve(early, late)
    assert res.winner is late and res.conflict and res.strategy is Strategy.LAST_WRITE_WINS
    assert r.stats.snapshot()["conflicts_total"] == {**{s.value: 0 for s in Strategy}, "last_write_wins": 1}
    assert r.stats.resolved_total["last_write_wins"] == 1


def test_total_order_tie_breaks_hlc_then_node_then_etag() -> None:
    r = ConflictResolver("last_write_wins")
    va, vb = VersionVector({"a": 1}), VersionVector({"b": 1})
    t = HLCTimestamp(100, 3, "a")
    # equal physical time: the logical counter decides, then the HLC's node id
    assert r.resolve(ObjectVersion(va, t, "a"), ObjectVersion(vb, HLCTimestamp(100, 4, "a"), "b")).winner.origin == "b"
    assert r.resolve(ObjectVersion(va, HLCTimestamp(100, 3, "b"), "a"),
                     ObjectVersion(vb, t, "b")).winner.origin == "a"
    # same HLC (only a bug or a forged stamp gets here): origin, then etag
    assert r.resolve(ObjectVersion(va, t, "a"), ObjectVersion(vb, t, "b")).winner.origin == "b"
    assert r.resolve(ObjectVersion(va, t, "a", "x"), ObjectVersion(vb, t, "a", "y")).winner.etag == "y"


def test_first_write_wins_keeps_the_older_lineage() -> None:
    early, late = _pair()
    r = ConflictResolver("first_write_wins")
    assert r.resolve(late, early).winner is early
    # within one lineage (concurrent overwrites of the same object), the later overwrite
    same = ObjectVersion(late.vector, late.hlc, late.origin, late.etag, created=early.created)
    assert r.resolve(early, same).winner is same


def test_vector_clock_merge_result_dominates_both() -> None:
    early, late = _pair()
    r = ConflictResolver("vector_clock_merge")
    res = r.resolve(early, late)
    assert res.winner.same_write(late)
    assert res.winner.vector == early.vector.merge(late.vector)
    assert res.winner.vector.compare(early.vector) is Ordering.AFTER
    assert res.winner.vector.compare(late.vector) is Ordering.AFTER
    # the loser delivered again is now dominated: skipped, not a second conflict
    again = r.resolve(res.winner, early)
    assert again.winner is res.winner and not again.conflict
    assert r.stats.conflicts_total["vector_clock_merge"] == 1


def test_equal_vectors_on_different_writes_still_resolve_deterministically() -> None:
    v = VersionVector({"a": 2})
    x = ObjectVersion(v, HLCTimestamp(1, 0, "a"), "a", "x")
    y = ObjectVersion(v, HLCTimestamp(2, 0, "a"), "a", "y")
    r = ConflictResolver("last_write_wins")
    assert r.resolve(x, y).winner is y and r.resolve(y, x).winner is y and r.resolve(x, y).conflict
    assert not r.resolve(x, x).conflict


def test_custom_resolver_is_loaded_once_and_called_in_total_order() -> None:
    assert load_resolver(CUSTOM) is keep_smaller_etag
    assert load_resolver(f"{__name__}.keep_smaller_etag") is keep_smaller_etag
    assert load_resolver(CUSTOM) is load_resolver(CUSTOM)
    early, late = _pair()
    CALLS.clear()
    r = ConflictResolver("custom", custom=CUSTOM)
    assert r.resolve(late, early).winner.same_write(early)          # "e-early" < "e-late"
    assert CALLS == [(early, late)]                                  # lower in the total order first
    assert r.stats.conflicts_total["custom"] == 1 and r.stats.resolved_total["custom"] == 1


@pytest.mark.parametrize("bad", [broken, invents_a_version, drops_the_vector])
def test_a_failing_custom_resolver_falls_back_to_last_write_wins(bad: object) -> None:
    early, late = _pair()
    r = ConflictResolver("custom", custom=bad)  # type: ignore[arg-type]
    res = r.resolve(early, late)
    assert res.winner is late and res.strategy is Strategy.LAST_WRITE_WINS
    assert r.stats.resolver_errors_total == 1
    assert r.stats.conflicts_total["custom"] == 1 and r.stats.resolved_total["last_write_wins"] == 1


@pytest.mark.parametrize(("strategy", "custom", "message"), [
    ("newest", None, "unknown conflict resolution strategy"),
    ("custom", None, "with, and only with"),
    ("last_write_wins", CUSTOM, "with, and only with"),
    ("custom", "no_such_module_rs3gw:f", "cannot be loaded"),
    ("custom", f"{__name__}:missing", "cannot be loaded"),
    ("custom", f"{__name__}:CALLS", "not callable"),
    ("custom", "nodots", "expected pkg.module:function"),
])
def test_bad_configuration_is_refused_clearly(strategy: str, custom: str | None, message: str) -> None:
    with pytest.raises(ConflictConfigError, match=message):
        ConflictResolver(strategy, custom=custom)
