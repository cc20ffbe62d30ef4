"""Bucket versioning in the storage engine, against a model of S3's rules: any sequence of PUTs,
DELETEs (with and without version ids) and versioning changes leaves the same versions, the same
current object and the same listing, at any page size; and no data outlives its versions."""
from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rs3gw.storage import NULL_VERSION, VERSIONING, LocalStore, ObjectMeta, Segment
from rs3gw.storage.versioning import encode_id, parse_id, valid_id

KEYS = ("a", "b/x", "b/y", "c")
_buckets = itertools.count()


@dataclass
class Version:
    vid: str
    marker: bool
    body: bytes


@dataclass
class Model:
    state: str | None = None
    keys: dict[str, list[Version]] = field(default_factory=dict)   # newest first

    def put(self, key: str, vid: str | None, body: bytes) -> None:
        history = self.keys.setdefault(key, [])
        if self.state is None:
            history[:] = [Version(NULL_VERSION, False, body)]
            return
        if self.state == "Suspended":
            history[:] = [v for v in history if v.vid != NULL_VERSION]
        assert vid is not None
        history.insert(0, Version(vid, False, body))

    def delete(self, key: str, vid: str | None) -> None:
        history = self.keys.setdefault(key, [])
        if self.state is None:
            history.clear()
            return
        if self.state == "Suspended":
            history[:] = [v for v in history if v.vid != NULL_VERSION]
        assert vid is not None
        history.insert(0, Version(vid, True, b""))

    def delete_version(self, key: str, vid: str) -> None:
        self.keys[key] = [v for v in self.keys.get(key, []) if v.vid != vid]

    def listing(self) -> list[tuple[str, str, bool, bool]]:
        return [(k, v.vid, i == 0, v.marker) for k in sorted(self.keys)
                for i, v in enumerate(self.keys[k])]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[asyncio.AbstractEventLoop,
                                                                   LocalStore, Path]]:
    loop = asyncio.new_event_loop()
    root = tmp_path_factory.mktemp("versioning")
    # inline_max_bytes 8: bodies of up to 8 bytes live in the metadata DB, longer ones in files.
    store = LocalStore(root, durable=False, inline_max_bytes=8)
    loop.run_until_complete(store.open())
    yield loop, store, root
    loop.run_until_complete(store.close())
    loop.close()


async def _put(store: LocalStore, bucket: str, key: str, body: bytes) -> ObjectMeta:
    w = store.begin_write()
    await w.write(body)
    data = await w.finish()
    meta = ObjectMeta(bucket=bucket, key=key, vid="", size=0, etag="", last_modified=0.0,
                      segments=[Segment(data.vid, data.size, data.md5_hex)], owner_id="o")
    await store.put_object(meta, data)
    return meta


async def _read(store: LocalStore, meta: ObjectMeta) -> bytes:
    if meta.size == 0:
        return b""
    return b"".join([bytes(c) async for c in await store.open_reader(meta)])


async def _all_versions(store: LocalStore, bucket: str, page: int,
                        ) -> list[tuple[str, str, bool, bool]]:
    out = []
    km, vm = "", ""
    while True:
        p = await store.list_object_versions(bucket, key_marker=km, version_id_marker=vm,
                                             max_keys=page)
        out += [(e.key, e.version_id, e.is_latest, e.delete_marker) for e in p.entries]
        assert len(p.entries) + len(p.common_prefixes) <= page
        if not p.is_truncated:
            return out
        assert p.next_key_marker is not None
        km, vm = p.next_key_marker, p.next_version_id_marker or ""


ops = st.lists(st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.binary(max_size=20)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("delete_version"), st.sampled_from(KEYS), st.integers(0, 5)),
    st.tuples(st.just("state"), st.sampled_from(["Enabled", "Suspended"]), st.none()),
), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops, st.integers(1, 7))
def test_any_history_matches_the_model(env: tuple[asyncio.AbstractEventLoop, LocalStore, Path],
                                       history: list[tuple[str, str, object]], page: int) -> None:
    loop, store, root = env
    bucket = f"v{next(_buckets)}"

    async def main() -> None:
        await store.create_bucket(bucket, "o", "us-east-1")
        m = Model()
        for op, arg, extra in history:
            if op == "put":
                assert isinstance(extra, bytes)
                meta = await _put(store, bucket, arg, extra)
                assert (meta.version_id is None) == (m.state is None)
                m.put(arg, meta.version_id, extra)
            elif op == "delete":
                done = await store.delete_object(bucket, arg, owner_id="o")
                assert done.delete_marker == (m.state is not None)
                m.delete(arg, done.version_id)
            elif op == "delete_version":
                assert isinstance(extra, int)
                known = m.keys.get(arg, [])
                vid = known[extra].vid if extra < len(known) else encode_id(bytes(16))
                await store.delete_object(bucket, arg, vid)
                m.delete_version(arg, vid)
            else:
                await store.set_bucket_config(bucket, VERSIONING, arg.encode())
                m.state = arg
            for key in KEYS:
                cur = await store.get_object(bucket, key)
                want = m.keys.get(key) or []
                if not want:
                    assert cur is None
                elif want[0].marker:
                    assert cur is not None and cur.delete_marker
                    assert cur.version_id == want[0].vid
                else:
                    assert cur is not None and not cur.delete_marker
                    assert await _read(store, cur) == want[0].body
                for v in want:
                    got = await store.get_object(bucket, key, v.vid)
                    assert got is not None and got.delete_marker == v.marker
                    if not v.marker:
                        assert await _read(store, got) == v.body
        assert await _all_versions(store, bucket, page) == m.listing()
        assert await _all_versions(store, bucket, 1000) == m.listing()
        # Everything deleted version by version: no data is left behind.
        for key, versions in m.keys.items():
            for v in versions:
                await store.delete_object(bucket, key, v.vid)
        assert await _all_versions(store, bucket, 1000) == []
        await store.delete_bucket(bucket)
    loop.run_until_complete(main())
    conn = sqlite3.connect(root / ".rs3gw" / "meta.db")
    try:
        assert conn.execute("SELECT COUNT(*) FROM inline_data").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM versions").fetchone() == (0,)
    finally:
        conn.close()
    files = [p for p in (root / ".rs3gw" / "objects").rglob("*") if p.is_file()]
    assert files == [], "data files outlived every version that named them"


def test_version_ids_are_canonical_and_ordered() -> None:
    a, b = bytes(8) + bytes(range(8)), (1).to_bytes(8, "big") + bytes(8)
    assert encode_id(a) < encode_id(b)           # ids sort as their seqs do
    assert len(encode_id(a)) == 32 and parse_id(encode_id(a)) == a
    assert valid_id(NULL_VERSION) and not valid_id("") and not valid_id("x" * 32)
    assert not valid_id(encode_id(b"\xab" * 16).upper())    # one spelling per version


def test_listing_with_a_delimiter_groups_versions(env: tuple[asyncio.AbstractEventLoop,
                                                             LocalStore, Path]) -> None:
    loop, store, _ = env
    bucket = f"v{next(_buckets)}"

    async def main() -> None:
        await store.create_bucket(bucket, "o", "us-east-1")
        await store.set_bucket_config(bucket, VERSIONING, b"Enabled")
        for key in ("a", "b/1", "b/2", "c"):
            for i in range(3):
                await _put(store, bucket, key, f"{i}".encode())
        page = await store.list_object_versions(bucket, delimiter="/", max_keys=4)
        assert [e.key for e in page.entries] == ["a", "a", "a"]
        assert page.common_prefixes == ["b/"] and page.is_truncated
        assert page.next_key_marker == "b/" and page.next_version_id_marker is None
        rest = await store.list_object_versions(bucket, delimiter="/",
                                                key_marker=page.next_key_marker)
        assert [e.key for e in rest.entries] == ["c"] * 3 and not rest.is_truncated
    loop.run_until_complete(main())


def test_files_of_the_first_versioning_release_are_migrated(tmp_path: Path) -> None:
    """That release kept each key's current version in versions too (and had no version_id /
    seq columns in objects): opening such a file moves the current ones out, once."""
    async def write() -> list[tuple[str, str, bool, bool]]:
        store = LocalStore(tmp_path, durable=False, inline_max_bytes=8)
        await store.open()
        await store.create_bucket("mig", "o", "r")
        await _put(store, "mig", "before", b"implicit null")
        await store.set_bucket_config("mig", VERSIONING, b"Enabled")
        for body in (b"one", b"two, a longer body", b"three"):
            await _put(store, "mig", "k", body)
        await _put(store, "mig", "m", b"marked")
        await store.delete_object("mig", "m")
        listed = await _all_versions(store, "mig", 1000)
        await store.close()
        return listed

    listed = asyncio.run(write())
    db = sqlite3.connect(tmp_path / ".rs3gw" / "meta.db")
    for bucket, key, seq, blob in db.execute(
            "SELECT bucket, key, seq, meta FROM objects WHERE seq IS NOT NULL").fetchall():
        db.execute("INSERT INTO versions SELECT bucket, key, seq, version_id, 0, vid, size, etag, "
                   "last_modified, content_type, meta, owner_id, algos FROM objects "
                   "WHERE bucket = ? AND key = ?", (bucket, key))
    db.execute("ALTER TABLE objects DROP COLUMN version_id")
    db.execute("ALTER TABLE objects DROP COLUMN seq")
    db.commit()
    assert db.execute("SELECT COUNT(*) FROM versions").fetchone()[0] == 5
    db.close()

    async def check() -> None:
        store = LocalStore(tmp_path, durable=False, inline_max_bytes=8)
        await store.open()
        try:
            assert await _all_versions(store, "mig", 1000) == listed
            assert await _all_versions(store, "mig", 2) == listed
            cur = await store.get_object("mig", "k")
            assert cur is not None and await _read(store, cur) == b"three"
            await _put(store, "mig", "k", b"four")
            ks = [v for v in await _all_versions(store, "mig", 1000) if v[0] == "k"]
            assert [latest for _, _, latest, _ in ks] == [True, False, False, False]
        finally:
            await store.close()
    asyncio.run(check())
    db = sqlite3.connect(tmp_path / ".rs3gw" / "meta.db")
    # Noncurrent: k's three, m's put and marker; before's implicit null stays in objects.
    assert db.execute("SELECT COUNT(*) FROM versions").fetchone()[0] == 5
    db.close()
