"""Which data path LocalStore uses, and start-up when the wanted one is not available."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from rs3gw._core import uring
from rs3gw._core.directio import select_backend
from rs3gw.cli import server as cli_server
from rs3gw.storage import LocalStore, ObjectMeta, StorageError


def _fs_type(path: Path) -> str:
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        mnt, fstype = line.split()[1:3]
        if str(path).startswith(mnt) and len(mnt) > len(best):
            best, kind = mnt, fstype
    return kind


@pytest.mark.parametrize("direct_io", ["auto", "off"])
def test_uring_store_writes_and_reads_through_the_ring(tmp_path: Path, direct_io: str) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)

    async def main() -> None:
        ring, _ = select_backend("uring")
        store = LocalStore(tmp_path, io_backend=ring, direct_io=direct_io)
        try:
            await store.open()
            assert store.io_backend == "uring"
            if direct_io == "off":
                assert store.direct_io == "off"
            elif _fs_type(tmp_path) in ("ext4", "xfs"):
                assert store.direct_io == "writes"     # auto: O_DIRECT writes, cached reads
            await store.create_bucket("b", "o", "r")
            before = ring.sqes_submitted
            w = store.begin_write(("crc32c",))
            for i in range(0, len(data), 300_000):
                await w.write(data[i:i + 300_000])
            res = await w.finish()
            await store.put_object(ObjectMeta("b", "k", "", 0, "", 0), res)
            # 6 buffers of data, at least one sync
            assert ring.sqes_submitted - before >= 7
            meta = await store.get_object("b", "k")
            assert meta is not None
            it = await store.open_reader(meta, 4095, len(data) - 2)
            chunks = [c async for c in it]
            assert all(type(c) is bytes for c in chunks)
            assert b"".join(chunks) == data[4095:-1]
        finally:
            await store.close()
            await ring.aclose()

    asyncio.run(main())


def test_direct_io_on_needs_the_ring(tmp_path: Path) -> None:
    async def main() -> None:
        backend, name = select_backend("threads")
        assert name == "threads"
        store = LocalStore(tmp_path, io_backend=backend, direct_io="on")
        try:
            with pytest.raises(StorageError, match="RS3GW_DIRECT_IO=on"):
                await store.open()
        finally:
            await backend.aclose()

    asyncio.run(main())


def test_forced_uring_that_cannot_work_stops_start_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(uring, "probe", lambda: (False, "io_uring unusable: not permitted (EPERM)"))
    monkeypatch.setenv("RS3GW_IO_BACKEND", "uring")
    monkeypatch.setenv("RS3GW_STORAGE_ROOT", str(tmp_path))
    monkeypatch.setenv("RS3GW_BIND_ADDR", "127.0.0.1:0")
    monkeypatch.setenv("RS3GW_WORKERS", "1")    # this process: the probe is patched here only
    assert cli_server.run() == 1
    err = capsys.readouterr().err
    assert "rs3gw: cannot start: RS3GW_IO_BACKEND=uring, but io_uring cannot be used here" in err
    assert "not permitted (EPERM)" in err
    assert not (tmp_path / ".rs3gw").exists()   # stopped before touching the storage root


def test_abandoned_reader_and_aborted_writer_give_their_buffers_back(tmp_path: Path) -> None:
    from rs3gw.storage.directfiles import IO_BUFFERS

    async def main() -> None:
        ring, _ = select_backend("uring")
        store = LocalStore(tmp_path, io_backend=ring)
        try:
            await store.open()
            io = store._ring
            assert io is not None
            await store.create_bucket("b", "o", "r")
            w = store.begin_write()
            await w.write(os.urandom(6 * 1024 * 1024))
            await w.abort()
            assert io.write_pool.available == IO_BUFFERS
            assert os.listdir(tmp_path / ".rs3gw" / "tmp") == []
            w = store.begin_write()
            await w.write(os.urandom(8 * 1024 * 1024))
            meta = ObjectMeta("b", "k", "", 0, "", 0)
            await store.put_object(meta, await w.finish())
            it = await store.open_reader(meta)
            first = await it.__anext__()
            assert len(first) == 1 << 20
            await it.aclose()  # type: ignore[attr-defined]
            assert io.read_pool.available == IO_BUFFERS
        finally:
            await store.close()
            await ring.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("io_kind,direct_io,offered", [
    ("threads", "off", True), ("uring", "auto", True), ("uring", "on", False),
])
def test_readers_offer_their_file_pieces_only_before_reading_and_only_from_the_cache(
        tmp_path: Path, io_kind: str, direct_io: str, offered: bool) -> None:
    # What http.sendfile sends from: O_DIRECT descriptors bypass the page cache sendfile reads.
    from rs3gw.storage.directfiles import probe_direct
    if direct_io == "on" and (why := probe_direct(str(tmp_path))) is not None:
        pytest.skip(f"O_DIRECT is refused under {tmp_path}: {why}")

    async def main() -> None:
        backend, _ = select_backend(io_kind)
        store = LocalStore(tmp_path, io_backend=backend, direct_io=direct_io, inline_max_bytes=0)
        try:
            await store.open()
            await store.create_bucket("b", "o", "r")
            data = os.urandom(3 * 1024 * 1024 + 5)
            w = store.begin_write()
            await w.write(data)
            meta = ObjectMeta("b", "k", "", 0, "", 0)
            await store.put_object(meta, await w.finish())
            it = await store.open_reader(meta, 100, len(data) - 1)
            pieces = it.file_pieces()  # type: ignore[attr-defined]
            if offered:
                assert pieces is not None and len(pieces) == 1
                fd, offset, length = pieces[0]
                assert (offset, length) == (100, len(data) - 100)
                assert os.pread(fd, length, offset) == data[100:]
            else:
                assert pieces is None
            await it.__anext__()
            assert it.file_pieces() is None  # type: ignore[attr-defined]
            await it.aclose()  # type: ignore[attr-defined]
        finally:
            await store.close()
            await backend.aclose()

    asyncio.run(main())
