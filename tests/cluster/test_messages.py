"""Typed node-to-node messages: every type round-trips, malformed or unknown ones are refused with a
clear error and counted while the connection stays up, and a later release's additions are read."""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from cluster_helpers import run
from hypothesis import given
from hypothesis import strategies as st

from rs3gw.cluster import messages, wire
from rs3gw.cluster.events import DeleteObject, PutObject
from rs3gw.cluster.hlc import HLCTimestamp
from rs3gw.cluster.messages import Applied, HeadObject, ObjectHead, Request
from rs3gw.cluster.rpc import Inbound, Rpc
from rs3gw.cluster.transport import ProtocolError, RemoteError, Transport
from rs3gw.cluster.versions import VersionVector
from rs3gw.storage import ObjectMeta, Segment


def _meta(key: str = "k") -> ObjectMeta:
    return ObjectMeta(bucket="b", key=key, vid="v1", size=3, etag="e", last_modified=1.5,
                      headers={"x-amz-meta-a": "1"}, segments=[Segment("v1", 3, "e", {"crc32": "AA=="})],
                      owner_id="o")


_SAMPLES: dict[Any, Any] = {str: "a\udcff/ключ", int: 7, float: 2.5, bool: True, bytes: b"\x00\xff"}


def _sample(tp: Any) -> Any:
    """A value of any field type the messages use (S3 keys with lone surrogates included)."""
    if tp in _SAMPLES:
        return _SAMPLES[tp]
    if tp is Any:
        return {"zone": "z1", "disks": 8}
    if tp is ObjectMeta:
        return _meta()
    if tp is messages.ReplicationEvent:
        return PutObject(event_id=HLCTimestamp(10, 1, "n1"), bucket="b",
                         vector=VersionVector({"n1": 2}), meta=_meta())
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _sample(next(a for a in args if a is not type(None)))
    if origin is list:
        return [_sample(args[0]), _sample(args[0])]
    if origin is dict:
        return {"k1": _sample(args[1])}
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _sample(hints[f.name]) for f in dataclasses.fields(tp) if f.init})
    raise AssertionError(f"no sample for {tp!r}")


def test_every_message_type_round_trips_with_its_reply() -> None:
    seen_types: set[str] = set()
    for type_, cls in messages.REQUESTS.items():
        assert cls.TYPE == type_ and type_ not in seen_types
        seen_types.add(type_)
        for c in (cls, cls.REPLY):
            value = _sample(c)
            body = wire.encode(value)
            assert body["v"] == c.VERSION
            assert wire.decode(c, body) == value, c.__name__
    # Every request class of the module is registered (a forgotten one would be served by nobody).
    defined = {c for c in vars(messages).values()
               if isinstance(c, type) and issubclass(c, Request) and c is not Request}
    assert defined == set(messages.REQUESTS.values())


@given(st.text(), st.integers(0, 2**63), st.binary(max_size=64), st.none() | st.binary())
def test_object_heads_round_trip_any_key_and_stamp(key: str, size: int, etag: bytes,
                                                    stamp: bytes | None) -> None:
    meta = dataclasses.replace(_meta(key), size=size, etag=etag.hex(), segments=[])
    head = ObjectHead(stamp=stamp, meta=meta)
    # Through the real frame codec too: msgpack with surrogatepass on both sides.
    import msgpack

    from rs3gw.cluster.transport import encode_frame
    frame = encode_frame({"t": "x", "b": wire.encode(head)})
    back = msgpack.unpackb(frame[4:], raw=False, unicode_errors="surrogatepass")["b"]
    assert wire.decode(ObjectHead, back) == head


def test_decoding_names_the_first_wrong_field() -> None:
    good = wire.encode(HeadObject(bucket="b", key="k"))
    for bad, where in ((dict(good, bucket=3), "HeadObject.bucket: expected str, got int"),
                       ({k: v for k, v in good.items() if k != "key"}, "HeadObject.key: missing"),
                       (dict(good, key=True), "HeadObject.key: expected str, got bool")):
        with pytest.raises(wire.WireError, match=where):
            wire.decode(HeadObject, bad)
    tomb = DeleteObject(event_id=HLCTimestamp(10, 0, "n1"), bucket="b", vector=VersionVector(),
                        object_key="k")
    body = wire.encode(messages.ApplyEvent(event=tomb))
    body["event"]["op"] = "Explode"
    with pytest.raises(wire.WireError, match="ApplyEvent.event: unknown event type"):
        wire.decode(messages.ApplyEvent, body)
    with pytest.raises(wire.UnsupportedVersion, match="versions 1..1"):
        wire.decode(HeadObject, dict(good, v=2))
    with pytest.raises(wire.UnsupportedVersion):
        wire.decode(HeadObject, {k: v for k, v in good.items() if k != "v"})


# --- a later release talking to this one --------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HeadObjectNext(Request[ObjectHead]):
    """What a later release might send: HeadObject with an added optional field (no bump)."""
    TYPE = "rep.head"
    REPLY = ObjectHead
    bucket: str
    key: str
    version_id: str | None = None
    part_number: int | None = None


@dataclass(frozen=True, slots=True)
class HeadObjectV2(Request[ObjectHead]):
    """A later release's incompatible change: VERSION 2 (MIN_VERSION stays 1: it still decodes
    what this release sends)."""
    TYPE = "rep.head"
    VERSION: ClassVar[int] = 2
    REPLY = ObjectHead
    bucket: str
    key: str
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class Wrongly(Request[Applied]):
    TYPE = "rep.head"          # a peer that sends HeadObject's type with another shape
    REPLY = Applied
    bucket: int
    extra: list[int] = field(default_factory=list)


def test_refusals_are_clear_counted_and_leave_the_connection_up() -> None:
    async def main() -> None:
        server_t, client_t = Transport(), Transport()
        server, client = Rpc(server_t), Rpc(client_t)
        asked: list[HeadObject] = []

        async def head(req: HeadObject, _in: Inbound) -> ObjectHead:
            asked.append(req)
            return ObjectHead(stamp=b"s", meta=_meta(req.key) if req.key == "full" else None)
        server.serve(HeadObject, head)
        addr = await server_t.start()
        try:
            ok = await client.request(addr, HeadObject(bucket="b", key="full"))
            assert ok.reply.meta == _meta("full") and ok.reply.stamp == b"s"
            with pytest.raises(RemoteError) as e1:
                await client_t.request(addr, "rep.nonesuch", {"v": 1})
            assert e1.value.code == "UnknownMessageType" and "rep.nonesuch" in e1.value.message
            with pytest.raises(RemoteError) as e2:
                await client.request(addr, Wrongly(bucket=1))
            assert e2.value.code == "BadMessage"
            assert e2.value.message == "HeadObject.bucket: expected str, got int"
            with pytest.raises(RemoteError) as e3:
                await client.request(addr, HeadObjectV2(bucket="b", key="k"))
            assert e3.value.code == "UnsupportedVersion" and "versions 1..1" in e3.value.message
            # An added optional field from a later release is read, and ignored.
            got = await client.request(addr, HeadObjectNext(bucket="b", key="k", part_number=3))
            assert got.reply.meta is None and asked[-1] == HeadObject(bucket="b", key="k")
            assert dict(server.rejected) == {"unknown_type": 1, "malformed": 1,
                                             "unsupported_version": 1, "bad_reply": 0}
            # One connection carried all of it: no refusal dropped it.
            assert len(client_t._outbound) == 1 and len(server_t._all) == 1
        finally:
            await client_t.close()
            await server_t.close()
    run(main())


def test_a_later_release_still_serves_this_release() -> None:
    async def main() -> None:
        next_t, old_t = Transport(), Transport()
        next_node, old_node = Rpc(next_t), Rpc(old_t)
        asked: list[HeadObjectV2] = []

        async def head(req: HeadObjectV2, _in: Inbound) -> ObjectHead:
            asked.append(req)
            return ObjectHead(stamp=None, meta=None)
        next_node.serve(HeadObjectV2, head)
        addr = await next_t.start()
        try:
            await old_node.request(addr, HeadObject(bucket="b", key="k"))
            assert asked == [HeadObjectV2(bucket="b", key="k", version_id=None)]
        finally:
            await old_t.close()
            await next_t.close()
    run(main())


def test_a_malformed_reply_is_a_protocol_error_counted_by_the_caller() -> None:
    async def main() -> None:
        server_t, client_t = Transport(), Transport()
        client = Rpc(client_t)

        async def liar(_msg: Any) -> dict[str, Any]:
            return {"v": 1, "stamp": "not bytes", "meta": None}
        server_t.register("rep.head", liar)
        addr = await server_t.start()
        try:
            with pytest.raises(ProtocolError, match="ObjectHead.stamp: expected bytes, got str"):
                await client.request(addr, HeadObject(bucket="b", key="k"))
            assert client.rejected["bad_reply"] == 1
        finally:
            await client_t.close()
            await server_t.close()
    run(main())


def test_a_bad_event_inside_a_batch_frame_is_refused_and_counted(tmp_path: Any) -> None:
    from rs3gw._core import load
    from rs3gw.cluster import stamps
    from rs3gw.cluster.conflicts import ConflictResolver
    from rs3gw.cluster.hlc import HybridClock
    from rs3gw.cluster.messages import ApplyBatch
    from rs3gw.cluster.receiver import Receiver
    from rs3gw.cluster.stats import ReplicationStats
    from rs3gw.storage import LocalStore

    async def main() -> None:
        store = LocalStore(tmp_path / "r")
        await store.open()
        server_t, client_t = Transport(), Transport()
        server, client = Rpc(server_t), Rpc(client_t)
        rx = Receiver(store, stamps.Stamper("r", HybridClock("r"), ConflictResolver(),
                                            ConflictResolver()), ReplicationStats())
        rx.serve(server)
        addr = await server_t.start()
        try:
            enc = load("batch").BatchEncoder(codec="zstd", level=1)
            enc.add({"v": 1, "op": "PutObject", "b": "bkt"}, b"data")      # no id, no vector
            frame = enc.flush()
            with pytest.raises(RemoteError) as e:
                await client.request(addr, ApplyBatch(), stream=frame, stream_length=len(frame))
            assert e.value.code == "BadMessage" and "ApplyBatch event" in e.value.message
            assert server.rejected["malformed"] == 1
            got = await client.request(addr, HeadObject(bucket="bkt", key="k"))
            assert got.reply.meta is None      # the link still serves
        finally:
            await client_t.close()
            await server_t.close()
            await store.close()
    run(main())
