"""SigV4 verification: AWS's published examples, real botocore-signed requests, and failure modes."""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from rs3gw.s3.errors import S3Error
from rs3gw.s3.sigv4 import (
    AuthResult,
    Credentials,
    canonical_query,
    canonical_uri,
    parse_query,
    signing_key,
    verify_request,
)

# Values from the AWS S3 API reference, "Signature Calculations for the Authorization Header"
# (examplebucket, 20130524T000000Z), the query-parameter page and the chunked-upload page.
AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_TIME = 1369353600.0  # 2013-05-24T00:00:00Z
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
HOST = "examplebucket.s3.amazonaws.com"
CREDS = Credentials(AK, SK, "user-1", "example")
lookup = {AK: CREDS}.get


def auth_header(signed_headers: str, signature: str, scope_region: str = "us-east-1",
                access_key: str = AK) -> str:
    return (f"AWS4-HMAC-SHA256 Credential={access_key}/20130524/{scope_region}/s3/aws4_request,"
            f"SignedHeaders={signed_headers},Signature={signature}")


def get_object_example() -> dict[str, str]:
    return {
        "host": HOST, "range": "bytes=0-9", "x-amz-content-sha256": EMPTY,
        "x-amz-date": "20130524T000000Z",
        "authorization": auth_header("host;range;x-amz-content-sha256;x-amz-date",
                                     "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
    }


def verify(method: str, path: str, query: str, headers: dict[str, str], **kw: Any) -> AuthResult:
    kw.setdefault("now", EXAMPLE_TIME)
    kw.setdefault("region", "us-east-1")
    return verify_request(method, path, query, headers, lookup, **kw)


# --- AWS published examples -------------------------------------------------------------------

def test_aws_example_get_object_with_range() -> None:
    result = verify("GET", "/test.txt", "", get_object_example())
    assert result.creds == CREDS
    assert result.content_sha256 == EMPTY
    assert result.seed_signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    assert result.amz_date == "20130524T000000Z"
    assert result.scope == "20130524/us-east-1/s3/aws4_request"
    assert result.signing_key == signing_key(SK, "20130524", "us-east-1")
    assert not result.presigned


def test_aws_example_put_object() -> None:
    headers = {
        "host": HOST, "date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
        "authorization": auth_header("date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                                     "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
    }
    # The key is "test$file.text"; '$' arrives percent-encoded and must stay so canonically.
    result = verify("PUT", "/test%24file.text", "", headers)
    assert result.creds == CREDS
    assert result.content_sha256 == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"


@pytest.mark.parametrize("query,signature", [
    ("lifecycle", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
    ("max-keys=2&prefix=J", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
    # parameter order on the wire does not matter: the canonical query is sorted
    ("prefix=J&max-keys=2", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
])
def test_aws_example_bucket_gets(query: str, signature: str) -> None:
    headers = {"host": HOST, "x-amz-content-sha256": EMPTY, "x-amz-date": "20130524T000000Z",
               "authorization": auth_header("host;x-amz-content-sha256;x-amz-date", signature)}
    assert verify("GET", "/", query, headers).seed_signature == signature


PRESIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")


def test_aws_example_presigned_get() -> None:
    result = verify("GET", "/test.txt", PRESIGNED_QUERY, {"host": HOST})
    assert result.presigned
    assert result.creds == CREDS
    assert result.content_sha256 is None
    assert result.seed_signature == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"


def test_aws_example_presigned_expired_and_not_yet_valid() -> None:
    with pytest.raises(S3Error) as exc:
        verify("GET", "/test.txt", PRESIGNED_QUERY, {"host": HOST}, now=EXAMPLE_TIME + 86401)
    assert exc.value.code == "AccessDenied"
    assert exc.value.message == "Request has expired"
    assert exc.value.fields["X-Amz-Expires"] == "86400"
    assert exc.value.fields["Expires"] == "2013-05-25T00:00:00Z"
    assert exc.value.fields["ServerTime"] == "2013-05-25T00:00:01Z"
    # still valid on the last second
    verify("GET", "/test.txt", PRESIGNED_QUERY, {"host": HOST}, now=EXAMPLE_TIME + 86400)
    with pytest.raises(S3Error) as exc:
        verify("GET", "/test.txt", PRESIGNED_QUERY, {"host": HOST}, now=EXAMPLE_TIME - 3600)
    assert exc.value.code == "AccessDenied"
    assert exc.value.message == "Request is not valid yet"


def test_aws_example_streaming_seed_signature() -> None:
    headers = {
        "host": "s3.amazonaws.com", "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "content-encoding": "aws-chunked", "x-amz-decoded-content-length": "66560",
        "content-length": "66824",
        "authorization": auth_header(
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class",
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"),
    }
    result = verify("PUT", "/examplebucket/chunkObject.txt", "", headers)
    assert result.content_sha256 == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    assert result.seed_signature == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"


# --- canonicalisation -----------------------------------------------------------------------

@pytest.mark.parametrize("raw,canonical", [
    ("", "/"),
    ("/", "/"),
    ("/bkt/a b", "/bkt/a%20b"),
    ("/bkt/a%20b", "/bkt/a%20b"),
    ("/bkt/a+b", "/bkt/a%2Bb"),
    ("/bkt/a%2bb", "/bkt/a%2Bb"),
    ("/bkt/a%2Fb", "/bkt/a%2Fb"),           # an encoded slash stays inside its segment
    ("/bkt/a//b/./../c", "/bkt/a//b/./../c"),  # never normalised for S3
    ("/bkt/%7Etilde~", "/bkt/~tilde~"),
    ("/bkt/caf%c3%a9", "/bkt/caf%C3%A9"),
    ("/bkt/café", "/bkt/caf%C3%A9"),
    ("/bkt/%FF", "/bkt/%FF"),                # not UTF-8: bytes survive the round trip
])
def test_canonical_uri(raw: str, canonical: str) -> None:
    assert canonical_uri(raw) == canonical


def test_canonical_query_sorting_and_empty_values() -> None:
    params = parse_query("prefix=a%20b&uploads&delimiter=%2F&b=2&b=1&x=a+b&y=%7e")
    assert canonical_query(params) == "b=1&b=2&delimiter=%2F&prefix=a%20b&uploads=&x=a%2Bb&y=~"
    params = parse_query("X-Amz-Signature=ab&a=1")
    assert canonical_query(params, exclude="X-Amz-Signature") == "a=1"


def test_signing_key_is_cached_and_deterministic() -> None:
    k1 = signing_key(SK, "20130524", "us-east-1")
    k2 = signing_key(SK, "20130524", "us-east-1")
    assert k1 is k2 and len(k1) == 32
    assert signing_key(SK, "20130525", "us-east-1") != k1
    assert signing_key(SK, "20130524", "eu-west-1") != k1


# --- real client: botocore signing and presigning -------------------------------------------

class _Captured(Exception):
    pass


def _botocore_client(endpoint: str, style: str = "path", region: str = "us-east-1") -> Any:
    session = boto3.session.Session(aws_access_key_id=AK, aws_secret_access_key=SK,
                                    region_name=region)
    client = session.client("s3", endpoint_url=endpoint,
                            config=Config(s3={"addressing_style": style}, signature_version="s3v4",
                                          retries={"max_attempts": 0}))

    def stop(request: Any, **_: Any) -> None:
        client._captured = request
        raise _Captured()

    client.meta.events.register("before-send.s3", stop)
    return client


def _captured_request(client: Any, call: Any) -> tuple[str, str, str, dict[str, str], Any]:
    with pytest.raises(_Captured):
        call()
    request = client._captured
    url = urlsplit(request.url)
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    # urllib3 sends the Host header from the URL's netloc (port only when non-default).
    headers["host"] = url.netloc
    return request.method, url.path, url.query, headers, request.body


KEYS = ["plain.txt", "with space.txt", "plus+sign", "tilde~key", "eq=uals", "per%cent",
        "ünïcødé/ключ/鍵", "double//slash", "dots/../and/./more", "star*(paren)!'", "semi;colon,comma"]
ENDPOINTS = ["http://127.0.0.1:9000", "http://localhost", "https://s3.example.test:8443"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("key", KEYS)
def test_botocore_signed_put_verifies(endpoint: str, key: str) -> None:
    client = _botocore_client(endpoint)
    method, path, query, headers, _ = _captured_request(
        client, lambda: client.put_object(Bucket="bkt", Key=key, Body=b"hello", Metadata={"k": "v  v"}))
    result = verify_request(method, path, query, headers, lookup, "us-east-1", now=time.time())
    assert result.creds == CREDS
    assert result.content_sha256 == headers["x-amz-content-sha256"]
    # tampering with the path, a signed header or the region fails
    with pytest.raises(S3Error) as exc:
        verify_request(method, path + "x", query, headers, lookup, "us-east-1", now=time.time())
    assert exc.value.code == "SignatureDoesNotMatch"
    assert exc.value.fields["AWSAccessKeyId"] == AK
    assert exc.value.fields["CanonicalRequest"].startswith(f"PUT\n{canonical_uri(path + 'x')}\n")
    assert exc.value.fields["StringToSign"].startswith("AWS4-HMAC-SHA256\n")
    tampered = dict(headers, **{"x-amz-meta-k": "other"})
    with pytest.raises(S3Error) as exc:
        verify_request(method, path, query, tampered, lookup, "us-east-1", now=time.time())
    assert exc.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("style", ["path", "virtual"])
def test_botocore_list_with_special_query_values(style: str) -> None:
    client = _botocore_client("http://s3.local.test:9000", style=style)
    method, path, query, headers, _ = _captured_request(client, lambda: client.list_objects_v2(
        Bucket="bkt", Prefix="a b+c/ü~=&%", Delimiter="/", StartAfter="x y", MaxKeys=7))
    assert headers["host"] == ("bkt.s3.local.test:9000" if style == "virtual" else "s3.local.test:9000")
    result = verify_request(method, path, query, headers, lookup, "us-east-1", now=time.time())
    assert result.creds == CREDS


def test_botocore_streaming_upload_over_tls_verifies() -> None:
    client = _botocore_client("https://localhost:9443")
    method, path, query, headers, _ = _captured_request(
        client, lambda: client.put_object(Bucket="bkt", Key="k", Body=b"x" * 100))
    result = verify_request(method, path, query, headers, lookup, "us-east-1", now=time.time())
    assert result.content_sha256 == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("key", KEYS)
def test_botocore_presigned_get_verifies(endpoint: str, key: str) -> None:
    client = _botocore_client(endpoint)
    url = urlsplit(client.generate_presigned_url(
        "get_object", ExpiresIn=600,
        Params={"Bucket": "bkt", "Key": key, "ResponseContentDisposition": 'attachment; filename="ü b"'}))
    headers = {"host": url.netloc}
    result = verify_request("GET", url.path, url.query, headers, lookup, "us-east-1", now=time.time())
    assert result.presigned and result.creds == CREDS
    assert result.content_sha256 is None
    # a presigned URL is bound to its method, path and query
    for method, path, query in (("PUT", url.path, url.query), ("GET", url.path + "2", url.query),
                                ("GET", url.path, url.query + "&extra=1")):
        with pytest.raises(S3Error) as exc:
            verify_request(method, path, query, headers, lookup, "us-east-1", now=time.time())
        assert exc.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as exc:
        verify_request("GET", url.path, url.query, headers, lookup, "us-east-1", now=time.time() + 601)
    assert exc.value.code == "AccessDenied"


def test_botocore_presigned_put_with_other_region() -> None:
    client = _botocore_client("http://127.0.0.1:9000", region="eu-central-1")
    url = urlsplit(client.generate_presigned_url("put_object", Params={"Bucket": "b", "Key": "k"}))
    headers = {"host": url.netloc}
    assert verify_request("PUT", url.path, url.query, headers, lookup, "eu-central-1").presigned
    with pytest.raises(S3Error) as exc:
        verify_request("PUT", url.path, url.query, headers, lookup, "us-east-1")
    assert exc.value.code == "AuthorizationQueryParametersError"
    assert exc.value.fields["Region"] == "us-east-1"
    assert "the region 'eu-central-1' is wrong; expecting 'us-east-1'" in exc.value.message


# --- failure modes ---------------------------------------------------------------------------

def test_anonymous_request() -> None:
    result = verify("GET", "/bkt/key", "versionId=3", {"host": HOST})
    assert result == AuthResult(creds=None, content_sha256=None, signing_key=None, seed_signature=None,
                                amz_date=None, scope=None)


def _expect(code: str, headers: dict[str, str], path: str = "/test.txt", query: str = "",
            **kw: Any) -> S3Error:
    with pytest.raises(S3Error) as exc:
        verify("GET", path, query, headers, **kw)
    assert exc.value.code == code, exc.value.message
    return exc.value


def test_unknown_access_key() -> None:
    headers = get_object_example()
    headers["authorization"] = headers["authorization"].replace(AK, "AKIDUNKNOWN")
    err = _expect("InvalidAccessKeyId", headers)
    assert err.status == 403


def test_wrong_region_in_scope() -> None:
    err = _expect("AuthorizationHeaderMalformed", get_object_example(), region="eu-west-1")
    assert err.fields["Region"] == "eu-west-1"
    assert "the region 'us-east-1' is wrong; expecting 'eu-west-1'" in err.message


@pytest.mark.parametrize("value", [
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
    "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1,SignedHeaders=host,Signature=" + "0" * 64,
    ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
     "SignedHeaders=host,Signature=xyz"),
    "AWS4-HMAC-SHA256 garbage",
    ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/sqs/aws4_request,"
     "SignedHeaders=host,Signature=" + "0" * 64),
    ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130525/us-east-1/s3/aws4_request,"
     "SignedHeaders=host,Signature=" + "0" * 64),
])
def test_malformed_authorization(value: str) -> None:
    headers = dict(get_object_example(), authorization=value)
    assert _expect("AuthorizationHeaderMalformed", headers).status == 400


def test_spaces_after_commas_tolerated() -> None:
    headers = get_object_example()
    headers["authorization"] = headers["authorization"].replace(",", ", ")
    assert verify("GET", "/test.txt", "", headers).creds == CREDS


def test_signature_v2_rejected() -> None:
    headers = dict(get_object_example(), authorization="AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=")
    assert "AWS4-HMAC-SHA256" in _expect("InvalidRequest", headers).message
    _expect("InvalidRequest", {"host": HOST}, query="AWSAccessKeyId=AK&Expires=1&Signature=abc")
    _expect("InvalidArgument", dict(get_object_example(), authorization="Bearer token"))


def test_both_header_and_query_auth_rejected() -> None:
    _expect("InvalidArgument", get_object_example(), query=PRESIGNED_QUERY)


def test_bad_signature_fields() -> None:
    headers = get_object_example()
    headers["range"] = "bytes=0-10"
    err = _expect("SignatureDoesNotMatch", headers)
    assert err.fields["AWSAccessKeyId"] == AK
    assert err.fields["SignatureProvided"] == (
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    assert "range:bytes=0-10\n" in err.fields["CanonicalRequest"]
    assert err.fields["StringToSign"].split("\n")[:3] == [
        "AWS4-HMAC-SHA256", "20130524T000000Z", "20130524/us-east-1/s3/aws4_request"]
    assert err.fields["CanonicalRequestBytes"].startswith("47 45 54 0a")  # "GET\n"


def test_header_values_are_trimmed_and_collapsed() -> None:
    headers = get_object_example()
    headers["range"] = "  bytes=0-9  "
    verify("GET", "/test.txt", "", headers)


def test_host_must_be_signed_and_amz_headers_must_be_signed() -> None:
    headers = get_object_example()
    headers["authorization"] = headers["authorization"].replace("host;", "")
    err = _expect("AccessDenied", headers)
    assert err.fields["HeadersNotSigned"] == "host"
    headers = dict(get_object_example(), **{"x-amz-copy-source": "/other/key"})
    err = _expect("AccessDenied", headers)
    assert err.fields["HeadersNotSigned"] == "x-amz-copy-source"


def test_host_with_port_is_part_of_signature() -> None:
    headers = dict(get_object_example(), host=HOST + ":443")
    _expect("SignatureDoesNotMatch", headers)


def test_missing_or_bad_date() -> None:
    headers = get_object_example()
    del headers["x-amz-date"]
    err = _expect("AccessDenied", headers)
    assert err.message == "AWS authentication requires a valid Date or x-amz-date header"
    _expect("AccessDenied", dict(get_object_example(), **{"x-amz-date": "yesterday"}))


def test_date_header_fallback() -> None:
    headers = get_object_example()
    del headers["x-amz-date"]
    headers["date"] = "Fri, 24 May 2013 00:00:00 GMT"
    # signed with x-amz-date in SignedHeaders, which is now absent: the date is accepted but the
    # signature no longer matches (the canonical x-amz-date line is empty).
    err = _expect("SignatureDoesNotMatch", headers)
    assert err.fields["StringToSign"].split("\n")[1] == "20130524T000000Z"


@pytest.mark.parametrize("offset", [-901, 901, 86400])
def test_clock_skew(offset: int) -> None:
    err = _expect("RequestTimeTooSkewed", get_object_example(), now=EXAMPLE_TIME + offset)
    assert err.status == 403
    assert err.fields["RequestTime"] == "20130524T000000Z"
    assert err.fields["MaxAllowedSkewMilliseconds"] == "900000"
    assert err.fields["ServerTime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                     time.gmtime(EXAMPLE_TIME + offset))


@pytest.mark.parametrize("offset", [-900, 900])
def test_clock_skew_boundary_accepted(offset: int) -> None:
    verify("GET", "/test.txt", "", get_object_example(), now=EXAMPLE_TIME + offset)


def test_content_sha256_required_and_validated() -> None:
    headers = get_object_example()
    del headers["x-amz-content-sha256"]
    headers["authorization"] = headers["authorization"].replace("x-amz-content-sha256;", "")
    err = _expect("InvalidRequest", headers)
    assert "x-amz-content-sha256" in err.message
    headers = dict(get_object_example(), **{"x-amz-content-sha256": "not-a-hash"})
    err = _expect("InvalidArgument", headers)
    assert err.fields["ArgumentValue"] == "not-a-hash"


def _presigned(**overrides: str) -> str:
    params = dict(p.split("=", 1) for p in PRESIGNED_QUERY.split("&"))
    params.update(overrides)
    return "&".join(f"{k}={v}" for k, v in params.items() if v != "")


@pytest.mark.parametrize("overrides", [
    {"X-Amz-Expires": "0"}, {"X-Amz-Expires": "604801"}, {"X-Amz-Expires": "abc"},
    {"X-Amz-Algorithm": "AWS4-HMAC-SHA1"}, {"X-Amz-SignedHeaders": ""},
    {"X-Amz-Date": "2013-05-24"}, {"X-Amz-Credential": "AKIAIOSFODNN7EXAMPLE%2F20130524"},
    {"X-Amz-Signature": "zz"},
])
def test_presigned_parameter_errors(overrides: dict[str, str]) -> None:
    err = _expect("AuthorizationQueryParametersError", {"host": HOST}, query=_presigned(**overrides))
    assert err.status == 400


def test_presigned_max_expiry_accepted_then_signature_checked() -> None:
    _expect("SignatureDoesNotMatch", {"host": HOST}, query=_presigned(**{"X-Amz-Expires": "604800"}))


def test_presigned_unknown_key_and_bad_signature() -> None:
    _expect("InvalidAccessKeyId", {"host": HOST},
            query=_presigned(**{"X-Amz-Credential": "NOPE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"}))
    _expect("SignatureDoesNotMatch", {"host": HOST}, query=_presigned(**{"X-Amz-Signature": "0" * 64}))


def test_presigned_payload_hash_header_is_used() -> None:
    # With an x-amz-content-sha256 header the canonical payload line is that value, so the
    # published UNSIGNED-PAYLOAD signature no longer matches (and the value is validated).
    err = _expect("SignatureDoesNotMatch", {"host": HOST, "x-amz-content-sha256": EMPTY},
                  query=PRESIGNED_QUERY)
    assert err.fields["CanonicalRequest"].endswith("\n" + EMPTY)
    _expect("InvalidArgument", {"host": HOST, "x-amz-content-sha256": "bogus"}, query=PRESIGNED_QUERY)


def test_botocore_default_presign_is_v2_and_rejected_clearly() -> None:
    session = boto3.session.Session(aws_access_key_id=AK, aws_secret_access_key=SK, region_name="us-east-1")
    client = session.client("s3", endpoint_url="http://127.0.0.1:9000")
    url = urlsplit(client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}))
    with pytest.raises(S3Error) as exc:
        verify_request("GET", url.path, url.query, {"host": url.netloc}, lookup, "us-east-1")
    assert exc.value.code == "InvalidRequest"
    assert "AWS4-HMAC-SHA256" in exc.value.message


# --- real client: the AWS CRT signer (aws-cli/boto3 CRT transfers) ---------------------------

@pytest.mark.parametrize("presign", [False, True])
def test_awscrt_signed_request_verifies(presign: bool) -> None:
    import datetime

    from awscrt import auth
    from awscrt.http import HttpHeaders, HttpRequest

    sig_type = (auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS if presign
                else auth.AwsSignatureType.HTTP_REQUEST_HEADERS)
    config = auth.AwsSigningConfig(
        algorithm=auth.AwsSigningAlgorithm.V4, signature_type=sig_type,
        credentials_provider=auth.AwsCredentialsProvider.new_static(AK, SK),
        region="us-east-1", service="s3", date=datetime.datetime.now(datetime.UTC),
        use_double_uri_encode=False, should_normalize_uri_path=False,
        signed_body_value=auth.AwsSignedBodyValue.UNSIGNED_PAYLOAD,
        signed_body_header_type=(auth.AwsSignedBodyHeaderType.NONE if presign
                                 else auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256),
        expiration_in_seconds=600 if presign else None)
    request = HttpRequest("GET", "/bkt/a%20b%2Bc/%C3%BC//x?prefix=a%20b%2B&list-type=2",
                          HttpHeaders([("host", "localhost:9000"), ("x-amz-meta-a", "  x   y ")]))
    auth.aws_sign_request(request, config).result()
    url = urlsplit(request.path)
    headers = {k.lower(): v for k, v in request.headers}
    result = verify_request("GET", url.path, url.query, headers, lookup, "us-east-1")
    assert result.presigned is presign and result.creds == CREDS
