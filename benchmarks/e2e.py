"""End-to-end load runs: rs3gw (durable, RS3GW_FSYNC=true, temp storage root on the real disk) against
nginx serving the same bytes as static files, moto in server mode, and two cores' hashlib MD5, all
measured in the same run. Every server is started and stopped here; every load run is bounded.

    .venv/bin/python benchmarks/e2e.py                 # the full run (what `make bench` does)
    .venv/bin/python benchmarks/e2e.py --duration 2 --list-keys 5000 --rss-budget-gib 2   # a quick look

Writes benchmarks/results/e2e.json and e2e.png and prints a markdown table of the ratios.
Targets below are what each ratio is compared against; figures only, nothing here fails on time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadrun import payload, runner, s3ops, servers
from loadrun.runner import Spec, Target

MIB = 1 << 20
ACCESS_KEY = "AKBENCHE2E0000000001"
SECRET_KEY = "bench-e2e-secret"
BUCKET = "bench"
SEED = 7
RESULTS = Path(__file__).resolve().parent / "results"
RSS_SAMPLE_S = 0.05

# ratio name -> (target, what the ratio is). Every ratio is "higher is better".
# The targets of the "End-to-end speed" issue, as ratios (higher is better everywhere).
TARGETS: dict[str, tuple[float, str]] = {
    "get_64mib_vs_nginx": (0.9, "GET 64 MiB x2 streams, MB/s rs3gw / nginx"),
    "put_64mib_vs_moto": (3.0, "PUT 64 MiB MD5+CRC32C x2, MB/s rs3gw / moto"),
    "put_64mib_vs_md5_2cores": (0.8, "PUT 64 MiB MD5+CRC32C x2, MB/s rs3gw / hashlib MD5 on 2 processes"),
    "put_4kib_vs_moto": (10.0, "PUT 4 KiB x16 conns durable, ops/s rs3gw / moto"),
    "get_4kib_vs_nginx": (0.5, "GET 4 KiB x16 conns, ops/s rs3gw / nginx"),
    "get_4kib_p99_vs_nginx": (0.5, "GET 4 KiB x16 conns, p99 nginx / p99 rs3gw (p99 <= 2x nginx)"),
    "list_vs_moto": (20.0, "ListObjectsV2 full walk, keys/s rs3gw / moto"),
    "list_first_over_last_page": (0.8, "rs3gw ListObjectsV2 first page ms / last page ms (flat cost)"),
    "rss_headroom": (1.0, "300 MiB / peak rs3gw RSS with 32 clients on 1 GiB objects"),
}
RSS_TARGET_BYTES = 300 * MIB


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def _md5_loop(seconds: float) -> float:
    buf = os.urandom(64 * MIB)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        hashlib.md5(buf).digest()
        n += 1
    return n * len(buf) / (time.perf_counter() - t0)


def md5_two_cores(seconds: float) -> float:
    """hashlib MD5 throughput of 2 processes at once, bytes/s in total."""
    with mp.get_context("spawn").Pool(2) as pool:
        return sum(pool.map(_md5_loop, [seconds, seconds]))


def _load(name: str, spec: Spec, server_pid: int | None = None) -> dict[str, Any]:
    cpu0 = servers.process_cpu_s(server_pid) if server_pid else 0.0
    res = runner.run(spec).to_dict()
    if server_pid:
        res["server_cpu_s"] = servers.process_cpu_s(server_pid) - cpu0
        res["server_cpu_us_per_op"] = res["server_cpu_s"] / res["ops"] * 1e6 if res["ops"] else 0.0
    log(f"{name}: {res['ops']} ops in {res['seconds']:.1f}s, {res['ops_per_s']:.0f} ops/s, "
        f"{res['mb_per_s']:.0f} MB/s, p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms, "
        f"errors {res['errors']} bad {res['bad_content']}")
    for s in res["error_samples"]:
        log(f"  error: {s}")
    return res


def write_static(root: Path, prefix: str, size: int, keys: int) -> None:
    d = root / BUCKET / prefix
    d.mkdir(parents=True, exist_ok=True)
    for i in range(keys):
        (d / payload.key_name(prefix, i).split("/", 1)[1]).write_bytes(payload.object_bytes(SEED, size, i))


def boto3_ceiling(port: int, keys: int, seconds: float, threads: int) -> dict[str, float]:
    """boto3 get_object of 4 KiB static files from nginx, `threads` threads: the ordinary client's ceiling."""
    import boto3
    from botocore.config import Config

    cli = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=ACCESS_KEY,
                       aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                       config=Config(max_pool_connections=threads, s3={"addressing_style": "path"}))
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def worker(t: int) -> None:
        i = t
        while time.monotonic() < stop:
            cli.get_object(Bucket=BUCKET, Key=payload.key_name("obj", i % keys))["Body"].read()
            counts[t] += 1
            i += threads

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(worker, range(threads)))
    dt = time.perf_counter() - t0
    ops = sum(counts)
    cpu = time.process_time() - cpu0
    return {"ops": ops, "ops_per_s": ops / dt, "client_cpu_us_per_op": cpu / ops * 1e6 if ops else 0.0}


def _stream_child(target: Target, uploaders: int, downloaders: int, obj: int, budget: int, key: str,
                  out: Any) -> None:
    out.put(s3ops.run_sync(s3ops.stream_mix(target, BUCKET, uploaders, downloaders, obj, budget, key)))


def rss_under_streams(gw: servers.Rs3gw, target: Target, clients: int, obj_bytes: int,
                      budget_bytes: int) -> dict[str, Any]:
    key = "rss/read-1gib"
    log(f"RSS: uploading the {obj_bytes >> 20} MiB object the downloaders read")
    s3ops.run_sync(s3ops.upload_stream(target, f"/{BUCKET}/{key}", obj_bytes, obj_bytes, [0]))
    samples: list[int] = []
    idle = servers.rss_bytes(gw.pid)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_stream_child, args=(target, clients // 2, clients - clients // 2, obj_bytes,
                                                   budget_bytes, key, out), daemon=True)
    done = threading.Event()

    pss: list[int] = []

    def sample() -> None:
        while not done.is_set():
            samples.append(servers.rss_bytes(gw.pid))
            pss.append(servers.pss_bytes(gw.pid))
            time.sleep(RSS_SAMPLE_S)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    proc.start()
    try:
        moved = out.get(timeout=runner.DURATION_HARD_MAX_S)
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
        done.set()
        th.join()
    time.sleep(1.0)
    after = servers.rss_bytes(gw.pid)
    res = {"clients": clients, "object_bytes": obj_bytes, "budget_bytes": budget_bytes, **moved,
           "rss_idle_bytes": idle, "rss_peak_bytes": max(samples, default=0), "rss_after_bytes": after,
           "pss_peak_bytes": max(pss, default=0), "samples": len(samples)}
    log(f"RSS (all processes): idle {idle / MIB:.0f} MiB, peak {res['rss_peak_bytes'] / MIB:.0f} MiB "
        f"(PSS {res['pss_peak_bytes'] / MIB:.0f}), after {after / MIB:.0f} MiB"
        f" ({moved['uploaded_bytes'] / MIB:.0f} MiB up, {moved['downloaded_bytes'] / MIB:.0f} MiB down"
        f" in {moved['seconds']:.1f}s)")
    return res


def list_scenario(target: Target, keys: int, passes: int, pid: int | None) -> dict[str, Any]:
    walks = []
    for _ in range(passes):
        walks.append(s3ops.run_sync(s3ops.list_pass(target, BUCKET, "list/", 1000, keys)).summary())
    best = min(walks, key=lambda w: w["seconds"])
    log(f"LIST {keys} keys: best walk {best['seconds']:.2f}s ({best['keys_per_s']:.0f} keys/s), first page "
        f"{walks[0]['first_page_ms']:.1f} ms, last page {best['last_page_ms']:.1f} ms")
    return {"keys": keys, "walks": walks, "best": best}


def populate(target: Target, prefix: str, size: int, keys: int, pid: int | None) -> dict[str, Any]:
    return _load(f"populate {prefix} x{keys}", Spec("put", target, BUCKET, prefix, size, keys, 16, 2,
                                                   ops=keys, duration_s=runner.DURATION_HARD_MAX_S, seed=SEED), pid)


def ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per timed load run")
    ap.add_argument("--list-keys", type=int, default=100_000)
    ap.add_argument("--moto-list-keys", type=int, default=10_000,
                    help="moto's bucket for LIST (populating moto is slow)")
    ap.add_argument("--rss-clients", type=int, default=32)
    ap.add_argument("--rss-object-mib", type=int, default=1024)
    ap.add_argument("--rss-budget-gib", type=float, default=8.0, help="total bytes the RSS clients move")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    d = a.duration
    t_begin = time.monotonic()
    work = servers.real_disk_dir(".bench-e2e-", [tempfile.gettempdir(), str(Path(__file__).resolve().parents[1])])
    log(f"work directory {work} (removed at the end)")
    figures: dict[str, Any] = {"machine": machine(), "settings": vars(a) | {"out": str(a.out)}}
    try:
        static = work / "static"
        write_static(static, "big", 64 * MIB, 2)
        write_static(static, "obj", 4096, 1000)
        log("MD5 baseline: hashlib on 2 processes")
        figures["md5_2cores_mb_per_s"] = md5_two_cores(min(d, 4.0)) / 1e6
        log(f"MD5 2 cores: {figures['md5_2cores_mb_per_s']:.0f} MB/s")
        with contextlib.ExitStack() as stack:
            gw = stack.enter_context(servers.Rs3gw(work, ACCESS_KEY, SECRET_KEY, fsync=True))
            ngx = stack.enter_context(servers.Nginx(work, static))
            moto = stack.enter_context(servers.Moto(work))
            figures["rs3gw_start_line"] = gw.start_line
            rs = Target("127.0.0.1", gw.port, ACCESS_KEY, SECRET_KEY)
            mo = Target("127.0.0.1", moto.port, ACCESS_KEY, SECRET_KEY)
            ng = Target("127.0.0.1", ngx.port)
            for t in (rs, mo):
                s3ops.run_sync(s3ops.create_bucket(t, BUCKET))
            figures.update(run_scenarios(a, d, gw, moto, rs, mo, ng))
        figures["ratios"] = compute_ratios(figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures["total_seconds"] = time.monotonic() - t_begin
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "e2e.json").write_text(json.dumps(figures, indent=2) + "\n")
    draw(figures["ratios"], figures["machine"], a.out / "e2e.png")
    print(markdown(figures))
    log(f"wrote {a.out / 'e2e.json'} and {a.out / 'e2e.png'} in {figures['total_seconds']:.0f}s")
    return 0


def run_scenarios(a: argparse.Namespace, d: float, gw: servers.Rs3gw, moto: servers.Moto, rs: Target,
                  mo: Target, ng: Target) -> dict[str, Any]:
    f: dict[str, Any] = {}
    big = {"size_bytes": 64 * MIB, "keys": 2, "connections": 2, "processes": 1, "seed": SEED}
    small = {"size_bytes": 4096, "connections": 8, "processes": 2, "seed": SEED}

    log("client ceiling: loadrun and boto3 against nginx, 4 KiB static GET, 16 connections")
    f["ceiling_loadrun_1proc"] = _load("loadrun 1x16 -> nginx 4 KiB", Spec(
        "static_get", ng, BUCKET, "obj", keys=1000, **{**small, "connections": 16, "processes": 1},
        duration_s=min(d, 4)))
    f["ceiling_loadrun_2proc"] = _load("loadrun 2x8 -> nginx 4 KiB", Spec(
        "static_get", ng, BUCKET, "obj", keys=1000, **small, duration_s=min(d, 4)))
    f["ceiling_boto3_16threads"] = boto3_ceiling(ng.port, 1000, min(d, 4), 16)
    log(f"boto3 16 threads -> nginx 4 KiB: {f['ceiling_boto3_16threads']['ops_per_s']:.0f} ops/s, "
        f"{f['ceiling_boto3_16threads']['client_cpu_us_per_op']:.0f} us CPU/op")

    log("GET 64 MiB x2 streams")
    populate_big = Spec("put", rs, BUCKET, "big", ops=2, checksums=True, **big)
    _load("rs3gw PUT big (set-up)", populate_big)
    f["get_64mib_rs3gw"] = _load("rs3gw GET 64 MiB x2", Spec("get", rs, BUCKET, "big", duration_s=d, **big), gw.pid)
    f["get_64mib_nginx"] = _load("nginx GET 64 MiB x2", Spec("static_get", ng, BUCKET, "big", duration_s=d, **big))

    log("PUT 64 MiB with Content-MD5 + x-amz-checksum-crc32c x2 streams")
    f["put_64mib_rs3gw"] = _load("rs3gw PUT 64 MiB x2", Spec("put", rs, BUCKET, "put64", duration_s=d,
                                                             checksums=True, **big), gw.pid)
    f["put_64mib_moto"] = _load("moto PUT 64 MiB x2", Spec("put", mo, BUCKET, "put64", duration_s=d,
                                                           checksums=True, **big), moto.pid)

    log("4 KiB PUT / GET, 16 connections (2 client processes x 8)")
    f["put_4kib_rs3gw"] = _load("rs3gw PUT 4 KiB", Spec("put", rs, BUCKET, "put4k", duration_s=d, **small), gw.pid)
    f["put_4kib_moto"] = _load("moto PUT 4 KiB", Spec("put", mo, BUCKET, "put4k", duration_s=d, **small), moto.pid)
    populate(rs, "obj", 4096, 1000, None)
    f["get_4kib_rs3gw"] = _load("rs3gw GET 4 KiB", Spec("get", rs, BUCKET, "obj", keys=1000, duration_s=d,
                                                        **small), gw.pid)
    f["get_4kib_nginx"] = _load("nginx GET 4 KiB", Spec("static_get", ng, BUCKET, "obj", keys=1000,
                                                        duration_s=d, **small))

    log(f"ListObjectsV2, pages of 1000: rs3gw over {a.list_keys} keys, moto over {a.moto_list_keys}")
    f["list_populate_rs3gw"] = populate(rs, "list", 0, a.list_keys, gw.pid)
    f["list_rs3gw"] = list_scenario(rs, a.list_keys, 3, gw.pid)
    f["list_populate_moto"] = populate(mo, "list", 0, a.moto_list_keys, moto.pid)
    f["list_moto"] = list_scenario(mo, a.moto_list_keys, 2, moto.pid)

    f["rss"] = rss_under_streams(gw, rs, a.rss_clients, a.rss_object_mib * MIB, int(a.rss_budget_gib * (1 << 30)))
    with contextlib.suppress(OSError):
        f["rs3gw_log_tail"] = gw.log.read_text(errors="replace").splitlines()[-20:]
    return f


def compute_ratios(f: dict[str, Any]) -> dict[str, dict[str, Any]]:
    m = {
        "get_64mib_vs_nginx": ratio(f["get_64mib_rs3gw"]["mb_per_s"], f["get_64mib_nginx"]["mb_per_s"]),
        "put_64mib_vs_moto": ratio(f["put_64mib_rs3gw"]["mb_per_s"], f["put_64mib_moto"]["mb_per_s"]),
        "put_64mib_vs_md5_2cores": ratio(f["put_64mib_rs3gw"]["mb_per_s"], f["md5_2cores_mb_per_s"]),
        "put_4kib_vs_moto": ratio(f["put_4kib_rs3gw"]["ops_per_s"], f["put_4kib_moto"]["ops_per_s"]),
        "get_4kib_vs_nginx": ratio(f["get_4kib_rs3gw"]["ops_per_s"], f["get_4kib_nginx"]["ops_per_s"]),
        "get_4kib_p99_vs_nginx": ratio(f["get_4kib_nginx"]["p99_ms"], f["get_4kib_rs3gw"]["p99_ms"]),
        "list_vs_moto": ratio(f["list_rs3gw"]["best"]["keys_per_s"], f["list_moto"]["best"]["keys_per_s"]),
        "list_first_over_last_page": ratio(f["list_rs3gw"]["best"]["first_page_ms"],
                                           f["list_rs3gw"]["best"]["last_page_ms"]),
        "rss_headroom": ratio(RSS_TARGET_BYTES, f["rss"]["rss_peak_bytes"]),
    }
    return {k: {"ratio": v, "target": TARGETS[k][0], "meets": v >= TARGETS[k][0], "what": TARGETS[k][1]}
            for k, v in m.items()}


def markdown(f: dict[str, Any]) -> str:
    def fig(r: dict[str, Any]) -> str:
        if r.get("size_bytes", 0) >= MIB:
            return f"{r['mb_per_s']:.0f} MB/s"
        return f"{r['ops_per_s']:.0f} ops/s, p99 {r['p99_ms']:.1f} ms"

    rows = [
        ("GET 64 MiB, 2 streams", fig(f["get_64mib_rs3gw"]), "nginx " + fig(f["get_64mib_nginx"]),
         "get_64mib_vs_nginx"),
        ("PUT 64 MiB + MD5 + CRC32C, 2 streams", fig(f["put_64mib_rs3gw"]), "moto " + fig(f["put_64mib_moto"]),
         "put_64mib_vs_moto"),
        ("", "", f"MD5 on 2 cores {f['md5_2cores_mb_per_s']:.0f} MB/s", "put_64mib_vs_md5_2cores"),
        ("PUT 4 KiB, 16 conns", fig(f["put_4kib_rs3gw"]), "moto " + fig(f["put_4kib_moto"]), "put_4kib_vs_moto"),
        ("GET 4 KiB, 16 conns", fig(f["get_4kib_rs3gw"]), "nginx " + fig(f["get_4kib_nginx"]),
         "get_4kib_vs_nginx"),
        ("", "", "(p99)", "get_4kib_p99_vs_nginx"),
        (f"ListObjectsV2 {f['list_rs3gw']['keys']:,} keys / 1,000",
         f"{f['list_rs3gw']['best']['keys_per_s']:,.0f} keys/s",
         f"moto ({f['list_moto']['keys']:,} keys) {f['list_moto']['best']['keys_per_s']:,.0f} keys/s",
         "list_vs_moto"),
        ("", (f"first page {f['list_rs3gw']['best']['first_page_ms']:.1f} ms, "
             f"last {f['list_rs3gw']['best']['last_page_ms']:.1f} ms"), "", "list_first_over_last_page"),
        (f"RSS, {f['rss']['clients']} clients on {f['rss']['object_bytes'] >> 20} MiB objects",
         f"peak {f['rss']['rss_peak_bytes'] / MIB:.0f} MiB (idle {f['rss']['rss_idle_bytes'] / MIB:.0f})",
         "300 MiB", "rss_headroom"),
    ]
    out = ["| scenario | rs3gw | baseline | ratio | target |", "|---|---|---|---|---|"]
    for name, ours, base, key in rows:
        r = f["ratios"][key]
        out.append(f"| {name} | {ours} | {base} | {r['ratio']:.2f} | ≥ {r['target']:g} |")
    return "\n".join(out)


def draw(ratios: dict[str, dict[str, Any]], mach: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(ratios)
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(12, 5.5))
    w = 0.38
    meas = [max(ratios[n]["ratio"], 1e-3) for n in names]
    targ = [ratios[n]["target"] for n in names]
    colors = ["tab:green" if ratios[n]["meets"] else "tab:red" for n in names]
    ax.bar([i - w / 2 for i in x], meas, w, label="measured", color=colors)
    ax.bar([i + w / 2 for i in x], targ, w, label="target", color="lightgray", edgecolor="gray")
    for i, v in zip(x, meas, strict=True):
        ax.text(i - w / 2, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set_xticks(list(x))
    ax.set_xticklabels([n.replace("_vs_", "\nvs ").replace("_", " ") for n in names], fontsize=8)
    ax.set_ylabel("ratio (higher is better, log scale; green = meets target)")
    ax.set_title(f"rs3gw end-to-end ratios vs targets ({mach['nproc']} x {mach['cpu_model']}, "
                 f"Linux {mach['kernel']}, {mach['date'][:10]})", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
