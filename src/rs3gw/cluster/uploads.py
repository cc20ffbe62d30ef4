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
import functools
import uuid
from collections.abc import AsyncIterator
from typing import Any

from rs3gw.storage import multipart, objects
from rs3gw.storage.types import (
    NoSuchUpload,
    ObjectMeta,
    PartInfo,
    Unavailable,
    UploadInfo,
    WriteResult,
)

from . import stamps
from .events import PutObject
from .receiver import object_from_map, object_map
from .replicate import Replicator
from .transport import RemoteError, TransportError

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


def upload_map(u: UploadInfo) -> dict[str, Any]:
    return {"u": u.upload_id, "b": u.bucket, "k": u.key, "i": u.initiated, "o": u.owner_id,
            "h": u.headers, "ct": u.content_type, "ca": u.checksum_algorithm,
            "cs": u.checksum_type, "t": u.tags}


def upload_from_map(d: dict[str, Any]) -> UploadInfo:
    return UploadInfo(upload_id=d["u"], bucket=d["b"], key=d["k"], initiated=d["i"],
                      owner_id=d["o"], headers=dict(d["h"]), content_type=d["ct"],
                      checksum_algorithm=d["ca"], checksum_type=d["cs"], tags=dict(d["t"]))


def part_map(p: PartInfo) -> list[Any]:
    return [p.part_number, p.vid, p.size, p.etag, p.last_modified, p.checksums]


def part_from_list(v: list[Any]) -> PartInfo:
    return PartInfo(part_number=v[0], vid=v[1], size=v[2], etag=v[3], last_modified=v[4],
                    checksums=dict(v[5]))


class UploadOps(Replicator):
    def _owner(self, upload_id: str) -> str:
        owner = owner_of(upload_id)
        return self.node.node_id if owner is None else owner

    async def _ask_owner(self, owner: str, op: str, body: dict[str, Any], *,
                         stream: AsyncIterator[bytes] | None = None,
                         length: int | None = None) -> dict[str, Any]:
        if self.node.member(owner) is None:
            raise NoSuchUpload(f"the node of upload {body.get('u')} is not a member")
        if not self.node.live(owner):
            raise Unavailable(f"node {owner}, which holds this multipart upload, is down")
        try:
            reply = await self.node.call(owner, "rep.mpu", {"op": op, **body}, stream=stream,
                                         stream_length=length if stream is not None else None)
        except RemoteError as e:
            if e.code == "NoSuchUpload":
                raise NoSuchUpload(e.message) from None
            if e.code == "InvalidPart":
                raise multipart.InvalidPart(e.message) from None
            if e.code == "PreconditionFailed":
                from rs3gw.storage.types import PreconditionFailed
                raise PreconditionFailed(e.message) from None
            raise Unavailable(f"node {owner}: {e}") from e
        except TransportError as e:
            raise Unavailable(f"node {owner}: {e}") from e
        return reply.body

    async def create_upload(self, info: UploadInfo) -> UploadInfo:
        info.upload_id = upload_id_for(self.node.node_id)
        return await self.local.create_upload(info)

    async def get_upload(self, bucket: str, upload_id: str) -> UploadInfo:
        owner = self._owner(upload_id)
        if owner == self.node.node_id:
            return await self.local.get_upload(bucket, upload_id)
        return upload_from_map((await self._ask_owner(owner, "get", {"b": bucket, "u": upload_id}))["r"])

    async def put_part(self, bucket: str, upload_id: str, part_number: int, data: WriteResult,
                       checksums: dict[str, str]) -> PartInfo:
        owner = self._owner(upload_id)
        if owner == self.node.node_id:
            return await self.local.put_part(bucket, upload_id, part_number, data, checksums)
        try:
            got = await self._ask_owner(
                owner, "part", {"b": bucket, "u": upload_id, "n": part_number, "cs": checksums},
                stream=self.local.read_write(data), length=data.size)
        finally:
            await self.local.discard_write(data)
        return part_from_list(got["r"])

    async def list_parts(self, bucket: str, upload_id: str, *, part_marker: int = 0,
                         max_parts: int = 1000) -> tuple[list[PartInfo], bool]:
        owner = self._owner(upload_id)
        if owner == self.node.node_id:
            return await self.local.list_parts(bucket, upload_id, part_marker=part_marker,
                                               max_parts=max_parts)
        got = await self._ask_owner(owner, "parts", {"b": bucket, "u": upload_id, "m": part_marker,
                                                     "n": max_parts})
        return [part_from_list(p) for p in got["r"]], bool(got["t"])

    async def abort_upload(self, bucket: str, upload_id: str) -> None:
        owner = self._owner(upload_id)
        if owner == self.node.node_id:
            await self.local.abort_upload(bucket, upload_id)
        else:
            await self._ask_owner(owner, "abort", {"b": bucket, "u": upload_id})

    async def complete_upload(self, bucket: str, upload_id: str, meta: ObjectMeta,
                              part_numbers: list[int], *, if_match: str | None = None,
                              if_none_match: bool = False) -> ObjectMeta:
        owner = self._owner(upload_id)
        if owner != self.node.node_id:
            got = await self._ask_owner(owner, "complete", {
                "b": bucket, "u": upload_id, "m": object_map(meta), "p": list(part_numbers),
                "im": if_match, "inm": if_none_match})
            return object_from_map(got["r"])
        node = self.node
        info = await self.local.get_upload(bucket, upload_id)
        replicas = node.replicas(bucket, info.key)
        self._precheck(replicas, node.required())
        newest = await self._newest(bucket, info.key)
        objects.check_conditions(newest.meta, if_match, if_none_match)
        v = stamps.local_write(node.clock, node.node_id, newest.known, etag=meta.etag)
        _, done = await self.local.apply_versioned(
            "object", bucket, info.key, stamps.judge(v, node.resolver),
            functools.partial(multipart.complete_upload, bucket=bucket, upload_id=upload_id,
                              meta=meta, part_numbers=list(part_numbers), if_match=None,
                              if_none_match=False))
        committed: ObjectMeta = done
        ev = PutObject(event_id=v.hlc, bucket=bucket, vector=v.vector, created=v.created,
                       meta=committed, source="CompleteMultipartUpload")
        await self._ship_object(ev, replicas)
        return committed

    async def list_uploads(self, bucket: str, *, prefix: str = "", delimiter: str = "",
                           key_marker: str = "", upload_id_marker: str = "",
                           max_uploads: int = 1000) -> tuple[list[UploadInfo], list[str], bool]:
        kw: dict[str, Any] = {"prefix": prefix, "delimiter": delimiter, "key_marker": key_marker,
              "upload_id_marker": upload_id_marker, "max_uploads": max_uploads}
        pages = [await self.local.list_uploads(bucket, **kw)]
        peers = [n for n in self.node.others() if self.node.live(n)]

        async def one(n: str) -> tuple[list[UploadInfo], list[str], bool]:
            r = await self.node.call(n, "rep.mpu", {"op": "list", "b": bucket, "kw": kw})
            return ([upload_from_map(u) for u in r.body["r"]], list(r.body["cp"]),
                    bool(r.body["t"]))
        for got in await asyncio.gather(*(one(n) for n in peers), return_exceptions=True):
            if not isinstance(got, BaseException):
                pages.append(got)
        return merge_upload_pages(pages, max_uploads)


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


async def serve(front: Any, body: dict[str, Any], stream: Any) -> dict[str, Any]:
    """The owner's side of rep.mpu (``front`` is this node's ClusterStore)."""
    op, b = body.get("op"), body.get("b")
    u = body.get("u", "")
    if op == "get":
        return {"r": upload_map(await front.local.get_upload(b, u))}
    if op == "part":
        w = front.local.begin_write((), inline=False)
        try:
            if stream is not None:
                async for chunk in stream:
                    await w.write(chunk)
            data = await w.finish()
        except BaseException:
            await w.abort()
            raise
        part = await front.local.put_part(b, u, int(body["n"]), data, dict(body.get("cs") or {}))
        return {"r": part_map(part)}
    if op == "parts":
        parts, t = await front.local.list_parts(b, u, part_marker=int(body["m"]),
                                                max_parts=int(body["n"]))
        return {"r": [part_map(p) for p in parts], "t": t}
    if op == "abort":
        await front.local.abort_upload(b, u)
        return {}
    if op == "complete":
        meta = await front.complete_upload(b, u, object_from_map(body["m"]), list(body["p"]),
                                           if_match=body.get("im"), if_none_match=bool(body.get("inm")))
        return {"r": object_map(meta)}
    if op == "list":
        ups, cps, t = await front.local.list_uploads(b, **body["kw"])
        return {"r": [upload_map(x) for x in ups], "cp": cps, "t": t}
    raise RemoteError("BadRequest", f"unknown rep.mpu op {op!r}")
