"""ClusterNode: builds one node's cluster components, wires them together and owns their start
and stop order. It holds no behaviour of its own: each part receives what it uses here, in its
constructor, and knows only the interfaces it calls.

What uses what (arrows point at what is used; nothing below imports anything above it)::

    ClusterStore (the S3 layer's ObjectStore)
      ├── BucketOps, Uploads ──┐
      └── FanOutWriter         ├──► Coordinator ──► Delivery ──► ReplicationQueue (durable)
    Receiver, AntiEntropy,     │        │             └──► Pusher, Hints
    TombstoneCollector, HandOff┘        ▼
                                  Topology (Membership + Placement), Stamper (clock, resolvers)
    every part ──► Peers ──► Rpc (typed messages) ──► Transport (control + data lanes)
    ClusterStatus (the ClusterView the admin surface reads)

Start order: the queue opens (its pending destinations are known); every message handler is
registered before the listener starts (no peer can reach a type nobody serves yet); membership
starts listening and joins; the senders resume the queue; then the background loops start.
Stop order is the reverse: background loops and senders stop, writes still finishing in the
background settle, staged bodies are dropped, membership stops (and with it the listener), the
data lanes close, and the queue closes last (everything above may still enqueue).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from rs3gw import __version__
from rs3gw.storage import ObjectStore, ReplicaStore

from . import stamps
from .antientropy import AntiEntropy
from .bucket_ops import BucketOps
from .config import ClusterConfig
from .conflicts import resolver_for
from .coordinator import Coordinator
from .delivery import Delivery
from .handoff import HandOff
from .hints import Hints
from .hlc import HybridClock
from .membership import Membership
from .peers import Peers
from .placement import Placement
from .pusher import Pusher
from .queue import ReplicationQueue
from .receiver import Receiver
from .rpc import Rpc
from .stats import ReplicationStats
from .status import ClusterStatus
from .store import ClusterStore
from .tombstones import TombstoneCollector
from .topology import Topology
from .transport import Transport, TransportLimits, ssl_contexts
from .uploads import Uploads
from .view import ClusterView

log = logging.getLogger("rs3gw.cluster")

DATA_LANES = 4


class ClusterNode:
    """``await ClusterNode.open(cfg, local)``; then ``node.store`` is the S3 layer's store and
    ``node.view`` the operator surface's view. ``depart()`` (graceful leave) or ``close()``."""

    def __init__(self, cfg: ClusterConfig, local: ReplicaStore, queue: ReplicationQueue, *,
                 s3_endpoint: str = "") -> None:
        self.cfg = cfg
        self.node_id = cfg.node_id
        server_ssl, client_ssl = ssl_contexts(cfg)
        limits = TransportLimits.from_config(cfg)
        control = Transport((cfg.bind_host, cfg.bind_port), limits=limits,
                            server_ssl=server_ssl, client_ssl=client_ssl)
        lanes = [Transport(limits=limits, client_ssl=client_ssl) for _ in range(DATA_LANES)]
        self.rpc = Rpc(control, lanes, request_timeout_s=cfg.request_timeout_s)
        self.membership = Membership(cfg, rpc=self.rpc, version=__version__,
                                     metadata={"s3": s3_endpoint})
        self.topology = Topology(self.membership, Placement(cfg.replication_factor),
                                 cfg.replication_mode)
        resolver = resolver_for(cfg.conflict_resolution, cfg.conflict_resolver)
        self.stamper = stamps.Stamper(cfg.node_id, HybridClock(cfg.node_id), resolver,
                                      resolver_for(cfg.conflict_resolution, cfg.conflict_resolver))
        self.stats = ReplicationStats()
        self.queue = queue
        peers = Peers(self.rpc, self.topology)
        pusher = Pusher(local, peers, self.stats)
        hints = Hints(local, self.topology, peers)
        self.delivery = Delivery(queue, self.topology, peers, pusher, hints, self.stats,
                                 idle_wait_s=cfg.gossip_interval_s)
        self.coordinator = Coordinator(local, self.topology, peers, self.delivery, pusher, hints,
                                       self.stamper, self.stats)
        self.uploads = Uploads(local, self.coordinator, self.topology, peers, self.stamper)
        buckets = BucketOps(local, self.coordinator, self.topology, peers, self.stamper)
        self.store: ObjectStore = ClusterStore(
            local, self.coordinator, buckets, self.uploads, self.topology, peers, self.stamper,
            self.stats, stall_s=cfg.request_timeout_s)
        self.receiver = Receiver(local, self.stamper, self.stats)
        self.antientropy = AntiEntropy(local, self.topology, peers, pusher, self.stamper,
                                       interval_s=cfg.anti_entropy_interval_s)
        self.tombstones = TombstoneCollector(queue, local, self.topology, peers,
                                             interval_s=cfg.tombstone_gc_interval_s)
        self.handoff = HandOff(local, self.topology, peers, pusher)
        self.status = ClusterStatus(self.membership, queue, self.stats, resolver,
                                    self.rpc.rejected, mode=cfg.replication_mode,
                                    factor=cfg.replication_factor, leave=self.leave)
        self.view: ClusterView = self.status
        for part in (self.receiver, self.uploads, self.antientropy, self.tombstones):
            part.serve(self.rpc)
        self.leave_requested = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @classmethod
    async def open(cls, cfg: ClusterConfig, local: ReplicaStore, *,
                   s3_endpoint: str = "") -> ClusterNode:
        """Open the durable queue under the store's root, build the node and start it."""
        queue = await ReplicationQueue.open(local.root, local_node=cfg.node_id)
        node = cls(cfg, local, queue, s3_endpoint=s3_endpoint)
        try:
            await node.start()
        except BaseException:
            await node.close()
            raise
        return node

    async def start(self) -> None:
        self.receiver.start()
        await self.membership.start()
        self.topology.follow()
        self.delivery.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.tombstones.run()),
                       loop.create_task(self.antientropy.run())]

    def advertise_s3(self, endpoint: str) -> None:
        """The S3 address peers and operators see in this node's membership record."""
        self.membership.update_metadata({"s3": endpoint})

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.delivery.close()
        await self.coordinator.close()
        await self.receiver.close()
        await self.membership.close()
        await self.rpc.close()
        await self.queue.close()

    async def leave(self) -> None:
        """Graceful leave (POST /api/cluster/leave): Leaving now (peers stop placing new data
        here), then the server stops taking requests and depart() hands off and goes."""
        self.membership.mark_leaving()
        self.leave_requested.set()

    async def depart(self, timeout_s: float = 60.0) -> None:
        """Called by the server once it stopped taking requests: let writes finishing in the
        background settle, hand everything off, drain the queue while someone can take it."""
        if self._closing:
            return
        await self.coordinator.close()
        self.membership.mark_leaving()      # peers route around us from now on
        try:
            async with asyncio.timeout(timeout_s):
                await self.handoff.run()
                while self.queue.pending() and self.delivery.deliverable():
                    await asyncio.sleep(0.1)
        except TimeoutError:
            log.warning("leave: hand-off not finished within %.0fs; %d events stay queued",
                        timeout_s, self.queue.pending())
        with contextlib.suppress(Exception):
            await self.membership.leave()
        await self.close()


__all__ = ["ClusterNode"]
