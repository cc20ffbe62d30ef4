"""Bucket-level writes in cluster mode: buckets and their configuration documents (policy, tagging,
versioning state, object lock, lifecycle, ...) live on every node, so each change is stamped,
committed here and shipped to every other member with the mode's counting."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from rs3gw.storage import (
    BucketExists,
    BucketInfo,
    BucketNotEmpty,
    Judge,
    NoSuchBucket,
    ReplicaStore,
    Unavailable,
)

from . import stamps
from .coordinator import Coordinator
from .events import (
    CreateBucket,
    DeleteBucket,
    DeleteBucketConfig,
    DeleteBucketPolicy,
    DeleteBucketTagging,
    PutBucketConfig,
    PutBucketPolicy,
    PutBucketTagging,
    ReplicationEvent,
)
from .messages import ListVersions
from .peers import Peers
from .topology import Topology
from .transport import RemoteError, TransportError
from .versions import ObjectVersion

MakeEvent = Callable[[ObjectVersion], ReplicationEvent]
ApplyLocal = Callable[[Judge], Awaitable[bool]]


class BucketOps:
    def __init__(self, local: ReplicaStore, coordinator: Coordinator, topology: Topology,
                 peers: Peers, stamper: stamps.Stamper) -> None:
        self._local = local
        self._coord = coordinator
        self._topology = topology
        self._peers = peers
        self._stamper = stamper

    async def _bucket_write(self, kind: str, bucket: str, make: MakeEvent, tombstone: bool,
                            apply_local: ApplyLocal) -> ReplicationEvent:
        """Bucket-level state lives on every node: stamp, commit here, ship to all others."""
        others = self._topology.others()
        everyone = [self._topology.node_id, *others]
        need = self._topology.required(len(everyone))
        self._coord.precheck(everyone, need)
        known = stamps.decode(await self._local.item_stamp(kind, bucket))
        ev = make(self._stamper.stamp([known], tombstone=tombstone))
        await apply_local(self._stamper.judge(ev.version))
        await self._coord.ship(ev, others, need - 1)
        return ev

    async def create_bucket(self, name: str, owner_id: str, region: str,
                            configs: dict[str, bytes] | None = None) -> BucketInfo:
        existing = await self._local.get_bucket(name)
        if existing is not None:
            raise BucketExists(existing.owner_id)
        created = time.time()
        docs = dict(configs or {})      # born with them, on every node (CreateBucket carries them)
        await self._bucket_write(
            "bucket", name,
            lambda v: CreateBucket(event_id=v.hlc, bucket=name, vector=v.vector, created=v.created,
                                   owner_id=owner_id, region=region, creation_date=created,
                                   configs=docs),
            False, lambda judge: self._local.apply_bucket(name, owner_id, region, created, judge,
                                                          docs))
        return BucketInfo(name=name, owner_id=owner_id, region=region, created=created,
                          configs=docs)

    async def delete_bucket(self, name: str) -> None:
        if await self._local.get_bucket(name) is None:
            raise NoSuchBucket(name)
        # Empty means no object and no version (delete markers included) on any node.
        page = await self._local.list_object_versions(name, max_keys=1)
        if page.entries:
            raise BucketNotEmpty(name)
        for n in self._topology.others():
            if not self._topology.live(n):
                raise Unavailable(f"node {n} is down: cannot check that bucket {name} is empty")
            try:
                theirs = await self._peers.call(n, ListVersions(bucket=name, max_keys=1))
            except RemoteError as e:
                if e.code == "NoSuchBucket":
                    continue
                raise Unavailable(f"node {n}: {e}") from e
            except TransportError as e:
                raise Unavailable(f"node {n}: {e}") from e
            if theirs.entries:
                raise BucketNotEmpty(name)
        await self._bucket_write(
            "bucket", name,
            lambda v: DeleteBucket(event_id=v.hlc, bucket=name, vector=v.vector, created=v.created),
            True, lambda judge: self._local.apply_bucket_delete(name, judge))

    async def set_bucket_config(self, bucket: str, kind: str, value: bytes | None) -> None:
        doc = None if value is None else bytes(value)
        make: MakeEvent
        named: dict[str, tuple[type[PutBucketPolicy | PutBucketTagging],
                               type[DeleteBucketPolicy | DeleteBucketTagging]]] = {
            "policy": (PutBucketPolicy, DeleteBucketPolicy),
            "tagging": (PutBucketTagging, DeleteBucketTagging)}
        if kind in named:
            put, delete = named[kind]

            def make(v: ObjectVersion) -> ReplicationEvent:
                if doc is None:
                    return delete(event_id=v.hlc, bucket=bucket, vector=v.vector,
                                  created=v.created)
                return put(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created,
                           document=doc)
        else:
            # Every other document (versioning state, object lock, lifecycle, ...) travels as a
            # generic configuration event: enforced the same on every node.
            def make(v: ObjectVersion) -> ReplicationEvent:
                if doc is None:
                    return DeleteBucketConfig(event_id=v.hlc, bucket=bucket, vector=v.vector,
                                              created=v.created, kind=kind)
                return PutBucketConfig(event_id=v.hlc, bucket=bucket, vector=v.vector,
                                       created=v.created, document=doc, kind=kind)
        if await self._local.get_bucket(bucket) is None:
            raise NoSuchBucket(bucket)
        await self._bucket_write(
            kind, bucket, make, value is None,
            lambda judge: self._local.apply_bucket_config(bucket, kind, value, judge))
