"""ListObjects (v1), ListObjectsV2 and ListObjectVersions."""
from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_plus

import pytest

KEYS = sorted([
    "a0", "a1", "a2",
    "b/1", "b/2", "b/3", "b/4", "b/5", "b/sub/x",
    "c", "d/e/f", "d/x",
    "z",
])


def put_keys(s3: Any, bucket: str, keys: Iterable[str], workers: int = 8) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b""), keys))


@pytest.fixture
def filled(s3: Any, bucket: str) -> str:
    put_keys(s3, bucket, KEYS)
    return bucket


def test_v2_pages_with_continuation_token(s3: Any, filled: str) -> None:
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"Bucket": filled, "MaxKeys": 4}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_objects_v2(**kwargs)
        pages += 1
        keys = [o["Key"] for o in page.get("Contents", [])]
        assert page["KeyCount"] == len(keys) <= 4
        assert page["MaxKeys"] == 4
        seen += keys
        if not page["IsTruncated"]:
            assert "NextContinuationToken" not in page
            break
        token = page["NextContinuationToken"]
        if "ContinuationToken" in kwargs:
            assert page["ContinuationToken"] == kwargs["ContinuationToken"]
    assert seen == KEYS
    assert pages == 4
    for obj in s3.list_objects_v2(Bucket=filled)["Contents"]:
        assert obj["Size"] == 0
        assert obj["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
        assert obj["StorageClass"] == "STANDARD"
        assert "Owner" not in obj


def test_v2_start_after_prefix_delimiter(s3: Any, filled: str) -> None:
    after = s3.list_objects_v2(Bucket=filled, StartAfter="b/3")
    assert [o["Key"] for o in after["Contents"]] == [k for k in KEYS if k > "b/3"]
    assert after["StartAfter"] == "b/3"

    top = s3.list_objects_v2(Bucket=filled, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a0", "a1", "a2", "c", "z"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["b/", "d/"]
    assert top["KeyCount"] == 7
    assert top["Delimiter"] == "/"

    sub = s3.list_objects_v2(Bucket=filled, Prefix="b/", Delimiter="/")
    assert [o["Key"] for o in sub["Contents"]] == ["b/1", "b/2", "b/3", "b/4", "b/5"]
    assert [p["Prefix"] for p in sub["CommonPrefixes"]] == ["b/sub/"]
    assert sub["Prefix"] == "b/"

    prefixed = s3.list_objects_v2(Bucket=filled, Prefix="a")
    assert [o["Key"] for o in prefixed["Contents"]] == ["a0", "a1", "a2"]
    none = s3.list_objects_v2(Bucket=filled, Prefix="nothing-here")
    assert none["KeyCount"] == 0 and "Contents" not in none and none["IsTruncated"] is False


def test_v2_max_keys_zero(s3: Any, filled: str) -> None:
    page = s3.list_objects_v2(Bucket=filled, MaxKeys=0)
    assert page["KeyCount"] == 0
    assert "Contents" not in page
    assert page["IsTruncated"] is False
    assert page["MaxKeys"] == 0


def _walk_v2(s3: Any, bucket: str, **kwargs: Any) -> list[str]:
    items: list[str] = []
    token = None
    for _ in range(100):
        extra = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, **kwargs, **extra)
        entries = [o["Key"] for o in page.get("Contents", [])]
        entries += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        assert len(entries) <= kwargs.get("MaxKeys", 1000)
        assert page["KeyCount"] == len(entries)
        items += sorted(entries)
        if not page["IsTruncated"]:
            return items
        token = page["NextContinuationToken"]
    raise AssertionError("listing never finished")


def _walk_v1(s3: Any, bucket: str, **kwargs: Any) -> list[str]:
    items: list[str] = []
    marker = None
    for _ in range(100):
        extra = {"Marker": marker} if marker else {}
        page = s3.list_objects(Bucket=bucket, **kwargs, **extra)
        entries = [o["Key"] for o in page.get("Contents", [])]
        entries += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        items += sorted(entries)
        if not page["IsTruncated"]:
            return items
        if "Delimiter" in kwargs:
            marker = page["NextMarker"]
        else:
            assert "NextMarker" not in page
            marker = page["Contents"][-1]["Key"]
    raise AssertionError("listing never finished")


EXPECTED_TOP = ["a0", "a1", "a2", "b/", "c", "d/", "z"]


@pytest.mark.parametrize("max_keys", [1, 2, 3, 5])
def test_prefix_group_spanning_pages_appears_once(s3: Any, filled: str, max_keys: int) -> None:
    assert _walk_v2(s3, filled, Delimiter="/", MaxKeys=max_keys) == EXPECTED_TOP
    assert _walk_v1(s3, filled, Delimiter="/", MaxKeys=max_keys) == EXPECTED_TOP


def test_v1_markers(s3: Any, filled: str) -> None:
    first = s3.list_objects(Bucket=filled, MaxKeys=3)
    assert [o["Key"] for o in first["Contents"]] == KEYS[:3]
    assert first["IsTruncated"] is True
    assert "NextMarker" not in first
    second = s3.list_objects(Bucket=filled, MaxKeys=3, Marker=KEYS[2])
    assert second["Marker"] == KEYS[2]
    assert [o["Key"] for o in second["Contents"]] == KEYS[3:6]
    delimited = s3.list_objects(Bucket=filled, MaxKeys=4, Delimiter="/")
    assert delimited["IsTruncated"] is True
    assert delimited["NextMarker"] == "b/" or delimited["NextMarker"].startswith("b/")
    assert _walk_v1(s3, filled) == KEYS
    everything = s3.list_objects(Bucket=filled)
    assert everything["IsTruncated"] is False
    assert [o["Key"] for o in everything["Contents"]] == KEYS
    assert "Owner" in everything["Contents"][0]


def test_encoding_type_url(s3: Any, bucket: str) -> None:
    keys = ["sp ace/x", "plus+/y", "uni-é/日本", "pct%41", "amp&lt"]
    put_keys(s3, bucket, keys)
    page = s3.list_objects_v2(Bucket=bucket, EncodingType="url")
    assert page["EncodingType"] == "url"
    returned = [o["Key"] for o in page["Contents"]]
    for raw in returned:
        assert raw.isascii() and " " not in raw, raw
    assert sorted(unquote_plus(k) for k in returned) == sorted(keys)
    assert "plus+/y" not in returned and "pct%41" not in returned

    grouped = s3.list_objects_v2(Bucket=bucket, EncodingType="url", Delimiter="/", Prefix="sp ace/")
    assert unquote_plus(grouped["Prefix"]) == "sp ace/"
    assert " " not in grouped["Prefix"]
    assert [unquote_plus(o["Key"]) for o in grouped["Contents"]] == ["sp ace/x"]

    v1 = s3.list_objects(Bucket=bucket, EncodingType="url", Delimiter="/")
    assert sorted(unquote_plus(p["Prefix"]) for p in v1["CommonPrefixes"]) == sorted(
        {k.split("/")[0] + "/" for k in keys if "/" in k})
    # Without EncodingType botocore asks for url encoding itself and decodes the result.
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == sorted(keys)


def test_fetch_owner(s3: Any, filled: str) -> None:
    page = s3.list_objects_v2(Bucket=filled, FetchOwner=True, MaxKeys=2)
    for obj in page["Contents"]:
        assert obj["Owner"]["ID"]
    owner_id = s3.list_buckets()["Owner"]["ID"]
    assert page["Contents"][0]["Owner"]["ID"] == owner_id


def test_list_object_versions_unversioned(s3: Any, filled: str) -> None:
    resp = s3.list_object_versions(Bucket=filled)
    versions = resp["Versions"]
    assert [v["Key"] for v in versions] == KEYS
    for v in versions:
        assert v["VersionId"] == "null"
        assert v["IsLatest"] is True
        assert v["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert "DeleteMarkers" not in resp or resp["DeleteMarkers"] == []
    prefixed = s3.list_object_versions(Bucket=filled, Prefix="b/", Delimiter="/")
    assert [v["Key"] for v in prefixed["Versions"]] == ["b/1", "b/2", "b/3", "b/4", "b/5"]
    assert [p["Prefix"] for p in prefixed["CommonPrefixes"]] == ["b/sub/"]


def test_list_missing_bucket(s3: Any) -> None:
    from servers import s3_error
    with s3_error("NoSuchBucket", 404):
        s3.list_objects_v2(Bucket="no-such-bucket-for-listing")
    with s3_error("NoSuchBucket", 404):
        s3.list_objects(Bucket="no-such-bucket-for-listing")


@pytest.mark.slow
def test_paginators_over_2500_keys(s3: Any, bucket: str) -> None:
    keys = sorted(f"many/{i // 100:02d}/{i:05d}" for i in range(2500))
    put_keys(s3, bucket, keys, workers=16)

    v2_pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket))
    assert [len(p.get("Contents", [])) for p in v2_pages] == [1000, 1000, 500]
    assert [o["Key"] for p in v2_pages for o in p["Contents"]] == keys

    v1 = [o["Key"] for p in s3.get_paginator("list_objects").paginate(Bucket=bucket)
          for o in p.get("Contents", [])]
    assert v1 == keys

    small = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="many/", Delimiter="/", PaginationConfig={"PageSize": 7})
    prefixes = [cp["Prefix"] for p in small for cp in p.get("CommonPrefixes", [])]
    assert prefixes == [f"many/{i:02d}/" for i in range(25)]

    versions = [v["Key"] for p in s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
                for v in p.get("Versions", [])]
    assert versions == keys
