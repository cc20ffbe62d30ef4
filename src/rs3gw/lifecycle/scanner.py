"""The lifecycle scanner: executes every bucket's lifecycle rules through the ObjectStore it is
given (the node's LocalStore, or in cluster mode the ClusterStore, whose deletes replicate).

A pass walks the buckets in name order. In a bucket with a configuration it reads every version
and delete marker (ListObjectVersions, BATCH_MAX entries a page) and then, if a rule aborts
uploads, every multipart upload (ListMultipartUploads). What it does, as S3 does it:

- a current version due under Expiration Days/Date: DeleteObject (no version id), made
  conditional on that version still being current (``delete_current_if``). Unversioned, the
  object goes; Enabled, a delete marker is added; Suspended, a null marker replaces the null
  version (which goes for good) and other versions stay.
- a noncurrent version (or delete marker) due under NoncurrentVersionExpiration, counting its
  noncurrent age from its successor's creation and keeping the NewerNoncurrentVersions newest:
  DeleteObject with its version id.
- a delete marker that is its key's only version (an expired object delete marker) under
  ExpiredObjectDeleteMarker, or once as old as an Expiration Days rule says: deleted by its id.
- an incomplete multipart upload DaysAfterInitiation old: AbortMultipartUpload.

Idempotence: every action names what it acts on (a version id, an upload id, or the version
that must still be current), so doing a batch again after a crash finds its work done: no second
delete marker, never a newer version. A version that cannot be deleted (object lock: storage
refuses with a StorageError) is counted as skipped and the scan goes on; a later pass retries.

Progress: pages are cut at key boundaries, and after each batch the cursor (bucket, phase, last
key done) is saved durably (cursor.py), so a restart continues the pass where it stopped. A key
with more versions than a page is streamed page by page and only counted done at its end.

Pace: at most ``rate`` entries (versions, markers, uploads) looked at per second, sleeping
between batches so client traffic keeps the loop and the metadata writer; passes start
``interval_s`` apart at most once each finished. ``acts_for(bucket, key)`` says whether this node
acts on a key (single node: always; the cluster gives exactly one live replica each key);
``clock`` is the wall clock lifecycle ages are measured with (injected by tests).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from rs3gw.lifecycle.cursor import Cursor, CursorFile
from rs3gw.lifecycle.rules import CONFIG_KIND, Configuration
from rs3gw.storage import (
    NULL_VERSION,
    VERSIONING,
    BucketInfo,
    NoSuchBucket,
    NoSuchUpload,
    ObjectStore,
    StorageError,
    UploadInfo,
    VersionEntry,
)

log = logging.getLogger("rs3gw.lifecycle")

T = TypeVar("T")

# Entries (versions, markers, uploads) read and judged per batch; the cursor is saved after each.
BATCH_MAX = 256

ActsFor = Callable[[str, str], bool]
# (event, count): "expired", "noncurrent_deleted", "marker_removed", "upload_aborted",
# "skipped", "pass" (metrics; rs3gw.server counts them in Prometheus).
Observe = Callable[[str, int], None]


def every_key(bucket: str, key: str) -> bool:
    """The single-node predicate: this node acts on every key."""
    return True


@dataclass
class PassStats:
    """What the scanner did since it was built (tests read it; metrics get each event as it
    happens): ``events`` counts the Observe events."""
    passes: int = 0
    examined: int = 0
    events: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, event: str) -> int:
        return self.events.get(event, 0)


@dataclass
class _KeyState:
    """Carried along one key's versions, newest first."""
    seen: int = 0                       # versions of the key judged so far
    newer_modified: float = 0.0         # Last-Modified of the next newer version
    newer_noncurrent: int = 0           # noncurrent versions (not markers) newer than this one
    last_kept: str | None = None        # version id of the last entry still there


class Scanner:
    def __init__(self, store: ObjectStore, cursor: CursorFile, *, day_s: float = 86400.0,
                 rate: int = 1000, interval_s: float = 3600.0, acts_for: ActsFor = every_key,
                 clock: Callable[[], float] = time.time, observe: Observe | None = None,
                 batch: int = BATCH_MAX) -> None:
        if rate <= 0 or day_s <= 0 or interval_s <= 0 or batch <= 1:
            raise ValueError("day_s, rate and interval_s must be positive, batch above 1")
        self.store = store
        self.cursor_file = cursor
        self.day_s = day_s
        self.rate = rate
        self.interval_s = interval_s
        self.acts_for = acts_for
        self.clock = clock
        self.batch = max(2, min(batch, rate))       # a batch is about a second's work at most
        self.stats = PassStats()
        self._observe = observe
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cursor = Cursor()

    # --- running ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def close(self) -> None:
        """Stop between two actions; the cursor names the last batch done."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        while not self._stop.is_set():
            started = asyncio.get_running_loop().time()
            try:
                await self.run_pass()
            except _Stopped:
                return
            except Exception:
                # A pass that fails (the store closing under it, an unexpected error) is retried
                # at the next interval from its saved cursor; the gateway keeps serving.
                log.exception("lifecycle: pass failed; retried in %.1fs", self.interval_s)
            wait = self.interval_s - (asyncio.get_running_loop().time() - started)
            await self._sleep(max(wait, 0.0))

    async def run_pass(self) -> None:
        """One whole pass, or the rest of the one the saved cursor is in."""
        loop = asyncio.get_running_loop()
        self._cursor = await loop.run_in_executor(None, self.cursor_file.load)
        resume = self._cursor
        for info in sorted(await self.store.list_buckets(), key=lambda b: b.name):
            if resume.bucket is not None and info.name < resume.bucket:
                continue
            raw = info.configs.get(CONFIG_KIND)
            if raw is None:
                continue
            cfg = Configuration.from_json(bytes(raw))
            resumed = resume.bucket == info.name
            try:
                if cfg.acts_on_versions and not (resumed and resume.phase == "uploads"):
                    await self._versions(info, cfg, resume.after if resumed else "")
                    resumed = False
                if cfg.aborts_uploads:
                    await self._uploads(info, cfg, resume.after if resumed else "")
            except NoSuchBucket:
                continue            # deleted during the pass: nothing left to do there
        done = Cursor(passes=self._cursor.passes + 1)
        await self._save(done)
        self.stats.passes += 1
        self._count("pass")

    # --- versions -----------------------------------------------------------------------------

    async def _versions(self, info: BucketInfo, cfg: Configuration, after: str) -> None:
        """Every key after ``after``, a page at a time; each page cut back to whole keys."""
        state = _versioning_state(info)
        while True:
            self._check_stop()
            t0 = asyncio.get_running_loop().time()
            page = await self.store.list_object_versions(info.name, key_marker=after,
                                                         max_keys=self.batch)
            groups = _by_key(page.entries)
            if not groups:
                return
            if page.is_truncated and len(groups) == 1:
                # One key fills the page: stream it, and count it done at its end.
                await self._stream_key(info, cfg, state, after, groups[0][0].key)
                done = groups[0][0].key
            else:
                if page.is_truncated:
                    groups.pop()        # may go on in the next page: listed again from its start
                now = self.clock()
                for versions in groups:
                    self._check_stop()
                    await self._key(info, cfg, state, versions, _KeyState(), True, now)
                    self._examined(len(versions))
                done = groups[-1][0].key
            await self._save(Cursor(info.name, "versions", done, self._cursor.passes))
            if not page.is_truncated:
                return
            after = done
            await self._pace(len(page.entries), t0)

    async def _stream_key(self, info: BucketInfo, cfg: Configuration, state: str | None,
                          before: str, key: str) -> None:
        ks = _KeyState()
        marker, version_marker = before, ""      # the key's first version
        last_look: tuple[str, str, str] | None = None
        while True:
            self._check_stop()
            t0 = asyncio.get_running_loop().time()
            page = await self.store.list_object_versions(
                info.name, key_marker=marker, version_id_marker=version_marker,
                max_keys=self.batch)
            mine = [e for e in page.entries if e.key == key]
            if not mine:
                return
            look = (marker, version_marker, mine[0].version_id)
            if look == last_look:
                # Everything of the last page was acted on, yet it is listed again from the same
                # place: the store did not remove it. Leave the key to the next pass.
                log.warning("lifecycle: %s/%s: versions listed again after their deletion",
                            info.name, key)
                return
            last_look = look
            await self._key(info, cfg, state, mine, ks, False, self.clock())
            self._examined(len(mine))
            if len(mine) < len(page.entries) or not page.is_truncated:
                return
            if ks.last_kept is not None:
                # Resume after the last version still there: one we deleted names no place.
                marker, version_marker = key, ks.last_kept
            await self._pace(len(mine), t0)

    async def _key(self, info: BucketInfo, cfg: Configuration, state: str | None,
                   versions: list[VersionEntry], ks: _KeyState, whole: bool, now: float) -> None:
        """Judge ``versions`` of one key, newest first, continuing ``ks``; ``whole``: these are
        all the key's versions."""
        key = versions[0].key
        if not self.acts_for(info.name, key):
            ks.seen += len(versions)
            ks.last_kept = versions[-1].version_id
            return
        for v in versions:
            current = ks.seen == 0 and v.is_latest
            ks.seen += 1
            gone = False
            if current and v.delete_marker:
                if whole and len(versions) == 1 and cfg.sole_marker_expired(
                        key, v.last_modified, self.day_s, now):
                    gone = await self._delete(info, v, False, "marker_removed")
            elif current:
                tags = await self._tags(info, cfg, v)
                expiry = cfg.current_expiry(key, v.size, tags, v.last_modified, self.day_s)
                if expiry is not None and expiry[0] <= now:
                    expired = await self._delete(info, v, True, "expired")
                    # Unversioned, or the null version of a Suspended bucket: gone for good;
                    # else it stays under the new marker, noncurrent from now on.
                    gone = expired and (state is None or (state == "Suspended"
                                                          and v.version_id == NULL_VERSION))
                    if expired and not gone:
                        ks.newer_noncurrent += 1
            else:
                tags = None if v.delete_marker else await self._tags(info, cfg, v)
                if cfg.noncurrent_expired(key, v.size, tags, v.delete_marker, ks.newer_modified,
                                          ks.newer_noncurrent, self.day_s, now):
                    gone = await self._delete(info, v, False, "noncurrent_deleted")
                if not v.delete_marker:
                    ks.newer_noncurrent += 1
            if not gone:
                ks.last_kept = v.version_id
            ks.newer_modified = v.last_modified     # when the next older one became noncurrent

    async def _tags(self, info: BucketInfo, cfg: Configuration,
                    v: VersionEntry) -> dict[str, str] | None:
        """The version's tags, read only when a rule covering its key filters on tags."""
        if not cfg.needs_tags(v.key):
            return None
        try:
            meta = await self.store.get_object(info.name, v.key, v.version_id)
        except NoSuchBucket:
            raise
        except StorageError:
            return None
        return dict(meta.tags) if meta is not None else None

    async def _delete(self, info: BucketInfo, v: VersionEntry, current: bool, event: str) -> bool:
        """Delete ``v`` as listed (``current``: as DeleteObject without a version id); True if
        this did it."""
        try:
            done = await self.store.delete_if_unchanged(
                info.name, v.key, v.version_id, v.etag, v.last_modified, current=current,
                owner_id=info.owner_id)
        except NoSuchBucket:
            raise
        except StorageError as e:
            self._skipped(event, e)
            return False
        if done is None:
            return False        # changed since it was listed: not ours to judge any more
        self._count(event)
        return True

    # --- multipart uploads --------------------------------------------------------------------

    async def _uploads(self, info: BucketInfo, cfg: Configuration, after: str) -> None:
        while True:
            self._check_stop()
            t0 = asyncio.get_running_loop().time()
            uploads, _, truncated = await self.store.list_uploads(info.name, key_marker=after,
                                                                  max_uploads=self.batch)
            groups = _by_key(uploads)
            if not groups:
                break
            if truncated and len(groups) == 1:
                await self._stream_uploads(info, cfg, after, groups[0][0].key)
            else:
                if truncated:
                    groups.pop()
                now = self.clock()
                for ups in groups:
                    for up in ups:
                        await self._upload(info, cfg, up, now)
                    self._examined(len(ups))
            done = groups[-1][0].key
            await self._save(Cursor(info.name, "uploads", done, self._cursor.passes))
            if not truncated:
                break
            after = done
            await self._pace(len(uploads), t0)

    async def _stream_uploads(self, info: BucketInfo, cfg: Configuration, before: str,
                              key: str) -> None:
        marker, upload_marker = before, ""
        last_look: tuple[str, str, str] | None = None
        while True:
            self._check_stop()
            t0 = asyncio.get_running_loop().time()
            uploads, _, truncated = await self.store.list_uploads(
                info.name, key_marker=marker, upload_id_marker=upload_marker,
                max_uploads=self.batch)
            mine = [u for u in uploads if u.key == key]
            if not mine:
                return
            look = (marker, upload_marker, mine[0].upload_id)
            if look == last_look:
                return          # as in _stream_key: no progress, the next pass tries again
            last_look = look
            now = self.clock()
            kept = [u.upload_id for u in mine if not await self._upload(info, cfg, u, now)]
            self._examined(len(mine))
            if len(mine) < len(uploads) or not truncated:
                return
            if kept:
                marker, upload_marker = key, kept[-1]
            await self._pace(len(mine), t0)

    async def _upload(self, info: BucketInfo, cfg: Configuration, up: UploadInfo,
                      now: float) -> bool:
        """True if the upload is gone (aborted now, or completed or aborted before us)."""
        if not self.acts_for(info.name, up.key):
            return False
        when = cfg.upload_abort(up.key, up.initiated, self.day_s)
        if when is None or when[0] > now:
            return False
        try:
            await self.store.abort_upload(info.name, up.upload_id)
        except NoSuchUpload:
            return True
        except NoSuchBucket:
            raise
        except StorageError as e:
            self._skipped("upload_aborted", e)
            return False
        self._count("upload_aborted")
        return True

    # --- helpers ------------------------------------------------------------------------------

    def _skipped(self, event: str, e: StorageError) -> None:
        """A refusal by the store (a locked version, replicas out of reach): counted, and the
        scan goes on; the next pass tries again."""
        self._count("skipped")
        log.debug("lifecycle: %s skipped: %s", event, e)

    def _examined(self, n: int) -> None:
        self.stats.examined += n

    def _count(self, event: str, n: int = 1) -> None:
        self.stats.events[event] = self.stats.events.get(event, 0) + n
        if self._observe is not None:
            self._observe(event, n)

    async def _save(self, cursor: Cursor) -> None:
        self._cursor = cursor
        await asyncio.get_running_loop().run_in_executor(None, self.cursor_file.save, cursor)

    async def _pace(self, n: int, started: float) -> None:
        """Hold the pace: ``n`` entries took at least n/rate seconds since ``started``. Always
        yields to the loop between batches, even when behind."""
        delay = n / self.rate - (asyncio.get_running_loop().time() - started)
        await self._sleep(max(delay, 0.0))
        self._check_stop()

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _Stopped


class _Stopped(Exception):
    """close() was called: the pass ends between two actions."""


def _versioning_state(info: BucketInfo) -> str | None:
    raw = info.configs.get(VERSIONING)
    return None if raw is None else bytes(raw).decode()


E = TypeVar("E", VersionEntry, UploadInfo)


def _by_key(entries: list[E]) -> list[list[E]]:
    groups: list[list[E]] = []
    for e in entries:
        if groups and groups[-1][0].key == e.key:
            groups[-1].append(e)
        else:
            groups.append([e])
    return groups
