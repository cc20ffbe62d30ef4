"""Error responses, DeleteObjects and object tagging."""
from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from servers import ServerProcess, http_status, parse_error_xml, s3_error, unique_bucket_name


def test_error_xml_shape(http_server: ServerProcess, bucket: str) -> None:
    status, headers, body = http_server.signed("GET", f"/{bucket}/no/such/key")
    assert status == 404
    assert headers["content-type"].startswith(("application/xml", "text/xml"))
    err = parse_error_xml(body)
    assert err["Code"] == "NoSuchKey"
    assert err["Message"]
    assert err["RequestId"]
    assert err.get("Key") == "no/such/key"
    assert headers["x-amz-request-id"] == err["RequestId"]

    missing = unique_bucket_name("missing")
    status, headers, body = http_server.signed("GET", f"/{missing}/k")
    assert status == 404
    err = parse_error_xml(body)
    assert err["Code"] == "NoSuchBucket"
    assert err.get("BucketName") == missing
    assert err["RequestId"] and headers["x-amz-request-id"]


def test_request_ids_differ(http_server: ServerProcess, bucket: str) -> None:
    ids = {http_server.signed("GET", f"/{bucket}/nope")[1]["x-amz-request-id"] for _ in range(3)}
    assert len(ids) == 3


def test_head_errors_have_no_body(http_server: ServerProcess, bucket: str) -> None:
    status, headers, body = http_server.signed("HEAD", f"/{bucket}/missing")
    assert status == 404
    assert body == b""
    assert headers["x-amz-request-id"]
    status, _, body = http_server.signed("HEAD", f"/{unique_bucket_name('missing')}")
    assert (status, body) == (404, b"")
    status, _, body = http_server.raw("HEAD", f"/{bucket}/missing")
    assert (status, body) == (403, b"")


def test_missing_bucket_vs_key_via_boto3(s3: Any, bucket: str) -> None:
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="nope")
    with s3_error("NoSuchBucket", 404):
        s3.get_object(Bucket=unique_bucket_name("missing"), Key="nope")


def test_unsigned_request_gets_access_denied_xml(http_server: ServerProcess, bucket: str) -> None:
    status, headers, body = http_server.raw("GET", f"/{bucket}")
    assert status == 403
    err = parse_error_xml(body)
    assert err["Code"] == "AccessDenied"
    assert headers["x-amz-request-id"] == err["RequestId"]


def _delete_body_headers(body: bytes) -> dict[str, str]:
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
            "Content-Type": "application/xml"}


@pytest.mark.parametrize("body", [
    b"<Delete><Object><Key>a</Key></Object>",
    b"not xml at all",
    b"<Delete></Delete>",
    b"<Wrong><Object><Key>a</Key></Object></Wrong>",
])
def test_delete_objects_malformed_xml(http_server: ServerProcess, s3: Any, bucket: str,
                                      body: bytes) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"keep")
    status, _, resp = http_server.signed("POST", f"/{bucket}?delete", body,
                                         headers=_delete_body_headers(body))
    assert status == 400
    assert parse_error_xml(resp)["Code"] == "MalformedXML"
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"keep"


def test_delete_objects_requires_integrity_header(http_server: ServerProcess, bucket: str) -> None:
    body = b"<Delete><Object><Key>a</Key></Object></Delete>"
    status, _, resp = http_server.signed("POST", f"/{bucket}?delete", body,
                                         headers={"Content-Type": "application/xml"})
    assert status == 400
    assert parse_error_xml(resp)["Code"] in ("InvalidRequest", "MissingContentMD5")


@pytest.mark.parametrize("quiet", [False, True])
def test_delete_objects(s3: Any, bucket: str, quiet: bool) -> None:
    keys = [f"d/{i}" for i in range(10)] + ["with space", "ünï"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    targets = keys[:6] + ["never-existed"]
    # botocore's default checksum config sends x-amz-checksum-crc32 and no Content-MD5.
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in targets],
                                                    "Quiet": quiet})
    assert http_status(resp) == 200
    assert resp.get("Errors", []) == []
    if quiet:
        assert resp.get("Deleted", []) == []
    else:
        assert sorted(d["Key"] for d in resp["Deleted"]) == sorted(targets)
    remaining = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert remaining == sorted(keys[6:])


def test_delete_objects_with_content_md5(http_server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="x&y", Body=b"1")
    body = b"<Delete><Object><Key>x&amp;y</Key></Object></Delete>"
    status, _, resp = http_server.signed("POST", f"/{bucket}?delete", body,
                                         headers=_delete_body_headers(body))
    assert status == 200, resp
    assert b"<Key>x&amp;y</Key>" in resp
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_object_tagging(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"tagged")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    tags = [{"Key": "project", "Value": "rs3gw"}, {"Key": "tier", "Value": "hot data"}]
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": tags})
    got = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in got) == sorted((t["Key"], t["Value"]) for t in tags)
    assert s3.get_object(Bucket=bucket, Key="t")["TagCount"] == 2
    assert http_status(s3.delete_object_tagging(Bucket=bucket, Key="t")) == 204
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    assert "TagCount" not in s3.get_object(Bucket=bucket, Key="t")
    with s3_error("NoSuchKey", 404):
        s3.get_object_tagging(Bucket=bucket, Key="missing")


def test_tagging_on_put_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1&b=two%20words")
    got = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in got) == [("a", "1"), ("b", "two words")]
    assert s3.head_object(Bucket=bucket, Key="t").get("TagCount", 2) == 2


def test_invalid_tags(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x")
    too_many = [{"Key": f"k{i}", "Value": "v"} for i in range(11)]
    with pytest.raises(Exception) as info:
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": too_many})
    assert getattr(info.value, "response", {}).get("Error", {}).get("Code") in (
        "BadRequest", "InvalidTag", "MalformedXML")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
