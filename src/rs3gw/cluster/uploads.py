"""Multipart uploads in cluster mode: an upload lives on the node that created it (its parts are
that node's files), and its id names that node, so any node can take any request of the upload:
UploadPart bodies arriving elsewhere are forwarded to the owner (rep.mpu.part), the other calls
are asked of it (rep.mpu). CompleteMultipartUpload runs on the owner, which then replicates the
object like any other write. ListMultipartUploads merges every live node's uploads.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from rs3gw.storage import (
    VERSIONING,
    InvalidPart,
    NoSuchBucket,
    NoSuchUpload,
    ObjectMeta,
    PartInfo,
    PreconditionFailed,
    ReplicaStore,
    StorageError,
    Unavailable,
    UploadInfo,
    WriteResult,
    check_conditions,
)

from . import stamps
from .coordinator import Coordinator
from .events import PutObject
from .messages import (
    AbortUpload,
    CompleteUpload,
    Done,
    GetUpload,
    ListParts,
    ListUploads,
    PartsPage,
    PartStored,
    PutPart,
    Request,
    UploadCompleted,
    UploadFound,
    UploadsPage,
)
from .objectdata import write_stream
from .peers import Peers
from .rpc import Inbound, Rpc
from .topology import Topology
from .transport import RemoteError, TransportError

R = TypeVar("R")
T = TypeVar("T")

# Storage errors an owner's answer may carry back, by their S3-facing name.
_OWNER_ERRORS: dict[str, type[StorageError]] = {
    "NoSuchUpload": NoSuchUpload, "InvalidPart": InvalidPart,
    "PreconditionFailed": PreconditionFailed, "NoSuchBucket": NoSuchBucket}

ID_SEP = "~"


def upload_id_for(node_id: str) -> str:
    tag = base64.urlsafe_b64encode(node_id.encode()).decode().rstrip("=")
    return f"{tag}{ID_SEP}{uuid.uuid4().hex}"


def owner_of(upload_id: str) -> str | None:
    """The node an upload id names; None for an id without one (made outside cluster mode)."""
    tag, sep, _ = upload_id.partition(ID_SEP)
    if not sep:
        return None
    try:
        return base64.urlsafe_b64decode(tag + "=" * (-len(tag) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None



class Uploads:
    """The multipart half of ClusterStore: forwards to the owner, or runs here when it is us."""

    def __init__(self, local: ReplicaStore, coordinator: Coordinator, topology: Topology,
                 peers: Peers, stamper: stamps.Stamper) -> None:
        self._local = local
        self._coord = coordinator
        self._topology = topology
        self._peers = peers
        self._stamper = stamper

    def _owner(self, upload_id: str) -> str:
        owner = owner_of(upload_id)
        return self._topology.node_id if owner is None else owner

    def _mine(self, upload_id: str) -> bool:
        return self._owner(upload_id) == self._topology.node_id

    async def _ask_owner(self, upload_id: str, req: Request[R], *,
                         stream: AsyncIterator[bytes] | None = None,
                         length: int | None = None) -> R:
        owner = self._owner(upload_id)
        if self._topology.member(owner) is None:
            raise NoSuchUpload(f"the node of upload {upload_id} is not a member")
        if not self._topology.live(owner):
            raise Unavailable(f"node {owner}, which holds this multipart upload, is down")
        try:
            return await self._peers.call(owner, req, stream=stream,
                                          stream_length=length if stream is not None else None)
        except RemoteError as e:
            err = _OWNER_ERRORS.get(e.code)
            if err is not None and err is not NoSuchBucket:
                raise err(e.message) from None
            raise Unavailable(f"node {owner}: {e}") from e
        except TransportError as e:
            raise Unavailable(f"node {owner}: {e}") from e

    async def create_upload(self, info: UploadInfo) -> UploadInfo:
        info.upload_id = upload_id_for(self._topology.node_id)
        return await self._local.create_upload(info)

    async def get_upload(self, bucket: str, upload_id: str) -> UploadInfo:
        if self._mine(upload_id):
            return await self._local.get_upload(bucket, upload_id)
        return (await self._ask_owner(upload_id, GetUpload(bucket=bucket, upload_id=upload_id))).upload

    async def put_part(self, bucket: str, upload_id: str, part_number: int, data: WriteResult,
                       checksums: dict[str, str]) -> PartInfo:
        if self._mine(upload_id):
            return await self._local.put_part(bucket, upload_id, part_number, data, checksums)
        try:
            got = await self._ask_owner(
                upload_id, PutPart(bucket=bucket, upload_id=upload_id, part_number=part_number,
                                   checksums=dict(checksums)),
                stream=self._local.read_write(data), length=data.size)
        finally:
            await self._local.discard_write(data)
        return got.part

    async def list_parts(self, bucket: str, upload_id: str, *, part_marker: int = 0,
                         max_parts: int = 1000) -> tuple[list[PartInfo], bool]:
        if self._mine(upload_id):
            return await self._local.list_parts(bucket, upload_id, part_marker=part_marker,
                                                max_parts=max_parts)
        got = await self._ask_owner(upload_id, ListParts(bucket=bucket, upload_id=upload_id,
                                                         part_marker=part_marker,
                                                         max_parts=max_parts))
        return got.parts, got.truncated

    async def abort_upload(self, bucket: str, upload_id: str) -> None:
        if self._mine(upload_id):
            await self._local.abort_upload(bucket, upload_id)
        else:
            await self._ask_owner(upload_id, AbortUpload(bucket=bucket, upload_id=upload_id))

    async def complete_upload(self, bucket: str, upload_id: str, meta: ObjectMeta,
                              part_numbers: list[int], *, if_match: str | None = None,
                              if_none_match: bool = False) -> ObjectMeta:
        if not self._mine(upload_id):
            got = await self._ask_owner(upload_id, CompleteUpload(
                bucket=bucket, upload_id=upload_id, meta=meta, part_numbers=list(part_numbers),
                if_match=if_match, if_none_match=if_none_match))
            return got.meta
        info = await self._local.get_upload(bucket, upload_id)
        replicas = self._topology.replicas(bucket, info.key)
        self._coord.precheck(replicas, self._topology.required())
        newest = await self._coord.newest(bucket, info.key)
        check_conditions(newest.meta, if_match, if_none_match)
        bucket_info = await self._local.get_bucket(bucket)
        raw_mode = bucket_info.configs.get(VERSIONING) if bucket_info is not None else None
        v = self._stamper.stamp(newest.known, etag=meta.etag)
        meta.key = info.key
        seq = stamps.name_version(meta, v, None if raw_mode is None else bytes(raw_mode).decode())
        committed = await self._local.complete_upload_versioned(
            bucket, upload_id, meta, list(part_numbers), self._stamper.judge(v), seq)
        if committed is None:
            raise Unavailable("a newer version of the key arrived while the upload completed")
        ev = PutObject(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created,
                       meta=committed, source="CompleteMultipartUpload", seq=seq)
        await self._coord.ship_object(ev, replicas)
        return committed

    async def list_uploads(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                           key_marker: str = "", upload_id_marker: str = "",
                           max_uploads: int = 1000) -> tuple[list[UploadInfo], list[str], bool]:
        req = ListUploads(bucket=bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
                          upload_id_marker=upload_id_marker, max_uploads=max_uploads)
        pages = [await self._list_local(req)]
        peers = [n for n in self._topology.others() if self._topology.live(n)]
        got = await asyncio.gather(*(self._peers.call(n, req) for n in peers),
                                   return_exceptions=True)
        for page in got:
            if isinstance(page, UploadsPage):
                pages.append((page.uploads, page.prefixes, page.truncated))
        return merge_upload_pages(pages, max_uploads)

    async def _list_local(self, req: ListUploads) -> tuple[list[UploadInfo], list[str], bool]:
        return await self._local.list_uploads(
            req.bucket, prefix=req.prefix, delimiter=req.delimiter, key_marker=req.key_marker,
            upload_id_marker=req.upload_id_marker, max_uploads=req.max_uploads)

    # --- the owner's side ---------------------------------------------------------------------

    def serve(self, rpc: Rpc) -> None:
        rpc.serve(GetUpload, self._on_get)
        rpc.serve(PutPart, self._on_part)
        rpc.serve(ListParts, self._on_parts)
        rpc.serve(AbortUpload, self._on_abort)
        rpc.serve(CompleteUpload, self._on_complete)
        rpc.serve(ListUploads, self._on_list)

    async def _on_get(self, req: GetUpload, _in: Inbound) -> UploadFound:
        return UploadFound(upload=await _owned(self._local.get_upload(req.bucket, req.upload_id)))

    async def _on_part(self, req: PutPart, inb: Inbound) -> PartStored:
        data = await write_stream(self._local, inb.stream, inline=False)
        part = await _owned(self._local.put_part(req.bucket, req.upload_id, req.part_number, data,
                                                 dict(req.checksums)))
        return PartStored(part=part)

    async def _on_parts(self, req: ListParts, _in: Inbound) -> PartsPage:
        parts, truncated = await _owned(self._local.list_parts(
            req.bucket, req.upload_id, part_marker=req.part_marker, max_parts=req.max_parts))
        return PartsPage(parts=parts, truncated=truncated)

    async def _on_abort(self, req: AbortUpload, _in: Inbound) -> Done:
        await _owned(self._local.abort_upload(req.bucket, req.upload_id))
        return Done()

    async def _on_complete(self, req: CompleteUpload, _in: Inbound) -> UploadCompleted:
        meta = await _owned(self.complete_upload(req.bucket, req.upload_id, req.meta,
                                                 list(req.part_numbers), if_match=req.if_match,
                                                 if_none_match=req.if_none_match))
        return UploadCompleted(meta=meta)

    async def _on_list(self, req: ListUploads, _in: Inbound) -> UploadsPage:
        ups, cps, truncated = await _owned(self._list_local(req))
        return UploadsPage(uploads=ups, prefixes=cps, truncated=truncated)


async def _owned(aw: Awaitable[T]) -> T:
    """Run an owner-side store call; its storage errors answer the asking node with their name."""
    try:
        return await aw
    except tuple(_OWNER_ERRORS.values()) as e:
        raise RemoteError(type(e).__name__, str(e)) from None
    except Unavailable as e:
        raise RemoteError("Unavailable", str(e)) from None


def merge_upload_pages(pages: list[tuple[list[UploadInfo], list[str], bool]], max_uploads: int,
                       ) -> tuple[list[UploadInfo], list[str], bool]:
    """As reads.merge_pages, for uploads ordered by (key, initiated, upload id)."""
    items: list[tuple[tuple[bytes, float, str], UploadInfo | None, str]] = []
    bounds = []
    for ups, cps, truncated in pages:
        mine: list[tuple[tuple[bytes, float, str], UploadInfo | None, str]] = [
            ((u.key.encode(), u.initiated, u.upload_id), u, u.key) for u in ups]
        mine += [((cp.encode(), 0.0, ""), None, cp) for cp in cps]
        items.extend(mine)
        if truncated and mine:
            bounds.append(max(m[0] for m in mine))
    items.sort(key=lambda t: t[0])
    truncated = len(items) > max_uploads
    if bounds:
        bound = min(bounds)
        items = [t for t in items if t[0] <= bound]
        truncated = True
    items = items[:max_uploads]
    ups = [u for _, u, _ in items if u is not None]
    cps = list(dict.fromkeys(k for _, u, k in items if u is None))
    return ups, cps, truncated and bool(items)
