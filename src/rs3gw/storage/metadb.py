"""Metadata database: schema, row codecs, the single writer thread (group commit) and read pool.

SQLite in WAL mode. All writes go through ONE connection owned by ONE thread (WriterThread): it
takes every queued operation (up to a bounded batch), runs each inside its own SAVEPOINT of one
transaction, commits once, then performs the file actions the committed operations asked for
(publishing tmp files, unlinking garbage) and resolves the callers' futures on their loop.
Reads use read-only connections, one per read-pool thread.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgpack

from rs3gw.storage.datafiles import DataLayout
from rs3gw.storage.types import ObjectMeta, PartInfo, Segment, UploadInfo

log = logging.getLogger(__name__)

T = TypeVar("T")

WRITE_BATCH_OPS_MAX = 256

SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets(
    name TEXT NOT NULL PRIMARY KEY, owner_id TEXT NOT NULL, region TEXT NOT NULL,
    created REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bucket_configs(
    bucket TEXT NOT NULL, kind TEXT NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY(bucket, kind)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects(
    bucket TEXT NOT NULL, key TEXT NOT NULL COLLATE BINARY, vid TEXT NOT NULL,
    size INTEGER NOT NULL, etag TEXT NOT NULL, last_modified REAL NOT NULL,
    content_type TEXT, meta BLOB NOT NULL,
    -- Copies of what listings show from meta (owner, checksum algorithms joined by ","), so a
    -- page never unpacks the blobs. NULL in rows written before these columns existed.
    owner_id TEXT, algos TEXT,
    -- A versioned key's current version (storage/versioning.py): its id and seq. NULL otherwise.
    version_id TEXT, seq BLOB,
    PRIMARY KEY(bucket, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads(
    upload_id TEXT NOT NULL PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL COLLATE BINARY,
    initiated REAL NOT NULL, owner_id TEXT NOT NULL, content_type TEXT, meta BLOB NOT NULL
    ) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads(bucket, key, initiated, upload_id);
CREATE TABLE IF NOT EXISTS parts(
    upload_id TEXT NOT NULL, part_number INTEGER NOT NULL, vid TEXT NOT NULL,
    size INTEGER NOT NULL, etag TEXT NOT NULL, last_modified REAL NOT NULL,
    checksums BLOB NOT NULL, PRIMARY KEY(upload_id, part_number)) WITHOUT ROWID;
-- Bodies of small objects (Segment.inline), keyed by the segment's vid. A table of their own, so
-- the objects rows listings scan stay small; a rowid table: rows append at the end of the table
-- b-tree, only the small vid index takes random inserts.
CREATE TABLE IF NOT EXISTS inline_data(vid TEXT NOT NULL PRIMARY KEY, data BLOB NOT NULL);
-- Data files to unlink: inserted in the transaction that drops the last reference.
CREATE TABLE IF NOT EXISTS gc(vid TEXT NOT NULL PRIMARY KEY) WITHOUT ROWID;
-- Committed data files possibly still in tmp/: inserted in the transaction that commits them.
CREATE TABLE IF NOT EXISTS renames(vid TEXT NOT NULL PRIMARY KEY) WITHOUT ROWID;
-- Bucket versioning (storage/versioning.py): the versions of a key of a bucket that has a
-- versioning state other than its current one, delete markers included (a delete marker that is
-- current too), newest first within a key (seq descending). The current version, when it is not a
-- delete marker, is the key's objects row alone, so a PUT of a new key writes one row as in an
-- unversioned bucket, and GET and LIST read one row.
CREATE TABLE IF NOT EXISTS versions(
    bucket TEXT NOT NULL, key TEXT NOT NULL COLLATE BINARY, seq BLOB NOT NULL,
    version_id TEXT NOT NULL, marker INTEGER NOT NULL,
    vid TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL, last_modified REAL NOT NULL,
    content_type TEXT, meta BLOB NOT NULL, owner_id TEXT, algos TEXT,
    PRIMARY KEY(bucket, key, seq)) WITHOUT ROWID;
-- Cluster mode only: the version stamp of each replicated item (kind object|bucket|policy|tagging),
-- tombstones included, so a replayed or older event never resurrects what was deleted or replaced.
-- The stamp is opaque here (the cluster layer encodes it); storage/versioned.py reads and writes it.
CREATE TABLE IF NOT EXISTS item_versions(
    kind TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL COLLATE BINARY,
    stamp BLOB NOT NULL, tombstone INTEGER NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY(kind, bucket, key)) WITHOUT ROWID;
"""


# --- codecs -----------------------------------------------------------------------------------------

def _pack(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def _unpack(blob: bytes) -> Any:
    return msgpack.unpackb(blob, raw=False)


def encode_object(m: ObjectMeta) -> tuple[Any, ...]:
    meta: dict[str, Any] = {
        "headers": m.headers, "checksums": m.checksums, "checksum_type": m.checksum_type,
        "tags": m.tags, "parts_count": m.parts_count, "owner_id": m.owner_id,
        "segments": [[s.vid, s.size, s.etag, s.checksums, True] if s.inline
                     else [s.vid, s.size, s.etag, s.checksums] for s in m.segments],
    }
    if m.version_id is not None:
        meta["version_id"] = m.version_id
    if m.seq is not None:
        meta["seq"] = m.seq
    _encode_lock(meta, m.lock_mode, m.lock_until_ms, m.legal_hold)
    return (m.bucket, m.key, m.vid, m.size, m.etag, m.last_modified, m.content_type, _pack(meta),
            m.owner_id, ",".join(m.checksums), m.version_id, m.seq)


# What decode_object reads, and what encode_object writes (the listing columns besides: owner,
# checksum algorithms, and for a versioned key's current version its id and seq, so that
# ListObjectVersions reads them without unpacking the blob).
OBJECT_COLUMNS = "bucket, key, vid, size, etag, last_modified, content_type, meta"
OBJECT_INSERT = (f"INSERT OR REPLACE INTO objects({OBJECT_COLUMNS}, owner_id, algos, version_id, "
                 "seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")


def decode_object(row: tuple[Any, ...]) -> ObjectMeta:
    bucket, key, vid, size, etag, last_modified, content_type, blob = row
    meta = _unpack(blob)
    return ObjectMeta(
        bucket=bucket, key=key, vid=vid, size=size, etag=etag, last_modified=last_modified,
        content_type=content_type, headers=meta["headers"], checksums=meta["checksums"],
        checksum_type=meta["checksum_type"], tags=meta["tags"],
        segments=[Segment(*seg) for seg in meta["segments"]],
        parts_count=meta["parts_count"], owner_id=meta["owner_id"],
        version_id=meta.get("version_id"), seq=meta.get("seq"), lock_mode=meta.get("lock_mode"),
        lock_until_ms=meta.get("lock_until_ms"), legal_hold=meta.get("legal_hold"))


def _encode_lock(meta: dict[str, Any], mode: str | None, until_ms: int | None,
                 legal_hold: bool | None) -> None:
    # Only when set: rows without object lock (all of them before it existed) stay as they were.
    if mode is not None:
        meta["lock_mode"], meta["lock_until_ms"] = mode, until_ms
    if legal_hold is not None:
        meta["legal_hold"] = legal_hold


def decode_object_summary(blob: bytes) -> tuple[str, list[str]]:
    """(owner_id, checksum algorithms) for listings, without building a full ObjectMeta."""
    meta = _unpack(blob)
    return meta["owner_id"], list(meta["checksums"])


UPLOAD_COLUMNS = "upload_id, bucket, key, initiated, owner_id, content_type, meta"


def encode_upload(u: UploadInfo) -> tuple[Any, ...]:
    meta = {"headers": u.headers, "checksum_algorithm": u.checksum_algorithm,
            "checksum_type": u.checksum_type, "tags": u.tags}
    _encode_lock(meta, u.lock_mode, u.lock_until_ms, u.legal_hold)
    return (u.upload_id, u.bucket, u.key, u.initiated, u.owner_id, u.content_type, _pack(meta))


def decode_upload(row: tuple[Any, ...]) -> UploadInfo:
    upload_id, bucket, key, initiated, owner_id, content_type, blob = row
    meta = _unpack(blob)
    return UploadInfo(upload_id=upload_id, bucket=bucket, key=key, initiated=initiated,
                      owner_id=owner_id, headers=meta["headers"], content_type=content_type,
                      checksum_algorithm=meta["checksum_algorithm"],
                      checksum_type=meta["checksum_type"], tags=meta["tags"],
                      lock_mode=meta.get("lock_mode"), lock_until_ms=meta.get("lock_until_ms"),
                      legal_hold=meta.get("legal_hold"))


PART_COLUMNS = "part_number, vid, size, etag, last_modified, checksums"


def decode_part(row: tuple[Any, ...]) -> PartInfo:
    pn, vid, size, etag, last_modified, blob = row
    return PartInfo(part_number=pn, vid=vid, size=size, etag=etag,
                    last_modified=last_modified, checksums=_unpack(blob))


def encode_part_checksums(checksums: dict[str, str]) -> bytes:
    return _pack(checksums)


# --- connections ------------------------------------------------------------------------------------

def connect_writer(db_path: Path, durable: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so a commit that returned survives power loss.
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.executescript(SCHEMA)
    _migrate(conn)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a metadata file written by an older release up to SCHEMA (idempotent)."""
    cols = {row[1] for row in conn.execute("PRAGMA table_info(objects)")}
    for col in ("owner_id", "algos"):
        if col not in cols:
            conn.execute(f"ALTER TABLE objects ADD COLUMN {col} TEXT")
    if "seq" not in cols:
        _current_out_of_versions(conn)
    # Version rows are found by seq (the id spells it); an index by id was one b-tree too many.
    conn.execute("DROP INDEX IF EXISTS versions_by_id")


def _current_out_of_versions(conn: sqlite3.Connection) -> None:
    """Files of the first versioning release kept each key's current version in versions too:
    that row goes, its seq moves to the objects row (one pass, in one transaction)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Again under the write lock: another worker process may have just done it.
        if "seq" in {row[1] for row in conn.execute("PRAGMA table_info(objects)")}:
            conn.execute("COMMIT")
            return
        conn.execute("ALTER TABLE objects ADD COLUMN version_id TEXT")
        conn.execute("ALTER TABLE objects ADD COLUMN seq BLOB")
        rows = conn.execute(f"SELECT {OBJECT_COLUMNS}, owner_id FROM objects o WHERE "
                            "EXISTS (SELECT 1 FROM versions v WHERE v.bucket = o.bucket AND "
                            "v.key = o.key)").fetchall()
        for row in rows:
            meta = decode_object(row[:8])
            if meta.version_id is None:
                continue
            found = conn.execute("SELECT seq FROM versions WHERE bucket = ? AND key = ? AND "
                                 "version_id = ?", (meta.bucket, meta.key,
                                                    meta.version_id)).fetchone()
            if found is None:
                continue
            meta.seq = bytes(found[0])
            conn.execute("DELETE FROM versions WHERE bucket = ? AND key = ? AND seq = ?",
                         (meta.bucket, meta.key, meta.seq))
            enc = encode_object(meta)
            if row[8] is None:          # a row from before the listing columns: keep it so
                enc = (*enc[:8], None, None, *enc[10:])
            conn.execute(OBJECT_INSERT, enc)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def connect_reader(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


# --- the writer -------------------------------------------------------------------------------------

class Txn:
    """What one write operation sees: the connection (inside its SAVEPOINT) and the file actions
    to perform if, and only if, its changes commit."""

    __slots__ = ("conn", "garbage", "now", "publish")

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self.conn = conn
        self.now = now
        self.publish: list[str] = []
        self.garbage: list[str] = []

    def commit_file(self, vid: str) -> None:
        """The tmp file ``vid`` becomes referenced by this transaction."""
        DataLayout.check_vid(vid)
        self.conn.execute("INSERT OR IGNORE INTO renames(vid) VALUES (?)", (vid,))
        self.publish.append(vid)

    def drop_file(self, vid: str) -> None:
        """The data file ``vid`` is no longer referenced once this transaction commits."""
        DataLayout.check_vid(vid)
        self.conn.execute("INSERT OR IGNORE INTO gc(vid) VALUES (?)", (vid,))
        self.garbage.append(vid)

    def put_inline(self, vid: str, data: bytes) -> None:
        """Store an inline body. Durability: it is in this transaction, so the commit (WAL fsync with
        synchronous=FULL) is its one and only durability point; no file, nothing to rename."""
        DataLayout.check_vid(vid)
        self.conn.execute("INSERT INTO inline_data(vid, data) VALUES (?,?)", (vid, data))

    def drop_inline(self, vid: str) -> None:
        """The inline body ``vid`` is no longer referenced: gone with this transaction, no gc."""
        self.conn.execute("DELETE FROM inline_data WHERE vid = ?", (vid,))


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE (the write lock up front, so no upgrade can fail half-way) ... COMMIT; on
    any exception, COMMIT's own included, ROLLBACK and re-raise."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def savepoint_each(conn: sqlite3.Connection, calls: list[Callable[[], Any]],
                   ) -> list[tuple[Any, Exception | None]]:
    """Group commit's inner loop: run each call in its own SAVEPOINT of the caller's open
    transaction. A call that raises is rolled back alone; its exception is returned in its slot,
    the others still commit with the transaction."""
    out: list[tuple[Any, Exception | None]] = []
    for call in calls:
        conn.execute("SAVEPOINT op")
        try:
            out.append((call(), None))
        except Exception as exc:  # noqa: BLE001 - the op fails alone; its caller gets it
            conn.execute("ROLLBACK TO op")
            out.append((None, exc))
        conn.execute("RELEASE op")
    return out


@dataclass
class WriteOp:
    fn: Callable[[Txn], Any]
    # tmp files to unlink if this op does not commit (data it would have published).
    discard_on_failure: tuple[str, ...]
    done: Callable[[Any, BaseException | None], None]
    result: Any = None
    error: BaseException | None = None
    txn: Txn | None = field(default=None, repr=False)


_STOP = object()


class WriterThread:
    """``txn_lock_fd``: with several processes on one database (RS3GW_WORKERS), a descriptor of
    the root's writer lock file, opened by this process; each transaction holds an flock on it.
    SQLite alone would serialise the processes too, but its busy handler sleeps and polls (1, 2,
    5, 10 ms ...) while the other process commits; a blocked flock() wakes the moment it is free.
    Measured end to end (4 KiB PUT, 16 connections, 2 workers against 1): 0.63x without it,
    1.12x with it."""

    def __init__(self, conn: sqlite3.Connection, layout: DataLayout,
                 deliver: Callable[[list[WriteOp]], None], txn_lock_fd: int = -1) -> None:
        self._conn = conn
        self._txn_lock_fd = txn_lock_fd
        self._layout = layout
        self._deliver = deliver
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rs3gw-meta-writer", daemon=True)
        # File actions done but whose bookkeeping rows are still in the db: they are deleted inside
        # the next transaction, after the directories they touched have been fsynced.
        self._done_gc: list[str] = []
        self._done_renames: list[str] = []
        self._dirty_dirs: set[str] = set()
        self.stopped = threading.Event()
        # Group commit figures: operations committed / transactions committed = ops per WAL fsync.
        self.batches_committed = 0
        self.ops_committed = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, op: WriteOp) -> None:
        self._queue.put(op)

    def stop(self) -> None:
        self._queue.put(_STOP)

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                item = self._queue.get()
                batch: list[WriteOp] = []
                if item is _STOP:
                    stop = True
                else:
                    batch.append(item)
                while not stop and len(batch) < WRITE_BATCH_OPS_MAX:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                    else:
                        batch.append(item)
                if batch:
                    try:
                        self._run_batch(batch)
                    except Exception:  # the writer thread must outlive any batch
                        log.exception("write batch of %d operations failed", len(batch))
            self._flush_bookkeeping()
        finally:
            self.stopped.set()

    def _run_batch(self, batch: list[WriteOp]) -> None:
        conn = self._conn
        try:
            self._layout.sync_dirs(self._dirty_dirs)
            with self._txn_lock(), write_transaction(conn):
                self._commit_batch(conn, batch)
            self.batches_committed += 1
            self.ops_committed += len(batch)
            self._dirty_dirs.clear()
            self._done_gc.clear()
            self._done_renames.clear()
        except Exception as exc:
            log.exception("metadata commit failed; failing %d operations", len(batch))
            for op in batch:
                if op.error is None:
                    op.error = exc
                op.txn = None
        try:
            self._after_commit(batch)
        finally:
            self._deliver(batch)

    @contextlib.contextmanager
    def _txn_lock(self) -> Iterator[None]:
        if self._txn_lock_fd < 0:
            yield
            return
        fcntl.flock(self._txn_lock_fd, fcntl.LOCK_EX)     # blocks this thread only (no GIL)
        try:
            yield
        finally:
            fcntl.flock(self._txn_lock_fd, fcntl.LOCK_UN)

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[WriteOp]) -> None:
        """The batch's operations inside the caller's transaction, each in its own savepoint."""
        self._forget_done(conn)
        now = time.time()
        txns = [Txn(conn, now) for _ in batch]
        outcomes = savepoint_each(conn, [functools.partial(op.fn, txn)
                                         for op, txn in zip(batch, txns, strict=True)])
        for op, txn, (result, exc) in zip(batch, txns, outcomes, strict=True):
            if exc is None:
                op.result, op.txn = result, txn
            else:
                op.error = exc

    def _forget_done(self, conn: sqlite3.Connection) -> None:
        if self._done_gc:
            conn.executemany("DELETE FROM gc WHERE vid=?", [(v,) for v in self._done_gc])
        if self._done_renames:
            conn.executemany("DELETE FROM renames WHERE vid=?",
                             [(v,) for v in self._done_renames])

    def _after_commit(self, batch: list[WriteOp]) -> None:
        layout = self._layout
        touched = self._dirty_dirs
        # Publish before unlinking: an op later in the batch may drop what an earlier one wrote.
        for op in batch:
            if op.txn is None:
                continue
            for vid in op.txn.publish:
                try:
                    layout.publish(vid, touched)
                    self._done_renames.append(vid)
                except OSError:
                    log.exception("publishing data file %s failed; retried at restart", vid)
        for op in batch:
            if op.txn is None:
                for vid in op.discard_on_failure:
                    try:
                        layout.discard_tmp(vid)
                    except OSError:
                        log.exception("removing tmp data file %s failed", vid)
                continue
            for vid in op.txn.garbage:
                try:
                    layout.remove(vid, touched)
                    self._done_gc.append(vid)
                except OSError:
                    log.exception("removing data file %s failed; retried at restart", vid)

    def _flush_bookkeeping(self) -> None:
        if not (self._done_gc or self._done_renames):
            return
        try:
            self._layout.sync_dirs(self._dirty_dirs)
            with self._txn_lock(), write_transaction(self._conn):
                self._forget_done(self._conn)
        except Exception:
            log.exception("final gc bookkeeping failed; redone at restart")


def recover(conn: sqlite3.Connection, layout: DataLayout) -> tuple[int, int, int]:
    """Crash recovery, before any other use of the store: finish publishing committed tmp files,
    redo pending unlinks, then everything left in tmp/ was never committed and goes.
    Returns (published, collected, swept)."""
    renames = [r[0] for r in conn.execute("SELECT vid FROM renames")]
    garbage = [r[0] for r in conn.execute("SELECT vid FROM gc")]
    touched: set[str] = set()
    published = sum(1 for vid in renames if layout.publish(vid, touched))
    for vid in garbage:
        layout.remove(vid, touched)
    # The moves and unlinks must be durable before the rows that would redo them disappear.
    layout.sync_dirs(touched)
    if renames or garbage:
        with write_transaction(conn):
            conn.executemany("DELETE FROM renames WHERE vid=?", [(v,) for v in renames])
            conn.executemany("DELETE FROM gc WHERE vid=?", [(v,) for v in garbage])
    swept = layout.sweep_tmp()
    return published, len(garbage), swept


# --- readers ----------------------------------------------------------------------------------------

class ReadPool:
    """A bounded pool of threads, each with its own read-only connection."""

    def __init__(self, db_path: Path, threads: int) -> None:
        self._db_path = db_path
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=max(1, threads),
                                           thread_name_prefix="rs3gw-meta-read")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect_reader(self._db_path)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction (a consistent snapshot across its queries)."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    def call_one(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` that makes a single statement: its own snapshot, no BEGIN/COMMIT round."""
        return fn(self._conn())

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
