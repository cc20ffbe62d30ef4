"""Pure-Python reference twin of rs3gw._core.chunked: same API, used by the tests as an oracle.

Incremental decoder for ``Content-Encoding: aws-chunked`` bodies. Both dialects: signed
(``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``, a ``chunk-signature`` on every chunk chained
from the request's seed signature, optionally an ``x-amz-trailer-signature``) and unsigned
(``STREAMING-UNSIGNED-PAYLOAD-TRAILER``, chunk headers that may be just ``hex-size``).

Memory stays bounded whatever the body size: only an incomplete header/trailer line is buffered;
chunk data is passed through as it arrives. Errors are ChunkError with a kind (SIGNATURE,
INCOMPLETE, MALFORMED); rs3gw.s3.chunked maps kinds to S3 error codes. Not a production path.
"""
from __future__ import annotations

import hashlib
import hmac
import re

backend = "reference"

# ChunkError.kind values.
SIGNATURE = "signature"  # a chunk or trailer signature is missing, malformed or wrong
INCOMPLETE = "incomplete"  # the stream ended early or a chunk is not the size it declares
MALFORMED = "malformed"  # anything else that does not parse, or goes over a limit


class ChunkError(Exception):
    """The stream is malformed, truncated or forged; ``kind`` says which (see above)."""

    def __init__(self, kind: str, message: str, *, string_to_sign: str | None = None,
                 signature_provided: str | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.string_to_sign = string_to_sign
        self.signature_provided = signature_provided


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CHUNK_LINE_BYTES_MAX = 4096
TRAILER_LINES_MAX = 64
TRAILER_SIGNATURE = "x-amz-trailer-signature"

_HEX_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_SIG_HEX = re.compile(rb"[0-9a-fA-F]{64}")

_HEADER, _DATA, _DATA_CRLF, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    """Feed raw body bytes, get decoded payload pieces; ``finish()`` at end of stream.

    In signed mode each chunk's data is emitted as it arrives and its signature is verified when
    the chunk ends, so bytes of a forged chunk may already have been returned when ``feed`` raises.
    That is deliberate (no buffering of whole chunks): the caller writes into a temporary
    location and never commits an object whose decode raised, so unverified bytes never become
    visible.
    """

    def __init__(self, *, signed: bool, trailer: bool, signing_key: bytes | None = None,
                 seed_signature: str | None = None, amz_date: str | None = None,
                 scope: str | None = None, max_chunk_bytes: int = 16 << 20) -> None:
        if signed and (signing_key is None or seed_signature is None or amz_date is None
                       or scope is None):
            raise ValueError("signed aws-chunked decoding needs signing_key, seed_signature, "
                             "amz_date and scope")
        if max_chunk_bytes < 0:
            raise ValueError("max_chunk_bytes must not be negative")
        self._signed = signed
        self._trailer = trailer
        self._key = signing_key or b""
        self._prev_signature = seed_signature or ""
        self._amz_date = amz_date or ""
        self._scope = scope or ""
        self._max_chunk_bytes = max_chunk_bytes
        self._state = _HEADER
        self._line = bytearray()
        self._remaining = 0
        self._crlf_matched = 0
        self._hasher: hashlib._Hash | None = None
        self._chunk_signature = ""
        self._trailer_lines: list[tuple[str, str]] = []
        self._trailer_signature: str | None = None
        self._error: ChunkError | None = None
        self.decoded_bytes = 0

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes | memoryview) -> list[memoryview | bytes]:
        if self._error is not None:
            raise self._error
        try:
            return self._feed(data)
        except ChunkError as err:
            self._error = err
            raise

    def finish(self) -> dict[str, str]:
        """End of stream: return the trailers, or raise if the body stopped early."""
        if self._error is not None:
            raise self._error
        try:
            if self._state == _TRAILER:
                # Lenient end: some clients close the body after the trailer lines without the
                # final empty line (or even without the last line's CRLF).
                if self._line:
                    line = bytes(self._line)
                    self._line.clear()
                    self._trailer_line(line[:-1] if line.endswith(b"\r") else line)
                if self._state == _TRAILER:
                    self._end_trailers()
            if self._state != _DONE:
                raise ChunkError(INCOMPLETE, "The aws-chunked body ended before its final chunk.")
        except ChunkError as err:
            self._error = err
            raise
        return {name: value for name, value in self._trailer_lines}

    def _feed(self, data: bytes | memoryview) -> list[memoryview | bytes]:
        mv = memoryview(data)
        if mv.ndim != 1 or mv.format != "B":
            mv = mv.cast("B")
        # Views into an immutable bytes object stay valid forever: hand them out without a copy.
        # A caller-owned mutable buffer may be reused after this call, so pieces are copied out.
        zero_copy = isinstance(mv.obj, bytes)
        out: list[memoryview | bytes] = []
        pos = 0
        n = len(mv)
        while pos < n:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, n - pos)
                piece = mv[pos:pos + take]
                if self._hasher is not None:
                    self._hasher.update(piece)
                out.append(piece if zero_copy else bytes(piece))
                pos += take
                self._remaining -= take
                self.decoded_bytes += take
                if self._remaining == 0:
                    if self._signed:
                        self._verify_chunk()
                    self._state = _DATA_CRLF
            elif state == _DATA_CRLF:
                while self._crlf_matched < 2 and pos < n:
                    if mv[pos] != (13 if self._crlf_matched == 0 else 10):
                        raise ChunkError(INCOMPLETE, "aws-chunked chunk data is not followed by "
                                      "CRLF; the chunk is shorter or longer than its declared size.")
                    self._crlf_matched += 1
                    pos += 1
                if self._crlf_matched == 2:
                    self._crlf_matched = 0
                    self._state = _HEADER
            elif state == _DONE:
                tail = bytes(mv[pos:pos + 64])
                if tail.strip(b"\r\n"):
                    raise ChunkError(MALFORMED, "Unexpected data after the final aws-chunked chunk.")
                pos += len(tail)
            else:
                pos = self._take_line(mv, pos, n)
        return out

    def _take_line(self, mv: memoryview, pos: int, n: int) -> int:
        """Consume up to one line terminator; dispatch the line when complete. Returns new pos."""
        room = CHUNK_LINE_BYTES_MAX - len(self._line)
        # Copy at most one line's worth of the input to search it; the data after the header is
        # left in place for the zero-copy data path.
        window = bytes(mv[pos:pos + room + 1])
        idx = window.find(b"\n")
        if idx < 0:
            if len(window) > room:
                raise ChunkError(MALFORMED, "aws-chunked header or trailer line is too long.")
            self._line += window
            return n
        if idx > room:
            raise ChunkError(MALFORMED, "aws-chunked header or trailer line is too long.")
        if self._line:
            self._line += window[:idx]
            line = bytes(self._line)
            self._line.clear()
        else:
            line = window[:idx]
        # A bare LF is accepted as well as CRLF: the framing stays unambiguous either way.
        if line.endswith(b"\r"):
            line = line[:-1]
        if self._state == _HEADER:
            self._chunk_header(line)
        else:
            self._trailer_line(line)
        return pos + idx + 1

    def _chunk_header(self, line: bytes) -> None:
        size_part, _, extensions = line.partition(b";")
        size_text = size_part.strip()
        if not _HEX_SIZE.fullmatch(size_text):
            raise ChunkError(MALFORMED, "Invalid aws-chunked chunk size.")
        size = int(size_text, 16)
        if size > self._max_chunk_bytes:
            raise ChunkError(MALFORMED, f"aws-chunked chunk of {size} bytes exceeds the limit of "
                          f"{self._max_chunk_bytes} bytes.")
        if self._signed:
            signature = b""
            for ext in extensions.split(b";"):
                key, _, value = ext.partition(b"=")
                if key.strip() == b"chunk-signature":
                    signature = value.strip()
            if not _SIG_HEX.fullmatch(signature):
                raise ChunkError(SIGNATURE, "aws-chunked chunk is missing a valid "
                              "chunk-signature.")
            self._chunk_signature = signature.decode("ascii").lower()
            self._hasher = hashlib.sha256()
        if size == 0:
            if self._signed:
                self._verify_chunk()
            self._state = _TRAILER
        else:
            self._remaining = size
            self._state = _DATA

    def _verify_chunk(self) -> None:
        assert self._hasher is not None
        sts = (f"AWS4-HMAC-SHA256-PAYLOAD\n{self._amz_date}\n{self._scope}\n{self._prev_signature}\n"
               f"{EMPTY_SHA256}\n{self._hasher.hexdigest()}")
        expected = hmac.digest(self._key, sts.encode(), "sha256").hex()
        self._hasher = None
        if not hmac.compare_digest(expected, self._chunk_signature):
            raise ChunkError(SIGNATURE, "The aws-chunked chunk signature does not match.",
                          string_to_sign=sts, signature_provided=self._chunk_signature)
        self._prev_signature = expected

    def _trailer_line(self, line: bytes) -> None:
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

    def _end_trailers(self) -> None:
        if self._signed and self._trailer and (self._trailer_lines or self._trailer_signature):
            self._verify_trailer()
        self._state = _DONE

    def _verify_trailer(self) -> None:
        provided = (self._trailer_signature or "").lower()
        if not _SIG_HEX.fullmatch(provided.encode("latin-1")):
            raise ChunkError(SIGNATURE, "Missing or malformed x-amz-trailer-signature.")
        prefix = f"AWS4-HMAC-SHA256-TRAILER\n{self._amz_date}\n{self._scope}\n{self._prev_signature}\n"
        # The signed form is each trailer as "name:value\n". Clients send them in the order they
        # signed them; a sorted order is tried as well for encoders that canonicalise first.
        orders = [self._trailer_lines]
        ordered = sorted(self._trailer_lines)
        if ordered != self._trailer_lines:
            orders.append(ordered)
        for lines in orders:
            canonical = "".join(f"{name}:{value}\n" for name, value in lines)
            digest = hashlib.sha256(canonical.encode("latin-1")).hexdigest()
            expected = hmac.digest(self._key, (prefix + digest).encode(), "sha256").hex()
            if hmac.compare_digest(expected, provided):
                return
        raise ChunkError(SIGNATURE, "The x-amz-trailer-signature does not match.",
                      signature_provided=provided)
