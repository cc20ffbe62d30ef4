"""Authentication (SigV4 headers and presigned URLs) and authorization (owners, bucket policies)."""
from __future__ import annotations

import datetime as dt
import json
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest
from servers import (
    ServerProcess,
    User,
    make_client,
    parse_error_xml,
    s3_error,
    sign_headers,
    wait_for,
)


def test_wrong_secret(http_server: ServerProcess, root_user: User, bucket: str) -> None:
    bad = User(root_user.access_key, root_user.secret_key + "x", "root", "root")
    client = make_client(http_server, user=bad)
    with s3_error("SignatureDoesNotMatch", 403):
        client.list_buckets()
    with s3_error("SignatureDoesNotMatch", 403):
        client.put_object(Bucket=bucket, Key="k", Body=b"x")


def test_unknown_access_key(http_server: ServerProcess) -> None:
    client = make_client(http_server, user=User("AKIANOSUCHKEY0000000", "whatever", "x", "x"))
    with s3_error("InvalidAccessKeyId", 403):
        client.list_buckets()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_presigned_get_and_put(scheme: str, request: pytest.FixtureRequest, make_bucket: Any) -> None:
    srv: ServerProcess = request.getfixturevalue(f"{scheme}_server")
    client = make_client(srv)
    bucket = make_bucket(srv)
    ctx = srv.ssl_context()
    put_url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p/q r.txt"},
                                            ExpiresIn=300)
    req = urllib.request.Request(put_url, data=b"presigned body", method="PUT")
    with urllib.request.urlopen(req, context=ctx) as resp:
        assert resp.status == 200
        assert resp.headers["ETag"]
    get_url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p/q r.txt"},
                                            ExpiresIn=300)
    with urllib.request.urlopen(get_url, context=ctx) as resp:
        assert resp.status == 200
        assert resp.read() == b"presigned body"
    # Tampering with the signed query (another key) must fail.
    tampered = get_url.replace("q%20r.txt", "other.txt")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(tampered, context=ctx)
    assert info.value.code == 403
    assert parse_error_xml(info.value.read())["Code"] == "SignatureDoesNotMatch"


def test_presigned_expired(http_server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"soon gone")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1)
    failure: list[urllib.error.HTTPError] = []

    def expired() -> bool:
        try:
            with urllib.request.urlopen(url) as resp:
                resp.read()
            return False
        except urllib.error.HTTPError as exc:
            failure.append(exc)
            return True

    wait_for(expired, timeout_s=30, what="presigned URL to expire", interval_s=0.2)
    err = failure[-1]
    assert err.code == 403
    assert parse_error_xml(err.read())["Code"] == "AccessDenied"


def test_clock_skew(http_server: ServerProcess, bucket: str) -> None:
    skewed = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    status, headers, body = http_server.signed("GET", f"/{bucket}", now=skewed)
    assert status == 403
    err = parse_error_xml(body)
    assert err["Code"] == "RequestTimeTooSkewed"
    assert err["ServerTime"]
    assert err["RequestTime"]
    assert int(err["MaxAllowedSkewMilliseconds"]) == 900000
    assert "x-amz-request-id" in headers
    # Within the window is fine.
    status, _, _ = http_server.signed("GET", f"/{bucket}",
                                      now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    assert status == 200


def test_anonymous_denied_without_policy(anon_s3: Any, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    with s3_error("AccessDenied", 403):
        anon_s3.get_object(Bucket=bucket, Key="private")
    with s3_error("AccessDenied", 403):
        anon_s3.list_objects_v2(Bucket=bucket)
    with s3_error("AccessDenied", 403):
        anon_s3.put_object(Bucket=bucket, Key="new", Body=b"x")


def test_other_user_denied(alice_s3: Any, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    with s3_error("AccessDenied", 403):
        alice_s3.get_object(Bucket=bucket, Key="private")
    with s3_error("AccessDenied", 403):
        alice_s3.list_objects_v2(Bucket=bucket)
    with s3_error("AccessDenied", 403):
        alice_s3.put_object(Bucket=bucket, Key="new", Body=b"x")
    with s3_error("AccessDenied", 403):
        alice_s3.delete_bucket(Bucket=bucket)
    with s3_error("AccessDenied", 403):
        alice_s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(_policy(bucket, [])))


def _policy(bucket: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


ALICE_ARN = "arn:aws:iam::123456789012:user/alice"


def test_policy_grants_alice_read_only(alice_s3: Any, bob_s3: Any, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="shared/doc", Body=b"for alice")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(_policy(bucket, [{
        "Effect": "Allow", "Principal": {"AWS": ALICE_ARN},
        "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}])))
    assert alice_s3.get_object(Bucket=bucket, Key="shared/doc")["Body"].read() == b"for alice"
    with s3_error("AccessDenied", 403):
        alice_s3.put_object(Bucket=bucket, Key="shared/doc", Body=b"overwrite")
    with s3_error("AccessDenied", 403):
        alice_s3.delete_object(Bucket=bucket, Key="shared/doc")
    with s3_error("AccessDenied", 403):
        alice_s3.list_objects_v2(Bucket=bucket)
    with s3_error("AccessDenied", 403):
        bob_s3.get_object(Bucket=bucket, Key="shared/doc")
    assert s3.get_object(Bucket=bucket, Key="shared/doc")["Body"].read() == b"for alice"


def test_policy_public_read(anon_s3: Any, http_server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="pub/file.txt", Body=b"public")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(_policy(bucket, [{
        "Effect": "Allow", "Principal": "*",
        "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}])))
    assert anon_s3.get_object(Bucket=bucket, Key="pub/file.txt")["Body"].read() == b"public"
    status, _, body = http_server.raw("GET", f"/{bucket}/pub/file.txt")
    assert (status, body) == (200, b"public")
    with s3_error("AccessDenied", 403):
        anon_s3.put_object(Bucket=bucket, Key="pub/new.txt", Body=b"x")
    with s3_error("AccessDenied", 403):
        anon_s3.list_objects_v2(Bucket=bucket)
    # Missing key under a public-read policy without ListBucket: S3 says 403, not 404.
    with s3_error("AccessDenied", 403):
        anon_s3.get_object(Bucket=bucket, Key="pub/missing.txt")


def test_explicit_deny_beats_allow(alice_s3: Any, anon_s3: Any, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="open/a", Body=b"open")
    s3.put_object(Bucket=bucket, Key="secret/b", Body=b"closed")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(_policy(bucket, [
        {"Sid": "AllowAll", "Effect": "Allow", "Principal": "*",
         "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        {"Sid": "AllowAlice", "Effect": "Allow", "Principal": {"AWS": [ALICE_ARN]},
         "Action": "s3:*", "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        {"Sid": "DenySecret", "Effect": "Deny", "Principal": "*",
         "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/secret/*"},
    ])))
    assert anon_s3.get_object(Bucket=bucket, Key="open/a")["Body"].read() == b"open"
    assert alice_s3.get_object(Bucket=bucket, Key="open/a")["Body"].read() == b"open"
    with s3_error("AccessDenied", 403):
        anon_s3.get_object(Bucket=bucket, Key="secret/b")
    with s3_error("AccessDenied", 403):
        alice_s3.get_object(Bucket=bucket, Key="secret/b")
    # The Deny covers only GetObject: alice's s3:* still lets her write there.
    alice_s3.put_object(Bucket=bucket, Key="secret/c", Body=b"by alice")
    assert s3.get_object(Bucket=bucket, Key="secret/c")["Body"].read() == b"by alice"


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _expect_request(srv: ServerProcess, user: User, bucket: str, body: bytes,
                    secret_override: str | None) -> bytes:
    hdrs = sign_headers(srv, "PUT", f"/{bucket}/expect", body, user=user,
                        headers={"Content-Length": str(len(body))}, secret_override=secret_override)
    hdrs["Expect"] = "100-continue"
    lines = [f"PUT /{bucket}/expect HTTP/1.1"] + [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_expect_100_continue_rejects_bad_signature_first(http_server: ServerProcess,
                                                         root_user: User, bucket: str) -> None:
    body = b"z" * (1024 * 1024)
    with socket.create_connection(("127.0.0.1", http_server.port), timeout=30) as sock:
        sock.sendall(_expect_request(http_server, root_user, bucket, body, "wrong-secret"))
        head, rest = _read_head(sock)
        status_line = head.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 403"), head
        headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
        lowered = {k.lower(): v for k, v in headers.items()}
        length = int(lowered[b"content-length"])
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        assert parse_error_xml(rest[:length])["Code"] == "SignatureDoesNotMatch"


def test_expect_100_continue_accepts_good_signature(http_server: ServerProcess, root_user: User,
                                                    s3: Any, bucket: str) -> None:
    body = b"y" * (256 * 1024)
    with socket.create_connection(("127.0.0.1", http_server.port), timeout=30) as sock:
        sock.sendall(_expect_request(http_server, root_user, bucket, body, None))
        head, rest = _read_head(sock)
        assert head.split(b"\r\n", 1)[0].startswith(b"HTTP/1.1 100"), head
        sock.sendall(body)
        final = rest
        while b"\r\n\r\n" not in final:
            chunk = sock.recv(65536)
            if not chunk:
                break
            final += chunk
        assert final.split(b"\r\n", 1)[0].startswith(b"HTTP/1.1 200"), final
    assert s3.get_object(Bucket=bucket, Key="expect")["Body"].read() == body
