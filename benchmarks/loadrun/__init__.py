"""loadrun: a bounded, self-stopping load client for S3 endpoints (and plain HTTP static files).

Raw HTTP/1.1 keep-alive connections on uvloop, SigV4 with precomputed keys, several client processes
merged into one result. Every run is bounded by an operation budget and a deadline (hard caps in
`runner`). `python -m loadrun --help` from the benchmarks directory; `benchmarks/e2e.py` drives it.
"""

from .runner import Result, Spec, Target, run

__all__ = ["Result", "Spec", "Target", "run"]
