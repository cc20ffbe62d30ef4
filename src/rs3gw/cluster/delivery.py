"""Delivery: the durable outbound queue (cluster/queue.py) and one sender task per destination.

A sender takes up to SEND_BATCH_EVENTS from the head of its destination's queue, sends the small
events (bodies up to BATCH_DATA_MAX inline) as one zstd batch frame (ApplyBatch) and each larger
PutObject on its own with its bytes (ApplyEvent, read from the local copy), acks what was applied
and puts the rest back for a retry with backoff. A destination that is not live is skipped until
it is; nothing is dropped. A PutObject delivered from a hint may let the hint go (cluster/hints.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from rs3gw._core import load

from .events import DeleteObject, PutObject, ReplicationEvent
from .hints import Hints
from .messages import ApplyBatch, ApplyEvent
from .objectdata import aclose
from .peers import Peers
from .pusher import Pusher
from .queue import QueuedEvent, ReplicationQueue
from .stats import ReplicationStats
from .topology import Topology
from .transport import TransportError

# RS3GW_CORE picks the compiled framing or its reference twin (rs3gw._core.load).
framing = load("batch")

log = logging.getLogger("rs3gw.cluster.delivery")

SEND_BATCH_EVENTS = 64
BATCH_DATA_MAX = 256 << 10         # PutObject bodies up to this travel inside a batch frame

Outcome = tuple[list[QueuedEvent], list[QueuedEvent], str | None]


class Delivery:
    def __init__(self, queue: ReplicationQueue, topology: Topology, peers: Peers, pusher: Pusher,
                 hints: Hints, stats: ReplicationStats, *, idle_wait_s: float) -> None:
        self.queue = queue
        self._topology = topology
        self._peers = peers
        self._pusher = pusher
        self._hints = hints
        self._stats = stats
        self._idle_wait_s = idle_wait_s      # how long a sender waits for a dead destination
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    def start(self) -> None:
        """Senders for every destination with events left from before a restart."""
        for dest in self.queue.destinations():
            self._ensure_sender(dest)

    async def close(self) -> None:
        self._closing = True
        for t in self._senders.values():
            t.cancel()
        await asyncio.gather(*self._senders.values(), return_exceptions=True)

    async def enqueue(self, event: ReplicationEvent, dests: list[str]) -> None:
        # A DeleteObject is enqueued even with nobody to send it to: that records the tombstone
        # (with this node's ack) for garbage collection once every replica holds it.
        if not dests and not isinstance(event, DeleteObject):
            return
        await self.queue.enqueue(event, dests)
        for d in dests:
            self._ensure_sender(d)

    def deliverable(self) -> bool:
        """Some destination with queued events is live (a leaving node waits for those)."""
        return any(self._topology.live(d) for d in self.queue.destinations())

    def _ensure_sender(self, dest: str) -> None:
        t = self._senders.get(dest)
        if (t is None or t.done()) and not self._closing:
            self._senders[dest] = asyncio.get_running_loop().create_task(self._sender(dest))

    async def _sender(self, dest: str) -> None:
        q = self.queue
        while not self._closing:
            if not await q.wait_for_events(dest, timeout_s=1.0):
                continue
            if not self._topology.live(dest):
                await asyncio.sleep(self._idle_wait_s)
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
                    if isinstance(ev, PutObject):
                        with contextlib.suppress(Exception):
                            await self._hints.delivered(ev)
                self._stats.delivered(dest, len(done), 0,
                                      [(now_ms - e.enqueued_ms) / 1000.0 for e in done])
            if failed:
                self._stats.delivery_failed(dest, len(failed), err)
                delay = await q.retry(dest, [e.seq for e in failed], err or "failed")
                log.debug("replication to %s: %d events failed (%s); retry in %.1fs", dest,
                          len(failed), err, delay)

    async def _deliver(self, dest: str, batch: list[QueuedEvent]) -> Outcome:
        done: list[QueuedEvent] = []
        failed: list[QueuedEvent] = []
        err: str | None = None
        small: list[tuple[QueuedEvent, ReplicationEvent, bytes | None]] = []
        for qe in batch:
            ev = qe.decode()
            if not isinstance(ev, PutObject):
                small.append((qe, ev, None))
                continue
            src = await self._pusher.source(ev)
            if src is None:
                done.append(qe)          # superseded here: the newer write has its own event
                continue
            meta, reader = src
            if meta.size > BATCH_DATA_MAX:
                try:
                    await self._peers.call(dest, ApplyEvent(event=ev), stream=reader,
                                           stream_length=meta.size)
                    self._stats.sent(meta.size)
                    done.append(qe)
                except (TransportError, OSError) as e:
                    failed.append(qe)
                    err = f"{type(e).__name__}: {e}"
                finally:
                    await aclose(reader)
                continue
            try:
                data = b"".join([bytes(c) async for c in reader])
            finally:
                await aclose(reader)
            small.append((qe, ev, data))
        if small:
            d2, f2, e2 = await self._send_frame(dest, small)
            done += d2
            failed += f2
            err = e2 or err
        return done, failed, err

    async def _send_frame(self, dest: str,
                          small: list[tuple[QueuedEvent, ReplicationEvent, bytes | None]]) -> Outcome:
        enc = framing.BatchEncoder(codec="zstd", level=1)
        for _qe, ev, body in small:
            enc.add(ev.encode(), body)
        frame = enc.flush()
        try:
            reply = await self._peers.call(dest, ApplyBatch(), stream=frame,
                                           stream_length=len(frame))
        except (TransportError, OSError) as e:
            return [], [qe for qe, _e, _d in small], f"{type(e).__name__}: {e}"
        self._stats.sent(len(frame))
        done: list[QueuedEvent] = []
        failed: list[QueuedEvent] = []
        err: str | None = None
        for (qe, _ev, _d), r in zip(small, reply.applied, strict=False):
            (done if r is not None else failed).append(qe)
        failed.extend(qe for qe, _e, _d in small[len(reply.applied):])
        if any(r is None for r in reply.applied):
            err = "NoSuchBucket at the destination (its bucket event not applied yet)"
        return done, failed, err
