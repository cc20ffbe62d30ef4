"""An object's bytes arriving from another node, written as this node's own data: the segments of
a PutObject event in order, and the event's metadata pointing at them."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

from rs3gw.storage import ObjectMeta, ReplicaStore, Segment, WriteResult

from .transport import RemoteError, StreamIn


async def read_segments(store: ReplicaStore, stream: AsyncIterator[bytes] | StreamIn,
                        meta: ObjectMeta, algos: tuple[str, ...] = ()) -> list[WriteResult]:
    """One writer per segment, in order; a single-segment object may end up inline, a multipart
    one is always files. On any failure every write made so far is removed."""
    sizes = [s.size for s in meta.segments] or [meta.size]
    multi = len(sizes) > 1
    results: list[WriteResult] = []
    writers = []
    try:
        it = stream.__aiter__()
        carry = b""
        for size in sizes:
            w = store.begin_write(algos, inline=not multi)
            writers.append(w)
            left = size
            while left:
                if not carry:
                    carry = bytes(await it.__anext__())
                take = carry[:left]
                carry = carry[left:]
                await w.write(take)
                left -= len(take)
            results.append(await w.finish())
        if carry:
            raise RemoteError("BadStream", "more bytes than the object's segments")
        return results
    except StopAsyncIteration:
        for w in writers:
            await w.abort()
        raise RemoteError("BadStream", "the stream ended before the object's last byte") from None
    except BaseException:
        for w in writers:
            with contextlib.suppress(Exception):
                await w.abort()
        for r in results:
            with contextlib.suppress(Exception):
                await store.discard_write(r)
        raise


def local_meta(meta: ObjectMeta, data: list[WriteResult] | tuple[WriteResult, ...]) -> ObjectMeta:
    """The event's metadata with this node's own data ids (where bytes live is each node's
    business; ObjectMeta.vid stays the writer's, it names the version)."""
    segs = []
    src = meta.segments or [Segment(meta.vid, meta.size, meta.etag, dict(meta.checksums))]
    for seg, d in zip(src, data, strict=True):
        if d.size != seg.size:
            raise RemoteError("BadStream", f"segment of {d.size} bytes, expected {seg.size}")
        segs.append(Segment(d.vid, d.size, seg.etag, dict(seg.checksums), d.inline is not None))
    if meta.segments and src[0].etag != data[0].md5_hex and len(src) == 1:
        raise RemoteError("BadDigest", "object bytes do not match the event's ETag")
    return replace(meta, segments=segs, headers=dict(meta.headers), checksums=dict(meta.checksums),
                   tags=dict(meta.tags))


async def write_stream(store: ReplicaStore, stream: StreamIn | None, algos: tuple[str, ...] = (),
                       *, inline: bool = True) -> WriteResult:
    """A body arriving as a message's stream, as a new uncommitted write of this node (no
    stream at all: an empty body). Nothing is left behind if it fails."""
    w = store.begin_write(algos, inline=inline)
    try:
        if stream is not None:
            async for chunk in stream:
                await w.write(chunk)
        return await w.finish()
    except BaseException:
        await w.abort()
        raise


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


async def aclose(reader: object) -> None:
    """Close an async reader if it can be closed (readers own file descriptors or connections)."""
    close = getattr(reader, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()
