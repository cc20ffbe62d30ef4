"""Membership across real processes (tests/cluster/node_demo.py) with real faults:
SIGKILL, SIGSTOP/SIGCONT, restart with the same persisted node id, graceful leave (SIGTERM)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import free_ports

pytestmark = pytest.mark.slow

NODE_DEMO = Path(__file__).with_name("node_demo.py")
GOSSIP_S = 0.5
HEARTBEAT_S = 0.5
TIMEOUT_S = 4.0
START_DEADLINE_S = 20.0
# Detection = a probe reaching the dead node (round-robin: within one pass) + ping and indirect
# ping timeouts, then the suspicion timeout. The slack is for a busy machine; it is a deadline.
FAILED_DEADLINE_S = TIMEOUT_S + 10.0


class Node:
    """One node_demo process; its stdout (JSON lines) is folded into a view of the cluster."""

    def __init__(self, name: str, port: int, seed_port: int, root: Path) -> None:
        self.name, self.port, self.seed_port, self.root = name, port, seed_port, root
        self.proc: subprocess.Popen[bytes] | None = None
        self.node_id: str | None = None
        self.view: dict[str, tuple[str, bool]] = {}
        self.history: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def start(self) -> Node:
        env = {**os.environ,
               "RS3GW_STORAGE_ROOT": str(self.root),           # node id persisted here
               "RS3GW_CLUSTER_ENABLED": "true",
               "RS3GW_CLUSTER_PORT": str(self.port),
               "RS3GW_CLUSTER_BIND_ADDR": "127.0.0.1",
               "RS3GW_CLUSTER_ADVERTISE_ADDR": f"127.0.0.1:{self.port}",
               "RS3GW_CLUSTER_SEED_NODES": f"127.0.0.1:{self.seed_port}",
               "RS3GW_GOSSIP_INTERVAL": str(GOSSIP_S),
               "RS3GW_HEARTBEAT_INTERVAL": str(HEARTBEAT_S),
               "RS3GW_HEARTBEAT_TIMEOUT": str(TIMEOUT_S),
               "RS3GW_CLUSTER_REQUEST_TIMEOUT": "2",
               "RS3GW_CLUSTER_CONNECT_TIMEOUT": "2",
               "RS3GW_LOG_LEVEL": "INFO"}
        env.pop("RS3GW_CLUSTER_NODE_ID", None)
        self.view, self.history = {}, []
        with open(self.root.parent / f"{self.name}.stderr", "ab") as stderr:
            self.proc = subprocess.Popen([sys.executable, str(NODE_DEMO)], env=env,
                                         stdout=subprocess.PIPE, stderr=stderr)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return self

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode().strip()
            ev = json.loads(line)
            with self.lock:
                self.lines.append(line)
                if ev["event"] == "listening":
                    self.node_id = ev["node_id"]
                elif ev["event"] == "change":
                    self.history.append(ev)
                    if ev["removed"]:
                        self.view.pop(ev["node_id"], None)
                    else:
                        self.view[ev["node_id"]] = (ev["state"], ev["suspect"])
        proc.stdout.close()

    def states(self) -> dict[str, str]:
        with self.lock:
            return {k: v[0] for k, v in self.view.items()}

    def events_about(self, node_id: str | None) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.history if e["node_id"] == node_id]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def diagnostics(self) -> str:
        err = self.root.parent / f"{self.name}.stderr"
        tail = err.read_text()[-3000:] if err.exists() else ""
        return f"--- {self.name} ({self.node_id}) view={self.view}\n{tail}"


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, nodes: list[Node]) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n"
                                 + "\n".join(n.diagnostics() for n in nodes))
        time.sleep(0.05)


def everyone_sees(nodes: list[Node], expected: Callable[[], dict[str, str]]) -> Callable[[], bool]:
    return lambda: all(n.states() == expected() for n in nodes)


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[list[Node]]:
    ports = free_ports(3)
    nodes = [Node(f"n{i}", p, ports[0], tmp_path / f"n{i}") for i, p in enumerate(ports)]
    try:
        yield nodes
    finally:
        for n in nodes:
            n.stop()


def start_all_active(nodes: list[Node], order: list[int]) -> None:
    for i in order:
        nodes[i].start()
    wait_for(lambda: all(n.node_id for n in nodes), START_DEADLINE_S, "every node listening", nodes)
    ids = {n.node_id: "Active" for n in nodes}
    wait_for(everyone_sees(nodes, lambda: ids), START_DEADLINE_S, "three Active members everywhere", nodes)


def test_three_nodes_join_from_one_seed_started_last(trio: list[Node]) -> None:
    # The two non-seeds start first and retry the seed until it is up.
    start_all_active(trio, order=[2, 1, 0])
    assert len({n.node_id for n in trio}) == 3


def test_pause_shorter_than_the_timeout_is_not_failure(trio: list[Node]) -> None:
    start_all_active(trio, order=[0, 1, 2])
    paused, others = trio[1], [trio[0], trio[2]]
    ids = {n.node_id: "Active" for n in trio}
    mark = [len(o.events_about(paused.node_id)) for o in others]
    paused.signal(signal.SIGSTOP)
    try:
        time.sleep(TIMEOUT_S / 2 + 0.5)      # the fault itself: a pause of 2.5 s < 4 s
    finally:
        paused.signal(signal.SIGCONT)
    # Watch past the point where a suspicion from the pause would have expired.
    wait_for(lambda: all(not o.view.get(paused.node_id or "", ("", True))[1] for o in others),
             FAILED_DEADLINE_S, "the paused node's refutation", trio)
    watch_until = time.monotonic() + TIMEOUT_S
    while time.monotonic() < watch_until:
        time.sleep(0.1)
    for o, start in zip(others, mark, strict=True):
        evs = o.events_about(paused.node_id)[start:]
        assert all(e["state"] != "Failed" for e in evs), evs
    assert any(e["suspect"] for o, s in zip(others, mark, strict=True)
               for e in o.events_about(paused.node_id)[s:]), "the pause went unnoticed: no probe hit it"
    wait_for(everyone_sees(trio, lambda: ids), START_DEADLINE_S, "all Active after the pause", trio)


def test_killed_node_fails_everywhere_and_rejoins_after_restart(trio: list[Node]) -> None:
    start_all_active(trio, order=[1, 0, 2])
    victim, others = trio[2], trio[:2]
    victim_id = victim.node_id
    assert victim_id is not None
    incarnation = max(e["incarnation"] for e in others[0].events_about(victim_id))
    victim.signal(signal.SIGKILL)
    victim.proc.wait(timeout=10)  # type: ignore[union-attr]
    wait_for(lambda: all(o.states().get(victim_id) == "Failed" for o in others), FAILED_DEADLINE_S,
             "the killed node Failed on the others", trio)

    victim.start()          # same storage root: same persisted node id, same port
    wait_for(lambda: victim.node_id == victim_id and victim_id in victim.states(), START_DEADLINE_S,
             "the restarted node", trio)
    ids = {n.node_id: "Active" for n in trio}
    wait_for(everyone_sees(trio, lambda: ids), START_DEADLINE_S, "the restarted node Active everywhere", trio)
    assert max(e["incarnation"] for e in others[0].events_about(victim_id)) > incarnation


def test_graceful_leave_is_leaving_then_gone(trio: list[Node]) -> None:
    start_all_active(trio, order=[0, 2, 1])
    leaver, others = trio[0], trio[1:]       # the seed itself may leave
    leaver_id = leaver.node_id
    leaver.signal(signal.SIGTERM)
    assert leaver.proc is not None and leaver.proc.wait(timeout=30) == 0
    assert any('"event": "left"' in line for line in leaver.lines)
    remaining = {n.node_id: "Active" for n in others}
    wait_for(everyone_sees(others, lambda: remaining), START_DEADLINE_S, "the leaver gone", trio)
    for o in others:
        steps = ["removed" if e["removed"] else e["state"] for e in o.events_about(leaver_id)]
        assert "Leaving" in steps and steps[-1] == "removed" and "Failed" not in steps, steps
