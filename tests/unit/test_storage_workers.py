"""Several LocalStores on one root, as RS3GW_WORKERS runs them (one per worker process; here two in
one process, which shares nothing in memory either): the root lock, recovery by its owner only,
and bucket rows cached by one store dropped when another store changes them."""
from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from test_storage import put, read_all

from rs3gw._core.directio import select_backend
from rs3gw.storage import LocalStore, StorageError
from rs3gw.storage.bucketgen import SharedGeneration
from rs3gw.storage.datafiles import DataLayout
from rs3gw.storage.metadb import connect_writer
from rs3gw.storage.rootlock import release_root, take_root


def run_pair(root: Path, body: Callable[[LocalStore, LocalStore], Awaitable[None]]) -> None:
    """Lock and recover the root the way the supervisor does, then open two supervised stores."""
    layout = DataLayout(root, True)
    fd, conn = take_root(layout, True)
    conn.close()

    async def main() -> None:
        backend, _ = select_backend("threads")
        a = LocalStore(root, io_backend=backend, supervised=True)
        b = LocalStore(root, io_backend=backend, supervised=True)
        await a.open()
        await b.open()
        try:
            await body(a, b)
        finally:
            await a.close()
            await b.close()
            await backend.aclose()

    try:
        asyncio.run(main())
    finally:
        release_root(layout, connect_writer(layout.base / "meta.db", True), fd)


def test_a_bucket_deleted_by_one_store_is_gone_for_the_other(tmp_path: Path) -> None:
    async def body(a: LocalStore, b: LocalStore) -> None:
        await a.create_bucket("shared", "owner", "us-east-1")
        assert (await b.get_bucket("shared")) is not None          # b caches it now
        info, _, _ = await b.lookup_object("shared", "k", with_body=False)
        assert info is not None
        await a.delete_bucket("shared")
        assert await b.get_bucket("shared") is None
        info, _, _ = await b.lookup_object("shared", "k", with_body=False)
        assert info is None

    run_pair(tmp_path, body)


def test_a_bucket_config_set_by_one_store_is_seen_by_the_other(tmp_path: Path) -> None:
    async def body(a: LocalStore, b: LocalStore) -> None:
        await a.create_bucket("cfg", "owner", "us-east-1")
        before = await b.get_bucket("cfg")
        assert before is not None and "tagging" not in before.configs
        await a.set_bucket_config("cfg", "tagging", b"<Tagging/>")
        after = await b.get_bucket("cfg")
        assert after is not None and after.configs.get("tagging") == b"<Tagging/>"
        # And the other way round, with a's cache warm.
        await b.set_bucket_config("cfg", "tagging", None)
        again = await a.get_bucket("cfg")
        assert again is not None and "tagging" not in again.configs

    run_pair(tmp_path, body)


def test_objects_written_by_one_store_are_read_by_the_other(tmp_path: Path) -> None:
    async def body(a: LocalStore, b: LocalStore) -> None:
        await a.create_bucket("objs", "owner", "us-east-1")
        for size in (10, 200_000):      # inline, then a data file
            data = os.urandom(size)
            await put(a, "objs", f"k{size}", data)
            meta = await b.get_object("objs", f"k{size}")
            assert meta is not None and meta.size == size
            assert await read_all(b, meta) == data
            await put(b, "objs", f"k{size}", data[::-1])      # replaced by the other store
            meta = await a.get_object("objs", f"k{size}")
            assert meta is not None and await read_all(a, meta) == data[::-1]

    run_pair(tmp_path, body)


def test_supervised_stores_leave_tmp_alone_and_the_owner_sweeps_it(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path, True)
    fd, conn = take_root(layout, True)
    stray = Path(layout.tmp_dir) / ("0" * 32)
    stray.write_bytes(b"an upload another worker is still writing")

    async def main() -> None:
        backend, _ = select_backend("threads")
        s = LocalStore(tmp_path, io_backend=backend, supervised=True)
        await s.open()
        await s.close()
        await backend.aclose()

    asyncio.run(main())
    assert stray.exists()
    release_root(layout, conn, fd)
    assert not stray.exists()


def test_the_root_lock_waits_for_a_previous_owner_then_gives_up(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path, True)
    fd, conn = take_root(layout, True)
    try:
        with pytest.raises(StorageError, match="in use by another process"):
            take_root(layout, True, wait_s=0.2)
    finally:
        release_root(layout, conn, fd)
    fd, conn = take_root(layout, True, wait_s=0.2)
    release_root(layout, conn, fd)


def test_shared_generation_changes_on_every_bump(tmp_path: Path) -> None:
    a, b = SharedGeneration(str(tmp_path / "g")), SharedGeneration(str(tmp_path / "g"))
    a.open()
    b.open()
    seen = {b.read()}
    for _ in range(100):
        a.bump()
        assert b.read() not in seen
        seen.add(b.read())
    a.close()
    b.close()
    b.bump()      # closed: a no-op, not a crash
