"""Version-checked writes for cluster mode: transaction bodies run by the writer thread.

Every replicated change (a local S3 write in cluster mode, or an event from another node) runs as
one write op: read the item's stamp (table item_versions), let the caller's ``decide`` say whether
the incoming payload wins, run the payload's body if so, and store the new stamp, all inside the
op's SAVEPOINT. Deciding in the same transaction that applies is what makes a replayed or reordered
event harmless: nothing can change the stamp between the check and the write.

Stamps are opaque bytes here; rs3gw.cluster encodes them (ObjectVersion). Storage never imports
the cluster package.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from rs3gw.storage import buckets, objects
from rs3gw.storage.metadb import Txn
from rs3gw.storage.multipart import abort_bucket_uploads
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
    for seg in meta.segments:
        if seg.inline:
            assert inline is not None and len(meta.segments) == 1
            txn.put_inline(seg.vid, inline)
        else:
            txn.commit_file(seg.vid)
    return previous


def delete_replica(txn: Txn, bucket: str, key: str) -> ObjectMeta | None:
    """A tombstone's payload: the object goes if it is there (the stamp records the delete)."""
    return objects.delete_object(txn, bucket, key)


def set_bucket_config_replica(txn: Txn, bucket: str, kind: str, value: bytes | None) -> None:
    buckets.set_bucket_config(txn, bucket, kind, value)


def create_bucket_replica(txn: Txn, name: str, owner_id: str, region: str, created: float) -> None:
    txn.conn.execute("INSERT OR REPLACE INTO buckets(name, owner_id, region, created) "
                     "VALUES (?,?,?,?)", (name, owner_id, region, created))


def delete_bucket_replica(txn: Txn, name: str) -> None:
    """The coordinator checked the bucket was empty on every reachable node; whatever this node
    still holds for it (a copy that raced the delete) goes with it."""
    for (key,) in txn.conn.execute("SELECT key FROM objects WHERE bucket = ?", (name,)).fetchall():
        objects.delete_object(txn, name, key)
    abort_bucket_uploads(txn, name)
    txn.conn.execute("DELETE FROM bucket_configs WHERE bucket = ?", (name,))
    txn.conn.execute("DELETE FROM buckets WHERE name = ?", (name,))
    txn.conn.execute("DELETE FROM item_versions WHERE kind = 'object' AND bucket = ?", (name,))
