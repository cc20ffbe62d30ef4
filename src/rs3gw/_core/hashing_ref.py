"""Pure-Python reference twin of rs3gw._core.hashing: same API, used by the tests as an oracle.

Digests from hashlib, CRCs from the byte-at-a-time tables of crc_ref: no blocking, no one-pass
loop, nothing shared with the compiled module's code paths. Not a production path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from rs3gw._core import crc_ref

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer arrives in 3.12

backend = "reference"
ALGOS: tuple[str, ...] = ("md5", "crc32", "crc32c", "crc64nvme", "sha1", "sha256")

_CRCS: dict[str, tuple[Callable[..., int], int]] = {
    "crc32": (crc_ref.crc32, 4),
    "crc32c": (crc_ref.crc32c, 4),
    "crc64nvme": (crc_ref.crc64nvme, 8),
}


class Hasher:
    """Any subset of ALGOS over one stream; the busy flag mirrors the compiled one."""

    __slots__ = ("_algos", "_busy", "_crcs", "_digests", "_size")

    def __init__(self, algos: Iterable[str]) -> None:
        if isinstance(algos, (str, bytes)):
            raise TypeError("algos must be an iterable of names, not a single string")
        order: list[str] = []
        for algo in algos:
            if not isinstance(algo, str):
                raise TypeError(f"algorithm names are str, not {type(algo).__name__}")
            if algo not in ALGOS:
                raise ValueError(f"unsupported hash algorithm {algo!r}")
            if algo not in order:
                order.append(algo)
        self._algos = tuple(order)
        self._digests = {a: hashlib.new(a) for a in order if a not in _CRCS}
        self._crcs = {a: 0 for a in order if a in _CRCS}
        self._size = 0
        self._busy = False

    @property
    def algos(self) -> tuple[str, ...]:
        return self._algos

    @property
    def size(self) -> int:
        return self._size

    def _enter(self) -> None:
        if self._busy:
            raise RuntimeError("Hasher is in use by another thread; use one Hasher per thread")
        self._busy = True

    def update(self, data: Buffer) -> None:
        view = memoryview(data)
        if not view.c_contiguous:
            raise BufferError("data must be a C-contiguous buffer")
        raw = view.cast("B")
        self._enter()
        try:
            for h in self._digests.values():
                h.update(raw)
            for algo in self._crcs:
                self._crcs[algo] = _CRCS[algo][0](raw, self._crcs[algo])
            self._size += raw.nbytes
        finally:
            self._busy = False

    def digests(self) -> dict[str, bytes]:
        self._enter()
        try:
            out = {}
            for algo in self._algos:
                if algo in self._crcs:
                    out[algo] = self._crcs[algo].to_bytes(_CRCS[algo][1], "big")
                else:
                    out[algo] = self._digests[algo].digest()
            return out
        finally:
            self._busy = False

    def copy(self) -> Hasher:
        self._enter()
        try:
            twin = Hasher(())
            twin._algos = self._algos
            twin._digests = {a: h.copy() for a, h in self._digests.items()}
            twin._crcs = dict(self._crcs)
            twin._size = self._size
            return twin
        finally:
            self._busy = False
