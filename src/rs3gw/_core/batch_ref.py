"""Pure-Python reference twin of rs3gw._core.batch: same API, same frames, used by tests as an oracle.

The wire format (version 1) is documented in src/_core/batch/batch.pyx. This twin builds it with struct,
msgpack, the `zstandard` and `lz4` packages and the table CRC-32C of rs3gw._core.crc_ref, so it shares
no compression or CRC code with the compiled module. Not a production path: the CRC runs at a few
MB/s.

Byte identity with the compiled module holds as long as both sides' libzstd and liblz4 emit the
same bytes for the same input and level: lz4 is the same version on both sides here, and zstd output
at levels <= 1 has been stable across the 1.5.x releases paired here (the tests pin what they rely on).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import lz4.block  # type: ignore[import-untyped]  # no stubs; pyproject is not ours to edit
import msgpack
import zstandard

from rs3gw._core.crc_ref import crc32c

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer arrives in 3.12

backend = "reference"

CODECS = ("none", "zstd", "lz4")
MAGIC = b"R3GB"
FORMAT_VERSION = 1
HEADER_SIZE = 28
MAX_FRAME_BYTES_LIMIT = 1 << 30

_CODEC_NONE, _CODEC_ZSTD, _CODEC_LZ4 = 0, 1, 2
# magic, version, codec, flags, stored_len, raw_len, events_len, payload_crc32c (header_crc32c follows)
_HEAD = struct.Struct("<4sBBHIIII")
_ZSTD_MIN_LEVEL = -(1 << 17)  # ZSTD_minCLevel() of libzstd 1.5


class FrameError(ValueError):
    """A frame on the wire is malformed: bad magic/version/codec/flags, CRC mismatch, length over
    the maximum, corrupt compressed data, bad msgpack, or segment lengths that do not add up."""


class FrameFullError(ValueError):
    """BatchEncoder.add: the event would take the frame over max_frame_bytes. Flush and add again
    (an event that does not fit an empty frame never will)."""


def _check_max(max_frame_bytes: int) -> int:
    if not isinstance(max_frame_bytes, int) or isinstance(max_frame_bytes, bool):
        raise TypeError("max_frame_bytes must be int")
    if not 1 <= max_frame_bytes <= MAX_FRAME_BYTES_LIMIT:
        raise ValueError(f"max_frame_bytes must be in [1, {MAX_FRAME_BYTES_LIMIT}]")
    return max_frame_bytes


def _array_header_len(n: int) -> int:
    return 1 if n < 16 else (3 if n < 0x10000 else 5)


class BatchEncoder:
    """Collects events and their data segments; flush() returns one frame.

    add() keeps a view of `data` (no copy) until the next flush(): the caller must not modify that
    memory in between.
    """

    def __init__(self, codec: str = "zstd", level: int = 1, max_frame_bytes: int = 64 << 20) -> None:
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, not {codec!r}")
        if not isinstance(level, int):
            raise TypeError("level must be int")
        if not _ZSTD_MIN_LEVEL <= level <= zstandard.MAX_COMPRESSION_LEVEL:
            raise ValueError(f"zstd level must be in [{_ZSTD_MIN_LEVEL}, {zstandard.MAX_COMPRESSION_LEVEL}]")
        self._codec = CODECS.index(codec)
        self._level = level
        self._max = _check_max(max_frame_bytes)
        self._zstd = zstandard.ZstdCompressor(level=level) if self._codec == _CODEC_ZSTD else None
        self._pack = msgpack.Packer().pack
        self._packed: list[bytes] = []
        self._segments: list[memoryview] = []
        self._events_bytes = 0
        self._data_bytes = 0

    def pending_bytes(self) -> int:
        if not self._packed:
            return 0
        return _array_header_len(len(self._packed)) + self._events_bytes + self._data_bytes

    def add(self, event: dict[Any, Any], data: Buffer | None = None) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"event must be dict, not {type(event).__name__}")
        view = None
        if data is not None:
            view = memoryview(data)
            if not view.c_contiguous:
                raise BufferError("data must be C-contiguous")
            view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
        dlen = None if view is None else view.nbytes
        packed = self._pack([event, dlen])
        new_total = (
            _array_header_len(len(self._packed) + 1)
            + self._events_bytes
            + len(packed)
            + self._data_bytes
            + (dlen or 0)
        )
        if new_total > self._max:
            raise FrameFullError(f"frame would hold {new_total} bytes, max is {self._max}")
        self._packed.append(packed)
        self._events_bytes += len(packed)
        if view is not None:
            self._segments.append(view)
            self._data_bytes += view.nbytes

    def flush(self) -> bytes:
        if not self._packed:
            return b""
        events = msgpack.Packer().pack_array_header(len(self._packed)) + b"".join(self._packed)
        raw = b"".join([events, *self._segments])
        codec, payload = self._codec, raw
        if self._codec == _CODEC_ZSTD:
            assert self._zstd is not None
            payload = self._zstd.compress(raw)
        elif self._codec == _CODEC_LZ4:
            payload = lz4.block.compress(raw, mode="default", store_size=False)
        if len(payload) >= len(raw):
            codec, payload = _CODEC_NONE, raw  # incompressible: stored raw, never over the max
        head = _HEAD.pack(
            MAGIC, FORMAT_VERSION, codec, 0, len(payload), len(raw), len(events), crc32c(payload)
        )
        frame = head + struct.pack("<I", crc32c(head)) + payload
        self._packed, self._segments = [], []
        self._events_bytes = self._data_bytes = 0
        return frame


class BatchDecoder:
    """Incremental frame decoder: feed() any slicing of a stream, get (event, data) pairs.

    A FrameError poisons the decoder; events of frames completed in the same feed() call are not
    returned either.
    """

    def __init__(self, max_frame_bytes: int = 64 << 20) -> None:
        self._max = _check_max(max_frame_bytes)
        self._buf = bytearray()
        self._failed: FrameError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def close(self) -> None:
        if self._failed is not None:
            raise FrameError(f"decoder failed earlier: {self._failed}")
        if self._buf:
            raise FrameError(f"stream ended inside a frame ({len(self._buf)} bytes buffered)")

    def feed(self, data: Buffer) -> list[tuple[dict[Any, Any], memoryview | bytes | None]]:
        if self._failed is not None:
            raise FrameError(f"decoder failed earlier: {self._failed}")
        self._buf += data
        out: list[tuple[dict[Any, Any], memoryview | bytes | None]] = []
        try:
            used = self._parse(bytes(self._buf), out)
        except FrameError as exc:
            self._failed = exc
            self._buf = bytearray()
            raise
        del self._buf[:used]
        return out

    def _parse(self, buf: bytes, out: list[tuple[dict[Any, Any], memoryview | bytes | None]]) -> int:
        off = 0
        while True:
            avail = len(buf) - off
            if avail < HEADER_SIZE:
                if buf[off : off + min(avail, 4)] != MAGIC[: min(avail, 4)]:
                    raise FrameError("bad magic")
                return off
            codec, stored, raw_len, events_len, payload_crc = self._check_header(buf[off : off + HEADER_SIZE])
            if avail < HEADER_SIZE + stored:
                return off
            payload = buf[off + HEADER_SIZE : off + HEADER_SIZE + stored]
            if crc32c(payload) != payload_crc:
                raise FrameError("payload CRC mismatch")
            out.extend(_split(_decompress(codec, payload, raw_len), events_len))
            off += HEADER_SIZE + stored

    def _check_header(self, head: bytes) -> tuple[int, int, int, int, int]:
        if head[:4] != MAGIC:
            raise FrameError("bad magic")
        if struct.unpack_from("<I", head, 24)[0] != crc32c(head[:24]):
            raise FrameError("header CRC mismatch")
        _, version, codec, flags, stored, raw_len, events_len, payload_crc = _HEAD.unpack_from(head)
        if version != FORMAT_VERSION:
            raise FrameError(f"unsupported frame version {version}")
        if codec >= len(CODECS):
            raise FrameError(f"unknown codec id {codec}")
        if flags:
            raise FrameError(f"unknown flags 0x{flags:04x}")
        if raw_len > self._max or stored > self._max:
            raise FrameError(f"frame length {max(raw_len, stored)} over max_frame_bytes {self._max}")
        if codec == _CODEC_NONE and stored != raw_len:
            raise FrameError("codec none with stored_len != raw_len")
        if events_len > raw_len:
            raise FrameError("events_len over raw_len")
        return codec, stored, raw_len, events_len, payload_crc


def _decompress(codec: int, payload: bytes, raw_len: int) -> bytes:
    if codec == _CODEC_NONE:
        return payload
    try:
        if codec == _CODEC_ZSTD:
            # Never let the frame's own content size drive the allocation: raw_len is checked.
            if zstandard.frame_content_size(payload) not in (raw_len, -1):
                raise FrameError("zstd size mismatch")
            raw = zstandard.ZstdDecompressor().decompress(payload, max_output_size=raw_len)
        else:
            raw = lz4.block.decompress(payload, uncompressed_size=raw_len)
    except FrameError:
        raise
    except Exception as exc:  # zstandard.ZstdError, lz4.block.LZ4BlockError, ValueError...
        raise FrameError(f"corrupt {CODECS[codec]} payload: {exc}") from exc
    if len(raw) != raw_len:
        raise FrameError(f"{CODECS[codec]} size mismatch")
    return raw


def _split(raw: bytes, events_len: int) -> list[tuple[dict[Any, Any], memoryview | bytes | None]]:
    mv = memoryview(raw)
    try:
        pairs = msgpack.unpackb(mv[:events_len], raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on hostile input
        raise FrameError(f"bad msgpack events: {exc!r}") from exc
    if type(pairs) is not list:
        raise FrameError("events are not a msgpack array")
    out: list[tuple[dict[Any, Any], memoryview | bytes | None]] = []
    pos = events_len
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not dict:
            raise FrameError("event entry is not an [event, data_len] pair")
        length = pair[1]
        if length is None:
            out.append((pair[0], None))
            continue
        if type(length) is not int or length < 0 or length > len(raw) - pos:
            raise FrameError("bad segment length")
        out.append((pair[0], mv[pos : pos + length]))
        pos += length
    if pos != len(raw):
        raise FrameError(f"segments hold {pos - events_len} bytes, payload has {len(raw) - events_len}")
    return out
