"""io_uring for asyncio: a Ring whose completions arrive through an eventfd the event loop watches.

Submissions made during one loop tick are queued and go to the kernel in one io_uring_enter (one
crossing into C per batch, rs3gw._core._uring); completions are reaped in batches from the eventfd
reader. Every operation keeps its buffer exported (cffi from_buffer) in ``Ring._ops`` until its
completion is reaped: cancelling the awaiting task never frees memory the kernel may still touch.

The thread-pool twin with the same API is rs3gw._core.io_threads.ThreadBackend.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import itertools
import logging
import mmap
import os
import time
from typing import TYPE_CHECKING, Any, Self

from rs3gw._core import _uring
from rs3gw._core.io_threads import MAX_QUEUED_OPS, AwaitableOps, Completion

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer arrives in 3.12

__all__ = ["BufferPool", "Ring", "probe"]

ffi = _uring.ffi
lib = _uring.lib

_log = logging.getLogger("rs3gw.io")

# CQEs copied out per crossing into C.
REAP_BATCH = 256
ENTRIES_MAX = 4096

# Memory of operations a closed ring could not drain in time. The kernel may still write into it,
# so it is never released (a leak by design, logged, instead of a use-after-free).
_ORPHANED: list[Any] = []


class _Op:
    __slots__ = ("cbuf", "done", "fd", "nbytes", "offset", "opcode", "ud")

    def __init__(
        self, ud: int, opcode: int, fd: int, cbuf: Any, nbytes: int, offset: int, done: Completion
    ) -> None:
        self.ud = ud
        self.opcode = opcode
        self.fd = fd
        self.cbuf = cbuf  # cffi from_buffer: holds the caller's buffer exported until released
        self.nbytes = nbytes
        self.offset = offset
        self.done = done


class Ring(AwaitableOps):
    """One io_uring bound to one event loop; call it from that loop's thread only."""

    name = "uring"

    def __init__(self, entries: int = 256, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not 1 <= entries <= ENTRIES_MAX:
            raise ValueError(f"entries must be in [1, {ENTRIES_MAX}]")
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        err = ffi.new("int *")
        ring = lib.rs3gw_ring_open(entries, err)
        if ring == ffi.NULL:
            raise OSError(-err[0], f"io_uring setup failed: {os.strerror(-err[0])}")
        self._ring = ring
        # At most one SQ's worth in the kernel at a time: the CQ holds twice that, so it can never
        # overflow; ops beyond it wait in _queue (still owned, still counted in in_flight).
        self._capacity = int(lib.rs3gw_ring_sq_entries(ring))
        self._sqes = ffi.new("struct rs3gw_op[]", self._capacity)
        self._cqes = ffi.new("struct rs3gw_cqe[]", REAP_BATCH)
        self._stats = lib.rs3gw_ring_stats(ring)
        self._final_stats: tuple[int, int, int] | None = None
        self.eventfd = int(lib.rs3gw_ring_eventfd(ring))
        self.ring_fd = int(lib.rs3gw_ring_fd(ring))
        self._queue: collections.deque[_Op] = collections.deque()
        self._ops: dict[int, _Op] = {}
        self._submitted = 0
        self._ud = itertools.count(1)  # 0 is never used; UINT64_MAX tags cancel requests
        self._flush_handle: asyncio.Handle | None = None
        self._idle: asyncio.Future[None] | None = None
        self._closed = False
        self._loop.add_reader(self.eventfd, self._on_eventfd)

    # -- counters (tests and metrics) --------------------------------------------------------

    def _counters(self) -> tuple[int, int, int]:
        if self._final_stats is not None:
            return self._final_stats
        s = self._stats
        return int(s.enter_calls), int(s.sqes_submitted), int(s.cqes_reaped)

    @property
    def enter_calls(self) -> int:
        return self._counters()[0]

    @property
    def sqes_submitted(self) -> int:
        return self._counters()[1]

    @property
    def cqes_reaped(self) -> int:
        return self._counters()[2]

    @property
    def in_flight(self) -> int:
        """Operations whose memory the ring holds: queued for the next flush or in the kernel."""
        return len(self._ops)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- submission ---------------------------------------------------------------------------

    def _enqueue(self, opcode: int, fd: int, cbuf: Any, nbytes: int, offset: int, done: Completion) -> None:
        if self._closed:
            if cbuf is not None:
                ffi.release(cbuf)
            raise RuntimeError("Ring is closed")
        if len(self._ops) >= MAX_QUEUED_OPS:
            if cbuf is not None:
                ffi.release(cbuf)
            raise RuntimeError(f"Ring: more than {MAX_QUEUED_OPS} operations queued")
        op = _Op(next(self._ud), opcode, fd, cbuf, nbytes, offset, done)
        self._ops[op.ud] = op
        self._queue.append(op)
        if self._flush_handle is None:
            # Everything queued until this callback runs (the rest of this tick) shares one enter.
            self._flush_handle = self._loop.call_soon(self._flush)

    def submit_read(self, fd: int, buf: Buffer, offset: int, done: Completion) -> None:
        cbuf = ffi.from_buffer(buf, require_writable=True)
        self._enqueue(lib.RS3GW_OP_READ, fd, cbuf, len(cbuf), offset, done)

    def submit_write(self, fd: int, buf: Buffer, offset: int, done: Completion) -> None:
        cbuf = ffi.from_buffer(buf)
        self._enqueue(lib.RS3GW_OP_WRITE, fd, cbuf, len(cbuf), offset, done)

    def submit_fsync(self, fd: int, datasync: bool, done: Completion) -> None:
        self._enqueue(lib.RS3GW_OP_FDATASYNC if datasync else lib.RS3GW_OP_FSYNC, fd, None, 0, 0, done)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._closed:
            return
        n = min(len(self._queue), self._capacity - self._submitted)
        if n <= 0 and not lib.rs3gw_ring_sq_pending(self._ring):
            return
        sqes = self._sqes
        batch = [self._queue.popleft() for _ in range(n)]
        for i, op in enumerate(batch):
            sqe = sqes[i]
            sqe.user_data = op.ud
            sqe.buf = op.cbuf if op.cbuf is not None else ffi.NULL
            sqe.offset = op.offset
            sqe.len = op.nbytes
            sqe.fd = op.fd
            sqe.opcode = op.opcode
        placed = lib.rs3gw_submit(self._ring, sqes, n)
        if placed < 0:  # a bug on our side (bad opcode): fail the batch rather than lose it
            for op in batch:
                self._finish(op, placed)
            return
        self._submitted += placed
        # SQEs the kernel could not take now (SQ full, EAGAIN) go first next time.
        self._queue.extendleft(reversed(batch[placed:]))
        # Reads from the page cache and many writes complete inside the enter: reap them now
        # instead of after another trip through epoll.
        self._reap(clear_eventfd=False)

    # -- completion ---------------------------------------------------------------------------

    def _on_eventfd(self) -> None:
        self._reap(clear_eventfd=True)

    def _reap(self, clear_eventfd: bool) -> None:
        cqes = self._cqes
        clear = 1 if clear_eventfd else 0
        while True:
            n = lib.rs3gw_reap(self._ring, cqes, REAP_BATCH, clear)
            clear = 0
            self._deliver(n)
            if n < REAP_BATCH:
                break
        if (self._queue or lib.rs3gw_ring_sq_pending(self._ring)) and self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _deliver(self, n: int) -> None:
        cqes = self._cqes
        for i in range(n):
            cqe = cqes[i]
            op = self._ops.get(cqe.user_data)
            if op is None:  # cannot happen: every user_data we submit is in _ops
                _log.error("io_uring completion for unknown user_data %d", cqe.user_data)
                continue
            self._submitted -= 1
            self._finish(op, cqe.res)

    def _finish(self, op: _Op, res: int) -> None:
        # The kernel is done with this memory: only now may the caller's buffer go.
        del self._ops[op.ud]
        if op.cbuf is not None:
            ffi.release(op.cbuf)
            op.cbuf = None
        try:
            op.done(res)
        except Exception as exc:  # noqa: BLE001 - one bad callback must not strand the rest of the batch
            try:
                self._loop.call_exception_handler(
                    {"message": "io_uring completion callback failed", "exception": exc}
                )
            except RuntimeError:
                _log.exception("io_uring completion callback failed")
        if not self._ops and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    # -- shutdown -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Lets in-flight operations complete without blocking the loop, then closes."""
        while self._ops and not self._closed:
            self._idle = self._loop.create_future()
            await self._idle
        self.close()

    def close(self, drain_timeout_s: float = 30.0) -> None:
        """Closes the ring; idempotent. Blocks the calling thread while it drains.

        Queued operations fail with ECANCELED. Submitted ones get a cancel request and are waited
        for: regular-file I/O usually just completes, reads on pipes and sockets are cancelled. An
        operation still unreaped after drain_timeout_s has its memory parked in _ORPHANED forever.
        """
        if self._closed:
            return
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        try:
            self._loop.remove_reader(self.eventfd)
        except RuntimeError:  # loop already closed: nothing watches the fd any more
            pass
        while self._queue:
            self._finish(self._queue.popleft(), -errno.ECANCELED)  # never reached the kernel
        if self._submitted:
            pending = list(self._ops)
            uds = ffi.new("uint64_t[]", pending)
            lib.rs3gw_cancel(self._ring, uds, len(pending))
            deadline = time.monotonic() + drain_timeout_s
            while self._submitted and time.monotonic() < deadline:
                n = lib.rs3gw_wait(self._ring, self._cqes, REAP_BATCH, 100)
                if n < 0:
                    _log.error("io_uring wait failed while closing: %s", os.strerror(-n))
                    break
                self._deliver(n)
        if self._ops:
            _log.error("closing io_uring with %d operations unreaped; keeping their memory", len(self._ops))
            _ORPHANED.extend(op.cbuf for op in self._ops.values())
            self._ops.clear()
        self._final_stats = self._counters()
        lib.rs3gw_ring_close(self._ring)
        self._ring = ffi.NULL
        self._stats = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_proc(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def probe() -> tuple[bool, str]:
    """Can io_uring be used here? (ok, reason); never raises."""
    rc = int(lib.rs3gw_probe())
    if rc == 0:
        return True, f"io_uring available (Linux {os.uname().release})"
    code = -rc
    hints = []
    disabled = (_read_proc("/proc/sys/kernel/io_uring_disabled") or "").strip()
    if disabled and disabled != "0":
        hints.append(f"kernel.io_uring_disabled={disabled}")
    status = _read_proc("/proc/self/status") or ""
    for line in status.splitlines():
        if line.startswith("Seccomp:") and line.split()[1:] == ["2"]:
            hints.append("a seccomp filter is active")
    why = {
        errno.EPERM: "not permitted (EPERM)",
        errno.ENOMEM: "out of locked memory (ENOMEM; RLIMIT_MEMLOCK before Linux 5.12)",
        errno.ENOSYS: "not implemented by this kernel (ENOSYS)",
        errno.EOPNOTSUPP: "kernel lacks read/write/fsync/cancel opcodes (needs Linux >= 5.6)",
    }.get(code, f"{os.strerror(code)} (errno {code})")
    return False, "io_uring unusable: " + why + (f"; {', '.join(hints)}" if hints else "")


class BufferPool:
    """Page-aligned buffers (one anonymous mmap) for O_DIRECT; acquire waits when all are out.

    Hands out the same memoryview objects each time; release() takes exactly those back. A buffer
    given to the kernel must not be released until its completion has been reaped.
    """

    def __init__(self, size: int = 1 << 20, count: int = 64) -> None:
        if size <= 0 or count <= 0:
            raise ValueError("size and count must be positive")
        page = mmap.PAGESIZE
        if size % page:
            raise ValueError(f"size must be a multiple of the page size ({page})")
        self.size = size
        self.count = count
        self._map: mmap.mmap | None = mmap.mmap(-1, size * count, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        whole = memoryview(self._map)
        self._views = [whole[i * size : (i + 1) * size] for i in range(count)]
        whole.release()
        self._index = {id(v): i for i, v in enumerate(self._views)}
        self._free: collections.deque[int] = collections.deque(range(count))
        self._out: set[int] = set()
        self._waiters: collections.deque[asyncio.Future[int]] = collections.deque()

    @property
    def available(self) -> int:
        return len(self._free)

    def try_acquire(self) -> memoryview | None:
        """A free buffer now, or None (never waits; waiters keep their turn)."""
        if self._map is None:
            raise RuntimeError("BufferPool is closed")
        if not self._free or self._waiters:
            return None
        i = self._free.popleft()
        self._out.add(i)
        return self._views[i]

    async def acquire(self) -> memoryview:
        if self._map is None:
            raise RuntimeError("BufferPool is closed")
        if self._free and not self._waiters:
            i = self._free.popleft()
        else:
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                i = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():  # handed a buffer, then cancelled: pass it on
                    self._give(fut.result())
                raise
        self._out.add(i)
        return self._views[i]

    def release(self, buf: memoryview) -> None:
        i = self._index.get(id(buf))
        if i is None or self._views[i] is not buf:
            raise ValueError("buffer does not belong to this pool")
        if i not in self._out:
            raise ValueError("buffer released twice")
        self._out.remove(i)
        self._give(i)

    def _give(self, i: int) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(i)
                return
        self._free.append(i)

    def close(self) -> None:
        """Unmaps the memory; every buffer must have been released. Idempotent."""
        if self._map is None:
            return
        if self._out:
            raise RuntimeError(f"BufferPool.close: {len(self._out)} buffers still in use")
        for v in self._views:
            v.release()
        self._views = []
        self._map.close()
        self._map = None
