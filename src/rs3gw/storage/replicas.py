"""LocalStore's cluster-mode half (storage/protocols.ReplicaStore): the stamped versions the
cluster replicates, each write judged in its own transaction (storage/versioned.py).

``ReplicaOps`` is a mixin of LocalStore: it runs everything through the store's read pool and
writer thread. What it needs of the store is declared at its top and defined by LocalStore.
"""
from __future__ import annotations

import functools
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from rs3gw.storage import objects, versioned, versioning
from rs3gw.storage.datafiles import InlineReader
from rs3gw.storage.metadb import Txn
from rs3gw.storage.protocols import Judge, StampRow, StampTest
from rs3gw.storage.types import ObjectMeta, UploadInfo, WriteResult

T = TypeVar("T")


class ReplicaOps:
    # --- what the mixin needs of the store (LocalStore defines each) ------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _write(self, fn: Callable[[Txn], T], *, claims: tuple[str, ...] = (),
                     buckets_changed: bool = False) -> T:
        raise NotImplementedError

    async def discard_write(self, data: WriteResult) -> None:
        raise NotImplementedError

    async def open_reader(self, meta: ObjectMeta, start: int = 0,
                          end_inclusive: int | None = None,
                          chunk_bytes: int = 1 << 20) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def get_upload(self, bucket: str, upload_id: str) -> UploadInfo:
        raise NotImplementedError

    # --- stamps and replicated versions -----------------------------------------------------------

    async def item_stamp(self, kind: str, bucket: str, key: str = "") -> bytes | None:
        return await self._read(functools.partial(versioned.get_stamp, kind=kind, bucket=bucket,
                                                  key=key))

    async def stored_version(self, bucket: str, key: str, version_id: str | None = None,
                             ) -> tuple[ObjectMeta | None, bytes | None]:
        """From one snapshot: the key's current object and the stamp of what is current (in a
        versioned bucket the newest version's, a delete marker's included); with ``version_id``
        that version (a delete marker too) and its stamp."""
        meta, stamp, _ = await self.stored_entry(bucket, key, version_id)
        return meta, stamp

    async def stored_entry(self, bucket: str, key: str, version_id: str | None = None,
                           ) -> tuple[ObjectMeta | None, bytes | None, bytes]:
        """stored_version, plus where the version sorts (its seq; b"" for an unversioned
        object)."""
        def run(conn: sqlite3.Connection) -> tuple[ObjectMeta | None, bytes | None, bytes]:
            if version_id is None:
                meta = objects.current_object(conn, bucket, key)
                stamp = versioned.get_stamp(conn, "object", bucket, key)
                if stamp is not None or (meta is not None and meta.version_id is None):
                    return meta, stamp, b""
                top = versioning.newest(conn, bucket, key)
                if top is None:
                    return meta, None, b""
                vid = top.version_id
            else:
                vid = version_id
                top = versioning.get_version(conn, bucket, key, vid)
            assert vid is not None
            stamp = versioned.get_stamp(conn, versioned.VERSION_KIND, bucket,
                                        versioned.version_item(key, vid))
            seq = versioning.seq_of(conn, bucket, key, vid) or b""
            if version_id is None:
                return objects.current_object(conn, bucket, key), stamp, seq
            return top, stamp, seq
        return await self._read(run)

    async def scan_stamps(self, kind: str, after: tuple[str, str] = ("", ""),
                          limit: int = 1000) -> list[StampRow]:
        return await self._read(functools.partial(versioned.scan_stamps, kind=kind, after=after,
                                                  limit=limit))

    async def open_version(self, bucket: str, key: str, wanted: StampTest,
                           version_id: str | None = None,
                           ) -> tuple[ObjectMeta, AsyncIterator[bytes]] | None:
        meta, stamp = await self.stored_version(bucket, key, version_id)
        if meta is None or stamp is None or not wanted(stamp):
            return None
        if meta.size == 0:
            return meta, InlineReader(b"", 1)
        return meta, await self.open_reader(meta)

    async def forget_stamp(self, kind: str, bucket: str, key: str, only_if: StampTest) -> bool:
        return bool(await self._write(functools.partial(
            versioned.forget_stamp, kind=kind, bucket=bucket, key=key, only_if=only_if)))

    async def apply_object(self, meta: ObjectMeta, data: tuple[WriteResult, ...],
                           judge: Judge, seq: bytes = b"") -> bool:
        inline = data[0].inline if len(data) == 1 else None
        claims = tuple(d.vid for d in data if d.inline is None)
        taken, _ = await self._write(functools.partial(versioned.apply_put, meta=meta,
                                                       inline=inline, judge=judge, seq=seq),
                                     claims=claims)
        if not taken:
            for d in data:
                await self.discard_write(d)
        return bool(taken)

    async def apply_tombstone(self, bucket: str, key: str, judge: Judge,
                              version_id: str | None = None) -> bool:
        taken, _ = await self._write(functools.partial(
            versioned.apply_delete, bucket=bucket, key=key, version_id=version_id, judge=judge))
        return bool(taken)

    async def apply_bucket(self, name: str, owner_id: str, region: str, created: float,
                           judge: Judge, configs: dict[str, bytes] | None = None) -> bool:
        taken, _ = await self._apply_versioned(
            "bucket", name, "", judge,
            functools.partial(versioned.create_bucket_replica, name=name, owner_id=owner_id,
                              region=region, created=created, configs=configs))
        return taken

    async def apply_bucket_delete(self, name: str, judge: Judge) -> bool:
        taken, _ = await self._apply_versioned(
            "bucket", name, "", judge, functools.partial(versioned.delete_bucket_replica, name=name))
        return taken

    async def apply_bucket_config(self, bucket: str, kind: str, value: bytes | None,
                                  judge: Judge) -> bool:
        taken, _ = await self._apply_versioned(
            kind, bucket, "", judge,
            functools.partial(versioned.set_bucket_config_replica, bucket=bucket, kind=kind,
                              value=value))
        return taken

    async def complete_upload_versioned(self, bucket: str, upload_id: str, meta: ObjectMeta,
                                        part_numbers: list[int], judge: Judge, seq: bytes = b"",
                                        ) -> ObjectMeta | None:
        key = (await self.get_upload(bucket, upload_id)).key
        taken, done = await self._write(functools.partial(
            versioned.apply_complete, bucket=bucket, key=key, upload_id=upload_id, meta=meta,
            part_numbers=list(part_numbers), judge=judge, seq=seq))
        return done if taken else None

    async def _apply_versioned(self, kind: str, bucket: str, key: str, judge: Judge,
                               body: Callable[[Txn], Any], *,
                               new_data: tuple[WriteResult, ...] = ()) -> tuple[bool, Any]:
        """Run ``body`` only if ``judge`` (given the item's stamp, in the writer thread) says the
        payload wins; store its stamp either way. ``new_data``: tmp files the body commits; when
        the payload loses they are removed here."""
        claims = tuple(d.vid for d in new_data if d.inline is None)
        taken, result = await self._write(
            functools.partial(versioned.apply, kind=kind, bucket=bucket, key=key, judge=judge,
                              body=body), claims=claims, buckets_changed=kind != "object")
        if not taken:
            for d in new_data:
                await self.discard_write(d)
        return taken, result
