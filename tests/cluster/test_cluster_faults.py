"""Real faults on a 3-node cluster of real processes: kill -9, SIGSTOP, concurrent writers.

Heartbeat timeout 4 s, gossip 0.5 s (cluster_procs). What is checked is what a user relies on:
failure noticed within the timeout and routed around, the mode's promise on writes, no
acknowledged write lost, a returning node catching up, and every node agreeing on a winner.
"""
from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from cluster_procs import TIMEOUT_S, ClusterProcs, wait

# Real node processes: run once per suite, not again for each core/backend variant (make matrix).
pytestmark = [pytest.mark.slow, pytest.mark.cluster_procs]

FAIL_WITHIN_S = float(TIMEOUT_S) + 4.0      # the timeout, plus a few gossip rounds to spread it


def _drained(c: ClusterProcs, nodes: list[int]) -> bool:
    return all(c.api(i, "replication")["events_pending"] == 0 for i in nodes)


def _bucket_on(c: ClusterProcs, bucket: str, nodes: list[int]) -> bool:
    """Every node has the bucket itself. (An empty queue does not say it: an async write is
    shipped directly in the background and queued only if that fails.) HeadBucket is answered
    from the node's own state."""
    for i in nodes:
        try:
            c.client(i).head_bucket(Bucket=bucket)
        except Exception:  # noqa: BLE001 - 404 until the CreateBucket event is applied there
            return False
    return True


@pytest.mark.parametrize("mode", ["quorum", "async"])
def test_kill9_one_node_writes_go_on_and_it_catches_up(tmp_path: Path, mode: str) -> None:
    c = ClusterProcs(tmp_path, 3, mode=mode, factor=3)
    try:
        c.start()
        s0 = c.client(0)
        s0.create_bucket(Bucket="faults")
        before = {f"before-{i}": os.urandom(1000 + i * 7000) for i in range(10)}
        for k, v in before.items():
            s0.put_object(Bucket="faults", Key=k, Body=v)

        c.kill(2)
        took = c.wait_state(0, "node-2", "Failed", FAIL_WITHIN_S)
        c.wait_state(1, "node-2", "Failed", FAIL_WITHIN_S)
        assert took <= FAIL_WITHIN_S

        acked: dict[str, bytes] = {}
        for i in range(20):
            k, v = f"during-{i}", os.urandom(500 + i * 40_000)
            c.client(i % 2).put_object(Bucket="faults", Key=k, Body=v)
            acked[k] = v
        s0.delete_object(Bucket="faults", Key="before-0")
        for i in (0, 1):
            for k, v in {**before, **acked}.items():
                if k == "before-0":
                    continue
                assert c.client(i).get_object(Bucket="faults", Key=k)["Body"].read() == v
        # No acknowledged write lost: every live replica holds each one.
        for k, v in acked.items():
            assert c.local_copy(0, "faults", k)[1] == v and c.local_copy(1, "faults", k)[1] == v

        c.start_node(2)
        c.wait_state(0, "node-2", "Active", 30)
        wait(lambda: _drained(c, [0, 1]), 60, "the queues for node-2 to drain")
        for k, v in acked.items():
            assert c.local_copy(2, "faults", k)[1] == v, f"node-2 missed {k}"
        assert c.local_copy(2, "faults", "before-0") == (None, None), "the delete did not reach node-2"
        assert c.client(2).get_object(Bucket="faults", Key="during-5")["Body"].read() == acked["during-5"]
    finally:
        c.stop_all()


def test_sync_writes_fail_cleanly_while_a_replica_is_down(tmp_path: Path) -> None:
    c = ClusterProcs(tmp_path, 3, mode="sync", factor=3)
    try:
        c.start()
        s0 = c.client(0)
        s0.create_bucket(Bucket="sync")
        s0.put_object(Bucket="sync", Key="old", Body=b"old bytes")
        c.kill(1)
        c.wait_state(0, "node-1", "Failed", FAIL_WITHIN_S)
        with pytest.raises(ClientError) as e:
            s0.put_object(Bucket="sync", Key="new", Body=os.urandom(200_000))
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert e.value.response["Error"]["Code"] in ("ServiceUnavailable", "SlowDown")
        # Nothing of the refused write is visible anywhere.
        for i in (0, 2):
            assert c.local_copy(i, "sync", "new") == (None, None)
            with pytest.raises(ClientError) as e2:
                c.client(i).head_object(Bucket="sync", Key="new")
            assert e2.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        with pytest.raises(ClientError) as e:
            s0.delete_object(Bucket="sync", Key="old")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        # Reads of existing objects keep working.
        for i in (0, 2):
            assert c.client(i).get_object(Bucket="sync", Key="old")["Body"].read() == b"old bytes"
        c.start_node(1)
        c.wait_state(0, "node-1", "Active", 30)
        s0.put_object(Bucket="sync", Key="new", Body=b"after")
        for i in range(3):
            assert c.local_copy(i, "sync", "new")[1] == b"after"
    finally:
        c.stop_all()


def test_sigstop_shorter_than_the_timeout_is_not_a_failure(tmp_path: Path) -> None:
    c = ClusterProcs(tmp_path, 3, mode="quorum", factor=3)
    try:
        c.start()
        c.pause(2)
        deadline = time.monotonic() + float(TIMEOUT_S) * 0.6
        seen: set[str] = set()
        while time.monotonic() < deadline:
            seen.add(c.states(0)["node-2"])
            seen.add(c.states(1)["node-2"])
            time.sleep(0.1)
        c.resume(2)
        time.sleep(2.0)
        seen.add(c.states(0)["node-2"])
        assert seen == {"Active"}, seen
        assert c.states(2) == {"node-0": "Active", "node-1": "Active", "node-2": "Active"}
    finally:
        c.stop_all()


@pytest.mark.parametrize("strategy", ["last_write_wins", "first_write_wins", "vector_clock_merge"])
def test_concurrent_writes_to_one_key_converge(tmp_path: Path, strategy: str) -> None:
    c = ClusterProcs(tmp_path, 3, mode="async", factor=3, conflict=strategy)
    try:
        c.start()
        c.client(0).create_bucket(Bucket="race")
        wait(lambda: _bucket_on(c, "race", [0, 1, 2]), 30, "the bucket to reach every node")
        clients = [c.client(0), c.client(1)]
        keys = [f"key-{i}" for i in range(12)]

        def put(args: tuple[int, str]) -> None:
            i, k = args
            clients[i].put_object(Bucket="race", Key=k, Body=f"from node {i} {k}".encode() * 50)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(put, [(i, k) for k in keys for i in (0, 1)]))
        wait(lambda: _drained(c, [0, 1, 2]), 60, "replication to drain")
        for k in keys:
            copies = {i: c.local_copy(i, "race", k) for i in range(3)}
            assert len(set(copies.values())) == 1, (k, {i: e for i, (e, _) in copies.items()})
            assert copies[0][1] is not None and copies[0][1].startswith(b"from node ")
        conflicts = sum(int(float(line.rsplit(" ", 1)[1]))
                        for i in range(3)
                        for line in c.nodes[i].raw("GET", "/metrics")[2].decode().splitlines()
                        if line.startswith("rs3gw_conflicts_total{"))
        print(f"{strategy}: {conflicts} conflicts resolved across the nodes")
    finally:
        c.stop_all()


def _writes_while_node2_is_down(c: ClusterProcs, bucket: str, n: int) -> dict[str, bytes]:
    """Async cluster: node-2 is killed, node-0 takes ``n`` writes (queued on node-0 for node-2),
    then node-0 is killed too. Returns what was written."""
    c.start()
    c.client(0).create_bucket(Bucket=bucket)
    wait(lambda: _bucket_on(c, bucket, [0, 1, 2]), 30, "the bucket to reach every node")
    c.kill(2)
    c.wait_state(0, "node-2", "Failed", FAIL_WITHIN_S)
    bodies = {f"{bucket}-{i}": os.urandom(1500 + 20_000 * i) for i in range(n)}
    for k, v in bodies.items():
        c.client(0).put_object(Bucket=bucket, Key=k, Body=v)
    assert c.api(0, "replication")["destinations"]["node-2"]["pending"] >= n
    wait(lambda: all(c.local_copy(1, bucket, k)[1] == v for k, v in bodies.items()), 30,
         "node-1 to receive the writes")
    c.kill(0)
    return bodies


def _node2_ends_with(c: ClusterProcs, bucket: str, bodies: dict[str, bytes], what: str) -> None:
    c.start_node(0)
    c.start_node(2)
    c.wait_members(3, on=[0, 1, 2])
    wait(lambda: all(c.local_copy(2, bucket, k)[1] == v for k, v in bodies.items()), 45, what)


def test_anti_entropy_repairs_what_a_lost_queue_never_delivered(tmp_path: Path) -> None:
    c = ClusterProcs(tmp_path, 3, mode="async", factor=3,
                     extra_env={"RS3GW_ANTI_ENTROPY_INTERVAL": "1"})
    try:
        bodies = _writes_while_node2_is_down(c, "aent", 8)
        # node-0's outbound queue (the events node-2 was waiting for) is lost with it.
        for f in (c.nodes[0].storage_root / ".rs3gw").glob("replication.db*"):
            f.unlink()
        _node2_ends_with(c, "aent", bodies, "anti-entropy to bring node-2 every object")
    finally:
        c.stop_all()


def test_async_queue_survives_a_sender_kill9(tmp_path: Path) -> None:
    # What node-0 queued for node-2 is on its disk and is delivered once both are back.
    c = ClusterProcs(tmp_path, 3, mode="async", factor=3)
    try:
        bodies = _writes_while_node2_is_down(c, "queued", 10)
        _node2_ends_with(c, "queued", bodies, "node-0's queue to reach node-2 after both restarted")
    finally:
        c.stop_all()
