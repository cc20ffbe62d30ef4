"""Loop guard: report blocking calls made on an event loop's thread (STYLE rule 4).

``install()`` wraps the blocking functions our code might call (file syscalls, ``time.sleep``,
``sqlite3.connect``) with a check that is deterministic, not timing-based: is there a running event
loop in the calling thread? If so, one ERROR line per function name goes to the log,
``blocking call on the event loop: os.fsync``, with a short stack. The integration suite runs every
server with RS3GW_LOOP_GUARD=1 and fails on that line.

Only attribute lookups through the module see the wrapper (``os.fsync(fd)``, not a name bound by
``from os import fsync`` before install), which is how our code calls them. Calls whose direct
caller is asyncio, uvloop or the standard library's own machinery are theirs, not ours, and are
not reported.
"""
from __future__ import annotations

import functools
import logging
import os
import sqlite3
import sys
import threading
import time
import traceback
from asyncio import events
from collections.abc import Callable
from types import ModuleType
from typing import Any

log = logging.getLogger("rs3gw.loopguard")

MESSAGE = "blocking call on the event loop"
ENV_VAR = "RS3GW_LOOP_GUARD"
STACK_FRAMES_MAX = 8

GUARDED: tuple[tuple[ModuleType, str], ...] = (
    (os, "read"), (os, "write"), (os, "pread"), (os, "pwrite"), (os, "readv"), (os, "preadv"),
    (os, "fsync"), (os, "fdatasync"), (os, "open"), (os, "unlink"), (os, "rename"),
    (os, "replace"), (os, "stat"), (time, "sleep"), (sqlite3, "connect"),
)

# Direct callers that are not our code: the event loop implementations and the stdlib modules they
# use (e.g. asyncio's unix events stat a socket path; uvloop is compiled, so its calls show the
# Python frame below it, and its Python helpers live under uvloop.*).
_FOREIGN_PREFIXES = ("asyncio", "uvloop", "selectors", "concurrent", "threading", "logging",
                     "importlib", "linecache", "traceback", "tokenize")

_originals: dict[tuple[str, str], Callable[..., Any]] = {}
_reported: set[str] = set()
_lock = threading.Lock()


def enabled_by_env() -> bool:
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def _foreign(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in _FOREIGN_PREFIXES)


def _report(name: str) -> None:
    caller = sys._getframe(2)
    if _foreign(caller.f_globals.get("__name__", "")):
        return
    with _lock:
        if name in _reported:
            return
        _reported.add(name)
    stack = "".join(traceback.format_stack(caller, limit=STACK_FRAMES_MAX))
    log.error("%s: %s\n%s", MESSAGE, name, stack.rstrip())


def _wrap(qualname: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        # _get_running_loop: the loop running in *this* thread, None in worker threads; a
        # thread-state read, cheap enough for every call.
        if events._get_running_loop() is not None:
            _report(qualname)
        return fn(*args, **kwargs)
    guarded.__rs3gw_loopguard__ = fn  # type: ignore[attr-defined]
    return guarded


def install() -> None:
    """Wraps every GUARDED function; idempotent."""
    for module, attr in GUARDED:
        key = (module.__name__, attr)
        if key in _originals:
            continue
        fn = getattr(module, attr)
        _originals[key] = fn
        setattr(module, attr, _wrap(f"{module.__name__}.{attr}", fn))


def uninstall() -> None:
    """Puts the original functions back and forgets what was reported (tests)."""
    for module, attr in GUARDED:
        fn = _originals.pop((module.__name__, attr), None)
        if fn is not None:
            setattr(module, attr, fn)
    with _lock:
        _reported.clear()


def installed() -> bool:
    return bool(_originals)
