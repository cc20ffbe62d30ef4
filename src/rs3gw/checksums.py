"""Object checksums as S3 defines them: streaming hashers, header encoding, multipart forms.

Streaming hashes come from the compiled core (rs3gw._core.hashing: MD5/SHA via OpenSSL and the CRCs
in one pass), CRC combine from rs3gw._core.crc, both through rs3gw._core.load: a missing build is an
ImportError, never a silent slow path; RS3GW_CORE=reference swaps in the pure-Python twins for tests
only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from rs3gw._core import implementation, load

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer arrives in 3.12

ALGOS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
CRC_ALGOS = ("crc32", "crc32c", "crc64nvme")

# Raw digest length per algorithm; md5 is here for Content-MD5.
DIGEST_SIZES = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32, "md5": 16}


_crc = load("crc")
_hashing = load("hashing")
# "compiled:isa-l+<crc64 kernel>" or "reference".
backend = "reference" if implementation() == "reference" else f"compiled:{_crc.backend}"
# What Hasher runs on: "compiled:openssl+isa-l+<crc64 kernel>" or "reference".
hasher_backend = "reference" if backend == "reference" else f"compiled:{_hashing.backend}"

_COMBINE_FUNCS: dict[str, Callable[[int, int, int], int]] = {
    "crc32": _crc.crc32_combine,
    "crc32c": _crc.crc32c_combine,
    "crc64nvme": _crc.crc64nvme_combine,
}


def _check_algo(algo: str, allowed: Iterable[str]) -> None:
    if algo not in allowed:
        raise ValueError(f"unsupported checksum algorithm {algo!r}")


class Hasher:
    """MD5 (for the ETag) plus any of ALGOS over one stream, fed chunk by chunk.

    A thin skin over rs3gw._core.hashing.Hasher: each update is one call that runs every algorithm
    block by block over the data in a single pass, with the GIL released on large buffers, so a
    worker thread can hash while the loop serves others. One Hasher per thread at a time.
    """

    __slots__ = ("_algos", "_core")

    def __init__(self, algos: Iterable[str] = (), *, md5: bool = True) -> None:
        wanted = ["md5"] if md5 else []
        for algo in algos:
            _check_algo(algo, ALGOS)
            if algo not in wanted:
                wanted.append(algo)
        self._algos = tuple(wanted)
        self._core = _hashing.Hasher(self._algos)

    @property
    def algos(self) -> tuple[str, ...]:
        return self._algos

    @property
    def size(self) -> int:
        """Bytes hashed so far."""
        size: int = self._core.size
        return size

    def update(self, data: Buffer) -> None:
        self._core.update(data)

    def digests(self) -> dict[str, bytes]:
        digests: dict[str, bytes] = self._core.digests()
        return digests

    def md5_hex(self) -> str:
        if "md5" not in self._algos:
            raise ValueError("this Hasher was created with md5=False")
        md5: bytes = self._core.digests()["md5"]
        return md5.hex()

    def copy(self) -> Hasher:
        twin = Hasher.__new__(Hasher)
        twin._algos = self._algos
        twin._core = self._core.copy()
        return twin


def b64(raw: bytes) -> str:
    """Base64 text as S3 writes it in x-amz-checksum-* and Content-MD5."""
    return base64.b64encode(raw).decode("ascii")


def decode_checksum(algo: str, value: str) -> bytes:
    """Header value -> raw digest; ValueError on unknown algo, bad base64 or wrong length."""
    _check_algo(algo, DIGEST_SIZES)
    try:
        raw = binascii.a2b_base64(value.strip().encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"invalid base64 in {algo} checksum") from exc
    if len(raw) != DIGEST_SIZES[algo]:
        raise ValueError(f"{algo} checksum must be {DIGEST_SIZES[algo]} bytes, got {len(raw)}")
    return raw


def multipart_etag(part_md5_hex: list[str]) -> str:
    """S3 multipart ETag (unquoted): md5 of the concatenated binary part MD5s, then -N."""
    if not part_md5_hex:
        raise ValueError("a multipart upload has at least one part")
    joined = b"".join(bytes.fromhex(h.strip('"')) for h in part_md5_hex)
    return f"{hashlib.md5(joined).hexdigest()}-{len(part_md5_hex)}"


def composite_checksum(algo: str, part_raw: list[bytes]) -> str:
    """COMPOSITE multipart checksum: b64(H(concat raw part checksums)) + -N.

    CRC64NVME has no composite form in S3 (full-object only), so it is refused here.
    """
    _check_algo(algo, ("crc32", "crc32c", "sha1", "sha256"))
    if not part_raw:
        raise ValueError("a multipart upload has at least one part")
    h = Hasher((algo,), md5=False)
    for raw in part_raw:
        h.update(raw)
    return f"{b64(h.digests()[algo])}-{len(part_raw)}"


def full_object_crc(algo: str, parts: list[tuple[bytes, int]]) -> bytes:
    """FULL_OBJECT checksum from (raw part crc, part size) pairs, without rereading any data."""
    _check_algo(algo, CRC_ALGOS)
    combine = _COMBINE_FUNCS[algo]
    size = DIGEST_SIZES[algo]
    acc = 0
    for raw, length in parts:
        if len(raw) != size:
            raise ValueError(f"{algo} part checksum must be {size} bytes, got {len(raw)}")
        acc = combine(acc, int.from_bytes(raw, "big"), length)
    return acc.to_bytes(size, "big")
