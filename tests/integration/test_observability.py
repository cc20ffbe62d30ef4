"""Health, readiness and Prometheus metrics endpoints."""
from __future__ import annotations

import re
from typing import Any

from servers import ServerProcess, sign_headers, wait_for

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def _samples(text: str) -> list[tuple[str, str, float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        out.append((m.group(1), m.group(2) or "", float(m.group(3))))
    return out


def test_health_and_ready(any_server: ServerProcess) -> None:
    for path in ("/health", "/ready"):
        status, _, _ = any_server.raw("GET", path)
        assert status == 200, path


def test_metrics_count_requests(http_server: ServerProcess, s3: Any, bucket: str) -> None:
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"m{i}", Body=b"metric")
        s3.get_object(Bucket=bucket, Key=f"m{i}")["Body"].read()
    status, headers, body = http_server.raw("GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert "# TYPE" in text and "# HELP" in text
    samples = _samples(text)
    request_counters = [(n, labels, v) for n, labels, v in samples
                        if "request" in n and n.endswith("_total")]
    assert request_counters, "no *request*_total counter in /metrics"
    assert sum(v for _, _, v in request_counters) >= 10
    assert all(n.startswith("rs3gw_") for n, _, _ in request_counters)

    # The counters move with traffic.
    before = sum(v for _, _, v in request_counters)
    for i in range(3):
        s3.head_object(Bucket=bucket, Key=f"m{i}")
    after = sum(v for n, labels, v in _samples(http_server.raw("GET", "/metrics")[2].decode())
                if "request" in n and n.endswith("_total"))
    assert after >= before + 3


def _in_flight(server: ServerProcess) -> float:
    samples = _samples(server.raw("GET", "/metrics")[2].decode())
    values = [v for n, _, v in samples if n == "rs3gw_requests_in_flight"]
    assert len(values) == 1, values
    return values[0]


def test_in_flight_counts_a_download_in_progress(http_server: ServerProcess, s3: Any,
                                                bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="slow", Body=b"x" * (48 * 1024 * 1024))
    conn = http_server.connection()
    try:
        path = f"/{bucket}/slow"
        conn.request("GET", path, headers=sign_headers(http_server, "GET", path,
                                                       user=http_server.root_user))
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read(1000)
        # The download and the scrape; with several workers the other one's count arrives
        # within a second (rs3gw.server.IN_FLIGHT_PUBLISH_S).
        wait_for(lambda: _in_flight(http_server) == 2, 10, "in-flight 2 (download + scrape)")
    finally:
        conn.close()
    wait_for(lambda: _in_flight(http_server) == 1, 10, "in-flight back to the scrape alone")
