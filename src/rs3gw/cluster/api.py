"""The cluster operator API under /api/cluster/: JSON views of a ClusterView, and a graceful leave.

    GET|HEAD /api/cluster/status        200 view.status()
    GET|HEAD /api/cluster/nodes         200 {"nodes": view.nodes()}
    GET|HEAD /api/cluster/replication   200 view.replication()
    POST     /api/cluster/leave         202 {"state": "Leaving"}; root user only (SigV4)

The path prefix is reserved: S3 never sees it, so a bucket named ``api`` cannot hold keys under
``cluster/``. Every answer, errors included, is ``application/json``; an error body is
``{"error": message}``, plus ``"code"`` (the S3 error code) when authentication refused it.
Errors: 404 when the cluster is disabled (for every path) or the path is unknown, 405 with
``Allow`` for a wrong method, the S3 error's own status when the leave is not authenticated as
the root user (403 for a missing, wrong or non-root signature; 400 for a malformed one), 500 when
the view fails. An open gateway (no root keys) lets anyone leave, as it lets anyone administer S3.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..http.request import Request, Response
from ..s3 import sigv4
from ..s3.errors import S3Error
from .view import ClusterView

if TYPE_CHECKING:
    from ..s3.app import S3App

log = logging.getLogger("rs3gw.cluster.api")

PATH_PREFIX = "/api/cluster/"
DISABLED_MESSAGE = "cluster mode is disabled (RS3GW_CLUSTER_ENABLED=false)"

_READ_METHODS = ("GET", "HEAD")
# path -> (operation name for metrics and logs, reader producing the JSON document)
_READERS: dict[str, tuple[str, Callable[[ClusterView], Any]]] = {
    PATH_PREFIX + "status": ("GetClusterStatus", lambda view: view.status()),
    PATH_PREFIX + "nodes": ("ListClusterNodes", lambda view: {"nodes": view.nodes()}),
    PATH_PREFIX + "replication": ("GetClusterReplication", lambda view: view.replication()),
}
_LEAVE_PATH = PATH_PREFIX + "leave"


def json_response(status: int, doc: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
    # Status documents change every second; a cache between rs3ctl and the node would mislead.
    return Response(status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
                    + (headers or []), body)


def _error(status: int, message: str, headers: list[tuple[str, str]] | None = None,
           **extra: str) -> Response:
    return json_response(status, {"error": message, **extra}, headers)


async def handle(app: S3App, req: Request) -> Response:
    """Answer one request whose path starts with PATH_PREFIX; never raises."""
    view = app.cluster
    req.operation = "ClusterAdmin"
    if view is None:
        return _error(404, DISABLED_MESSAGE)
    reader = _READERS.get(req.path)
    if reader is not None:
        if req.method not in _READ_METHODS:
            return _error(405, f"{req.path} accepts GET and HEAD",
                          [("Allow", ", ".join(_READ_METHODS))])
        req.operation, read = reader
        try:
            # Serialised inside the try: a view returning something JSON cannot carry is a 500.
            return json_response(200, read(view))
        except Exception:
            log.exception("cluster view failed answering %s", req.path)
            return _error(500, f"the cluster node failed to answer {req.path}")
    if req.path == _LEAVE_PATH:
        if req.method != "POST":
            return _error(405, f"{req.path} accepts POST", [("Allow", "POST")])
        req.operation = "LeaveCluster"
        try:
            _authorize_root(app, req)
        except S3Error as e:
            return _error(e.status, e.message, code=e.code)
        try:
            await view.leave()
        except Exception:
            log.exception("starting a graceful leave failed")
            return _error(500, "the cluster node failed to start leaving")
        log.info("graceful leave requested by %s", req.client[0] if req.client else "a local caller")
        return json_response(202, {"state": "Leaving"})
    return _error(404, f"no cluster endpoint at {req.path}")


def _authorize_root(app: S3App, req: Request) -> None:
    """SigV4 with the S3 credentials; only the root user may act (anyone on an open gateway)."""
    auth = sigv4.verify_request(req.method, req.path, req.query, req.headers,
                                app.access.credentials, app.config.region)
    user_id = auth.creds.user_id if auth.creds is not None else None
    if not app.access.is_root(user_id):
        raise S3Error("AccessDenied", "Only the root user may make a node leave the cluster")
