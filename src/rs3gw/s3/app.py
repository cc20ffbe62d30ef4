"""The S3 application: route, authenticate, authorise, dispatch, and turn errors into XML.

One request goes: route (Endpoint) -> SigV4 -> bucket lookup -> access decision -> handler.
Everything up to the handler looks at headers only, so an upload that fails any check is
answered before its body is read (and before ``100 Continue`` is sent).

Operator endpoints (/health, /ready, /metrics, /api/cluster/) never get here: the admin front
(rs3gw.admin) takes every request first and hands the rest to ``S3App.handle``.
"""
from __future__ import annotations

import itertools
import logging
import secrets

from .. import storage
from ..config import Config
from ..http.request import Request, Response
from . import sigv2, sigv4
from .access import AccessControl
from .common import Ctx
from .errors import ERRORS, S3Error
from .handlers import REGISTRY
from .policy import Principal
from .router import route
from .xml import document

log = logging.getLogger("rs3gw.s3")

# Request ids: a random 64-bit start per process plus a counter, so no urandom syscall per request;
# the same 16 upper-case hex digits as a random id.
_RID_BASE = secrets.randbits(64)
_rid_seq = itertools.count()


def _request_id() -> str:
    return f"{(_RID_BASE + next(_rid_seq)) & 0xFFFF_FFFF_FFFF_FFFF:016X}"


# Operations that act on the service, or create the bucket: no bucket lookup first.
_NO_BUCKET = {"ListBuckets", "CreateBucket"}
# Read together with their bucket in one store hop (S3App.handle, handlers.objects._load).
_LOOKUP_OBJECT = {"GetObject", "HeadObject"}


class S3App:
    """S3 over one ObjectStore (LocalStore, or the cluster's ClusterStore: the app cannot tell)."""

    def __init__(self, config: Config, store: storage.ObjectStore, access: AccessControl) -> None:
        self.config = config
        self.store = store
        self.access = access

    # ---- HTTP entry points -------------------------------------------------------------
    async def handle(self, req: Request) -> Response:
        rid = _request_id()
        op = "Unknown"
        resource = req.path
        try:
            ep = route(req.method, req.path, req.query, req.headers.get("host", ""),
                       self.config.domain)
            op = ep.op
            if "x-amz-copy-source" in req.headers:
                if op == "PutObject":
                    op = ep.op = "CopyObject"
                elif op == "UploadPart":
                    op = ep.op = "UploadPartCopy"
            req.operation = op
            resource = "/" + (ep.bucket or "") + ("/" + ep.key if ep.key is not None else "")
            if sigv2.is_v2(req.headers, req.query):
                # Older tools and boto3's default presigned URLs still sign with V2.
                auth = sigv2.verify_request_v2(req.method, req.path, req.query, req.headers,
                                               self.access.credentials,
                                               virtual_host_bucket=ep.bucket if ep.virtual_host else None)
            else:
                auth = sigv4.verify_request(req.method, req.path, req.query, req.headers,
                                            self.access.credentials, self.config.region)
            if auth.creds is None:
                who = Principal(None, None, None)
            else:
                who = Principal(auth.creds.user_id, auth.creds.access_key, auth.creds.display_name)
            ctx = Ctx(self.store, self.config, self.access, req, ep, rid, auth, who)
            bucket = None
            if op not in _NO_BUCKET and ep.bucket is not None:
                if op in _LOOKUP_OBJECT and ep.key is not None:
                    # One read-pool hop for bucket, object and inline body; used only once the
                    # request is authorised, like separate reads would be.
                    bucket, meta, body = await self.store.lookup_object(
                        ep.bucket, ep.key, with_body=op == "GetObject",
                        version_id=_valid_or_none(ep.query.get("versionId")))
                    if bucket is not None:
                        ctx.prefetched = (meta, body)
                else:
                    bucket = await self.store.get_bucket(ep.bucket)
                if bucket is None:
                    self.access.authorize_anonymous_gate(ctx)
                    raise S3Error("NoSuchBucket", resource=resource, BucketName=ep.bucket)
            self.access.authorize(ctx, bucket, op, ep.key)
            resp = await REGISTRY[op](ctx, bucket)
            resp.headers.extend(ctx.headers_out)
        except S3Error as e:
            if not e.resource:
                e.resource = resource
            resp = self.error(e, rid, req)
        except storage.StorageError as e:
            resp = self.error(_storage_to_s3(e, resource), rid, req)
        resp.headers.append(("x-amz-request-id", rid))
        resp.headers.append(("x-amz-id-2", rid))
        return resp

    def error_response(self, code: str, req: Request | None) -> Response:
        """Errors raised by the HTTP layer itself (limits, timeouts, internal failures)."""
        rid = _request_id()
        resp = self.error(S3Error(code if code in ERRORS else "InternalError",
                                  resource=req.path if req else None), rid, req)
        resp.headers.append(("x-amz-request-id", rid))
        return resp

    def error(self, e: S3Error, rid: str, req: Request | None) -> Response:
        fields = [("Code", e.code), ("Message", e.message)]
        fields += [(k, v) for k, v in e.fields.items() if v is not None]
        if e.resource:
            fields.append(("Resource", e.resource))
        fields.append(("RequestId", rid))
        fields.append(("HostId", rid))
        body = document("Error", fields, ns=False)
        headers = [("Content-Type", "application/xml")] + list(e.headers.items())
        if e.status == 304:
            return Response(304, [(k, v) for k, v in e.headers.items()], None)
        return Response(e.status, headers, body)


def _valid_or_none(version_id: str | None) -> str | None:
    """A malformed version id is the handler's to refuse (InvalidArgument, after authorisation):
    the lookup before it reads the current object instead."""
    return version_id if version_id is None or storage.valid_version_id(version_id) else None


def _storage_to_s3(e: storage.StorageError, resource: str) -> S3Error:
    if isinstance(e, storage.NoSuchBucket):
        return S3Error("NoSuchBucket", resource=resource)
    if isinstance(e, storage.NoSuchKey):
        return S3Error("NoSuchKey", resource=resource)
    if isinstance(e, storage.NoSuchUpload):
        return S3Error("NoSuchUpload", resource=resource)
    if isinstance(e, storage.BucketNotEmpty):
        return S3Error("BucketNotEmpty", resource=resource)
    if isinstance(e, storage.PreconditionFailed):
        return S3Error("PreconditionFailed", resource=resource, Condition="If-Match")
    if isinstance(e, storage.InvalidPart):
        return S3Error("InvalidPart", resource=resource)
    if isinstance(e, storage.Unavailable):
        return S3Error("ServiceUnavailable", str(e) or None, resource=resource)
    if isinstance(e, storage.NoSuchVersion):
        return S3Error("NoSuchVersion", resource=resource, VersionId=str(e))
    if isinstance(e, storage.VersionIsDeleteMarker):
        return S3Error("MethodNotAllowed", "The specified method is not allowed against a delete "
                                           "marker.", resource=resource)
    if isinstance(e, storage.ObjectLocked):
        return S3Error("AccessDenied", "Access Denied because object protected by object lock.",
                       resource=resource)
    if isinstance(e, storage.ObjectLockNotEnabled):
        return S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration",
                       resource=resource)
    if isinstance(e, storage.InvalidBucketState):
        return S3Error("InvalidBucketState", str(e) or None, resource=resource)
    if isinstance(e, storage.Unsupported):
        return S3Error("NotImplemented", str(e) or None, resource=resource)
    log.exception("unmapped storage error")
    return S3Error("InternalError", resource=resource)

