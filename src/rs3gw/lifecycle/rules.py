"""Bucket lifecycle rules as values: the typed model of a LifecycleConfiguration and the pure
decisions taken from it (does a rule cover an object, when is it due). No I/O here: the S3 layer
parses and writes the XML (rs3gw.s3.lifecycle), the scanner acts (rs3gw.lifecycle.scanner).

Time: a "day" is a lifecycle day of ``day_s`` seconds (RS3GW_LIFECYCLE_DAY_SECONDS: 86400 unless
tests shorten it). As AWS computes it, an object's age counts from its creation (Last-Modified), a
noncurrent version's from the creation of its successor, and an upload's from its initiation; the
rule's days are added and the sum is rounded up to the next midnight UTC. With ``day_s`` the
midnights are the multiples of ``day_s`` since the epoch, so an 86400-second day gives AWS's dates.

A configuration is stored as JSON (``to_json``/``from_json``, the bucket config kind
``CONFIG_KIND``): the scanner reads it without knowing any XML, and GetBucketLifecycleConfiguration
gives back what was put (``Filter.form`` remembers how the filter was spelt).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CONFIG_KIND = "lifecycle"
RULES_MAX = 1000
RULE_ID_MAX_CHARS = 255
NEWER_NONCURRENT_VERSIONS_MAX = 100
OBJECT_SIZE_MAX_BYTES = 5 << 40          # "Maximum filter size is 5TB"


def due(start: float, days: int, day_s: float) -> float:
    """``start`` plus ``days`` lifecycle days, rounded up to the next lifecycle midnight (always the
    next one: a sum that falls on a midnight still moves on a day, as AWS's examples count)."""
    return (math.floor((start + days * day_s) / day_s) + 1) * day_s


@dataclass(frozen=True)
class Filter:
    """Which objects a rule covers: all of its predicates hold (a missing one always holds)."""
    prefix: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    size_gt: int | None = None          # ObjectSizeGreaterThan (bytes, exclusive)
    size_lt: int | None = None          # ObjectSizeLessThan (bytes, exclusive)
    # How the rule spelt it: "legacy" (the rule's own Prefix, no Filter), "filter" (one
    # predicate, or an empty Filter), "and" (Filter/And).
    form: str = "filter"

    def covers_key(self, key: str) -> bool:
        return self.prefix is None or key.startswith(self.prefix)

    def covers(self, key: str, size: int, tags: Mapping[str, str] | None) -> bool:
        """``tags`` None: not known (only asked for when the filter names tags, see needs_tags)."""
        if not self.covers_key(key):
            return False
        if self.size_gt is not None and not size > self.size_gt:
            return False
        if self.size_lt is not None and not size < self.size_lt:
            return False
        if self.tags:
            have = tags or {}
            return all(have.get(k) == v for k, v in self.tags)
        return True


@dataclass(frozen=True)
class Expiration:
    """Exactly one of the three is set (the S3 layer refuses anything else)."""
    days: int | None = None
    date: float | None = None            # epoch seconds of a midnight UTC
    expired_object_delete_marker: bool | None = None


@dataclass(frozen=True)
class NoncurrentExpiration:
    days: int                              # NoncurrentDays
    newer_versions: int | None = None      # NewerNoncurrentVersions: how many to keep regardless


@dataclass(frozen=True)
class Rule:
    id: str
    enabled: bool
    filter: Filter
    expiration: Expiration | None = None
    noncurrent: NoncurrentExpiration | None = None
    abort_days: int | None = None           # AbortIncompleteMultipartUpload/DaysAfterInitiation


@dataclass(frozen=True)
class Configuration:
    rules: tuple[Rule, ...]

    def _enabled(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)

    # --- what the S3 layer shows and the scanner does ---------------------------------------

    def current_expiry(self, key: str, size: int, tags: Mapping[str, str] | None,
                       created: float, day_s: float) -> tuple[float, str] | None:
        """When the current version of ``key`` expires and by which rule (x-amz-expiration):
        the earliest of the enabled Expiration Days/Date rules that cover it, or None."""
        best: tuple[float, str] | None = None
        for r in self._enabled():
            exp = r.expiration
            if exp is None or not r.filter.covers(key, size, tags):
                continue
            if exp.days is not None:
                when = due(created, exp.days, day_s)
            elif exp.date is not None:
                when = exp.date
            else:
                continue
            if best is None or when < best[0]:
                best = (when, r.id)
        return best

    def sole_marker_expired(self, key: str, created: float, day_s: float, now: float) -> bool:
        """A delete marker that is its key's only version goes: at once under
        ExpiredObjectDeleteMarker, or once it is as old as an Expiration Days rule's age (AWS
        cleans such markers up under Days too). Markers have no tags or size to filter on."""
        for r in self._enabled():
            exp = r.expiration
            if exp is None or not r.filter.covers_key(key):
                continue
            if exp.expired_object_delete_marker:
                return True
            if exp.days is not None and due(created, exp.days, day_s) <= now:
                return True
        return False

    def noncurrent_expired(self, key: str, size: int, tags: Mapping[str, str] | None,
                           marker: bool, noncurrent_since: float, newer_noncurrent: int,
                           day_s: float, now: float) -> bool:
        """Whether a noncurrent version goes: some enabled NoncurrentVersionExpiration that
        covers it is due ``NoncurrentDays`` after ``noncurrent_since`` (its successor's creation),
        and the version has at least NewerNoncurrentVersions newer noncurrent versions (delete
        markers do not count; ``newer_noncurrent`` is that count)."""
        for r in self._enabled():
            nc = r.noncurrent
            if nc is None:
                continue
            if marker:
                if not r.filter.covers_key(key):
                    continue
            elif not r.filter.covers(key, size, tags):
                continue
            if nc.newer_versions is not None and newer_noncurrent < nc.newer_versions:
                continue
            if due(noncurrent_since, nc.days, day_s) <= now:
                return True
        return False

    def upload_abort(self, key: str, initiated: float, day_s: float) -> tuple[float, str] | None:
        """When an incomplete multipart upload of ``key`` is aborted and by which rule (the
        earliest; x-amz-abort-date): uploads are filtered by prefix only (the S3 layer refuses
        AbortIncompleteMultipartUpload with tags; an upload has no size yet)."""
        best: tuple[float, str] | None = None
        for r in self._enabled():
            if r.abort_days is None or not r.filter.covers_key(key):
                continue
            when = due(initiated, r.abort_days, day_s)
            if best is None or when < best[0]:
                best = (when, r.id)
        return best

    def needs_tags(self, key: str) -> bool:
        """Some enabled rule covering ``key`` by prefix also filters on tags: the version's tags
        must be read before it is judged (listings do not carry them)."""
        return any(r.filter.tags and r.filter.covers_key(key) for r in self._enabled())

    @property
    def acts_on_versions(self) -> bool:
        return any(r.expiration is not None or r.noncurrent is not None for r in self._enabled())

    @property
    def aborts_uploads(self) -> bool:
        return any(r.abort_days is not None for r in self._enabled())

    # --- stored form ------------------------------------------------------------------------

    def to_json(self) -> bytes:
        return json.dumps([_rule_doc(r) for r in self.rules], separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Configuration:
        return cls(tuple(_rule_from_doc(d) for d in json.loads(raw)))


def _rule_doc(r: Rule) -> dict[str, Any]:
    f = r.filter
    doc: dict[str, Any] = {"id": r.id, "enabled": r.enabled,
                           "filter": {"prefix": f.prefix, "tags": [list(t) for t in f.tags],
                                      "gt": f.size_gt, "lt": f.size_lt, "form": f.form}}
    if r.expiration is not None:
        e = r.expiration
        doc["expiration"] = {"days": e.days, "date": e.date,
                             "marker": e.expired_object_delete_marker}
    if r.noncurrent is not None:
        doc["noncurrent"] = {"days": r.noncurrent.days, "newer": r.noncurrent.newer_versions}
    if r.abort_days is not None:
        doc["abort_days"] = r.abort_days
    return doc


def _rule_from_doc(d: dict[str, Any]) -> Rule:
    f = d["filter"]
    e = d.get("expiration")
    n = d.get("noncurrent")
    return Rule(
        id=d["id"], enabled=d["enabled"],
        filter=Filter(f["prefix"], tuple((k, v) for k, v in f["tags"]), f["gt"], f["lt"],
                      f["form"]),
        expiration=None if e is None else Expiration(e["days"], e["date"], e["marker"]),
        noncurrent=None if n is None else NoncurrentExpiration(n["days"], n["newer"]),
        abort_days=d.get("abort_days"))
