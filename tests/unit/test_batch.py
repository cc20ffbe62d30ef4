"""rs3gw._core.batch against its reference twin: round trips, byte-identical frames, any slicing of a
stream, and hostile input that must always end in FrameError."""

from __future__ import annotations

import random
import struct
from types import ModuleType
from typing import Any

import msgpack
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from rs3gw._core import batch as compiled
from rs3gw._core import batch_ref as reference
from rs3gw._core import crc

IMPLS = [compiled, reference]
IDS = ["compiled", "reference"]
HDR = compiled.HEADER_SIZE

Event = tuple[dict[Any, Any], bytes | None]


@pytest.fixture(params=IMPLS, ids=IDS)
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return request.param


def _text(n: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"etaoinshrdlu") for _ in range(rng.randint(2, 9))) for _ in range(300)]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + b" "
    return bytes(out[:n])


def _events(n: int, seed: int = 0) -> list[Event]:
    rng = random.Random(seed)
    out: list[Event] = []
    for i in range(n):
        event: dict[Any, Any] = {
            "op": rng.choice(["PutObject", "DeleteObject", "CompleteMultipartUpload"]),
            "bucket": f"b{rng.randrange(4)}",
            "key": f"dir/ключ/{i}",
            "hlc": rng.getrandbits(63),
            "vv": {"n1": rng.randrange(100), 7: [1, 2.5, None, True]},
            "etag": rng.randbytes(16),
        }
        kind = rng.randrange(4)
        data = None if kind == 0 else b"" if kind == 1 else rng.randbytes(rng.randrange(5000))
        if kind == 3:
            data = _text(rng.randrange(20000), seed=i)
        out.append((event, data))
    return out


def _encode(mod: ModuleType, events: list[Event], codec: str = "zstd", level: int = 1) -> bytes:
    enc = mod.BatchEncoder(codec, level)
    for event, data in events:
        enc.add(event, data)
    return bytes(enc.flush())


def _plain(pairs: list[tuple[dict[Any, Any], Any]]) -> list[Event]:
    return [(e, None if d is None else bytes(d)) for e, d in pairs]


def _forge(
    payload: bytes,
    raw_len: int,
    events_len: int,
    codec: int = 0,
    version: int = 1,
    flags: int = 0,
    stored_len: int | None = None,
    magic: bytes = b"R3GB",
) -> bytes:
    """A frame with valid CRCs around whatever fields a test wants to lie in."""
    stored = len(payload) if stored_len is None else stored_len
    head = struct.pack(
        "<4sBBHIIII", magic, version, codec, flags, stored, raw_len, events_len, crc.crc32c(payload)
    )
    return head + struct.pack("<I", crc.crc32c(head)) + payload


def _header(frame: bytes) -> tuple[int, int, int, int, int, int, int, int, int]:
    return struct.unpack_from("<4sBBHIIIII", frame)[1:]  # type: ignore[return-value]


# --- API surface -----------------------------------------------------------------------------------


def test_backends_and_constants() -> None:
    assert reference.backend == "reference"
    assert compiled.backend.startswith("compiled+zstd-")
    for name in ("CODECS", "MAGIC", "FORMAT_VERSION", "HEADER_SIZE", "MAX_FRAME_BYTES_LIMIT"):
        assert getattr(compiled, name) == getattr(reference, name)
    assert compiled.CODECS == ("none", "zstd", "lz4")
    assert issubclass(compiled.FrameError, ValueError)


def test_bad_arguments(impl: ModuleType) -> None:
    with pytest.raises(ValueError):
        impl.BatchEncoder("gzip")
    with pytest.raises(ValueError):
        impl.BatchEncoder("zstd", level=99)
    for bad in (0, -1, impl.MAX_FRAME_BYTES_LIMIT + 1):
        with pytest.raises(ValueError):
            impl.BatchEncoder(max_frame_bytes=bad)
        with pytest.raises(ValueError):
            impl.BatchDecoder(max_frame_bytes=bad)
    enc = impl.BatchEncoder()
    with pytest.raises(TypeError):
        enc.add(["not", "a", "dict"])
    with pytest.raises(TypeError):
        enc.add({"x": object()})
    assert enc.pending_bytes() == 0
    assert enc.flush() == b""


# --- round trips and the twin ------------------------------------------------------------------


@pytest.mark.parametrize("codec", compiled.CODECS)
def test_round_trip(impl: ModuleType, codec: str) -> None:
    events = _events(40)
    enc = impl.BatchEncoder(codec)
    for event, data in events:
        enc.add(event, data)
    pending = enc.pending_bytes()
    frame = enc.flush()
    assert enc.pending_bytes() == 0 and enc.flush() == b""
    head = _header(frame)
    assert head[0] == 1 and head[4] == pending  # raw_len is what pending_bytes promised
    assert len(frame) == HDR + head[3]
    if codec != "none":
        assert head[1] == compiled.CODECS.index(codec)  # compressible: stays compressed
    dec = impl.BatchDecoder()
    got = dec.feed(frame)
    assert dec.buffered == 0
    dec.close()
    assert _plain(got) == events
    assert all(d is None or isinstance(d, memoryview | bytes) for _, d in got)


@pytest.mark.parametrize("codec", compiled.CODECS)
def test_crc_fields_use_crc32c(codec: str) -> None:
    frame = _encode(compiled, _events(10), codec)
    payload_crc, header_crc = struct.unpack_from("<II", frame, 20)
    assert payload_crc == crc.crc32c(frame[HDR:])
    assert header_crc == crc.crc32c(frame[:24])


def _same_zstd() -> bool:
    return compiled.backend.split("+")[1] == "zstd-{}.{}.{}".format(*zstandard.ZSTD_VERSION)


@pytest.mark.parametrize(
    ("codec", "level"), [("none", 1), ("lz4", 1), ("zstd", 1), ("zstd", -5), ("zstd", 9)]
)
def test_twin_frames_byte_identical(codec: str, level: int) -> None:
    events = _events(60, seed=3)
    ours, ref = _encode(compiled, events, codec, level), _encode(reference, events, codec, level)
    if codec != "zstd" or _same_zstd():
        assert ours == ref
        return
    # The zstandard wheel bundles its own libzstd; a different release may pick other (equally
    # valid) matches, so only the compressed bytes may differ: same header fields otherwise, same
    # raw payload.
    ho, hr = _header(ours), _header(ref)
    assert ho[:3] == hr[:3] and ho[4:6] == hr[4:6]
    dctx = zstandard.ZstdDecompressor()
    assert dctx.decompress(ours[HDR:]) == dctx.decompress(ref[HDR:])


@pytest.mark.parametrize(("codec", "level"), [(c, 1) for c in compiled.CODECS] + [("zstd", 9)])
def test_twins_decode_each_other(codec: str, level: int) -> None:
    # Above level 1 libzstd versions may choose different (equally valid) encodings; decoding
    # across implementations must still agree.
    events = _events(30, seed=5)
    for enc_mod, dec_mod in [(compiled, reference), (reference, compiled)]:
        frame = _encode(enc_mod, events, codec, level)
        assert _plain(dec_mod.BatchDecoder().feed(frame)) == events


def test_incompressible_frame_is_stored(impl: ModuleType) -> None:
    blob = random.Random(9).randbytes(100_000)
    for codec in ("zstd", "lz4"):
        enc = impl.BatchEncoder(codec, max_frame_bytes=len(blob) + 64)
        enc.add({"k": 1}, blob)
        frame = enc.flush()
        head = _header(frame)
        assert head[1] == 0 and head[3] == head[4]  # codec none, stored == raw <= max
        assert _plain(impl.BatchDecoder().feed(frame)) == [({"k": 1}, blob)]


def test_max_frame_bytes(impl: ModuleType) -> None:
    enc = impl.BatchEncoder("none", max_frame_bytes=1000)
    enc.add({"a": 1}, b"x" * 900)
    before = enc.pending_bytes()
    with pytest.raises(impl.FrameFullError):
        enc.add({"b": 2}, b"y" * 200)
    assert enc.pending_bytes() == before  # the refused event left nothing behind
    frame = enc.flush()
    assert _header(frame)[4] <= 1000
    assert _plain(impl.BatchDecoder().feed(frame)) == [({"a": 1}, b"x" * 900)]
    enc.add({"b": 2}, b"y" * 200)
    assert len(impl.BatchDecoder().feed(enc.flush())) == 1
    with pytest.raises(impl.FrameFullError):
        enc.add({"huge": 1}, b"z" * 1000)


def test_data_buffer_kinds(impl: ModuleType) -> None:
    import array

    segments: list[Any] = [bytearray(b"ba"), memoryview(b"0123456789")[2:7], array.array("I", [1, 2, 3])]
    enc = impl.BatchEncoder("lz4")
    for i, seg in enumerate(segments):
        enc.add({"i": i}, seg)
    got = impl.BatchDecoder().feed(enc.flush())
    assert [bytes(d) for _, d in got] == [bytes(s) for s in segments]
    with pytest.raises(BufferError):
        enc.add({"strided": True}, memoryview(b"abcdef")[::2])
    assert enc.pending_bytes() == 0


def test_compiled_encoder_holds_export_until_flush() -> None:
    data = bytearray(b"abc")
    enc = compiled.BatchEncoder("none")
    enc.add({}, data)
    with pytest.raises(BufferError):
        data.extend(b"more")  # no resize under the encoder's feet
    enc.flush()
    data.extend(b"more")


def test_large_frames_and_buffer_reuse_never_clobber_live_views(impl: ModuleType) -> None:
    # Past 1 MiB the compiled decoder reuses its previous payload buffer, but only when no view of
    # it is alive; views the caller keeps must never change.
    big_a, big_b = _text(3 << 20, seed=1), random.Random(2).randbytes(3 << 20)
    frames = {
        name: _encode(compiled, [({"n": name}, blob)], "lz4") for name, blob in (("a", big_a), ("b", big_b))
    }
    dec = impl.BatchDecoder()
    kept = dec.feed(frames["a"])
    for name, blob in (("b", big_b), ("a", big_a), ("b", big_b)):
        got = dec.feed(frames[name])  # the previous `got` is dropped by now: its buffer may be reused
        assert _plain(got) == [({"n": name}, blob)]
        assert got[0][1] is not None and got[0][1].readonly
    assert _plain(kept) == [({"n": "a"}, big_a)]
    two = dec.feed(frames["a"] + frames["b"])  # two frames in one call: distinct buffers
    assert _plain(two) == [({"n": "a"}, big_a), ({"n": "b"}, big_b)]


@given(st.data())
def test_any_slicing_gives_same_events(data: st.DataObject) -> None:
    event = st.dictionaries(
        st.text(max_size=8),
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.text(max_size=20)
        | st.binary(max_size=20),
        max_size=5,
    )
    segment = st.none() | st.binary(max_size=300)
    frames_spec = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(compiled.CODECS), st.lists(st.tuples(event, segment), min_size=1, max_size=8)
            ),
            min_size=1,
            max_size=4,
        )
    )
    stream = b"".join(_encode(compiled, evs, codec) for codec, evs in frames_spec)
    want = [ev for _, evs in frames_spec for ev in evs]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    for mod in IMPLS:
        dec = mod.BatchDecoder()
        got: list[tuple[dict[Any, Any], Any]] = []
        for piece in pieces:
            got += dec.feed(piece)
        assert dec.buffered == 0
        assert _plain(got) == want


# --- hostile input -----------------------------------------------------------------------------


def _feed_expect_error(mod: ModuleType, stream: bytes, max_frame_bytes: int = 64 << 20) -> None:
    dec = mod.BatchDecoder(max_frame_bytes=max_frame_bytes)
    with pytest.raises(mod.FrameError):
        dec.feed(stream)
    with pytest.raises(mod.FrameError):  # poisoned: framing is lost
        dec.feed(b"")


@pytest.mark.parametrize("codec", compiled.CODECS)
def test_every_bit_flip_is_caught(impl: ModuleType, codec: str) -> None:
    good = _encode(compiled, [({"good": 1}, b"ok")], "zstd")
    frame = _encode(compiled, [({"k": "v"}, _text(300)), ({"e": 1}, None)], codec)
    rng = random.Random(codec)
    positions = range(len(frame)) if impl is compiled else rng.sample(range(len(frame)), 40)
    for pos in positions:
        bad = bytearray(frame)
        bad[pos] ^= 1 << rng.randrange(8)
        # The good frame ahead of it in the same feed() is not returned: no partial result.
        _feed_expect_error(impl, good + bytes(bad))


def test_bad_magic_detected_early(impl: ModuleType) -> None:
    _feed_expect_error(impl, b"XY")
    _feed_expect_error(impl, b"PUT / HTTP/1.1\r\n")


def test_wrong_crc(impl: ModuleType) -> None:
    frame = bytearray(_encode(compiled, _events(5), "lz4"))
    frame[20] ^= 0xFF  # payload CRC field; the header CRC now fails
    _feed_expect_error(impl, bytes(frame))
    payload = frame[HDR:]
    raw_len, events_len = _header(bytes(frame))[4:6]
    forged = _forge(bytes(payload), raw_len, events_len, codec=2)
    forged = forged[:20] + struct.pack("<I", crc.crc32c(payload) ^ 1) + forged[24:]
    forged = forged[:24] + struct.pack("<I", crc.crc32c(forged[:24])) + forged[28:]
    _feed_expect_error(impl, forged)  # header fine, payload CRC wrong


@pytest.mark.parametrize(
    ("field", "value"), [("version", 2), ("codec", 3), ("codec", 255), ("flags", 1), ("magic", b"R3GX")]
)
def test_bad_header_fields(impl: ModuleType, field: str, value: Any) -> None:
    raw = msgpack.packb([[{"a": 1}, None]])
    _feed_expect_error(impl, _forge(raw, len(raw), len(raw), **{field: value}))


def test_oversize_length_refused_before_payload(impl: ModuleType) -> None:
    # Only the header arrives: the decoder must refuse it now, not wait for 1 GiB.
    head = _forge(b"", 1 << 30, 0, codec=1, stored_len=1 << 29)[:HDR]
    _feed_expect_error(impl, head)
    frame = _encode(compiled, [({"a": 1}, b"x" * 5000)], "none")
    _feed_expect_error(impl, frame, max_frame_bytes=4096)


def test_truncated_frame_at_eof(impl: ModuleType) -> None:
    frame = _encode(compiled, _events(4), "zstd")
    for cut in (1, 3, HDR - 1, HDR, HDR + 1, len(frame) - 1):
        dec = impl.BatchDecoder()
        assert dec.feed(frame + frame[:cut]) != []
        assert dec.buffered == cut  # held, not lost, not decoded
        with pytest.raises(impl.FrameError):
            dec.close()


@pytest.mark.parametrize("codec", [1, 2])
def test_corrupt_compressed_data_with_valid_crc(impl: ModuleType, codec: int) -> None:
    raw = msgpack.packb([[{"a": 1}, 4000]]) + _text(4000)
    frame = _encode(compiled, [({"a": 1}, _text(4000))], compiled.CODECS[codec])
    payload = bytearray(frame[HDR:])
    payload[len(payload) // 2] ^= 0x55
    payload[-1] ^= 0x0F
    _feed_expect_error(impl, _forge(bytes(payload), len(raw), len(raw) - 4000, codec=codec))
    # Valid compressed data that decodes to fewer bytes than the header claims.
    _feed_expect_error(impl, _forge(frame[HDR:], len(raw) + 1, len(raw) - 4000, codec=codec))
    # ...or to more.
    _feed_expect_error(impl, _forge(frame[HDR:], len(raw) - 1, len(raw) - 4000, codec=codec))
    # Garbage that is not a compressed stream at all.
    _feed_expect_error(impl, _forge(b"\x00" * 37, 100, 10, codec=codec))


@pytest.mark.parametrize(
    ("events", "tail"),
    [
        (msgpack.packb([[{"a": 1}, 10]]), b"x" * 9),  # segments shorter than declared
        (msgpack.packb([[{"a": 1}, 10]]), b"x" * 11),  # longer
        (msgpack.packb([[{"a": 1}, None]]), b"x"),  # data nobody claims
        (msgpack.packb([[{"a": 1}, -1]]), b""),
        (msgpack.packb([[{"a": 1}, True]]), b"x"),
        (msgpack.packb([[{"a": 1}, "10"]]), b""),
        (msgpack.packb([[{"a": 1}]]), b""),  # not a pair
        (msgpack.packb([[[1], None]]), b""),  # event not a map
        (msgpack.packb({"a": 1}), b""),  # top level not an array
        (msgpack.packb([[{"a": 1}, None]])[:-1], b""),  # truncated msgpack
        (msgpack.packb([[{"a": 1}, None]]) + b"\xc0", b""),  # trailing msgpack
        (b"\xc1", b""),  # reserved msgpack byte
        (b"\xdd\xff\xff\xff\xff", b""),  # array header claiming 4G entries
        (msgpack.packb([[{"k": b"\xff"}, None]]).replace(b"\xc4\x01", b"\xa1"), b""),  # bad UTF-8
        (b"\x91\x92\x81\x91\x01\x01\xc0", b""),  # unhashable map key
        (b"\x91" * 5000, b""),  # nesting deeper than msgpack allows
    ],
)
def test_bad_event_section(impl: ModuleType, events: bytes, tail: bytes) -> None:
    raw = events + tail
    for codec in (0, 1):
        payload = raw if codec == 0 else zstandard.ZstdCompressor(level=1).compress(raw)
        _feed_expect_error(impl, _forge(payload, len(raw), len(events), codec=codec))


def test_events_len_over_raw_len(impl: ModuleType) -> None:
    _feed_expect_error(impl, _forge(b"\x90", 1, 2))
    _feed_expect_error(impl, _forge(b"\x90", 2, 1, stored_len=1))  # codec none: stored != raw


@given(st.data())
def test_mutated_streams_raise_only_frame_error(data: st.DataObject) -> None:
    # Whatever happens to the bytes, the result is events or FrameError; never another exception.
    small = [({"i": i, "s": "x" * i}, None if i % 3 == 0 else _text(50 * i, seed=i)) for i in range(6)]
    base = b"".join(_encode(compiled, small, c) for c in compiled.CODECS)
    stream = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(len(stream) - 1, 0)))
        if op == "flip" and stream:
            stream[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del stream[pos : pos + data.draw(st.integers(1, 64))]
        else:
            stream[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
    for mod in IMPLS:
        dec = mod.BatchDecoder()
        try:
            dec.feed(bytes(stream))
            dec.close()
        except mod.FrameError:
            pass
