"""Get/Put/DeleteObjectTagging."""
from __future__ import annotations

from ...http.request import Response
from ...storage import BucketInfo
from ..common import Ctx, empty_response, xml_response
from ..errors import S3Error
from .bodies import read_xml_body
from .buckets import parse_tagging, tagging_xml


async def get_object_tagging(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None and ctx.ep.key is not None
    meta = await ctx.store.get_object(bucket.name, ctx.ep.key)
    if meta is None:
        raise S3Error("NoSuchKey", Key=ctx.ep.key)
    return xml_response(tagging_xml(meta.tags))


async def put_object_tagging(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None and ctx.ep.key is not None
    tags = parse_tagging(await read_xml_body(ctx), 10)
    await ctx.store.set_object_tags(bucket.name, ctx.ep.key, tags)
    return empty_response(200)


async def delete_object_tagging(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None and ctx.ep.key is not None
    await ctx.store.set_object_tags(bucket.name, ctx.ep.key, {})
    return empty_response(204)


async def get_object_acl(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    from .buckets import acl_xml
    assert bucket is not None and ctx.ep.key is not None
    meta = await ctx.store.get_object(bucket.name, ctx.ep.key)
    if meta is None:
        raise S3Error("NoSuchKey", Key=ctx.ep.key)
    return xml_response(acl_xml(meta.owner_id or bucket.owner_id, meta.owner_id or bucket.owner_id))
