"""Value types and errors shared by the storage engine and the S3 layer.

The S3 layer never touches files or SQL; it speaks to ``LocalStore`` (storage/store.py) in
these types. Timestamps are float seconds since the epoch (UTC).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class StorageError(Exception):
    """Base of storage-level failures the S3 layer maps to S3 error codes."""


class BucketExists(StorageError):
    """create_bucket on a name that exists; ``owner_id`` is the existing owner."""

    def __init__(self, owner_id: str) -> None:
        super().__init__(owner_id)
        self.owner_id = owner_id


class NoSuchBucket(StorageError):
    pass


class BucketNotEmpty(StorageError):
    pass


class NoSuchKey(StorageError):
    pass


class NoSuchUpload(StorageError):
    pass


class PreconditionFailed(StorageError):
    """A conditional write (If-Match / If-None-Match) did not hold at commit time."""


class NoSuchVersion(StorageError):
    """A version id (well formed) that the key does not have."""


class Unsupported(StorageError):
    """What this store does not do (yet): S3's 501 NotImplemented, with the reason."""


class VersionIsDeleteMarker(StorageError):
    """An operation on a version that only an object can take (a delete marker has no body, no
    tags): S3's 405 MethodNotAllowed."""


@dataclass
class BucketInfo:
    name: str
    owner_id: str
    region: str
    created: float
    # Per-bucket configuration documents by kind ("tagging", "policy", ...): raw bytes as stored.
    configs: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Segment:
    """One data file of an object: a whole single-part object, or one part of a multipart one."""
    vid: str            # data file id (a uuid4 hex); the file name, never the key
    size: int
    etag: str           # md5 hex of this segment, unquoted
    checksums: dict[str, str] = field(default_factory=dict)   # algo -> base64 value (S3 form)
    # The bytes live in the metadata store (table inline_data, keyed by vid), not in a data file.
    inline: bool = False


@dataclass
class ObjectMeta:
    bucket: str
    key: str
    vid: str                    # version/data id of the object as a whole
    size: int
    etag: str                   # unquoted: md5 hex, or "md5hex-N" for multipart
    last_modified: float
    content_type: str | None = None
    # Headers S3 stores and returns: content-encoding, content-disposition, content-language,
    # cache-control, expires, plus "x-amz-meta-*" user metadata, lower-case names -> values.
    headers: dict[str, str] = field(default_factory=dict)
    # Whole-object checksums: algo ("crc32","crc32c","crc64nvme","sha1","sha256") -> base64
    # value as S3 returns it (composite ones end in "-N"); plus checksum_type.
    checksums: dict[str, str] = field(default_factory=dict)
    checksum_type: str | None = None        # "FULL_OBJECT" | "COMPOSITE" | None
    tags: dict[str, str] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)   # len > 1 or parts_count set: multipart
    parts_count: int | None = None          # set for multipart objects
    owner_id: str = ""
    # Bucket versioning (storage/versioning.py): the version's id ("null" for the null version);
    # None for an object written while its bucket had no versioning state (the implicit null
    # version). A delete marker is a version with no body: no data, no ETag.
    version_id: str | None = None
    delete_marker: bool = False
    # Where the version sorts among its key's versions (storage/versioning.py seq); None for an
    # object of an unversioned key and for the implicit null version.
    seq: bytes | None = None
    # Object lock (storage/objectlock.py): the version's retention, GOVERNANCE|COMPLIANCE until
    # lock_until_ms (both set or both None), and its legal hold (None: never set).
    lock_mode: str | None = None
    lock_until_ms: int | None = None
    legal_hold: bool | None = None


@dataclass
class WriteResult:
    """What an ObjectWriter measured while the bytes went to disk."""
    vid: str
    size: int
    md5_hex: str
    checksums: dict[str, bytes]     # algo -> raw digest bytes, for every algo asked of begin_write
    # Small bodies never reach a file: the bytes themselves, stored by put_object in its transaction.
    inline: bytes | None = None


@dataclass
class ListEntry:
    key: str
    size: int
    etag: str
    last_modified: float
    owner_id: str
    checksum_algorithms: list[str] = field(default_factory=list)


@dataclass
class ListPage:
    """One page of a listing. ``next_key`` is the last key or common prefix returned, which the
    S3 layer turns into NextMarker / NextContinuationToken; it is None when not truncated."""
    entries: list[ListEntry]
    common_prefixes: list[str]
    is_truncated: bool
    next_key: str | None


@dataclass
class UploadInfo:
    upload_id: str
    bucket: str
    key: str
    initiated: float
    owner_id: str
    headers: dict[str, str] = field(default_factory=dict)       # as ObjectMeta.headers
    content_type: str | None = None
    checksum_algorithm: str | None = None    # e.g. "crc32c"
    checksum_type: str | None = None         # "COMPOSITE" | "FULL_OBJECT" | None
    tags: dict[str, str] = field(default_factory=dict)
    # The object lock the completed version gets (as ObjectMeta's); None: none asked for.
    lock_mode: str | None = None
    lock_until_ms: int | None = None
    legal_hold: bool | None = None


@dataclass
class PartInfo:
    part_number: int
    vid: str
    size: int
    etag: str                   # md5 hex, unquoted
    last_modified: float
    checksums: dict[str, str] = field(default_factory=dict)   # algo -> base64


Json = dict[str, Any]


class Unavailable(StorageError):
    """Cluster mode: the replicas a write's consistency mode needs cannot be reached (503)."""


@dataclass
class DeleteResult:
    """What a DeleteObject did: the version it created (a delete marker) or removed, if any.
    ``locked``: DeleteObjects only: this entry's version is under object lock and stayed (the
    batch's other entries went)."""
    version_id: str | None = None
    delete_marker: bool = False
    locked: bool = False


@dataclass
class VersionEntry:
    """One entry of ListObjectVersions: a version or a delete marker."""
    key: str
    version_id: str             # "null" for the null version
    is_latest: bool
    delete_marker: bool
    size: int
    etag: str
    last_modified: float
    owner_id: str
    checksum_algorithms: list[str] = field(default_factory=list)
    # Where the version sorts within its key (its seq: storage/versioning.py); the cluster merges
    # the pages of several nodes by it.
    order: bytes = b""


@dataclass
class VersionPage:
    entries: list[VersionEntry]
    common_prefixes: list[str]
    is_truncated: bool
    next_key_marker: str | None
    next_version_id_marker: str | None
