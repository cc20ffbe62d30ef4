"""A ClusterView with canned documents, for the operator-surface tests (API, metrics, rs3ctl)."""
from __future__ import annotations

import copy
import time
from typing import Any

NOW = time.time()

STATUS: dict[str, Any] = {
    "node_id": "node-a", "state": "Active", "cluster_address": "10.0.0.1:9001",
    "replication_mode": "quorum", "replication_factor": 3, "conflict_resolution": "last_write_wins",
    "members": {"total": 4, "Active": 2, "Joining": 1, "Leaving": 0, "Failed": 1, "Starting": 0},
    "healthy": True, "backends": {"core": "compiled", "io": "uring"}, "version": "0.1.0",
    "uptime_s": 3723.5,
    "messages_rejected": {"unknown_type": 1, "malformed": 3, "unsupported_version": 0,
                          "bad_reply": 0},
}
NODES: list[dict[str, Any]] = [
    {"node_id": "node-a", "state": "Active", "address": "10.0.0.1:9001", "last_seen": None,
     "incarnation": 3, "version": "0.1.0", "metadata": {"rack": "r1"}, "local": True},
    {"node_id": "node-b", "state": "Active", "address": "10.0.0.2:9001", "last_seen": NOW - 2.1,
     "incarnation": 12, "version": "0.1.0", "metadata": {}, "local": False},
    {"node_id": "node-c", "state": "Failed", "address": "10.0.0.3:9001", "last_seen": NOW - 312.0,
     "incarnation": 1, "version": "0.1.0", "metadata": {}, "local": False},
]
REPLICATION: dict[str, Any] = {
    "events_replicated": 1234, "events_pending": 7, "events_failed": 2,
    "bytes_replicated": 5 * 1024 * 1024 * 1024,
    "lag_seconds": {"avg": 0.125, "max": 2.5, "p95": 0.75},
    "bandwidth_bytes_per_sec": 10.5 * 1024 * 1024,
    "destinations": {
        "node-b": {"pending": 0, "oldest_age_s": 0.0, "replicated": 1200, "failed": 0,
                   "last_error": None},
        "node-c": {"pending": 7, "oldest_age_s": 65.0, "replicated": 34, "failed": 2,
                   "last_error": "connection refused"},
    },
}
CONFLICTS: dict[str, Any] = {
    "strategy": "last_write_wins", "conflicts_total": 5, "resolved_total": 4,
    "by_strategy": {"last_write_wins": 4, "vector_clock_merge": 1},
}


class ViewFailed(Exception):
    pass


class FakeClusterView:
    """Fresh copies of the canned documents; a method named in `failing` raises ViewFailed."""

    def __init__(self) -> None:
        self.status_doc = copy.deepcopy(STATUS)
        self.nodes_doc = copy.deepcopy(NODES)
        self.replication_doc = copy.deepcopy(REPLICATION)
        self.conflicts_doc = copy.deepcopy(CONFLICTS)
        self.failing: set[str] = set()
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.failing:
            raise ViewFailed(f"{name} is broken in this test")

    def status(self) -> dict[str, Any]:
        self._call("status")
        return self.status_doc

    def nodes(self) -> list[dict[str, Any]]:
        self._call("nodes")
        return self.nodes_doc

    def replication(self) -> dict[str, Any]:
        self._call("replication")
        return self.replication_doc

    def conflicts(self) -> dict[str, Any]:
        self._call("conflicts")
        return self.conflicts_doc

    async def leave(self) -> None:
        self._call("leave")
        self.status_doc["state"] = "Leaving"
