"""aws-chunked decode with signature verification vs plain SHA-256, and compiled vs twin.

A 64 MiB signed body (64 KiB chunks) fed in 1 MiB slices, the way the HTTP layer hands it over.
The floor is hashlib.sha256 over the same 64 MiB payload: every decoded byte has to be hashed once
anyway, so decode/sha256 throughput says what the framing, HMAC chain and Python boundary cost.

    .venv/bin/python -m pytest benchmarks/bench_chunked.py

All three are measured in one run; the ratios are printed at the end (GB/s in extra_info).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from rs3gw._core import chunked as compiled
from rs3gw._core import chunked_ref as reference

PAYLOAD_BYTES = 64 << 20
CHUNK_BYTES = 64 << 10
FEED_BYTES = 1 << 20
ROUNDS = 7

KEY = hashlib.sha256(b"bench signing key").digest()
AMZ_DATE = "20240101T000000Z"
SCOPE = "20240101/us-east-1/s3/aws4_request"
SEED = "0" * 64
EMPTY = hashlib.sha256(b"").hexdigest()

# CPU time of the calling thread by default: the build/test machine is shared and wall time
# mostly measures who else is running. Both sides do all their work on the calling thread (the
# GIL is released, no work moves elsewhere), so the ratio is the cost ratio. RS3GW_BENCH_WALL=1
# measures wall time instead.
TIMER = time.perf_counter if os.environ.get("RS3GW_BENCH_WALL") else time.thread_time
pytestmark = pytest.mark.benchmark(timer=TIMER)

# name -> median seconds, filled by the benchmarks below and read by the summary.
_MEDIANS: dict[str, float] = {}


def _signed_body(payload: bytes) -> bytes:
    out = bytearray()
    previous = SEED
    mv = memoryview(payload)
    for start in range(0, len(payload) + 1, CHUNK_BYTES):
        piece = mv[start:start + CHUNK_BYTES]
        sts = (f"AWS4-HMAC-SHA256-PAYLOAD\n{AMZ_DATE}\n{SCOPE}\n{previous}\n{EMPTY}\n"
               f"{hashlib.sha256(piece).hexdigest()}")
        previous = hmac.new(KEY, sts.encode(), hashlib.sha256).hexdigest()
        out += f"{len(piece):x};chunk-signature={previous}\r\n".encode()
        if len(piece):
            out += piece
            out += b"\r\n"
    out += b"\r\n"
    return bytes(out)


@pytest.fixture(scope="module")
def payload() -> bytes:
    # Pseudo-random, not zeros: nothing downstream may shortcut on it.
    return hashlib.shake_256(b"rs3gw bench").digest(PAYLOAD_BYTES)


@pytest.fixture(scope="module")
def body(payload: bytes) -> bytes:
    return _signed_body(payload)


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not _MEDIANS:
        return  # --benchmark-disable, or nothing selected
    lines = [(f"aws-chunked decode, {PAYLOAD_BYTES >> 20} MiB signed, {CHUNK_BYTES >> 10} KiB chunks, "
              f"{FEED_BYTES >> 20} MiB feeds, {TIMER.__name__} (ratios of medians):")]
    for name, seconds in _MEDIANS.items():
        lines.append(f"  {name:<22} {seconds * 1e3:8.1f} ms  {PAYLOAD_BYTES / seconds / 1e9:6.2f} GB/s")
    if {"hashlib.sha256", "compiled"} <= _MEDIANS.keys():
        lines.append(f"  compiled / sha256 throughput: {_MEDIANS['hashlib.sha256'] / _MEDIANS['compiled']:.3f}"
                     "  (target >= 0.9)")
    if {"reference", "compiled"} <= _MEDIANS.keys():
        lines.append(f"  compiled / twin throughput:   {_MEDIANS['reference'] / _MEDIANS['compiled']:.2f}x")
    # Module teardown output is captured like a test's; this summary is the point of the run.
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    assert capman is not None and tr is not None
    with capman.global_and_fixture_disabled():
        for line in ["", *lines]:
            tr.write_line(line)


def _decode_all(core: ModuleType, body: bytes) -> Callable[[], int]:
    def run() -> int:
        dec = core.ChunkedDecoder(signed=True, trailer=False, signing_key=KEY, seed_signature=SEED,
                                  amz_date=AMZ_DATE, scope=SCOPE)
        mv = memoryview(body)
        n = 0
        for start in range(0, len(body), FEED_BYTES):
            for piece in dec.feed(mv[start:start + FEED_BYTES]):
                n += len(piece)
        dec.finish()
        return n

    return run


def _record(benchmark: BenchmarkFixture, name: str) -> None:
    if benchmark.stats is None:
        return  # --benchmark-disable: ran once as a test
    median = benchmark.stats.stats.median
    _MEDIANS[name] = median
    benchmark.extra_info["payload_gb_per_s"] = PAYLOAD_BYTES / median / 1e9


def test_hashlib_sha256(benchmark: BenchmarkFixture, payload: bytes) -> None:
    benchmark.pedantic(lambda: hashlib.sha256(payload).digest(), rounds=ROUNDS, warmup_rounds=1)
    _record(benchmark, "hashlib.sha256")


@pytest.mark.parametrize("core", [compiled, reference], ids=["compiled", "reference"])
def test_decode_signed(benchmark: BenchmarkFixture, core: ModuleType, body: bytes) -> None:
    run = _decode_all(core, body)
    assert run() == PAYLOAD_BYTES  # also the warm-up
    result = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=0)
    assert result == PAYLOAD_BYTES
    _record(benchmark, "compiled" if core is compiled else "reference")
