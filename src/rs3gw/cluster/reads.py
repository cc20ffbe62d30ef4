"""Read-side helpers of cluster mode: merging listing pages from several nodes, and reading an
object's bytes from the node that holds them.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from rs3gw.storage import ListEntry, ListPage, Unavailable, VersionEntry, VersionPage


def merge_pages(pages: list[ListPage], max_keys: int) -> ListPage:
    """One page from several nodes' pages over the same range: keys and prefixes in order, a key
    held by several nodes once (the most recently modified copy). A truncated page only speaks
    for keys up to its last one, so nothing past the smallest such key is returned: the next
    page starts there and misses nothing."""
    entries: dict[str, ListEntry] = {}
    for p in pages:
        for e in p.entries:
            cur = entries.get(e.key)
            if cur is None or e.last_modified > cur.last_modified:
                entries[e.key] = e
    prefixes = {cp for p in pages for cp in p.common_prefixes}
    merged: list[tuple[bytes, str, ListEntry | None]] = sorted(
        [(k.encode(), k, e) for k, e in entries.items()]
        + [(cp.encode(), cp, None) for cp in prefixes], key=lambda t: t[0])
    truncated = len(merged) > max_keys
    limits = [max([e.key.encode() for e in p.entries] + [cp.encode() for cp in p.common_prefixes])
              for p in pages if p.is_truncated and (p.entries or p.common_prefixes)]
    if limits:
        bound = min(limits)
        kept = [m for m in merged if m[0] <= bound]
        truncated = True
        merged = kept
    merged = merged[:max_keys]
    out_entries = [e for _, _, e in merged if e is not None]
    out_prefixes = [k for _, k, e in merged if e is None]
    next_key = merged[-1][1] if truncated and merged else None
    return ListPage(out_entries, out_prefixes, truncated and bool(merged), next_key)


def _inverted(order: bytes) -> bytes:
    return bytes(255 - b for b in order)


def merge_version_pages(pages: list[tuple[list[VersionEntry], list[str], bool]],
                        max_keys: int) -> VersionPage:
    """One ListObjectVersions page from several nodes' pages over the same range: keys in order,
    each key's versions newest first (by their order, the same on every node), a version held by
    several nodes once. As in merge_pages, a truncated page only speaks for what sorts up to its
    last entry. A version is latest if no node listed a newer one of its key."""
    entries: dict[tuple[str, str], VersionEntry] = {}
    for got, _, _ in pages:
        for e in got:
            entries.setdefault((e.key, e.version_id), e)
    prefixes = {cp for _, cps, _ in pages for cp in cps}

    def pos(e: VersionEntry) -> tuple[bytes, int, bytes]:
        return (e.key.encode("utf-8", "surrogatepass"), 1, _inverted(e.order))
    merged: list[tuple[tuple[bytes, int, bytes], VersionEntry | str]] = sorted(
        [(pos(e), e) for e in entries.values()]
        + [((cp.encode("utf-8", "surrogatepass"), 0, b""), cp) for cp in prefixes],
        key=lambda t: t[0])
    truncated = len(merged) > max_keys
    limits = []
    for got, cps, trunc in pages:
        if trunc and (got or cps):
            last = [pos(e) for e in got] + [(cp.encode("utf-8", "surrogatepass"), 0, b"")
                                            for cp in cps]
            limits.append(max(last))
    if limits:
        bound = min(limits)
        merged = [m for m in merged if m[0] <= bound]
        truncated = True
    merged = merged[:max_keys]
    out: list[VersionEntry] = []
    out_prefixes: list[str] = []
    seen_keys: set[str] = set()
    for _, item in merged:
        if isinstance(item, str):
            out_prefixes.append(item)
            continue
        first = item.key not in seen_keys
        seen_keys.add(item.key)
        item.is_latest = item.is_latest and first
        out.append(item)
    next_key = next_vid = None
    if truncated and merged:
        last_item = merged[-1][1]
        if isinstance(last_item, str):
            next_key = last_item
        else:
            next_key, next_vid = last_item.key, last_item.version_id
    return VersionPage(out, out_prefixes, truncated and bool(merged), next_key, next_vid)


class RemoteReader:
    """The bytes of a rep.get reply: an async iterator; closing it early drops the connection
    (the rest of the stream would otherwise have to be read to free it)."""

    def __init__(self, stream: Any, length: int) -> None:
        self._stream = stream
        self._left = length

    def __aiter__(self) -> RemoteReader:
        return self

    async def __anext__(self) -> bytes:
        if self._stream is None or self._left <= 0:
            raise StopAsyncIteration
        chunk = await self._stream.read()
        if not chunk:
            raise Unavailable("the node serving the object went away mid-stream")
        self._left -= len(chunk)
        return bytes(chunk)

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and self._left > 0:
            # The connection reads nothing else until the stream's last byte: drain it in the
            # background (the client that stopped reading does not wait for that).
            task = asyncio.get_running_loop().create_task(_discard(stream))
            _DRAINING.add(task)
            task.add_done_callback(_DRAINING.discard)


_DRAINING: set[asyncio.Task[None]] = set()


async def _discard(stream: Any) -> None:
    with contextlib.suppress(Exception):
        await stream.discard()


