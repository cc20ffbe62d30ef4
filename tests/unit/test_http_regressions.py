"""Regressions seen with real clients: 100-continue on kept-alive connections, graceful shutdown."""
from __future__ import annotations

import asyncio
import hashlib
import http.client
from collections.abc import AsyncIterator

import pytest
from test_http_kit import (
    DEADLINE_S,
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

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


async def put_handler(request: Request) -> Response:
    """PutObject-like: reads the body (so a non-empty one gets 100 Continue), answers 200."""
    data = await request.body.read_all(1 << 20)
    return Response(200, [("X-Got", str(len(data)))], b"")


@both_loops
def test_empty_put_with_expect_gets_100_continue_before_the_final_response(loop_kind: str) -> None:
    # botocore sends `Expect: 100-continue` even with Content-Length: 0 (empty file). A final
    # response without the 100 first, on a connection kept open, poisons botocore's pooled
    # connection: the next PutObject sent on it never gets its response read.
    async def main() -> None:
        async with serve(put_handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"PUT /b/empty.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            interim = await read_response(reader)
            assert interim.status == 100 and interim.head == CONTINUE
            final = await read_response(reader)
            assert final.status == 200 and final.headers["x-got"] == "0"
            assert "connection" not in final.headers
            # The next upload on the same connection: 100, body, 200, nothing stray.
            writer.write(b"PUT /b/top.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            assert (await read_response(reader)).status == 100
            writer.write(b"top level\n")
            final = await read_response(reader)
            assert final.status == 200 and final.headers["x-got"] == "10"
            writer.write(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await read_response(reader)).headers["x-got"] == "0"
            writer.close()
    run(loop_kind, main())


@both_loops
def test_awscli_botocore_connection_survives_an_empty_put(loop_kind: str) -> None:
    # The real client: aws-cli v1's bundled botocore connection (its 100-continue handling
    # keeps an early final status line on the connection when the next request has Expect).
    awsrequest = pytest.importorskip("awscli.botocore.awsrequest")

    def client(port: int) -> list[tuple[int, bytes]]:
        conn = awsrequest.AWSHTTPConnection("127.0.0.1", port, timeout=5)
        results = []
        try:
            for key, body in (("empty.bin", b""), ("top.txt", b"top level\n"),
                              ("two.txt", b"two\n" * 100)):
                conn.request("PUT", f"/bkt/sync/{key}", body=body,
                             headers={"Expect": b"100-continue",
                                      "Content-Length": str(len(body))})
                resp = conn.getresponse()
                results.append((resp.status, resp.read()))
        finally:
            conn.close()
        return results

    async def main() -> None:
        async with serve(put_handler) as (_, port):
            results = await asyncio.wait_for(asyncio.to_thread(client, port), DEADLINE_S)
            assert results == [(200, b""), (200, b""), (200, b"")]
    run(loop_kind, main())


@both_loops
def test_unread_complete_body_with_expect_keeps_connection_and_sends_no_late_100(
        loop_kind: str) -> None:
    # The client gave up waiting for 100 Continue and sent the whole small body; the handler
    # answers without reading it. The body is dropped, the connection stays usable, and no
    # 100 Continue follows the final response (it would precede the next response instead).
    async def handler(request: Request) -> Response:
        if request.method == "PUT":
            await until(lambda: request.body.bytes_received == 5)
            return Response(412, [("X-Path", request.path)], b"precondition")
        return Response(200, [("X-Path", request.path)], b"ok")

    async def main() -> None:
        async with serve(handler) as (_, port):
            reader, writer = await connect(port)
            writer.write(b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                         b"Expect: 100-continue\r\n\r\nhello")
            interim = await read_response(reader)
            assert interim.status == 100  # the expectation is answered before the final one
            final = await read_response(reader)
            assert final.status == 412 and final.body == b"precondition"
            assert "connection" not in final.headers
            writer.write(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            nxt = await read_response(reader)
            assert nxt.status == 200 and nxt.headers["x-path"] == "/b"

            writer.write(b"PUT /c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            final = await read_response(reader)
            assert final.status == 412 and "connection" not in final.headers
            writer.write(b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await read_response(reader)).headers["x-path"] == "/d"
            writer.close()
    run(loop_kind, main())


@both_loops
def test_head_and_304_are_followed_by_more_requests_on_the_connection(loop_kind: str) -> None:
    async def handler(request: Request) -> Response:
        if request.path == "/304":
            return Response(304, [("ETag", '"e"')], b"must not be sent")
        if request.method == "HEAD":
            if request.path == "/iter":
                async def never() -> AsyncIterator[bytes]:
                    yield b"must not be sent"
                return Response(200, [], never(), content_length=16)
            return Response(200, [("ETag", '"e"')], None, content_length=1234)
        return await echo_handler(request)

    async def main() -> None:
        async with serve(handler) as (_, port):
            reader, writer = await connect(port)
            for first in (b"HEAD /k HTTP/1.1\r\n\r\n", b"HEAD /iter HTTP/1.1\r\n\r\n",
                          b"GET /304 HTTP/1.1\r\nIf-None-Match: \"e\"\r\n\r\n"):
                # One at a time, then pipelined with the next request in the same write.
                for pipelined in (False, True):
                    nxt = b"PUT /next HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                    writer.write(first + nxt if pipelined else first)
                    resp = await read_response(reader, head_only=first.startswith(b"HEAD"))
                    if first.startswith(b"HEAD"):
                        assert resp.status == 200
                        assert resp.headers["content-length"] in ("1234", "16")
                    else:
                        assert resp.status == 304 and "content-length" not in resp.headers
                    if not pipelined:
                        writer.write(nxt)
                    resp = await read_response(reader)
                    assert resp.status == 200 and resp.body == b"abc"
                    assert resp.headers["x-path"] == "/next"
            writer.close()
    run(loop_kind, main())


BIG_BYTES = 48 << 20
PIECE_BYTES = 1 << 20


def _piece(i: int) -> bytes:
    return bytes([i % 251]) * PIECE_BYTES


async def big_handler(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        for i in range(BIG_BYTES // PIECE_BYTES):
            yield _piece(i)
    return Response(200, [], body(), content_length=BIG_BYTES)


def _expected_digest() -> str:
    h = hashlib.sha256()
    for i in range(BIG_BYTES // PIECE_BYTES):
        h.update(_piece(i))
    return h.hexdigest()


async def _read_rest(reader: asyncio.StreamReader, already: bytes) -> str:
    h = hashlib.sha256(already)
    total = len(already)
    while total < BIG_BYTES:
        data = await asyncio.wait_for(reader.read(1 << 20), DEADLINE_S)
        if not data:
            break
        h.update(data)
        total += len(data)
    assert total == BIG_BYTES, f"IncompleteRead({total} bytes read, {BIG_BYTES - total} more expected)"
    return h.hexdigest()


@both_loops
def test_shutdown_flushes_a_response_still_in_the_transport_buffer(loop_kind: str) -> None:
    # The handler and its body iterator are done, but most of the 48 MiB still sits in the
    # transport's send buffer (a high-water mark above the size: no write pauses). Shutdown
    # must close the connection gracefully, not abort it and drop those bytes.
    async def main() -> None:
        limits = HttpLimits(write_high_water_bytes=64 << 20)
        async with serve(big_handler, limits) as (server, port):
            reader, writer = await connect(port)
            writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
            assert head.startswith(b"HTTP/1.1 200 ")
            first = await asyncio.wait_for(reader.readexactly(256 << 10), DEADLINE_S)
            await until(lambda: server.active_requests == 0)  # handler and iterator finished
            stopping = asyncio.ensure_future(server.shutdown(drain_timeout_s=DEADLINE_S))
            assert await _read_rest(reader, first) == _expected_digest()
            await expect_closed(reader, writer)
            await asyncio.wait_for(stopping, DEADLINE_S)
    run(loop_kind, main())


@both_loops
def test_shutdown_lets_a_flow_controlled_download_finish(loop_kind: str) -> None:
    # Default limits: SIGTERM arrives while the body iterator is still paused by write flow
    # control (the client reads slowly); the whole object must still arrive, then EOF.
    async def main() -> None:
        async with serve(big_handler) as (server, port):
            reader, writer = await connect(port)
            writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
            assert b"content-length: %d" % BIG_BYTES in head.lower()
            first = await asyncio.wait_for(reader.readexactly(256 << 10), DEADLINE_S)
            assert server.active_requests == 1  # 48 MiB cannot all be buffered yet
            stopping = asyncio.ensure_future(server.shutdown(drain_timeout_s=DEADLINE_S))
            await asyncio.sleep(0)
            assert not stopping.done()
            assert await _read_rest(reader, first) == _expected_digest()
            await expect_closed(reader, writer)
            await asyncio.wait_for(stopping, DEADLINE_S)
    run(loop_kind, main())


@both_loops
def test_shutdown_closes_idle_keep_alive_connection_gracefully(loop_kind: str) -> None:
    # An idle connection whose last response the client has not read yet: closed with
    # close(), so the response still arrives in full, followed by EOF (not a reset).
    async def handler(request: Request) -> Response:
        return Response(200, [], b"r" * (8 << 20))

    answered: list[int] = []

    def on_response(request: Request, status: int, bytes_in: int, bytes_out: int) -> None:
        answered.append(status)  # called once the response is handed to the transport

    async def main() -> None:
        limits = HttpLimits(write_high_water_bytes=64 << 20)
        async with serve(handler, limits, on_response=on_response) as (server, port):
            reader, writer = await connect(port)
            writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            await until(lambda: answered == [200])
            stopping = asyncio.ensure_future(server.shutdown(drain_timeout_s=DEADLINE_S))
            resp = await read_response(reader)
            assert resp.status == 200 and len(resp.body) == 8 << 20
            await expect_closed(reader, writer)
            await asyncio.wait_for(stopping, DEADLINE_S)
    run(loop_kind, main())


def test_http_client_sees_no_stray_interim_responses() -> None:
    # Stock http.client against the real server in a thread: HEAD, 304, empty PUT with
    # Expect, then a normal GET, all on one connection.
    async def handler(request: Request) -> Response:
        if request.path == "/304":
            return Response(304, [], None)
        if request.method == "HEAD":
            return Response(200, [], None, content_length=99)
        return await put_handler(request)

    def client(port: int) -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        statuses = []
        try:
            for method, path, headers in (("HEAD", "/k", {}), ("GET", "/304", {}),
                                          ("PUT", "/e", {"Expect": "100-continue",
                                                         "Content-Length": "0"}),
                                          ("GET", "/g", {})):
                conn.request(method, path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                statuses.append(resp.status)
        finally:
            conn.close()
        return statuses

    async def main() -> None:
        async with serve(handler) as (_, port):
            statuses = await asyncio.wait_for(asyncio.to_thread(client, port), DEADLINE_S)
            assert statuses == [200, 304, 200, 200]
    run("uvloop", main())
