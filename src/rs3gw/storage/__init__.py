"""Storage engine: the embedded local store (SQLite metadata + data files) and its boundary.

What it offers (everything another package may import; the submodules are the engine's own):
- ``ObjectStore``: the protocol the S3 handlers use; ``ReplicaStore``: what the cluster asks of a
  node's own store (named operations on stamped versions, judged by a ``Judge`` -> ``Verdict``).
- ``LocalStore``: the engine, implementing both.
- The value types (``ObjectMeta``, ``WriteResult``, ``BucketInfo``, ...) and errors
  (``StorageError`` and its subclasses), which the S3 layer maps to S3 error codes.
- ``check_conditions``: the If-Match / If-None-Match rule, for stores that judge a conditional
  write against a version they found elsewhere (the cluster's newest copy).
- ``write_transaction``, ``savepoint_each``, ``fsync_dir``: the durability helpers, for other
  SQLite databases under the storage root (the cluster's replication queue).
"""
from rs3gw.storage.datafiles import ObjectWriter, fsync_dir
from rs3gw.storage.metadb import savepoint_each, write_transaction
from rs3gw.storage.multipart import InvalidPart
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
    Json,
    ListEntry,
    ListPage,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    ObjectMeta,
    PartInfo,
    PreconditionFailed,
    Segment,
    StorageError,
    Unavailable,
    UploadInfo,
    WriteResult,
)

__all__ = [
    "BucketExists", "BucketInfo", "BucketNotEmpty", "InvalidPart", "Json", "Judge", "ListEntry",
    "ListPage", "LocalStore", "NoSuchBucket", "NoSuchKey", "NoSuchUpload", "ObjectMeta",
    "ObjectSink", "ObjectStore", "ObjectWriter", "PartInfo", "PreconditionFailed", "ReplicaStore",
    "Segment", "StampRow", "StampTest", "StorageError", "Unavailable", "UploadInfo", "Verdict",
    "WriteResult", "check_conditions", "fsync_dir", "savepoint_each", "write_transaction",
]
