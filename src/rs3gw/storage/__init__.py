"""Storage engine: the local store (SQLite metadata + data files) and its value types."""
from rs3gw.storage.datafiles import ObjectWriter
from rs3gw.storage.multipart import InvalidPart
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
    "BucketExists", "BucketInfo", "BucketNotEmpty", "InvalidPart", "Json", "ListEntry", "ListPage",
    "LocalStore", "NoSuchBucket", "NoSuchKey", "NoSuchUpload", "ObjectMeta", "ObjectWriter",
    "PartInfo", "PreconditionFailed", "Segment", "StorageError", "Unavailable", "UploadInfo", "WriteResult",
]
