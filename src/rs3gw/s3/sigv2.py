"""AWS Signature Version 2 verification for S3 requests (``Authorization: AWS`` header and presigned URLs).

Legacy clients still sign this way: s3cmd with ``signature_v2``, and botocore's
``generate_presigned_url`` unless the client is configured for ``s3v4``. The string to sign is
rebuilt exactly as botocore's ``HmacV1Auth`` builds it: the path is taken as received (still
percent-encoded), sub-resource values are URL-decoded, x-amz-* header values are only trimmed.
"""
from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Callable
from operator import itemgetter
from urllib.parse import unquote

from .errors import S3Error
from .sigv4 import (
    MAX_SKEW_SECONDS,
    AuthResult,
    Credentials,
    iso8601_seconds,
    parse_amz_date,
    parse_http_date,
)

# Query parameters that are part of the signed resource: botocore's HmacV1Auth.QSAOfInterest.
SUBRESOURCES = frozenset({
    "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "inventory", "lifecycle",
    "location", "logging", "metrics", "notification", "object-lock", "partNumber", "policy",
    "replication", "requestPayment", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "response-content-language", "response-content-type",
    "response-expires", "restore", "select", "select-type", "storageClass", "tagging", "torrent",
    "uploadId", "uploads", "versionId", "versioning", "versions", "website",
})

_MALFORMED_HEADER = "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature"
_QUERY_REQUIRED = "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"


def is_v2(headers: dict[str, str], raw_query: str) -> bool:
    """True when the request carries SigV2 credentials (header or query string)."""
    authorization = headers.get("authorization")
    if authorization is not None and authorization.startswith("AWS "):
        return True
    # Cheap substring test first: this runs on every request and almost none are presigned V2.
    if not raw_query or "Signature" not in raw_query:
        return False
    names = {piece.partition("=")[0] for piece in raw_query.split("&")}
    return "AWSAccessKeyId" in names and "Signature" in names


def _split_query(raw_query: str) -> list[tuple[str, str | None]]:
    """(raw name, raw value or None when there is no '=') per parameter, in wire order."""
    out: list[tuple[str, str | None]] = []
    if not raw_query:
        return out
    for piece in raw_query.split("&"):
        if not piece:
            continue
        name, eq, value = piece.partition("=")
        out.append((name, value if eq else None))
    return out


def _canonical_resource(path: str, params: list[tuple[str, str | None]]) -> str:
    # Stable sort by name only, and "name" vs "name=" kept as sent: byte-identical to botocore.
    subs = sorted(((n, v) for n, v in params if n in SUBRESOURCES), key=itemgetter(0))
    if not subs:
        return path
    return path + "?" + "&".join(n if v is None else f"{n}={unquote(v)}" for n, v in subs)


def _canonical_amz_headers(amz: dict[str, str]) -> str:
    # The HTTP layer already joined repeated headers with ','; inner whitespace is signed as is.
    return "".join(f"{name}:{amz[name].strip()}\n" for name in sorted(amz))


def _string_to_sign(method: str, headers: dict[str, str], date_line: str, amz: dict[str, str],
                    resource: str) -> str:
    return "\n".join((method, headers.get("content-md5", "").strip(),
                      headers.get("content-type", "").strip(), date_line,
                      _canonical_amz_headers(amz) + resource))


def _sign(secret: str, string_to_sign: str) -> str:
    return base64.b64encode(hmac.digest(secret.encode(), string_to_sign.encode(), "sha1")).decode()


def _resource_paths(raw_path: str, virtual_host_bucket: str | None) -> list[str]:
    path = raw_path or "/"
    if virtual_host_bucket:
        return ["/" + virtual_host_bucket + path]
    # Path-style bucket requests arrive as "/bucket" but botocore signs "/bucket/" (s3cmd does too);
    # both name the same resource, so either signature is accepted.
    if path.count("/") == 1 and len(path) > 1:
        return [path, path + "/"]
    return [path]


def _lookup(lookup: Callable[[str], Credentials | None], access_key: str) -> Credentials:
    creds = lookup(access_key)
    if creds is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    return creds


def _check_signature(creds: Credentials, provided: str, method: str, headers: dict[str, str],
                     date_line: str, amz: dict[str, str], paths: list[str],
                     params: list[tuple[str, str | None]]) -> None:
    provided_bytes = provided.encode("utf-8", "replace")
    first: str | None = None
    for path in paths:
        sts = _string_to_sign(method, headers, date_line, amz, _canonical_resource(path, params))
        if hmac.compare_digest(_sign(creds.secret_key, sts).encode(), provided_bytes):
            return
        if first is None:
            first = sts
    assert first is not None
    raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=creds.access_key, StringToSign=first,
                  SignatureProvided=provided, StringToSignBytes=first.encode().hex(" "))


def verify_request_v2(method: str, raw_path: str, raw_query: str, headers: dict[str, str],
                      lookup: Callable[[str], Credentials | None], now: float | None = None,
                      virtual_host_bucket: str | None = None) -> AuthResult:
    """Authenticate one SigV2 request; raise S3Error on any failure, return the identity on success.

    ``raw_path`` is the path as received (percent-encoded); ``virtual_host_bucket`` is the bucket
    taken from the Host header for virtual-hosted-style requests.
    """
    if now is None:
        now = time.time()
    params = _split_query(raw_query)
    qmap: dict[str, str] = {}
    for name, value in params:
        qmap.setdefault(name, unquote(value or ""))
    authorization = headers.get("authorization")
    query_auth = "AWSAccessKeyId" in qmap or "Signature" in qmap
    if (authorization is not None and (query_auth or "X-Amz-Algorithm" in qmap)) or (
            query_auth and "X-Amz-Algorithm" in qmap):
        raise S3Error("InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm "
                      "query parameter, Signature query string parameter or the Authorization header "
                      "should be specified", ArgumentName="Authorization",
                      ArgumentValue=authorization or "")
    paths = _resource_paths(raw_path, virtual_host_bucket)
    if authorization is not None:
        creds = _verify_header(method, headers, authorization, params, paths, lookup, now)
    else:
        creds = _verify_query(method, headers, params, qmap, paths, lookup, now)
    return AuthResult(creds=creds, content_sha256=None, signing_key=None, seed_signature=None,
                      amz_date=None, scope=None, presigned=authorization is None)


def _verify_header(method: str, headers: dict[str, str], authorization: str,
                   params: list[tuple[str, str | None]], paths: list[str],
                   lookup: Callable[[str], Credentials | None], now: float) -> Credentials:
    if not authorization.startswith("AWS "):
        raise S3Error("InvalidArgument", "Unsupported Authorization Type", ArgumentName="Authorization",
                      ArgumentValue=authorization)
    access_key, colon, provided = authorization[4:].strip().partition(":")
    if not colon or not access_key or not provided:
        raise S3Error("InvalidArgument", _MALFORMED_HEADER, ArgumentName="Authorization",
                      ArgumentValue=authorization)

    amz_date = headers.get("x-amz-date")
    sent_date = amz_date if amz_date is not None else headers.get("date")
    ts: float | None = None
    if sent_date is not None:
        # V2 clients send an RFC 1123 date even in x-amz-date; accept the V4 form there too.
        ts = parse_http_date(sent_date)
        if ts is None and amz_date is not None:
            ts = parse_amz_date(amz_date.strip())
    if ts is None or sent_date is None:
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    creds = _lookup(lookup, access_key)
    if abs(now - ts) > MAX_SKEW_SECONDS:
        raise S3Error("RequestTimeTooSkewed", RequestTime=sent_date, ServerTime=iso8601_seconds(now),
                      MaxAllowedSkewMilliseconds=str(MAX_SKEW_SECONDS * 1000))

    # With x-amz-date present the Date line is empty: x-amz-date is signed among the amz headers.
    date_line = "" if amz_date is not None else sent_date.strip()
    amz = {name: value for name, value in headers.items() if name.startswith("x-amz-")}
    _check_signature(creds, provided, method, headers, date_line, amz, paths, params)
    return creds


def _verify_query(method: str, headers: dict[str, str], params: list[tuple[str, str | None]],
                  qmap: dict[str, str], paths: list[str],
                  lookup: Callable[[str], Credentials | None], now: float) -> Credentials:
    access_key = qmap.get("AWSAccessKeyId", "")
    provided = qmap.get("Signature", "")
    expires_text = qmap.get("Expires", "")
    if not access_key or not provided or not expires_text:
        raise S3Error("AccessDenied", _QUERY_REQUIRED)
    # The length cap keeps int() away from its digit limit; 12 digits already reach year 33658.
    if not expires_text.isascii() or not expires_text.isdigit() or len(expires_text) > 12:
        raise S3Error("AccessDenied", f"Invalid date (should be seconds since epoch): {expires_text}")
    creds = _lookup(lookup, access_key)
    expires = int(expires_text)
    if now > expires:
        raise S3Error("AccessDenied", "Request has expired", Expires=iso8601_seconds(expires),
                      ServerTime=iso8601_seconds(now))

    amz = {name: value for name, value in headers.items() if name.startswith("x-amz-")}
    # botocore moves x-amz-* headers (x-amz-security-token, x-amz-acl...) into the presigned query
    # after signing them as headers; a header actually sent takes precedence.
    for name, value in params:
        lname = unquote(name).lower()
        if lname.startswith("x-amz-"):
            amz.setdefault(lname, unquote(value or ""))
    _check_signature(creds, provided, method, headers, expires_text, amz, paths, params)
    return creds
