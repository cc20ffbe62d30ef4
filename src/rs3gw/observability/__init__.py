"""Prometheus metrics and the event-loop guard (the endpoints that serve them: rs3gw.admin)."""
