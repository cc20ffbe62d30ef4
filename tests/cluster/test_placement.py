"""Rendezvous placement: deterministic, ordered, spread, and stable under membership changes."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rs3gw.cluster.placement import Placement, replica_set, score

node_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
node_sets = st.sets(node_ids, min_size=1, max_size=12)
keys = st.lists(st.tuples(st.text(min_size=3, max_size=20), st.text(max_size=60)), min_size=1, max_size=40)


@given(nodes=node_sets, rf=st.integers(1, 5), objs=keys)
def test_replica_sets_are_ordered_distinct_and_deterministic(nodes: set[str], rf: int,
                                                            objs: list[tuple[str, str]]) -> None:
    p = Placement(rf, nodes)
    # A different insertion order gives the same answers: every node computes the same sets.
    q = Placement(rf, sorted(nodes, reverse=True))
    for bucket, key in objs:
        r = p.replicas(bucket, key)
        assert r == q.replicas(bucket, key) == replica_set(bucket, key, nodes, rf)
        assert len(r) == min(rf, len(nodes)) and len(set(r)) == len(r) and set(r) <= nodes
        scores = [score(n, bucket, key) for n in r]
        assert scores == sorted(scores, reverse=True)
        # The set for rf is a prefix of the set for rf + 1 (the order is one ranking).
        assert Placement(rf + 1, nodes).replicas(bucket, key)[:rf] == r


@given(nodes=st.sets(node_ids, min_size=2, max_size=10), new=node_ids, rf=st.integers(1, 4), objs=keys)
def test_adding_a_node_moves_only_keys_that_now_include_it(nodes: set[str], new: str, rf: int,
                                                          objs: list[tuple[str, str]]) -> None:
    if new in nodes:
        return
    before, after = Placement(rf, nodes), Placement(rf, nodes | {new})
    for bucket, key in objs:
        a, b = before.replicas(bucket, key), after.replicas(bucket, key)
        if new in b:
            # The newcomer took one slot; everyone else keeps its relative order.
            assert [n for n in b if n != new] == a[:len(b) - 1]
        else:
            assert a == b


@given(nodes=st.sets(node_ids, min_size=2, max_size=10), rf=st.integers(1, 4), objs=keys, data=st.data())
def test_removing_a_node_moves_only_keys_that_included_it(nodes: set[str], rf: int,
                                                         objs: list[tuple[str, str]],
                                                         data: st.DataObject) -> None:
    gone = data.draw(st.sampled_from(sorted(nodes)))
    before, after = Placement(rf, nodes), Placement(rf, nodes - {gone})
    for bucket, key in objs:
        a, b = before.replicas(bucket, key), after.replicas(bucket, key)
        if gone in a:
            # Survivors keep their places; the next-ranked node fills the end.
            assert b[:len(a) - 1] == [n for n in a if n != gone]
        else:
            assert a == b


def test_keys_spread_over_nodes() -> None:
    nodes = [f"node-{i}" for i in range(5)]
    p = Placement(2, nodes)
    primaries = Counter(p.replicas("bucket", f"obj/{i}")[0] for i in range(5000))
    assert set(primaries) == set(nodes)
    assert min(primaries.values()) > 5000 / 5 * 0.8     # ~1000 each; far from a skewed hash


def test_fields_are_not_concatenated_ambiguously() -> None:
    assert score("n", "ab", "c") != score("n", "a", "bc")
    assert score("n", "a", "b\x00c") != score("n", "a", "b")


def test_empty_and_bad_inputs() -> None:
    assert Placement(2).replicas("b", "k") == []
    with pytest.raises(ValueError):
        Placement(0)
    p = Placement(2, ["a", "b", "c"])
    p.update(["a", "b"])
    assert p.nodes == ["a", "b"]
