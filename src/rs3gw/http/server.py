"""The HTTP listener: limits, connection bookkeeping, graceful shutdown."""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable

from .limits import HttpLimits
from .protocol import Handler, HttpProtocol
from .request import Request, Response
from .sendfile import Sendfile
from .wire import DateCache

log = logging.getLogger("rs3gw.http")

ErrorResponder = Callable[[str, "Request | None"], Response]
ResponseHook = Callable[[Request, int, int, int], None]

# Shutdown re-checks this often whether closing connections have flushed their buffers.
_FLUSH_POLL_S = 0.02

# Used only when the S3 layer's error_response itself fails.
_FALLBACK_STATUS = {
    "RequestHeaderSectionTooLarge": 400, "RequestURITooLong": 414, "BadRequest": 400,
    "RequestTimeout": 400, "SlowDown": 503, "InternalError": 500, "IncompleteBody": 400,
}


class HttpServer:
    """The listener and its connections' shared state; implements protocol.ConnectionHost."""

    def __init__(self, handler: Handler, error_response: ErrorResponder, limits: HttpLimits,
                 ssl_context: ssl.SSLContext | None = None,
                 on_response: ResponseHook | None = None, sendfile: bool = True) -> None:
        self.handler = handler
        # Data-file bodies by sendfile(2) (http.sendfile); TLS needs the bytes in user space.
        self.sendfile = (Sendfile(limits.request_timeout_s)
                         if sendfile and ssl_context is None else None)
        self.limits = limits
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context is not None else "http"
        self.date_cache = DateCache()
        self.active_requests = 0
        self.closing = False
        self._error_response = error_response
        self._on_response = on_response
        self._server: asyncio.Server | None = None
        self._connections: set[HttpProtocol] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str, port: int,
                    sock: socket.socket | None = None) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        if sock is not None:
            server = await loop.create_server(self._make_protocol, sock=sock,
                                              ssl=self.ssl_context, backlog=self.limits.backlog)
        else:
            server = await loop.create_server(self._make_protocol, host, port,
                                              ssl=self.ssl_context, backlog=self.limits.backlog,
                                              reuse_address=True)
        self._server = server
        name = server.sockets[0].getsockname()
        log.debug("bound %s://%s:%d (loop %s)", self.scheme, name[0], name[1],
                 type(loop).__module__)
        return name[0], name[1]

    async def shutdown(self, drain_timeout_s: float = 30.0) -> None:
        """Stop accepting, let in-flight responses finish (bounded), then close everything.

        A response is only finished once the transport has flushed it: the handler returning,
        or the body iterator ending, leaves up to a write high-water mark of bytes in the
        transport's buffer, which abort() would throw away. So connections are closed with
        transport.close() (it flushes, then calls connection_lost) and aborted only when the
        deadline passes.
        """
        self.closing = True
        if self._server is not None:
            self._server.close()
        for proto in list(self._connections):
            proto.close_if_idle()
        deadline = asyncio.get_running_loop().time() + drain_timeout_s
        if not await self._wait_until(self._requests_done, deadline):
            log.warning("shutdown: %d requests still running after %.1fs; aborting",
                        self.active_requests, drain_timeout_s)
        else:
            # No request left: each connection is closed already (after its last response),
            # closing by itself (idle, lingering), or waiting for a request that never came.
            for proto in list(self._connections):
                proto.close_gracefully()
            # Buffers drain without telling us (only connection_lost does, and a TLS close
            # waits for the peer's close_notify first): poll, briefly, until the deadline.
            if not await self._wait_until(
                    lambda: all(p.flushed for p in self._connections), deadline,
                    poll_s=_FLUSH_POLL_S):
                log.warning("shutdown: %d connections still flushing responses after %.1fs; "
                            "aborting", len(self._connections), drain_timeout_s)
        for proto in list(self._connections):
            proto.abort()
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self.sendfile is not None:
            self.sendfile.close()

    def _requests_done(self) -> bool:
        return not self.active_requests and not any(p.busy for p in self._connections)

    async def _wait_until(self, done: Callable[[], bool], deadline: float,
                          poll_s: float | None = None) -> bool:
        """Wait (until the loop time `deadline`) for `done()`, re-checked on every _notify
        and, with poll_s, at least that often."""
        if self._changed is None:
            self._changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(),
                                       remaining if poll_s is None else min(poll_s, remaining))
            except TimeoutError:
                pass
        return True

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def _make_protocol(self) -> HttpProtocol:
        return HttpProtocol(self)

    # -- ConnectionHost: what the connections call ------------------------------------------

    def add_connection(self, proto: HttpProtocol) -> None:
        self._connections.add(proto)

    def remove_connection(self, proto: HttpProtocol) -> None:
        self._connections.discard(proto)
        self._notify()

    def track_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def task_finished(self) -> None:
        self._notify()

    def request_finished(self) -> None:
        if self.closing:
            self._notify()

    def error_response(self, code: str, request: Request | None) -> Response:
        """The S3 layer's error response for `code`; never raises."""
        try:
            response = self._error_response(code, request)
            if isinstance(response, Response):
                return response
            log.error("error_response(%r) returned %r", code, type(response).__name__)
        except Exception:
            log.exception("error_response(%r) failed", code)
        return Response(_FALLBACK_STATUS.get(code, 500), [("Content-Type", "text/plain")],
                        code.encode("ascii"), close=True)

    def report(self, request: Request, status: int, bytes_in: int, bytes_out: int) -> None:
        """Run the on_response metrics hook; it must never break the connection."""
        hook = self._on_response
        if hook is None:
            return
        try:
            hook(request, status, bytes_in, bytes_out)
        except Exception:
            log.exception("on_response hook failed")

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
