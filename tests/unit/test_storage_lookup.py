"""GetObject's lookup: on the loop's own connection, or through the read pool; same answers."""
from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from rs3gw.storage import LocalStore, ObjectMeta, Segment


class _Busy:
    """Stands in for the loop's connection while another process holds the database."""

    def execute(self, *a: Any, **k: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")

    def close(self) -> None:
        pass


async def _put(store: LocalStore, key: str, data: bytes) -> None:
    w = store.begin_write()
    await w.write(data)
    r = await w.finish()
    meta = ObjectMeta("b", key, "", 0, "", 0.0, owner_id="o",
                      segments=[Segment(r.vid, r.size, r.md5_hex)])
    await store.put_object(meta, r)


@pytest.mark.parametrize("loop_reads", [True, False])
def test_lookup_object_same_answers_on_the_loop_and_in_the_pool(tmp_path: Path, loop_reads: bool) -> None:
    async def main() -> None:
        store = LocalStore(tmp_path / "r", loop_reads=loop_reads)
        await store.open()
        try:
            await store.create_bucket("b", "o", "us-east-1")
            await _put(store, "small", b"s" * 100)
            await _put(store, "big", b"B" * 300_000)
            await store.get_bucket("b")            # cached from here on
            for key, size, inline in (("small", 100, True), ("big", 300_000, False)):
                info, meta, body = await store.lookup_object("b", key, with_body=True)
                assert info is not None and meta is not None and meta.size == size
                assert (body == b"s" * 100) if inline else body is None
                _, head_meta, head_body = await store.lookup_object("b", key, with_body=False)
                assert head_meta == meta and head_body is None
            assert (await store.lookup_object("b", "missing", with_body=True))[1:] == (None, None)
            assert await store.lookup_object("nobucket", "k", with_body=True) == (None, None, None)
            if loop_reads:
                real, store._loop_conn = store._loop_conn, _Busy()  # type: ignore[assignment]
                try:
                    _, meta, body = await store.lookup_object("b", "small", with_body=True)
                    assert meta is not None and body == b"s" * 100      # answered by the pool
                finally:
                    store._loop_conn = real
        finally:
            await store.close()
    asyncio.run(main())
