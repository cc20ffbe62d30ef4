"""Bucket operations: create/delete/head/location, tagging, policy, versioning, list."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from servers import (
    ServerProcess,
    User,
    empty_and_delete_bucket,
    http_status,
    make_client,
    s3_error,
    start_server,
    stop_server,
    unique_bucket_name,
)

INVALID_NAMES = [
    "ab",
    "a" * 64,
    "UpperCase",
    "under_score",
    "-leading-dash",
    "trailing-dash-",
    "double..dots",
    "192.168.10.20",
    "xn--prefixed",
    "suffixed-s3alias",
]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_bucket_names(s3: Any, name: str) -> None:
    with s3_error("InvalidBucketName", 400):
        s3.create_bucket(Bucket=name)


def test_create_head_delete(s3: Any) -> None:
    name = unique_bucket_name()
    created = s3.create_bucket(Bucket=name)
    assert http_status(created) == 200
    assert created["Location"] == f"/{name}"
    try:
        head = s3.head_bucket(Bucket=name)
        assert http_status(head) == 200
        assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
        assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] in (None, "")
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert name in names
    finally:
        assert http_status(s3.delete_bucket(Bucket=name)) == 204
    with s3_error("404", 404):
        s3.head_bucket(Bucket=name)
    with s3_error("NoSuchBucket", 404):
        s3.delete_bucket(Bucket=name)


def test_recreate_by_owner_and_by_other_user(s3: Any, alice_s3: Any, bucket: str) -> None:
    with s3_error("BucketAlreadyOwnedByYou", 409):
        s3.create_bucket(Bucket=bucket)
    with s3_error("BucketAlreadyExists", 409):
        alice_s3.create_bucket(Bucket=bucket)


def test_delete_non_empty(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="x", Body=b"1")
    with s3_error("BucketNotEmpty", 409):
        s3.delete_bucket(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="x")["Body"].read() == b"1"


def test_delete_bucket_with_pending_upload_is_refused_or_cleans(s3: Any) -> None:
    name = unique_bucket_name()
    s3.create_bucket(Bucket=name)
    upload = s3.create_multipart_upload(Bucket=name, Key="pending")["UploadId"]
    try:
        s3.delete_bucket(Bucket=name)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "BucketNotEmpty"
        s3.abort_multipart_upload(Bucket=name, Key="pending", UploadId=upload)
        s3.delete_bucket(Bucket=name)
    with s3_error("NoSuchBucket", 404):
        s3.list_multipart_uploads(Bucket=name)


def test_bucket_tagging(s3: Any, bucket: str) -> None:
    with s3_error("NoSuchTagSet", 404):
        s3.get_bucket_tagging(Bucket=bucket)
    tags = [{"Key": "team", "Value": "storage"}, {"Key": "env", "Value": "test space"}]
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    got = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in got) == sorted((t["Key"], t["Value"]) for t in tags)
    assert http_status(s3.delete_bucket_tagging(Bucket=bucket)) == 204
    with s3_error("NoSuchTagSet", 404):
        s3.get_bucket_tagging(Bucket=bucket)


def test_bucket_policy_crud(s3: Any, bucket: str) -> None:
    with s3_error("NoSuchBucketPolicy", 404):
        s3.get_bucket_policy(Bucket=bucket)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
                       "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}],
    }
    put = s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert http_status(put) in (200, 204)
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == policy
    assert http_status(s3.delete_bucket_policy(Bucket=bucket)) == 204
    with s3_error("NoSuchBucketPolicy", 404):
        s3.get_bucket_policy(Bucket=bucket)


def test_malformed_policy(s3: Any, bucket: str) -> None:
    with s3_error("MalformedPolicy", 400):
        s3.put_bucket_policy(Bucket=bucket, Policy="this is not json")
    with s3_error("NoSuchBucketPolicy", 404):
        s3.get_bucket_policy(Bucket=bucket)


def test_get_bucket_versioning_unset(s3: Any, bucket: str) -> None:
    resp = s3.get_bucket_versioning(Bucket=bucket)
    assert http_status(resp) == 200
    assert "Status" not in resp
    assert "MFADelete" not in resp


def test_list_buckets_owner(s3: Any, alice_s3: Any, bucket: str, make_bucket: Any,
                            http_server: ServerProcess, alice: User) -> None:
    alice_bucket = make_bucket(http_server, user=alice)
    mine = s3.list_buckets()
    assert mine["Owner"]["ID"]
    names = [b["Name"] for b in mine["Buckets"]]
    assert bucket in names
    assert names == sorted(names)
    for b in mine["Buckets"]:
        assert b["CreationDate"].tzinfo is not None
    theirs = alice_s3.list_buckets()
    assert [b["Name"] for b in theirs["Buckets"]] == [alice_bucket]
    assert theirs["Owner"]["ID"] != mine["Owner"]["ID"]
    assert theirs["Owner"]["ID"] == alice.user_id


def test_operations_on_missing_bucket(s3: Any) -> None:
    missing = unique_bucket_name("missing")
    with s3_error("NoSuchBucket", 404):
        s3.put_object(Bucket=missing, Key="k", Body=b"x")
    with s3_error("NoSuchBucket", 404):
        s3.get_object(Bucket=missing, Key="k")
    with s3_error("NoSuchBucket", 404):
        s3.get_bucket_location(Bucket=missing)
    with s3_error("NoSuchBucket", 404):
        s3.get_bucket_tagging(Bucket=missing)


@pytest.fixture(scope="module")
def eu_server(tmp_path_factory: pytest.TempPathFactory, root_user: User) -> Iterator[ServerProcess]:
    tmp: Path = tmp_path_factory.mktemp("eu")
    srv = start_server(tmp, root_user, [], extra_env={"RS3GW_REGION": "eu-west-1"})
    yield srv
    stop_server(srv)


def test_location_constraint(eu_server: ServerProcess) -> None:
    client = make_client(eu_server, region_name="eu-west-1")
    name = unique_bucket_name()
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    try:
        assert client.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-west-1"
        head = client.head_bucket(Bucket=name)
        assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "eu-west-1"
        with pytest.raises(ClientError) as info:
            client.create_bucket(Bucket=unique_bucket_name(),
                                 CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
        assert http_status(info.value) == 400
        assert info.value.response["Error"]["Code"] in (
            "IllegalLocationConstraintException", "InvalidLocationConstraint")
    finally:
        empty_and_delete_bucket(client, name)


@pytest.mark.parametrize("call,code", [
    ("get_bucket_cors", "NoSuchCORSConfiguration"),
    ("get_bucket_lifecycle_configuration", "NoSuchLifecycleConfiguration"),
    ("get_bucket_encryption", "ServerSideEncryptionConfigurationNotFoundError"),
    ("get_bucket_website", "NoSuchWebsiteConfiguration"),
    ("get_public_access_block", "NoSuchPublicAccessBlockConfiguration"),
])
def test_unconfigured_sub_resources_read_like_s3(s3: Any, bucket: str, call: str, code: str) -> None:
    # Tools such as Terraform probe every bucket sub-resource and expect S3's "not configured" 404s.
    with s3_error(code, 404):
        getattr(s3, call)(Bucket=bucket)


def test_unconfigured_sub_resources_empty_documents_and_writes(s3: Any, bucket: str) -> None:
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)
    assert s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "BucketOwner"
    s3.delete_bucket_cors(Bucket=bucket)            # nothing configured: a no-op, as on S3
    with s3_error("NotImplemented", 501):
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
            {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]})
