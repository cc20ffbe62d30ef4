"""S3 Object Lock: the rules, as pure functions of a version's lock fields, the time and the
caller's governance bypass. The write transactions that change or remove a version call them
(storage/versioning.py delete_version, storage/objects.py set_object_retention), so a retention
set by one request and a delete by another are judged in the order they commit.

A version carries its own lock (ObjectMeta.lock_mode, lock_until_ms, legal_hold); delete markers
carry none. A bucket has object lock once config kind ``KIND`` exists (it is never removed), and
then its versioning stays Enabled (``check_bucket_config``).

- Retention: GOVERNANCE or COMPLIANCE until a date. While it runs, the version cannot be deleted
  for good; GOVERNANCE gives way to a caller with the bypass (the x-amz-bypass-governance-retention
  header and the s3:BypassGovernanceRetention permission, decided by the S3 layer). COMPLIANCE
  gives way to nobody. Once the date has passed the retention binds nothing.
- A running retention may always be made stronger: a later date, GOVERNANCE to COMPLIANCE. Making
  it weaker (an earlier date, COMPLIANCE to GOVERNANCE, removing it) needs the bypass, and is
  never allowed for COMPLIANCE.
- Legal hold: on or off, no date, no bypass; while on, the version cannot be deleted for good.
- A DELETE without a version id only adds a delete marker: no rule applies to it.

Times are integer milliseconds since the epoch: S3 shows retain-until dates to the millisecond,
and a date read back and sent again must compare equal to the stored one.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from rs3gw.storage.types import ObjectMeta, StorageError

KIND = "object-lock"              # the bucket config kind; its value: LockConfig.encode()
GOVERNANCE = "GOVERNANCE"
COMPLIANCE = "COMPLIANCE"
MODES = (GOVERNANCE, COMPLIANCE)
DAY_MS = 86_400_000
# A default retention of one year is 365 days.
YEAR_DAYS = 365
# storage/versioning.py STATE_KIND (which imports this module, so it cannot be imported here).
VERSIONING_KIND = "versioning"


class ObjectLocked(StorageError):
    """The version's retention or legal hold refuses the operation: S3's 403 AccessDenied."""


class ObjectLockNotEnabled(StorageError):
    """A lock request on a bucket without object lock: S3's 400 InvalidRequest."""


class InvalidBucketState(StorageError):
    """A bucket configuration that object lock forbids: S3's 409 InvalidBucketState."""


@dataclass(frozen=True)
class LockConfig:
    """A bucket's object lock configuration: enabled, with an optional default retention
    (``mode`` with exactly one of ``days`` or ``years``)."""
    mode: str | None = None
    days: int | None = None
    years: int | None = None

    def __post_init__(self) -> None:
        if self.mode is None:
            if self.days is not None or self.years is not None:
                raise ValueError("a default retention period needs a mode")
            return
        if self.mode not in MODES:
            raise ValueError(f"retention mode must be one of {MODES}, not {self.mode!r}")
        if (self.days is None) == (self.years is None):
            raise ValueError("a default retention has exactly one of days or years")
        if (self.days or self.years or 0) <= 0:
            raise ValueError("a default retention period is a positive number")

    def encode(self) -> bytes:
        doc: dict[str, object] = {"enabled": True}
        if self.mode is not None:
            doc["mode"] = self.mode
            doc["days" if self.days is not None else "years"] = self.days or self.years
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> LockConfig:
        doc = json.loads(raw)
        return cls(doc.get("mode"), doc.get("days"), doc.get("years"))

    def default_until_ms(self, now_ms: int) -> int | None:
        """When a new version's default retention ends, if the bucket sets one."""
        if self.mode is None:
            return None
        days = self.days if self.days is not None else (self.years or 0) * YEAR_DAYS
        return now_ms + days * DAY_MS


def to_ms(ts: float) -> int:
    return int(ts * 1000)


def retained(meta: ObjectMeta, now_ms: int) -> bool:
    """The version's retention still runs."""
    return (meta.lock_mode is not None and meta.lock_until_ms is not None
            and meta.lock_until_ms > now_ms)


def check_delete(meta: ObjectMeta, now_ms: int, bypass_governance: bool) -> None:
    """Raise ObjectLocked unless the version may be deleted for good (by its version id, or by
    anything else that removes a version: lifecycle expiration)."""
    if meta.delete_marker:
        return
    if meta.legal_hold:
        raise ObjectLocked(f"{meta.key!r} version {meta.version_id} is under a legal hold")
    if retained(meta, now_ms) and (meta.lock_mode == COMPLIANCE or not bypass_governance):
        raise ObjectLocked(f"{meta.key!r} version {meta.version_id} is retained in "
                           f"{meta.lock_mode} mode")


def check_delete_lock(meta: ObjectMeta, bypass_governance: bool, now: float | None = None) -> None:
    """check_delete at ``now`` (default: this moment): for a store that decides before it writes
    (the cluster's coordinator, whose replicas then apply the delete unconditionally)."""
    check_delete(meta, to_ms(time.time() if now is None else now), bypass_governance)


def check_retention_change(meta: ObjectMeta, mode: str | None, until_ms: int | None,
                           now_ms: int, bypass_governance: bool) -> None:
    """Raise ObjectLocked unless the version's retention may become ``mode`` until ``until_ms``
    (both None: removed)."""
    if (mode is None) != (until_ms is None):
        raise StorageError("a retention has both a mode and a date, or neither")
    if mode is not None and mode not in MODES:
        raise StorageError(f"retention mode must be one of {MODES}, not {mode!r}")
    if not retained(meta, now_ms):
        return
    assert meta.lock_until_ms is not None
    weaker = (mode is None or until_ms is None or until_ms < meta.lock_until_ms
              or (meta.lock_mode == COMPLIANCE and mode != COMPLIANCE))
    if not weaker:
        return
    if meta.lock_mode == COMPLIANCE:
        raise ObjectLocked(f"{meta.key!r} version {meta.version_id}: a COMPLIANCE retention can "
                           "only be extended")
    if not bypass_governance:
        raise ObjectLocked(f"{meta.key!r} version {meta.version_id}: shortening or removing a "
                           "GOVERNANCE retention needs the governance bypass")


def check_bucket_config(kind: str, value: bytes | None, versioning: str | None,
                        locked: bool) -> None:
    """A bucket config write that object lock refuses: a lock configuration on a bucket whose
    versioning is not Enabled, removing the lock configuration, or changing the versioning of a
    bucket with object lock (``versioning``: its state now; ``locked``: it has object lock)."""
    if kind == KIND:
        if value is None and locked:
            raise InvalidBucketState("object lock cannot be disabled on a bucket")
        if value is not None and versioning != "Enabled":
            raise InvalidBucketState("Versioning must be 'Enabled' on the bucket to apply a "
                                     "Object Lock configuration")
    elif kind == VERSIONING_KIND and locked and value != b"Enabled":
        raise InvalidBucketState("An Object Lock configuration is present on this bucket, so "
                                 "the versioning state cannot be changed.")
