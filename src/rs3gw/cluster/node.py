"""One cluster node: membership, placement, clocks, the durable outbound queue with its senders,
the replica-side receiver, and what the operator surface reads (cluster.view.ClusterView).

Connections: the membership transport (the listener) carries SWIM pings and small replies; object
bytes go through DATA_LANES client-only transports of their own, because a stream owns its
connection until its last byte and a ping queued behind 64 MiB would look like a dead node.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Any

from rs3gw import __version__
from rs3gw.storage import LocalStore, versioned
from rs3gw.storage.versioned import Verdict

from . import stamps
from .config import ClusterConfig
from .conflicts import ConflictResolver
from .events import DeleteObject, PutObject, ReplicationEvent
from .hlc import HybridClock
from .membership import Member, Membership, NodeState
from .placement import Placement
from .queue import QueuedEvent, ReplicationQueue
from .receiver import Receiver
from .transport import (
    Address,
    Message,
    StreamSource,
    Transport,
    TransportError,
    TransportLimits,
    ssl_contexts,
)

log = logging.getLogger("rs3gw.cluster")

DATA_LANES = 4
# A body moves at >= this rate or its request times out (plus the usual request timeout).
BULK_MIN_BYTES_PER_S = 8 << 20
SEND_BATCH_EVENTS = 64
BATCH_DATA_MAX = 256 << 10         # PutObject bodies up to this travel inside a batch frame
LAG_SAMPLES = 1024
BANDWIDTH_WINDOW_S = 10.0


def _addr(a: Address) -> str:
    return f"{a[0]}:{a[1]}"


class NodeStats:
    def __init__(self) -> None:
        self.replicated = 0
        self.failed = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.bytes_replicated = 0
        self.lags: collections.deque[float] = collections.deque(maxlen=LAG_SAMPLES)
        self._sent: collections.deque[tuple[float, int]] = collections.deque()
        self.per_dest: dict[str, dict[str, Any]] = {}

    def dest(self, node_id: str) -> dict[str, Any]:
        return self.per_dest.setdefault(node_id, {"replicated": 0, "failed": 0, "last_error": None})

    def delivered(self, node_id: str, n: int, nbytes: int, lags: list[float]) -> None:
        self.replicated += n
        self.dest(node_id)["replicated"] += n
        self.lags.extend(lags)
        self.sent(nbytes)

    def sent(self, nbytes: int) -> None:
        now = time.monotonic()
        self.bytes_replicated += nbytes
        self._sent.append((now, nbytes))
        while self._sent and self._sent[0][0] < now - BANDWIDTH_WINDOW_S:
            self._sent.popleft()

    def bandwidth(self) -> float:
        now = time.monotonic()
        while self._sent and self._sent[0][0] < now - BANDWIDTH_WINDOW_S:
            self._sent.popleft()
        return sum(n for _, n in self._sent) / BANDWIDTH_WINDOW_S

    def lag_summary(self) -> dict[str, float]:
        if not self.lags:
            return {"avg": 0.0, "max": 0.0, "p95": 0.0}
        s = sorted(self.lags)
        return {"avg": sum(s) / len(s), "max": s[-1], "p95": s[min(len(s) - 1, int(0.95 * len(s)))]}


class ClusterNode:
    def __init__(self, cfg: ClusterConfig, store: LocalStore, *, s3_endpoint: str = "",
                 backends: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.node_id = cfg.node_id
        self.mode = cfg.replication_mode
        self.factor = cfg.replication_factor
        server_ssl, client_ssl = ssl_contexts(cfg)
        limits = TransportLimits.from_config(cfg)
        self.transport = Transport((cfg.bind_host, cfg.bind_port), limits=limits,
                                   server_ssl=server_ssl, client_ssl=client_ssl)
        self._lanes = [Transport(limits=limits, client_ssl=client_ssl) for _ in range(DATA_LANES)]
        self._lane_busy = [0] * DATA_LANES
        self.membership = Membership(cfg, transport=self.transport, version=__version__,
                                     metadata={"s3": s3_endpoint})
        self.clock = HybridClock(self.node_id)
        # Conflicts are counted where a write is applied; picking the newest copy to serve a read
        # uses the same rule but a resolver of its own, so reads do not count as conflicts.
        self.resolver = _resolver(cfg)
        self.read_resolver = _resolver(cfg)
        self.placement = Placement(self.factor)
        self.backends = dict(backends or {})
        self.stats = NodeStats()
        self.receiver = Receiver(self)
        self.queue: ReplicationQueue | None = None
        self.front: Any = None          # this node's ClusterStore, once the server made it
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.monotonic()
        self._closing = False
        self.leave_requested = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.queue = await ReplicationQueue.open(self.store.root, local_node=self.node_id)
        self.receiver.register()
        self.membership.on_change(lambda _ev: self._refresh())
        await self.membership.start()
        self._refresh()
        for dest in self.queue.destinations():
            self._ensure_sender(dest)
        from . import antientropy
        from .tombstones import gc_loop
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(gc_loop(self)))
        self._tasks.append(loop.create_task(antientropy.loop(self)))

    def _refresh(self) -> None:
        # Replica sets span every member that is not leaving, Failed ones included: a write whose
        # replica is down waits for it (sync fails, quorum counts it missing, async queues for it)
        # instead of quietly choosing another home it would have to be moved from later.
        self.placement.update(m.node_id for m in self.membership.members()
                              if m.state is not NodeState.LEAVING)

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        for t in [*self._senders.values(), *self._tasks]:
            t.cancel()
        await asyncio.gather(*self._senders.values(), *self._tasks, return_exceptions=True)
        await self.receiver.close()
        await self.membership.close()
        for lane in self._lanes:
            await lane.close()
        if self.queue is not None:
            await self.queue.close()

    async def leave(self) -> None:
        """Graceful leave (POST /api/cluster/leave): Leaving now (peers stop placing new data
        here), then the server stops taking requests and depart() hands off and goes."""
        self.membership._set_local(NodeState.LEAVING)
        self.leave_requested.set()

    async def depart(self, timeout_s: float = 60.0) -> None:
        """Called by the server once it stopped taking requests."""
        if self._closing:
            return
        from .handoff import hand_off
        self.membership._set_local(NodeState.LEAVING)   # peers route around us from now on
        try:
            async with asyncio.timeout(timeout_s):
                await hand_off(self)
                while self.queue is not None and self.queue.pending() and self._deliverable():
                    await asyncio.sleep(0.1)
        except TimeoutError:
            log.warning("leave: hand-off not finished within %.0fs; %d events stay queued",
                        timeout_s, self.queue.pending() if self.queue else 0)
        with contextlib.suppress(Exception):
            await self.membership.leave()
        await self.close()

    def _deliverable(self) -> bool:
        assert self.queue is not None
        return any(self.live(d) for d in self.queue.destinations())

    # --- members and placement ----------------------------------------------------------------

    def member(self, node_id: str) -> Member | None:
        return self.membership.get(node_id)

    def live(self, node_id: str) -> bool:
        if node_id == self.node_id:
            return True
        m = self.membership.get(node_id)
        return m is not None and m.state in (NodeState.ACTIVE, NodeState.JOINING)

    def replicas(self, bucket: str, key: str) -> list[str]:
        return self.placement.replicas(bucket, key)

    def others(self) -> list[str]:
        """Every other member that is not leaving (bucket-level state goes to all of them)."""
        return [m.node_id for m in self.membership.members()
                if m.node_id != self.node_id and m.state is not NodeState.LEAVING]

    def required(self, n: int | None = None) -> int:
        """Commits a write needs before it is acknowledged, out of n copies (default: the
        replication factor; a replica set can be smaller while too few members exist, and then a
        sync or quorum write is refused rather than acknowledged with fewer copies than promised)."""
        n = self.factor if n is None else n
        if self.mode == "sync":
            return n
        if self.mode == "quorum":
            return n // 2 + 1
        return 1

    # --- requests to peers --------------------------------------------------------------------

    async def call(self, node_id: str, type_: str, body: dict[str, Any], *,
                   stream: StreamSource | None = None, stream_length: int | None = None,
                   timeout_s: float | None = None) -> Message:
        m = self.membership.get(node_id)
        if m is None:
            raise TransportError(f"{node_id} is not a member")
        if stream is None:
            return await self.transport.request(m.address, type_, body, timeout_s=timeout_s)
        i = min(range(DATA_LANES), key=lambda j: self._lane_busy[j])
        n = stream_length or 0
        timeout = (timeout_s or self.cfg.request_timeout_s) + n / BULK_MIN_BYTES_PER_S
        self._lane_busy[i] += 1
        try:
            return await self._lanes[i].request(m.address, type_, body, stream=stream,
                                                stream_length=stream_length, timeout_s=timeout)
        finally:
            self._lane_busy[i] -= 1

    async def call_bulk_reply(self, node_id: str, type_: str, body: dict[str, Any],
                              timeout_s: float | None = None) -> Message:
        """A request whose reply carries a stream: on a data lane, so it holds no ping behind it."""
        m = self.membership.get(node_id)
        if m is None:
            raise TransportError(f"{node_id} is not a member")
        i = min(range(DATA_LANES), key=lambda j: self._lane_busy[j])
        return await self._lanes[i].request(m.address, type_, body, timeout_s=timeout_s)

    # --- outbound queue -----------------------------------------------------------------------

    async def enqueue(self, event: ReplicationEvent, dests: list[str]) -> None:
        # A DeleteObject is enqueued even with nobody to send it to: that records the tombstone
        # (with this node's ack) for garbage collection once every replica holds it.
        if self.queue is None or (not dests and not isinstance(event, DeleteObject)):
            return
        await self.queue.enqueue(event, dests)
        for d in dests:
            self._ensure_sender(d)

    def _ensure_sender(self, dest: str) -> None:
        t = self._senders.get(dest)
        if (t is None or t.done()) and not self._closing:
            self._senders[dest] = asyncio.get_running_loop().create_task(self._sender(dest))

    async def _sender(self, dest: str) -> None:
        q = self.queue
        assert q is not None
        while not self._closing:
            if not await q.wait_for_events(dest, timeout_s=1.0):
                continue
            if not self.live(dest):
                await asyncio.sleep(self.cfg.gossip_interval_s)
                continue
            batch = await q.dequeue(dest, SEND_BATCH_EVENTS)
            if not batch:
                await asyncio.sleep(0.05)     # the head waits for its retry
                continue
            try:
                done, failed, err = await self._deliver(dest, batch)
            except asyncio.CancelledError:
                q.release(dest, [e.seq for e in batch])
                raise
            except Exception as e:  # noqa: BLE001 - any failure is a retry, never a lost event
                done, failed, err = [], batch, f"{type(e).__name__}: {e}"
            now_ms = time.time() * 1000
            if done:
                await q.ack(dest, [e.seq for e in done])
                for qe in done:
                    ev = qe.decode()
                    if isinstance(ev, PutObject) and self.node_id not in self.replicas(ev.bucket, ev.key):
                        with contextlib.suppress(Exception):
                            await self._hint_delivered(ev)
                self.stats.delivered(dest, len(done), 0,
                                     [(now_ms - e.enqueued_ms) / 1000.0 for e in done])
            if failed:
                self.stats.failed += len(failed)
                d = self.stats.dest(dest)
                d["failed"] += len(failed)
                d["last_error"] = err
                delay = await q.retry(dest, [e.seq for e in failed], err or "failed")
                log.debug("replication to %s: %d events failed (%s); retry in %.1fs", dest,
                          len(failed), err, delay)

    async def _deliver(self, dest: str, batch: list[QueuedEvent],
                       ) -> tuple[list[QueuedEvent], list[QueuedEvent], str | None]:
        from rs3gw._core import batch as framing
        done: list[QueuedEvent] = []
        failed: list[QueuedEvent] = []
        err: str | None = None
        small: list[tuple[QueuedEvent, ReplicationEvent, bytes | None]] = []
        for qe in batch:
            ev = qe.decode()
            if isinstance(ev, PutObject):
                src = await self._local_source(ev)
                if src is None:
                    done.append(qe)          # superseded here: the newer write has its own event
                    continue
                meta, reader = src
                if meta.size > BATCH_DATA_MAX:
                    try:
                        await self.call(dest, "rep.apply", {"ev": ev.encode()}, stream=reader,
                                        stream_length=meta.size)
                        self.stats.sent(meta.size)
                        done.append(qe)
                    except (TransportError, OSError) as e:
                        failed.append(qe)
                        err = f"{type(e).__name__}: {e}"
                    finally:
                        await _aclose(reader)
                    continue
                try:
                    data = b"".join([bytes(c) async for c in reader])
                finally:
                    await _aclose(reader)
                small.append((qe, ev, data))
            else:
                small.append((qe, ev, None))
        if small:
            enc = framing.BatchEncoder(codec="zstd", level=1)
            for _qe, ev, body in small:
                enc.add(ev.encode(), body)
            frame = enc.flush()
            try:
                reply = await self.call(dest, "rep.batch", {}, stream=frame, stream_length=len(frame))
                applied = reply.body.get("applied") or []
                for (qe, _ev, _d), r in zip(small, applied, strict=False):
                    (done if r is not None else failed).append(qe)
                failed.extend(qe for qe, _e, _d in small[len(applied):])
                if any(r is None for r in applied):
                    err = "NoSuchBucket at the destination (its bucket event not applied yet)"
                self.stats.sent(len(frame))
            except (TransportError, OSError) as e:
                failed.extend(qe for qe, _e, _d in small)
                err = f"{type(e).__name__}: {e}"
        return done, failed, err

    async def drop_hint(self, ev: ReplicationEvent) -> None:
        """Remove this node's copy of an object it holds only as a write's coordinator (a hint),
        if it is still that very version. The stamp stays: it records what this node has seen."""
        mine = stamps.encode(ev.version)
        b, k = ev.bucket, ev.key
        await self.store.apply_versioned(
            "object", b, k, lambda local: Verdict(local == mine, None),
            lambda txn: versioned.delete_replica(txn, b, k))

    async def _hint_delivered(self, ev: PutObject) -> None:
        """A queued copy reached a replica. If this node is outside the key's replica set and every
        replica now has this version (or a newer one), the hint has done its job."""
        replicas = self.replicas(ev.bucket, ev.key)
        if self.node_id in replicas or not all(self.live(n) for n in replicas):
            return
        for n in replicas:
            try:
                reply = await self.call(n, "rep.head", {"b": ev.bucket, "k": ev.key})
            except (TransportError, OSError):
                return
            theirs = stamps.decode(reply.body.get("stamp"))
            if theirs is None or not (theirs.same_write(ev.version)
                                      or theirs.vector.dominates(ev.version.vector)):
                return
        await self.drop_hint(ev)

    async def _local_source(self, ev: PutObject) -> tuple[Any, Any] | None:
        meta, blob = await self.store.lookup_versioned(ev.bucket, ev.key)
        local = stamps.decode(blob)
        if meta is None or local is None or not local.same_write(ev.version):
            return None
        if meta.size == 0:
            return meta, _empty()
        return meta, await self.store.open_reader(meta)

    # --- ClusterView --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        counts = {s.value: 0 for s in NodeState}
        members = self.membership.members()
        for m in members:
            counts[m.state.value] += 1
        return {"node_id": self.node_id, "state": self.membership.local.state.value,
                "cluster_address": _addr(self.membership.local.address),
                "replication_mode": self.mode, "replication_factor": self.factor,
                "conflict_resolution": self.resolver.strategy.value,
                "members": {"total": len(members), **counts},
                "healthy": counts["Failed"] == 0 and self.membership.local.state is NodeState.ACTIVE,
                "backends": dict(self.backends), "version": __version__,
                "uptime_s": time.monotonic() - self._started}

    def nodes(self) -> list[dict[str, Any]]:
        out = []
        for m in self.membership.members():
            local = m.node_id == self.node_id
            out.append({"node_id": m.node_id, "state": m.state.value, "address": _addr(m.address),
                        "last_seen": time.time() if local else (m.last_seen or None),
                        "incarnation": m.incarnation, "version": m.version,
                        "metadata": dict(m.metadata), "local": local, "suspect": m.suspect})
        return out

    def replication(self) -> dict[str, Any]:
        q = self.queue
        dests: dict[str, dict[str, Any]] = {}
        names = set(self.stats.per_dest) | set(q.destinations() if q else ())
        for d in sorted(names):
            st = self.stats.dest(d)
            dests[d] = {"pending": q.pending(d) if q else 0,
                        "oldest_age_s": q.oldest_age_s(d) if q else 0.0, **st}
        lag = self.stats.lag_summary()
        if q is not None:
            lag["max"] = max(lag["max"], q.oldest_age_s())
        return {"events_replicated": self.stats.replicated, "events_pending": q.pending() if q else 0,
                "events_failed": self.stats.failed, "bytes_replicated": self.stats.bytes_replicated,
                "lag_seconds": lag, "bandwidth_bytes_per_sec": self.stats.bandwidth(),
                "destinations": dests}

    def conflicts(self) -> dict[str, Any]:
        st = self.resolver.stats
        snap = st.snapshot()
        by = snap["conflicts_total"]
        resolved = snap["resolved_total"]
        assert isinstance(by, dict) and isinstance(resolved, dict)
        return {"strategy": self.resolver.strategy.value, "conflicts_total": sum(by.values()),
                "resolved_total": sum(resolved.values()),
                "by_strategy": {k: v for k, v in by.items() if v}}


def _resolver(cfg: ClusterConfig) -> ConflictResolver:
    if cfg.conflict_resolver:
        return ConflictResolver("custom", custom=cfg.conflict_resolver)
    return ConflictResolver(cfg.conflict_resolution)


async def _empty() -> Any:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def _aclose(reader: Any) -> None:
    close = getattr(reader, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


__all__ = ["ClusterNode"]
