"""ClusterView: what the operator surface (HTTP API, metrics, rs3ctl) reads from a cluster node.

cluster.status.ClusterStatus implements it; the admin surface (``rs3gw.admin``) serves it under
``/api/cluster/``, ``rs3gw.observability.cluster_metrics`` exports it to Prometheus, and
``rs3ctl`` prints it.
Every value is JSON-serialisable (str, int, float, bool, None, lists, dicts with str keys).
Node states and replication modes are spelled as the cluster README names them.

``status()``::

    {"node_id": str,
     "state": "Starting" | "Joining" | "Active" | "Leaving" | "Failed",
     "cluster_address": "host:port",            # the advertised node-to-node address
     "replication_mode": "sync" | "async" | "quorum",
     "replication_factor": int,
     "conflict_resolution": str,                # last_write_wins, first_write_wins, ...
     "members": {"total": int, "Active": int, "Joining": int, "Leaving": int, "Failed": int,
                 "Starting": int},              # this node's view, itself included
     "healthy": bool,
     "backends": {name: implementation},        # e.g. {"core": "compiled", "io": "uring"}
     "version": str,
     "uptime_s": float,
     "messages_rejected": {"unknown_type": int, "malformed": int, "unsupported_version": int,
                           "bad_reply": int}}        # node-to-node messages refused (rpc.py)

``nodes()``: one dict per member known to this node, itself included::

    {"node_id": str, "state": str, "address": "host:port",
     "last_seen": float | None,                 # epoch seconds of the last message; None: never
     "incarnation": int, "version": str, "metadata": dict, "local": bool}

``replication()``::

    {"events_replicated": int, "events_pending": int, "events_failed": int,
     "bytes_replicated": int,
     "lag_seconds": {"avg": float, "max": float, "p95": float},
     "bandwidth_bytes_per_sec": float,
     "destinations": {node_id: {"pending": int, "oldest_age_s": float, "replicated": int,
                                "failed": int, "last_error": str | None}}}

``conflicts()``::

    {"strategy": str,                           # the configured conflict_resolution
     "conflicts_total": int, "resolved_total": int,
     "by_strategy": {strategy: int}}            # conflicts seen, by the strategy that resolved them

The four readers are called on the event loop (one HTTP request or one scrape each), so they
must answer from memory without blocking. Counters only ever grow for the life of the process.
"""
from __future__ import annotations

from typing import Any, Protocol

# The member states, in the order the operator surface lists them.
NODE_STATES = ("Starting", "Joining", "Active", "Leaving", "Failed")
# Why a node-to-node message was refused (status()["messages_rejected"], cluster/rpc.py).
MESSAGE_REJECTIONS = ("unknown_type", "malformed", "unsupported_version", "bad_reply")


class ClusterView(Protocol):
    def status(self) -> dict[str, Any]: ...

    def nodes(self) -> list[dict[str, Any]]: ...

    def replication(self) -> dict[str, Any]: ...

    def conflicts(self) -> dict[str, Any]: ...

    async def leave(self) -> None:
        """Start a graceful leave and return without waiting for it.

        Going Leaving, the hand-off, the goodbye to the other members and the process exit happen
        afterwards in the background, so the HTTP caller gets its 202 before the server goes.
        Calling it again while a leave is under way does nothing.
        """
        ...
