"""CopyObject and UploadPartCopy."""
from __future__ import annotations

import hashlib
import os
from typing import Any

from servers import MIB, multipart_etag, s3_error


def test_copy_metadata_directive_copy_and_replace(s3: Any, bucket: str) -> None:
    body = b"copy me" * 1000
    s3.put_object(Bucket=bucket, Key="src", Body=body, ContentType="text/x-src",
                  Metadata={"origin": "source"}, CacheControl="max-age=5")
    copied = s3.copy_object(Bucket=bucket, Key="dst-copy", CopySource={"Bucket": bucket, "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="dst-copy")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/x-src"
    assert got["Metadata"] == {"origin": "source"}
    assert got["CacheControl"] == "max-age=5"

    # COPY ignores metadata given on the request; REPLACE uses only what the request gives.
    s3.copy_object(Bucket=bucket, Key="dst-copy2", CopySource=f"{bucket}/src",
                   Metadata={"ignored": "yes"}, MetadataDirective="COPY")
    assert s3.head_object(Bucket=bucket, Key="dst-copy2")["Metadata"] == {"origin": "source"}

    s3.copy_object(Bucket=bucket, Key="dst-replace", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"new": "meta"}, ContentType="text/x-new")
    head = s3.head_object(Bucket=bucket, Key="dst-replace")
    assert head["Metadata"] == {"new": "meta"}
    assert head["ContentType"] == "text/x-new"
    assert "CacheControl" not in head
    assert s3.get_object(Bucket=bucket, Key="dst-replace")["Body"].read() == body


def test_copy_between_buckets_and_special_source_key(s3: Any, bucket: str, make_bucket: Any,
                                                     http_server: Any) -> None:
    other = make_bucket(http_server)
    key = "dir with space/ä+b=c%25 ~x.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"special")
    s3.copy_object(Bucket=other, Key="plain", CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=other, Key="plain")["Body"].read() == b"special"
    s3.copy_object(Bucket=other, Key=key + "-2", CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=other, Key=key + "-2")["Body"].read() == b"special"


def test_copy_missing_source(s3: Any, bucket: str) -> None:
    with s3_error("NoSuchKey", 404):
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "nope"})
    with s3_error("NoSuchBucket", 404):
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": "no-such-bucket-rs3gw", "Key": "x"})


def test_copy_in_place(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="self", Body=b"same", Metadata={"v": "1"})
    with s3_error("InvalidRequest", 400):
        s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"})
    s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"},
                   MetadataDirective="REPLACE", Metadata={"v": "2"})
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Body"].read() == b"same"
    assert got["Metadata"] == {"v": "2"}


def test_copy_source_conditions(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="src", Body=b"cond")["ETag"]
    with s3_error("PreconditionFailed", 412):
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                       CopySourceIfMatch='"0123456789abcdef0123456789abcdef"')
    with s3_error("PreconditionFailed", 412):
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                       CopySourceIfNoneMatch=etag)
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="dst")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                   CopySourceIfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"cond"


def test_upload_part_copy_with_ranges(s3: Any, bucket: str) -> None:
    data = os.urandom(6 * MIB + 12345)
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    up = s3.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    first = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=up, PartNumber=1,
                                CopySource={"Bucket": bucket, "Key": "src"},
                                CopySourceRange=f"bytes=0-{5 * MIB - 1}")
    second = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=up, PartNumber=2,
                                 CopySource={"Bucket": bucket, "Key": "src"},
                                 CopySourceRange=f"bytes={5 * MIB}-{len(data) - 1}")
    pieces = [data[:5 * MIB], data[5 * MIB:]]
    assert first["CopyPartResult"]["ETag"] == f'"{hashlib.md5(pieces[0]).hexdigest()}"'
    assert second["CopyPartResult"]["ETag"] == f'"{hashlib.md5(pieces[1]).hexdigest()}"'
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="assembled", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
                                   {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]})
    assert done["ETag"] == multipart_etag(pieces)
    assert s3.get_object(Bucket=bucket, Key="assembled")["Body"].read() == data
