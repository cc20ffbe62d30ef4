"""rs3ctl against a canned JSON server (http.server in a thread) and against the admin front itself."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fake_cluster_view import NODES, NOW, REPLICATION, STATUS, FakeClusterView
from test_http_kit import serve

from rs3gw.admin import CLUSTER_PREFIX, DISABLED_MESSAGE, AdminApi
from rs3gw.cli import rs3ctl
from rs3gw.cli.signer import sign_headers
from rs3gw.config import Config
from rs3gw.http import Request, Response
from rs3gw.observability.metrics import Metrics
from rs3gw.s3 import sigv4
from rs3gw.s3.access import AccessControl

AK, SK = "AKIAROOTRS3CTL000001", "rs3ctl-root-secret"
DEADLINE_S = 20.0

Route = tuple[int, Any]


class CannedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, routes: dict[tuple[str, str], Route]) -> None:
        super().__init__(("127.0.0.1", 0), CannedHandler)
        self.routes = routes
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class CannedHandler(BaseHTTPRequestHandler):
    server: CannedServer

    def _answer(self) -> None:
        self.server.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        status, doc = self.server.routes.get((self.command, self.path), (404, {"error": "no route"}))
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/api/cluster/status"): (200, STATUS),
    ("GET", "/api/cluster/nodes"): (200, {"nodes": NODES}),
    ("GET", "/api/cluster/replication"): (200, REPLICATION),
    ("POST", "/api/cluster/leave"): (202, {"state": "Leaving"}),
}


@contextlib.contextmanager
def canned(routes: dict[tuple[str, str], Route] | None = None) -> Iterator[CannedServer]:
    server = CannedServer(ROUTES if routes is None else routes)
    # A short poll interval: shutdown() waits for the serving loop to look at its flag.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(DEADLINE_S)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RS3GW_ENDPOINT", "RS3GW_ACCESS_KEY", "RS3GW_SECRET_KEY", "RS3GW_REGION"):
        monkeypatch.delenv(name, raising=False)


def ctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = rs3ctl.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def columns(line: str) -> list[int]:
    """Start offsets of the cells of a table line (cells are separated by 2+ spaces)."""
    return [m.start() for m in re.finditer(r"(?:(?<=  )|^)\S", line)]


# --- human output ------------------------------------------------------------------------------------

def test_status(capsys: pytest.CaptureFixture[str]) -> None:
    with canned() as server:
        code, out, err = ctl(capsys, "--endpoint", server.url, "cluster", "status")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    pairs = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in lines)
    assert pairs == {
        "Node ID": "node-a", "State": "Active", "Cluster address": "10.0.0.1:9001",
        "Replication": "quorum, factor 3", "Conflict resolution": "last_write_wins",
        "Members": "4 (Starting 0, Joining 1, Active 2, Leaving 0, Failed 1)", "Healthy": "yes",
        "Backends": "core=compiled, io=uring", "Version": "0.1.0", "Uptime": "1h02m",
        "Messages refused": "malformed 3, unknown_type 1",
    }
    assert len({len(line) - len(line.split("  ")[-1].lstrip()) for line in lines}) == 1  # one value column
    assert server.seen[0][:2] == ("GET", "/api/cluster/status")


def test_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    # Ages measured from now, not from when the canned documents were built.
    now = time.time()
    nodes = [dict(n, last_seen=None if n["last_seen"] is None else now - (NOW - n["last_seen"]))
             for n in NODES]
    with canned({("GET", "/api/cluster/nodes"): (200, {"nodes": nodes})}) as server:
        code, out, err = ctl(capsys, "--endpoint", server.url, "cluster", "nodes")
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == ["NODE", "ID", "STATE", "ADDRESS", "LAST", "SEEN", "INCARNATION"]
    assert len(rows) == 3
    assert rows[0].split() == ["node-a", "(local)", "Active", "10.0.0.1:9001", "-", "3"]
    assert rows[1].split()[:3] == ["node-b", "Active", "10.0.0.2:9001"]
    assert re.fullmatch(r"2\.\ds", rows[1].split()[3])       # 2.1s, or a little more on a busy machine
    assert re.fullmatch(r"5m1[2-9]s", rows[2].split()[3]) and rows[2].split()[4:] == ["ago", "1"]
    # Aligned: each column starts at the same offset on every line; INCARNATION right-aligned.
    assert all(columns(r)[:4] == columns(header)[:4] for r in rows)
    assert {len(r) for r in rows} == {len(header)}


def test_nodes_formatting_is_exact() -> None:
    text = rs3ctl.format_nodes({"nodes": NODES}, NOW)
    assert text.splitlines() == [
        "NODE ID         STATE   ADDRESS        LAST SEEN  INCARNATION",
        "node-a (local)  Active  10.0.0.1:9001  -                    3",
        "node-b          Active  10.0.0.2:9001  2.1s ago            12",
        "node-c          Failed  10.0.0.3:9001  5m12s ago            1",
    ]


def test_replication(capsys: pytest.CaptureFixture[str]) -> None:
    with canned() as server:
        code, out, err = ctl(capsys, "--endpoint", server.url, "cluster", "replication")
    assert (code, err) == (0, "")
    totals, table = out.rstrip("\n").split("\n\n")
    assert dict(re.split(r"\s{2,}", line, maxsplit=1) for line in totals.splitlines()) == {
        "Events replicated": "1234", "Events pending": "7", "Events failed": "2",
        "Bytes replicated": "5.0 GiB", "Lag": "avg 0.125s, p95 0.750s, max 2.500s",
        "Bandwidth": "10.5 MiB/s",
    }
    assert table.splitlines() == [
        "DESTINATION  PENDING  OLDEST  REPLICATED  FAILED  LAST ERROR",
        "node-b             0       -        1200       0  -",
        "node-c             7   1m05s          34       2  connection refused",
    ]


def test_replication_without_destinations(capsys: pytest.CaptureFixture[str]) -> None:
    doc = dict(REPLICATION, destinations={})
    with canned({("GET", "/api/cluster/replication"): (200, doc)}) as server:
        code, out, _ = ctl(capsys, "--endpoint", server.url, "cluster", "replication")
    assert code == 0
    assert out.rstrip().endswith("no replication destinations")


@pytest.mark.parametrize("command,expected", [
    ("status", STATUS), ("nodes", {"nodes": NODES}), ("replication", REPLICATION),
])
def test_json_prints_the_answer_as_returned(capsys: pytest.CaptureFixture[str], command: str,
                                            expected: Any) -> None:
    with canned() as server:
        code, out, err = ctl(capsys, "--endpoint", server.url, "cluster", command, "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == expected
    assert out.startswith("{\n  \"")        # pretty-printed


def test_endpoint_from_the_environment(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with canned() as server:
        monkeypatch.setenv("RS3GW_ENDPOINT", server.url)
        code, out, _ = ctl(capsys, "cluster", "status", "--json")
    assert code == 0 and json.loads(out)["node_id"] == "node-a"
    assert len(server.seen) == 1


# --- failures and exit codes ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_endpoint_exits_1_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = ctl(capsys, "--endpoint", url, "cluster", "status")
    assert code == 1 and out == ""
    assert err.startswith(f"rs3ctl: cannot reach {url}: ")


def test_server_error_exits_1_with_its_message(capsys: pytest.CaptureFixture[str]) -> None:
    with canned({}) as server:
        server.routes[("GET", "/api/cluster/nodes")] = (404, {"error": DISABLED_MESSAGE})
        code, out, err = ctl(capsys, "--endpoint", server.url, "cluster", "nodes")
    assert code == 1 and out == ""
    assert err == f"rs3ctl: {server.url}/api/cluster/nodes answered 404 Not Found: {DISABLED_MESSAGE}\n"


def test_non_json_and_unexpected_answers_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with canned({("GET", "/api/cluster/status"): (200, b"<html>proxy</html>"),
                 ("GET", "/api/cluster/nodes"): (200, {"members": []})}) as server:
        code, _, err = ctl(capsys, "--endpoint", server.url, "cluster", "status")
        assert code == 1 and "not JSON" in err
        code, _, err = ctl(capsys, "--endpoint", server.url, "cluster", "nodes")
        assert code == 1 and "unexpected document" in err and "--json" in err
        code, out, _ = ctl(capsys, "--endpoint", server.url, "cluster", "nodes", "--json")
        assert code == 0 and json.loads(out) == {"members": []}


@pytest.mark.parametrize("argv", [
    [], ["cluster"], ["cluster", "bogus"], ["nodes"], ["cluster", "leave", "--json"],
    ["--endpoint", "ftp://127.0.0.1:9000", "cluster", "status"],
    ["--endpoint", "http://127.0.0.1:9000/prefix", "cluster", "status"],
    ["--endpoint", "http://127.0.0.1:99999", "cluster", "status"],
    ["--timeout", "0", "cluster", "status"],
])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = ctl(capsys, *argv)
    assert code == 2 and out == ""
    assert err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = ctl(capsys, "cluster", "--help")
    assert code == 0 and "status|nodes|replication|leave" in out


# --- leave and its signature ------------------------------------------------------------------------

def test_signer_output_passes_server_verification() -> None:
    now = 1_700_000_000.0
    headers = sign_headers("POST", "/api/cluster/leave", "node1.example:9000", AK, SK, "eu-west-1", now)
    creds = sigv4.Credentials(AK, SK, "root-id", "root")
    auth = sigv4.verify_request("POST", "/api/cluster/leave", "", headers, {AK: creds}.get, "eu-west-1",
                                now=now + 1)
    assert auth.creds == creds
    assert auth.scope == "20231114/eu-west-1/s3/aws4_request"
    assert headers["x-amz-content-sha256"] == sigv4.EMPTY_SHA256
    # A different path or secret does not verify.
    with pytest.raises(sigv4.S3Error, match="SignatureDoesNotMatch"):
        sigv4.verify_request("POST", "/api/cluster/status", "", headers, {AK: creds}.get, "eu-west-1",
                             now=now)


def test_leave_is_signed_with_the_environment_keys(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RS3GW_ACCESS_KEY", AK)
    monkeypatch.setenv("RS3GW_SECRET_KEY", SK)
    monkeypatch.setenv("RS3GW_REGION", "eu-central-1")
    with canned() as server:
        code, out, err = ctl(capsys, "--endpoint", server.url, "cluster", "leave")
    assert (code, err) == (0, "")
    assert "Leaving" in out and server.url in out
    method, path, headers = server.seen[0]
    assert (method, path) == ("POST", "/api/cluster/leave")
    assert headers["host"] == server.url.removeprefix("http://")
    creds = sigv4.Credentials(AK, SK, "root-id", "root")
    # Exactly what the admin front does with the request it receives.
    auth = sigv4.verify_request(method, path, "", headers, {AK: creds}.get, "eu-central-1")
    assert auth.creds == creds
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date," in headers["authorization"]


def test_leave_without_keys_is_unsigned(capsys: pytest.CaptureFixture[str]) -> None:
    with canned() as server:
        code, _, _ = ctl(capsys, "--endpoint", server.url, "cluster", "leave")
    assert code == 0
    assert "authorization" not in server.seen[0][2]


def test_leave_with_half_the_keys_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RS3GW_ACCESS_KEY", AK)
    with canned() as server:
        code, _, err = ctl(capsys, "--endpoint", server.url, "cluster", "leave")
    assert code == 2 and "RS3GW_SECRET_KEY" in err
    assert server.seen == []


# --- against the real API -----------------------------------------------------------------------------

@contextlib.contextmanager
def real_node(view: FakeClusterView) -> Iterator[str]:
    """The admin front with `view` on rs3gw's own HTTP server, its loop in a thread (no S3 behind
    it: rs3ctl calls only the operator API)."""
    cfg = Config(access_key=AK, secret_key=SK)

    async def no_s3(req: Request) -> Response:
        raise AssertionError(f"rs3ctl reached S3: {req.method} {req.target}")
    front = AdminApi(no_s3, AccessControl(cfg), region=cfg.region, metrics=Metrics(), cluster=view)
    started = threading.Event()
    port: list[int] = []
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        async with serve(front.handle) as (_, p):
            port.append(p)
            started.set()
            await stop[0].wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        assert started.wait(DEADLINE_S)
        yield f"http://127.0.0.1:{port[0]}"
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(DEADLINE_S)
        loop.close()


def test_against_the_admin_front(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    view = FakeClusterView()
    with real_node(view) as url:
        code, out, _ = ctl(capsys, "--endpoint", url, "cluster", "status", "--json")
        assert code == 0 and json.loads(out) == STATUS
        code, _, err = ctl(capsys, "--endpoint", url, "cluster", "leave")
        assert code == 1 and "403" in err and "AccessDenied" in err and view.calls == ["status"]
        monkeypatch.setenv("RS3GW_ACCESS_KEY", AK)
        monkeypatch.setenv("RS3GW_SECRET_KEY", SK)
        code, out, err = ctl(capsys, "--endpoint", url, "cluster", "leave")
        assert (code, err) == (0, "") and "Leaving" in out
        assert view.calls == ["status", "leave"]


def test_rs3ctl_calls_the_prefix_the_node_serves() -> None:
    # rs3ctl keeps its own copy: it imports only the standard library (below).
    assert rs3ctl.API_PREFIX == CLUSTER_PREFIX


# --- packaging ----------------------------------------------------------------------------------------

def test_python_dash_m(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RS3GW_")}
    with canned() as server:
        proc = subprocess.run([sys.executable, "-m", "rs3gw.cli.rs3ctl", "--endpoint", server.url,
                               "cluster", "status", "--json"], check=False, capture_output=True,
                              text=True, timeout=DEADLINE_S, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == STATUS


def test_imports_only_the_standard_library() -> None:
    # Compared with what the interpreter loaded before the import (site hooks such as setuptools').
    code = ("import sys; before = set(sys.modules); import rs3gw.cli.rs3ctl; "
            "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "print('\\n'.join(sorted(new - set(sys.stdlib_module_names) - {'rs3gw'})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=DEADLINE_S, check=True)
    assert proc.stdout.split() == []
