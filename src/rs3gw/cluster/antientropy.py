"""Anti-entropy: replicas compare what they hold and push what the other lacks.

The queue, hand-off and newest-copy reads converge the cluster after the faults they know of. What
they cannot see — a crash between the local commit and the enqueue of an async write, a queue
entry dropped for a member that was removed, a replica set that changed under a write — is found
here. Every ANTI_ENTROPY round a node picks one live peer (round robin) and, for the objects both
of them should hold, compares PARTITIONS digests: each digest folds (bucket, key, write identity)
of the keys hashed to that partition, so equal partitions cost nothing more. For partitions that
differ the peer lists its entries; whatever version of ours wins over the peer's (or the peer
lacks) is pushed, with its bytes. The peer does the same towards us in its own rounds, so both
directions converge. A write's identity is its HLC, origin, ETag and tombstone flag, not its
vector: two nodes that merged the same concurrent writes in a different order hold equal data.
In a versioned bucket every version is an item of its own (storage.version_item), compared and
pushed like an object: a version one replica lacks, or a version's tombstone, travels the same
way.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable

from rs3gw.storage import OBJECT_KINDS, ReplicaStore, split_item

from . import stamps
from .messages import DigestRequest, Digests, KeyEntries, KeysRequest, StampEntry
from .peers import Peers
from .pusher import Pusher
from .rpc import Inbound, Rpc
from .topology import Topology
from .transport import TransportError
from .versions import ObjectVersion

log = logging.getLogger("rs3gw.cluster.antientropy")

PARTITIONS = 256
SCAN_PAGE = 1000
KEYS_PER_EXCHANGE_MAX = 20_000      # entries a peer returns for the differing partitions
PUSHES_PER_ROUND_MAX = 2_000


def _partition(bucket: str, key: str) -> int:
    h = hashlib.blake2b(f"{len(bucket)}:{bucket}{key}".encode("utf-8", "surrogatepass"),
                        digest_size=4).digest()
    return int.from_bytes(h, "big") % PARTITIONS


def identity(v: ObjectVersion) -> bytes:
    return f"{v.hlc.physical_ms}.{v.hlc.logical}|{v.origin}|{v.etag}|{int(v.tombstone)}".encode()


def digests(entries: Iterable[tuple[str, str, ObjectVersion]]) -> list[bytes]:
    acc = [0] * PARTITIONS
    for bucket, key, v in entries:
        h = hashlib.blake2b(f"{len(bucket)}:{bucket}{key}".encode("utf-8", "surrogatepass")
                            + b"\0" + identity(v), digest_size=16).digest()
        p = _partition(bucket, key)
        acc[p] ^= int.from_bytes(h, "big")      # order-free fold: both sides need no sorting
    return [a.to_bytes(16, "big") for a in acc]


class AntiEntropy:
    def __init__(self, store: ReplicaStore, topology: Topology, peers: Peers, pusher: Pusher,
                 stamper: stamps.Stamper, *, interval_s: float) -> None:
        self._store = store
        self._topology = topology
        self._peers = peers
        self._pusher = pusher
        self._stamper = stamper
        self._interval_s = interval_s

    def serve(self, rpc: Rpc) -> None:
        rpc.serve(DigestRequest, self.on_digest)
        rpc.serve(KeysRequest, self.on_keys)

    async def shared_entries(self, peer: str, parts: set[int] | None = None,
                             ) -> list[tuple[str, str, ObjectVersion]]:
        """(bucket, key, version) of every object stamp here whose replica set holds both this
        node and ``peer`` (optionally only in ``parts``)."""
        out: list[tuple[str, str, ObjectVersion]] = []
        me = self._topology.node_id
        for kind in OBJECT_KINDS:  # objects, and each version of a versioned key
            cursor = ("", "")
            while True:
                rows = await self._store.scan_stamps(kind, cursor, SCAN_PAGE)
                if not rows:
                    break
                for row in rows:
                    cursor = (row.bucket, row.key)
                    if parts is not None and _partition(row.bucket, row.key) not in parts:
                        continue
                    # Every version of a key lives on the key's replica set.
                    replicas = self._topology.replicas(row.bucket, split_item(row.key)[0])
                    if me not in replicas or peer not in replicas:
                        continue
                    v = stamps.decode(row.stamp)
                    if v is not None:
                        out.append((row.bucket, row.key, v))
                await asyncio.sleep(0)          # a big scan yields to requests between pages
        return out

    async def on_digest(self, req: DigestRequest, _in: Inbound) -> Digests:
        return Digests(digests=digests(await self.shared_entries(req.sender)))

    async def on_keys(self, req: KeysRequest, _in: Inbound) -> KeyEntries:
        entries = await self.shared_entries(req.sender, set(req.partitions))
        return KeyEntries(entries=[StampEntry(b, k, stamps.encode(v))
                                   for b, k, v in entries[:KEYS_PER_EXCHANGE_MAX]])

    async def sync_with(self, peer: str) -> int:
        """One exchange with ``peer``; returns the number of versions pushed to it."""
        me = self._topology.node_id
        mine = await self.shared_entries(peer)
        theirs = (await self._peers.call(peer, DigestRequest(sender=me))).digests
        ours = digests(mine)
        differ = [p for p in range(PARTITIONS) if p >= len(theirs) or theirs[p] != ours[p]]
        if not differ:
            return 0
        reply = await self._peers.call(peer, KeysRequest(sender=me, partitions=differ))
        remote: dict[tuple[str, str], ObjectVersion | None] = {
            (e.bucket, e.key): stamps.decode(e.stamp) for e in reply.entries}
        wanted = set(differ)
        pushed = 0
        for bucket, key, v in mine:
            if _partition(bucket, key) not in wanted:
                continue
            other = remote.get((bucket, key))
            if other is not None:
                if identity(other) == identity(v):
                    continue    # they have it
                winner = self._stamper.newest([v, other])
                if winner is None or not winner.same_write(v):
                    continue    # theirs wins; they push it to us in their rounds
            ev = await self._pusher.event_for(bucket, key, v)
            if ev is None:
                continue
            if await self._pusher.push(peer, ev) is not None:
                pushed += 1
                if pushed >= PUSHES_PER_ROUND_MAX:
                    break
        if pushed:
            log.info("anti-entropy: pushed %d versions to %s", pushed, peer)
        return pushed

    async def run(self) -> None:
        turn = 0
        while True:
            await asyncio.sleep(self._interval_s)
            peers = [n for n in self._topology.others() if self._topology.live(n)]
            if not peers:
                continue
            peer = peers[turn % len(peers)]
            turn += 1
            try:
                await self.sync_with(peer)
            except asyncio.CancelledError:
                raise
            except (TransportError, OSError) as e:
                log.info("anti-entropy with %s: %s", peer, e)
            except Exception:
                log.exception("anti-entropy with %s failed", peer)
