"""A/B of one server setting: the same load runs against rs3gw started with settings A and with
settings B, alternating in one session (the machine is shared and noisy), reported as ratios B / A
with the server's CPU per operation (all its processes summed) and its memory (RSS summed, PSS).

    .venv/bin/python benchmarks/bench_ab.py --a RS3GW_WORKERS=1 --b RS3GW_WORKERS=2
    .venv/bin/python benchmarks/bench_ab.py --a RS3GW_SENDFILE=off --b RS3GW_SENDFILE=on --rounds 5

Writes benchmarks/results/ab.json (or --out). The client runs on the same cores as the server: on
a 2-core machine, whatever a setting gains in parallelism competes with the client for CPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e import ACCESS_KEY, BUCKET, RESULTS, SECRET_KEY, SEED, _load, log, machine, populate
from loadrun import s3ops, servers
from loadrun.runner import Spec, Target

MIB = 1 << 20
SCENARIOS = (("put_4kib", "ops_per_s"), ("get_4kib", "ops_per_s"), ("put_64mib", "mb_per_s"),
             ("get_64mib", "mb_per_s"))


def one_round(work: Path, tag: str, env: dict[str, str], d: float, rnd: int) -> dict[str, Any]:
    run_dir = work / f"{tag}-r{rnd}"      # its own log: the start line is searched for
    run_dir.mkdir()
    with servers.Rs3gw(run_dir, ACCESS_KEY, SECRET_KEY, fsync=True, env=env) as gw:
        t = Target("127.0.0.1", gw.port, ACCESS_KEY, SECRET_KEY)
        s3ops.run_sync(s3ops.create_bucket(t, BUCKET))
        small = {"size_bytes": 4096, "connections": 8, "processes": 2, "seed": SEED}
        big = {"size_bytes": 64 * MIB, "keys": 2, "connections": 2, "processes": 1, "seed": SEED}
        f: dict[str, Any] = {"idle_rss_bytes": servers.rss_bytes(gw.pid),
                             "idle_pss_bytes": servers.pss_bytes(gw.pid)}
        f["put_4kib"] = _load(f"{tag} PUT 4 KiB", Spec("put", t, BUCKET, "put4k", duration_s=d, **small),
                              gw.pid)
        populate(t, "obj", 4096, 1000, None)
        f["get_4kib"] = _load(f"{tag} GET 4 KiB", Spec("get", t, BUCKET, "obj", keys=1000, duration_s=d,
                                                      **small), gw.pid)
        f["put_64mib"] = _load(f"{tag} PUT 64 MiB", Spec("put", t, BUCKET, "big", duration_s=d,
                                                         checksums=True, **big), gw.pid)
        f["get_64mib"] = _load(f"{tag} GET 64 MiB", Spec("get", t, BUCKET, "big", duration_s=d, **big),
                               gw.pid)
        f["after_rss_bytes"] = servers.rss_bytes(gw.pid)
        f["after_pss_bytes"] = servers.pss_bytes(gw.pid)
        return f


def medians(runs: dict[str, list[dict[str, Any]]], scenarios: tuple[tuple[str, str], ...],
            ) -> dict[str, Any]:
    """Per scenario: the median of A's and B's rounds, B / A, server CPU per op and p99 of each."""
    def med(tag: str, scen: str, field: str) -> float:
        return statistics.median(r[scen][field] for r in runs[tag])

    table: dict[str, Any] = {}
    for scen, field in scenarios:
        x, y = med("A", scen, field), med("B", scen, field)
        table[scen] = {"unit": field, "A": x, "B": y, "ratio": y / x if x else 0.0,
                       "cpu_us_per_op_A": med("A", scen, "server_cpu_us_per_op"),
                       "cpu_us_per_op_B": med("B", scen, "server_cpu_us_per_op"),
                       "p99_ms_A": med("A", scen, "p99_ms"), "p99_ms_B": med("B", scen, "p99_ms")}
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", action="append", default=[], metavar="VAR=VALUE",
                    help="setting of run A (repeatable)")
    ap.add_argument("--b", action="append", default=[], metavar="VAR=VALUE",
                    help="setting of run B (repeatable)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    envs = {"A": dict(kv.split("=", 1) for kv in a.a), "B": dict(kv.split("=", 1) for kv in a.b)}
    work = servers.real_disk_dir(".bench-ab-", [tempfile.gettempdir(), str(Path(__file__).resolve().parents[1])])
    runs: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    try:
        for rnd in range(a.rounds):
            for tag in ("A", "B") if rnd % 2 == 0 else ("B", "A"):
                runs[tag].append(one_round(work, tag, envs[tag], a.duration, rnd))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = medians(runs, SCENARIOS)
    for tag, rounds in runs.items():
        table[f"memory_{tag}"] = {k: statistics.median(r[k] for r in rounds) / MIB
                                  for k in ("idle_rss_bytes", "idle_pss_bytes", "after_rss_bytes", "after_pss_bytes")}
    out = {"machine": machine(), "settings": vars(a) | {"out": str(a.out)}, "env": envs, "medians": table,
           "runs": runs, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "ab.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"A = {envs['A']}, B = {envs['B']}; medians of {a.rounds} rounds")
    print("| scenario | A | B | B / A | server CPU us/op A -> B | p99 ms A -> B |")
    print("|---|---|---|---|---|---|")
    for scen, _ in SCENARIOS:
        r = table[scen]
        print(f"| {scen} | {r['A']:.0f} {r['unit']} | {r['B']:.0f} | {r['ratio']:.2f} | "
              f"{r['cpu_us_per_op_A']:.0f} -> {r['cpu_us_per_op_B']:.0f} | {r['p99_ms_A']:.1f} -> {r['p99_ms_B']:.1f} |")
    for tag in runs:
        m = table[f"memory_{tag}"]
        print(f"memory {tag}: idle RSS {m['idle_rss_bytes']:.0f} MiB (PSS {m['idle_pss_bytes']:.0f}), "
              f"after RSS {m['after_rss_bytes']:.0f} MiB (PSS {m['after_pss_bytes']:.0f})")
    log(f"wrote {a.out / 'ab.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
