"""Parse a request once into an Endpoint named with the AWS operation name.

Path-style (``/bucket/key``) and virtual-host style (``bucket.<domain>/key``) both map here.
The key is decoded exactly once from the raw path ('+' stays '+': only query strings use
form encoding).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from .errors import S3Error

# Sub-resources we recognise but do not implement: answered with NotImplemented, never
# misrouted to a plain GET/PUT of the bucket or object.
_UNSUPPORTED_BUCKET = ("cors", "encryption", "replication", "website", "logging",
                       "notification", "accelerate", "requestPayment", "inventory",
                       "analytics", "metrics", "intelligent-tiering", "ownershipControls",
                       "publicAccessBlock", "policyStatus")
_UNSUPPORTED_OBJECT = ("torrent", "restore", "select", "attributes")
# Sub-resources only read and written whole: any other method is refused, never taken for the
# plain DELETE/POST of the bucket or object (which would delete it).
_GET_PUT_BUCKET = {"object-lock": "ObjectLockConfiguration"}
_GET_PUT_OBJECT = {"retention": "ObjectRetention", "legal-hold": "ObjectLegalHold"}


@dataclass
class Endpoint:
    op: str                      # AWS operation name, e.g. "PutObject"
    bucket: str | None = None
    key: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    virtual_host: bool = False


def split_host(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


def parse_query(raw: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError) as e:
        raise S3Error("InvalidURI") from e
    out: dict[str, str] = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


def route(method: str, raw_path: str, raw_query: str, host: str, domain: str | None) -> Endpoint:
    q = parse_query(raw_query)
    try:
        path = unquote(raw_path, errors="strict")
    except UnicodeDecodeError as e:
        raise S3Error("InvalidURI") from e
    if not path.startswith("/"):
        raise S3Error("InvalidURI")
    bucket: str | None
    key: str | None
    vhost = False
    hostname = split_host(host.lower()) if host else ""
    if domain and hostname.endswith("." + domain.lower()):
        bucket = hostname[: -len(domain) - 1]
        key = path[1:] or None
        vhost = True
    else:
        rest = path[1:]
        if not rest:
            bucket, key = None, None
        else:
            bucket, _, k = rest.partition("/")
            key = k if k else None
    if bucket is None:
        if method in ("GET", "HEAD"):
            return Endpoint("ListBuckets", query=q)
        raise S3Error("MethodNotAllowed", resource="/")
    ep = Endpoint("", bucket, key, q, vhost)
    ep.op = _object_op(method, q) if key is not None else _bucket_op(method, q)
    return ep


def _bucket_op(method: str, q: dict[str, str]) -> str:
    for sub in _UNSUPPORTED_BUCKET:
        if sub in q:
            return "Unsupported"
    got = _get_put(method, q, _GET_PUT_BUCKET)
    if got is not None:
        return got
    if method == "GET":
        for sub, op in (("location", "GetBucketLocation"), ("tagging", "GetBucketTagging"),
                        ("policy", "GetBucketPolicy"), ("versioning", "GetBucketVersioning"),
                        ("uploads", "ListMultipartUploads"), ("versions", "ListObjectVersions"),
                        ("acl", "GetBucketAcl"), ("lifecycle", "GetBucketLifecycleConfiguration")):
            if sub in q:
                return op
        return "ListObjectsV2" if q.get("list-type") == "2" else "ListObjects"
    if method == "HEAD":
        return "HeadBucket"
    if method == "PUT":
        for sub, op in (("tagging", "PutBucketTagging"), ("policy", "PutBucketPolicy"),
                        ("versioning", "PutBucketVersioning"), ("acl", "PutBucketAcl"),
                        ("lifecycle", "PutBucketLifecycleConfiguration")):
            if sub in q:
                return op
        return "CreateBucket"
    if method == "DELETE":
        for sub, op in (("tagging", "DeleteBucketTagging"), ("policy", "DeleteBucketPolicy"),
                        ("lifecycle", "DeleteBucketLifecycle")):
            if sub in q:
                return op
        return "DeleteBucket"
    if method == "POST" and "delete" in q:
        return "DeleteObjects"
    raise S3Error("MethodNotAllowed")


def _object_op(method: str, q: dict[str, str]) -> str:
    for sub in _UNSUPPORTED_OBJECT:
        if sub in q:
            return "Unsupported"
    got = _get_put(method, q, _GET_PUT_OBJECT)
    if got is not None:
        return got
    if method in ("GET", "HEAD"):
        if method == "GET" and "uploadId" in q:
            return "ListParts"
        if method == "GET" and "tagging" in q:
            return "GetObjectTagging"
        if method == "GET" and "acl" in q:
            return "GetObjectAcl"
        return "GetObject" if method == "GET" else "HeadObject"
    if method == "PUT":
        if "partNumber" in q or "uploadId" in q:
            return "UploadPart"        # becomes UploadPartCopy when x-amz-copy-source is present
        if "tagging" in q:
            return "PutObjectTagging"
        if "acl" in q:
            return "PutObjectAcl"
        return "PutObject"             # becomes CopyObject when x-amz-copy-source is present
    if method == "DELETE":
        if "uploadId" in q:
            return "AbortMultipartUpload"
        if "tagging" in q:
            return "DeleteObjectTagging"
        return "DeleteObject"
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
    raise S3Error("MethodNotAllowed")


def _get_put(method: str, q: dict[str, str], subs: dict[str, str]) -> str | None:
    for sub, name in subs.items():
        if sub in q:
            if method in ("GET", "PUT"):
                return ("Get" if method == "GET" else "Put") + name
            raise S3Error("MethodNotAllowed")
    return None
