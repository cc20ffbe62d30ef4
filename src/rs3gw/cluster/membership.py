"""SWIM-style membership: who is in the cluster, and in what state.

Failure detection (SWIM): each gossip interval a node pings one member (round-robin over a
shuffled list). No ack within the ping timeout: it asks up to k other members to ping the target
for it (ping-req). No ack through any of them either: the target is *suspected*, and the suspicion
is gossiped. A suspected member is declared Failed after the heartbeat timeout unless it refutes:
a live node that hears it is suspected (or declared Failed) raises its incarnation above the
rumor's and announces itself again; a higher incarnation always wins. A paused process therefore
survives any pause shorter than the heartbeat timeout: one missed ping only makes it suspect.

Dissemination: every message (request and reply) carries the sender's own record, and piggybacks
a few recent updates, each retransmitted O(log n) times. A full-state exchange (push-pull) with one
random member every heartbeat interval repairs anything gossip lost, and retries seeds that are
not Active members, so a restarted seed, or two halves of a healed partition, find each other.

Ordering of records about one node (the rule every node applies): higher incarnation wins; at the
same incarnation Failed > suspected > Leaving > Joining/Active. A node bumps its own incarnation on
each of its own changes (Joining → Active, Leaving, new metadata), so its own statements always win
over older rumors. Incarnations start at the wall clock in milliseconds, so a node restarted with the
same id outranks every record of its previous life (it also refutes if its clock went backwards).

Graceful leave: the node announces Leaving, keeps serving for a drain period, then tells every
member it is gone and stops; members forget it (a tombstone keeps old rumors from resurrecting it).
A Leaving member that stops answering is forgotten the same way, never declared Failed.
"""
from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .. import __version__
from .config import ClusterConfig
from .messages import Ack, Done, Gone, MemberRecord, Ping, PingReq, PingReqAck, Request, Sync, SyncAck
from .rpc import Inbound, Rpc
from .transport import Address, Transport, TransportError, TransportLimits, ssl_contexts

log = logging.getLogger("rs3gw.cluster.membership")

PIGGYBACK_MAX = 8                 # updates per message
RETRANSMIT_MULT = 3               # each update is sent RETRANSMIT_MULT * ceil(log2(n + 1)) times
PROBES_INFLIGHT_MAX = 2           # a probe can outlast its period; more than this and we skip one
TOMBSTONES_MAX = 4096
SYNC_MEMBERS_MAX = 4096           # records accepted from one full-state exchange


class NodeState(enum.StrEnum):
    STARTING = "Starting"
    JOINING = "Joining"
    ACTIVE = "Active"
    LEAVING = "Leaving"
    FAILED = "Failed"


@dataclass(frozen=True)
class Member:
    node_id: str
    address: Address
    state: NodeState
    incarnation: int
    suspect: bool = False
    last_seen: float = 0.0          # wall clock of the last message from this node (0: never)
    version: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.state is not NodeState.FAILED


@dataclass(frozen=True)
class MemberEvent:
    """One change seen by this node. removed: the member left (or its Failed record expired)."""
    member: Member
    previous: Member | None
    removed: bool = False


Listener = Callable[[MemberEvent], None]


def _rank(state: NodeState, suspect: bool) -> int:
    if state is NodeState.FAILED:
        return 3
    if suspect:
        return 2
    return 1 if state is NodeState.LEAVING else 0


def _encode(m: Member) -> MemberRecord:
    return MemberRecord(node_id=m.node_id, host=m.address[0], port=m.address[1],
                        state=m.state.value, incarnation=m.incarnation, suspect=m.suspect,
                        version=m.version, metadata=dict(m.metadata))


def _decode(r: MemberRecord | None) -> Member | None:
    """None for a record this release cannot use (a state a later release added)."""
    if r is None:
        return None
    try:
        state = NodeState(r.state)
    except ValueError:
        return None
    return Member(node_id=r.node_id, address=(r.host, r.port), state=state,
                  incarnation=r.incarnation, suspect=r.suspect, version=r.version,
                  metadata=r.metadata)


class Membership:
    """The member list of one node. start() → (Active) → leave() or close()."""

    def __init__(self, config: ClusterConfig, *, rpc: Rpc | None = None,
                 version: str = __version__, metadata: Mapping[str, Any] | None = None,
                 rng: random.Random | None = None) -> None:
        """``rpc``: the node's typed endpoint over its listening transport; membership starts
        that listener and closes it (without one, it makes its own from the config)."""
        if not config.node_id:
            raise ValueError("ClusterConfig.node_id is empty")
        self.config = config
        if rpc is None:
            server_ssl, client_ssl = ssl_contexts(config)
            rpc = Rpc(Transport((config.bind_host, config.bind_port),
                                limits=TransportLimits.from_config(config),
                                server_ssl=server_ssl, client_ssl=client_ssl),
                      request_timeout_s=config.request_timeout_s)
        self._rpc = rpc
        self.transport = rpc.transport
        self._rng = rng or random.Random()
        self._local = Member(config.node_id, config.advertise_addr, NodeState.STARTING,
                             time.time_ns() // 1_000_000, version=version, metadata=dict(metadata or {}))
        self._members: dict[str, Member] = {}
        self._suspicion: dict[str, asyncio.TimerHandle] = {}
        self._failed_at: dict[str, float] = {}          # monotonic time each member was declared Failed
        self._tombstones: dict[str, tuple[int, float]] = {}   # id -> (incarnation, monotonic expiry)
        self._broadcasts: dict[str, list[Any]] = {}     # id -> [MemberRecord, times sent]
        self._listeners: list[Listener] = []
        self._probe_order: list[str] = []
        self._probes: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._joined = asyncio.Event()
        self._closed = False
        # A ping waits half a period for its ack; ping-reqs get the rest of it.
        self.ping_timeout_s = config.gossip_interval_s / 2
        self.indirect_timeout_s = config.gossip_interval_s
        rpc.serve(Ping, self._on_ping)
        rpc.serve(PingReq, self._on_ping_req)
        rpc.serve(Sync, self._on_sync)
        rpc.serve(Gone, self._on_gone)

    # --- public surface ----------------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._local.node_id

    @property
    def local(self) -> Member:
        return self._local

    def members(self) -> list[Member]:
        """Every known member, this node included, sorted by node id (Failed ones too)."""
        return sorted([self._local, *self._members.values()], key=lambda m: m.node_id)

    def active_members(self) -> list[Member]:
        return [m for m in self.members() if m.state is NodeState.ACTIVE]

    def get(self, node_id: str) -> Member | None:
        return self._local if node_id == self.node_id else self._members.get(node_id)

    def on_change(self, listener: Listener) -> Callable[[], None]:
        """Call listener(event) on the event loop for every change; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def start(self) -> None:
        """Listen, then join through the seeds in the background (retried until one answers)."""
        addr = await self.transport.start()
        if self.config.advertise_port == 0:     # tests bind port 0 and advertise what they got
            self._local = replace(self._local, address=(self._local.address[0], addr[1]))
        self._set_local(NodeState.JOINING)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._join_loop()), loop.create_task(self._probe_loop()),
                       loop.create_task(self._sync_loop())]

    async def wait_joined(self) -> None:
        await self._joined.wait()

    def update_metadata(self, metadata: Mapping[str, Any]) -> None:
        self._local = replace(self._local, metadata=dict(metadata))
        self._set_local(self._local.state)

    def mark_leaving(self) -> None:
        """Announce Leaving now (peers stop placing new data here); the node goes later."""
        if self._local.state is not NodeState.LEAVING:
            self._set_local(NodeState.LEAVING)

    async def leave(self, drain_s: float | None = None) -> None:
        """Graceful leave: announce Leaving, drain, tell members we are gone, stop."""
        if self._closed:
            return
        drain_s = 2 * self.config.gossip_interval_s if drain_s is None else drain_s
        self._set_local(NodeState.LEAVING)
        await self._push_to_all(lambda: Sync(sender=self._rec(), members=self._all_records()))
        await asyncio.sleep(drain_s)
        await self._push_to_all(lambda: Gone(sender=self._rec()))
        await self.close()

    async def close(self) -> None:
        """Stop without announcing anything (peers will suspect, then declare Failed)."""
        if self._closed:
            return
        self._closed = True
        tasks = [*self._tasks, *self._probes]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for h in self._suspicion.values():
            h.cancel()
        self._suspicion.clear()
        await self.transport.close()

    # --- local state ---------------------------------------------------------------------------------

    def _rec(self) -> MemberRecord:
        return _encode(self._local)

    def _set_local(self, state: NodeState, at_least: int = 0) -> None:
        prev = self._local
        inc = max(prev.incarnation, at_least) + 1
        self._local = replace(prev, state=state, incarnation=inc, suspect=False, last_seen=time.time())
        self._queue(self._local)
        self._emit(MemberEvent(self._local, prev))

    def _about_me(self, r: Member) -> None:
        me = self._local
        if r.incarnation < me.incarnation:
            return
        if r.incarnation == me.incarnation and r.state is me.state and not r.suspect:
            return
        # Someone holds a record of us at our incarnation or above that is not what we say
        # (suspected, Failed, or a previous life's): refute with a higher incarnation.
        log.info("refuting %s%s at incarnation %d", r.state.value, " (suspect)" if r.suspect else "",
                 r.incarnation)
        self._set_local(me.state, at_least=r.incarnation)

    # --- applying records -------------------------------------------------------------------------

    def _apply(self, r: Member, *, direct: bool = False) -> None:
        if r.node_id == self.node_id:
            self._about_me(r)
            return
        now = time.monotonic()
        tomb = self._tombstones.get(r.node_id)
        if tomb is not None:
            if r.incarnation <= tomb[0] and tomb[1] > now:
                return
            del self._tombstones[r.node_id]
        cur = self._members.get(r.node_id)
        if cur is not None and (r.incarnation < cur.incarnation or (
                r.incarnation == cur.incarnation
                and _rank(r.state, r.suspect) <= _rank(cur.state, cur.suspect))):
            if direct:
                self._members[r.node_id] = replace(cur, last_seen=time.time())
            return
        new = replace(r, suspect=r.suspect and r.state is not NodeState.FAILED,
                      last_seen=time.time() if direct else (cur.last_seen if cur else 0.0))
        self._members[r.node_id] = new
        if new.suspect:
            if cur is None or not cur.suspect or cur.incarnation != new.incarnation:
                self._start_suspicion(new)
        else:
            self._cancel_suspicion(new.node_id)
        if new.state is NodeState.FAILED:
            self._failed_at[new.node_id] = now
        else:
            self._failed_at.pop(new.node_id, None)
        self._queue(new)
        self._emit(MemberEvent(new, cur))

    def _apply_all(self, records: Iterable[MemberRecord],
                   sender: MemberRecord | None = None) -> None:
        if sender is not None:
            s = _decode(sender)
            if s is not None:
                self._apply(s, direct=True)
                if s.node_id != self.node_id and self._local.state is NodeState.JOINING:
                    self._joined_now()      # any peer that talks to us has let us in
        for i, d in enumerate(records):
            if i >= SYNC_MEMBERS_MAX:
                break
            r = _decode(d)
            if r is not None:
                self._apply(r)

    def _remove(self, node_id: str, incarnation: int) -> None:
        cur = self._members.pop(node_id, None)
        self._cancel_suspicion(node_id)
        self._failed_at.pop(node_id, None)
        self._broadcasts.pop(node_id, None)
        if len(self._tombstones) >= TOMBSTONES_MAX:
            del self._tombstones[min(self._tombstones, key=lambda k: self._tombstones[k][1])]
        keep_s = max(self.config.failed_retention_s, 10 * self.config.heartbeat_timeout_s)
        self._tombstones[node_id] = (max(incarnation, cur.incarnation if cur else 0),
                                     time.monotonic() + keep_s)
        if cur is not None:
            log.info("member %s %s: removed", node_id, cur.address)
            self._emit(MemberEvent(cur, cur, removed=True))

    def _start_suspicion(self, m: Member) -> None:
        self._cancel_suspicion(m.node_id)
        log.info("member %s %s suspected (incarnation %d)", m.node_id, m.address, m.incarnation)
        self._suspicion[m.node_id] = asyncio.get_running_loop().call_later(
            self.config.heartbeat_timeout_s, self._suspicion_expired, m.node_id, m.incarnation)

    def _cancel_suspicion(self, node_id: str) -> None:
        h = self._suspicion.pop(node_id, None)
        if h is not None:
            h.cancel()

    def _suspicion_expired(self, node_id: str, incarnation: int) -> None:
        self._suspicion.pop(node_id, None)
        cur = self._members.get(node_id)
        if cur is None or not cur.suspect or cur.incarnation != incarnation:
            return
        log.warning("member %s %s Failed: no refutation within %ss", node_id, cur.address,
                    self.config.heartbeat_timeout_s)
        self._apply(replace(cur, state=NodeState.FAILED, suspect=False))

    def _joined_now(self) -> None:
        if self._local.state is NodeState.JOINING:
            self._set_local(NodeState.ACTIVE)
        self._joined.set()

    # --- dissemination ---------------------------------------------------------------------------------

    def _queue(self, m: Member) -> None:
        self._broadcasts[m.node_id] = [_encode(m), 0]

    def _piggyback(self) -> list[MemberRecord]:
        if not self._broadcasts:
            return []
        limit = RETRANSMIT_MULT * math.ceil(math.log2(len(self._members) + 2))
        picked = sorted(self._broadcasts.items(), key=lambda kv: kv[1][1])[:PIGGYBACK_MAX]
        out = []
        for node_id, entry in picked:
            out.append(entry[0])
            entry[1] += 1
            if entry[1] >= limit:
                del self._broadcasts[node_id]
        return out

    def _updates_for(self, sender: MemberRecord) -> list[MemberRecord]:
        """Piggybacked updates, plus our record of the sender when it should refute it."""
        out = self._piggyback()
        s = _decode(sender)
        if s is not None:
            mine = self._members.get(s.node_id)
            if mine is not None and mine.incarnation >= s.incarnation and (
                    mine.suspect or mine.state is NodeState.FAILED):
                out.append(_encode(mine))
            tomb = self._tombstones.get(s.node_id)
            if mine is None and tomb is not None and tomb[0] >= s.incarnation:
                out.append(_encode(replace(s, state=NodeState.FAILED, incarnation=tomb[0])))
        return out

    def _all_records(self) -> list[MemberRecord]:
        return [_encode(m) for m in self.members()]

    def _emit(self, ev: MemberEvent) -> None:
        for cb in list(self._listeners):
            try:
                cb(ev)
            except Exception:
                log.exception("membership listener %r failed", cb)

    # --- handlers --------------------------------------------------------------------------------------

    async def _on_ping(self, req: Ping, _in: Inbound) -> Ack:
        self._apply_all(req.updates, req.sender)
        return Ack(sender=self._rec(), updates=self._updates_for(req.sender))

    async def _on_ping_req(self, req: PingReq, _in: Inbound) -> PingReqAck:
        self._apply_all(req.updates, req.sender)
        target = _decode(req.target)
        ok = target is not None and await self._ping(target, self.ping_timeout_s)
        return PingReqAck(sender=self._rec(), ok=ok, updates=self._updates_for(req.sender))

    async def _on_sync(self, req: Sync, _in: Inbound) -> SyncAck:
        reply = SyncAck(sender=self._rec(), members=self._all_records(),
                        updates=self._updates_for(req.sender))
        self._apply_all(req.members, req.sender)
        return reply

    async def _on_gone(self, req: Gone, _in: Inbound) -> Done:
        s = _decode(req.sender)
        if s is not None and s.node_id != self.node_id and s.state is NodeState.LEAVING:
            cur = self._members.get(s.node_id)
            if cur is None or cur.incarnation <= s.incarnation:
                self._remove(s.node_id, s.incarnation)
        return Done()

    # --- outgoing --------------------------------------------------------------------------------------

    async def _call(self, addr: Address, req: Request[Any], timeout_s: float) -> Any:
        """The reply, or None when the peer did not answer (a reason to suspect it, logged)."""
        try:
            return (await self._rpc.request(addr, req, timeout_s=timeout_s)).reply
        except TransportError as e:
            log.debug("%s to %s: %s", req.TYPE, addr, e)
            return None

    async def _ping(self, target: Member, timeout_s: float) -> bool:
        ack = await self._call(target.address, Ping(sender=self._rec(), updates=self._piggyback()),
                               timeout_s)
        if not isinstance(ack, Ack):
            return False
        self._apply_all(ack.updates, ack.sender)
        # An answer from whoever now lives at that address is not an answer from the target.
        return ack.sender.node_id == target.node_id

    async def _ping_req(self, helper: Member, target: Member) -> bool:
        ack = await self._call(helper.address, PingReq(sender=self._rec(), target=_encode(target),
                                                       updates=self._piggyback()),
                               self.indirect_timeout_s)
        if not isinstance(ack, PingReqAck):
            return False
        self._apply_all(ack.updates, ack.sender)
        return ack.ok

    async def _sync(self, addr: Address, timeout_s: float) -> bool:
        ack = await self._call(addr, Sync(sender=self._rec(), members=self._all_records()),
                               timeout_s)
        if not isinstance(ack, SyncAck):
            return False
        self._apply_all([*ack.members, *ack.updates], ack.sender)
        return True

    async def _push_to_all(self, make: Callable[[], Request[Any]]) -> None:
        targets = [m for m in self._members.values() if m.alive]
        await asyncio.gather(*(self._call(m.address, make(), self.indirect_timeout_s)
                               for m in targets))

    # --- loops -----------------------------------------------------------------------------------------

    def _seeds(self) -> list[Address]:
        return [s for s in self.config.seed_nodes if s != self._local.address]

    async def _join_loop(self) -> None:
        delay = self.config.gossip_interval_s
        while self._local.state is NodeState.JOINING:
            seeds = self._seeds()
            if not seeds:
                break
            # Seeds that are not up yet are retried, with a backoff capped at the heartbeat interval.
            results = await asyncio.gather(*(self._sync(s, self.indirect_timeout_s) for s in seeds))
            if any(results) or self._local.state is not NodeState.JOINING:
                break
            log.info("no seed answered (%s); retrying in %.1fs", ", ".join(f"{h}:{p}" for h, p in seeds),
                     delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.heartbeat_interval_s)
        self._joined_now()

    def _next_probe_target(self) -> Member | None:
        for _ in range(2):
            while self._probe_order:
                m = self._members.get(self._probe_order.pop())
                if m is not None and m.alive:
                    return m
            # SWIM's round-robin: every member is probed once per pass, in a fresh random order.
            self._probe_order = [k for k, m in self._members.items() if m.alive]
            self._rng.shuffle(self._probe_order)
        return None

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.gossip_interval_s)
            self._probes = {t for t in self._probes if not t.done()}
            if len(self._probes) >= PROBES_INFLIGHT_MAX:
                continue
            target = self._next_probe_target()
            if target is not None:
                self._probes.add(asyncio.get_running_loop().create_task(self._probe(target)))

    async def _probe(self, target: Member) -> None:
        if await self._ping(target, self.ping_timeout_s):
            return
        helpers = [m for m in self._members.values()
                   if m.node_id != target.node_id and m.state is NodeState.ACTIVE and not m.suspect]
        helpers = self._rng.sample(helpers, min(len(helpers), self.config.indirect_ping_count))
        if helpers and any(await asyncio.gather(*(self._ping_req(h, target) for h in helpers))):
            return
        cur = self._members.get(target.node_id)
        if cur is None or cur.incarnation != target.incarnation or not cur.alive:
            return      # it changed meanwhile (refuted, left, rejoined): judge it again next time
        if cur.state is NodeState.LEAVING:
            self._remove(cur.node_id, cur.incarnation)
        elif not cur.suspect:
            self._apply(replace(cur, suspect=True))

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval_s)
            self._reap()
            live = [m for m in self._members.values() if m.alive]
            jobs = []
            if live:
                jobs.append(self._sync(self._rng.choice(live).address, self.indirect_timeout_s))
            active_addrs = {m.address for m in self._members.values() if m.state is NodeState.ACTIVE}
            jobs += [self._sync(s, self.indirect_timeout_s) for s in self._seeds() if s not in active_addrs]
            await asyncio.gather(*jobs)

    def _reap(self) -> None:
        now = time.monotonic()
        for node_id, at in list(self._failed_at.items()):
            if now - at >= self.config.failed_retention_s:
                m = self._members.get(node_id)
                self._remove(node_id, m.incarnation if m else 0)
        for node_id, (_, expiry) in list(self._tombstones.items()):
            if expiry <= now:
                del self._tombstones[node_id]

    def __repr__(self) -> str:
        with contextlib.suppress(Exception):
            return f"<Membership {self.node_id} {self._local.state.value} members={len(self._members)}>"
        return "<Membership>"
