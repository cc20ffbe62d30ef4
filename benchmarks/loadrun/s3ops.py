"""Single S3 requests for set-up and the sequential workloads: CreateBucket, ListObjectsV2 page walks,
and the streaming upload/download mix used while a server's memory is sampled."""

from __future__ import annotations

import asyncio
import html
import re
import time
from dataclasses import dataclass

from .http1 import Connection, HttpError, Response, connect, request_head
from .runner import Target, percentile
from .sigv4 import canonical_query, uri_encode_path

# The page walk reads three things from a ListObjectsV2 body. A byte scan instead of an ElementTree:
# building the tree of a 1,000-key page cost the client 3-4 ms, 40% of a page walk against rs3gw,
# which made the client the bottleneck (measured: 9 ms walk per page, 5 ms of it the server).
_KEY_RE = re.compile(rb"<Key>([^<]*)</Key>")
_TRUNCATED_RE = re.compile(rb"<IsTruncated>([^<]*)</IsTruncated>")
_TOKEN_RE = re.compile(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>")
LIST_PAGES_MAX = 100_000
STREAM_BLOCK_BYTES = 1 << 20


def _head(target: Target, method: str, path: str, query: dict[str, str] | None = None,
          extra: dict[str, str] | None = None) -> bytes:
    signer = target.signer()
    hdrs = signer.headers(method, path, query, extra) if signer else {"host": target.hostport, **(extra or {})}
    url = uri_encode_path(path) + ("?" + canonical_query(query) if query else "")
    return request_head(method, url, hdrs)


async def request(target: Target, method: str, path: str, query: dict[str, str] | None = None,
                  body: bytes = b"", conn: Connection | None = None) -> Response:
    own = conn is None
    c = conn or await connect(target.host, target.port)
    try:
        extra = {"content-length": str(len(body))} if method in ("PUT", "POST") else None
        return await c.request(_head(target, method, path, query, extra), body or None, keep=True)
    finally:
        if own:
            c.close()


async def create_bucket(target: Target, bucket: str) -> None:
    resp = await request(target, "PUT", f"/{bucket}")
    if resp.status != 200 and b"BucketAlready" not in resp.body:
        raise RuntimeError(f"CreateBucket {bucket}: HTTP {resp.status} {resp.body[:300]!r}")


@dataclass
class ListPass:
    keys: int
    pages: int
    seconds: float
    page_ms: list[float]

    def summary(self) -> dict[str, float]:
        s = sorted(self.page_ms)
        return {"keys": self.keys, "pages": self.pages, "seconds": self.seconds,
                "keys_per_s": self.keys / self.seconds if self.seconds else 0.0,
                "first_page_ms": self.page_ms[0], "last_page_ms": self.page_ms[-1],
                "p50_page_ms": percentile(s, 0.5), "p99_page_ms": percentile(s, 0.99),
                "last_over_first": self.page_ms[-1] / self.page_ms[0] if self.page_ms[0] else 0.0}


async def list_pass(target: Target, bucket: str, prefix: str, max_keys: int, expect_keys: int) -> ListPass:
    """Walks the whole prefix with ListObjectsV2 continuation tokens on one connection; keys must come
    back strictly ascending and `expect_keys` of them."""
    conn = await connect(target.host, target.port)
    token = ""
    last_key = ""
    n_keys = 0
    page_ms: list[float] = []
    t_all = time.perf_counter()
    try:
        for _ in range(LIST_PAGES_MAX):
            q = {"list-type": "2", "max-keys": str(max_keys), "prefix": prefix}
            if token:
                q["continuation-token"] = token
            t0 = time.perf_counter()
            if not conn.usable:
                conn = await connect(target.host, target.port)
            resp = await conn.request(_head(target, "GET", f"/{bucket}", q), keep=True)
            page_ms.append((time.perf_counter() - t0) * 1e3)
            if resp.status != 200:
                raise RuntimeError(f"ListObjectsV2: HTTP {resp.status} {resp.body[:300]!r}")
            body = resp.body
            if b"<ListBucketResult" not in body:
                raise RuntimeError(f"ListObjectsV2: not a listing: {body[:300]!r}")
            keys = [html.unescape(k.decode()) for k in _KEY_RE.findall(body)]
            if keys and (keys[0] <= last_key or keys != sorted(keys)):
                raise RuntimeError(f"ListObjectsV2: keys out of order near {keys[0]!r}")
            if keys:
                last_key = keys[-1]
            n_keys += len(keys)
            m = _TRUNCATED_RE.search(body)
            truncated = m is not None and m.group(1) == b"true"
            t = _TOKEN_RE.search(body)
            token = html.unescape(t.group(1).decode()) if t else ""
            if not truncated:
                break
            if not token:
                raise RuntimeError("ListObjectsV2: truncated page without NextContinuationToken")
    finally:
        conn.close()
    if n_keys != expect_keys:
        raise RuntimeError(f"ListObjectsV2 returned {n_keys} keys, expected {expect_keys}")
    return ListPass(n_keys, len(page_ms), time.perf_counter() - t_all, page_ms)


async def upload_stream(target: Target, path: str, object_bytes: int, budget_bytes: int,
                         counter: list[int]) -> None:
    """Sends a PUT of `object_bytes` but stops (aborts the connection) after `budget_bytes`."""
    block = bytes(range(256)) * (STREAM_BLOCK_BYTES // 256)

    async def blocks():  # type: ignore[no-untyped-def]
        sent = 0
        while sent < min(object_bytes, budget_bytes):
            n = min(STREAM_BLOCK_BYTES, object_bytes - sent)
            yield block if n == STREAM_BLOCK_BYTES else block[:n]
            sent += n
            counter[0] += n

    conn = await connect(target.host, target.port)
    head = _head(target, "PUT", path, None, {"content-length": str(object_bytes)})
    req = asyncio.ensure_future(conn.request(head, body_stream=blocks()))
    try:
        if budget_bytes >= object_bytes:
            resp = await req
            if resp.status != 200:
                raise RuntimeError(f"PUT {path}: HTTP {resp.status} {resp.body[:200]!r}")
        else:
            while not req.done() and counter[0] < budget_bytes and conn.usable:
                await asyncio.sleep(0.05)
    finally:
        conn.abort()
        req.cancel()
        await asyncio.gather(req, return_exceptions=True)


async def _download_stream(target: Target, path: str, budget_bytes: int, counter: list[int]) -> None:
    conn = await connect(target.host, target.port)
    req = asyncio.ensure_future(conn.request(_head(target, "GET", path)))
    try:
        while not req.done() and conn.usable:
            await asyncio.sleep(0.05)
            counter[0] = conn.body_bytes_seen
            if counter[0] >= budget_bytes:
                break
        if req.done() and not req.cancelled() and req.exception() is None:
            counter[0] = req.result().body_bytes
    finally:
        conn.abort()
        req.cancel()
        await asyncio.gather(req, return_exceptions=True)


async def stream_mix(target: Target, bucket: str, uploaders: int, downloaders: int, object_bytes: int,
                     budget_bytes: int, read_key: str) -> dict[str, float]:
    """`uploaders` PUTs of `object_bytes` and `downloaders` GETs of `read_key` at once, each client
    stopping after budget_bytes / clients; returns bytes moved and seconds."""
    clients = uploaders + downloaders
    per = budget_bytes // clients
    up = [[0] for _ in range(uploaders)]
    down = [[0] for _ in range(downloaders)]
    t0 = time.perf_counter()
    await asyncio.gather(
        *(upload_stream(target, f"/{bucket}/rss/up-{i:03d}", object_bytes, per, up[i]) for i in range(uploaders)),
        *(_download_stream(target, f"/{bucket}/{read_key}", per, down[i]) for i in range(downloaders)),
    )
    dt = time.perf_counter() - t0
    return {"seconds": dt, "uploaded_bytes": sum(c[0] for c in up),
            "downloaded_bytes": sum(c[0] for c in down), "bytes_per_client_max": per}


def run_sync(coro):  # type: ignore[no-untyped-def]
    import uvloop
    return uvloop.run(coro)


__all__ = ["HttpError", "ListPass", "create_bucket", "list_pass", "request", "run_sync", "stream_mix", "upload_stream"]
