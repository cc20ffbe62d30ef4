"""Placement: which nodes hold (bucket, key). Rendezvous (highest random weight) hashing.

Every node scores every (bucket, key) with a keyed hash of its node id; the replication_factor
highest scores are the replica set, in order (the first is the preferred coordinator). Adding or
removing one node moves only the keys whose replica set contains that node, with no ring, no
virtual nodes and no coordination: every node computes the same answer from the same member list.

The hash is BLAKE2b with 8-byte output over length-prefixed fields, so (bucket, key) pairs never
collide by concatenation (keys can hold any byte sequence S3 allows, NUL included).
"""
from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

_LEN = struct.Struct(">I")
_PERSON = b"rs3gw-rdv-v1"


def _blob(bucket: str, key: str) -> bytes:
    b, k = bucket.encode(), key.encode("utf-8", "surrogatepass")
    return _LEN.pack(len(b)) + b + _LEN.pack(len(k)) + k


def _node_hasher(node_id: str) -> hashlib.blake2b:
    n = node_id.encode()
    h = hashlib.blake2b(digest_size=8, person=_PERSON)
    h.update(_LEN.pack(len(n)) + n)
    return h


def score(node_id: str, bucket: str, key: str) -> int:
    h = _node_hasher(node_id)
    h.update(_blob(bucket, key))
    return int.from_bytes(h.digest(), "big")


def replica_set(bucket: str, key: str, nodes: Iterable[str], replication_factor: int) -> list[str]:
    """The replication_factor nodes with the highest scores, best first (fewer if fewer nodes)."""
    return Placement(replication_factor, nodes).replicas(bucket, key)


class Placement:
    """Replica sets over a node set; update() when membership changes (cluster/topology.py)."""

    def __init__(self, replication_factor: int, nodes: Iterable[str] = ()) -> None:
        if replication_factor <= 0:
            raise ValueError("replication_factor must be > 0")
        self.replication_factor = replication_factor
        self._hashers: dict[str, hashlib.blake2b] = {}
        self.update(nodes)

    @property
    def nodes(self) -> list[str]:
        return sorted(self._hashers)

    def update(self, nodes: Iterable[str]) -> None:
        # The per-node hash state is prefixed once; each lookup copies it and adds the key.
        self._hashers = {n: self._hashers.get(n) or _node_hasher(n) for n in set(nodes)}

    def replicas(self, bucket: str, key: str) -> list[str]:
        blob = _blob(bucket, key)
        scored = []
        for node_id, base in self._hashers.items():
            h = base.copy()
            h.update(blob)
            scored.append((int.from_bytes(h.digest(), "big"), node_id))
        # Ties (a 64-bit collision) are broken by node id so every node agrees.
        scored.sort(reverse=True)
        return [n for _, n in scored[:self.replication_factor]]
