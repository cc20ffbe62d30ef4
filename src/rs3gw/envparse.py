"""Parsers for settings given as text (environment variables, TOML values): each returns the value or
raises ValueError with a message; the caller prefixes the variable's name (ConfigError)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def parse_bool(v: str) -> bool:
    s = v.strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {v!r}")


def positive_int(v: str) -> int:
    n = int(v.strip())
    if n <= 0:
        raise ValueError(f"must be > 0, got {n}")
    return n


def positive_seconds(v: str) -> float:
    # Decimals allowed (tests use 0.5); inf and nan are not durations.
    n = float(v.strip())
    if not 0 < n < float("inf"):
        raise ValueError(f"expected a positive number of seconds, got {v!r}")
    return n


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(v: str) -> str:
        s = v.strip().lower()
        if s not in allowed:
            raise ValueError(f"expected one of {'|'.join(allowed)}, got {v!r}")
        return s
    return parse


def existing_file(v: str) -> Path:
    p = Path(v)
    if not p.is_file():
        raise ValueError(f"no such file: {v}")
    return p
