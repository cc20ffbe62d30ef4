"""Bucket policies: validation on PutBucketPolicy and evaluation on every request.

Evaluation follows IAM's order for the cases users rely on: an explicit Deny wins, then an
Allow, then the default (owner allowed, everyone else denied). A condition we cannot evaluate
makes an Allow not apply and a Deny apply: unknown never widens access.
"""
from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .errors import S3Error

# operation -> IAM action checked against the policy
ACTIONS: dict[str, str] = {
    "GetObject": "s3:GetObject", "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject", "CopyObject": "s3:PutObject", "UploadPart": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject", "CreateMultipartUpload": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload", "ListParts": "s3:ListMultipartUploadParts",
    "DeleteObject": "s3:DeleteObject", "DeleteObjects": "s3:DeleteObject",
    "GetObjectTagging": "s3:GetObjectTagging", "PutObjectTagging": "s3:PutObjectTagging",
    "DeleteObjectTagging": "s3:DeleteObjectTagging",
    "GetObjectAcl": "s3:GetObjectAcl", "PutObjectAcl": "s3:PutObjectAcl",
    "ListObjects": "s3:ListBucket", "ListObjectsV2": "s3:ListBucket", "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "GetBucketLocation": "s3:GetBucketLocation", "GetBucketVersioning": "s3:GetBucketVersioning",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "GetBucketTagging": "s3:GetBucketTagging", "PutBucketTagging": "s3:PutBucketTagging",
    "DeleteBucketTagging": "s3:PutBucketTagging",
    "GetBucketPolicy": "s3:GetBucketPolicy", "PutBucketPolicy": "s3:PutBucketPolicy",
    "DeleteBucketPolicy": "s3:DeleteBucketPolicy", "DeleteBucket": "s3:DeleteBucket",
    "GetBucketAcl": "s3:GetBucketAcl", "PutBucketAcl": "s3:PutBucketAcl",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
    "GetObjectRetention": "s3:GetObjectRetention", "PutObjectRetention": "s3:PutObjectRetention",
    "GetObjectLegalHold": "s3:GetObjectLegalHold", "PutObjectLegalHold": "s3:PutObjectLegalHold",
    # Not an operation: what a request with x-amz-bypass-governance-retention also needs.
    "BypassGovernanceRetention": "s3:BypassGovernanceRetention",
}


@dataclass(frozen=True)
class Principal:
    """Who is asking: None fields for an anonymous request."""
    user_id: str | None
    access_key: str | None
    display_name: str | None


@dataclass(frozen=True)
class RequestContext:
    secure_transport: bool
    source_ip: str | None
    prefix: str | None = None
    delimiter: str | None = None


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def validate(doc: bytes, bucket: str) -> dict[str, Any]:
    """Parse and check a policy document; MalformedPolicy on anything we would misread."""
    try:
        pol = json.loads(doc)
    except (ValueError, UnicodeDecodeError) as e:
        raise S3Error("MalformedPolicy", "Policies must be valid JSON") from e
    if not isinstance(pol, dict) or "Statement" not in pol:
        raise S3Error("MalformedPolicy", "Missing required field Statement")
    stmts = _as_list(pol["Statement"])
    if not stmts:
        raise S3Error("MalformedPolicy", "Could not parse the policy: Statement is empty!")
    for st in stmts:
        if not isinstance(st, dict):
            raise S3Error("MalformedPolicy", "Statement is not an object")
        if st.get("Effect") not in ("Allow", "Deny"):
            raise S3Error("MalformedPolicy", "Invalid effect: {}".format(st.get("Effect")))
        if "Principal" not in st and "NotPrincipal" not in st:
            raise S3Error("MalformedPolicy", "Missing required field Principal")
        if "Action" not in st and "NotAction" not in st:
            raise S3Error("MalformedPolicy", "Missing required field Action")
        for a in _as_list(st.get("Action", st.get("NotAction"))):
            if not isinstance(a, str) or not (a == "*" or a.lower().startswith("s3:")):
                raise S3Error("MalformedPolicy", f"Policy has invalid action {a!r}")
        res = st.get("Resource", st.get("NotResource"))
        if res is None:
            raise S3Error("MalformedPolicy", "Missing required field Resource")
        for r in _as_list(res):
            if not isinstance(r, str) or not r.startswith("arn:aws:s3:::"):
                raise S3Error("MalformedPolicy", "Policy has invalid resource")
            rb = r[len("arn:aws:s3:::"):].split("/", 1)[0]
            if not fnmatch.fnmatchcase(bucket, rb):
                raise S3Error("MalformedPolicy", "Policy has invalid resource")
    return pol


@lru_cache(maxsize=256)
def _parsed(doc: bytes) -> dict[str, Any]:
    pol: dict[str, Any] = json.loads(doc)    # stored only once validate() accepted it
    return pol


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    # IAM wildcards: * any run, ? one char; everything else literal.
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                              for c in pattern), re.DOTALL)


def _match(pattern: str, value: str, *, ci: bool = False) -> bool:
    if ci:
        pattern, value = pattern.lower(), value.lower()
    return _glob(pattern).fullmatch(value) is not None


def _principal_matches(spec: Any, who: Principal) -> bool:
    if spec == "*":
        return True
    if isinstance(spec, dict):
        values = _as_list(spec.get("AWS", [])) + _as_list(spec.get("CanonicalUser", []))
    else:
        values = _as_list(spec)
    for v in values:
        if v == "*":
            return True
        if who.user_id is None or not isinstance(v, str):
            continue
        if v in (who.user_id, who.access_key):
            return True
        # arn:aws:iam::<account>:user/<name>: name is the display name or the access key.
        m = re.fullmatch(r"arn:aws:iam::[^:]*:user/(?:.*/)?([^/]+)", v)
        if m and m.group(1) in (who.display_name, who.access_key, who.user_id):
            return True
    return False


_UNKNOWN = object()


def _context_value(key: str, who: Principal, ctx: RequestContext) -> Any:
    k = key.lower()
    if k == "aws:securetransport":
        return "true" if ctx.secure_transport else "false"
    if k == "aws:sourceip":
        return ctx.source_ip
    if k == "aws:username":
        return who.display_name
    if k == "aws:userid":
        return who.user_id
    if k == "s3:prefix":
        return ctx.prefix
    if k == "s3:delimiter":
        return ctx.delimiter
    return _UNKNOWN


def _condition_holds(cond: Any, who: Principal, ctx: RequestContext) -> bool | None:
    """True/False, or None when a part of it cannot be evaluated here."""
    if not isinstance(cond, dict):
        return None
    for op, kv in cond.items():
        if not isinstance(kv, dict):
            return None
        base = op.replace("IfExists", "")
        for key, want in kv.items():
            have = _context_value(key, who, ctx)
            if have is _UNKNOWN:
                return None
            wants = [str(w) for w in _as_list(want)]
            if have is None:
                if op.endswith("IfExists"):
                    continue
                if base.startswith(("StringNot", "NotIp")):
                    continue
                return False
            if base == "Bool":
                ok = str(have).lower() in [w.lower() for w in wants]
            elif base == "StringEquals":
                ok = have in wants
            elif base == "StringNotEquals":
                ok = have not in wants
            elif base == "StringEqualsIgnoreCase":
                ok = have.lower() in [w.lower() for w in wants]
            elif base == "StringLike":
                ok = any(_match(w, have) for w in wants)
            elif base == "StringNotLike":
                ok = not any(_match(w, have) for w in wants)
            elif base in ("IpAddress", "NotIpAddress"):
                try:
                    ip = ipaddress.ip_address(have)
                    inside = any(ip in ipaddress.ip_network(w, strict=False) for w in wants)
                except ValueError:
                    return None
                ok = inside if base == "IpAddress" else not inside
            else:
                return None
            if not ok:
                return False
    return True


def evaluate(doc: bytes | None, who: Principal, action: str, resource: str,
             ctx: RequestContext) -> str | None:
    """Return "Deny", "Allow", or None (policy silent) for one action on one resource ARN."""
    if not doc:
        return None
    try:
        pol = _parsed(doc)
    except ValueError:
        return None
    allowed = False
    for st in _as_list(pol.get("Statement", [])):
        if not isinstance(st, dict):
            continue
        deny = st.get("Effect") == "Deny"
        if "Principal" in st:
            if not _principal_matches(st["Principal"], who):
                continue
        elif _principal_matches(st.get("NotPrincipal"), who):
            continue
        if "Action" in st:
            if not any(_match(a, action, ci=True) for a in _as_list(st["Action"])):
                continue
        elif any(_match(a, action, ci=True) for a in _as_list(st.get("NotAction", []))):
            continue
        if "Resource" in st:
            if not any(_match(r, resource) for r in _as_list(st["Resource"])):
                continue
        elif any(_match(r, resource) for r in _as_list(st.get("NotResource", []))):
            continue
        if "Condition" in st:
            holds = _condition_holds(st["Condition"], who, ctx)
            if holds is None:
                holds = deny          # unknown: a Deny applies, an Allow does not
            if not holds:
                continue
        if deny:
            return "Deny"
        allowed = True
    return "Allow" if allowed else None
