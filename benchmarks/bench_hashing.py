"""rs3gw._core.hashing against the libraries the gateway would otherwise use.

Each comparison measures both sides in the same run, interleaved round by round so drift on a noisy
machine hits both alike, and prints `ratio = ours throughput / baseline throughput` (best round of
each). pytest-benchmark records our side in its table, the baseline and ratio in extra_info.
No pass/fail on speed: the targets are printed next to the measured ratio.

    .venv/bin/python -m pytest benchmarks/bench_hashing.py --benchmark-only -s
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from collections.abc import Callable

import google_crc32c
import pytest
from awscrt import checksums as crt
from pytest_benchmark.fixture import BenchmarkFixture

from rs3gw._core import hashing

pytestmark = pytest.mark.bench

DATA_BYTES = 64 << 20
ROUNDS = 12


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(DATA_BYTES)


def _one_pass(algos: tuple[str, ...], buf: bytes) -> Callable[[], dict[str, bytes]]:
    def run() -> dict[str, bytes]:
        h = hashing.Hasher(algos)
        h.update(buf)
        return h.digests()

    return run


def _best_interleaved(ours: Callable[[], object], baseline: Callable[[], object]) -> tuple[float, float]:
    ours(), baseline()  # warm caches, page in the data
    best_ours = best_base = float("inf")
    for i in range(ROUNDS):
        pair = ((ours, True), (baseline, False)) if i % 2 == 0 else ((baseline, False), (ours, True))
        for fn, is_ours in pair:
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if is_ours:
                best_ours = min(best_ours, dt)
            else:
                best_base = min(best_base, dt)
    return best_ours, best_base


def _compare(
    benchmark: BenchmarkFixture,
    name: str,
    ours: Callable[[], object],
    baseline: Callable[[], object],
    target: float,
) -> float:
    t_ours, t_base = _best_interleaved(ours, baseline)
    ratio = t_base / t_ours
    gbs = DATA_BYTES / 1e9
    benchmark.extra_info.update(
        ours_gbs=round(gbs / t_ours, 3),
        baseline_gbs=round(gbs / t_base, 3),
        ratio=round(ratio, 3),
        target=target,
    )
    benchmark.pedantic(ours, rounds=5, iterations=1, warmup_rounds=1)
    print(
        f"\n[{name}] ours {gbs / t_ours:.2f} GB/s, baseline {gbs / t_base:.2f} GB/s, "
        f"ratio {ratio:.3f} (target >= {target})"
    )
    return ratio


@pytest.mark.benchmark(group="md5+crc32c")
def test_md5_crc32c_one_pass_vs_hashlib_md5(benchmark: BenchmarkFixture, data: bytes) -> None:
    ours = _one_pass(("md5", "crc32c"), data)
    _compare(
        benchmark, "md5+crc32c one pass vs hashlib.md5 alone", ours, lambda: hashlib.md5(data).digest(), 0.9
    )
    assert ours()["md5"] == hashlib.md5(data).digest()


@pytest.mark.benchmark(group="crc32c")
def test_crc32c_vs_google_crc32c(benchmark: BenchmarkFixture, data: bytes) -> None:
    assert google_crc32c.implementation == "c"  # the C extension, not its pure-Python fallback
    ours = _one_pass(("crc32c",), data)
    _compare(benchmark, "crc32c vs google_crc32c", ours, lambda: google_crc32c.value(data), 1.0)
    assert ours()["crc32c"] == google_crc32c.value(data).to_bytes(4, "big")


@pytest.mark.benchmark(group="sha256")
def test_sha256_vs_hashlib(benchmark: BenchmarkFixture, data: bytes) -> None:
    ours = _one_pass(("sha256",), data)
    _compare(benchmark, "sha256 vs hashlib.sha256", ours, lambda: hashlib.sha256(data).digest(), 0.95)


def _separately(buf: bytes) -> None:
    hashlib.md5(buf).digest()
    hashlib.sha1(buf).digest()
    hashlib.sha256(buf).digest()
    zlib.crc32(buf)
    google_crc32c.value(buf)
    crt.crc64nvme(buf)


@pytest.mark.benchmark(group="all")
def test_all_six_one_pass_vs_separate_calls(benchmark: BenchmarkFixture, data: bytes) -> None:
    ours = _one_pass(hashing.ALGOS, data)
    _compare(
        benchmark, "all six one pass vs six separate library calls", ours, lambda: _separately(data), 1.0
    )


@pytest.mark.benchmark(group="block-size")
@pytest.mark.parametrize(
    "algos",
    [("md5", "crc32c"), ("sha256", "crc32", "crc32c", "crc64nvme"), ("crc32", "crc32c", "crc64nvme")],
    ids="+".join,
)
# 65536 KiB is the whole buffer per algorithm: the "no one-pass" case.
@pytest.mark.parametrize("block_kib", [4, 16, 32, 64, 128, 256, 1024, 4096, 65536])
def test_block_size_sweep(
    benchmark: BenchmarkFixture, data: bytes, algos: tuple[str, ...], block_kib: int
) -> None:
    hashing._set_block_bytes(block_kib << 10)
    try:
        benchmark.pedantic(_one_pass(algos, data), rounds=6, iterations=1, warmup_rounds=1)
    finally:
        hashing._set_block_bytes(hashing.BLOCK_BYTES)
