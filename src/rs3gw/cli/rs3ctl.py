"""`rs3ctl`: the operator's view of a cluster node, over the node's /api/cluster/ HTTP API.

    rs3ctl [--endpoint URL] cluster status|nodes|replication [--json]
    rs3ctl [--endpoint URL] cluster leave

The endpoint defaults to $RS3GW_ENDPOINT, else http://127.0.0.1:9000. `leave` is signed (SigV4)
with RS3GW_ACCESS_KEY / RS3GW_SECRET_KEY for RS3GW_REGION (default us-east-1), the root user's
keys; with neither set it is sent unsigned, which only an open gateway accepts.
Exit status: 0 done, 1 the node refused, failed or could not be reached, 2 usage error.
Standard library only (plus rs3gw's own SigV4 functions), so it runs wherever rs3gw is installed.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ..cluster.view import NODE_STATES
from .signer import sign_headers

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"
API_PREFIX = "/api/cluster/"
TIMEOUT_S = 10.0
# An error body is shown up to this size; anything longer is not a message meant for people.
ERROR_BODY_SHOWN_MAX = 500
# Bigger than any status document a node produces; a larger answer is refused, not buffered.
RESPONSE_BYTES_MAX = 64 << 20

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A bad command line or environment: exit status 2."""


class NodeError(Exception):
    """The node could not be reached, refused, or answered something unreadable: exit status 1."""


# --- the HTTP side ----------------------------------------------------------------------------------

class Endpoint:
    def __init__(self, url: str, timeout_s: float, cacert: str | None) -> None:
        parts = urlsplit(url)
        if (parts.scheme not in ("http", "https") or not parts.hostname or parts.username
                or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment):
            raise UsageError(f"--endpoint must look like http(s)://HOST[:PORT], not {url!r}")
        try:
            self.port = parts.port
        except ValueError as e:
            raise UsageError(f"--endpoint {url!r}: {e}") from None
        self.url = f"{parts.scheme}://{parts.netloc}"
        self.scheme = parts.scheme
        self.hostname = parts.hostname
        # Sent and signed exactly as written in the URL (the server checks the Host it receives).
        self.host_header = parts.netloc
        self.timeout_s = timeout_s
        self.cacert = cacert

    def _connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            context = ssl.create_default_context(cafile=self.cacert)
            return http.client.HTTPSConnection(self.hostname, self.port, timeout=self.timeout_s,
                                               context=context)
        return http.client.HTTPConnection(self.hostname, self.port, timeout=self.timeout_s)

    def call(self, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
        """Send one request and return its JSON answer; NodeError for anything but a 2xx JSON."""
        conn = self._connection()
        try:
            conn.request(method, path, headers={"host": self.host_header, "accept": "application/json",
                                                **(headers or {})})
            resp = conn.getresponse()
            body = resp.read(RESPONSE_BYTES_MAX + 1)
        except (OSError, http.client.HTTPException) as e:
            raise NodeError(f"cannot reach {self.url}: {e}") from None
        finally:
            conn.close()
        if len(body) > RESPONSE_BYTES_MAX:
            raise NodeError(f"{self.url}{path} answered more than {RESPONSE_BYTES_MAX} bytes")
        if not 200 <= resp.status < 300:
            raise NodeError(f"{self.url}{path} answered {resp.status} {resp.reason}: "
                            f"{_error_message(body)}")
        try:
            return json.loads(body)
        except ValueError:
            raise NodeError(f"{self.url}{path} answered {resp.status} with a body that is not "
                            "JSON") from None


def _error_message(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        code = doc.get("code")
        return f"{doc['error']} ({code})" if code else doc["error"]
    text = body.decode("utf-8", "replace").strip()
    return text[:ERROR_BODY_SHOWN_MAX] or "(empty body)"


def _leave_headers(path: str, host: str) -> dict[str, str]:
    access_key = os.environ.get("RS3GW_ACCESS_KEY", "")
    secret_key = os.environ.get("RS3GW_SECRET_KEY", "")
    if not access_key and not secret_key:
        return {}       # an open gateway: nothing to sign with, nothing asked for
    if not access_key or not secret_key:
        raise UsageError("set both RS3GW_ACCESS_KEY and RS3GW_SECRET_KEY (the root user's keys), "
                         "or neither for an open gateway")
    region = os.environ.get("RS3GW_REGION") or "us-east-1"
    return sign_headers("POST", path, host, access_key, secret_key, region)


# --- human output -----------------------------------------------------------------------------------

def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell, two spaces apart; columns in `right` right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell.rjust(w) if i in right else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _pairs(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k.ljust(width)}  {v}".rstrip() for k, v in pairs)


def duration(seconds: float) -> str:
    """2.1s, 5m07s, 3h04m, 2d05h: two units at most, enough to read at a glance."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(nbytes) < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def format_status(doc: dict[str, Any]) -> str:
    members = doc["members"]
    counts = ", ".join(f"{state} {members.get(state, 0)}" for state in NODE_STATES)
    backends = ", ".join(f"{k}={v}" for k, v in sorted(doc["backends"].items()))
    return _pairs([
        ("Node ID", _text(doc["node_id"])),
        ("State", _text(doc["state"])),
        ("Cluster address", _text(doc["cluster_address"])),
        ("Replication", f"{doc['replication_mode']}, factor {doc['replication_factor']}"),
        ("Conflict resolution", _text(doc["conflict_resolution"])),
        ("Members", f"{members['total']} ({counts})"),
        ("Healthy", "yes" if doc["healthy"] else "NO"),
        ("Backends", backends or "-"),
        ("Version", _text(doc["version"])),
        ("Uptime", duration(float(doc["uptime_s"]))),
        ("Messages refused", ", ".join(f"{k} {v}" for k, v in
                                       sorted(doc.get("messages_rejected", {}).items()) if v)
         or "none"),
    ])


def format_nodes(doc: dict[str, Any], now: float) -> str:
    rows = []
    for node in doc["nodes"]:
        seen = node.get("last_seen")
        rows.append([
            node["node_id"] + (" (local)" if node.get("local") else ""),
            _text(node["state"]),
            _text(node["address"]),
            "-" if seen is None else duration(now - float(seen)) + " ago",
            str(node["incarnation"]),
        ])
    if not rows:
        return "no members known"
    return _table(["NODE ID", "STATE", "ADDRESS", "LAST SEEN", "INCARNATION"], rows, right=[4])


def format_replication(doc: dict[str, Any]) -> str:
    lag = doc["lag_seconds"]
    totals = _pairs([
        ("Events replicated", str(doc["events_replicated"])),
        ("Events pending", str(doc["events_pending"])),
        ("Events failed", str(doc["events_failed"])),
        ("Bytes replicated", size(doc["bytes_replicated"])),
        ("Lag", f"avg {lag['avg']:.3f}s, p95 {lag['p95']:.3f}s, max {lag['max']:.3f}s"),
        ("Bandwidth", size(doc["bandwidth_bytes_per_sec"]) + "/s"),
    ])
    rows = []
    for node_id, dest in sorted(doc["destinations"].items()):
        rows.append([
            node_id,
            str(dest["pending"]),
            duration(float(dest["oldest_age_s"])) if dest["pending"] else "-",
            str(dest["replicated"]),
            str(dest["failed"]),
            _text(dest.get("last_error")),
        ])
    if not rows:
        return totals + "\n\nno replication destinations"
    table = _table(["DESTINATION", "PENDING", "OLDEST", "REPLICATED", "FAILED", "LAST ERROR"], rows,
                   right=[1, 2, 3, 4])
    return totals + "\n\n" + table


# --- command line -----------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rs3ctl", description="Inspect and operate an rs3gw node.")
    parser.add_argument("--endpoint", default=os.environ.get("RS3GW_ENDPOINT") or DEFAULT_ENDPOINT,
                        help="the node's S3 endpoint (default: $RS3GW_ENDPOINT or %(default)s)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, metavar="SECONDS",
                        help="connect and read timeout (default: %(default)s)")
    parser.add_argument("--cacert", metavar="FILE", help="CA bundle to verify an https endpoint")
    groups = parser.add_subparsers(dest="group", required=True, metavar="cluster")
    cluster = groups.add_parser("cluster", help="the multi-leader cluster this node belongs to")
    commands = cluster.add_subparsers(dest="command", required=True,
                                      metavar="status|nodes|replication|leave")
    for name, text in (("status", "this node and a member count"),
                       ("nodes", "every member this node knows"),
                       ("replication", "replication totals and per-destination backlog")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--json", action="store_true", help="print the node's JSON answer")
    commands.add_parser("leave", help="leave the cluster gracefully; the node exits when done")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    endpoint = Endpoint(args.endpoint, args.timeout, args.cacert)
    path = API_PREFIX + args.command
    if args.command == "leave":
        doc = endpoint.call("POST", path, _leave_headers(path, endpoint.host_header))
        print(f"{endpoint.url}: leave started, state {doc.get('state', '?')}; the node exits once it "
              "has handed off its work")
        return EXIT_OK
    doc = endpoint.call("GET", path)
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    try:
        if args.command == "status":
            text = format_status(doc)
        elif args.command == "nodes":
            text = format_nodes(doc, time.time())
        else:
            text = format_replication(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise NodeError(f"{endpoint.url}{path} answered an unexpected document "
                        f"({type(e).__name__}: {e}); --json shows it as sent") from None
    print(text)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:    # argparse exits 2 on a usage error, 0 for --help
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        return run(args)
    except UsageError as e:
        print(f"rs3ctl: {e}", file=sys.stderr)
        return EXIT_USAGE
    except NodeError as e:
        print(f"rs3ctl: {e}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
