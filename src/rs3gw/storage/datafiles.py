"""Data files of the local engine: on-disk layout, streaming writer, range reader, range copy.

Layout under ``{root}/.rs3gw``: ``tmp/<vid>`` while being written, ``objects/<aa>/<bb>/<vid>`` once
committed, aa and bb two pairs of the vid's scrambled digits (``DataLayout.object_dir``). Files are
named by vid (see _VidSource), never by key. Everything here that touches the
disk runs in a worker thread; the async methods only hop to the pool.
"""
from __future__ import annotations

import asyncio
import base64
import errno
import itertools
import os
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rs3gw.storage.types import NoSuchKey, ObjectMeta, WriteResult

from .. import checksums

SUPPORTED_CHECKSUMS = frozenset({"crc32", "crc32c", "crc64nvme", "sha1", "sha256", "md5"})

# Chunks smaller than this are copied into a per-writer buffer instead of paying a thread hop each;
# the buffer is flushed (hashed + written in one hop) once it would pass COALESCE_FLUSH_BYTES.
# Measured in process (2 writers x 64 MiB in 64 KiB writes, MD5 + CRC32C, durable, io_uring):
# 64 KiB / 256 KiB -> 400-450 MB/s (a 64 KiB write skipped the buffer: one hop each);
# 512 KiB / 1 MiB -> 760 MB/s. Handing pieces to the hasher without waiting (hash-ahead) was
# measured too and lost 5-10%: the hop is cheap once pieces are 1 MiB.
COALESCE_CHUNK_MAX_BYTES = 512 * 1024
COALESCE_FLUSH_BYTES = 1024 * 1024
COPY_CHUNK_BYTES = 1 << 20
# Bodies up to this size end up in the metadata store instead of a data file (LocalStore's default).
# Measured with benchmarks/bench_small_objects.py: see the store's module docstring.
INLINE_MAX_BYTES = 64 * 1024
# An inline body is hashed on the event loop up to this size: measured, MD5 (+ SHA-256) of 16 KiB
# takes 27 (41) us, no more than the loop's own share of a hop to the pool; 64 KiB (~100-150 us)
# goes to the pool.
HASH_ON_LOOP_MAX_BYTES = 16 * 1024

_VID_RE = re.compile(r"[0-9a-f]{32}|t[0-9a-f]{32}")


# --- hashing --------------------------------------------------------------------------------------
def new_hasher(algos: Iterable[str]) -> Any:
    # The shared compiled hasher: MD5 + the checksums in one pass, GIL released on big buffers.
    return checksums.Hasher([a for a in algos if a != "md5"])


def normalize_algos(algos: Iterable[str]) -> tuple[str, ...]:
    seen: list[str] = []
    for a in algos:
        a = a.lower()
        if a not in SUPPORTED_CHECKSUMS:
            raise ValueError(f"unsupported checksum algorithm {a!r}")
        if a not in seen:
            seen.append(a)
    return tuple(seen)


def checksums_b64(raw: dict[str, bytes]) -> dict[str, str]:
    return {a: base64.b64encode(v).decode("ascii") for a, v in raw.items() if a != "md5"}


# --- layout and durability helpers ------------------------------------------------------------------

def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


class DataLayout:
    """Paths and file-level operations; all methods are blocking and run in worker threads."""

    def __init__(self, root: Path, durable: bool) -> None:
        self.base = root / ".rs3gw"
        self.tmp_dir = str(self.base / "tmp")
        self.objects_dir = str(self.base / "objects")
        self.durable = durable

    def prepare(self) -> None:
        for d in (self.base, Path(self.tmp_dir), Path(self.objects_dir)):
            d.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def check_vid(vid: str) -> str:
        # Segment vids can come from the S3 layer (metadata-only replace); never let one form a path.
        if not _VID_RE.fullmatch(vid):
            raise ValueError(f"invalid data file id {vid!r}")
        return vid

    def tmp_path(self, vid: str) -> str:
        return os.path.join(self.tmp_dir, self.check_vid(vid))

    def object_dir(self, vid: str) -> str:
        if vid[0] == "t":       # time-ordered ids (_VidSource): fan out by the scrambled digits
            return os.path.join(self.objects_dir, vid[17:19], vid[19:21])
        return os.path.join(self.objects_dir, vid[0:2], vid[2:4])

    def object_path(self, vid: str) -> str:
        return os.path.join(self.object_dir(self.check_vid(vid)), vid)

    def open_data(self, vid: str) -> int:
        """Open a committed data file for reading; committed data may still sit in tmp/ for the
        moment between the metadata commit and its rename, hence objects/ → tmp/ → objects/."""
        obj = self.object_path(vid)
        for path in (obj, self.tmp_path(vid), obj):
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
        raise NoSuchKey(vid)

    def _ensure_dir(self, path: str, touched: set[str]) -> None:
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        self._ensure_dir(parent, touched)
        try:
            os.mkdir(path)
        except FileExistsError:
            return
        # A new directory entry is durable only once its parent is fsynced.
        touched.add(parent)

    def publish(self, vid: str, touched: set[str]) -> bool:
        """Move a committed tmp file into objects/. Returns False if there was nothing to move
        (already moved, or gone). ``touched`` collects directories to fsync before forgetting it."""
        dest_dir = self.object_dir(self.check_vid(vid))
        self._ensure_dir(dest_dir, touched)
        try:
            os.rename(self.tmp_path(vid), os.path.join(dest_dir, vid))
        except FileNotFoundError:
            return False
        touched.add(dest_dir)
        touched.add(self.tmp_dir)
        return True

    def remove(self, vid: str, touched: set[str]) -> None:
        for path in (self.object_path(vid), self.tmp_path(vid)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            touched.add(os.path.dirname(path))

    def discard_tmp(self, vid: str) -> None:
        try:
            os.unlink(self.tmp_path(vid))
        except FileNotFoundError:
            pass

    def sync_dirs(self, dirs: Iterable[str]) -> None:
        if not self.durable:
            return
        for d in sorted(dirs, key=len, reverse=True):
            try:
                fsync_dir(d)
            except FileNotFoundError:
                continue

    def sweep_tmp(self) -> int:
        """Unlink every file in tmp/. Only call when no committed-but-unmoved vid is left there."""
        n = 0
        with os.scandir(self.tmp_dir) as it:
            for entry in it:
                try:
                    os.unlink(entry.path)
                    n += 1
                except FileNotFoundError:
                    continue
                except IsADirectoryError:
                    continue
        if n:
            self.sync_dirs([self.tmp_dir])
        return n


# --- writing ----------------------------------------------------------------------------------------

class _VidSource:
    """Data ids, as "t" + 32 lower-case hex digits (what _VID_RE accepts): the time in
    milliseconds (12 digits) and the low 16 bits of a per-process counter, so ids sort by when
    they were made, then the counter scrambled (times an odd constant, a bijection mod 2**64)
    and xored with 64 random bits drawn once per process (again in a forked child). Unique
    within a process by the counter, across processes and restarts by the random bits.

    Why ordered: ids are the keys of the metadata's inline_data, gc and renames b-trees. Random
    keys land each insert on its own leaf page, so every small PUT dirtied one more page of the
    WAL once those trees outgrew the page cache (measured: 16.1 -> 13.9 KB written per 4 KiB PUT
    over 23k new keys; a versioned bucket keeps every inline body and gains the most). The
    objects/ fan-out directories still spread: they are named by the scrambled digits
    (``DataLayout.object_dir``). Ids of the earlier form (32 hex digits, scrambled first) stay
    valid and keep their paths. Not os.urandom per id: getrandom releases the GIL, and on the
    event loop every release lets the metadata writer thread in first (measured: 3% of a
    worker's loop time under 4 KiB PUTs)."""

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._random = os.urandom(8).hex()
        self._random_n = int(self._random, 16)
        self._counter = itertools.count()

    def __call__(self) -> str:
        # next() on itertools.count is atomic under the GIL: safe from any thread.
        c = next(self._counter)
        n = ((c * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) ^ self._random_n
        return f"t{time.time_ns() // 1_000_000:012x}{c & 0xFFFF:04x}{n:016x}"


new_vid = _VidSource()


class _TmpFile:
    """A new tmp data file being hashed and written; blocking, used from one thread at a time."""

    def __init__(self, layout: DataLayout, algos: tuple[str, ...], vid: str | None = None) -> None:
        self.layout = layout
        self.vid = vid or new_vid()
        self.algos = algos
        self.size = 0
        self.hasher = new_hasher(algos)
        self.fd = -1

    def write(self, data: Any) -> None:
        if self.fd < 0:
            self.fd = os.open(self.layout.tmp_path(self.vid),
                              os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self.hasher.update(data)
        _write_all(self.fd, data)
        self.size += memoryview(data).nbytes

    def finish(self) -> WriteResult:
        self.write(b"")
        try:
            # Durability order: file data fsync, then the tmp directory entry, and only then may the
            # caller commit metadata that makes this vid visible.
            if self.layout.durable:
                os.fsync(self.fd)
        finally:
            self.close()
        if self.layout.durable:
            fsync_dir(self.layout.tmp_dir)
        d = self.hasher.digests()
        return WriteResult(vid=self.vid, size=self.size, md5_hex=d["md5"].hex(),
                           checksums={a: d[a] for a in self.algos})

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def discard(self) -> None:
        self.close()
        self.layout.discard_tmp(self.vid)


class PoolSink:
    """Threads backend: every hash and write of one object runs in one hop to the I/O pool."""

    def __init__(self, layout: DataLayout, pool: Executor, algos: tuple[str, ...],
                 vid: str) -> None:
        self._tmp = _TmpFile(layout, algos, vid)
        self._pool = pool
        self._inflight: Future[Any] | None = None
        self.vid = self._tmp.vid

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        cf = self._pool.submit(fn, *args)
        self._inflight = cf
        return await asyncio.wrap_future(cf)

    async def write(self, pending: bytearray, chunk: Any) -> None:
        await self._run(self._write_sync, pending, chunk)

    def _write_sync(self, pending: bytearray, chunk: Any) -> None:
        if pending:
            self._tmp.write(pending)
        self._tmp.write(chunk)

    async def finish(self, pending: bytearray) -> WriteResult:
        result: WriteResult = await self._run(self._finish_sync, pending)
        return result

    def _finish_sync(self, pending: bytearray) -> WriteResult:
        if pending:
            self._tmp.write(pending)
        return self._tmp.finish()

    async def abort(self, claimed: bool) -> None:
        cf = self._inflight
        if cf is not None and not cf.done():
            await asyncio.wait([asyncio.wrap_future(cf)])
        await self._run(self._tmp.close if claimed else self._tmp.discard)


class DataSink(Protocol):
    """Where an ObjectWriter's bytes go: PoolSink (threads) or directfiles.RingSink (io_uring)."""

    vid: str

    async def write(self, pending: bytearray, chunk: Any) -> None: ...
    async def finish(self, pending: bytearray) -> WriteResult: ...
    async def abort(self, claimed: bool) -> None: ...


class ObjectWriter:
    """Streams one object body into a tmp data file, or keeps it in memory while it is small.

    While the total stays within ``inline_max_bytes`` every chunk is copied into the writer's own
    buffer and the sink is not touched: no file is opened. finish() of such a write does no file I/O;
    its WriteResult carries the bytes (``inline``), which put_object stores in the metadata
    transaction. Once the total passes the threshold, what was buffered goes to the sink together
    with the chunk that crossed it, and the rest streams as before. One write at a time: await each
    call."""

    def __init__(self, new_sink: Callable[[str], DataSink], is_claimed: Callable[[str], bool], *,
                 inline_max_bytes: int = 0, algos: tuple[str, ...] = (),
                 pool: Executor | None = None) -> None:
        # The sink (a tmp file, its hasher) is made on first use: most small bodies end up
        # inline and never need one.
        self._new_sink = new_sink
        self._sink: DataSink | None = None      # made by _open_sink; None: nothing on disk
        self._is_claimed = is_claimed
        self._buf = bytearray()
        self._state = "open"
        self._inline_max = inline_max_bytes
        self._algos = algos
        self._pool = pool
        self.vid: str = new_vid()
        self.size: int = 0

    def _open_sink(self) -> DataSink:
        if self._sink is None:
            self._sink = self._new_sink(self.vid)
        return self._sink

    async def write(self, chunk: bytes | memoryview | bytearray) -> None:
        if self._state != "open":
            raise ValueError(f"write on a {self._state} ObjectWriter")
        n = memoryview(chunk).nbytes
        if n == 0:
            return
        if self._sink is None and self.size + n <= self._inline_max:
            # Still small enough to end up inline: copied, the caller may reuse its buffer.
            self._buf += chunk
            self.size += n
            return
        if n < COALESCE_CHUNK_MAX_BYTES and len(self._buf) + n <= COALESCE_FLUSH_BYTES:
            # Copied, so the caller may reuse its buffer as soon as we return.
            self._buf += chunk
            self.size += n
            return
        pending, self._buf = self._buf, bytearray()
        # The sink reads `chunk` until this await completes; the caller awaits it, so its buffer
        # stays untouched until then. After cancellation abort() waits for the sink first.
        await self._open_sink().write(pending, chunk)
        self.size += n

    async def finish(self) -> WriteResult:
        if self._state != "open":
            raise ValueError(f"finish on a {self._state} ObjectWriter")
        pending, self._buf = self._buf, bytearray()
        if self._sink is None and self.size <= self._inline_max:
            result = await self._finish_inline(bytes(pending))
        else:
            result = await self._open_sink().finish(pending)
        self._state = "finished"
        return result

    async def _finish_inline(self, data: bytes) -> WriteResult:
        if len(data) <= HASH_ON_LOOP_MAX_BYTES or self._pool is None:
            result = hash_inline(self.vid, data, self._algos)
        else:
            # `data` is our own immutable copy: nothing else touches it while the pool hashes it.
            result = await asyncio.wrap_future(
                self._pool.submit(hash_inline, self.vid, data, self._algos))
        return result

    async def abort(self) -> None:
        if self._state == "aborted":
            return
        self._state = "aborted"
        self._buf = bytearray()
        if self._sink is None:
            return      # never opened a file: nothing to drain or remove
        # A commit holding this vid is queued: the writer thread owns the file now, keep it.
        await self._sink.abort(self._is_claimed(self.vid))


def hash_inline(vid: str, data: bytes, algos: tuple[str, ...]) -> WriteResult:
    """The WriteResult of a body kept in memory: digests, and the bytes themselves."""
    hasher = new_hasher(algos)
    hasher.update(data)
    d = hasher.digests()
    return WriteResult(vid=vid, size=len(data), md5_hex=d["md5"].hex(),
                       checksums={a: d[a] for a in algos}, inline=data)


def write_tmp_sync(layout: DataLayout, vid: str, data: bytes) -> None:
    """Write ``data`` as tmp/<vid>, durably when the layout is (file, then the tmp directory entry:
    the caller commits metadata naming the vid only after this returned). Removes it on failure."""
    path = layout.tmp_path(vid)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            _write_all(fd, data)
            if layout.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if layout.durable:
            fsync_dir(layout.tmp_dir)
    except BaseException:
        layout.discard_tmp(vid)
        raise


def copy_range_sync(layout: DataLayout, src: ObjectMeta, start: int, end_inclusive: int,
                    algos: tuple[str, ...], inline_max_bytes: int = 0) -> WriteResult:
    """Copy bytes [start, end_inclusive] of an object stored in data files into a new tmp file,
    hashing as it goes; a range of at most ``inline_max_bytes`` comes back inline instead."""
    pieces = open_pieces(layout, plan_range(src, start, end_inclusive))
    if end_inclusive - start + 1 <= inline_max_bytes:
        try:
            data = b"".join(_pread_exact(fd, length, offset) for fd, offset, length in pieces)
        finally:
            for fd, _, _ in pieces:
                os.close(fd)
        return hash_inline(new_vid(), data, algos)
    tmp = _TmpFile(layout, algos)
    try:
        for fd, offset, length in pieces:
            while length:
                n = min(length, COPY_CHUNK_BYTES)
                data = _pread_exact(fd, n, offset)
                tmp.write(data)
                offset += n
                length -= n
        return tmp.finish()
    except BaseException:
        tmp.discard()
        raise
    finally:
        for fd, _, _ in pieces:
            os.close(fd)


# --- reading ----------------------------------------------------------------------------------------

@dataclass
class _Piece:
    vid: str
    offset: int
    length: int
    inline: bool = False    # bytes in the metadata store (objects.read_inline), not in a file


def plan_range(meta: ObjectMeta, start: int, end_inclusive: int | None) -> list[_Piece]:
    end = meta.size - 1 if end_inclusive is None else end_inclusive
    if start < 0 or end >= meta.size or (start > end + 1):
        raise ValueError(f"range {start}-{end} outside object of {meta.size} bytes")
    pieces: list[_Piece] = []
    pos = 0
    for seg in meta.segments:
        seg_end = pos + seg.size - 1
        if seg.size and seg_end >= start and pos <= end:
            lo = max(start, pos)
            hi = min(end, seg_end)
            pieces.append(_Piece(seg.vid, lo - pos, hi - lo + 1, seg.inline))
        pos += seg.size
    if pos != meta.size:
        raise ValueError(f"segments of {meta.key!r} add up to {pos}, not {meta.size}")
    return pieces


def open_pieces(layout: DataLayout, plan: list[_Piece]) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    try:
        for p in plan:
            if p.inline:
                raise ValueError(f"data {p.vid} is inline, not a file")
            out.append((layout.open_data(p.vid), p.offset, p.length))
    except BaseException:
        for fd, _, _ in out:
            os.close(fd)
        raise
    return out


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    if len(data) == n:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.pread(fd, n - got, offset + got)
        if not more:
            raise OSError(errno.EIO, f"data file shorter than its metadata ({got} < {n} bytes)")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class InlineReader:
    """Async iterator over bytes already read from the metadata store (an inline object's range):
    the read happened when the reader was opened, so later overwrites cannot affect it."""

    def __init__(self, data: bytes, chunk_bytes: int) -> None:
        self._data = data
        self._pos = 0
        self._chunk = max(1, chunk_bytes)

    def __aiter__(self) -> InlineReader:
        return self

    async def __anext__(self) -> bytes:
        if self._pos >= len(self._data):
            self._data = b""
            raise StopAsyncIteration
        if self._pos == 0 and len(self._data) <= self._chunk:
            self._pos = len(self._data)
            return self._data
        piece = self._data[self._pos:self._pos + self._chunk]
        self._pos += len(piece)
        return piece

    async def aclose(self) -> None:
        self._pos = len(self._data)
        self._data = b""


class RangeReader:
    """Async iterator over a byte range of an object. Holds the open fds from construction, so an
    unlink by a concurrent overwrite or delete cannot cut a read short (the inode lives on)."""

    def __init__(self, pool: Executor, pieces: list[tuple[int, int, int]], chunk_bytes: int) -> None:
        self._pool = pool
        self._pieces = [list(p) for p in pieces]
        self._fds = [p[0] for p in pieces]
        self._idx = 0
        self._chunk = max(1, chunk_bytes)
        self._inflight: Future[Any] | None = None

    def __aiter__(self) -> RangeReader:
        return self

    def file_pieces(self) -> list[tuple[int, int, int]] | None:
        """(fd, offset, length) of the whole range for a kernel-side sender (rs3gw.http.sendfile),
        or None once reading began. The fds stay ours: aclose() closes them."""
        if self._inflight is not None or self._idx or not self._fds:
            return None
        return [(p[0], p[1], p[2]) for p in self._pieces]

    async def __anext__(self) -> bytes:
        if self._idx >= len(self._pieces):
            await self.aclose()
            raise StopAsyncIteration
        cf = self._pool.submit(self._read_sync)
        self._inflight = cf
        data: bytes = await asyncio.wrap_future(cf)
        return data

    def _read_sync(self) -> bytes:
        want = self._chunk
        out: list[bytes] = []
        while want and self._idx < len(self._pieces):
            piece = self._pieces[self._idx]
            fd, offset, remaining = piece
            n = min(want, remaining)
            out.append(_pread_exact(fd, n, offset))
            piece[1] += n
            piece[2] -= n
            want -= n
            if piece[2] == 0:
                self._idx += 1
        if self._idx >= len(self._pieces):
            # Close in this hop: closing the last fd of an unlinked file frees its blocks (real I/O).
            self._close_sync()
        return out[0] if len(out) == 1 else b"".join(out)

    def _close_sync(self) -> None:
        fds, self._fds = self._fds, []
        self._idx = len(self._pieces)
        for fd in fds:
            os.close(fd)

    async def aclose(self) -> None:
        cf = self._inflight
        if cf is not None and not cf.done():
            await asyncio.wait([asyncio.wrap_future(cf)])
        if self._fds:
            await asyncio.wrap_future(self._pool.submit(self._close_sync))

    def __del__(self) -> None:
        # Last resort for a reader dropped without aclose(); normal paths close in a worker thread.
        for fd in getattr(self, "_fds", ()):
            try:
                os.close(fd)
            except OSError:
                pass
