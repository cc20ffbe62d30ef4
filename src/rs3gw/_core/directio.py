"""O_DIRECT chunked writer/reader over an I/O backend (io_uring Ring or ThreadBackend).

Data is copied into page-aligned BufferPool buffers and written a whole buffer at a time, up to
``depth`` writes in flight; reads run ``depth`` buffers ahead. O_DIRECT is used where the
filesystem takes it: ``direct="auto"`` opens with O_DIRECT and lets the first aligned transfer
decide, falling back to buffered I/O (recorded in ``direct`` and ``direct_fallback``); "on"
requires it, "off" never uses it. A tail shorter than one block goes through the page cache.

Buffer ownership: a pool buffer handed to the backend is released back to the pool only by the
completion callback, i.e. after the kernel is done with it, whatever happens to the awaiting task.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import errno
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from rs3gw._core.io_threads import IOBackend, ThreadBackend, os_error

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer arrives in 3.12

    from rs3gw._core.uring import BufferPool, Ring

__all__ = ["ALIGN_BYTES", "DirectReader", "DirectWriter", "select_backend"]

_log = logging.getLogger("rs3gw.io")

# Offset, length and address alignment O_DIRECT gets from us. 4096 covers 512e and 4Kn devices.
ALIGN_BYTES = 4096
DIRECT_MODES = ("auto", "on", "off")
IO_BACKENDS = ("auto", "uring", "threads")
DEPTH_MAX = 64

_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
_logged: set[str] = set()


def _log_once(level: int, key: str, msg: str, *args: object) -> None:
    if key not in _logged:
        _logged.add(key)
        _log.log(level, msg, *args)


def _check_mode(direct: str) -> str:
    if direct not in DIRECT_MODES:
        raise ValueError(f"direct must be one of {DIRECT_MODES}, not {direct!r}")
    if direct == "on" and not _O_DIRECT:
        raise OSError(errno.EINVAL, "O_DIRECT is not available on this platform")
    return direct


def _open(path: str, flags: int, direct: str) -> tuple[int, bool, str | None]:
    """(fd, O_DIRECT in use, why not) for flags opened per the direct mode."""
    if direct == "off" or not _O_DIRECT:
        return os.open(path, flags, 0o644), False, "off" if direct == "off" else "no O_DIRECT here"
    try:
        return os.open(path, flags | _O_DIRECT, 0o644), True, None
    except OSError as exc:
        if exc.errno != errno.EINVAL or direct == "on":
            raise
    # The refusal comes after O_CREAT has made the file (Linux checks O_DIRECT support on the
    # opened file), so the retry must not insist on O_EXCL: the file there is the one we made.
    fd = os.open(path, flags & ~os.O_EXCL, 0o644)
    _log_refusal(fd, "open(O_DIRECT) refused (EINVAL)")
    return fd, False, "open(O_DIRECT) refused (EINVAL)"


@dataclasses.dataclass(frozen=True)
class OpenedFile:
    """A file opened for DirectWriter/DirectReader by ``open_for_write`` / ``open_for_read``:
    these block (O_CREAT takes the directory's journal lock), so an event-loop caller runs them
    in a worker thread and hands the result to the constructor."""
    fd: int
    direct: bool
    fallback: str | None
    size: int = 0


def open_for_write(path: str, direct: str = "auto") -> OpenedFile:
    _check_mode(direct)
    fd, on, why = _open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, direct)
    return OpenedFile(fd, on, why)


def open_for_read(path: str, direct: str = "auto") -> OpenedFile:
    _check_mode(direct)
    fd, on, why = _open(path, os.O_RDONLY | os.O_CLOEXEC, direct)
    try:
        return OpenedFile(fd, on, why, os.fstat(fd).st_size)
    except BaseException:
        os.close(fd)
        raise


def _log_refusal(fd: int, why: str) -> None:
    dev = os.fstat(fd).st_dev
    _log_once(
        logging.INFO, f"dev:{dev}", "O_DIRECT unavailable on device %#x (%s); using buffered I/O", dev, why
    )


def _clear_direct(fd: int) -> None:
    # O_DIRECT is one of the flags F_SETFL may change on Linux; only with no transfer in flight.
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_DIRECT)


def _check_depth(depth: int) -> int:
    if not 1 <= depth <= DEPTH_MAX:
        raise ValueError(f"depth must be in [1, {DEPTH_MAX}]")
    return depth


class _DirectFile:
    """What DirectWriter and DirectReader share: argument checks, the backend, and the open file."""

    def _setup(self, path: str, backend: Ring | ThreadBackend, pool: BufferPool, direct: str, depth: int,
               opened: OpenedFile | None, opener: Callable[[str, str], OpenedFile]) -> OpenedFile:
        _check_mode(direct)
        if pool.size % ALIGN_BYTES:
            raise ValueError(f"pool buffers must be a multiple of {ALIGN_BYTES} bytes")
        self.path = path
        self._backend: IOBackend = backend
        self._pool = pool
        self._depth = _check_depth(depth)
        self._loop = asyncio.get_running_loop()
        f = opened if opened is not None else opener(path, direct)
        self._fd, self.direct, self.direct_fallback = f.fd, f.direct, f.fallback
        return f


class DirectWriter(_DirectFile):
    """Sequential writer to a new file (O_EXCL). One task drives it at a time.

    write() copies into pool buffers; a full buffer waits in a one-slot ready queue and goes out
    as soon as fewer than ``depth`` writes are in flight, straight from the completion callback,
    so copying the next buffer overlaps the I/O. finish() writes the tail, waits, syncs, closes;
    abort() waits for the kernel, closes and unlinks. After any failure (including cancellation)
    only abort() is allowed.
    """

    def __init__(
        self, path: str, backend: Ring | ThreadBackend, pool: BufferPool, direct: str = "auto", depth: int = 4,
        opened: OpenedFile | None = None,
    ) -> None:
        """``opened``: the file from ``open_for_write`` (run off the loop); without it the
        constructor opens the file itself, a blocking call."""
        self._setup(path, backend, pool, direct, depth, opened, open_for_write)
        # In auto mode the first aligned write is the real probe (some filesystems open O_DIRECT
        # and refuse the transfer); it runs alone and everything else waits for its verdict.
        self._probing = self.direct and direct == "auto"
        self._buf: memoryview | None = None
        self._fill = 0
        self._offset = 0  # file offset of _buf[0]
        self._ready: collections.deque[tuple[memoryview, int, int]] = collections.deque()  # (buf, len, offset)
        self._in_flight = 0
        self._wakeup: asyncio.Future[None] | None = None
        self._error: OSError | None = None
        self._state = "open"  # open | failed | finished | aborted
        self.size = 0

    # -- completions (loop thread, from the backend) ------------------------------------------

    def _pump(self) -> None:
        while self._ready and self._in_flight < self._depth and self._error is None:
            if self._probing and self._in_flight:
                return
            buf, length, offset = self._ready.popleft()
            self._start_write(buf, buf[:length], offset)

    def _start_write(self, release: memoryview | None, view: memoryview, offset: int) -> None:
        self._in_flight += 1
        self._backend.submit_write(self._fd, view, offset, lambda res: self._written(release, view, offset, res))

    def _written(self, release: memoryview | None, view: memoryview, offset: int, res: int) -> None:
        if res == -errno.EINVAL and self._probing:
            self._probing = False
            self.direct = False
            self.direct_fallback = "first O_DIRECT write refused (EINVAL)"
            _clear_direct(self._fd)  # the probe write is the only transfer in flight
            _log_refusal(self._fd, self.direct_fallback)
            self._backend.submit_write(self._fd, view, offset, lambda r: self._written(release, view, offset, r))
            return
        self._probing = False
        if 0 < res < len(view):  # short write: the rest goes out from the same buffer
            rest = view[res:]
            self._backend.submit_write(
                self._fd, rest, offset + res, lambda r: self._written(release, rest, offset + res, r)
            )
            return
        if res < 0 and self._error is None:
            self._error = os_error(res)
        elif res == 0 and len(view) and self._error is None:
            self._error = OSError(errno.EIO, "write made no progress")
        self._in_flight -= 1
        if release is not None:
            self._pool.release(release)
        self._pump()
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _drain(self, ready_max: int, in_flight_max: int) -> None:
        """Waits until at most ready_max buffers wait and in_flight_max writes are in flight."""
        while self._error is None and (len(self._ready) > ready_max or self._in_flight > in_flight_max):
            self._wakeup = self._loop.create_future()
            await self._wakeup
        if self._error is not None:
            raise self._error

    def _release_ready(self) -> None:
        while self._ready:
            self._pool.release(self._ready.popleft()[0])

    # -- API ----------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"DirectWriter is {self._state}")

    async def write(self, data: Buffer) -> None:
        self._check_open()
        try:
            mv = memoryview(data)
            if mv.format != "B" or mv.ndim != 1:
                mv = mv.cast("B")
            pos, total = 0, len(mv)
            while pos < total:
                if self._buf is None:
                    self._buf = await self._pool.acquire()
                    self._fill = 0
                buf = self._buf
                take = min(total - pos, len(buf) - self._fill)
                buf[self._fill : self._fill + take] = mv[pos : pos + take]
                self._fill += take
                pos += take
                self.size += take
                if self._fill == len(buf):
                    self._queue_buffer(self._fill)
                    # One full buffer may wait beside the `depth` in flight; the next copy starts
                    # once it has gone out.
                    await self._drain(0, self._depth)
        except BaseException:
            self._state = "failed"
            raise

    def _queue_buffer(self, length: int) -> None:
        buf = self._buf
        assert buf is not None
        self._buf, self._fill = None, 0
        self._ready.append((buf, length, self._offset))
        self._offset += length
        self._pump()

    async def finish(self, fsync: bool = True) -> int:
        """Writes the tail, waits for every write, fdatasyncs (with fsync) and closes; returns the size."""
        self._check_open()
        try:
            if self._buf is not None:
                buf, fill = self._buf, self._fill
                self._buf = None
                try:
                    # A free slot, and the probe's verdict: it decides what the tail may use.
                    await self._drain(0, 0 if self._probing else self._depth - 1)
                except BaseException:
                    self._pool.release(buf)
                    raise
                aligned = fill - fill % ALIGN_BYTES if self.direct else fill
                if aligned == fill:
                    self._start_write(buf, buf[:fill], self._offset)
                else:
                    # O_DIRECT needs whole blocks: the last partial one goes through the page
                    # cache, after everything else (F_SETFL only with nothing in flight).
                    try:
                        if aligned:
                            self._start_write(None, buf[:aligned], self._offset)
                        await self._drain(0, 0)
                    except BaseException:
                        self._pool.release(buf)
                        raise
                    _clear_direct(self._fd)
                    self._start_write(buf, buf[aligned:fill], self._offset + aligned)
            # Durability order: every write has completed before the sync is submitted; the ring
            # does not order operations by itself. fdatasync covers the data and the file size;
            # the directory entry is the caller's to sync (after its rename).
            await self._drain(0, 0)
            if fsync:
                await self._backend.fsync(self._fd, datasync=True)
        except BaseException:
            self._state = "failed"
            raise
        self._state = "finished"
        os.close(self._fd)
        return self.size

    async def abort(self) -> None:
        """Waits for the kernel to let go of every buffer, closes and removes the file. Idempotent."""
        if self._state in ("aborted", "finished"):
            return
        self._state = "aborted"
        if self._error is None:
            self._error = OSError(errno.ECANCELED, "aborted")  # stops _pump
        self._release_ready()
        if self._buf is not None:
            self._pool.release(self._buf)
            self._buf = None
        while self._in_flight:
            self._wakeup = self._loop.create_future()
            await self._wakeup
        self._release_ready()
        os.close(self._fd)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class _Read:
    __slots__ = ("abandoned", "buf", "complete", "error", "fut", "got", "length", "needed", "offset")

    def __init__(
        self, buf: memoryview, offset: int, length: int, needed: int, fut: asyncio.Future[None]
    ) -> None:
        self.buf = buf
        self.offset = offset  # file offset of buf[0]
        self.length = length  # bytes asked for (whole blocks under O_DIRECT)
        self.needed = needed  # bytes the range needs from this buffer
        self.got = 0
        self.complete = False
        self.abandoned = False
        self.error: OSError | None = None
        self.fut = fut


class DirectReader(_DirectFile):
    """Reads ranges of one file with ``depth`` pool buffers in flight ahead of the consumer."""

    def __init__(
        self, path: str, backend: Ring | ThreadBackend, pool: BufferPool, direct: str = "auto", depth: int = 4,
        opened: OpenedFile | None = None,
    ) -> None:
        """``opened``: the file from ``open_for_read`` (run off the loop), as for DirectWriter."""
        f = self._setup(path, backend, pool, direct, depth, opened, open_for_read)
        self._probing = self.direct and direct == "auto"
        self._active = 0
        self._idle: asyncio.Future[None] | None = None
        self._closed = False
        self.size = f.size

    def _start(self, r: _Read) -> None:
        self._active += 1
        view = r.buf[r.got : r.length]
        self._backend.submit_read(self._fd, view, r.offset + r.got, lambda res: self._on_read(r, res))

    def _on_read(self, r: _Read, res: int) -> None:
        self._active -= 1
        if r.abandoned:  # the consumer left; the kernel is done, so the buffer may go
            self._pool.release(r.buf)
            if not self._active and self._idle is not None and not self._idle.done():
                self._idle.set_result(None)
            return
        if res == -errno.EINVAL and self._probing:
            self._probing = False
            self.direct = False
            self.direct_fallback = "first O_DIRECT read refused (EINVAL)"
            _clear_direct(self._fd)  # the probe read is the only transfer in flight
            _log_refusal(self._fd, self.direct_fallback)
            self._start(r)
            return
        self._probing = False
        if res < 0:
            r.error = os_error(res)
        else:
            r.got += res
            if 0 < res and r.got < r.needed:  # short read before the end we know of: go on
                self._start(r)
                return
        r.complete = True
        if not r.fut.done():
            r.fut.set_result(None)

    async def read_range(self, start: int, end_inclusive: int) -> AsyncIterator[memoryview]:
        """Yields views of [start, end_inclusive] clamped to the file size, in order.

        Each view points into a pool buffer and is released (made unusable) when the consumer
        asks for the next one: consume or copy it before that, never keep it.
        """
        if self._closed:
            raise RuntimeError("DirectReader is closed")
        if start < 0 or end_inclusive < start - 1:
            raise ValueError(f"bad range {start}-{end_inclusive}")
        end = min(end_inclusive + 1, self.size)
        if start >= end:
            return
        chunk = self._pool.size
        next_off = start - start % ALIGN_BYTES if self.direct else start
        reads: collections.deque[_Read] = collections.deque()

        async def refill(holding: bool) -> None:
            """Tops reads up to depth. Buffers read ahead go back only as the consumer takes
            them, so while holding any (queued or yielded) never wait for more: the wait could
            be on ourselves."""
            nonlocal next_off
            while next_off < end and len(reads) < self._depth and not (self._probing and reads):
                buf = self._pool.try_acquire() if holding or reads else await self._pool.acquire()
                if buf is None:
                    return
                want = end - next_off
                if self.direct:
                    want = -(-want // ALIGN_BYTES) * ALIGN_BYTES
                length = min(chunk, want)
                r = _Read(buf, next_off, length, min(length, end - next_off), self._loop.create_future())
                reads.append(r)
                self._start(r)
                next_off += length

        try:
            await refill(holding=False)
            while reads:
                r = reads[0]
                if not r.complete:
                    await asyncio.wait([r.fut])  # wait() leaves r.fut alone if we are cancelled
                if r.error is not None:
                    raise r.error
                if r.got < r.needed:
                    raise OSError(errno.EIO, f"{self.path}: file ended at {r.offset + r.got}, expected {end}")
                reads.popleft()
                try:
                    # depth reads stay outstanding while the consumer works on this one.
                    await refill(holding=True)
                    view = r.buf[max(start - r.offset, 0) : r.needed]
                    try:
                        yield view
                    finally:
                        view.release()  # raises BufferError if the consumer still exports it
                finally:
                    self._pool.release(r.buf)
                await refill(holding=False)
        finally:
            for r in reads:
                if r.complete:
                    self._pool.release(r.buf)
                else:
                    r.abandoned = True

    async def aclose(self) -> None:
        """Waits for abandoned reads to leave the kernel, then closes the file. Idempotent."""
        while self._active:
            self._idle = self._loop.create_future()
            await self._idle
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)


def select_backend(io_backend: str | None = None, direct_io: str | None = None) -> tuple[IOBackend, str]:
    """The I/O backend per RS3GW_IO_BACKEND (auto|uring|threads) and RS3GW_DIRECT_IO (auto|on|off).

    Arguments override the environment. Returns (backend, name) with name "uring" or "threads".
    "auto" uses io_uring when probe() says it works and otherwise falls back to the thread pool,
    logging why once; "uring" raises RuntimeError instead. Call from the running event loop.
    """
    from rs3gw._core import uring

    kind = (io_backend or os.environ.get("RS3GW_IO_BACKEND") or "auto").strip().lower()
    direct = (direct_io or os.environ.get("RS3GW_DIRECT_IO") or "auto").strip().lower()
    if kind not in IO_BACKENDS:
        raise ValueError(f"RS3GW_IO_BACKEND must be one of {IO_BACKENDS}, not {kind!r}")
    _check_mode(direct)
    backend: IOBackend
    if kind == "threads":
        backend = ThreadBackend()
    else:
        ok, reason = uring.probe()
        ring: Ring | None = None
        if ok:
            try:
                ring = uring.Ring()
            except OSError as exc:
                reason = f"io_uring setup failed: {exc}"
        if ring is not None:
            backend = ring
        elif kind == "uring":
            raise RuntimeError(
                f"RS3GW_IO_BACKEND=uring, but io_uring cannot be used here: {reason}. "
                "Set RS3GW_IO_BACKEND=auto (or threads) to use the thread-pool backend."
            )
        else:
            _log_once(logging.WARNING, "fallback", "%s; using the thread-pool I/O backend", reason)
            backend = ThreadBackend(fallback_reason=reason)
    # The server's one start-up line names the backend; a fallback above is what deserves its own line.
    _log_once(
        logging.DEBUG, f"backend:{backend.name}:{direct}", "I/O backend %s, O_DIRECT %s", backend.name, direct
    )
    return backend, backend.name
