"""Owning a storage root: the lock, and crash recovery on the way in and out.

One process owns a root at a time (an flock on .rs3gw/lock): recovery deletes every tmp file no
commit names, which is only safe while nobody else writes there. With RS3GW_WORKERS > 1 the
supervisor owns the root and its workers inherit the locked descriptor across fork(), so the root
stays locked until the last process of the gateway has exited (a killed supervisor's workers
included). All functions block; call them off the event loop.
"""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time

from rs3gw.storage.datafiles import DataLayout
from rs3gw.storage.metadb import connect_writer, recover
from rs3gw.storage.types import StorageError

log = logging.getLogger(__name__)

LOCK_POLL_S = 0.05


def take_root(layout: DataLayout, durable: bool, wait_s: float = 0.0,
              ) -> tuple[int, sqlite3.Connection]:
    """Lock the root (waiting up to ``wait_s`` for a previous owner to go), then recover.
    Returns the locked descriptor and the writer connection recovery used."""
    layout.prepare()
    fd = os.open(layout.base / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise StorageError(f"storage root {layout.base.parent} is in use by another "
                                   "process") from None
            time.sleep(LOCK_POLL_S)
    try:
        conn = connect_writer(layout.base / "meta.db", durable)
        try:
            published, collected, swept = recover(conn, layout)
        except BaseException:
            conn.close()
            raise
    except BaseException:
        os.close(fd)
        raise
    if published or collected or swept:
        log.info("recovery: %d data files published, %d collected, %d tmp files removed",
                 published, collected, swept)
    return fd, conn


def release_root(layout: DataLayout, conn: sqlite3.Connection, fd: int) -> None:
    """Every writer has stopped: finish what their commits left (renames, unlinks), sweep tmp/,
    close ``conn`` and unlock."""
    try:
        recover(conn, layout)
    finally:
        conn.close()
        os.close(fd)
