"""Small objects stored inline in the metadata store: the threshold, no file I/O, reads, copies,
overwrites between inline and file objects, multipart parts kept as files."""
from __future__ import annotations

import hashlib
import os
import sqlite3
import zlib
from pathlib import Path

import pytest
from test_storage import (  # noqa: F401 - io_kind: autouse, parametrizes this module too
    data_files,
    io_kind,
    put,
    read_all,
    run_store,
    tmp_files,
    write_data,
)

from rs3gw.storage import LocalStore, NoSuchKey, NoSuchUpload, ObjectMeta, Segment, UploadInfo
from rs3gw.storage.datafiles import HASH_ON_LOOP_MAX_BYTES, INLINE_MAX_BYTES

LIMIT = 20_000      # a threshold above HASH_ON_LOOP_MAX_BYTES: both hashing paths get used


def inline_rows(root: Path) -> set[str]:
    db = sqlite3.connect(root / ".rs3gw" / "meta.db")
    try:
        return {vid for (vid,) in db.execute("SELECT vid FROM inline_data")}
    finally:
        db.close()


def test_threshold_and_hashing(tmp_path: Path) -> None:
    assert LIMIT > HASH_ON_LOOP_MAX_BYTES and INLINE_MAX_BYTES == 64 * 1024

    async def body(s: LocalStore) -> None:
        assert s.inline_max_bytes == LIMIT
        await s.create_bucket("b", "o", "r")
        for size in (0, 1, 4096, HASH_ON_LOOP_MAX_BYTES + 1, LIMIT - 1, LIMIT, LIMIT + 1, 150_000):
            data = os.urandom(size)
            for chunk in (1000, 7, 65_536):
                if size > 30_000 and chunk == 7:
                    continue
                res = await write_data(s, data, ("crc32", "sha256"), chunk=chunk)
                assert res.size == size and res.md5_hex == hashlib.md5(data).hexdigest()
                assert res.checksums["sha256"] == hashlib.sha256(data).digest()
                assert int.from_bytes(res.checksums["crc32"], "big") == zlib.crc32(data)
                assert (res.inline is not None) == (size <= LIMIT), (size, chunk)
                if res.inline is not None:
                    assert res.inline == data and tmp_files(tmp_path) == []
                meta = ObjectMeta("b", f"k{size}", "", 0, "", 0)
                await s.put_object(meta, res)
                got = await s.get_object("b", f"k{size}")
                assert got is not None and got.segments[0].inline == (size <= LIMIT)
                assert set(got.segments[0].checksums) == {"crc32", "sha256"}
                assert await read_all(s, got) == data
                if size > 10:
                    assert await read_all(s, got, 3, size - 5, chunk_bytes=999) == data[3:size - 4]

    run_store(tmp_path, body, inline_max_bytes=LIMIT)
    assert len(data_files(tmp_path)) == 2      # the two live objects above the threshold
    assert len(inline_rows(tmp_path)) == 6 and tmp_files(tmp_path) == []


def test_small_put_does_no_file_io(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        ring = s._ring.backend if s._ring is not None else None
        before = ring.sqes_submitted if ring is not None else 0
        w = s.begin_write(("crc32c",))
        for _ in range(16):
            await w.write(b"x" * 4096)
        assert tmp_files(tmp_path) == []
        res = await w.finish()
        assert res.inline == b"x" * 65_536 and tmp_files(tmp_path) == []
        await s.put_object(ObjectMeta("b", "k", "", 0, "", 0), res)
        await w.abort()
        if ring is not None:
            assert ring.sqes_submitted == before
        # An aborted small writer leaves nothing either, and neither does an unused one.
        w2 = s.begin_write()
        await w2.write(b"y" * 100)
        await w2.abort()
        await s.begin_write().abort()
        got = await s.get_object("b", "k")
        assert got is not None and await read_all(s, got) == b"x" * 65_536

    run_store(tmp_path, body)
    assert data_files(tmp_path) == set() and tmp_files(tmp_path) == []
    assert len(inline_rows(tmp_path)) == 1


def test_overwrites_between_inline_and_files_keep_gc_right(tmp_path: Path) -> None:
    big = os.urandom(200_000)

    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        await put(s, "b", "k", b"small-1")
        assert len(inline_rows(tmp_path)) == 1 and data_files(tmp_path) == set()
        await put(s, "b", "k", big)                            # inline -> file
        assert inline_rows(tmp_path) == set() and len(data_files(tmp_path)) == 1
        await put(s, "b", "k", b"small-2")                     # file -> inline
        got = await s.get_object("b", "k")
        assert got is not None and await read_all(s, got) == b"small-2"
        assert inline_rows(tmp_path) == {got.vid} and data_files(tmp_path) == set()
        await put(s, "b", "k", b"small-3")                     # inline -> inline
        got3 = await s.get_object("b", "k")
        assert got3 is not None and inline_rows(tmp_path) == {got3.vid}
        # A reader opened before an overwrite still gets the old bytes; a stale meta fails cleanly.
        it = await s.open_reader(got3)
        await put(s, "b", "k", b"small-4")
        assert b"".join([c async for c in it]) == b"small-3"
        with pytest.raises(NoSuchKey):
            await s.open_reader(got3)
        await s.delete_object("b", "k")
        assert inline_rows(tmp_path) == set()
        await put(s, "b", "a", b"1")
        await put(s, "b", "c", b"2")
        await s.delete_objects("b", [("a", None), ("c", None)])
        assert inline_rows(tmp_path) == set()

    run_store(tmp_path, body)
    assert data_files(tmp_path) == set() and tmp_files(tmp_path) == []
    db = sqlite3.connect(tmp_path / ".rs3gw" / "meta.db")
    try:
        assert db.execute("SELECT count(*) FROM gc").fetchone()[0] == 0
    finally:
        db.close()


def test_metadata_only_replace_keeps_inline_body(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        await put(s, "b", "k", b"payload")
        cur = await s.get_object("b", "k")
        assert cur is not None and cur.segments[0].inline
        # A caller that rebuilt the segments without the flag: the store knows better.
        segs = [Segment(x.vid, x.size, x.etag, x.checksums) for x in cur.segments]
        new = ObjectMeta("b", "k", "", cur.size, cur.etag, 0, headers={"x-amz-meta-a": "1"},
                         segments=segs)
        await s.put_object(new, None)
        got = await s.get_object("b", "k")
        assert got is not None and got.segments[0].inline and got.headers == {"x-amz-meta-a": "1"}
        assert await read_all(s, got) == b"payload"
        await s.set_object_tags("b", "k", {"t": "1"})
        got = await s.get_object("b", "k")
        assert got is not None and await read_all(s, got, 1, 3) == b"ayl"
        assert inline_rows(tmp_path) == {cur.vid}
        await s.delete_object("b", "k")

    run_store(tmp_path, body)
    assert inline_rows(tmp_path) == set()


def test_copy_data_from_and_to_inline(tmp_path: Path) -> None:
    big = os.urandom(300_000)

    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        await put(s, "b", "small", b"0123456789")
        await put(s, "b", "big", big)
        small = await s.get_object("b", "small")
        bigm = await s.get_object("b", "big")
        assert small is not None and bigm is not None
        # inline -> inline, with a checksum; a range of a file object that fits inline; a file.
        c1 = await s.copy_data(small, 2, 5, ["crc32c"])
        assert c1.inline == b"2345" and "crc32c" in c1.checksums
        c2 = await s.copy_data(bigm, 1000, 1999)
        assert c2.inline == big[1000:2000]
        c3 = await s.copy_data(bigm, 0, len(big) - 1)
        assert c3.inline is None and c3.md5_hex == hashlib.md5(big).hexdigest()
        await s.discard_write(c1)
        await s.discard_write(c3)
        await s.put_object(ObjectMeta("b", "copy", "", 0, "", 0), c2)
        got = await s.get_object("b", "copy")
        assert got is not None and got.segments[0].inline and await read_all(s, got) == big[1000:2000]

    run_store(tmp_path, body)
    assert tmp_files(tmp_path) == [] and len(data_files(tmp_path)) == 1


def test_lower_threshold_later_reads_and_copies_old_inline_objects(tmp_path: Path) -> None:
    data = os.urandom(50_000)

    async def first(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        await put(s, "b", "k", data)

    async def second(s: LocalStore) -> None:
        meta = await s.get_object("b", "k")
        assert meta is not None and meta.segments[0].inline
        assert await read_all(s, meta) == data
        copied = await s.copy_data(meta, 0, len(data) - 1)
        assert copied.inline is None        # above today's threshold: a file
        await s.put_object(ObjectMeta("b", "k", "", 0, "", 0), copied)
        got = await s.get_object("b", "k")
        assert got is not None and not got.segments[0].inline and await read_all(s, got) == data

    run_store(tmp_path, first)
    run_store(tmp_path, second, inline_max_bytes=1000)
    assert inline_rows(tmp_path) == set() and len(data_files(tmp_path)) == 1


def test_small_parts_become_files(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        up = await s.create_upload(UploadInfo("", "b", "mp", 0, "o"))
        p1 = os.urandom(100_000)
        r2 = await write_data(s, b"tail")
        assert r2.inline == b"tail"
        await s.put_part("b", up.upload_id, 1, await write_data(s, p1), {})
        info = await s.put_part("b", up.upload_id, 2, r2, {})
        assert info.vid == r2.vid and info.vid in data_files(tmp_path) | set(tmp_files(tmp_path))
        meta = await s.complete_upload("b", up.upload_id, ObjectMeta("b", "mp", "", 0, "e-2", 0), [1, 2])
        assert not any(seg.inline for seg in meta.segments)
        got = await s.get_object("b", "mp")
        assert got is not None and await read_all(s, got) == p1 + b"tail"
        # An inline part of an upload that does not exist: its materialized file does not stay.
        r3 = await write_data(s, b"orphan?")
        with pytest.raises(NoSuchUpload):
            await s.put_part("b", "0" * 32, 1, r3, {})

    run_store(tmp_path, body)
    assert tmp_files(tmp_path) == [] and len(data_files(tmp_path)) == 2
    assert inline_rows(tmp_path) == set()


def test_group_commit_counts(tmp_path: Path) -> None:
    import asyncio

    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        w = s._writer
        assert w is not None
        b0, o0 = w.batches_committed, w.ops_committed
        await asyncio.gather(*(put(s, "b", f"k{i}", b"v") for i in range(16)))
        assert w.ops_committed - o0 == 16
        assert 1 <= w.batches_committed - b0 <= 16

    run_store(tmp_path, body)
