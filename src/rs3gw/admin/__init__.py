"""The operator surface: every HTTP endpoint that is not S3, above both the S3 layer and the cluster.

What it offers:
- ``AdminApi``: the HTTP server's handler. It answers /health, /ready, /metrics and the cluster
  operator API under ``CLUSTER_PREFIX`` (status, nodes, replication, leave; ``DISABLED_MESSAGE``
  with the cluster off) and hands every other request to the S3 app. Endpoints are rows of one
  route table (``admin.api.ROUTES``).
- ``ClusterCollector``: the cluster's Prometheus families, read from a ClusterView on each scrape
  (AdminApi registers it when it is given a view).

It reads the cluster only through ``rs3gw.cluster.view.ClusterView``, and the S3 layer only
through what it is handed (the S3 handler, AccessControl); rs3ctl talks to it over HTTP.
"""
from rs3gw.admin.api import CLUSTER_PREFIX, DISABLED_MESSAGE, AdminApi
from rs3gw.admin.cluster_metrics import ClusterCollector

__all__ = ["CLUSTER_PREFIX", "DISABLED_MESSAGE", "AdminApi", "ClusterCollector"]
