"""Hybrid logical clock: total order, encoding, the HLC update rules, bounded drift."""
from __future__ import annotations

import itertools

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rs3gw.cluster.hlc import LOGICAL_MAX, ClockDriftError, HLCTimestamp, HybridClock

nodes = st.sampled_from(["a", "b", "node-3", "z\u00e9"])
stamps = st.builds(HLCTimestamp, st.integers(0, 2**50), st.integers(0, LOGICAL_MAX), nodes)


class FakeWall:
    def __init__(self, ms: int = 1_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@given(a=stamps, b=stamps)
def test_order_is_total_and_sort_key_agrees(a: HLCTimestamp, b: HLCTimestamp) -> None:
    assert (a < b) + (a == b) + (a > b) == 1
    assert (a < b) == ((a.physical_ms, a.logical, a.node_id) < (b.physical_ms, b.logical, b.node_id))
    assert (a.sort_key() < b.sort_key()) == (a < b)
    assert HLCTimestamp.from_sort_key(a.sort_key()) == a


@given(a=stamps)
def test_encoding_round_trips_through_msgpack(a: HLCTimestamp) -> None:
    wire = msgpack.packb(a.encode(), use_bin_type=True)
    assert HLCTimestamp.decode(msgpack.unpackb(wire, raw=False)) == a
    assert len(wire) <= 1 + 9 + 5 + 1 + len(a.node_id.encode())


@pytest.mark.parametrize("bad", [None, [1, 2], [1, 2, 3], [-1, 0, "a"], [1, -1, "a"], [1, 2**32, "a"],
                                 [1, 0, ""], [True, 0, "a"], [1.5, 0, "a"], {"p": 1}])
def test_bad_encodings_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        HLCTimestamp.decode(bad)


def test_now_is_strictly_increasing_whatever_the_wall_clock_does() -> None:
    wall = FakeWall()
    clock = HybridClock("a", wall_ms=wall)
    seen = [clock.now()]
    for step in [0, 0, 5, -3, -1000, 0, 2000, -1, 1]:
        wall.ms += step
        seen.append(clock.now())
    assert all(x < y for x, y in itertools.pairwise(seen))
    assert seen[1] == HLCTimestamp(1_000_000, 1, "a")     # same millisecond: the counter moves
    assert seen[3].physical_ms == 1_000_005 and seen[3].logical == 0


def test_update_moves_past_the_remote_and_the_past() -> None:
    wall = FakeWall()
    clock = HybridClock("a", wall_ms=wall)
    mine = clock.now()
    remote = HLCTimestamp(wall.ms + 100, 7, "b")      # ahead, within the drift bound
    got = clock.update(remote)
    assert got > remote and got > mine and got == HLCTimestamp(wall.ms + 100, 8, "a")
    assert clock.now() > got                          # the wall clock is still behind: logical


def test_remote_too_far_ahead_is_refused_and_changes_nothing() -> None:
    wall = FakeWall()
    clock = HybridClock("a", max_drift_ms=500, wall_ms=wall)
    before = clock.now()
    far = HLCTimestamp(wall.ms + 501, 0, "b")
    with pytest.raises(ClockDriftError) as info:
        clock.update(far)
    assert "'b'" in str(info.value) and "501 ms ahead" in str(info.value) and "500 ms" in str(info.value)
    assert info.value.remote == far and info.value.ahead_ms == 501
    assert clock.last() == before
    wall.ms += 1                                      # once within the bound it is accepted
    assert clock.update(far) > far


def test_logical_overflow_moves_physical_forward() -> None:
    wall = FakeWall()
    clock = HybridClock("a", wall_ms=wall)
    clock.restore(HLCTimestamp(wall.ms, LOGICAL_MAX, "x"))
    assert clock.now() == HLCTimestamp(wall.ms + 1, 0, "a")


def test_restore_keeps_a_restarted_clock_above_its_past() -> None:
    wall = FakeWall()
    clock = HybridClock("a", wall_ms=wall)
    past = HLCTimestamp(wall.ms + 60_000, 3, "a")     # issued before the wall clock stepped back
    clock.restore(past)
    assert clock.now() > past
    clock.restore(HLCTimestamp(1, 0, "a"))            # never backwards
    assert clock.now() > past


# --- random interleavings of local events, sends and receives on several nodes ----------------------

op = st.tuples(st.sampled_from(["tick", "local", "send", "recv"]), st.integers(0, 2), st.integers(0, 2),
               st.integers(-50, 200))


@given(offsets=st.lists(st.integers(-400, 400), min_size=3, max_size=3), ops=st.lists(op, max_size=120))
def test_monotonic_and_causal_under_any_interleaving(offsets: list[int], ops: list[tuple[str, int, int, int]]
                                                     ) -> None:
    base = FakeWall(10_000)
    walls = [lambda i=i: base.ms + offsets[i] for i in range(3)]
    clocks = [HybridClock(f"n{i}", max_drift_ms=1_000, wall_ms=walls[i]) for i in range(3)]
    issued: list[list[HLCTimestamp]] = [[], [], []]
    in_flight: list[tuple[int, HLCTimestamp]] = []
    wall_max = base.ms + max(offsets)
    for kind, i, j, step in ops:
        if kind == "tick":
            base.ms = max(0, base.ms + step)          # the shared wall clock may also step back
            wall_max = max(wall_max, base.ms + max(offsets))
        elif kind == "local":
            issued[i].append(clocks[i].now())
        elif kind == "send":
            ts = clocks[i].now()
            issued[i].append(ts)
            in_flight.append((j, ts))
        elif in_flight:
            dest, sent = in_flight.pop(step % len(in_flight))
            got = clocks[dest].update(sent)
            assert got > sent                          # causality: a receive is after its send
            issued[dest].append(got)
    for stamps_of_node in issued:
        assert all(x < y for x, y in itertools.pairwise(stamps_of_node))
        # physical time never runs ahead of the fastest wall clock any node has read
        assert all(s.physical_ms <= wall_max for s in stamps_of_node)
