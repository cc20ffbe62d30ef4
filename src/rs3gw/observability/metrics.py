"""Prometheus metrics, one registry per process (prometheus-client)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                      30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rs3gw_requests", "S3 requests by operation and HTTP status",
                                ["operation", "status"], registry=r)
        self.bytes_in = Counter("rs3gw_bytes_in", "Request body bytes received", registry=r)
        self.bytes_out = Counter("rs3gw_bytes_out", "Response body bytes sent", registry=r)
        self.latency = Histogram("rs3gw_request_duration_seconds", "Time from request headers to the "
                                 "end of the response", ["operation"], buckets=_LATENCY_BUCKETS_S,
                                 registry=r)
        self.in_flight = Gauge("rs3gw_requests_in_flight", "Requests being handled", registry=r)
        self.backend = Gauge("rs3gw_backend_info", "Implementation in use for each hot path",
                             ["component", "implementation"], registry=r)
        self.limit_hits = Counter("rs3gw_limit_rejections", "Requests refused by a configured limit",
                                  ["limit"], registry=r)

    def observe(self, op: str, status: int, bytes_in: int, bytes_out: int, seconds: float) -> None:
        self.requests.labels(op, str(status)).inc()
        if bytes_in:
            self.bytes_in.inc(bytes_in)
        if bytes_out:
            self.bytes_out.inc(bytes_out)
        self.latency.labels(op).observe(seconds)
        if status == 503:
            self.limit_hits.labels("max_concurrent").inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
