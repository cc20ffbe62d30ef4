"""Deterministic object contents: every process derives the same bytes for (seed, size, key index)
without talking to the others, so a GET can be checked against what the PUT sent.

Key i's object is one random block per (seed, size) with i stamped in its first 16 bytes, so a server
that answers with another key's bytes fails the check.
"""

from __future__ import annotations

import base64
import hashlib
import random
from functools import lru_cache

from awscrt import checksums

STAMP_BYTES = 16
CACHE_BYTES_MIN = 1 << 20      # payloads this large are built once and kept; smaller ones per request


@lru_cache(maxsize=8)
def _base(seed: int, size: int) -> bytes:
    return random.Random(seed * 1_000_003 + size).randbytes(size)


def object_bytes(seed: int, size: int, index: int) -> bytes:
    base = _base(seed, size)
    if size < STAMP_BYTES:
        return base
    return f"{index:0{STAMP_BYTES}d}".encode() + base[STAMP_BYTES:]


@lru_cache(maxsize=16)
def _cached(seed: int, size: int, index: int) -> tuple[bytes, str, str, str]:
    return _describe(object_bytes(seed, size, index))


def _describe(data: bytes) -> tuple[bytes, str, str, str]:
    md5 = hashlib.md5(data)
    crc = checksums.crc32c(data).to_bytes(4, "big")
    return data, md5.hexdigest(), base64.b64encode(md5.digest()).decode(), base64.b64encode(crc).decode()


def described(seed: int, size: int, index: int) -> tuple[bytes, str, str, str]:
    """(bytes, md5 hex, Content-MD5 value, x-amz-checksum-crc32c value) of key `index`'s object."""
    if size >= CACHE_BYTES_MIN:
        return _cached(seed, size, index)
    return _describe(object_bytes(seed, size, index))


def key_name(prefix: str, index: int) -> str:
    return f"{prefix}/{index:08d}"
