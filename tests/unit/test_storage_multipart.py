"""LocalStore multipart uploads, segment reads across parts, copy_data."""
from __future__ import annotations

import asyncio
import hashlib
import os
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

from rs3gw.storage import (
    InvalidPart,
    LocalStore,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    ObjectMeta,
    PreconditionFailed,
    UploadInfo,
)


def new_upload(bucket: str, key: str) -> UploadInfo:
    return UploadInfo(upload_id="", bucket=bucket, key=key, initiated=0, owner_id="o",
                      headers={"x-amz-meta-k": "v"}, content_type="app/x",
                      checksum_algorithm="crc32c", checksum_type="COMPOSITE", tags={"t": "1"})


def test_multipart_lifecycle(tmp_path: Path) -> None:
    parts = {1: os.urandom(150_000), 2: os.urandom(70_001), 3: os.urandom(33)}

    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        with pytest.raises(NoSuchBucket):
            await s.create_upload(new_upload("nope", "k"))
        up = await s.create_upload(new_upload("b", "big"))
        assert len(up.upload_id) == 32 and up.initiated > 0
        got_up = await s.get_upload("b", up.upload_id)
        assert got_up == up
        with pytest.raises(NoSuchUpload):
            await s.get_upload("other", up.upload_id)

        # Part 2 first written with wrong bytes, then replaced: the old file must go.
        first = await write_data(s, b"stale" * 1000)
        await s.put_part("b", up.upload_id, 2, first, {})
        for pn, data in parts.items():
            res = await write_data(s, data, ("crc32c",), chunk=40_000)
            info = await s.put_part("b", up.upload_id, pn, res, {"crc32c": "AAAAAA=="})
            assert info.etag == hashlib.md5(data).hexdigest() and info.size == len(data)
        listed, truncated = await s.list_parts("b", up.upload_id)
        assert [p.part_number for p in listed] == [1, 2, 3] and not truncated
        assert listed[1].checksums == {"crc32c": "AAAAAA=="}
        page1, t1 = await s.list_parts("b", up.upload_id, max_parts=2)
        page2, t2 = await s.list_parts("b", up.upload_id, part_marker=2, max_parts=2)
        assert [p.part_number for p in page1] == [1, 2] and t1
        assert [p.part_number for p in page2] == [3] and not t2
        assert first.vid not in data_files(tmp_path)

        uploads, cps, trunc = await s.list_uploads("b")
        assert [u.upload_id for u in uploads] == [up.upload_id] and cps == [] and not trunc

        meta = ObjectMeta("b", "big", "", 0, "etag-3", 0, content_type="app/x")
        with pytest.raises(InvalidPart):
            await s.complete_upload("b", up.upload_id, meta, [1, 2, 3, 4])
        with pytest.raises(InvalidPart):
            await s.complete_upload("b", up.upload_id, meta, [1, 1])
        done = await s.complete_upload("b", up.upload_id, meta, [1, 2, 3])
        assert done.size == sum(len(d) for d in parts.values()) and done.parts_count == 3
        assert [seg.size for seg in done.segments] == [len(d) for d in parts.values()]
        whole = b"".join(parts.values())
        obj = await s.get_object("b", "big")
        assert obj is not None and obj.etag == "etag-3" and obj.parts_count == 3
        assert await read_all(s, obj) == whole
        # Ranges that start/end inside and across part boundaries, odd chunk sizes.
        b1, b2 = len(parts[1]), len(parts[1]) + len(parts[2])
        for start, end in [(0, 0), (b1 - 1, b1), (b1 - 10, b2 + 5), (b2, len(whole) - 1),
                           (5, len(whole) - 2), (b1, b2 - 1)]:
            for chunk in (1 << 20, 4096, 70_000):
                got = await read_all(s, obj, start, end, chunk_bytes=chunk)
                assert got == whole[start:end + 1], (start, end, chunk)
        with pytest.raises(ValueError):
            await s.open_reader(obj, 0, len(whole))

        with pytest.raises(NoSuchUpload):
            await s.list_parts("b", up.upload_id)
        with pytest.raises(NoSuchUpload):
            await s.complete_upload("b", up.upload_id, meta, [1])
        assert (await s.list_uploads("b"))[0] == []

    run_store(tmp_path, body)
    assert tmp_files(tmp_path) == [] and len(data_files(tmp_path)) == 3


def test_complete_drops_unlisted_parts_and_previous_object(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        old = await put(s, "b", "k", b"old object")
        up = await s.create_upload(new_upload("b", "k"))
        vids = {}
        for pn in (1, 2, 3):
            res = await write_data(s, f"part{pn}".encode())
            vids[pn] = (await s.put_part("b", up.upload_id, pn, res, {})).vid
        meta = ObjectMeta("b", "k", "", 0, "x-2", 0)
        with pytest.raises(PreconditionFailed):
            await s.complete_upload("b", up.upload_id, meta, [1, 3], if_none_match=True)
        with pytest.raises(PreconditionFailed):
            await s.complete_upload("b", up.upload_id, meta, [1, 3], if_match="nope")
        await s.complete_upload("b", up.upload_id, meta, [1, 3], if_match=old.etag)
        obj = await s.get_object("b", "k")
        assert obj is not None and await read_all(s, obj) == b"part1part3"
        assert data_files(tmp_path) == {vids[1], vids[3]}

    run_store(tmp_path, body)


def test_abort_and_part_to_missing_upload(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        up = await s.create_upload(new_upload("b", "k"))
        for pn in (1, 2):
            await s.put_part("b", up.upload_id, pn, await write_data(s, b"p" * 1000), {})
        assert len(data_files(tmp_path)) == 2
        await s.abort_upload("b", up.upload_id)
        assert data_files(tmp_path) == set()
        with pytest.raises(NoSuchUpload):
            await s.abort_upload("b", up.upload_id)
        res = await write_data(s, b"late part")
        with pytest.raises(NoSuchUpload):
            await s.put_part("b", up.upload_id, 3, res, {})
        # The rejected part's file is gone at once, not only at close.
        assert tmp_files(tmp_path) == [] and data_files(tmp_path) == set()

        # Deleting a bucket aborts its in-progress uploads and collects their parts.
        up2 = await s.create_upload(new_upload("b", "k2"))
        await s.put_part("b", up2.upload_id, 1, await write_data(s, b"q" * 10), {})
        await s.delete_bucket("b")
        with pytest.raises(NoSuchUpload):
            await s.get_upload("b", up2.upload_id)

    run_store(tmp_path, body)
    assert tmp_files(tmp_path) == [] and data_files(tmp_path) == set()


def test_concurrent_put_part_same_number(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        up = await s.create_upload(new_upload("b", "k"))
        results = [await write_data(s, f"v{i}".encode() * 100) for i in range(6)]
        await asyncio.gather(*(s.put_part("b", up.upload_id, 1, r, {}) for r in results))
        listed, _ = await s.list_parts("b", up.upload_id)
        assert len(listed) == 1
        assert data_files(tmp_path) == {listed[0].vid}

    run_store(tmp_path, body)


def test_copy_data_ranges(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        up = await s.create_upload(new_upload("b", "src"))
        chunks = [os.urandom(2_500_000), os.urandom(10), os.urandom(1_100_000)]
        for pn, c in enumerate(chunks, 1):
            await s.put_part("b", up.upload_id, pn, await write_data(s, c), {})
        src = await s.complete_upload("b", up.upload_id, ObjectMeta("b", "src", "", 0, "e-3", 0),
                                      [1, 2, 3])
        whole = b"".join(chunks)
        for start, end in [(0, len(whole) - 1), (2_499_995, 2_500_012), (3, 3),
                           (1_000_000, 3_000_000)]:
            res = await s.copy_data(src, start, end, ("sha256",))
            expect = whole[start:end + 1]
            assert res.size == len(expect) and res.md5_hex == hashlib.md5(expect).hexdigest()
            assert res.checksums["sha256"] == hashlib.sha256(expect).digest()
            dst = ObjectMeta("b", f"copy-{start}", "", 0, "", 0)
            await s.put_object(dst, res)
            assert await read_all(s, dst) == expect
        # Copy of a range then used as a part (UploadPartCopy).
        up2 = await s.create_upload(new_upload("b", "assembled"))
        part = await s.copy_data(src, 10, 20)
        await s.put_part("b", up2.upload_id, 1, part, {})
        out = await s.complete_upload("b", up2.upload_id, ObjectMeta("b", "assembled", "", 0,
                                                                    "e-1", 0), [1])
        assert await read_all(s, out) == whole[10:21]
        # Source deleted meanwhile: copy fails as NoSuchKey and leaves no tmp file.
        await s.delete_object("b", "src")
        with pytest.raises(NoSuchKey):
            await s.copy_data(src, 0, 10)
        assert tmp_files(tmp_path) == []

    run_store(tmp_path, body)


def test_list_uploads_paging(tmp_path: Path) -> None:
    async def body(s: LocalStore) -> None:
        await s.create_bucket("b", "o", "r")
        ids: list[tuple[str, str]] = []
        for key in ("a/1", "a/2", "b", "b", "b", "c/x/y", "d"):
            ids.append((key, (await s.create_upload(new_upload("b", key))).upload_id))
        order = [(k, u) for k, u in ids]  # created in time order per key already
        got: list[tuple[str, str]] = []
        km, um = "", ""
        while True:
            ups, cps, trunc = await s.list_uploads("b", key_marker=km, upload_id_marker=um,
                                                   max_uploads=2)
            assert cps == []
            got += [(u.key, u.upload_id) for u in ups]
            if not trunc:
                break
            km, um = ups[-1].key, ups[-1].upload_id
        assert got == sorted(order, key=lambda t: (t[0], ids.index(t)))

        ups, cps, trunc = await s.list_uploads("b", delimiter="/")
        assert cps == ["a/", "c/"] and [u.key for u in ups] == ["b", "b", "b", "d"] and not trunc
        ups, cps, trunc = await s.list_uploads("b", delimiter="/", max_uploads=2)
        assert cps == ["a/"] and [u.key for u in ups] == ["b"] and trunc
        ups, cps, trunc = await s.list_uploads("b", delimiter="/", key_marker="a/",
                                               max_uploads=4)
        assert cps == ["c/"] and [u.key for u in ups] == ["b", "b", "b"] and trunc
        ups, cps, trunc = await s.list_uploads("b", prefix="c/", delimiter="/")
        assert cps == ["c/x/"] and ups == [] and not trunc

    run_store(tmp_path, body)
