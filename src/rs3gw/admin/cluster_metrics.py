"""Cluster metrics: a Prometheus collector that reads a ClusterView on every scrape.

Families (counters gain ``_total`` in the exposition; prometheus_client appends it):

    rs3gw_cluster_nodes_total{state}               gauge, members by state, every state listed
    rs3gw_replication_events_total                 counter, events replicated
    rs3gw_replication_events_failed_total          counter
    rs3gw_replication_events_pending               gauge
    rs3gw_replication_lag_seconds                  gauge, the largest lag
    rs3gw_replication_lag_avg_seconds              gauge
    rs3gw_replication_lag_p95_seconds              gauge
    rs3gw_replication_bandwidth_bytes_per_sec      gauge
    rs3gw_conflicts_total{strategy}                counter
    rs3gw_conflicts_resolved_total                 counter
    rs3gw_cluster_messages_rejected_total{reason}  counter, node-to-node messages refused
                                                   (unknown_type, malformed, unsupported_version,
                                                   bad_reply)

The lag statistics are separate gauges rather than a ``quantile`` label, which Prometheus reserves
for summaries. ``rs3gw_conflicts_total`` has one sample per strategy in ``by_strategy``; before any
conflict it has one zero sample for the configured strategy, so the series exists from the start.
A view method that raises (or answers a malformed document) drops only its own families from that
scrape; the failure is logged once until the method answers again.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..cluster.view import MESSAGE_REJECTIONS, NODE_STATES, ClusterView

log = logging.getLogger("rs3gw.admin")


def _members(status: dict[str, Any]) -> Iterator[Metric]:
    members = status["members"]
    nodes = GaugeMetricFamily("rs3gw_cluster_nodes_total",
                              "Cluster members by state, as this node sees them", labels=["state"])
    for state in NODE_STATES:
        nodes.add_metric([state], float(members.get(state, 0)))
    yield nodes
    rejected = status.get("messages_rejected", {})
    family = CounterMetricFamily("rs3gw_cluster_messages_rejected",
                                 "Node-to-node messages this node refused, by reason",
                                 labels=["reason"])
    for reason in MESSAGE_REJECTIONS:
        family.add_metric([reason], float(rejected.get(reason, 0)))
    yield family


def _replication(rep: dict[str, Any]) -> Iterator[Metric]:
    lag = rep["lag_seconds"]
    yield CounterMetricFamily("rs3gw_replication_events", "Replication events delivered",
                              value=float(rep["events_replicated"]))
    yield CounterMetricFamily("rs3gw_replication_events_failed",
                              "Replication deliveries that failed", value=float(rep["events_failed"]))
    yield GaugeMetricFamily("rs3gw_replication_events_pending", "Replication events waiting",
                            value=float(rep["events_pending"]))
    yield GaugeMetricFamily("rs3gw_replication_lag_seconds",
                            "Largest replication lag (write to delivery)", value=float(lag["max"]))
    yield GaugeMetricFamily("rs3gw_replication_lag_avg_seconds", "Average replication lag",
                            value=float(lag["avg"]))
    yield GaugeMetricFamily("rs3gw_replication_lag_p95_seconds", "95th percentile replication lag",
                            value=float(lag["p95"]))
    yield GaugeMetricFamily("rs3gw_replication_bandwidth_bytes_per_sec",
                            "Replication throughput to other nodes",
                            value=float(rep["bandwidth_bytes_per_sec"]))


def _conflicts(doc: dict[str, Any]) -> Iterator[Metric]:
    by_strategy = doc["by_strategy"] or {doc["strategy"]: doc["conflicts_total"]}
    conflicts = CounterMetricFamily("rs3gw_conflicts", "Write conflicts, by resolution strategy",
                                    labels=["strategy"])
    for strategy, count in sorted(by_strategy.items()):
        conflicts.add_metric([str(strategy)], float(count))
    yield conflicts
    yield CounterMetricFamily("rs3gw_conflicts_resolved", "Write conflicts resolved",
                              value=float(doc["resolved_total"]))


# (view method, family builder); each pair is fetched and built on its own, so one failing
# method costs only its own families.
_SOURCES: tuple[tuple[str, Callable[[Any], Iterator[Metric]]], ...] = (
    ("status", _members),
    ("replication", _replication),
    ("conflicts", _conflicts),
)


class ClusterCollector:
    """A custom collector (prometheus_client calls collect() on every scrape)."""

    def __init__(self, view: ClusterView) -> None:
        self.view = view
        self._failing: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        for method, build in _SOURCES:
            try:
                # Built in full before yielding: a malformed document yields nothing half-done.
                families = list(build(getattr(self.view, method)()))
            except Exception:
                if method not in self._failing:
                    self._failing.add(method)
                    log.exception("cluster metrics: ClusterView.%s() failed; its metrics are "
                                  "left out until it answers again", method)
                continue
            if method in self._failing:
                self._failing.discard(method)
                log.info("cluster metrics: ClusterView.%s() answers again", method)
            yield from families

    def describe(self) -> Iterator[Metric]:
        """The families without samples: lets the registry check names without calling the view."""
        yield GaugeMetricFamily("rs3gw_cluster_nodes_total", "", labels=["state"])
        yield CounterMetricFamily("rs3gw_cluster_messages_rejected", "", labels=["reason"])
        yield CounterMetricFamily("rs3gw_replication_events", "")
        yield CounterMetricFamily("rs3gw_replication_events_failed", "")
        for name in ("rs3gw_replication_events_pending", "rs3gw_replication_lag_seconds",
                     "rs3gw_replication_lag_avg_seconds", "rs3gw_replication_lag_p95_seconds",
                     "rs3gw_replication_bandwidth_bytes_per_sec"):
            yield GaugeMetricFamily(name, "")
        yield CounterMetricFamily("rs3gw_conflicts", "", labels=["strategy"])
        yield CounterMetricFamily("rs3gw_conflicts_resolved", "")
