"""The bucket-cache generation every process on one storage root shares.

With RS3GW_WORKERS > 1 several processes serve the same root, each with its own cache of bucket
rows (LocalStore.get_bucket). A bucket write in one process must empty the others' caches: the
writer stores a fresh random 64-bit value in ``.rs3gw/buckets.gen`` after its commit, and every
process compares the value it cached under with the current one before it trusts a cache hit.

Why a random value and not a counter: two processes bumping at once must never leave the value
equal to one a reader already saw; a fresh random value differs from every earlier one (a
collision is a 2**-64 event) without a lock or an atomic add. A torn read or write of the 8 bytes
only yields another value that differs, i.e. one needless cache refill, never a stale hit.
Ordering: the value is replaced after the commit, and a reader takes it before its query, so a
row read before the commit is always kept under the old value and dropped at the next check.
"""
from __future__ import annotations

import mmap
import os
import struct

_GEN = struct.Struct("=Q")


class SharedGeneration:
    """An 8-byte value in a file, mapped shared; blocking only in open() (run it off the loop)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._map: mmap.mmap | None = None

    def open(self) -> None:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if os.fstat(fd).st_size < _GEN.size:
                # Every process may get here at once: pwrite of the same size is harmless, and
                # ftruncate only ever grows the file to exactly 8 bytes.
                os.ftruncate(fd, _GEN.size)
            self._map = mmap.mmap(fd, _GEN.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)   # the mapping keeps its own reference to the file

    def read(self) -> int:
        assert self._map is not None
        value: int = _GEN.unpack_from(self._map, 0)[0]
        return value

    def bump(self) -> None:
        """Publish "bucket rows changed" to every process (call after the commit)."""
        if self._map is None:
            return     # closed: a result delivered during close; nobody reads this store now
        _GEN.pack_into(self._map, 0, int.from_bytes(os.urandom(_GEN.size), "little"))

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
