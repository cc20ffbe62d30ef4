"""Cluster settings from the environment (RS3GW_CLUSTER_*, RS3GW_REPLICATION_*, RS3GW_HEARTBEAT_*, ...).

Same conventions as rs3gw.config: a bad value raises ConfigError naming the variable. Durations are
seconds and may be decimals (``0.5``).

What the three intervals mean for SWIM membership (cluster/membership.py):

- gossip interval: the protocol period. Each period a node pings one member (round-robin over a
  shuffled list), with membership updates piggybacked on the ping and its ack.
- heartbeat interval: a full-state exchange (push-pull) with one random member, and a retry of
  every seed that is not an Active member; it bounds how long two nodes can disagree after lost
  gossip, and how soon a restarted seed finds the cluster again.
- heartbeat timeout: how long a member stays suspected before it is declared Failed, unless it
  refutes (a node paused for less than this is never declared Failed).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..envparse import choice, existing_file, parse_bool, positive_int, positive_seconds

REPLICATION_MODES = ("sync", "async", "quorum")
CONFLICT_RESOLUTIONS = ("last_write_wins", "first_write_wins", "vector_clock_merge")
NODE_ID_FILE = Path(".rs3gw") / "node_id"
NODE_ID_BYTES_MAX = 128


@dataclass(frozen=True)
class ClusterConfig:
    enabled: bool = False
    # Empty only when the cluster is disabled and no id was given (no file is created then).
    node_id: str = ""
    advertise_host: str = "127.0.0.1"
    advertise_port: int = 9001
    bind_host: str = "0.0.0.0"
    bind_port: int = 9001
    seed_nodes: tuple[tuple[str, int], ...] = ()
    replication_mode: str = "async"
    replication_factor: int = 2
    heartbeat_interval_s: float = 5.0
    heartbeat_timeout_s: float = 15.0
    gossip_interval_s: float = 1.0
    conflict_resolution: str = "last_write_wins"
    # "package.module:function": a Python conflict resolver; concurrent versions go to it.
    conflict_resolver: str | None = None
    # How often tombstones every replica holds are garbage-collected.
    tombstone_gc_interval_s: float = 60.0
    # How often this node compares its objects with one peer (cluster/antientropy.py).
    anti_entropy_interval_s: float = 60.0
    # Node-to-node TLS: cert + key for this node, CA that signs every node; mutual by default.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_mutual: bool = True
    # SWIM and transport limits.
    indirect_ping_count: int = 3
    message_bytes_max: int = 16 << 20
    pending_requests_max: int = 256
    inflight_handlers_max: int = 64
    request_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    failed_retention_s: float = 3600.0

    @property
    def advertise_addr(self) -> tuple[str, int]:
        return (self.advertise_host, self.advertise_port)

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None


# --- parsers (ValueError with a message; the caller prefixes the variable name) ----------------------

def _parse_port(v: str) -> int:
    p = int(v.strip())
    if not 0 < p <= 65535:
        raise ValueError(f"port out of range: {p}")
    return p


def _parse_host_port(v: str, default_port: int | None) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT, or a bare HOST when default_port is given."""
    s = v.strip()
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep or not host:
            raise ValueError(f"expected [HOST]:PORT, got {v!r}")
        if not rest:
            port = default_port
        elif rest.startswith(":"):
            port = _parse_port(rest[1:])
        else:
            raise ValueError(f"expected [HOST]:PORT, got {v!r}")
    elif s.count(":") == 1:
        host, _, p = s.partition(":")
        port = _parse_port(p)
    elif ":" not in s:
        host, port = s, default_port
    else:
        raise ValueError(f"IPv6 addresses need brackets: {v!r}")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"expected HOST:PORT, got {v!r}")
    if port is None:
        raise ValueError(f"expected HOST:PORT, got {v!r}")
    return host, port


def _parse_seeds(v: str) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    for item in v.split(","):
        if item.strip():
            addr = _parse_host_port(item, None)
            if addr not in out:
                out.append(addr)
    return tuple(out)


def _node_id(v: str) -> str:
    s = v.strip()
    if not s or len(s.encode()) > NODE_ID_BYTES_MAX or not s.isprintable() or any(c.isspace() for c in s):
        raise ValueError(f"expected 1..{NODE_ID_BYTES_MAX} printable bytes without spaces, got {v!r}")
    return s


# env name -> (ClusterConfig field, parser). Addresses are parsed separately: they depend on the port.
def _resolver_path(v: str) -> str:
    from .conflicts import ConflictConfigError, load_resolver
    try:
        load_resolver(v.strip())
    except ConflictConfigError as e:
        raise ValueError(str(e)) from None
    return v.strip()


_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "RS3GW_CLUSTER_ENABLED": ("enabled", parse_bool),
    "RS3GW_CLUSTER_NODE_ID": ("node_id", _node_id),
    "RS3GW_CLUSTER_PORT": ("bind_port", _parse_port),
    "RS3GW_CLUSTER_SEED_NODES": ("seed_nodes", _parse_seeds),
    "RS3GW_REPLICATION_MODE": ("replication_mode", choice(*REPLICATION_MODES)),
    "RS3GW_REPLICATION_FACTOR": ("replication_factor", positive_int),
    "RS3GW_HEARTBEAT_INTERVAL": ("heartbeat_interval_s", positive_seconds),
    "RS3GW_HEARTBEAT_TIMEOUT": ("heartbeat_timeout_s", positive_seconds),
    "RS3GW_GOSSIP_INTERVAL": ("gossip_interval_s", positive_seconds),
    "RS3GW_CONFLICT_RESOLUTION": ("conflict_resolution", choice(*CONFLICT_RESOLUTIONS)),
    "RS3GW_CONFLICT_RESOLVER": ("conflict_resolver", _resolver_path),
    "RS3GW_TOMBSTONE_GC_INTERVAL": ("tombstone_gc_interval_s", positive_seconds),
    "RS3GW_ANTI_ENTROPY_INTERVAL": ("anti_entropy_interval_s", positive_seconds),
    "RS3GW_CLUSTER_TLS_CERT": ("tls_cert", existing_file),
    "RS3GW_CLUSTER_TLS_KEY": ("tls_key", existing_file),
    "RS3GW_CLUSTER_TLS_CA": ("tls_ca", existing_file),
    "RS3GW_CLUSTER_TLS_MUTUAL": ("tls_mutual", parse_bool),
    "RS3GW_CLUSTER_INDIRECT_PINGS": ("indirect_ping_count", positive_int),
    "RS3GW_CLUSTER_MESSAGE_BYTES_MAX": ("message_bytes_max", positive_int),
    "RS3GW_CLUSTER_PENDING_REQUESTS_MAX": ("pending_requests_max", positive_int),
    "RS3GW_CLUSTER_INFLIGHT_HANDLERS_MAX": ("inflight_handlers_max", positive_int),
    "RS3GW_CLUSTER_REQUEST_TIMEOUT": ("request_timeout_s", positive_seconds),
    "RS3GW_CLUSTER_CONNECT_TIMEOUT": ("connect_timeout_s", positive_seconds),
    "RS3GW_CLUSTER_FAILED_RETENTION": ("failed_retention_s", positive_seconds),
}


def load_cluster_config(env: Mapping[str, str] | None = None,
                        storage_root: Path | None = None) -> ClusterConfig:
    """Build the ClusterConfig from the environment; raise ConfigError naming the variable.

    storage_root (default: RS3GW_STORAGE_ROOT, else ./data, as rs3gw.config) holds the generated
    node id when RS3GW_CLUSTER_NODE_ID is not set and the cluster is enabled.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for name, (attr, parse) in _FIELDS.items():
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            continue
        try:
            values[attr] = parse(raw)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{name}: {e}") from e

    port = values.get("bind_port", ClusterConfig.bind_port)
    for name, attrs, default_host in (
            ("RS3GW_CLUSTER_BIND_ADDR", ("bind_host", "bind_port"), ClusterConfig.bind_host),
            ("RS3GW_CLUSTER_ADVERTISE_ADDR", ("advertise_host", "advertise_port"),
             ClusterConfig.advertise_host)):
        raw = env.get(name, "").strip()
        try:
            host, p = _parse_host_port(raw, port) if raw else (default_host, port)
        except ValueError as e:
            raise ConfigError(f"{name}: {e}") from e
        values[attrs[0]], values[attrs[1]] = host, p
    if env.get("RS3GW_CLUSTER_PORT", "").strip() and env.get("RS3GW_CLUSTER_BIND_ADDR", "").strip() \
            and values["bind_port"] != port:
        raise ConfigError(f"RS3GW_CLUSTER_BIND_ADDR: port {values['bind_port']} disagrees with "
                          f"RS3GW_CLUSTER_PORT={port}")
    if values["advertise_host"] in ("0.0.0.0", "::"):
        raise ConfigError("RS3GW_CLUSTER_ADVERTISE_ADDR: must be an address peers can reach, "
                          f"not {values['advertise_host']}")

    _check_relations(values)
    if values.get("enabled") and not values.get("node_id"):
        root = storage_root if storage_root is not None else Path(env.get("RS3GW_STORAGE_ROOT") or "./data")
        try:
            values["node_id"] = load_or_create_node_id(root)
        except (OSError, ValueError) as e:
            raise ConfigError(f"RS3GW_CLUSTER_NODE_ID: not set, and {root / NODE_ID_FILE} "
                              f"is unusable: {e}") from e
    return ClusterConfig(**values)


def _check_relations(values: dict[str, Any]) -> None:
    d = ClusterConfig()
    gossip = values.get("gossip_interval_s", d.gossip_interval_s)
    timeout = values.get("heartbeat_timeout_s", d.heartbeat_timeout_s)
    # One missed ping must never be enough: the suspicion window has to span several periods.
    if timeout < 2 * gossip:
        raise ConfigError(f"RS3GW_HEARTBEAT_TIMEOUT: {timeout}s must be at least twice "
                          f"RS3GW_GOSSIP_INTERVAL ({gossip}s)")
    tls = [values.get(k) is not None for k in ("tls_cert", "tls_key", "tls_ca")]
    if any(tls) and not all(tls):
        raise ConfigError("RS3GW_CLUSTER_TLS_CERT / RS3GW_CLUSTER_TLS_KEY / RS3GW_CLUSTER_TLS_CA: "
                          "set all three or none")


def load_or_create_node_id(storage_root: Path) -> str:
    """The node id persisted under the storage root, created (a uuid4) on first use.

    Blocking: called at start-up, before the event loop runs.
    """
    from ..storage.datafiles import fsync_dir

    path = storage_root / NODE_ID_FILE
    try:
        return _node_id(path.read_text())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    node_id = str(uuid.uuid4())
    tmp = path.with_name(f"node_id.tmp.{os.getpid()}")
    try:
        # Durability order: data fsync, link to the final name, directory fsync. A crash leaves
        # either no id (a fresh one next start; nobody has seen the old) or the whole id. link,
        # not rename: two processes starting on one root agree on the first id written.
        with open(tmp, "w") as f:
            f.write(node_id + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _node_id(path.read_text())
        fsync_dir(str(path.parent))
    finally:
        tmp.unlink(missing_ok=True)
    return node_id
