"""The bounded load run: P client processes x C keep-alive connections, each connection issuing one
request at a time until the run's operation budget or its deadline is reached (both always set;
hard caps below). Results from the processes are merged in the parent.

Per process: connect, warm up (GET: each key fetched once and its MD5 checked against what was put,
outside the timed window), wait on a barrier shared by all processes, then the timed window.
Latency is request-written to last-response-byte, per operation.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import multiprocessing as mp
import resource
import time
from array import array
from dataclasses import asdict, dataclass, field
from typing import Any

from . import payload
from .http1 import Connection, HttpError, Response, connect, request_head
from .sigv4 import Signer, uri_encode_path

OPS_HARD_MAX = 5_000_000
DURATION_HARD_MAX_S = 600.0
DURATION_DEFAULT_S = 10.0
PROCESSES_MAX = 16
CONNECTIONS_MAX = 1024
WARMUP_KEYS_MAX = 2_000          # GET warm-up MD5-checks at most this many keys per process
SETUP_TIMEOUT_S = 120.0
ERROR_SAMPLES_MAX = 5
WORKLOADS = ("put", "get", "static_get")


@dataclass
class Target:
    host: str
    port: int
    access_key: str = ""
    secret_key: str = ""
    region: str = "us-east-1"

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def signer(self) -> Signer | None:
        return Signer(self.access_key, self.secret_key, self.region, self.hostport) if self.access_key else None


@dataclass
class Spec:
    workload: str                    # "put", "get" (signed S3) or "static_get" (plain GET, no signing)
    target: Target
    bucket: str = "bench"
    prefix: str = "obj"
    size_bytes: int = 4096
    keys: int = 0                    # key space cycled over; 0 = every PUT a new key
    connections: int = 16            # per process
    processes: int = 1
    ops: int | None = None           # across all processes
    duration_s: float | None = None
    checksums: bool = False          # PUT: send Content-MD5 and x-amz-checksum-crc32c
    seed: int = 1
    key_offset: int = 0              # first key index (populating in several runs)

    def bounded(self) -> tuple[int, float]:
        ops = min(self.ops if self.ops is not None else OPS_HARD_MAX, OPS_HARD_MAX)
        if self.duration_s is None:
            dur = DURATION_DEFAULT_S if self.ops is None else DURATION_HARD_MAX_S
        else:
            dur = self.duration_s
        return ops, min(dur, DURATION_HARD_MAX_S)


@dataclass
class Result:
    workload: str
    size_bytes: int
    processes: int
    connections: int
    ops: int = 0
    errors: int = 0
    bad_content: int = 0
    bytes: int = 0
    seconds: float = 0.0
    ops_per_s: float = 0.0
    mb_per_s: float = 0.0            # 10^6 bytes per second of object data
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    client_cpu_s: float = 0.0
    client_cpu_us_per_op: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    rank = math.ceil(q * len(sorted_values))           # nearest rank
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


def object_path(spec: Spec, index: int) -> str:
    return f"/{spec.bucket}/{payload.key_name(spec.prefix, index)}"


class _Worker:
    """One client process's share of the run."""

    def __init__(self, spec: Spec, proc_index: int, ops_budget: int) -> None:
        self.spec = spec
        self.proc_index = proc_index
        self.ops_budget = ops_budget
        self.signer = spec.target.signer()
        self.started = 0
        self.done = 0
        self.errors = 0
        self.bad_content = 0
        self.bytes = 0
        self.lat = array("d")
        self.samples: list[str] = []
        self.deadline = 0.0
        self._static_heads: dict[int, bytes] = {}

    def key_index(self, i: int) -> int:
        g = self.proc_index + i * self.spec.processes        # processes interleave: no key clashes
        return self.spec.key_offset + (g % self.spec.keys if self.spec.keys else g)

    def build(self, index: int) -> tuple[bytes, bytes | None, bytes | None]:
        """(request head, request body, expected response body) for one operation on key `index`."""
        spec = self.spec
        path = object_path(spec, index)
        if spec.workload == "static_get":
            head = self._static_heads.get(index)
            if head is None:
                head = request_head("GET", uri_encode_path(path), {"host": spec.target.hostport})
                if len(self._static_heads) < 100_000:
                    self._static_heads[index] = head
            return head, None, self._expected(index)
        if spec.workload == "get":
            hdrs = self.signer.headers("GET", path) if self.signer else {"host": spec.target.hostport}
            return request_head("GET", uri_encode_path(path), hdrs), None, self._expected(index)
        extra = {"content-length": str(spec.size_bytes)}
        if spec.checksums:
            data, _, md5_b64, crc_b64 = payload.described(spec.seed, spec.size_bytes, index)
            extra["content-md5"] = md5_b64
            extra["x-amz-checksum-crc32c"] = crc_b64
        else:
            data = self._expected(index)
        hdrs = self.signer.headers("PUT", path, None, extra) if self.signer else {
            "host": spec.target.hostport, **extra}
        return request_head("PUT", uri_encode_path(path), hdrs), data, None

    def _expected(self, index: int) -> bytes:
        if self.spec.size_bytes >= payload.CACHE_BYTES_MIN:
            return payload.described(self.spec.seed, self.spec.size_bytes, index)[0]
        return payload.object_bytes(self.spec.seed, self.spec.size_bytes, index)

    def note_error(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < ERROR_SAMPLES_MAX:
            self.samples.append(what[:300])

    async def warmup(self, conn: Connection) -> Connection:
        """GET each key this process will read once; MD5 of the body must equal the put object's MD5
        (and a single-part ETag). Not timed."""
        if self.spec.workload not in ("get", "static_get"):
            return conn
        keys = self.spec.keys or 1
        mine = range(self.proc_index, keys, self.spec.processes) if keys > self.spec.processes else range(keys)
        for n, k in enumerate(mine):
            if n >= WARMUP_KEYS_MAX:
                break
            index = self.spec.key_offset + k
            head, _, _ = self.build(index)
            resp = await conn.request(head, keep=True)
            want = payload.described(self.spec.seed, self.spec.size_bytes, index)[1]
            got = hashlib.md5(resp.body).hexdigest()
            etag = resp.headers.get("etag", "").strip('"')
            if resp.status != 200 or got != want or (self.spec.workload == "get" and etag and etag != want):
                raise RuntimeError(f"warm-up GET {object_path(self.spec, index)}: status {resp.status}, "
                                   f"md5 {got} etag {etag} want {want}: {resp.body[:200]!r}")
            if not conn.usable:
                conn = await connect(self.spec.target.host, self.spec.target.port)
        return conn

    async def loop(self, conn: Connection) -> None:
        spec = self.spec
        perf = time.perf_counter
        mono = time.monotonic
        while self.started < self.ops_budget and mono() < self.deadline:
            i = self.started
            self.started += 1
            index = self.key_index(i)
            head, body, expected = self.build(index)
            t0 = perf()
            try:
                if not conn.usable:
                    conn = await connect(spec.target.host, spec.target.port)
                resp: Response = await conn.request(head, body, expected)
            except (HttpError, OSError) as e:
                self.note_error(f"{spec.workload} {index}: {e}")
                conn.abort()
                continue
            dt = perf() - t0
            ok = 200 <= resp.status < 300
            if not ok:
                self.note_error(f"{spec.workload} {index}: HTTP {resp.status} {resp.body[:200]!r}")
                continue
            if expected is not None and not resp.content_ok:
                self.bad_content += 1
                self.note_error(f"{spec.workload} {index}: content differs from what was put")
                continue
            self.lat.append(dt)
            self.done += 1
            self.bytes += spec.size_bytes
        conn.close()


async def _process_main(spec: Spec, proc_index: int, ops_budget: int, barrier: Any) -> dict[str, Any]:
    w = _Worker(spec, proc_index, ops_budget)
    conns = [await connect(spec.target.host, spec.target.port) for _ in range(spec.connections)]
    conns[0] = await w.warmup(conns[0])
    if spec.workload == "put" and spec.checksums and spec.size_bytes >= payload.CACHE_BYTES_MIN:
        for k in range(min(spec.keys or 1, 16)):          # hash the cached payloads before the clock
            payload.described(spec.seed, spec.size_bytes, spec.key_offset + k)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, barrier.wait, SETUP_TIMEOUT_S)
    _, duration = spec.bounded()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t_start = time.monotonic()
    w.deadline = t_start + duration
    await asyncio.gather(*(w.loop(c) for c in conns))
    t_end = time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"ops": w.done, "errors": w.errors, "bad_content": w.bad_content, "bytes": w.bytes,
            "t_start": t_start, "t_end": t_end, "lat": w.lat.tobytes(), "samples": w.samples,
            "cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)}


def _child(spec: Spec, proc_index: int, ops_budget: int, barrier: Any, out: Any) -> None:
    import uvloop
    try:
        out.put((proc_index, uvloop.run(_process_main(spec, proc_index, ops_budget, barrier))))
    except BaseException as e:
        barrier.abort()
        out.put((proc_index, {"fatal": f"{type(e).__name__}: {e}"}))
        raise                                    # the traceback goes to this child's stderr


def run(spec: Spec) -> Result:
    """Runs `spec` in spec.processes client processes and merges what they measured."""
    if spec.workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {WORKLOADS}")
    if not 1 <= spec.processes <= PROCESSES_MAX or not 1 <= spec.connections <= CONNECTIONS_MAX:
        raise ValueError("processes or connections out of range")
    ops, duration = spec.bounded()
    share = [ops // spec.processes + (1 if p < ops % spec.processes else 0) for p in range(spec.processes)]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(spec.processes)
    out = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(spec, p, share[p], barrier, out), daemon=True)
             for p in range(spec.processes)]
    for p in procs:
        p.start()
    parts: dict[int, dict[str, Any]] = {}
    give_up = time.monotonic() + SETUP_TIMEOUT_S + duration + 60
    try:
        while len(parts) < len(procs):
            left = give_up - time.monotonic()
            if left <= 0:
                raise RuntimeError("load run overran its hard deadline")
            idx, part = out.get(timeout=left)
            parts[idx] = part
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    fatal = [p["fatal"] for p in parts.values() if "fatal" in p]
    if fatal:
        raise RuntimeError(f"client process failed: {fatal[0]}")
    return merge(spec, list(parts.values()))


def merge(spec: Spec, parts: list[dict[str, Any]]) -> Result:
    res = Result(spec.workload, spec.size_bytes, spec.processes, spec.connections)
    lat: list[float] = []
    for p in parts:
        res.ops += p["ops"]
        res.errors += p["errors"]
        res.bad_content += p["bad_content"]
        res.bytes += p["bytes"]
        res.client_cpu_s += p["cpu_s"]
        res.error_samples += p["samples"][:ERROR_SAMPLES_MAX - len(res.error_samples)]
        a = array("d")
        a.frombytes(p["lat"])
        lat.extend(a)
    res.seconds = max(p["t_end"] for p in parts) - min(p["t_start"] for p in parts)
    lat.sort()
    if res.seconds > 0:
        res.ops_per_s = res.ops / res.seconds
        res.mb_per_s = res.bytes / res.seconds / 1e6
    res.p50_ms = percentile(lat, 0.50) * 1e3
    res.p99_ms = percentile(lat, 0.99) * 1e3
    res.max_ms = (lat[-1] if lat else 0.0) * 1e3
    res.client_cpu_us_per_op = res.client_cpu_s / res.ops * 1e6 if res.ops else 0.0
    return res
