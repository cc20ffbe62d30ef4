"""Multipart uploads: transaction bodies run by the writer thread, and read queries.

Parts are data files of their own; completing an upload makes them the object's segments in place
(no data copy), so a part's vid moves from the parts table into the object's meta in one transaction.
"""
from __future__ import annotations

import sqlite3
import uuid

from rs3gw.storage.metadb import (
    PART_COLUMNS,
    UPLOAD_COLUMNS,
    Txn,
    decode_part,
    decode_upload,
    encode_part_checksums,
    encode_upload,
)
from rs3gw.storage.objects import check_conditions, current_object, replace_object, require_bucket
from rs3gw.storage.types import (
    NoSuchUpload,
    ObjectMeta,
    PartInfo,
    Segment,
    StorageError,
    UploadInfo,
    WriteResult,
)


class InvalidPart(StorageError):
    """CompleteMultipartUpload listed a part that does not exist (any more)."""


# --- reads ------------------------------------------------------------------------------------------

def get_upload(conn: sqlite3.Connection, bucket: str, upload_id: str) -> UploadInfo:
    row = conn.execute(f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ? AND bucket = ?",
                       (upload_id, bucket)).fetchone()
    if row is None:
        raise NoSuchUpload(upload_id)
    return decode_upload(row)


def list_parts(conn: sqlite3.Connection, bucket: str, upload_id: str, part_marker: int,
               max_parts: int) -> tuple[list[PartInfo], bool]:
    get_upload(conn, bucket, upload_id)
    if max_parts <= 0:
        return [], False
    rows = conn.execute(
        f"SELECT {PART_COLUMNS} FROM parts WHERE upload_id = ? AND part_number > ?"
        " ORDER BY part_number LIMIT ?", (upload_id, part_marker, max_parts + 1)).fetchall()
    return [decode_part(r) for r in rows[:max_parts]], len(rows) > max_parts


# --- writes (run inside a Txn on the writer thread) -------------------------------------------------

def create_upload(txn: Txn, info: UploadInfo) -> UploadInfo:
    require_bucket(txn.conn, info.bucket)
    # A caller may name the upload (cluster mode puts the owner node in the id).
    info.upload_id = info.upload_id or uuid.uuid4().hex
    info.initiated = txn.now
    txn.conn.execute(f"INSERT INTO uploads({UPLOAD_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                     encode_upload(info))
    return info


def _require_upload(txn: Txn, bucket: str, upload_id: str) -> str:
    """The upload's key; NoSuchUpload if it is not (any more) an upload of ``bucket``."""
    row = txn.conn.execute("SELECT key FROM uploads WHERE upload_id = ? AND bucket = ?",
                           (upload_id, bucket)).fetchone()
    if row is None:
        raise NoSuchUpload(upload_id)
    key: str = row[0]
    return key


def put_part(txn: Txn, bucket: str, upload_id: str, part_number: int, data: WriteResult,
             checksums: dict[str, str]) -> PartInfo:
    _require_upload(txn, bucket, upload_id)
    old = txn.conn.execute("SELECT vid FROM parts WHERE upload_id = ? AND part_number = ?",
                           (upload_id, part_number)).fetchone()
    if old is not None and old[0] != data.vid:
        txn.drop_file(old[0])
    part = PartInfo(part_number=part_number, vid=data.vid, size=data.size, etag=data.md5_hex,
                    last_modified=txn.now, checksums=dict(checksums))
    txn.conn.execute(
        f"INSERT OR REPLACE INTO parts(upload_id, {PART_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
        (upload_id, part_number, part.vid, part.size, part.etag, part.last_modified,
         encode_part_checksums(part.checksums)))
    txn.commit_file(data.vid)
    return part


def _drop_upload(txn: Txn, upload_id: str, keep: set[str]) -> None:
    for (vid,) in txn.conn.execute("SELECT vid FROM parts WHERE upload_id = ?",
                                   (upload_id,)).fetchall():
        if vid not in keep:
            txn.drop_file(vid)
    txn.conn.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
    txn.conn.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))


def complete_upload(txn: Txn, bucket: str, upload_id: str, meta: ObjectMeta,
                    part_numbers: list[int], if_match: str | None,
                    if_none_match: bool, seq: bytes = b"") -> ObjectMeta:
    """``seq``: in cluster mode, where the version ``meta.version_id`` names sorts."""
    key = _require_upload(txn, bucket, upload_id)
    require_bucket(txn.conn, bucket)
    if len(set(part_numbers)) != len(part_numbers):
        raise InvalidPart("a part is listed twice")
    segments: list[Segment] = []
    for pn in part_numbers:
        row = txn.conn.execute(f"SELECT {PART_COLUMNS} FROM parts WHERE upload_id = ?"
                               " AND part_number = ?", (upload_id, pn)).fetchone()
        if row is None:
            raise InvalidPart(f"part {pn} of upload {upload_id} does not exist")
        part = decode_part(row)
        segments.append(Segment(part.vid, part.size, part.etag, dict(part.checksums)))
    previous = current_object(txn.conn, bucket, key)
    check_conditions(previous, if_match, if_none_match)
    meta.bucket = bucket
    meta.key = key
    meta.segments = segments
    meta.size = sum(s.size for s in segments)
    meta.parts_count = len(segments)
    if not meta.vid:
        meta.vid = uuid.uuid4().hex
    if not meta.last_modified:
        meta.last_modified = txn.now
    _drop_upload(txn, upload_id, keep={s.vid for s in segments})
    replace_object(txn, meta, previous, seq)
    return meta


def abort_upload(txn: Txn, bucket: str, upload_id: str) -> None:
    _require_upload(txn, bucket, upload_id)
    _drop_upload(txn, upload_id, keep=set())


def abort_bucket_uploads(txn: Txn, bucket: str) -> None:
    for (upload_id,) in txn.conn.execute("SELECT upload_id FROM uploads WHERE bucket = ?",
                                         (bucket,)).fetchall():
        _drop_upload(txn, upload_id, keep=set())
