"""ListObjects (v1), ListObjectsV2, ListObjectVersions: pages from the store's sorted index."""
from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from urllib.parse import quote

from ...http.request import Response
from ...storage import BucketInfo, ListPage, VersionPage
from ..common import Ctx, check_version_id, iso8601, xml_response
from ..errors import S3Error
from ..xml import Raw, document, esc


def max_keys(ctx: Ctx, name: str = "max-keys") -> int:
    raw = ctx.q(name)
    if raw is None:
        return 1000
    try:
        n = int(raw)
    except ValueError as e:
        raise S3Error("InvalidArgument", "Provided max-keys not an integer or within integer range",
                      ArgumentName=name, ArgumentValue=raw) from e
    if n < 0:
        raise S3Error("InvalidArgument", "Argument maxKeys must be an integer between 0 and 2147483647",
                      ArgumentName=name, ArgumentValue=raw)
    return min(n, 1000)


# encoding-type, applied to every key, prefix and marker a listing returns.
Encoder = Callable[[str], str]


def _as_is(name: str) -> str:
    return name


def _url_encoded(name: str) -> str:
    # S3 encodes like a form value but keeps '/' readable.
    return quote(name, safe="/~")


def encoder(ctx: Ctx) -> Encoder:
    et = ctx.q("encoding-type")
    if et is None:
        return _as_is
    if et.lower() != "url":
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request",
                      ArgumentName="encoding-type", ArgumentValue=et)
    return _url_encoded


def _contents(ctx: Ctx, page: ListPage, enc: Encoder, fetch_owner: bool) -> list[Raw]:
    # One f-string per entry: a 1,000-key page is most of a listing's CPU, and building a tree
    # of tuples for document() to walk cost about twice as much (measured: benchmarks/e2e.py LIST).
    out: list[Raw] = []
    for e in page.entries:
        sums = "".join(f"<ChecksumAlgorithm>{a.upper()}</ChecksumAlgorithm>"
                       for a in e.checksum_algorithms)
        owner = ""
        if fetch_owner:
            oid = esc(e.owner_id)
            owner = f"<Owner><ID>{oid}</ID><DisplayName>{oid}</DisplayName></Owner>"
        out.append(Raw(
            f"<Contents><Key>{esc(enc(e.key))}</Key><LastModified>{iso8601(e.last_modified)}"
            f"</LastModified><ETag>&quot;{esc(e.etag)}&quot;</ETag><Size>{e.size}</Size>{sums}{owner}"
            f"<StorageClass>STANDARD</StorageClass></Contents>"))
    return out


def _prefixes(page: ListPage | VersionPage, enc: Encoder) -> list[tuple[str, object]]:
    return [("CommonPrefixes", [("Prefix", enc(p))]) for p in page.common_prefixes]


async def list_objects_v1(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    prefix, delim, marker = ctx.q("prefix") or "", ctx.q("delimiter") or "", ctx.q("marker") or ""
    mk = max_keys(ctx)
    enc = encoder(ctx)
    page = await ctx.store.list_objects(bucket.name, prefix=prefix, delimiter=delim,
                                        after=marker, max_keys=mk)
    body = document("ListBucketResult", [
        ("Name", bucket.name), ("Prefix", enc(prefix)), ("Marker", enc(marker)),
        # NextMarker is only returned when a delimiter was given (clients use the last key otherwise).
        ("NextMarker", enc(page.next_key))
        if page.is_truncated and delim and page.next_key is not None else None,
        ("MaxKeys", mk), ("Delimiter", enc(delim)) if delim else None,
        ("IsTruncated", page.is_truncated),
        ("EncodingType", "url") if ctx.q("encoding-type") else None,
        *_contents(ctx, page, enc, True), *_prefixes(page, enc)])
    return xml_response(body)


def encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(b"1:" + key.encode()).decode()


def decode_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4))
        if not raw.startswith(b"1:"):
            raise ValueError(token)
        return raw[2:].decode()
    except (binascii.Error, ValueError, UnicodeDecodeError) as e:
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect",
                      ArgumentName="continuation-token") from e


async def list_objects_v2(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    prefix, delim = ctx.q("prefix") or "", ctx.q("delimiter") or ""
    token, start_after = ctx.q("continuation-token"), ctx.q("start-after") or ""
    mk = max_keys(ctx)
    enc = encoder(ctx)
    after = start_after
    if token is not None:
        after = max(decode_token(token), start_after)
    page = await ctx.store.list_objects(bucket.name, prefix=prefix, delimiter=delim,
                                        after=after, max_keys=mk)
    fetch_owner = (ctx.q("fetch-owner") or "").lower() == "true"
    body = document("ListBucketResult", [
        ("Name", bucket.name), ("Prefix", enc(prefix)),
        ("Delimiter", enc(delim)) if delim else None,
        ("MaxKeys", mk),
        ("EncodingType", "url") if ctx.q("encoding-type") else None,
        ("KeyCount", len(page.entries) + len(page.common_prefixes)),
        ("IsTruncated", page.is_truncated),
        ("ContinuationToken", token) if token is not None else None,
        ("NextContinuationToken", encode_token(page.next_key))
        if page.is_truncated and page.next_key is not None else None,
        ("StartAfter", enc(start_after)) if ctx.q("start-after") is not None else None,
        *_contents(ctx, page, enc, fetch_owner), *_prefixes(page, enc)])
    return xml_response(body)


async def list_object_versions(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    """Versions and delete markers, newest first within a key (an unversioned bucket's keys
    each have one version, "null", the latest)."""
    assert bucket is not None
    prefix, delim = ctx.q("prefix") or "", ctx.q("delimiter") or ""
    key_marker = ctx.q("key-marker") or ""
    vid_marker = ctx.q("version-id-marker")
    if vid_marker and not key_marker:
        raise S3Error("InvalidArgument", "A version-id marker cannot be specified without a key marker.",
                      ArgumentName="version-id-marker", ArgumentValue=vid_marker)
    if vid_marker:
        check_version_id(vid_marker, "version-id-marker")
    mk = max_keys(ctx)
    enc = encoder(ctx)
    page = await ctx.store.list_object_versions(bucket.name, prefix=prefix, delimiter=delim,
                                                key_marker=key_marker,
                                                version_id_marker=vid_marker or "", max_keys=mk)
    truncated = page.is_truncated
    body = document("ListVersionsResult", [
        ("Name", bucket.name), ("Prefix", enc(prefix)), ("KeyMarker", enc(key_marker)),
        ("VersionIdMarker", vid_marker or ""),
        ("NextKeyMarker", enc(page.next_key_marker))
        if truncated and page.next_key_marker is not None else None,
        ("NextVersionIdMarker", page.next_version_id_marker)
        if truncated and page.next_version_id_marker is not None else None,
        ("MaxKeys", mk), ("Delimiter", enc(delim)) if delim else None,
        ("EncodingType", "url") if ctx.q("encoding-type") else None,
        ("IsTruncated", truncated),
        *_versions(page, enc), *_prefixes(page, enc)])
    return xml_response(body)


def _versions(page: VersionPage, enc: Encoder) -> list[Raw]:
    """Version and DeleteMarker elements, in the page's order (one f-string each, as _contents)."""
    out: list[Raw] = []
    for e in page.entries:
        oid = esc(e.owner_id)
        head = (f"<Key>{esc(enc(e.key))}</Key><VersionId>{esc(e.version_id)}</VersionId>"
                f"<IsLatest>{'true' if e.is_latest else 'false'}</IsLatest>"
                f"<LastModified>{iso8601(e.last_modified)}</LastModified>")
        owner = f"<Owner><ID>{oid}</ID><DisplayName>{oid}</DisplayName></Owner>"
        if e.delete_marker:
            out.append(Raw(f"<DeleteMarker>{head}{owner}</DeleteMarker>"))
            continue
        sums = "".join(f"<ChecksumAlgorithm>{a.upper()}</ChecksumAlgorithm>"
                       for a in e.checksum_algorithms)
        out.append(Raw(f"<Version>{head}<ETag>&quot;{esc(e.etag)}&quot;</ETag><Size>{e.size}</Size>"
                       f"{sums}{owner}<StorageClass>STANDARD</StorageClass></Version>"))
    return out
