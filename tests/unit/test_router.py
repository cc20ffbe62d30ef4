"""Routing: every request shape maps to the AWS operation name, path- and virtual-host style."""
import pytest

from rs3gw.s3.errors import S3Error
from rs3gw.s3.router import route


@pytest.mark.parametrize("method,path,query,op", [
    ("GET", "/", "", "ListBuckets"),
    ("PUT", "/b", "", "CreateBucket"),
    ("HEAD", "/b", "", "HeadBucket"),
    ("DELETE", "/b/", "", "DeleteBucket"),
    ("GET", "/b", "", "ListObjects"),
    ("GET", "/b", "list-type=2&prefix=a", "ListObjectsV2"),
    ("GET", "/b", "versions", "ListObjectVersions"),
    ("GET", "/b", "uploads", "ListMultipartUploads"),
    ("GET", "/b", "location", "GetBucketLocation"),
    ("PUT", "/b", "tagging", "PutBucketTagging"),
    ("DELETE", "/b", "policy", "DeleteBucketPolicy"),
    ("POST", "/b", "delete", "DeleteObjects"),
    ("GET", "/b", "cors", "Unsupported"),
    ("GET", "/b", "lifecycle", "GetBucketLifecycleConfiguration"),
    ("PUT", "/b", "lifecycle", "PutBucketLifecycleConfiguration"),
    ("DELETE", "/b", "lifecycle", "DeleteBucketLifecycle"),
    ("PUT", "/b/k", "", "PutObject"),
    ("GET", "/b/k", "", "GetObject"),
    ("HEAD", "/b/k", "", "HeadObject"),
    ("DELETE", "/b/k", "", "DeleteObject"),
    ("POST", "/b/k", "uploads", "CreateMultipartUpload"),
    ("PUT", "/b/k", "partNumber=1&uploadId=u", "UploadPart"),
    ("POST", "/b/k", "uploadId=u", "CompleteMultipartUpload"),
    ("DELETE", "/b/k", "uploadId=u", "AbortMultipartUpload"),
    ("GET", "/b/k", "uploadId=u", "ListParts"),
    ("PUT", "/b/k", "tagging", "PutObjectTagging"),
    ("PUT", "/b", "object-lock", "PutObjectLockConfiguration"),
    ("GET", "/b", "object-lock", "GetObjectLockConfiguration"),
    ("PUT", "/b/k", "retention&versionId=v", "PutObjectRetention"),
    ("GET", "/b/k", "retention", "GetObjectRetention"),
    ("PUT", "/b/k", "legal-hold", "PutObjectLegalHold"),
    ("GET", "/b/k", "legal-hold&versionId=v", "GetObjectLegalHold"),
])
def test_operations(method: str, path: str, query: str, op: str) -> None:
    assert route(method, path, query, "localhost:9000", None).op == op


def test_key_decoded_once_plus_kept() -> None:
    ep = route("GET", "/b/a%20b+c%2Bd/%E2%82%AC/../x", "", "h", None)
    assert ep.bucket == "b" and ep.key == "a b+c+d/€/../x"


def test_leading_slash_and_empty_segments_in_key() -> None:
    ep = route("GET", "/b//k//", "", "h", None)
    assert ep.key == "/k//"


def test_virtual_host() -> None:
    ep = route("GET", "/some/key", "", "mybucket.s3.local:9000", "s3.local")
    assert (ep.op, ep.bucket, ep.key, ep.virtual_host) == ("GetObject", "mybucket", "some/key", True)
    ep = route("GET", "/", "list-type=2", "mybucket.s3.local", "s3.local")
    assert (ep.op, ep.bucket, ep.key) == ("ListObjectsV2", "mybucket", None)
    # the root domain itself is path style
    assert route("GET", "/b/k", "", "s3.local:9000", "s3.local").bucket == "b"


def test_bad_encoding_is_invalid_uri() -> None:
    with pytest.raises(S3Error) as e:
        route("GET", "/b/%ff%fe", "", "h", None)
    assert e.value.code == "InvalidURI"


def test_post_object_level_without_sub_resource() -> None:
    with pytest.raises(S3Error) as e:
        route("POST", "/b/k", "", "h", None)
    assert e.value.status == 405


@pytest.mark.parametrize("method,path,query", [
    ("DELETE", "/b", "object-lock"), ("DELETE", "/b/k", "retention"),
    ("POST", "/b/k", "legal-hold"), ("HEAD", "/b/k", "retention"),
])
def test_lock_sub_resources_take_only_get_and_put(method: str, path: str, query: str) -> None:
    # Never the plain DELETE/POST of the bucket or object (DELETE /b/k?retention deleting k).
    with pytest.raises(S3Error) as e:
        route(method, path, query, "h", None)
    assert e.value.code == "MethodNotAllowed"
