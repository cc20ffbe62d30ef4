"""PutObject, GetObject, HeadObject, DeleteObject."""
from __future__ import annotations

from ...http.request import Response
from ...storage import BucketInfo, ObjectMeta, Segment
from ..common import (
    Ctx,
    check_key,
    delete_marker_headers,
    empty_response,
    etag_matches,
    http_date,
    parse_http_date,
    parse_tagging_header,
    quote_etag,
    stored_headers,
    version_headers,
    version_param,
)
from ..errors import S3Error
from ..ingest import ingest
from ..lifecycle import expiration_headers
from .objectlock import (
    apply_lock,
    governance_bypass,
    lock_for_new_version,
    lock_headers,
    requested_lock,
    require_put_integrity,
)

_OVERRIDES = {"response-content-type": "Content-Type", "response-content-language": "Content-Language",
              "response-expires": "Expires", "response-cache-control": "Cache-Control",
              "response-content-disposition": "Content-Disposition",
              "response-content-encoding": "Content-Encoding"}


def write_conditions(ctx: Ctx) -> tuple[str | None, bool]:
    """If-Match / If-None-Match on writes: only '*' is valid for If-None-Match."""
    h = ctx.req.headers
    if_none = h.get("if-none-match")
    if if_none is not None and if_none.strip() != "*":
        raise S3Error("NotImplemented", "A header you provided implies functionality that is not "
                                        "implemented", Header="If-None-Match")
    if_match = h.get("if-match")
    return (None if if_match is None else if_match.strip().strip('"')), if_none is not None


def new_meta(ctx: Ctx, bucket: str, key: str) -> ObjectMeta:
    h = ctx.req.headers
    tags = parse_tagging_header(h["x-amz-tagging"]) if "x-amz-tagging" in h else {}
    return ObjectMeta(bucket=bucket, key=key, vid="", size=0, etag="", last_modified=0.0,
                      content_type=h.get("content-type"), headers=stored_headers(h), tags=tags,
                      owner_id=ctx.owner_id)


def checksum_headers(meta: ObjectMeta, checksums: dict[str, str] | None = None) -> list[tuple[str, str]]:
    out = [(f"x-amz-checksum-{a}", v) for a, v in (checksums or meta.checksums).items()]
    if out:
        out.append(("x-amz-checksum-type", meta.checksum_type or "FULL_OBJECT"))
    return out


async def put_object(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None and ctx.ep.key is not None
    key = ctx.ep.key
    check_key(key)
    if_match, if_none_match = write_conditions(ctx)
    meta = new_meta(ctx, bucket.name, key)
    lock = requested_lock(ctx, bucket)
    require_put_integrity(ctx, bucket)
    ing = await ingest(ctx)
    try:
        meta.vid = ing.data.vid
        meta.size = ing.data.size
        meta.etag = ing.data.md5_hex
        meta.checksums = ing.checksums
        meta.checksum_type = "FULL_OBJECT" if ing.checksums else None
        meta.segments = [Segment(ing.data.vid, ing.data.size, ing.data.md5_hex, dict(ing.checksums))]
        apply_lock(meta, lock_for_new_version(bucket, lock))
        await ctx.store.put_object(meta, ing.data, if_match=if_match, if_none_match=if_none_match)
    except BaseException:
        await ing.writer.abort()
        raise
    return empty_response(200, [("ETag", quote_etag(meta.etag))] + checksum_headers(meta)
                          + new_version_headers(meta)
                          + expiration_headers(bucket, meta, ctx.config.lifecycle_day_s))


def _object_headers(meta: ObjectMeta) -> list[tuple[str, str]]:
    out = [("Last-Modified", http_date(meta.last_modified)), ("ETag", quote_etag(meta.etag)),
           ("Content-Type", meta.content_type or "binary/octet-stream"), ("Accept-Ranges", "bytes")]
    names = {"content-encoding": "Content-Encoding", "content-disposition": "Content-Disposition",
             "content-language": "Content-Language", "cache-control": "Cache-Control",
             "expires": "Expires"}
    for k, v in meta.headers.items():
        out.append((names.get(k, k), v))
    if meta.tags:
        out.append(("x-amz-tagging-count", str(len(meta.tags))))
    if meta.parts_count:
        out.append(("x-amz-mp-parts-count", str(meta.parts_count)))
    return out


def check_read_conditions(h: dict[str, str], meta: ObjectMeta, prefix: str = "") -> None:
    """RFC 7232 section 6 order: If-Match, then If-Unmodified-Since (only without If-Match),
    If-None-Match, then If-Modified-Since (only without If-None-Match).

    ``prefix="x-amz-copy-source-"`` checks a copy source instead: there a failed If-None-Match or
    If-Modified-Since is 412, since nothing is being returned that could be "not modified"."""
    lm = int(meta.last_modified)

    def fail(name: str, *, not_modified: bool = False) -> S3Error:
        if not_modified and not prefix:
            return S3Error("NotModified", headers={"ETag": quote_etag(meta.etag),
                                                   "Last-Modified": http_date(meta.last_modified)})
        return S3Error("PreconditionFailed", Condition=(prefix + name) if prefix else name)

    if prefix + "if-match" in h:
        if not etag_matches(h[prefix + "if-match"], meta.etag):
            raise fail("If-Match")
    elif prefix + "if-unmodified-since" in h:
        t = parse_http_date(h[prefix + "if-unmodified-since"])
        if t is not None and lm > t:
            raise fail("If-Unmodified-Since")
    if prefix + "if-none-match" in h:
        if etag_matches(h[prefix + "if-none-match"], meta.etag):
            raise fail("If-None-Match", not_modified=True)
    elif prefix + "if-modified-since" in h:
        t = parse_http_date(h[prefix + "if-modified-since"])
        if t is not None and lm <= t:
            raise fail("If-Modified-Since", not_modified=True)


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """A single 'bytes=' range -> (start, end inclusive); None means serve the whole object.

    Like S3, a syntactically invalid or multi-range header is ignored; an unsatisfiable one is
    InvalidRange (416)."""
    v = value.strip()
    if not v.startswith("bytes=") or "," in v:
        return None
    spec = v[6:].strip()
    first, dash, last = spec.partition("-")
    if not dash:
        return None
    try:
        if first == "":
            n = int(last)
            if n < 0:
                return None
            if n == 0 or size == 0:
                raise S3Error("InvalidRange", ActualObjectSize=str(size), RangeRequested=value)
            return max(0, size - n), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0 or end < start:
        return None
    if start >= size:
        raise S3Error("InvalidRange", ActualObjectSize=str(size), RangeRequested=value)
    return start, min(end, size - 1)


async def _load(ctx: Ctx, bucket: BucketInfo) -> ObjectMeta:
    key = ctx.ep.key
    assert key is not None
    vid = version_param(ctx)
    if ctx.prefetched is not None:
        meta = ctx.prefetched[0]
    else:
        meta = await ctx.store.get_object(bucket.name, key, vid)
    if meta is None:
        # Like S3: without s3:ListBucket a caller may not learn that a key is absent (403, not 404).
        ctx.access.check_access(ctx, bucket, "ListObjects", None)
        if vid is not None:
            raise S3Error("NoSuchVersion", Key=key, VersionId=vid)
        raise S3Error("NoSuchKey", Key=key)
    if meta.delete_marker:
        # The key's newest version is a delete marker (404), or one was asked for by id (405).
        if vid is not None:
            raise S3Error("MethodNotAllowed", "The specified method is not allowed against this "
                          "resource.", headers=delete_marker_headers(meta), Method=ctx.req.method,
                          ResourceType="DeleteMarker")
        raise S3Error("NoSuchKey", Key=key, headers=delete_marker_headers(meta))
    return meta


def _part_range(ctx: Ctx, meta: ObjectMeta) -> tuple[int, int, int] | None:
    pn = ctx.q("partNumber")
    if pn is None:
        return None
    try:
        n = int(pn)
    except ValueError as e:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, "
                                         "inclusive", ArgumentName="partNumber") from e
    if not 1 <= n <= 10000:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, "
                                         "inclusive", ArgumentName="partNumber")
    segs = meta.segments if meta.parts_count else [Segment(meta.vid, meta.size, meta.etag)]
    if n > len(segs):
        raise S3Error("InvalidPartNumber", ActualObjectSize=str(meta.size))
    start = sum(s.size for s in segs[: n - 1])
    return start, start + segs[n - 1].size - 1, len(segs)


async def get_object(ctx: Ctx, bucket: BucketInfo | None, *, head: bool = False) -> Response:
    assert bucket is not None
    meta = await _load(ctx, bucket)
    h = ctx.req.headers
    check_read_conditions(h, meta)
    headers = _object_headers(meta) + version_headers(bucket, meta)
    if ctx.q("versionId") is None:      # the current object: what its rules say
        headers += expiration_headers(bucket, meta, ctx.config.lifecycle_day_s)
    if meta.lock_mode is not None or meta.legal_hold is not None:
        headers += lock_headers(ctx, bucket, meta)
    size = meta.size
    rng: tuple[int, int] | None = None
    status = 200
    part = _part_range(ctx, meta)
    if part is not None:
        if size > 0:
            rng = (part[0], part[1])
        headers = [x for x in headers if x[0] != "x-amz-mp-parts-count"]
        headers.append(("x-amz-mp-parts-count", str(part[2])))
        status = 206 if meta.parts_count else 200
    elif "range" in h:
        rng = parse_range(h["range"], size)
        if rng is not None:
            status = 206
    if rng is not None and status == 206:
        headers.append(("Content-Range", f"bytes {rng[0]}-{rng[1]}/{size}"))
    if h.get("x-amz-checksum-mode", "").upper() == "ENABLED" and (rng is None or status == 200):
        headers += checksum_headers(meta)
    for qname, hname in _OVERRIDES.items():
        v = ctx.q(qname)
        if v is not None:
            if ctx.who.user_id is None:
                raise S3Error("InvalidRequest", "Request specific response headers cannot be used "
                                                "for anonymous GET requests.")
            headers = [x for x in headers if x[0].lower() != hname.lower()] + [(hname, v)]
    start, end = rng if rng is not None else (0, size - 1)
    length = end - start + 1 if size > 0 else 0
    if head or length == 0:
        return Response(status, headers, None if head else b"", content_length=length)
    inline = ctx.prefetched[1] if ctx.prefetched is not None else None
    if inline is not None:
        body = ctx.store.body_reader(inline, start, end)
    else:
        body = await ctx.store.open_reader(meta, start, end)
    return Response(status, headers, body, content_length=length)


async def head_object(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    return await get_object(ctx, bucket, head=True)


async def delete_object(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None and ctx.ep.key is not None
    check_key(ctx.ep.key)
    vid = version_param(ctx)
    if_match = ctx.req.headers.get("if-match")
    if if_match is not None:
        meta = await ctx.store.get_object(bucket.name, ctx.ep.key, vid)
        if meta is None or meta.delete_marker:
            raise S3Error("NoSuchKey", Key=ctx.ep.key)
        if not etag_matches(if_match, meta.etag):
            raise S3Error("PreconditionFailed", Condition="If-Match")
    # Only a delete by version id can meet a lock (without one it adds a delete marker).
    bypass = vid is not None and governance_bypass(ctx, bucket, ctx.ep.key)
    done = await ctx.store.delete_object(bucket.name, ctx.ep.key, vid, owner_id=ctx.owner_id,
                                         bypass_governance=bypass)
    headers = []
    if done.version_id is not None:
        headers.append(("x-amz-version-id", done.version_id))
    if done.delete_marker:
        headers.append(("x-amz-delete-marker", "true"))
    return empty_response(204, headers)


def new_version_headers(meta: ObjectMeta) -> list[tuple[str, str]]:
    """x-amz-version-id of a version a write just made (none in an unversioned bucket)."""
    return [("x-amz-version-id", meta.version_id)] if meta.version_id is not None else []

