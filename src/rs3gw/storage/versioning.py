"""Bucket versioning: the versions table, delete markers and the null version (S3's rules).

A bucket has no versioning state until PutBucketVersioning; then it is Enabled or Suspended
(bucket_configs kind "versioning"), never unversioned again. A key's current version, unless it
is a delete marker, is its ``objects`` row (with ``version_id`` and ``seq`` set); every other
version, and a current delete marker, is a row of ``versions``, newest first (``seq``
descending). So a PUT of a new key writes one row, as in an unversioned bucket; a PUT over a
current version moves that one into ``versions`` (``_demote``); GET and LIST read one row. When
the objects row goes (deleted by id), the newest remaining version comes back into it unless it
is a marker (``refresh_current``). Invariant: an objects row, when there is one, sorts above
every row of its key in ``versions``.

Keys written before the bucket had a state are objects rows without a version id: their implicit
null version, sorted by its write time (``null_seq``) when it is demoted.

- Enabled: a PUT adds a version with a new id; DELETE without a version id adds a delete marker.
- Suspended: a PUT or a DELETE replaces the key's null version (the data of the one it replaces
  goes) with a new null version or a null delete marker; other versions stay.
- DELETE with a version id removes that version for good (and its data); if it was the newest,
  the next one becomes current (or nothing is, if that one is a delete marker).

Data: in a versioned bucket no two versions share data files (CopyObject onto itself copies the
bytes), so a version's segments go exactly when its row goes. The objects row and the versions
row of the newest version name the same segments; only the versions row owns them.

Version ids: ``seq`` is 16 bytes, 8 of time order (milliseconds << 16 | a counter, the layout of
the cluster's hybrid clock) and 8 random; the id is its hex spelling (32 characters), so ids sort
as their versions do and an id names its row by primary key (only "null" is found by a scan of
its key's few rows). Within a key a new version's seq is always above the key's newest.
"""
from __future__ import annotations

import os
import re
import sqlite3
import threading
from typing import Any

from rs3gw.storage import objectlock
from rs3gw.storage.metadb import (
    OBJECT_COLUMNS,
    OBJECT_INSERT,
    Txn,
    decode_object,
    encode_object,
)
from rs3gw.storage.types import DeleteResult, ObjectMeta, StorageError

NULL = "null"
STATE_KIND = "versioning"
STATES = ("Enabled", "Suspended")
SEQ_BYTES = 16
_ID_RE = re.compile(r"[0-9a-f]{32}")
VERSION_COLUMNS = f"version_id, marker, seq, {OBJECT_COLUMNS}"

_clock_lock = threading.Lock()
_last_order = 0


# --- ids ------------------------------------------------------------------------------------------

def encode_id(seq: bytes) -> str:
    return seq.hex()


def parse_id(version_id: str) -> bytes | None:
    """The seq of a version id, or None if it is not one this store makes ("null" included)."""
    if not _ID_RE.fullmatch(version_id):
        return None
    return bytes.fromhex(version_id)


def _by_id(bucket: str, key: str, version_id: str) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause (and its parameters) naming one version row."""
    if version_id == NULL:
        return "bucket = ? AND key = ? AND version_id = ?", (bucket, key, NULL)
    # A malformed id names no row (seq is never empty).
    return "bucket = ? AND key = ? AND seq = ?", (bucket, key, parse_id(version_id) or b"")


def valid_id(version_id: str) -> bool:
    return version_id == NULL or parse_id(version_id) is not None


def _order(ms: int) -> int:
    """A time order above every one this process handed out: ms << 16 | counter."""
    global _last_order
    with _clock_lock:
        _last_order = max(ms << 16, _last_order + 1)
        return _last_order


def null_seq(last_modified: float) -> bytes:
    """Where an implicit null version sorts among the key's versions: by its write time."""
    return (int(last_modified * 1000) << 16).to_bytes(8, "big") + bytes(8)


def _next_seq(conn: sqlite3.Connection, bucket: str, key: str, now: float,
              current: ObjectMeta | None) -> bytes:
    """A seq above the key's newest version's: the current object's (it sorts above every row of
    ``versions``), else the table's."""
    top = current_seq(current) if current is not None else None
    if top is None:
        row = conn.execute("SELECT MAX(seq) FROM versions WHERE bucket = ? AND key = ?",
                           (bucket, key)).fetchone()
        top = row[0]
    order = _order(int(now * 1000))
    if top is not None:
        order = max(order, int.from_bytes(top[:8], "big") + 1)
    return order.to_bytes(8, "big") + os.urandom(8)


# --- reads ----------------------------------------------------------------------------------------

def state(conn: sqlite3.Connection, bucket: str) -> str | None:
    row = conn.execute("SELECT value FROM bucket_configs WHERE bucket = ? AND kind = ?",
                       (bucket, STATE_KIND)).fetchone()
    return None if row is None else bytes(row[0]).decode()


def _decode_row(row: tuple[Any, ...]) -> ObjectMeta:
    version_id, marker, seq = row[0], row[1], row[2]
    meta = decode_object(row[3:])
    meta.version_id = version_id
    meta.delete_marker = bool(marker)
    meta.seq = bytes(seq)
    return meta


def current_seq(meta: ObjectMeta) -> bytes:
    """Where a current object sorts: its seq, or (the implicit null version) its write time."""
    return meta.seq if meta.seq is not None else null_seq(meta.last_modified)


def _current(conn: sqlite3.Connection, bucket: str, key: str) -> ObjectMeta | None:
    row = conn.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ?",
                       (bucket, key)).fetchone()
    return None if row is None else decode_object(row)


def _is(meta: ObjectMeta | None, version_id: str) -> bool:
    return meta is not None and (meta.version_id or NULL) == version_id


def _same(found: ObjectMeta, current: ObjectMeta | None) -> bool:
    """``found`` (from get_version) is the current object, not a row of versions."""
    return current is not None and _is(current, found.version_id or NULL) and \
        found.seq == current.seq


def get_version(conn: sqlite3.Connection, bucket: str, key: str,
                version_id: str) -> ObjectMeta | None:
    """That version of the key (a delete marker included), or None: the current object (the
    implicit null version too) or a row of versions."""
    cur = _current(conn, bucket, key)
    if _is(cur, version_id):
        return cur
    return _stored(conn, bucket, key, version_id)


def _stored(conn: sqlite3.Connection, bucket: str, key: str, version_id: str) -> ObjectMeta | None:
    where, params = _by_id(bucket, key, version_id)
    row = conn.execute(f"SELECT {VERSION_COLUMNS} FROM versions WHERE {where}", params).fetchone()
    return None if row is None else _decode_row(row)


def seq_of(conn: sqlite3.Connection, bucket: str, key: str, version_id: str) -> bytes | None:
    found = get_version(conn, bucket, key, version_id)
    return None if found is None else current_seq(found)


def _top_row(conn: sqlite3.Connection, bucket: str, key: str) -> ObjectMeta | None:
    row = conn.execute(f"SELECT {VERSION_COLUMNS} FROM versions WHERE bucket = ? AND key = ? "
                       "ORDER BY seq DESC LIMIT 1", (bucket, key)).fetchone()
    return None if row is None else _decode_row(row)


def newest(conn: sqlite3.Connection, bucket: str, key: str) -> ObjectMeta | None:
    """The key's newest version (a delete marker included), or None."""
    return _current(conn, bucket, key) or _top_row(conn, bucket, key)


def has_versions(conn: sqlite3.Connection, bucket: str) -> bool:
    return conn.execute("SELECT 1 FROM versions WHERE bucket = ? LIMIT 1",
                        (bucket,)).fetchone() is not None


# --- writes (in a Txn on the writer thread) -------------------------------------------------------

def _insert(txn: Txn, meta: ObjectMeta, seq: bytes) -> None:
    """The version's row in versions."""
    assert meta.version_id is not None
    meta.seq = seq
    row = encode_object(meta)
    txn.conn.execute(
        "INSERT INTO versions(bucket, key, seq, version_id, marker, vid, size, etag, "
        "last_modified, content_type, meta, owner_id, algos) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (row[0], row[1], seq, meta.version_id, int(meta.delete_marker), *row[2:10]))


def _set_current(txn: Txn, meta: ObjectMeta, seq: bytes) -> None:
    """``meta`` becomes the key's objects row (the caller moved or dropped the one before)."""
    assert meta.version_id is not None and not meta.delete_marker
    meta.seq = seq
    txn.conn.execute(OBJECT_INSERT, encode_object(meta))


def _demote(txn: Txn, current: ObjectMeta | None) -> None:
    """The current object stops being current: it becomes a row of versions (its data stays
    its own); the caller replaces or deletes the objects row."""
    if current is not None:
        if current.version_id is None:
            current.version_id = NULL           # the implicit null version, named at last
        _insert(txn, current, current_seq(current))


def _drop_data(txn: Txn, meta: ObjectMeta) -> None:
    for seg in meta.segments:
        if seg.inline:
            txn.drop_inline(seg.vid)
        else:
            txn.drop_file(seg.vid)


def _remove_null(txn: Txn, bucket: str, key: str, current: ObjectMeta | None) -> bool:
    """Suspended writes replace the null version: it goes with its data. True if that was the
    current object (the caller then replaces or deletes the objects row)."""
    if _is(current, NULL):
        assert current is not None
        _drop_data(txn, current)
        return True
    old = _stored(txn.conn, bucket, key, NULL)
    if old is not None:
        where, params = _by_id(bucket, key, NULL)
        txn.conn.execute(f"DELETE FROM versions WHERE {where}", params)
        if not old.delete_marker:
            _drop_data(txn, old)
    return False


def _new_id(txn: Txn, mode: str, bucket: str, key: str,
            current: ObjectMeta | None) -> tuple[str, bytes]:
    seq = _next_seq(txn.conn, bucket, key, txn.now, current)
    return (encode_id(seq) if mode == "Enabled" else NULL), seq


def put_current(txn: Txn, meta: ObjectMeta, current: ObjectMeta | None, mode: str) -> None:
    """``meta`` (its data already named by its segments) becomes the key's newest version. The
    caller commits its new data; the version it supersedes keeps its own."""
    bucket, key = meta.bucket, meta.key
    version_id, seq = _new_id(txn, mode, bucket, key, current)
    if not (mode == "Suspended" and _remove_null(txn, bucket, key, current)):
        _demote(txn, current)
    meta.version_id = version_id
    meta.delete_marker = False
    _set_current(txn, meta, seq)


def delete_current(txn: Txn, bucket: str, key: str, current: ObjectMeta | None, mode: str,
                   owner_id: str) -> DeleteResult:
    """DELETE without a version id: a delete marker becomes the newest version."""
    version_id, seq = _new_id(txn, mode, bucket, key, current)
    if not (mode == "Suspended" and _remove_null(txn, bucket, key, current)):
        _demote(txn, current)
    marker = ObjectMeta(bucket=bucket, key=key, vid="", size=0, etag="", last_modified=txn.now,
                        owner_id=owner_id, version_id=version_id, delete_marker=True)
    _insert(txn, marker, seq)
    txn.conn.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))
    return DeleteResult(version_id, True)


def delete_version(txn: Txn, bucket: str, key: str, version_id: str,
                   current: ObjectMeta | None, *, bypass_governance: bool = False,
                   enforce_lock: bool = True) -> DeleteResult:
    """DELETE with a version id: that version goes for good, with its data. Deleting a version
    the key does not have succeeds and changes nothing (as S3 answers it). A version under
    object lock refuses (objectlock.ObjectLocked) before anything changed."""
    gone = get_version(txn.conn, bucket, key, version_id)
    if gone is not None and enforce_lock:
        # (A replica applying the cluster's delete does not judge again: its coordinator did,
        # and a replica that refused would keep a version every other node dropped.)
        objectlock.check_delete(gone, objectlock.to_ms(txn.now), bypass_governance)
    if gone is None:
        return DeleteResult(version_id, False)
    _remove(txn, gone, current)
    refresh_current(txn, bucket, key)
    return DeleteResult(version_id, gone.delete_marker)


def _remove(txn: Txn, gone: ObjectMeta, current: ObjectMeta | None) -> None:
    """A version goes for good, with its data: the objects row if it is the current one."""
    if _same(gone, current):
        txn.conn.execute("DELETE FROM objects WHERE bucket = ? AND key = ?",
                         (gone.bucket, gone.key))
    else:
        assert gone.version_id is not None
        where, params = _by_id(gone.bucket, gone.key, gone.version_id)
        txn.conn.execute(f"DELETE FROM versions WHERE {where}", params)
    if not gone.delete_marker:
        _drop_data(txn, gone)


def set_tags(txn: Txn, bucket: str, key: str, version_id: str,
             tags: dict[str, str]) -> ObjectMeta | None:
    """Replace one version's tags."""
    meta = get_version(txn.conn, bucket, key, version_id)
    if meta is None or meta.delete_marker:
        return meta
    meta.tags = dict(tags)
    rewrite(txn, meta)
    return meta


def rewrite(txn: Txn, meta: ObjectMeta) -> None:
    """Store a version's changed metadata (tags, lock) where it lives; its data stays."""
    cur = _current(txn.conn, meta.bucket, meta.key)
    if _is(cur, meta.version_id or NULL):
        txn.conn.execute(OBJECT_INSERT, encode_object(meta))
        return
    assert meta.version_id is not None
    row = encode_object(meta)
    where, params = _by_id(meta.bucket, meta.key, meta.version_id)
    txn.conn.execute(f"UPDATE versions SET meta = ? WHERE {where}", (row[7], *params))


# --- versions the cluster names (storage/versioned.py) ----------------------------------------------

def store_version(txn: Txn, meta: ObjectMeta, seq: bytes, current: ObjectMeta | None) -> None:
    """Store ``meta`` as the version it names (``meta.version_id``, set by the cluster) at ``seq``
    (the cluster's order, the same on every replica), replacing a stored version of that id (a
    re-applied version, or Suspended's new null) and its data. The key's current object is then
    whichever version sorts newest: a version that arrives late never hides a newer one. The
    caller commits the new data."""
    assert meta.version_id is not None
    bucket, key = meta.bucket, meta.key
    old = get_version(txn.conn, bucket, key, meta.version_id)
    if old is not None:
        _remove(txn, old, current)
        if _same(old, current):
            current = None
    if current is not None and current_seq(current) > seq:
        _insert(txn, meta, seq)             # a version older than the current one
    else:
        _demote(txn, current)
        if meta.delete_marker:
            txn.conn.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))
            _insert(txn, meta, seq)
        else:
            _set_current(txn, meta, seq)
    refresh_current(txn, bucket, key)


def refresh_current(txn: Txn, bucket: str, key: str) -> None:
    """Keep the invariant: with no objects row, the newest version comes back into it unless it
    is a delete marker."""
    if _current(txn.conn, bucket, key) is not None:
        return
    top = _top_row(txn.conn, bucket, key)
    if top is not None and not top.delete_marker:
        where, params = _by_id(bucket, key, top.version_id or NULL)
        txn.conn.execute(f"DELETE FROM versions WHERE {where}", params)
        assert top.seq is not None
        _set_current(txn, top, top.seq)


def set_state(txn: Txn, bucket: str, mode: str) -> None:
    if mode not in STATES:
        raise StorageError(f"versioning state must be one of {STATES}, not {mode!r}")
    txn.conn.execute("INSERT OR REPLACE INTO bucket_configs(bucket, kind, value) VALUES (?,?,?)",
                     (bucket, STATE_KIND, mode.encode()))
