"""One asyncio.Protocol per connection: httptools parsing, read flow control, and the
connection task that runs handlers one request at a time (keep-alive and pipelining).

A connection knows its server only as a ``ConnectionHost`` (http.server.HttpServer is the one).
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from .limits import HttpLimits
from .request import Body, ClientDisconnected, Request, Response, split_target
from .sendfile import Sendfile
from .wire import CONTINUE_100, DateCache
from .writer import PreparedResponse, ResponseWriter, StreamAborted, close_iterator

Handler = Callable[[Request], Awaitable[Response]]

log = logging.getLogger("rs3gw.http")

# Unread request body the connection drains (instead of closing) after a response.
DRAIN_MAX_BYTES = 1 << 20
# Requests parsed ahead of the one being handled before reading pauses.
MAX_PIPELINED = 32
# After a response with unread body, keep reading (and dropping) this long before closing,
# so the peer sees our response instead of a reset caused by unread data.
LINGER_S = 2.0


class ConnectionHost(Protocol):
    """What a connection reads from and reports to the server that accepted it."""

    limits: HttpLimits
    date_cache: DateCache
    sendfile: Sendfile | None
    ssl_context: ssl.SSLContext | None
    scheme: str
    handler: Handler
    # Set once shutdown began: connections finish what they have and take nothing new.
    closing: bool
    # Requests being handled, all connections together; each connection counts its own in
    # and out around the handler (limits.max_concurrent bounds it).
    active_requests: int

    def error_response(self, code: str, request: Request | None) -> Response:
        """The response for a failure of the HTTP layer (a limit, a timeout, a handler that
        failed); never raises."""
        ...

    def report(self, request: Request, status: int, bytes_in: int, bytes_out: int) -> None:
        """One request answered (or given up on); never raises."""
        ...

    def add_connection(self, proto: HttpProtocol) -> None: ...

    def remove_connection(self, proto: HttpProtocol) -> None: ...

    def track_task(self, task: asyncio.Task[None]) -> None:
        """The connection's task, cancelled by the server at the end of a shutdown."""
        ...

    def task_finished(self) -> None:
        """The connection's task ended (a shutdown waits for every one)."""
        ...

    def request_finished(self) -> None:
        """A request left the handler, answered or not (a shutdown waits for every one)."""
        ...


class _Reject(Exception):
    """Raised inside a parser callback to stop parsing; the reason is in _parse_error."""


class HttpProtocol(asyncio.Protocol):
    __slots__ = (
        "_active",
        "_body",
        "_buffered",
        "_client",
        "_closing",
        "_conn_lost",
        "_discard",
        "_header_bytes",
        "_header_spill",
        "_header_timer",
        "_headers",
        "_idle_expired",
        "_idle_timer",
        "_in_headers",
        "_in_message",
        "_limits",
        "_loop",
        "_msg_seq",
        "_parse_error",
        "_parser",
        "_parsing_stopped",
        "_peer_eof",
        "_queue",
        "_raw_remaining",
        "_reading_paused",
        "_resume_bytes",
        "_server",
        "_task",
        "_transport",
        "_url",
        "_waiter",
        "_writer",
        "max_buffered_bytes",
    )

    def __init__(self, server: ConnectionHost) -> None:
        self._server = server
        self._limits = server.limits
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._writer: ResponseWriter | None = None
        self._parser = HttpRequestParser(self)
        self._client: tuple[str, int] | None = None
        # Parsed requests (headers complete) waiting for the connection task, in order; a str
        # is a protocol failure code answered after the requests before it.
        self._queue: deque[Request | str] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._active: Request | None = None
        # The message being parsed.
        self._in_message = False
        self._in_headers = False
        self._msg_seq = 0
        self._url = b""
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._header_spill = 0
        self._body: Body | None = None
        self._raw_remaining = 0
        self._parse_error: str | None = None
        self._parsing_stopped = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_expired = False
        # Read flow control: bytes queued in request bodies, not yet read by a handler.
        self._buffered = 0
        self.max_buffered_bytes = 0
        self._reading_paused = False
        self._resume_bytes = self._limits.read_high_water_bytes // 2
        self._conn_lost = False
        self._peer_eof = False
        self._discard = False
        self._closing = False

    # -- state visible to the server ---------------------------------------------------

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    @property
    def busy(self) -> bool:
        """A request is being handled or waits in the queue."""
        return self._active is not None or bool(self._queue)

    def close_if_idle(self) -> None:
        """Shutdown: wake a task waiting for the next request so it closes the connection."""
        if not self.busy and not self._in_message:
            self._wake()

    @property
    def flushed(self) -> bool:
        """Closed, or closing with nothing left in the transport's write buffer. (A TLS
        transport then still waits for the peer's close_notify, which is not ours to wait for.)
        """
        transport = self._transport
        if self._conn_lost or transport is None:
            return True
        return transport.is_closing() and transport.get_write_buffer_size() == 0

    def close_gracefully(self) -> None:
        """Shutdown, no request left: close unless already closing (after a response, or
        lingering); transport.close() sends what is still buffered before it closes."""
        if self._closing:
            return
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    # -- transport callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop transports are not asyncio.Transport subclasses; both provide its API.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._client = (peer[0], peer[1])
        transport.set_write_buffer_limits(high=self._limits.write_high_water_bytes)
        self._writer = ResponseWriter(transport, self._server.date_cache, self._server.sendfile)
        self._server.add_connection(self)
        self._task = self._loop.create_task(self._run())
        self._server.track_task(self._task)

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn_lost = True
        self._cancel_timers()
        err = ClientDisconnected("connection lost")
        if self._body is not None:
            self._body.set_error(err)
        if self._active is not None:
            self._active.body.set_error(err)
        for item in self._queue:
            if isinstance(item, Request):
                item.body.set_error(err)
        if self._writer is not None:
            self._writer.connection_lost()
        self._wake()
        self._server.remove_connection(self)

    def eof_received(self) -> bool:
        self._peer_eof = True
        if self._discard:
            return False
        if self._body is not None:
            self._body.set_error(ClientDisconnected("request body incomplete"))
        self._wake()
        # Keep the write side open: responses for requests already parsed are still owed.
        # (TLS cannot half-close; its transports warn when asked to.)
        return self._server.ssl_context is None

    def pause_writing(self) -> None:
        if self._writer is not None:
            self._writer.pause()

    def resume_writing(self) -> None:
        if self._writer is not None:
            self._writer.resume()

    def data_received(self, data: bytes) -> None:
        if self._discard or self._parsing_stopped:
            return
        rem = self._raw_remaining
        if rem:
            # Content-Length body bypass: the transport's bytes go to the Body as they are,
            # with no parser pass and no copy (except the split at the end of the body).
            n = len(data)
            if n < rem:
                self._raw_remaining = rem - n
                self._body_piece(data)
                return
            self._raw_remaining = 0
            if n == rem:
                self._body_piece(data)
                self._end_raw_body()
                return
            self._body_piece(data[:rem])
            data = data[rem:]
            self._end_raw_body()
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        seq = self._msg_seq
        headers_before = self._in_headers
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as exc:
            # No protocol switch is offered: the request is served as HTTP/1.1 and whatever
            # follows it is parsed as the next request by a fresh parser.
            offset = exc.args[0] if exc.args else len(data)
            if self._in_message:
                self.on_message_complete()
            self._parser = HttpRequestParser(self)
            if offset < len(data):
                self._feed(data[offset:])
            return
        except HttpParserError:
            self._fail_parse(self._parse_error or "BadRequest")
            return
        if self._in_headers:
            # Still inside one header section: everything fed was header bytes, which
            # httptools buffers until a header line ends. Bound that too.
            if headers_before and seq == self._msg_seq:
                self._header_spill += len(data)
                if self._header_spill > self._limits.max_header_bytes:
                    self._fail_parse("RequestHeaderSectionTooLarge")
        elif self._body is not None and self._body.content_length is not None:
            remaining = self._body.content_length - self._body.bytes_received
            if remaining > 0:
                self._raw_remaining = remaining

    def _end_raw_body(self) -> None:
        self.on_message_complete()
        # The old parser still expects body bytes it never saw; start the next message afresh.
        self._parser = HttpRequestParser(self)

    # -- parser callbacks (synchronous, inside feed_data) ----------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._in_headers = True
        self._msg_seq += 1
        self._url = b""
        self._headers = {}
        self._header_bytes = 0
        self._header_spill = 0
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._header_timer = self._loop.call_later(
            self._limits.request_timeout_s, self._on_header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_uri_bytes:
            self._parse_error = "RequestURITooLong"
            raise _Reject
        self._header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._limits.max_header_bytes:
            self._parse_error = "RequestHeaderSectionTooLarge"
            raise _Reject
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").rstrip(" \t")
        headers = self._headers
        prev = headers.get(key)
        headers[key] = text if prev is None else prev + "," + text

    def on_headers_complete(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._in_headers = False
        parser = self._parser
        headers = self._headers
        te = headers.get("transfer-encoding")
        length: int | None
        if te is not None and "chunked" in te.lower():
            length = None
        else:
            cl = headers.get("content-length")
            try:
                length = int(cl) if cl else 0
            except ValueError:
                self._parse_error = "BadRequest"
                raise _Reject from None
        version = parser.get_http_version()
        expect = version == "1.1" and headers.get("expect", "").lower() == "100-continue"
        body = Body(self, length, expect, self._limits.request_timeout_s)
        target = self._url.decode("latin-1")
        path, query = split_target(target)
        request = Request(
            method=parser.get_method().decode("ascii"), target=target, path=path, query=query,
            headers=headers, http_version=version, client=self._client,
            scheme=self._server.scheme, body=body, started=time.monotonic(),
            keep_alive=parser.should_keep_alive(), header_bytes=self._header_bytes,
        )
        self._body = body if length != 0 else None
        self._queue.append(request)
        self._wake()
        if len(self._queue) > MAX_PIPELINED:
            self._update_reading()

    def on_body(self, data: bytes) -> None:
        self._body_piece(data)

    def on_message_complete(self) -> None:
        self._in_message = False
        body = self._body
        if body is not None:
            body.feed_eof()
            self._body = None

    def _body_piece(self, data: bytes) -> None:
        body = self._body
        if body is None:
            return
        body.feed(data)
        self._buffered += len(data)
        self.max_buffered_bytes = max(self.max_buffered_bytes, self._buffered)
        if self._buffered > self._limits.read_high_water_bytes and not self._reading_paused:
            self._update_reading()

    def _fail_parse(self, code: str) -> None:
        if self._parsing_stopped:
            return
        self._parsing_stopped = True
        self._raw_remaining = 0
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self._body is not None:
            self._body.set_error(ClientDisconnected("malformed request"))
            self._body = None
        self._queue.append(code)
        self._update_reading()
        self._wake()

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        if self._in_headers:
            self._fail_parse("RequestTimeout")

    def _on_idle_timeout(self) -> None:
        self._idle_timer = None
        if not self._in_message and not self._queue:
            self._idle_expired = True
            self._wake()

    # -- read flow control ---------------------------------------------------------------

    def body_consumed(self, nbytes: int) -> None:
        self._buffered -= nbytes
        if self._reading_paused and self._buffered <= self._resume_bytes:
            self._update_reading()

    def send_continue(self) -> None:
        if self._writer is not None:
            self._writer.write_raw(CONTINUE_100)

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._conn_lost:
            return
        if self._discard:
            want_pause = False
        elif self._reading_paused:
            want_pause = (self._parsing_stopped or self._buffered > self._resume_bytes
                          or len(self._queue) > MAX_PIPELINED)
        else:
            want_pause = (self._parsing_stopped
                          or self._buffered > self._limits.read_high_water_bytes
                          or len(self._queue) > MAX_PIPELINED)
        if want_pause != self._reading_paused:
            self._reading_paused = want_pause
            if want_pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    # -- connection task -------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._idle_timer = None

    async def _run(self) -> None:
        try:
            while True:
                item = await self._next_item()
                if item is None:
                    break
                if isinstance(item, str):
                    await self._answer_failure(item)
                    break
                if self._conn_lost:
                    break  # nobody to answer: do not run handlers for a vanished client
                if not await self._serve(item):
                    break
        except asyncio.CancelledError:
            self.abort()
            raise
        except Exception:
            log.exception("HTTP connection task failed; aborting the connection")
            self.abort()
        finally:
            self._active = None
            if not self._closing and self._transport is not None:
                self._closing = True
                self._transport.close()
            self._server.task_finished()

    async def _next_item(self) -> Request | str | None:
        queue = self._queue
        while not queue:
            if (self._conn_lost or self._peer_eof or self._parsing_stopped
                    or self._idle_expired or (self._server.closing and not self._in_message)):
                return None
            waiter = self._loop.create_future()
            self._waiter = waiter
            if not self._in_message:
                self._idle_timer = self._loop.call_later(
                    self._limits.idle_timeout_s, self._on_idle_timeout)
            try:
                await waiter
            finally:
                self._waiter = None
                if self._idle_timer is not None:
                    self._idle_timer.cancel()
                    self._idle_timer = None
        item = queue.popleft()
        if self._reading_paused:
            self._update_reading()
        return item

    async def _serve(self, request: Request) -> bool:
        """Handle one request and answer it; returns whether the connection stays open."""
        server = self._server
        self._active = request
        try:
            if server.active_requests >= self._limits.max_concurrent:
                return await self._respond(request, server.error_response("SlowDown", request))
            server.active_requests += 1
            try:
                try:
                    response = await server.handler(request)
                    if not isinstance(response, Response):
                        raise TypeError(f"handler returned {type(response).__name__}")
                except ClientDisconnected:
                    if request.body.timed_out:
                        response = server.error_response("RequestTimeout", request)
                        response.close = True
                    elif self._conn_lost or self._peer_eof:
                        gone = server.error_response("IncompleteBody", request)
                        await close_iterator(gone.body)
                        server.report(request, gone.status, self._bytes_in(request), 0)
                        return False
                    else:
                        response = server.error_response("BadRequest", request)
                        response.close = True
                except Exception:
                    log.exception("handler failed: %s %s", request.method, request.target)
                    response = server.error_response("InternalError", request)
                return await self._respond(request, response)
            finally:
                server.active_requests -= 1
        finally:
            self._active = None
            server.request_finished()

    async def _respond(self, request: Request, response: Response) -> bool:
        server = self._server
        writer = self._writer
        assert writer is not None
        body = request.body
        keep = (request.keep_alive and not response.close and not server.closing
                and not self._peer_eof)
        drain = False
        linger = False
        if not body.at_eof:
            if body.failed:
                keep = False
            elif body.complete:
                # The client sent the whole body (without waiting for 100 Continue, if it was
                # asked for) and the handler left some unread: drop it, nothing is owed.
                self._drop_unread(body)
            elif body.continue_pending:
                # The client holds the body back until 100 Continue, which it never gets:
                # answer and close; reading the body now would only waste its bandwidth.
                keep = False
                linger = True
            else:
                unread = body.unread_bytes()
                if keep and (unread is None or unread <= DRAIN_MAX_BYTES):
                    drain = True
                else:
                    keep = False
                    linger = True
        start_out = writer.bytes_out
        prepared = await self._prepare(request, response, keep)
        if body.complete and body.continue_owed:
            # The whole body is here (empty, or sent without waiting) but 100 Continue was
            # never sent: send it before the final response anyway. A client still waiting
            # for it (botocore, empty PutObject) otherwise takes the final response for an
            # early rejection, and botocore keeps that status line on the pooled connection
            # and hands it, stale, to the next request it sends there with Expect: the real
            # status line is then parsed as a header, Content-Length is lost, and it waits
            # for a close that never comes. (Bodies still held back get no 100: we close.)
            writer.write_raw(CONTINUE_100)
        try:
            await writer.send(prepared)
        except StreamAborted:
            server.report(request, prepared.status, self._bytes_in(request),
                          writer.bytes_out - start_out)
            return False
        keep = prepared.keep_alive
        if drain:
            keep = await self._drain_body(body)
            if not keep:
                linger = True
        server.report(request, prepared.status, self._bytes_in(request),
                      writer.bytes_out - start_out)
        if not keep:
            self._close(linger)
        return keep

    async def _prepare(self, request: Request, response: Response,
                       keep: bool) -> PreparedResponse:
        writer = self._writer
        assert writer is not None
        try:
            return writer.prepare(response, request.method, request.http_version, keep)
        except Exception:
            log.exception("invalid response from handler: %s %s", request.method,
                          request.target)
            await close_iterator(response.body)
            fallback = self._server.error_response("InternalError", request)
            return writer.prepare(fallback, request.method, request.http_version, keep)

    def _drop_unread(self, body: Body) -> None:
        self._buffered -= body.discard_buffered()
        if self._reading_paused:
            self._update_reading()

    async def _drain_body(self, body: Body) -> bool:
        """Read and drop a small unread body so the connection can serve the next request."""
        drained = 0
        try:
            while True:
                data = await body.read()
                if not data:
                    return True
                drained += len(data)
                if drained > DRAIN_MAX_BYTES:
                    return False
        except ClientDisconnected:
            return False

    async def _answer_failure(self, code: str) -> None:
        writer = self._writer
        assert writer is not None
        response = self._server.error_response(code, None)
        try:
            prepared = writer.prepare(response, "GET", "1.1", False)
            await writer.send(prepared)
        except StreamAborted:
            return
        self._close(linger=True)

    def _bytes_in(self, request: Request) -> int:
        return request.header_bytes + request.body.bytes_received

    def _close(self, linger: bool) -> None:
        """Close after the last response; with linger, half-close and drop input for a while."""
        if self._closing:
            return
        self._closing = True
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if linger and not self._conn_lost and not self._peer_eof and transport.can_write_eof():
            self._discard = True
            self._parsing_stopped = True
            self._raw_remaining = 0
            for body in self._bodies():
                self._buffered -= body.discard_buffered()
            try:
                transport.write_eof()
            except (OSError, RuntimeError):
                transport.close()
                return
            self._update_reading()
            self._loop.call_later(LINGER_S, transport.close)
            return
        transport.close()

    def _bodies(self) -> list[Body]:
        bodies = [item.body for item in self._queue if isinstance(item, Request)]
        if self._active is not None:
            bodies.append(self._active.body)
        if self._body is not None:
            bodies.append(self._body)
        return bodies
