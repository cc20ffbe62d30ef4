"""The error table and the XML error documents built from it."""
import xml.etree.ElementTree as ET

import pytest

from rs3gw.s3.errors import ERRORS, S3Error

# Codes whose status AWS documents; a regression here breaks SDK retry and error handling.
EXPECTED = {
    "AccessDenied": 403, "BadDigest": 400, "BucketAlreadyExists": 409, "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409, "EntityTooLarge": 400, "EntityTooSmall": 400, "InternalError": 500,
    "InvalidAccessKeyId": 403, "InvalidArgument": 400, "InvalidBucketName": 400, "InvalidDigest": 400,
    "InvalidPart": 400, "InvalidPartOrder": 400, "InvalidRange": 416, "InvalidRequest": 400,
    "KeyTooLongError": 400, "MalformedXML": 400, "MethodNotAllowed": 405, "MissingContentLength": 411,
    "NoSuchBucket": 404, "NoSuchKey": 404, "NoSuchUpload": 404, "NoSuchBucketPolicy": 404,
    "NoSuchTagSet": 404, "NotImplemented": 501, "PreconditionFailed": 412, "RequestTimeTooSkewed": 403,
    "SignatureDoesNotMatch": 403, "SlowDown": 503, "XAmzContentSHA256Mismatch": 400,
    "ConditionalRequestConflict": 409, "RequestTimeout": 400, "NotModified": 304,
}


@pytest.mark.parametrize("code,status", sorted(EXPECTED.items()))
def test_status(code: str, status: int) -> None:
    assert ERRORS[code][0] == status
    assert S3Error(code).status == status


def test_every_entry_is_well_formed() -> None:
    for code, (status, message) in ERRORS.items():
        assert 300 <= status < 600 and message and code[0].isupper()


def test_unknown_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        S3Error("NoSuchThing")


def test_error_document() -> None:
    from rs3gw.config import Config
    from rs3gw.s3.access import AccessControl
    from rs3gw.s3.app import S3App
    app = S3App(Config(), store=None, access=AccessControl(Config()))  # type: ignore[arg-type]
    resp = app.error(S3Error("NoSuchKey", resource="/b/k", Key="k"), "RID123", None)
    assert resp.status == 404
    assert ("Content-Type", "application/xml") in resp.headers
    root = ET.fromstring(resp.body)  # type: ignore[arg-type]
    assert root.tag == "Error"
    assert [root.findtext(t) for t in ("Code", "Key", "Resource", "RequestId")] == \
        ["NoSuchKey", "k", "/b/k", "RID123"]
    assert root.findtext("Message")
