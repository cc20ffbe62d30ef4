"""ClusterStatus: the ClusterView (cluster/view.py) of one node, read from the components that
hold each fact. Every reader answers from memory, on the event loop, without blocking."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rs3gw import __version__

from .conflicts import ConflictResolver
from .membership import Membership, NodeState
from .queue import ReplicationQueue
from .stats import ReplicationStats
from .transport import Address


def _addr(a: Address) -> str:
    return f"{a[0]}:{a[1]}"


class ClusterStatus:
    def __init__(self, membership: Membership, queue: ReplicationQueue, stats: ReplicationStats,
                 resolver: ConflictResolver, rejected: Mapping[str, int], *, mode: str,
                 factor: int, leave: Callable[[], Awaitable[None]]) -> None:
        self._membership = membership
        self._queue = queue
        self._stats = stats
        self._resolver = resolver
        self._rejected = rejected
        self._mode = mode
        self._factor = factor
        self._leave = leave
        self._started = time.monotonic()
        # What the server runs on (core, io, ...): shown in status(), set once at start-up.
        self.backends: dict[str, str] = {}

    def status(self) -> dict[str, Any]:
        counts = {s.value: 0 for s in NodeState}
        members = self._membership.members()
        for m in members:
            counts[m.state.value] += 1
        local = self._membership.local
        return {"node_id": local.node_id, "state": local.state.value,
                "cluster_address": _addr(local.address),
                "replication_mode": self._mode, "replication_factor": self._factor,
                "conflict_resolution": self._resolver.strategy.value,
                "members": {"total": len(members), **counts},
                "healthy": counts["Failed"] == 0 and local.state is NodeState.ACTIVE,
                "backends": dict(self.backends), "version": __version__,
                "uptime_s": time.monotonic() - self._started,
                "messages_rejected": dict(self._rejected)}

    def nodes(self) -> list[dict[str, Any]]:
        me = self._membership.node_id
        out = []
        for m in self._membership.members():
            local = m.node_id == me
            out.append({"node_id": m.node_id, "state": m.state.value, "address": _addr(m.address),
                        "last_seen": time.time() if local else (m.last_seen or None),
                        "incarnation": m.incarnation, "version": m.version,
                        "metadata": dict(m.metadata), "local": local, "suspect": m.suspect})
        return out

    def replication(self) -> dict[str, Any]:
        q, stats = self._queue, self._stats
        dests: dict[str, dict[str, Any]] = {}
        for d in sorted(set(stats.per_dest) | set(q.destinations())):
            dests[d] = {"pending": q.pending(d), "oldest_age_s": q.oldest_age_s(d), **stats.dest(d)}
        lag = stats.lag_summary()
        lag["max"] = max(lag["max"], q.oldest_age_s())
        return {"events_replicated": stats.replicated, "events_pending": q.pending(),
                "events_failed": stats.failed, "bytes_replicated": stats.bytes_replicated,
                "lag_seconds": lag, "bandwidth_bytes_per_sec": stats.bandwidth(),
                "destinations": dests}

    def conflicts(self) -> dict[str, Any]:
        snap = self._resolver.stats.snapshot()
        by = snap["conflicts_total"]
        resolved = snap["resolved_total"]
        assert isinstance(by, dict) and isinstance(resolved, dict)
        return {"strategy": self._resolver.strategy.value, "conflicts_total": sum(by.values()),
                "resolved_total": sum(resolved.values()),
                "by_strategy": {k: v for k, v in by.items() if v}}

    async def leave(self) -> None:
        await self._leave()
