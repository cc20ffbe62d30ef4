"""What a running lifecycle scanner costs client traffic: GET 4 KiB against one rs3gw (durable,
two workers) while the scanner is idle (no bucket has a lifecycle configuration) and while it
walks the bucket's versions without pause (a rule whose days never come due: every pass reads
everything and acts on nothing), alternating in one session. Reported as scanning / idle with the
server CPU per GET, and the scanner passes finished during the scanning runs (so the figure is
not of a scanner that did nothing).

    .venv/bin/python benchmarks/bench_lifecycle.py            # make bench-lifecycle
    .venv/bin/python benchmarks/bench_lifecycle.py --rounds 8 --versions 10000

Writes benchmarks/results/lifecycle.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_versioning import _enable
from e2e import ACCESS_KEY, RESULTS, SECRET_KEY, SEED, _load, log, machine
from loadrun import s3ops, servers
from loadrun.runner import DURATION_HARD_MAX_S, Spec, Target

BUCKET = "bench-lifecycle"
KEYS = 2500
NEVER = {"Rules": [{"ID": "far", "Filter": {"Prefix": ""}, "Status": "Enabled",
                    "Expiration": {"Days": 100000},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 100000}}]}


def _passes(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("rs3gw_lifecycle_events_total{") and 'event="pass"' in line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per GET run")
    ap.add_argument("--versions", type=int, default=5000, help="versions the scanner walks")
    ap.add_argument("--rate", type=int, default=1000, help="RS3GW_LIFECYCLE_RATE")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    import boto3
    from botocore.config import Config

    work = servers.real_disk_dir(".bench-lifecycle-",
                                 [tempfile.gettempdir(), str(Path(__file__).resolve().parents[1])])
    runs: dict[str, list[dict[str, Any]]] = {"idle": [], "scanning": []}
    passes_while_scanning = 0.0
    try:
        env = {"RS3GW_LIFECYCLE_RATE": str(a.rate), "RS3GW_LIFECYCLE_INTERVAL": "0.5"}
        with servers.Rs3gw(work, ACCESS_KEY, SECRET_KEY, fsync=True, env=env) as gw:
            t = Target("127.0.0.1", gw.port, ACCESS_KEY, SECRET_KEY)
            s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{gw.port}",
                              aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                              region_name="us-east-1",
                              config=Config(s3={"addressing_style": "path"}))
            s3ops.run_sync(s3ops.create_bucket(t, BUCKET))
            _enable(t, BUCKET)
            _load("populate", Spec("put", t, BUCKET, "obj", 4096, KEYS, 16, 2, ops=a.versions,
                                   duration_s=DURATION_HARD_MAX_S, seed=SEED))
            for rnd in range(a.rounds):
                for mode in (("idle", "scanning") if rnd % 2 == 0 else ("scanning", "idle")):
                    if mode == "scanning":
                        s3.put_bucket_lifecycle_configuration(Bucket=BUCKET,
                                                              LifecycleConfiguration=NEVER)
                    else:
                        s3.delete_bucket_lifecycle(Bucket=BUCKET)
                        time.sleep(1.0)        # a pass in flight ends at its next batch
                    before = _passes(gw.port)
                    got = _load(f"GET 4 KiB, scanner {mode}",
                                Spec("get", t, BUCKET, "obj", keys=KEYS, duration_s=a.duration,
                                     size_bytes=4096, connections=8, processes=2, seed=SEED),
                                gw.pid)
                    if mode == "scanning":
                        passes_while_scanning += _passes(gw.port) - before
                    runs[mode].append(got)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(mode: str, field: str) -> float:
        return statistics.median(r[field] for r in runs[mode])
    out = {"machine": machine(), "settings": vars(a) | {"out": str(a.out)}, "runs": runs,
           "ratio_ops": med("scanning", "ops_per_s") / med("idle", "ops_per_s"),
           "passes_while_scanning": passes_while_scanning,
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "lifecycle.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"GET 4 KiB with the lifecycle scanner walking {a.versions} versions at {a.rate}/s vs "
          f"idle; medians of {a.rounds} rounds")
    print("| scanner | ops/s | server CPU us/op | p99 ms |")
    print("|---|---|---|---|")
    for mode in ("idle", "scanning"):
        print(f"| {mode} | {med(mode, 'ops_per_s'):.0f} | {med(mode, 'server_cpu_us_per_op'):.0f}"
              f" | {med(mode, 'p99_ms'):.1f} |")
    print(f"ratio scanning / idle: {out['ratio_ops']:.2f}; scanner passes finished while "
          f"scanning: {passes_while_scanning:.0f}")
    log(f"wrote {a.out / 'lifecycle.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
