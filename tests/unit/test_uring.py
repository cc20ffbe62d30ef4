"""rs3gw._core.uring (Ring, BufferPool, probe) and its thread-pool twin io_threads.ThreadBackend.

Every I/O behaviour runs on both backends; Ring-only properties (one io_uring_enter per tick,
eventfd/ring fd lifetime) are checked on uvloop (production) and the stock loop (reference).
"""

from __future__ import annotations

import array
import asyncio
import errno
import gc
import os
import random
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from rs3gw._core import uring
from rs3gw._core.io_threads import ThreadBackend
from rs3gw._core.uring import BufferPool, Ring

DEADLINE_S = 30.0
SIZES = [0, 1, 4095, 4096, (1 << 20) + 7, 10 << 20]

backends = pytest.mark.parametrize("kind", ["uring", "threads"])
both_loops = pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])


def run(coro: Coroutine[Any, Any, Any], loop_kind: str = "uvloop") -> Any:
    factory = uvloop.new_event_loop if loop_kind == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(asyncio.wait_for(coro, DEADLINE_S))


def make_backend(kind: str) -> Ring | ThreadBackend:
    return Ring() if kind == "uring" else ThreadBackend()


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


async def until(cond: Callable[[], bool]) -> None:
    """Yields to the loop until cond() holds (the run() deadline bounds it)."""
    while not cond():
        await asyncio.sleep(0.001)


def test_io_uring_is_usable_here() -> None:
    ok, reason = uring.probe()
    disabled = Path("/proc/sys/kernel/io_uring_disabled").read_text().strip()
    assert isinstance(reason, str) and reason
    if disabled == "0":
        assert ok, reason


@backends
@pytest.mark.parametrize("size", SIZES)
def test_write_read_round_trip(tmp_path: Any, kind: str, size: int) -> None:
    data = random.Random(size).randbytes(size)

    async def main() -> None:
        backend = make_backend(kind)
        fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            assert await backend.write(fd, data, 0) == size
            await backend.fsync(fd)
            await backend.fsync(fd, datasync=True)
            out = bytearray(size + 100)
            assert await backend.read(fd, out, 0) == size
            assert out[:size] == data
            if size > 10:  # a range in the middle, into a memoryview slice
                view = memoryview(out)[3:13]
                assert await backend.read(fd, view, size // 2) == 10
                assert out[3:13] == data[size // 2 : size // 2 + 10]
            assert await backend.read(fd, bytearray(10), size) == 0  # EOF
        finally:
            os.close(fd)
            await backend.aclose()
        assert backend.in_flight == 0

    run(main())


@backends
def test_many_concurrent_ops(tmp_path: Any, kind: str) -> None:
    block, n = 4096, 256
    rng = random.Random(7)
    blocks = [rng.randbytes(block) for _ in range(n)]

    async def main() -> None:
        backend = make_backend(kind)
        fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            writes = [asyncio.ensure_future(backend.write(fd, b, i * block)) for i, b in enumerate(blocks)]
            await asyncio.sleep(0)  # every task has run its first step and handed its op over
            assert backend.in_flight == n  # all 256 held at once
            assert await asyncio.gather(*writes) == [block] * n
            bufs = [bytearray(block) for _ in range(n)]
            order = list(range(n))
            rng.shuffle(order)
            got = await asyncio.gather(*(backend.read(fd, bufs[i], i * block) for i in order))
            assert got == [block] * n
            assert [bytes(b) for b in bufs] == blocks
        finally:
            os.close(fd)
            await backend.aclose()

    run(main())


@both_loops
def test_one_enter_per_tick(tmp_path: Any, loop_kind: str) -> None:
    n = 64
    path = tmp_path / "f"
    path.write_bytes(os.urandom(n * 512))

    async def main() -> None:
        ring = Ring(entries=256)
        fd = os.open(path, os.O_RDONLY)
        try:
            await ring.read(fd, bytearray(1), 0)  # settle: nothing else queued below
            enters, sqes = ring.enter_calls, ring.sqes_submitted
            bufs = [bytearray(512) for _ in range(n)]
            # gather schedules all n first steps in the same tick; each queues one SQE.
            got = await asyncio.gather(*(ring.read(fd, bufs[i], i * 512) for i in range(n)))
            assert got == [512] * n
            assert ring.enter_calls - enters == 1
            assert ring.sqes_submitted - sqes == n
            assert ring.cqes_reaped >= n + 1
        finally:
            os.close(fd)
            ring.close()
        assert ring.enter_calls >= 2  # counters survive close

    run(main(), loop_kind)


def test_more_ops_than_ring_entries(tmp_path: Any) -> None:
    """Ops beyond the SQ size wait in the ring's queue and go out as completions free room."""
    n, block = 200, 1024
    path = tmp_path / "f"
    data = os.urandom(n * block)
    path.write_bytes(data)

    async def main() -> None:
        ring = Ring(entries=16)
        fd = os.open(path, os.O_RDONLY)
        try:
            bufs = [bytearray(block) for _ in range(n)]
            tasks = [asyncio.ensure_future(ring.read(fd, bufs[i], i * block)) for i in range(n)]
            await asyncio.sleep(0)  # every task has queued its op
            assert ring.in_flight == n
            assert await asyncio.gather(*tasks) == [block] * n
            assert b"".join(bufs) == data
            assert ring.sqes_submitted >= n
        finally:
            os.close(fd)
            ring.close()

    run(main())


@backends
def test_kernel_errors_raise_oserror(tmp_path: Any, kind: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)

    async def main() -> None:
        backend = make_backend(kind)
        ro = os.open(path, os.O_RDONLY)
        wo = os.open(path, os.O_WRONLY)
        try:
            with pytest.raises(OSError) as exc:
                await backend.write(ro, b"data", 0)
            assert exc.value.errno == errno.EBADF
            with pytest.raises(OSError) as exc:
                await backend.read(wo, bytearray(10), 0)
            assert exc.value.errno == errno.EBADF
            with pytest.raises(BufferError):
                await backend.read(ro, b"immutable", 0)
            # The backend stays usable after errors.
            assert await backend.read(ro, bytearray(10), 0) == 10
        finally:
            os.close(ro)
            os.close(wo)
            await backend.aclose()
        assert backend.in_flight == 0

    run(main())


@backends
def test_cancelled_read_keeps_buffer_until_completion(kind: str) -> None:
    """A buffer handed to the kernel outlives the cancelled task that handed it over."""

    async def main() -> None:
        backend = make_backend(kind)
        r, w = os.pipe()
        try:
            buf = array.array("b", bytes(16))
            alive = weakref.ref(buf)
            task = asyncio.ensure_future(backend.read(r, buf, -1))  # blocks: the pipe is empty
            await until(lambda: backend.in_flight == 1)
            await asyncio.sleep(0)  # let the ring flush the SQE to the kernel
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            del buf, task
            gc.collect()
            assert alive() is not None, "buffer freed while the read was in flight"
            assert backend.in_flight == 1
            os.write(w, b"hello")
            await until(lambda: backend.in_flight == 0)
            gc.collect()
            assert alive() is None, "buffer kept after its completion was reaped"
        finally:
            os.close(r)
            os.close(w)
            await backend.aclose()

    run(main())


@both_loops
def test_close_with_in_flight_ops_drains_and_balances_fds(loop_kind: str) -> None:
    async def main() -> None:
        before = open_fds()
        ring = Ring()
        ring_fds = {ring.ring_fd, ring.eventfd}
        assert ring_fds <= open_fds()
        r, w = os.pipe()
        buf = bytearray(8)
        blocked = asyncio.ensure_future(ring.read(r, buf, -1))  # never completes by itself
        await until(lambda: ring.in_flight == 1)
        await asyncio.sleep(0)
        queued = asyncio.ensure_future(ring.read(r, bytearray(8), -1))
        await until(lambda: ring.in_flight == 2)  # second one still in the queue: no flush yet
        ring.close()  # cancels the first in the kernel, fails the queued one; waits for both
        assert ring.in_flight == 0
        for t in (blocked, queued):
            with pytest.raises(OSError) as exc:
                await t
            assert exc.value.errno in (errno.ECANCELED, errno.EINTR)
        buf.extend(b"resizable again")  # no export left on the buffer
        ring.close()  # idempotent
        with pytest.raises(RuntimeError):
            await ring.read(r, bytearray(1), -1)
        os.close(r)
        os.close(w)
        assert open_fds() == before

    run(main(), loop_kind)


@backends
def test_resource_balance(tmp_path: Any, kind: str) -> None:
    async def main() -> None:
        before = open_fds()
        backend = make_backend(kind)
        pool = BufferPool(size=1 << 16, count=8)
        fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
        bufs = [await pool.acquire() for _ in range(8)]
        await asyncio.gather(*(backend.write(fd, b, i * len(b)) for i, b in enumerate(bufs)))
        await asyncio.gather(*(backend.read(fd, b, i * len(b)) for i, b in enumerate(bufs)))
        for b in bufs:
            pool.release(b)
        assert pool.available == 8
        os.close(fd)
        backend.close()
        assert backend.in_flight == 0
        pool.close()
        assert open_fds() == before

    run(main())


def test_buffer_pool_alignment_and_bounds() -> None:
    async def main() -> None:
        pool = BufferPool(size=8192, count=3)
        bufs = [await pool.acquire() for _ in range(3)]
        for b in bufs:
            assert len(b) == 8192 and not b.readonly
            assert int(uring.ffi.cast("uintptr_t", uring.ffi.from_buffer(b))) % 4096 == 0
        assert pool.available == 0
        waiter = asyncio.ensure_future(pool.acquire())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done()  # bounded: waits for a release
        pool.release(bufs[1])
        assert await waiter is bufs[1]
        # A cancelled waiter does not swallow a buffer.
        cancelled = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        pool.release(bufs[0])
        assert pool.available == 1
        with pytest.raises(ValueError):
            pool.release(bufs[0])  # twice
        with pytest.raises(ValueError):
            pool.release(memoryview(bytearray(8192)))  # not ours
        with pytest.raises(RuntimeError):
            pool.close()  # two still out
        pool.release(bufs[1])
        pool.release(bufs[2])
        pool.close()
        pool.close()
        with pytest.raises(RuntimeError):
            await pool.acquire()
        with pytest.raises(ValueError):
            BufferPool(size=1000)

    run(main())
