"""Listing against a brute-force model: prefixes, delimiters, start-after, paging, cost bounds."""
from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rs3gw.storage import ListPage, LocalStore, ObjectMeta
from rs3gw.storage.listing import list_objects, prefix_upper_bound
from rs3gw.storage.metadb import OBJECT_INSERT, connect_writer, encode_object

Item = tuple[str, str]   # ("key" | "prefix", value)


def model(keys: set[str], prefix: str, delimiter: str, after: str) -> list[Item]:
    """What S3 returns from `after` (exclusive) on, as one sequence, before paging."""
    def group(k: str) -> str | None:
        if not delimiter or not k.startswith(prefix):
            return None
        rest = k[len(prefix):]
        i = rest.find(delimiter)
        return None if i < 0 else prefix + rest[:i + len(delimiter)]

    items: list[Item] = []
    for k in sorted(keys):
        if not k.startswith(prefix) or k <= after:
            continue
        g = group(k)
        item = ("key", k) if g is None else ("prefix", g)
        if item not in items:
            items.append(item)
    skipped = group(after)
    return [i for i in items if i != ("prefix", skipped)]


def page_items(page: ListPage) -> list[Item]:
    items = [("key", e.key) for e in page.entries] + [("prefix", p) for p in page.common_prefixes]
    return sorted(items, key=lambda i: i[1])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[asyncio.AbstractEventLoop,
                                                                   LocalStore]]:
    loop = asyncio.new_event_loop()
    store = LocalStore(tmp_path_factory.mktemp("listing"), durable=False)
    loop.run_until_complete(store.open())
    yield loop, store
    loop.run_until_complete(store.close())
    loop.close()


_bucket_ids = itertools.count()


def make_bucket(loop: asyncio.AbstractEventLoop, store: LocalStore, keys: set[str]) -> str:
    bucket = f"b{next(_bucket_ids)}"

    async def fill() -> None:
        await store.create_bucket(bucket, "owner", "r")
        # Metadata-only objects: listing never looks at data files.
        await asyncio.gather(*(store.put_object(
            ObjectMeta(bucket, k, "", 0, "d41d8cd98f00b204e9800998ecf8427e", 0, owner_id="owner"),
            None) for k in keys))
    loop.run_until_complete(fill())
    return bucket


ALPHABET = ["a", "b", "/", "-", ".", "0", "\x7f", "\u00e9", "\u65e5", "\ud7ff", "\ue000",
            "\U0001F600", "\U0010FFFF", "ab", "a/"]
key_st = st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=7).map("".join)
keys_st = st.sets(key_st, min_size=0, max_size=40)
delim_st = st.sampled_from(["", "/", "-", "a/", "//", "\u00e9", "\U0001F600", "\U0010FFFF"])
prefix_st = st.one_of(st.just(""), st.lists(st.sampled_from(ALPHABET), max_size=3).map("".join))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=keys_st, prefix=prefix_st, delimiter=delim_st,
       max_keys=st.sampled_from([1, 2, 3, 7, 1000]))
def test_paging_matches_model(env: tuple[asyncio.AbstractEventLoop, LocalStore], keys: set[str],
                              prefix: str, delimiter: str, max_keys: int) -> None:
    loop, store = env
    bucket = make_bucket(loop, store, keys)
    expected = model(keys, prefix, delimiter, "")
    got: list[Item] = []
    after = ""
    pages = 0
    while True:
        page = loop.run_until_complete(store.list_objects(
            bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys))
        pages += 1
        items = page_items(page)
        assert len(items) <= max_keys
        got += items
        if not page.is_truncated:
            assert page.next_key is None
            break
        # Exact truncation: a truncated page is full, and something follows it.
        assert len(items) == max_keys and page.next_key == items[-1][1]
        after = page.next_key
        assert pages <= len(expected) + 1
    assert got == expected
    prefixes = [v for kind, v in got if kind == "prefix"]
    assert len(prefixes) == len(set(prefixes))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=keys_st, prefix=prefix_st, delimiter=delim_st, data=st.data(),
       max_keys=st.sampled_from([0, 1, 2, 5, 1000]))
def test_single_page_from_any_start(env: tuple[asyncio.AbstractEventLoop, LocalStore],
                                    keys: set[str], prefix: str, delimiter: str,
                                    data: st.DataObject, max_keys: int) -> None:
    loop, store = env
    bucket = make_bucket(loop, store, keys)
    # Start-after: an existing key, a prefix of one, or anything.
    candidates = sorted(keys) + [k[:n] for k in keys for n in (1, 2)]
    after = data.draw(st.one_of(st.sampled_from(candidates), key_st) if candidates else key_st)
    expected = model(keys, prefix, delimiter, after)
    page = loop.run_until_complete(store.list_objects(
        bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys))
    assert page_items(page) == expected[:max_keys]
    # max_keys=0 is an empty, untruncated page whatever the bucket holds.
    assert page.is_truncated == (max_keys > 0 and len(expected) > max_keys)
    if page.is_truncated:
        assert page.next_key == expected[max_keys - 1][1]
    else:
        assert page.next_key is None


def test_fixed_cases(env: tuple[asyncio.AbstractEventLoop, LocalStore]) -> None:
    loop, store = env
    keys = {"photos/2024/a.jpg", "photos/2024/b.jpg", "photos/2025/c.jpg", "photos/x.txt",
            "readme", "videos/v.mp4", "photos", "photos/"}
    bucket = make_bucket(loop, store, keys)

    def ls(**kw: object) -> ListPage:
        return loop.run_until_complete(store.list_objects(bucket, **kw))  # type: ignore[arg-type]

    p = ls(delimiter="/")
    assert [e.key for e in p.entries] == ["photos", "readme"]
    assert p.common_prefixes == ["photos/", "videos/"] and not p.is_truncated
    p = ls(prefix="photos/", delimiter="/")
    assert [e.key for e in p.entries] == ["photos/", "photos/x.txt"]
    assert p.common_prefixes == ["photos/2024/", "photos/2025/"]
    p = ls(prefix="photos/", delimiter="/", max_keys=2)
    assert [e.key for e in p.entries] == ["photos/"] and p.common_prefixes == ["photos/2024/"]
    assert p.is_truncated and p.next_key == "photos/2024/"
    p = ls(prefix="photos/", delimiter="/", after="photos/2024/a.jpg")
    assert p.common_prefixes == ["photos/2025/"] and [e.key for e in p.entries] == ["photos/x.txt"]
    p = ls(max_keys=0)
    assert p.entries == [] and p.common_prefixes == [] and not p.is_truncated
    assert p.next_key is None
    p = ls(max_keys=1000)
    assert [e.key for e in p.entries] == sorted(keys)
    assert all(e.owner_id == "owner" and e.size == 0 for e in p.entries)
    p = ls(delimiter="/", after="videos/")
    assert p.entries == [] and p.common_prefixes == [] and not p.is_truncated


def test_prefix_upper_bound() -> None:
    assert prefix_upper_bound("") is None
    assert prefix_upper_bound("a/") == "a0"
    assert prefix_upper_bound("ab") == "ac"
    assert prefix_upper_bound("a\U0010FFFF") == "b"
    assert prefix_upper_bound("\U0010FFFF\U0010FFFF") is None
    assert prefix_upper_bound("x\ud7ff") == "x\ue000"
    for p in ["a/", "\u00e9", "\U0001F600", "a\U0010FFFF"]:
        ub = prefix_upper_bound(p)
        assert ub is not None and ub.encode() > (p + "\U0010FFFF" * 3).encode()
        assert ub > p


def _db_with(tmp: Path, group_size: int) -> sqlite3.Connection:
    conn = connect_writer(tmp / f"db{group_size}.sqlite", durable=False)
    rows = [encode_object(ObjectMeta("b", k, "0" * 32, 0, "e", 1.0)) for k in
            [f"a{i:03d}" for i in range(50)] + [f"big/{i:07d}" for i in range(group_size)]
            + [f"z{i:03d}" for i in range(50)]]
    conn.execute("BEGIN")
    conn.executemany(OBJECT_INSERT, rows)
    conn.execute("COMMIT")
    return conn


def _work(conn: sqlite3.Connection, **kw: object) -> tuple[int, int, ListPage]:
    """(SELECT statements, SQLite VM progress ticks) one page takes: a count of work, not a time."""
    selects = 0
    ticks = 0

    def trace(sql: str) -> None:
        nonlocal selects
        selects += sql.lstrip().upper().startswith("SELECT")

    def progress() -> int:
        nonlocal ticks
        ticks += 1
        return 0

    conn.set_trace_callback(trace)
    conn.set_progress_handler(progress, 10)
    try:
        args = {"prefix": "", "delimiter": "", "after": "", "max_keys": 1000, **kw}
        page = list_objects(conn, "b", **args)  # type: ignore[arg-type]
    finally:
        conn.set_trace_callback(None)
        conn.set_progress_handler(None, 0)
    return selects, ticks, page


def test_page_cost_independent_of_group_size_and_depth(tmp_path: Path) -> None:
    small = _db_with(tmp_path, 10)
    large = _db_with(tmp_path, 20_000)
    try:
        for kw in ({"delimiter": "/", "after": "a040", "max_keys": 20},
                   {"delimiter": "/", "after": "big/0000005", "max_keys": 20},
                   {"prefix": "big/", "after": "big/0000005", "max_keys": 3}):
            s_sel, s_ticks, s_page = _work(small, **kw)
            l_sel, l_ticks, l_page = _work(large, **kw)
            assert s_page.common_prefixes == l_page.common_prefixes
            assert s_sel == l_sel and s_sel <= 20 + 2
            assert l_ticks <= 2 * s_ticks + 20
        # Deep in a large flat range costs what the start costs.
        _, t_start, _ = _work(large, prefix="big/", max_keys=10)
        _, t_deep, _ = _work(large, prefix="big/", after="big/0019000", max_keys=10)
        assert t_deep <= 2 * t_start + 20
    finally:
        small.close()
        large.close()


def test_group_with_no_upper_bound(env: tuple[asyncio.AbstractEventLoop, LocalStore]) -> None:
    """A common prefix made only of U+10FFFF has no string above it: resuming after it ends."""
    loop, store = env
    top = "\U0010FFFF"
    keys = {"a", f"{top}/", f"{top}{top}x", "b"}
    bucket = make_bucket(loop, store, keys)
    for after, expected in [("", [("key", "a"), ("key", "b"), ("prefix", top)]),
                            (top, []), (f"{top}/", []), ("a", [("key", "b"), ("prefix", top)])]:
        page = loop.run_until_complete(store.list_objects(bucket, delimiter=top, after=after))
        assert page_items(page) == expected == model(keys, "", top, after)
        assert not page.is_truncated
    page = loop.run_until_complete(store.list_objects(bucket, delimiter=top, max_keys=3))
    assert page_items(page)[-1] == ("prefix", top) and not page.is_truncated


def test_rows_from_before_the_listing_columns_still_list(tmp_path: Path) -> None:
    # A metadata file written by a release without objects.owner_id/algos: open() adds the columns,
    # old rows are listed from their blob, new writes fill the columns.
    db = tmp_path / "root" / ".rs3gw" / "meta.db"
    db.parent.mkdir(parents=True)
    old = sqlite3.connect(db)
    old.executescript("""
        CREATE TABLE buckets(name TEXT NOT NULL PRIMARY KEY, owner_id TEXT NOT NULL,
            region TEXT NOT NULL, created REAL NOT NULL) WITHOUT ROWID;
        CREATE TABLE objects(bucket TEXT NOT NULL, key TEXT NOT NULL COLLATE BINARY,
            vid TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
            last_modified REAL NOT NULL, content_type TEXT, meta BLOB NOT NULL,
            PRIMARY KEY(bucket, key)) WITHOUT ROWID;""")
    old.execute("INSERT INTO buckets VALUES ('b', 'alice', 'us-east-1', 1.0)")
    meta = ObjectMeta("b", "old", "", 0, "e", 1.0, owner_id="alice", checksums={"crc32c": "AAAAAA=="})
    old.execute("INSERT INTO objects VALUES (?,?,?,?,?,?,?,?)", encode_object(meta)[:8])
    old.commit()
    old.close()

    async def main() -> None:
        store = LocalStore(tmp_path / "root")
        await store.open()
        try:
            await store.put_object(ObjectMeta("b", "new", "", 0, "", 0.0, owner_id="bob"), None)
            page = await store.list_objects("b")
        finally:
            await store.close()
        got = {e.key: (e.owner_id, e.checksum_algorithms) for e in page.entries}
        assert got == {"old": ("alice", ["crc32c"]), "new": ("bob", [])}
    asyncio.run(main())
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT key, owner_id FROM objects ORDER BY key").fetchall() == \
        [("new", "bob"), ("old", None)]
    conn.close()
