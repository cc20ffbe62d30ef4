"""Buckets and their configuration documents: transaction bodies run by the writer thread, and
read queries. Deleting a bucket aborts its multipart uploads (storage/multipart.py) in the same
transaction.
"""
from __future__ import annotations

import sqlite3

from rs3gw.storage import objectlock, versioning
from rs3gw.storage.metadb import Txn
from rs3gw.storage.multipart import abort_bucket_uploads
from rs3gw.storage.objects import require_bucket
from rs3gw.storage.types import BucketExists, BucketInfo, BucketNotEmpty


def get_bucket(conn: sqlite3.Connection, name: str) -> BucketInfo | None:
    row = conn.execute("SELECT name, owner_id, region, created FROM buckets WHERE name = ?",
                       (name,)).fetchone()
    if row is None:
        return None
    configs = dict(conn.execute("SELECT kind, value FROM bucket_configs WHERE bucket = ?",
                                (name,)).fetchall())
    return BucketInfo(name=row[0], owner_id=row[1], region=row[2], created=row[3], configs=configs)


def list_buckets(conn: sqlite3.Connection) -> list[BucketInfo]:
    configs: dict[str, dict[str, bytes]] = {}
    for bucket, kind, value in conn.execute("SELECT bucket, kind, value FROM bucket_configs"):
        configs.setdefault(bucket, {})[kind] = value
    rows = conn.execute("SELECT name, owner_id, region, created FROM buckets ORDER BY name")
    return [BucketInfo(name=r[0], owner_id=r[1], region=r[2], created=r[3],
                       configs=configs.get(r[0], {})) for r in rows]


def create_bucket(txn: Txn, name: str, owner_id: str, region: str,
                  configs: dict[str, bytes] | None = None) -> BucketInfo:
    """``configs``: documents the bucket is born with, in the same transaction (a bucket made
    with object lock never exists, even after a crash, without its lock)."""
    row = txn.conn.execute("SELECT owner_id FROM buckets WHERE name = ?", (name,)).fetchone()
    if row is not None:
        raise BucketExists(row[0])
    txn.conn.execute("INSERT INTO buckets(name, owner_id, region, created) VALUES (?,?,?,?)",
                     (name, owner_id, region, txn.now))
    for kind, value in (configs or {}).items():
        set_bucket_config(txn, name, kind, value)
    return BucketInfo(name=name, owner_id=owner_id, region=region, created=txn.now,
                      configs=dict(configs or {}))


def delete_bucket(txn: Txn, name: str) -> None:
    require_bucket(txn.conn, name)
    if txn.conn.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", (name,)).fetchone() \
            or versioning.has_versions(txn.conn, name):
        raise BucketNotEmpty(name)
    abort_bucket_uploads(txn, name)
    txn.conn.execute("DELETE FROM bucket_configs WHERE bucket = ?", (name,))
    txn.conn.execute("DELETE FROM buckets WHERE name = ?", (name,))


def set_bucket_config(txn: Txn, bucket: str, kind: str, value: bytes | None, *,
                      check: bool = True) -> None:
    """``check=False``: a replica applying the cluster's change (its coordinator checked; the
    versioning state and the lock may arrive in either order)."""
    require_bucket(txn.conn, bucket)
    if check and kind in (objectlock.KIND, versioning.STATE_KIND):
        # Decided here, in the transaction: no concurrent write slips between check and change.
        locked = txn.conn.execute("SELECT 1 FROM bucket_configs WHERE bucket = ? AND kind = ?",
                                  (bucket, objectlock.KIND)).fetchone() is not None
        objectlock.check_bucket_config(kind, value, versioning.state(txn.conn, bucket), locked)
    if value is None:
        txn.conn.execute("DELETE FROM bucket_configs WHERE bucket = ? AND kind = ?",
                         (bucket, kind))
    else:
        txn.conn.execute("INSERT OR REPLACE INTO bucket_configs(bucket, kind, value)"
                         " VALUES (?,?,?)", (bucket, kind, bytes(value)))
