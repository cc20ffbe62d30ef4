"""Bucket lifecycle through boto3 against real servers: the configuration API and its errors,
x-amz-expiration, and (on a server whose lifecycle day is one second) the scanner expiring
objects, noncurrent versions, sole delete markers and incomplete uploads; then a kill -9 in the
middle of a pass and a restart that finishes it with one delete marker per key."""
from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import (
    ServerProcess,
    User,
    make_client,
    s3_error,
    start_server,
    stop_server,
    unique_bucket_name,
)

DEADLINE_S = 30.0
# One-second lifecycle days, passes 0.2 s apart: Days=1 is due 1-2 s after an object's creation.
FAST = {"RS3GW_LIFECYCLE_DAY_SECONDS": "1", "RS3GW_LIFECYCLE_INTERVAL": "0.2"}


def rules(*rs: dict[str, Any]) -> dict[str, Any]:
    return {"Rules": [{"Status": "Enabled", **r} for r in rs]}


def until(check: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f}s: {what}")
        time.sleep(0.1)


def versions(s3: Any, bucket: str) -> list[tuple[str, str, bool]]:
    """(key, version id, is a marker) of every version, newest first within a key."""
    page = s3.list_object_versions(Bucket=bucket)
    out = [(v["Key"], v["VersionId"], False, v["LastModified"]) for v in page.get("Versions", [])]
    out += [(m["Key"], m["VersionId"], True, m["LastModified"])
            for m in page.get("DeleteMarkers", [])]
    out.sort(key=lambda e: (e[0], -e[3].timestamp()))
    return [e[:3] for e in out]


# --- the configuration API (the session's server, 86400-second days) ----------------------------

def test_put_get_delete_round_trip(s3: Any, bucket: str) -> None:
    with s3_error("NoSuchLifecycleConfiguration", 404):
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    cfg = rules(
        {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30}},
        {"ID": "tmp", "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "k", "Value": "v"}],
                                         "ObjectSizeGreaterThan": 10}},
         "Expiration": {"Date": dt.datetime(2031, 1, 1, tzinfo=dt.UTC)},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 5, "NewerNoncurrentVersions": 2}},
        {"ID": "mpu", "Filter": {}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}},
        {"ID": "markers", "Filter": {"Prefix": ""},
         "Expiration": {"ExpiredObjectDeleteMarker": True}})
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=cfg)
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [r["ID"] for r in got] == ["logs", "tmp", "mpu", "markers"]
    assert got[0] == {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled",
                      "Expiration": {"Days": 30}}
    assert got[1]["Filter"]["And"] == {"Prefix": "tmp/", "Tags": [{"Key": "k", "Value": "v"}],
                                       "ObjectSizeGreaterThan": 10}
    assert got[1]["Expiration"]["Date"] == dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    assert got[1]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 5,
                                                     "NewerNoncurrentVersions": 2}
    assert got[2]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert got[3]["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with s3_error("NoSuchLifecycleConfiguration", 404):
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)


@pytest.mark.parametrize("code,rule", [
    ("InvalidArgument", {"ID": "x" * 256, "Filter": {}, "Expiration": {"Days": 1}}),
    ("InvalidArgument", {"ID": "d0", "Filter": {}, "Expiration": {"Days": 0}}),
    ("InvalidArgument", {"ID": "noon", "Filter": {},
                         "Expiration": {"Date": dt.datetime(2031, 1, 1, 12, tzinfo=dt.UTC)}}),
    ("InvalidRequest", {"ID": "tags", "Filter": {"Tag": {"Key": "k", "Value": "v"}},
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}),
    ("InvalidRequest", {"ID": "none", "Filter": {}}),
    ("InvalidStorageClass", {"ID": "tr", "Filter": {},
                             "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]}),
])
def test_refused_rules(s3: Any, bucket: str, code: str, rule: dict[str, Any]) -> None:
    with s3_error(code, 400):
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules(rule))
    with s3_error("NoSuchLifecycleConfiguration", 404):
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)


def test_duplicate_ids_and_missing_integrity_header(s3: Any, bucket: str,
                                                    server: ServerProcess) -> None:
    rule = {"ID": "same", "Filter": {}, "Expiration": {"Days": 1}}
    with s3_error("InvalidArgument", 400):
        s3.put_bucket_lifecycle_configuration(Bucket=bucket,
                                              LifecycleConfiguration=rules(rule, rule))
    body = (b"<LifecycleConfiguration><Rule><ID>r</ID><Filter/><Status>Enabled</Status>"
            b"<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>")
    status, _, resp = server.signed("PUT", f"/{bucket}?lifecycle", body)
    assert status == 400 and b"<Code>InvalidRequest</Code>" in resp
    status, _, resp = server.signed("PUT", f"/{bucket}?lifecycle", b"<Lifecycle",
                                    headers={"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="})
    assert status == 400 and b"<Code>BadDigest</Code>" in resp


def test_only_the_owner_configures_lifecycle(s3: Any, alice_s3: Any, bucket: str) -> None:
    cfg = rules({"ID": "r", "Filter": {}, "Expiration": {"Days": 1}})
    with s3_error("AccessDenied", 403):
        alice_s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=cfg)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=cfg)
    with s3_error("AccessDenied", 403):
        alice_s3.get_bucket_lifecycle_configuration(Bucket=bucket)


def _midnight_after(created: dt.datetime, days: int) -> dt.datetime:
    day = (created + dt.timedelta(days=days)).date() + dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _expiry(value: str) -> tuple[dt.datetime, str]:
    date_part, rule_part = value.split(", rule-id=")
    when = date_part.removeprefix('expiry-date="').rstrip('"')
    return (dt.datetime.strptime(when, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=dt.UTC),
            rule_part.strip('"'))


def test_x_amz_expiration_on_put_get_head_copy_and_complete(s3: Any, bucket: str) -> None:
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules(
        {"ID": "pics", "Filter": {"Prefix": "pics/"}, "Expiration": {"Days": 3}},
        {"ID": "soon", "Filter": {"Tag": {"Key": "temp", "Value": "1"}},
         "Expiration": {"Days": 1}},
        {"ID": "ups", "Filter": {"Prefix": "pics/"},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}}))
    put = s3.put_object(Bucket=bucket, Key="pics/a.jpg", Body=b"jpeg")
    head = s3.head_object(Bucket=bucket, Key="pics/a.jpg")
    expected = (_midnight_after(head["LastModified"], 3), "pics")
    assert _expiry(put["Expiration"]) == expected
    assert _expiry(head["Expiration"]) == expected
    assert _expiry(s3.get_object(Bucket=bucket, Key="pics/a.jpg")["Expiration"]) == expected
    # The earliest rule wins; the tags an object is written with count.
    tagged = s3.put_object(Bucket=bucket, Key="pics/t", Body=b"x", Tagging="temp=1")
    assert _expiry(tagged["Expiration"])[1] == "soon"
    assert "Expiration" not in s3.put_object(Bucket=bucket, Key="docs/a", Body=b"x")
    copied = s3.copy_object(Bucket=bucket, Key="pics/copy", CopySource=f"{bucket}/docs/a")
    assert _expiry(copied["Expiration"])[1] == "pics"
    up = s3.create_multipart_upload(Bucket=bucket, Key="pics/big")
    assert up["AbortRuleId"] == "ups"
    assert up["AbortDate"] == _midnight_after(dt.datetime.now(dt.UTC), 2)
    etag = s3.upload_part(Bucket=bucket, Key="pics/big", UploadId=up["UploadId"], PartNumber=1,
                          Body=b"part")["ETag"]
    done = s3.complete_multipart_upload(Bucket=bucket, Key="pics/big", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": [{"ETag": etag,
                                                                    "PartNumber": 1}]})
    assert _expiry(done["Expiration"])[1] == "pics"


# --- the scanner, on a server with one-second days ----------------------------------------------

@pytest.fixture(scope="module")
def fast_server(tmp_path_factory: pytest.TempPathFactory, root_user: User) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("lifecycle"), root_user, [], extra_env=FAST)
    yield srv
    stop_server(srv)


@pytest.fixture
def fast(fast_server: ServerProcess) -> Any:
    return make_client(fast_server)


def _bucket(s3: Any, versioning: str | None = None) -> str:
    name = unique_bucket_name("lc")
    s3.create_bucket(Bucket=name)
    if versioning:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning})
    return name


def test_objects_expire(fast: Any) -> None:
    b = _bucket(fast)
    for k in ("old/1", "old/2", "keep/3"):
        fast.put_object(Bucket=b, Key=k, Body=b"x")
    fast.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=rules(
        {"ID": "old", "Filter": {"Prefix": "old/"}, "Expiration": {"Days": 1}}))
    until(lambda: [o["Key"] for o in fast.list_objects_v2(Bucket=b).get("Contents", [])]
          == ["keep/3"], "old/ expired")
    with s3_error("NoSuchKey", 404):
        fast.get_object(Bucket=b, Key="old/1")


def test_versioned_expiry_marks_then_noncurrent_versions_and_the_marker_go(fast: Any) -> None:
    b = _bucket(fast, "Enabled")
    v1 = fast.put_object(Bucket=b, Key="k", Body=b"1")["VersionId"]
    fast.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=rules(
        {"ID": "exp", "Filter": {}, "Expiration": {"Days": 1}}))
    until(lambda: [e[2] for e in versions(fast, b)] == [True, False], "a delete marker on top")
    assert versions(fast, b)[1][1] == v1
    time.sleep(1.5)                 # several more passes: still one marker
    assert [e[2] for e in versions(fast, b)] == [True, False]
    fast.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=rules(
        {"ID": "nc", "Filter": {}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
        {"ID": "markers", "Filter": {}, "Expiration": {"ExpiredObjectDeleteMarker": True}}))
    until(lambda: versions(fast, b) == [], "the noncurrent version, then the lone marker, gone")


def test_newer_noncurrent_versions_are_kept(fast: Any) -> None:
    b = _bucket(fast, "Enabled")
    ids = [fast.put_object(Bucket=b, Key="k", Body=str(i).encode())["VersionId"]
           for i in range(5)]
    fast.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=rules(
        {"ID": "nc", "Filter": {"Prefix": "k"},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 2}}))
    until(lambda: [e[1] for e in versions(fast, b)] == ids[::-1][:3], "two noncurrent kept")
    assert fast.get_object(Bucket=b, Key="k")["Body"].read() == b"4"


def test_incomplete_uploads_are_aborted(fast: Any) -> None:
    b = _bucket(fast)
    old = fast.create_multipart_upload(Bucket=b, Key="up/big")["UploadId"]
    other = fast.create_multipart_upload(Bucket=b, Key="keep/big")["UploadId"]
    fast.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=rules(
        {"ID": "mpu", "Filter": {"Prefix": "up/"},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}))
    until(lambda: [u["UploadId"] for u in fast.list_multipart_uploads(Bucket=b).get("Uploads", [])]
          == [other], "the up/ upload aborted")
    with s3_error("NoSuchUpload", 404):
        fast.list_parts(Bucket=b, Key="up/big", UploadId=old)


def test_metrics_count_what_the_scanner_did(fast: Any, fast_server: ServerProcess) -> None:
    b = _bucket(fast)
    fast.put_object(Bucket=b, Key="m", Body=b"x")
    fast.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=rules(
        {"ID": "m", "Filter": {}, "Expiration": {"Days": 1}}))
    until(lambda: "Contents" not in fast.list_objects_v2(Bucket=b), "m expired")
    _, _, text = fast_server.raw("GET", "/metrics")
    assert b'rs3gw_lifecycle_events_total{event="expired"}' in text
    assert b'rs3gw_lifecycle_events_total{event="pass"}' in text


@pytest.mark.slow
def test_kill_9_mid_pass_then_restart_finishes_it_once(tmp_path: Path, root_user: User) -> None:
    """A slow scanner (20 entries a second) is killed part-way through a pass over 120 expiring
    objects; its cursor names where it was. Restarted, it finishes: every key ends with exactly
    one delete marker over its one version."""
    root = tmp_path / "root"
    keys = [f"k{i:03d}" for i in range(120)]
    slow = ServerProcess(storage_root=root, root_user=root_user, fsync=True,
                         extra_env={**FAST, "RS3GW_LIFECYCLE_RATE": "20"})
    slow.start()
    try:
        s3 = make_client(slow)
        b = _bucket(s3, "Enabled")
        for k in keys:
            s3.put_object(Bucket=b, Key=k, Body=b"x")
        time.sleep(2.0)             # every object due before the scanner gets to it
        s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=rules(
            {"ID": "exp", "Filter": {}, "Expiration": {"Days": 1}}))
        until(lambda: sum(e[2] for e in versions(s3, b)) >= 25, "the scan under way")
    finally:
        slow.kill()
    cursor = json.loads((root / ".rs3gw" / "lifecycle-cursor.json").read_text())
    assert cursor["bucket"] == b and cursor["phase"] == "versions", cursor
    assert keys[0] <= cursor["after"] < keys[-1], cursor      # saved mid-pass, not finished
    fast = ServerProcess(storage_root=root, root_user=root_user, fsync=True, extra_env=FAST)
    fast.start()
    try:
        s3 = make_client(fast)
        until(lambda: sum(e[2] for e in versions(s3, b)) == len(keys), "every key expired")
        time.sleep(1.0)             # passes after the last: nothing more happens
        got = versions(s3, b)
        assert len(got) == 2 * len(keys)
        for k in keys:
            assert [e[2] for e in got if e[0] == k] == [True, False], k
    finally:
        assert fast.stop() == 0, fast.stderr_text()
