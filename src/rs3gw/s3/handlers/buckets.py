"""Bucket operations: ListBuckets, Create/Head/DeleteBucket, location, versioning, tagging,
policy, ACL (read-only owner-full-control view)."""
from __future__ import annotations

import json

from ...http.request import Response
from ...storage import OBJECT_LOCK, VERSIONING, BucketExists, BucketInfo, LockConfig
from .. import policy as policy_mod
from ..common import (
    MAX_XML_BODY_BYTES,
    Ctx,
    empty_response,
    iso8601,
    validate_tags,
    versioning_state,
    xml_response,
)
from ..errors import S3Error
from ..xml import document, parse, text
from .bodies import read_xml_body


async def list_buckets(ctx: Ctx, _: BucketInfo | None) -> Response:
    buckets = await ctx.store.list_buckets()
    mine = [b for b in buckets if ctx.access.is_admin(ctx) or b.owner_id == ctx.owner_id]
    prefix = ctx.q("prefix") or ""
    mine = [b for b in mine if b.name.startswith(prefix)]
    max_buckets = int(ctx.q("max-buckets") or 10000)
    token = ctx.q("continuation-token") or ""
    mine = [b for b in mine if b.name > token]
    page, more = mine[:max_buckets], len(mine) > max_buckets
    items = [("Bucket", [("Name", b.name), ("CreationDate", iso8601(b.created)),
                         ("BucketRegion", b.region)]) for b in page]
    name = ctx.who.display_name or "anonymous"
    return xml_response(document("ListAllMyBucketsResult", [
        ("Owner", [("ID", ctx.owner_id), ("DisplayName", name)]),
        ("Buckets", items),
        ("ContinuationToken", page[-1].name) if more else None,
        ("Prefix", prefix) if ctx.q("prefix") is not None else None]))


async def create_bucket(ctx: Ctx, _: BucketInfo | None) -> Response:
    from ..common import valid_bucket_name
    name = ctx.ep.bucket
    assert name is not None
    if not valid_bucket_name(name):
        raise S3Error("InvalidBucketName", BucketName=name)
    region = ctx.config.region
    lock = ctx.req.headers.get("x-amz-bucket-object-lock-enabled", "").strip().lower()
    if lock not in ("", "true", "false"):
        raise S3Error("InvalidArgument", "Invalid x-amz-bucket-object-lock-enabled header",
                      ArgumentName="x-amz-bucket-object-lock-enabled")
    body = await ctx.req.body.read_all(MAX_XML_BODY_BYTES)
    if body.strip():
        root = parse(body, "CreateBucketConfiguration")
        loc = text(root, "LocationConstraint")
        if loc and loc != region:
            raise S3Error("IllegalLocationConstraintException",
                          f"The {loc} location constraint is incompatible for the region "
                          f"specific endpoint this request was sent to.")
    # Object lock: the bucket is born with versioning Enabled and the lock, in one transaction
    # (versioning first: the store refuses a lock on a bucket without it).
    configs = ({VERSIONING: b"Enabled", OBJECT_LOCK: LockConfig().encode()} if lock == "true"
               else None)
    try:
        await ctx.store.create_bucket(name, ctx.owner_id, region, configs)
    except BucketExists as e:
        if e.owner_id == ctx.owner_id:
            raise S3Error("BucketAlreadyOwnedByYou", BucketName=name) from e
        raise S3Error("BucketAlreadyExists", BucketName=name) from e
    return empty_response(200, [("Location", "/" + name)])


async def head_bucket(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    return empty_response(200, [("x-amz-bucket-region", bucket.region)])


async def delete_bucket(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    await ctx.store.delete_bucket(bucket.name)
    return empty_response(204)


async def get_bucket_location(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    # us-east-1 is reported as an empty LocationConstraint, as AWS does.
    loc = "" if bucket.region == "us-east-1" else bucket.region
    return xml_response(document("LocationConstraint", []).replace(
        b"></LocationConstraint>", f">{loc}</LocationConstraint>".encode()))


async def get_bucket_versioning(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    status = versioning_state(bucket)
    return xml_response(document("VersioningConfiguration",
                                 [("Status", status)] if status is not None else []))


async def put_bucket_versioning(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    """Enabled or Suspended; a bucket never goes back to having no versioning state, and one
    with object lock stays Enabled (the store refuses the change: InvalidBucketState)."""
    assert bucket is not None
    root = parse(await read_xml_body(ctx), "VersioningConfiguration")
    status = text(root, "Status")
    mfa = text(root, "MfaDelete")
    if mfa is not None and mfa not in ("Enabled", "Disabled"):
        raise S3Error("IllegalVersioningConfigurationException")
    if mfa == "Enabled":
        raise S3Error("NotImplemented", "MFA delete is not supported by this gateway")
    if status is None:
        return empty_response(200)          # nothing asked: nothing changes
    if status not in ("Enabled", "Suspended"):
        raise S3Error("IllegalVersioningConfigurationException")
    if status != versioning_state(bucket):
        await ctx.store.set_bucket_config(bucket.name, VERSIONING, status.encode())
    return empty_response(200)


# ---- tagging -----------------------------------------------------------------------------
def parse_tagging(body: bytes, limit: int) -> dict[str, str]:
    root = parse(body, "Tagging")
    tagset = root.find("TagSet")
    if tagset is None:
        raise S3Error("MalformedXML")
    tags: dict[str, str] = {}
    for t in tagset.findall("Tag"):
        k, v = text(t, "Key"), text(t, "Value", "")
        if k is None:
            raise S3Error("MalformedXML")
        if k in tags:
            raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key")
        tags[k] = v or ""
    validate_tags(tags, limit)
    return tags


def tagging_xml(tags: dict[str, str]) -> bytes:
    return document("Tagging", [("TagSet", [("Tag", [("Key", k), ("Value", v)])
                                            for k, v in tags.items()])])


async def get_bucket_tagging(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    raw = bucket.configs.get("tagging")
    if raw is None:
        raise S3Error("NoSuchTagSet", BucketName=bucket.name)
    return xml_response(tagging_xml(json.loads(raw)))


async def put_bucket_tagging(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    tags = parse_tagging(await read_xml_body(ctx), 50)
    await ctx.store.set_bucket_config(bucket.name, "tagging", json.dumps(tags).encode())
    return empty_response(204)


async def delete_bucket_tagging(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    await ctx.store.set_bucket_config(bucket.name, "tagging", None)
    return empty_response(204)


# ---- policy ------------------------------------------------------------------------------
async def get_bucket_policy(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    raw = bucket.configs.get("policy")
    if raw is None:
        raise S3Error("NoSuchBucketPolicy", BucketName=bucket.name)
    return Response(200, [("Content-Type", "application/json")], raw)


async def put_bucket_policy(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    doc = await read_xml_body(ctx, limit=20 * 1024)
    policy_mod.validate(doc, bucket.name)
    await ctx.store.set_bucket_config(bucket.name, "policy", doc)
    return empty_response(204)


async def delete_bucket_policy(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    await ctx.store.set_bucket_config(bucket.name, "policy", None)
    return empty_response(204)


# ---- ACLs: we have owners and policies, not ACL grants; show the owner's full control ------
def acl_xml(owner_id: str, name: str) -> bytes:
    grantee = [("ID", owner_id), ("DisplayName", name)]
    return document("AccessControlPolicy", [
        ("Owner", grantee),
        ("AccessControlList", [("Grant", [("Grantee", grantee), ("Permission", "FULL_CONTROL")])]),
    ]).replace(b"<Grantee>", b'<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                             b'xsi:type="CanonicalUser">')


async def get_bucket_acl(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    return xml_response(acl_xml(bucket.owner_id, bucket.owner_id))


async def put_acl(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    canned = ctx.req.headers.get("x-amz-acl", "private")
    if canned != "private" or any(h.startswith("x-amz-grant-") for h in ctx.req.headers):
        raise S3Error("NotImplemented", "Only the private canned ACL is supported; use a bucket policy")
    await ctx.req.body.read_all(MAX_XML_BODY_BYTES)
    return empty_response(200)


# Bucket sub-resources rs3gw does not implement yet: reading one answers exactly what S3 answers
# for a bucket that never had it configured (tools such as Terraform probe them all); deleting
# one is a no-op; setting one is NotImplemented, never silently ignored.
_UNCONFIGURED: dict[str, str | bytes] = {
    "cors": "NoSuchCORSConfiguration",
    "website": "NoSuchWebsiteConfiguration", "publicAccessBlock": "NoSuchPublicAccessBlockConfiguration",
    "encryption": "ServerSideEncryptionConfigurationNotFoundError",
    "replication": "ReplicationConfigurationNotFoundError",
    "ownershipControls": "OwnershipControlsNotFoundError",
    "logging": document("BucketLoggingStatus", []),
    "notification": document("NotificationConfiguration", []),
    "accelerate": document("AccelerateConfiguration", []),
    "requestPayment": document("RequestPaymentConfiguration", [("Payer", "BucketOwner")]),
}


async def unsupported(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    if bucket is not None and ctx.ep.key is None:
        sub = next((k for k in _UNCONFIGURED if k in ctx.ep.query), None)
        if sub is not None and ctx.req.method == "GET":
            ctx.access.check_access(ctx, bucket, "GetBucketLocation", None, action=f"s3:GetBucket{sub}")
            answer = _UNCONFIGURED[sub]
            if isinstance(answer, bytes):
                return xml_response(answer)
            raise S3Error(answer, BucketName=bucket.name)
        if sub is not None and ctx.req.method == "DELETE" and isinstance(_UNCONFIGURED[sub], str):
            ctx.access.check_access(ctx, bucket, "DeleteBucketPolicy", None, action=f"s3:PutBucket{sub}")
            return empty_response(204)
    raise S3Error("NotImplemented", "This sub-resource is not implemented by rs3gw")
