"""Pure-Python reference twin of rs3gw._core.crc: same API, used by the tests as an oracle.

Byte-at-a-time tables and zlib's GF(2) matrix method for combine: deliberately a different
algorithm from the compiled module (slice/fold kernels, polynomial powers for combine), so the two
check each other. Not a production path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer arrives in 3.12

backend = "reference"

_CRC32_POLY = 0xEDB88320  # reflected 0x04C11DB7
_CRC32C_POLY = 0x82F63B78  # reflected 0x1EDC6F41
_CRC64NVME_POLY = 0x9A6C9329AC4BC9B5  # reflected 0xAD93D23594C93659


def _table(poly: int) -> tuple[int, ...]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        out.append(c)
    return tuple(out)


_T32 = _table(_CRC32_POLY)
_T32C = _table(_CRC32C_POLY)
_T64 = _table(_CRC64NVME_POLY)


def _check_crc(crc: int, width: int) -> int:
    if not isinstance(crc, int):
        raise TypeError(f"crc must be int, not {type(crc).__name__}")
    if crc < 0 or crc >> width:
        raise OverflowError(f"crc must be in [0, 2**{width})")
    return crc


def _run(table: tuple[int, ...], width: int, data: Buffer, crc: int) -> int:
    mask = (1 << width) - 1
    reg = _check_crc(crc, width) ^ mask
    for b in memoryview(data).cast("B"):
        reg = table[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg ^ mask


def crc32(data: Buffer, crc: int = 0) -> int:
    return _run(_T32, 32, data, crc)


def crc32c(data: Buffer, crc: int = 0) -> int:
    return _run(_T32C, 32, data, crc)


def crc64nvme(data: Buffer, crc: int = 0) -> int:
    return _run(_T64, 64, data, crc)


# --- combine: zlib's original operator-matrix method -------------------------------------------
# The matrix M advances a CRC register over one zero bit; squaring it repeatedly gives the
# operators for 2, 4, 8, ... zero bits, applied to crc1 for each set bit of 8*len2.


def _gf2_times(mat: list[int], vec: int) -> int:
    out = 0
    i = 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _gf2_square(mat: list[int]) -> list[int]:
    return [_gf2_times(mat, row) for row in mat]


def _combine(poly: int, width: int, crc1: int, crc2: int, len2: int) -> int:
    _check_crc(crc1, width)
    _check_crc(crc2, width)
    if not isinstance(len2, int):
        raise TypeError("len2 must be int")
    if len2 < 0 or len2 >> 64:
        raise OverflowError("len2 must be in [0, 2**64)")
    if len2 == 0:
        return crc1 ^ crc2
    return _shifted(poly, width, crc1, len2) ^ crc2


def _shifted(poly: int, width: int, crc1: int, len2: int) -> int:
    # odd: operator for one zero bit; row i is the image of bit i.
    odd = [poly] + [1 << i for i in range(width - 1)]
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while len2:
        even = _gf2_square(odd)  # first pass: one zero byte
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
    return crc1


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    return _combine(_CRC32_POLY, 32, crc1, crc2, len2)


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    return _combine(_CRC32C_POLY, 32, crc1, crc2, len2)


def crc64nvme_combine(crc1: int, crc2: int, len2: int) -> int:
    return _combine(_CRC64NVME_POLY, 64, crc1, crc2, len2)
