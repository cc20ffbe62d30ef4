"""Small-object PUT and GET rates, durable mode, on the real disk.

Two measurements:

* ``store``: in process, LocalStore driven directly: CONCURRENCY asyncio tasks PUT (begin_write,
  write, finish, put_object) distinct keys of --size bytes, then GET them back (get_object,
  open_reader, read all). Prints ops/s and, when the store exposes them, the writer thread's group
  commit figures (operations per commit, i.e. per WAL fsync).
* ``e2e``: a real ``python -m rs3gw`` process (RS3GW_FSYNC=true) and CONCURRENCY client threads,
  either boto3 or a raw SigV4 client (http.client, UNSIGNED-PAYLOAD: a fraction of boto3's CPU per
  request, which matters on a small machine where client and server share the cores).

Measured on the 2-core dev VM (ext4 on virtio, shared with other jobs, so +-20%), 16 tasks/threads,
4 KiB, PUT/s and GET/s, before (data files) -> after (inline in SQLite):
  store, io_uring     1,060-1,360 / 2,800    ->  6,500-7,200 / 5,400-5,750   (8 commits per fsync)
  store, threads        980-990   / 3,250-3,600 -> 5,700-7,850 / 5,000-5,900
  e2e raw client        410-490   / 1,450-1,510 -> 1,580-1,820 / 1,550-2,190
  e2e boto3               215     /   570       ->   440       /   640   (boto3 is the bottleneck)
End to end the server spends ~550 us of CPU per 4 KiB PUT (HTTP, SigV4, S3 layer), so one core
caps it near 1,800/s whatever the storage does.

Figures only: nothing asserts on speed. Data goes under <repo>/.bench-tmp (deleted afterwards).

    .venv/bin/python benchmarks/bench_small_objects.py store --size 4096
    .venv/bin/python benchmarks/bench_small_objects.py e2e --client raw
    .venv/bin/python -m pytest -q -s benchmarks/bench_small_objects.py      # a short smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import hmac
import http.client
import inspect
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadrun import servers

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
BENCH_ROOT = REPO / ".bench-tmp"
CONCURRENCY = 16
REGION = "us-east-1"
LISTEN_RE = re.compile(r"listening on http://([^\s:/]+):(\d+)")

pytestmark = pytest.mark.bench


def _fresh_dir(name: str) -> Path:
    d = BENCH_ROOT / f"{name}-{secrets.token_hex(4)}"
    d.mkdir(parents=True)
    return d


def _cleanup() -> None:
    shutil.rmtree(BENCH_ROOT, ignore_errors=True)


# --- in process -------------------------------------------------------------------------------------

async def _store_run(root: Path, kind: str, size: int, ops: int,
                     inline_max: int | None) -> dict[str, float]:
    from rs3gw._core.directio import select_backend
    from rs3gw.storage import LocalStore, ObjectMeta

    backend, name = select_backend(kind)
    kw: dict[str, Any] = {}
    if inline_max is not None and "inline_max_bytes" in inspect.signature(LocalStore).parameters:
        kw["inline_max_bytes"] = inline_max
    store = LocalStore(root, durable=True, io_backend=backend, **kw)
    await store.open()
    out: dict[str, float] = {}
    try:
        await store.create_bucket("bench", "o", REGION)
        body = os.urandom(size)
        per_task = ops // CONCURRENCY

        async def putter(t: int) -> None:
            for i in range(per_task):
                w = store.begin_write()
                try:
                    await w.write(body)
                    res = await w.finish()
                    await store.put_object(ObjectMeta("bench", f"t{t:02d}/k{i:06d}", "", 0, "", 0), res)
                finally:
                    await w.abort()

        async def getter(t: int) -> None:
            for i in range(per_task):
                meta = await store.get_object("bench", f"t{t:02d}/k{i:06d}")
                assert meta is not None
                it = await store.open_reader(meta)
                got = b"".join([c async for c in it])
                assert len(got) == size

        writer = store._writer
        b0 = getattr(writer, "batches_committed", 0)
        o0 = getattr(writer, "ops_committed", 0)
        t0 = time.perf_counter()
        await asyncio.gather(*(putter(t) for t in range(CONCURRENCY)))
        out["put_ops_s"] = per_task * CONCURRENCY / (time.perf_counter() - t0)
        batches = getattr(writer, "batches_committed", 0) - b0
        if batches:
            out["ops_per_commit"] = (getattr(writer, "ops_committed", 0) - o0) / batches
        t0 = time.perf_counter()
        await asyncio.gather(*(getter(t) for t in range(CONCURRENCY)))
        out["get_ops_s"] = per_task * CONCURRENCY / (time.perf_counter() - t0)
        out["backend"] = 1.0 if store.io_backend == "uring" else 0.0
        assert store.io_backend == name
    finally:
        await store.close()
        await backend.aclose()
    return out


def run_store(kind: str, size: int, ops: int, inline_max: int | None) -> dict[str, float]:
    import uvloop

    root = _fresh_dir("store")
    try:
        return uvloop.run(_store_run(root, kind, size, ops, inline_max))
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- end to end -------------------------------------------------------------------------------------

class RawClient:
    """Minimal SigV4 (UNSIGNED-PAYLOAD) client over one keep-alive http.client connection."""

    def __init__(self, host: str, port: int, access: str, secret: str) -> None:
        self.host, self.port, self.access = host, port, access
        self.conn = http.client.HTTPConnection(host, port, timeout=60)
        self._date = ""
        self._key = b""
        self._secret = secret

    def _signing_key(self, day: str) -> bytes:
        if day != self._date:
            k = ("AWS4" + self._secret).encode()
            for part in (day, REGION, "s3", "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            self._date, self._key = day, k
        return self._key

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        now = dt.datetime.now(dt.UTC)
        amz = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz[:8]
        host = f"{self.host}:{self.port}"
        signed = "host;x-amz-content-sha256;x-amz-date"
        canonical = "\n".join([method, path, "", f"host:{host}", "x-amz-content-sha256:UNSIGNED-PAYLOAD",
                               f"x-amz-date:{amz}", "", signed, "UNSIGNED-PAYLOAD"])
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        sig = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        headers = {"Host": host, "x-amz-date": amz, "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
                   "Authorization": f"AWS4-HMAC-SHA256 Credential={self.access}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={sig}",
                   "Content-Length": str(len(body))}
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, data


def _start_server(root: Path, access: str, secret: str, kind: str) -> tuple[subprocess.Popen[bytes], int]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "RS3GW_BIND_ADDR": "127.0.0.1:0",
           "RS3GW_STORAGE_ROOT": str(root), "RS3GW_ACCESS_KEY": access, "RS3GW_SECRET_KEY": secret,
           "RS3GW_REGION": REGION, "RS3GW_FSYNC": "true", "RS3GW_LOG_LEVEL": "INFO",
           "RS3GW_IO_BACKEND": kind}
    env.pop("RS3GW_LOOP_GUARD", None)
    proc = subprocess.Popen([sys.executable, "-m", "rs3gw"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode(errors="replace")
        if not line:
            break
        seen.append(line)
        m = LISTEN_RE.search(line)
        if m:
            port = int(m.group(2))
            # Keep draining stderr so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stderr or ()], daemon=True).start()
            return proc, port
    proc.kill()
    raise RuntimeError("rs3gw did not start:\n" + "".join(seen))


def _threads(n: int, fn: Callable[[int], None]) -> float:
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            fn(t)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=run, args=(t,)) for t in range(n)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def run_e2e(client: str, size: int, ops: int, kind: str) -> dict[str, float]:
    root = _fresh_dir("e2e")
    access, secret = "AKIABENCHBENCH000001", secrets.token_urlsafe(30)
    proc, port = _start_server(root, access, secret, kind)
    body = os.urandom(size)
    per = ops // CONCURRENCY
    out: dict[str, float] = {}
    try:
        if client == "boto3":
            import boto3
            from botocore.config import Config

            s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION,
                              aws_access_key_id=access, aws_secret_access_key=secret,
                              config=Config(max_pool_connections=CONCURRENCY,
                                            s3={"addressing_style": "path"}))
            s3.create_bucket(Bucket="bench")

            def put(t: int) -> None:
                for i in range(per):
                    s3.put_object(Bucket="bench", Key=f"t{t:02d}/k{i:06d}", Body=body)

            def get(t: int) -> None:
                for i in range(per):
                    got = s3.get_object(Bucket="bench", Key=f"t{t:02d}/k{i:06d}")["Body"].read()
                    assert len(got) == size
        else:
            RawClient("127.0.0.1", port, access, secret).request("PUT", "/bench")
            clients = [RawClient("127.0.0.1", port, access, secret) for _ in range(CONCURRENCY)]

            def put(t: int) -> None:
                c = clients[t]
                for i in range(per):
                    status, data = c.request("PUT", f"/bench/t{t:02d}/k{i:06d}", body)
                    assert status == 200, data

            def get(t: int) -> None:
                c = clients[t]
                for i in range(per):
                    status, data = c.request("GET", f"/bench/t{t:02d}/k{i:06d}")
                    assert status == 200 and len(data) == size, status

        c0 = servers.process_cpu_s(proc.pid)
        out["put_ops_s"] = per * CONCURRENCY / _threads(CONCURRENCY, put)
        c1 = servers.process_cpu_s(proc.pid)
        out["get_ops_s"] = per * CONCURRENCY / _threads(CONCURRENCY, get)
        c2 = servers.process_cpu_s(proc.pid)
        # Server CPU per request: with client and server on the same few cores, what bounds us.
        out["server_put_cpu_us"] = (c1 - c0) / (per * CONCURRENCY) * 1e6
        out["server_get_cpu_us"] = (c2 - c1) / (per * CONCURRENCY) * 1e6
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)
    return out


# --- entry points -----------------------------------------------------------------------------------

def _fmt(label: str, r: dict[str, float]) -> str:
    extra = f"  ops/commit {r['ops_per_commit']:.1f}" if "ops_per_commit" in r else ""
    if "server_put_cpu_us" in r:
        extra += (f"  server CPU/op PUT {r['server_put_cpu_us']:.0f} us"
                  f" GET {r['server_get_cpu_us']:.0f} us")
    return f"{label:<44} PUT {r['put_ops_s']:8.0f}/s   GET {r['get_ops_s']:8.0f}/s{extra}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["store", "e2e"])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--ops", type=int, default=4000, help="objects per phase (PUT, then GET)")
    ap.add_argument("--backend", choices=["uring", "threads"], action="append")
    ap.add_argument("--inline-max", type=int, default=None, help="LocalStore inline_max_bytes")
    ap.add_argument("--client", choices=["raw", "boto3"], default="raw")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(SRC))
    try:
        for kind in args.backend or ["uring", "threads"]:
            for run in range(args.runs):
                if args.what == "store":
                    r = run_store(kind, args.size, args.ops, args.inline_max)
                    label = f"store {kind} size={args.size} inline_max={args.inline_max}"
                else:
                    r = run_e2e(args.client, args.size, args.ops, kind)
                    label = f"e2e {args.client} {kind} size={args.size}"
                print(_fmt(f"{label} #{run + 1}", r), flush=True)
    finally:
        _cleanup()
    return 0


def test_small_objects_smoke() -> None:
    try:
        for kind in ("uring", "threads"):
            print(_fmt(f"store {kind} 4 KiB", run_store(kind, 4096, 800, None)))
        print(_fmt("e2e raw 4 KiB", run_e2e("raw", 4096, 320, "auto")))
    finally:
        _cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
