"""GET bodies sent by sendfile(2) (plain HTTP, data files, 256 KiB and up): whole objects, ranges
across multipart segments, a reader that leaves mid-body, and the same bytes over TLS (streamed)."""
from __future__ import annotations

import os
from typing import Any

import pytest
from servers import MIB, ServerProcess, make_client, sign_headers

PART = 5 * MIB


@pytest.fixture
def multipart_object(s3: Any, bucket: str) -> bytes:
    parts = [os.urandom(PART), os.urandom(PART), os.urandom(MIB + 17)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    etags = [s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=i + 1,
                            Body=p)["ETag"] for i, p in enumerate(parts)]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    return b"".join(parts)


@pytest.mark.parametrize("first,last", [
    (0, None),                        # the whole object: three files
    (PART - 300_000, PART + 300_000),  # across the first boundary
    (1000, 2 * PART + 50_000),        # from inside part 1 into part 3
    (2 * PART, 2 * PART + MIB + 16),  # exactly the last part
])
def test_ranges_over_multipart_segments(s3: Any, bucket: str, multipart_object: bytes,
                                        first: int, last: int | None) -> None:
    rng = f"bytes={first}-" if last is None else f"bytes={first}-{last}"
    got = s3.get_object(Bucket=bucket, Key="mp", Range=rng)["Body"].read()
    assert got == multipart_object[first:None if last is None else last + 1]


def test_a_reader_that_leaves_mid_body_does_not_hurt_the_next(
        server: ServerProcess, s3: Any, bucket: str) -> None:
    data = os.urandom(48 * MIB)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    for _ in range(3):
        conn = server.connection(timeout=30)
        path = f"/{bucket}/big"
        conn.request("GET", path, headers=sign_headers(server, "GET", path,
                                                       user=server.root_user))
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read(100_000) == data[:100_000]
        conn.close()             # the rest of the body never gets read
    assert make_client(server).get_object(Bucket=bucket, Key="big")["Body"].read() == data


def test_tls_streams_the_same_bytes(https_server: ServerProcess, make_bucket: Any) -> None:
    name = make_bucket(https_server)
    s3 = make_client(https_server)
    data = os.urandom(3 * MIB + 5)
    s3.put_object(Bucket=name, Key="k", Body=data)
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == data
    assert s3.get_object(Bucket=name, Key="k", Range="bytes=300000-")["Body"].read() == \
        data[300000:]
