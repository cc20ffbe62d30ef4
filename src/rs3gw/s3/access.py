"""Access control: the users' credentials, the root user, bucket owners and bucket policies.

One ``AccessControl`` per gateway, built from the Config. The S3 app asks it for credentials
(SigV4/SigV2 verification) and for every access decision; the admin API asks it who the root
user is. A decision reads the request only through ``Caller`` (``s3.common.Ctx`` is one), so
this module knows nothing of the S3 request context.

The order of a decision (``check_access``): an explicit Deny in the bucket policy wins; then the
bucket owner and the root user; then a policy Allow (never for the owner-only operations); else
AccessDenied. The root user administers every bucket, as MinIO's root does; on an open gateway
(no root keys) everyone is root.
"""
from __future__ import annotations

from typing import Protocol

from ..config import Config
from ..http.request import Request
from ..storage import BucketInfo
from .errors import S3Error
from .policy import ACTIONS, Principal, RequestContext, evaluate
from .sigv4 import Credentials

# Only the bucket owner (or root) may run these, whatever a policy says.
OWNER_ONLY = frozenset({"DeleteBucket", "PutBucketPolicy", "GetBucketPolicy", "DeleteBucketPolicy",
                        "PutBucketAcl", "PutBucketVersioning"})
# Their policy resource is the bucket's ARN, not an object's, even when the request names a key.
BUCKET_SCOPED = frozenset({
    "ListObjects", "ListObjectsV2", "ListObjectVersions", "ListMultipartUploads", "HeadBucket",
    "GetBucketLocation", "GetBucketTagging", "PutBucketTagging", "DeleteBucketTagging",
    "GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy", "DeleteBucket",
    "GetBucketVersioning", "GetBucketAcl", "GetBucketLifecycleConfiguration",
    "PutBucketLifecycleConfiguration", "DeleteBucketLifecycle", "GetObjectLockConfiguration",
    "PutObjectLockConfiguration"})
# Operations on the service, or creating a bucket: any signed caller (anyone on an open gateway).
_SERVICE_OPS = ("ListBuckets", "CreateBucket")


class Caller(Protocol):
    """What an access decision reads about one request."""

    @property
    def who(self) -> Principal: ...

    @property
    def req(self) -> Request: ...

    def q(self, name: str, default: str | None = None) -> str | None:
        """A query parameter of the request (policy conditions s3:prefix, s3:delimiter)."""
        ...


class AccessControl:
    def __init__(self, config: Config) -> None:
        self.anonymous_only = config.anonymous_only
        root = config.root_user
        self.root_id = root.user_id if root else None
        users = {u.access_key: Credentials(u.access_key, u.secret_key, u.user_id, u.display_name)
                 for u in config.all_users()}
        # access key -> Credentials or None: the lookup SigV4/SigV2 verification takes.
        self.credentials = users.get

    def is_root(self, user_id: str | None) -> bool:
        """The caller administers everything: the root user, or anyone on an open gateway."""
        return self.anonymous_only or (user_id is not None and user_id == self.root_id)

    def is_admin(self, caller: Caller) -> bool:
        return self.is_root(caller.who.user_id)

    def authorize_anonymous_gate(self, caller: Caller) -> None:
        """Anonymous callers learn nothing about which buckets exist."""
        if caller.who.user_id is None and not self.anonymous_only:
            raise S3Error("AccessDenied")

    def authorize(self, caller: Caller, bucket: BucketInfo | None, op: str,
                  key: str | None) -> None:
        """The decision the S3 app makes before running the handler of ``op``."""
        if op in _SERVICE_OPS:
            self.authorize_anonymous_gate(caller)
            return
        if op == "Unsupported":
            return
        assert bucket is not None
        if op == "DeleteObjects" and not (self.is_admin(caller)
                                          or caller.who.user_id == bucket.owner_id):
            return      # checked key by key in the handler, so per-key policies apply
        self.check_access(caller, bucket, op, key)

    def allows(self, caller: Caller, bucket: BucketInfo, op: str, key: str | None) -> bool:
        """check_access as a question: may the caller also do ``op`` (the governance bypass,
        seeing an object's lock headers)?"""
        try:
            self.check_access(caller, bucket, op, key)
        except S3Error:
            return False
        return True

    def check_access(self, caller: Caller, bucket: BucketInfo, op: str, key: str | None,
                     action: str | None = None) -> None:
        """Deny wins; then owner/root; then a policy Allow; else AccessDenied."""
        who = caller.who
        admin = self.is_root(who.user_id)
        owner = who.user_id is not None and who.user_id == bucket.owner_id
        doc = bucket.configs.get("policy")
        if doc is not None and not admin:
            act = action or ACTIONS.get(op, "s3:" + op)
            res = f"arn:aws:s3:::{bucket.name}" + (f"/{key}" if key is not None and
                                                   op not in BUCKET_SCOPED else "")
            req = caller.req
            rctx = RequestContext(req.scheme == "https", req.client[0] if req.client else None,
                                  caller.q("prefix"), caller.q("delimiter"))
            verdict = evaluate(doc, who, act, res, rctx)
            if verdict == "Deny":
                raise S3Error("AccessDenied")
            if verdict == "Allow" and (op not in OWNER_ONLY or owner):
                return
        if admin or owner:
            return
        raise S3Error("AccessDenied")
