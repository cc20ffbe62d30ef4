"""Runs fio once and returns what the directio benchmark compares against (JSON output parsed).

python benchmarks/fio_baseline.py /path/on/disk/file write --size 1G --bs 1M --iodepth 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class FioResult:
    rw: str
    bytes_total: int
    runtime_s: float  # fio's own job runtime (excludes its setup)
    bw_bytes_per_s: float
    iops: float
    clat_mean_us: float
    command: str

    @property
    def mib_per_s(self) -> float:
        return self.bw_bytes_per_s / (1 << 20)


def have_fio() -> bool:
    return shutil.which("fio") is not None


def run_fio(
    filename: str,
    rw: str,
    *,
    size: str = "1G",
    bs: str = "1M",
    iodepth: int = 8,
    direct: bool = True,
    ioengine: str = "io_uring",
    end_fsync: bool = True,
    extra: tuple[str, ...] = (),
) -> FioResult:
    """rw is fio's --rw (write, read, ...). Writes allocate as they go (--fallocate=none), like a
    gateway writing an object of unknown size, and end with an fsync when end_fsync is set."""
    if rw not in ("read", "write"):
        raise ValueError("rw must be read or write")
    cmd = [
        "fio",
        "--name=rs3gw-baseline",
        f"--filename={filename}",
        f"--ioengine={ioengine}",
        f"--direct={int(direct)}",
        f"--bs={bs}",
        f"--iodepth={iodepth}",
        f"--rw={rw}",
        f"--size={size}",
        "--numjobs=1",
        "--thread",
        "--fallocate=none",
        "--output-format=json",
        *extra,
    ]
    if rw == "write" and end_fsync:
        cmd.append("--end_fsync=1")
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    # fio may print warnings before the JSON document.
    doc = json.loads(proc.stdout[proc.stdout.index("{") :])
    job = doc["jobs"][0]
    side = job[rw]
    return FioResult(
        rw=rw,
        bytes_total=int(side["io_bytes"]),
        runtime_s=float(side["runtime"]) / 1000.0,
        bw_bytes_per_s=float(side["bw_bytes"]),
        iops=float(side["iops"]),
        clat_mean_us=float(side["clat_ns"]["mean"]) / 1000.0,
        command=" ".join(cmd),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("filename")
    ap.add_argument("rw", choices=["read", "write"])
    ap.add_argument("--size", default="1G")
    ap.add_argument("--bs", default="1M")
    ap.add_argument("--iodepth", type=int, default=8)
    ap.add_argument("--buffered", action="store_true")
    args = ap.parse_args()
    res = run_fio(
        args.filename, args.rw, size=args.size, bs=args.bs, iodepth=args.iodepth, direct=not args.buffered
    )
    print(
        f"{res.command}\n{res.rw}: {res.mib_per_s:.0f} MiB/s, {res.iops:.0f} IOPS, clat {res.clat_mean_us:.0f} us"
    )


if __name__ == "__main__":
    main()
