"""AWS Signature Version 4 verification for S3 requests (Authorization header and presigned URLs).

The canonical request is rebuilt from the request exactly as received on the wire: S3 encodes the
path once and never normalises it, and the Host header is signed as sent (port included).
The literal payload sha256 is not checked here: the body has not been read when the router
authenticates (before ``100 Continue``); the caller hashes the body and raises
``XAmzContentSHA256Mismatch`` itself.
"""
from __future__ import annotations

import calendar
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import mktime_tz, parsedate_tz
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

from .errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
PAYLOAD_LITERALS = frozenset({UNSIGNED_PAYLOAD, STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER,
                              STREAMING_UNSIGNED_TRAILER})
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

MAX_SKEW_SECONDS = 15 * 60
MAX_PRESIGN_EXPIRES_SECONDS = 7 * 24 * 3600
SIGNING_KEY_CACHE_ENTRIES_MAX = 1024

_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_SIGNATURE_HEX = re.compile(r"[0-9a-fA-F]{64}")
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
# Paths and query pieces made only of unreserved characters (and '/') are already canonical;
# most requests take this fast path and skip the decode/re-encode round trip.
_PATH_CANONICAL = re.compile(r"[A-Za-z0-9\-._~/]*")
_QUERY_PIECE_CANONICAL = re.compile(r"[A-Za-z0-9\-._~]*")


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    user_id: str          # canonical user id
    display_name: str


@dataclass
class AuthResult:
    creds: Credentials | None        # None = anonymous request (no auth at all)
    content_sha256: str | None       # x-amz-content-sha256 value as sent
    signing_key: bytes | None
    seed_signature: str | None       # the request signature (hex)
    amz_date: str | None             # e.g. 20130524T000000Z
    scope: str | None                # e.g. 20130524/us-east-1/s3/aws4_request
    presigned: bool = False


@functools.lru_cache(maxsize=SIGNING_KEY_CACHE_ENTRIES_MAX)
def _derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
    key = hmac.digest(key, region.encode(), "sha256")
    key = hmac.digest(key, service.encode(), "sha256")
    return hmac.digest(key, b"aws4_request", "sha256")


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    """The derived SigV4 key for ``date`` (YYYYMMDD); cached, it is needed on every request."""
    return _derive_signing_key(secret, date, region, service)


def sign(key: bytes, string_to_sign: str) -> str:
    return hmac.digest(key, string_to_sign.encode(), "sha256").hex()


def _encode_piece(raw: str) -> str:
    """Decode percent-escapes once and re-encode with only A-Za-z0-9-._~ left bare."""
    if _QUERY_PIECE_CANONICAL.fullmatch(raw):
        return raw
    # quote_from_bytes keeps exactly the unreserved set bare with safe="" and emits upper-case hex.
    return quote_from_bytes(unquote_to_bytes(raw), safe="")


def canonical_uri(raw_path: str) -> str:
    if not raw_path:
        return "/"
    if _PATH_CANONICAL.fullmatch(raw_path):
        return raw_path
    # Split before decoding so an encoded '/' (%2F) stays inside its segment. No '.'/'..'/'//'
    # normalisation: S3 keys may contain them literally.
    return "/".join(_encode_piece(seg) for seg in raw_path.split("/"))


def _decode(raw: str) -> str:
    return unquote_to_bytes(raw).decode("utf-8", "surrogateescape")


def parse_query(raw_query: str) -> list[tuple[str, str, str, str]]:
    """(decoded name, decoded value, canonical name, canonical value) for each parameter."""
    out: list[tuple[str, str, str, str]] = []
    if not raw_query:
        return out
    for piece in raw_query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        out.append((_decode(name), _decode(value), _encode_piece(name), _encode_piece(value)))
    return out


def canonical_query(params: list[tuple[str, str, str, str]], exclude: str | None = None) -> str:
    pairs = sorted((cn, cv) for n, _v, cn, cv in params if n != exclude)
    return "&".join(f"{n}={v}" for n, v in pairs)


def canonical_headers(signed: list[str], headers: dict[str, str]) -> str:
    # Values trimmed with inner whitespace runs collapsed to one space, as every SDK signs them.
    return "".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed)


def canonical_request(method: str, raw_path: str, query: str, headers: dict[str, str],
                      signed: list[str], payload_hash: str) -> str:
    return "\n".join((method, canonical_uri(raw_path), query, canonical_headers(signed, headers),
                      ";".join(signed), payload_hash))


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join((ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()))


def iso8601_seconds(ts: float) -> str:
    """ServerTime / Expires in error documents: 2024-05-01T12:00:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@functools.lru_cache(maxsize=256)   # one per second of request dates in use
def _amz_date(ts: float) -> str:
    return time.strftime(_AMZ_DATE_FORMAT, time.gmtime(ts))


@functools.lru_cache(maxsize=256)   # clients send the same second's date on many requests
def parse_amz_date(value: str) -> float | None:
    """x-amz-date (20240501T120000Z) as epoch seconds; None if it is not one."""
    if not _AMZ_DATE_RE.fullmatch(value):
        return None
    try:
        return float(calendar.timegm(time.strptime(value, _AMZ_DATE_FORMAT)))
    except ValueError:
        return None


def parse_http_date(value: str) -> float | None:
    """A Date header (Tue, 01 May 2024 12:00:00 GMT, any zone) as epoch seconds; None if not one."""
    parsed = parsedate_tz(value)
    if parsed is None:
        return None
    try:
        return float(mktime_tz(parsed))
    except (OverflowError, ValueError):
        return None


@dataclass(frozen=True)
class _Scope:
    access_key: str
    date: str
    region: str
    service: str
    terminator: str

    @property
    def text(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


def _parse_credential(value: str) -> _Scope | None:
    parts = value.rsplit("/", 4)
    if len(parts) != 5 or not all(parts):
        return None
    return _Scope(*parts)


_V2_UNSUPPORTED = ("The authorization mechanism you have provided is not supported. "
                   "Please use AWS4-HMAC-SHA256.")


def verify_request(method: str, raw_path: str, raw_query: str, headers: dict[str, str],
                   lookup: Callable[[str], Credentials | None], region: str,
                   now: float | None = None) -> AuthResult:
    """Authenticate one request; raise S3Error on any failure, return the identity on success."""
    if now is None:
        now = time.time()
    params = parse_query(raw_query) if raw_query else []
    qmap: dict[str, str] = {}
    for name, value, _cn, _cv in params:
        qmap.setdefault(name, value)
    authorization = headers.get("authorization")
    if authorization is not None and "X-Amz-Algorithm" in qmap:
        raise S3Error("InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm "
                      "query parameter, Signature query string parameter or the Authorization header "
                      "should be specified", ArgumentName="Authorization", ArgumentValue=authorization)
    if authorization is not None:
        return _verify_header(method, raw_path, params, headers, authorization, lookup, region, now)
    if "X-Amz-Algorithm" in qmap:
        return _verify_presigned(method, raw_path, params, qmap, headers, lookup, region, now)
    if "AWSAccessKeyId" in qmap and "Signature" in qmap:
        raise S3Error("InvalidRequest", _V2_UNSUPPORTED)
    return AuthResult(creds=None, content_sha256=headers.get("x-amz-content-sha256"),
                      signing_key=None, seed_signature=None, amz_date=None, scope=None)


def _check_payload_hash(value: str) -> None:
    if value in PAYLOAD_LITERALS or _SHA256_HEX.fullmatch(value):
        return
    raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                  "STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
                  "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.",
                  ArgumentName="x-amz-content-sha256", ArgumentValue=value)


def _parse_authorization(value: str) -> tuple[_Scope, list[str], str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm == "AWS":
        raise S3Error("InvalidRequest", _V2_UNSUPPORTED)
    if algorithm != ALGORITHM:
        if algorithm.startswith("AWS4-"):
            raise S3Error("InvalidRequest", _V2_UNSUPPORTED)
        raise S3Error("InvalidArgument", "Unsupported Authorization Type",
                      ArgumentName="Authorization", ArgumentValue=value)
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, eq, val = item.strip().partition("=")
        if not eq:
            raise S3Error("AuthorizationHeaderMalformed",
                          f"The authorization header is malformed; the authorization component "
                          f"\"{item.strip()}\" is malformed.")
        fields[key.strip()] = val.strip()
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise S3Error("AuthorizationHeaderMalformed",
                      f"The authorization header is malformed; missing {missing[0]}.")
    scope = _parse_credential(fields["Credential"])
    if scope is None:
        raise S3Error("AuthorizationHeaderMalformed",
                      "The authorization header is malformed; the Credential is mal-formed; expecting "
                      "\"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".")
    signature = fields["Signature"]
    if not _SIGNATURE_HEX.fullmatch(signature):
        raise S3Error("AuthorizationHeaderMalformed",
                      "The authorization header is malformed; the Signature is not 64 hex digits.")
    return scope, [h.strip().lower() for h in fields["SignedHeaders"].split(";")], signature.lower()


def _check_scope(scope: _Scope, amz_date: str, region: str, code: str, prefix: str) -> None:
    if scope.date != amz_date[:8] or not scope.date.isdigit():
        raise S3Error(code, f"{prefix}Invalid credential date \"{scope.date}\". This date is not the "
                      f"same as X-Amz-Date: \"{amz_date[:8]}\".")
    if scope.region != region:
        raise S3Error(code, f"{prefix}the region '{scope.region}' is wrong; expecting '{region}'",
                      Region=region)
    if scope.service != "s3":
        raise S3Error(code, f"{prefix}incorrect service \"{scope.service}\". This endpoint belongs to "
                      "\"s3\".")
    if scope.terminator != "aws4_request":
        raise S3Error(code, f"{prefix}incorrect terminal \"{scope.terminator}\". This endpoint uses "
                      "\"aws4_request\".")


def _check_signed_headers(signed: list[str], headers: dict[str, str], require_all_amz: bool) -> None:
    if any(not name for name in signed):
        raise S3Error("AuthorizationHeaderMalformed",
                      "The authorization header is malformed; SignedHeaders contains an empty name.")
    present = set(signed)
    unsigned = [] if "host" in present else ["host"]
    if require_all_amz:
        # An unsigned x-amz-* header could be injected in transit (x-amz-copy-source, x-amz-acl...).
        unsigned += sorted(h for h in headers if h.startswith("x-amz-") and h not in present)
    if unsigned:
        raise S3Error("AccessDenied", "There were headers present in the request which were not signed",
                      HeadersNotSigned=", ".join(unsigned))


def _mismatch(access_key: str, sts: str, canonical: str, provided: str) -> S3Error:
    return S3Error("SignatureDoesNotMatch", AWSAccessKeyId=access_key, StringToSign=sts,
                   SignatureProvided=provided, StringToSignBytes=sts.encode().hex(" "),
                   CanonicalRequest=canonical, CanonicalRequestBytes=canonical.encode().hex(" "))


def _lookup(lookup: Callable[[str], Credentials | None], access_key: str) -> Credentials:
    creds = lookup(access_key)
    if creds is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    return creds


def _verify_header(method: str, raw_path: str, params: list[tuple[str, str, str, str]],
                   headers: dict[str, str], authorization: str,
                   lookup: Callable[[str], Credentials | None], region: str, now: float) -> AuthResult:
    scope, signed, provided = _parse_authorization(authorization)

    sent_date = headers.get("x-amz-date")
    if sent_date is not None:
        ts = parse_amz_date(sent_date.strip())
    else:
        sent_date = headers.get("date")
        ts = parse_http_date(sent_date) if sent_date is not None else None
    if ts is None or sent_date is None:
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    amz_date = _amz_date(ts)

    _check_scope(scope, amz_date, region, "AuthorizationHeaderMalformed",
                 "The authorization header is malformed; ")
    _check_signed_headers(signed, headers, require_all_amz=True)
    creds = _lookup(lookup, scope.access_key)
    if abs(now - ts) > MAX_SKEW_SECONDS:
        raise S3Error("RequestTimeTooSkewed", RequestTime=sent_date, ServerTime=iso8601_seconds(now),
                      MaxAllowedSkewMilliseconds=str(MAX_SKEW_SECONDS * 1000))

    content_sha256 = headers.get("x-amz-content-sha256")
    if content_sha256 is None:
        raise S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
    _check_payload_hash(content_sha256)

    canonical = canonical_request(method, raw_path, canonical_query(params), headers, signed,
                                  content_sha256)
    sts = string_to_sign(amz_date, scope.text, canonical)
    key = signing_key(creds.secret_key, scope.date, scope.region, scope.service)
    expected = sign(key, sts)
    if not hmac.compare_digest(expected, provided):
        raise _mismatch(scope.access_key, sts, canonical, provided)
    return AuthResult(creds=creds, content_sha256=content_sha256, signing_key=key,
                      seed_signature=expected, amz_date=amz_date, scope=scope.text)


_PRESIGN_REQUIRED = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date",
                     "X-Amz-SignedHeaders", "X-Amz-Expires")


def _verify_presigned(method: str, raw_path: str, params: list[tuple[str, str, str, str]],
                      qmap: dict[str, str], headers: dict[str, str],
                      lookup: Callable[[str], Credentials | None], region: str,
                      now: float) -> AuthResult:
    code = "AuthorizationQueryParametersError"
    if any(not qmap.get(name) for name in _PRESIGN_REQUIRED):
        raise S3Error(code, "Query-string authentication version 4 requires the X-Amz-Algorithm, "
                      "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
                      "X-Amz-Expires parameters.")
    if qmap["X-Amz-Algorithm"] != ALGORITHM:
        raise S3Error(code, "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
    scope = _parse_credential(qmap["X-Amz-Credential"])
    if scope is None:
        raise S3Error(code, "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; "
                      "expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".")
    amz_date = qmap["X-Amz-Date"]
    ts = parse_amz_date(amz_date)
    if ts is None:
        raise S3Error(code, "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    expires_text = qmap["X-Amz-Expires"]
    if not expires_text.isdigit():
        raise S3Error(code, "X-Amz-Expires should be a number")
    expires = int(expires_text)
    if expires < 1:
        raise S3Error(code, "X-Amz-Expires must be non-negative")
    if expires > MAX_PRESIGN_EXPIRES_SECONDS:
        raise S3Error(code, "X-Amz-Expires must be less than a week (in seconds) that is 604800")
    provided = qmap["X-Amz-Signature"]
    if not _SIGNATURE_HEX.fullmatch(provided):
        raise S3Error(code, "X-Amz-Signature must be 64 hex digits")
    provided = provided.lower()

    _check_scope(scope, amz_date, region, code, "Error parsing the X-Amz-Credential parameter; ")
    signed = [h.strip().lower() for h in qmap["X-Amz-SignedHeaders"].split(";")]
    _check_signed_headers(signed, headers, require_all_amz=False)
    creds = _lookup(lookup, scope.access_key)
    if ts - now > MAX_SKEW_SECONDS:
        raise S3Error("AccessDenied", "Request is not valid yet")
    if now > ts + expires:
        # "X-Amz-Expires" is not a Python identifier, hence the dict.
        fields: dict[str, Any] = {"X-Amz-Expires": expires_text,
                                  "Expires": iso8601_seconds(ts + expires),
                                  "ServerTime": iso8601_seconds(now)}
        raise S3Error("AccessDenied", "Request has expired", **fields)

    content_sha256 = headers.get("x-amz-content-sha256", qmap.get("X-Amz-Content-Sha256"))
    if content_sha256 is not None:
        _check_payload_hash(content_sha256)
    canonical = canonical_request(method, raw_path, canonical_query(params, exclude="X-Amz-Signature"),
                                  headers, signed, content_sha256 or UNSIGNED_PAYLOAD)
    sts = string_to_sign(amz_date, scope.text, canonical)
    key = signing_key(creds.secret_key, scope.date, scope.region, scope.service)
    expected = sign(key, sts)
    if not hmac.compare_digest(expected, provided):
        raise _mismatch(scope.access_key, sts, canonical, provided)
    return AuthResult(creds=creds, content_sha256=content_sha256, signing_key=key,
                      seed_signature=expected, amz_date=amz_date, scope=scope.text, presigned=True)
