"""HTTP layer behaviour over real sockets: keep-alive, pipelining, bodies, 100-continue, HEAD."""
from __future__ import annotations

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

from rs3gw.http import ClientDisconnected, Request, Response


@both_loops
def test_keep_alive_serves_100_requests_on_one_connection(loop_kind: str) -> None:
    async def main() -> None:
        async with serve(echo_handler) as (server, port):
            reader, writer = await connect(port)
            for i in range(100):
                writer.write(f"GET /b/k{i}?n={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                resp = await read_response(reader)
                assert resp.status == 200
                assert resp.headers["x-path"] == f"/b/k{i}"
                assert resp.headers["x-query"] == f"n={i}"
                assert resp.headers["server"] == "rs3gw"
                assert "date" in resp.headers
                assert "connection" not in resp.headers
            assert server.connection_count == 1
            writer.close()
    run(loop_kind, main())


@both_loops
def test_pipelined_requests_in_one_write_are_answered_in_order(loop_kind: str) -> None:
    async def main() -> None:
        async with serve(echo_handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(
                b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
                b"PUT /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                b"GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            first, second, third = [await read_response(reader) for _ in range(3)]
            assert first.headers["x-path"] == "/one" and first.body == b""
            assert second.headers["x-path"] == "/two" and second.body == b"hello"
            assert second.headers["x-method"] == "PUT"
            assert third.headers["x-path"] == "/three"
            assert third.headers["connection"] == "close"
            await expect_closed(reader, writer)
    run(loop_kind, main())


@both_loops
def test_http10_closes_unless_keep_alive_asked(loop_kind: str) -> None:
    async def main() -> None:
        async with serve(echo_handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"GET /a HTTP/1.0\r\n\r\n")
            resp = await read_response(reader)
            assert resp.status == 200 and resp.headers["connection"] == "close"
            await expect_closed(reader, writer)

            reader, writer = await connect(port)
            writer.write(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            resp = await read_response(reader)
            assert resp.headers["connection"] == "keep-alive"
            writer.write(b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            assert (await read_response(reader)).headers["x-path"] == "/b"
            writer.close()
    run(loop_kind, main())


@both_loops
def test_headers_parsed_lower_case_and_repeated_joined(loop_kind: str) -> None:
    seen: list[Request] = []

    async def handler(request: Request) -> Response:
        seen.append(request)
        return Response(200)

    async def main() -> None:
        async with serve(handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"GET /b/k%20x?uploads= HTTP/1.1\r\nHost: h\r\nX-Amz-Meta-A: 1\r\n"
                         b"x-amz-meta-a: 2\r\n\r\n")
            assert (await read_response(reader)).status == 200
            writer.close()
        req = seen[0]
        assert req.method == "GET" and req.http_version == "1.1" and req.scheme == "http"
        assert req.target == "/b/k%20x?uploads=" and req.path == "/b/k%20x" and req.query == "uploads="
        assert req.headers["host"] == "h" and req.headers["x-amz-meta-a"] == "1,2"
        assert req.client is not None and req.client[0] == "127.0.0.1"
    run(loop_kind, main())


@both_loops
def test_head_sends_length_but_no_body(loop_kind: str) -> None:
    async def handler(request: Request) -> Response:
        if request.method == "HEAD":
            return Response(200, [("ETag", '"abc"')], None, content_length=12345)
        return Response(200, [], b"x" * 10)

    async def main() -> None:
        async with serve(handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"HEAD /k HTTP/1.1\r\nHost: x\r\n\r\nGET /k HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await read_response(reader, head_only=True)
            assert head.headers["content-length"] == "12345" and head.headers["etag"] == '"abc"'
            # The next bytes must be the GET's response, proving HEAD sent no body.
            get = await read_response(reader)
            assert get.status == 200 and get.body == b"x" * 10
            writer.close()
    run(loop_kind, main())


@both_loops
def test_204_and_304_have_no_body_nor_length(loop_kind: str) -> None:
    async def handler(request: Request) -> Response:
        return Response(204 if request.path == "/d" else 304, [], b"ignored")

    async def main() -> None:
        async with serve(handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"DELETE /d HTTP/1.1\r\n\r\nGET /n HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\n\r\n")
            for status in (204, 304, 204):
                resp = await read_response(reader)
                assert resp.status == status and "content-length" not in resp.headers
            writer.close()
    run(loop_kind, main())


@both_loops
def test_chunked_request_body_is_decoded(loop_kind: str) -> None:
    lengths: list[int | None] = []

    async def handler(request: Request) -> Response:
        lengths.append(request.body.content_length)
        return await echo_handler(request)

    async def main() -> None:
        async with serve(handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n1;ext=1\r\n \r\n")
            await writer.drain()
            writer.write(b"5\r\nworld\r\n0\r\n\r\n")
            resp = await read_response(reader)
            assert resp.status == 200 and resp.body == b"hello world"
            writer.close()
        assert lengths == [None]
    run(loop_kind, main())


@both_loops
def test_iterator_body_without_length_is_sent_chunked(loop_kind: str) -> None:
    async def parts() -> AsyncIterator[bytes | memoryview]:
        yield b"abc"
        yield memoryview(b"defg")
        yield b""
        yield b"h"

    async def handler(request: Request) -> Response:
        return Response(200, [], parts())

    async def main() -> None:
        async with serve(handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"GET /s HTTP/1.1\r\n\r\n")
            resp = await read_response(reader)
            assert resp.headers["transfer-encoding"] == "chunked" and resp.body == b"abcdefgh"
            writer.write(b"GET /s HTTP/1.0\r\n\r\n")  # 1.0: no chunking, close delimits
            resp = await read_response(reader)
            assert "transfer-encoding" not in resp.headers and resp.body == b"abcdefgh"
            writer.close()
    run(loop_kind, main())


@both_loops
def test_expect_continue_rejected_without_reading_body(loop_kind: str) -> None:
    async def handler(request: Request) -> Response:
        return Response(403, [], b"denied")

    async def main() -> None:
        async with serve(handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            resp = await read_response(reader)
            assert resp.status == 403 and resp.body == b"denied"
            assert b"100 Continue" not in resp.head
            assert resp.headers["connection"] == "close"
            await expect_closed(reader, writer)
    run(loop_kind, main())


@both_loops
def test_expect_continue_sent_when_handler_reads(loop_kind: str) -> None:
    async def main() -> None:
        async with serve(echo_handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            interim = await read_response(reader)
            assert interim.status == 100
            writer.write(b"data")
            final = await read_response(reader)
            assert final.status == 200 and final.body == b"data"
            writer.write(b"GET /next HTTP/1.1\r\n\r\n")  # connection stays usable
            assert (await read_response(reader)).headers["x-path"] == "/next"
            writer.close()
    run(loop_kind, main())


@both_loops
def test_small_unread_body_is_drained_and_connection_kept(loop_kind: str) -> None:
    async def handler(request: Request) -> Response:
        return Response(200, [("X-Path", request.path)], b"ok")

    async def main() -> None:
        async with serve(handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"PUT /a HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + b"z" * 100000)
            resp = await read_response(reader)
            assert resp.status == 200 and "connection" not in resp.headers
            writer.write(b"GET /b HTTP/1.1\r\n\r\n")
            assert (await read_response(reader)).headers["x-path"] == "/b"
            writer.close()
    run(loop_kind, main())


@both_loops
def test_large_unread_body_closes_connection(loop_kind: str) -> None:
    async def handler(request: Request) -> Response:
        return Response(400, [], b"no")

    async def main() -> None:
        async with serve(handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"PUT /a HTTP/1.1\r\nContent-Length: 8388608\r\n\r\n" + b"z" * 65536)
            resp = await read_response(reader)
            assert resp.status == 400 and resp.headers["connection"] == "close"
            await expect_closed(reader, writer)
    run(loop_kind, main())


@both_loops
def test_upgrade_request_is_served_as_http11(loop_kind: str) -> None:
    async def main() -> None:
        async with serve(echo_handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                         b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
                         b"GET /after HTTP/1.1\r\n\r\n")
            assert (await read_response(reader)).headers["x-path"] == "/u"
            assert (await read_response(reader)).headers["x-path"] == "/after"
            writer.close()
    run(loop_kind, main())


@both_loops
def test_on_response_hook_sees_status_and_bytes(loop_kind: str) -> None:
    calls: list[tuple[str, int, int, int]] = []

    def hook(request: Request, status: int, bytes_in: int, bytes_out: int) -> None:
        calls.append((request.path, status, bytes_in, bytes_out))
        raise RuntimeError("a broken hook must not break serving")

    async def main() -> None:
        async with serve(echo_handler, on_response=hook) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"PUT /h HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
            first = await read_response(reader)
            writer.write(b"GET /h2 HTTP/1.1\r\n\r\n")
            assert (await read_response(reader)).status == 200
            writer.close()
        path, status, bytes_in, bytes_out = calls[0]
        assert (path, status) == ("/h", 200)
        assert bytes_in >= 3 + len("PUT/h")
        assert bytes_out == len(first.head) + 3
        assert calls[1][:2] == ("/h2", 200)
    run(loop_kind, main())


@both_loops
def test_body_read_all_limit_and_client_disconnect(loop_kind: str) -> None:
    outcome: list[str] = []

    async def handler(request: Request) -> Response:
        try:
            await request.body.read_all(10)
        except ClientDisconnected:
            outcome.append("disconnected")
            raise
        return Response(200)

    async def main() -> None:
        async with serve(handler) as (server, port):
            _, writer = await connect(port)
            writer.write(b"PUT /x HTTP/1.1\r\nContent-Length: 8\r\n\r\nabc")
            await writer.drain()
            await until(lambda: server.active_requests == 1)
            writer.close()
            await until(lambda: outcome == ["disconnected"] and server.active_requests == 0)
            await until(lambda: server.connection_count == 0)
    run(loop_kind, main())


@both_loops
def test_half_closed_client_still_gets_its_responses(loop_kind: str) -> None:
    async def main() -> None:
        async with serve(echo_handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"GET /1 HTTP/1.1\r\n\r\nPUT /2 HTTP/1.1\r\nContent-Length: 2\r\n\r\nok")
            writer.write_eof()
            assert (await read_response(reader)).headers["x-path"] == "/1"
            second = await read_response(reader)
            assert second.body == b"ok"
            await expect_closed(reader, writer)
    run(loop_kind, main())
