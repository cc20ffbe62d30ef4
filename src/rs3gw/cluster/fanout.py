"""The streaming side of a replicated PUT: the body goes once from the client into the local tmp
file and, chunk by chunk, to every live remote replica (StageObject) while it arrives.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

from rs3gw.storage import ObjectSink, WriteResult

from .messages import AbortStaged, Staged, StageObject
from .peers import Peers
from .stats import ReplicationStats
from .transport import TransportError

FEED_DEPTH = 8          # chunks buffered per replica stream before the upload waits for it


class FanOutWriter:
    """An ObjectSink that also streams the body to remote replicas (StageObject). Once finished it
    waits in ``staged`` (by vid) for the commit that decides what happens to the staged copies."""

    def __init__(self, peers: Peers, stats: ReplicationStats, staged: dict[str, FanOutWriter],
                 local: ObjectSink, bucket: str, key: str, size: int, algos: tuple[str, ...],
                 targets: list[str], *, stall_s: float) -> None:
        self._peers = peers
        self._stats = stats
        self._staged = staged
        self._stall_s = stall_s
        self._local = local
        self.vid = local.vid
        self.bucket, self.key = bucket, key
        self._feeds: dict[str, asyncio.Queue[bytes | None]] = {}
        self._tasks: dict[str, asyncio.Task[Staged]] = {}
        self.stages: dict[str, Staged] = {}
        self.failed: dict[str, str] = {}
        loop = asyncio.get_running_loop()
        for t in targets:
            q: asyncio.Queue[bytes | None] = asyncio.Queue(FEED_DEPTH)
            self._feeds[t] = q
            self._tasks[t] = loop.create_task(peers.call(
                t, StageObject(bucket=bucket, key=key, algos=list(algos)),
                stream=_drain(q), stream_length=size))

    @property
    def size(self) -> int:
        return self._local.size

    async def write(self, chunk: bytes | memoryview | bytearray) -> None:
        await self._local.write(chunk)
        data = bytes(chunk)
        stall = self._stall_s
        for t, q in list(self._feeds.items()):
            task = self._tasks[t]
            if task.done():
                self._drop(t, "stage failed while streaming")
                continue
            try:
                async with asyncio.timeout(stall):
                    await q.put(data)
            except TimeoutError:
                # A replica that stops reading is left behind (the queue catches it up later)
                # rather than holding every client upload to its pace.
                self._drop(t, f"replica stalled for {stall}s")

    def _drop(self, t: str, why: str) -> None:
        self._feeds.pop(t, None)
        task = self._tasks.pop(t)
        task.cancel()
        self.failed[t] = why

    async def finish(self) -> WriteResult:
        result = await self._local.finish()
        for q in self._feeds.values():
            await q.put(None)
        for t, task in list(self._tasks.items()):
            try:
                self.stages[t] = await task
                self._stats.sent(result.size)
            except (TransportError, OSError, asyncio.CancelledError) as e:
                self.failed[t] = f"{type(e).__name__}: {e}"
        self._tasks.clear()
        self._staged[result.vid] = self
        return result

    async def abort(self) -> None:
        for t in list(self._tasks):
            self._drop(t, "aborted")
        await self.release()
        self._staged.pop(self.vid, None)
        await self._local.abort()

    async def release(self, keep: Iterable[str] = ()) -> None:
        """Drop the staged copies not in ``keep`` (the write failed, or they are not needed)."""
        keep = set(keep)
        for t, staged in list(self.stages.items()):
            if t not in keep:
                self.stages.pop(t)
                with contextlib.suppress(TransportError, OSError):
                    await self._peers.call(t, AbortStaged(sid=staged.sid))


async def _drain(q: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    while True:
        chunk = await q.get()
        if chunk is None:
            return
        yield chunk


