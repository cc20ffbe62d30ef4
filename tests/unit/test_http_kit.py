"""Shared helpers for the HTTP layer tests: loops, a server on port 0, a raw response reader."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from rs3gw.http import HttpLimits, HttpServer, Request, Response

DEADLINE_S = 20.0

STATUS = {
    "RequestHeaderSectionTooLarge": 400, "RequestURITooLong": 414, "BadRequest": 400,
    "RequestTimeout": 400, "SlowDown": 503, "InternalError": 500, "IncompleteBody": 400,
}


def error_response(code: str, request: Request | None) -> Response:
    return Response(STATUS[code], [("Content-Type", "application/xml"), ("X-Code", code)],
                    f"<Error><Code>{code}</Code></Error>".encode())


def run(loop_kind: str, coro: Coroutine[Any, Any, Any]) -> Any:
    factory = uvloop.new_event_loop if loop_kind == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(asyncio.wait_for(coro, DEADLINE_S * 2))


# Every behaviour is checked on uvloop (production) and on the stock loop (the reference).
both_loops = pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])


@contextlib.asynccontextmanager
async def serve(handler: Callable[[Request], Awaitable[Response]],
                limits: HttpLimits | None = None, **kwargs: Any) -> AsyncIterator[tuple[HttpServer, int]]:
    server = HttpServer(handler, error_response, limits or HttpLimits(), **kwargs)
    _, port = await server.start("127.0.0.1", 0)
    try:
        yield server, port
    finally:
        await server.shutdown(drain_timeout_s=5.0)


async def connect(port: int, **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, **kwargs), DEADLINE_S)


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, head: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.head = head


async def read_response(reader: asyncio.StreamReader, head_only: bool = False) -> RawResponse:
    """Read one response; framing follows Content-Length / chunked / close like a client."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if head_only or status in (204, 304) or 100 <= status < 200:
        return RawResponse(status, headers, b"", head)
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), DEADLINE_S)
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            size = int((await asyncio.wait_for(reader.readline(), DEADLINE_S)).strip(), 16)
            data = await asyncio.wait_for(reader.readexactly(size + 2), DEADLINE_S)
            if size == 0:
                break
            parts.append(data[:-2])
        body = b"".join(parts)
    else:
        body = await asyncio.wait_for(reader.read(), DEADLINE_S)
    return RawResponse(status, headers, body, head)


async def expect_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The server closed the connection (EOF or reset) with nothing more to read."""
    try:
        rest = await asyncio.wait_for(reader.read(), DEADLINE_S)
    except ConnectionResetError:
        rest = b""
    finally:
        writer.close()
    assert rest == b""


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for a condition with a deadline (never a fixed sleep)."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), DEADLINE_S)


async def echo_handler(request: Request) -> Response:
    data = await request.body.read_all(1 << 30)
    return Response(200, [("X-Method", request.method), ("X-Path", request.path),
                          ("X-Query", request.query)], data)
