"""Small request bodies (XML, policies): read whole, verified like an upload."""
from __future__ import annotations

import hashlib

from ... import checksums
from ...http.request import BodyTooLarge, ClientDisconnected
from ..chunked import ChunkedDecoder
from ..common import MAX_XML_BODY_BYTES, Ctx
from ..errors import S3Error
from ..ingest import (
    STREAMING_PAYLOADS,
    content_md5,
    decode_checksum_header,
    requested_checksum,
)


async def read_xml_body(ctx: Ctx, *, limit: int = MAX_XML_BODY_BYTES, require_integrity: bool = False,
                        body_checksum_headers: bool = True) -> bytes:
    """Whole body, decoded and checked against Content-MD5 / x-amz-checksum-* / the signed sha.

    ``require_integrity``: S3 requires Content-MD5 or an x-amz-checksum-* on some calls
    (DeleteObjects); new SDKs send only the checksum header (S3-PITFALLS.md item 4).
    ``body_checksum_headers=False``: the x-amz-checksum-* headers describe something else (the
    whole object, on CompleteMultipartUpload) and must not be checked against this body."""
    h = ctx.req.headers
    try:
        raw = await ctx.req.body.read_all(limit + (64 << 10))
    except BodyTooLarge as e:
        raise S3Error("MaxMessageLengthExceeded") from e
    except ClientDisconnected as e:
        raise S3Error("IncompleteBody") from e
    sha = ctx.auth.content_sha256 or "UNSIGNED-PAYLOAD"
    trailers: dict[str, str] = {}
    if sha in STREAMING_PAYLOADS:
        dec = ChunkedDecoder(signed=sha.startswith("STREAMING-AWS4-HMAC"), trailer=sha.endswith("TRAILER"),
                             signing_key=ctx.auth.signing_key, seed_signature=ctx.auth.seed_signature,
                             amz_date=ctx.auth.amz_date, scope=ctx.auth.scope)
        body = b"".join(bytes(p) for p in dec.feed(raw))
        trailers = dec.finish()
    else:
        body = raw
        if len(sha) == 64 and hashlib.sha256(body).hexdigest() != sha:
            raise S3Error("XAmzContentSHA256Mismatch", ClientComputedContentSHA256=sha,
                          S3ComputedContentSHA256=hashlib.sha256(body).hexdigest())
    if len(body) > limit:
        raise S3Error("MaxMessageLengthExceeded")
    md5 = content_md5(h)
    if md5 is not None and hashlib.md5(body).digest() != md5:
        raise S3Error("BadDigest")
    algo, expected, in_trailer = requested_checksum(h) if body_checksum_headers else (None, None, False)
    if algo and in_trailer:
        expected = trailers.get(f"x-amz-checksum-{algo}")
    if algo and expected is not None:
        hs = checksums.Hasher([algo], md5=False)
        hs.update(body)
        if hs.digests()[algo] != decode_checksum_header(algo, expected):
            raise S3Error("BadDigest", f"The {algo.upper()} you specified did not match the "
                                       f"calculated checksum.")
    elif require_integrity and md5 is None:
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5 or "
                                        "x-amz-checksum-*")
    return body
