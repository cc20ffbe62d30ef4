"""aws-chunked decoder: AWS's published example, round trips, any slicing, real botocore bodies, errors.

Every test runs twice: on the compiled core (rs3gw._core.chunked) and on its reference twin, both
through the S3 face (rs3gw.s3.chunked) so errors are the S3Errors handlers see.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
import subprocess
import sys
import zlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from rs3gw._core import chunked as compiled
from rs3gw._core import chunked_ref as reference
from rs3gw.s3.chunked import ChunkedDecoder
from rs3gw.s3.errors import S3Error
from rs3gw.s3.sigv4 import signing_key

SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AMZ_DATE = "20130524T000000Z"
SCOPE = "20130524/us-east-1/s3/aws4_request"
KEY = signing_key(SK, "20130524", "us-east-1")
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
EMPTY = hashlib.sha256(b"").hexdigest()


def _pinned(core: ModuleType) -> type[ChunkedDecoder]:
    return type(f"ChunkedDecoder_{core.backend}", (ChunkedDecoder,), {"__slots__": (), "core": core})


# Module scope: hypothesis tests may not use function-scoped fixtures; the value is stateless.
@pytest.fixture(scope="module", params=[compiled, reference], ids=["compiled", "reference"])
def Decoder(request: pytest.FixtureRequest) -> type[ChunkedDecoder]:
    return _pinned(request.param)


def _hmac(sts: str) -> str:
    return hmac.new(KEY, sts.encode(), hashlib.sha256).hexdigest()


def encode(payload: bytes, chunk_size: int, *, signed: bool, trailers: list[tuple[str, str]] | None = None,
           seed: str = SEED, final_empty_line: bool = True) -> bytes:
    """Our own aws-chunked encoder, written from the AWS description of the format."""
    out = bytearray()
    previous = seed
    pieces = [payload[i:i + chunk_size] for i in range(0, len(payload), chunk_size)] + [b""]
    for piece in pieces:
        if signed:
            previous = _hmac(f"AWS4-HMAC-SHA256-PAYLOAD\n{AMZ_DATE}\n{SCOPE}\n{previous}\n{EMPTY}\n"
                             f"{hashlib.sha256(piece).hexdigest()}")
            out += f"{len(piece):x};chunk-signature={previous}\r\n".encode()
        else:
            out += f"{len(piece):x}\r\n".encode()
        if piece:
            out += piece + b"\r\n"
    if trailers is not None:
        canonical = "".join(f"{name}:{value}\n" for name, value in trailers)
        out += canonical.replace("\n", "\r\n").encode()
        if signed:
            signature = _hmac(f"AWS4-HMAC-SHA256-TRAILER\n{AMZ_DATE}\n{SCOPE}\n{previous}\n"
                              f"{hashlib.sha256(canonical.encode()).hexdigest()}")
            out += f"x-amz-trailer-signature:{signature}\r\n".encode()
    if final_empty_line:
        out += b"\r\n"
    return bytes(out)


def decoder(cls: type[ChunkedDecoder], signed: bool, trailer: bool, **kw: Any) -> ChunkedDecoder:
    if signed:
        return cls(signed=True, trailer=trailer, signing_key=KEY, seed_signature=SEED,
                              amz_date=AMZ_DATE, scope=SCOPE, **kw)
    return cls(signed=False, trailer=trailer, **kw)


def decode(dec: ChunkedDecoder, slices: Sequence[bytes | memoryview]) -> tuple[bytes, dict[str, str]]:
    out = bytearray()
    for piece in slices:
        for part in dec.feed(piece):
            out += part
    trailers = dec.finish()
    assert dec.done
    assert dec.decoded_bytes == len(out)
    return bytes(out), trailers


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


# --- AWS published example (64 KiB + 1 KiB of 'a') -------------------------------------------

AWS_EXAMPLE = (
    b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"
    + b"a" * 65536 + b"\r\n"
    + b"400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"
    + b"a" * 1024 + b"\r\n"
    + b"0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n")


def test_aws_example_whole_body(Decoder: type[ChunkedDecoder]) -> None:
    assert len(AWS_EXAMPLE) == 66824  # the example's Content-Length
    data, trailers = decode(decoder(Decoder, True, False), [AWS_EXAMPLE])
    assert data == b"a" * 66560 and trailers == {}


def test_aws_example_one_byte_at_a_time(Decoder: type[ChunkedDecoder]) -> None:
    data, _ = decode(decoder(Decoder, True, False), [AWS_EXAMPLE[i:i + 1] for i in range(len(AWS_EXAMPLE))])
    assert data == b"a" * 66560


def test_our_encoder_reproduces_aws_example() -> None:
    assert encode(b"a" * 66560, 65536, signed=True) == AWS_EXAMPLE


def test_aws_example_wrong_seed_fails_on_first_chunk(Decoder: type[ChunkedDecoder]) -> None:
    dec = Decoder(signed=True, trailer=False, signing_key=KEY, seed_signature="0" * 64,
                         amz_date=AMZ_DATE, scope=SCOPE)
    with pytest.raises(S3Error) as exc:
        dec.feed(AWS_EXAMPLE)
    assert exc.value.code == "SignatureDoesNotMatch"


# --- round trips -----------------------------------------------------------------------------

MODES = [(False, False), (False, True), (True, False), (True, True)]


@pytest.mark.parametrize("signed,trailer", MODES)
@pytest.mark.parametrize("size", [0, 1, 8191, 8192, 100_000])
def test_round_trip(Decoder: type[ChunkedDecoder], signed: bool, trailer: bool, size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    trailers = [("x-amz-checksum-crc32", crc32_b64(payload))] if trailer else None
    body = encode(payload, 8192, signed=signed, trailers=trailers)
    data, got = decode(decoder(Decoder, signed, trailer), [body])
    assert data == payload
    assert got == (dict(trailers) if trailers else {})


@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=3000), chunk_size=st.integers(1, 700),
       cuts=st.lists(st.integers(0, 10_000), max_size=25), mode=st.sampled_from(MODES),
       n_trailers=st.integers(0, 3))
def test_any_slicing_gives_same_result(Decoder: type[ChunkedDecoder], payload: bytes, chunk_size: int,
                                       cuts: list[int], mode: tuple[bool, bool], n_trailers: int) -> None:
    signed, trailer = mode
    trailers = [(f"x-amz-checksum-t{i}", f"v{i}==") for i in range(n_trailers)] if trailer else None
    body = encode(payload, chunk_size, signed=signed, trailers=trailers)
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    slices = [body[a:b] for a, b in itertools.pairwise(points)]
    data, got = decode(decoder(Decoder, signed, trailer), slices)
    one_shot = decode(decoder(Decoder, signed, trailer), [body])
    assert data == payload
    assert (data, got) == one_shot
    assert got == dict(trailers or [])


def test_pieces_survive_reuse_of_a_mutable_input_buffer(Decoder: type[ChunkedDecoder]) -> None:
    body = encode(b"hello world" * 100, 64, signed=True)
    dec = decoder(Decoder, True, False)
    buf = bytearray(body)
    pieces = dec.feed(memoryview(buf))
    buf[:] = b"\0" * len(buf)
    assert b"".join(bytes(p) for p in pieces) == b"hello world" * 100
    assert dec.finish() == {}


def test_memoryview_slices_of_bytes_are_accepted(Decoder: type[ChunkedDecoder]) -> None:
    body = encode(b"0123456789" * 50, 33, signed=False, trailers=[])
    mv = memoryview(body)
    data, _ = decode(decoder(Decoder, False, True), [mv[:10], mv[10:200], mv[200:]])
    assert data == b"0123456789" * 50


# --- real client bodies and lenient endings --------------------------------------------------

class _Captured(Exception):
    pass


def test_botocore_unsigned_trailer_body_over_tls(Decoder: type[ChunkedDecoder]) -> None:
    session = boto3.session.Session(aws_access_key_id="AK", aws_secret_access_key="SK",
                                    region_name="us-east-1")
    client = session.client("s3", endpoint_url="https://localhost:9443",
                            config=Config(s3={"addressing_style": "path"}))
    captured: dict[str, Any] = {}

    def stop(request: Any, **_: Any) -> None:
        captured["request"] = request
        raise _Captured()

    client.meta.events.register("before-send.s3", stop)
    payload = bytes(range(256)) * 1000
    with pytest.raises(_Captured):
        client.put_object(Bucket="b", Key="k", Body=payload)
    request = captured["request"]
    assert request.headers["x-amz-content-sha256"] == b"STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert urlsplit(request.url).scheme == "https"
    body = request.body.read()
    slices = [body[i:i + 1000] for i in range(0, len(body), 1000)]
    data, trailers = decode(decoder(Decoder, False, True), slices)
    assert data == payload
    assert trailers == {"x-amz-checksum-crc32": crc32_b64(payload)}


@pytest.mark.parametrize("ending", [b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n",
                                    b"x-amz-checksum-crc32:AAAAAA==\r\n",
                                    b"x-amz-checksum-crc32:AAAAAA==",
                                    b"x-amz-checksum-crc32 : AAAAAA==  \n\n"])
def test_unsigned_trailer_endings_accepted(Decoder: type[ChunkedDecoder], ending: bytes) -> None:
    body = b"5\r\nhello\r\n0\r\n" + ending
    assert decode(decoder(Decoder, False, True), [body]) == (b"hello", {"x-amz-checksum-crc32": "AAAAAA=="})


def test_signed_trailer_without_final_empty_line(Decoder: type[ChunkedDecoder]) -> None:
    body = encode(b"data" * 10, 16, signed=True, trailers=[("x-amz-checksum-crc32", "AAAAAA==")],
                  final_empty_line=False)
    assert decode(decoder(Decoder, True, True), [body])[1] == {"x-amz-checksum-crc32": "AAAAAA=="}


def test_signed_trailer_with_blank_line_before_signature(Decoder: type[ChunkedDecoder]) -> None:
    body = encode(b"data", 16, signed=True, trailers=[("x-amz-checksum-crc32", "AAAAAA==")])
    body = body.replace(b"==\r\nx-amz-trailer-signature", b"==\r\n\r\nx-amz-trailer-signature")
    assert decode(decoder(Decoder, True, True), [body])[1] == {"x-amz-checksum-crc32": "AAAAAA=="}


def test_signed_trailers_signed_in_sorted_order(Decoder: type[ChunkedDecoder]) -> None:
    trailers = [("x-b", "2"), ("x-a", "1")]
    body = encode(b"data", 16, signed=True, trailers=sorted(trailers))
    # the client sent them unsorted but signed the sorted form
    body = body.replace(b"x-a:1\r\nx-b:2\r\n", b"x-b:2\r\nx-a:1\r\n")
    assert decode(decoder(Decoder, True, True), [body])[1] == {"x-a": "1", "x-b": "2"}


# --- errors ----------------------------------------------------------------------------------

def _fails(code: str, dec: ChunkedDecoder, body: bytes, step: int | None = None) -> S3Error:
    with pytest.raises(S3Error) as exc:
        slices = [body] if step is None else [body[i:i + step] for i in range(0, len(body), step)]
        for piece in slices:
            dec.feed(piece)
        dec.finish()
    assert exc.value.code == code, exc.value.message
    # the decoder stays failed
    with pytest.raises(S3Error):
        dec.feed(b"0\r\n\r\n")
    with pytest.raises(S3Error):
        dec.finish()
    return exc.value


@pytest.mark.parametrize("step", [None, 1, 7])
def test_corrupted_chunk_signature(Decoder: type[ChunkedDecoder], step: int | None) -> None:
    body = bytearray(encode(b"x" * 300, 100, signed=True))
    at = body.index(b"chunk-signature=") + len(b"chunk-signature=")
    body[at] = ord("0") if body[at] != ord("0") else ord("1")
    _fails("SignatureDoesNotMatch", decoder(Decoder, True, False), bytes(body), step)


def test_corrupted_data_byte_fails_signature(Decoder: type[ChunkedDecoder]) -> None:
    body = encode(b"x" * 300, 100, signed=True).replace(b"xxx", b"xyx", 1)
    _fails("SignatureDoesNotMatch", decoder(Decoder, True, False), body)


def test_reordered_chunks_fail_signature(Decoder: type[ChunkedDecoder]) -> None:
    body = encode(b"A" * 100 + b"B" * 100, 100, signed=True)
    first_end = body.index(b"\r\n", body.index(b"A" * 100)) + 2
    second_end = body.index(b"\r\n", body.index(b"B" * 100)) + 2
    swapped = body[first_end:second_end] + body[:first_end] + body[second_end:]
    _fails("SignatureDoesNotMatch", decoder(Decoder, True, False), swapped)


def test_missing_chunk_signature_in_signed_mode(Decoder: type[ChunkedDecoder]) -> None:
    _fails("SignatureDoesNotMatch", decoder(Decoder, True, False), encode(b"abc", 10, signed=False))


@pytest.mark.parametrize("trailer_sig", ["0" * 64, "nothex", None])
def test_wrong_or_missing_trailer_signature(Decoder: type[ChunkedDecoder],
                                            trailer_sig: str | None) -> None:
    body = encode(b"abc", 10, signed=True, trailers=[("x-amz-checksum-crc32", "AAAAAA==")])
    head, _, _ = body.partition(b"x-amz-trailer-signature:")
    if trailer_sig is not None:
        head += f"x-amz-trailer-signature:{trailer_sig}\r\n".encode()
    _fails("SignatureDoesNotMatch", decoder(Decoder, True, True), head + b"\r\n")


def test_tampered_trailer_value_fails_signature(Decoder: type[ChunkedDecoder]) -> None:
    body = encode(b"abc", 10, signed=True, trailers=[("x-amz-checksum-crc32", "AAAAAA==")])
    _fails("SignatureDoesNotMatch", decoder(Decoder, True, True), body.replace(b"AAAAAA==", b"BBBBBB=="))


@pytest.mark.parametrize("signed,trailer", MODES)
def test_truncated_stream(Decoder: type[ChunkedDecoder], signed: bool, trailer: bool) -> None:
    trailers = [("x-amz-checksum-crc32", "AAAAAA==")] if trailer else None
    body = encode(b"q" * 250, 100, signed=signed, trailers=trailers)
    final_header_end = body.index(b"\r\n", body.rindex(b"\r\n0")) + 2
    for cut in range(final_header_end - 1):
        with pytest.raises(S3Error) as exc:
            decode(decoder(Decoder, signed, trailer), [body[:cut]])
        assert exc.value.code in ("IncompleteBody", "SignatureDoesNotMatch"), cut


@pytest.mark.parametrize("body", [b"zz\r\nhello\r\n0\r\n\r\n", b"\r\n", b"-5\r\nhello\r\n",
                                  b"0x5\r\nhello\r\n", b"11111111111111111\r\n"])
def test_bad_hex_size(Decoder: type[ChunkedDecoder], body: bytes) -> None:
    _fails("InvalidRequest", decoder(Decoder, False, False), body)


def test_chunk_over_limit(Decoder: type[ChunkedDecoder]) -> None:
    _fails("InvalidRequest", decoder(Decoder, False, False, max_chunk_bytes=1024), b"401\r\n" + b"x" * 1025)


def test_missing_crlf_after_data(Decoder: type[ChunkedDecoder]) -> None:
    _fails("IncompleteBody", decoder(Decoder, False, False), b"5\r\nhelloX\r\n0\r\n\r\n")
    _fails("IncompleteBody", decoder(Decoder, False, False), b"5\r\nhello\n0\r\n\r\n")


def test_overlong_header_line(Decoder: type[ChunkedDecoder]) -> None:
    _fails("InvalidRequest", decoder(Decoder, False, False), b"5;" + b"e" * 5000 + b"\r\nhello\r\n")


def test_data_after_final_chunk(Decoder: type[ChunkedDecoder]) -> None:
    _fails("InvalidRequest", decoder(Decoder, False, False), b"5\r\nhello\r\n0\r\n\r\nmore")


def test_trailers_not_announced(Decoder: type[ChunkedDecoder]) -> None:
    _fails("InvalidRequest", decoder(Decoder, False, False), b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n")


def test_malformed_trailer_line(Decoder: type[ChunkedDecoder]) -> None:
    _fails("InvalidRequest", decoder(Decoder, False, True), b"0\r\nno-colon-here\r\n\r\n")


def test_signed_mode_requires_signing_material(Decoder: type[ChunkedDecoder]) -> None:
    with pytest.raises(ValueError):
        Decoder(signed=True, trailer=False)


# --- implementation in use -------------------------------------------------------------------

def test_backend_names() -> None:
    assert reference.backend == "reference"
    assert compiled.backend.startswith("openssl-3.")


def test_reference_backend_by_env() -> None:
    code = "from rs3gw.s3 import chunked; print(chunked.backend, chunked.ChunkedDecoder.core.__name__)"
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, RS3GW_CORE="reference"),
                          capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["reference", "rs3gw._core.chunked_ref"]


def test_compiled_is_the_default() -> None:
    if os.environ.get("RS3GW_CORE", "compiled") == "reference":
        pytest.skip("RS3GW_CORE=reference is set for this run")
    assert ChunkedDecoder.core is compiled


def test_pieces_of_bytes_input_are_views_of_it(Decoder: type[ChunkedDecoder]) -> None:
    body = encode(b"v" * 70_000, 65536, signed=True)
    pieces = decoder(Decoder, True, False).feed(body)
    assert [len(p) for p in pieces] == [65536, 70_000 - 65536]
    for p in pieces:
        assert isinstance(p, memoryview) and p.obj is body


def test_pieces_of_mutable_input_are_bytes(Decoder: type[ChunkedDecoder]) -> None:
    pieces = decoder(Decoder, False, False).feed(memoryview(bytearray(b"3\r\nabc\r\n0\r\n\r\n")))
    assert pieces == [b"abc"] and all(type(p) is bytes for p in pieces)


def test_many_chunks_in_one_feed(Decoder: type[ChunkedDecoder]) -> None:
    # More chunks in one buffer than the compiled core reports per C call.
    payload = bytes(range(256)) * 8
    body = encode(payload, 1, signed=True)
    dec = decoder(Decoder, True, False)
    pieces = dec.feed(body)
    assert len(pieces) == len(payload) and b"".join(pieces) == payload
    assert dec.finish() == {} and dec.decoded_bytes == len(payload)


def test_chunk_signature_error_carries_string_to_sign(Decoder: type[ChunkedDecoder]) -> None:
    body = encode(b"x" * 10, 10, signed=True).replace(b"x" * 10, b"y" * 10)
    err = _fails("SignatureDoesNotMatch", decoder(Decoder, True, False), body)
    want = f"AWS4-HMAC-SHA256-PAYLOAD\n{AMZ_DATE}\n{SCOPE}\n{SEED}\n{EMPTY}\n" + \
        hashlib.sha256(b"y" * 10).hexdigest()
    assert err.fields["StringToSign"] == want
    assert err.fields["SignatureProvided"] == body[body.index(b"=") + 1:body.index(b"\r")].decode()


def test_negative_chunk_limit_rejected(Decoder: type[ChunkedDecoder]) -> None:
    with pytest.raises(ValueError):
        Decoder(signed=False, trailer=False, max_chunk_bytes=-1)
