"""One typed Config for the whole server: environment (RS3GW_*), then an optional TOML file.

Precedence: explicit environment variable > TOML file named by RS3GW_CONFIG > default.
A bad value stops start-up with a ConfigError naming the variable.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .envparse import choice, existing_file, parse_bool, positive_int, positive_seconds

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class User:
    access_key: str
    secret_key: str
    user_id: str
    display_name: str


@dataclass(frozen=True)
class Config:
    bind_host: str = "0.0.0.0"
    bind_port: int = 9000
    storage_root: Path = Path("./data")
    access_key: str = ""
    secret_key: str = ""
    region: str = "us-east-1"
    fsync: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    domain: str | None = None
    max_concurrent: int = 1024
    request_timeout_s: float = 300.0
    idle_timeout_s: float = 60.0
    max_header_bytes: int = 64 * 1024
    max_uri_bytes: int = 16 * 1024
    drain_timeout_s: float = 30.0
    log_level: str = "INFO"
    users_file: Path | None = None
    users: tuple[User, ...] = field(default_factory=tuple)
    # Data-file I/O: io_uring or the thread pool (auto: io_uring when the kernel allows it), and
    # O_DIRECT with io_uring (auto: where the filesystem under storage_root accepts it).
    io_backend: str = "auto"
    direct_io: str = "auto"
    inline_max_bytes: int = 64 * 1024
    # GetObject/HeadObject's one-statement lookup runs on the event loop (see LocalStore).
    loop_reads: bool = True
    # Plain-HTTP GET bodies from data files by sendfile(2) (rs3gw.http.sendfile).
    sendfile: bool = True
    # Server processes sharing the port (rs3gw.workers); cluster mode always runs one.
    workers: int = field(default_factory=lambda: usable_cores())
    # Bucket lifecycle (rs3gw.lifecycle): the length of a lifecycle day in seconds (rule Days
    # and the midnights expiry dates round up to are counted in it; tests shorten it), the
    # scanner's pace in versions, markers and uploads looked at per second, and the time between
    # the starts of two passes (None: a 24th of a lifecycle day, from 0.5 s to an hour).
    lifecycle_day_s: float = 86400.0
    lifecycle_rate: int = 1000
    lifecycle_interval_s: float | None = None

    @property
    def lifecycle_pass_interval_s(self) -> float:
        if self.lifecycle_interval_s is not None:
            return self.lifecycle_interval_s
        return min(3600.0, max(0.5, self.lifecycle_day_s / 24))

    @property
    def anonymous_only(self) -> bool:
        """Both root keys empty: the gateway runs open (anonymous access allowed)."""
        return not self.access_key and not self.secret_key

    @property
    def root_user(self) -> User | None:
        if self.anonymous_only:
            return None
        return User(self.access_key, self.secret_key, _root_user_id(self.access_key), "root")

    def all_users(self) -> list[User]:
        root = self.root_user
        return ([root] if root else []) + list(self.users)


def _root_user_id(access_key: str) -> str:
    import hashlib
    # A stable 64-hex canonical id, like AWS's, derived from the key so it survives restarts.
    return hashlib.sha256(b"rs3gw-root:" + access_key.encode()).hexdigest()


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, e.g. under taskset or a cgroup cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:       # not Linux
        return max(1, os.cpu_count() or 1)


def _workers(v: str) -> int:
    if v.strip().lower() == "auto":
        return usable_cores()
    n = positive_int(v)
    if n > 256:
        raise ValueError(f"at most 256 worker processes, got {n}")
    return n


def _parse_addr(v: str) -> tuple[str, int]:
    host, sep, port = v.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {v!r}")
    host = host.strip("[]")
    p = int(port)
    if not 0 <= p <= 65535:
        raise ValueError(f"port out of range: {p}")
    return host, p


def _inline_bytes(v: str) -> int:
    # Inline bodies live in SQLite pages and the WAL: beyond ~1 MiB they cost more than a file.
    n = int(v)
    if not 0 <= n <= 1 << 20:
        raise ValueError(f"must be between 0 (never inline) and 1048576, got {n}")
    return n


# env name -> (Config field, parser, TOML key)
_FIELDS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "RS3GW_STORAGE_ROOT": ("storage_root", Path, "storage_root"),
    "RS3GW_ACCESS_KEY": ("access_key", str, "access_key"),
    "RS3GW_SECRET_KEY": ("secret_key", str, "secret_key"),
    "RS3GW_REGION": ("region", str, "region"),
    "RS3GW_FSYNC": ("fsync", parse_bool, "fsync"),
    "RS3GW_TLS_CERT": ("tls_cert", existing_file, "tls_cert"),
    "RS3GW_TLS_KEY": ("tls_key", existing_file, "tls_key"),
    "RS3GW_DOMAIN": ("domain", str, "domain"),
    "RS3GW_MAX_CONCURRENT": ("max_concurrent", positive_int, "max_concurrent"),
    "RS3GW_REQUEST_TIMEOUT": ("request_timeout_s", positive_seconds, "request_timeout"),
    "RS3GW_IDLE_TIMEOUT": ("idle_timeout_s", positive_seconds, "idle_timeout"),
    "RS3GW_MAX_HEADER_BYTES": ("max_header_bytes", positive_int, "max_header_bytes"),
    "RS3GW_MAX_URI_BYTES": ("max_uri_bytes", positive_int, "max_uri_bytes"),
    "RS3GW_DRAIN_TIMEOUT": ("drain_timeout_s", positive_seconds, "drain_timeout"),
    "RS3GW_LOG_LEVEL": ("log_level", str.upper, "log_level"),
    "RS3GW_USERS_FILE": ("users_file", existing_file, "users_file"),
    "RS3GW_IO_BACKEND": ("io_backend", choice("auto", "uring", "threads"), "io_backend"),
    "RS3GW_DIRECT_IO": ("direct_io", choice("auto", "on", "off"), "direct_io"),
    "RS3GW_INLINE_MAX_BYTES": ("inline_max_bytes", _inline_bytes, "inline_max_bytes"),
    "RS3GW_LOOP_READS": ("loop_reads", parse_bool, "loop_reads"),
    "RS3GW_WORKERS": ("workers", _workers, "workers"),
    "RS3GW_SENDFILE": ("sendfile", parse_bool, "sendfile"),
    "RS3GW_LIFECYCLE_DAY_SECONDS": ("lifecycle_day_s", positive_seconds, "lifecycle_day_seconds"),
    "RS3GW_LIFECYCLE_RATE": ("lifecycle_rate", positive_int, "lifecycle_rate"),
    "RS3GW_LIFECYCLE_INTERVAL": ("lifecycle_interval_s", positive_seconds, "lifecycle_interval"),
}


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Build the Config from the environment and the optional TOML file; raise ConfigError."""
    env = os.environ if env is None else env
    toml: dict[str, Any] = {}
    if env.get("RS3GW_CONFIG"):
        try:
            toml = tomllib.loads(Path(env["RS3GW_CONFIG"]).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"RS3GW_CONFIG: cannot read {env['RS3GW_CONFIG']}: {e}") from e
    values: dict[str, Any] = {}
    raw_bind = env.get("RS3GW_BIND_ADDR") or (str(toml["bind_addr"]) if "bind_addr" in toml else None)
    if raw_bind is not None:
        try:
            values["bind_host"], values["bind_port"] = _parse_addr(raw_bind)
        except ValueError as e:
            raise ConfigError(f"RS3GW_BIND_ADDR: {e}") from e
    for name, (attr, parse, tkey) in _FIELDS.items():
        raw = env.get(name)
        if raw is None and tkey in toml:
            raw = str(toml[tkey]).lower() if isinstance(toml[tkey], bool) else str(toml[tkey])
        if raw is None or (raw == "" and attr not in ("access_key", "secret_key")):
            continue
        try:
            values[attr] = parse(raw)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{name}: {e}") from e
    if values.get("log_level", "INFO") not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"RS3GW_LOG_LEVEL: unknown level {values['log_level']!r}")
    if bool(values.get("access_key")) != bool(values.get("secret_key")):
        raise ConfigError("RS3GW_ACCESS_KEY / RS3GW_SECRET_KEY: set both or neither")
    if bool(values.get("tls_cert")) != bool(values.get("tls_key")):
        raise ConfigError("RS3GW_TLS_CERT / RS3GW_TLS_KEY: set both or neither")
    if "users_file" in values:
        values["users"] = tuple(_load_users(values["users_file"]))
    elif isinstance(toml.get("users"), list):
        values["users"] = tuple(_parse_users(toml["users"], "RS3GW_CONFIG"))
    cfg = Config(**values)
    keys = [u.access_key for u in cfg.all_users()]
    if len(keys) != len(set(keys)):
        raise ConfigError("RS3GW_USERS_FILE: duplicate access_key across users")
    return cfg


def _load_users(path: Path) -> list[User]:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"RS3GW_USERS_FILE: cannot read {path}: {e}") from e
    users = doc.get("users", [])
    if not isinstance(users, list):
        raise ConfigError("RS3GW_USERS_FILE: expected [[users]] tables")
    return _parse_users(users, "RS3GW_USERS_FILE")


def _parse_users(items: list[Any], var: str) -> list[User]:
    out = []
    for i, u in enumerate(items):
        if not isinstance(u, dict):
            raise ConfigError(f"{var}: users[{i}] is not a table")
        missing = [k for k in ("access_key", "secret_key") if not u.get(k)]
        if missing:
            raise ConfigError(f"{var}: users[{i}] lacks {', '.join(missing)}")
        ak = str(u["access_key"])
        out.append(User(ak, str(u["secret_key"]), str(u.get("user_id") or _root_user_id(ak)),
                        str(u.get("display_name") or ak)))
    return out
