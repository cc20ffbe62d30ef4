"""rs3gw._core.directio: DirectWriter/DirectReader over both backends, on disk and on tmpfs, and the
backend selection policy (RS3GW_IO_BACKEND / RS3GW_DIRECT_IO).

tmp_path is on the real disk here (ext4; /tmp and /work share it); /dev/shm is tmpfs. Linux >= 6.6
tmpfs accepts O_DIRECT, so refusals are also simulated: at open() and at the first transfer.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import random
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from rs3gw._core import directio, uring
from rs3gw._core.directio import DirectReader, DirectWriter, select_backend
from rs3gw._core.io_threads import Completion, ThreadBackend
from rs3gw._core.uring import BufferPool, Ring

DEADLINE_S = 60.0
MIB = 1 << 20
SIZES = [0, 1, 4095, 4096, MIB + 7, 10 * MIB]
SHM = Path("/dev/shm")

backends = pytest.mark.parametrize("kind", ["uring", "threads"])


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(coro, DEADLINE_S))


def make_backend(kind: str) -> Ring | ThreadBackend:
    return Ring() if kind == "uring" else ThreadBackend()


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def fs_type(path: Path) -> str:
    best, kind = "", ""
    mounts = Path("/proc/mounts").read_text().splitlines()
    for line in mounts:
        mnt, fstype = line.split()[1:3]
        if str(path).startswith(mnt) and len(mnt) > len(best):
            best, kind = mnt, fstype
    return kind


@pytest.fixture(params=["disk", "tmpfs"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    if request.param == "disk":
        assert fs_type(tmp_path) != "tmpfs", "tmp_path should be on the real disk"
        yield tmp_path
        return
    if not SHM.is_dir():
        pytest.skip("no /dev/shm")
    d = SHM / f"rs3gw-test-{os.getpid()}-{tmp_path.name}"
    d.mkdir()
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


async def write_file(
    path: Path,
    backend: Any,
    pool: BufferPool,
    data: bytes,
    rng: random.Random,
    direct: str = "auto",
    depth: int = 4,
) -> DirectWriter:
    w = DirectWriter(str(path), backend, pool, direct=direct, depth=depth)
    pos = 0
    while pos < len(data):  # uneven pieces: exercises buffer boundaries
        n = rng.choice([1, 7, 4096, 65536, 300_001, MIB, 3 * MIB])
        await w.write(data[pos : pos + n])
        pos += n
    assert await w.finish() == len(data)
    return w


async def read_range(r: DirectReader, start: int, end: int) -> bytes:
    out = bytearray()
    async for view in r.read_range(start, end):
        out += view
    return bytes(out)


@backends
@pytest.mark.parametrize("size", SIZES)
def test_round_trip_and_ranges(where: Path, kind: str, size: int) -> None:
    rng = random.Random(size)
    data = rng.randbytes(size)

    async def main() -> None:
        before = open_fds()
        backend = make_backend(kind)
        pool = BufferPool(size=MIB, count=16)
        path = where / "obj"
        w = await write_file(path, backend, pool, data, rng)
        if fs_type(where) != "tmpfs":
            assert w.direct and w.direct_fallback is None
        assert path.read_bytes() == data
        r = DirectReader(str(path), backend, pool)
        assert r.size == size and r.direct == w.direct
        assert await read_range(r, 0, size - 1) == data
        assert await read_range(r, 0, size + 5 * MIB) == data  # end past EOF clamps
        assert await read_range(r, size, size + 10) == b""
        for _ in range(8):
            a = rng.randrange(size + 1)
            b = rng.randrange(a - 1, size + 2)
            assert await read_range(r, a, b) == data[a : b + 1], (a, b)
        r.close()
        assert pool.available == pool.count
        backend.close()
        pool.close()
        assert open_fds() == before

    run(main())


@backends
def test_small_pool_deep_queue(tmp_path: Path, kind: str) -> None:
    """depth larger than the pool: writers and readers wait for buffers instead of deadlocking."""
    data = random.Random(1).randbytes(9 * 65536 + 123)

    async def main() -> None:
        backend = make_backend(kind)
        pool = BufferPool(size=65536, count=2)
        await write_file(tmp_path / "o", backend, pool, data, random.Random(2), depth=8)
        r = DirectReader(str(tmp_path / "o"), backend, pool, depth=8)
        assert await read_range(r, 5, len(data) - 2) == data[5:-1]
        r.close()
        assert pool.available == 2
        await backend.aclose()

    run(main())


@backends
def test_direct_off_and_on(tmp_path: Path, kind: str) -> None:
    data = os.urandom(MIB + 5)

    async def main() -> None:
        backend = make_backend(kind)
        pool = BufferPool(size=MIB, count=4)
        w = await write_file(tmp_path / "off", backend, pool, data, random.Random(0), direct="off")
        assert not w.direct and w.direct_fallback == "off"
        w = await write_file(tmp_path / "on", backend, pool, data, random.Random(0), direct="on")
        assert w.direct
        assert (tmp_path / "on").read_bytes() == (tmp_path / "off").read_bytes() == data
        r = DirectReader(str(tmp_path / "on"), backend, pool, direct="on")
        assert r.direct and await read_range(r, 4097, MIB + 2) == data[4097 : MIB + 3]
        r.close()
        with pytest.raises(FileExistsError):  # a writer makes a new file
            DirectWriter(str(tmp_path / "on"), backend, pool)
        with pytest.raises(ValueError):
            DirectWriter(str(tmp_path / "x"), backend, pool, direct="maybe")
        await backend.aclose()
        assert pool.available == 4

    run(main())


@backends
def test_open_refusing_o_direct_falls_back(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """tmpfs before Linux 6.6 (and some FUSE filesystems) fail open(O_DIRECT) with EINVAL, after
    O_CREAT has already made the file."""
    real_open = os.open

    def refusing_open(path: Any, flags: int, mode: int = 0o777) -> int:
        if flags & os.O_DIRECT:
            if flags & os.O_CREAT:
                os.close(real_open(path, flags & ~os.O_DIRECT, mode))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)

    monkeypatch.setattr(directio.os, "open", refusing_open)
    data = os.urandom(2 * MIB + 3)

    async def main() -> None:
        backend = make_backend(kind)
        pool = BufferPool(size=MIB, count=4)
        with caplog.at_level(logging.INFO, logger="rs3gw.io"):
            w = await write_file(tmp_path / "o", backend, pool, data, random.Random(0))
        assert not w.direct and "EINVAL" in (w.direct_fallback or "")
        r = DirectReader(str(tmp_path / "o"), backend, pool)
        assert not r.direct and await read_range(r, 0, len(data)) == data
        r.close()
        with pytest.raises(OSError) as exc:
            DirectWriter(str(tmp_path / "strict"), backend, pool, direct="on")
        assert exc.value.errno == errno.EINVAL
        await backend.aclose()

    run(main())
    assert (tmp_path / "o").read_bytes() == data


class RefusingBackend:
    """Wraps a backend; O_DIRECT transfers fail with EINVAL (filesystems that open O_DIRECT but
    refuse the I/O), and optionally every write fails with a given errno."""

    def __init__(self, inner: Any, fail_writes: int = 0) -> None:
        self.inner = inner
        self.name = inner.name
        self.fail_writes = fail_writes
        self.refused = 0
        self.fsyncs = 0

    @property
    def in_flight(self) -> int:
        return int(self.inner.in_flight)

    def _refuse(self, fd: int, done: Completion) -> bool:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            self.refused += 1
            asyncio.get_running_loop().call_soon(done, -errno.EINVAL)
            return True
        return False

    def submit_read(self, fd: int, buf: Any, offset: int, done: Completion) -> None:
        if not self._refuse(fd, done):
            self.inner.submit_read(fd, buf, offset, done)

    def submit_write(self, fd: int, buf: Any, offset: int, done: Completion) -> None:
        if self.fail_writes:
            asyncio.get_running_loop().call_soon(done, -self.fail_writes)
        elif not self._refuse(fd, done):
            self.inner.submit_write(fd, buf, offset, done)

    async def fsync(self, fd: int, datasync: bool = False) -> None:
        self.fsyncs += 1
        await self.inner.fsync(fd, datasync)


@backends
@pytest.mark.parametrize("size", [4096, 4096 + 7, 8192, MIB + 4096 + 5, 3 * MIB + 11])
def test_first_transfer_refusing_o_direct_falls_back(tmp_path: Path, kind: str, size: int) -> None:
    data = os.urandom(size)

    async def main() -> None:
        inner = make_backend(kind)
        backend = RefusingBackend(inner)
        pool = BufferPool(size=MIB, count=4)
        w = await write_file(tmp_path / "o", backend, pool, data, random.Random(0))  # type: ignore[arg-type]
        assert backend.refused == 1 and not w.direct and "write" in (w.direct_fallback or "")
        assert backend.fsyncs == 1
        r = DirectReader(str(tmp_path / "o"), backend, pool)  # type: ignore[arg-type]
        assert r.direct  # open() took O_DIRECT; the first read decides
        assert await read_range(r, 10, len(data)) == data[10:]
        assert not r.direct and backend.refused == 2
        r.close()
        assert pool.available == 4
        await inner.aclose()

    run(main())
    assert (tmp_path / "o").read_bytes() == data


@backends
def test_write_error_then_abort(tmp_path: Path, kind: str) -> None:
    async def main() -> None:
        inner = make_backend(kind)
        backend = RefusingBackend(inner, fail_writes=errno.ENOSPC)
        pool = BufferPool(size=65536, count=4)
        w = DirectWriter(str(tmp_path / "o"), backend, pool, direct="off")  # type: ignore[arg-type]
        with pytest.raises(OSError) as exc:
            for _ in range(10):
                await w.write(bytes(65536))
            await w.finish()
        assert exc.value.errno == errno.ENOSPC
        with pytest.raises(RuntimeError):
            await w.write(b"more")
        await w.abort()
        await w.abort()
        assert not (tmp_path / "o").exists()
        assert pool.available == 4
        await inner.aclose()

    run(main())


@backends
def test_abort_mid_stream_releases_everything(tmp_path: Path, kind: str) -> None:
    async def main() -> None:
        before = open_fds()
        backend = make_backend(kind)
        pool = BufferPool(size=MIB, count=8)
        w = DirectWriter(str(tmp_path / "o"), backend, pool, depth=4)
        await w.write(os.urandom(5 * MIB + 100))
        await w.abort()  # writes may still be in the kernel: abort waits for them
        assert not (tmp_path / "o").exists()
        assert pool.available == 8 and backend.in_flight == 0
        with pytest.raises(RuntimeError):
            await w.finish()
        backend.close()
        pool.close()
        assert open_fds() == before

    run(main())


@backends
def test_reader_early_exit_and_view_lifetime(tmp_path: Path, kind: str) -> None:
    data = os.urandom(8 * MIB)
    (tmp_path / "o").write_bytes(data)

    async def main() -> None:
        backend = make_backend(kind)
        pool = BufferPool(size=MIB, count=8)
        r = DirectReader(str(tmp_path / "o"), backend, pool, depth=4)
        gen = r.read_range(0, len(data) - 1)
        first = await gen.__anext__()
        assert bytes(first) == data[:MIB]
        second = await gen.__anext__()
        with pytest.raises(ValueError):
            first.tobytes()  # released once the next chunk was asked for
        assert bytes(second) == data[MIB : 2 * MIB]
        await gen.aclose()  # read-ahead still in flight is abandoned, not leaked
        await r.aclose()
        assert pool.available == 8 and backend.in_flight == 0
        await backend.aclose()

    run(main())


def test_select_backend_policy(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        monkeypatch.delenv("RS3GW_IO_BACKEND", raising=False)
        monkeypatch.delenv("RS3GW_DIRECT_IO", raising=False)
        backend, name = select_backend()
        assert name == backend.name == ("uring" if uring.probe()[0] else "threads")
        backend.close()

        monkeypatch.setenv("RS3GW_IO_BACKEND", "threads")
        backend, name = select_backend()
        assert name == "threads" and isinstance(backend, ThreadBackend) and backend.fallback_reason is None
        backend.close()
        with pytest.raises(ValueError):
            select_backend("io_uring")
        with pytest.raises(ValueError):
            select_backend("auto", "sometimes")

        # io_uring refused (seccomp, kernel.io_uring_disabled=2): simulated.
        reason = "io_uring unusable: not permitted (EPERM); kernel.io_uring_disabled=2"
        monkeypatch.setattr(uring, "probe", lambda: (False, reason))
        monkeypatch.setattr(directio, "_logged", set())
        with pytest.raises(RuntimeError, match="RS3GW_IO_BACKEND=uring.*io_uring_disabled=2.*auto"):
            select_backend("uring")
        monkeypatch.setenv("RS3GW_IO_BACKEND", "uring")
        with pytest.raises(RuntimeError, match="cannot be used here"):
            select_backend()
        with caplog.at_level(logging.INFO, logger="rs3gw.io"):
            for _ in range(3):
                backend, name = select_backend("auto", "on")
                assert name == "threads" and isinstance(backend, ThreadBackend)
                assert backend.fallback_reason == reason
                backend.close()
        fallbacks = [r for r in caplog.records if "thread-pool" in r.getMessage()]
        assert len(fallbacks) == 1 and fallbacks[0].levelno == logging.WARNING  # logged once

    run(main())
