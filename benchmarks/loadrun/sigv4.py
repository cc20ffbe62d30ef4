"""AWS Signature Version 4 for the load loop: the per-day signing key and the fixed header lines are
computed once, so signing one request is one SHA-256 of the canonical request plus one HMAC.

The payload is sent as UNSIGNED-PAYLOAD: hashing a 64 MiB body on the client would measure the client.
`selftest()` checks the result against botocore's SigV4Auth on the same request.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
ALGORITHM = "AWS4-HMAC-SHA256"


def uri_encode_path(path: str) -> str:
    """S3 canonical URI: each segment percent-encoded once, '/' kept (S3 does not double-encode)."""
    return quote(path, safe="/-_.~")


def canonical_query(query: dict[str, str]) -> str:
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))


class Signer:
    """Signs path-style S3 requests for one (access key, secret, region, host)."""

    def __init__(self, access_key: str, secret_key: str, region: str, host: str) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.host = host
        self._day = ""
        self._key = b""
        self._scope = ""
        self._second = -1
        self._amz_date = ""

    def _refresh(self, now_s: float) -> None:
        second = int(now_s)
        if second == self._second:
            return
        self._second = second
        self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        day = self._amz_date[:8]
        if day != self._day:
            k = hmac.digest(("AWS4" + self.secret_key).encode(), day.encode(), "sha256")
            for part in (self.region, "s3", "aws4_request"):
                k = hmac.digest(k, part.encode(), "sha256")
            self._day, self._key = day, k
            self._scope = f"{day}/{self.region}/s3/aws4_request"

    def headers(self, method: str, path: str, query: dict[str, str] | None = None,
                extra: dict[str, str] | None = None, now_s: float | None = None) -> dict[str, str]:
        """Headers to add to the request (lower-case names): host, x-amz-date, x-amz-content-sha256,
        authorization. Every name in `extra` is signed too (S3 requires every x-amz-* to be)."""
        self._refresh(time.time() if now_s is None else now_s)
        hdrs = {"host": self.host, "x-amz-content-sha256": UNSIGNED_PAYLOAD, "x-amz-date": self._amz_date}
        if extra:
            hdrs.update((k.lower(), v.strip()) for k, v in extra.items())
        names = sorted(hdrs)
        signed = ";".join(names)
        canonical = "\n".join((
            method, uri_encode_path(path), canonical_query(query) if query else "",
            "".join(f"{n}:{hdrs[n]}\n" for n in names), signed, UNSIGNED_PAYLOAD,
        ))
        to_sign = "\n".join((ALGORITHM, self._amz_date, self._scope,
                             hashlib.sha256(canonical.encode()).hexdigest()))
        sig = hmac.new(self._key, to_sign.encode(), "sha256").hexdigest()
        hdrs["authorization"] = (f"{ALGORITHM} Credential={self.access_key}/{self._scope}, "
                                 f"SignedHeaders={signed}, Signature={sig}")
        return hdrs


def selftest() -> None:
    """Our signature equals botocore's on a PUT with extra signed headers and a GET with a query."""
    import datetime
    from unittest import mock

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials

    now = 1_700_000_000.0
    ours = Signer("AKIDEXAMPLE", "secret/Key+x", "us-east-1", "127.0.0.1:9000")
    cases = [
        ("PUT", "/bkt/dir/key-1.bin", None, {"content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==",
                                             "x-amz-checksum-crc32c": "AAAAAA=="}),
        ("GET", "/bkt", {"list-type": "2", "max-keys": "1000", "continuation-token": "a/b=c+d"}, None),
    ]
    for method, path, query, extra in cases:
        mine = ours.headers(method, path, query, extra, now_s=now)
        # https + payload signing off is the case where botocore, too, signs UNSIGNED-PAYLOAD.
        url = f"https://127.0.0.1:9000{uri_encode_path(path)}"
        if query:
            url += "?" + canonical_query(query)
        req = AWSRequest(method=method, url=url, data=b"", headers={
            k: v for k, v in mine.items() if extra and k in extra})
        req.context["client_config"] = Config(s3={"payload_signing_enabled": False})
        auth = S3SigV4Auth(Credentials("AKIDEXAMPLE", "secret/Key+x"), "s3", "us-east-1")
        fixed = datetime.datetime.fromtimestamp(now, datetime.UTC).replace(tzinfo=None)
        with mock.patch("botocore.auth.datetime.datetime") as dt:
            dt.utcnow.return_value = fixed
            dt.now.return_value = fixed
            auth.add_auth(req)
        theirs = req.headers["Authorization"]
        if theirs != mine["authorization"]:
            raise AssertionError(f"SigV4 mismatch for {method} {path}:\n ours   {mine['authorization']}\n"
                                 f" boto   {theirs}")
