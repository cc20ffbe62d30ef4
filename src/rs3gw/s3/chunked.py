"""``Content-Encoding: aws-chunked`` request bodies: the S3 face of rs3gw._core.chunked.

Decoding (framing, chunk SHA-256 and the chunk-signature chain, trailers) is done by the compiled
core, loaded through rs3gw._core.load: a missing build is an ImportError, never a silent slow path;
RS3GW_CORE=reference swaps in the pure-Python twin for tests only. This module only turns the core's
ChunkError into S3Error.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar, Protocol

from rs3gw._core import implementation, load

from .errors import S3Error

# ChunkError.kind -> S3 error code.
_S3_CODES = {
    "signature": "SignatureDoesNotMatch",
    "incomplete": "IncompleteBody",
    "malformed": "InvalidRequest",
}


_core = load("chunked")
# "compiled:openssl-<version>" or "reference".
backend = "reference" if implementation() == "reference" else f"compiled:{_core.backend}"


class _ChunkError(Protocol):
    """What is read from either implementation's ChunkError."""

    kind: str
    message: str
    string_to_sign: str | None
    signature_provided: str | None


class ChunkedDecoder:
    """Feed raw body bytes, get decoded payload pieces; ``finish()`` returns the trailers.

    In signed mode a chunk's bytes are returned before its signature is checked at the chunk's
    end, so a forged chunk may already have been handed out when ``feed`` raises: the caller
    writes to a temporary location and never commits an object whose decode raised.
    """

    __slots__ = ("_dec",)

    # The implementation in use (a module with ChunkedDecoder and ChunkError); tests subclass
    # to pin the compiled module or its twin.
    core: ClassVar[ModuleType] = _core

    def __init__(self, *, signed: bool, trailer: bool, signing_key: bytes | None = None,
                 seed_signature: str | None = None, amz_date: str | None = None,
                 scope: str | None = None, max_chunk_bytes: int = 16 << 20) -> None:
        self._dec = self.core.ChunkedDecoder(
            signed=signed, trailer=trailer, signing_key=signing_key, seed_signature=seed_signature,
            amz_date=amz_date, scope=scope, max_chunk_bytes=max_chunk_bytes)

    @property
    def done(self) -> bool:
        return bool(self._dec.done)

    @property
    def decoded_bytes(self) -> int:
        return int(self._dec.decoded_bytes)

    def feed(self, data: bytes | memoryview) -> list[memoryview | bytes]:
        try:
            pieces: list[memoryview | bytes] = self._dec.feed(data)
        except self.core.ChunkError as err:
            raise _s3_error(err) from err
        return pieces

    def finish(self) -> dict[str, str]:
        try:
            trailers: dict[str, str] = self._dec.finish()
        except self.core.ChunkError as err:
            raise _s3_error(err) from err
        return trailers


def _s3_error(err: _ChunkError) -> S3Error:
    fields: dict[str, Any] = {}  # extra XML elements of the error response
    if err.string_to_sign is not None:
        fields["StringToSign"] = err.string_to_sign
    if err.signature_provided is not None:
        fields["SignatureProvided"] = err.signature_provided
    return S3Error(_S3_CODES[err.kind], err.message, **fields)
