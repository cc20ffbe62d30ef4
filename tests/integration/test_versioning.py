"""Bucket versioning through boto3 against a real server: versions, delete markers, the null
version, suspended buckets, ListObjectVersions, version ids on every operation that takes one."""
from __future__ import annotations

from typing import Any

import pytest
from servers import ServerProcess, error_code, s3_error

BODIES = [b"first", b"second version", b"third, the current one"]


def _versioned(s3: Any, make_bucket: Any, server: ServerProcess, status: str = "Enabled") -> str:
    name: str = make_bucket(server)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})
    return name


def _get(s3: Any, bucket: str, key: str, **kw: Any) -> bytes:
    body: bytes = s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()
    return body


def _versions(s3: Any, bucket: str, **kw: Any) -> list[tuple[str, str, bool, bool]]:
    """(key, version id, is latest, is a delete marker) of every entry, in listing order,
    through boto3's paginator."""
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, **kw):
        merged = [(v, False) for v in page.get("Versions", [])] + \
                 [(m, True) for m in page.get("DeleteMarkers", [])]
        # boto3 splits the two kinds; the wire order is key, then newest first.
        merged.sort(key=lambda e: (e[0]["Key"], -e[0]["LastModified"].timestamp(),
                                   not e[0]["IsLatest"]))
        out += [(e["Key"], e["VersionId"], e["IsLatest"], m) for e, m in merged]
    return out


def test_versioning_status_and_its_errors(s3: Any, make_bucket: Any, server: ServerProcess,
                                          alice_s3: Any) -> None:
    b = make_bucket(server)
    assert "Status" not in s3.get_bucket_versioning(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Suspended"
    with s3_error("IllegalVersioningConfigurationException", 400):
        s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Disabled"})
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Suspended"   # unchanged
    with s3_error("AccessDenied", 403):
        alice_s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})


def test_every_put_makes_a_version_readable_by_its_id(s3: Any, make_bucket: Any,
                                                      server: ServerProcess) -> None:
    b = _versioned(s3, make_bucket, server)
    ids = [s3.put_object(Bucket=b, Key="k", Body=body)["VersionId"] for body in BODIES]
    assert len(set(ids)) == 3 and "null" not in ids
    for vid, body in zip(ids, BODIES, strict=True):
        got = s3.get_object(Bucket=b, Key="k", VersionId=vid)
        assert got["Body"].read() == body and got["VersionId"] == vid
        assert s3.head_object(Bucket=b, Key="k", VersionId=vid)["ContentLength"] == len(body)
    current = s3.get_object(Bucket=b, Key="k")
    assert current["Body"].read() == BODIES[-1] and current["VersionId"] == ids[-1]
    listed = _versions(s3, b)
    assert [v[1] for v in listed] == ids[::-1]
    assert [v[2] for v in listed] == [True, False, False]
    # Only the current version is an object to ListObjectsV2.
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]] == ["k"]


def test_version_ids_malformed_or_missing(s3: Any, make_bucket: Any, server: ServerProcess) -> None:
    b = _versioned(s3, make_bucket, server)
    vid = s3.put_object(Bucket=b, Key="k", Body=b"x")["VersionId"]
    with s3_error("InvalidArgument", 400):
        s3.get_object(Bucket=b, Key="k", VersionId="not-a-version")
    other = vid[:-2] + ("00" if not vid.endswith("00") else "10")
    with s3_error("NoSuchVersion", 404):
        s3.get_object(Bucket=b, Key="k", VersionId=other)
    with s3_error("NoSuchVersion", 404):
        s3.get_object(Bucket=b, Key="k", VersionId="null")
    # Deleting a version the key does not have changes nothing, as S3 answers it.
    s3.delete_object(Bucket=b, Key="k", VersionId=other)
    assert _get(s3, b, "k") == b"x"


def test_delete_markers(s3: Any, make_bucket: Any, server: ServerProcess) -> None:
    b = _versioned(s3, make_bucket, server)
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"data")["VersionId"]
    gone = s3.delete_object(Bucket=b, Key="k")
    assert gone["DeleteMarker"] is True and gone["VersionId"] not in (v1, "null")
    marker = gone["VersionId"]
    with pytest.raises(s3.exceptions.NoSuchKey) as ei:
        s3.get_object(Bucket=b, Key="k")
    headers = ei.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-delete-marker"] == "true" and headers["x-amz-version-id"] == marker
    with pytest.raises(Exception) as ei2:
        s3.head_object(Bucket=b, Key="k")
    assert ei2.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404  # type: ignore[attr-defined]
    with s3_error("MethodNotAllowed", 405) as errs:
        s3.get_object(Bucket=b, Key="k", VersionId=marker)
    assert errs[0].response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    assert "Contents" not in s3.list_objects_v2(Bucket=b)
    assert _versions(s3, b) == [("k", marker, True, True), ("k", v1, False, False)]
    assert _get(s3, b, "k", VersionId=v1) == b"data"
    # Removing the marker brings the object back.
    undo = s3.delete_object(Bucket=b, Key="k", VersionId=marker)
    assert undo["DeleteMarker"] is True and undo["VersionId"] == marker
    assert _get(s3, b, "k") == b"data"
    assert _versions(s3, b) == [("k", v1, True, False)]


def test_deleting_a_version_for_good_promotes_the_one_before(s3: Any, make_bucket: Any,
                                                             server: ServerProcess) -> None:
    b = _versioned(s3, make_bucket, server)
    ids = [s3.put_object(Bucket=b, Key="k", Body=body)["VersionId"] for body in BODIES]
    s3.delete_object(Bucket=b, Key="k", VersionId=ids[1])          # a noncurrent one
    assert [v[1] for v in _versions(s3, b)] == [ids[2], ids[0]]
    assert _get(s3, b, "k") == BODIES[2]
    s3.delete_object(Bucket=b, Key="k", VersionId=ids[2])          # the current one
    assert _get(s3, b, "k") == BODIES[0]
    assert _versions(s3, b) == [("k", ids[0], True, False)]
    with s3_error("NoSuchVersion", 404):
        s3.get_object(Bucket=b, Key="k", VersionId=ids[2])
    s3.delete_object(Bucket=b, Key="k", VersionId=ids[0])
    assert _versions(s3, b) == []
    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=b, Key="k")


def test_objects_from_before_versioning_are_the_null_version(s3: Any, make_bucket: Any,
                                                             server: ServerProcess) -> None:
    b = make_bucket(server)
    s3.put_object(Bucket=b, Key="old", Body=b"from before")
    assert "VersionId" not in s3.get_object(Bucket=b, Key="old")
    assert _versions(s3, b) == [("old", "null", True, False)]
    assert _get(s3, b, "old", VersionId="null") == b"from before"
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    assert s3.head_object(Bucket=b, Key="old")["VersionId"] == "null"
    new = s3.put_object(Bucket=b, Key="old", Body=b"after")["VersionId"]
    assert _versions(s3, b) == [("old", new, True, False), ("old", "null", False, False)]
    assert _get(s3, b, "old", VersionId="null") == b"from before"
    assert _get(s3, b, "old") == b"after"


def test_suspended_bucket_writes_the_null_version(s3: Any, make_bucket: Any,
                                                  server: ServerProcess) -> None:
    b = _versioned(s3, make_bucket, server)
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"enabled era")["VersionId"]
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    assert s3.put_object(Bucket=b, Key="k", Body=b"null one").get("VersionId") == "null"
    assert s3.put_object(Bucket=b, Key="k", Body=b"null two").get("VersionId") == "null"
    assert _versions(s3, b) == [("k", "null", True, False), ("k", v1, False, False)]
    assert _get(s3, b, "k", VersionId="null") == b"null two"
    gone = s3.delete_object(Bucket=b, Key="k")
    assert gone["DeleteMarker"] is True and gone["VersionId"] == "null"
    assert _versions(s3, b) == [("k", "null", True, True), ("k", v1, False, False)]
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    v3 = s3.put_object(Bucket=b, Key="k", Body=b"enabled again")["VersionId"]
    assert [v[1] for v in _versions(s3, b)] == [v3, "null", v1]


def test_list_object_versions_pages_and_prefixes(s3: Any, make_bucket: Any,
                                                 server: ServerProcess) -> None:
    b = _versioned(s3, make_bucket, server)
    expected = []
    for k in ("a", "b/1", "b/2", "c"):
        ids = [s3.put_object(Bucket=b, Key=k, Body=f"{k}{i}".encode())["VersionId"]
               for i in range(3)]
        expected += [(k, v, i == 0, False) for i, v in enumerate(reversed(ids))]
    marker = s3.delete_object(Bucket=b, Key="c")["VersionId"]
    expected.insert(len(expected) - 3, ("c", marker, True, True))
    expected = [(k, v, latest and k != "c" or m, m) for k, v, latest, m in expected]
    for page_size in (1, 2, 3, 5, 1000):
        assert _versions(s3, b, PaginationConfig={"PageSize": page_size}) == expected, page_size
    first = s3.list_object_versions(Bucket=b, MaxKeys=4)
    assert first["IsTruncated"] and first["NextKeyMarker"] == "b/1"
    assert first["NextVersionIdMarker"] == expected[3][1]
    grouped = s3.list_object_versions(Bucket=b, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["b/"]
    assert {v["Key"] for v in grouped["Versions"]} == {"a", "c"}
    only_b = _versions(s3, b, Prefix="b/")
    assert [e[0] for e in only_b] == ["b/1"] * 3 + ["b/2"] * 3
    with s3_error("InvalidArgument", 400):
        s3.list_object_versions(Bucket=b, KeyMarker="a", VersionIdMarker="bad!")


def test_delete_objects_with_version_ids(s3: Any, make_bucket: Any, server: ServerProcess) -> None:
    b = _versioned(s3, make_bucket, server)
    v = {k: s3.put_object(Bucket=b, Key=k, Body=b"x")["VersionId"] for k in ("p", "q", "r")}
    res = s3.delete_objects(Bucket=b, Delete={"Objects": [
        {"Key": "p", "VersionId": v["p"]}, {"Key": "q"}, {"Key": "r", "VersionId": "bad"}]})
    by_key = {d["Key"]: d for d in res["Deleted"]}
    assert by_key["p"]["VersionId"] == v["p"] and not by_key["p"].get("DeleteMarker")
    assert by_key["q"]["DeleteMarker"] is True and by_key["q"]["DeleteMarkerVersionId"]
    assert [(e["Key"], e["Code"]) for e in res["Errors"]] == [("r", "NoSuchVersion")]
    listed = _versions(s3, b)
    assert ("p", v["p"], True, False) not in listed
    assert next(e for e in listed if e[0] == "q")[3] is True


def test_copy_from_a_version_and_restore_onto_the_same_key(s3: Any, make_bucket: Any,
                                                           server: ServerProcess) -> None:
    b = _versioned(s3, make_bucket, server)
    old = s3.put_object(Bucket=b, Key="k", Body=b"old bytes")["VersionId"]
    s3.put_object(Bucket=b, Key="k", Body=b"new bytes")
    out = s3.copy_object(Bucket=b, Key="k", CopySource={"Bucket": b, "Key": "k", "VersionId": old})
    assert out["CopySourceVersionId"] == old and out["VersionId"] not in (old, "null")
    assert _get(s3, b, "k") == b"old bytes"
    assert len(_versions(s3, b)) == 3
    # The restored copy has bytes of its own: deleting the version it came from keeps them.
    s3.delete_object(Bucket=b, Key="k", VersionId=old)
    assert _get(s3, b, "k") == b"old bytes"
    s3.copy_object(Bucket=b, Key="copy", CopySource={"Bucket": b, "Key": "k"})
    assert _get(s3, b, "copy") == b"old bytes"
    with s3_error("NoSuchVersion", 404):
        s3.copy_object(Bucket=b, Key="x", CopySource={"Bucket": b, "Key": "k", "VersionId": old})


def test_multipart_and_tagging_by_version(s3: Any, make_bucket: Any, server: ServerProcess) -> None:
    b = _versioned(s3, make_bucket, server)
    up = s3.create_multipart_upload(Bucket=b, Key="mp")
    part = s3.upload_part(Bucket=b, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"p" * 100)
    done = s3.complete_multipart_upload(Bucket=b, Key="mp", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                    "ETag": part["ETag"]}]})
    v1 = done["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="mp", Body=b"plain")["VersionId"]
    s3.put_object_tagging(Bucket=b, Key="mp", VersionId=v1,
                          Tagging={"TagSet": [{"Key": "era", "Value": "multipart"}]})
    assert s3.get_object_tagging(Bucket=b, Key="mp", VersionId=v1)["TagSet"] == [
        {"Key": "era", "Value": "multipart"}]
    assert s3.get_object_tagging(Bucket=b, Key="mp")["TagSet"] == []
    assert s3.get_object_tagging(Bucket=b, Key="mp", VersionId=v1)["VersionId"] == v1
    s3.put_object_tagging(Bucket=b, Key="mp", Tagging={"TagSet": [{"Key": "now", "Value": "1"}]})
    assert s3.get_object_tagging(Bucket=b, Key="mp", VersionId=v2)["TagSet"] == [
        {"Key": "now", "Value": "1"}]
    assert _get(s3, b, "mp", VersionId=v1) == b"p" * 100
    marker = s3.delete_object(Bucket=b, Key="mp")["VersionId"]
    with s3_error("MethodNotAllowed", 405):
        s3.put_object_tagging(Bucket=b, Key="mp", VersionId=marker, Tagging={"TagSet": []})


def test_a_bucket_with_versions_is_not_empty(s3: Any, make_bucket: Any,
                                             server: ServerProcess) -> None:
    b = _versioned(s3, make_bucket, server)
    vid = s3.put_object(Bucket=b, Key="k", Body=b"x")["VersionId"]
    marker = s3.delete_object(Bucket=b, Key="k")["VersionId"]
    with s3_error("BucketNotEmpty", 409):
        s3.delete_bucket(Bucket=b)
    s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "k", "VersionId": vid},
                                                    {"Key": "k", "VersionId": marker}]})
    s3.delete_bucket(Bucket=b)
    with s3_error("NoSuchBucket", 404):
        s3.get_bucket_versioning(Bucket=b)


def test_unversioned_bucket_answers_version_requests_as_s3_does(s3: Any, make_bucket: Any,
                                                                server: ServerProcess) -> None:
    b = make_bucket(server)
    put = s3.put_object(Bucket=b, Key="k", Body=b"x")
    assert "VersionId" not in put
    assert _get(s3, b, "k", VersionId="null") == b"x"
    try:
        s3.get_object(Bucket=b, Key="k", VersionId="0" * 32)
        raise AssertionError("a version an unversioned bucket cannot have was found")
    except Exception as e:  # noqa: BLE001 - botocore's ClientError
        assert error_code(e) == "NoSuchVersion"  # type: ignore[arg-type]
    gone = s3.delete_object(Bucket=b, Key="k")
    assert "DeleteMarker" not in gone
    assert _versions(s3, b) == []


@pytest.mark.slow
def test_listing_pages_through_thousands_of_versions(s3: Any, make_bucket: Any,
                                                     server: ServerProcess) -> None:
    import concurrent.futures

    b = _versioned(s3, make_bucket, server)
    keys = [f"k/{i:03d}" for i in range(40)]

    def put(key: str) -> list[str]:
        return [s3.put_object(Bucket=b, Key=key, Body=f"{key} {n}".encode())["VersionId"]
                for n in range(60)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        written = dict(zip(keys, pool.map(put, keys), strict=True))
    markers = {k: s3.delete_object(Bucket=b, Key=k)["VersionId"] for k in keys[::4]}
    for page_size in (1000, 250, 77):
        pages = 0
        seen: dict[str, list[tuple[str, bool, bool]]] = {k: [] for k in keys}
        for page in s3.get_paginator("list_object_versions").paginate(
                Bucket=b, PaginationConfig={"PageSize": page_size}):
            pages += 1
            n = len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
            assert n <= page_size
            for v in page.get("Versions", []):
                seen[v["Key"]].append((v["VersionId"], v["IsLatest"], False))
            for m in page.get("DeleteMarkers", []):
                seen[m["Key"]].append((m["VersionId"], m["IsLatest"], True))
        assert pages == -(-(2400 + len(markers)) // page_size), page_size
        for k in keys:
            want = ([markers[k]] if k in markers else []) + written[k][::-1]
            got = sorted(seen[k], reverse=True)         # ids sort as their versions do
            assert [vid for vid, _, _ in got] == want, (page_size, k)
            assert [latest for _, latest, _ in got] == [True] + [False] * (len(want) - 1)
            assert [m for _, _, m in got] == [k in markers] + [False] * (len(want) - 1)
