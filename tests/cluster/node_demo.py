"""Run only cluster membership for one node, configured like the server (RS3GW_CLUSTER_* etc.).

    RS3GW_STORAGE_ROOT=/tmp/n1 RS3GW_CLUSTER_PORT=9101 RS3GW_CLUSTER_SEED_NODES=127.0.0.1:9101 \
        python tests/cluster/node_demo.py

Standard output is one JSON object per line, flushed: ``{"event": "listening", ...}`` once, then
``{"event": "change", "node_id", "state", "suspect", "incarnation", "removed"}`` for each change this
node sees (itself included), and ``{"event": "left"}`` after a graceful leave. SIGTERM or SIGINT:
graceful leave, exit 0. Logs go to standard error. Tests drive real processes with it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

import uvloop

from rs3gw.cluster.config import load_cluster_config
from rs3gw.cluster.membership import MemberEvent, Membership
from rs3gw.config import ConfigError


def _line(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _event_line(ev: MemberEvent) -> None:
    m = ev.member
    _line({"event": "change", "node_id": m.node_id, "address": f"{m.address[0]}:{m.address[1]}",
           "state": m.state.value, "suspect": m.suspect, "incarnation": m.incarnation,
           "removed": ev.removed})


async def _run() -> int:
    cfg = load_cluster_config()
    membership = Membership(cfg)
    membership.on_change(_event_line)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await membership.start()
    _line({"event": "listening", "node_id": cfg.node_id, "pid": os.getpid(),
           "address": f"{membership.local.address[0]}:{membership.local.address[1]}"})
    await stop.wait()
    await membership.leave()
    _line({"event": "left", "node_id": cfg.node_id})
    return 0


def main() -> int:
    logging.basicConfig(level=os.environ.get("RS3GW_LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return uvloop.run(_run())
    except ConfigError as e:
        print(f"node_demo: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
