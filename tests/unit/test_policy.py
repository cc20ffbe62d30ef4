"""Bucket policy validation and evaluation for the cases users rely on."""
import json

import pytest

from rs3gw.s3.errors import S3Error
from rs3gw.s3.policy import Principal, RequestContext, evaluate, validate

ALICE = Principal("alice-id", "AKALICE", "alice")
ANON = Principal(None, None, None)
CTX = RequestContext(secure_transport=False, source_ip="127.0.0.1")


def doc(*stmts: dict) -> bytes:
    return json.dumps({"Version": "2012-10-17", "Statement": list(stmts)}).encode()


def test_allow_by_user_arn_and_wildcard_resource() -> None:
    d = doc({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123:user/alice"},
             "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bkt/*"})
    assert evaluate(d, ALICE, "s3:GetObject", "arn:aws:s3:::bkt/a/b", CTX) == "Allow"
    assert evaluate(d, ALICE, "s3:PutObject", "arn:aws:s3:::bkt/a/b", CTX) is None
    assert evaluate(d, ANON, "s3:GetObject", "arn:aws:s3:::bkt/a/b", CTX) is None
    assert evaluate(d, ALICE, "s3:GetObject", "arn:aws:s3:::other/a", CTX) is None


def test_deny_beats_allow() -> None:
    d = doc({"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::bkt/*"},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::bkt/secret/*"})
    assert evaluate(d, ANON, "s3:GetObject", "arn:aws:s3:::bkt/public", CTX) == "Allow"
    assert evaluate(d, ANON, "s3:GetObject", "arn:aws:s3:::bkt/secret/x", CTX) == "Deny"


def test_action_wildcards_are_case_insensitive() -> None:
    d = doc({"Effect": "Allow", "Principal": "*", "Action": ["s3:get*"], "Resource": "arn:aws:s3:::b/*"})
    assert evaluate(d, ANON, "s3:GetObjectTagging", "arn:aws:s3:::b/k", CTX) == "Allow"


def test_conditions() -> None:
    d = doc({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
    assert evaluate(d, ALICE, "s3:GetObject", "arn:aws:s3:::b/k", CTX) == "Deny"
    tls = RequestContext(secure_transport=True, source_ip="127.0.0.1")
    assert evaluate(d, ALICE, "s3:GetObject", "arn:aws:s3:::b/k", tls) is None
    d = doc({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*",
             "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}})
    assert evaluate(d, ANON, "s3:GetObject", "arn:aws:s3:::b/k", CTX) is None


def test_unknown_condition_never_widens_access() -> None:
    cond = {"StringEquals": {"aws:PrincipalOrgID": "o-123"}}
    allow = doc({"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*",
                 "Condition": cond})
    deny = doc({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*",
                "Condition": cond})
    assert evaluate(allow, ANON, "s3:GetObject", "arn:aws:s3:::b/k", CTX) is None
    assert evaluate(deny, ANON, "s3:GetObject", "arn:aws:s3:::b/k", CTX) == "Deny"


@pytest.mark.parametrize("bad", [
    b"not json", b"[]", b'{"Statement": []}',
    doc({"Effect": "Maybe", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"}),
    doc({"Effect": "Allow", "Principal": "*", "Action": "ec2:*", "Resource": "arn:aws:s3:::b/*"}),
    doc({"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::other/*"}),
    doc({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"}),
])
def test_validate_rejects(bad: bytes) -> None:
    with pytest.raises(S3Error) as e:
        validate(bad, "b")
    assert e.value.code == "MalformedPolicy"
