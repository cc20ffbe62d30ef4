"""Version-checked writes for cluster mode: transaction bodies run by the writer thread.

Every replicated change (a local S3 write in cluster mode, or an event from another node) runs as
one write op: read the item's stamp (table item_versions), let the caller's ``decide`` say whether
the incoming payload wins, run the payload's body if so, and store the new stamp, all inside the
op's SAVEPOINT. Deciding in the same transaction that applies is what makes a replayed or reordered
event harmless: nothing can change the stamp between the check and the write.

Stamps are opaque bytes here; rs3gw.cluster encodes them (ObjectVersion). Storage never imports
the cluster package.

Items: kind "object" is a key of a bucket without versioning (one stamp per key). In a bucket with
a versioning state every version is an item of its own, kind "version", named
``version_item(key, version_id)``: versions are written once (re-applied only to change their tags
or lock), so concurrent writes to one key through different nodes are different items and all of
them survive; a delete of one version is that item's tombstone. A key's "object" stamp from before
the bucket had versioning becomes its null version's stamp (``_adopt``), once per key.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from rs3gw.storage import buckets, objects, versioning
from rs3gw.storage.metadb import Txn
from rs3gw.storage.multipart import abort_bucket_uploads, complete_upload
from rs3gw.storage.protocols import Judge, StampRow, StampTest
from rs3gw.storage.types import ObjectMeta


def get_stamp(conn: sqlite3.Connection, kind: str, bucket: str, key: str) -> bytes | None:
    row = conn.execute("SELECT stamp FROM item_versions WHERE kind = ? AND bucket = ? AND key = ?",
                       (kind, bucket, key)).fetchone()
    return None if row is None else bytes(row[0])


def set_stamp(txn: Txn, kind: str, bucket: str, key: str, stamp: bytes, tombstone: bool) -> None:
    txn.conn.execute("INSERT OR REPLACE INTO item_versions(kind, bucket, key, stamp, tombstone, "
                     "updated) VALUES (?,?,?,?,?,?)",
                     (kind, bucket, key, stamp, int(tombstone), txn.now))


def apply(txn: Txn, kind: str, bucket: str, key: str, judge: Judge,
          body: Callable[[Txn], Any] | None) -> tuple[bool, Any]:
    """(payload taken, body's result). An exception from ``body`` fails the whole op: the stamp
    is not stored either."""
    verdict = judge(get_stamp(txn.conn, kind, bucket, key))
    result = None
    if verdict.take_payload and body is not None:
        result = body(txn)
    if verdict.stamp is not None:
        set_stamp(txn, kind, bucket, key, verdict.stamp, verdict.tombstone)
    return verdict.take_payload, result


VERSION_KIND = "version"
# The kinds whose items are object data: scans that repair or hand off data read both.
OBJECT_KINDS = ("object", VERSION_KIND)


def version_item(key: str, version_id: str) -> str:
    """The item name of one version: the key, NUL, the id (ids hold no NUL, so rpartition splits
    it back whatever the key holds)."""
    return f"{key}\0{version_id}"


def split_item(item: str) -> tuple[str, str | None]:
    """(key, version id) of a version item; (item, None) for an object item."""
    key, sep, vid = item.rpartition("\0")
    return (key, vid) if sep else (item, None)


def _adopt(txn: Txn, bucket: str, key: str) -> None:
    """The key's object stamp (from before versioning) becomes its null version's."""
    old = get_stamp(txn.conn, "object", bucket, key)
    if old is None:
        return
    row = txn.conn.execute("SELECT tombstone FROM item_versions WHERE kind = 'object' AND "
                           "bucket = ? AND key = ?", (bucket, key)).fetchone()
    txn.conn.execute("DELETE FROM item_versions WHERE kind = 'object' AND bucket = ? AND key = ?",
                     (bucket, key))
    item = version_item(key, versioning.NULL)
    if get_stamp(txn.conn, VERSION_KIND, bucket, item) is None:
        set_stamp(txn, VERSION_KIND, bucket, item, old, bool(row[0]))


def _item_for(txn: Txn, bucket: str, key: str, version_id: str | None) -> tuple[str, str, str | None]:
    """(kind, item, version id) a replicated write of ``key`` applies to. A write without a version
    id to a bucket that has a versioning state (one made before this node heard of the state) is
    a write of the null version."""
    if version_id is None and versioning.state(txn.conn, bucket) is None:
        return "object", key, None
    vid = version_id or versioning.NULL
    _adopt(txn, bucket, key)
    return VERSION_KIND, version_item(key, vid), vid


def version_seq(meta: ObjectMeta, seq: bytes) -> bytes:
    """Where a replicated version sorts: the cluster's seq, or the one its id spells; an implicit
    null version by its write time (versioning.null_seq), the same on every replica."""
    assert meta.version_id is not None
    if seq:
        return seq
    return versioning.parse_id(meta.version_id) or versioning.null_seq(meta.last_modified)


def apply_put(txn: Txn, meta: ObjectMeta, inline: bytes | None, judge: Judge,
              seq: bytes = b"") -> tuple[bool, Any]:
    """A replicated write of ``meta`` (an object, or with ``meta.version_id`` one version of it:
    a delete marker too), judged against its item's stamp."""
    objects.require_bucket(txn.conn, meta.bucket)
    kind, item, vid = _item_for(txn, meta.bucket, meta.key, meta.version_id)
    if kind == "object":
        return apply(txn, kind, meta.bucket, item, judge,
                     lambda t: put_replica(t, meta, inline))
    meta.version_id = vid
    order = version_seq(meta, seq)

    def body(t: Txn) -> ObjectMeta | None:
        previous = objects.current_object(t.conn, meta.bucket, meta.key)
        versioning.store_version(t, meta, order, previous)
        _commit_data(t, meta, inline)
        return previous
    return apply(txn, kind, meta.bucket, item, judge, body)


def apply_delete(txn: Txn, bucket: str, key: str, version_id: str | None,
                 judge: Judge) -> tuple[bool, Any]:
    """A replicated tombstone: of the object, or of one version (which then goes with its data;
    the next one becomes current)."""
    kind, item, vid = _item_for(txn, bucket, key, version_id)
    if kind == "object":
        return apply(txn, kind, bucket, key, judge, lambda t: delete_replica(t, bucket, key))

    def body(t: Txn) -> Any:
        if t.conn.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone() is None:
            return None
        assert vid is not None
        current = objects.current_object(t.conn, bucket, key)
        return versioning.delete_version(t, bucket, key, vid, current, enforce_lock=False)
    return apply(txn, kind, bucket, item, judge, body)


def apply_complete(txn: Txn, bucket: str, key: str, upload_id: str, meta: ObjectMeta,
                   part_numbers: list[int], judge: Judge, seq: bytes = b"") -> tuple[bool, Any]:
    """CompleteMultipartUpload in cluster mode: the new object (or version) judged as any write."""
    kind, item, vid = _item_for(txn, bucket, key, meta.version_id)

    def body(t: Txn) -> ObjectMeta:
        if vid is not None:
            meta.version_id = vid
        return complete_upload(t, bucket, upload_id, meta, list(part_numbers), None, False,
                               seq=seq if vid is None else version_seq(meta, seq))
    return apply(txn, kind, bucket, item, judge, body)


def adopt_bucket(txn: Txn, bucket: str) -> None:
    """A bucket gets its versioning state: every key's object stamp becomes its null version's
    (the objects rows stay implicit null versions until their key's next versioned write)."""
    for (key,) in txn.conn.execute("SELECT key FROM item_versions WHERE kind = 'object' AND "
                                   "bucket = ?", (bucket,)).fetchall():
        _adopt(txn, bucket, key)


def forget_stamp(txn: Txn, kind: str, bucket: str, key: str, only_if: StampTest) -> bool:
    stamp = get_stamp(txn.conn, kind, bucket, key)
    if stamp is None or not only_if(stamp):
        return False
    txn.conn.execute("DELETE FROM item_versions WHERE kind = ? AND bucket = ? AND key = ?",
                     (kind, bucket, key))
    return True


def scan_stamps(conn: sqlite3.Connection, kind: str, after: tuple[str, str],
                limit: int) -> list[StampRow]:
    """Stamps in (bucket, key) order after ``after``: a cursor for hand-off and repair scans."""
    rows = conn.execute(
        "SELECT bucket, key, stamp, tombstone FROM item_versions WHERE kind = ? AND "
        "(bucket, key) > (?, ?) ORDER BY bucket, key LIMIT ?",
        (kind, after[0], after[1], limit)).fetchall()
    return [StampRow(b, k, bytes(s), bool(t)) for b, k, s, t in rows]


# --- payload bodies ---------------------------------------------------------------------------------

def put_replica(txn: Txn, meta: ObjectMeta, inline: bytes | None) -> ObjectMeta | None:
    """Store ``meta`` whose segments are all new: tmp files (claimed by the op) or, for a single
    inline segment, ``inline`` itself."""
    objects.require_bucket(txn.conn, meta.bucket)
    previous = objects.current_object(txn.conn, meta.bucket, meta.key)
    objects.replace_object(txn, meta, previous)
    _commit_data(txn, meta, inline)
    return previous


def _commit_data(txn: Txn, meta: ObjectMeta, inline: bytes | None) -> None:
    for seg in meta.segments:
        if seg.inline:
            assert inline is not None and len(meta.segments) == 1
            txn.put_inline(seg.vid, inline)
        else:
            txn.commit_file(seg.vid)


def delete_replica(txn: Txn, bucket: str, key: str) -> ObjectMeta | None:
    """A tombstone's payload: the object goes if it is there (the stamp records the delete)."""
    return objects.delete_object(txn, bucket, key)


def set_bucket_config_replica(txn: Txn, bucket: str, kind: str, value: bytes | None) -> None:
    if kind == versioning.STATE_KIND:
        if value is None:
            return          # a bucket's versioning is never removed, only suspended
        adopt_bucket(txn, bucket)
    buckets.set_bucket_config(txn, bucket, kind, value, check=False)


def create_bucket_replica(txn: Txn, name: str, owner_id: str, region: str, created: float,
                          configs: dict[str, bytes] | None = None) -> None:
    txn.conn.execute("INSERT OR REPLACE INTO buckets(name, owner_id, region, created) "
                     "VALUES (?,?,?,?)", (name, owner_id, region, created))
    for kind, value in (configs or {}).items():
        buckets.set_bucket_config(txn, name, kind, value, check=False)


def delete_bucket_replica(txn: Txn, name: str) -> None:
    """The coordinator checked the bucket was empty on every reachable node; whatever this node
    still holds for it (a copy that raced the delete) goes with it."""
    for (key,) in txn.conn.execute("SELECT key FROM objects WHERE bucket = ?", (name,)).fetchall():
        objects.delete_object(txn, name, key)
    for (key, vid) in txn.conn.execute("SELECT key, version_id FROM versions WHERE bucket = ?",
                                       (name,)).fetchall():
        versioning.delete_version(txn, name, key, vid, objects.current_object(txn.conn, name, key),
                                  enforce_lock=False)
    abort_bucket_uploads(txn, name)
    txn.conn.execute("DELETE FROM bucket_configs WHERE bucket = ?", (name,))
    txn.conn.execute("DELETE FROM buckets WHERE name = ?", (name,))
    txn.conn.execute("DELETE FROM item_versions WHERE kind IN ('object', ?) AND bucket = ?",
                     (VERSION_KIND, name))
