"""Lifecycle configuration: the XML AWS accepts round-trips through the rule model and its stored
JSON; the XML AWS refuses is refused with AWS's error; the model's dates are AWS's dates."""
from __future__ import annotations

import datetime as dt

import pytest

from rs3gw.lifecycle.rules import Configuration, Expiration, Filter, NoncurrentExpiration, Rule, due
from rs3gw.s3.errors import S3Error
from rs3gw.s3.lifecycle import (
    abort_headers,
    configuration_xml,
    expiration_headers,
    parse_configuration,
)
from rs3gw.s3.xml import parse
from rs3gw.storage import BucketInfo, ObjectMeta, UploadInfo

DAY = 86400.0


def doc(*rules: str) -> bytes:
    return ('<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            + "".join(f"<Rule>{r}</Rule>" for r in rules) + "</LifecycleConfiguration>").encode()


def ts(s: str) -> float:
    return dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC).timestamp()


EXP = "<Expiration><Days>3</Days></Expiration>"


# --- what is accepted, and comes back as it went in -------------------------------------------

ACCEPTED = [
    f"<ID>legacy</ID><Prefix>logs/</Prefix><Status>Enabled</Status>{EXP}",
    f"<ID>empty-filter</ID><Filter></Filter><Status>Enabled</Status>{EXP}",
    f"<ID>p</ID><Filter><Prefix>a/</Prefix></Filter><Status>Disabled</Status>{EXP}",
    f"<ID>t</ID><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status>{EXP}",
    (f"<ID>gt</ID><Filter><ObjectSizeGreaterThan>500</ObjectSizeGreaterThan></Filter>"
    f"<Status>Enabled</Status>{EXP}"),
    (f"<ID>lt</ID><Filter><ObjectSizeLessThan>64000</ObjectSizeLessThan></Filter>"
    f"<Status>Enabled</Status>{EXP}"),
    ("<ID>and</ID><Filter><And><Prefix>x/</Prefix><Tag><Key>a</Key><Value>1</Value></Tag>"
    "<Tag><Key>b</Key><Value></Value></Tag><ObjectSizeGreaterThan>1</ObjectSizeGreaterThan>"
    "<ObjectSizeLessThan>10</ObjectSizeLessThan></And></Filter><Status>Enabled</Status>"
    "<Expiration><Date>2030-01-02T00:00:00.000Z</Date></Expiration>"),
    ("<ID>marker</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status>"
    "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"),
    ("<ID>nc</ID><Filter/><Status>Enabled</Status><NoncurrentVersionExpiration>"
    "<NoncurrentDays>30</NoncurrentDays><NewerNoncurrentVersions>5</NewerNoncurrentVersions>"
    "</NoncurrentVersionExpiration>"),
    ("<ID>mpu</ID><Filter><Prefix>up/</Prefix></Filter><Status>Enabled</Status>"
    "<AbortIncompleteMultipartUpload><DaysAfterInitiation>7</DaysAfterInitiation>"
    "</AbortIncompleteMultipartUpload>"),
    ("<ID>all</ID><Filter><Prefix>z</Prefix></Filter><Status>Enabled</Status>"
    "<Expiration><Days>9</Days></Expiration><NoncurrentVersionExpiration><NoncurrentDays>1"
    "</NoncurrentDays></NoncurrentVersionExpiration><AbortIncompleteMultipartUpload>"
    "<DaysAfterInitiation>2</DaysAfterInitiation></AbortIncompleteMultipartUpload>"),
]


@pytest.mark.parametrize("rule", ACCEPTED)
def test_accepted_rules_round_trip(rule: str) -> None:
    cfg = parse_configuration(doc(rule))
    again = parse_configuration(configuration_xml(cfg))
    assert again == cfg
    assert Configuration.from_json(cfg.to_json()) == cfg
    # The XML served is the XML put, element for element (whitespace and namespace aside).
    assert _canon(configuration_xml(cfg)) == _canon(doc(rule))


def _canon(body: bytes) -> list[tuple[str, str]]:
    return [(el.tag, (el.text or "").strip()) for el in parse(body).iter()]


def test_the_model_of_each_filter_form() -> None:
    rules = parse_configuration(doc(*ACCEPTED)).rules
    by_id = {r.id: r for r in rules}
    assert by_id["legacy"].filter == Filter(prefix="logs/", form="legacy")
    assert by_id["empty-filter"].filter == Filter()
    assert by_id["t"].filter.tags == (("k", "v"),)
    assert by_id["and"].filter == Filter("x/", (("a", "1"), ("b", "")), 1, 10, "and")
    assert by_id["and"].expiration == Expiration(date=ts("2030-01-02T00:00:00"))
    assert by_id["p"].enabled is False
    assert by_id["nc"].noncurrent == NoncurrentExpiration(30, 5)
    assert by_id["mpu"].abort_days == 7
    assert by_id["marker"].expiration == Expiration(expired_object_delete_marker=True)


def test_a_rule_without_id_is_named_and_dates_take_any_iso_spelling() -> None:
    cfg = parse_configuration(doc("<Filter/><Status>Enabled</Status><Expiration><Date>"
                                  "2030-01-02T00:00:00Z</Date></Expiration>"))
    rule = cfg.rules[0]
    assert 0 < len(rule.id) <= 255
    assert rule.expiration == Expiration(date=ts("2030-01-02T00:00:00"))
    assert b"<Date>2030-01-02T00:00:00.000Z</Date>" in configuration_xml(cfg)


def test_a_thousand_rules() -> None:
    rules = [f"<ID>r{i}</ID><Filter><Prefix>{i}/</Prefix></Filter><Status>Enabled</Status>{EXP}"
             for i in range(1000)]
    assert len(parse_configuration(doc(*rules)).rules) == 1000


# --- what AWS refuses ---------------------------------------------------------------------------

REFUSED = [
    # the document's shape: MalformedXML
    ("MalformedXML", "<LifecycleConfiguration></LifecycleConfiguration>"),
    ("MalformedXML", "<LifecycleConfiguration><Bogus/></LifecycleConfiguration>"),
    ("MalformedXML", "<Other><Rule/></Other>"),
    ("MalformedXML", f"<ID>s</ID><Filter/><Status>enabled</Status>{EXP}"),
    ("MalformedXML", f"<ID>s</ID><Filter/>{EXP}"),
    ("MalformedXML", f"<ID>both</ID><Prefix>a</Prefix><Filter/><Status>Enabled</Status>{EXP}"),
    ("MalformedXML", f"<ID>none</ID><Status>Enabled</Status>{EXP}"),
    ("MalformedXML", (f"<ID>two</ID><Filter><Prefix>a</Prefix><Tag><Key>k</Key><Value>v</Value>"
                     f"</Tag></Filter><Status>Enabled</Status>{EXP}")),
    ("MalformedXML", f"<ID>and0</ID><Filter><And></And></Filter><Status>Enabled</Status>{EXP}"),
    ("MalformedXML", (f"<ID>nokey</ID><Filter><Tag><Value>v</Value></Tag></Filter>"
                     f"<Status>Enabled</Status>{EXP}")),
    ("MalformedXML", f"<ID>unknown</ID><Filter/><Status>Enabled</Status><Color>red</Color>{EXP}"),
    ("MalformedXML", f"<ID>dup</ID><Filter/><Status>Enabled</Status>{EXP}{EXP}"),
    ("MalformedXML", "<ID>e0</ID><Filter/><Status>Enabled</Status><Expiration></Expiration>"),
    ("MalformedXML", ("<ID>e2</ID><Filter/><Status>Enabled</Status><Expiration><Days>1</Days>"
                     "<Date>2030-01-01T00:00:00Z</Date></Expiration>")),
    ("MalformedXML", ("<ID>e3</ID><Filter/><Status>Enabled</Status><Expiration><Days>1</Days>"
                     "<ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>")),
    ("MalformedXML", ("<ID>d</ID><Filter/><Status>Enabled</Status><Expiration><Days>one</Days>"
                     "</Expiration>")),
    ("MalformedXML", ("<ID>date</ID><Filter/><Status>Enabled</Status><Expiration><Date>soon</Date>"
                     "</Expiration>")),
    ("MalformedXML", ("<ID>m</ID><Filter/><Status>Enabled</Status><Expiration>"
                     "<ExpiredObjectDeleteMarker>yes</ExpiredObjectDeleteMarker></Expiration>")),
    ("MalformedXML", ("<ID>a</ID><Filter/><Status>Enabled</Status><AbortIncompleteMultipartUpload>"
                     "</AbortIncompleteMultipartUpload>")),
    # values out of range: InvalidArgument
    ("InvalidArgument", f"<ID>{'x' * 256}</ID><Filter/><Status>Enabled</Status>{EXP}"),
    ("InvalidArgument", ("<ID>z</ID><Filter/><Status>Enabled</Status><Expiration><Days>0</Days>"
                        "</Expiration>")),
    ("InvalidArgument", ("<ID>n</ID><Filter/><Status>Enabled</Status><Expiration><Days>-1</Days>"
                        "</Expiration>")),
    ("InvalidArgument", ("<ID>noon</ID><Filter/><Status>Enabled</Status><Expiration>"
                        "<Date>2030-01-01T12:00:00Z</Date></Expiration>")),
    ("InvalidArgument", ("<ID>nc0</ID><Filter/><Status>Enabled</Status><NoncurrentVersionExpiration>"
                        "<NoncurrentDays>0</NoncurrentDays></NoncurrentVersionExpiration>")),
    ("InvalidArgument", ("<ID>nc-</ID><Filter/><Status>Enabled</Status><NoncurrentVersionExpiration>"
                        "<NewerNoncurrentVersions>3</NewerNoncurrentVersions>"
                        "</NoncurrentVersionExpiration>")),
    ("InvalidArgument", ("<ID>ncn</ID><Filter/><Status>Enabled</Status><NoncurrentVersionExpiration>"
                        "<NoncurrentDays>1</NoncurrentDays><NewerNoncurrentVersions>101"
                        "</NewerNoncurrentVersions></NoncurrentVersionExpiration>")),
    ("InvalidArgument", ("<ID>ab0</ID><Filter/><Status>Enabled</Status><AbortIncompleteMultipartUpload>"
                        "<DaysAfterInitiation>0</DaysAfterInitiation></AbortIncompleteMultipartUpload>")),
    ("InvalidArgument", (f"<ID>sz</ID><Filter><And><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan>"
                        f"<ObjectSizeLessThan>10</ObjectSizeLessThan></And></Filter>"
                        f"<Status>Enabled</Status>{EXP}")),
    ("InvalidArgument", (f"<ID>szn</ID><Filter><ObjectSizeGreaterThan>-1</ObjectSizeGreaterThan>"
                        f"</Filter><Status>Enabled</Status>{EXP}")),
    # combinations AWS forbids: InvalidRequest
    ("InvalidRequest", "<ID>noaction</ID><Filter/><Status>Enabled</Status>"),
    ("InvalidRequest", ("<ID>tagabort</ID><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>"
                       "<Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>1"
                       "</DaysAfterInitiation></AbortIncompleteMultipartUpload>")),
    ("InvalidRequest", ("<ID>tagmarker</ID><Filter><And><Prefix>p</Prefix><Tag><Key>k</Key>"
                       "<Value>v</Value></Tag></And></Filter><Status>Enabled</Status><Expiration>"
                       "<ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>")),
    ("InvalidRequest", ("<ID>legacynewer</ID><Prefix>p</Prefix><Status>Enabled</Status>"
                       "<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
                       "<NewerNoncurrentVersions>1</NewerNoncurrentVersions>"
                       "</NoncurrentVersionExpiration>")),
    ("InvalidRequest", (f"<ID>duptag</ID><Filter><And><Tag><Key>k</Key><Value>1</Value></Tag><Tag>"
                       f"<Key>k</Key><Value>2</Value></Tag></And></Filter><Status>Enabled</Status>{EXP}")),
    # no other storage class here
    ("InvalidStorageClass", ("<ID>tr</ID><Filter/><Status>Enabled</Status><Transition><Days>30</Days>"
                            "<StorageClass>GLACIER</StorageClass></Transition>")),
    ("InvalidStorageClass", (f"<ID>ntr</ID><Filter/><Status>Enabled</Status>{EXP}"
                            "<NoncurrentVersionTransition><NoncurrentDays>30</NoncurrentDays>"
                            "<StorageClass>STANDARD_IA</StorageClass></NoncurrentVersionTransition>")),
]


@pytest.mark.parametrize("code,body", REFUSED)
def test_refused_like_aws(code: str, body: str) -> None:
    raw = body.encode() if body.startswith(("<LifecycleConfiguration", "<Other")) \
        else doc(body)
    with pytest.raises(S3Error) as info:
        parse_configuration(raw)
    assert info.value.code == code and info.value.status == 400


def test_duplicate_ids_and_too_many_rules() -> None:
    rule = f"<ID>same</ID><Filter/><Status>Enabled</Status>{EXP}"
    with pytest.raises(S3Error) as info:
        parse_configuration(doc(rule, rule))
    assert info.value.code == "InvalidArgument"
    rules = [f"<ID>r{i}</ID><Filter/><Status>Enabled</Status>{EXP}" for i in range(1001)]
    with pytest.raises(S3Error) as info:
        parse_configuration(doc(*rules))
    assert info.value.code == "InvalidArgument"


# --- AWS's dates ----------------------------------------------------------------------------------

def test_days_count_from_creation_rounded_up_to_the_next_midnight() -> None:
    # The user guide's example: created 1/15/2014 10:30 UTC, 3 days -> 1/19/2014 00:00 UTC.
    assert due(ts("2014-01-15T10:30:00"), 3, DAY) == ts("2014-01-19T00:00:00")
    assert due(ts("2014-01-15T00:00:00"), 1, DAY) == ts("2014-01-17T00:00:00")
    # A shortened day (tests): the same rule in 2-second days.
    assert due(101.0, 1, 2.0) == 104.0


def _cfg(*rules: Rule) -> Configuration:
    return Configuration(rules)


def test_the_earliest_expiry_of_the_rules_that_cover_an_object() -> None:
    cfg = _cfg(Rule("ten", True, Filter(), Expiration(days=10)),
               Rule("two-logs", True, Filter(prefix="logs/"), Expiration(days=2)),
               Rule("off", False, Filter(), Expiration(days=1)),
               Rule("big", True, Filter(size_gt=100), Expiration(days=1)),
               Rule("tagged", True, Filter(tags=(("t", "1"),)), Expiration(days=1)))
    t = ts("2024-03-01T08:00:00")
    assert cfg.current_expiry("a", 5, {}, t, DAY) == (ts("2024-03-12T00:00:00"), "ten")
    assert cfg.current_expiry("logs/x", 5, {}, t, DAY) == (ts("2024-03-04T00:00:00"), "two-logs")
    assert cfg.current_expiry("a", 500, {}, t, DAY) == (ts("2024-03-03T00:00:00"), "big")
    assert cfg.current_expiry("a", 5, {"t": "1", "u": "2"}, t, DAY)[1] == "tagged"   # type: ignore[index]
    assert cfg.current_expiry("a", 5, {"t": "2"}, t, DAY)[1] == "ten"               # type: ignore[index]
    assert _cfg(Rule("off", False, Filter(), Expiration(days=1))).current_expiry(
        "a", 1, {}, t, DAY) is None


def test_noncurrent_age_and_the_newer_versions_kept() -> None:
    cfg = _cfg(Rule("nc", True, Filter(prefix="p"), noncurrent=NoncurrentExpiration(2, 3)))
    since = ts("2024-01-01T10:00:00")
    due_at = ts("2024-01-04T00:00:00")
    assert not cfg.noncurrent_expired("p1", 1, None, False, since, 3, DAY, due_at - 1)
    assert cfg.noncurrent_expired("p1", 1, None, False, since, 3, DAY, due_at)
    assert not cfg.noncurrent_expired("p1", 1, None, False, since, 2, DAY, due_at)
    assert not cfg.noncurrent_expired("q1", 1, None, False, since, 9, DAY, due_at)


def test_sole_markers_and_uploads() -> None:
    cfg = _cfg(Rule("m", True, Filter(prefix="m/"), Expiration(expired_object_delete_marker=True)),
               Rule("d", True, Filter(prefix="d/"), Expiration(days=1)),
               Rule("u", True, Filter(prefix="u/"), abort_days=2))
    t = ts("2024-01-01T10:00:00")
    assert cfg.sole_marker_expired("m/x", t, DAY, t)
    assert not cfg.sole_marker_expired("d/x", t, DAY, ts("2024-01-02T23:59:59"))
    assert cfg.sole_marker_expired("d/x", t, DAY, ts("2024-01-03T00:00:00"))
    assert not cfg.sole_marker_expired("z", t, DAY, t + 100 * DAY)
    assert cfg.upload_abort("u/k", t, DAY) == (ts("2024-01-04T00:00:00"), "u")
    assert cfg.upload_abort("k", t, DAY) is None


# --- the headers ---------------------------------------------------------------------------------

def test_x_amz_expiration_and_abort_headers() -> None:
    cfg = parse_configuration(doc(
        "<ID>pics</ID><Filter><Prefix>pics/</Prefix></Filter><Status>Enabled</Status>"
        "<Expiration><Days>3</Days></Expiration>",
        "<ID>ups</ID><Filter><Prefix>pics/</Prefix></Filter><Status>Enabled</Status>"
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
        "</AbortIncompleteMultipartUpload>"))
    bucket = BucketInfo("b", "o", "us-east-1", 0.0, {"lifecycle": cfg.to_json()})
    meta = ObjectMeta("b", "pics/a.jpg", "v", 1, "e", ts("2014-01-15T10:30:00"))
    assert expiration_headers(bucket, meta, DAY) == [
        ("x-amz-expiration", 'expiry-date="Sun, 19 Jan 2014 00:00:00 GMT", rule-id="pics"')]
    meta.key = "docs/a"
    assert expiration_headers(bucket, meta, DAY) == []
    assert expiration_headers(BucketInfo("b", "o", "r", 0.0), meta, DAY) == []
    up = UploadInfo("u1", "b", "pics/big", ts("2014-01-15T10:30:00"), "o")
    assert abort_headers(bucket, up, DAY) == [("x-amz-abort-date", "Fri, 17 Jan 2014 00:00:00 GMT"),
                                              ("x-amz-abort-rule-id", "ups")]
