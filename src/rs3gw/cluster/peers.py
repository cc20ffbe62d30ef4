"""Peers: typed requests to other nodes by node id (cluster/rpc.py by address, resolved through
the topology)."""
from __future__ import annotations

from typing import TypeVar

from .messages import Request
from .rpc import Answer, Rpc
from .topology import Topology
from .transport import StreamSource, TransportError

R = TypeVar("R")


class Peers:
    def __init__(self, rpc: Rpc, topology: Topology) -> None:
        self._rpc = rpc
        self._topology = topology

    async def call(self, node_id: str, req: Request[R], *, stream: StreamSource | None = None,
                   stream_length: int | None = None, timeout_s: float | None = None) -> R:
        addr = self._topology.address(node_id)
        if addr is None:
            raise TransportError(f"{node_id} is not a member")
        answer = await self._rpc.request(addr, req, stream=stream, stream_length=stream_length,
                                         timeout_s=timeout_s)
        if answer.stream is not None:
            await answer.stream.discard()      # not expected; never leave it blocking the link
        return answer.reply

    async def call_streamed(self, node_id: str, req: Request[R],
                            timeout_s: float | None = None) -> Answer[R]:
        """A request whose reply carries a stream (on a data lane: no ping waits behind it)."""
        addr = self._topology.address(node_id)
        if addr is None:
            raise TransportError(f"{node_id} is not a member")
        return await self._rpc.request(addr, req, timeout_s=timeout_s, bulk_reply=True)
