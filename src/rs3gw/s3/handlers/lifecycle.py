"""PutBucketLifecycleConfiguration, GetBucketLifecycleConfiguration, DeleteBucketLifecycle.

The configuration is stored as the rule model's JSON under the bucket config kind "lifecycle"
(rs3gw.lifecycle.rules), which the scanner reads; the XML is this layer's (s3/lifecycle.py).
"""
from __future__ import annotations

from ...http.request import Response
from ...lifecycle.rules import CONFIG_KIND
from ...storage import BucketInfo
from ..common import Ctx, empty_response, xml_response
from ..errors import S3Error
from ..lifecycle import configuration_xml, parse_configuration, stored_configuration
from .bodies import read_xml_body


async def put_bucket_lifecycle_configuration(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    # S3 requires an integrity header here: Content-MD5, or an x-amz-checksum-* from newer SDKs.
    cfg = parse_configuration(await read_xml_body(ctx, require_integrity=True))
    await ctx.store.set_bucket_config(bucket.name, CONFIG_KIND, cfg.to_json())
    return empty_response(200)


async def get_bucket_lifecycle_configuration(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    raw = bucket.configs.get(CONFIG_KIND)
    if raw is None:
        raise S3Error("NoSuchLifecycleConfiguration", BucketName=bucket.name)
    return xml_response(configuration_xml(stored_configuration(bytes(raw))))


async def delete_bucket_lifecycle(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    if CONFIG_KIND in bucket.configs:
        await ctx.store.set_bucket_config(bucket.name, CONFIG_KIND, None)
    return empty_response(204)
