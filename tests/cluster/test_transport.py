"""Node-to-node transport: framing under any slicing, request/response, streams, limits, TLS, mTLS."""
from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cluster_helpers import ClusterPKI, run, wait_until
from hypothesis import given
from hypothesis import strategies as st

from rs3gw.cluster.transport import (
    ConnectError,
    ConnectionLost,
    Message,
    ProtocolError,
    RemoteError,
    Reply,
    RequestTimeout,
    Transport,
    TransportError,
    TransportLimits,
    client_ssl_context,
    encode_frame,
    read_frame,
    server_ssl_context,
)

# --- framing ----------------------------------------------------------------------------------------

bodies = st.dictionaries(st.text(max_size=8),
                         st.one_of(st.integers(-2**63, 2**64 - 1), st.text(max_size=20), st.binary(max_size=40),
                                   st.none(), st.lists(st.integers(-2**63, 2**63), max_size=4)), max_size=4)
messages = st.lists(st.tuples(st.text(min_size=1, max_size=10), bodies, st.binary(max_size=300)),
                    min_size=1, max_size=6)


def _encode_all(msgs: list[tuple[str, dict[str, Any], bytes]]) -> bytes:
    out = b""
    for i, (t, body, raw) in enumerate(msgs):
        header: dict[str, Any] = {"t": t, "i": i + 1, "b": body}
        if raw:
            header["n"] = len(raw)
        out += encode_frame(header) + raw
    return out


async def _decode_all(chunks: list[bytes], read_sizes: list[int]) -> list[tuple[str, dict[str, Any], bytes]]:
    from rs3gw.cluster.transport import StreamIn
    reader = asyncio.StreamReader()
    for c in chunks:
        reader.feed_data(c)
    reader.feed_eof()
    out = []
    k = 0
    while (h := await read_frame(reader, 1 << 20)) is not None:
        raw = b""
        if h.get("n"):
            s = StreamIn(reader, h["n"], chunk_bytes=7)
            while not s.done:
                raw += await s.read(read_sizes[k % len(read_sizes)] if read_sizes else -1)
                k += 1
        out.append((h["t"], h["b"], raw))
    return out


@given(msgs=messages, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
       read_sizes=st.lists(st.integers(min_value=1, max_value=50), max_size=5))
def test_framing_survives_any_slicing(msgs: list[tuple[str, dict[str, Any], bytes]], cuts: list[int],
                                      read_sizes: list[int]) -> None:
    wire = _encode_all(msgs)
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    chunks = [wire[a:b] for a, b in itertools.pairwise(points)]
    assert run(_decode_all(chunks, read_sizes)) == msgs


def test_truncated_frame_and_garbage_are_errors() -> None:
    wire = encode_frame({"t": "x", "b": {"k": 1}})

    async def first(data: bytes) -> Any:
        r = asyncio.StreamReader()
        r.feed_data(data)
        r.feed_eof()
        return await read_frame(r, 1 << 20)

    assert run(first(b"")) is None                         # EOF between frames: clean end
    with pytest.raises(ConnectionLost):
        run(first(wire[:2]))
    with pytest.raises(ConnectionLost):
        run(first(wire[:-1]))
    with pytest.raises(ProtocolError, match="exceeds"):
        run(first(struct.pack(">I", 1 << 30)))           # refused before any buffering
    with pytest.raises(ProtocolError):
        run(first(struct.pack(">I", 3) + b"\xc1\xc1\xc1"))  # not msgpack
    with pytest.raises(ProtocolError):
        run(first(encode_frame([1, 2, 3])))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        run(first(encode_frame({"t": "x", "n": -5})))
    with pytest.raises(ProtocolError, match="exceeds"):
        encode_frame({"t": "x", "b": {"big": b"x" * 100}}, message_bytes_max=50)
    with pytest.raises(ProtocolError, match="not encodable"):
        encode_frame({"t": "x", "b": {"big": 2**64}})


# --- live transports --------------------------------------------------------------------------------

async def _pair(limits: TransportLimits | None = None, server_ssl: Any = None,
                client_ssl: Any = None) -> tuple[Transport, Transport]:
    server = Transport(("127.0.0.1", 0), limits=limits, server_ssl=server_ssl, client_ssl=client_ssl)
    client = Transport(("127.0.0.1", 0), limits=limits, server_ssl=server_ssl, client_ssl=client_ssl)
    await server.start()
    await client.start()
    return server, client


async def _echo(msg: Message) -> Reply:
    data = await msg.stream.readall() if msg.stream else b""
    return Reply({"type": msg.type, "body": msg.body, "got": len(data)}, stream=data[::-1])


def test_request_reply_reuse_and_one_way() -> None:
    async def main() -> None:
        server, client = await _pair()
        assert server.address is not None
        seen: list[Message] = []
        notified = asyncio.Event()

        async def note(msg: Message) -> None:
            seen.append(msg)
            notified.set()

        server.register("echo", _echo)
        server.register("note", note)
        try:
            replies = await asyncio.gather(*(client.request(server.address, "echo", {"n": i}) for i in range(50)))
            assert [r.body["body"]["n"] for r in replies] == list(range(50))
            assert all(r.stream is None for r in replies)      # empty stream: none sent
            await client.send(server.address, "note", {"hello": "world"})
            await notified.wait()
            assert seen[0].body == {"hello": "world"} and seen[0].request_id is None
            # One pooled connection served all of it.
            assert len(server._all) == 1 and len(client._outbound) == 1
            with pytest.raises(RemoteError) as ei:
                await client.request(server.address, "nope")
            assert ei.value.code == "UnknownMessageType"
        finally:
            await client.close()
            await server.close()
    run(main())


def test_handler_errors_travel_with_their_code() -> None:
    async def main() -> None:
        server, client = await _pair()
        assert server.address is not None

        async def refuse(msg: Message) -> dict[str, Any]:
            raise RemoteError("SlowDown", "queue full")

        async def crash(msg: Message) -> dict[str, Any]:
            raise KeyError("bug")

        server.register("refuse", refuse)
        server.register("crash", crash)
        try:
            with pytest.raises(RemoteError, match="SlowDown: queue full"):
                await client.request(server.address, "refuse")
            with pytest.raises(RemoteError) as ei:
                await client.request(server.address, "crash")
            assert ei.value.code == "InternalError"
            # The connection is still good afterwards.
            server.register("echo", _echo)
            r = await client.request(server.address, "echo", {"still": "here"})
            assert r.body["body"] == {"still": "here"} and len(server._all) == 1
        finally:
            await client.close()
            await server.close()
    run(main())


def test_streams_both_ways_with_backpressure() -> None:
    size = 8 << 20        # far more than any socket or reader buffer: forces backpressure both ways
    payload = bytes(range(256)) * (size // 256)

    async def chunks() -> AsyncIterator[bytes]:
        for off in range(0, size, 100_003):
            yield payload[off:off + 100_003]

    async def main() -> None:
        limits = TransportLimits(stream_chunk_bytes=64 << 10)
        server, client = await _pair(limits)
        assert server.address is not None

        async def sink(msg: Message) -> Reply:
            assert msg.stream is not None
            total, pieces = 0, 0
            async for piece in msg.stream:
                assert len(piece) <= 64 << 10
                total += len(piece)
                pieces += 1
            # Reply with a stream too, from an async iterable of declared length.
            return Reply({"total": total, "pieces": pieces}, stream=chunks(), stream_length=size)

        server.register("sink", sink)
        server.register("echo", _echo)
        try:
            r = await client.request(server.address, "sink", {}, stream=chunks(), stream_length=size)
            assert r.body["total"] == size and r.body["pieces"] > 1
            assert r.stream is not None and r.stream.length == size
            got = bytearray()
            async for piece in r.stream:
                got += piece
            assert got == payload
            # Bytes-like stream, and the connection carries on after a stream.
            r = await client.request(server.address, "echo", {"k": 1}, stream=memoryview(payload[:1000]))
            assert r.body["got"] == 1000
            assert r.stream is not None and await r.stream.readall() == payload[:1000][::-1]
            # A handler that ignores its stream: the transport discards it, the connection lives on.
            server.register("ignore", lambda m: asyncio.sleep(0, {"ok": True}))
            r = await client.request(server.address, "ignore", stream=payload[:300_000])
            assert r.body == {"ok": True}
            r = await client.request(server.address, "echo", {"k": 2})
            assert r.body["body"] == {"k": 2}
            assert len(server._all) == 1
        finally:
            await client.close()
            await server.close()
    run(main())


def test_a_short_stream_source_breaks_only_its_connection() -> None:
    async def short() -> AsyncIterator[bytes]:
        yield b"x" * 10

    async def main() -> None:
        server, client = await _pair()
        assert server.address is not None
        server.register("echo", _echo)
        try:
            with pytest.raises(ValueError, match="declared"):
                await client.request(server.address, "echo", stream=short(), stream_length=100)
            with pytest.raises(ValueError, match="stream_length"):
                await client.request(server.address, "echo", stream=short())
            # A fresh connection replaces the broken one.
            r = await client.request(server.address, "echo", {"again": True})
            assert r.body["body"] == {"again": True}
        finally:
            await client.close()
            await server.close()
    run(main())


def test_timeouts_and_late_replies() -> None:
    async def main() -> None:
        server, client = await _pair()
        assert server.address is not None
        release = asyncio.Event()

        async def stall(msg: Message) -> dict[str, Any]:
            await release.wait()
            return {"late": True}

        server.register("stall", stall)
        server.register("echo", _echo)
        try:
            with pytest.raises(RequestTimeout):
                await client.request(server.address, "stall", timeout_s=0.2)
            assert isinstance(RequestTimeout("x"), TimeoutError)
            release.set()
            # The late reply is dropped; the same connection answers the next request.
            r = await client.request(server.address, "echo", {"after": 1})
            assert r.body["body"] == {"after": 1}
            assert len(client._outbound) == 1
        finally:
            await client.close()
            await server.close()
    run(main())


def test_pending_requests_are_bounded() -> None:
    async def main() -> None:
        limits = TransportLimits(pending_requests_max=2)
        server, client = await _pair(limits)
        assert server.address is not None
        release = asyncio.Event()
        running = 0
        peak = 0

        async def hold(msg: Message) -> dict[str, Any]:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1
            return {"i": msg.body["i"]}

        server.register("hold", hold)
        try:
            tasks = [asyncio.create_task(client.request(server.address, "hold", {"i": i})) for i in range(6)]
            await wait_until(lambda: running == 2, 10, "two requests in flight")
            release.set()
            results = await asyncio.gather(*tasks)
            assert sorted(r.body["i"] for r in results) == list(range(6))
            assert peak == 2            # the other callers waited for a slot: backpressure
        finally:
            await client.close()
            await server.close()
    run(main())


def test_close_fails_pending_requests_promptly() -> None:
    async def main() -> None:
        server, client = await _pair()
        assert server.address is not None
        entered = asyncio.Event()

        async def forever(msg: Message) -> dict[str, Any]:
            entered.set()
            await asyncio.Event().wait()
            return {}

        server.register("forever", forever)
        req = asyncio.create_task(client.request(server.address, "forever", timeout_s=60))
        await entered.wait()
        await server.close()
        with pytest.raises(ConnectionLost):
            async with asyncio.timeout(30):        # a deadline: far from the 60 s request timeout
                await req
        with pytest.raises(ConnectError):
            await client.request(server.address, "forever", timeout_s=5)
        await client.close()
        with pytest.raises(ConnectError):
            await client.request(server.address, "forever")
    run(main())


def test_oversized_frame_from_a_peer_closes_its_connection() -> None:
    async def main() -> None:
        server, client = await _pair(TransportLimits(message_bytes_max=1024))
        assert server.address is not None
        server.register("echo", _echo)
        try:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(struct.pack(">I", 1 << 20) + b"x" * 100)
            assert await reader.read() == b""          # the server hung up on us
            writer.close()
            r = await client.request(server.address, "echo", {"ok": 1})
            assert r.body["body"] == {"ok": 1}
        finally:
            await client.close()
            await server.close()
    run(main())


def test_connect_refused_is_a_connect_error() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def main() -> None:
        t = Transport()
        try:
            with pytest.raises(ConnectError):
                await t.request(("127.0.0.1", port), "x", timeout_s=5)
        finally:
            await t.close()
    run(main())


# --- TLS --------------------------------------------------------------------------------------------

def _tls_contexts(pki: ClusterPKI, client_cert: Path | None, client_key: Path | None,
                  mutual: bool = True) -> tuple[Any, Any]:
    server = server_ssl_context(pki.nodes[0].cert, pki.nodes[0].key, pki.ca, mutual=mutual)
    client = client_ssl_context(pki.ca, client_cert, client_key)
    return server, client


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
def test_tls_round_trip(pki: ClusterPKI, mutual: bool) -> None:
    server_ctx, client_ctx = _tls_contexts(pki, pki.nodes[1].cert, pki.nodes[1].key, mutual)

    async def main() -> None:
        server = Transport(server_ssl=server_ctx)
        client = Transport(client_ssl=client_ctx)
        await server.start()
        server.register("echo", _echo)
        assert server.address is not None
        try:
            r = await client.request(server.address, "echo", {"tls": True}, stream=b"abc" * 100_000)
            assert r.body["got"] == 300_000
            assert r.stream is not None and await r.stream.readall() == (b"abc" * 100_000)[::-1]
            conn = await client.connection(server.address)
            assert conn._writer.get_extra_info("ssl_object") is not None
        finally:
            await client.close()
            await server.close()
    run(main())


@pytest.mark.parametrize("who", ["unknown-ca", "no-cert"])
def test_mtls_rejects_a_client_without_a_cluster_cert(pki: ClusterPKI, who: str) -> None:
    cert, key = (pki.rogue.cert, pki.rogue.key) if who == "unknown-ca" else (None, None)
    server_ctx, client_ctx = _tls_contexts(pki, cert, key)
    called = []

    async def main() -> None:
        server = Transport(server_ssl=server_ctx)
        client = Transport(client_ssl=client_ctx)
        await server.start()
        assert server.address is not None

        async def note(msg: Message) -> dict[str, Any]:
            called.append(msg)
            return {}

        server.register("echo", note)
        try:
            # TLS 1.3: the client's handshake may finish before the server checks the client
            # certificate; the refusal then arrives as a broken connection. Either way: an error,
            # well before the request timeout, and the handler never runs.
            with pytest.raises(TransportError):
                await client.request(server.address, "echo", {}, timeout_s=20)
        finally:
            await client.close()
            await server.close()

    run(main())
    assert called == []


def test_client_refuses_a_server_from_another_ca(pki: ClusterPKI) -> None:
    server_ctx = server_ssl_context(pki.rogue.cert, pki.rogue.key, None, mutual=False)
    client_ctx = client_ssl_context(pki.ca, pki.nodes[1].cert, pki.nodes[1].key)

    async def main() -> None:
        server = Transport(server_ssl=server_ctx)
        client = Transport(client_ssl=client_ctx)
        await server.start()
        assert server.address is not None
        try:
            with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                await client.request(server.address, "echo", timeout_s=20)
        finally:
            await client.close()
            await server.close()
    run(main())


def test_msgpack_bodies_keep_bytes_and_strings_apart() -> None:
    async def main() -> None:
        server, client = await _pair()
        assert server.address is not None
        server.register("echo", _echo)
        try:
            body = {"s": "text", "b": b"\x00\xff", "n": [1, 2**63 - 1], "m": {"k": None}}
            r = await client.request(server.address, "echo", body)
            assert r.body["body"] == body
        finally:
            await client.close()
            await server.close()
    run(main())
    assert msgpack.unpackb(msgpack.packb({"b": b"x"}, use_bin_type=True)) == {"b": b"x"}


def test_inbound_connections_are_bounded() -> None:
    async def main() -> None:
        server = Transport(limits=TransportLimits(connections_max=1))
        await server.start()
        server.register("echo", _echo)
        a, b = Transport(), Transport()
        assert server.address is not None
        try:
            assert (await a.request(server.address, "echo", {"a": 1})).body["body"] == {"a": 1}
            with pytest.raises(ConnectionLost):
                await b.request(server.address, "echo", {"b": 1}, timeout_s=20)
            assert len(server._all) == 1
        finally:
            await asyncio.gather(a.close(), b.close())
            await server.close()
    run(main())
