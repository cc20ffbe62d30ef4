"""The S3 listener's TLS context (RS3GW_TLS_CERT / RS3GW_TLS_KEY)."""
from __future__ import annotations

import ssl

from .config import Config


def ssl_context(cfg: Config) -> ssl.SSLContext | None:
    """None without TLS files; raises OSError or ssl.SSLError for files that cannot be used."""
    if cfg.tls_cert is None or cfg.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
    return ctx
