"""Bucket-level writes in cluster mode: buckets, policies and tagging live on every node, so each
change is stamped, committed here and shipped to every other member with the mode's counting."""
from __future__ import annotations

import functools
import time
from typing import Any

from rs3gw.storage import objects, versioned
from rs3gw.storage.types import (
    BucketExists,
    BucketInfo,
    BucketNotEmpty,
    NoSuchBucket,
    Unavailable,
)

from . import stamps
from .events import (
    CreateBucket,
    DeleteBucket,
    DeleteBucketPolicy,
    DeleteBucketTagging,
    PutBucketPolicy,
    PutBucketTagging,
    ReplicationEvent,
)
from .replicate import Replicator
from .transport import RemoteError, TransportError
from .versions import ObjectVersion


class BucketOps(Replicator):
    # --- buckets ------------------------------------------------------------------------------

    async def get_bucket(self, name: str) -> BucketInfo | None:
        return await self.local.get_bucket(name)

    async def list_buckets(self) -> list[BucketInfo]:
        return await self.local.list_buckets()

    async def _bucket_write(self, kind: str, bucket: str, make: Any, body: Any) -> ReplicationEvent:
        """Bucket-level state lives on every node: stamp, commit here, ship to all others."""
        others = self.node.others()
        everyone = [self.node.node_id, *others]
        self._precheck(everyone, self.node.required(len(everyone)))
        known = stamps.decode(await self.local.item_stamp(kind, bucket))
        v = stamps.local_write(self.node.clock, self.node.node_id, [known],
                               tombstone=make in (DeleteBucket, DeleteBucketPolicy,
                                                  DeleteBucketTagging))
        ev: ReplicationEvent = make(v)
        ev_v = ev.version
        await self.local.apply_versioned(kind, bucket, "", stamps.judge(ev_v, self.node.resolver), body)
        await self._ship(ev, others, self.node.required(len(everyone)) - 1)
        return ev

    async def create_bucket(self, name: str, owner_id: str, region: str) -> BucketInfo:
        existing = await self.local.get_bucket(name)
        if existing is not None:
            raise BucketExists(existing.owner_id)
        created = time.time()
        await self._bucket_write(
            "bucket", name,
            lambda v: CreateBucket(event_id=v.hlc, bucket=name, vector=v.vector, created=v.created,
                                   owner_id=owner_id, region=region, creation_date=created),
            lambda txn: versioned.create_bucket_replica(txn, name, owner_id, region, created))
        return BucketInfo(name=name, owner_id=owner_id, region=region, created=created)

    async def delete_bucket(self, name: str) -> None:
        if await self.local.get_bucket(name) is None:
            raise NoSuchBucket(name)
        page = await self.local.list_objects(name, max_keys=1)
        if page.entries:
            raise BucketNotEmpty(name)
        for n in self.node.others():
            if not self.node.live(n):
                raise Unavailable(f"node {n} is down: cannot check that bucket {name} is empty")
            try:
                reply = await self.node.call(n, "rep.list", {"b": name, "n": 1})
            except RemoteError as e:
                if e.code == "NoSuchBucket":
                    continue
                raise Unavailable(f"node {n}: {e}") from e
            except TransportError as e:
                raise Unavailable(f"node {n}: {e}") from e
            if reply.body.get("e"):
                raise BucketNotEmpty(name)
        await self._bucket_write(
            "bucket", name,
            lambda v: DeleteBucket(event_id=v.hlc, bucket=name, vector=v.vector, created=v.created),
            lambda txn: versioned.delete_bucket_replica(txn, name))

    async def set_bucket_config(self, bucket: str, kind: str, value: bytes | None) -> None:
        events: dict[str, tuple[Any, Any]] = {"policy": (PutBucketPolicy, DeleteBucketPolicy),
                                              "tagging": (PutBucketTagging, DeleteBucketTagging)}
        if kind not in events:
            await self.local.set_bucket_config(bucket, kind, value)
            return
        put, delete = events[kind]
        if value is None:
            def make(v: ObjectVersion) -> ReplicationEvent:
                return delete(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created)
        else:
            doc = bytes(value)

            def make(v: ObjectVersion) -> ReplicationEvent:
                return put(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created,
                           document=doc)
        objects_body = functools.partial(objects.set_bucket_config, bucket=bucket, kind=kind,
                                         value=value)
        await self._bucket_write(kind, bucket, make, objects_body)
