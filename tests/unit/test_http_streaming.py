"""64 MiB through the HTTP layer both ways with bounded buffering, over HTTP and TLS."""
from __future__ import annotations

import asyncio
import datetime
import hashlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_http_kit import both_loops, connect, read_response, run, serve, until

from rs3gw.http import HttpLimits, Request, Response
from rs3gw.http.protocol import HttpProtocol

SIZE = 64 << 20
PIECE = 1 << 20
HIGH_WATER = 1 << 20
# One socket read is at most 256 KiB on both loops (and for TLS records); allow a whole MiB.
ONE_READ = 1 << 20


def make_tls(tmp_path: Any) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / "cert.pem"
    key_path = tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)
    client_ctx = ssl.create_default_context(cafile=str(cert_path))
    return server_ctx, client_ctx


@pytest.fixture(params=["http", "https"])
def tls(request: pytest.FixtureRequest, tmp_path: Any) -> tuple[ssl.SSLContext | None, dict[str, Any]]:
    if request.param == "http":
        return None, {}
    server_ctx, client_ctx = make_tls(tmp_path)
    return server_ctx, {"ssl": client_ctx, "server_hostname": "localhost"}


@both_loops
def test_64mib_upload_is_flow_controlled(loop_kind: str, tls: tuple[Any, dict[str, Any]]) -> None:
    server_ctx, client_kw = tls
    seen: dict[str, Any] = {}

    async def handler(request: Request) -> Response:
        proto = request.body._source
        assert isinstance(proto, HttpProtocol)
        # Hold off reading until the connection has paused the socket: proves backpressure.
        await until(lambda: proto._reading_paused)
        digest = hashlib.md5()
        total = 0
        while data := await request.body.read():
            digest.update(data)
            total += len(data)
            await asyncio.sleep(0)
        seen.update(proto=proto, scheme=request.scheme)
        return Response(200, [("X-Size", str(total))], digest.hexdigest().encode())

    async def main() -> None:
        limits = HttpLimits(read_high_water_bytes=HIGH_WATER)
        async with serve(handler, limits, ssl_context=server_ctx) as (_, port):
            reader, writer = await connect(port, **client_kw)
            writer.write(b"PUT /b/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % SIZE)
            piece = bytes(range(256)) * (PIECE // 256)
            expected = hashlib.md5()
            for _ in range(SIZE // PIECE):
                writer.write(piece)
                expected.update(piece)
                await writer.drain()
            resp = await read_response(reader)
            assert resp.status == 200 and resp.headers["x-size"] == str(SIZE)
            assert resp.body == expected.hexdigest().encode()
            writer.close()
        proto = seen["proto"]
        assert seen["scheme"] == ("https" if server_ctx else "http")
        assert HIGH_WATER <= proto.max_buffered_bytes <= HIGH_WATER + ONE_READ
    run(loop_kind, main())


@both_loops
def test_64mib_download_is_flow_controlled(loop_kind: str, tls: tuple[Any, dict[str, Any]]) -> None:
    server_ctx, client_kw = tls
    high_water = 1 << 20
    peaks: list[int] = []
    protos: list[HttpProtocol] = []
    piece = bytes(range(256)) * (PIECE // 256)

    async def produce(proto: HttpProtocol) -> AsyncIterator[bytes]:
        transport = proto._transport
        assert transport is not None
        for _ in range(SIZE // PIECE):
            peaks.append(transport.get_write_buffer_size())
            yield piece

    async def handler(request: Request) -> Response:
        proto = request.body._source
        assert isinstance(proto, HttpProtocol)
        protos.append(proto)
        return Response(200, [], produce(proto), content_length=SIZE)

    async def main() -> None:
        limits = HttpLimits(write_high_water_bytes=high_water)
        async with serve(handler, limits, ssl_context=server_ctx) as (_, port):
            reader, writer = await connect(port, **client_kw)
            writer.write(b"GET /b/big HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"Content-Length: %d" % SIZE in head
            # A reader that has not started yet: the transport must push back on the producer.
            await until(lambda: bool(protos) and protos[0]._writer._paused)
            assert len(peaks) < SIZE // PIECE
            digest = hashlib.md5()
            received = 0
            while received < SIZE:
                data = await reader.read(1 << 20)
                assert data
                digest.update(data)
                received += len(data)
            assert received == SIZE
            assert digest.hexdigest() == hashlib.md5(piece * (SIZE // PIECE)).hexdigest()
            writer.close()
        assert len(peaks) == SIZE // PIECE
        assert max(peaks) <= high_water + PIECE
    run(loop_kind, main())


@both_loops
def test_tls_keep_alive_and_expect_continue(loop_kind: str, tmp_path: Any) -> None:
    server_ctx, client_ctx = make_tls(tmp_path)

    async def handler(request: Request) -> Response:
        data = await request.body.read_all(1 << 20)
        return Response(200, [("X-Scheme", request.scheme)], data)

    async def main() -> None:
        async with serve(handler, ssl_context=server_ctx) as (_, port):
            reader, writer = await connect(port, ssl=client_ctx, server_hostname="localhost")
            writer.write(b"PUT /k HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            assert (await read_response(reader)).status == 100
            writer.write(b"hello")
            resp = await read_response(reader)
            assert resp.body == b"hello" and resp.headers["x-scheme"] == "https"
            writer.write(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
            assert (await read_response(reader)).status == 200
            assert (await read_response(reader)).status == 200
            writer.close()
    run(loop_kind, main())
