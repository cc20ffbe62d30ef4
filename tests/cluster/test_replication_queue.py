"""Durable replication queue: order, restart, backpressure, retry/backoff, in-flight hand-out,
tombstone bookkeeping, and no SQLite call on the event loop."""
from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from pathlib import Path

import pytest
from cluster_helpers import run, wait_for_result

from rs3gw.cluster.events import DeleteObject, PutBucketPolicy, PutObject, ReplicationEvent
from rs3gw.cluster.hlc import HLCTimestamp
from rs3gw.cluster.queue import (
    REPLICATION_DB,
    EventTooLarge,
    QueueClosed,
    QueueFull,
    QueueLimits,
    ReplicationQueue,
)
from rs3gw.cluster.versions import VersionVector
from rs3gw.observability import loopguard
from rs3gw.storage.types import ObjectMeta

DEADLINE_S = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def put(i: int, key: str = "k", node: str = "n1") -> PutObject:
    return PutObject(event_id=HLCTimestamp(1000 + i, 0, node), bucket="b", vector=VersionVector({node: i + 1}),
                     meta=ObjectMeta("b", key, f"v{i}", 0, f"e{i}", 0.0))


def delete(i: int, key: str, node: str = "n1") -> DeleteObject:
    return DeleteObject(event_id=HLCTimestamp(5000 + i, 0, node), bucket="b",
                        vector=VersionVector({node: 100 + i}), object_key=key)


async def open_q(root: Path, clock: FakeClock | None = None, **limits: int) -> ReplicationQueue:
    return await ReplicationQueue.open(root, local_node="n1", limits=QueueLimits(**limits),
                                       now_ms=clock or FakeClock(), rng=random.Random(7))


def test_fifo_per_destination_ack_removes(tmp_path: Path) -> None:
    async def main() -> None:
        q = await open_q(tmp_path)
        try:
            for i in range(5):
                assert await q.enqueue(put(i), ["n2", "n3"]) == 2
            assert await q.enqueue(put(0), ["n2"]) == 0                 # idempotent
            assert q.pending() == 10 and q.destinations() == ["n2", "n3"]
            got = await q.dequeue("n2", max_events=3)
            assert [e.decode() for e in got] == [put(0), put(1), put(2)]
            assert [e.event_id for e in got] == [put(i).event_id for i in range(3)]
            more = await q.dequeue("n2")                                # handed-out ones are skipped
            assert [e.decode() for e in more] == [put(3), put(4)]
            await q.ack("n2", [e.seq for e in got])
            assert q.pending("n2") == 2 and q.pending("n3") == 5
            await q.ack("n2", [e.seq for e in more])
            assert q.pending("n2") == 0 and await q.dequeue("n2") == []
            assert [e.decode() for e in await q.dequeue("n3")] == [put(i) for i in range(5)]
        finally:
            await q.close()
        assert (tmp_path / REPLICATION_DB).is_file()
    run(main())


def test_everything_unacked_survives_a_restart_in_order(tmp_path: Path) -> None:
    clock = FakeClock()

    async def main() -> None:
        q = await open_q(tmp_path, clock)
        for i in range(6):
            await q.enqueue(put(i), ["n2"])
            clock.ms += 1000
        got = await q.dequeue("n2", max_events=4)                       # handed out, never acked
        await q.ack("n2", [got[0].seq])
        await q.close()

        q = await open_q(tmp_path, clock)
        try:
            assert q.pending("n2") == 5
            assert q.oldest_age_s("n2") == 5.0                          # put(1) was queued 5 s ago
            again = await q.dequeue("n2")
            assert [e.decode() for e in again] == [put(i) for i in range(1, 6)]
            assert all(e.seq > got[0].seq for e in again)
        finally:
            await q.close()

        with sqlite3.connect(tmp_path / REPLICATION_DB) as conn:      # WAL, as promised
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    run(main())


def test_backpressure_waits_for_room_or_raises_queue_full(tmp_path: Path) -> None:
    async def main() -> None:
        q = await open_q(tmp_path, pending_per_destination_max=2)
        try:
            await q.enqueue(put(0), ["n2"])
            await q.enqueue(put(1), ["n2", "n3"])
            with pytest.raises(QueueFull, match=r"replication queue full for n2: 2 events pending"):
                await q.enqueue(put(2), ["n3", "n2"], wait=False)
            with pytest.raises(QueueFull):
                await q.enqueue(put(2), ["n2"], timeout_s=0.05)
            assert q.pending("n3") == 1                                  # all destinations or none
            waiting = asyncio.create_task(q.enqueue(put(2), ["n2"]))
            for _ in range(20):
                await asyncio.sleep(0)
            assert not waiting.done()                                    # it has no room yet
            first = await q.dequeue("n2", max_events=1)
            await q.ack("n2", [first[0].seq])
            assert await wait_for_result(waiting, DEADLINE_S) == 1
            assert [e.decode() for e in await q.dequeue("n2")] == [put(1), put(2)]
        finally:
            await q.close()
    run(main())


def test_retry_backs_off_exponentially_with_a_cap_and_keeps_order(tmp_path: Path) -> None:
    clock = FakeClock()

    async def main() -> None:
        q = await open_q(tmp_path, clock, backoff_base_ms=100, backoff_max_ms=1000)
        try:
            for i in range(3):
                await q.enqueue(put(i), ["n2"])
            delays = []
            for attempt in range(1, 7):
                head = await q.dequeue("n2", max_events=1)
                assert head[0].decode() == put(0) and head[0].attempts == attempt - 1
                delay_s = await q.retry("n2", [head[0].seq], f"connect refused {attempt}")
                delays.append(delay_s)
                full_ms = min(1000, 100 << (attempt - 1))
                assert full_ms // 2 <= delay_s * 1000 <= full_ms
                assert await q.dequeue("n2") == []                       # nothing overtakes the head
                clock.ms += int(delay_s * 1000)
            assert max(delays) <= 1.0 and delays[-1] >= 0.5              # capped
            got = await q.dequeue("n2")
            assert [e.decode() for e in got] == [put(0), put(1), put(2)]
            assert got[0].attempts == 6 and got[0].last_error == "connect refused 6"
            q.release("n2")                                              # a sender stops: back, no failure
            assert [e.attempts for e in await q.dequeue("n2")] == [6, 0, 0]
        finally:
            await q.close()
    run(main())


def test_wait_for_events_wakes_on_enqueue(tmp_path: Path) -> None:
    async def main() -> None:
        q = await open_q(tmp_path)
        try:
            assert await q.wait_for_events("n2", timeout_s=0.01) is False
            waiter = asyncio.create_task(q.wait_for_events("n2"))
            await asyncio.sleep(0)
            await q.enqueue(put(0), ["n2"])
            assert await wait_for_result(waiter, DEADLINE_S) is True
        finally:
            await q.close()
    run(main())


def test_many_concurrent_enqueues_all_land_in_submission_order(tmp_path: Path) -> None:
    async def main() -> None:
        q = await open_q(tmp_path, write_batch_ops_max=8)
        try:
            await asyncio.gather(*(q.enqueue(put(i), ["n2"]) for i in range(100)))
            got = await q.dequeue("n2")
            assert [e.decode() for e in got] == [put(i) for i in range(100)]
        finally:
            await q.close()
    run(main())


def test_tombstones_are_collectable_once_every_replica_has_them(tmp_path: Path) -> None:
    replicas = {"gone": ["n1", "n2", "n3"], "other": ["n2", "n4"]}

    def provider(bucket: str, key: str) -> list[str]:
        assert bucket == "b"
        return replicas[key]

    async def main() -> None:
        q = await open_q(tmp_path)
        try:
            tomb = delete(0, "gone")
            await q.enqueue(tomb, ["n2", "n3"])                           # n1 (this node) has it
            await q.record_tombstone(HLCTimestamp(9, 0, "n4"), "b", "other", acked_by=["n2"])
            assert await q.collectable_tombstones(provider) == []
            to_n2 = await q.dequeue("n2")
            await q.ack("n2", [e.seq for e in to_n2])                    # delivery acks the tombstone
            assert await q.collectable_tombstones(provider) == []
            assert await q.ack_tombstone("n3", tomb.event_id) is True
            assert await q.ack_tombstone("n3", tomb.event_id) is True     # again: harmless
            assert await q.ack_tombstone("n3", HLCTimestamp(1, 1, "zz")) is False
            ready = await q.collectable_tombstones(provider)
            assert [(t.event_id, t.key, t.acked_by) for t in ready] == \
                [(tomb.event_id, "gone", frozenset({"n1", "n2", "n3"}))]
            replicas["gone"].append("n5")                                # replica set grew: wait for n5
            assert await q.collectable_tombstones(provider) == []
            replicas["gone"].pop()
            await q.forget_tombstones([tomb.event_id])
            assert await q.collectable_tombstones(provider) == []
            await q.ack_tombstone("n4", HLCTimestamp(9, 0, "n4"))
            assert [t.key for t in await q.collectable_tombstones(provider)] == ["other"]
        finally:
            await q.close()
    run(main())


def test_limits_and_closed_queue(tmp_path: Path) -> None:
    async def main() -> None:
        q = await open_q(tmp_path, event_bytes_max=64)
        big: ReplicationEvent = PutBucketPolicy(event_id=HLCTimestamp(1, 0, "n1"), bucket="b",
                                                vector=VersionVector({"n1": 1}), document=b"x" * 100)
        with pytest.raises(EventTooLarge, match="exceeds the limit of 64"):
            await q.enqueue(big, ["n2"])
        await q.close()
        with pytest.raises(QueueClosed):
            await q.dequeue("n2")
        await q.close()                                                  # twice: fine
    run(main())


def test_no_sqlite_or_file_work_on_the_event_loop(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        q = await open_q(tmp_path / "fresh")
        try:
            await q.enqueue(delete(1, "k"), ["n2"])
            got = await q.dequeue("n2")
            await q.retry("n2", [got[0].seq], "x")
            await q.ack("n2", [got[0].seq])
            await q.collectable_tombstones(lambda b, k: ["n1"])
        finally:
            await q.close()

    caplog.set_level(logging.ERROR, "rs3gw.loopguard")
    loopguard.install()
    try:
        run(main())
    finally:
        loopguard.uninstall()
    assert [r.getMessage() for r in caplog.records if r.name == "rs3gw.loopguard"] == []
