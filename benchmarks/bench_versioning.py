"""What versioning costs: the same load against an unversioned and a versioned bucket of one
rs3gw (defaults: durable, two workers), alternating rounds in one session, reported as versioned /
unversioned with the server CPU per operation; then ListObjectVersions page times as one bucket
grows from 1,000 to 100,000 versions (1,000 keys, 1 then 10 then 100 versions each).

    .venv/bin/python benchmarks/bench_versioning.py            # make bench-versioning
    .venv/bin/python benchmarks/bench_versioning.py --rounds 5 --duration 8

Writes benchmarks/results/versioning.json (or --out). In the versioned bucket the 64 MiB PUTs
overwrite two keys, so each makes a version; the noncurrent ones are deleted after each round
(outside the timed runs) to keep the disk from filling.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ab import medians
from e2e import ACCESS_KEY, RESULTS, SECRET_KEY, SEED, _load, log, machine
from loadrun import s3ops, servers
from loadrun.runner import DURATION_HARD_MAX_S, Spec, Target

MIB = 1 << 20
SCENARIOS = (("put_4kib", "ops_per_s"), ("get_4kib", "ops_per_s"), ("put_64mib", "mb_per_s"),
             ("get_64mib", "mb_per_s"))
PLAIN, VERSIONED = "bench-plain", "bench-versioned"
LIST_KEYS = 1000
LIST_STEPS = (1, 10, 100)          # versions per key at each measurement
_NEXT_KEY = re.compile(rb"<NextKeyMarker>([^<]*)</NextKeyMarker>")
_NEXT_VID = re.compile(rb"<NextVersionIdMarker>([^<]*)</NextVersionIdMarker>")
_VID = re.compile(rb"<Version><Key>([^<]*)</Key><VersionId>([^<]*)</VersionId><IsLatest>false")
_ENTRY = re.compile(rb"<(?:Version|DeleteMarker)>")

VERSIONING_ON = (b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                 b"<Status>Enabled</Status></VersioningConfiguration>")


def _enable(t: Target, bucket: str) -> None:
    resp = s3ops.run_sync(s3ops.request(t, "PUT", f"/{bucket}", {"versioning": ""}, VERSIONING_ON))
    if resp.status != 200:
        raise RuntimeError(f"PutBucketVersioning: HTTP {resp.status} {resp.body[:300]!r}")


def _prune(t: Target, bucket: str, prefix: str) -> int:
    """Delete every noncurrent version under ``prefix`` (between timed runs)."""
    gone = 0
    while True:
        resp = s3ops.run_sync(s3ops.request(t, "GET", f"/{bucket}", {"versions": "",
                                                                     "prefix": prefix}))
        old = _VID.findall(resp.body)
        if not old:
            return gone
        for key, vid in old:
            s3ops.run_sync(s3ops.request(t, "DELETE", f"/{bucket}/{key.decode()}",
                                         {"versionId": vid.decode()}))
            gone += 1


def one_round(t: Target, pid: int, bucket: str, d: float, rnd: int) -> dict[str, Any]:
    small = {"size_bytes": 4096, "connections": 8, "processes": 2, "seed": SEED}
    big = {"size_bytes": 64 * MIB, "keys": 2, "connections": 2, "processes": 1, "seed": SEED}
    tag = "versioned" if bucket == VERSIONED else "plain"
    f: dict[str, Any] = {}
    f["put_4kib"] = _load(f"{tag} PUT 4 KiB", Spec("put", t, bucket, f"put{rnd}", duration_s=d,
                                                   **small), pid)
    _load(f"{tag} populate", Spec("put", t, bucket, "obj", 4096, 1000, 16, 2, ops=1000,
                                  duration_s=DURATION_HARD_MAX_S, seed=SEED))
    f["get_4kib"] = _load(f"{tag} GET 4 KiB", Spec("get", t, bucket, "obj", keys=1000, duration_s=d,
                                                   **small), pid)
    f["put_64mib"] = _load(f"{tag} PUT 64 MiB", Spec("put", t, bucket, "big", duration_s=d,
                                                     checksums=True, **big), pid)
    f["get_64mib"] = _load(f"{tag} GET 64 MiB", Spec("get", t, bucket, "big", duration_s=d, **big),
                           pid)
    if bucket == VERSIONED:
        log(f"pruned {_prune(t, bucket, 'big/')} noncurrent 64 MiB versions")
    return f


def version_walk(t: Target, bucket: str, prefix: str) -> dict[str, Any]:
    """Every page of ListObjectVersions (1,000 entries each) over ``prefix``, timed one by one
    on one connection."""
    async def walk() -> dict[str, Any]:
        conn = await s3ops.connect(t.host, t.port)
        times, entries = [], 0
        query = {"versions": "", "prefix": prefix, "max-keys": "1000"}
        try:
            while True:
                t0 = time.perf_counter()
                resp = await s3ops.request(t, "GET", f"/{bucket}", dict(query), conn=conn)
                times.append((time.perf_counter() - t0) * 1000)
                if resp.status != 200:
                    raise RuntimeError(f"ListObjectVersions: HTTP {resp.status}")
                entries += len(_ENTRY.findall(resp.body))
                key, vid = _NEXT_KEY.search(resp.body), _NEXT_VID.search(resp.body)
                if key is None:
                    break
                query["key-marker"] = key.group(1).decode()
                if vid is not None:
                    query["version-id-marker"] = vid.group(1).decode()
        finally:
            conn.close()
        s = sorted(times)
        return {"entries": entries, "pages": len(times), "first_page_ms": times[0],
                "p50_page_ms": statistics.median(s), "max_page_ms": s[-1],
                "last_page_ms": times[-1]}
    out: dict[str, Any] = s3ops.run_sync(walk())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    work = servers.real_disk_dir(".bench-versioning-",
                                 [tempfile.gettempdir(), str(Path(__file__).resolve().parents[1])])
    runs: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    walks: list[dict[str, Any]] = []
    try:
        with servers.Rs3gw(work, ACCESS_KEY, SECRET_KEY, fsync=True) as gw:
            t = Target("127.0.0.1", gw.port, ACCESS_KEY, SECRET_KEY)
            for b in (PLAIN, VERSIONED):
                s3ops.run_sync(s3ops.create_bucket(t, b))
            _enable(t, VERSIONED)
            for rnd in range(a.rounds):
                order = (PLAIN, VERSIONED) if rnd % 2 == 0 else (VERSIONED, PLAIN)
                for b in order:
                    runs["A" if b == PLAIN else "B"].append(one_round(t, gw.pid, b, a.duration, rnd))
            done = 0
            for per_key in LIST_STEPS:
                n = per_key * LIST_KEYS - done
                _load(f"versions to {per_key * LIST_KEYS}",
                      Spec("put", t, VERSIONED, "lv", 64, LIST_KEYS, 16, 2, ops=n,
                           duration_s=DURATION_HARD_MAX_S, seed=SEED))
                done += n
                w = version_walk(t, VERSIONED, "lv/")
                w["versions"] = done
                walks.append(w)
                log(f"ListObjectVersions over {done} versions: {w['pages']} pages, first "
                    f"{w['first_page_ms']:.1f} ms, median {w['p50_page_ms']:.1f} ms, "
                    f"last {w['last_page_ms']:.1f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = medians(runs, SCENARIOS)
    out = {"machine": machine(), "settings": vars(a) | {"out": str(a.out)},
           "A": "unversioned bucket", "B": "versioned bucket", "medians": table, "runs": runs,
           "list_versions": walks, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "versioning.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"versioned / unversioned bucket, one server; medians of {a.rounds} rounds")
    print("| scenario | unversioned | versioned | ratio | server CPU us/op | p99 ms |")
    print("|---|---|---|---|---|---|")
    for scen, _ in SCENARIOS:
        r = table[scen]
        print(f"| {scen} | {r['A']:.0f} {r['unit']} | {r['B']:.0f} | {r['ratio']:.2f} | "
              f"{r['cpu_us_per_op_A']:.0f} -> {r['cpu_us_per_op_B']:.0f} | "
              f"{r['p99_ms_A']:.1f} -> {r['p99_ms_B']:.1f} |")
    print("| versions | pages | first page ms | median page ms | last page ms |")
    print("|---|---|---|---|---|")
    for w in walks:
        print(f"| {w['versions']} | {w['pages']} | {w['first_page_ms']:.1f} | "
              f"{w['p50_page_ms']:.1f} | {w['last_page_ms']:.1f} |")
    log(f"wrote {a.out / 'versioning.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
