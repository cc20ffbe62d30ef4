"""Zero-copy response bodies: data files go from the page cache to the socket with sendfile(2).

The streaming path copies every byte three times (page cache -> read buffer, buffer -> ``bytes``
the transport may keep, ``bytes`` -> socket) and runs Python per 1 MiB chunk; sendfile copies once,
in the kernel, as nginx does. Plain HTTP only (TLS encrypts in user space), bodies of known
length whose every byte is a data-file range (storage readers offer ``file_pieces()``).

Threads, not the loop: sendfile reads the file, so a cold page blocks it on the disk, which must
never stall the event loop. Each response gets a pool thread that loops sendfile + poll(POLLOUT)
on a dup() of the connection's socket. The dup matters for ownership: if the transport closes
its descriptor meanwhile (the peer left, shutdown aborted the connection), ours still names the
same socket, so the number can never be reused under the thread by another connection; the
thread closes it when done. The loop writes nothing to the transport while a pump runs (the
response's handler awaits it), and the transport's buffer is empty when it starts, so bytes on
the wire stay in order.
"""
from __future__ import annotations

import asyncio
import errno
import os
import select
import threading
from concurrent.futures import ThreadPoolExecutor

# Below this a body goes through the transport: a thread hop costs more than the copies it saves.
SENDFILE_MIN_BYTES = 256 * 1024
# Responses sent by sendfile at once; more take the streaming path rather than queue for a thread
# behind slow readers.
SENDFILE_THREADS = 32
# How long poll() sleeps before looking at the cancel flag (a closed connection, a shutdown).
POLL_SLICE_MS = 200


class SendfileAborted(Exception):
    """The body could not be sent completely; the caller drops the connection."""


class Sendfile:
    def __init__(self, stall_timeout_s: float, threads: int = SENDFILE_THREADS) -> None:
        self._stall_s = stall_timeout_s
        self._threads = threads
        self._busy = 0
        self._pool: ThreadPoolExecutor | None = None

    def available(self, transport: asyncio.Transport) -> bool:
        """Whether send() may be used now on ``transport`` (plain socket, nothing buffered)."""
        return (self._busy < self._threads
                and transport.get_extra_info("sslcontext") is None
                and transport.get_extra_info("socket") is not None
                and transport.get_write_buffer_size() == 0)

    async def send(self, transport: asyncio.Transport, pieces: list[tuple[int, int, int]],
                   cancel: threading.Event) -> int:
        """Send every (fd, offset, length) piece in order; returns the bytes sent. Raises
        SendfileAborted when the peer went away, stalled past the timeout, or a file was short.
        The fds stay the caller's; ``cancel`` set (from the loop) stops the pump early."""
        sock = transport.get_extra_info("socket")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._threads,
                                            thread_name_prefix="rs3gw-sendfile")
        out = os.dup(sock.fileno())     # the pump closes it (see the module docstring)
        self._busy += 1
        try:
            fut = asyncio.get_running_loop().run_in_executor(self._pool, _pump, out, pieces,
                                                             cancel, self._stall_s)
        except BaseException:
            self._busy -= 1
            os.close(out)
            raise
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            cancel.set()    # the pump sees it within POLL_SLICE_MS and closes its descriptor
            raise
        finally:
            self._busy -= 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _pump(out: int, pieces: list[tuple[int, int, int]], cancel: threading.Event,
          stall_s: float) -> int:
    sent = 0
    poller = select.poll()
    poller.register(out, select.POLLOUT)
    try:
        for fd, offset, length in pieces:
            while length:
                if cancel.is_set():
                    raise SendfileAborted("connection closed while sending")
                try:
                    n = os.sendfile(out, fd, offset, length)
                except BlockingIOError:
                    _wait_writable(poller, cancel, stall_s)
                    continue
                except OSError as exc:  # EPIPE, ECONNRESET: the peer is gone
                    raise SendfileAborted(f"sendfile failed: {exc}") from exc
                if n == 0:
                    raise SendfileAborted(str(OSError(errno.EIO, "data file shorter than its "
                                                                 "metadata")))
                offset += n
                length -= n
                sent += n
        return sent
    finally:
        os.close(out)


def _wait_writable(poller: select.poll, cancel: threading.Event, stall_s: float) -> None:
    waited_ms = 0
    while not poller.poll(POLL_SLICE_MS):
        waited_ms += POLL_SLICE_MS
        if cancel.is_set():
            raise SendfileAborted("connection closed while sending")
        if waited_ms >= stall_s * 1000:
            raise SendfileAborted(f"peer read nothing for {stall_s:.0f} s")
