"""A minimal HTTP/1.1 keep-alive client connection for the load loop (asyncio BufferedProtocol).

The kernel reads straight into one preallocated receive buffer (no per-read bytes objects, no stream
buffer copies). Response bodies are consumed chunk by chunk: counted, compared in place against the
expected bytes (`bytes.startswith(view, offset)` is a memcmp), and kept only when asked or on error.
Bodies may be Content-Length, chunked or delimited by close; one request at a time per connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

RECV_BUFFER_BYTES = 1 << 20
HEAD_BYTES_MAX = 64 << 10
KEEP_BYTES_MAX = 64 << 20          # a kept body (LIST page, error) larger than this is an error
SEND_CHUNK_BYTES = 1 << 20


class HttpError(Exception):
    pass


@dataclass(slots=True)
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    body_bytes: int = 0
    content_ok: bool = True          # every byte matched `expected` and the length was right
    will_close: bool = False


class _Body:
    """Where response body bytes go: counted, compared against `expected`, kept if asked."""

    __slots__ = ("expected", "keep", "kept", "offset", "ok")

    def __init__(self, expected: bytes | None, keep: bool) -> None:
        self.expected = expected
        self.keep = keep
        self.offset = 0
        self.ok = True
        self.kept = bytearray() if keep else None

    def feed(self, view: memoryview) -> None:
        n = len(view)
        exp = self.expected
        if exp is not None and self.ok:
            self.ok = self.offset + n <= len(exp) and exp.startswith(view, self.offset)
        if self.kept is not None:
            if len(self.kept) + n > KEEP_BYTES_MAX:
                raise HttpError("kept response body too large")
            self.kept += view
        self.offset += n


class Connection(asyncio.BufferedProtocol):
    """One keep-alive connection; `request()` sends a head (+ body) and awaits the whole response."""

    def __init__(self) -> None:
        self._buf = bytearray(RECV_BUFFER_BYTES)
        self._view = memoryview(self._buf)
        self._fill = 0                       # bytes of head (or chunked framing) held in _buf
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._closed = False
        self._resp: Response | None = None
        self._body: _Body | None = None
        self._mode = ""                      # "head", "length", "chunked", "close", "" (idle)
        self._remaining = 0
        self._chunk_raw = bytearray()
        self._is_head_request = False

    # asyncio protocol callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._mode == "close" and self._resp is not None:
            self._finish()
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError(f"connection lost: {exc or 'closed by peer'}"))
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._mode in ("length", "close"):
            return self._view               # body bytes are consumed at once: reuse the whole buffer
        if self._fill >= len(self._buf):
            raise HttpError("response head too large")
        return self._view[self._fill:]

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self._mode in ("length", "close"):
                self._body_bytes(self._view[:nbytes])
                return
            self._fill += nbytes
            if self._mode == "head":
                self._parse_head()
            elif self._mode == "chunked":
                self._chunk_raw += self._view[:self._fill]
                self._fill = 0
                self._parse_chunked()
            elif nbytes:
                raise HttpError("bytes received with no request outstanding")
        except HttpError as e:
            self._fail(e)

    def eof_received(self) -> bool:
        return False

    # response parsing -------------------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self._mode = ""
        if self._transport is not None:
            self._transport.abort()

    def _parse_head(self) -> None:
        end = self._buf.find(b"\r\n\r\n", 0, self._fill)
        if end < 0:
            if self._fill > HEAD_BYTES_MAX:
                raise HttpError("response head too large")
            return
        lines = bytes(self._view[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"bad status line {lines[0]!r}")
        resp = self._resp
        assert resp is not None
        resp.status = int(parts[1])
        hdrs = resp.headers
        for line in lines[1:]:
            name, _, value = line.partition(":")
            hdrs[name.strip().lower()] = value.strip()
        resp.will_close = hdrs.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0"
        rest = self._view[end + 4:self._fill]
        if resp.status == 100:                   # interim response: wait for the final one
            leftover = bytes(rest)
            self._buf[:len(leftover)] = leftover
            self._fill = len(leftover)
            resp.headers = {}
            if leftover:
                self._parse_head()
            return
        if self._is_head_request or resp.status in (204, 304):
            self._mode = "length"
            self._remaining = 0
        elif "chunked" in hdrs.get("transfer-encoding", "").lower():
            self._mode = "chunked"
            self._chunk_raw = bytearray(rest)
            self._fill = 0
            self._parse_chunked()
            return
        elif "content-length" in hdrs:
            self._mode = "length"
            self._remaining = int(hdrs["content-length"])
        else:
            self._mode = "close"
            resp.will_close = True
        self._fill = 0
        if self._body is not None and self._body.expected is not None and resp.status >= 300:
            self._body = _Body(None, keep=True)   # an error document: keep it for the report
        if len(rest):
            leftover = bytes(rest)               # rest views _buf, which body reads will overwrite
            self._body_bytes(memoryview(leftover))
        elif self._mode == "length" and self._remaining == 0:
            self._finish()

    def _body_bytes(self, view: memoryview) -> None:
        body = self._body
        assert body is not None
        if self._mode == "length":
            if len(view) > self._remaining:
                raise HttpError("more body bytes than Content-Length")
            self._remaining -= len(view)
        body.feed(view)
        if self._mode == "length" and self._remaining == 0:
            self._finish()

    def _parse_chunked(self) -> None:
        raw = self._chunk_raw
        body = self._body
        assert body is not None
        pos = 0
        while True:
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(bytes(raw[pos:eol]).split(b";", 1)[0], 16)
            if size == 0:
                # "0\r\n" then trailers (usually none), ended by a blank line.
                if raw.find(b"\r\n\r\n", eol) < 0:
                    break
                del raw[:]
                self._finish()
                return
            if len(raw) < eol + 2 + size + 2:
                break
            body.feed(memoryview(raw)[eol + 2:eol + 2 + size])
            pos = eol + 2 + size + 2
        del raw[:pos]

    def _finish(self) -> None:
        resp, body = self._resp, self._body
        assert resp is not None and body is not None
        resp.body_bytes = body.offset
        resp.content_ok = body.ok and (body.expected is None or body.offset == len(body.expected))
        if body.kept is not None:
            resp.body = bytes(body.kept)
        self._mode = ""
        self._resp = self._body = None
        if resp.will_close and self._transport is not None:
            self._transport.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(resp)

    # the client side --------------------------------------------------------------------------

    @property
    def body_bytes_seen(self) -> int:
        """Body bytes of the response in progress received so far."""
        return self._body.offset if self._body is not None else 0

    @property
    def usable(self) -> bool:
        return not self._closed and self._transport is not None and not self._transport.is_closing()

    async def request(self, head: bytes, body: bytes | memoryview | None = None,
                      expected: bytes | None = None, keep: bool = False, head_request: bool = False,
                      body_stream: object = None) -> Response:
        """Sends `head` (the request line and headers, ending in a blank line) and `body`, or the
        chunks of `body_stream` (an async iterator of bytes), and returns the whole response."""
        if not self.usable:
            raise HttpError("connection closed")
        assert self._transport is not None and self._mode == ""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._resp = Response()
        self._body = _Body(expected, keep)
        self._mode = "head"
        self._fill = 0
        self._is_head_request = head_request
        t = self._transport
        if body is not None and len(body) <= SEND_CHUNK_BYTES:
            t.write(head + body if len(body) <= 65536 else head)
            if len(body) > 65536:
                t.write(body)
        else:
            t.write(head)
            if body is not None:
                view = memoryview(body)
                for off in range(0, len(view), SEND_CHUNK_BYTES):
                    if waiter.done():
                        break                        # the server answered early (an error)
                    t.write(view[off:off + SEND_CHUNK_BYTES])
                    await self._drained()
            elif body_stream is not None:
                async for chunk in body_stream:      # type: ignore[attr-defined]
                    if waiter.done() or self._closed:
                        break
                    t.write(chunk)
                    await self._drained()
        return await waiter

    async def _drained(self) -> None:
        if self._drain is not None and not self._drain.done():
            await self._drain

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


async def connect(host: str, port: int) -> Connection:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(Connection, host, port)
    return proto


def request_head(method: str, target: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
