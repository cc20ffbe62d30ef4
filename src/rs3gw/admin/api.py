"""AdminApi: the HTTP front of the gateway. Operator endpoints here, everything else to S3.

    GET|HEAD /health                    200 "ok": the process is up
    GET|HEAD /ready                     200 "ok" once serving; 503 "starting" before, and when draining
    GET|HEAD /metrics                   200 Prometheus text (every worker's, with RS3GW_WORKERS > 1)
    GET|HEAD /api/cluster/status        200 view.status()
    GET|HEAD /api/cluster/nodes         200 {"nodes": view.nodes()}
    GET|HEAD /api/cluster/replication   200 view.replication()
    POST     /api/cluster/leave         202 {"state": "Leaving"}; root user only (SigV4)

The probes (/health, /ready, /metrics) are unsigned: a signed request, or another method, for one
of those paths is S3's (a bucket named ``health``), and so is any other path.

``/api/cluster/`` is reserved, signed or not: S3 never sees it, so a bucket named ``api`` cannot
hold keys under ``cluster/``. Every answer there, errors included, is ``application/json`` with
``Cache-Control: no-store``; an error body is ``{"error": message}``, plus ``"code"`` (the S3
error code) when authentication refused it. Errors: 404 when the cluster is disabled (for every
path) or the path is unknown, 405 with ``Allow`` for a wrong method, the S3 error's own status
when the leave is not authenticated as the root user (403 for a missing, wrong or non-root
signature; 400 for a malformed one), 500 when the view fails. An open gateway (no root keys) lets
anyone leave, as it lets anyone administer S3.

An endpoint is one ``Route`` in ROUTES (its path, operation name, methods and answer); a new
reserved prefix is one ``Area`` in AREAS.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..cluster.view import ClusterView
from ..http import Handler, Request, Response
from ..observability.metrics import Metrics
from ..s3 import sigv4
from ..s3.access import AccessControl
from ..s3.errors import S3Error
from .cluster_metrics import ClusterCollector

log = logging.getLogger("rs3gw.admin")

CLUSTER_PREFIX = "/api/cluster/"
DISABLED_MESSAGE = "cluster mode is disabled (RS3GW_CLUSTER_ENABLED=false)"

Answer = Callable[["AdminApi", Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    operation: str              # what metrics and logs call the request (req.operation)
    methods: tuple[str, ...]
    answer: Answer


@dataclass(frozen=True, slots=True)
class Area:
    """A reserved path prefix: every path under it is answered here, in JSON."""
    prefix: str
    operation: str              # for a request no route under the prefix takes
    noun: str                   # "no {noun} endpoint at PATH"
    needs_cluster: bool         # 404 DISABLED_MESSAGE for every path while cluster mode is off


class AdminApi:
    """Takes each HTTP request first; gets, in its constructor, only what its endpoints use."""

    def __init__(self, s3: Handler, access: AccessControl, *, region: str, metrics: Metrics,
                 cluster: ClusterView | None = None) -> None:
        self.s3 = s3
        # Signed calls (the leave): the S3 users' credentials and the root check, for `region`.
        self.access = access
        self.region = region
        self.metrics = metrics
        # Cluster mode: the node's read-only view; None answers DISABLED_MESSAGE.
        self.cluster = cluster
        # /ready answers 503 until the server sets this, and again once it starts draining.
        self.ready = False
        if cluster is not None:
            # The cluster families on /metrics, read from the view on each scrape.
            metrics.registry.register(ClusterCollector(cluster))
        # Every path answered here starts with one of these: one startswith per request.
        prefixes = tuple(area.prefix for area in AREAS)
        self._claimed = tuple(p for p in ROUTES if not p.startswith(prefixes)) + prefixes

    def handle(self, req: Request) -> Awaitable[Response]:
        """The HTTP server's handler. Not a coroutine: an S3 request gets S3's own coroutine
        back, after one startswith, with no frame of ours around it."""
        if req.path.startswith(self._claimed):
            return self._answer(req)
        return self.s3(req)

    async def _answer(self, req: Request) -> Response:
        path = req.path
        for area in AREAS:
            if path.startswith(area.prefix):
                return await self._answer_reserved(area, req)
        route = ROUTES.get(path)
        if (route is None or req.method not in route.methods
                or "authorization" in req.headers or "X-Amz-Signature" in req.query):
            # A bucket whose name only begins like a probe, or a signed request to one named so.
            return await self.s3(req)
        req.operation = route.operation
        return await route.answer(self, req)

    async def _answer_reserved(self, area: Area, req: Request) -> Response:
        """Never raises: every failure is a JSON error."""
        req.operation = area.operation
        if area.needs_cluster and self.cluster is None:
            return _error(404, DISABLED_MESSAGE)
        route = ROUTES.get(req.path)
        if route is None:
            return _error(404, f"no {area.noun} endpoint at {req.path}")
        if req.method not in route.methods:
            return _error(405, f"{req.path} accepts {' and '.join(route.methods)}",
                          [("Allow", ", ".join(route.methods))])
        req.operation = route.operation
        try:
            return await route.answer(self, req)
        except Exception:
            # Answers report their own failures; this is for one that did not.
            log.exception("%s %s failed", req.method, req.path)
            return _error(500, f"{req.path} failed")

    def require_root(self, req: Request, refusal: str) -> None:
        """SigV4 with the S3 credentials; only the root user may act (anyone on an open gateway).
        Raises the S3Error of a bad signature, or AccessDenied with ``refusal``."""
        auth = sigv4.verify_request(req.method, req.path, req.query, req.headers,
                                    self.access.credentials, self.region)
        user_id = auth.creds.user_id if auth.creds is not None else None
        if not self.access.is_root(user_id):
            raise S3Error("AccessDenied", refusal)

    def view(self) -> ClusterView:
        """The cluster view, for the answers of an area that needs_cluster (checked before)."""
        assert self.cluster is not None
        return self.cluster


def json_response(status: int, doc: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
    # Status documents change every second; a cache between rs3ctl and the node would mislead.
    return Response(status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
                    + (headers or []), body)


def _error(status: int, message: str, headers: list[tuple[str, str]] | None = None,
           **extra: str) -> Response:
    return json_response(status, {"error": message, **extra}, headers)


def _text(status: int, body: bytes) -> Response:
    return Response(status, [("Content-Type", "text/plain")], body)


# ---- probes ------------------------------------------------------------------------------------

async def _health(api: AdminApi, req: Request) -> Response:
    return _text(200, b"ok\n")


async def _ready(api: AdminApi, req: Request) -> Response:
    return _text(200, b"ok\n") if api.ready else _text(503, b"starting\n")


async def _metrics(api: AdminApi, req: Request) -> Response:
    # Off the loop: with several workers a scrape reads every worker's metric files.
    body, ctype = await asyncio.get_running_loop().run_in_executor(None, api.metrics.render)
    return Response(200, [("Content-Type", ctype)], body)


# ---- the cluster -------------------------------------------------------------------------------

def _cluster_reader(read: Callable[[ClusterView], Any]) -> Answer:
    async def answer(api: AdminApi, req: Request) -> Response:
        try:
            # Serialised inside the try: a view returning something JSON cannot carry is a 500.
            return json_response(200, read(api.view()))
        except Exception:
            log.exception("cluster view failed answering %s", req.path)
            return _error(500, f"the cluster node failed to answer {req.path}")
    return answer


async def _leave(api: AdminApi, req: Request) -> Response:
    try:
        api.require_root(req, "Only the root user may make a node leave the cluster")
    except S3Error as e:
        return _error(e.status, e.message, code=e.code)
    try:
        await api.view().leave()
    except Exception:
        log.exception("starting a graceful leave failed")
        return _error(500, "the cluster node failed to start leaving")
    log.info("graceful leave requested by %s", req.client[0] if req.client else "a local caller")
    return json_response(202, {"state": "Leaving"})


_READ = ("GET", "HEAD")

AREAS: tuple[Area, ...] = (
    Area(CLUSTER_PREFIX, "ClusterAdmin", noun="cluster", needs_cluster=True),
)

# path -> Route; a path under an Area's prefix is reserved, any other is a probe.
ROUTES: dict[str, Route] = {
    "/health": Route("Admin", _READ, _health),
    "/ready": Route("Admin", _READ, _ready),
    "/metrics": Route("Admin", _READ, _metrics),
    CLUSTER_PREFIX + "status": Route("GetClusterStatus", _READ,
                                     _cluster_reader(lambda view: view.status())),
    CLUSTER_PREFIX + "nodes": Route("ListClusterNodes", _READ,
                                    _cluster_reader(lambda view: {"nodes": view.nodes()})),
    CLUSTER_PREFIX + "replication": Route("GetClusterReplication", _READ,
                                          _cluster_reader(lambda view: view.replication())),
    CLUSTER_PREFIX + "leave": Route("LeaveCluster", ("POST",), _leave),
}
