"""Client-side SigV4 signing for rs3ctl's few requests (no body, no query string).

Built from the same canonical-request and key-derivation functions the server verifies with
(rs3gw.s3.sigv4), so the two sides cannot drift apart.
"""
from __future__ import annotations

import time

from ..s3 import sigv4

SIGNED_HEADERS = ["host", "x-amz-content-sha256", "x-amz-date"]


def sign_headers(method: str, path: str, host: str, access_key: str, secret_key: str,
                 region: str, now: float | None = None) -> dict[str, str]:
    """The headers that authenticate an empty-bodied request to ``path`` on ``host``.

    ``host`` is the Host header exactly as it will be sent (``name:port`` when the port is not
    the scheme's default); the server signs it as received.
    """
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    headers = {"host": host, "x-amz-content-sha256": sigv4.EMPTY_SHA256, "x-amz-date": amz_date}
    canonical = sigv4.canonical_request(method, path, "", headers, SIGNED_HEADERS, sigv4.EMPTY_SHA256)
    key = sigv4.signing_key(secret_key, amz_date[:8], region)
    signature = sigv4.sign(key, sigv4.string_to_sign(amz_date, scope, canonical))
    headers["authorization"] = (f"{sigv4.ALGORITHM} Credential={access_key}/{scope}, "
                                f"SignedHeaders={';'.join(SIGNED_HEADERS)}, Signature={signature}")
    return headers
