"""Command-line entry points: ``rs3gw`` (server.py ``main``: configuration, one process or a
supervisor of workers) and ``rs3ctl`` (rs3ctl.py ``main``: the operator's client of the admin API,
standard library only)."""
