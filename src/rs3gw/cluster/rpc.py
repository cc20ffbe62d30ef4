"""Typed requests over the transport: the only place where messages.py classes meet frames.

Serving: ``serve(Request class, handler)``; the handler gets the decoded request and an Inbound
(the raw stream, if one follows, and the peer address), and returns the reply, or a Streamed
reply whose bytes follow it. A body that does not decode is answered ``BadMessage``, a version this
release does not speak ``UnsupportedVersion``, a type nobody serves ``UnknownMessageType``; each is
counted (``rejected``) and the connection stays up. The handler's own failures travel as the
transport's RemoteError, as before.

Calling: ``request(address, request)`` sends on the control transport (the listener's own pool,
which also carries SWIM pings) unless the request or its reply carries bulk bytes: those go on one
of the data lanes, client-only transports of their own, because a stream owns its connection until
its last byte and a ping queued behind 64 MiB would look like a dead node.
"""
from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import wire
from .messages import Request
from .transport import (
    Address,
    Message,
    ProtocolError,
    RemoteError,
    StreamIn,
    StreamSource,
    Transport,
)
from .transport import Reply as Frame
from .view import MESSAGE_REJECTIONS

R = TypeVar("R")
Q = TypeVar("Q", bound=Request[Any])

# A body moves at >= this rate or its request times out (plus the usual request timeout).
BULK_MIN_BYTES_PER_S = 8 << 20

REJECTIONS = MESSAGE_REJECTIONS
# Handler errors that mean the request itself was malformed (counted like a bad body).
MALFORMED_CODES = frozenset({"BadMessage", "BadFrame"})


@dataclass(frozen=True, slots=True)
class Inbound:
    """What came with a request besides its body."""
    stream: StreamIn | None
    peer: Address | None


@dataclass(frozen=True, slots=True)
class Streamed(Generic[R]):
    """A reply followed by ``length`` bytes from ``stream``."""
    reply: R
    stream: StreamSource | None
    length: int | None


@dataclass(frozen=True, slots=True)
class Answer(Generic[R]):
    """A reply, and its stream (the caller reads or discards it: until then the connection it
    arrived on reads nothing else)."""
    reply: R
    stream: StreamIn | None


Handler = Callable[[Q, Inbound], Awaitable[Any]]


class Rpc:
    def __init__(self, transport: Transport, lanes: list[Transport] | None = None, *,
                 request_timeout_s: float = 10.0) -> None:
        self.transport = transport
        self._lanes = list(lanes or [])
        self._lane_busy = [0] * len(self._lanes)
        self._request_timeout_s = request_timeout_s
        self.rejected: collections.Counter[str] = collections.Counter({r: 0 for r in REJECTIONS})
        transport.register_fallback(self._unknown)

    # --- serving ----------------------------------------------------------------------------

    def serve(self, cls: type[Q], handler: Handler[Q]) -> None:
        async def run(msg: Message) -> Frame | dict[str, Any]:
            try:
                req = wire.decode(cls, msg.body)
            except wire.UnsupportedVersion as e:
                self.rejected["unsupported_version"] += 1
                raise RemoteError("UnsupportedVersion", str(e)) from None
            except wire.WireError as e:
                self.rejected["malformed"] += 1
                raise RemoteError("BadMessage", str(e)) from None
            try:
                out = await handler(req, Inbound(msg.stream, msg.peer))
            except RemoteError as e:
                if e.code in MALFORMED_CODES:     # found inside a stream (a batch frame's event)
                    self.rejected["malformed"] += 1
                raise
            if isinstance(out, Streamed):
                return Frame(wire.encode(out.reply), out.stream, out.length)
            return wire.encode(out)
        self.transport.register(cls.TYPE, run)

    async def _unknown(self, msg: Message) -> dict[str, Any]:
        self.rejected["unknown_type"] += 1
        raise RemoteError("UnknownMessageType", f"no message type {msg.type!r} on this node")

    # --- calling ----------------------------------------------------------------------------

    async def request(self, addr: Address, req: Request[R], *, stream: StreamSource | None = None,
                      stream_length: int | None = None, timeout_s: float | None = None,
                      bulk_reply: bool = False) -> Answer[R]:
        """Send ``req`` (and ``stream``); the typed reply. ``bulk_reply``: the reply carries a
        stream (a data lane is used, as for a request stream)."""
        body = wire.encode(req)
        if (stream is None and not bulk_reply) or not self._lanes:
            msg = await self.transport.request(addr, req.TYPE, body, stream=stream,
                                               stream_length=stream_length, timeout_s=timeout_s)
        else:
            if stream is not None:
                n = stream_length or 0
                timeout_s = (timeout_s or self._request_timeout_s) + n / BULK_MIN_BYTES_PER_S
            i = min(range(len(self._lanes)), key=lambda j: self._lane_busy[j])
            self._lane_busy[i] += 1
            try:
                msg = await self._lanes[i].request(addr, req.TYPE, body, stream=stream,
                                                   stream_length=stream_length, timeout_s=timeout_s)
            finally:
                self._lane_busy[i] -= 1
        try:
            reply: R = wire.decode(req.REPLY, msg.body)
        except wire.WireError as e:
            self.rejected["bad_reply"] += 1
            if msg.stream is not None:
                await msg.stream.discard()
            raise ProtocolError(f"{req.TYPE} reply from {addr}: {e}") from None
        return Answer(reply, msg.stream)

    async def close(self) -> None:
        """The data lanes (the control transport belongs to whoever made it)."""
        for lane in self._lanes:
            await lane.close()


__all__ = ["BULK_MIN_BYTES_PER_S", "REJECTIONS", "Answer", "Inbound", "Rpc", "Streamed"]
