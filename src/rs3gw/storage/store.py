"""LocalStore: the embedded storage engine the S3 layer talks to.

Threads: one metadata writer (group commit, metadb.WriterThread), a read pool with one read-only
SQLite connection per thread, and an I/O pool for data files. The event loop thread only hops
between them; it never runs SQLite or blocking file I/O. With the io_uring backend, object data
moves through the ring instead (storage.directfiles); open/fsync-dir/unlink/close stay in the pool.

Durable write order (durable=True): the ObjectWriter writes tmp/<vid>, fsyncs it and the tmp dir;
the writer thread commits the metadata (the visibility point), then renames tmp → objects/ and
unlinks replaced files; the rows recording those two actions are deleted only in a later
transaction, after the directories involved were fsynced. open() redoes whatever a crash left.

Small objects (at most ``inline_max_bytes``, 64 KiB by default) never touch a file: the
ObjectWriter keeps them in memory and put_object stores the bytes in the metadata transaction
(table inline_data), so the commit is their only durability point. Measured in process
(benchmarks/bench_small_objects.py: 16 tasks, durable, ext4 on virtio, 2 cores), PUT/s files ->
inline: 4 KiB ~1,000-1,300 -> ~6,500-7,500; 16 KiB 780 -> 3,600; 64 KiB 740 -> 1,420; 128 KiB
600 -> 1,090. 64 KiB keeps most of the gain; above it every byte is written twice (WAL, then
the checkpoint) for a gain that no longer grows. Multipart parts stay files.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from rs3gw._core.io_threads import IOBackend
from rs3gw._core.uring import Ring
from rs3gw.storage import buckets, listing, multipart, objects
from rs3gw.storage.bucketgen import SharedGeneration
from rs3gw.storage.datafiles import (
    HASH_ON_LOOP_MAX_BYTES,
    INLINE_MAX_BYTES,
    DataLayout,
    DataSink,
    InlineReader,
    ObjectWriter,
    PoolSink,
    RangeReader,
    checksums_b64,
    copy_range_sync,
    hash_inline,
    new_vid,
    normalize_algos,
    open_pieces,
    plan_range,
    write_tmp_sync,
)
from rs3gw.storage.directfiles import IO_BUFFERS, RingIO, RingRangeReader, RingSink, probe_direct
from rs3gw.storage.metadb import (
    ReadPool,
    Txn,
    WriteOp,
    WriterThread,
    connect_reader,
    connect_writer,
)
from rs3gw.storage.protocols import ReplicaStore
from rs3gw.storage.replicas import ReplicaOps
from rs3gw.storage.rootlock import release_root, take_root
from rs3gw.storage.types import (
    BucketInfo,
    DeleteResult,
    ListPage,
    NoSuchKey,
    ObjectMeta,
    PartInfo,
    Segment,
    StorageError,
    UploadInfo,
    VersionPage,
    WriteResult,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Buckets kept by get_bucket (they change only through this store's bucket writes).
BUCKETS_CACHED_MAX = 4096
# Write operations queued or in flight at once; beyond that callers wait (backpressure).
PENDING_WRITE_OPS_MAX = 4096


class LocalStore(ReplicaOps):
    """``io_backend``: the I/O backend from rs3gw._core.directio.select_backend (the caller owns
    it and closes it after the store). A "uring" backend sends object data through the ring
    (storage.directfiles); "threads" or None keeps all data-file I/O in the I/O pool.
    ``direct_io`` (auto|on|off) applies to the ring path; auto probes the storage root at open and
    uses O_DIRECT for writes only; on uses it for reads too.
    ``inline_max_bytes``: objects up to this size live in the metadata store, not in data files
    (0: only empty ones).
    ``supervised``: this store is one of several worker processes on the root (RS3GW_WORKERS):
    the supervisor holds the root's lock and runs recovery (take_root/release_root) before the
    workers start and after they all stopped; a worker never sweeps tmp/, which the others share.
    Object rows and files need nothing more (SQLite serialises the writers; a committed file is
    found in tmp/ or objects/ by any process); the bucket cache checks a shared generation.
    The cluster-mode operations (storage/protocols.ReplicaStore) are ReplicaOps', in
    storage/replicas.py."""

    def __init__(self, root: str | Path, *, durable: bool = True, read_threads: int = 4,
                 io_threads: int = 8, io_backend: IOBackend | None = None,
                 direct_io: str = "auto", inline_max_bytes: int = INLINE_MAX_BYTES,
                 loop_reads: bool = True, supervised: bool = False,
                 io_buffers: int = IO_BUFFERS) -> None:
        if direct_io not in ("auto", "on", "off"):
            raise ValueError(f"direct_io must be auto, on or off, not {direct_io!r}")
        if inline_max_bytes < 0:
            raise ValueError(f"inline_max_bytes must be >= 0, not {inline_max_bytes}")
        self.inline_max_bytes = inline_max_bytes
        self.root = Path(root)
        self.durable = durable
        self._layout = DataLayout(self.root, durable)
        self._db_path = self._layout.base / "meta.db"
        self._read_threads = read_threads
        self._io_threads = io_threads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reads: ReadPool | None = None
        self._io: ThreadPoolExecutor | None = None
        self._writer: WriterThread | None = None
        self._writer_conn: sqlite3.Connection | None = None
        self._loop_reads = loop_reads
        self._loop_conn: sqlite3.Connection | None = None
        self._lock_fd = -1
        self._txn_lock_fd = -1      # supervised: this process's descriptor of writer.lock
        self._slots: asyncio.Semaphore | None = None
        # vids handed to a queued commit: ObjectWriter.abort() must leave their files alone.
        self._claimed: dict[str, int] = {}
        # get_bucket's cache; _bucket_gen counts bucket writes submitted and finished.
        self._bucket_cache: dict[str, BucketInfo] = {}
        self._bucket_gen = 0
        # Bucket writes by any process on the root (see bucketgen); _shared_seen: the value the
        # cache was filled under.
        self._shared_gen = SharedGeneration(str(self._layout.base / "buckets.gen"))
        self._shared_seen = -1
        self._supervised = supervised
        self._io_buffers = io_buffers
        self._closed = True
        self._backend = io_backend
        self._direct_wanted = direct_io
        self._ring: RingIO | None = None
        # What is in use once open: "uring" or "threads", and O_DIRECT "on" (reads and writes),
        # "writes" (writes only: what auto chooses where O_DIRECT works) or "off".
        self.io_backend = "threads"
        self.direct_io = "off"

    # --- lifecycle ----------------------------------------------------------------------------------

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._io = ThreadPoolExecutor(max_workers=max(1, self._io_threads),
                                      thread_name_prefix="rs3gw-data-io")
        try:
            await self._loop.run_in_executor(self._io, self._open_sync)
        except BaseException:
            self._io.shutdown(wait=False)
            raise
        if isinstance(self._backend, Ring):
            self._ring = RingIO(self._backend, self.direct_io, self._io_buffers)
            self.io_backend = "uring"
        self._reads = ReadPool(self._db_path, self._read_threads)
        self._slots = asyncio.Semaphore(PENDING_WRITE_OPS_MAX)
        assert self._writer_conn is not None
        self._writer = WriterThread(self._writer_conn, self._layout, self._deliver,
                                    txn_lock_fd=self._txn_lock_fd)
        self._writer.start()
        self._closed = False

    def _open_sync(self) -> None:
        self._layout.prepare()
        self._choose_direct_io()
        if self._supervised:
            conn = connect_writer(self._db_path, self.durable)
            # Opened here, in this process: flock() excludes other open file descriptions only.
            self._txn_lock_fd = os.open(self._layout.base / "writer.lock",
                                        os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        else:
            self._lock_fd, conn = take_root(self._layout, self.durable)
        try:
            self._shared_gen.open()
            if self._loop_reads:
                # The event loop's own read-only connection (see lookup_object): it never waits
                # for a lock (busy_timeout 0), a busy database sends the lookup to the read pool.
                self._loop_conn = connect_reader(self._db_path)
                self._loop_conn.execute("PRAGMA busy_timeout=0")
        except BaseException:
            conn.close()
            self._shared_gen.close()
            for fd in (self._lock_fd, self._txn_lock_fd):
                if fd >= 0:
                    os.close(fd)
            self._lock_fd = self._txn_lock_fd = -1
            raise
        self._writer_conn = conn

    def _choose_direct_io(self) -> None:
        wanted = self._direct_wanted
        if not isinstance(self._backend, Ring):
            if wanted == "on":
                raise StorageError("RS3GW_DIRECT_IO=on needs the io_uring backend; the "
                                   f"{self._backend.name if self._backend else 'threads'} backend "
                                   "does buffered I/O")
            return
        if wanted == "off":
            return
        why = probe_direct(self._layout.tmp_dir)
        if why is None:
            # auto: O_DIRECT for writes only. Measured end to end (benchmarks/e2e.py scenario, 64 MiB
            # x2 streams, same session): O_DIRECT writes ~520 MB/s vs buffered ~420 (no page-cache
            # copy, no writeback competing with the upload); page-cache reads ~2.6 GB/s vs O_DIRECT
            # ~1.2 (objects are read again and again; readahead; the cache serves hot data).
            self.direct_io = "on" if wanted == "on" else "writes"
        elif wanted == "on":
            raise StorageError(f"RS3GW_DIRECT_IO=on, but {self.root} refuses O_DIRECT: {why}")
        else:
            log.info("O_DIRECT unavailable under %s (%s); using buffered I/O", self.root, why)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        assert self._loop and self._writer and self._reads and self._io
        self._writer.stop()
        await self._loop.run_in_executor(self._io, self._writer.stopped.wait)
        await self._loop.run_in_executor(self._io, self._close_sync)
        self._io.shutdown(wait=True)
        if self._ring is not None:
            self._ring.close()
            self._ring = None

    def _close_sync(self) -> None:
        assert self._reads and self._writer_conn
        self._reads.shutdown()
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None
        self._shared_gen.close()
        if self._supervised:
            # Other workers may still be writing into tmp/: the supervisor recovers once all
            # of them stopped (release_root).
            self._writer_conn.close()
            self._writer_conn = None
            os.close(self._txn_lock_fd)
            self._txn_lock_fd = -1
            return
        # Every commit has been applied; what is left in tmp/ belongs to writers never committed.
        release_root(self._layout, self._writer_conn, self._lock_fd)
        self._writer_conn = None
        self._lock_fd = -1

    # --- plumbing -----------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("store is closed")

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._check_open()
        assert self._loop and self._reads
        return await self._loop.run_in_executor(self._reads.executor, self._reads.call, fn)

    async def _io_call(self, fn: Callable[..., T], *args: Any) -> T:
        self._check_open()
        assert self._loop and self._io
        return await self._loop.run_in_executor(self._io, fn, *args)

    async def _write(self, fn: Callable[[Txn], T], *, claims: tuple[str, ...] = (),
                     buckets_changed: bool = False) -> T:
        self._check_open()
        assert self._loop and self._slots and self._writer
        await self._slots.acquire()
        fut: asyncio.Future[T] = self._loop.create_future()
        if buckets_changed:
            self._forget_buckets()

        def done(result: Any, error: BaseException | None) -> None:
            if buckets_changed:
                # On the loop, before any waiter runs, cancelled or not: no stale hit after this,
                # here or (through the shared generation) in any other process on the root.
                self._forget_buckets()
                self._shared_gen.bump()
            if fut.done():
                return   # the caller was cancelled; the op ran (or failed) regardless
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)

        # Claim and enqueue in one step of the loop: a cancellation after this point can no longer
        # stop the commit, so ObjectWriter.abort() must not unlink what it is about to publish.
        for vid in claims:
            self._claimed[vid] = self._claimed.get(vid, 0) + 1
        self._writer.submit(WriteOp(fn=fn, discard_on_failure=claims, done=done))
        return await fut

    def _deliver(self, batch: list[WriteOp]) -> None:
        # Writer thread: one hop to the loop for the whole batch.
        assert self._loop
        try:
            self._loop.call_soon_threadsafe(self._resolve, batch)
        except RuntimeError:
            log.warning("event loop closed before %d write results were delivered", len(batch))

    def _resolve(self, batch: list[WriteOp]) -> None:
        assert self._slots
        for op in batch:
            for vid in op.discard_on_failure:
                n = self._claimed.pop(vid, 1) - 1
                if n > 0:
                    self._claimed[vid] = n
            self._slots.release()
            op.done(op.result, op.error)

    def _is_claimed(self, vid: str) -> bool:
        return vid in self._claimed

    # --- buckets ------------------------------------------------------------------------------------

    def _forget_buckets(self) -> None:
        self._bucket_cache.clear()
        self._bucket_gen += 1

    def _bucket_generation(self) -> int:
        """This process's bucket generation, first catching up with other processes' writes."""
        shared = self._shared_gen.read()
        if shared != self._shared_seen:
            self._shared_seen = shared
            self._forget_buckets()
        return self._bucket_gen

    def _cached_bucket(self, name: str) -> BucketInfo | None:
        self._bucket_generation()
        info = self._bucket_cache.get(name)
        # A copy: callers own what they get, the cached entry stays as read.
        return None if info is None else dataclasses.replace(info, configs=dict(info.configs))

    def _remember_bucket(self, info: BucketInfo | None, gen: int) -> None:
        # Only what was read with no bucket write submitted or finished since: a read that raced
        # a write is used once and not kept.
        if info is not None and gen == self._bucket_generation():
            if len(self._bucket_cache) >= BUCKETS_CACHED_MAX:
                self._bucket_cache.clear()
            self._bucket_cache[info.name] = dataclasses.replace(info, configs=dict(info.configs))

    async def create_bucket(self, name: str, owner_id: str, region: str,
                            configs: dict[str, bytes] | None = None) -> BucketInfo:
        return await self._write(functools.partial(buckets.create_bucket, name=name,
                                                   owner_id=owner_id, region=region,
                                                   configs=configs),
                                 buckets_changed=True)

    async def get_bucket(self, name: str) -> BucketInfo | None:
        cached = self._cached_bucket(name)
        if cached is not None:
            return cached
        gen = self._bucket_gen     # _cached_bucket just caught up with the shared generation
        info = await self._read(functools.partial(buckets.get_bucket, name=name))
        self._remember_bucket(info, gen)
        return info

    async def list_buckets(self) -> list[BucketInfo]:
        return await self._read(buckets.list_buckets)

    async def delete_bucket(self, name: str) -> None:
        await self._write(functools.partial(buckets.delete_bucket, name=name),
                          buckets_changed=True)

    async def set_bucket_config(self, bucket: str, kind: str, value: bytes | None) -> None:
        await self._write(functools.partial(buckets.set_bucket_config, bucket=bucket, kind=kind,
                                            value=value), buckets_changed=True)

    # --- object data --------------------------------------------------------------------------------

    def begin_write(self, checksum_algos: Iterable[str] = (), *, inline: bool = True,
                    target: tuple[str, str, int | None] | None = None) -> ObjectWriter:
        """``inline=False``: always a tmp file (a segment of a multipart object). ``target``
        (bucket, key, declared size) is for cluster mode's fan-out; a local store ignores it."""
        self._check_open()
        assert self._io
        algos = normalize_algos(checksum_algos)
        new_sink: Callable[[str], DataSink]
        if self._ring is not None:
            new_sink = functools.partial(RingSink, self._ring, self._layout, self._io, algos)
        else:
            new_sink = functools.partial(PoolSink, self._layout, self._io, algos)
        return ObjectWriter(new_sink, self._is_claimed,
                            inline_max_bytes=self.inline_max_bytes if inline else -1,
                            algos=algos, pool=self._io)

    async def get_object(self, bucket: str, key: str,
                         version_id: str | None = None) -> ObjectMeta | None:
        return await self._read(functools.partial(objects.object_or_marker, bucket=bucket,
                                                  key=key, version_id=version_id))

    async def lookup_object(self, bucket: str, key: str, *, with_body: bool,
                            version_id: str | None = None,
                            ) -> tuple[BucketInfo | None, ObjectMeta | None, bytes | None]:
        """GetObject/HeadObject's reads in one read-pool hop: the bucket (from the cache when it
        is there), the key's current version (or ``version_id``; a delete marker when that is
        what the key's newest version is) and, with ``with_body``, the whole body when it is
        stored inline (None otherwise: the caller then uses open_reader)."""
        cached = self._cached_bucket(bucket)
        gen = self._bucket_gen     # _cached_bucket just caught up with the shared generation

        def one(conn: sqlite3.Connection) -> tuple[ObjectMeta | None, bytes | None]:
            if version_id is not None or not with_body:
                return objects.object_or_marker(conn, bucket, key, version_id), None
            meta, body = objects.current_object_with_body(conn, bucket, key)
            if meta is None:
                return objects.object_or_marker(conn, bucket, key, None), None
            if (with_body and body is None and meta is not None and meta.size > 0
                    and len(meta.segments) == 1 and meta.segments[0].inline
                    and meta.segments[0].size == meta.size):
                try:   # an inline body under another vid (a replica's copy, a metadata rewrite)
                    body = objects.read_inline(conn, meta.segments[0].vid, 0, meta.size)
                except StorageError:
                    # Not answered before authorisation: open_reader raises it again in order.
                    body = None
            return meta, body

        if cached is not None:
            # The usual case: the bucket is cached, the rest is one statement (no transaction).
            assert self._loop and self._reads
            self._check_open()
            if self._loop_conn is not None:
                # A primary-key lookup on a hot B-tree takes microseconds, far less than the hop
                # to a pool thread and back, which under load waits for the GIL: measured (4 KiB
                # GET, 16 connections) ~3,600 ops/s through the pool, ~6,300 on the loop. It never
                # waits for a lock (busy_timeout 0); RS3GW_LOOP_READS=off turns it off.
                try:
                    meta, body = one(self._loop_conn)
                    return cached, meta, body
                except sqlite3.OperationalError:
                    pass        # busy or locked: the pool waits for it instead
            meta, body = await self._loop.run_in_executor(self._reads.executor,
                                                          self._reads.call_one, one)
            return cached, meta, body

        def run(conn: sqlite3.Connection,
                ) -> tuple[BucketInfo | None, ObjectMeta | None, bytes | None]:
            info = buckets.get_bucket(conn, bucket)
            if info is None:
                return None, None, None
            return (info, *one(conn))
        info, meta, body = await self._read(run)
        self._remember_bucket(info, gen)
        return info, meta, body

    @staticmethod
    def body_reader(body: bytes, start: int, end_inclusive: int,
                    chunk_bytes: int = 1 << 20) -> AsyncIterator[bytes]:
        """A reader over [start, end_inclusive] of a body returned by lookup_object."""
        if start == 0 and end_inclusive == len(body) - 1:
            return InlineReader(body, chunk_bytes)   # the whole body: no copy
        return InlineReader(body[start:end_inclusive + 1], chunk_bytes)

    async def put_object(self, meta: ObjectMeta, data: WriteResult | None, *,
                         if_match: str | None = None,
                         if_none_match: bool = False) -> ObjectMeta | None:
        claims: tuple[str, ...] = ()
        if data is not None:
            meta.vid = data.vid
            meta.size = data.size
            if not meta.etag:
                meta.etag = data.md5_hex
            inline = data.inline is not None
            meta.segments = [Segment(data.vid, data.size, data.md5_hex,
                                     checksums_b64(data.checksums), inline)]
            # An inline body has no tmp file for the writer thread to publish or discard.
            claims = () if inline else (data.vid,)
        else:
            for seg in meta.segments:
                DataLayout.check_vid(seg.vid)
            if not meta.vid:
                meta.vid = new_vid()
        data_vid = data.vid if data is not None else None
        return await self._write(
            functools.partial(objects.put_object, meta=meta, new_vid=data_vid, if_match=if_match,
                              if_none_match=if_none_match,
                              inline=data.inline if data is not None else None), claims=claims)

    async def copy_data(self, src: ObjectMeta, start: int, end_inclusive: int,
                        checksum_algos: Iterable[str] = ()) -> WriteResult:
        """Bytes [start, end_inclusive] of ``src`` as a new write: inline if at most
        inline_max_bytes, else a tmp file (commit with put_object/put_part, or discard_write)."""
        algos = normalize_algos(checksum_algos)
        plan = plan_range(src, start, end_inclusive)
        if not any(p.inline for p in plan):
            return await self._io_call(copy_range_sync, self._layout, src, start, end_inclusive,
                                       algos, self.inline_max_bytes)
        data = await self._read_inline(src, start, end_inclusive)
        if len(data) <= HASH_ON_LOOP_MAX_BYTES:
            result = hash_inline(new_vid(), data, algos)
        else:
            result = await self._io_call(hash_inline, new_vid(), data, algos)
        if len(data) > self.inline_max_bytes:
            # Stored inline under a larger threshold than today's: the copy becomes a file.
            result = await self._materialize(result)
        return result

    async def _read_inline(self, meta: ObjectMeta, start: int, end_inclusive: int | None) -> bytes:
        plan = plan_range(meta, start, end_inclusive)
        if not all(p.inline for p in plan):
            # Never produced: inline bodies are single-segment objects, parts are files.
            raise StorageError(f"object {meta.key!r} mixes inline and file data")

        def run(conn: sqlite3.Connection) -> bytes:
            out = []
            for p in plan:
                got = objects.read_inline(conn, p.vid, p.offset, p.length)
                if got is None:
                    raise NoSuchKey(p.vid)    # replaced or deleted since `meta` was read
                out.append(got)
            return out[0] if len(out) == 1 else b"".join(out)
        return await self._read(run)

    async def _materialize(self, data: WriteResult) -> WriteResult:
        """Turn an inline WriteResult into a durable tmp file of the same vid (multipart parts
        are always files). Returns a WriteResult without the bytes."""
        assert data.inline is not None and self._loop and self._io
        fut = self._loop.run_in_executor(self._io, write_tmp_sync, self._layout, data.vid,
                                         data.inline)
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The file may still appear; remove it once written (in the pool, never on the loop).
            layout, io = self._layout, self._io
            fut.add_done_callback(
                lambda f: None if f.cancelled() or f.exception() is not None
                else io.submit(layout.discard_tmp, data.vid))
            raise
        return WriteResult(vid=data.vid, size=data.size, md5_hex=data.md5_hex,
                           checksums=dict(data.checksums))

    async def read_write(self, data: WriteResult,
                         chunk_bytes: int = 1 << 20) -> AsyncIterator[bytes]:
        """The bytes of a finished, not yet committed write (cluster mode forwards a part that
        arrived on one node to the node that owns its upload)."""
        if data.inline is not None:
            if data.inline:
                yield data.inline
            return
        path = self._layout.tmp_path(DataLayout.check_vid(data.vid))
        fd = await self._io_call(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            off = 0
            while off < data.size:
                chunk = await self._io_call(os.pread, fd, min(chunk_bytes, data.size - off), off)
                if not chunk:
                    raise StorageError(f"tmp file {data.vid} is shorter than its write")
                off += len(chunk)
                yield chunk
        finally:
            await self._io_call(os.close, fd)

    async def discard_write(self, data: WriteResult) -> None:
        """Remove the tmp file of a finished write (copy_data) that will not be committed."""
        if data.inline is not None:
            return      # no file behind it
        if self._is_claimed(data.vid):
            return      # a queued commit owns the file now
        path = self._layout.tmp_path(DataLayout.check_vid(data.vid))
        await self._io_call(_unlink_quiet, path)

    async def open_reader(self, meta: ObjectMeta, start: int = 0,
                          end_inclusive: int | None = None,
                          chunk_bytes: int = 1 << 20) -> AsyncIterator[bytes]:
        plan = plan_range(meta, start, end_inclusive)
        if any(p.inline for p in plan):
            # One read-pool hop reads the (sub)range; the reader then serves it from memory.
            return InlineReader(await self._read_inline(meta, start, end_inclusive), chunk_bytes)
        pieces = await self._io_call(open_pieces, self._layout, plan)
        assert self._io
        if self._ring is not None:
            # Chunks are the ring's buffer size; chunk_bytes applies to the threads path.
            return RingRangeReader(self._ring, self._io, pieces)
        return RangeReader(self._io, pieces, chunk_bytes)

    async def delete_object(self, bucket: str, key: str, version_id: str | None = None, *,
                            owner_id: str = "", bypass_governance: bool = False) -> DeleteResult:
        return await self._write(functools.partial(
            objects.delete_key, bucket=bucket, key=key, version_id=version_id, owner_id=owner_id,
            bypass_governance=bypass_governance))

    async def delete_objects(self, bucket: str, items: list[tuple[str, str | None]], *,
                             owner_id: str = "", bypass_governance: bool = False,
                             ) -> list[DeleteResult]:
        return await self._write(functools.partial(
            objects.delete_keys, bucket=bucket, items=list(items), owner_id=owner_id,
            bypass_governance=bypass_governance))

    async def delete_if_unchanged(self, bucket: str, key: str, version_id: str, etag: str,
                                  last_modified: float, *, current: bool, owner_id: str = "",
                                  ) -> DeleteResult | None:
        return await self._write(functools.partial(
            objects.delete_if_unchanged, bucket=bucket, key=key, version_id=version_id,
            etag=etag, last_modified=last_modified, current=current, owner_id=owner_id))

    async def set_object_tags(self, bucket: str, key: str, tags: dict[str, str],
                              version_id: str | None = None) -> ObjectMeta:
        return await self._write(functools.partial(objects.set_object_tags, bucket=bucket,
                                                   key=key, tags=dict(tags),
                                                   version_id=version_id))

    async def set_object_retention(self, bucket: str, key: str, version_id: str | None,
                                   mode: str | None, until_ms: int | None, *,
                                   bypass_governance: bool = False) -> ObjectMeta:
        return await self._write(functools.partial(
            objects.set_object_retention, bucket=bucket, key=key, version_id=version_id,
            mode=mode, until_ms=until_ms, bypass_governance=bypass_governance))

    async def set_object_legal_hold(self, bucket: str, key: str, version_id: str | None,
                                    on: bool) -> ObjectMeta:
        return await self._write(functools.partial(
            objects.set_object_legal_hold, bucket=bucket, key=key, version_id=version_id, on=on))

    # --- listing ------------------------------------------------------------------------------------

    async def list_objects(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                           after: str = "", max_keys: int = 1000) -> ListPage:
        def run(conn: sqlite3.Connection) -> ListPage:
            objects.require_bucket(conn, bucket)
            return listing.list_objects(conn, bucket, prefix, delimiter, after, max_keys)
        return await self._read(run)

    async def list_object_versions(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                                   key_marker: str = "", version_id_marker: str = "",
                                   max_keys: int = 1000,
                                   marker_order: bytes | None = None) -> VersionPage:
        def run(conn: sqlite3.Connection) -> VersionPage:
            objects.require_bucket(conn, bucket)
            return listing.list_versions(conn, bucket, prefix, delimiter, key_marker,
                                         version_id_marker, max_keys, marker_order)
        return await self._read(run)

    async def list_uploads(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                           key_marker: str = "", upload_id_marker: str = "",
                           max_uploads: int = 1000,
                           ) -> tuple[list[UploadInfo], list[str], bool]:
        def run(conn: sqlite3.Connection) -> tuple[list[UploadInfo], list[str], bool]:
            objects.require_bucket(conn, bucket)
            return listing.list_uploads(conn, bucket, prefix, delimiter, key_marker,
                                        upload_id_marker, max_uploads)
        return await self._read(run)

    # --- multipart ----------------------------------------------------------------------------------

    async def create_upload(self, info: UploadInfo) -> UploadInfo:
        return await self._write(functools.partial(multipart.create_upload, info=info))

    async def get_upload(self, bucket: str, upload_id: str) -> UploadInfo:
        return await self._read(functools.partial(multipart.get_upload, bucket=bucket,
                                                  upload_id=upload_id))

    async def put_part(self, bucket: str, upload_id: str, part_number: int, data: WriteResult,
                       checksums: dict[str, str]) -> PartInfo:
        materialized = data.inline is not None
        if materialized:
            # Parts stay files (only a last part can be this small): write it out now.
            data = await self._materialize(data)
        try:
            return await self._write(
                functools.partial(multipart.put_part, bucket=bucket, upload_id=upload_id,
                                  part_number=part_number, data=data, checksums=dict(checksums)),
                claims=(data.vid,))
        except BaseException:
            # The caller's ObjectWriter never saw this file: unless a queued commit owns it now,
            # it is ours to remove (in the pool; the writer thread may have done so already).
            if materialized and not self._is_claimed(data.vid) and self._io is not None:
                self._io.submit(self._layout.discard_tmp, data.vid)
            raise

    async def list_parts(self, bucket: str, upload_id: str, *, part_marker: int = 0,
                         max_parts: int = 1000) -> tuple[list[PartInfo], bool]:
        return await self._read(functools.partial(
            multipart.list_parts, bucket=bucket, upload_id=upload_id, part_marker=part_marker,
            max_parts=max_parts))

    async def complete_upload(self, bucket: str, upload_id: str, meta: ObjectMeta,
                              part_numbers: list[int], *, if_match: str | None = None,
                              if_none_match: bool = False) -> ObjectMeta:
        return await self._write(functools.partial(
            multipart.complete_upload, bucket=bucket, upload_id=upload_id, meta=meta,
            part_numbers=list(part_numbers), if_match=if_match, if_none_match=if_none_match))

    async def abort_upload(self, bucket: str, upload_id: str) -> None:
        await self._write(functools.partial(multipart.abort_upload, bucket=bucket,
                                            upload_id=upload_id))


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _implements_replica_store(store: LocalStore) -> ReplicaStore:
    return store    # mypy checks here that LocalStore keeps the whole protocol
