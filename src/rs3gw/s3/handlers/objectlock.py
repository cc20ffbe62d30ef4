"""Object Lock: Put/GetObjectLockConfiguration, Put/GetObjectRetention, Put/GetObjectLegalHold,
and what object writes and reads take from it (the x-amz-object-lock-* headers, the governance
bypass). The rules themselves are the store's (storage/objectlock.py), applied inside its write
transactions; here requests are parsed and checked, and answers built, as S3 does."""
from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from ...http.request import Response
from ...storage import (
    LOCK_MODES,
    OBJECT_LOCK,
    BucketInfo,
    LockConfig,
    ObjectMeta,
    UploadInfo,
)
from ..common import Ctx, empty_response, version_param, versioning_state, xml_response
from ..errors import S3Error
from ..xml import document, parse, text
from .bodies import read_xml_body
from .tagging import version_or_error

BYPASS_HEADER = "x-amz-bypass-governance-retention"
MODE_HEADER = "x-amz-object-lock-mode"
UNTIL_HEADER = "x-amz-object-lock-retain-until-date"
HOLD_HEADER = "x-amz-object-lock-legal-hold"
LOCK_HEADERS = (MODE_HEADER, UNTIL_HEADER, HOLD_HEADER)
# Longest default retention S3 accepts: 100 years.
MAX_DEFAULT_YEARS = 100
MAX_DEFAULT_DAYS = 36_500
_MISSING_LOCK = "Bucket is missing Object Lock Configuration"


def lock_config(bucket: BucketInfo) -> LockConfig | None:
    """The bucket's object lock configuration; None if it has no object lock."""
    raw = bucket.configs.get(OBJECT_LOCK)
    return None if raw is None else LockConfig.decode(bytes(raw))


def _require_lock(bucket: BucketInfo) -> LockConfig:
    cfg = lock_config(bucket)
    if cfg is None:
        raise S3Error("InvalidRequest", _MISSING_LOCK, BucketName=bucket.name)
    return cfg


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_date(ms: int) -> str:
    """ISO 8601 to the millisecond, exactly what was stored (no float rounding)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def parse_date(value: str) -> int | None:
    """Milliseconds since the epoch of an ISO 8601 date (UTC unless it names an offset)."""
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    # Integer arithmetic: a float timestamp could land a millisecond early.
    return calendar.timegm(dt.utctimetuple()) * 1000 + dt.microsecond // 1000


def _future(until_ms: int) -> None:
    if until_ms <= now_ms():
        raise S3Error("InvalidArgument", "The retain until date must be in the future!")


# ---- object writes: PutObject, CopyObject, CreateMultipartUpload, CompleteMultipartUpload ---------

@dataclass(frozen=True)
class RequestedLock:
    """The lock a write asks for: a retention (mode and date, or neither), a legal hold."""
    mode: str | None = None
    until_ms: int | None = None
    legal_hold: bool | None = None


def requested_lock(ctx: Ctx, bucket: BucketInfo) -> RequestedLock:
    """The x-amz-object-lock-* headers of a write, checked as S3 checks them."""
    h = ctx.req.headers
    mode, date, hold = h.get(MODE_HEADER), h.get(UNTIL_HEADER), h.get(HOLD_HEADER)
    if mode is None and date is None and hold is None:
        return RequestedLock()
    _require_lock(bucket)
    if (mode is None) != (date is None):
        raise S3Error("InvalidArgument", "x-amz-object-lock-retain-until-date and "
                                         "x-amz-object-lock-mode must both be supplied")
    if mode is not None and mode not in LOCK_MODES:
        raise S3Error("InvalidArgument", "Unknown wormMode directive.")
    if hold is not None and hold not in ("ON", "OFF"):
        raise S3Error("InvalidArgument", "Legal Hold must be either of 'ON' or 'OFF'")
    until = None
    if date is not None:
        until = parse_date(date)
        if until is None:
            raise S3Error("InvalidArgument", "The retain until date must be provided in ISO 8601 "
                                             "format", ArgumentName=UNTIL_HEADER)
        _future(until)
    return RequestedLock(mode, until, None if hold is None else hold == "ON")


def lock_for_new_version(bucket: BucketInfo, lock: RequestedLock) -> RequestedLock:
    """What a new version gets: the retention asked for, else the bucket's default one."""
    cfg = lock_config(bucket)
    if lock.mode is not None or cfg is None or cfg.mode is None:
        return lock
    return RequestedLock(cfg.mode, cfg.default_until_ms(now_ms()), lock.legal_hold)


def apply_lock(target: ObjectMeta | UploadInfo, lock: RequestedLock) -> None:
    target.lock_mode, target.lock_until_ms = lock.mode, lock.until_ms
    target.legal_hold = lock.legal_hold


def require_put_integrity(ctx: Ctx, bucket: BucketInfo) -> None:
    """S3 refuses a PutObject that gets a retention or a legal hold (its own headers, or the
    bucket's default retention) without Content-MD5 or an x-amz-checksum-* (header or trailer):
    checked on the headers, before the body is read."""
    h = ctx.req.headers
    if not any(name in h for name in LOCK_HEADERS):
        cfg = lock_config(bucket)
        if cfg is None or cfg.mode is None:
            return
    if "content-md5" in h or h.get("x-amz-trailer", "").strip().lower().startswith(
            "x-amz-checksum-") or any(name.startswith("x-amz-checksum-") and
                                      name not in ("x-amz-checksum-type",
                                                   "x-amz-checksum-algorithm") for name in h):
        return
    raise S3Error("InvalidRequest", "Content-MD5 OR x-amz-checksum- HTTP header is required for "
                                    "Put Object requests with Object Lock parameters")


# ---- object reads and deletes ---------------------------------------------------------------------

def lock_headers(ctx: Ctx, bucket: BucketInfo, meta: ObjectMeta) -> list[tuple[str, str]]:
    """GetObject/HeadObject: the version's lock, to a caller allowed to read it (as S3 does)."""
    out: list[tuple[str, str]] = []
    if (meta.lock_mode is not None and meta.lock_until_ms is not None
            and ctx.access.allows(ctx, bucket, "GetObjectRetention", meta.key)):
        out += [(MODE_HEADER, meta.lock_mode), (UNTIL_HEADER, format_date(meta.lock_until_ms))]
    if meta.legal_hold is not None and ctx.access.allows(ctx, bucket, "GetObjectLegalHold",
                                                         meta.key):
        out.append((HOLD_HEADER, "ON" if meta.legal_hold else "OFF"))
    return out


def bypass_asked(ctx: Ctx) -> bool:
    return ctx.req.headers.get(BYPASS_HEADER, "").strip().lower() == "true"


def governance_bypass(ctx: Ctx, bucket: BucketInfo, key: str) -> bool:
    """The request may override GOVERNANCE retention on ``key``: it says so, and the caller has
    s3:BypassGovernanceRetention (the owner and root have it). Without the permission the header
    changes nothing: a GOVERNANCE version then refuses as it would without it."""
    return bypass_asked(ctx) and ctx.access.allows(ctx, bucket, "BypassGovernanceRetention", key)


# ---- Put/GetObjectLockConfiguration ---------------------------------------------------------------

def _positive(el_text: str | None, name: str, limit: int) -> int | None:
    if el_text is None:
        return None
    try:
        n = int(el_text.strip())
    except ValueError as e:
        raise S3Error("MalformedXML") from e
    if n <= 0:
        raise S3Error("InvalidArgument", "Default retention period must be a positive integer "
                                         "value", ArgumentName=name, ArgumentValue=el_text)
    if n > limit:
        raise S3Error("InvalidArgument", "Default retention period is too large.",
                      ArgumentName=name, ArgumentValue=el_text)
    return n


def parse_lock_configuration(body: bytes) -> LockConfig:
    root = parse(body, "ObjectLockConfiguration")
    if text(root, "ObjectLockEnabled") != "Enabled":
        raise S3Error("MalformedXML")
    rule = root.find("Rule")
    if rule is None:
        return LockConfig()
    retention = rule.find("DefaultRetention")
    if retention is None:
        raise S3Error("MalformedXML")
    mode = text(retention, "Mode")
    if mode not in LOCK_MODES:
        raise S3Error("MalformedXML")
    days = _positive(text(retention, "Days"), "Days", MAX_DEFAULT_DAYS)
    years = _positive(text(retention, "Years"), "Years", MAX_DEFAULT_YEARS)
    if (days is None) == (years is None):
        raise S3Error("MalformedXML")
    return LockConfig(mode, days, years)


async def put_object_lock_configuration(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    cfg = parse_lock_configuration(await read_xml_body(ctx, require_integrity=True))
    if versioning_state(bucket) != "Enabled":
        # The store decides again in its transaction; this answers before it is asked.
        raise S3Error("InvalidBucketState", "Versioning must be 'Enabled' on the bucket to apply "
                                            "a Object Lock configuration", BucketName=bucket.name)
    await ctx.store.set_bucket_config(bucket.name, OBJECT_LOCK, cfg.encode())
    return empty_response(200)


async def get_object_lock_configuration(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    cfg = lock_config(bucket)
    if cfg is None:
        raise S3Error("ObjectLockConfigurationNotFoundError", BucketName=bucket.name)
    rule = None
    if cfg.mode is not None:
        period = ("Days", cfg.days) if cfg.days is not None else ("Years", cfg.years)
        rule = ("Rule", [("DefaultRetention", [("Mode", cfg.mode), period])])
    return xml_response(document("ObjectLockConfiguration",
                                 [("ObjectLockEnabled", "Enabled"), rule]))


# ---- Put/GetObjectRetention, Put/GetObjectLegalHold -----------------------------------------------

async def put_object_retention(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None and ctx.ep.key is not None
    vid = version_param(ctx)
    _require_lock(bucket)
    root = parse(await read_xml_body(ctx, require_integrity=True), "Retention")
    mode, date = text(root, "Mode"), text(root, "RetainUntilDate")
    if (mode is None) != (date is None) or (mode is not None and mode not in LOCK_MODES):
        raise S3Error("MalformedXML")
    until = None
    if date is not None:
        until = parse_date(date)
        if until is None:
            raise S3Error("MalformedXML")
        _future(until)
    await ctx.store.set_object_retention(
        bucket.name, ctx.ep.key, vid, mode, until,
        bypass_governance=governance_bypass(ctx, bucket, ctx.ep.key))
    return empty_response(200)


async def get_object_retention(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    _require_lock(bucket)
    meta = await version_or_error(ctx, bucket)
    if meta.lock_mode is None or meta.lock_until_ms is None:
        raise S3Error("NoSuchObjectLockConfiguration")
    return xml_response(document("Retention", [("Mode", meta.lock_mode),
                                               ("RetainUntilDate",
                                                format_date(meta.lock_until_ms))]))


async def put_object_legal_hold(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None and ctx.ep.key is not None
    vid = version_param(ctx)
    _require_lock(bucket)
    status = text(parse(await read_xml_body(ctx, require_integrity=True), "LegalHold"), "Status")
    if status not in ("ON", "OFF"):
        raise S3Error("MalformedXML")
    await ctx.store.set_object_legal_hold(bucket.name, ctx.ep.key, vid, status == "ON")
    return empty_response(200)


async def get_object_legal_hold(ctx: Ctx, bucket: BucketInfo | None) -> Response:
    assert bucket is not None
    _require_lock(bucket)
    meta = await version_or_error(ctx, bucket)
    if meta.legal_hold is None:
        raise S3Error("NoSuchObjectLockConfiguration")
    return xml_response(document("LegalHold", [("Status", "ON" if meta.legal_hold else "OFF")]))
