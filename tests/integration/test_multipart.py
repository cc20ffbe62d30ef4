"""Explicit multipart uploads: lifecycle, validation errors, ETags and checksums."""
from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest
from awscrt import checksums as crt
from botocore.exceptions import ClientError
from servers import MIB, checksum_b64, http_status, multipart_etag, s3_error

PART = 5 * MIB


def _parts(sizes: list[int]) -> list[bytes]:
    return [os.urandom(n) for n in sizes]


def _upload(s3: Any, bucket: str, key: str, upload_id: str, parts: list[bytes],
            **kwargs: Any) -> list[dict[str, Any]]:
    out = []
    for number, data in enumerate(parts, start=1):
        resp = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                              Body=data, **kwargs)
        entry = {"PartNumber": number, "ETag": resp["ETag"]}
        for name, value in resp.items():
            if name.startswith("Checksum") and name != "ChecksumType":
                entry[name] = value
        out.append(entry)
    return out


def test_multipart_lifecycle(s3: Any, bucket: str) -> None:
    key = "mp/object.bin"
    created = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="application/x-mp",
                                         Metadata={"kind": "multipart"})
    upload_id = created["UploadId"]
    assert created["Bucket"] == bucket and created["Key"] == key and upload_id

    uploads = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in uploads.get("Uploads", [])] == [(key, upload_id)]

    parts = _parts([PART, PART, 1234])
    done_parts = _upload(s3, bucket, key, upload_id, parts)
    for entry, data in zip(done_parts, parts, strict=True):
        assert entry["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'

    listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2, 3]
    assert [p["Size"] for p in listed["Parts"]] == [len(p) for p in parts]
    assert [p["ETag"] for p in listed["Parts"]] == [e["ETag"] for e in done_parts]
    assert listed["IsTruncated"] is False

    page = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=2)
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2]
    assert page["IsTruncated"] is True
    rest = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id,
                         PartNumberMarker=int(page["NextPartNumberMarker"]))
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]

    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key=key)

    done = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]}
                                   for p in done_parts]})
    expected_etag = multipart_etag(parts)
    assert done["ETag"] == expected_etag
    assert done["Key"] == key and done["Bucket"] == bucket

    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == b"".join(parts)
    assert got["ETag"] == expected_etag
    assert got["ContentType"] == "application/x-mp"
    assert got["Metadata"] == {"kind": "multipart"}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with s3_error("NoSuchUpload", 404):
        s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)


def test_part_etags_are_md5(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    data = os.urandom(4096)
    resp = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=7, Body=data)
    assert resp["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    # Re-uploading a part number replaces it.
    data2 = os.urandom(100)
    resp2 = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=7, Body=data2)
    assert resp2["ETag"] == f'"{hashlib.md5(data2).hexdigest()}"'
    listed = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed] == [(7, 100, resp2["ETag"])]
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)


def test_abort(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="a")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="a", UploadId=upload_id, PartNumber=1, Body=b"x" * 100)
    assert http_status(s3.abort_multipart_upload(Bucket=bucket, Key="a", UploadId=upload_id)) == 204
    with s3_error("NoSuchUpload", 404):
        s3.list_parts(Bucket=bucket, Key="a", UploadId=upload_id)
    with s3_error("NoSuchUpload", 404):
        s3.upload_part(Bucket=bucket, Key="a", UploadId=upload_id, PartNumber=2, Body=b"y")
    with s3_error("NoSuchUpload", 404):
        s3.complete_multipart_upload(Bucket=bucket, Key="a", UploadId=upload_id,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]})
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="a")


def test_no_such_upload(s3: Any, bucket: str) -> None:
    with s3_error("NoSuchUpload", 404):
        s3.upload_part(Bucket=bucket, Key="k", UploadId="bogus-upload-id", PartNumber=1, Body=b"x")
    with s3_error("NoSuchUpload", 404):
        s3.list_parts(Bucket=bucket, Key="k", UploadId="bogus-upload-id")
    with s3_error("NoSuchUpload", 404):
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId="bogus-upload-id")


def test_complete_validation_errors(s3: Any, bucket: str) -> None:
    key = "v"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    small = _upload(s3, bucket, key, upload_id, _parts([1024, 1024]))
    with s3_error("EntityTooSmall", 400):
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": small})

    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = _upload(s3, bucket, key, upload_id, _parts([PART, 10]))
    wrong_etag = [parts[0], {"PartNumber": 2, "ETag": '"0123456789abcdef0123456789abcdef"'}]
    with s3_error("InvalidPart", 400):
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": wrong_etag})
    missing = [parts[0], {"PartNumber": 3, "ETag": parts[1]["ETag"]}]
    with s3_error("InvalidPart", 400):
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": missing})
    with s3_error("InvalidPartOrder", 400):
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": [parts[1], parts[0]]})
    # The failed attempts left the upload usable; unquoted ETags are accepted.
    unquoted = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"].strip('"')} for p in parts]
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": unquoted})
    assert done["ETag"].endswith('-2"')


def test_composite_crc32_checksum(s3: Any, bucket: str) -> None:
    key = "crc32"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32")["UploadId"]
    parts = _parts([PART, 777])
    done_parts = _upload(s3, bucket, key, upload_id, parts, ChecksumAlgorithm="CRC32")
    for entry, data in zip(done_parts, parts, strict=True):
        assert entry["ChecksumCRC32"] == checksum_b64("CRC32", data)
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": done_parts})
    raw_part_crcs = b"".join(base64.b64decode(checksum_b64("CRC32", p)) for p in parts)
    expected = f"{checksum_b64('CRC32', raw_part_crcs)}-{len(parts)}"
    assert done["ChecksumCRC32"] == expected
    assert done.get("ChecksumType", "COMPOSITE") == "COMPOSITE"
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == expected
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(parts)


def test_full_object_crc64nvme_checksum(s3: Any, bucket: str) -> None:
    key = "crc64"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC64NVME",
                                           ChecksumType="FULL_OBJECT")["UploadId"]
    parts = _parts([PART, PART, 4321])
    done_parts = _upload(s3, bucket, key, upload_id, parts, ChecksumAlgorithm="CRC64NVME")
    for entry, data in zip(done_parts, parts, strict=True):
        assert entry["ChecksumCRC64NVME"] == checksum_b64("CRC64NVME", data)
    whole = b"".join(parts)
    expected = checksum_b64("CRC64NVME", whole)
    # The server must combine part CRCs mathematically; check our own oracle agrees first.
    combined = 0
    for data in parts:
        combined = crt.combine_crc64nvme(combined, crt.crc64nvme(data), len(data))
    assert checksum_b64("CRC64NVME", whole) == base64.b64encode(combined.to_bytes(8, "big")).decode()
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": done_parts},
                                        ChecksumCRC64NVME=expected, ChecksumType="FULL_OBJECT")
    assert done["ChecksumCRC64NVME"] == expected
    assert not done["ChecksumCRC64NVME"].endswith(f"-{len(parts)}")
    assert done["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got["ChecksumCRC64NVME"] == expected
    assert got["Body"].read() == whole


def test_full_object_checksum_mismatch_rejected(s3: Any, bucket: str) -> None:
    key = "crc64-bad"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC64NVME",
                                           ChecksumType="FULL_OBJECT")["UploadId"]
    done_parts = _upload(s3, bucket, key, upload_id, _parts([PART, 10]), ChecksumAlgorithm="CRC64NVME")
    with pytest.raises(ClientError) as info:
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": done_parts},
                                     ChecksumCRC64NVME=checksum_b64("CRC64NVME", b"wrong"),
                                     ChecksumType="FULL_OBJECT")
    assert http_status(info.value) == 400
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key=key)
