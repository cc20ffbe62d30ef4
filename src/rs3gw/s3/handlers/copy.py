"""CopyObject and the copy-source helpers UploadPartCopy shares."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from urllib.parse import unquote

from ...http.request import Response
from ...storage import BucketInfo, ObjectMeta, Segment
from ..common import (
    MAX_PUT_BYTES,
    Ctx,
    check_key,
    check_version_id,
    iso8601,
    parse_tagging_header,
    quote_etag,
    stored_headers,
    version_headers,
    versioning_state,
    xml_response,
)
from ..errors import S3Error
from ..lifecycle import expiration_headers
from ..xml import document
from .objectlock import apply_lock, lock_for_new_version, requested_lock
from .objects import check_read_conditions, new_version_headers, write_conditions


async def load_copy_source(ctx: Ctx) -> CopySource:
    """Decode x-amz-copy-source (URL-encoded 'bucket/key[?versionId=v]'), check read access
    and the x-amz-copy-source-if-* conditions; return the source object."""
    raw = ctx.req.headers["x-amz-copy-source"]
    path, _, qs = raw.partition("?")
    try:
        src = unquote(path, errors="strict")
    except UnicodeDecodeError as e:
        raise S3Error("InvalidArgument", "Invalid copy source encoding") from e
    src = src.removeprefix("/")
    sbucket, _, skey = src.partition("/")
    if not sbucket or not skey:
        raise S3Error("InvalidArgument", "Invalid copy source object key", ArgumentName="x-amz-copy-source")
    vid = dict(p.partition("=")[::2] for p in qs.split("&")).get("versionId") if qs else None
    if vid is not None:
        check_version_id(vid, "x-amz-copy-source")
    binfo = await ctx.store.get_bucket(sbucket)
    if binfo is None:
        raise S3Error("NoSuchBucket", BucketName=sbucket)
    ctx.access.check_access(ctx, binfo, "GetObject", skey)
    meta = await ctx.store.get_object(sbucket, skey, vid)
    if meta is None:
        if vid is not None:
            raise S3Error("NoSuchVersion", Key=skey, VersionId=vid)
        raise S3Error("NoSuchKey", Key=skey)
    if meta.delete_marker:
        if vid is not None:
            raise S3Error("InvalidRequest", "The source of a copy request may not specifically "
                                            "refer to a delete marker by version id.")
        raise S3Error("NoSuchKey", Key=skey)
    check_read_conditions(ctx.req.headers, meta, prefix="x-amz-copy-source-")
    return CopySource(meta, binfo, vid is not None)


@dataclass(frozen=True)
class CopySource:
    meta: ObjectMeta
    bucket: BucketInfo
    by_version: bool        # the request named the source version

    def headers(self) -> list[tuple[str, str]]:
        """x-amz-copy-source-version-id, for a source in a bucket with versioning."""
        return [("x-amz-copy-source-version-id", v) for _, v in
                version_headers(self.bucket, self.meta)]


async def copy_object(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None and ctx.ep.key is not None
    key = ctx.ep.key
    check_key(key)
    h = ctx.req.headers
    source = await load_copy_source(ctx)
    src = source.meta
    directive = h.get("x-amz-metadata-directive", "COPY").upper()
    tag_directive = h.get("x-amz-tagging-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE") or tag_directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.")
    same = src.bucket == bucket.name and src.key == key
    if same and not source.by_version and directive == "COPY" and tag_directive == "COPY" and not any(
            x in h for x in ("x-amz-storage-class", "x-amz-website-redirect-location",
                             "x-amz-server-side-encryption", "x-amz-checksum-algorithm")):
        raise S3Error("InvalidRequest", "This copy request is illegal because it is trying to copy an "
                                        "object to itself without changing the object's metadata, "
                                        "storage class, website redirect location or encryption "
                                        "attributes.")
    if src.size > MAX_PUT_BYTES:
        raise S3Error("InvalidRequest", "The specified copy source is larger than the maximum allowable "
                                        "size for a copy source: 5368709120")
    if_match, if_none_match = write_conditions(ctx)
    lock = requested_lock(ctx, bucket)
    meta = ObjectMeta(bucket=bucket.name, key=key, vid="", size=src.size, etag=src.etag,
                      last_modified=0.0, owner_id=ctx.owner_id)
    # The copy's lock is the request's or the bucket's default, never the source's (as S3).
    apply_lock(meta, lock_for_new_version(bucket, lock))
    if directive == "REPLACE":
        meta.content_type = h.get("content-type")
        meta.headers = stored_headers(h)
    else:
        meta.content_type, meta.headers = src.content_type, dict(src.headers)
    meta.tags = (parse_tagging_header(h.get("x-amz-tagging", "")) if tag_directive == "REPLACE"
                 else dict(src.tags))
    algo = (h.get("x-amz-checksum-algorithm") or "").lower() or None
    if algo is None and src.checksums:
        algo = next(iter(src.checksums))
    # A version of its own needs bytes of its own (storage/versioning.py): no shared files.
    if same and algo in (None, *src.checksums) and versioning_state(bucket) is None:
        # Metadata-only rewrite: the data files stay, referenced by the new metadata.
        meta.segments, meta.parts_count = src.segments, src.parts_count
        meta.checksums, meta.checksum_type = dict(src.checksums), src.checksum_type
        await ctx.store.put_object(meta, None, if_match=if_match, if_none_match=if_none_match)
    else:
        data = await ctx.store.copy_data(src, 0, src.size - 1, [algo] if algo else [])
        try:
            from ... import checksums
            meta.etag = data.md5_hex
            meta.parts_count = None
            if algo:
                meta.checksums = {algo: checksums.b64(data.checksums[algo])}
                meta.checksum_type = "FULL_OBJECT"
            meta.segments = [Segment(data.vid, data.size, data.md5_hex, dict(meta.checksums))]
            await ctx.store.put_object(meta, data, if_match=if_match, if_none_match=if_none_match)
        except BaseException:
            await ctx.store.discard_write(data)
            raise
    lm = meta.last_modified
    if not lm:
        stored = await ctx.store.get_object(bucket.name, key)
        lm = stored.last_modified if stored else 0.0
    return xml_response(document("CopyObjectResult", [
        ("LastModified", iso8601(lm)), ("ETag", quote_etag(meta.etag)),
        *[(f"Checksum{a.upper()}", v) for a, v in meta.checksums.items()]]),
        headers=source.headers() + new_version_headers(meta)
        + expiration_headers(bucket, dataclasses.replace(meta, last_modified=lm),
                             ctx.config.lifecycle_day_s))
