"""Storage engine: the embedded local store (SQLite metadata + data files) and its boundary.

What it offers (everything another package may import; the submodules are the engine's own):
- ``ObjectStore``: the protocol the S3 handlers use; ``ReplicaStore``: what the cluster asks of a
  node's own store (named operations on stamped versions, judged by a ``Judge`` -> ``Verdict``).
- ``LocalStore``: the engine, implementing both.
- The value types (``ObjectMeta``, ``WriteResult``, ``BucketInfo``, ...) and errors
  (``StorageError`` and its subclasses), which the S3 layer maps to S3 error codes.
- Bucket versioning: ``VERSIONING`` (the bucket config kind holding "Enabled"/"Suspended"),
  ``NULL_VERSION``, ``valid_version_id``; versions and delete markers through the ObjectStore.
  In cluster mode each version is a stamped item of its own: ``VERSION_KIND``, named by
  ``version_item(key, version_id)`` and split back by ``split_item``.
- Object lock: ``OBJECT_LOCK`` (the bucket config kind), ``LockConfig`` (its value),
  ``LOCK_MODES``, the errors ``ObjectLocked``, ``ObjectLockNotEnabled``, ``InvalidBucketState``;
  retention and legal holds through the ObjectStore, enforced in its write transactions.
- ``check_conditions``: the If-Match / If-None-Match rule, for stores that judge a conditional
  write against a version they found elsewhere (the cluster's newest copy).
- ``write_transaction``, ``savepoint_each``, ``fsync_dir``: the durability helpers, for other
  SQLite databases under the storage root (the cluster's replication queue).
"""
from rs3gw.storage.datafiles import ObjectWriter, fsync_dir
from rs3gw.storage.metadb import savepoint_each, write_transaction
from rs3gw.storage.multipart import InvalidPart
from rs3gw.storage.objectlock import KIND as OBJECT_LOCK
from rs3gw.storage.objectlock import MODES as LOCK_MODES
from rs3gw.storage.objectlock import (
    InvalidBucketState,
    LockConfig,
    ObjectLocked,
    ObjectLockNotEnabled,
    check_bucket_config,
    check_delete_lock,
    check_retention_change,
)
from rs3gw.storage.objects import check_conditions
from rs3gw.storage.protocols import (
    Judge,
    ObjectSink,
    ObjectStore,
    ReplicaStore,
    StampRow,
    StampTest,
    Verdict,
)
from rs3gw.storage.store import LocalStore
from rs3gw.storage.types import (
    BucketExists,
    BucketInfo,
    BucketNotEmpty,
    DeleteResult,
    Json,
    ListEntry,
    ListPage,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NoSuchVersion,
    ObjectMeta,
    PartInfo,
    PreconditionFailed,
    Segment,
    StorageError,
    Unavailable,
    Unsupported,
    UploadInfo,
    VersionEntry,
    VersionIsDeleteMarker,
    VersionPage,
    WriteResult,
)
from rs3gw.storage.versioned import OBJECT_KINDS, VERSION_KIND, split_item, version_item
from rs3gw.storage.versioning import NULL as NULL_VERSION
from rs3gw.storage.versioning import STATE_KIND as VERSIONING
from rs3gw.storage.versioning import parse_id as parse_version_id
from rs3gw.storage.versioning import valid_id as valid_version_id

__all__ = [
    "LOCK_MODES",
    "NULL_VERSION",
    "OBJECT_KINDS",
    "OBJECT_LOCK",
    "VERSIONING",
    "VERSION_KIND",
    "BucketExists",
    "BucketInfo",
    "BucketNotEmpty",
    "DeleteResult",
    "InvalidBucketState",
    "InvalidPart",
    "Json",
    "Judge",
    "ListEntry",
    "ListPage",
    "LocalStore",
    "LockConfig",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchUpload",
    "NoSuchVersion",
    "ObjectLockNotEnabled",
    "ObjectLocked",
    "ObjectMeta",
    "ObjectSink",
    "ObjectStore",
    "ObjectWriter",
    "PartInfo",
    "PreconditionFailed",
    "ReplicaStore",
    "Segment",
    "StampRow",
    "StampTest",
    "StorageError",
    "Unavailable",
    "Unsupported",
    "UploadInfo",
    "Verdict",
    "VersionEntry",
    "VersionIsDeleteMarker",
    "VersionPage",
    "WriteResult",
    "check_bucket_config",
    "check_conditions",
    "check_delete_lock",
    "check_retention_change",
    "fsync_dir",
    "parse_version_id",
    "savepoint_each",
    "split_item",
    "valid_version_id",
    "version_item",
    "write_transaction",
]
