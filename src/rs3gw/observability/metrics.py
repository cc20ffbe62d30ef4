"""Prometheus metrics (prometheus-client): one registry per process, or, with RS3GW_WORKERS > 1,
the library's multi-process mode, where every worker's values live in files under
PROMETHEUS_MULTIPROC_DIR and a scrape of any worker adds up all of them.

Families read from another part on each scrape (the cluster's: rs3gw.admin.ClusterCollector) are
collectors that whoever wires that part registers on ``Metrics.registry``. A scrape in
multi-process mode reads only the workers' files, not such collectors; cluster mode runs one
process.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                      30, 60)

# (operation, status) pairs whose metric children observe() keeps; operations and statuses are
# few, so this is never reached in practice, and beyond it labels() is simply called each time.
_CHILDREN_CACHED_MAX = 1024


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The multi-process directory when this process's metrics are in multi-process mode."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return None
    # prometheus-client chooses its value class when it is first imported: the supervisor sets
    # the variable before anything imports it (rs3gw.cli.server). A late setting would make every
    # worker count alone while the scrape claims the sum, so refuse it.
    if values.ValueClass is values.MutexValue:
        raise RuntimeError(f"{MULTIPROC_ENV} was set after prometheus_client was imported")
    return path


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._multiproc_dir = multiprocess_dir()
        r = self.registry
        self.requests = Counter("rs3gw_requests", "S3 requests by operation and HTTP status",
                                ["operation", "status"], registry=r)
        self.bytes_in = Counter("rs3gw_bytes_in", "Request body bytes received", registry=r)
        self.bytes_out = Counter("rs3gw_bytes_out", "Response body bytes sent", registry=r)
        self.latency = Histogram("rs3gw_request_duration_seconds", "Time from request headers to the "
                                 "end of the response", ["operation"], buckets=_LATENCY_BUCKETS_S,
                                 registry=r)
        # Multi-process: in-flight requests add up over the live workers; the backend choice is
        # the same in each (max), and neither carries a per-worker pid label.
        self.in_flight = Gauge("rs3gw_requests_in_flight", "Requests being handled", registry=r,
                               multiprocess_mode="livesum")
        self.backend = Gauge("rs3gw_backend_info", "Implementation in use for each hot path",
                             ["component", "implementation"], registry=r,
                             multiprocess_mode="max")
        self.limit_hits = Counter("rs3gw_limit_rejections", "Requests refused by a configured limit",
                                  ["limit"], registry=r)
        # rs3gw.lifecycle.scanner's events: expired, noncurrent_deleted, marker_removed,
        # upload_aborted, skipped (a refusal, e.g. a locked version), pass (passes finished).
        self.lifecycle = Counter("rs3gw_lifecycle_events", "Lifecycle scanner actions and passes",
                                 ["event"], registry=r)
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._in_flight_now: Callable[[], int] | None = None

    @property
    def multiprocess(self) -> bool:
        return self._multiproc_dir is not None

    def count_in_flight(self, now: Callable[[], int]) -> None:
        """Where rs3gw_requests_in_flight comes from (the HTTP server's own count, kept anyway):
        read at each scrape of this process, and by publish_in_flight() for the other workers'
        scrapes. Never an inc/dec per request: in multi-process mode each is a locked file write."""
        self._in_flight_now = now

    def publish_in_flight(self) -> None:
        if self._in_flight_now is not None:
            self.in_flight.set(self._in_flight_now())

    def observe(self, op: str, status: int, bytes_in: int, bytes_out: int, seconds: float) -> None:
        # labels() builds and looks up a key under a lock on every call; the children are cached.
        children = self._children.get((op, status))
        if children is None:
            children = (self.requests.labels(op, str(status)), self.latency.labels(op))
            if len(self._children) < _CHILDREN_CACHED_MAX:
                self._children[(op, status)] = children
        requests, latency = children
        requests.inc()
        if bytes_in:
            self.bytes_in.inc(bytes_in)
        if bytes_out:
            self.bytes_out.inc(bytes_out)
        latency.observe(seconds)
        if status == 503:
            self.limit_hits.labels("max_concurrent").inc()

    def render(self) -> tuple[bytes, str]:
        self.publish_in_flight()
        if self._multiproc_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        # Reads every worker's files (a few KiB each): once per scrape, never per request.
        registry = CollectorRegistry()
        # prometheus_client.multiprocess has no annotations.
        MultiProcessCollector(registry, path=self._multiproc_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
