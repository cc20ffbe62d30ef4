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
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import stamps
from .handoff import event_for, push_event
from .transport import Message, RemoteError, TransportError
from .versions import ObjectVersion

if TYPE_CHECKING:
    from .node import ClusterNode

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


async def shared_entries(node: ClusterNode, peer: str,
                         parts: set[int] | None = None) -> Iterable[tuple[str, str, ObjectVersion]]:
    """(bucket, key, version) of every object stamp here whose replica set holds both this node
    and ``peer`` (optionally only in ``parts``)."""
    out: list[tuple[str, str, ObjectVersion]] = []
    cursor = ("", "")
    me = node.node_id
    while True:
        rows = await node.store.list_stamps("object", cursor, SCAN_PAGE)
        if not rows:
            return out
        for bucket, key, blob, _tomb in rows:
            cursor = (bucket, key)
            if parts is not None and _partition(bucket, key) not in parts:
                continue
            replicas = node.replicas(bucket, key)
            if me not in replicas or peer not in replicas:
                continue
            v = stamps.decode(blob)
            if v is not None:
                out.append((bucket, key, v))
        await asyncio.sleep(0)          # a big scan yields to requests between pages


def digests(entries: Iterable[tuple[str, str, ObjectVersion]]) -> list[bytes]:
    acc = [0] * PARTITIONS
    for bucket, key, v in entries:
        h = hashlib.blake2b(f"{len(bucket)}:{bucket}{key}".encode("utf-8", "surrogatepass")
                            + b"\0" + identity(v), digest_size=16).digest()
        p = _partition(bucket, key)
        acc[p] ^= int.from_bytes(h, "big")      # order-free fold: both sides need no sorting
    return [a.to_bytes(16, "big") for a in acc]


async def on_digest(node: ClusterNode, msg: Message) -> dict[str, Any]:
    peer = msg.body.get("from")
    if not isinstance(peer, str):
        raise RemoteError("BadRequest", "rep.ae_digest needs the asking node's id")
    return {"d": digests(await shared_entries(node, peer))}


async def on_keys(node: ClusterNode, msg: Message) -> dict[str, Any]:
    peer = msg.body.get("from")
    parts = msg.body.get("p")
    if not isinstance(peer, str) or not isinstance(parts, list):
        raise RemoteError("BadRequest", "rep.ae_keys needs the asking node's id and partitions")
    entries = list(await shared_entries(node, peer, {int(p) for p in parts}))
    return {"e": [[b, k, stamps.encode(v)] for b, k, v in entries[:KEYS_PER_EXCHANGE_MAX]]}


async def sync_with(node: ClusterNode, peer: str) -> int:
    """One exchange with ``peer``; returns the number of versions pushed to it."""
    mine = list(await shared_entries(node, peer))
    reply = await node.call(peer, "rep.ae_digest", {"from": node.node_id})
    theirs = reply.body.get("d") or []
    ours = digests(mine)
    differ = [p for p in range(PARTITIONS) if p >= len(theirs) or theirs[p] != ours[p]]
    if not differ:
        return 0
    reply = await node.call(peer, "rep.ae_keys", {"from": node.node_id, "p": differ})
    remote: dict[tuple[str, str], ObjectVersion | None] = {
        (b, k): stamps.decode(s) for b, k, s in reply.body.get("e") or []}
    wanted = set(differ)
    pushed = 0
    for bucket, key, v in mine:
        if _partition(bucket, key) not in wanted:
            continue
        other = remote.get((bucket, key))
        if other is not None:
            if identity(other) == identity(v):
                continue    # they have it
            winner = stamps.newest([v, other], node.read_resolver)
            if winner is None or not winner.same_write(v):
                continue    # theirs wins; they push it to us in their rounds
        ev = await event_for(node, bucket, key, v)
        if ev is None:
            continue
        if await push_event(node, peer, ev):
            pushed += 1
            if pushed >= PUSHES_PER_ROUND_MAX:
                break
    if pushed:
        log.info("anti-entropy: pushed %d versions to %s", pushed, peer)
    return pushed


async def loop(node: ClusterNode) -> None:
    turn = 0
    while True:
        await asyncio.sleep(node.cfg.anti_entropy_interval_s)
        peers = [n for n in node.others() if node.live(n)]
        if not peers:
            continue
        peer = peers[turn % len(peers)]
        turn += 1
        try:
            await sync_with(node, peer)
        except asyncio.CancelledError:
            raise
        except (TransportError, OSError) as e:
            log.debug("anti-entropy with %s: %s", peer, e)
        except Exception:
            log.exception("anti-entropy with %s failed", peer)
