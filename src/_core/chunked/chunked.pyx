"""rs3gw._core.chunked: incremental aws-chunked decoder with chunk-signature verification.

A thin skin over chunked_core.c: framing, SHA-256 of chunk data and the HMAC-SHA256 signature
chain run in C on OpenSSL, once per fed buffer, with the GIL released when the buffer is
GIL_RELEASE_MIN_BYTES or more. Trailer lines (a handful per request) are parsed here in Python.
The pure-Python twin rs3gw._core.chunked_ref has the same API and behaviour.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint64_t

import hashlib
import hmac
import re

cdef extern from "chunked_core.h" nogil:
    enum:
        CK_LINE_BYTES_MAX
        CK_SIG_HEX
        CK_HEADER
        CK_TRAILER
        CK_DONE
        CK_OK
        CK_SPANS_FULL
        CK_TRAILER_LINE
        CK_ERR_SIZE
        CK_ERR_TOO_BIG
        CK_ERR_NO_SIGNATURE
        CK_ERR_SIGNATURE
        CK_ERR_CRLF
        CK_ERR_LINE_TOO_LONG
        CK_ERR_AFTER_END
        CK_ERR_CRYPTO

    ctypedef struct ck_span:
        size_t offset
        size_t length

    ctypedef struct ck_decoder:
        int state
        uint64_t bad_size
        uint64_t decoded_bytes
        size_t line_len
        unsigned char line[4096]
        const unsigned char *tline
        size_t tline_len
        char provided[64]
        char chunk_sha_hex[64]

    int ck_global_init()
    int ck_init(ck_decoder *d, int is_signed, uint64_t max_chunk_bytes, const unsigned char *key,
                size_t key_len, const unsigned char *sts_prefix, size_t sts_prefix_len,
                const unsigned char *seed, size_t seed_len)
    void ck_free(ck_decoder *d)
    int ck_feed(ck_decoder *d, const unsigned char *p, size_t n, size_t *consumed, ck_span *spans,
                size_t max_spans, size_t *nspans)
    const char *ck_prev_signature(const ck_decoder *d, size_t *len)
    void ck_crypto_error(char *buf, size_t len)

cdef extern from "openssl/crypto.h":
    const char *OpenSSL_version(int t)
    int OPENSSL_VERSION_STRING

# Below this many bytes the GIL round trip costs more than the hashing it would free.
GIL_RELEASE_MIN_BYTES = 4096
CHUNK_LINE_BYTES_MAX = CK_LINE_BYTES_MAX
TRAILER_LINES_MAX = 64
TRAILER_SIGNATURE = "x-amz-trailer-signature"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# ChunkError.kind values.
SIGNATURE = "signature"  # a chunk or trailer signature is missing, malformed or wrong
INCOMPLETE = "incomplete"  # the stream ended early or a chunk is not the size it declares
MALFORMED = "malformed"  # anything else that does not parse, or goes over a limit

# Payload pieces reported per C call; more chunks in one buffer just means another call.
cdef enum:
    SPANS_MAX = 64
cdef size_t GIL_MIN = GIL_RELEASE_MIN_BYTES
cdef uint64_t U64_MAX = 0xFFFFFFFFFFFFFFFF

_SIG_HEX = re.compile(rb"[0-9a-fA-F]{64}")

if ck_global_init() != 0:
    raise ImportError("rs3gw._core.chunked: libcrypto has no SHA256 or HMAC implementation")

backend = "openssl-" + OpenSSL_version(OPENSSL_VERSION_STRING).decode("ascii")


class ChunkError(Exception):
    """The stream is malformed, truncated or forged; ``kind`` says which (see above)."""

    def __init__(self, kind, message, *, string_to_sign=None, signature_provided=None):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.string_to_sign = string_to_sign
        self.signature_provided = signature_provided


cdef class ChunkedDecoder:
    """Feed raw body bytes, get decoded payload pieces; ``finish()`` at end of stream.

    Pieces are zero-copy memoryviews of the input when it is an immutable ``bytes`` (or a view
    of one), copies otherwise, since a caller-owned mutable buffer may be reused after ``feed``.
    In signed mode a chunk's bytes are returned before its signature is checked at the chunk's
    end: the caller must not commit anything from a decode that raised.
    """

    # The C state (including its 4 KiB line buffer) lives inside this object.
    cdef ck_decoder _d
    cdef ck_span _spans[SPANS_MAX]
    cdef bint _initialized
    cdef bint _busy
    cdef bint _signed
    cdef bint _trailer
    cdef bytes _key
    # ck_decoder points into these two: they live as long as the object.
    cdef bytes _sts_prefix
    cdef bytes _seed
    cdef str _amz_date
    cdef str _scope
    cdef object _max_chunk_bytes
    cdef list _trailer_lines
    cdef object _trailer_signature
    cdef object _error

    def __init__(self, *, object signed, object trailer, signing_key=None, seed_signature=None, amz_date=None,
                 scope=None, max_chunk_bytes=16 << 20):
        if signed and (signing_key is None or seed_signature is None or amz_date is None
                       or scope is None):
            raise ValueError("signed aws-chunked decoding needs signing_key, seed_signature, "
                             "amz_date and scope")
        if max_chunk_bytes < 0:
            raise ValueError("max_chunk_bytes must not be negative")
        if self._busy:
            raise RuntimeError("ChunkedDecoder re-initialised while feeding")
        self._signed = bool(signed)
        self._trailer = bool(trailer)
        self._key = bytes(signing_key or b"")
        self._amz_date = amz_date or ""
        self._scope = scope or ""
        self._seed = (seed_signature or "").encode()
        self._sts_prefix = f"AWS4-HMAC-SHA256-PAYLOAD\n{self._amz_date}\n{self._scope}\n".encode()
        self._max_chunk_bytes = max_chunk_bytes
        self._trailer_lines = []
        self._trailer_signature = None
        self._error = None
        # Sizes have at most 16 hex digits, so any larger limit is the same as no limit.
        cdef uint64_t limit = U64_MAX if max_chunk_bytes > U64_MAX else <uint64_t>max_chunk_bytes
        if self._initialized:
            ck_free(&self._d)
        self._initialized = True
        if ck_init(&self._d, self._signed, limit, self._key, len(self._key), self._sts_prefix,
                   len(self._sts_prefix), self._seed, len(self._seed)) != 0:
            raise self._chunk_error(CK_ERR_CRYPTO)

    def __dealloc__(self):
        if self._initialized:
            ck_free(&self._d)

    @property
    def done(self):
        return self._initialized and self._d.state == CK_DONE

    @property
    def decoded_bytes(self):
        return self._d.decoded_bytes

    def feed(self, data):
        if self._error is not None:
            raise self._error
        self._check_usable()
        try:
            return self._feed(data)
        except ChunkError as err:
            self._error = err
            raise

    def finish(self):
        """End of stream: return the trailers, or raise if the body stopped early."""
        if self._error is not None:
            raise self._error
        self._check_usable()
        cdef bytes line
        try:
            if self._d.state == CK_TRAILER:
                # Lenient end: some clients close the body after the trailer lines without the
                # final empty line (or even without the last line's CRLF).
                if self._d.line_len:
                    line = PyBytes_FromStringAndSize(<char *>self._d.line, self._d.line_len)
                    self._d.line_len = 0
                    self._trailer_line(line[:-1] if line.endswith(b"\r") else line)
                if self._d.state == CK_TRAILER:
                    self._end_trailers()
            if self._d.state != CK_DONE:
                raise ChunkError(INCOMPLETE, "The aws-chunked body ended before its final chunk.")
        except ChunkError as err:
            self._error = err
            raise
        return {name: value for name, value in self._trailer_lines}

    cdef _check_usable(self):
        if not self._initialized:
            raise RuntimeError("ChunkedDecoder.__init__ was not called")
        if self._busy:
            # Another thread is inside feed() with the GIL released, on this same state.
            raise RuntimeError("ChunkedDecoder is not thread-safe: feed() is already running")

    cdef list _feed(self, data):
        mv = memoryview(data)
        if mv.ndim != 1 or mv.format != "B":
            mv = mv.cast("B")
        # Views into an immutable bytes object stay valid forever: hand them out without a copy.
        cdef bint zero_copy = isinstance(mv.obj, bytes)
        cdef Py_buffer view
        PyObject_GetBuffer(mv, &view, PyBUF_SIMPLE)
        cdef const unsigned char *base = <const unsigned char *>view.buf
        cdef size_t n = <size_t>view.len
        cdef size_t pos = 0
        cdef size_t consumed = 0
        cdef size_t nspans = 0
        cdef size_t i, off
        cdef int rc
        cdef list out = []
        # The held buffer keeps a bytearray from resizing while C (maybe GIL-free) reads it.
        self._busy = True
        try:
            while True:
                if n - pos >= GIL_MIN:
                    with nogil:
                        rc = ck_feed(&self._d, base + pos, n - pos, &consumed, self._spans,
                                     SPANS_MAX, &nspans)
                else:
                    rc = ck_feed(&self._d, base + pos, n - pos, &consumed, self._spans,
                                 SPANS_MAX, &nspans)
                for i in range(nspans):
                    off = pos + self._spans[i].offset
                    if zero_copy:
                        out.append(mv[off:off + self._spans[i].length])
                    else:
                        out.append(PyBytes_FromStringAndSize(<const char *>base + off,
                                                             self._spans[i].length))
                pos += consumed
                if rc == CK_OK:
                    return out
                if rc == CK_TRAILER_LINE:
                    self._trailer_line(PyBytes_FromStringAndSize(<const char *>self._d.tline,
                                                                 self._d.tline_len))
                elif rc != CK_SPANS_FULL:
                    raise self._chunk_error(rc)
        finally:
            self._busy = False
            PyBuffer_Release(&view)

    cdef object _chunk_error(self, int rc):
        """The one place C return codes become exceptions."""
        cdef char buf[256]
        if rc == CK_ERR_SIZE:
            return ChunkError(MALFORMED, "Invalid aws-chunked chunk size.")
        if rc == CK_ERR_TOO_BIG:
            return ChunkError(MALFORMED, f"aws-chunked chunk of {self._d.bad_size} bytes exceeds "
                              f"the limit of {self._max_chunk_bytes} bytes.")
        if rc == CK_ERR_NO_SIGNATURE:
            return ChunkError(SIGNATURE, "aws-chunked chunk is missing a valid chunk-signature.")
        if rc == CK_ERR_SIGNATURE:
            provided = PyBytes_FromStringAndSize(self._d.provided, CK_SIG_HEX).decode("ascii")
            sts = (self._sts_prefix + self._prev_signature().encode() + b"\n"
                   + EMPTY_SHA256.encode() + b"\n"
                   + PyBytes_FromStringAndSize(self._d.chunk_sha_hex, CK_SIG_HEX))
            return ChunkError(SIGNATURE, "The aws-chunked chunk signature does not match.",
                              string_to_sign=sts.decode(), signature_provided=provided)
        if rc == CK_ERR_CRLF:
            return ChunkError(INCOMPLETE, "aws-chunked chunk data is not followed by CRLF; the "
                              "chunk is shorter or longer than its declared size.")
        if rc == CK_ERR_LINE_TOO_LONG:
            return ChunkError(MALFORMED, "aws-chunked header or trailer line is too long.")
        if rc == CK_ERR_AFTER_END:
            return ChunkError(MALFORMED, "Unexpected data after the final aws-chunked chunk.")
        if rc == CK_ERR_CRYPTO:
            ck_crypto_error(buf, sizeof(buf))
            return RuntimeError("libcrypto failed: " + (<char *>buf).decode("utf-8", "replace"))
        return SystemError(f"rs3gw._core.chunked: unknown return code {rc}")

    cdef str _prev_signature(self):
        cdef size_t n = 0
        cdef const char *p = ck_prev_signature(&self._d, &n)
        return PyBytes_FromStringAndSize(p, n).decode()

    # --- trailers: a few lines per request, plain Python ---------------------------------------

    cdef _trailer_line(self, bytes line):
        if not line.strip():
            # Some encoders put an empty line between the trailer block and the trailer
            # signature; before the signature it cannot be the end of a signed trailer section.
            if (self._signed and self._trailer and self._trailer_lines
                    and self._trailer_signature is None):
                return
            self._end_trailers()
            return
        if not self._trailer:
            raise ChunkError(MALFORMED, "Trailing headers were sent but x-amz-content-sha256 "
                             "does not announce a trailer.")
        name_b, colon, value_b = line.partition(b":")
        name = name_b.strip().decode("latin-1").lower()
        if not colon or not name:
            raise ChunkError(MALFORMED, "Malformed aws-chunked trailer line.")
        value = value_b.strip().decode("latin-1")
        if name == TRAILER_SIGNATURE:
            if self._trailer_signature is not None:
                raise ChunkError(MALFORMED, "Duplicate x-amz-trailer-signature.")
            self._trailer_signature = value
            return
        if self._trailer_signature is not None and self._signed:
            raise ChunkError(SIGNATURE, "Trailer line after x-amz-trailer-signature.")
        if len(self._trailer_lines) >= TRAILER_LINES_MAX:
            raise ChunkError(MALFORMED, "Too many aws-chunked trailer lines.")
        self._trailer_lines.append((name, value))

    cdef _end_trailers(self):
        if self._signed and self._trailer and (self._trailer_lines or self._trailer_signature):
            self._verify_trailer()
        self._d.state = CK_DONE

    cdef _verify_trailer(self):
        provided = (self._trailer_signature or "").lower()
        if not _SIG_HEX.fullmatch(provided.encode("latin-1")):
            raise ChunkError(SIGNATURE, "Missing or malformed x-amz-trailer-signature.")
        prefix = (f"AWS4-HMAC-SHA256-TRAILER\n{self._amz_date}\n{self._scope}\n"
                  f"{self._prev_signature()}\n")
        # The signed form is each trailer as "name:value\n". Clients send them in the order they
        # signed them; a sorted order is tried as well for encoders that canonicalise first.
        orders = [self._trailer_lines]
        ordered = sorted(self._trailer_lines)
        if ordered != self._trailer_lines:
            orders.append(ordered)
        for lines in orders:
            canonical = "".join([f"{name}:{value}\n" for name, value in lines])
            digest = hashlib.sha256(canonical.encode("latin-1")).hexdigest()
            expected = hmac.digest(self._key, (prefix + digest).encode(), "sha256").hex()
            if hmac.compare_digest(expected, provided):
                return
        raise ChunkError(SIGNATURE, "The x-amz-trailer-signature does not match.",
                         signature_provided=provided)
