"""The /api/cluster/ operator API, served by S3App on a real HTTP server on port 0."""
from __future__ import annotations

import json
from typing import Any

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
from fake_cluster_view import NODES, REPLICATION, STATUS, FakeClusterView
from test_http_kit import RawResponse, both_loops, connect, read_response, run, serve

from rs3gw.cluster.api import DISABLED_MESSAGE
from rs3gw.cluster.membership import NodeState
from rs3gw.cluster.view import NODE_STATES
from rs3gw.config import Config, User
from rs3gw.http import Request
from rs3gw.observability.metrics import Metrics
from rs3gw.s3.app import S3App

ROOT = User("AKIAROOTCLUSTER00001", "root-secret-for-the-cluster-tests", "root-id", "root")
ALICE = User("AKIAALICECLUSTER0001", "alice-secret-for-the-cluster-tests", "alice", "alice")


def make_app(view: FakeClusterView | None, *, open_gateway: bool = False) -> S3App:
    cfg = Config() if open_gateway else Config(access_key=ROOT.access_key, secret_key=ROOT.secret_key,
                                                users=(ALICE,))
    # The cluster API never reaches storage, so there is none.
    app = S3App(cfg, store=None, metrics=Metrics())  # type: ignore[arg-type]
    app.cluster = view
    return app


def signed_headers(port: int, method: str, path: str, user: User, secret: str | None = None
                   ) -> dict[str, str]:
    """Signed by botocore, an independent SigV4 implementation."""
    url = f"http://127.0.0.1:{port}{path}"
    req = botocore.awsrequest.AWSRequest(method=method, url=url, data=b"")
    req.headers["X-Amz-Content-SHA256"] = botocore.auth.EMPTY_SHA256_HASH
    creds = botocore.credentials.Credentials(user.access_key, secret or user.secret_key)
    botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    return {"Host": f"127.0.0.1:{port}", **dict(req.headers.items())}


async def call(port: int, method: str, path: str, headers: dict[str, str] | None = None
               ) -> RawResponse:
    reader, writer = await connect(port)
    try:
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items() if k.lower() != "host"]
        if method == "POST":
            head.append("Content-Length: 0")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        return await read_response(reader, head_only=method == "HEAD")
    finally:
        writer.close()


def json_body(resp: RawResponse) -> Any:
    assert resp.headers["content-type"] == "application/json"
    assert int(resp.headers["content-length"]) == len(resp.body)
    return json.loads(resp.body)


def serve_app(loop_kind: str, app: S3App, scenario: Any) -> Any:
    async def main() -> Any:
        operations: list[str] = []

        def on_response(req: Request, status: int, bytes_in: int, bytes_out: int) -> None:
            operations.append(req.operation)

        async with serve(app.handle, on_response=on_response) as (_, port):
            return await scenario(port), operations
    return run(loop_kind, main())


def test_node_states_match_membership() -> None:
    assert NODE_STATES == tuple(s.value for s in NodeState)


@both_loops
@pytest.mark.parametrize("path,expected,operation", [
    ("/api/cluster/status", STATUS, "GetClusterStatus"),
    ("/api/cluster/nodes", {"nodes": NODES}, "ListClusterNodes"),
    ("/api/cluster/replication", REPLICATION, "GetClusterReplication"),
])
def test_read_endpoints(loop_kind: str, path: str, expected: Any, operation: str) -> None:
    async def scenario(port: int) -> RawResponse:
        return await call(port, "GET", path)
    resp, operations = serve_app(loop_kind, make_app(FakeClusterView()), scenario)
    assert resp.status == 200
    assert json_body(resp) == expected
    assert resp.headers["cache-control"] == "no-store"
    assert operations == [operation]


@both_loops
def test_head_has_the_get_headers_and_no_body(loop_kind: str) -> None:
    async def scenario(port: int) -> tuple[RawResponse, RawResponse]:
        reader, writer = await connect(port)
        try:
            # HEAD then GET on one connection: a body sent after HEAD would corrupt the GET.
            writer.write(f"HEAD /api/cluster/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
                         f"GET /api/cluster/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            head = await read_response(reader, head_only=True)
            get = await read_response(reader)
            return head, get
        finally:
            writer.close()
    (head, get), _ = serve_app(loop_kind, make_app(FakeClusterView()), scenario)
    assert head.status == 200 and get.status == 200
    assert head.body == b""
    assert head.headers["content-type"] == "application/json"
    assert head.headers["content-length"] == get.headers["content-length"]
    assert json_body(get) == STATUS


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/cluster/status"), ("HEAD", "/api/cluster/nodes"), ("GET", "/api/cluster/replication"),
    ("POST", "/api/cluster/leave"), ("GET", "/api/cluster/nothing-here"), ("DELETE", "/api/cluster/"),
])
def test_disabled_cluster_answers_404_everywhere(method: str, path: str) -> None:
    async def scenario(port: int) -> RawResponse:
        return await call(port, method, path, signed_headers(port, method, path, ROOT))
    resp, _ = serve_app("uvloop", make_app(None), scenario)
    assert resp.status == 404
    assert resp.headers["content-type"] == "application/json"
    if method != "HEAD":
        assert json_body(resp) == {"error": DISABLED_MESSAGE}


def test_unknown_path_is_404() -> None:
    async def scenario(port: int) -> RawResponse:
        return await call(port, "GET", "/api/cluster/members")
    view = FakeClusterView()
    resp, _ = serve_app("uvloop", make_app(view), scenario)
    assert resp.status == 404
    assert json_body(resp) == {"error": "no cluster endpoint at /api/cluster/members"}
    assert view.calls == []


@pytest.mark.parametrize("method,path,allow", [
    ("POST", "/api/cluster/status", "GET, HEAD"),
    ("PUT", "/api/cluster/nodes", "GET, HEAD"),
    ("DELETE", "/api/cluster/replication", "GET, HEAD"),
    ("GET", "/api/cluster/leave", "POST"),
    ("HEAD", "/api/cluster/leave", "POST"),
])
def test_wrong_method_is_405_with_allow(method: str, path: str, allow: str) -> None:
    async def scenario(port: int) -> RawResponse:
        return await call(port, method, path)
    view = FakeClusterView()
    resp, _ = serve_app("uvloop", make_app(view), scenario)
    assert resp.status == 405
    assert resp.headers["allow"] == allow
    if method != "HEAD":
        assert "error" in json_body(resp)
    assert view.calls == []


@both_loops
def test_leave_signed_by_root_is_accepted(loop_kind: str) -> None:
    view = FakeClusterView()

    async def scenario(port: int) -> RawResponse:
        path = "/api/cluster/leave"
        return await call(port, "POST", path, signed_headers(port, "POST", path, ROOT))
    resp, operations = serve_app(loop_kind, make_app(view), scenario)
    assert resp.status == 202
    assert json_body(resp) == {"state": "Leaving"}
    assert view.calls == ["leave"]
    assert view.status_doc["state"] == "Leaving"
    assert operations == ["LeaveCluster"]


@pytest.mark.parametrize("who,code", [
    ("anonymous", "AccessDenied"),
    ("alice", "AccessDenied"),
    ("wrong-secret", "SignatureDoesNotMatch"),
    ("unknown-key", "InvalidAccessKeyId"),
])
def test_leave_refuses_anyone_but_root(who: str, code: str) -> None:
    view = FakeClusterView()

    async def scenario(port: int) -> RawResponse:
        path = "/api/cluster/leave"
        headers: dict[str, str] = {}
        if who == "alice":
            headers = signed_headers(port, "POST", path, ALICE)
        elif who == "wrong-secret":
            headers = signed_headers(port, "POST", path, ROOT, secret="not-the-root-secret")
        elif who == "unknown-key":
            headers = signed_headers(port, "POST", path, User("AKIANOBODY0000000001", "x", "x", "x"))
        return await call(port, "POST", path, headers)
    resp, _ = serve_app("uvloop", make_app(view), scenario)
    assert resp.status == 403
    doc = json_body(resp)
    assert doc["code"] == code and doc["error"]
    assert view.calls == []
    assert view.status_doc["state"] == "Active"


def test_open_gateway_lets_anyone_leave() -> None:
    view = FakeClusterView()

    async def scenario(port: int) -> RawResponse:
        return await call(port, "POST", "/api/cluster/leave")
    resp, _ = serve_app("uvloop", make_app(view, open_gateway=True), scenario)
    assert resp.status == 202
    assert json_body(resp) == {"state": "Leaving"}
    assert view.calls == ["leave"]


@pytest.mark.parametrize("method,path", [("GET", "/api/cluster/status"), ("POST", "/api/cluster/leave")])
def test_failing_view_is_500_and_the_server_keeps_serving(method: str, path: str) -> None:
    view = FakeClusterView()
    view.failing = {"status", "leave"}

    async def scenario(port: int) -> tuple[RawResponse, RawResponse]:
        failed = await call(port, method, path, signed_headers(port, method, path, ROOT))
        fine = await call(port, "GET", "/api/cluster/nodes")
        return failed, fine
    (failed, fine), _ = serve_app("uvloop", make_app(view), scenario)
    assert failed.status == 500
    assert json_body(failed)["error"].startswith("the cluster node failed")
    assert fine.status == 200
    assert json_body(fine) == {"nodes": NODES}


def test_unserialisable_view_answer_is_500() -> None:
    view = FakeClusterView()
    view.status_doc["uptime_s"] = object()

    async def scenario(port: int) -> RawResponse:
        return await call(port, "GET", "/api/cluster/status")
    resp, _ = serve_app("uvloop", make_app(view), scenario)
    assert resp.status == 500
    assert "error" in json_body(resp)


class NoBuckets:
    """Storage with no buckets: enough for S3 to answer NoSuchBucket / AccessDenied."""

    async def get_bucket(self, name: str) -> None:
        return None

    async def lookup_object(self, bucket: str, key: str, with_body: bool) -> tuple[None, None, None]:
        return None, None, None


def test_only_the_prefix_is_reserved() -> None:
    """/metrics still answers, and /api/cluster without the slash is an S3 object (bucket "api",
    key "cluster"): an unsigned request on a keyed gateway gets S3's XML AccessDenied."""
    app = make_app(FakeClusterView())
    app.store = NoBuckets()  # type: ignore[assignment]

    async def scenario(port: int) -> tuple[RawResponse, RawResponse]:
        return await call(port, "GET", "/metrics"), await call(port, "GET", "/api/cluster")
    (metrics, s3), operations = serve_app("uvloop", app, scenario)
    assert metrics.status == 200 and b"rs3gw_requests_total" in metrics.body
    assert s3.status == 403 and b"<Code>AccessDenied</Code>" in s3.body
    assert operations == ["Admin", "GetObject"]
