"""Sequential 1 MiB-block write and read of 1 GiB: DirectWriter/DirectReader vs fio (io_uring,
O_DIRECT, same block size and queue depth) vs plain Python buffered write + fsync.

Both sides run in the same process run, alternating, on a directory of the real disk (not tmpfs);
files are deleted afterwards. Figures only: nothing here asserts on time.

    .venv/bin/python benchmarks/bench_directio.py --runs 3            # the full 1 GiB comparison
    .venv/bin/python -m pytest -q -s benchmarks/bench_directio.py      # a 64 MiB smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fio_baseline import have_fio, run_fio

from rs3gw._core.directio import DirectReader, DirectWriter
from rs3gw._core.io_threads import ThreadBackend
from rs3gw._core.uring import BufferPool, Ring

MIB = 1 << 20


def bench_dir(explicit: str | None) -> Path:
    """A directory on the real disk: /work's or /tmp's, whichever is not tmpfs."""
    candidates = [explicit] if explicit else [str(Path(__file__).resolve().parents[1]), tempfile.gettempdir()]
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    for cand in candidates:
        real = os.path.realpath(cand)
        best = max(
            (m for m in mounts if real == m[1] or real.startswith(m[1].rstrip("/") + "/")),
            key=lambda m: len(m[1]),
        )
        if best[2] != "tmpfs":
            d = Path(tempfile.mkdtemp(prefix=".bench-directio-", dir=real))
            return d
    raise SystemExit("no non-tmpfs directory found; pass --dir")


async def ours_write(path: Path, backend_kind: str, size: int, block: bytes, depth: int) -> float:
    backend = Ring() if backend_kind == "uring" else ThreadBackend()
    pool = BufferPool(size=len(block), count=depth + 2)
    t0 = time.perf_counter()
    w = DirectWriter(str(path), backend, pool, direct="on", depth=depth)
    for _ in range(size // len(block)):
        await w.write(block)
    await w.finish(fsync=True)
    dt = time.perf_counter() - t0
    await backend.aclose()
    pool.close()
    return dt


async def ours_read(path: Path, backend_kind: str, bs: int, depth: int) -> tuple[float, int]:
    backend = Ring() if backend_kind == "uring" else ThreadBackend()
    pool = BufferPool(size=bs, count=depth + 2)
    t0 = time.perf_counter()
    r = DirectReader(str(path), backend, pool, direct="on", depth=depth)
    total = 0
    async for view in r.read_range(0, r.size - 1):
        total += len(view)
    r.close()
    dt = time.perf_counter() - t0
    await backend.aclose()
    pool.close()
    return dt, total


def python_buffered_write(path: Path, size: int, block: bytes) -> float:
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        f.writelines(block for _ in range(size // len(block)))
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t0


def mib_s(size: int, seconds: float) -> float:
    return size / MIB / seconds


def run_once(
    d: Path, size: int, bs: int, depth: int, backend_kind: str, pairs: int, say: Callable[[str], None]
) -> dict[str, float]:
    """One run: `pairs` alternating ours/fio measurements of each side, medians reported (the disk
    under test is shared and its throughput drifts; alternating keeps the drift on both sides)."""
    block = os.urandom(bs)
    ours, fio_file, py_file = d / "ours.dat", d / "fio.dat", d / "py.dat"
    samples: dict[str, list[float]] = {
        k: [] for k in ("ours_write", "fio_write", "py_write", "ours_read", "fio_read")
    }
    try:
        for _ in range(pairs):
            ours.unlink(missing_ok=True)
            samples["ours_write"].append(
                mib_s(size, uvloop.run(ours_write(ours, backend_kind, size, block, depth)))
            )
            fio_w = run_fio(str(fio_file), "write", size=str(size), bs=str(bs), iodepth=depth)
            samples["fio_write"].append(fio_w.mib_per_s)
            fio_file.unlink()
            dt, got = uvloop.run(ours_read(ours, backend_kind, bs, depth))
            assert got == size
            samples["ours_read"].append(mib_s(size, dt))
            samples["fio_read"].append(
                run_fio(str(ours), "read", size=str(size), bs=str(bs), iodepth=depth).mib_per_s
            )
        samples["py_write"].append(mib_s(size, python_buffered_write(py_file, size, block)))
    finally:
        for p in (ours, fio_file, py_file):
            p.unlink(missing_ok=True)
    out = {k: statistics.median(v) for k, v in samples.items()}
    say(
        f"  write: ours {out['ours_write']:7.0f} MiB/s  fio {out['fio_write']:7.0f}  python buffered+fsync "
        f"{out['py_write']:7.0f}   ratio ours/fio {out['ours_write'] / out['fio_write']:.2f}  "
        f"ours/python {out['ours_write'] / out['py_write']:.2f}\n"
        f"  read:  ours {out['ours_read']:7.0f} MiB/s  fio {out['fio_read']:7.0f}"
        f"                                  ratio ours/fio {out['ours_read'] / out['fio_read']:.2f}"
    )
    return out


def run(
    size: int,
    bs: int,
    depth: int,
    runs: int,
    backend_kind: str,
    directory: str | None,
    pairs: int = 3,
    say: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    d = bench_dir(directory)
    say(
        f"dir {d} | {size // MIB} MiB in {bs // 1024} KiB blocks, depth {depth}, backend {backend_kind}, "
        f"median of {pairs} alternating pairs per run"
    )
    results = []
    try:
        for i in range(runs):
            say(f"run {i + 1}/{runs}")
            results.append(run_once(d, size, bs, depth, backend_kind, pairs, say))
    finally:
        d.rmdir()
    if runs > 1:
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        say(
            f"median: write ours/fio {med['ours_write'] / med['fio_write']:.2f}, "
            f"ours/python {med['ours_write'] / med['py_write']:.2f}; read ours/fio {med['ours_read'] / med['fio_read']:.2f}"
        )
    return results


def test_bench_directio_smoke() -> None:
    import pytest

    if not have_fio():
        pytest.skip("fio not installed")
    (res,) = run(64 * MIB, MIB, 4, 1, "uring", None, pairs=1)
    assert all(v > 0 for v in res.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--bs-kib", type=int, default=1024)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=3, help="alternating ours/fio measurements per run")
    ap.add_argument("--backend", choices=["uring", "threads"], default="uring")
    ap.add_argument("--dir", default=None, help="directory on the disk under test (default: /work or /tmp)")
    args = ap.parse_args()
    if not have_fio():
        raise SystemExit("fio is not installed (apt-get install fio)")
    run(args.size_mib * MIB, args.bs_kib * 1024, args.depth, args.runs, args.backend, args.dir, args.pairs)


if __name__ == "__main__":
    main()
