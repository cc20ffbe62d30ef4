"""Writing responses to a transport: head serialisation, body framing, write flow control."""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from .request import Response
from .sendfile import SENDFILE_MIN_BYTES, Sendfile, SendfileAborted
from .wire import (
    CHUNKED_END,
    CRLF,
    DateCache,
    chunk_prefix,
    encode_headers,
    status_has_body,
    status_line,
)

log = logging.getLogger("rs3gw.http")

# Bodies up to this size are joined to the head and sent with one transport.write; larger
# ones are written separately so they are never copied.
_COALESCE_BYTES = 64 * 1024


class StreamAborted(Exception):
    """The response could not be completed; the connection has been dropped."""


class PreparedResponse:
    """A response with its head serialised, ready to write."""

    __slots__ = (
        "chunked",
        "head",
        "iterator",
        "keep_alive",
        "length",
        "payload",
        "status",
        "stream",
    )

    def __init__(self, status: int, head: bytes, payload: bytes | bytearray | memoryview | None,
                 iterator: AsyncIterator[bytes | memoryview] | None, stream: bool,
                 length: int | None, chunked: bool, keep_alive: bool) -> None:
        self.status = status
        self.head = head
        self.payload = payload
        self.iterator = iterator
        self.stream = stream  # False: the iterator (HEAD, 204, 304) is only closed
        self.length = length
        self.chunked = chunked
        self.keep_alive = keep_alive


async def close_iterator(body: Any) -> None:
    """aclose() an async-generator body we will not iterate, so its cleanup runs now."""
    aclose = getattr(body, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:
        log.exception("closing a response body iterator failed")


def _nbytes(chunk: bytes | bytearray | memoryview) -> int:
    return chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)


class ResponseWriter:
    """Owns the write side of one connection: pause_writing/resume_writing and drains."""

    __slots__ = ("_cancel", "_dates", "_lost", "_paused", "_sendfile", "_transport", "_waiter",
                 "bytes_out")

    def __init__(self, transport: asyncio.Transport, dates: DateCache,
                 sendfile: Sendfile | None = None) -> None:
        self._transport = transport
        self._dates = dates
        self._sendfile = sendfile
        self._cancel: threading.Event | None = None     # set: stop the running sendfile pump
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._lost = False
        self.bytes_out = 0

    # -- transport callbacks (forwarded by the protocol) -------------------------------

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._wake()

    def connection_lost(self) -> None:
        self._lost = True
        if self._cancel is not None:
            self._cancel.set()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def lost(self) -> bool:
        return self._lost or self._transport.is_closing()

    def write_raw(self, data: bytes) -> None:
        if not self.lost:
            self._transport.write(data)
            self.bytes_out += len(data)

    async def _drain(self) -> None:
        while self._paused and not self.lost:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        if self.lost:
            raise StreamAborted("peer went away while writing")

    # -- responses -----------------------------------------------------------------------

    def prepare(self, resp: Response, method: str, http_version: str,
                keep_alive: bool) -> PreparedResponse:
        """Serialise the head; raises (before anything is written) on an invalid response."""
        status = resp.status
        body = resp.body
        extra, declared = encode_headers(resp.headers)
        length = resp.content_length if resp.content_length is not None else declared
        parts = [status_line(status), self._dates.get(), extra]
        payload: bytes | bytearray | memoryview | None = None
        iterator: AsyncIterator[bytes | memoryview] | None = None
        chunked = False
        stream = False
        if isinstance(body, (bytes, bytearray, memoryview)):
            if status_has_body(status):
                parts.append(b"Content-Length: %d\r\n" % _nbytes(body))
                if method != "HEAD" and body:
                    payload = body
        elif body is None:
            if status_has_body(status):
                parts.append(b"Content-Length: %d\r\n" % (length or 0))
        elif not status_has_body(status) or method == "HEAD":
            if status_has_body(status) and length is not None:
                parts.append(b"Content-Length: %d\r\n" % length)
            iterator = body  # not iterated: the caller only closes it
        else:
            iterator = body
            stream = True
            if length is not None:
                parts.append(b"Content-Length: %d\r\n" % length)
            elif http_version == "1.1":
                parts.append(b"Transfer-Encoding: chunked\r\n")
                chunked = True
            else:
                keep_alive = False  # HTTP/1.0 without a length: the close delimits the body
        if not keep_alive:
            parts.append(b"Connection: close\r\n")
        elif http_version == "1.0":
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(CRLF)
        return PreparedResponse(status, b"".join(parts), payload, iterator, stream, length,
                                chunked, keep_alive)

    async def send(self, prepared: PreparedResponse) -> None:
        """Write a prepared response; raises StreamAborted if the connection had to be dropped."""
        iterator = prepared.iterator
        if self.lost:
            if iterator is not None:
                await close_iterator(iterator)
            raise StreamAborted("peer went away before the response")
        transport = self._transport
        head = prepared.head
        payload = prepared.payload
        if payload is None:
            transport.write(head)
            self.bytes_out += len(head)
        elif _nbytes(payload) <= _COALESCE_BYTES:
            transport.write(head + payload)
            self.bytes_out += len(head) + _nbytes(payload)
        else:
            transport.write(head)
            transport.write(payload)
            self.bytes_out += len(head) + _nbytes(payload)
        if iterator is not None:
            if prepared.stream:
                await self._stream(iterator, prepared.length, prepared.chunked)
            else:
                await close_iterator(iterator)
        if self._paused:
            await self._drain()

    async def _stream(self, iterator: AsyncIterator[bytes | memoryview], length: int | None,
                      chunked: bool) -> None:
        transport = self._transport
        sent = 0
        try:
            if not chunked and await self._send_files(iterator, length):
                return
            async for chunk in iterator:
                n = _nbytes(chunk)
                if not n:
                    continue
                # is_closing() too: a transport that failed resumes writing and drops writes
                # before connection_lost runs, and a producer that never awaits would spin.
                if self.lost:
                    raise StreamAborted("peer went away while streaming")
                sent += n
                if length is not None and sent > length:
                    raise RuntimeError(f"response body longer than its Content-Length {length}")
                if chunked:
                    prefix = chunk_prefix(n)
                    transport.writelines((prefix, chunk, CRLF))
                    self.bytes_out += len(prefix) + n + 2
                else:
                    transport.write(chunk)
                    self.bytes_out += n
                # Flow control: the transport calls pause_writing above the high-water mark;
                # wait for it to drain so a slow reader never makes us buffer the object.
                if self._paused:
                    await self._drain()
            if length is not None and sent != length:
                raise RuntimeError(f"response body of {sent} bytes, Content-Length {length}")
            if chunked:
                transport.write(CHUNKED_END)
                self.bytes_out += len(CHUNKED_END)
        except StreamAborted:
            transport.abort()
            raise
        except Exception as exc:
            # Headers are out: the only honest signal left is a truncated response.
            log.exception("response body failed after the head was sent; aborting connection")
            transport.abort()
            raise StreamAborted("response body failed") from exc
        finally:
            await close_iterator(iterator)

    async def _send_files(self, iterator: AsyncIterator[bytes | memoryview],
                          length: int | None) -> bool:
        """Send the whole body with sendfile when it is data-file ranges (http.sendfile);
        False: not possible here, stream it instead (nothing was sent)."""
        sf = self._sendfile
        if sf is None or length is None or length < SENDFILE_MIN_BYTES:
            return False
        file_pieces = getattr(iterator, "file_pieces", None)
        pieces = file_pieces() if file_pieces is not None else None
        if not pieces or sum(p[2] for p in pieces) != length or not sf.available(self._transport):
            return False
        self._cancel = cancel = threading.Event()
        try:
            sent = await sf.send(self._transport, pieces, cancel)
        except SendfileAborted as exc:
            raise StreamAborted(str(exc)) from exc
        finally:
            self._cancel = None
        self.bytes_out += sent
        return True
