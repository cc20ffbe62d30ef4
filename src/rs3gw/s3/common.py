"""Small helpers shared by the S3 handlers: dates, ETags, stored headers, name rules."""
from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING

from ..http.request import Request, Response
from ..storage import NULL_VERSION, VERSIONING, BucketInfo, valid_version_id
from .errors import S3Error
from .router import Endpoint

if TYPE_CHECKING:
    from ..config import Config
    from ..storage import ObjectMeta, ObjectStore
    from .access import AccessControl
    from .policy import Principal
    from .sigv4 import AuthResult

MAX_KEY_BYTES = 1024
MAX_USER_METADATA_BYTES = 2048
MAX_PUT_BYTES = 5 << 30
MAX_XML_BODY_BYTES = 2 << 20
# The canonical id that owns what anonymous callers create on an open gateway.
ANONYMOUS_OWNER_ID = "65a011a29cdf8ec533ec3d1ccaae921c"

# Headers stored with an object and returned on GET/HEAD (besides Content-Type and x-amz-meta-*).
STORED_HEADERS = ("content-encoding", "content-disposition", "content-language", "cache-control",
                  "expires", "x-amz-website-redirect-location", "x-amz-storage-class")


@dataclass
class Ctx:
    """Everything a handler needs about one request: the store it acts on, the gateway's
    config and access control, and the request itself (access.Caller)."""
    store: ObjectStore
    config: Config
    access: AccessControl
    req: Request
    ep: Endpoint
    request_id: str
    auth: AuthResult
    who: Principal
    headers_out: list[tuple[str, str]] = field(default_factory=list)
    # GetObject/HeadObject: (object meta or None, inline body or None) read with the bucket in
    # one hop.
    prefetched: tuple[ObjectMeta | None, bytes | None] | None = None

    @property
    def owner_id(self) -> str:
        return self.who.user_id or ANONYMOUS_OWNER_ID

    def q(self, name: str, default: str | None = None) -> str | None:
        return self.ep.query.get(name, default)


@functools.lru_cache(maxsize=4096)   # Last-Modified of recently read objects
def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def iso8601(ts: float) -> str:
    return _iso_seconds(int(ts // 1)) + f".{int((ts % 1) * 1000):03d}Z"


@functools.lru_cache(maxsize=4096)   # listings: keys written in the same second share it
def _iso_seconds(sec: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))


def parse_http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def quote_etag(etag: str) -> str:
    return f'"{etag}"'


def unquote_etag(etag: str) -> str:
    etag = etag.strip()
    etag = etag.removeprefix("W/")
    return etag.strip('"')


def etag_matches(header: str, etag: str) -> bool:
    """If-Match / If-None-Match list semantics: '*' or any listed tag equals ours."""
    for item in header.split(","):
        item = item.strip()
        if item == "*" or unquote_etag(item) == etag:
            return True
    return False


def stored_headers(h: dict[str, str]) -> dict[str, str]:
    """The request headers S3 keeps with an object: system ones plus x-amz-meta-*."""
    out = {k: h[k] for k in STORED_HEADERS if k in h}
    enc = out.get("content-encoding")
    if enc is not None:
        # aws-chunked is transfer framing, never part of the stored object's encoding.
        kept = [e.strip() for e in enc.split(",") if e.strip() and e.strip().lower() != "aws-chunked"]
        if kept:
            out["content-encoding"] = ", ".join(kept)
        else:
            del out["content-encoding"]
    size = 0
    for k, v in h.items():
        if k.startswith("x-amz-meta-"):
            out[k] = v
            size += len(k) - len("x-amz-meta-") + len(v.encode())
    if size > MAX_USER_METADATA_BYTES:
        raise S3Error("MetadataTooLarge", MaxSizeAllowed="2048", Size=str(size))
    return out


def check_key(key: str) -> None:
    if len(key.encode()) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", MaxSizeAllowed=str(MAX_KEY_BYTES), Size=str(len(key.encode())))


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def valid_bucket_name(name: str) -> bool:
    return bool(_BUCKET_RE.match(name)) and ".." not in name and not _IP_RE.match(name) \
        and ".-" not in name and "-." not in name and not name.startswith("xn--") \
        and not name.endswith(("-s3alias", "--ol-s3")) and not name.startswith("sthree-")


def xml_response(body: bytes, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, [("Content-Type", "application/xml")] + (headers or []), body)


def empty_response(status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, list(headers or []), b"" if status not in (204, 304) else None)


def parse_tagging_header(value: str) -> dict[str, str]:
    """x-amz-tagging: URL-query encoded tags."""
    from urllib.parse import parse_qsl
    tags = dict(parse_qsl(value, keep_blank_values=True))
    validate_tags(tags)
    return tags


def validate_tags(tags: dict[str, str], limit: int = 10) -> None:
    if len(tags) > limit:
        raise S3Error("InvalidTag", "Object tags cannot be greater than 10")
    for k, v in tags.items():
        if not k or len(k) > 128:
            raise S3Error("InvalidTag", "The TagKey you have provided is invalid")
        if len(v) > 256:
            raise S3Error("InvalidTag", "The TagValue you have provided is too long")


# --- bucket versioning ----------------------------------------------------------------------------

def versioning_state(bucket: BucketInfo) -> str | None:
    """"Enabled", "Suspended", or None for a bucket that never had versioning."""
    raw = bucket.configs.get(VERSIONING)
    return None if raw is None else bytes(raw).decode()


def version_param(ctx: Ctx, name: str = "versionId") -> str | None:
    """The request's version id: None if absent; InvalidArgument if it is not one (S3 answers a
    well-formed id the key does not have with NoSuchVersion, a malformed one with this)."""
    vid = ctx.q(name)
    if vid is None:
        return None
    check_version_id(vid, name)
    return vid


def check_version_id(vid: str, name: str = "versionId") -> None:
    if not valid_version_id(vid):
        raise S3Error("InvalidArgument", "Invalid version id specified", ArgumentName=name,
                      ArgumentValue=vid)


def version_headers(bucket: BucketInfo, meta: ObjectMeta) -> list[tuple[str, str]]:
    """x-amz-version-id of an object, in a bucket that has (or had) versioning."""
    if meta.version_id is not None:
        return [("x-amz-version-id", meta.version_id)]
    if versioning_state(bucket) is not None:
        return [("x-amz-version-id", NULL_VERSION)]
    return []


def delete_marker_headers(meta: ObjectMeta) -> dict[str, str]:
    return {"x-amz-delete-marker": "true", "x-amz-version-id": meta.version_id or NULL_VERSION,
            "Last-Modified": http_date(meta.last_modified)}
