# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""rs3gw._core.batch: replication batch framing (msgpack events + raw data segments).

Wire format, version 1. All integers little-endian.

    offset size  field
    0      4     magic            b"R3GB"
    4      1     version          1
    5      1     codec            0 = none, 1 = zstd, 2 = lz4 (block format, no size prefix)
    6      2     flags            0; a v1 decoder rejects any set bit
    8      4     stored_len       payload bytes on the wire after this header
    12     4     raw_len          payload bytes after decompression (== stored_len for codec none)
    16     4     events_len       bytes of msgpack at the start of the raw payload
    20     4     payload_crc32c   CRC-32C of the stored (compressed) payload
    24     4     header_crc32c    CRC-32C of bytes 0..24 of this header
    28     ...   payload          stored_len bytes

Raw payload = msgpack array of [event, data_len] pairs (events_len bytes), then the data segments
back to back, in event order. `event` is any msgpack map; `data_len` is nil for an event without
data, else the length of its segment. Segments are never msgpack-encoded, so they are copied once
into the compressor's input and come back as views of the decompressed payload.

The header has its own CRC so a corrupted length is refused as soon as the header arrives instead of
stalling the stream waiting for bytes that never come. Lengths are checked against max_frame_bytes
before anything is allocated. An encoder stores a frame with codec none when compression would not
make it smaller, so stored_len <= raw_len <= max_frame_bytes for every frame it writes.

Python view: events go through msgpack (use_bin_type; decoded with raw=False, strict_map_key=False),
so tuples come back as lists. Segments come back as read-only memoryviews of one buffer per frame.
The encoder keeps a gather buffer of the largest raw payload it has flushed (<= max_frame_bytes) for
the compressor; the decoder keeps the payload buffer of its last large frame and reuses it only when
the caller holds no view of it any more.

Compatibility: the byte layout of a given version never changes. New fields or codecs bump the
version; flags are reserved for optional features a v1 reader may safely refuse.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.bytes cimport PyBytes_AS_STRING
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.ref cimport Py_DECREF, Py_REFCNT, PyObject
from libc.stdint cimport uint32_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy

import msgpack

cdef extern from "Python.h":
    # Raw-pointer variants: _PyBytes_Resize needs the sole reference, which a Cython `object`
    # local would share.
    PyObject *_rs3gw_bytes_new "PyBytes_FromStringAndSize"(const char *s, Py_ssize_t n) except NULL
    int _PyBytes_Resize(PyObject **b, Py_ssize_t n) except -1
    char *_rs3gw_bytes_data "PyBytes_AS_STRING"(PyObject *b)

cdef extern from "zstd.h" nogil:
    ctypedef struct ZSTD_CCtx:
        pass
    ctypedef struct ZSTD_DCtx:
        pass
    ZSTD_CCtx *ZSTD_createCCtx()
    size_t ZSTD_freeCCtx(ZSTD_CCtx *cctx)
    ZSTD_DCtx *ZSTD_createDCtx()
    size_t ZSTD_freeDCtx(ZSTD_DCtx *dctx)
    size_t ZSTD_compressCCtx(ZSTD_CCtx *cctx, void *dst, size_t cap, const void *src, size_t n, int level)
    size_t ZSTD_decompressDCtx(ZSTD_DCtx *dctx, void *dst, size_t cap, const void *src, size_t n)
    size_t ZSTD_compressBound(size_t n)
    unsigned ZSTD_isError(size_t code)
    const char *ZSTD_getErrorName(size_t code)
    int ZSTD_minCLevel()
    int ZSTD_maxCLevel()
    const char *ZSTD_versionString()

cdef extern from "lz4.h" nogil:
    int LZ4_compress_default(const char *src, char *dst, int n, int cap)
    int LZ4_decompress_safe(const char *src, char *dst, int n, int cap)
    int LZ4_compressBound(int n)
    const char *LZ4_versionString()

cdef extern from "isa-l/crc.h" nogil:
    unsigned int crc32_iscsi(unsigned char *buf, int length, unsigned int init)


CODECS = ("none", "zstd", "lz4")
MAGIC = b"R3GB"
FORMAT_VERSION = 1
HEADER_SIZE = 28
# Lengths travel as u32, and LZ4 takes int sizes (LZ4_MAX_INPUT_SIZE is just under 2 GiB).
MAX_FRAME_BYTES_LIMIT = 1 << 30
backend = "compiled+zstd-%s+lz4-%s+isa-l" % (
    ZSTD_versionString().decode(), LZ4_versionString().decode())

cdef enum:
    HDR = 28
    CODEC_NONE = 0
    CODEC_ZSTD = 1
    CODEC_LZ4 = 2

cdef const unsigned char *_MAGIC = b"R3GB"

# Same options in the twin: the msgpack bytes are part of the frame, so they must match exactly.
cdef object _unpackb = msgpack.unpackb


class FrameError(ValueError):
    """A frame on the wire is malformed: bad magic/version/codec/flags, CRC mismatch, length over
    the maximum, corrupt compressed data, bad msgpack, or segment lengths that do not add up."""


class FrameFullError(ValueError):
    """BatchEncoder.add: the event would take the frame over max_frame_bytes. Flush and add again
    (an event that does not fit an empty frame never will)."""


cdef inline uint32_t _crc32c(const unsigned char *p, size_t n, uint32_t crc) noexcept nogil:
    # crc32_iscsi works on the raw register and takes an int length: invert around it, chunk it.
    cdef uint32_t reg = ~crc
    cdef size_t step
    while n:
        step = n if n < (<size_t>1 << 30) else (<size_t>1 << 30)
        reg = crc32_iscsi(<unsigned char *>p, <int>step, reg)
        p += step
        n -= step
    return ~reg


cdef inline void _put32(unsigned char *p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef inline uint32_t _get32(const unsigned char *p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline void _write_header(unsigned char *h, int codec, size_t stored, size_t raw,
                               size_t events_len) noexcept nogil:
    memcpy(h, _MAGIC, 4)
    h[4] = 1
    h[5] = <unsigned char>codec
    h[6] = 0
    h[7] = 0
    _put32(h + 8, <uint32_t>stored)
    _put32(h + 12, <uint32_t>raw)
    _put32(h + 16, <uint32_t>events_len)
    _put32(h + 20, _crc32c(h + HDR, stored, 0))
    _put32(h + 24, _crc32c(h, 24, 0))


cdef inline Py_ssize_t _array_header_len(Py_ssize_t n) noexcept nogil:
    return 1 if n < 16 else (3 if n < 0x10000 else 5)


cdef int _codec_id(str codec) except -1:
    if codec == "none":
        return CODEC_NONE
    if codec == "zstd":
        return CODEC_ZSTD
    if codec == "lz4":
        return CODEC_LZ4
    raise ValueError(f"codec must be one of {CODECS}, not {codec!r}")


cdef Py_ssize_t _check_max(object max_frame_bytes) except -1:
    if not isinstance(max_frame_bytes, int) or isinstance(max_frame_bytes, bool):
        raise TypeError("max_frame_bytes must be int")
    if not 1 <= max_frame_bytes <= MAX_FRAME_BYTES_LIMIT:
        raise ValueError(f"max_frame_bytes must be in [1, {MAX_FRAME_BYTES_LIMIT}]")
    return max_frame_bytes


cdef class BatchEncoder:
    """Collects events and their data segments; flush() returns one frame.

    add() keeps a buffer export of `data` (no copy) until the next flush(): the caller must not
    modify that memory in between (resizing a bytearray is refused while the export is held).
    """

    cdef ZSTD_CCtx *_cctx  # reused across flushes
    cdef int _codec
    cdef int _level
    cdef Py_ssize_t _max
    cdef list _packed  # msgpack bytes of each [event, data_len] pair
    cdef Py_ssize_t _events_bytes  # sum of len(_packed[i])
    cdef Py_buffer *_segs  # exports held until flush; C array so flush can run without the GIL
    cdef Py_ssize_t _nsegs
    cdef Py_ssize_t _segs_cap
    cdef Py_ssize_t _data_bytes
    cdef object _pack
    cdef unsigned char *_scratch  # contiguous raw payload fed to the compressor, reused
    cdef size_t _scratch_cap
    cdef bint _busy  # set while the GIL is released inside flush()

    def __cinit__(self):
        self._cctx = NULL
        self._segs = NULL
        self._scratch = NULL

    def __init__(self, str codec="zstd", int level=1, max_frame_bytes=64 << 20):
        self._codec = _codec_id(codec)
        if not ZSTD_minCLevel() <= level <= ZSTD_maxCLevel():
            raise ValueError(f"zstd level must be in [{ZSTD_minCLevel()}, {ZSTD_maxCLevel()}]")
        self._level = level
        self._max = _check_max(max_frame_bytes)
        self._enter()
        self._release_segments()  # __init__ called again on a live encoder: drop what it held
        if self._codec == CODEC_ZSTD and self._cctx == NULL:
            self._cctx = ZSTD_createCCtx()
            if self._cctx == NULL:
                raise MemoryError()
        self._packed = []
        self._events_bytes = 0
        self._nsegs = 0
        self._data_bytes = 0
        self._pack = msgpack.Packer().pack
        self._busy = False

    def __dealloc__(self):
        self._release_segments()
        PyMem_Free(self._segs)
        free(self._scratch)
        if self._cctx != NULL:
            ZSTD_freeCCtx(self._cctx)

    cdef void _release_segments(self) noexcept:
        cdef Py_ssize_t i
        for i in range(self._nsegs):
            PyBuffer_Release(&self._segs[i])
        self._nsegs = 0

    cdef int _enter(self) except -1:
        if self._busy:
            raise RuntimeError("BatchEncoder is in use by another thread")
        return 0

    cpdef Py_ssize_t pending_bytes(self) except -1:
        """Raw payload size of the frame flush() would write now (0 when nothing is pending)."""
        if not self._packed:
            return 0
        return _array_header_len(len(self._packed)) + self._events_bytes + self._data_bytes

    def add(self, dict event not None, data=None):
        cdef Py_buffer view
        cdef Py_ssize_t new_total
        cdef Py_buffer *grown
        self._enter()
        if data is None:
            packed = self._pack([event, None])
            new_total = (_array_header_len(len(self._packed) + 1) + self._events_bytes + len(packed)
                         + self._data_bytes)
            if new_total > self._max:
                raise FrameFullError(f"frame would hold {new_total} bytes, max is {self._max}")
            self._packed.append(packed)
            self._events_bytes += len(packed)
            return
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            packed = self._pack([event, view.len])
            new_total = (_array_header_len(len(self._packed) + 1) + self._events_bytes + len(packed)
                         + self._data_bytes + view.len)
            if new_total > self._max:
                raise FrameFullError(f"frame would hold {new_total} bytes, max is {self._max}")
            if self._nsegs == self._segs_cap:
                grown = <Py_buffer *>PyMem_Realloc(
                    self._segs, <size_t>(self._segs_cap * 2 + 16) * sizeof(Py_buffer))
                if grown == NULL:
                    raise MemoryError()
                self._segs = grown
                self._segs_cap = self._segs_cap * 2 + 16
        except BaseException:
            PyBuffer_Release(&view)
            raise
        # Ownership of the export moves to _segs; released by flush() or __dealloc__.
        self._segs[self._nsegs] = view
        self._nsegs += 1
        self._packed.append(packed)
        self._events_bytes += len(packed)
        self._data_bytes += view.len

    def flush(self):
        """One complete frame holding everything added since the last flush, or b""."""
        cdef Py_ssize_t n = len(self._packed)
        if n == 0:
            return b""
        self._enter()
        self._busy = True
        try:
            return self._flush(n)
        finally:
            self._busy = False

    cdef object _flush(self, Py_ssize_t n):
        cdef Py_ssize_t i
        cdef size_t raw_len, cap, stored, zret = 0, events_len
        cdef int lret = 0
        cdef int codec = self._codec
        cdef int level = self._level
        cdef unsigned char *dst
        cdef unsigned char *raw
        cdef const unsigned char *ev
        cdef unsigned char *grown
        cdef PyObject *out = NULL

        packer = msgpack.Packer()
        events = packer.pack_array_header(n) + b"".join(self._packed)
        ev = <const unsigned char *>PyBytes_AS_STRING(events)
        events_len = len(events)
        raw_len = events_len + <size_t>self._data_bytes

        if codec == CODEC_NONE:
            cap = raw_len
        elif codec == CODEC_ZSTD:
            cap = ZSTD_compressBound(raw_len)
        else:
            cap = <size_t>LZ4_compressBound(<int>raw_len)
        if cap < raw_len:
            cap = raw_len  # room for the stored-uncompressed fallback
        if codec != CODEC_NONE and self._scratch_cap < raw_len:
            grown = <unsigned char *>realloc(self._scratch, raw_len)
            if grown == NULL:
                raise MemoryError()
            self._scratch = grown
            self._scratch_cap = raw_len

        out = _rs3gw_bytes_new(NULL, <Py_ssize_t>(HDR + cap))
        try:
            dst = <unsigned char *>_rs3gw_bytes_data(out)
            # Compressed codecs gather into the scratch buffer; codec none gathers straight into
            # the frame. The segments' exports are held, so their memory is stable without the GIL.
            raw = dst + HDR if codec == CODEC_NONE else self._scratch
            with nogil:
                memcpy(raw, ev, events_len)
                stored = events_len
                for i in range(self._nsegs):
                    memcpy(raw + stored, self._segs[i].buf, <size_t>self._segs[i].len)
                    stored += <size_t>self._segs[i].len
                if codec == CODEC_ZSTD:
                    zret = ZSTD_compressCCtx(self._cctx, dst + HDR, cap, raw, raw_len, level)
                    stored = raw_len if ZSTD_isError(zret) else zret
                elif codec == CODEC_LZ4:
                    lret = LZ4_compress_default(<const char *>raw, <char *>dst + HDR, <int>raw_len,
                                                <int>cap)
                    stored = <size_t>lret if lret > 0 else raw_len
                if codec != CODEC_NONE and stored >= raw_len:
                    # Incompressible: store raw so the frame never grows past max_frame_bytes.
                    memcpy(dst + HDR, raw, raw_len)
                    stored = raw_len
                    codec = CODEC_NONE
                _write_header(dst, codec, stored, raw_len, events_len)
            if self._codec == CODEC_ZSTD and ZSTD_isError(zret):
                raise RuntimeError(f"zstd compression failed: {ZSTD_getErrorName(zret).decode()}")
            if self._codec == CODEC_LZ4 and lret <= 0:
                raise RuntimeError("lz4 compression failed")
            if <size_t>HDR + stored != HDR + cap:
                _PyBytes_Resize(&out, <Py_ssize_t>(HDR + stored))
            frame = <object>out
        finally:
            if out != NULL:
                Py_DECREF(<object>out)
        self._release_segments()
        self._packed = []
        self._events_bytes = 0
        self._data_bytes = 0
        return frame


cdef class BatchDecoder:
    """Incremental frame decoder: feed() any slicing of a stream, get (event, data) pairs.

    A FrameError poisons the decoder: the stream has lost its framing, so every later feed()
    raises too. Events of frames completed in the same feed() call are not returned either.
    """

    cdef ZSTD_DCtx *_dctx
    cdef Py_ssize_t _max
    cdef bytearray _buf  # partial frame carried between feed() calls
    cdef bint _busy
    cdef object _failed  # the FrameError that poisoned the decoder, or None
    cdef bytearray _spare  # raw buffer of an earlier frame, reused once the caller let go of it

    def __cinit__(self):
        self._dctx = NULL

    def __init__(self, max_frame_bytes=64 << 20):
        self._max = _check_max(max_frame_bytes)
        if self._dctx == NULL:
            self._dctx = ZSTD_createDCtx()
            if self._dctx == NULL:
                raise MemoryError()
        self._buf = bytearray()
        self._busy = False
        self._failed = None
        self._spare = None

    def __dealloc__(self):
        if self._dctx != NULL:
            ZSTD_freeDCtx(self._dctx)

    @property
    def buffered(self):
        """Bytes held for a frame not yet complete."""
        return len(self._buf)

    def close(self):
        """End of stream: raises FrameError when a partial frame is still buffered."""
        if self._failed is not None:
            raise FrameError(f"decoder failed earlier: {self._failed}")
        if self._buf:
            raise FrameError(f"stream ended inside a frame ({len(self._buf)} bytes buffered)")

    def feed(self, data):
        cdef Py_buffer view
        cdef Py_ssize_t used
        cdef list out = []
        if self._failed is not None:
            raise FrameError(f"decoder failed earlier: {self._failed}")
        if self._busy:
            raise RuntimeError("BatchDecoder is in use by another thread")
        self._busy = True
        try:
            if self._buf:
                self._buf += data
                src = self._buf
            else:
                # Fast path: parse straight from the caller's buffer, keep only the tail.
                src = data
            PyObject_GetBuffer(src, &view, PyBUF_SIMPLE)
            try:
                used = self._parse(<const unsigned char *>view.buf, view.len, out)
                if src is self._buf:
                    tail = None
                else:
                    tail = (<const char *>view.buf)[used:view.len] if used < view.len else None
            finally:
                PyBuffer_Release(&view)
            # The export is released, so the bytearray may be resized again.
            if tail is not None:
                self._buf += tail
            elif src is self._buf and used:
                del self._buf[:used]
        except FrameError as exc:
            self._failed = exc
            self._buf = bytearray()
            raise
        finally:
            self._busy = False
        return out

    cdef Py_ssize_t _parse(self, const unsigned char *p, Py_ssize_t n, list out) except -1:
        cdef Py_ssize_t off = 0, avail
        cdef uint32_t stored, raw_len, events_len
        while True:
            avail = n - off
            if avail < HDR:
                if memcmp(p + off, _MAGIC, <size_t>(avail if avail < 4 else 4)) != 0:
                    raise FrameError("bad magic")
                return off
            stored, raw_len, events_len = self._check_header(p + off)
            if avail < HDR + <Py_ssize_t>stored:
                return off
            self._decode_frame(p + off, stored, raw_len, events_len, out)
            off += HDR + stored

    cdef tuple _check_header(self, const unsigned char *h):
        cdef uint32_t stored, raw_len, events_len
        if memcmp(h, _MAGIC, 4) != 0:
            raise FrameError("bad magic")
        if _get32(h + 24) != _crc32c(h, 24, 0):
            raise FrameError("header CRC mismatch")
        if h[4] != 1:
            raise FrameError(f"unsupported frame version {h[4]}")
        if h[5] > CODEC_LZ4:
            raise FrameError(f"unknown codec id {h[5]}")
        if h[6] or h[7]:
            raise FrameError(f"unknown flags 0x{h[6] | (h[7] << 8):04x}")
        stored = _get32(h + 8)
        raw_len = _get32(h + 12)
        events_len = _get32(h + 16)
        if raw_len > <size_t>self._max or stored > <size_t>self._max:
            raise FrameError(f"frame length {max(raw_len, stored)} over max_frame_bytes {self._max}")
        if h[5] == CODEC_NONE and stored != raw_len:
            raise FrameError("codec none with stored_len != raw_len")
        if events_len > raw_len:
            raise FrameError("events_len over raw_len")
        return stored, raw_len, events_len

    cdef int _decode_frame(self, const unsigned char *h, uint32_t stored, uint32_t raw_len,
                           uint32_t events_len, list out) except -1:
        cdef int codec = h[5]
        cdef const unsigned char *payload = h + HDR
        cdef uint32_t crc
        cdef size_t zret = 0
        cdef int lret = 0
        cdef char *dst
        with nogil:
            crc = _crc32c(payload, stored, 0)
        if crc != _get32(h + 20):
            raise FrameError("payload CRC mismatch")
        # The raw payload lives in a buffer the segments handed out are views of, so it belongs to
        # the caller until the last view goes; then the next frame may reuse it.
        raw = self._raw_buffer(raw_len)
        dst = PyByteArray_AS_STRING(raw)
        with nogil:
            if codec == CODEC_NONE:
                memcpy(dst, payload, raw_len)
            elif codec == CODEC_ZSTD:
                # Output bounded by raw_len from the (already checked) header.
                zret = ZSTD_decompressDCtx(self._dctx, dst, raw_len, payload, stored)
            else:
                lret = LZ4_decompress_safe(<const char *>payload, dst, <int>stored, <int>raw_len)
        if codec == CODEC_ZSTD and (ZSTD_isError(zret) or zret != raw_len):
            raise FrameError("corrupt zstd payload" if ZSTD_isError(zret) else "zstd size mismatch")
        if codec == CODEC_LZ4 and <uint32_t>lret != raw_len:
            raise FrameError("corrupt lz4 payload")
        _split(memoryview(raw).toreadonly()[:raw_len], events_len, out)
        return 0

    cdef bytearray _raw_buffer(self, Py_ssize_t n):
        # Fresh memory costs a page fault per 4 KiB, about as much as decompressing into it. A
        # consumer that drops each batch before feeding the next lets us reuse the previous
        # buffer: refcount 1 means no view, slice or `.obj` of it survives anywhere.
        spare = self._spare
        if (spare is not None and Py_REFCNT(spare) == 2  # self._spare + this local
                and n <= len(spare) <= 2 * n):
            return spare
        self._spare = None
        del spare
        raw = PyByteArray_FromStringAndSize(NULL, n)  # uninitialized: every byte gets written
        if n >= SPARE_MIN_BYTES:
            self._spare = raw
        return raw


# Below this a fresh buffer per frame is cheap; at or above it the decoder keeps one for reuse.
cdef Py_ssize_t SPARE_MIN_BYTES = 1 << 20


cdef int _split(object mv, Py_ssize_t events_len, list out) except -1:
    """Turns a raw payload (read-only memoryview) into (event, segment) pairs appended to out, all
    or nothing."""
    cdef Py_ssize_t pos = events_len, total = len(mv), dlen
    try:
        pairs = _unpackb(mv[:events_len], raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on hostile input
        raise FrameError(f"bad msgpack events: {exc!r}") from exc
    if type(pairs) is not list:
        raise FrameError("events are not a msgpack array")
    frame_out = []
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not dict:
            raise FrameError("event entry is not an [event, data_len] pair")
        length = pair[1]
        if length is None:
            frame_out.append((pair[0], None))
            continue
        if type(length) is not int or length < 0 or length > total - pos:
            raise FrameError("bad segment length")
        dlen = length
        frame_out.append((pair[0], mv[pos:pos + dlen]))
        pos += dlen
    if pos != total:
        raise FrameError(f"segments hold {pos - events_len} bytes, payload has {total - events_len}")
    out.extend(frame_out)
    return 0
