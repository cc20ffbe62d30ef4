"""The storage boundary: what the S3 layer and the cluster may ask of a store.

``ObjectStore`` is the S3 layer's view: every operation an S3 handler runs. ``LocalStore`` (one
node, storage/store.py) and ``ClusterStore`` (cluster mode, rs3gw.cluster) both implement it, and
the handlers know nothing else (``Ctx.store``).

``ReplicaStore`` is the cluster's view of this node's own LocalStore: the ObjectStore operations a
replica serves, plus named operations for replicated versions. Version stamps are opaque bytes
here; the cluster encodes them. The one thing the cluster passes in is a ``Judge``: given the
stamp the item has *inside the write transaction*, it says whether the incoming payload wins and
which stamp to keep. Deciding in the transaction that applies is what makes a replayed, late or
reordered event harmless (nothing can change the stamp between the check and the write). A judge
is a pure function of the stamp: it never touches the database.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rs3gw.storage.types import (
    BucketInfo,
    DeleteResult,
    ListPage,
    ObjectMeta,
    PartInfo,
    UploadInfo,
    VersionPage,
    WriteResult,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a Judge returns: ``take_payload`` stores the incoming payload; ``stamp`` (if not None)
    is stored as the item's stamp afterwards, whether or not the payload was taken (a merged
    vector); ``tombstone`` marks that stamp as a delete's."""
    take_payload: bool
    stamp: bytes | None
    tombstone: bool = False


Judge = Callable[[bytes | None], Verdict]
StampTest = Callable[[bytes], bool]


@dataclass(frozen=True, slots=True)
class StampRow:
    """One stored stamp, as scan_stamps returns them in (bucket, key) order."""
    bucket: str
    key: str
    stamp: bytes
    tombstone: bool


class ObjectSink(Protocol):
    """What begin_write returns: the body goes in chunk by chunk; finish() makes a WriteResult
    (not visible to anyone until put_object/put_part commits it), abort() removes it."""

    vid: str

    @property
    def size(self) -> int: ...

    async def write(self, chunk: bytes | memoryview | bytearray) -> None: ...

    async def finish(self) -> WriteResult: ...

    async def abort(self) -> None: ...


class ObjectStore(Protocol):
    """Every operation an S3 handler runs."""

    # --- buckets ---
    async def create_bucket(self, name: str, owner_id: str, region: str,
                            configs: dict[str, bytes] | None = None) -> BucketInfo:
        """``configs``: configuration documents the bucket is created with, atomically (object
        lock and its versioning state)."""
        ...

    async def get_bucket(self, name: str) -> BucketInfo | None: ...

    async def list_buckets(self) -> list[BucketInfo]: ...

    async def delete_bucket(self, name: str) -> None: ...

    async def set_bucket_config(self, bucket: str, kind: str, value: bytes | None) -> None: ...

    # --- object data ---
    def begin_write(self, checksum_algos: Iterable[str] = (), *, inline: bool = True,
                    target: tuple[str, str, int | None] | None = None) -> ObjectSink: ...

    async def discard_write(self, data: WriteResult) -> None: ...

    async def copy_data(self, src: ObjectMeta, start: int, end_inclusive: int,
                        checksum_algos: Iterable[str] = ()) -> WriteResult: ...

    # --- objects ---
    async def put_object(self, meta: ObjectMeta, data: WriteResult | None, *,
                         if_match: str | None = None,
                         if_none_match: bool = False) -> ObjectMeta | None: ...

    async def get_object(self, bucket: str, key: str,
                         version_id: str | None = None) -> ObjectMeta | None:
        """That version, or the current object; a delete marker (``delete_marker`` set) when it
        is the version asked for or the key's newest version."""
        ...

    async def lookup_object(self, bucket: str, key: str, *, with_body: bool,
                            version_id: str | None = None,
                            ) -> tuple[BucketInfo | None, ObjectMeta | None, bytes | None]: ...

    def body_reader(self, body: bytes, start: int, end_inclusive: int,
                    chunk_bytes: int = 1 << 20) -> AsyncIterator[bytes]: ...

    async def open_reader(self, meta: ObjectMeta, start: int = 0,
                          end_inclusive: int | None = None,
                          chunk_bytes: int = 1 << 20) -> AsyncIterator[bytes]: ...

    async def delete_object(self, bucket: str, key: str, version_id: str | None = None, *,
                            owner_id: str = "", bypass_governance: bool = False) -> DeleteResult:
        """S3's DeleteObject (storage/versioning.py: a delete marker in a versioned bucket, the
        version named by ``version_id`` for good); ``owner_id`` owns a marker it makes. A version
        under object lock raises ObjectLocked (storage/objectlock.py); ``bypass_governance``: the
        caller may override a GOVERNANCE retention (the S3 layer checked its permission)."""
        ...

    async def delete_objects(self, bucket: str, items: list[tuple[str, str | None]], *,
                             owner_id: str = "", bypass_governance: bool = False,
                             ) -> list[DeleteResult]:
        """One DeleteResult per item; a version under object lock is ``locked``, not raised."""
        ...

    async def delete_if_unchanged(self, bucket: str, key: str, version_id: str, etag: str,
                                  last_modified: float, *, current: bool, owner_id: str = "",
                                  ) -> DeleteResult | None:
        """A deletion made only if the version named is still as it was listed: the same id
        ("null" for the null version), ETag ("" for a delete marker) and Last-Modified. With
        ``current`` it must still be the key's current version, and the deletion is DeleteObject
        without a version id (a delete marker where the bucket has versioning); without, that
        version goes for good. None, with nothing done, if the version is not there as named.
        Lifecycle uses it, so a version written after the scanner looked is never the one
        deleted, and a repeated expiration finds a delete marker current and adds no second."""
        ...

    async def set_object_tags(self, bucket: str, key: str, tags: dict[str, str],
                              version_id: str | None = None) -> ObjectMeta: ...

    # --- object lock (storage/objectlock.py; the bucket must have object lock) ---
    async def set_object_retention(self, bucket: str, key: str, version_id: str | None,
                                   mode: str | None, until_ms: int | None, *,
                                   bypass_governance: bool = False) -> ObjectMeta:
        """PutObjectRetention on that version (the current one without an id): ``mode`` until
        ``until_ms``, both None to remove it; ObjectLocked where the rules refuse the change."""
        ...

    async def set_object_legal_hold(self, bucket: str, key: str, version_id: str | None,
                                    on: bool) -> ObjectMeta: ...

    # --- listing ---
    async def list_objects(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                           after: str = "", max_keys: int = 1000) -> ListPage: ...

    async def list_object_versions(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                                   key_marker: str = "", version_id_marker: str = "",
                                   max_keys: int = 1000) -> VersionPage: ...

    async def list_uploads(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                           key_marker: str = "", upload_id_marker: str = "",
                           max_uploads: int = 1000,
                           ) -> tuple[list[UploadInfo], list[str], bool]: ...

    # --- multipart ---
    async def create_upload(self, info: UploadInfo) -> UploadInfo: ...

    async def get_upload(self, bucket: str, upload_id: str) -> UploadInfo: ...

    async def put_part(self, bucket: str, upload_id: str, part_number: int, data: WriteResult,
                       checksums: dict[str, str]) -> PartInfo: ...

    async def list_parts(self, bucket: str, upload_id: str, *, part_marker: int = 0,
                         max_parts: int = 1000) -> tuple[list[PartInfo], bool]: ...

    async def complete_upload(self, bucket: str, upload_id: str, meta: ObjectMeta,
                              part_numbers: list[int], *, if_match: str | None = None,
                              if_none_match: bool = False) -> ObjectMeta: ...

    async def abort_upload(self, bucket: str, upload_id: str) -> None: ...


class ReplicaStore(ObjectStore, Protocol):
    """This node's own store as the cluster uses it: ObjectStore plus replicated versions."""

    root: Path      # the storage root: the cluster keeps its replication queue there

    def read_write(self, data: WriteResult, chunk_bytes: int = 1 << 20) -> AsyncIterator[bytes]:
        """The bytes of a finished, not yet committed write (a part forwarded to its owner)."""
        ...

    # --- stamps ---
    async def item_stamp(self, kind: str, bucket: str, key: str = "") -> bytes | None: ...

    async def stored_version(self, bucket: str, key: str, version_id: str | None = None,
                             ) -> tuple[ObjectMeta | None, bytes | None]:
        """The key's current object and the stamp of what is current (a versioned key: its
        newest version's, a delete marker's included), from one snapshot; with ``version_id``
        that version (a delete marker too) and its own stamp."""
        ...

    async def stored_entry(self, bucket: str, key: str, version_id: str | None = None,
                           ) -> tuple[ObjectMeta | None, bytes | None, bytes]:
        """stored_version plus the version's seq (b"" for an object of an unversioned key)."""
        ...

    async def list_object_versions(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                                   key_marker: str = "", version_id_marker: str = "",
                                   max_keys: int = 1000,
                                   marker_order: bytes | None = None) -> VersionPage:
        """ObjectStore's, plus ``marker_order``: resume after that seq within ``key_marker``."""
        ...

    async def scan_stamps(self, kind: str, after: tuple[str, str] = ("", ""),
                          limit: int = 1000) -> list[StampRow]:
        """A cursor over stored stamps in (bucket, key) order (hand-off, anti-entropy digests)."""
        ...

    async def open_version(self, bucket: str, key: str, wanted: StampTest,
                           version_id: str | None = None,
                           ) -> tuple[ObjectMeta, AsyncIterator[bytes]] | None:
        """The current object's (or that version's) metadata and a reader over all its bytes, if
        its stamp passes ``wanted``; None if it is gone or holds another write."""
        ...

    # --- replicated versions (each runs ``judge`` inside its write transaction) ---
    async def apply_object(self, meta: ObjectMeta, data: tuple[WriteResult, ...],
                           judge: Judge, seq: bytes = b"") -> bool:
        """Store ``meta`` whose segments are exactly ``data`` (new writes of this node, in
        order; one inline segment at most). True if it was taken; else ``data`` is discarded.
        With ``meta.version_id`` it is that version of the key (a delete marker too), sorted at
        ``seq`` (storage/versioned.py)."""
        ...

    async def apply_tombstone(self, bucket: str, key: str, judge: Judge,
                              version_id: str | None = None) -> bool:
        """Remove the key's object (or that version of it) if the judge takes the delete (the
        stamp records it)."""
        ...

    async def apply_bucket(self, name: str, owner_id: str, region: str, created: float,
                           judge: Judge, configs: dict[str, bytes] | None = None) -> bool: ...

    async def apply_bucket_delete(self, name: str, judge: Judge) -> bool:
        """Drop the bucket with whatever this node still holds in it (the coordinator checked
        that it was empty on every reachable node)."""
        ...

    async def apply_bucket_config(self, bucket: str, kind: str, value: bytes | None,
                                  judge: Judge) -> bool: ...

    async def complete_upload_versioned(self, bucket: str, upload_id: str, meta: ObjectMeta,
                                        part_numbers: list[int], judge: Judge, seq: bytes = b"",
                                        ) -> ObjectMeta | None:
        """CompleteMultipartUpload as a stamped write: the committed object, or None if the
        judge refused it (the upload is then left as it was)."""
        ...

    async def forget_stamp(self, kind: str, bucket: str, key: str, only_if: StampTest) -> bool:
        """Drop an item's stamp if ``only_if(stamp)`` (tombstone garbage collection)."""
        ...
