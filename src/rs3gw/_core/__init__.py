"""The compiled core: rs3gw's byte-heavy loops in C/Cython, run with the GIL released.

Compiled modules, each built from its own folder of src/_core/ (src/_core/README.md lists the
sources and system libraries), and the pure-Python twin named after each:

    compiled   twin          what it does
    crc        crc_ref       CRC-32, CRC-32C, CRC-64/NVME and their combine (multipart checksums)
    hashing    hashing_ref   MD5 + SHA-1/SHA-256 + the CRCs over one stream in one pass
    chunked    chunked_ref   aws-chunked decoder with chunk-signature verification
    batch      batch_ref     replication batch frames (msgpack events + raw segments, zstd/lz4)
    _uring     (none)        io_uring through cffi over liburing

A twin has its compiled module's API and behaviour, is small and slow on purpose, and is what tests
use as an oracle; it is never a second production path. ``_uring`` has no twin. Its Python face is
``uring`` (the asyncio Ring), and the thread-pool backend ``io_threads`` with the same Ring API is a
production path chosen by RS3GW_IO_BACKEND, not a twin; ``directio`` (O_DIRECT files) runs over
either.

The loader is the one place that reads RS3GW_CORE (``compiled``, the default, or ``reference``,
a test setting):

    load("crc")        -> rs3gw._core.crc, or rs3gw._core.crc_ref under RS3GW_CORE=reference
    implementation()   -> "compiled" | "reference"

A compiled module that is not built is an ImportError naming ``make build``, never a silent fallback
to its twin; an RS3GW_CORE value other than those two is a ValueError naming the variable.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from types import MappingProxyType, ModuleType
from typing import Final, Literal

__all__ = ["ENV", "IMPLEMENTATIONS", "TWINS", "Implementation", "implementation", "load"]

Implementation = Literal["compiled", "reference"]

ENV: Final = "RS3GW_CORE"
IMPLEMENTATIONS: Final[tuple[Implementation, ...]] = ("compiled", "reference")

# Compiled module -> its reference twin. Only these are chosen by RS3GW_CORE.
TWINS: Final[Mapping[str, str]] = MappingProxyType({
    "batch": "batch_ref",
    "chunked": "chunked_ref",
    "crc": "crc_ref",
    "hashing": "hashing_ref",
})


def implementation() -> Implementation:
    """What RS3GW_CORE selects; unset or empty means compiled. Read on every call."""
    kind = (os.environ.get(ENV) or "compiled").strip().lower()
    if kind == "compiled":
        return "compiled"
    if kind == "reference":
        return "reference"
    raise ValueError(f"{ENV} must be one of {IMPLEMENTATIONS}, not {kind!r}")


def load(name: str) -> ModuleType:
    """rs3gw._core.<name>, or its twin rs3gw._core.<name>_ref under RS3GW_CORE=reference."""
    if name not in TWINS:
        why = ("; _uring has no twin: import rs3gw._core.uring, and RS3GW_IO_BACKEND chooses between it "
               "and the threads backend" if name == "_uring" else "")
        raise ValueError(f"load() takes one of {tuple(sorted(TWINS))}, not {name!r}{why}")
    if implementation() == "reference":
        return importlib.import_module(f"{__name__}.{TWINS[name]}")
    module = f"{__name__}.{name}"
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # Never fall back to the twin: it is a test oracle, many times slower than the build.
        raise ImportError(
            f"{module} is not built or cannot be loaded ({exc}): run `make build` "
            "(or `make deps` on a fresh machine)",
            name=module,
        ) from exc
