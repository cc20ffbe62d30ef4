"""rs3gw._core.chunked against its reference twin: same pieces, trailers and errors, feed by feed.

Property tests over random payloads, chunk sizes, dialects, slicings and input buffer types, on
well-formed streams, corrupted ones and token soup; each compares the full observable history
(every feed's output, decoded_bytes, done, the error raised and where) of the two implementations.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from types import ModuleType
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

# The stream encoder and signing context of the behaviour tests: one encoder for both suites.
from test_chunked import AMZ_DATE, EMPTY, KEY, SCOPE, SEED, _hmac, encode

from rs3gw._core import chunked as compiled
from rs3gw._core import chunked_ref as reference


def _error(err: Exception) -> tuple[Any, ...]:
    if isinstance(err, (compiled.ChunkError, reference.ChunkError)):
        return ("ChunkError", err.kind, err.message, err.string_to_sign, err.signature_provided)
    return (type(err).__name__, str(err))


def _as(kind: str, piece: bytes) -> bytes | bytearray | memoryview:
    if kind == "bytearray":
        return bytearray(piece)
    if kind == "memoryview":
        return memoryview(piece)
    return piece


def history(core: ModuleType, slices: list[bytes], *, signed: bool, trailer: bool, input_kind: str,
            max_chunk_bytes: int = 16 << 20) -> list[Any]:
    """Everything a caller can observe while feeding `slices` and finishing."""
    kw: dict[str, Any] = {"max_chunk_bytes": max_chunk_bytes}
    if signed:
        kw.update(signing_key=KEY, seed_signature=SEED, amz_date=AMZ_DATE, scope=SCOPE)
    dec = core.ChunkedDecoder(signed=signed, trailer=trailer, **kw)
    events: list[Any] = []
    failed: Exception | None = None
    for piece in slices:
        try:
            out = dec.feed(_as(input_kind, piece))
        except core.ChunkError as err:
            failed = err
            events.append(("feed-error", _error(err), dec.decoded_bytes))
            break
        types = {type(p).__name__ for p in out}
        events.append(("fed", b"".join(out), sorted(types), dec.decoded_bytes, dec.done))
    if failed is None:
        try:
            events.append(("finish", dec.finish(), dec.done))
        except core.ChunkError as err:
            failed = err
            events.append(("finish-error", _error(err)))
    if failed is not None:
        # A failed decoder stays failed, with the same error.
        for call in (lambda: dec.feed(b"0\r\n\r\n"), dec.finish):
            try:
                call()
            except core.ChunkError as again:
                events.append(("again", again is failed))
            else:
                events.append(("again", "no error"))
    return events


def assert_twins_agree(slices: list[bytes], **kw: Any) -> list[Any]:
    got = history(compiled, slices, **kw)
    want = history(reference, slices, **kw)
    assert got == want
    return got


def _slice(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    return [body[a:b] for a, b in itertools.pairwise(points)] or [b""]


TRAILERS = [("x-amz-checksum-crc32", "AAAAAA=="), ("x-amz-checksum-sha256", "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="),
            ("x-b", "2"), ("x-a", "1")]

def _filler(n: int, seed: int) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "little")).digest(n)


# st.binary alone stays tiny; sized pseudo-random payloads make multi-chunk bodies common.
payloads = st.one_of(st.binary(max_size=300), st.builds(_filler, st.integers(0, 6000), st.integers(0, 2**16)))

streams = st.fixed_dictionaries({
    "payload": payloads,
    "chunk_size": st.integers(1, 3000),
    "signed": st.booleans(),
    "trailer": st.booleans(),
    "n_trailers": st.integers(0, 4),
    "final_empty_line": st.booleans(),
    "cuts": st.lists(st.integers(0, 20_000), max_size=30),
    "input_kind": st.sampled_from(["bytes", "bytearray", "memoryview"]),
})


def _body(s: dict[str, Any]) -> bytes:
    trailers = TRAILERS[:s["n_trailers"]] if s["trailer"] else None
    return encode(s["payload"], s["chunk_size"], signed=s["signed"], trailers=trailers,
                  final_empty_line=s["final_empty_line"])


@given(s=streams)
def test_well_formed_streams(s: dict[str, Any]) -> None:
    body = _body(s)
    events = assert_twins_agree(_slice(body, s["cuts"]), signed=s["signed"], trailer=s["trailer"],
                                input_kind=s["input_kind"])
    assert events[-1][0] == "finish"
    assert b"".join(e[1] for e in events if e[0] == "fed") == s["payload"]


@given(s=streams, big=st.integers(4096, 300_000), seed=st.integers(0, 2**31))
def test_large_chunks_cross_the_gil_release_threshold(s: dict[str, Any], big: int, seed: int) -> None:
    s = dict(s, payload=_filler(big, seed),
             chunk_size=max(s["chunk_size"] * 40, 1))
    body = _body(s)
    assert_twins_agree(_slice(body, s["cuts"]), signed=s["signed"], trailer=s["trailer"],
                       input_kind=s["input_kind"])


mutations = st.lists(st.tuples(st.sampled_from(["flip", "delete", "insert", "truncate", "dup"]),
                               st.integers(0, 2**31), st.integers(1, 40), st.binary(min_size=1, max_size=8)),
                     min_size=1, max_size=4)


def _mutate(body: bytes, muts: list[tuple[str, int, int, bytes]]) -> bytes:
    b = bytearray(body)
    for op, at, n, data in muts:
        i = at % (len(b) + 1)
        if op == "flip" and i < len(b):
            b[i] ^= data[0] or 1
        elif op == "delete":
            del b[i:i + n]
        elif op == "insert":
            b[i:i] = data
        elif op == "truncate":
            del b[i:]
        elif op == "dup":
            b[i:i] = b[i:i + n]
    return bytes(b)


@given(s=streams, muts=mutations, limit=st.sampled_from([16 << 20, 4096, 100]))
def test_corrupted_streams(s: dict[str, Any], muts: list[tuple[str, int, int, bytes]], limit: int) -> None:
    body = _mutate(_body(s), muts)
    assert_twins_agree(_slice(body, s["cuts"]), signed=s["signed"], trailer=s["trailer"],
                       input_kind=s["input_kind"], max_chunk_bytes=limit)


# Token soup: the grammar's own pieces in random order, to reach parser corners (odd spacing,
# repeated or empty extensions, bare LFs, CRs inside lines, upper-case hex, over-long sizes).
TOKENS = [b"0", b"1", b"5", b"a", b"F", b"10", b"ffffffffffffffff", b"00000000000000001", b" ", b"\t",
          b"\x0b", b";", b"=", b"chunk-signature", b" chunk-signature ", b"a" * 64, b"A" * 63, b"\r",
          b"\n", b"\r\n", b"\r\n\r\n", b":", b"x-amz-checksum-crc32", b"x-amz-trailer-signature",
          b"hello", b"\xff", b"-", b"0x5"]


@given(tokens=st.lists(st.sampled_from(TOKENS), max_size=60), cuts=st.lists(st.integers(0, 2000), max_size=10),
       signed=st.booleans(), trailer=st.booleans(), limit=st.sampled_from([16 << 20, 3]),
       input_kind=st.sampled_from(["bytes", "bytearray"]))
def test_token_soup(tokens: list[bytes], cuts: list[int], signed: bool, trailer: bool, limit: int,
                    input_kind: str) -> None:
    body = b"".join(tokens)
    assert_twins_agree(_slice(body, cuts), signed=signed, trailer=trailer, input_kind=input_kind,
                       max_chunk_bytes=limit)


SPACE = [b"", b"", b" ", b"\t", b"\x0b", b"\x0c", b"\r", b"  "]


def encode_variant(payload: bytes, chunk_size: int, *, signed: bool, trailers: list[tuple[str, str]] | None,
                   rnd: random.Random) -> bytes:
    """Like encode(), but every line spelled in one of the ways the decoders must treat alike."""
    def sp() -> bytes:
        return rnd.choice(SPACE)

    def eol() -> bytes:
        return rnd.choice([b"\r\n", b"\r\n", b"\n"])

    out = bytearray()
    previous = SEED
    pieces = [payload[i:i + chunk_size] for i in range(0, len(payload), chunk_size)] + [b""]
    for piece in pieces:
        size = f"{len(piece):x}".zfill(rnd.choice([0, 0, 3, 16]))
        size = size.upper() if rnd.random() < 0.3 else size
        exts: list[bytes] = [sp() + b"ext" + sp() + b"=" + sp() + b"v" for _ in range(rnd.choice([0, 0, 1, 2]))]
        if rnd.random() < 0.1:
            exts.append(b"")
        if signed:
            previous = _hmac(f"AWS4-HMAC-SHA256-PAYLOAD\n{AMZ_DATE}\n{SCOPE}\n{previous}\n{EMPTY}\n"
                             f"{hashlib.sha256(piece).hexdigest()}")
            sig = previous.upper() if rnd.random() < 0.2 else previous
            if rnd.random() < 0.1:
                exts.append(b"chunk-signature=" + b"0" * 64)  # overridden by the later one
            exts.append(sp() + b"chunk-signature" + sp() + b"=" + sp() + sig.encode() + sp())
            rnd.shuffle(exts[:-1])
        elif rnd.random() < 0.3:
            exts.append(b"chunk-signature=" + b"f" * 64)  # ignored when unsigned
        out += sp() + size.encode() + sp() + b"".join(b";" + e for e in exts) + eol()
        if piece:
            out += piece + b"\r\n"
    if trailers is not None:
        canonical = "".join(f"{name}:{value}\n" for name, value in trailers)
        for name, value in trailers:
            shown = name.upper() if rnd.random() < 0.3 else name
            out += sp().replace(b"\r", b"") + shown.encode() + sp() + b":" + sp() + value.encode() + sp() + eol()
        if signed:
            signature = _hmac(f"AWS4-HMAC-SHA256-TRAILER\n{AMZ_DATE}\n{SCOPE}\n{previous}\n"
                              f"{hashlib.sha256(canonical.encode()).hexdigest()}")
            if trailers and rnd.random() < 0.2:
                out += eol()  # blank line before the signature
            out += b"x-amz-trailer-signature:" + sp() + signature.encode() + eol()
    out += rnd.choice([b"\r\n", b"\n", b"", b"\r\n\r\n"])
    return bytes(out)


@given(s=streams, rnd=st.randoms(use_true_random=False), muts=st.one_of(st.just([]), mutations))
def test_header_and_trailer_spellings(s: dict[str, Any], rnd: random.Random,
                                      muts: list[tuple[str, int, int, bytes]]) -> None:
    trailers = TRAILERS[:s["n_trailers"]] if s["trailer"] else None
    body = encode_variant(s["payload"], s["chunk_size"], signed=s["signed"], trailers=trailers, rnd=rnd)
    events = assert_twins_agree(_slice(_mutate(body, muts), s["cuts"]), signed=s["signed"],
                                trailer=s["trailer"], input_kind=s["input_kind"])
    if not muts:
        assert events[-1][0] == "finish", events[-1]
        assert b"".join(e[1] for e in events if e[0] == "fed") == s["payload"]


@given(prefix=st.sampled_from([b"", b"5\r\nhello\r\n", b"0\r\n"]), n=st.integers(4090, 4100),
       fill=st.sampled_from([b"e", b"\r"]), cuts=st.lists(st.integers(0, 5000), max_size=5),
       trailer=st.booleans())
def test_line_length_limit(prefix: bytes, n: int, fill: bytes, cuts: list[int], trailer: bool) -> None:
    header = prefix + b"5;" + fill * n if not prefix.startswith(b"0") else prefix + b"x-a:" + fill * n
    body = header + b"\r\nhello\r\n0\r\n\r\n"
    assert_twins_agree(_slice(body, cuts), signed=False, trailer=trailer, input_kind="bytes")


def test_one_byte_at_a_time_signed_trailer() -> None:
    body = encode(bytes(range(256)) * 40, 1000, signed=True, trailers=TRAILERS)
    events = assert_twins_agree([body[i:i + 1] for i in range(len(body))], signed=True, trailer=True,
                                input_kind="bytes")
    assert events[-1] == ("finish", dict(TRAILERS), True)
