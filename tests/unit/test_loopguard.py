"""Loop guard: a blocking call made on the event loop's thread is reported, once per function;
the same call in a worker thread, or from asyncio's own code, is not."""
from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from rs3gw.observability import loopguard

LOGGER = "rs3gw.loopguard"


@pytest.fixture
def guard() -> Iterator[None]:
    loopguard.install()
    try:
        yield
    finally:
        loopguard.uninstall()


def reported(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.ERROR]


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop],
                         ids=["asyncio", "uvloop"])
def test_blocking_call_on_the_loop_is_reported_once(
        guard: None, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        loop_factory: object) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)   # no loop: not reported

    async def main() -> None:
        os.fsync(fd)
        os.fsync(fd)

    caplog.set_level(logging.ERROR, LOGGER)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:  # type: ignore[arg-type]
            runner.run(main())
    finally:
        os.close(fd)
    lines = reported(caplog)
    assert len(lines) == 1, lines
    assert lines[0].startswith("blocking call on the event loop: os.fsync\n")
    assert "in main" in lines[0]   # the short stack names the offending coroutine


def test_same_call_in_a_worker_thread_is_not_reported(
        guard: None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "f"

    def blocking() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.stat(path)
        time.sleep(0)
        sqlite3.connect(":memory:").close()
        os.unlink(path)

    async def main() -> None:
        await asyncio.get_running_loop().run_in_executor(None, blocking)
        await asyncio.to_thread(blocking)

    caplog.set_level(logging.ERROR, LOGGER)
    asyncio.run(main())
    assert reported(caplog) == []


def test_each_guarded_function_is_reported(guard: None, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    path = str(tmp_path / "f")

    async def main() -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"abc")
        os.pwrite(fd, b"d", 3)
        os.pread(fd, 1, 0)
        os.read(fd, 1)
        os.fdatasync(fd)
        os.close(fd)
        os.stat(path)
        os.rename(path, path + "2")
        os.replace(path + "2", path)
        os.unlink(path)
        time.sleep(0)  # noqa: ASYNC251 - the blocking call under test
        sqlite3.connect(":memory:").close()

    caplog.set_level(logging.ERROR, LOGGER)
    asyncio.run(main())
    names = {line.split("\n")[0].rsplit(": ", 1)[1] for line in reported(caplog)}
    assert names == {"os.open", "os.write", "os.pwrite", "os.pread", "os.read", "os.fdatasync",
                     "os.stat", "os.rename", "os.replace", "os.unlink", "time.sleep",
                     "sqlite3.connect"}


def test_calls_from_asyncio_itself_are_not_ours(guard: None, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    sock = str(tmp_path / "s")

    async def main() -> None:
        # asyncio's unix server stats (and unlinks) a stale socket path itself.
        server = await asyncio.start_unix_server(lambda r, w: None, sock)
        server.close()
        await server.wait_closed()

    caplog.set_level(logging.ERROR, LOGGER)
    asyncio.run(main())
    assert reported(caplog) == []


def test_install_is_idempotent_and_uninstall_restores() -> None:
    original = os.fsync
    loopguard.install()
    loopguard.install()
    try:
        assert os.fsync is not original
        assert os.fsync.__rs3gw_loopguard__ is original  # type: ignore[attr-defined]
    finally:
        loopguard.uninstall()
    assert os.fsync is original and not loopguard.installed()
