"""A/B of a 3-node cluster: the same load through node 0 of a cluster of three rs3gw processes on
this machine, started with settings A and with settings B, alternating in one session (the machine
is shared and noisy). Reported as ratios B / A, with the server CPU per operation summed over the
three nodes (every node's whole process tree) from /proc.

    .venv/bin/python benchmarks/bench_cluster.py --a PYTHONPATH=/tmp/old/src --b PYTHONPATH=src
    .venv/bin/python benchmarks/bench_cluster.py --mode async --factor 2 --rounds 3

Scenarios: PUT 4 KiB and GET 4 KiB (8 connections x 2 client processes), PUT 16 MiB and GET 16 MiB
(2 connections). Writes benchmarks/results/cluster-ab.json (or --out). Client and three nodes
share the machine's cores: the figures compare builds or settings, not what a cluster of real
machines would do.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ab import medians
from e2e import ACCESS_KEY, BUCKET, RESULTS, SECRET_KEY, SEED, _load, log, machine, populate
from loadrun import s3ops, servers
from loadrun.runner import Spec, Target

MIB = 1 << 20
NODES = 3
JOIN_TIMEOUT_S = 60.0
SCENARIOS = (("put_4kib", "ops_per_s"), ("get_4kib", "ops_per_s"), ("put_16mib", "mb_per_s"),
             ("get_16mib", "mb_per_s"))


def _cluster_env(i: int, peer_ports: list[int], mode: str, factor: int) -> dict[str, str]:
    return {"RS3GW_CLUSTER_ENABLED": "true", "RS3GW_CLUSTER_NODE_ID": f"bench-{i}",
            "RS3GW_CLUSTER_PORT": str(peer_ports[i]), "RS3GW_CLUSTER_BIND_ADDR": "127.0.0.1",
            "RS3GW_CLUSTER_ADVERTISE_ADDR": f"127.0.0.1:{peer_ports[i]}",
            "RS3GW_CLUSTER_SEED_NODES": ",".join(f"127.0.0.1:{p}" for p in peer_ports),
            "RS3GW_REPLICATION_MODE": mode, "RS3GW_REPLICATION_FACTOR": str(factor),
            "RS3GW_GOSSIP_INTERVAL": "0.5", "RS3GW_HEARTBEAT_INTERVAL": "1"}


def _active_members(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/cluster/status", timeout=2) as r:
            return int(json.loads(r.read())["members"]["Active"])
    except OSError:
        return 0


def _cpu(nodes: list[servers.Rs3gw]) -> float:
    return sum(servers.process_cpu_s(n.pid) for n in nodes)


def _timed(name: str, spec: Spec, nodes: list[servers.Rs3gw]) -> dict[str, Any]:
    cpu0 = _cpu(nodes)
    res = _load(name, spec)
    res["server_cpu_s"] = _cpu(nodes) - cpu0
    res["server_cpu_us_per_op"] = res["server_cpu_s"] / res["ops"] * 1e6 if res["ops"] else 0.0
    return res


def one_round(work: Path, tag: str, env: dict[str, str], a: argparse.Namespace, rnd: int,
              ) -> dict[str, Any]:
    run_dir = work / f"{tag}-r{rnd}"
    peer_ports = [servers.free_port() for _ in range(NODES)]
    nodes = []
    for i in range(NODES):
        d = run_dir / f"n{i}"
        d.mkdir(parents=True)
        nodes.append(servers.Rs3gw(d, ACCESS_KEY, SECRET_KEY, fsync=True,
                                   env={**_cluster_env(i, peer_ports, a.mode, a.factor), **env}))
    try:
        for n in nodes:
            n.start()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while any(_active_members(n.port) < NODES for n in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not form")
            time.sleep(0.2)
        t = Target("127.0.0.1", nodes[0].port, ACCESS_KEY, SECRET_KEY)
        s3ops.run_sync(s3ops.create_bucket(t, BUCKET))
        small = {"size_bytes": 4096, "connections": 8, "processes": 2, "seed": SEED}
        big = {"size_bytes": 16 * MIB, "keys": 2, "connections": 2, "processes": 1, "seed": SEED}
        d = a.duration
        f: dict[str, Any] = {}
        f["put_4kib"] = _timed(f"{tag} PUT 4 KiB", Spec("put", t, BUCKET, "put4k", duration_s=d,
                                                        **small), nodes)
        populate(t, "obj", 4096, 1000, None)
        f["get_4kib"] = _timed(f"{tag} GET 4 KiB", Spec("get", t, BUCKET, "obj", keys=1000,
                                                        duration_s=d, **small), nodes)
        f["put_16mib"] = _timed(f"{tag} PUT 16 MiB", Spec("put", t, BUCKET, "big", duration_s=d,
                                                          **big), nodes)
        f["get_16mib"] = _timed(f"{tag} GET 16 MiB", Spec("get", t, BUCKET, "big", duration_s=d,
                                                          **big), nodes)
        return f
    finally:
        for n in nodes:
            n.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", action="append", default=[], metavar="VAR=VALUE", help="setting of run A")
    ap.add_argument("--b", action="append", default=[], metavar="VAR=VALUE", help="setting of run B")
    ap.add_argument("--mode", default="quorum", choices=["sync", "quorum", "async"])
    ap.add_argument("--factor", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    envs = {"A": dict(kv.split("=", 1) for kv in a.a), "B": dict(kv.split("=", 1) for kv in a.b)}
    work = servers.real_disk_dir(".bench-cluster-", [tempfile.gettempdir(),
                                                     str(Path(__file__).resolve().parents[1])])
    runs: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    try:
        for rnd in range(a.rounds):
            for tag in ("A", "B") if rnd % 2 == 0 else ("B", "A"):
                runs[tag].append(one_round(work, tag, envs[tag], a, rnd))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = medians(runs, SCENARIOS)
    out = {"machine": machine(), "settings": vars(a) | {"out": str(a.out)}, "env": envs,
           "medians": table, "runs": runs, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "cluster-ab.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"{NODES} nodes, {a.mode}, factor {a.factor}; A = {envs['A']}, B = {envs['B']}; "
          f"medians of {a.rounds} rounds")
    print("| scenario | A | B | B / A | server CPU us/op (3 nodes) A -> B | p99 ms A -> B |")
    print("|---|---|---|---|---|---|")
    for scen, _ in SCENARIOS:
        r = table[scen]
        print(f"| {scen} | {r['A']:.0f} {r['unit']} | {r['B']:.0f} | {r['ratio']:.2f} | "
              f"{r['cpu_us_per_op_A']:.0f} -> {r['cpu_us_per_op_B']:.0f} | "
              f"{r['p99_ms_A']:.1f} -> {r['p99_ms_B']:.1f} |")
    log(f"wrote {a.out / 'cluster-ab.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
