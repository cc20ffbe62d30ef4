"""Get/Put/DeleteObjectTagging and GetObjectAcl, of the current object or of a version."""
from __future__ import annotations

from ...http.request import Response
from ...storage import BucketInfo, ObjectMeta
from ..common import Ctx, empty_response, version_headers, version_param, xml_response
from ..errors import S3Error
from .bodies import read_xml_body
from .buckets import parse_tagging, tagging_xml


async def version_or_error(ctx: Ctx, bucket: BucketInfo) -> ObjectMeta:
    """The object (or the version asked for); 404 for a missing one, 405 for a delete marker."""
    assert ctx.ep.key is not None
    vid = version_param(ctx)
    meta = await ctx.store.get_object(bucket.name, ctx.ep.key, vid)
    if meta is None:
        if vid is not None:
            raise S3Error("NoSuchVersion", Key=ctx.ep.key, VersionId=vid)
        raise S3Error("NoSuchKey", Key=ctx.ep.key)
    if meta.delete_marker:
        if vid is not None:
            raise S3Error("MethodNotAllowed", "The specified method is not allowed against a "
                                              "delete marker.")
        raise S3Error("NoSuchKey", Key=ctx.ep.key)
    return meta


async def get_object_tagging(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    meta = await version_or_error(ctx, bucket)
    return xml_response(tagging_xml(meta.tags), headers=version_headers(bucket, meta))


async def put_object_tagging(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None and ctx.ep.key is not None
    vid = version_param(ctx)
    tags = parse_tagging(await read_xml_body(ctx), 10)
    meta = await ctx.store.set_object_tags(bucket.name, ctx.ep.key, tags, vid)
    return empty_response(200, version_headers(bucket, meta))


async def delete_object_tagging(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None and ctx.ep.key is not None
    meta = await ctx.store.set_object_tags(bucket.name, ctx.ep.key, {}, version_param(ctx))
    return empty_response(204, version_headers(bucket, meta))


async def get_object_acl(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    from .buckets import acl_xml
    assert bucket is not None
    meta = await version_or_error(ctx, bucket)
    owner = meta.owner_id or bucket.owner_id
    return xml_response(acl_xml(owner, owner), headers=version_headers(bucket, meta))
