"""The admin front (rs3gw.admin.AdminApi) on a real HTTP server on port 0: the /api/cluster/
operator API, the probes, and what it hands to S3."""
from __future__ import annotations

import json
from typing import Any

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
from fake_cluster_view import NODES, REPLICATION, STATUS, FakeClusterView
from test_http_kit import RawResponse, both_loops, connect, read_response, run, serve

from rs3gw.admin import DISABLED_MESSAGE, AdminApi
from rs3gw.admin import api as admin_api
from rs3gw.cluster.membership import NodeState
from rs3gw.cluster.view import NODE_STATES
from rs3gw.config import Config, User
from rs3gw.http import Body, Request
from rs3gw.observability.metrics import Metrics
from rs3gw.s3.access import AccessControl
from rs3gw.s3.app import S3App

ROOT = User("AKIAROOTCLUSTER00001", "root-secret-for-the-cluster-tests", "root-id", "root")
ALICE = User("AKIAALICECLUSTER0001", "alice-secret-for-the-cluster-tests", "alice", "alice")


class NoBuckets:
    """Storage with no buckets: enough for S3 to answer NoSuchBucket / AccessDenied."""

    async def get_bucket(self, name: str) -> None:
        return None

    async def lookup_object(self, bucket: str, key: str, with_body: bool,
                            version_id: str | None = None) -> tuple[None, None, None]:
        return None, None, None


def make_front(view: FakeClusterView | None, *, open_gateway: bool = False,
               ready: bool = True) -> AdminApi:
    cfg = Config() if open_gateway else Config(access_key=ROOT.access_key, secret_key=ROOT.secret_key,
                                                users=(ALICE,))
    access = AccessControl(cfg)
    app = S3App(cfg, NoBuckets(), access)  # type: ignore[arg-type]
    front = AdminApi(app.handle, access, region=cfg.region, metrics=Metrics(), cluster=view)
    front.ready = ready
    return front


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


def serve_front(loop_kind: str, front: AdminApi, scenario: Any) -> Any:
    async def main() -> Any:
        operations: list[str] = []

        def on_response(req: Request, status: int, bytes_in: int, bytes_out: int) -> None:
            operations.append(req.operation)

        async with serve(front.handle, on_response=on_response) as (_, port):
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
    resp, operations = serve_front(loop_kind, make_front(FakeClusterView()), scenario)
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
    (head, get), _ = serve_front(loop_kind, make_front(FakeClusterView()), scenario)
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
    resp, _ = serve_front("uvloop", make_front(None), scenario)
    assert resp.status == 404
    assert resp.headers["content-type"] == "application/json"
    if method != "HEAD":
        assert json_body(resp) == {"error": DISABLED_MESSAGE}


def test_unknown_path_is_404() -> None:
    async def scenario(port: int) -> RawResponse:
        return await call(port, "GET", "/api/cluster/members")
    view = FakeClusterView()
    resp, _ = serve_front("uvloop", make_front(view), scenario)
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
    resp, _ = serve_front("uvloop", make_front(view), scenario)
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
    resp, operations = serve_front(loop_kind, make_front(view), scenario)
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
    resp, _ = serve_front("uvloop", make_front(view), scenario)
    assert resp.status == 403
    doc = json_body(resp)
    assert doc["code"] == code and doc["error"]
    assert view.calls == []
    assert view.status_doc["state"] == "Active"


def test_open_gateway_lets_anyone_leave() -> None:
    view = FakeClusterView()

    async def scenario(port: int) -> RawResponse:
        return await call(port, "POST", "/api/cluster/leave")
    resp, _ = serve_front("uvloop", make_front(view, open_gateway=True), scenario)
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
    (failed, fine), _ = serve_front("uvloop", make_front(view), scenario)
    assert failed.status == 500
    assert json_body(failed)["error"].startswith("the cluster node failed")
    assert fine.status == 200
    assert json_body(fine) == {"nodes": NODES}


def test_unserialisable_view_answer_is_500() -> None:
    view = FakeClusterView()
    view.status_doc["uptime_s"] = object()

    async def scenario(port: int) -> RawResponse:
        return await call(port, "GET", "/api/cluster/status")
    resp, _ = serve_front("uvloop", make_front(view), scenario)
    assert resp.status == 500
    assert "error" in json_body(resp)


def test_only_the_prefix_is_reserved() -> None:
    """/metrics still answers, and /api/cluster without the slash is an S3 object (bucket "api",
    key "cluster"): an unsigned request on a keyed gateway gets S3's XML AccessDenied."""
    front = make_front(FakeClusterView())

    async def scenario(port: int) -> tuple[RawResponse, RawResponse]:
        return await call(port, "GET", "/metrics"), await call(port, "GET", "/api/cluster")
    (metrics, s3), operations = serve_front("uvloop", front, scenario)
    assert metrics.status == 200 and b"rs3gw_requests_total" in metrics.body
    assert s3.status == 403 and b"<Code>AccessDenied</Code>" in s3.body
    assert operations == ["Admin", "GetObject"]


# --- probes, and what goes to S3 ----------------------------------------------------------------

@both_loops
def test_probes(loop_kind: str) -> None:
    async def scenario(port: int) -> list[RawResponse]:
        return [await call(port, "GET", "/health"), await call(port, "HEAD", "/health"),
                await call(port, "GET", "/ready"), await call(port, "GET", "/metrics")]
    (health, head, ready, metrics), operations = serve_front(loop_kind, make_front(None), scenario)
    assert (health.status, health.headers["content-type"], health.body) == (200, "text/plain", b"ok\n")
    assert head.status == 200 and head.body == b"" and head.headers["content-length"] == "3"
    assert (ready.status, ready.body) == (200, b"ok\n")
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert b"rs3gw_requests_total" in metrics.body
    assert b"rs3gw_cluster_nodes_total" not in metrics.body      # no cluster, no cluster families
    assert operations == ["Admin"] * 4


def test_not_ready_is_503() -> None:
    async def scenario(port: int) -> RawResponse:
        return await call(port, "GET", "/ready")
    resp, _ = serve_front("uvloop", make_front(None, ready=False), scenario)
    assert (resp.status, resp.body) == (503, b"starting\n")


def test_the_cluster_families_are_on_metrics_in_cluster_mode() -> None:
    view = FakeClusterView()

    async def scenario(port: int) -> RawResponse:
        return await call(port, "GET", "/metrics")
    resp, _ = serve_front("uvloop", make_front(view), scenario)
    assert b'rs3gw_cluster_nodes_total{state="Active"} 2.0' in resp.body
    assert b"rs3gw_replication_events_total 1234.0" in resp.body


@pytest.mark.parametrize("method,path,signed,status,code,operation", [
    # A bucket named like a probe: signed, another method, or a longer name is S3's.
    ("GET", "/health", True, 404, "NoSuchBucket", "ListObjects"),
    ("GET", "/metrics?X-Amz-Signature=0", False, 403, "AccessDenied", "ListObjects"),
    ("PUT", "/ready", False, 403, "AccessDenied", "CreateBucket"),
    ("GET", "/healthz", False, 403, "AccessDenied", "ListObjects"),
    ("GET", "/metrics/key", True, 404, "NoSuchBucket", "GetObject"),
    ("GET", "/api/cluster", True, 404, "NoSuchBucket", "GetObject"),
    ("GET", "/", False, 403, "AccessDenied", "ListBuckets"),
])
def test_everything_else_reaches_s3(method: str, path: str, signed: bool, status: int, code: str,
                                    operation: str) -> None:
    async def scenario(port: int) -> RawResponse:
        headers = signed_headers(port, method, path, ROOT) if signed else None
        return await call(port, method, path, headers)
    resp, operations = serve_front("uvloop", make_front(FakeClusterView()), scenario)
    assert resp.status == status
    assert resp.headers["content-type"] == "application/xml"
    assert f"<Code>{code}</Code>".encode() in resp.body
    assert operations == [operation]


def test_an_s3_request_gets_the_s3_handlers_own_awaitable() -> None:
    """The hot path: no coroutine of the admin front around an S3 request."""
    handed: list[Request] = []
    answer = object()

    def s3(req: Request) -> Any:
        handed.append(req)
        return answer
    cfg = Config()
    front = AdminApi(s3, AccessControl(cfg), region=cfg.region, metrics=Metrics())
    for path in ("/bucket/key", "/", "/api/clusters", "/heal"):
        req = Request("GET", path, path, "", {}, "1.1", None, "http", Body.from_bytes(b""), 0.0)
        assert front.handle(req) is answer
        assert handed[-1] is req


def test_a_new_route_is_one_row_and_its_failure_is_a_json_500(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(api: AdminApi, req: Request) -> Any:
        raise RuntimeError("broken in this test")

    async def hello(api: AdminApi, req: Request) -> Any:
        return admin_api.json_response(200, {"hello": api.view().status()["node_id"]})
    monkeypatch.setitem(admin_api.ROUTES, "/api/cluster/broken", admin_api.Route("Broken", ("GET",), broken))
    monkeypatch.setitem(admin_api.ROUTES, "/api/cluster/hello", admin_api.Route("Hello", ("GET",), hello))

    async def scenario(port: int) -> tuple[RawResponse, RawResponse]:
        return await call(port, "GET", "/api/cluster/broken"), await call(port, "GET", "/api/cluster/hello")
    (failed, fine), operations = serve_front("uvloop", make_front(FakeClusterView()), scenario)
    assert failed.status == 500 and json_body(failed) == {"error": "/api/cluster/broken failed"}
    assert fine.status == 200 and json_body(fine) == {"hello": "node-a"}
    assert operations == ["Broken", "Hello"]
