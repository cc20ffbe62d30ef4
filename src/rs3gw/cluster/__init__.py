"""Cluster layer: settings, node-to-node transport, SWIM membership, placement (DESIGN.md §5)."""
