"""Pure pieces of the HTTP layer: Body buffering, header encoding, targets, status lines."""
from __future__ import annotations

import asyncio

import pytest

from rs3gw.http import Body, BodyTooLarge, ClientDisconnected
from rs3gw.http.request import split_target
from rs3gw.http.wire import DateCache, encode_headers, status_has_body, status_line


class Source:
    def __init__(self) -> None:
        self.consumed = 0
        self.continues = 0

    def body_consumed(self, nbytes: int) -> None:
        self.consumed += nbytes

    def send_continue(self) -> None:
        self.continues += 1


def test_body_hands_out_large_pieces_as_is_and_joins_small_ones() -> None:
    async def main() -> None:
        source = Source()
        body = Body(source, None, expect_continue=True)
        big = b"b" * 100_000
        body.feed(big)
        for _ in range(10):
            body.feed(b"s" * 10)
        body.feed_eof()
        first = await body.read()
        assert first is big  # no copy of a large piece
        assert await body.read() == b"s" * 100
        assert await body.read() == b""
        assert body.at_eof and source.consumed == 100_100 and source.continues == 1
    asyncio.run(main())


def test_body_read_all_limits() -> None:
    async def main() -> None:
        with pytest.raises(BodyTooLarge):
            await Body(None, 100).read_all(10)  # refused from Content-Length, before reading
        body = Body(None, None)
        body.feed(b"x" * 8)
        body.feed(b"y" * 8)
        body.feed_eof()
        with pytest.raises(BodyTooLarge):
            await body.read_all(10)
        assert await Body.from_bytes(b"abc").read_all(3) == b"abc"
        assert await Body.from_bytes(b"").read_all(0) == b""
    asyncio.run(main())


def test_body_no_continue_when_empty_and_errors_surface() -> None:
    async def main() -> None:
        source = Source()
        empty = Body(source, 0, expect_continue=True)
        assert empty.at_eof and not empty.continue_pending
        assert await empty.read() == b""
        assert source.continues == 0

        body = Body(source, 10)
        body.feed(b"abc")
        body.set_error(ClientDisconnected("gone"))
        assert await body.read() == b"abc"  # data that arrived is still delivered
        with pytest.raises(ClientDisconnected):
            await body.read()

        stalled = Body(source, 10, timeout_s=0.01)
        with pytest.raises(ClientDisconnected):
            await stalled.read()
        assert stalled.timed_out
    asyncio.run(main())


def test_encode_headers_drops_framing_and_rejects_injection() -> None:
    data, length = encode_headers([("ETag", '"x"'), ("Content-Length", "12"), ("Connection", "x")])
    assert data == b'ETag: "x"\r\n' and length == 12
    with pytest.raises(ValueError):
        encode_headers([("X-A", "v\r\nX-B: w")])
    with pytest.raises(ValueError):
        encode_headers([("X-A", "v\nX-B: w")])
    assert encode_headers([("X-Meta", "caf\u00e9")])[0] == "X-Meta: caf\u00e9\r\n".encode("latin-1")
    assert encode_headers([("X-Meta", "\u2603")])[0] == "X-Meta: \u2603\r\n".encode()


def test_split_target_and_status() -> None:
    assert split_target("/b/k%20x?uploads=") == ("/b/k%20x", "uploads=")
    assert split_target("/b") == ("/b", "")
    assert split_target("http://host:9000/b/k?x=1") == ("/b/k", "x=1")
    assert split_target("http://host?x=1") == ("/", "x=1")
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(599).startswith(b"HTTP/1.1 599 ")
    assert not status_has_body(204) and not status_has_body(304) and status_has_body(200)
    line = DateCache().get()
    assert line.startswith(b"Date: ") and line.endswith(b"GMT\r\nServer: rs3gw\r\n")
