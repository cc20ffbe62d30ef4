"""Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts,
ListMultipartUploads. Completion is metadata-only: the parts' data files become the object's
segments, so a 5 TB completion costs the same as a 5 MB one."""
from __future__ import annotations

import itertools

from ... import checksums
from ...http.request import Response
from ...storage import BucketInfo, ObjectMeta, UploadInfo
from ..common import (
    Ctx,
    check_key,
    empty_response,
    iso8601,
    parse_tagging_header,
    quote_etag,
    stored_headers,
    unquote_etag,
    xml_response,
)
from ..errors import S3Error
from ..ingest import ingest
from ..lifecycle import abort_headers, expiration_headers
from ..xml import document, parse, text
from .bodies import read_xml_body
from .copy import load_copy_source
from .objectlock import RequestedLock, apply_lock, lock_for_new_version, requested_lock
from .objects import new_version_headers, write_conditions

MIN_PART_BYTES = 5 << 20
MAX_PART_BYTES = 5 << 30
_CRC = ("crc32", "crc32c", "crc64nvme")


async def create_multipart_upload(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None and ctx.ep.key is not None
    check_key(ctx.ep.key)
    h = ctx.req.headers
    algo = (h.get("x-amz-checksum-algorithm") or "").lower() or None
    ctype = (h.get("x-amz-checksum-type") or "").upper() or None
    if algo is not None and algo not in checksums.ALGOS:
        raise S3Error("InvalidRequest", f"Checksum algorithm {algo} is not supported")
    if ctype is not None and ctype not in ("COMPOSITE", "FULL_OBJECT"):
        raise S3Error("InvalidRequest", "The x-amz-checksum-type header value is invalid")
    if ctype is not None and algo is None:
        raise S3Error("InvalidRequest", "The x-amz-checksum-type header can only be used with the "
                                        "x-amz-checksum-algorithm header.")
    if algo is not None:
        ctype = ctype or ("FULL_OBJECT" if algo == "crc64nvme" else "COMPOSITE")
        if ctype == "COMPOSITE" and algo == "crc64nvme":
            raise S3Error("InvalidRequest", "The COMPOSITE checksum type cannot be used with the "
                                            "crc64nvme checksum algorithm.")
        if ctype == "FULL_OBJECT" and algo not in _CRC:
            raise S3Error("InvalidRequest", f"The FULL_OBJECT checksum type cannot be used with the "
                                            f"{algo} checksum algorithm.")
    tags = parse_tagging_header(h["x-amz-tagging"]) if "x-amz-tagging" in h else {}
    info = UploadInfo(
        upload_id="", bucket=bucket.name, key=ctx.ep.key, initiated=0.0, owner_id=ctx.owner_id,
        headers=stored_headers(h), content_type=h.get("content-type"), checksum_algorithm=algo,
        checksum_type=ctype, tags=tags)
    # Kept with the upload; the bucket's default retention is applied at completion instead,
    # counted from when the version is made.
    apply_lock(info, requested_lock(ctx, bucket))
    info = await ctx.store.create_upload(info)
    headers = abort_headers(bucket, info, ctx.config.lifecycle_day_s)
    if algo:
        headers += [("x-amz-checksum-algorithm", algo.upper()), ("x-amz-checksum-type", ctype or "")]
    return xml_response(document("InitiateMultipartUploadResult", [
        ("Bucket", bucket.name), ("Key", ctx.ep.key), ("UploadId", info.upload_id)]), headers=headers)


def _part_number(ctx: Ctx) -> int:
    raw = ctx.q("partNumber")
    try:
        n = int(raw or "")
    except ValueError as e:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive",
                      ArgumentName="partNumber", ArgumentValue=raw) from e
    if not 1 <= n <= 10000:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive",
                      ArgumentName="partNumber", ArgumentValue=raw)
    return n


async def _upload(ctx: Ctx, bucket: BucketInfo) -> UploadInfo:
    upload_id = ctx.q("uploadId") or ""
    info: UploadInfo = await ctx.store.get_upload(bucket.name, upload_id)
    if info.key != ctx.ep.key:
        raise S3Error("NoSuchUpload", UploadId=upload_id)
    return info


async def upload_part(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    n = _part_number(ctx)
    info = await _upload(ctx, bucket)
    ing = await ingest(ctx, extra_algo=info.checksum_algorithm)
    try:
        await ctx.store.put_part(bucket.name, info.upload_id, n, ing.data, ing.checksums)
    except BaseException:
        await ing.writer.abort()
        raise
    headers = [("ETag", quote_etag(ing.data.md5_hex))]
    headers += [(f"x-amz-checksum-{a}", v) for a, v in ing.checksums.items()]
    return empty_response(200, headers)


def _copy_range(value: str | None, size: int) -> tuple[int, int]:
    if value is None:
        return 0, size - 1
    v = value.strip()
    try:
        if not v.startswith("bytes="):
            raise ValueError(v)
        a, _, b = v[6:].partition("-")
        start, end = int(a), int(b)
    except ValueError as e:
        raise S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of the form "
                                         "bytes=first-last where first and last are the zero-based "
                                         "offsets of the first and last bytes to copy",
                      ArgumentName="x-amz-copy-source-range", ArgumentValue=value) from e
    if start < 0 or end < start or end >= size:
        raise S3Error("InvalidRange", ActualObjectSize=str(size), RangeRequested=value)
    return start, end


async def upload_part_copy(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    n = _part_number(ctx)
    info = await _upload(ctx, bucket)
    source = await load_copy_source(ctx)
    src = source.meta
    start, end = _copy_range(ctx.req.headers.get("x-amz-copy-source-range"), src.size)
    if end - start + 1 > MAX_PART_BYTES:
        raise S3Error("EntityTooLarge")
    algo = info.checksum_algorithm
    data = await ctx.store.copy_data(src, start, end, [algo] if algo else [])
    sums = {algo: checksums.b64(data.checksums[algo])} if algo else {}
    try:
        part = await ctx.store.put_part(bucket.name, info.upload_id, n, data, sums)
    except BaseException:
        await ctx.store.discard_write(data)
        raise
    return xml_response(document("CopyPartResult", [
        ("LastModified", iso8601(part.last_modified)), ("ETag", quote_etag(data.md5_hex)),
        *[(f"Checksum{a.upper()}", v) for a, v in sums.items()]]), headers=source.headers())


async def complete_multipart_upload(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None and ctx.ep.key is not None
    info = await _upload(ctx, bucket)
    if_match, if_none_match = write_conditions(ctx)
    root = parse(await read_xml_body(ctx, body_checksum_headers=False), "CompleteMultipartUpload")
    listed: list[tuple[int, str, dict[str, str]]] = []
    for p in root.findall("Part"):
        try:
            pn = int(text(p, "PartNumber") or "")
        except ValueError as e:
            raise S3Error("MalformedXML") from e
        sums = {a: v for a in checksums.ALGOS if (v := text(p, f"Checksum{a.upper()}"))}
        listed.append((pn, unquote_etag(text(p, "ETag") or ""), sums))
    if not listed:
        raise S3Error("MalformedXML", "The XML you provided was not well-formed or did not validate "
                                      "against our published schema")
    for prev, cur in itertools.pairwise(listed):
        if cur[0] <= prev[0]:
            raise S3Error("InvalidPartOrder")
    stored = {}
    marker = 0
    while True:
        parts, truncated = await ctx.store.list_parts(bucket.name, info.upload_id, part_marker=marker,
                                                      max_parts=1000)
        stored.update({p.part_number: p for p in parts})
        if not truncated or not parts:
            break
        marker = parts[-1].part_number
    chosen = []
    for i, (pn, etag, sums) in enumerate(listed):
        part = stored.get(pn)
        if part is None or part.etag != etag:
            raise S3Error("InvalidPart", UploadId=info.upload_id, PartNumber=str(pn), ETag=etag)
        for a, v in sums.items():
            if part.checksums.get(a) not in (None, v):
                raise S3Error("InvalidPart", UploadId=info.upload_id, PartNumber=str(pn))
        if i < len(listed) - 1 and part.size < MIN_PART_BYTES:
            raise S3Error("EntityTooSmall", ProposedSize=str(part.size), MinSizeAllowed=str(MIN_PART_BYTES),
                          PartNumber=str(pn), ETag=etag)
        chosen.append(part)
    meta = ObjectMeta(bucket=bucket.name, key=ctx.ep.key, vid="", size=sum(p.size for p in chosen),
                      etag=checksums.multipart_etag([p.etag for p in chosen]), last_modified=0.0,
                      content_type=info.content_type, headers=dict(info.headers), tags=dict(info.tags),
                      parts_count=len(chosen), owner_id=info.owner_id)
    apply_lock(meta, lock_for_new_version(bucket, RequestedLock(
        info.lock_mode, info.lock_until_ms, info.legal_hold)))
    algo = info.checksum_algorithm
    if algo and all(algo in p.checksums for p in chosen):
        raws = [checksums.decode_checksum(algo, p.checksums[algo]) for p in chosen]
        if info.checksum_type == "FULL_OBJECT":
            value = checksums.b64(checksums.full_object_crc(algo, [(r, p.size) for r, p in zip(raws, chosen)]))
        else:
            value = checksums.composite_checksum(algo, raws)
        sent = ctx.req.headers.get(f"x-amz-checksum-{algo}")
        if sent is not None and sent != value:
            raise S3Error("BadDigest", f"The {algo.upper()} you specified did not match the calculated "
                                       f"checksum.")
        meta.checksums, meta.checksum_type = {algo: value}, info.checksum_type
    committed = await ctx.store.complete_upload(bucket.name, info.upload_id, meta, [p.part_number for p in chosen],
                                                if_match=if_match, if_none_match=if_none_match)
    host = ctx.req.headers.get("host", "localhost")
    location = f"{ctx.req.scheme}://{host}/{bucket.name}/{ctx.ep.key}"
    return xml_response(document("CompleteMultipartUploadResult", [
        ("Location", location), ("Bucket", bucket.name), ("Key", ctx.ep.key),
        ("ETag", quote_etag(committed.etag)),
        *[(f"Checksum{a.upper()}", v) for a, v in meta.checksums.items()],
        ("ChecksumType", meta.checksum_type) if meta.checksums else None]),
        headers=new_version_headers(committed)
        + expiration_headers(bucket, committed, ctx.config.lifecycle_day_s))


async def abort_multipart_upload(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    info = await _upload(ctx, bucket)
    await ctx.store.abort_upload(bucket.name, info.upload_id)
    return empty_response(204)


def _int_arg(ctx: Ctx, name: str, default: int, hi: int = 1000) -> int:
    raw = ctx.q(name)
    if raw is None:
        return default
    try:
        n = int(raw)
    except ValueError as e:
        raise S3Error("InvalidArgument", f"Provided {name} not an integer or within integer range",
                      ArgumentName=name, ArgumentValue=raw) from e
    if n < 0:
        raise S3Error("InvalidArgument", f"Argument {name} must be an integer between 0 and 2147483647",
                      ArgumentName=name, ArgumentValue=raw)
    return min(n, hi)


def _who(owner_id: str) -> list[tuple[str, object]]:
    return [("ID", owner_id), ("DisplayName", owner_id)]


async def list_parts(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    info = await _upload(ctx, bucket)
    marker = _int_arg(ctx, "part-number-marker", 0, 10000)
    mx = _int_arg(ctx, "max-parts", 1000)
    parts, truncated = await ctx.store.list_parts(bucket.name, info.upload_id, part_marker=marker,
                                                  max_parts=mx)
    items = [("Part", [("PartNumber", p.part_number), ("LastModified", iso8601(p.last_modified)),
                       ("ETag", quote_etag(p.etag)), ("Size", p.size),
                       *[(f"Checksum{a.upper()}", v) for a, v in p.checksums.items()]]) for p in parts]
    return xml_response(document("ListPartsResult", [
        ("Bucket", bucket.name), ("Key", info.key), ("UploadId", info.upload_id),
        ("Initiator", _who(info.owner_id)), ("Owner", _who(info.owner_id)),
        ("StorageClass", "STANDARD"), ("PartNumberMarker", marker),
        ("NextPartNumberMarker", parts[-1].part_number if parts else marker),
        ("MaxParts", mx), ("IsTruncated", truncated),
        ("ChecksumAlgorithm", info.checksum_algorithm.upper()) if info.checksum_algorithm else None,
        ("ChecksumType", info.checksum_type) if info.checksum_type else None,
        *items]))


async def list_multipart_uploads(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    from .listing import encoder
    assert bucket is not None
    prefix, delim = ctx.q("prefix") or "", ctx.q("delimiter") or ""
    key_marker, id_marker = ctx.q("key-marker") or "", ctx.q("upload-id-marker") or ""
    mx = _int_arg(ctx, "max-uploads", 1000)
    enc = encoder(ctx)
    uploads, prefixes, truncated = await ctx.store.list_uploads(
        bucket.name, prefix=prefix, delimiter=delim, key_marker=key_marker,
        upload_id_marker=id_marker, max_uploads=mx)
    items = [("Upload", [("Key", enc(u.key)), ("UploadId", u.upload_id), ("Initiator", _who(u.owner_id)),
                         ("Owner", _who(u.owner_id)), ("StorageClass", "STANDARD"),
                         ("Initiated", iso8601(u.initiated)),
                         ("ChecksumAlgorithm", u.checksum_algorithm.upper()) if u.checksum_algorithm
                         else None]) for u in uploads]
    last_key = uploads[-1].key if uploads else (prefixes[-1] if prefixes else "")
    return xml_response(document("ListMultipartUploadsResult", [
        ("Bucket", bucket.name), ("KeyMarker", enc(key_marker)), ("UploadIdMarker", id_marker),
        ("NextKeyMarker", enc(last_key)) if truncated else None,
        ("NextUploadIdMarker", uploads[-1].upload_id if uploads else "") if truncated else None,
        ("Delimiter", enc(delim)) if delim else None, ("Prefix", enc(prefix)),
        ("MaxUploads", mx), ("IsTruncated", truncated),
        ("EncodingType", "url") if ctx.q("encoding-type") else None,
        *items, *[("CommonPrefixes", [("Prefix", enc(p))]) for p in prefixes]]))
