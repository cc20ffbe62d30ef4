"""Where the lifecycle scanner is in its pass, kept durably so that a restart (or kill -9)
continues the pass instead of starting it over or skipping what was left.

Why a small file and not a row of the metadata database: the cursor is this node's scan position,
not bucket data. In cluster mode the store the scanner is given replicates what it writes, and a
position must not; a LocalStore table would also need a store method the ObjectStore interface
has no business carrying, and a metadata commit per batch would queue behind client writes. The
file is tiny and rewritten whole: temp file, fsync, rename over the old one, fsync the directory
(the durable order, so a crash leaves either the old cursor or the new one, never a torn one).

A cursor names the last key *done* in a phase, so resuming lists from the start of the next key:
nothing after the cursor was skipped, and what is before it was done. Work done after the last
save is done again after a crash, which the scanner's actions allow (each one is conditional on
what it finds).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from rs3gw.storage import fsync_dir

log = logging.getLogger("rs3gw.lifecycle")

PHASES = ("versions", "uploads")


@dataclass(frozen=True)
class Cursor:
    """``bucket`` None: a pass starts from the first bucket. Otherwise the pass is in ``bucket``,
    in ``phase`` (its versions, then its multipart uploads), and every key up to and including
    ``after`` is done in that phase ("" : none yet)."""
    bucket: str | None = None
    phase: str = "versions"
    after: str = ""
    passes: int = 0            # passes finished on this node, ever


class CursorFile:
    """Load and save one Cursor at ``path``. Blocking file I/O: call from a thread."""

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = path
        self.durable = durable

    def load(self) -> Cursor:
        """The saved cursor; a fresh one if there is none, or if it cannot be read (starting a
        pass over is always safe, only slower)."""
        try:
            doc = json.loads(self.path.read_bytes())
            cur = Cursor(bucket=doc["bucket"], phase=doc["phase"], after=doc["after"],
                         passes=int(doc["passes"]))
            if cur.phase not in PHASES or not isinstance(cur.after, str) or (
                    cur.bucket is not None and not isinstance(cur.bucket, str)):
                raise ValueError(f"unexpected cursor {doc!r}")
            return cur
        except FileNotFoundError:
            return Cursor()
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("lifecycle: cursor %s unreadable (%s); the pass starts over", self.path, e)
            return Cursor()

    def save(self, cursor: Cursor) -> None:
        data = json.dumps(asdict(cursor)).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self.durable:
                    os.fsync(fd)            # the bytes are on disk before the name points at them
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        if self.durable:
            fsync_dir(str(self.path.parent))    # and the rename itself survives a crash
