"""Replication events: encoding round trips (msgpack and batch frames), strict decoding, decide(),
and convergence: replicas that receive the same events in any order, duplicates included, end equal."""
from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rs3gw._core import batch, batch_ref
from rs3gw.cluster.conflicts import ConflictResolver, Strategy
from rs3gw.cluster.events import (
    EVENT_FORMAT_VERSION,
    EVENT_TYPES,
    Action,
    CreateBucket,
    DeleteBucket,
    DeleteBucketConfig,
    DeleteBucketPolicy,
    DeleteBucketTagging,
    DeleteObject,
    EventDecodeError,
    PutBucketConfig,
    PutBucketPolicy,
    PutBucketTagging,
    PutObject,
    ReplicationEvent,
    decide,
    decode_event,
    pack_event,
    unpack_event,
)
from rs3gw.cluster.hlc import HLCTimestamp, HybridClock
from rs3gw.cluster.versions import ObjectVersion, VersionVector
from rs3gw.storage.types import ObjectMeta, Segment

T1 = HLCTimestamp(1_700_000_000_000, 3, "node-a")
VV = VersionVector({"node-a": 4, "node-b": 1})

text = st.text(max_size=12)
str_maps = st.dictionaries(st.text(min_size=1, max_size=6), text, max_size=3)
segments = st.lists(st.builds(Segment, st.text(min_size=1, max_size=8), st.integers(0, 2**40), text, str_maps),
                    max_size=4)


@st.composite
def metas(draw: st.DrawFn) -> ObjectMeta:
    segs = draw(segments)
    size = sum(s.size for s in segs) if segs else draw(st.integers(0, 2**40))
    return ObjectMeta(bucket="bkt", key=draw(st.text(min_size=1, max_size=20)), vid=draw(text), size=size,
                      etag=draw(text), last_modified=draw(st.floats(0, 2e9)),
                      content_type=draw(st.one_of(st.none(), text)), headers=draw(str_maps),
                      checksums=draw(str_maps), checksum_type=draw(st.sampled_from([None, "COMPOSITE"])),
                      tags=draw(str_maps), segments=segs, parts_count=len(segs) or None, owner_id=draw(text))


def all_kinds() -> list[ReplicationEvent]:
    common: dict[str, Any] = {"event_id": T1, "bucket": "bkt", "vector": VV}
    meta = ObjectMeta("bkt", "k/é/\udcff", "vid1", 7, "etag-2", 12.5, "text/plain", {"x-amz-meta-a": "b"},
                      segments=[Segment("p1", 3, "m1"), Segment("p2", 4, "m2", {"crc32c": "AAAA"})],
                      parts_count=2, owner_id="o")
    return [PutObject(**common, meta=meta, source="CompleteMultipartUpload"),
            PutObject(**common, meta=ObjectMeta("bkt", "plain", "v", 0, "e", 1.0), created=HLCTimestamp(1, 0, "x")),
            DeleteObject(**common, object_key="k/\udcff"),
            CreateBucket(**common, owner_id="o", region="us-east-1", creation_date=123.25),
            CreateBucket(**common, owner_id="o", region="r", creation_date=1.0,
                         configs={"versioning": b"Enabled", "object-lock": b'{"enabled":true}'}),
            DeleteBucket(**common),
            PutBucketPolicy(**common, document=b'{"Version":"2012-10-17"}'),
            DeleteBucketPolicy(**common),
            PutBucketTagging(**common, document=b"<Tagging/>"),
            DeleteBucketTagging(**common),
            # Versioned buckets: a version (a delete marker too) and one version's tombstone.
            PutObject(**common, meta=ObjectMeta("bkt", "v", "v1", 2, "e", 1.0, version_id="0" * 32,
                                                segments=[Segment("v1", 2, "e")]),
                      seq=bytes(range(16))),
            PutObject(**common, meta=ObjectMeta("bkt", "v", "", 0, "", 1.0, version_id="null",
                                                delete_marker=True)),
            DeleteObject(**common, object_key="v", version_id="a" * 32),
            PutBucketConfig(**common, document=b"Enabled", kind="versioning"),
            DeleteBucketConfig(**common, kind="lifecycle")]


@pytest.mark.parametrize("event", all_kinds(), ids=lambda e: e.OP)
def test_every_event_round_trips(event: ReplicationEvent) -> None:
    assert unpack_event(pack_event(event)) == event
    assert decode_event(event.encode()).version == event.version
    assert event.origin == "node-a" and event.version.tombstone == event.TOMBSTONE


def test_every_operation_has_an_event() -> None:
    assert set(EVENT_TYPES) == {"PutObject", "DeleteObject", "CreateBucket", "DeleteBucket", "PutBucketPolicy",
                                "DeleteBucketPolicy", "PutBucketTagging", "DeleteBucketTagging",
                                "PutBucketConfig", "DeleteBucketConfig"}


def test_versions_are_items_of_their_own() -> None:
    common: dict[str, Any] = {"event_id": T1, "bucket": "bkt", "vector": VV}
    plain = PutObject(**common, meta=ObjectMeta("bkt", "k", "v", 0, "e", 1.0))
    version = PutObject(**common, meta=ObjectMeta("bkt", "k", "v", 0, "e", 1.0, version_id="null"))
    gone = DeleteObject(**common, object_key="k", version_id="null")
    assert plain.item == ("object", "bkt", "k")
    assert version.item == gone.item == ("version", "bkt", "k\0null")
    assert PutBucketConfig(**common, document=b"x", kind="lifecycle").item == ("lifecycle", "bkt", "")
    bad = PutBucketConfig(**common, document=b"x", kind="object").encode()
    with pytest.raises(EventDecodeError, match="configuration kind"):
        decode_event(bad)


@given(meta=metas(), created=st.one_of(st.none(), st.builds(HLCTimestamp, st.integers(0, 9), st.integers(0, 9),
                                                                st.just("n"))))
def test_put_object_round_trips(meta: ObjectMeta, created: HLCTimestamp | None) -> None:
    ev = PutObject(event_id=T1, bucket="bkt", vector=VV, meta=meta, created=created)
    assert unpack_event(pack_event(ev)) == ev
    assert ev.data_length == meta.size


@pytest.mark.parametrize("core", [batch, batch_ref], ids=["compiled", "reference"])
def test_events_travel_in_batch_frames_with_their_data(core: ModuleType) -> None:
    events = all_kinds()
    datas = [b"abcdefg" if isinstance(e, PutObject) and e.data_length == 7 else None for e in events]
    enc = core.BatchEncoder(codec="none")
    for e, d in zip(events, datas, strict=True):
        enc.add(e.encode(), d)
    frame = enc.flush()
    dec = core.BatchDecoder()
    got = dec.feed(frame)
    dec.close()
    assert [decode_event(ev) for ev, _ in got] == events
    assert [None if d is None else bytes(d) for _, d in got] == datas


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(v=2), "format version 2"),
    (lambda d: d.update(op="PutBucketAcl"), "unknown event type"),
    (lambda d: d.pop("id"), "HLC timestamp"),
    (lambda d: d.update(vv=[1]), "version vector"),
    (lambda d: d.update(b=7), "bucket"),
    (lambda d: d.pop("m"), "PutObject meta: missing"),
    (lambda d: d["m"].update(size="7"), "PutObject size"),
    (lambda d: d["m"].update(size=True), "PutObject size"),
    (lambda d: d["m"].update(size=8), "do not add up"),
    (lambda d: d["m"]["seg"].append(["x", -1, "e", {}]), "segment"),
    (lambda d: d["m"].update(h={"a": 1}), "headers"),
    (lambda d: d.update(src="UploadPart"), "unknown source"),
    (lambda d: d.update(k=b"\xff\xfe"), "not text"),
])
def test_malformed_events_are_refused_with_a_reason(mutate: Any, message: str) -> None:
    d = msgpack.unpackb(pack_event(all_kinds()[0]), raw=False)
    mutate(d)
    with pytest.raises(EventDecodeError, match=message):
        decode_event(d)


@pytest.mark.parametrize("blob", [b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"v": EVENT_FORMAT_VERSION})])
def test_garbage_is_refused(blob: bytes) -> None:
    with pytest.raises(EventDecodeError):
        unpack_event(blob)


def test_put_object_checks_its_meta() -> None:
    with pytest.raises(ValueError, match="another object"):
        PutObject(event_id=T1, bucket="other", vector=VV, meta=ObjectMeta("bkt", "k", "v", 0, "e", 0.0))


# --- decide -------------------------------------------------------------------------------------------

def _put(key: str, vector: VersionVector, ts: HLCTimestamp, etag: str) -> PutObject:
    return PutObject(event_id=ts, bucket="bkt", vector=vector, meta=ObjectMeta("bkt", key, etag, 1, etag, 0.0))


def test_decide_apply_skip_and_duplicates() -> None:
    r = ConflictResolver()
    first = _put("k", VersionVector({"a": 1}), HLCTimestamp(10, 0, "a"), "e1")
    newer = _put("k", VersionVector({"a": 2}), HLCTimestamp(20, 0, "a"), "e2")
    d = decide(None, first, r)
    assert d.action is Action.APPLY and d.incoming_data and d.changed and d.version == first.version
    assert decide(first.version, first, r).action is Action.SKIP            # the same event twice
    assert not decide(first.version, first, r).changed
    assert decide(first.version, newer, r).action is Action.APPLY
    assert decide(newer.version, first, r).action is Action.SKIP            # late and dominated
    tomb = DeleteObject(event_id=HLCTimestamp(30, 0, "b"), bucket="bkt", vector=VersionVector({"a": 2, "b": 1}),
                        object_key="k")
    assert decide(newer.version, tomb, r).action is Action.APPLY
    assert decide(tomb.version, newer, r).action is Action.SKIP             # no resurrection
    assert sum(r.stats.conflicts_total.values()) == 0


@pytest.mark.parametrize("strategy", ["last_write_wins", "first_write_wins", "vector_clock_merge"])
def test_decide_on_a_conflict_is_the_same_on_both_sides(strategy: str) -> None:
    r = ConflictResolver(strategy)
    x = _put("k", VersionVector({"a": 1}), HLCTimestamp(10, 0, "a"), "ex")
    y = _put("k", VersionVector({"b": 1}), HLCTimestamp(20, 0, "b"), "ey")
    at_x, at_y = decide(x.version, y, r), decide(y.version, x, r)
    assert at_x.action is at_y.action is Action.RESOLVED
    assert at_x.version == at_y.version                                     # both replicas end equal
    assert at_x.incoming_data != at_y.incoming_data                         # one side keeps its data
    assert r.stats.conflicts_total[strategy] == 2


# --- convergence under any delivery order -------------------------------------------------------------

Store = dict[tuple[str, str, str], tuple[ObjectVersion, tuple[str, bool]]]


def _apply(store: Store, ev: ReplicationEvent, resolver: ConflictResolver) -> None:
    cur = store.get(ev.item)
    d = decide(cur[0] if cur else None, ev, resolver)
    if not d.changed:
        return
    assert d.version is not None
    payload = (ev.etag, ev.TOMBSTONE) if d.incoming_data else cur[1]  # type: ignore[index]
    store[ev.item] = (d.version, payload)


ops = st.lists(st.tuples(st.sampled_from(["put", "put", "delete", "deliver", "deliver", "tick"]),
                         st.integers(0, 2), st.integers(0, 1), st.integers(0, 10_000)), max_size=60)


@given(strategy=st.sampled_from([Strategy.LAST_WRITE_WINS, Strategy.FIRST_WRITE_WINS,
                                 Strategy.VECTOR_CLOCK_MERGE]),
       offsets=st.lists(st.integers(0, 30), min_size=3, max_size=3), ops=ops, seed=st.integers(0, 2**32))
def test_replicas_converge_whatever_the_delivery_order(strategy: Strategy, offsets: list[int],
                                                       ops: list[tuple[str, int, int, int]], seed: int) -> None:
    wall = [1000]
    names = ["n0", "n1", "n2"]
    clocks = [HybridClock(n, max_drift_ms=10**9, wall_ms=lambda i=i: wall[0] + offsets[i])
              for i, n in enumerate(names)]
    stores: list[Store] = [{}, {}, {}]
    resolver = ConflictResolver(strategy)
    log: list[bytes] = []

    def receive(i: int, blob: bytes) -> None:
        ev = unpack_event(blob)
        clocks[i].update(ev.event_id)           # the receiver's clock moves past the event's
        _apply(stores[i], ev, resolver)

    for kind, i, k, n in ops:
        key = f"key{k}"
        if kind == "tick":
            wall[0] += n % 7
        elif kind == "deliver":
            if log:
                receive(i, log[n % len(log)])
        else:
            ts = clocks[i].now()
            cur = stores[i].get(("object", "bkt", key))
            etag = f"{names[i]}-{len(log)}" if kind == "put" else ""
            tomb = kind == "delete"
            v = cur[0].successor(names[i], ts, etag, tomb) if cur else ObjectVersion.first(names[i], ts, etag, tomb)
            ev: ReplicationEvent
            if tomb:
                ev = DeleteObject(event_id=ts, bucket="bkt", vector=v.vector, created=v.created, object_key=key)
            else:
                ev = _put(key, v.vector, ts, etag)
                ev = PutObject(event_id=ts, bucket="bkt", vector=v.vector, created=v.created, meta=ev.meta)
            assert ev.version == v
            stores[i][ev.item] = (v, (etag, tomb))
            log.append(pack_event(ev))
    rng = random.Random(seed)
    for i in range(3):
        order = log + rng.sample(log, len(log) // 2)    # every event, some twice, any order
        rng.shuffle(order)
        for blob in order:
            receive(i, blob)
    assert stores[0] == stores[1] == stores[2]
    settled = dict(stores[0])
    for blob in log:                                     # applying anything again changes nothing
        receive(0, blob)
    assert stores[0] == settled
