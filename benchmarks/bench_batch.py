"""rs3gw._core.batch framing against bare zstd on the same bytes.

Workload: 1,000 replication events (~290 B of msgpack each) carrying 64 MiB of data segments, half
random (incompressible), half word-salad text, alternating per event. Encode = add() the 1,000
events + flush() at zstd level 1; the baseline is zstandard.ZstdCompressor(level=1).compress on the
already concatenated raw payload (so the baseline skips gathering the segments and msgpack). Decode
= feed() the whole frame; the baseline is zstandard decompress of a zstd frame of the same raw bytes,
once with a consumer that drops each batch (the decoder reuses its payload buffer) and once with one
that keeps the previous batch alive (fresh memory every frame, like the baseline). Note we link the
system libzstd while the zstandard wheel bundles its own release: the ratio includes that difference.

Both sides run in the same process, interleaved round by round so machine noise hits both alike;
`ratio = ours throughput / baseline throughput` (best round of each) is printed and stored in
pytest-benchmark's extra_info. No pass/fail on speed; the target is printed next to the ratio.

    .venv/bin/python -m pytest benchmarks/bench_batch.py --benchmark-only -s
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
import zstandard

from rs3gw._core import batch

pytestmark = pytest.mark.bench

EVENTS = 1000
DATA_BYTES = 64 << 20
ROUNDS = 12
TARGET = 0.9
MAX_FRAME_BYTES = 128 << 20  # 64 MiB of data + the events does not fit the 64 MiB default


def _text(n: int) -> bytes:
    rng = random.Random(42)
    words = [bytes(rng.choices(b"etaoinshrdlucmfwypvbgkjqxz", k=rng.randint(2, 10))) for _ in range(5000)]
    out = b" ".join(rng.choices(words, k=n // 5 + 1024))
    assert len(out) >= n
    return out[:n]


@pytest.fixture(scope="module")
def workload() -> list[tuple[dict[str, Any], memoryview]]:
    seg = DATA_BYTES // EVENTS
    random_half, text_half = os.urandom(DATA_BYTES // 2), _text(DATA_BYTES // 2)
    rng = random.Random(7)
    out = []
    for i in range(EVENTS):
        src = random_half if i % 2 == 0 else text_half
        start = (i // 2) * seg
        event = {
            "op": "PutObject",
            "bucket": f"bucket-{i % 16:04d}",
            "key": f"datasets/train/shard-{i // 100:05d}/sample-{i:08d}.bin",
            "version_id": rng.randbytes(13).hex().upper(),
            "hlc": 1_718_000_000_000_000_000 + i,
            "node": "node-3",
            "vv": {"node-1": rng.randrange(1000), "node-2": rng.randrange(1000), "node-3": i},
            "etag": rng.randbytes(16),
            "size": seg,
            "content_type": "application/octet-stream",
            "meta": {"x-amz-meta-origin": "camera-12"},
        }
        out.append((event, memoryview(src)[start : start + seg]))
    return out


def _encode(events: list[tuple[dict[str, Any], memoryview]], enc: batch.BatchEncoder | None = None) -> bytes:
    if enc is None:
        enc = batch.BatchEncoder("zstd", 1, max_frame_bytes=MAX_FRAME_BYTES)
    for event, data in events:
        enc.add(event, data)
    return enc.flush()


def _raw_payload(events: list[tuple[dict[str, Any], memoryview]]) -> bytes:
    packed = msgpack.packb([[e, len(d)] for e, d in events])
    return b"".join([packed, *(d for _, d in events)])


def _best_interleaved(ours: Callable[[], object], baseline: Callable[[], object]) -> tuple[float, float]:
    ours(), baseline()  # warm up: page in inputs, size allocator arenas
    best = {True: float("inf"), False: float("inf")}
    for i in range(ROUNDS):
        order = ((ours, True), (baseline, False)) if i % 2 == 0 else ((baseline, False), (ours, True))
        for fn, is_ours in order:
            t0 = time.perf_counter()
            fn()
            best[is_ours] = min(best[is_ours], time.perf_counter() - t0)
    return best[True], best[False]


def _compare(benchmark: Any, name: str, ours: Callable[[], object], baseline: Callable[[], object]) -> float:
    t_ours, t_base = _best_interleaved(ours, baseline)
    ratio = t_base / t_ours
    mib = DATA_BYTES / (1 << 20)
    benchmark.extra_info.update(
        ours_mib_s=round(mib / t_ours, 1),
        baseline_mib_s=round(mib / t_base, 1),
        ratio=round(ratio, 3),
        target=TARGET,
    )
    benchmark.pedantic(ours, rounds=5, iterations=1, warmup_rounds=1)
    print(
        f"\n[{name}] ours {mib / t_ours:.0f} MiB/s ({t_ours * 1e3:.1f} ms), "
        f"baseline {mib / t_base:.0f} MiB/s ({t_base * 1e3:.1f} ms), ratio {ratio:.3f} (target >= {TARGET})"
    )
    return ratio


@pytest.mark.benchmark(group="batch-encode")
def test_encode_vs_zstd_compress(benchmark: Any, workload: list[tuple[dict[str, Any], memoryview]]) -> None:
    raw = _raw_payload(workload)
    cctx = zstandard.ZstdCompressor(level=1)
    frame = _encode(workload)
    # Same raw bytes on both sides. The compressed bytes may differ: we link the system libzstd,
    # the zstandard wheel bundles its own (possibly newer) copy.
    assert zstandard.ZstdDecompressor().decompress(frame[batch.HEADER_SIZE :]) == raw
    # One long-lived encoder, as a replication link keeps one per peer (its gather buffer is reused).
    enc = batch.BatchEncoder("zstd", 1, max_frame_bytes=MAX_FRAME_BYTES)
    _compare(
        benchmark,
        "encode 1000 events + 64 MiB, zstd-1 vs zstd compress",
        lambda: _encode(workload, enc),
        lambda: cctx.compress(raw),
    )


@pytest.mark.benchmark(group="batch-decode")
@pytest.mark.parametrize("consumer", ["drops-batch", "keeps-batch"])
def test_decode_vs_zstd_decompress(
    benchmark: Any, workload: list[tuple[dict[str, Any], memoryview]], consumer: str
) -> None:
    frame = _encode(workload)
    zframe = zstandard.ZstdCompressor(level=1).compress(_raw_payload(workload))
    dctx = zstandard.ZstdDecompressor()
    dec = batch.BatchDecoder(max_frame_bytes=MAX_FRAME_BYTES)
    got = dec.feed(frame)
    seg = got[1][1]
    assert len(got) == EVENTS and seg is not None and bytes(seg) == bytes(workload[1][1])
    del got, seg
    # drops-batch: the consumer is done with a batch before the next arrives, so the decoder reuses
    # its payload buffer. keeps-batch: the previous batch is still alive during each feed(), so every
    # frame gets fresh memory, as the baseline always does.
    held: list[object] = [None]

    def keep() -> None:
        held[0] = dec.feed(frame)

    _compare(
        benchmark,
        f"decode 1000 events + 64 MiB, zstd-1 vs zstd decompress, consumer {consumer}",
        (lambda: dec.feed(frame)) if consumer == "drops-batch" else keep,
        lambda: dctx.decompress(zframe),
    )
