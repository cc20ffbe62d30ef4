"""Command line: one load run against an endpoint, result as JSON on stdout.

    cd benchmarks && ../.venv/bin/python -m loadrun get --port 9000 --access-key K --secret-key S \\
        --bucket b --size 4096 --keys 1000 --connections 16 --processes 2 --duration 10
    ../.venv/bin/python -m loadrun selftest      # our SigV4 against botocore's
"""

from __future__ import annotations

import argparse
import json
import sys

from . import runner, sigv4


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="loadrun", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", choices=[*runner.WORKLOADS, "selftest"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--access-key", default="")
    ap.add_argument("--secret-key", default="")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--bucket", default="bench")
    ap.add_argument("--prefix", default="obj")
    ap.add_argument("--size", type=int, default=4096, help="object size in bytes")
    ap.add_argument("--keys", type=int, default=0, help="key space; 0 = a new key per PUT")
    ap.add_argument("--connections", type=int, default=16, help="per process")
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--ops", type=int, default=None, help=f"total operations (cap {runner.OPS_HARD_MAX})")
    ap.add_argument("--duration", type=float, default=None,
                    help=f"seconds (default {runner.DURATION_DEFAULT_S}, cap {runner.DURATION_HARD_MAX_S})")
    ap.add_argument("--checksums", action="store_true", help="PUT with Content-MD5 + x-amz-checksum-crc32c")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    if a.workload == "selftest":
        sigv4.selftest()
        print("SigV4: identical to botocore")
        return 0
    target = runner.Target(a.host, a.port, a.access_key, a.secret_key, a.region)
    spec = runner.Spec(a.workload, target, a.bucket, a.prefix, a.size, a.keys, a.connections, a.processes,
                       a.ops, a.duration, a.checksums, a.seed)
    res = runner.run(spec)
    json.dump(res.to_dict(), sys.stdout, indent=2)
    print()
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
