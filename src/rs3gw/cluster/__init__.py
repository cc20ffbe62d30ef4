"""The multi-leader cluster (DESIGN.md section 5; docs/ARCHITECTURE.md).

What it offers to the rest of rs3gw:
- ``ClusterNode`` (node.py): ``await ClusterNode.open(config, local_store)`` builds and starts one
  node; ``node.store`` is the storage.ObjectStore the S3 layer uses in cluster mode,
  ``node.view`` the ClusterView the operator surface reads (view.py), ``node.depart()`` a
  graceful leave, ``node.close()`` a stop.
- ``ClusterConfig`` and ``load_cluster_config`` (config.py): the RS3GW_CLUSTER_* settings.
- ``ClusterView`` and ``NODE_STATES`` (view.py): the operator-facing documents.

Everything else is the cluster's own: the components node.py wires (membership, placement,
transport and typed messages, replication, anti-entropy, tombstone collection, upload forwarding,
hand-off), each importable for tests but not used from outside.
"""
