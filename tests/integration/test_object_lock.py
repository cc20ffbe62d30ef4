"""S3 Object Lock through boto3 against a real server: buckets created with object lock, their
configuration and its errors, retention and legal holds on versions, what they refuse (deleting a
version, weakening a retention), the governance bypass by the owner and by a user a policy allows,
default retention, the lock headers of PutObject, CopyObject, multipart uploads and HEAD."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from servers import (
    ServerProcess,
    User,
    error_code,
    make_client,
    parse_error_xml,
    s3_error,
    unique_bucket_name,
)

ALICE_ARN = "arn:aws:iam::123456789012:user/alice"
# COMPLIANCE versions cannot be removed before their date, not even by the tests' cleanup: the
# tests keep those dates this close, and the cleanup waits for them.
SHORT_S = 3


def _in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def _empty_locked_bucket(client: Any, bucket: str) -> None:
    """Delete every version (lifting legal holds, bypassing GOVERNANCE, waiting out the short
    COMPLIANCE dates), then the bucket."""
    deadline = time.monotonic() + 60
    while True:
        left = []
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
            left += [(v["Key"], v["VersionId"]) for v in
                     page.get("Versions", []) + page.get("DeleteMarkers", [])]
        for key, vid in left:
            try:
                client.put_object_legal_hold(Bucket=bucket, Key=key, VersionId=vid,
                                             LegalHold={"Status": "OFF"})
            except ClientError:
                pass                              # a delete marker, or no hold ever set
            try:
                client.delete_object(Bucket=bucket, Key=key, VersionId=vid,
                                     BypassGovernanceRetention=True)
            except ClientError as exc:
                if error_code(exc) != "AccessDenied" or time.monotonic() > deadline:
                    raise
        if not left:
            break
        time.sleep(0.5)                           # a COMPLIANCE date still ahead
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def make_locked_bucket(http_server: ServerProcess) -> Iterator[Callable[..., str]]:
    made: list[tuple[Any, str]] = []

    def make(user: User | None = None, server: ServerProcess | None = None) -> str:
        client = make_client(server or http_server, user=user)
        name = unique_bucket_name("lock")
        client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        made.append((client, name))
        return name

    yield make
    for client, name in reversed(made):
        _empty_locked_bucket(client, name)


@pytest.fixture
def locked(make_locked_bucket: Callable[..., str]) -> str:
    return make_locked_bucket()


def _raw_put(server: ServerProcess, path: str, body: bytes,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    status, _, data = server.signed("PUT", path, body, headers={"Content-MD5": md5,
                                                                **(headers or {})})
    return status, parse_error_xml(data) if status >= 300 else {}


def _lock_xml(inner: str) -> bytes:
    return (b'<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            + inner.encode() + b"</ObjectLockConfiguration>")


def test_bucket_created_with_object_lock_and_its_configuration(s3: Any, locked: str) -> None:
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
    got = s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]
    assert got == {"ObjectLockEnabled": "Enabled"}
    for period in ({"Days": 2}, {"Years": 1}):
        rule = {"DefaultRetention": {"Mode": "GOVERNANCE", **period}}
        s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": rule})
        got = s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]
        assert got == {"ObjectLockEnabled": "Enabled", "Rule": rule}
    # Without a rule: no default retention any more, object lock stays.
    s3.put_object_lock_configuration(Bucket=locked,
                                     ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert "Rule" not in s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]
    with s3_error("InvalidBucketState", 409):
        s3.put_bucket_versioning(Bucket=locked, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"


def test_object_lock_configuration_on_other_buckets(s3: Any, bucket: str) -> None:
    with s3_error("ObjectLockConfigurationNotFoundError", 404):
        s3.get_object_lock_configuration(Bucket=bucket)
    enabled = {"ObjectLockEnabled": "Enabled"}
    with s3_error("InvalidBucketState", 409):
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=enabled)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    with s3_error("InvalidBucketState", 409):
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=enabled)
    # An existing bucket with versioning Enabled may take object lock.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=enabled)
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"] == enabled


_ENABLED = "<ObjectLockEnabled>Enabled</ObjectLockEnabled>"


def _rule(retention: str) -> str:
    return f"{_ENABLED}<Rule><DefaultRetention>{retention}</DefaultRetention></Rule>"


@pytest.mark.parametrize("inner,code", [
    (_rule("<Mode>GOVERNANCE</Mode><Days>1</Days><Years>1</Years>"), "MalformedXML"),
    (_rule("<Mode>GOVERNANCE</Mode>"), "MalformedXML"),
    (_rule("<Mode>FOREVER</Mode><Days>1</Days>"), "MalformedXML"),
    (_rule("<Days>1</Days>"), "MalformedXML"),
    (_rule("<Mode>COMPLIANCE</Mode><Days>ten</Days>"), "MalformedXML"),
    (f"{_ENABLED}<Rule></Rule>", "MalformedXML"),
    ("<ObjectLockEnabled>Disabled</ObjectLockEnabled>", "MalformedXML"),
    (_rule("<Mode>GOVERNANCE</Mode><Days>1</Days>").removeprefix(_ENABLED), "MalformedXML"),
    (_rule("<Mode>COMPLIANCE</Mode><Days>0</Days>"), "InvalidArgument"),
    (_rule("<Mode>COMPLIANCE</Mode><Years>-1</Years>"), "InvalidArgument"),
    (_rule("<Mode>COMPLIANCE</Mode><Years>101</Years>"), "InvalidArgument"),
])
def test_object_lock_configuration_errors(http_server: ServerProcess, s3: Any, locked: str,
                                          inner: str, code: str) -> None:
    status, err = _raw_put(http_server, f"/{locked}?object-lock", _lock_xml(inner))
    assert (status, err["Code"]) == (400, code)
    assert s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled"}


def test_configuration_needs_an_integrity_header_and_has_no_delete(
        http_server: ServerProcess, locked: str) -> None:
    body = _lock_xml("<ObjectLockEnabled>Enabled</ObjectLockEnabled>")
    status, _, data = http_server.signed("PUT", f"/{locked}?object-lock", body)
    assert (status, parse_error_xml(data)["Code"]) == (400, "InvalidRequest")
    status, _, _ = http_server.signed("DELETE", f"/{locked}?object-lock")
    assert status == 405
    status, _, _ = http_server.signed("DELETE", f"/{locked}/k?retention")
    assert status == 405


def test_retention_and_legal_hold_round_trip_on_versions(s3: Any, locked: str) -> None:
    v1 = s3.put_object(Bucket=locked, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=locked, Key="k", Body=b"two")["VersionId"]
    until = _in(3600).replace(microsecond=123000)
    s3.put_object_retention(Bucket=locked, Key="k", VersionId=v1,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    got = s3.get_object_retention(Bucket=locked, Key="k", VersionId=v1)["Retention"]
    assert got == {"Mode": "GOVERNANCE", "RetainUntilDate": until}
    with s3_error("NoSuchObjectLockConfiguration", 404):
        s3.get_object_retention(Bucket=locked, Key="k", VersionId=v2)
    with s3_error("NoSuchObjectLockConfiguration", 404):
        s3.get_object_legal_hold(Bucket=locked, Key="k", VersionId=v2)
    # Without a version id: the current version.
    s3.put_object_legal_hold(Bucket=locked, Key="k", LegalHold={"Status": "ON"})
    assert s3.get_object_legal_hold(Bucket=locked, Key="k", VersionId=v2)["LegalHold"] == {
        "Status": "ON"}
    head1 = s3.head_object(Bucket=locked, Key="k", VersionId=v1)
    assert (head1["ObjectLockMode"], head1["ObjectLockRetainUntilDate"]) == ("GOVERNANCE", until)
    assert "ObjectLockLegalHoldStatus" not in head1
    head2 = s3.get_object(Bucket=locked, Key="k")
    assert head2["VersionId"] == v2 and head2["ObjectLockLegalHoldStatus"] == "ON"
    assert "ObjectLockMode" not in head2
    # Extending needs nothing; the date read back and sent again is the same date.
    s3.put_object_retention(Bucket=locked, Key="k", VersionId=v1,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    s3.put_object_legal_hold(Bucket=locked, Key="k", VersionId=v2, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=locked, Key="k", VersionId=v2)["LegalHold"] == {
        "Status": "OFF"}
    assert s3.head_object(Bucket=locked, Key="k")["ObjectLockLegalHoldStatus"] == "OFF"


def test_retention_request_errors(s3: Any, locked: str, http_server: ServerProcess) -> None:
    vid = s3.put_object(Bucket=locked, Key="k", Body=b"x")["VersionId"]
    with s3_error("InvalidArgument", 400):
        s3.put_object_retention(Bucket=locked, Key="k", VersionId=vid,
                                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": _in(-60)})
    with s3_error("NoSuchVersion", 404):
        s3.put_object_retention(Bucket=locked, Key="k", VersionId="0" * 32, Retention={
            "Mode": "GOVERNANCE", "RetainUntilDate": _in(60)})
    with s3_error("NoSuchKey", 404):
        s3.get_object_retention(Bucket=locked, Key="missing")
    marker = s3.delete_object(Bucket=locked, Key="k")["VersionId"]
    with s3_error("MethodNotAllowed", 405):
        s3.put_object_legal_hold(Bucket=locked, Key="k", VersionId=marker,
                                 LegalHold={"Status": "ON"})
    body = (b'<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Mode>FOREVER</Mode>'
            b"<RetainUntilDate>2099-01-01T00:00:00Z</RetainUntilDate></Retention>")
    status, err = _raw_put(http_server, f"/{locked}/k?retention&versionId={vid}", body)
    assert (status, err["Code"]) == (400, "MalformedXML")
    body = b"<LegalHold><Status>maybe</Status></LegalHold>"
    status, err = _raw_put(http_server, f"/{locked}/k?legal-hold&versionId={vid}", body)
    assert (status, err["Code"]) == (400, "MalformedXML")


def test_lock_requests_on_a_bucket_without_object_lock(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    vid = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["VersionId"]
    calls: list[Callable[[], Any]] = [
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"y", ObjectLockMode="GOVERNANCE",
                              ObjectLockRetainUntilDate=_in(60)),
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"y", ObjectLockLegalHoldStatus="ON"),
        lambda: s3.put_object_retention(Bucket=bucket, Key="k", VersionId=vid, Retention={
            "Mode": "GOVERNANCE", "RetainUntilDate": _in(60)}),
        lambda: s3.get_object_retention(Bucket=bucket, Key="k"),
        lambda: s3.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "ON"}),
        lambda: s3.get_object_legal_hold(Bucket=bucket, Key="k"),
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="m",
                                           ObjectLockLegalHoldStatus="ON"),
    ]
    for call in calls:
        with s3_error("InvalidRequest", 400) as caught:
            call()
        assert "Object Lock Configuration" in caught[0].response["Error"]["Message"]


def test_delete_refused_while_locked_and_allowed_after_expiry(s3: Any, locked: str) -> None:
    until = _in(SHORT_S)
    vid = s3.put_object(Bucket=locked, Key="k", Body=b"kept", ObjectLockMode="COMPLIANCE",
                        ObjectLockRetainUntilDate=until)["VersionId"]
    held = s3.put_object(Bucket=locked, Key="h", Body=b"held",
                         ObjectLockLegalHoldStatus="ON")["VersionId"]
    for key, v in (("k", vid), ("h", held)):
        with s3_error("AccessDenied", 403):
            s3.delete_object(Bucket=locked, Key=key, VersionId=v, BypassGovernanceRetention=True)
    # A delete without a version id adds a delete marker: allowed, the version stays.
    gone = s3.delete_object(Bucket=locked, Key="k")
    assert gone["DeleteMarker"] is True
    assert s3.get_object(Bucket=locked, Key="k", VersionId=vid)["Body"].read() == b"kept"
    time.sleep(max(0.0, (until - dt.datetime.now(dt.UTC)).total_seconds()) + 0.5)
    s3.delete_object(Bucket=locked, Key="k", VersionId=vid)
    with s3_error("NoSuchVersion", 404):
        s3.get_object(Bucket=locked, Key="k", VersionId=vid)
    s3.put_object_legal_hold(Bucket=locked, Key="h", VersionId=held, LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=locked, Key="h", VersionId=held)


def test_governance_bypass_by_the_owner(s3: Any, bob_s3: Any, bob: User,
                                        make_locked_bucket: Callable[..., str]) -> None:
    for client, name in ((s3, make_locked_bucket()), (bob_s3, make_locked_bucket(bob))):
        vid = client.put_object(Bucket=name, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                                ObjectLockRetainUntilDate=_in(3600))["VersionId"]
        with s3_error("AccessDenied", 403):
            client.delete_object(Bucket=name, Key="k", VersionId=vid)
        with s3_error("AccessDenied", 403):
            client.put_object_retention(Bucket=name, Key="k", VersionId=vid, Retention={
                "Mode": "GOVERNANCE", "RetainUntilDate": _in(60)})
        # Owner (bob) and root hold s3:BypassGovernanceRetention without any policy.
        client.put_object_retention(Bucket=name, Key="k", VersionId=vid, Retention={
            "Mode": "GOVERNANCE", "RetainUntilDate": _in(60)}, BypassGovernanceRetention=True)
        client.delete_object(Bucket=name, Key="k", VersionId=vid, BypassGovernanceRetention=True)


def test_governance_bypass_by_another_user_needs_a_policy_allow(s3: Any, alice_s3: Any,
                                                                locked: str) -> None:
    vid = s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                        ObjectLockRetainUntilDate=_in(3600))["VersionId"]
    other = s3.put_object(Bucket=locked, Key="k2", Body=b"y", ObjectLockMode="GOVERNANCE",
                          ObjectLockRetainUntilDate=_in(3600))["VersionId"]
    actions = ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:GetObject",
               "s3:PutObjectRetention", "s3:GetObjectRetention"]

    def allow(extra: list[str]) -> None:
        s3.put_bucket_policy(Bucket=locked, Policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": ALICE_ARN}, "Action": actions + extra,
                "Resource": f"arn:aws:s3:::{locked}/*"}]}))

    allow([])
    assert alice_s3.get_object_retention(Bucket=locked, Key="k",
                                         VersionId=vid)["Retention"]["Mode"] == "GOVERNANCE"
    with s3_error("AccessDenied", 403):
        alice_s3.delete_object(Bucket=locked, Key="k", VersionId=vid,
                               BypassGovernanceRetention=True)
    with s3_error("AccessDenied", 403):
        alice_s3.put_object_retention(Bucket=locked, Key="k", VersionId=vid, Retention={
            "Mode": "GOVERNANCE", "RetainUntilDate": _in(60)}, BypassGovernanceRetention=True)
    res = alice_s3.delete_objects(Bucket=locked, BypassGovernanceRetention=True, Delete={
        "Objects": [{"Key": "k2", "VersionId": other}]})
    assert [e["Code"] for e in res["Errors"]] == ["AccessDenied"]
    allow(["s3:BypassGovernanceRetention"])
    alice_s3.put_object_retention(Bucket=locked, Key="k", VersionId=vid, Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": _in(60)}, BypassGovernanceRetention=True)
    alice_s3.delete_object(Bucket=locked, Key="k", VersionId=vid, BypassGovernanceRetention=True)
    res = alice_s3.delete_objects(Bucket=locked, BypassGovernanceRetention=True, Delete={
        "Objects": [{"Key": "k2", "VersionId": other}]})
    assert "Errors" not in res and [d["VersionId"] for d in res["Deleted"]] == [other]
    s3.delete_bucket_policy(Bucket=locked)


def test_compliance_can_be_extended_but_never_shortened_or_weakened(s3: Any,
                                                                   locked: str) -> None:
    until = _in(SHORT_S - 1).replace(microsecond=0)
    vid = s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockMode="COMPLIANCE",
                        ObjectLockRetainUntilDate=until)["VersionId"]
    for mode, date in (("COMPLIANCE", until - dt.timedelta(seconds=1)),
                       ("GOVERNANCE", until + dt.timedelta(seconds=1))):
        with s3_error("AccessDenied", 403):
            s3.put_object_retention(Bucket=locked, Key="k", VersionId=vid, Retention={
                "Mode": mode, "RetainUntilDate": date}, BypassGovernanceRetention=True)
    later = until + dt.timedelta(seconds=1)
    s3.put_object_retention(Bucket=locked, Key="k", VersionId=vid,
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later})
    assert s3.get_object_retention(Bucket=locked, Key="k", VersionId=vid)["Retention"] == {
        "Mode": "COMPLIANCE", "RetainUntilDate": later}


def test_default_retention_and_the_integrity_header_it_needs(
        any_server: ServerProcess, make_locked_bucket: Callable[..., str]) -> None:
    # Over TLS boto3 sends its checksum as a trailer, over http as a header: both count.
    locked = make_locked_bucket(server=any_server)
    s3 = make_client(any_server)
    plain = make_client(any_server, checksums="when_required")
    # No lock asked for, no default retention: no integrity header needed.
    plain.put_object(Bucket=locked, Key="free", Body=b"x")
    assert "ObjectLockMode" not in s3.head_object(Bucket=locked, Key="free")
    s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    before = dt.datetime.now(dt.UTC)
    s3.put_object(Bucket=locked, Key="k", Body=b"x")          # boto3 sends a CRC32
    after = dt.datetime.now(dt.UTC)
    head = s3.head_object(Bucket=locked, Key="k")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    day = dt.timedelta(days=1)
    assert before + day - dt.timedelta(seconds=1) <= head["ObjectLockRetainUntilDate"] \
        <= after + day + dt.timedelta(seconds=1)
    with s3_error("InvalidRequest", 400) as caught:
        plain.put_object(Bucket=locked, Key="k", Body=b"x")
    assert "Content-MD5" in caught[0].response["Error"]["Message"]
    with s3_error("InvalidRequest", 400):
        plain.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockLegalHoldStatus="ON")
    md5 = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    plain.put_object(Bucket=locked, Key="k", Body=b"x", ContentMD5=md5)
    # Headers of the request win over the default.
    until = _in(7200).replace(microsecond=0)
    s3.put_object(Bucket=locked, Key="own", Body=b"x", ObjectLockMode="GOVERNANCE",
                  ObjectLockRetainUntilDate=until)
    assert s3.head_object(Bucket=locked, Key="own")["ObjectLockRetainUntilDate"] == until


@pytest.mark.parametrize("headers,code", [
    ({"x-amz-object-lock-mode": "GOVERNANCE"}, "InvalidArgument"),
    ({"x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z"}, "InvalidArgument"),
    ({"x-amz-object-lock-mode": "FOREVER",
      "x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z"}, "InvalidArgument"),
    ({"x-amz-object-lock-mode": "GOVERNANCE",
      "x-amz-object-lock-retain-until-date": "2001-01-01T00:00:00Z"}, "InvalidArgument"),
    ({"x-amz-object-lock-mode": "GOVERNANCE",
      "x-amz-object-lock-retain-until-date": "someday"}, "InvalidArgument"),
    ({"x-amz-object-lock-legal-hold": "YES"}, "InvalidArgument"),
])
def test_lock_headers_are_checked(http_server: ServerProcess, s3: Any, locked: str,
                                  headers: dict[str, str], code: str) -> None:
    status, err = _raw_put(http_server, f"/{locked}/k", b"body", headers)
    assert (status, err["Code"]) == (400, code)
    assert s3.list_object_versions(Bucket=locked).get("Versions", []) == []


def test_lock_headers_on_copy_and_multipart_upload(s3: Any, locked: str) -> None:
    until = _in(3600).replace(microsecond=0)
    lock = {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": until,
            "ObjectLockLegalHoldStatus": "ON"}
    src = s3.put_object(Bucket=locked, Key="src", Body=b"source", **lock)["VersionId"]
    head = s3.head_object(Bucket=locked, Key="src", VersionId=src)
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"],
            head["ObjectLockLegalHoldStatus"]) == ("GOVERNANCE", until, "ON")
    # A copy does not take the source's lock, only the one its request asks for.
    s3.copy_object(Bucket=locked, Key="bare", CopySource={"Bucket": locked, "Key": "src"})
    bare = s3.head_object(Bucket=locked, Key="bare")
    assert not {"ObjectLockMode", "ObjectLockLegalHoldStatus"} & set(bare)
    s3.copy_object(Bucket=locked, Key="copy", CopySource={"Bucket": locked, "Key": "src"},
                   ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    copied = s3.head_object(Bucket=locked, Key="copy")
    assert (copied["ObjectLockMode"], copied["ObjectLockRetainUntilDate"]) == ("GOVERNANCE", until)
    assert "ObjectLockLegalHoldStatus" not in copied
    up = s3.create_multipart_upload(Bucket=locked, Key="mpu", **lock)["UploadId"]
    part = s3.upload_part(Bucket=locked, Key="mpu", UploadId=up, PartNumber=1, Body=b"p" * 10)
    done = s3.complete_multipart_upload(Bucket=locked, Key="mpu", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    mpu = s3.head_object(Bucket=locked, Key="mpu", VersionId=done["VersionId"])
    assert (mpu["ObjectLockMode"], mpu["ObjectLockRetainUntilDate"],
            mpu["ObjectLockLegalHoldStatus"]) == ("GOVERNANCE", until, "ON")
    with s3_error("AccessDenied", 403):
        s3.delete_object(Bucket=locked, Key="mpu", VersionId=done["VersionId"])


def test_delete_objects_reports_each_locked_version(s3: Any, locked: str) -> None:
    held = s3.put_object(Bucket=locked, Key="a", Body=b"a",
                         ObjectLockLegalHoldStatus="ON")["VersionId"]
    free = s3.put_object(Bucket=locked, Key="b", Body=b"b")["VersionId"]
    gov = s3.put_object(Bucket=locked, Key="c", Body=b"c", ObjectLockMode="GOVERNANCE",
                        ObjectLockRetainUntilDate=_in(3600))["VersionId"]
    items = [{"Key": "a", "VersionId": held}, {"Key": "b", "VersionId": free},
             {"Key": "c", "VersionId": gov}, {"Key": "d"}]
    res = s3.delete_objects(Bucket=locked, Delete={"Objects": items})
    assert sorted((e["Key"], e["VersionId"], e["Code"]) for e in res["Errors"]) == [
        ("a", held, "AccessDenied"), ("c", gov, "AccessDenied")]
    assert sorted(d["Key"] for d in res["Deleted"]) == ["b", "d"]
    res = s3.delete_objects(Bucket=locked, BypassGovernanceRetention=True, Delete={
        "Objects": items[:1] + items[2:3]})
    assert [(e["Key"], e["Code"]) for e in res["Errors"]] == [("a", "AccessDenied")]
    assert [d["VersionId"] for d in res["Deleted"]] == [gov]
