"""rs3gw: an S3-compatible object storage gateway.

Packages, from the top down (docs/ARCHITECTURE.md; nothing imports what is above it): cli (the
``rs3gw`` and ``rs3ctl`` commands), workers and server (processes), admin (the operator
surface), s3 (the S3 protocol), cluster (the multi-leader cluster), storage (the embedded engine),
http and observability, _core (the compiled core). ``__version__`` is the one version string.
"""

__version__ = "0.1.0"
