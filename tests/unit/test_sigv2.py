"""SigV2 verification: AWS's published examples, botocore- and s3cmd-signed requests, failure modes."""
from __future__ import annotations

import base64
import hmac
import importlib.util
import sys
import time
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials

from rs3gw.s3.errors import S3Error
from rs3gw.s3.sigv2 import is_v2, verify_request_v2
from rs3gw.s3.sigv4 import AuthResult, Credentials

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CREDS = Credentials(AK, SK, "user-1", "example")
lookup = {AK: CREDS}.get
wrong_secret = {AK: Credentials(AK, SK + "x", "user-1", "example")}.get

KEYS = ["plain.txt", "with space.txt", "plus+sign", "tilde~key", "eq=uals", "per%cent",
        "ünïcødé/ключ/鍵",
        "double//slash", "dots/../and/./more", "star*(paren)!'", "semi;colon,comma", "q?mark&amp#hash"]


def _expect(code: str, *args: Any, **kw: Any) -> S3Error:
    with pytest.raises(S3Error) as exc:
        verify_request_v2(*args, **kw)
    assert exc.value.code == code, exc.value.message
    return exc.value


def _mismatch(*args: Any, **kw: Any) -> S3Error:
    err = _expect("SignatureDoesNotMatch", *args, **kw)
    assert err.status == 403
    assert err.fields["AWSAccessKeyId"] == AK
    return err


# --- AWS published examples (S3 developer guide, "Authenticating requests: REST") ----------------

EXAMPLE_BUCKET = "awsexamplebucket1"


@pytest.mark.parametrize("method,path,query,headers,signature", [
    ("GET", "/photos/puppy.jpg", "", {"date": "Tue, 27 Mar 2007 19:36:42 +0000"},
     "qgk2+6Sv9/oM7G3qLEjTH1a1l1g="),
    ("PUT", "/photos/puppy.jpg", "", {"date": "Tue, 27 Mar 2007 21:15:45 +0000",
                                      "content-type": "image/jpeg", "content-length": "94328"},
     "iqRzw+ileNPu1fhspnRs8nOjjIA="),
    # query parameters that are not sub-resources are not signed
    ("GET", "/", "prefix=photos&max-keys=50&marker=puppy",
     {"date": "Tue, 27 Mar 2007 19:42:41 +0000", "user-agent": "Mozilla/5.0"},
     "m0WP8eCtspQl5Ahe6L1SozdX9YA="),
    ("GET", "/", "acl", {"date": "Tue, 27 Mar 2007 19:44:46 +0000"}, "82ZHiFIjc+WbcwFKGUVEQspPn+0="),
])
def test_aws_examples_virtual_host(method: str, path: str, query: str, headers: dict[str, str],
                                   signature: str) -> None:
    headers = dict(headers, host=f"{EXAMPLE_BUCKET}.s3.us-west-1.amazonaws.com",
                   authorization=f"AWS {AK}:{signature}")
    now = parsedate_to_datetime(headers["date"]).timestamp() + 60
    result = verify_request_v2(method, path, query, headers, lookup, now=now,
                               virtual_host_bucket=EXAMPLE_BUCKET)
    assert result == AuthResult(creds=CREDS, content_sha256=None, signing_key=None, seed_signature=None,
                                amz_date=None, scope=None, presigned=False)
    # the bucket is part of the signed resource
    _mismatch(method, path, query, headers, lookup, now=now, virtual_host_bucket="other")


def test_aws_example_path_style() -> None:
    headers = {"host": "s3.amazonaws.com", "date": "Tue, 27 Mar 2007 19:36:42 +0000",
               "authorization": f"AWS {AK}:bWq2s1WEIj+Ydj0vQ697zp+IXMU="}
    now = parsedate_to_datetime(headers["date"]).timestamp()
    result = verify_request_v2("GET", "/johnsmith/photos/puppy.jpg", "", headers, lookup, now=now)
    assert result.creds == CREDS


def test_aws_example_x_amz_date_blanks_the_date_line() -> None:
    # Date differs from x-amz-date on purpose: with x-amz-date present, Date is not signed.
    headers = {"host": "johnsmith.s3.amazonaws.com", "date": "Tue, 27 Mar 2007 21:20:27 +0000",
               "x-amz-date": "Tue, 27 Mar 2007 21:20:26 +0000",
               "authorization": f"AWS {AK}:R4dJ53KECjStyBO5iTBJZ4XVOaI="}
    now = parsedate_to_datetime(headers["x-amz-date"]).timestamp()
    assert verify_request_v2("DELETE", "/photos/puppy.jpg", "", headers, lookup, now=now,
                             virtual_host_bucket="johnsmith").creds == CREDS
    err = _mismatch("DELETE", "/photos/puppy.jpg", "", dict(headers, **{"x-amz-date": headers["date"]}),
                    lookup, now=now, virtual_host_bucket="johnsmith")
    assert err.fields["StringToSign"] == ("DELETE\n\n\n\nx-amz-date:Tue, 27 Mar 2007 21:20:27 +0000\n"
                                          "/johnsmith/photos/puppy.jpg")
    assert err.fields["SignatureProvided"] == "R4dJ53KECjStyBO5iTBJZ4XVOaI="
    assert err.fields["StringToSignBytes"].startswith("44 45 4c 45 54 45 0a")  # "DELETE\n"


# --- is_v2 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers,query,expected", [
    ({"authorization": "AWS AK:c2ln"}, "", True),
    ({"authorization": "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request"}, "", False),
    ({"authorization": "AWSAK:sig"}, "", False),
    ({}, "AWSAccessKeyId=AK&Expires=1&Signature=abc", True),
    ({}, "Signature=abc&AWSAccessKeyId=AK", True),
    ({}, "AWSAccessKeyId=AK", False),
    ({}, "Signature=abc", False),
    ({}, "X-Amz-Signature=abc&X-Amz-Credential=AK", False),
    ({}, "prefix=Signature&delimiter=AWSAccessKeyId", False),
    ({}, "", False),
    # a V4 header next to V2 query credentials is still routed here, to be refused as ambiguous
    ({"authorization": "AWS4-HMAC-SHA256 x"}, "AWSAccessKeyId=AK&Signature=abc", True),
])
def test_is_v2(headers: dict[str, str], query: str, expected: bool) -> None:
    assert is_v2(headers, query) is expected


# --- botocore's signers used directly ----------------------------------------------------------

def _boto_creds(secret: str = SK, token: str | None = None) -> BotoCredentials:
    return BotoCredentials(AK, secret, token)


def _wire(request: AWSRequest) -> tuple[str, str, str, dict[str, str]]:
    url = urlsplit(request.url)
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    headers["host"] = url.netloc
    return request.method, url.path, url.query, headers


@pytest.mark.parametrize("query", ["", "uploadId=abc%2Bdef%20g&partNumber=7", "tagging", "acl&versionId=3",
                                   "response-content-type=text%2Fplain%3B%20charset%3D%C3%BC&x-id=GetObject",
                                   "uploads", "uploads=", "delete", "list-type=2&prefix=a%20b"])
def test_hmacv1auth_header(query: str) -> None:
    url = "http://s3.local.test:9000/bkt/a%20b/per%25cent%2B~" + (f"?{query}" if query else "")
    request = AWSRequest(method="PUT", url=url, headers={
        "Content-Type": "text/plain", "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
        "x-amz-meta-Mixed": "  v  v  ", "x-amz-acl": "private"})
    HmacV1Auth(_boto_creds()).add_auth(request)
    method, path, raw_query, headers = _wire(request)
    now = time.time()
    assert verify_request_v2(method, path, raw_query, headers, lookup, now=now).creds == CREDS
    for tampered in (dict(headers, **{"x-amz-meta-mixed": "v v"}), dict(headers, **{"content-type": "x/y"}),
                     dict(headers, **{"content-md5": "AAAAAAAAAAAAAAAAAAAAAA=="}),
                     dict(headers, **{"x-amz-copy-source": "/other/key"})):
        _mismatch(method, path, raw_query, tampered, lookup, now=now)
    _mismatch("POST", path, raw_query, headers, lookup, now=now)
    _mismatch(method, path + "x", raw_query, headers, lookup, now=now)
    _mismatch(method, path, raw_query, headers, wrong_secret, now=now)
    if query:
        _mismatch(method, path, raw_query + "&versionId=9", headers, lookup, now=now)


# --- botocore clients: the full request pipeline -----------------------------------------------

class _Captured(Exception):
    pass


def _client(endpoint: str = "http://127.0.0.1:9000", style: str = "path",
            signature_version: str | None = "s3") -> Any:
    session = boto3.session.Session(aws_access_key_id=AK, aws_secret_access_key=SK, region_name="us-east-1")
    options: dict[str, Any] = {"s3": {"addressing_style": style}, "retries": {"max_attempts": 0}}
    if signature_version is not None:
        options["signature_version"] = signature_version
    client = session.client("s3", endpoint_url=endpoint, config=Config(**options))

    def stop(request: Any, **_: Any) -> None:
        client._captured = request
        raise _Captured()

    client.meta.events.register("before-send.s3", stop)
    return client


def _captured(client: Any, call: Any) -> tuple[str, str, str, dict[str, str]]:
    with pytest.raises(_Captured):
        call()
    wire = _wire(client._captured)
    assert wire[3]["authorization"].startswith("AWS ")
    return wire


STYLES = [("http://127.0.0.1:9000", "path", None), ("https://s3.local.test:8443", "virtual", "bkt")]


@pytest.mark.parametrize("endpoint,style,vhost", STYLES)
@pytest.mark.parametrize("key", KEYS)
def test_client_put_object(endpoint: str, style: str, vhost: str | None, key: str) -> None:
    client = _client(endpoint, style)
    method, path, query, headers = _captured(client, lambda: client.put_object(
        Bucket="bkt", Key=key, Body=b"hello", ContentType="text/plain", Metadata={"k": "v  v"}))
    assert headers["host"].startswith("bkt.") == (vhost is not None)
    now = time.time()
    result = verify_request_v2(method, path, query, headers, lookup, now=now, virtual_host_bucket=vhost)
    assert result.creds == CREDS and not result.presigned
    assert result.content_sha256 is None and result.signing_key is None
    other = "/other" if vhost is None else "/x" + path
    _mismatch(method, other, query, headers, lookup, now=now, virtual_host_bucket=vhost)
    _mismatch("POST", path, query, headers, lookup, now=now, virtual_host_bucket=vhost)
    _mismatch(method, path, query, dict(headers, **{"x-amz-meta-k": "v v"}), lookup, now=now,
              virtual_host_bucket=vhost)
    _mismatch(method, path, query, headers, wrong_secret, now=now, virtual_host_bucket=vhost)


@pytest.mark.parametrize("endpoint,style,vhost", STYLES)
def test_client_subresources(endpoint: str, style: str, vhost: str | None) -> None:
    client = _client(endpoint, style)
    now = time.time()
    calls = [
        lambda: client.upload_part(Bucket="bkt", Key="a b+", UploadId="up+/=% id", PartNumber=3, Body=b"x"),
        lambda: client.create_multipart_upload(Bucket="bkt", Key="k"),
        lambda: client.put_object_tagging(Bucket="bkt", Key="k",
                                          Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}),
        lambda: client.get_object(Bucket="bkt", Key="k", ResponseContentType="text/plain; x=ü",
                                  VersionId="v1"),
        lambda: client.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "k"}]}),
        lambda: client.get_bucket_acl(Bucket="bkt"),
        lambda: client.list_objects_v2(Bucket="bkt", Prefix="a b/", Delimiter="/"),
        lambda: client.list_buckets(),
    ]
    for call in calls:
        method, path, query, headers = _captured(client, call)
        bucket = vhost if headers["host"].startswith("bkt.") else None
        verify_request_v2(method, path, query, headers, lookup, now=now, virtual_host_bucket=bucket)
        _mismatch(method, path, query, headers, wrong_secret, now=now, virtual_host_bucket=bucket)
        for name in ("uploadId", "partNumber", "versionId", "response-content-type"):
            if f"{name}=" in query:
                tampered = query.replace(f"{name}=", f"{name}=1")
                _mismatch(method, path, tampered, headers, lookup, now=now, virtual_host_bucket=bucket)
        for name in ("tagging", "uploads", "delete", "acl"):
            if name in query.split("&"):
                tampered = "&".join(p for p in query.split("&") if p != name)
                _mismatch(method, path, tampered, headers, lookup, now=now, virtual_host_bucket=bucket)


def test_path_style_bucket_request_signed_with_trailing_slash() -> None:
    client = _client()
    method, path, query, headers = _captured(client, lambda: client.list_objects_v2(Bucket="bkt"))
    assert path == "/bkt"  # botocore signs "/bkt/" for it
    verify_request_v2(method, path, query, headers, lookup, now=time.time())
    verify_request_v2(method, "/bkt/", query, headers, lookup, now=time.time())
    err = _mismatch(method, "/bkt2", query, headers, lookup, now=time.time())
    assert err.fields["StringToSign"].endswith("\n/bkt2")


# --- presigned URLs ----------------------------------------------------------------------------

def _presign_direct(url: str, expires: int = 600, method: str = "GET",
                    headers: dict[str, str] | None = None, token: str | None = None,
                    auth_path: str | None = None) -> str:
    request = AWSRequest(method=method, url=url, headers=headers or {}, auth_path=auth_path)
    HmacV1QueryAuth(_boto_creds(token=token), expires=expires).add_auth(request)
    return str(request.url)


def _check_presigned(url_text: str, method: str = "GET", vhost: str | None = None,
                     headers: dict[str, str] | None = None) -> None:
    url = urlsplit(url_text)
    assert "AWSAccessKeyId=" in url.query and "Signature=" in url.query and "Expires=" in url.query
    headers = dict(headers or {}, host=url.netloc)
    assert is_v2(headers, url.query)
    now = time.time()
    result = verify_request_v2(method, url.path, url.query, headers, lookup, now=now,
                               virtual_host_bucket=vhost)
    assert result.presigned and result.creds == CREDS
    kw: dict[str, Any] = {"now": now, "virtual_host_bucket": vhost}
    _mismatch("PUT" if method != "PUT" else "GET", url.path, url.query, headers, lookup, **kw)
    _mismatch(method, url.path + "2", url.query, headers, lookup, **kw)
    _mismatch(method, url.path, url.query + "&versionId=2", headers, lookup, **kw)
    _mismatch(method, url.path, url.query, headers, wrong_secret, **kw)
    _mismatch(method, url.path, url.query, dict(headers, **{"x-amz-acl": "private"}), lookup, **kw)
    expires = next(p.partition("=")[2] for p in url.query.split("&") if p.startswith("Expires="))
    later = url.query.replace(f"Expires={expires}", f"Expires={int(expires) + 3600}")
    _mismatch(method, url.path, later, headers, lookup, **kw)
    err = _expect("AccessDenied", method, url.path, url.query, headers, lookup, now=int(expires) + 1,
                  virtual_host_bucket=vhost)
    assert err.message == "Request has expired"
    assert err.fields["Expires"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(expires)))
    assert err.fields["ServerTime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(expires) + 1))
    # still valid on its last second
    verify_request_v2(method, url.path, url.query, headers, lookup, now=int(expires),
                      virtual_host_bucket=vhost)


@pytest.mark.parametrize("signature_version", ["s3", None])
@pytest.mark.parametrize("endpoint,style,vhost", STYLES)
@pytest.mark.parametrize("key", KEYS)
def test_client_presigned_get(signature_version: str | None, endpoint: str, style: str, vhost: str | None,
                              key: str) -> None:
    client = _client(endpoint, style, signature_version)
    url = client.generate_presigned_url("get_object", ExpiresIn=600, Params={
        "Bucket": "bkt", "Key": key, "ResponseContentDisposition": 'attachment; filename="ü b+%"',
        "ResponseContentType": "text/plain"})
    assert urlsplit(url).netloc.startswith("bkt.") == (vhost is not None)
    _check_presigned(url, vhost=vhost)


@pytest.mark.parametrize("signature_version", ["s3", None])
def test_client_presigned_put_with_content_type_and_acl(signature_version: str | None) -> None:
    client = _client(signature_version=signature_version)
    url = client.generate_presigned_url("put_object", Params={
        "Bucket": "bkt", "Key": "k y", "ContentType": "image/png", "ACL": "public-read"})
    # x-amz-acl was signed as a header and travels in the query; Content-Type must be sent as a header.
    assert "x-amz-acl=public-read" in url
    _check_presigned(url, method="PUT", headers={"content-type": "image/png"})
    parts = urlsplit(url)
    _mismatch("PUT", parts.path, parts.query, {"host": parts.netloc}, lookup, now=time.time())
    _mismatch("PUT", parts.path, parts.query.replace("public-read", "private"), {
        "host": parts.netloc, "content-type": "image/png"}, lookup, now=time.time())


def test_client_presigned_upload_part() -> None:
    client = _client()
    url = client.generate_presigned_url("upload_part", Params={
        "Bucket": "bkt", "Key": "big", "UploadId": "u+p=1/2", "PartNumber": 12})
    _check_presigned(url, method="PUT")
    parts = urlsplit(url)
    for name in ("uploadId", "partNumber"):
        tampered = parts.query.replace(f"{name}=", f"{name}=9")
        _mismatch("PUT", parts.path, tampered, {"host": parts.netloc}, lookup, now=time.time())


@pytest.mark.parametrize("key", KEYS)
def test_hmacv1queryauth_direct(key: str) -> None:
    from botocore.utils import percent_encode
    path = "/bkt/" + percent_encode(key, safe="/~")
    _check_presigned(_presign_direct("http://127.0.0.1:9000" + path + "?response-expires=Thu%2C%2001"))
    # botocore's client hands the signer the "/bucket/key" resource as auth_path for virtual hosts
    _check_presigned(_presign_direct("http://bkt.s3.local.test" + path[4:] + "?tagging", method="PUT",
                                     auth_path=path), method="PUT", vhost="bkt")


def test_presigned_with_session_token() -> None:
    url = _presign_direct("http://127.0.0.1:9000/bkt/k", token="tok/en+==")
    assert "x-amz-security-token=tok%2Fen%2B%3D%3D" in url
    _check_presigned(url)
    parts = urlsplit(url)
    _mismatch("GET", parts.path, parts.query.replace("tok%2Fen", "tok%2Fxx"), {"host": parts.netloc},
              lookup, now=time.time())


# --- s3cmd -------------------------------------------------------------------------------------

S3CMD_DIR = Path("/usr/lib/python3/dist-packages/S3")


def _s3cmd() -> ModuleType:
    if not (S3CMD_DIR / "Crypto.py").exists():
        pytest.skip("s3cmd is not installed")
    if "S3" not in sys.modules:
        spec = importlib.util.spec_from_file_location("S3", S3CMD_DIR / "__init__.py",
                                                      submodule_search_locations=[str(S3CMD_DIR)])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["S3"] = module
        spec.loader.exec_module(module)
    import S3.Config  # type: ignore[import-not-found]
    config = S3.Config.Config()
    config.update_option("access_key", AK)
    config.update_option("secret_key", SK)
    return sys.modules["S3"]


@pytest.mark.parametrize("key", ["plain.txt", "with space+plus~", "ünïcødé/鍵", "per%cent"])
def test_s3cmd_signed_request(key: str) -> None:
    # Mirrors S3Request.get_triplet: x-amz-date instead of Date, the resource "/bucket" + key signed
    # through s3_quote, and the wire path quoted the same way.
    _s3cmd()
    from S3.BaseUtils import s3_quote  # type: ignore[import-not-found]
    from S3.Crypto import format_param_str, sign_request_v2  # type: ignore[import-not-found]
    from S3.SortedDict import SortedDict  # type: ignore[import-not-found]
    now = time.time()
    for params in ({}, {"uploadId": "0123abcd", "partNumber": "2"}, {"uploads": None}, {"acl": None}):
        headers = SortedDict(ignore_case=True)
        headers["x-amz-date"] = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(now))
        headers["content-type"] = "application/octet-stream"
        headers["x-amz-meta-s3cmd-attrs"] = "atime:1/gid:0/mode:33188"
        signed = sign_request_v2("PUT", "/bkt/" + key, params, headers)
        wire_headers = {k.lower(): v for k, v in signed.items()}
        path = s3_quote("/bkt/" + key, quote_backslashes=False, unicode_output=True)
        query = format_param_str(params)[1:]
        assert is_v2(wire_headers, query)
        assert verify_request_v2("PUT", path, query, wire_headers, lookup, now=now).creds == CREDS
        _mismatch("PUT", path, query, dict(wire_headers, **{"x-amz-meta-s3cmd-attrs": "x"}), lookup, now=now)
        # virtual-host form of the same request: s3cmd signs the same "/bkt/key" resource
        vpath = s3_quote("/" + key, quote_backslashes=False, unicode_output=True)
        verify_request_v2("PUT", vpath, query, wire_headers, lookup, now=now, virtual_host_bucket="bkt")


def test_s3cmd_signed_url() -> None:
    module = _s3cmd()
    from S3.S3Uri import S3Uri  # type: ignore[import-not-found]
    config = module.Config.Config()
    config.update_option("host_base", "s3.local.test")
    config.update_option("host_bucket", "%(bucket)s.s3.local.test")
    url = module.Crypto.sign_url_v2(S3Uri("s3://bkt/a b/ü+~.txt"), int(time.time()) + 600)
    parts = urlsplit(url)
    assert parts.netloc == "bkt.s3.local.test"
    _check_presigned(url, vhost="bkt")


# --- failure modes -----------------------------------------------------------------------------

def _signed(headers: dict[str, str], path: str = "/bkt/k", query: str = "", method: str = "GET",
            secret: str = SK) -> dict[str, str]:
    request = AWSRequest(method=method, url=f"http://h{path}" + (f"?{query}" if query else ""), headers={
        k: v for k, v in headers.items() if k != "date"})
    auth = HmacV1Auth(_boto_creds(secret))
    if "date" in headers:
        auth._get_date = lambda: headers["date"]  # type: ignore[method-assign]
    auth.add_auth(request)
    return _wire(request)[3]


def test_unknown_access_key() -> None:
    headers = _signed({})
    headers["authorization"] = headers["authorization"].replace(AK, "AKIDUNKNOWN")
    err = _expect("InvalidAccessKeyId", "GET", "/bkt/k", "", headers, lookup)
    assert err.fields["AWSAccessKeyId"] == "AKIDUNKNOWN" and err.status == 403
    _expect("InvalidAccessKeyId", "GET", "/bkt/k", "AWSAccessKeyId=nobody&Expires=9999999999&Signature=x",
            {}, lookup)


@pytest.mark.parametrize("value", ["AWS ", "AWS AKIAIOSFODNN7EXAMPLE", "AWS :c2lnbmF0dXJl",
                                   "AWS AKIAIOSFODNN7EXAMPLE:", "Bearer token"])
def test_malformed_authorization(value: str) -> None:
    headers = dict(_signed({}), authorization=value)
    err = _expect("InvalidArgument", "GET", "/bkt/k", "", headers, lookup)
    assert err.fields == {"ArgumentName": "Authorization", "ArgumentValue": value}


def test_non_ascii_signature_is_a_mismatch() -> None:
    headers = dict(_signed({}), authorization=f"AWS {AK}:sïgnature")
    _mismatch("GET", "/bkt/k", "", headers, lookup)
    _mismatch("GET", "/bkt/k", f"AWSAccessKeyId={AK}&Expires=9999999999&Signature=%C3%A9%FF", {}, lookup)


def test_spaces_around_the_credentials_are_tolerated() -> None:
    headers = _signed({})
    headers["authorization"] = headers["authorization"].replace("AWS ", "AWS   ") + "  "
    verify_request_v2("GET", "/bkt/k", "", headers, lookup)


def test_both_header_and_query_auth_rejected() -> None:
    headers = _signed({})
    err = _expect("InvalidArgument", "GET", "/bkt/k", f"AWSAccessKeyId={AK}&Signature=x&Expires=1", headers,
                  lookup)
    assert err.message.startswith("Only one auth mechanism allowed")
    _expect("InvalidArgument", "GET", "/bkt/k", "X-Amz-Algorithm=AWS4-HMAC-SHA256", headers, lookup)
    _expect("InvalidArgument", "GET", "/bkt/k", f"AWSAccessKeyId={AK}&Signature=x&Expires=1"
            "&X-Amz-Algorithm=AWS4-HMAC-SHA256", {}, lookup)


def test_missing_or_bad_date() -> None:
    headers = _signed({})
    del headers["date"]
    err = _expect("AccessDenied", "GET", "/bkt/k", "", headers, lookup)
    assert err.message == "AWS authentication requires a valid Date or x-amz-date header"
    _expect("AccessDenied", "GET", "/bkt/k", "", dict(headers, date="yesterday"), lookup)
    _expect("AccessDenied", "GET", "/bkt/k", "", dict(headers, **{"x-amz-date": "yesterday"}), lookup)


def test_x_amz_date_in_v4_form_is_accepted() -> None:
    now = time.time()
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    headers = _signed({"x-amz-date": amz_date})
    # botocore signs its own Date line even with x-amz-date present; AWS (and we) leave it empty.
    err = _mismatch("GET", "/bkt/k", "", headers, lookup, now=now)
    assert err.fields["StringToSign"] == f"GET\n\n\n\nx-amz-date:{amz_date}\n/bkt/k"
    sig = base64.b64encode(hmac.digest(SK.encode(), err.fields["StringToSign"].encode(), "sha1")).decode()
    headers["authorization"] = f"AWS {AK}:{sig}"
    del headers["date"]
    verify_request_v2("GET", "/bkt/k", "", headers, lookup, now=now)


def test_request_time_too_skewed() -> None:
    now = time.time()
    date = formatdate(now - 901, usegmt=True)
    headers = _signed({"date": date})
    err = _expect("RequestTimeTooSkewed", "GET", "/bkt/k", "", headers, lookup, now=now)
    assert err.fields["RequestTime"] == date
    assert err.fields["MaxAllowedSkewMilliseconds"] == "900000"
    assert err.fields["ServerTime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    ahead = _signed({"date": formatdate(now + 901, usegmt=True)})
    _expect("RequestTimeTooSkewed", "GET", "/bkt/k", "", ahead, lookup, now=now)
    verify_request_v2("GET", "/bkt/k", "", _signed({"date": formatdate(now - 899, usegmt=True)}), lookup,
                      now=now)


QUERY_REQUIRED = "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"


@pytest.mark.parametrize("query,message", [
    (f"AWSAccessKeyId={AK}&Signature=abc", QUERY_REQUIRED),
    (f"AWSAccessKeyId={AK}&Signature=&Expires=1", QUERY_REQUIRED),
    (f"AWSAccessKeyId={AK}&Signature=abc&Expires=tomorrow",
     "Invalid date (should be seconds since epoch): tomorrow"),
    (f"AWSAccessKeyId={AK}&Signature=abc&Expires=-5", "Invalid date (should be seconds since epoch): -5"),
    (f"AWSAccessKeyId={AK}&Signature=abc&Expires=" + "9" * 5000,
     "Invalid date (should be seconds since epoch): " + "9" * 5000),
])
def test_malformed_presigned_query(query: str, message: str) -> None:
    assert _expect("AccessDenied", "GET", "/bkt/k", query, {}, lookup).message == message


def test_repeated_amz_headers_are_joined_as_botocore_does() -> None:
    # The HTTP layer joins a repeated header with ','; botocore signs the values joined with ','.
    request = AWSRequest(method="PUT", url="http://h/bkt/k", headers={})
    request.headers.add_header("x-amz-meta-reviewedby", "joe@example.com")
    request.headers.add_header("x-amz-meta-reviewedby", "jane@example.com")
    HmacV1Auth(_boto_creds()).add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "x-amz-meta-reviewedby"}
    headers["x-amz-meta-reviewedby"] = "joe@example.com,jane@example.com"
    verify_request_v2("PUT", "/bkt/k", "", headers, lookup)
