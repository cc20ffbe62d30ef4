"""Thread-pool I/O backend: the same API as rs3gw._core.uring.Ring over os.pread/os.pwrite/os.fsync.

Used where io_uring is refused (seccomp, kernel.io_uring_disabled, old kernels) or configured away
(RS3GW_IO_BACKEND=threads). Also home of what both backends share: the IOBackend protocol and the
one function that turns a kernel result code into an exception.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import errno
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer arrives in 3.12

# Called on the event loop thread exactly once per operation, after the kernel (or the worker
# thread) is done with the operation's buffer: bytes transferred, 0 for fsync, or -errno.
Completion = Callable[[int], None]

# Ops a backend accepts before it refuses more: callers are expected to bound themselves (a
# BufferPool, a per-stream depth); this is the backstop that turns a runaway caller into an error.
MAX_QUEUED_OPS = 65536


def os_error(res: int) -> OSError:
    """A negative kernel result (-errno) as the OSError the awaiting side raises."""
    code = -res
    return OSError(code, os.strerror(code))


def resolve(fut: asyncio.Future[int], res: int) -> None:
    """Completes an awaiting future with a result code; a cancelled awaiter is simply skipped."""
    if fut.done():
        return
    if res < 0:
        fut.set_exception(os_error(res))
    else:
        fut.set_result(res)


class IOBackend(Protocol):
    """What DirectWriter/DirectReader need; implemented by Ring and ThreadBackend."""

    name: str

    @property
    def in_flight(self) -> int: ...

    def submit_read(self, fd: int, buf: Buffer, offset: int, done: Completion) -> None: ...
    def submit_write(self, fd: int, buf: Buffer, offset: int, done: Completion) -> None: ...
    def submit_fsync(self, fd: int, datasync: bool, done: Completion) -> None: ...
    async def read(self, fd: int, buf: Buffer, offset: int) -> int: ...
    async def write(self, fd: int, buf: Buffer, offset: int) -> int: ...
    async def fsync(self, fd: int, datasync: bool = False) -> None: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...


class AwaitableOps:
    """The awaitable read/write/fsync both backends offer, built on their submit_* calls: the
    completion callback resolves a future on the loop."""

    _loop: asyncio.AbstractEventLoop

    def submit_read(self, fd: int, buf: Buffer, offset: int, done: Completion) -> None:
        raise NotImplementedError

    def submit_write(self, fd: int, buf: Buffer, offset: int, done: Completion) -> None:
        raise NotImplementedError

    def submit_fsync(self, fd: int, datasync: bool, done: Completion) -> None:
        raise NotImplementedError

    async def read(self, fd: int, buf: Buffer, offset: int) -> int:
        """Reads into buf at offset (-1: the current position); returns bytes read (0 at EOF)."""
        fut: asyncio.Future[int] = self._loop.create_future()
        self.submit_read(fd, buf, offset, lambda res: resolve(fut, res))
        return await fut

    async def write(self, fd: int, buf: Buffer, offset: int) -> int:
        """Writes buf at offset (-1: the current position); returns bytes written (may be short)."""
        fut: asyncio.Future[int] = self._loop.create_future()
        self.submit_write(fd, buf, offset, lambda res: resolve(fut, res))
        return await fut

    async def fsync(self, fd: int, datasync: bool = False) -> None:
        """fsync(2), or fdatasync(2) with datasync. Orders nothing: await the writes first."""
        fut: asyncio.Future[int] = self._loop.create_future()
        self.submit_fsync(fd, datasync, lambda res: resolve(fut, res))
        await fut


def _pread(fd: int, buf: Buffer, offset: int) -> int:
    try:
        if offset < 0:
            return os.readv(fd, [buf])
        return os.preadv(fd, [buf], offset)
    except OSError as exc:
        return -(exc.errno or errno.EIO)


def _pwrite(fd: int, buf: Buffer, offset: int) -> int:
    try:
        if offset < 0:
            return os.write(fd, buf)
        return os.pwrite(fd, buf, offset)
    except OSError as exc:
        return -(exc.errno or errno.EIO)


def _fsync(fd: int, datasync: bool) -> int:
    try:
        (os.fdatasync if datasync else os.fsync)(fd)
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    return 0


class ThreadBackend(AwaitableOps):
    """Blocking syscalls on a bounded pool of worker threads (the GIL is released inside them).

    A worker holds a reference to the buffer for the whole syscall, so a cancelled awaiter never
    frees memory a syscall is still using. Completions come back to the loop in batches: one
    wake-up for however many finished since the last one.
    """

    name = "threads"

    def __init__(
        self,
        workers: int = 16,
        loop: asyncio.AbstractEventLoop | None = None,
        fallback_reason: str | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rs3gw-io")
        self._in_flight = 0
        self._closed = False
        self._idle: asyncio.Future[None] | None = None
        self._completed: collections.deque[tuple[int, Completion]] = collections.deque()
        self._lock = threading.Lock()
        self._drain_scheduled = False
        self.workers = workers
        self.fallback_reason = fallback_reason  # why io_uring is not in use, when it was wanted

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def closed(self) -> bool:
        return self._closed

    def _submit(self, fn: Callable[..., int], args: tuple[Any, ...], done: Completion) -> None:
        if self._closed:
            raise RuntimeError("ThreadBackend is closed")
        if self._in_flight >= MAX_QUEUED_OPS:
            raise RuntimeError(f"ThreadBackend: more than {MAX_QUEUED_OPS} operations queued")
        cf = self._pool.submit(fn, *args)
        self._in_flight += 1
        cf.add_done_callback(lambda f: self._handoff(f.result(), done))

    def _handoff(self, res: int, done: Completion) -> None:
        """Runs on a worker thread: queue the completion, wake the loop once per batch."""
        self._completed.append((res, done))
        with self._lock:
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # loop closed: close() drains what is left
            pass

    def _drain(self) -> None:
        with self._lock:
            self._drain_scheduled = False
        while self._completed:
            res, done = self._completed.popleft()
            self._in_flight -= 1
            try:
                done(res)
            except Exception as exc:  # noqa: BLE001 - one bad callback must not strand the rest of the batch
                self._loop.call_exception_handler(
                    {"message": "I/O completion callback failed", "exception": exc}
                )
        if self._in_flight == 0 and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def submit_read(self, fd: int, buf: Buffer, offset: int, done: Completion) -> None:
        if memoryview(buf).readonly:
            raise BufferError("read needs a writable buffer")
        self._submit(_pread, (fd, buf, offset), done)

    def submit_write(self, fd: int, buf: Buffer, offset: int, done: Completion) -> None:
        self._submit(_pwrite, (fd, buf, offset), done)

    def submit_fsync(self, fd: int, datasync: bool, done: Completion) -> None:
        self._submit(_fsync, (fd, datasync), done)

    async def aclose(self) -> None:
        """Lets queued operations finish without blocking the loop, then closes."""
        while self._in_flight and not self._closed:
            self._idle = self._loop.create_future()
            await self._idle
        self.close()

    def close(self) -> None:
        """Waits for running syscalls (blocking), then stops the workers. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True)
        self._drain()  # completions the loop has not run yet: deliver them now, in_flight ends at 0
