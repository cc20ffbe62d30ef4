"""Cluster settings from the environment: every variable, defaults, and bad values naming the variable."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from rs3gw.cluster.config import ClusterConfig, load_cluster_config, load_or_create_node_id
from rs3gw.config import ConfigError


def test_defaults_without_cluster(tmp_path: Path) -> None:
    c = load_cluster_config({}, storage_root=tmp_path)
    assert c.enabled is False
    assert c.node_id == ""                        # disabled and unset: no id file is created
    assert not (tmp_path / ".rs3gw").exists()
    assert c.advertise_addr == ("127.0.0.1", 9001)
    assert (c.bind_host, c.bind_port) == ("0.0.0.0", 9001)
    assert c.seed_nodes == ()
    assert (c.replication_mode, c.replication_factor) == ("async", 2)
    assert (c.heartbeat_interval_s, c.heartbeat_timeout_s, c.gossip_interval_s) == (5.0, 15.0, 1.0)
    assert c.conflict_resolution == "last_write_wins"
    assert c.tls_enabled is False


def test_every_variable(tmp_path: Path, pki: object) -> None:
    from cluster_helpers import ClusterPKI
    assert isinstance(pki, ClusterPKI)
    env = {
        "RS3GW_CLUSTER_ENABLED": "true",
        "RS3GW_CLUSTER_NODE_ID": "node-a",
        "RS3GW_CLUSTER_ADVERTISE_ADDR": "10.0.0.5:9201",
        "RS3GW_CLUSTER_PORT": "9201",
        "RS3GW_CLUSTER_BIND_ADDR": "127.0.0.1",
        "RS3GW_CLUSTER_SEED_NODES": "10.0.0.5:9201, 10.0.0.6:9201,[::1]:9300,,10.0.0.6:9201",
        "RS3GW_REPLICATION_MODE": "Quorum",
        "RS3GW_REPLICATION_FACTOR": "3",
        "RS3GW_HEARTBEAT_INTERVAL": "0.5",
        "RS3GW_HEARTBEAT_TIMEOUT": "4",
        "RS3GW_GOSSIP_INTERVAL": "0.25",
        "RS3GW_CONFLICT_RESOLUTION": "vector_clock_merge",
        "RS3GW_CLUSTER_TLS_CERT": str(pki.nodes[0].cert),
        "RS3GW_CLUSTER_TLS_KEY": str(pki.nodes[0].key),
        "RS3GW_CLUSTER_TLS_CA": str(pki.ca),
        "RS3GW_CLUSTER_TLS_MUTUAL": "false",
        "RS3GW_CLUSTER_INDIRECT_PINGS": "2",
        "RS3GW_CLUSTER_MESSAGE_BYTES_MAX": "1048576",
        "RS3GW_CLUSTER_PENDING_REQUESTS_MAX": "10",
        "RS3GW_CLUSTER_INFLIGHT_HANDLERS_MAX": "5",
        "RS3GW_CLUSTER_REQUEST_TIMEOUT": "2.5",
        "RS3GW_CLUSTER_CONNECT_TIMEOUT": "1.5",
        "RS3GW_CLUSTER_FAILED_RETENTION": "60",
    }
    c = load_cluster_config(env, storage_root=tmp_path)
    assert c == ClusterConfig(
        enabled=True, node_id="node-a", advertise_host="10.0.0.5", advertise_port=9201,
        bind_host="127.0.0.1", bind_port=9201,
        seed_nodes=(("10.0.0.5", 9201), ("10.0.0.6", 9201), ("::1", 9300)),
        replication_mode="quorum", replication_factor=3,
        heartbeat_interval_s=0.5, heartbeat_timeout_s=4.0, gossip_interval_s=0.25,
        conflict_resolution="vector_clock_merge",
        tls_cert=pki.nodes[0].cert, tls_key=pki.nodes[0].key, tls_ca=pki.ca, tls_mutual=False,
        indirect_ping_count=2, message_bytes_max=1 << 20, pending_requests_max=10,
        inflight_handlers_max=5, request_timeout_s=2.5, connect_timeout_s=1.5, failed_retention_s=60.0)
    assert c.tls_enabled


def test_port_is_the_default_for_bind_and_advertise(tmp_path: Path) -> None:
    c = load_cluster_config({"RS3GW_CLUSTER_PORT": "9301", "RS3GW_CLUSTER_ADVERTISE_ADDR": "192.0.2.7"},
                            storage_root=tmp_path)
    assert c.advertise_addr == ("192.0.2.7", 9301) and c.bind_port == 9301
    c = load_cluster_config({"RS3GW_CLUSTER_BIND_ADDR": "127.0.0.1:9401"}, storage_root=tmp_path)
    assert (c.bind_host, c.bind_port) == ("127.0.0.1", 9401)


@pytest.mark.parametrize("mode", ["sync", "async", "quorum"])
def test_replication_modes(mode: str, tmp_path: Path) -> None:
    assert load_cluster_config({"RS3GW_REPLICATION_MODE": mode}, storage_root=tmp_path).replication_mode == mode


@pytest.mark.parametrize("name", ["last_write_wins", "first_write_wins", "vector_clock_merge"])
def test_conflict_resolutions(name: str, tmp_path: Path) -> None:
    c = load_cluster_config({"RS3GW_CONFLICT_RESOLUTION": name}, storage_root=tmp_path)
    assert c.conflict_resolution == name


@pytest.mark.parametrize("env,var", [
    ({"RS3GW_CLUSTER_ENABLED": "maybe"}, "RS3GW_CLUSTER_ENABLED"),
    ({"RS3GW_CLUSTER_NODE_ID": "has space"}, "RS3GW_CLUSTER_NODE_ID"),
    ({"RS3GW_CLUSTER_NODE_ID": "x" * 200}, "RS3GW_CLUSTER_NODE_ID"),
    ({"RS3GW_CLUSTER_ADVERTISE_ADDR": "host:notaport"}, "RS3GW_CLUSTER_ADVERTISE_ADDR"),
    ({"RS3GW_CLUSTER_ADVERTISE_ADDR": "0.0.0.0:9001"}, "RS3GW_CLUSTER_ADVERTISE_ADDR"),
    ({"RS3GW_CLUSTER_ADVERTISE_ADDR": "::1:9001"}, "RS3GW_CLUSTER_ADVERTISE_ADDR"),
    ({"RS3GW_CLUSTER_PORT": "0"}, "RS3GW_CLUSTER_PORT"),
    ({"RS3GW_CLUSTER_PORT": "70000"}, "RS3GW_CLUSTER_PORT"),
    ({"RS3GW_CLUSTER_PORT": "nine"}, "RS3GW_CLUSTER_PORT"),
    ({"RS3GW_CLUSTER_BIND_ADDR": "1.2.3.4:99999"}, "RS3GW_CLUSTER_BIND_ADDR"),
    ({"RS3GW_CLUSTER_BIND_ADDR": "127.0.0.1:9002", "RS3GW_CLUSTER_PORT": "9003"}, "RS3GW_CLUSTER_BIND_ADDR"),
    ({"RS3GW_CLUSTER_SEED_NODES": "10.0.0.1"}, "RS3GW_CLUSTER_SEED_NODES"),
    ({"RS3GW_CLUSTER_SEED_NODES": "10.0.0.1:9001,:9001"}, "RS3GW_CLUSTER_SEED_NODES"),
    ({"RS3GW_REPLICATION_MODE": "eventual"}, "RS3GW_REPLICATION_MODE"),
    ({"RS3GW_REPLICATION_FACTOR": "0"}, "RS3GW_REPLICATION_FACTOR"),
    ({"RS3GW_REPLICATION_FACTOR": "two"}, "RS3GW_REPLICATION_FACTOR"),
    ({"RS3GW_HEARTBEAT_INTERVAL": "-1"}, "RS3GW_HEARTBEAT_INTERVAL"),
    ({"RS3GW_HEARTBEAT_INTERVAL": "nan"}, "RS3GW_HEARTBEAT_INTERVAL"),
    ({"RS3GW_HEARTBEAT_TIMEOUT": "0"}, "RS3GW_HEARTBEAT_TIMEOUT"),
    ({"RS3GW_HEARTBEAT_TIMEOUT": "inf"}, "RS3GW_HEARTBEAT_TIMEOUT"),
    ({"RS3GW_GOSSIP_INTERVAL": "1s"}, "RS3GW_GOSSIP_INTERVAL"),
    ({"RS3GW_HEARTBEAT_TIMEOUT": "1", "RS3GW_GOSSIP_INTERVAL": "0.75"}, "RS3GW_HEARTBEAT_TIMEOUT"),
    ({"RS3GW_CONFLICT_RESOLUTION": "random"}, "RS3GW_CONFLICT_RESOLUTION"),
    ({"RS3GW_CLUSTER_TLS_CERT": "/nonexistent.pem"}, "RS3GW_CLUSTER_TLS_CERT"),
    ({"RS3GW_CLUSTER_TLS_MUTUAL": "perhaps"}, "RS3GW_CLUSTER_TLS_MUTUAL"),
    ({"RS3GW_CLUSTER_INDIRECT_PINGS": "0"}, "RS3GW_CLUSTER_INDIRECT_PINGS"),
    ({"RS3GW_CLUSTER_REQUEST_TIMEOUT": "0"}, "RS3GW_CLUSTER_REQUEST_TIMEOUT"),
])
def test_bad_values_name_the_variable(env: dict[str, str], var: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=var):
        load_cluster_config(env, storage_root=tmp_path)


def test_tls_needs_all_three_files(tmp_path: Path, pki: object) -> None:
    from cluster_helpers import ClusterPKI
    assert isinstance(pki, ClusterPKI)
    with pytest.raises(ConfigError, match="RS3GW_CLUSTER_TLS_CA"):
        load_cluster_config({"RS3GW_CLUSTER_TLS_CERT": str(pki.nodes[0].cert),
                             "RS3GW_CLUSTER_TLS_KEY": str(pki.nodes[0].key)}, storage_root=tmp_path)


def test_generated_node_id_is_persisted(tmp_path: Path) -> None:
    env = {"RS3GW_CLUSTER_ENABLED": "1"}
    first = load_cluster_config(env, storage_root=tmp_path).node_id
    uuid.UUID(first)
    assert (tmp_path / ".rs3gw" / "node_id").read_text().strip() == first
    assert load_cluster_config(env, storage_root=tmp_path).node_id == first     # same root, same id
    assert load_cluster_config(env, storage_root=tmp_path / "other").node_id != first
    # RS3GW_STORAGE_ROOT is where it lives when no root is passed, as for the server.
    root = tmp_path / "viaenv"
    via_env = load_cluster_config({**env, "RS3GW_STORAGE_ROOT": str(root)}).node_id
    assert load_or_create_node_id(root) == via_env
    # An explicit id wins and does not touch the file.
    assert load_cluster_config({**env, "RS3GW_CLUSTER_NODE_ID": "n7"}, storage_root=tmp_path).node_id == "n7"
    assert (tmp_path / ".rs3gw" / "node_id").read_text().strip() == first
    assert [p.name for p in (tmp_path / ".rs3gw").iterdir()] == ["node_id"]    # no temp file left


def test_unusable_node_id_file_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".rs3gw").mkdir()
    (tmp_path / ".rs3gw" / "node_id").write_text("   \n")
    with pytest.raises(ConfigError, match="RS3GW_CLUSTER_NODE_ID"):
        load_cluster_config({"RS3GW_CLUSTER_ENABLED": "true"}, storage_root=tmp_path)


def test_custom_conflict_resolver_is_loaded_at_start_up(tmp_path: Path) -> None:
    from rs3gw.cluster.conflicts import Strategy, resolver_for

    base = {"RS3GW_STORAGE_ROOT": str(tmp_path), "RS3GW_TOMBSTONE_GC_INTERVAL": "2.5"}
    cfg = load_cluster_config({**base, "RS3GW_CONFLICT_RESOLVER": "rs3gw.cluster.conflicts:_later"})
    assert cfg.conflict_resolver == "rs3gw.cluster.conflicts:_later"
    assert cfg.tombstone_gc_interval_s == 2.5
    assert resolver_for(cfg.conflict_resolution, cfg.conflict_resolver).strategy is Strategy.CUSTOM
    with pytest.raises(ConfigError, match="RS3GW_CONFLICT_RESOLVER"):
        load_cluster_config({**base, "RS3GW_CONFLICT_RESOLVER": "no.such.module:fn"})
