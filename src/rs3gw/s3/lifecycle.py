"""Lifecycle configuration XML (Put/GetBucketLifecycleConfiguration) and the x-amz-expiration
header: the S3 side of rs3gw.lifecycle.rules.

Parsing refuses what AWS refuses, with AWS's error: the shape of the document (a missing or
doubled element, a Filter with two predicates, Prefix and Filter together, a bad Status or
number) is MalformedXML; values out of range (days, dates not at midnight, ID length, duplicate
IDs, sizes) are InvalidArgument; combinations AWS forbids (no action, tags with
AbortIncompleteMultipartUpload or ExpiredObjectDeleteMarker, NewerNoncurrentVersions without a
Filter) are InvalidRequest.

Transitions: this gateway has one storage class (STANDARD) and nowhere to move an object to, so
a rule with Transition or NoncurrentVersionTransition is refused with InvalidStorageClass, as S3
answers a storage class it does not offer. Accepting it would promise an action that never
happens; a client then learns at once that it needs another lifecycle.
"""
from __future__ import annotations

import datetime as dt
import functools
import secrets
import time
import xml.etree.ElementTree as ET

from ..lifecycle.rules import (
    CONFIG_KIND,
    NEWER_NONCURRENT_VERSIONS_MAX,
    OBJECT_SIZE_MAX_BYTES,
    RULE_ID_MAX_CHARS,
    RULES_MAX,
    Configuration,
    Expiration,
    Filter,
    NoncurrentExpiration,
    Rule,
)
from ..storage import BucketInfo, ObjectMeta, UploadInfo
from .common import http_date
from .errors import S3Error
from .xml import Child, document, parse

CONFIG_ROOT = "LifecycleConfiguration"

_RULE_CHILDREN = {"ID", "Prefix", "Filter", "Status", "Expiration", "Transition",
                  "NoncurrentVersionTransition", "NoncurrentVersionExpiration",
                  "AbortIncompleteMultipartUpload"}
# Elements that may appear more than once in a Rule.
_REPEATABLE = {"Transition", "NoncurrentVersionTransition"}


def _malformed() -> S3Error:
    return S3Error("MalformedXML")


def _invalid(message: str, name: str | None = None, value: str | None = None) -> S3Error:
    return S3Error("InvalidArgument", message, ArgumentName=name, ArgumentValue=value)


def _one(el: ET.Element, tag: str) -> ET.Element | None:
    found = el.findall(tag)
    if len(found) > 1:
        raise _malformed()
    return found[0] if found else None


def _text(el: ET.Element | None) -> str:
    return "" if el is None else (el.text or "").strip()


def _integer(el: ET.Element) -> int:
    raw = _text(el)
    try:
        return int(raw)
    except ValueError as e:
        raise _malformed() from e


def _positive(el: ET.Element, message: str, name: str) -> int:
    n = _integer(el)
    if n <= 0:
        raise _invalid(message, name, str(n))
    return n


def _date(el: ET.Element) -> float:
    raw = _text(el)
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError as e:
        raise _malformed() from e
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    when = when.astimezone(dt.UTC)
    if (when.hour, when.minute, when.second, when.microsecond) != (0, 0, 0, 0):
        raise _invalid("'Date' must be at midnight GMT", "Date", raw)
    return when.timestamp()


def _tag(el: ET.Element) -> tuple[str, str]:
    for child in el:
        if child.tag not in ("Key", "Value"):
            raise _malformed()
    key, value = _one(el, "Key"), _one(el, "Value")
    if key is None or not key.text:
        raise _malformed()
    return key.text, (value.text or "") if value is not None else ""


def _size(el: ET.Element, name: str) -> int:
    n = _integer(el)
    if not 0 <= n <= OBJECT_SIZE_MAX_BYTES:
        raise _invalid(f"'{name}' should be between 0 and 5 TB", name, str(n))
    return n


def _filter(el: ET.Element) -> Filter:
    children = list(el)
    if len(children) > 1:
        raise _malformed()          # exactly one predicate, or And around several
    if not children:
        return Filter()
    child = children[0]
    if child.tag == "Prefix":
        return Filter(prefix=child.text or "")
    if child.tag == "Tag":
        return Filter(tags=(_tag(child),))
    if child.tag == "ObjectSizeGreaterThan":
        return Filter(size_gt=_size(child, child.tag))
    if child.tag == "ObjectSizeLessThan":
        return _checked_sizes(Filter(size_lt=_size(child, child.tag)))
    if child.tag != "And":
        raise _malformed()
    prefix: str | None = None
    tags: list[tuple[str, str]] = []
    gt = lt = None
    for part in child:
        if part.tag == "Prefix" and prefix is None:
            prefix = part.text or ""
        elif part.tag == "Tag":
            tags.append(_tag(part))
        elif part.tag == "ObjectSizeGreaterThan" and gt is None:
            gt = _size(part, part.tag)
        elif part.tag == "ObjectSizeLessThan" and lt is None:
            lt = _size(part, part.tag)
        else:
            raise _malformed()
    if prefix is None and not tags and gt is None and lt is None:
        raise _malformed()
    if len({k for k, _ in tags}) != len(tags):
        raise S3Error("InvalidRequest", "Duplicate Tag Keys are not allowed.")
    return _checked_sizes(Filter(prefix, tuple(tags), gt, lt, "and"))


def _checked_sizes(f: Filter) -> Filter:
    if f.size_lt is not None and f.size_lt == 0:
        raise _invalid("'ObjectSizeLessThan' should be greater than 0", "ObjectSizeLessThan", "0")
    if f.size_gt is not None and f.size_lt is not None and f.size_gt >= f.size_lt:
        raise _invalid("'ObjectSizeGreaterThan' should be less than 'ObjectSizeLessThan'",
                       "ObjectSizeGreaterThan", str(f.size_gt))
    return f


def _expiration(el: ET.Element) -> Expiration:
    children = list(el)
    if len(children) != 1 or children[0].tag not in ("Days", "Date", "ExpiredObjectDeleteMarker"):
        raise _malformed()          # one of the three, and only one
    child = children[0]
    if child.tag == "Days":
        return Expiration(days=_positive(child, "'Days' for Expiration action must be a positive "
                                                "integer", "Days"))
    if child.tag == "Date":
        return Expiration(date=_date(child))
    flag = _text(child).lower()
    if flag not in ("true", "false"):
        raise _malformed()
    return Expiration(expired_object_delete_marker=flag == "true")


def _noncurrent(el: ET.Element) -> NoncurrentExpiration:
    days_el = newer_el = None
    for child in el:
        if child.tag == "NoncurrentDays" and days_el is None:
            days_el = child
        elif child.tag == "NewerNoncurrentVersions" and newer_el is None:
            newer_el = child
        else:
            raise _malformed()
    if days_el is None:
        raise _invalid("'NoncurrentDays' for NoncurrentVersionExpiration action must be a "
                       "positive integer", "NoncurrentDays")
    days = _positive(days_el, "'NoncurrentDays' for NoncurrentVersionExpiration action must be a "
                              "positive integer", "NoncurrentDays")
    newer = None
    if newer_el is not None:
        newer = _integer(newer_el)
        if not 0 < newer <= NEWER_NONCURRENT_VERSIONS_MAX:
            raise _invalid(f"'NewerNoncurrentVersions' should be between 1 and "
                           f"{NEWER_NONCURRENT_VERSIONS_MAX}", "NewerNoncurrentVersions",
                           str(newer))
    return NoncurrentExpiration(days, newer)


def _rule(el: ET.Element) -> Rule:
    seen: set[str] = set()
    for child in el:
        if child.tag not in _RULE_CHILDREN or (child.tag in seen and child.tag not in _REPEATABLE):
            raise _malformed()
        seen.add(child.tag)
    status = _text(_one(el, "Status"))
    if status not in ("Enabled", "Disabled"):
        raise _malformed()
    legacy, filt = _one(el, "Prefix"), _one(el, "Filter")
    if (legacy is None) == (filt is None):
        raise _malformed()          # one of the two: the rule's own Prefix, or a Filter
    if legacy is not None:
        f = Filter(prefix=legacy.text or "", form="legacy")
    else:
        assert filt is not None
        f = _filter(filt)
    rule_id = _text(_one(el, "ID")) or _new_id()
    if len(rule_id) > RULE_ID_MAX_CHARS:
        raise _invalid("ID length should not exceed allowed limit of 255", "ID", rule_id)
    exp_el, nc_el = _one(el, "Expiration"), _one(el, "NoncurrentVersionExpiration")
    abort_el = _one(el, "AbortIncompleteMultipartUpload")
    expiration = _expiration(exp_el) if exp_el is not None else None
    noncurrent = _noncurrent(nc_el) if nc_el is not None else None
    abort_days = None
    if abort_el is not None:
        days = [c for c in abort_el if c.tag == "DaysAfterInitiation"]
        if len(days) != 1 or len(abort_el) != 1:
            raise _malformed()
        abort_days = _positive(days[0], "'DaysAfterInitiation' for AbortIncompleteMultipartUpload "
                                        "action must be a positive integer", "DaysAfterInitiation")
    if "Transition" in seen or "NoncurrentVersionTransition" in seen:
        raise S3Error("InvalidStorageClass", "This gateway keeps every object in the STANDARD "
                                             "storage class: it has no class to transition to")
    if expiration is None and noncurrent is None and abort_days is None:
        raise S3Error("InvalidRequest", "At least one action needs to be specified in a rule")
    if f.tags and abort_days is not None:
        raise S3Error("InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified "
                                        "with Tags.")
    if f.tags and expiration is not None and expiration.expired_object_delete_marker:
        raise S3Error("InvalidRequest", "ExpiredObjectDeleteMarker cannot be specified with "
                                        "Tags.")
    if noncurrent is not None and noncurrent.newer_versions is not None and f.form == "legacy":
        raise S3Error("InvalidRequest", "NewerNoncurrentVersions cannot be specified without a "
                                        "Filter")
    return Rule(rule_id, status == "Enabled", f, expiration, noncurrent, abort_days)


def _new_id() -> str:
    # S3 names a rule put without an ID itself; the name only has to be unique in the bucket.
    return secrets.token_urlsafe(36)


def parse_configuration(body: bytes) -> Configuration:
    root = parse(body, CONFIG_ROOT)
    if any(child.tag != "Rule" for child in root):
        raise _malformed()
    els = root.findall("Rule")
    if not els:
        raise _malformed()
    if len(els) > RULES_MAX:
        raise _invalid(f"The number of lifecycle rules should not exceed allowed limit of "
                       f"{RULES_MAX} rules")
    rules = tuple(_rule(el) for el in els)
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise _invalid("Rule ID must be unique. Found same ID for more than one rule", "ID",
                       next(i for i in ids if ids.count(i) > 1))
    return Configuration(rules)


# --- serialising ------------------------------------------------------------------------------

def _iso_midnight(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _tag_xml(k: str, v: str) -> Child:
    return ("Tag", [("Key", k), ("Value", v)])


def _filter_xml(f: Filter) -> list[Child]:
    if f.form == "legacy":
        return [("Prefix", f.prefix or "")]
    parts: list[Child] = []
    if f.prefix is not None:
        parts.append(("Prefix", f.prefix))
    parts += [_tag_xml(k, v) for k, v in f.tags]
    if f.size_gt is not None:
        parts.append(("ObjectSizeGreaterThan", f.size_gt))
    if f.size_lt is not None:
        parts.append(("ObjectSizeLessThan", f.size_lt))
    return [("Filter", [("And", parts)] if f.form == "and" else parts)]


def _rule_xml(r: Rule) -> Child:
    out: list[Child] = [("ID", r.id), *_filter_xml(r.filter),
                        ("Status", "Enabled" if r.enabled else "Disabled")]
    if r.expiration is not None:
        e = r.expiration
        out.append(("Expiration", [
            ("Days", e.days) if e.days is not None else None,
            ("Date", _iso_midnight(e.date)) if e.date is not None else None,
            ("ExpiredObjectDeleteMarker", e.expired_object_delete_marker)
            if e.expired_object_delete_marker is not None else None]))
    if r.noncurrent is not None:
        n = r.noncurrent
        out.append(("NoncurrentVersionExpiration", [
            ("NoncurrentDays", n.days),
            ("NewerNoncurrentVersions", n.newer_versions) if n.newer_versions is not None
            else None]))
    if r.abort_days is not None:
        out.append(("AbortIncompleteMultipartUpload", [("DaysAfterInitiation", r.abort_days)]))
    return ("Rule", out)


def configuration_xml(cfg: Configuration) -> bytes:
    return document(CONFIG_ROOT, [_rule_xml(r) for r in cfg.rules])


# --- what GET/HEAD/PUT answer -------------------------------------------------------------------

@functools.lru_cache(maxsize=256)     # a bucket's stored bytes: parsed once, not per request
def stored_configuration(raw: bytes) -> Configuration:
    return Configuration.from_json(raw)


def _configuration(bucket: BucketInfo) -> Configuration | None:
    raw = bucket.configs.get(CONFIG_KIND)
    return None if raw is None else stored_configuration(bytes(raw))


def expiration_headers(bucket: BucketInfo, meta: ObjectMeta,
                       day_s: float) -> list[tuple[str, str]]:
    """x-amz-expiration of a current object an Expiration Days/Date rule covers: when it
    expires (its creation plus the rule's days, rounded up to the next midnight UTC; or the
    rule's date) and by which rule, the earliest if several do."""
    cfg = _configuration(bucket)
    if cfg is None or meta.delete_marker:
        return []
    created = meta.last_modified or time.time()
    found = cfg.current_expiry(meta.key, meta.size, meta.tags, created, day_s)
    if found is None:
        return []
    return [("x-amz-expiration", f'expiry-date="{http_date(found[0])}", rule-id="{found[1]}"')]


def abort_headers(bucket: BucketInfo, upload: UploadInfo, day_s: float) -> list[tuple[str, str]]:
    """x-amz-abort-date and x-amz-abort-rule-id of a new multipart upload an
    AbortIncompleteMultipartUpload rule covers."""
    cfg = _configuration(bucket)
    found = None if cfg is None else cfg.upload_abort(upload.key, upload.initiated or time.time(),
                                                      day_s)
    if found is None:
        return []
    return [("x-amz-abort-date", http_date(found[0])), ("x-amz-abort-rule-id", found[1])]
