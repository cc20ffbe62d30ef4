"""Request, Response and the streaming request Body the HTTP layer hands to the S3 handler."""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

# read() joins small queued pieces up to this size; one large piece is handed out as is.
READ_PIECE_BYTES = 1 << 20
_JOIN_BELOW_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    """read_all() found more than `limit` bytes."""


class ClientDisconnected(Exception):
    """The peer closed, the body ended early or was malformed, or it stalled too long."""


class BodySource(Protocol):
    """What a Body needs from the connection that feeds it."""

    def body_consumed(self, nbytes: int) -> None: ...

    def send_continue(self) -> None: ...


class Body:
    """A request body fed by the connection's data_received, read by the handler.

    Pieces are the bytes objects the transport/parser produced, queued without copying; the
    connection pauses reading when too much is queued and resumes as read() consumes it.
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_consumed",
        "_continue_pending",
        "_eof",
        "_error",
        "_received",
        "_source",
        "_timeout_s",
        "_waiter",
        "content_length",
        "expect_continue",
        "timed_out",
    )

    def __init__(self, source: BodySource | None, content_length: int | None,
                 expect_continue: bool = False, timeout_s: float = 300.0) -> None:
        self.content_length = content_length
        # The request carried `Expect: 100-continue` (HTTP/1.1), whatever its length.
        self.expect_continue = expect_continue
        self.timed_out = False
        self._source = source
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._received = 0
        self._consumed = 0
        self._eof = content_length == 0
        self._error: ClientDisconnected | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._continue_pending = expect_continue and content_length != 0
        self._timeout_s = timeout_s

    @classmethod
    def from_bytes(cls, data: bytes) -> Body:
        """A complete in-memory body (tests, internal sub-requests)."""
        body = cls(None, len(data))
        if data:
            body.feed(data)
            body.feed_eof()
        return body

    # -- feeding side (called synchronously from the protocol) -------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        n = len(data)
        self._buffered += n
        self._received += n
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def set_error(self, exc: ClientDisconnected) -> None:
        if not self._eof and self._error is None:
            self._error = exc
            self._wake()

    def discard_buffered(self) -> int:
        """Drop whatever is queued (connection closing); returns the bytes dropped."""
        n = self._buffered
        self._chunks.clear()
        self._buffered = 0
        return n

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- state ---------------------------------------------------------------------------

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    @property
    def bytes_received(self) -> int:
        return self._received

    @property
    def bytes_consumed(self) -> int:
        return self._consumed

    @property
    def continue_pending(self) -> bool:
        """True while `Expect: 100-continue` is unanswered: the client holds the body back."""
        return self._continue_pending

    @property
    def continue_owed(self) -> bool:
        """`Expect: 100-continue` was asked and no 100 Continue was sent (read() sends it when
        the body is not empty; an empty body never does)."""
        return self.expect_continue and (self._continue_pending or self.content_length == 0)

    @property
    def complete(self) -> bool:
        """Every byte of the body has arrived (some may still be queued, unread)."""
        return self._eof

    @property
    def failed(self) -> bool:
        return self._error is not None

    def unread_bytes(self) -> int | None:
        """Bytes the handler has not consumed yet, None when unknown (chunked, not ended)."""
        if self._eof:
            return self._buffered
        if self.content_length is None:
            return None
        return self.content_length - self._consumed

    # -- reading side (the handler) ----------------------------------------------------

    async def read(self) -> bytes:
        if self._continue_pending:
            self._continue_pending = False
            if self._source is not None:
                self._source.send_continue()
        chunks = self._chunks
        while not chunks:
            if self._eof:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()
        first = chunks.popleft()
        if len(first) >= _JOIN_BELOW_BYTES or not chunks:
            data = first
        else:
            # Many small pieces (chunked TE, slow client): one join beats many tiny reads.
            parts = [first]
            size = len(first)
            while chunks and size + len(chunks[0]) <= READ_PIECE_BYTES:
                piece = chunks.popleft()
                parts.append(piece)
                size += len(piece)
            data = b"".join(parts)
        n = len(data)
        self._buffered -= n
        self._consumed += n
        if self._source is not None:
            self._source.body_consumed(n)
        return data

    async def read_all(self, limit: int) -> bytes:
        if self.content_length is not None and self.content_length > limit:
            raise BodyTooLarge(f"body of {self.content_length} bytes exceeds {limit}")
        parts: list[bytes] = []
        size = 0
        while True:
            data = await self.read()
            if not data:
                break
            size += len(data)
            if size > limit:
                raise BodyTooLarge(f"body exceeds {limit} bytes")
            parts.append(data)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiter = waiter
        # A timer handle instead of asyncio.wait_for: no extra task per wait on the hot path.
        timer = loop.call_later(self._timeout_s, self._on_timeout, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _on_timeout(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self.timed_out = True
            self._error = ClientDisconnected("request body stalled")
            waiter.set_result(None)


@dataclass(slots=True)
class Request:
    method: str
    target: str
    path: str
    query: str
    headers: dict[str, str]
    http_version: str
    client: tuple[str, int] | None
    scheme: str
    body: Body
    started: float
    keep_alive: bool = True
    header_bytes: int = 0
    # The application's name for what this request does (the AWS operation), for metrics and logs.
    operation: str = "Unknown"


@dataclass(slots=True)
class Response:
    """A handler's answer.

    Framing headers (Content-Length, Transfer-Encoding, Connection, Date, Server) belong to the
    HTTP layer; a Content-Length in `headers` is only used when `content_length` is None.
    A chunk yielded by an iterator body is handed to the transport, which may keep a reference
    until it is written: a producer must not reuse the memory behind a yielded chunk.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | AsyncIterator[bytes | memoryview] | None = None
    content_length: int | None = None
    close: bool = False


def split_target(target: str) -> tuple[str, str]:
    """Split a raw request target into (path, query); absolute-form targets lose scheme+host."""
    if target[:1] != "/" and "://" in target:
        rest = target.split("://", 1)[1]
        end = len(rest)
        for mark in "/?":
            pos = rest.find(mark)
            if 0 <= pos < end:
                end = pos
        target = rest[end:]
        if target[:1] != "/":
            target = "/" + target
    path, _, query = target.partition("?")
    return path, query
