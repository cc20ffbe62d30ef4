"""LocalStore: buckets, objects, conditional writes, tags, hostile keys, recovery; every test here
runs with small objects in data files and inline in the metadata store."""
from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from rs3gw._core.directio import select_backend
from rs3gw.storage import (
    BucketExists,
    BucketNotEmpty,
    LocalStore,
    NoSuchBucket,
    NoSuchKey,
    ObjectMeta,
    PreconditionFailed,
    StorageError,
    WriteResult,
)
from rs3gw.storage.datafiles import DataLayout, _VidSource, new_vid

# The I/O backend run_store gives its store; set per test by the autouse `io_kind` fixture (import
# it into another test module to parametrize that module too).
_IO_KIND = ["threads"]
# inline_max_bytes of run_store's store (None: the store's default); set per test in this module by
# the autouse `small_objects` fixture: 0 keeps every non-empty body in a data file.
_INLINE_MAX: list[int | None] = [None]


@pytest.fixture(autouse=True, params=["threads", "uring"])
def io_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    _IO_KIND[0] = request.param
    yield request.param
    _IO_KIND[0] = "threads"


@pytest.fixture(autouse=True, params=["files", "inline"])
def small_objects(request: pytest.FixtureRequest) -> Iterator[str]:
    _INLINE_MAX[0] = 0 if request.param == "files" else None
    yield request.param
    _INLINE_MAX[0] = None


def files_expected(n: int) -> int:
    """How many data files ``n`` small objects leave: none when they are stored inline."""
    return n if _INLINE_MAX[0] == 0 else 0


def run_store(root: Path, body: Callable[[LocalStore], Awaitable[None]], **kw: object) -> None:
    async def main() -> None:
        backend, name = select_backend(_IO_KIND[0])
        assert name == _IO_KIND[0]
        if _INLINE_MAX[0] is not None:
            kw.setdefault("inline_max_bytes", _INLINE_MAX[0])
        try:
            store = LocalStore(root, io_backend=backend, **kw)  # type: ignore[arg-type]
            await store.open()
            assert store.io_backend == name
            try:
                await body(store)
            finally:
                await store.close()
        finally:
            await backend.aclose()
    asyncio.run(main())


async def write_data(store: LocalStore, data: bytes, algos: tuple[str, ...] = (),
                     chunk: int = 100_000) -> WriteResult:
    w = store.begin_write(algos)
    try:
        for i in range(0, len(data), chunk):
            await w.write(data[i:i + chunk])
        return await w.finish()
    except BaseException:
        await w.abort()
        raise


async def put(store: LocalStore, bucket: str, key: str, data: bytes, **kw: object) -> ObjectMeta:
    w = store.begin_write()
    try:
        await w.write(data)
        res = await w.finish()
        meta = ObjectMeta(bucket=bucket, key=key, vid="", size=0, etag="", last_modified=0)
        await store.put_object(meta, res, **kw)  # type: ignore[arg-type]
        return meta
    finally:
        await w.abort()


async def read_all(store: LocalStore, meta: ObjectMeta, start: int = 0,
                   end: int | None = None, chunk_bytes: int = 1 << 20) -> bytes:
    it = await store.open_reader(meta, start, end, chunk_bytes=chunk_bytes)
    return b"".join([c async for c in it])


def data_files(root: Path) -> set[str]:
    return {f.name for f in (root / ".rs3gw" / "objects").rglob("*") if f.is_file()}


def tmp_files(root: Path) -> list[str]:
    return os.listdir(root / ".rs3gw" / "tmp")


def test_put_get_overwrite_delete(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "owner", "us-east-1")
        assert await s.get_object("b", "k") is None
        data = os.urandom(300_000)
        m1 = await put(s, "b", "k", data)
        assert m1.etag == hashlib.md5(data).hexdigest()
        got = await s.get_object("b", "k")
        assert got is not None and got.size == len(data) and got.last_modified > 0
        assert await read_all(s, got) == data
        assert await read_all(s, got, 1000, 250_000, chunk_bytes=7777) == data[1000:250_001]

        m2 = await put(s, "b", "k", b"second")
        got2 = await s.get_object("b", "k")
        assert got2 is not None and got2.etag == m2.etag
        assert await read_all(s, got2) == b"second"

        done = await s.delete_object("b", "k")
        assert done.version_id is None and not done.delete_marker     # unversioned: gone
        assert await s.get_object("b", "k") is None
        assert await s.delete_object("b", "k") == done                 # twice: no error

        await put(s, "b", "empty", b"")
        e = await s.get_object("b", "empty")
        assert e is not None and e.size == 0 and await read_all(s, e) == b""
        assert e.etag == hashlib.md5(b"").hexdigest()

    run_store(tmp_path, body)
    # Replaced and deleted versions leave no file behind; the live one is empty: inline, no file.
    assert data_files(tmp_path) == set()
    assert tmp_files(tmp_path) == []


def test_checksums_recorded(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        data = b"The quick brown fox" * 5000
        res = await write_data(s, data, ("crc32", "sha256", "crc64nvme"), chunk=999)
        assert res.size == len(data) and res.md5_hex == hashlib.md5(data).hexdigest()
        assert res.checksums["sha256"] == hashlib.sha256(data).digest()
        assert len(res.checksums["crc32"]) == 4 and len(res.checksums["crc64nvme"]) == 8
        import zlib
        assert int.from_bytes(res.checksums["crc32"], "big") == zlib.crc32(data)
        meta = ObjectMeta("b", "k", "", 0, "", 0)
        await s.put_object(meta, res)
        got = await s.get_object("b", "k")
        assert got is not None and set(got.segments[0].checksums) == {"crc32", "sha256", "crc64nvme"}
        with pytest.raises(ValueError):
            s.begin_write(("md4",))

    run_store(tmp_path, body)


def test_bucket_cache_follows_bucket_writes(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("c", "alice", "r")
        first = await s.get_bucket("c")
        assert first is not None and first.configs == {}
        first.configs["policy"] = b"mutated by a caller"
        again = await s.get_bucket("c")
        assert again is not None and again.configs == {}
        # A lookup in flight while the config changes must not leave the old value cached.
        racing = asyncio.ensure_future(s.get_bucket("c"))
        await s.set_bucket_config("c", "policy", b"p1")
        await racing
        got = await s.get_bucket("c")
        assert got is not None and got.configs == {"policy": b"p1"}
        await s.delete_bucket("c")
        assert await s.get_bucket("c") is None
        await s.create_bucket("c", "bob", "r")
        got = await s.get_bucket("c")
        assert got is not None and got.owner_id == "bob" and got.configs == {}

    run_store(tmp_path, body)


def test_buckets_and_configs(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        info = await s.create_bucket("zeta", "alice", "eu-west-1")
        assert info.owner_id == "alice" and info.created > 0
        await s.create_bucket("alpha", "bob", "us-east-1")
        with pytest.raises(BucketExists) as ei:
            await s.create_bucket("zeta", "bob", "us-east-1")
        assert ei.value.owner_id == "alice"
        assert [b.name for b in await s.list_buckets()] == ["alpha", "zeta"]

        await s.set_bucket_config("zeta", "policy", b'{"a":1}')
        await s.set_bucket_config("zeta", "tagging", b"<x/>")
        await s.set_bucket_config("zeta", "policy", b'{"a":2}')
        b = await s.get_bucket("zeta")
        assert b is not None and b.configs == {"policy": b'{"a":2}', "tagging": b"<x/>"}
        await s.set_bucket_config("zeta", "tagging", None)
        b = await s.get_bucket("zeta")
        assert b is not None and b.configs == {"policy": b'{"a":2}'}
        with pytest.raises(NoSuchBucket):
            await s.set_bucket_config("nope", "policy", b"x")
        assert await s.get_bucket("nope") is None

        await put(s, "zeta", "obj", b"x")
        with pytest.raises(BucketNotEmpty):
            await s.delete_bucket("zeta")
        await s.delete_object("zeta", "obj")
        await s.delete_bucket("zeta")
        assert await s.get_bucket("zeta") is None
        with pytest.raises(NoSuchBucket):
            await s.delete_bucket("zeta")
        # Configs went with the bucket: a new bucket of that name starts clean.
        await s.create_bucket("zeta", "carol", "r")
        b = await s.get_bucket("zeta")
        assert b is not None and b.configs == {} and b.owner_id == "carol"
        with pytest.raises(NoSuchBucket):
            await put(s, "gone", "k", b"x")
        with pytest.raises(NoSuchBucket):
            await s.list_objects("gone")

    run_store(tmp_path, body)
    assert tmp_files(tmp_path) == []
    assert data_files(tmp_path) == set()


def test_conditional_writes(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        with pytest.raises(NoSuchKey):
            await put(s, "b", "k", b"v0", if_match="abc")
        m1 = await put(s, "b", "k", b"v1", if_none_match=True)
        with pytest.raises(PreconditionFailed):
            await put(s, "b", "k", b"v2", if_none_match=True)
        with pytest.raises(PreconditionFailed):
            await put(s, "b", "k", b"v2", if_match="0" * 32)
        m3 = await put(s, "b", "k", b"v3", if_match=f'"{m1.etag}"')
        got = await s.get_object("b", "k")
        assert got is not None and got.etag == m3.etag
        assert await read_all(s, got) == b"v3"

    run_store(tmp_path, body)
    # The losing writes' tmp files were discarded; only v3's file remains.
    assert tmp_files(tmp_path) == [] and len(data_files(tmp_path)) == files_expected(1)


def test_if_none_match_race_exactly_one_wins(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        for round_ in range(5):
            key = f"lock-{round_}"
            results = await asyncio.gather(
                *(put(s, "b", key, f"writer-{i}".encode(), if_none_match=True) for i in range(8)),
                return_exceptions=True)
            winners = [r for r in results if isinstance(r, ObjectMeta)]
            losers = [r for r in results if isinstance(r, PreconditionFailed)]
            assert len(winners) == 1 and len(losers) == 7
            got = await s.get_object("b", key)
            assert got is not None and got.etag == winners[0].etag

    run_store(tmp_path, body)
    assert len(data_files(tmp_path)) == files_expected(5) and tmp_files(tmp_path) == []


def test_metadata_only_replace_keeps_data(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        await put(s, "b", "k", b"payload")
        cur = await s.get_object("b", "k")
        assert cur is not None
        new = ObjectMeta("b", "k", "", cur.size, cur.etag, 0, content_type="text/plain",
                         headers={"x-amz-meta-a": "1"}, segments=list(cur.segments))
        prev = await s.put_object(new, None)
        assert prev is not None and prev.vid == cur.vid and new.vid and new.vid != cur.vid
        got = await s.get_object("b", "k")
        assert got is not None and got.content_type == "text/plain"
        assert got.headers == {"x-amz-meta-a": "1"}
        assert await read_all(s, got) == b"payload"

    run_store(tmp_path, body)
    assert len(data_files(tmp_path)) == files_expected(1)


def test_tags_and_delete_objects(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        for k in ("a", "b", "c"):
            await put(s, "b", k, k.encode())
        m = await s.set_object_tags("b", "a", {"env": "prod", "team": "x"})
        assert m.tags == {"env": "prod", "team": "x"}
        got = await s.get_object("b", "a")
        assert got is not None and got.tags == {"env": "prod", "team": "x"}
        assert await read_all(s, got) == b"a"
        with pytest.raises(NoSuchKey):
            await s.set_object_tags("b", "missing", {})
        res = await s.delete_objects("b", [("a", None), ("missing", None), ("c", None)])
        assert len(res) == 3 and not any(r.delete_marker for r in res)
        page = await s.list_objects("b")
        assert [e.key for e in page.entries] == ["b"]

    run_store(tmp_path, body)
    assert len(data_files(tmp_path)) == files_expected(1)


def test_hostile_keys_stay_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    keys = ["a" * 1024, "..", "../../etc/passwd", "/leading", "//double//slash", "uni\u00e9/\u65e5\u672c",
            "astral/\U0001F600\U00010348", "sp ace+plus%25", "\u0000nul?", "tab\tnew\nline"]

    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        for k in keys:
            await put(s, "b", k, k.encode("utf-8"))
        for k in keys:
            got = await s.get_object("b", k)
            assert got is not None and await read_all(s, got) == k.encode("utf-8")
        page = await s.list_objects("b")
        assert [e.key for e in page.entries] == sorted(keys, key=lambda k: k.encode("utf-8"))

    run_store(root, body)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
    assert sorted(p.name for p in root.iterdir()) == [".rs3gw"]
    assert len(data_files(root)) == files_expected(len(keys))


def test_reader_survives_overwrite_and_delete(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        data = os.urandom(3 * 1024 * 1024 + 5)
        await put(s, "b", "k", data)
        meta = await s.get_object("b", "k")
        assert meta is not None
        it = await s.open_reader(meta, chunk_bytes=1 << 20)
        first = await it.__anext__()
        await put(s, "b", "k", b"new")
        rest = [c async for c in it]
        assert first + b"".join(rest) == data
        # The old data file was unlinked by the overwrite; a new reader of the old meta fails cleanly.
        with pytest.raises(NoSuchKey):
            await s.open_reader(meta)
        it2 = await s.open_reader(await s.get_object("b", "k"))  # type: ignore[arg-type]
        await s.delete_object("b", "k")
        assert b"".join([c async for c in it2]) == b"new"

    run_store(tmp_path, body)
    assert data_files(tmp_path) == set()


def test_writer_abort_and_stray_tmp_cleanup(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        w = s.begin_write()
        await w.write(b"x" * 2_000_000)  # past the coalescing buffer: a tmp file exists
        assert tmp_files(tmp_path) == [w.vid]
        await w.abort()
        await w.abort()
        assert tmp_files(tmp_path) == []
        # A writer the client abandoned without abort(): close() removes its file.
        w2 = s.begin_write()
        await w2.write(b"y" * 200_000)
        await w2.finish()
        assert tmp_files(tmp_path) == [w2.vid]
        with pytest.raises(ValueError):
            await w2.write(b"more")

    run_store(tmp_path, body)
    assert tmp_files(tmp_path) == []


def test_small_writes_coalesce_correctly(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        pieces = [os.urandom(n) for n in (1, 10, 65535, 65536, 100, 300_000, 3, 70_000, 0, 5)]
        w = s.begin_write(("crc32c",))
        buf = bytearray()
        for p in pieces:
            mv = bytearray(p)
            await w.write(memoryview(mv))
            buf += p
            mv[:] = b"\0" * len(mv)   # caller reuses its buffer after each await
        res = await w.finish()
        assert w.size == res.size == len(buf)
        meta = ObjectMeta("b", "k", "", 0, "", 0)
        await s.put_object(meta, res)
        await w.abort()
        assert await read_all(s, meta) == bytes(buf)
        assert res.md5_hex == hashlib.md5(buf).hexdigest()

    run_store(tmp_path, body)


def test_persistence_and_single_owner(tmp_path: Path) -> None:
    async def first(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        await put(s, "b", "k", b"persisted")
        other = LocalStore(tmp_path)
        with pytest.raises(StorageError):
            await other.open()

    async def second(s: LocalStore) -> None:
        got = await s.get_object("b", "k")
        assert got is not None and await read_all(s, got) == b"persisted"

    run_store(tmp_path, first)
    run_store(tmp_path, second, durable=False)


def test_recovery_finishes_renames_and_gc(tmp_path: Path) -> None:
    """Simulate a crash after commit: a committed file still in tmp/, a pending gc row, and an
    uncommitted tmp file."""
    import sqlite3

    async def first(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        await put(s, "b", "keep", b"keep-me")
        await put(s, "b", "drop", b"drop-me")

    run_store(tmp_path, first, inline_max_bytes=0)
    base = tmp_path / ".rs3gw"
    db = sqlite3.connect(base / "meta.db")
    (keep_vid,) = db.execute("SELECT vid FROM objects WHERE key='keep'").fetchone()
    (drop_vid,) = db.execute("SELECT vid FROM objects WHERE key='drop'").fetchone()
    # keep: move its file back to tmp/ with a pending rename; drop: delete the row, leave a gc row.
    obj = Path(DataLayout(tmp_path, durable=True).object_path(keep_vid))
    os.rename(obj, base / "tmp" / keep_vid)
    db.execute("INSERT INTO renames(vid) VALUES (?)", (keep_vid,))
    db.execute("DELETE FROM objects WHERE key='drop'")
    db.execute("INSERT INTO gc(vid) VALUES (?)", (drop_vid,))
    db.commit()
    db.close()
    (base / "tmp" / ("f" * 32)).write_bytes(b"never committed")

    async def second(s: LocalStore) -> None:
        got = await s.get_object("b", "keep")
        assert got is not None and await read_all(s, got) == b"keep-me"
        assert await s.get_object("b", "drop") is None

    run_store(tmp_path, second)
    assert tmp_files(tmp_path) == [] and data_files(tmp_path) == {keep_vid}


def test_cancelled_commit_keeps_its_data(tmp_path: Path) -> None:
    """A client that vanishes after the commit was queued: the S3 layer's abort() in `finally`
    must not unlink the file the queued commit is about to publish."""
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        for enqueued in (True, False):
            key = f"k-{enqueued}"
            w = s.begin_write()
            await w.write(b"data" * 50_000)
            res = await w.finish()
            task = asyncio.create_task(s.put_object(ObjectMeta("b", key, "", 0, "", 0), res))
            if enqueued:
                await asyncio.sleep(0)
            task.cancel()
            await w.abort()
            # Write ops run in submission order: once this one returns, the put above has run.
            await s.set_bucket_config("b", "barrier", b"1")
            got = await s.get_object("b", key)
            if enqueued:
                assert got is not None and await read_all(s, got) == b"data" * 50_000
            else:
                assert got is None
            assert tmp_files(tmp_path) == []

    run_store(tmp_path, body)
    assert len(data_files(tmp_path)) == 1


def test_data_ids_sort_by_time_and_fan_out(tmp_path: Path) -> None:
    # Metadata b-trees keyed by vid take appends, not random inserts; files still spread.
    source = _VidSource()        # a fresh counter: no wrap of its low 16 bits in 5000 ids
    ids = [source() for _ in range(5000)] + [new_vid()]
    assert len(set(ids)) == len(ids)
    assert all(len(v) == 33 and v[0] == "t" and DataLayout.check_vid(v) == v for v in ids)
    assert ids[:5000] == sorted(ids[:5000])         # time, then the counter within one ms
    layout = DataLayout(tmp_path, durable=False)
    dirs = {layout.object_dir(v) for v in ids}
    assert len(dirs) > 1000
    # Ids of the earlier form stay valid where they always were.
    old = "0123456789abcdef" * 2
    assert layout.object_path(old) == str(tmp_path / ".rs3gw" / "objects" / "01" / "23" / old)
    with pytest.raises(ValueError):
        DataLayout.check_vid("t" + "0" * 31)
