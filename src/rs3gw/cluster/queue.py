"""Durable outbound replication queues, one per destination, in their own SQLite database.

<storage root>/.rs3gw/replication.db, WAL, synchronous=FULL: ``enqueue`` returns only once the
event is committed and the WAL fsynced, so an event acknowledged as queued survives a crash or a
power cut. In async replication mode a write is acknowledged after its local metadata commit AND
its enqueue (the two databases cannot commit atomically; see ReplicationQueue.enqueue).

Delivery is at least once, in order per destination: ``dequeue`` hands out events from the head
of the destination's queue (skipping those already handed out and not yet settled); ``ack``
removes them; ``retry`` puts them back with exponential backoff (capped, jittered), and nothing
overtakes an event waiting for its retry. Events handed out but never settled (a crash, a
restart) are handed out again: receivers make duplicates harmless (events.decide).

Limits: events per destination (a full destination makes ``enqueue`` wait, or raise QueueFull),
event size, events per dequeue, operations per commit.

All SQLite work runs on one dedicated thread with one connection, never on the event loop; what
the thread receives in one go is committed as one transaction (one fsync: group commit). Counts
for metrics (pending, oldest age) are kept in memory on the loop side, loaded at open.

Tombstone bookkeeping: a DeleteObject enqueued here records its tombstone (acknowledged by this
node); each destination that acks the event acknowledges the tombstone too (``ack_tombstone`` for
acknowledgements that arrive another way, e.g. anti-entropy). A tombstone is collectable once
every node of the object's current replica set has acknowledged it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import queue
import random
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rs3gw.storage import fsync_dir, savepoint_each, write_transaction

from .events import DeleteObject, ReplicationEvent, pack_event, unpack_event
from .hlc import HLCTimestamp, wall_clock_ms

log = logging.getLogger("rs3gw.cluster.queue")

T = TypeVar("T")

REPLICATION_DB = Path(".rs3gw") / "replication.db"
ERROR_CHARS_MAX = 500
BACKOFF_DOUBLINGS_MAX = 40

SCHEMA = """
-- seq: enqueue order. AUTOINCREMENT: a seq is never reused, even after the queue drained.
CREATE TABLE IF NOT EXISTS outbound(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, dest TEXT NOT NULL, event_id BLOB NOT NULL,
    tombstone INTEGER NOT NULL, payload BLOB NOT NULL, enqueued_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_ms INTEGER NOT NULL DEFAULT 0, last_error TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS outbound_by_dest ON outbound(dest, seq);
-- One event is queued at most once per destination (enqueue is idempotent).
CREATE UNIQUE INDEX IF NOT EXISTS outbound_event ON outbound(dest, event_id);
-- event_id: HLCTimestamp.sort_key(); key: utf-8 with surrogatepass (any S3 key).
CREATE TABLE IF NOT EXISTS tombstones(
    event_id BLOB NOT NULL PRIMARY KEY, bucket TEXT NOT NULL, key BLOB NOT NULL,
    recorded_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tombstone_acks(
    event_id BLOB NOT NULL, node TEXT NOT NULL, PRIMARY KEY(event_id, node)) WITHOUT ROWID;
"""


class QueueError(Exception):
    """Base of replication queue failures."""


class QueueFull(QueueError):
    """A destination's queue is at its limit and stayed there (or the caller would not wait)."""


class QueueClosed(QueueError):
    pass


class EventTooLarge(QueueError):
    pass


@dataclass(frozen=True)
class QueueLimits:
    pending_per_destination_max: int = 100_000
    event_bytes_max: int = 1 << 20
    dequeue_events_max: int = 1024
    write_batch_ops_max: int = 256
    backoff_base_ms: int = 200
    backoff_max_ms: int = 60_000
    tombstone_scan_max: int = 10_000


@dataclass(frozen=True)
class QueuedEvent:
    seq: int
    dest: str
    event_id: HLCTimestamp
    payload: bytes              # pack_event() bytes
    enqueued_ms: int
    attempts: int               # failed deliveries so far
    last_error: str | None

    def decode(self) -> ReplicationEvent:
        return unpack_event(self.payload)


@dataclass(frozen=True)
class Tombstone:
    event_id: HLCTimestamp
    bucket: str
    key: str
    acked_by: frozenset[str]


def _key_blob(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


def _connect(path: Path) -> sqlite3.Connection:
    """Blocking: runs on the queue's thread."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise QueueError(f"{path}: SQLite refused WAL mode (got {mode!r})")
        # FULL: the WAL is fsynced at every commit; an enqueue that returned survives power loss.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(SCHEMA)
        if new:
            # The new file's directory entries must be durable too, not only its contents.
            fsync_dir(str(path.parent))
            fsync_dir(str(path.parent.parent))
    except BaseException:
        conn.close()
        raise
    return conn


_STOP = object()
DbOp = Callable[[sqlite3.Connection], Any]


class _DbThread:
    """One thread, one connection; operations queued together commit together."""

    def __init__(self, path: Path, batch_max: int) -> None:
        self._path = path
        self._batch_max = batch_max
        self._ops: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rs3gw-repl-queue", daemon=True)
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.stopped: concurrent.futures.Future[None] = concurrent.futures.Future()

    def start(self) -> None:
        self._thread.start()

    def submit(self, fn: DbOp) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._ops.put((fn, fut))
        return fut

    def stop(self) -> None:
        self._ops.put(_STOP)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            try:
                conn = _connect(self._path)
            except (OSError, sqlite3.Error, QueueError) as e:  # to open() and every later caller
                self.ready.set_exception(e)
                self._fail_until_stop(e)
                return
            self.ready.set_result(None)
            stop = False
            while not stop:
                batch: list[tuple[DbOp, concurrent.futures.Future[Any]]] = []
                item = self._ops.get()
                while True:
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                    if len(batch) >= self._batch_max:
                        break
                    try:
                        item = self._ops.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._run_batch(conn, batch)
        finally:
            if conn is not None:
                conn.close()
            if not self.ready.done():
                self.ready.set_exception(QueueError(f"{self._path}: the queue thread died at start"))
            self.stopped.set_result(None)

    def _run_batch(self, conn: sqlite3.Connection,
                   batch: list[tuple[DbOp, concurrent.futures.Future[Any]]]) -> None:
        results: list[tuple[Any, BaseException | None]] = []
        try:
            with write_transaction(conn):
                results = list(savepoint_each(conn, [functools.partial(fn, conn) for fn, _ in batch]))
        except Exception as e:
            log.exception("replication queue commit failed; failing %d operations", len(batch))
            results = [(None, e)] * len(batch)
        # Results go out only after COMMIT returned: an enqueue is never reported before it is durable.
        for (_, fut), (res, exc) in zip(batch, results, strict=True):
            if exc is None:
                fut.set_result(res)
            else:
                fut.set_exception(exc)

    def _fail_until_stop(self, exc: BaseException) -> None:
        while (item := self._ops.get()) is not _STOP:
            item[1].set_exception(exc)


class ReplicationQueue:
    """Outbound queues of one node. ``await ReplicationQueue.open(root, local_node=...)``; close()."""

    def __init__(self, path: Path, *, local_node: str, limits: QueueLimits | None = None,
                 now_ms: Callable[[], int] = wall_clock_ms, rng: random.Random | None = None) -> None:
        self.path = path
        self.local_node = local_node
        self.limits = limits or QueueLimits()
        self._now_ms = now_ms
        self._rng = rng or random.Random()
        self._db = _DbThread(path, self.limits.write_batch_ops_max)
        # Loop-side state, changed only on the loop thread. _pending: committed rows, seq ->
        # enqueued_ms, in seq order (the oldest first: lag is its age).
        self._pending: dict[str, OrderedDict[int, int]] = {}
        self._reserved: dict[str, int] = {}
        self._inflight: dict[str, set[int]] = {}
        self._space_waiters: list[asyncio.Future[None]] = []
        self._arrivals: dict[str, asyncio.Event] = {}
        self._closed = True

    @classmethod
    async def open(cls, storage_root: Path, *, local_node: str, limits: QueueLimits | None = None,
                   now_ms: Callable[[], int] = wall_clock_ms,
                   rng: random.Random | None = None) -> ReplicationQueue:
        q = cls(storage_root / REPLICATION_DB, local_node=local_node, limits=limits, now_ms=now_ms, rng=rng)
        q._db.start()
        try:
            await asyncio.wrap_future(q._db.ready)
        except BaseException:
            q._db.stop()
            await asyncio.wrap_future(q._db.stopped)
            raise
        q._closed = False
        rows = await q._call(lambda conn: conn.execute(
            "SELECT dest, seq, enqueued_ms FROM outbound ORDER BY seq").fetchall())
        for dest, seq, enqueued_ms in rows:
            q._pending.setdefault(dest, OrderedDict())[seq] = enqueued_ms
        return q

    async def close(self) -> None:
        """Stop the thread once the operations already submitted are done; close the database."""
        if self._closed:
            return
        self._closed = True
        for fut in self._space_waiters:
            if not fut.done():
                fut.set_exception(QueueClosed("replication queue closed"))
        self._space_waiters.clear()
        self._db.stop()
        await asyncio.wrap_future(self._db.stopped)

    # --- plumbing -------------------------------------------------------------------------------

    def _call(self, fn: Callable[[sqlite3.Connection], T],
              then: Callable[[T | None, BaseException | None], None] | None = None) -> asyncio.Future[T]:
        """Run fn on the queue thread. ``then`` runs on the loop once fn's transaction is settled,
        even if the awaiting caller was cancelled meanwhile (the in-memory state must follow the
        database, not the caller)."""
        if self._closed:
            raise QueueClosed("replication queue closed")
        loop = asyncio.get_running_loop()
        afut: asyncio.Future[T] = loop.create_future()

        def complete(cfut: concurrent.futures.Future[T]) -> None:
            exc = cfut.exception()
            res = None if exc is not None else cfut.result()
            if then is not None:
                then(res, exc)
            if not afut.done():
                if exc is not None:
                    afut.set_exception(exc)
                else:
                    afut.set_result(res)  # type: ignore[arg-type]

        self._db.submit(fn).add_done_callback(lambda cf: loop.call_soon_threadsafe(complete, cf))
        return afut

    def _count(self, dest: str) -> int:
        return len(self._pending.get(dest, ())) + self._reserved.get(dest, 0)

    def _wake_space(self) -> None:
        waiters, self._space_waiters = self._space_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _reserve(self, dests: list[str], wait: bool, timeout_s: float | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        limit = self.limits.pending_per_destination_max
        while full := [d for d in dests if self._count(d) >= limit]:
            if not wait or (deadline is not None and loop.time() >= deadline):
                raise QueueFull(f"replication queue full for {', '.join(full)}: "
                                f"{limit} events pending (the limit); the destination is not keeping up")
            fut: asyncio.Future[None] = loop.create_future()
            self._space_waiters.append(fut)
            try:
                async with asyncio.timeout_at(deadline):
                    await fut
            except TimeoutError:
                pass
            finally:
                if fut in self._space_waiters:
                    self._space_waiters.remove(fut)
        for d in dests:
            self._reserved[d] = self._reserved.get(d, 0) + 1

    def _release(self, dests: list[str]) -> None:
        for d in dests:
            self._reserved[d] -= 1
            if not self._reserved[d]:
                del self._reserved[d]
        self._wake_space()

    # --- producer side --------------------------------------------------------------------------

    async def enqueue(self, event: ReplicationEvent, destinations: Iterable[str], *,
                      wait: bool = True, timeout_s: float | None = None) -> int:
        """Queue event for each destination, durably (returns after the fsynced commit); the number
        of destinations it was new for (enqueueing the same event again is a no-op).

        A full destination makes it wait for room, up to timeout_s (None: no limit), then raise
        QueueFull; with wait=False it raises at once. All destinations or none.

        Order for the async mode: local metadata commit, then enqueue, then acknowledge the client.
        A crash between the first two leaves a committed write with no queued event: the start-up
        scan or anti-entropy must find it (events are idempotent, re-enqueueing is safe).
        """
        payload = pack_event(event)
        if len(payload) > self.limits.event_bytes_max:
            raise EventTooLarge(f"{event.OP} event of {len(payload)} bytes exceeds the limit of "
                                f"{self.limits.event_bytes_max}")
        dests = list(dict.fromkeys(destinations))
        tombstone = isinstance(event, DeleteObject)
        if not dests and not tombstone:
            return 0
        await self._reserve(dests, wait, timeout_s)
        eid = event.event_id.sort_key()
        now = self._now_ms()

        def insert(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            added = []
            for d in dests:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO outbound(dest, event_id, tombstone, payload, enqueued_ms) "
                    "VALUES (?, ?, ?, ?, ?)", (d, eid, int(tombstone), payload, now))
                if cur.rowcount == 1 and cur.lastrowid is not None:
                    added.append((d, cur.lastrowid))
            if tombstone:
                # The tombstone's item: the key, or one version of it (storage.version_item).
                _record_tombstone(conn, eid, event.bucket, event.item[2], now, (self.local_node,))
            return added

        def then(added: list[tuple[str, int]] | None, _: BaseException | None) -> None:
            for d, seq in added or ():
                self._pending.setdefault(d, OrderedDict())[seq] = now
                if (ev := self._arrivals.get(d)) is not None:
                    ev.set()
            self._release(dests)

        try:
            fut = self._call(insert, then)
        except BaseException:
            self._release(dests)
            raise
        return len(await fut)

    # --- sender side ----------------------------------------------------------------------------

    async def dequeue(self, dest: str, max_events: int | None = None) -> list[QueuedEvent]:
        """The next events for dest, in order, that are not handed out already and are due. Each
        must then be acked, retried or released. Empty when the head waits for its retry."""
        n = self.limits.dequeue_events_max if max_events is None else \
            max(1, min(max_events, self.limits.dequeue_events_max))
        skip = frozenset(self._inflight.get(dest, ()))
        now = self._now_ms()

        def select(conn: sqlite3.Connection) -> list[QueuedEvent]:
            out: list[QueuedEvent] = []
            rows = conn.execute(
                "SELECT seq, event_id, payload, enqueued_ms, attempts, next_attempt_ms, last_error "
                "FROM outbound WHERE dest=? ORDER BY seq LIMIT ?", (dest, n + len(skip)))
            for seq, eid, payload, enqueued_ms, attempts, next_ms, err in rows:
                if seq in skip:
                    continue
                if next_ms > now:
                    break       # per-destination order: nothing overtakes an event awaiting its retry
                out.append(QueuedEvent(seq, dest, HLCTimestamp.from_sort_key(eid), payload,
                                       enqueued_ms, attempts, err))
                if len(out) >= n:
                    break
            return out

        def then(got: list[QueuedEvent] | None, _: BaseException | None) -> None:
            if got:
                self._inflight.setdefault(dest, set()).update(e.seq for e in got)

        return await self._call(select, then)

    async def ack(self, dest: str, seqs: Iterable[int]) -> None:
        """dest has the events (applied or skipped as duplicates): remove them."""
        keys = [(dest, s) for s in seqs]

        def delete(conn: sqlite3.Connection) -> None:
            # A delivered DeleteObject means dest holds the tombstone.
            conn.executemany(
                "INSERT OR IGNORE INTO tombstone_acks(event_id, node) SELECT o.event_id, o.dest "
                "FROM outbound o JOIN tombstones t ON t.event_id = o.event_id "
                "WHERE o.dest=? AND o.seq=? AND o.tombstone=1", keys)
            conn.executemany("DELETE FROM outbound WHERE dest=? AND seq=?", keys)

        def then(_: None, exc: BaseException | None) -> None:
            if exc is None:
                pending, inflight = self._pending.get(dest), self._inflight.get(dest, set())
                for _d, seq in keys:
                    if pending is not None:
                        pending.pop(seq, None)
                    inflight.discard(seq)
                if pending is not None and not pending:
                    del self._pending[dest]
                self._wake_space()

        await self._call(delete, then)

    async def retry(self, dest: str, seqs: Iterable[int], error: str) -> float:
        """Delivery failed: the events go back to the head of dest's queue, due again after a
        backoff (base * 2^(attempts-1), capped, jittered to half..full). Returns the longest
        delay in seconds (what the sender should wait before its next dequeue)."""
        keys = list(seqs)
        now = self._now_ms()
        err = error[:ERROR_CHARS_MAX]

        def bump(conn: sqlite3.Connection) -> int:
            longest = 0
            for seq in keys:
                row = conn.execute("SELECT attempts FROM outbound WHERE dest=? AND seq=?",
                                   (dest, seq)).fetchone()
                if row is None:
                    continue
                attempts = row[0] + 1
                delay = self.backoff_ms(attempts)
                conn.execute("UPDATE outbound SET attempts=?, next_attempt_ms=?, last_error=? "
                             "WHERE dest=? AND seq=?", (attempts, now + delay, err, dest, seq))
                longest = max(longest, delay)
            return longest

        def then(_: int | None, __: BaseException | None) -> None:
            self.release(dest, keys)

        return await self._call(bump, then) / 1000.0

    def backoff_ms(self, attempts: int) -> int:
        """Delay before delivery attempt attempts + 1 (runs on the queue thread: the rng is its)."""
        full = min(self.limits.backoff_max_ms,
                   self.limits.backoff_base_ms << min(attempts - 1, BACKOFF_DOUBLINGS_MAX))
        return full // 2 + int(self._rng.random() * (full - full // 2))

    def release(self, dest: str, seqs: Iterable[int] | None = None) -> None:
        """Return handed-out events to the queue without counting a failure (a sender stopping)."""
        inflight = self._inflight.get(dest)
        if inflight is None:
            return
        if seqs is None:
            inflight.clear()
        else:
            inflight.difference_update(seqs)
        if (ev := self._arrivals.get(dest)) is not None and self._has_undelivered(dest):
            ev.set()

    def _has_undelivered(self, dest: str) -> bool:
        return len(self._pending.get(dest, ())) > len(self._inflight.get(dest, ()))

    async def wait_for_events(self, dest: str, timeout_s: float | None = None) -> bool:
        """Until dest has events not handed out (True), or timeout_s passed (False). Events
        waiting for their retry count: the sender honours the delay retry() returned."""
        if self._has_undelivered(dest):
            return True
        ev = self._arrivals.setdefault(dest, asyncio.Event())
        ev.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await ev.wait()
        except TimeoutError:
            return False
        return True

    # --- metrics ----------------------------------------------------------------------------------

    def destinations(self) -> list[str]:
        return sorted(self._pending)

    def pending(self, dest: str | None = None) -> int:
        """Events committed to the queue and not acked (handed-out ones included)."""
        if dest is not None:
            return len(self._pending.get(dest, ()))
        return sum(len(p) for p in self._pending.values())

    def oldest_age_s(self, dest: str | None = None) -> float:
        """Age of the oldest unacked event (0.0 when none): the replication lag."""
        heads = [next(iter(p.values())) for d, p in self._pending.items()
                 if p and (dest is None or d == dest)]
        return max(0.0, (self._now_ms() - min(heads)) / 1000.0) if heads else 0.0

    # --- tombstones -------------------------------------------------------------------------------

    async def record_tombstone(self, event_id: HLCTimestamp, bucket: str, key: str,
                               acked_by: Iterable[str] = ()) -> None:
        """Track a tombstone this node holds (enqueue does it for the DeleteObjects it queues)."""
        eid, nodes, now = event_id.sort_key(), tuple(acked_by), self._now_ms()
        await self._call(lambda conn: _record_tombstone(conn, eid, bucket, key, now, nodes))

    async def ack_tombstone(self, node: str, event_id: HLCTimestamp) -> bool:
        """node holds the tombstone; False if this queue does not track that tombstone."""
        eid = event_id.sort_key()

        def add(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("INSERT OR IGNORE INTO tombstone_acks(event_id, node) SELECT ?, ? "
                               "WHERE EXISTS(SELECT 1 FROM tombstones WHERE event_id=?)", (eid, node, eid))
            if cur.rowcount:
                return True
            return conn.execute("SELECT 1 FROM tombstones WHERE event_id=?", (eid,)).fetchone() is not None

        return await self._call(add)

    async def collectable_tombstones(self, replica_set_provider: Callable[[str, str], Iterable[str]],
                                     limit: int = 1000) -> list[Tombstone]:
        """Tombstones (oldest first, up to limit, among the first tombstone_scan_max) that every node
        of their object's replica set, as replica_set_provider(bucket, key) gives it now, holds."""
        scan = self.limits.tombstone_scan_max

        def load(conn: sqlite3.Connection) -> list[Tombstone]:
            acks: dict[bytes, set[str]] = {}
            rows = conn.execute("SELECT event_id, bucket, key FROM tombstones ORDER BY recorded_ms, "
                                "event_id LIMIT ?", (scan,)).fetchall()
            if rows:
                for eid, node in conn.execute(
                        "SELECT a.event_id, a.node FROM tombstone_acks a JOIN (SELECT event_id FROM "
                        "tombstones ORDER BY recorded_ms, event_id LIMIT ?) t USING (event_id)", (scan,)):
                    acks.setdefault(eid, set()).add(node)
            return [Tombstone(HLCTimestamp.from_sort_key(eid), bucket, key.decode("utf-8", "surrogatepass"),
                              frozenset(acks.get(eid, ()))) for eid, bucket, key in rows]

        out = []
        for t in await self._call(load):
            if set(replica_set_provider(t.bucket, t.key)) <= t.acked_by:
                out.append(t)
                if len(out) >= limit:
                    break
        return out

    async def forget_tombstones(self, event_ids: Iterable[HLCTimestamp]) -> None:
        """The tombstones were garbage-collected: drop their bookkeeping."""
        keys = [(e.sort_key(),) for e in event_ids]

        def drop(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM tombstone_acks WHERE event_id=?", keys)
            conn.executemany("DELETE FROM tombstones WHERE event_id=?", keys)

        await self._call(drop)


def _record_tombstone(conn: sqlite3.Connection, eid: bytes, bucket: str, key: str, now_ms: int,
                      acked_by: Iterable[str]) -> None:
    conn.execute("INSERT OR IGNORE INTO tombstones(event_id, bucket, key, recorded_ms) VALUES (?, ?, ?, ?)",
                 (eid, bucket, _key_blob(key), now_ms))
    conn.executemany("INSERT OR IGNORE INTO tombstone_acks(event_id, node) VALUES (?, ?)",
                     [(eid, n) for n in acked_by])
