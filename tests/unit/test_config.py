"""Configuration from the environment and TOML; bad values name their variable."""
from pathlib import Path

import pytest

from rs3gw.config import ConfigError, load_config


def test_defaults() -> None:
    c = load_config({})
    assert (c.bind_host, c.bind_port, c.region, c.fsync) == ("0.0.0.0", 9000, "us-east-1", True)
    assert c.storage_root == Path("./data") and c.anonymous_only


@pytest.mark.parametrize("env,var", [
    ({"RS3GW_BIND_ADDR": "nonsense"}, "RS3GW_BIND_ADDR"),
    ({"RS3GW_BIND_ADDR": "1.2.3.4:99999"}, "RS3GW_BIND_ADDR"),
    ({"RS3GW_FSYNC": "maybe"}, "RS3GW_FSYNC"),
    ({"RS3GW_INLINE_MAX_BYTES": "-1"}, "RS3GW_INLINE_MAX_BYTES"),
    ({"RS3GW_INLINE_MAX_BYTES": "2000000"}, "RS3GW_INLINE_MAX_BYTES"),
    ({"RS3GW_MAX_CONCURRENT": "0"}, "RS3GW_MAX_CONCURRENT"),
    ({"RS3GW_REQUEST_TIMEOUT": "soon"}, "RS3GW_REQUEST_TIMEOUT"),
    ({"RS3GW_TLS_CERT": "/nonexistent.pem", "RS3GW_TLS_KEY": "/nonexistent.key"}, "RS3GW_TLS_CERT"),
    ({"RS3GW_ACCESS_KEY": "AK"}, "RS3GW_ACCESS_KEY"),
    ({"RS3GW_USERS_FILE": "/nonexistent.toml"}, "RS3GW_USERS_FILE"),
    ({"RS3GW_IO_BACKEND": "aio"}, "RS3GW_IO_BACKEND"),
    ({"RS3GW_DIRECT_IO": "maybe"}, "RS3GW_DIRECT_IO"),
    ({"RS3GW_WORKERS": "0"}, "RS3GW_WORKERS"),
    ({"RS3GW_WORKERS": "many"}, "RS3GW_WORKERS"),
    ({"RS3GW_WORKERS": "1000"}, "RS3GW_WORKERS"),
    ({"RS3GW_LIFECYCLE_DAY_SECONDS": "0"}, "RS3GW_LIFECYCLE_DAY_SECONDS"),
    ({"RS3GW_LIFECYCLE_RATE": "-5"}, "RS3GW_LIFECYCLE_RATE"),
    ({"RS3GW_LIFECYCLE_INTERVAL": "never"}, "RS3GW_LIFECYCLE_INTERVAL"),
])
def test_bad_values_name_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError, match=var):
        load_config(env)


def test_io_backend_and_direct_io() -> None:
    c = load_config({})
    assert (c.io_backend, c.direct_io) == ("auto", "auto")
    c = load_config({"RS3GW_IO_BACKEND": "Threads", "RS3GW_DIRECT_IO": "off"})
    assert (c.io_backend, c.direct_io) == ("threads", "off")
    c = load_config({"RS3GW_IO_BACKEND": "uring", "RS3GW_DIRECT_IO": "on"})
    assert (c.io_backend, c.direct_io) == ("uring", "on")


def test_users_file_and_toml(tmp_path: Path) -> None:
    users = tmp_path / "users.toml"
    users.write_text('[[users]]\naccess_key = "AKALICE"\nsecret_key = "s"\nuser_id = "alice-id"\n'
                     'display_name = "alice"\n')
    conf = tmp_path / "rs3gw.toml"
    conf.write_text(f'bind_addr = "127.0.0.1:9100"\nfsync = false\nusers_file = "{users}"\n')
    c = load_config({"RS3GW_CONFIG": str(conf), "RS3GW_ACCESS_KEY": "ROOT", "RS3GW_SECRET_KEY": "x",
                     "RS3GW_BIND_ADDR": "127.0.0.1:9200"})
    assert c.bind_port == 9200          # environment wins over the file
    assert c.fsync is False
    assert [u.access_key for u in c.all_users()] == ["ROOT", "AKALICE"]
    assert c.users[0].user_id == "alice-id" and c.users[0].display_name == "alice"


def test_workers_default_to_the_usable_cores() -> None:
    import os
    cores = len(os.sched_getaffinity(0))
    assert load_config({}).workers == cores
    assert load_config({"RS3GW_WORKERS": "auto"}).workers == cores
    assert load_config({"RS3GW_WORKERS": "3"}).workers == 3


def test_lifecycle_settings() -> None:
    c = load_config({})
    assert (c.lifecycle_day_s, c.lifecycle_rate, c.lifecycle_pass_interval_s) == (86400.0, 1000,
                                                                                 3600.0)
    c = load_config({"RS3GW_LIFECYCLE_DAY_SECONDS": "1", "RS3GW_LIFECYCLE_RATE": "50"})
    assert (c.lifecycle_day_s, c.lifecycle_rate, c.lifecycle_pass_interval_s) == (1.0, 50, 0.5)
    c = load_config({"RS3GW_LIFECYCLE_DAY_SECONDS": "1", "RS3GW_LIFECYCLE_INTERVAL": "0.2"})
    assert c.lifecycle_pass_interval_s == 0.2
