"""Real rs3gw processes forming a cluster on loopback: start, kill -9, SIGSTOP, restart.

Each node is a tests/integration/servers.ServerProcess with only the documented RS3GW_CLUSTER_*
and replication variables added, so these tests start nodes the way an operator does.
"""
from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from cluster_helpers import free_ports, run
from servers import (
    LIVE_SERVERS,
    ServerProcess,
    User,
    make_client,
    make_root_user,
)

from rs3gw.cluster.messages import GetObject
from rs3gw.cluster.rpc import Rpc
from rs3gw.cluster.transport import Transport

# Fast failure detection for tests: the issue's own test values.
GOSSIP_S = "0.5"
TIMEOUT_S = "4"


# Every cluster made by the running test, so a failure report can carry the nodes' logs.
CLUSTERS: list[ClusterProcs] = []


@dataclass
class ClusterProcs:
    root: Path
    n: int
    mode: str = "quorum"
    factor: int = 3
    conflict: str = "last_write_wins"
    extra_env: dict[str, str] = field(default_factory=dict)
    user: User = field(default_factory=make_root_user)
    nodes: list[ServerProcess] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ports = free_ports(self.n)
        seeds = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        for i, port in enumerate(self.ports):
            env = {
                "RS3GW_CLUSTER_ENABLED": "true",
                "RS3GW_CLUSTER_NODE_ID": f"node-{i}",
                "RS3GW_CLUSTER_PORT": str(port),
                "RS3GW_CLUSTER_BIND_ADDR": f"127.0.0.1:{port}",
                "RS3GW_CLUSTER_ADVERTISE_ADDR": f"127.0.0.1:{port}",
                "RS3GW_CLUSTER_SEED_NODES": seeds,
                "RS3GW_REPLICATION_MODE": self.mode,
                "RS3GW_REPLICATION_FACTOR": str(self.factor),
                "RS3GW_HEARTBEAT_INTERVAL": GOSSIP_S,
                "RS3GW_HEARTBEAT_TIMEOUT": TIMEOUT_S,
                "RS3GW_GOSSIP_INTERVAL": GOSSIP_S,
                "RS3GW_CONFLICT_RESOLUTION": self.conflict,
                "RS3GW_LOG_LEVEL": "INFO",
                **self.extra_env,
            }
            self.nodes.append(ServerProcess(storage_root=self.root / f"n{i}", root_user=self.user,
                                            extra_env=env))
        CLUSTERS.append(self)

    def log_tails(self, lines: int = 80) -> str:
        """The last lines each node wrote to stderr since its last start."""
        return "\n".join(f"--- node-{i} ---\n" + "\n".join(srv.stderr_text().splitlines()[-lines:])
                         for i, srv in enumerate(self.nodes))

    def start(self, order: list[int] | None = None) -> ClusterProcs:
        for i in order or range(self.n):
            self.start_node(i)
        self.wait_members(self.n)
        return self

    def start_node(self, i: int) -> ServerProcess:
        srv = self.nodes[i]
        # Keep the S3 port across restarts: clients made before a kill still reach the node.
        if srv.port:
            srv.extra_env["RS3GW_BIND_ADDR"] = f"127.0.0.1:{srv.port}"
        srv.start()
        if srv not in LIVE_SERVERS:
            LIVE_SERVERS.append(srv)
        return srv

    def kill(self, i: int) -> None:
        self.nodes[i].kill()

    def pause(self, i: int) -> None:
        assert self.nodes[i].proc is not None
        self.nodes[i].proc.send_signal(signal.SIGSTOP)

    def resume(self, i: int) -> None:
        assert self.nodes[i].proc is not None
        self.nodes[i].proc.send_signal(signal.SIGCONT)

    def running(self, i: int) -> bool:
        p = self.nodes[i].proc
        return p is not None and p.poll() is None

    def stop_all(self) -> None:
        for srv in self.nodes:
            if srv.proc is not None and srv.proc.poll() is None:
                srv.proc.send_signal(signal.SIGCONT)
                try:
                    srv.stop(timeout_s=60)
                except RuntimeError:
                    pass
            if srv in LIVE_SERVERS:
                LIVE_SERVERS.remove(srv)

    def local_copy(self, i: int, bucket: str, key: str) -> tuple[str | None, bytes | None]:
        """(ETag, bytes) of what node i itself stores for the key, asked over the node-to-node
        protocol (GetObject), so no other node's copy can stand in for it. (None, None): nothing."""
        async def ask() -> tuple[str | None, bytes | None]:
            t = Transport()
            try:
                answer = await Rpc(t).request(("127.0.0.1", self.ports[i]),
                                              GetObject(bucket=bucket, key=key), timeout_s=30)
                if answer.reply.meta is None:
                    return None, None
                body = await answer.stream.readall() if answer.stream is not None else b""
                return answer.reply.meta.etag, body
            finally:
                await t.close()
        return run(ask())

    def stamp_rows(self, i: int, bucket: str) -> list[tuple[str, int]]:
        """(key, tombstone) of node i's object version stamps, read from its metadata file."""
        import sqlite3
        db = self.nodes[i].storage_root / ".rs3gw" / "meta.db"
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT key, tombstone FROM item_versions WHERE kind = 'object' "
                                "AND bucket = ? ORDER BY key", (bucket,)).fetchall()
        finally:
            conn.close()

    def holders(self, bucket: str, key: str, on: list[int] | None = None) -> list[int]:
        return [i for i in (on if on is not None else range(self.n))
                if self.local_copy(i, bucket, key)[1] is not None]

    def client(self, i: int) -> Any:
        return make_client(self.nodes[i], user=self.user)

    def api(self, i: int, what: str) -> Any:
        status, _, body = self.nodes[i].raw("GET", f"/api/cluster/{what}", timeout=10)
        assert status == 200, (status, body)
        return json.loads(body)

    def states(self, i: int) -> dict[str, str]:
        return {n["node_id"]: n["state"] for n in self.api(i, "nodes")["nodes"]}

    def wait_members(self, n_active: int, on: list[int] | None = None,
                     timeout_s: float = 30.0) -> None:
        for i in on if on is not None else range(self.n):
            wait(lambda i=i: list(self.states(i).values()).count("Active") >= n_active,  # type: ignore[misc]
                 timeout_s, f"node {i} to see {n_active} active members")

    def wait_state(self, i: int, node_id: str, state: str, timeout_s: float) -> float:
        t0 = time.monotonic()
        wait(lambda: self.states(i).get(node_id) == state, timeout_s,
             f"node {i} to see {node_id} {state}")
        return time.monotonic() - t0


def wait(pred: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except Exception as e:  # noqa: BLE001 - a node may be restarting
            last = e
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last error: {last})")
