"""Node-to-node transport: msgpack-framed request/response over TCP, TLS and mutual TLS optional.

Wire format, one frame per message::

    u32 big-endian length | msgpack map of that length | [raw stream of "n" bytes]

Map keys: ``t`` message type (str), ``i`` request id (int, present when a reply is wanted),
``r`` the request id this frame answers, ``b`` body (a map), ``e`` error ``[code, message]`` in
a reply, ``n`` length of the raw byte stream that follows the map (absent or 0: none).

The raw stream is how bulk data (object bodies, rs3gw._core.batch frames) travels: the sender
writes it chunk by chunk with backpressure, the receiver reads it chunk by chunk, and neither holds
it whole. While a stream is in flight it owns the connection in that direction: the sender holds the
write lock until the last byte, the receiver's read loop waits until the consumer has read (or
discarded) the last byte before it parses the next frame.

Any node can send requests on any connection; each outbound peer address has one pooled
connection, reused until it fails. Limits (TIGER_STYLE): frame size, requests pending per
connection (callers wait: backpressure), handlers in flight per connection (the read loop stops
reading: backpressure through TCP), request and connect timeouts.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import struct
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from .config import ClusterConfig

log = logging.getLogger("rs3gw.cluster.transport")

FRAME_HEADER = struct.Struct(">I")
STREAM_CHUNK_BYTES = 256 << 10
CLOSE_TIMEOUT_S = 2.0

Address = tuple[str, int]
StreamSource = bytes | bytearray | memoryview | AsyncIterable[bytes | bytearray | memoryview]


class TransportError(Exception):
    """Base of every transport failure."""


class ConnectError(TransportError):
    """The peer could not be reached (refused, unreachable, TLS handshake failed)."""


class ConnectionLost(TransportError):
    """The connection closed or broke before the reply (or the stream) was complete."""


class RequestTimeout(TransportError, TimeoutError):
    """No reply within the request timeout."""


class ProtocolError(TransportError):
    """The peer sent something that is not a valid frame; the connection is closed."""


class RemoteError(TransportError):
    """The peer's handler failed; raise it from a handler to answer with a code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TransportLimits:
    message_bytes_max: int = 16 << 20
    pending_requests_max: int = 256
    inflight_handlers_max: int = 64
    request_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    stream_chunk_bytes: int = STREAM_CHUNK_BYTES
    connections_max: int = 1024          # inbound + outbound; a refused accept is logged

    @classmethod
    def from_config(cls, cfg: ClusterConfig) -> TransportLimits:
        return cls(message_bytes_max=cfg.message_bytes_max,
                   pending_requests_max=cfg.pending_requests_max,
                   inflight_handlers_max=cfg.inflight_handlers_max,
                   request_timeout_s=cfg.request_timeout_s,
                   connect_timeout_s=cfg.connect_timeout_s)


# --- framing ----------------------------------------------------------------------------------------

def encode_frame(header: dict[str, Any], message_bytes_max: int = 16 << 20) -> bytes:
    try:
        # surrogatepass: S3 keys decoded from invalid UTF-8 hold lone surrogates (both ends are us).
        payload: bytes = msgpack.packb(header, use_bin_type=True, unicode_errors="surrogatepass")
    except (TypeError, ValueError, OverflowError) as e:
        raise ProtocolError(f"message not encodable: {e}") from e
    if len(payload) > message_bytes_max:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds the limit of {message_bytes_max}")
    return FRAME_HEADER.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader, message_bytes_max: int) -> dict[str, Any] | None:
    """The next frame's map, or None at a clean end of stream (EOF between frames)."""
    try:
        head = await reader.readexactly(FRAME_HEADER.size)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise ConnectionLost("connection closed inside a frame header") from e
    (size,) = FRAME_HEADER.unpack(head)
    # Checked before reading: a hostile or corrupt length must not make us buffer gigabytes.
    if size > message_bytes_max:
        raise ProtocolError(f"frame of {size} bytes exceeds the limit of {message_bytes_max}")
    try:
        payload = await reader.readexactly(size)
    except asyncio.IncompleteReadError as e:
        raise ConnectionLost("connection closed inside a frame") from e
    try:
        header = msgpack.unpackb(payload, raw=False, unicode_errors="surrogatepass")
    except Exception as e:      # msgpack raises several unrelated types for bad input
        raise ProtocolError(f"undecodable frame: {e}") from e
    if not isinstance(header, dict) or not isinstance(header.get("t", ""), str):
        raise ProtocolError("frame is not a message map")
    n = header.get("n", 0)
    if not isinstance(n, int) or n < 0:
        raise ProtocolError(f"bad stream length {n!r}")
    for k in ("i", "r"):
        if k in header and not isinstance(header[k], int):
            raise ProtocolError(f"bad {k!r} {header[k]!r}")
    if not isinstance(header.get("b", {}), dict):
        raise ProtocolError("body is not a map")
    return header


class StreamIn:
    """The raw bytes that follow a message: read them to the end, or discard them.

    Until that happens the connection reads nothing else (that is the backpressure).
    """

    def __init__(self, reader: asyncio.StreamReader, length: int, chunk_bytes: int) -> None:
        self.length = length
        self.remaining = length
        self._reader = reader
        self._chunk_bytes = chunk_bytes
        self._done = asyncio.Event()
        if length == 0:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def read(self, n: int = -1) -> bytes:
        """Up to n bytes (default one chunk); b"" once the declared length has been read."""
        if self.remaining == 0:
            return b""
        want = self._chunk_bytes if n < 0 else n
        want = min(want, self.remaining)
        try:
            data = await self._reader.read(want)
        except (ConnectionError, ssl.SSLError) as e:
            self._done.set()
            raise ConnectionLost(f"stream broken: {e}") from e
        if not data:
            self._done.set()
            raise ConnectionLost(f"connection closed with {self.remaining} stream bytes missing")
        self.remaining -= len(data)
        if self.remaining == 0:
            self._done.set()
        return data

    async def readexactly(self, n: int) -> bytes:
        if n > self.remaining:
            raise ValueError(f"{n} bytes asked, {self.remaining} left in the stream")
        parts = []
        while n:
            b = await self.read(n)
            parts.append(b)
            n -= len(b)
        return b"".join(parts)

    async def readall(self) -> bytes:
        return await self.readexactly(self.remaining)

    def __aiter__(self) -> StreamIn:
        return self

    async def __anext__(self) -> bytes:
        data = await self.read()
        if not data:
            raise StopAsyncIteration
        return data

    async def discard(self) -> None:
        while self.remaining:
            await self.read()

    def abandon(self) -> None:
        """The connection is going away: release whoever waits for this stream."""
        self._done.set()

    async def wait_done(self) -> None:
        await self._done.wait()


@dataclass
class Message:
    type: str
    body: dict[str, Any]
    stream: StreamIn | None = None
    peer: Address | None = None
    request_id: int | None = None


@dataclass
class Reply:
    """What a handler returns when the reply carries a stream (a plain dict is a body-only reply)."""
    body: dict[str, Any] = field(default_factory=dict)
    stream: StreamSource | None = None
    stream_length: int | None = None


Handler = Callable[[Message], Awaitable["Reply | dict[str, Any] | None"]]


# --- TLS ------------------------------------------------------------------------------------------

def server_ssl_context(cert: Path, key: Path, ca: Path | None, *, mutual: bool = True) -> ssl.SSLContext:
    """Blocking (reads files): build at start-up."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if mutual:
        if ca is None:
            raise ValueError("mutual TLS needs a CA")
        ctx.load_verify_locations(cafile=str(ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_ssl_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """Blocking (reads files): build at start-up."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(ca))
    # Peers are addressed by their advertised IP:port, not a DNS name; a peer is authenticated by
    # a certificate chain to the cluster CA (the CA is the cluster's trust boundary).
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def ssl_contexts(cfg: ClusterConfig) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """(server, client) contexts from the config; (None, None) when TLS is off."""
    if cfg.tls_cert is None or cfg.tls_key is None or cfg.tls_ca is None:
        return None, None
    server = server_ssl_context(cfg.tls_cert, cfg.tls_key, cfg.tls_ca, mutual=cfg.tls_mutual)
    client = client_ssl_context(cfg.tls_ca, cfg.tls_cert, cfg.tls_key)
    return server, client


# --- one connection ---------------------------------------------------------------------------------

class Connection:
    """One TCP (or TLS) connection; both ends may send requests. Created by Transport."""

    def __init__(self, transport: Transport, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 peer: Address) -> None:
        self._transport = transport
        self._limits = transport.limits
        self._reader = reader
        self._writer = writer
        self.peer = peer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._pending_slots = asyncio.Semaphore(self._limits.pending_requests_max)
        self._handler_slots = asyncio.Semaphore(self._limits.inflight_handlers_max)
        self._handlers: set[asyncio.Task[None]] = set()
        self._write_lock = asyncio.Lock()
        self._current_stream: StreamIn | None = None
        self._closed = False
        self.close_reason: BaseException | None = None
        self._read_task = asyncio.get_running_loop().create_task(self._read_loop())

    @property
    def closed(self) -> bool:
        return self._closed

    async def request(self, type_: str, body: dict[str, Any] | None = None, *,
                      stream: StreamSource | None = None, stream_length: int | None = None,
                      timeout_s: float | None = None) -> Message:
        """Send a request and wait for its reply. The timeout covers waiting for a pending slot,
        the write (stream included) and the reply's header; a reply stream is the caller's to read.
        """
        timeout_s = self._limits.request_timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                async with self._pending_slots:
                    self._check_open()
                    rid = next(self._ids)
                    fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
                    self._pending[rid] = fut
                    try:
                        await self._write_message({"t": type_, "i": rid, "b": body or {}},
                                                  stream, stream_length)
                        return await fut
                    except BaseException:
                        # The reply arrived just as we gave up: if it carries a stream nobody
                        # will read it, and the read loop would wait for it forever.
                        if fut.done() and not fut.cancelled() and fut.exception() is None \
                                and fut.result().stream is not None:
                            self.abort(ConnectionLost("reply stream abandoned by a cancelled request"))
                        raise
                    finally:
                        self._pending.pop(rid, None)
        except TimeoutError as e:
            raise RequestTimeout(f"{type_} to {self.peer}: no reply within {timeout_s}s") from e

    async def send(self, type_: str, body: dict[str, Any] | None = None, *,
                   stream: StreamSource | None = None, stream_length: int | None = None) -> None:
        """One-way message: returns once written to the socket buffer (after drain)."""
        self._check_open()
        await self._write_message({"t": type_, "b": body or {}}, stream, stream_length)

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionLost(f"connection to {self.peer} is closed") from self.close_reason

    async def _write_message(self, header: dict[str, Any], stream: StreamSource | None,
                             stream_length: int | None) -> None:
        if stream is not None:
            if isinstance(stream, (bytes, bytearray, memoryview)):
                n = memoryview(stream).nbytes
                if stream_length is not None and stream_length != n:
                    raise ValueError(f"stream_length {stream_length} != {n} bytes given")
                stream_length = n
            elif stream_length is None:
                raise ValueError("an iterable stream needs stream_length")
            if stream_length:
                header["n"] = stream_length
        frame = encode_frame(header, self._limits.message_bytes_max)
        async with self._write_lock:
            self._check_open()
            self._writer.write(frame)
            if "n" not in header:
                await self._drain()
                return
            assert stream is not None and stream_length is not None
            # From here to the last stream byte, an interruption (timeout, cancel, short source)
            # leaves the peer expecting bytes we will never send: the connection must die.
            ok = False
            try:
                await self._write_stream(stream, stream_length)
                ok = True
            finally:
                if not ok:
                    self.abort(ConnectionLost("stream interrupted"))

    async def _write_stream(self, stream: StreamSource, length: int) -> None:
        if isinstance(stream, (bytes, bytearray, memoryview)):
            view = memoryview(stream).cast("B")
            step = self._limits.stream_chunk_bytes
            for off in range(0, len(view), step):
                self._writer.write(view[off:off + step])
                await self._drain()
            return
        sent = 0
        async for chunk in stream:
            size = memoryview(chunk).nbytes
            if sent + size > length:
                raise ValueError(f"stream source gave more than the declared {length} bytes")
            self._writer.write(chunk)
            sent += size
            await self._drain()
        if sent != length:
            raise ValueError(f"stream source ended at {sent} of the declared {length} bytes")

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, ssl.SSLError) as e:
            self.abort(e)
            raise ConnectionLost(f"connection to {self.peer} broke: {e}") from e

    async def _read_loop(self) -> None:
        reason: BaseException | None = None
        try:
            while True:
                header = await read_frame(self._reader, self._limits.message_bytes_max)
                if header is None:
                    break
                n = header.get("n", 0)
                stream = StreamIn(self._reader, n, self._limits.stream_chunk_bytes) if n else None
                self._current_stream = stream
                msg = Message(header.get("t", ""), header.get("b", {}), stream, self.peer, header.get("i"))
                if "r" in header:
                    fut = self._pending.get(header["r"])
                    if fut is not None and not fut.done():
                        if "e" in header:
                            code, text = (list(header["e"]) + ["", ""])[:2]
                            fut.set_exception(RemoteError(str(code), str(text)))
                        else:
                            fut.set_result(msg)
                        if stream is not None and "e" in header:
                            await stream.discard()
                    elif stream is not None:
                        await stream.discard()      # the requester gave up: skip the bytes
                else:
                    # Backpressure: with every handler slot taken we stop reading the socket.
                    await self._handler_slots.acquire()
                    task = asyncio.get_running_loop().create_task(self._handle(msg))
                    self._handlers.add(task)
                    task.add_done_callback(self._handlers.discard)
                if stream is not None:
                    await stream.wait_done()
                    if stream.remaining:
                        raise ConnectionLost("stream abandoned mid-way")
                self._current_stream = None
        except asyncio.CancelledError:
            raise
        except (TransportError, ConnectionError, ssl.SSLError, OSError) as e:
            reason = e
            log.debug("connection %s: %s", self.peer, e)
        finally:
            self.abort(reason or ConnectionLost(f"connection to {self.peer} closed by the peer"))

    async def _handle(self, msg: Message) -> None:
        try:
            reply: Reply | dict[str, Any] | None = None
            error: list[str] | None = None
            handler = self._transport.handler_for(msg.type)
            try:
                if handler is None:
                    raise RemoteError("UnknownMessageType", msg.type)
                reply = await handler(msg)
            except RemoteError as e:
                error = [e.code, e.message]
            except TransportError as e:
                error = ["TransportError", str(e)]
            except Exception as e:
                log.exception("handler for %s from %s failed", msg.type, msg.peer)
                error = ["InternalError", type(e).__name__]
            finally:
                if msg.stream is not None and not self._closed:
                    with contextlib.suppress(TransportError):
                        await msg.stream.discard()
            if msg.request_id is None or self._closed:
                return
            header: dict[str, Any] = {"t": msg.type, "r": msg.request_id}
            if error is not None:
                header["e"] = error
                await self._write_message(header, None, None)
            elif isinstance(reply, Reply):
                header["b"] = reply.body
                await self._write_message(header, reply.stream, reply.stream_length)
            else:
                header["b"] = reply or {}
                await self._write_message(header, None, None)
        except TransportError as e:
            log.debug("reply to %s on %s not sent: %s", msg.type, self.peer, e)
        finally:
            self._handler_slots.release()

    def abort(self, reason: BaseException | None = None) -> None:
        """Close now: pending requests fail with ConnectionLost, handlers are cancelled."""
        if self._closed:
            return
        self._closed = True
        self.close_reason = reason
        err = ConnectionLost(f"connection to {self.peer} lost: {reason}")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        if self._current_stream is not None:
            self._current_stream.abandon()
        for t in list(self._handlers):
            t.cancel()
        if asyncio.current_task() is not self._read_task:
            self._read_task.cancel()
        self._writer.close()
        self._transport.forget(self)

    async def close(self) -> None:
        self.abort(ConnectionLost("closed locally"))
        tasks = [self._read_task, *self._handlers]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.gather(*tasks, return_exceptions=True)
                with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
                    await self._writer.wait_closed()


# --- the endpoint -------------------------------------------------------------------------------------

class Transport:
    """Listener + pool of outbound connections (one per peer address) + message handlers."""

    def __init__(self, bind: Address = ("127.0.0.1", 0), *, limits: TransportLimits | None = None,
                 server_ssl: ssl.SSLContext | None = None,
                 client_ssl: ssl.SSLContext | None = None) -> None:
        self.bind = bind
        self.limits = limits or TransportLimits()
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        self._handlers: dict[str, Handler] = {}
        self._fallback: Handler | None = None
        self._server: asyncio.AbstractServer | None = None
        self._outbound: dict[Address, Connection] = {}
        self._connecting: dict[Address, asyncio.Lock] = {}
        self._all: set[Connection] = set()
        self._closing = False
        self.address: Address | None = None

    def register(self, type_: str, handler: Handler) -> None:
        self._handlers[type_] = handler

    def register_fallback(self, handler: Handler) -> None:
        """The handler for message types nobody registered (the typed layer answers and counts
        them; without one the reply is RemoteError UnknownMessageType)."""
        self._fallback = handler

    def handler_for(self, type_: str) -> Handler | None:
        return self._handlers.get(type_, self._fallback)

    async def start(self) -> Address:
        """Listen; returns the bound address (port 0 picks a free port)."""
        self._server = await asyncio.start_server(
            self._accept, self.bind[0], self.bind[1], ssl=self._server_ssl,
            ssl_handshake_timeout=self.limits.connect_timeout_s if self._server_ssl else None,
            limit=self.limits.stream_chunk_bytes)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = (host, port)
        return self.address

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        if self._closing:
            writer.close()
            return
        if len(self._all) >= self.limits.connections_max:
            log.warning("refusing a connection from %s: %d connections open (the limit)",
                        peer, len(self._all))
            writer.close()
            return
        self._all.add(Connection(self, reader, writer, (peer[0], peer[1])))

    async def connection(self, addr: Address) -> Connection:
        """The pooled connection to addr, opened on first use and after a failure."""
        conn = self._outbound.get(addr)
        if conn is not None and not conn.closed:
            return conn
        lock = self._connecting.setdefault(addr, asyncio.Lock())
        async with lock:
            conn = self._outbound.get(addr)
            if conn is not None and not conn.closed:
                return conn
            if self._closing:
                raise ConnectError("transport is closed")
            try:
                async with asyncio.timeout(self.limits.connect_timeout_s):
                    reader, writer = await asyncio.open_connection(
                        addr[0], addr[1], ssl=self._client_ssl, limit=self.limits.stream_chunk_bytes)
            except TimeoutError as e:
                raise ConnectError(f"connect to {addr}: timed out") from e
            except (OSError, ssl.SSLError) as e:
                raise ConnectError(f"connect to {addr}: {e}") from e
            conn = Connection(self, reader, writer, addr)
            self._outbound[addr] = conn
            self._all.add(conn)
            return conn

    async def request(self, addr: Address, type_: str, body: dict[str, Any] | None = None, *,
                      stream: StreamSource | None = None, stream_length: int | None = None,
                      timeout_s: float | None = None) -> Message:
        timeout_s = self.limits.request_timeout_s if timeout_s is None else timeout_s
        try:
            # The connect counts against the same deadline as the request.
            async with asyncio.timeout(timeout_s):
                conn = await self.connection(addr)
        except TimeoutError as e:
            raise RequestTimeout(f"{type_} to {addr}: not connected within {timeout_s}s") from e
        return await conn.request(type_, body, stream=stream, stream_length=stream_length,
                                  timeout_s=timeout_s)

    async def send(self, addr: Address, type_: str, body: dict[str, Any] | None = None, *,
                   stream: StreamSource | None = None, stream_length: int | None = None) -> None:
        conn = await self.connection(addr)
        await conn.send(type_, body, stream=stream, stream_length=stream_length)

    def forget(self, conn: Connection) -> None:
        """A connection closed: it leaves the pool (called by the connection itself)."""
        self._all.discard(conn)
        if self._outbound.get(conn.peer) is conn:
            del self._outbound[conn.peer]

    async def close(self) -> None:
        """Stop listening, close every connection; pending requests fail with ConnectionLost."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        await asyncio.gather(*(c.close() for c in list(self._all)), return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._server.wait_closed()
