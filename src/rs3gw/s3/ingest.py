"""Read an upload body into a data file: decode aws-chunked, hash, verify, never half-commit.

Used by PutObject and UploadPart. Everything here checks the request against what the client
declared (Content-Length, Content-MD5, x-amz-content-sha256, x-amz-checksum-*, trailers); the
caller commits metadata only after ``ingest`` returned, so a failed check leaves nothing visible.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from .. import checksums
from ..http.request import ClientDisconnected
from ..storage import ObjectSink, WriteResult
from .chunked import ChunkedDecoder
from .common import MAX_PUT_BYTES, Ctx
from .errors import S3Error

# x-amz-content-sha256 values that announce an aws-chunked body.
STREAMING_PAYLOADS = ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                      "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
_HEX64 = frozenset("0123456789abcdef")


@dataclass
class Ingested:
    data: WriteResult
    checksums: dict[str, str]   # algo -> base64, what we store/echo
    # The caller commits or, on any failure, must ``await writer.abort()`` (removes the tmp file).
    writer: ObjectSink


def requested_checksum(h: dict[str, str]) -> tuple[str | None, str | None, bool]:
    """(algo, expected base64 or None, expected-in-trailer) from the request headers."""
    present = [a for a in checksums.ALGOS if f"x-amz-checksum-{a}" in h]
    trailer = h.get("x-amz-trailer", "").strip().lower()
    if trailer:
        if not trailer.startswith("x-amz-checksum-") or trailer[15:] not in checksums.ALGOS:
            raise S3Error("InvalidRequest", f"The value specified in the x-amz-trailer header is not "
                                            f"supported: {trailer}")
        present.append(trailer[15:])
    if len(set(present)) > 1:
        raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple "
                                        "checksum Types are not allowed.")
    if present:
        algo = present[0]
        return algo, h.get(f"x-amz-checksum-{algo}"), bool(trailer)
    sdk = h.get("x-amz-sdk-checksum-algorithm", "").lower()
    if sdk:
        if sdk not in checksums.ALGOS:
            raise S3Error("InvalidRequest", f"Checksum algorithm {sdk} is not supported")
        return sdk, None, False
    return None, None, False


def decode_checksum_header(algo: str, value: str) -> bytes:
    """The digest an x-amz-checksum-{algo} value (base64) names; InvalidRequest if malformed."""
    try:
        return checksums.decode_checksum(algo, value)
    except ValueError as e:
        raise S3Error("InvalidRequest", f"Value for x-amz-checksum-{algo} header is invalid.") from e


def content_md5(h: dict[str, str]) -> bytes | None:
    if "content-md5" not in h:
        return None
    try:
        raw = base64.b64decode(h["content-md5"].strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise S3Error("InvalidDigest") from e
    if len(raw) != 16:
        raise S3Error("InvalidDigest")
    return raw


def declared_size(ctx: Ctx, streaming: bool) -> int | None:
    h = ctx.req.headers
    raw = h.get("x-amz-decoded-content-length") if streaming else h.get("content-length")
    if raw is None:
        if streaming or "transfer-encoding" in h:
            return None
        raise S3Error("MissingContentLength")
    try:
        n = int(raw)
    except ValueError as e:
        raise S3Error("InvalidArgument", "Invalid content length") from e
    if n < 0:
        raise S3Error("InvalidArgument", "Invalid content length")
    if n > MAX_PUT_BYTES:
        raise S3Error("EntityTooLarge", ProposedSize=str(n), MaxSizeAllowed=str(MAX_PUT_BYTES))
    return n


async def ingest(ctx: Ctx, *, extra_algo: str | None = None) -> Ingested:
    """Stream the request body to a new data file and verify it; raise S3Error on any mismatch."""
    h = ctx.req.headers
    sha = ctx.auth.content_sha256 or "UNSIGNED-PAYLOAD"
    streaming = sha in STREAMING_PAYLOADS
    algo, expected_b64, in_trailer = requested_checksum(h)
    if algo is None and extra_algo:
        algo = extra_algo
    expected_raw = (decode_checksum_header(algo, expected_b64)
                    if algo and expected_b64 is not None else None)
    md5_expected = content_md5(h)
    size = declared_size(ctx, streaming)
    literal_sha = len(sha) == 64 and set(sha) <= _HEX64
    algos = {algo} if algo else set()
    if literal_sha and size != 0:
        algos.add("sha256")
    decoder = None
    if streaming:
        decoder = ChunkedDecoder(signed=sha.startswith("STREAMING-AWS4-HMAC"), trailer=sha.endswith("TRAILER"),
                                 signing_key=ctx.auth.signing_key, seed_signature=ctx.auth.seed_signature,
                                 amz_date=ctx.auth.amz_date, scope=ctx.auth.scope)
    if ctx.ep.op == "PutObject" and ctx.ep.bucket is not None and ctx.ep.key is not None:
        # In cluster mode the body is fanned out to the object's replicas while it arrives.
        writer = ctx.store.begin_write(sorted(algos), target=(ctx.ep.bucket, ctx.ep.key, size))
    else:
        writer = ctx.store.begin_write(sorted(algos))
    try:
        body = ctx.req.body
        received = 0
        while True:
            try:
                piece = await body.read()
            except ClientDisconnected as e:
                raise S3Error("IncompleteBody") from e
            if not piece:
                break
            pieces = decoder.feed(piece) if decoder is not None else (piece,)
            for p in pieces:
                received += len(p)
                if received > MAX_PUT_BYTES or (size is not None and received > size):
                    raise S3Error("IncompleteBody" if size is not None and size < MAX_PUT_BYTES
                                  else "EntityTooLarge")
                await writer.write(p)
        trailers = decoder.finish() if decoder is not None else {}
        if size is not None and received != size:
            raise S3Error("IncompleteBody")
        result = await writer.finish()
        digests = result.checksums
        if md5_expected is not None and bytes.fromhex(result.md5_hex) != md5_expected:
            raise S3Error("BadDigest", ExpectedDigest=base64.b64encode(md5_expected).decode(),
                          CalculatedDigest=base64.b64encode(bytes.fromhex(result.md5_hex)).decode())
        if literal_sha:
            got = digests.get("sha256") or hashlib.sha256(b"").digest()
            if got.hex() != sha:
                raise S3Error("XAmzContentSHA256Mismatch", ClientComputedContentSHA256=sha,
                              S3ComputedContentSHA256=got.hex())
        out: dict[str, str] = {}
        if algo:
            if in_trailer:
                tval = trailers.get(f"x-amz-checksum-{algo}")
                if tval is None:
                    raise S3Error("InvalidRequest", f"x-amz-checksum-{algo} trailer was not sent")
                expected_raw = decode_checksum_header(algo, tval)
            if expected_raw is not None and digests[algo] != expected_raw:
                raise S3Error("BadDigest", f"The {algo.upper()} you specified did not match the "
                                           f"calculated checksum.")
            out[algo] = checksums.b64(digests[algo])
    except BaseException:
        await writer.abort()
        raise
    return Ingested(result, out, writer)
