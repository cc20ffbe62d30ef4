"""Pusher: send one version this node holds to another node, with its bytes, read from the local
copy (queued delivery of large objects, shipping after a local commit, hand-off, anti-entropy)."""
from __future__ import annotations

from collections.abc import AsyncIterator

from rs3gw.storage import ObjectMeta, ReplicaStore, split_item

from . import stamps
from .events import DeleteObject, PutObject, ReplicationEvent
from .messages import ApplyEvent
from .objectdata import aclose
from .peers import Peers
from .stats import ReplicationStats
from .versions import ObjectVersion


class Pusher:
    def __init__(self, store: ReplicaStore, peers: Peers, stats: ReplicationStats) -> None:
        self._store = store
        self._peers = peers
        self._stats = stats

    async def source(self, ev: PutObject) -> tuple[ObjectMeta, AsyncIterator[bytes]] | None:
        """The local copy of exactly this write and a reader over its bytes; None if the key
        holds another version now (the newer write has its own event)."""
        return await self._store.open_version(ev.bucket, ev.key, stamps.same_write_as(ev.version),
                                              ev.meta.version_id)

    async def push(self, target: str, ev: ReplicationEvent) -> bool | None:
        """Apply ``ev`` on ``target``; the target's answer (applied or not), or None if the local
        copy changed meanwhile (nothing was sent). Transport errors propagate."""
        if isinstance(ev, PutObject) and ev.meta.size:
            src = await self.source(ev)
            if src is None:
                return None
            meta, reader = src
            try:
                reply = await self._peers.call(target, ApplyEvent(event=ev), stream=reader,
                                               stream_length=meta.size)
            finally:
                await aclose(reader)
            self._stats.sent(meta.size)
            return reply.applied
        return (await self._peers.call(target, ApplyEvent(event=ev))).applied

    async def event_for(self, bucket: str, item: str, v: ObjectVersion) -> ReplicationEvent | None:
        """The event that recreates write ``v`` of an item held here: an object's key, or a
        version (storage.version_item); None if it is gone."""
        key, version_id = split_item(item)
        if v.tombstone:
            return DeleteObject(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created,
                                object_key=key, version_id=version_id)
        meta, _, seq = await self._store.stored_entry(bucket, key, version_id)
        if meta is None:
            return None
        if version_id is not None and meta.version_id is None:
            meta.version_id = version_id        # an implicit null version, adopted
        return PutObject(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created,
                         meta=meta, seq=seq)
