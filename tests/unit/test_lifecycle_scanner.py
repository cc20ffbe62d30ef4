"""The lifecycle scanner against a real LocalStore on a temp dir, with an injected clock: every
action (expire current versions unversioned, Enabled and Suspended; noncurrent versions with the
newer ones kept; sole delete markers; incomplete uploads), filters, the acts_for predicate, a
refused (locked) version, and a crash between batches then a resume that skips nothing and does
nothing twice."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rs3gw.lifecycle import Configuration, Cursor, CursorFile, Scanner
from rs3gw.lifecycle.rules import CONFIG_KIND, Expiration, Filter, NoncurrentExpiration, Rule
from rs3gw.storage import (
    VERSIONING,
    DeleteResult,
    LocalStore,
    ObjectMeta,
    Segment,
    StorageError,
    UploadInfo,
)

DAY_S = 10.0                 # a lifecycle day of 10 s: objects written now are due in 2-3 days
LATER = 5 * DAY_S            # how far the injected clock runs ahead to make them due


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def run(tmp_path: Path, body: Callable[[LocalStore], Awaitable[None]]) -> None:
    async def main() -> None:
        store = LocalStore(tmp_path / "root", durable=False, inline_max_bytes=64)
        await store.open()
        try:
            await body(store)
        finally:
            await store.close()
    asyncio.run(main())


async def put(store: LocalStore, bucket: str, key: str, body: bytes = b"x",
              tags: dict[str, str] | None = None) -> ObjectMeta:
    w = store.begin_write()
    await w.write(body)
    data = await w.finish()
    meta = ObjectMeta(bucket=bucket, key=key, vid="", size=0, etag="", last_modified=0.0,
                      segments=[Segment(data.vid, data.size, data.md5_hex)], owner_id="o",
                      tags=dict(tags or {}))
    await store.put_object(meta, data)
    return meta


async def bucket(store: LocalStore, name: str, *rules: Rule, versioning: str | None = None) -> str:
    await store.create_bucket(name, "owner", "us-east-1")
    if versioning:
        await store.set_bucket_config(name, VERSIONING, versioning.encode())
    await store.set_bucket_config(name, CONFIG_KIND, Configuration(rules).to_json())
    return name


async def versions(store: LocalStore, name: str) -> list[tuple[str, str, bool, bool]]:
    """(key, version id, is latest, is a marker) of every version, in listing order."""
    page = await store.list_object_versions(name, max_keys=10000)
    return [(e.key, e.version_id, e.is_latest, e.delete_marker) for e in page.entries]


def scanner(store: Any, tmp_path: Path, clock: Clock, **kw: Any) -> Scanner:
    kw.setdefault("rate", 1_000_000)
    return Scanner(store, CursorFile(tmp_path / "cursor.json", durable=False), day_s=DAY_S,
                   interval_s=0.05, clock=clock, **kw)


def expire(days: int = 1, prefix: str | None = None, **filt: Any) -> Rule:
    return Rule(f"exp-{prefix}-{days}", True, Filter(prefix=prefix, **filt), Expiration(days=days))


# --- current versions ---------------------------------------------------------------------------

def test_unversioned_objects_expire_once_due(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        b = await bucket(store, "b", expire(2, "old/"))
        for k in ("old/a", "old/b", "keep/c"):
            await put(store, b, k)
        clock = Clock()
        s = scanner(store, tmp_path, clock)
        await s.run_pass()
        assert s.stats["expired"] == 0 and len(await versions(store, b)) == 3   # not due yet
        clock.offset = LATER
        await s.run_pass()
        assert [v[0] for v in await versions(store, b)] == ["keep/c"]
        assert s.stats["expired"] == 2 and s.stats.passes == 2
    run(tmp_path, body)


def test_enabled_bucket_gets_one_delete_marker_however_often_it_runs(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        b = await bucket(store, "b", expire(1), versioning="Enabled")
        v1 = (await put(store, b, "k")).version_id
        clock = Clock()
        clock.offset = LATER
        s = scanner(store, tmp_path, clock)
        for _ in range(3):
            await s.run_pass()
        got = await versions(store, b)
        assert len(got) == 2 and got[0][2:] == (True, True) and got[1][1:] == (v1, False, False)
        assert s.stats["expired"] == 1
        assert await store.get_object(b, "k", v1) is not None       # the data stays, noncurrent
    run(tmp_path, body)


def test_suspended_bucket_replaces_the_null_version_with_a_null_marker(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        b = await bucket(store, "b", expire(1), versioning="Enabled")
        kept = (await put(store, b, "k", b"versioned")).version_id
        await store.set_bucket_config(b, VERSIONING, b"Suspended")
        await put(store, b, "k", b"null one")
        clock = Clock()
        clock.offset = LATER
        await scanner(store, tmp_path, clock).run_pass()
        assert await versions(store, b) == [("k", "null", True, True), ("k", kept, False, False)]
    run(tmp_path, body)


def test_filters_by_tag_and_size(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        b = await bucket(store, "b", expire(1, tags=(("class", "temp"),)),
                         expire(1, "big/", size_gt=4))
        await put(store, b, "t1", tags={"class": "temp", "x": "y"})
        await put(store, b, "t2", tags={"class": "keep"})
        await put(store, b, "big/small", b"abc")
        await put(store, b, "big/large", b"abcdefgh")
        clock = Clock()
        clock.offset = LATER
        await scanner(store, tmp_path, clock).run_pass()
        assert [v[0] for v in await versions(store, b)] == ["big/small", "t2"]
    run(tmp_path, body)


def test_a_disabled_rule_and_a_bucket_without_rules_are_left_alone(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        b = await bucket(store, "b", Rule("off", False, Filter(), Expiration(days=1)))
        await store.create_bucket("plain", "owner", "us-east-1")
        await put(store, b, "k")
        await put(store, "plain", "k")
        clock = Clock()
        clock.offset = LATER
        await scanner(store, tmp_path, clock).run_pass()
        assert len(await versions(store, b)) == 1 and len(await versions(store, "plain")) == 1
    run(tmp_path, body)


def test_a_date_rule_expires_everything_it_covers_once_the_date_passed(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        midnight = (time.time() // 86400) * 86400
        b = await bucket(store, "b", Rule("d", True, Filter(prefix="p"),
                                          Expiration(date=midnight + 86400)))
        await put(store, b, "p1")
        await put(store, b, "q1")
        clock = Clock()
        await scanner(store, tmp_path, clock).run_pass()
        assert len(await versions(store, b)) == 2
        clock.offset = 86400
        await scanner(store, tmp_path, clock).run_pass()
        assert [v[0] for v in await versions(store, b)] == ["q1"]
    run(tmp_path, body)


# --- noncurrent versions and markers ------------------------------------------------------------

@pytest.mark.parametrize("newer,batch", [(None, 256), (2, 256), (2, 4), (None, 3)])
def test_noncurrent_versions_go_keeping_the_newer_ones(tmp_path: Path, newer: int | None,
                                                        batch: int) -> None:
    """batch 3 and 4: the key has more versions than a page, so it is streamed page by page."""
    async def body(store: LocalStore) -> None:
        rule = Rule("nc", True, Filter(), noncurrent=NoncurrentExpiration(1, newer))
        b = await bucket(store, "b", rule, versioning="Enabled")
        ids = [(await put(store, b, "k", f"v{i}".encode())).version_id for i in range(10)]
        await put(store, b, "other")
        clock = Clock()
        s = scanner(store, tmp_path, clock, batch=batch)
        await s.run_pass()
        assert len(await versions(store, b)) == 11          # just noncurrent: not old enough
        clock.offset = LATER
        await s.run_pass()
        left = [v[1] for v in await versions(store, b) if v[0] == "k"]
        keep = 1 + (newer or 0)
        assert left == list(reversed(ids))[:keep]
        assert s.stats["noncurrent_deleted"] == 10 - keep
        assert len(await versions(store, b)) == keep + 1
    run(tmp_path, body)


def test_expired_object_delete_markers_go_and_others_stay(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        b = await bucket(store, "b", Rule("m", True, Filter(),
                                          Expiration(expired_object_delete_marker=True)),
                         versioning="Enabled")
        lone = (await put(store, b, "lone")).version_id
        await store.delete_object(b, "lone")                   # a marker over one version
        await store.delete_object(b, "lone", lone)             # ... which then goes: marker alone
        await put(store, b, "covered")
        await store.delete_object(b, "covered")                # a marker with a version behind
        s = scanner(store, tmp_path, Clock())
        await s.run_pass()
        got = await versions(store, b)
        assert [v[0] for v in got] == ["covered", "covered"] and s.stats["marker_removed"] == 1
    run(tmp_path, body)


def test_expiration_days_clean_up_old_sole_markers_too(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        b = await bucket(store, "b", expire(1), versioning="Enabled")
        v = (await put(store, b, "k")).version_id
        await store.delete_object(b, "k")
        await store.delete_object(b, "k", v)
        clock = Clock()
        s = scanner(store, tmp_path, clock)
        await s.run_pass()
        assert len(await versions(store, b)) == 1           # a young marker stays
        clock.offset = LATER
        await s.run_pass()
        assert await versions(store, b) == []
    run(tmp_path, body)


def test_the_whole_life_expire_then_noncurrent_then_marker(tmp_path: Path) -> None:
    """Expiration + NoncurrentVersionExpiration + ExpiredObjectDeleteMarker: pass by pass an
    object goes from current to nothing at all, and each step happens once."""
    async def body(store: LocalStore) -> None:
        b = await bucket(store, "b",
                         Rule("r", True, Filter(), Expiration(days=1),
                              NoncurrentExpiration(1)),
                         Rule("m", True, Filter(prefix=""),
                              Expiration(expired_object_delete_marker=True)),
                         versioning="Enabled")
        await put(store, b, "k")
        clock = Clock()
        clock.offset = LATER
        s = scanner(store, tmp_path, clock)
        await s.run_pass()
        assert [v[3] for v in await versions(store, b)] == [True, False]   # marker on top
        clock.offset = 2 * LATER
        await s.run_pass()       # the version, noncurrent for LATER now, goes; then the marker
        await s.run_pass()
        assert await versions(store, b) == []
        assert (s.stats["expired"], s.stats["noncurrent_deleted"]) == (1, 1)
        assert s.stats["marker_removed"] == 1
    run(tmp_path, body)


# --- uploads --------------------------------------------------------------------------------------

def test_incomplete_uploads_are_aborted_once_old(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        b = await bucket(store, "b", Rule("u", True, Filter(prefix="up/"), abort_days=1))
        for key in ("up/a", "up/a", "up/b", "down/c"):
            await store.create_upload(UploadInfo("", b, key, 0.0, "o"))
        clock = Clock()
        s = scanner(store, tmp_path, clock, batch=2)
        await s.run_pass()
        assert len((await store.list_uploads(b))[0]) == 4
        clock.offset = LATER
        await s.run_pass()
        assert [u.key for u in (await store.list_uploads(b))[0]] == ["down/c"]
        assert s.stats["upload_aborted"] == 3
    run(tmp_path, body)


# --- who acts, what is refused ------------------------------------------------------------------

def test_acts_only_on_the_keys_the_predicate_gives_it(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        b = await bucket(store, "b", expire(1))
        for k in ("mine-1", "theirs-1", "mine-2"):
            await put(store, b, k)
        clock = Clock()
        clock.offset = LATER
        s = scanner(store, tmp_path, clock, acts_for=lambda bucket, key: key.startswith("mine"))
        await s.run_pass()
        assert [v[0] for v in await versions(store, b)] == ["theirs-1"]
    run(tmp_path, body)


class Refusing:
    """A store whose deletion of some keys is refused (object lock's AccessDenied), or that
    dies (raises BaseException, as a kill would end the process) after ``die_after`` deletions;
    it counts every delete and listing call."""

    def __init__(self, inner: LocalStore, locked: set[str] = frozenset(),  # type: ignore[assignment]
                 die_after: int | None = None) -> None:
        self.inner = inner
        self.locked = locked
        self.die_after = die_after
        self.deletes: list[tuple[str, str, bool]] = []
        self.listed_from: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def list_object_versions(self, bucket: str, **kw: Any) -> Any:
        self.listed_from.append(kw.get("key_marker", ""))
        return await self.inner.list_object_versions(bucket, **kw)

    async def delete_if_unchanged(self, bucket: str, key: str, version_id: str, etag: str,
                                  last_modified: float, *, current: bool,
                                  owner_id: str = "") -> DeleteResult | None:
        if key in self.locked:
            raise StorageError("AccessDenied: the version is locked")
        if self.die_after is not None and len(self.deletes) >= self.die_after:
            raise Killed
        self.deletes.append((key, version_id, current))
        return await self.inner.delete_if_unchanged(bucket, key, version_id, etag, last_modified,
                                                    current=current, owner_id=owner_id)


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs, no cleanup, no cursor save."""


def test_a_locked_version_is_skipped_and_the_scan_goes_on(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        b = await bucket(store, "b", expire(1))
        for k in ("a", "locked", "z"):
            await put(store, b, k)
        clock = Clock()
        clock.offset = LATER
        s = scanner(Refusing(store, locked={"locked"}), tmp_path, clock)
        await s.run_pass()
        assert [v[0] for v in await versions(store, b)] == ["locked"]
        assert s.stats["skipped"] == 1 and s.stats["expired"] == 2
    run(tmp_path, body)


def test_a_crash_mid_pass_then_resume_skips_nothing_and_does_nothing_twice(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        b = await bucket(store, "b", expire(1), versioning="Enabled")
        keys = [f"k{i:02d}" for i in range(23)]
        for k in keys:
            await put(store, b, k)
        clock = Clock()
        clock.offset = LATER
        first = Refusing(store, die_after=13)
        with pytest.raises(Killed):
            await scanner(first, tmp_path, clock, batch=5).run_pass()
        saved = CursorFile(tmp_path / "cursor.json").load()
        # Pages of 5 entries, cut back to whole keys: 4 keys a batch. Three batches (12 keys)
        # were saved; the 13th key was acted on after the last save.
        assert saved == Cursor("b", "versions", "k11", 0)
        second = Refusing(store)
        s = scanner(second, tmp_path, clock, batch=5)
        await s.run_pass()
        assert second.listed_from[0] == "k11"              # resumed, not started over
        got = await versions(store, b)
        markers = [k for k, _, latest, marker in got if marker]
        assert markers == keys                               # every key: one marker, no second
        # The key done after the last save was judged again and left alone (its current
        # version is a marker now): the resumed pass acted on the remaining ten only.
        assert [d[0] for d in second.deletes] == keys[13:]
        assert [d[0] for d in first.deletes] == keys[:13]
        assert CursorFile(tmp_path / "cursor.json").load() == Cursor(passes=1)
    run(tmp_path, body)


def test_the_conditional_delete_refuses_a_version_that_changed(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        await store.create_bucket("b", "o", "us-east-1")
        old = await put(store, "b", "k", b"old")
        await put(store, "b", "k", b"new")          # unversioned: replaces it
        assert await store.delete_if_unchanged("b", "k", "null", old.etag, old.last_modified,
                                               current=True) is None
        assert (await store.get_object("b", "k")) is not None
        await store.set_bucket_config("b", VERSIONING, b"Enabled")
        cur = await store.get_object("b", "k")
        assert cur is not None
        done = await store.delete_if_unchanged("b", "k", "null", cur.etag, cur.last_modified,
                                               current=True, owner_id="o")
        assert done is not None and done.delete_marker
        # Again: the current version is that marker now, so nothing more happens.
        assert await store.delete_if_unchanged("b", "k", "null", cur.etag, cur.last_modified,
                                               current=True) is None
        # By id: the null version as listed goes; a changed one would not.
        assert await store.delete_if_unchanged("b", "k", "null", "other", cur.last_modified,
                                               current=False) is None
        gone = await store.delete_if_unchanged("b", "k", "null", cur.etag, cur.last_modified,
                                               current=False)
        assert gone is not None and len(await versions(store, "b")) == 1
    run(tmp_path, body)


def test_runs_passes_until_closed(tmp_path: Path) -> None:
    async def body(store: LocalStore) -> None:
        b = await bucket(store, "b", expire(1))
        clock = Clock()
        s = scanner(store, tmp_path, clock)
        s.start()
        deadline = time.monotonic() + 10
        while s.stats.passes < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await put(store, b, "k")
        clock.offset = LATER
        passes = s.stats.passes
        while s.stats.passes < passes + 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await s.close()
        assert await versions(store, b) == [] and s.stats.passes >= 4
    run(tmp_path, body)


def test_an_unreadable_cursor_starts_the_pass_over(tmp_path: Path) -> None:
    path = tmp_path / "c" / "cursor.json"
    f = CursorFile(path, durable=True)
    assert f.load() == Cursor()
    f.save(Cursor("b", "uploads", "k", 3))
    assert f.load() == Cursor("b", "uploads", "k", 3)
    path.write_text("{not json")
    assert f.load() == Cursor()
    assert not path.with_name("cursor.json.tmp").exists()
