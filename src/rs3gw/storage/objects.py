"""Objects: transaction bodies run by the writer thread, and read queries (buckets: buckets.py).

Garbage rule: when an object row is replaced or deleted, each data file of the old version that the
new version does not list is dropped (gc'd) in the same transaction. Data files are only ever shared
between two versions of the same key (metadata-only replace), so that rule is enough. Inline bodies
(Segment.inline, table inline_data) follow the same rule, except that dropping one is a DELETE in
that very transaction: nothing is left for gc, and no file is involved either way.
"""
from __future__ import annotations

import sqlite3

from rs3gw.storage import objectlock, versioning
from rs3gw.storage.metadb import OBJECT_COLUMNS, OBJECT_INSERT, Txn, decode_object, encode_object
from rs3gw.storage.types import (
    DeleteResult,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
    ObjectMeta,
    PreconditionFailed,
    StorageError,
    VersionIsDeleteMarker,
)


def require_bucket(conn: sqlite3.Connection, bucket: str) -> None:
    if conn.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone() is None:
        raise NoSuchBucket(bucket)


# --- objects ----------------------------------------------------------------------------------------

def current_object(conn: sqlite3.Connection, bucket: str, key: str) -> ObjectMeta | None:
    row = conn.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ?",
                       (bucket, key)).fetchone()
    return None if row is None else decode_object(row)


def current_object_with_body(conn: sqlite3.Connection, bucket: str, key: str,
                             ) -> tuple[ObjectMeta | None, bytes | None]:
    """The key's object and, when it is a whole inline body stored under the object's own vid
    (every local single-part PUT), that body: one statement for GetObject's usual case."""
    row = conn.execute(
        f"SELECT {', '.join('o.' + c.strip() for c in OBJECT_COLUMNS.split(','))}, i.data "
        "FROM objects o LEFT JOIN inline_data i ON i.vid = o.vid "
        "WHERE o.bucket = ? AND o.key = ?", (bucket, key)).fetchone()
    if row is None:
        return None, None
    meta = decode_object(row[:-1])
    body: bytes | None = row[-1]
    segs = meta.segments
    if body is not None and not (len(segs) == 1 and segs[0].inline and segs[0].vid == meta.vid
                                 and len(body) == meta.size):
        body = None
    return meta, body


def _unquote(etag: str) -> str:
    etag = etag.strip()
    etag = etag.removeprefix("W/")
    if len(etag) >= 2 and etag[0] == etag[-1] == '"':
        etag = etag[1:-1]
    return etag


def check_conditions(current: ObjectMeta | None, if_match: str | None,
                     if_none_match: bool) -> None:
    if if_match is not None:
        if current is None:
            raise NoSuchKey("If-Match on a key that does not exist")
        wanted = _unquote(if_match)
        if wanted != "*" and wanted != current.etag:
            raise PreconditionFailed(f"ETag {current.etag} does not match {wanted}")
    if if_none_match and current is not None:
        raise PreconditionFailed("If-None-Match: the key exists")


def read_inline(conn: sqlite3.Connection, vid: str, offset: int, length: int) -> bytes | None:
    """Bytes [offset, offset+length) of an inline body; None if it is gone (overwritten, deleted)."""
    row = conn.execute("SELECT substr(data, ?, ?) FROM inline_data WHERE vid = ?",
                       (offset + 1, length, vid)).fetchone()
    if row is None:
        return None
    data: bytes = row[0]
    if len(data) != length:
        raise StorageError(f"inline data {vid} is shorter than its metadata")
    return data


def _drop_unreferenced(txn: Txn, old: ObjectMeta, new: ObjectMeta | None) -> None:
    keep = {s.vid for s in new.segments} if new is not None else set()
    for seg in old.segments:
        if seg.vid not in keep:
            if seg.inline:
                txn.drop_inline(seg.vid)
            else:
                txn.drop_file(seg.vid)
            keep.add(seg.vid)


def _mark_inline(conn: sqlite3.Connection, meta: ObjectMeta, previous: ObjectMeta | None) -> None:
    """Metadata-only replace: where each listed segment lives is what the store says, whatever the
    caller's Segment objects claim (a lost flag would make the data unreadable, or leak it)."""
    known = {s.vid: s.inline for s in previous.segments} if previous is not None else {}
    for seg in meta.segments:
        inline = known.get(seg.vid)
        if inline is None:
            inline = conn.execute("SELECT 1 FROM inline_data WHERE vid = ?",
                                  (seg.vid,)).fetchone() is not None
        seg.inline = inline


def replace_object(txn: Txn, meta: ObjectMeta, previous: ObjectMeta | None,
                   seq: bytes = b"") -> None:
    """``meta`` becomes the key's current object. Unversioned, what ``previous`` no longer shares
    with it goes; in a bucket with a versioning state ``previous`` stays a version of its own.
    ``seq``: the cluster named the version (``meta.version_id``) and where it sorts."""
    if seq:
        versioning.store_version(txn, meta, seq, previous)
        return
    mode = versioning.state(txn.conn, meta.bucket)
    if mode is not None:
        versioning.put_current(txn, meta, previous, mode)
        return
    txn.conn.execute(OBJECT_INSERT, encode_object(meta))
    if previous is not None:
        _drop_unreferenced(txn, previous, meta)


def put_object(txn: Txn, meta: ObjectMeta, new_vid: str | None, if_match: str | None,
               if_none_match: bool, inline: bytes | None = None) -> ObjectMeta | None:
    """``new_vid``: the freshly written data this version brings (None: metadata-only): the tmp
    file of that name, or with ``inline`` the body itself, stored in this transaction."""
    require_bucket(txn.conn, meta.bucket)
    previous = current_object(txn.conn, meta.bucket, meta.key)
    check_conditions(previous, if_match, if_none_match)
    if not meta.last_modified:
        meta.last_modified = txn.now
    if new_vid is None:
        if versioning.state(txn.conn, meta.bucket) is not None:
            # Versions never share data files (storage/versioning.py): copies bring their own.
            raise StorageError("a metadata-only rewrite cannot make a version of its own")
        _mark_inline(txn.conn, meta, previous)
    replace_object(txn, meta, previous)
    if new_vid is not None:
        if inline is not None:
            txn.put_inline(new_vid, inline)
        else:
            txn.commit_file(new_vid)
    return previous


def delete_object(txn: Txn, bucket: str, key: str) -> ObjectMeta | None:
    require_bucket(txn.conn, bucket)
    previous = current_object(txn.conn, bucket, key)
    if previous is None:
        return None
    txn.conn.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))
    _drop_unreferenced(txn, previous, None)
    return previous


def delete_objects(txn: Txn, bucket: str, keys: list[str]) -> list[ObjectMeta | None]:
    require_bucket(txn.conn, bucket)
    return [delete_object(txn, bucket, key) for key in keys]


def delete_key(txn: Txn, bucket: str, key: str, version_id: str | None,
               owner_id: str, bypass_governance: bool = False) -> DeleteResult:
    """S3's DeleteObject: with a version id that version goes (unless object lock keeps it:
    storage/objectlock.py); without one the object goes (unversioned) or a delete marker is
    added (storage/versioning.py)."""
    require_bucket(txn.conn, bucket)
    current = current_object(txn.conn, bucket, key)
    if version_id is not None:
        return versioning.delete_version(txn, bucket, key, version_id, current,
                                         bypass_governance=bypass_governance)
    mode = versioning.state(txn.conn, bucket)
    if mode is None:
        delete_object(txn, bucket, key)
        return DeleteResult()
    return versioning.delete_current(txn, bucket, key, current, mode, owner_id)


def delete_if_unchanged(txn: Txn, bucket: str, key: str, version_id: str, etag: str,
                        last_modified: float, current: bool, owner_id: str) -> DeleteResult | None:
    """delete_key, if the version named is still as listed (judged in this transaction: nothing
    comes between the check and the delete). ``current``: it must be the current version, and
    goes as DeleteObject without a version id does; else by its id."""
    require_bucket(txn.conn, bucket)
    now = current_object(txn.conn, bucket, key)
    found = now if current else versioning.get_version(txn.conn, bucket, key, version_id)
    if (found is None or (found.version_id or versioning.NULL) != version_id
            or found.etag != etag or found.last_modified != last_modified):
        return None
    if not current:
        return versioning.delete_version(txn, bucket, key, version_id, now)
    mode = versioning.state(txn.conn, bucket)
    if mode is None:
        delete_object(txn, bucket, key)
        return DeleteResult()
    return versioning.delete_current(txn, bucket, key, now, mode, owner_id)


def delete_keys(txn: Txn, bucket: str, items: list[tuple[str, str | None]],
                owner_id: str, bypass_governance: bool = False) -> list[DeleteResult]:
    """DeleteObjects: a locked version is refused alone (``DeleteResult.locked``); it changed
    nothing before refusing (versioning.delete_version checks first)."""
    require_bucket(txn.conn, bucket)
    out = []
    for key, vid in items:
        try:
            out.append(delete_key(txn, bucket, key, vid, owner_id, bypass_governance))
        except objectlock.ObjectLocked:
            out.append(DeleteResult(vid, locked=True))
    return out


def object_or_marker(conn: sqlite3.Connection, bucket: str, key: str,
                     version_id: str | None) -> ObjectMeta | None:
    """That version (delete markers included), or the current object, or, when the key's newest
    version is a delete marker, that marker."""
    if version_id is not None:
        return versioning.get_version(conn, bucket, key, version_id)
    meta = current_object(conn, bucket, key)
    if meta is None:
        top = versioning.newest(conn, bucket, key)
        if top is not None and top.delete_marker:
            return top
    return meta


def set_object_tags(txn: Txn, bucket: str, key: str, tags: dict[str, str],
                    version_id: str | None = None) -> ObjectMeta:
    require_bucket(txn.conn, bucket)
    if version_id is not None:
        found = versioning.set_tags(txn, bucket, key, version_id, tags)
        if found is None:
            raise NoSuchVersion(version_id)
        if found.delete_marker:
            raise VersionIsDeleteMarker(version_id)
        return found
    meta = current_object(txn.conn, bucket, key)
    if meta is None:
        raise NoSuchKey(key)
    if meta.version_id is not None:
        return versioning.set_tags(txn, bucket, key, meta.version_id, tags) or meta
    meta.tags = dict(tags)
    txn.conn.execute(OBJECT_INSERT, encode_object(meta))
    return meta


# --- object lock (the rules: storage/objectlock.py) ------------------------------------------------

def _lockable_version(txn: Txn, bucket: str, key: str, version_id: str | None) -> ObjectMeta:
    """The version a retention or legal hold request names (the current one without an id), in
    a bucket with object lock."""
    require_bucket(txn.conn, bucket)
    if txn.conn.execute("SELECT 1 FROM bucket_configs WHERE bucket = ? AND kind = ?",
                        (bucket, objectlock.KIND)).fetchone() is None:
        raise objectlock.ObjectLockNotEnabled(bucket)
    if version_id is None:
        meta = current_object(txn.conn, bucket, key)
        if meta is None:
            raise NoSuchKey(key)
        return meta
    found = versioning.get_version(txn.conn, bucket, key, version_id)
    if found is None:
        raise NoSuchVersion(version_id)
    if found.delete_marker:
        raise VersionIsDeleteMarker(version_id)
    return found


def _rewrite_version(txn: Txn, meta: ObjectMeta) -> None:
    """Store a version's changed metadata (its data stays), where it lives."""
    if meta.version_id is None:                   # the implicit null version: only objects
        txn.conn.execute(OBJECT_INSERT, encode_object(meta))
        return
    versioning.rewrite(txn, meta)


def set_object_retention(txn: Txn, bucket: str, key: str, version_id: str | None,
                         mode: str | None, until_ms: int | None,
                         bypass_governance: bool) -> ObjectMeta:
    """PutObjectRetention: the version's retention becomes ``mode`` until ``until_ms`` (both
    None: removed), if objectlock's rules allow it now."""
    meta = _lockable_version(txn, bucket, key, version_id)
    objectlock.check_retention_change(meta, mode, until_ms, objectlock.to_ms(txn.now),
                                      bypass_governance)
    meta.lock_mode, meta.lock_until_ms = mode, until_ms
    _rewrite_version(txn, meta)
    return meta


def set_object_legal_hold(txn: Txn, bucket: str, key: str, version_id: str | None,
                          on: bool) -> ObjectMeta:
    meta = _lockable_version(txn, bucket, key, version_id)
    meta.legal_hold = on
    _rewrite_version(txn, meta)
    return meta
