"""Cluster metrics: the collector's families, as a Prometheus scrape parses them (registered the way
the admin front registers them, from the ClusterView it is given)."""
from __future__ import annotations

import logging

import pytest
from fake_cluster_view import FakeClusterView
from prometheus_client.parser import text_string_to_metric_families

from rs3gw.admin import AdminApi, ClusterCollector
from rs3gw.config import Config
from rs3gw.http import Request, Response
from rs3gw.observability.metrics import Metrics
from rs3gw.s3.access import AccessControl

STATUS_FAMILIES = {"rs3gw_cluster_nodes_total",  # a gauge: the name is kept whole
                   "rs3gw_cluster_messages_rejected"}
REPLICATION_FAMILIES = {"rs3gw_replication_events", "rs3gw_replication_events_failed",
                        "rs3gw_replication_events_pending", "rs3gw_replication_lag_seconds",
                        "rs3gw_replication_lag_avg_seconds", "rs3gw_replication_lag_p95_seconds",
                        "rs3gw_replication_bandwidth_bytes_per_sec"}
CONFLICT_FAMILIES = {"rs3gw_conflicts", "rs3gw_conflicts_resolved"}
CLUSTER_FAMILIES = STATUS_FAMILIES | REPLICATION_FAMILIES | CONFLICT_FAMILIES


def scrape(metrics: Metrics) -> dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]:
    """{family: (type, {(sample name + sorted labels): value})} from the text exposition."""
    body, ctype = metrics.render()
    assert ctype.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        samples = {(("__name__", s.name), *sorted(s.labels.items())): s.value for s in family.samples}
        out[family.name] = (family.type, samples)
    return out


def sample(families: dict, family: str, name: str, **labels: str) -> float:
    return families[family][1][(("__name__", name), *sorted(labels.items()))]


async def no_s3(req: Request) -> Response:
    raise AssertionError("not called")


def attach(metrics: Metrics, view: FakeClusterView) -> AdminApi:
    return AdminApi(no_s3, AccessControl(Config()), region="us-east-1", metrics=metrics, cluster=view)


@pytest.fixture
def attached() -> tuple[Metrics, FakeClusterView]:
    metrics = Metrics()
    view = FakeClusterView()
    attach(metrics, view)
    return metrics, view


def test_every_family_with_its_type_and_values(attached: tuple[Metrics, FakeClusterView]) -> None:
    metrics, _ = attached
    f = scrape(metrics)
    assert CLUSTER_FAMILIES <= f.keys()
    assert f["rs3gw_cluster_nodes_total"][0] == "gauge"
    assert f["rs3gw_cluster_nodes_total"][1] == {
        (("__name__", "rs3gw_cluster_nodes_total"), ("state", s)): v
        for s, v in {"Starting": 0.0, "Joining": 1.0, "Active": 2.0, "Leaving": 0.0, "Failed": 1.0}.items()}
    assert f["rs3gw_replication_events"][0] == "counter"
    assert sample(f, "rs3gw_replication_events", "rs3gw_replication_events_total") == 1234
    assert f["rs3gw_replication_events_failed"][0] == "counter"
    assert sample(f, "rs3gw_replication_events_failed", "rs3gw_replication_events_failed_total") == 2
    for name, value in [("rs3gw_replication_events_pending", 7), ("rs3gw_replication_lag_seconds", 2.5),
                        ("rs3gw_replication_lag_avg_seconds", 0.125),
                        ("rs3gw_replication_lag_p95_seconds", 0.75),
                        ("rs3gw_replication_bandwidth_bytes_per_sec", 10.5 * 1024 * 1024)]:
        assert f[name][0] == "gauge"
        assert sample(f, name, name) == value
    assert f["rs3gw_conflicts"][0] == "counter"
    assert f["rs3gw_conflicts"][1] == {
        (("__name__", "rs3gw_conflicts_total"), ("strategy", "last_write_wins")): 4.0,
        (("__name__", "rs3gw_conflicts_total"), ("strategy", "vector_clock_merge")): 1.0}
    assert sample(f, "rs3gw_conflicts_resolved", "rs3gw_conflicts_resolved_total") == 4
    assert f["rs3gw_cluster_messages_rejected"][0] == "counter"
    assert f["rs3gw_cluster_messages_rejected"][1] == {
        (("__name__", "rs3gw_cluster_messages_rejected_total"), ("reason", r)): v
        for r, v in {"unknown_type": 1.0, "malformed": 3.0, "unsupported_version": 0.0,
                     "bad_reply": 0.0}.items()}


def test_no_double_total_suffix(attached: tuple[Metrics, FakeClusterView]) -> None:
    body, _ = attached[0].render()
    assert b"_total_total" not in body
    assert b"\nrs3gw_replication_events_total 1234.0\n" in body


def test_each_scrape_reads_the_view_again(attached: tuple[Metrics, FakeClusterView]) -> None:
    metrics, view = attached
    view.replication_doc["events_replicated"] = 2000
    view.status_doc["members"]["Active"] = 3
    f = scrape(metrics)
    assert sample(f, "rs3gw_replication_events", "rs3gw_replication_events_total") == 2000
    assert sample(f, "rs3gw_cluster_nodes_total", "rs3gw_cluster_nodes_total", state="Active") == 3
    assert view.calls.count("replication") == 1     # attach did not read the view; the scrape did


def test_registration_does_not_call_the_view() -> None:
    view = FakeClusterView()
    attach(Metrics(), view)
    assert view.calls == []


def test_no_conflicts_yet_still_has_a_series(attached: tuple[Metrics, FakeClusterView]) -> None:
    metrics, view = attached
    view.conflicts_doc.update(conflicts_total=0, resolved_total=0, by_strategy={})
    f = scrape(metrics)
    assert f["rs3gw_conflicts"][1] == {
        (("__name__", "rs3gw_conflicts_total"), ("strategy", "last_write_wins")): 0.0}
    assert sample(f, "rs3gw_conflicts_resolved", "rs3gw_conflicts_resolved_total") == 0


@pytest.mark.parametrize("method,missing", [
    ("status", STATUS_FAMILIES), ("replication", REPLICATION_FAMILIES), ("conflicts", CONFLICT_FAMILIES),
])
def test_a_failing_method_drops_only_its_families(attached: tuple[Metrics, FakeClusterView],
                                                  caplog: pytest.LogCaptureFixture, method: str,
                                                  missing: set[str]) -> None:
    metrics, view = attached
    view.failing = {method}
    with caplog.at_level(logging.INFO, logger="rs3gw.admin"):
        for _ in range(3):
            f = scrape(metrics)
            assert not missing & f.keys()
            assert CLUSTER_FAMILIES - missing <= f.keys()
            assert "rs3gw_requests" in f          # the process's own metrics are untouched
        failures = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(failures) == 1 and f"ClusterView.{method}()" in failures[0].getMessage()
        view.failing = set()
        assert missing <= scrape(metrics).keys()
        view.failing = {method}
        scrape(metrics)
    # Logged again after it had recovered: once per failing streak, not once per process.
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


def test_a_malformed_document_is_a_failure_not_half_a_family(
        attached: tuple[Metrics, FakeClusterView]) -> None:
    metrics, view = attached
    del view.replication_doc["lag_seconds"]
    f = scrape(metrics)
    # The events families come before the lag in the builder; none of them may be emitted alone.
    assert not REPLICATION_FAMILIES & f.keys()
    assert STATUS_FAMILIES | CONFLICT_FAMILIES <= f.keys()


def test_describe_names_the_families_collect_yields() -> None:
    collector = ClusterCollector(FakeClusterView())
    described = {(m.name, m.type) for m in collector.describe()}
    collected = {(m.name, m.type) for m in collector.collect()}
    assert described == collected


def test_without_a_cluster_there_are_no_cluster_families() -> None:
    metrics = Metrics()
    AdminApi(no_s3, AccessControl(Config()), region="us-east-1", metrics=metrics)
    assert not CLUSTER_FAMILIES & scrape(metrics).keys()
