"""rs3gw: an S3-compatible object storage gateway."""

__version__ = "0.1.0"
