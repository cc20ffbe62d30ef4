"""PutObject/GetObject/HeadObject/DeleteObject through boto3: headers, checksums, ranges, conditions."""
from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from servers import (
    MIB,
    VHOST_TLS_BUCKETS,
    ServerProcess,
    checksum_b64,
    http_status,
    make_client,
    multipart_etag,
    s3_error,
)

# (scheme, addressing style, checksum behaviour): https + default is the aws-chunked trailer path.
CLIENT_VARIANTS = [
    ("http", "path", "default"),
    ("http", "virtual", "when_required"),
    ("https", "path", "when_required"),
    ("https", "virtual", "default"),
]


@pytest.fixture(params=CLIENT_VARIANTS, ids=["-".join(v) for v in CLIENT_VARIANTS])
def variant(request: pytest.FixtureRequest, make_bucket: Any) -> tuple[Any, str]:
    scheme, addressing, checksums = request.param
    srv: ServerProcess = request.getfixturevalue(f"{scheme}_server")
    name = VHOST_TLS_BUCKETS.pop() if (scheme, addressing) == ("https", "virtual") else None
    bucket = make_bucket(srv, name=name)
    return make_client(srv, addressing=addressing, checksums=checksums), bucket


def quoted_md5(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def test_put_get_head_delete_roundtrip(variant: tuple[Any, str]) -> None:
    client, bucket = variant
    body = os.urandom(300_000)
    expires = dt.datetime(2031, 5, 17, 8, 30, tzinfo=dt.UTC)
    put = client.put_object(
        Bucket=bucket, Key="dir/obj.bin", Body=body, Metadata={"color": "blue", "Mixed-Case": "V a"},
        ContentType="application/x-rs3gw-test", ContentEncoding="gzip",
        ContentDisposition='attachment; filename="obj.bin"', ContentLanguage="en-GB",
        CacheControl="max-age=60", Expires=expires)
    assert http_status(put) == 200
    assert put["ETag"] == quoted_md5(body)

    got = client.get_object(Bucket=bucket, Key="dir/obj.bin")
    assert got["Body"].read() == body
    assert got["ContentLength"] == len(body)
    assert got["ETag"] == quoted_md5(body)
    assert got["ContentType"] == "application/x-rs3gw-test"
    # aws-chunked (TLS + default checksums) is transport framing and must not be stored.
    assert got["ContentEncoding"] == "gzip"
    assert got["ContentDisposition"] == 'attachment; filename="obj.bin"'
    assert got["ContentLanguage"] == "en-GB"
    assert got["CacheControl"] == "max-age=60"
    assert got["Metadata"] == {"color": "blue", "mixed-case": "V a"}
    expires_header = got.get("ExpiresString") or got["ResponseMetadata"]["HTTPHeaders"]["expires"]
    assert email.utils.parsedate_to_datetime(expires_header) == expires
    assert got["LastModified"].tzinfo is not None

    head = client.head_object(Bucket=bucket, Key="dir/obj.bin")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == quoted_md5(body)
    assert head["ContentType"] == "application/x-rs3gw-test"
    assert head["Metadata"] == {"color": "blue", "mixed-case": "V a"}
    assert head["LastModified"] == got["LastModified"]

    deleted = client.delete_object(Bucket=bucket, Key="dir/obj.bin")
    assert http_status(deleted) == 204
    with s3_error("NoSuchKey", 404):
        client.get_object(Bucket=bucket, Key="dir/obj.bin")
    with s3_error("404", 404):
        client.head_object(Bucket=bucket, Key="dir/obj.bin")
    # Deleting a missing key is not an error in S3.
    assert http_status(client.delete_object(Bucket=bucket, Key="dir/obj.bin")) == 204


ALGORITHMS = ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checksum_algorithms(algorithm: str, any_server: ServerProcess, make_bucket: Any) -> None:
    client = make_client(any_server)
    bucket = make_bucket(any_server)
    body = os.urandom(70_000) + b"tail"
    expected = checksum_b64(algorithm, body)
    field = f"Checksum{algorithm}"
    put = client.put_object(Bucket=bucket, Key="c", Body=body, ChecksumAlgorithm=algorithm)
    assert put[field] == expected
    assert put["ETag"] == quoted_md5(body)
    got = client.get_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got[field] == expected
    head = client.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head[field] == expected


def test_checksum_header_mismatch_rejected(s3: Any, bucket: str) -> None:
    client = s3
    wrong = checksum_b64("SHA256", b"something else")
    with pytest.raises(ClientError) as info:
        client.put_object(Bucket=bucket, Key="c", Body=b"payload", ChecksumSHA256=wrong)
    assert http_status(info.value) == 400
    with s3_error("NoSuchKey", 404):
        client.get_object(Bucket=bucket, Key="c")


def test_content_md5(s3: Any, bucket: str) -> None:
    import base64
    body = b"content md5 body"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    assert s3.put_object(Bucket=bucket, Key="ok", Body=body, ContentMD5=good)["ETag"] == quoted_md5(body)
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with s3_error("BadDigest", 400):
        s3.put_object(Bucket=bucket, Key="bad", Body=body, ContentMD5=wrong)
    with s3_error("InvalidDigest", 400):
        s3.put_object(Bucket=bucket, Key="bad", Body=body, ContentMD5="not!!base64")
    with s3_error("InvalidDigest", 400):
        s3.put_object(Bucket=bucket, Key="bad", Body=body, ContentMD5=base64.b64encode(b"short").decode())
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="bad")


def test_ranges(s3: Any, bucket: str) -> None:
    body = bytes(range(100))
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    cases = {"bytes=0-9": (body[:10], "bytes 0-9/100"),
             "bytes=-5": (body[-5:], "bytes 95-99/100"),
             "bytes=10-": (body[10:], "bytes 10-99/100"),
             "bytes=95-200": (body[95:], "bytes 95-99/100")}
    for rng, (want, content_range) in cases.items():
        got = s3.get_object(Bucket=bucket, Key="r", Range=rng)
        assert http_status(got) == 206, rng
        assert got["Body"].read() == want, rng
        assert got["ContentRange"] == content_range, rng
        assert got["ContentLength"] == len(want), rng
    with s3_error("InvalidRange", 416):
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=100-200")


def test_conditional_get(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"conditional")
    head = s3.head_object(Bucket=bucket, Key="k")
    etag, lm = head["ETag"], head["LastModified"]
    day = dt.timedelta(days=1)

    def status(**cond: Any) -> int:
        try:
            resp = s3.get_object(Bucket=bucket, Key="k", **cond)
        except ClientError as exc:
            return http_status(exc)
        assert resp["Body"].read() == b"conditional"
        return http_status(resp)

    assert status(IfMatch=etag) == 200
    with s3_error("PreconditionFailed", 412):
        s3.get_object(Bucket=bucket, Key="k", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert status(IfNoneMatch=etag) == 304
    assert status(IfNoneMatch='"0123456789abcdef0123456789abcdef"') == 200
    assert status(IfModifiedSince=lm) == 304
    assert status(IfModifiedSince=lm - day) == 200
    assert status(IfUnmodifiedSince=lm - day) == 412
    assert status(IfUnmodifiedSince=lm) == 200
    # RFC 7232 section 6: If-Match wins over If-Unmodified-Since, If-None-Match over
    # If-Modified-Since.
    assert status(IfMatch=etag, IfUnmodifiedSince=lm - day) == 200
    assert status(IfNoneMatch='"0123456789abcdef0123456789abcdef"', IfModifiedSince=lm) == 200
    assert status(IfNoneMatch=etag, IfModifiedSince=lm - day) == 304


def test_conditional_head_304_keeps_etag(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["ETag"]
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=bucket, Key="k", IfNoneMatch=etag)
    assert http_status(info.value) == 304
    assert info.value.response["ResponseMetadata"]["HTTPHeaders"]["etag"] == etag


def test_conditional_put(s3: Any, bucket: str) -> None:
    first = s3.put_object(Bucket=bucket, Key="lock", Body=b"v1", IfNoneMatch="*")
    with s3_error("PreconditionFailed", 412):
        s3.put_object(Bucket=bucket, Key="lock", Body=b"v2", IfNoneMatch="*")
    with s3_error("PreconditionFailed", 412):
        s3.put_object(Bucket=bucket, Key="lock", Body=b"v2", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert s3.get_object(Bucket=bucket, Key="lock")["Body"].read() == b"v1"
    second = s3.put_object(Bucket=bucket, Key="lock", Body=b"v3", IfMatch=first["ETag"])
    assert second["ETag"] == quoted_md5(b"v3")
    assert s3.get_object(Bucket=bucket, Key="lock")["Body"].read() == b"v3"


def test_response_header_overrides(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"override me", ContentType="application/octet-stream")
    expires = dt.datetime(2032, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    got = s3.get_object(Bucket=bucket, Key="o", ResponseContentType="text/x-override",
                        ResponseContentDisposition='inline; filename="o.txt"',
                        ResponseCacheControl="no-cache", ResponseContentLanguage="fr",
                        ResponseContentEncoding="identity", ResponseExpires=expires)
    assert got["Body"].read() == b"override me"
    assert got["ContentType"] == "text/x-override"
    assert got["ContentDisposition"] == 'inline; filename="o.txt"'
    assert got["CacheControl"] == "no-cache"
    assert got["ContentLanguage"] == "fr"
    assert got["ContentEncoding"] == "identity"
    expires_header = got.get("ExpiresString") or got["ResponseMetadata"]["HTTPHeaders"]["expires"]
    assert email.utils.parsedate_to_datetime(expires_header) == expires


HOSTILE_KEYS = [
    "with space/and more spaces.txt",
    "plus+sign+key",
    "tilde~key",
    "equals=key=value",
    "percent%20literal%2F",
    "unicodé/日本語/emoji-🙂",
    "dots/../up/./here",
    "..",
    "/leading-slash",
    "double//slash",
    "query?like&this=1#frag",
    "k" * 1024,
]


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=lambda k: k[:24])
def test_hostile_keys(s3: Any, bucket: str, key: str) -> None:
    body = key.encode()[:64] + b"!"
    assert s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"] == quoted_md5(body)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
    listed = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed.get("Contents", [])] == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_key_too_long(s3: Any, bucket: str) -> None:
    with s3_error("KeyTooLongError", 400):
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    # 1024 bytes of UTF-8, not 1024 characters: 512 two-byte characters + 1 is too long.
    with s3_error("KeyTooLongError", 400):
        s3.put_object(Bucket=bucket, Key="é" * 512 + "x", Body=b"x")


def test_zero_byte_object(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["ContentLength"] == 0
    assert got["Body"].read() == b""
    assert s3.head_object(Bucket=bucket, Key="empty")["ContentLength"] == 0


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_large_transfer_multipart(scheme: str, request: pytest.FixtureRequest, make_bucket: Any,
                                  tmp_path: Path) -> None:
    srv: ServerProcess = request.getfixturevalue(f"{scheme}_server")
    client = make_client(srv)
    bucket = make_bucket(srv)
    data = os.urandom(20 * MIB)
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=4)
    client.upload_file(str(src), bucket, "big.bin", Config=cfg)
    head = client.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(data)
    parts = [data[i:i + 5 * MIB] for i in range(0, len(data), 5 * MIB)]
    assert head["ETag"] == multipart_etag(parts)
    client.download_file(bucket, "big.bin", str(dst), Config=cfg)
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()

    part1 = client.get_object(Bucket=bucket, Key="big.bin", PartNumber=1)
    assert http_status(part1) == 206
    assert part1["PartsCount"] == 4
    assert part1["ContentLength"] == 5 * MIB
    assert part1["ContentRange"] == f"bytes 0-{5 * MIB - 1}/{len(data)}"
    assert part1["Body"].read() == parts[0]
    part3 = client.head_object(Bucket=bucket, Key="big.bin", PartNumber=3)
    assert part3["ContentLength"] == 5 * MIB
    assert part3["ContentRange"] == f"bytes {10 * MIB}-{15 * MIB - 1}/{len(data)}"


def test_get_part_number_one_of_simple_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="simple", Body=b"0123456789")
    got = s3.get_object(Bucket=bucket, Key="simple", PartNumber=1)
    assert got["Body"].read() == b"0123456789"
    assert got["ContentLength"] == 10
