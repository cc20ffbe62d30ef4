"""HTTP layer failures: limits, malformed input, timeouts, handler errors, aborts, shutdown."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from test_http_kit import (
    both_loops,
    connect,
    echo_handler,
    expect_closed,
    read_response,
    run,
    serve,
    until,
)

from rs3gw.http import HttpLimits, Request, Response


@both_loops
def test_header_section_too_large(loop_kind: str) -> None:
    async def main() -> None:
        limits = HttpLimits(max_header_bytes=4096)
        async with serve(echo_handler, limits) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 5000 + b"\r\n\r\n")
            resp = await read_response(reader)
            assert resp.status == 400 and resp.headers["x-code"] == "RequestHeaderSectionTooLarge"
            assert resp.headers["connection"] == "close"
            await expect_closed(reader, writer)

            # Many small headers, and one header value trickled in without ever ending.
            reader, writer = await connect(port)
            writer.write(b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 1000 + b"\r\n")
            assert (await read_response(reader)).headers["x-code"] == "RequestHeaderSectionTooLarge"
            await expect_closed(reader, writer)
            reader, writer = await connect(port)
            writer.write(b"GET / HTTP/1.1\r\nX-Endless: ")
            # httptools buffers an unfinished header line; the limit applies to it past one read.
            try:
                for _ in range(64):
                    writer.write(b"v" * 16384)
                    await writer.drain()
            except ConnectionError:
                pass
            assert (await read_response(reader)).headers["x-code"] == "RequestHeaderSectionTooLarge"
            await expect_closed(reader, writer)
    run(loop_kind, main())


@both_loops
def test_uri_too_long_and_malformed_request(loop_kind: str) -> None:
    async def main() -> None:
        limits = HttpLimits(max_uri_bytes=1024)
        async with serve(echo_handler, limits) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"GET /" + b"k" * 2000 + b" HTTP/1.1\r\n\r\n")
            resp = await read_response(reader)
            assert resp.status == 414 and resp.headers["x-code"] == "RequestURITooLong"
            await expect_closed(reader, writer)

            for garbage in (b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                            b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"):
                reader, writer = await connect(port)
                writer.write(garbage)
                resp = await read_response(reader)
                assert resp.status == 400 and resp.headers["x-code"] == "BadRequest", garbage
                await expect_closed(reader, writer)
    run(loop_kind, main())


@both_loops
def test_garbage_after_valid_request_answers_both(loop_kind: str) -> None:
    async def main() -> None:
        async with serve(echo_handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"GET /ok HTTP/1.1\r\n\r\n\x00\x01garbage\r\n\r\n")
            assert (await read_response(reader)).headers["x-path"] == "/ok"
            assert (await read_response(reader)).headers["x-code"] == "BadRequest"
            await expect_closed(reader, writer)
    run(loop_kind, main())


@both_loops
def test_handler_exception_becomes_500_and_server_keeps_serving(loop_kind: str) -> None:
    async def handler(request: Request) -> Response:
        if request.path == "/boom":
            raise ValueError("handler bug")
        if request.path == "/badheader":
            return Response(200, [("X-Evil", "a\r\nSet-Cookie: x=1")], b"")
        return Response(200, [], b"fine")

    async def main() -> None:
        async with serve(handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"GET /boom HTTP/1.1\r\n\r\n")
            resp = await read_response(reader)
            assert resp.status == 500 and resp.headers["x-code"] == "InternalError"
            writer.write(b"GET /badheader HTTP/1.1\r\n\r\n")
            resp = await read_response(reader)
            assert resp.status == 500 and "set-cookie" not in resp.headers
            writer.close()
            reader, writer = await connect(port)
            writer.write(b"GET /ok HTTP/1.1\r\n\r\n")
            resp = await read_response(reader)
            assert resp.status == 200 and resp.body == b"fine"
            writer.close()
    run(loop_kind, main())


@both_loops
def test_over_max_concurrent_answers_slowdown(loop_kind: str) -> None:
    release = asyncio.Event()

    async def handler(request: Request) -> Response:
        await release.wait()
        return Response(200, [], b"done")

    async def main() -> None:
        async with serve(handler, HttpLimits(max_concurrent=1)) as (server, port):
            r1, w1 = await connect(port)
            w1.write(b"GET /slow HTTP/1.1\r\n\r\n")
            await until(lambda: server.active_requests == 1)
            r2, w2 = await connect(port)
            w2.write(b"PUT /other HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
            resp = await read_response(r2)
            assert resp.status == 503 and resp.headers["x-code"] == "SlowDown"
            release.set()
            assert (await read_response(r1)).body == b"done"
            w2.write(b"GET /again HTTP/1.1\r\n\r\n")
            assert (await read_response(r2)).body == b"done"
            w1.close()
            w2.close()
    run(loop_kind, main())


@both_loops
def test_idle_keep_alive_connection_is_closed(loop_kind: str) -> None:
    async def main() -> None:
        async with serve(echo_handler, HttpLimits(idle_timeout_s=0.2)) as (server, port):
            reader, writer = await connect(port)
            writer.write(b"GET / HTTP/1.1\r\n\r\n")
            assert (await read_response(reader)).status == 200
            await expect_closed(reader, writer)
            await until(lambda: server.connection_count == 0)
    run(loop_kind, main())


@both_loops
def test_slow_headers_get_request_timeout(loop_kind: str) -> None:
    async def main() -> None:
        async with serve(echo_handler, HttpLimits(request_timeout_s=0.2)) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            resp = await read_response(reader)
            assert resp.status == 400 and resp.headers["x-code"] == "RequestTimeout"
            await expect_closed(reader, writer)
    run(loop_kind, main())


@both_loops
def test_stalled_body_gets_request_timeout(loop_kind: str) -> None:
    async def main() -> None:
        async with serve(echo_handler, HttpLimits(request_timeout_s=0.2)) as (server, port):
            reader, writer = await connect(port)
            writer.write(b"PUT /k HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
            resp = await read_response(reader)
            assert resp.status == 400 and resp.headers["x-code"] == "RequestTimeout"
            assert resp.headers["connection"] == "close"
            await expect_closed(reader, writer)
            await until(lambda: server.active_requests == 0)
    run(loop_kind, main())


@both_loops
def test_iterator_failure_after_head_truncates_response(loop_kind: str) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        raise OSError("disk read failed")

    async def handler(request: Request) -> Response:
        return Response(200, [], failing(), content_length=5000)

    async def main() -> None:
        async with serve(handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"GET /k HTTP/1.1\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"Content-Length: 5000" in head
            try:
                rest = await asyncio.wait_for(reader.read(), 20)
            except ConnectionResetError:
                rest = b""
            assert len(rest) < 5000  # truncated, never silently short with a clean end
            writer.close()
    run(loop_kind, main())


@both_loops
def test_short_iterator_aborts_connection(loop_kind: str) -> None:
    async def short() -> AsyncIterator[bytes]:
        yield b"x" * 10

    async def handler(request: Request) -> Response:
        return Response(200, [], short(), content_length=20)

    async def main() -> None:
        async with serve(handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"GET /k HTTP/1.1\r\n\r\nGET /k2 HTTP/1.1\r\n\r\n")
            await reader.readuntil(b"\r\n\r\n")
            try:
                rest = await asyncio.wait_for(reader.read(), 20)
            except ConnectionResetError:
                rest = b""
            assert len(rest) <= 10
            writer.close()
    run(loop_kind, main())


@both_loops
def test_client_disconnect_mid_download_cleans_up(loop_kind: str) -> None:
    state: dict[str, int | bool] = {"chunks": 0, "closed": False}

    async def endless() -> AsyncIterator[bytes]:
        chunk = b"d" * 65536
        try:
            while True:
                state["chunks"] = int(state["chunks"]) + 1
                yield chunk
        finally:
            state["closed"] = True

    async def handler(request: Request) -> Response:
        return Response(200, [], endless(), content_length=1 << 40)

    async def main() -> None:
        limits = HttpLimits(write_high_water_bytes=256 * 1024)
        async with serve(handler, limits) as (server, port):
            reader, writer = await connect(port)
            writer.write(b"GET /big HTTP/1.1\r\n\r\n")
            await reader.readexactly(1 << 20)
            writer.transport.abort()
            await until(lambda: bool(state["closed"]))
            await until(lambda: server.connection_count == 0 and server.active_requests == 0)
            await until(lambda: not [t for t in server._tasks if not t.done()])
            # Flow control held the producer back: far less than 1 TiB was generated.
            assert int(state["chunks"]) < 1000
    run(loop_kind, main())


@both_loops
def test_shutdown_lets_in_flight_request_finish(loop_kind: str) -> None:
    release = asyncio.Event()

    async def handler(request: Request) -> Response:
        if request.path == "/slow":
            await release.wait()
        return Response(200, [], b"finished")

    async def main() -> None:
        async with serve(handler) as (server, port):
            busy_r, busy_w = await connect(port)
            idle_r, idle_w = await connect(port)
            idle_w.write(b"GET /quick HTTP/1.1\r\n\r\n")
            assert (await read_response(idle_r)).status == 200
            busy_w.write(b"GET /slow HTTP/1.1\r\n\r\n")
            await until(lambda: server.active_requests == 1)
            stopping = asyncio.ensure_future(server.shutdown(drain_timeout_s=20))
            await expect_closed(idle_r, idle_w)  # idle keep-alive connection closed at once
            try:
                await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
                accepted = True
            except OSError:
                accepted = False
            assert not accepted
            assert not stopping.done()
            release.set()
            resp = await read_response(busy_r)
            assert resp.body == b"finished" and resp.headers["connection"] == "close"
            await stopping
            await expect_closed(busy_r, busy_w)
    run(loop_kind, main())


@both_loops
def test_shutdown_timeout_aborts_stuck_requests(loop_kind: str) -> None:
    cancelled: list[bool] = []

    async def handler(request: Request) -> Response:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return Response(200)

    async def main() -> None:
        async with serve(handler) as (server, port):
            reader, writer = await connect(port)
            writer.write(b"GET / HTTP/1.1\r\n\r\n")
            await until(lambda: server.active_requests == 1)
            await server.shutdown(drain_timeout_s=0.1)
            assert cancelled == [True] and server.active_requests == 0
            await expect_closed(reader, writer)
    run(loop_kind, main())
