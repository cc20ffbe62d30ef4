"""rs3gw._core.crc against its reference twin, zlib and awscrt; rs3gw.checksums on top of it."""

from __future__ import annotations

import array
import base64
import hashlib
import itertools
import mmap
import os
import random
import subprocess
import sys
import threading
import zlib
from types import ModuleType

import pytest
from awscrt import checksums as crt
from hypothesis import given
from hypothesis import strategies as st

from rs3gw import checksums
from rs3gw._core import crc as compiled
from rs3gw._core import crc_ref as reference

CRCS = ("crc32", "crc32c", "crc64nvme")
WIDTH = {"crc32": 32, "crc32c": 32, "crc64nvme": 64}
# Independent oracles from other libraries.
EXTERNAL = {"crc32": zlib.crc32, "crc32c": crt.crc32c, "crc64nvme": crt.crc64nvme}
CHECK_123456789 = {"crc32": 0xCBF43926, "crc32c": 0xE3069283, "crc64nvme": 0xAE8B14860A799888}
LENGTHS = (0, 1, 7, 8, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 4095, 4096, 4097, 65536 + 5, (1 << 20) + 3)


def _data(n: int, seed: int = 0) -> bytes:
    return random.Random(n * 7919 + seed).randbytes(n)


@pytest.fixture(params=[compiled, reference], ids=["compiled", "reference"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return request.param


@pytest.mark.parametrize("algo", CRCS)
def test_check_values(impl: ModuleType, algo: str) -> None:
    assert getattr(impl, algo)(b"123456789") == CHECK_123456789[algo]
    assert getattr(impl, algo)(b"") == 0


def test_backend_names() -> None:
    assert reference.backend == "reference"
    assert compiled.backend.startswith("isa-l+")


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("algo", CRCS)
def test_compiled_matches_reference_and_external(algo: str, n: int) -> None:
    data = _data(n)
    want = EXTERNAL[algo](data)
    assert getattr(compiled, algo)(data) == want
    assert getattr(reference, algo)(data) == want


@pytest.mark.parametrize("algo", CRCS)
def test_large_unaligned_views(algo: str) -> None:
    # Every start offset mod 16 and tail length, so the vector kernels see misaligned heads and tails.
    base = _data(70_000, seed=1)
    func = getattr(compiled, algo)
    for start in range(17):
        for stop in (len(base), len(base) - 1, len(base) - 15, len(base) - 64):
            view = memoryview(base)[start:stop]
            assert func(view) == EXTERNAL[algo](bytes(view))


@pytest.mark.parametrize("kernel", compiled._kernels())
def test_every_crc64_kernel(kernel: str) -> None:
    # The CPU picks the widest kernel; pin each lower one so all paths are checked here.
    best = compiled._kernels()[-1]
    assert compiled.backend.endswith(best) or best == "table"
    compiled._use_kernel(kernel)
    try:
        for n in (0, 1, 63, 64, 65, 255, 256, 257, 511, 4096 + 48, 70_001):
            data = _data(n, seed=5)
            want = crt.crc64nvme(data)
            assert compiled.crc64nvme(data) == want, n
            for cut in (1, 17, n // 2, n - 1):
                if 0 <= cut <= n:
                    assert compiled.crc64nvme(data[cut:], compiled.crc64nvme(data[:cut])) == want
    finally:
        compiled._use_kernel(best)
    with pytest.raises(ValueError):
        compiled._use_kernel("no-such-kernel")


@pytest.mark.parametrize("algo", CRCS)
def test_buffer_types(algo: str) -> None:
    raw = _data(10_000, seed=2)
    func = getattr(compiled, algo)
    want = func(raw)
    assert func(bytearray(raw)) == want
    assert func(memoryview(raw)) == want
    assert func(array.array("B", raw)) == want
    with mmap.mmap(-1, len(raw)) as m:
        m.write(raw)
        assert func(m) == want
    # Multi-byte items: the CRC is over the bytes, not the items.
    words = array.array("Q", raw[:8000])
    assert func(words) == func(raw[:8000])
    assert func(data=raw, crc=0) == want


@pytest.mark.parametrize("algo", CRCS)
def test_rejects_bad_arguments(impl: ModuleType, algo: str) -> None:
    func = getattr(impl, algo)
    strided = memoryview(bytes(64))[::2]
    with pytest.raises((TypeError, BufferError)):
        func(strided)
    with pytest.raises(TypeError):
        func("text")
    with pytest.raises(OverflowError):
        func(b"x", -1)
    with pytest.raises(OverflowError):
        func(b"x", 1 << WIDTH[algo])
    with pytest.raises(TypeError):
        func(b"x", 1.0)


@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=6))
def test_any_chunking_equals_one_shot(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    for algo in CRCS:
        for impl in (compiled, reference):
            func = getattr(impl, algo)
            acc = 0
            for a, b in itertools.pairwise(points):
                acc = func(data[a:b], acc)
            assert acc == EXTERNAL[algo](data), (impl.backend, algo)


@given(a=st.binary(max_size=2000), b=st.binary(max_size=2000))
def test_combine_equals_crc_of_concatenation(a: bytes, b: bytes) -> None:
    for algo in CRCS:
        whole = EXTERNAL[algo](a + b)
        ca, cb = EXTERNAL[algo](a), EXTERNAL[algo](b)
        assert getattr(compiled, f"{algo}_combine")(ca, cb, len(b)) == whole
        assert getattr(reference, f"{algo}_combine")(ca, cb, len(b)) == whole


@pytest.mark.parametrize("algo", CRCS)
def test_combine_large_lengths(algo: str) -> None:
    # Lengths past 2**32 must use the whole 64-bit length; twin and compiled use different maths.
    rng = random.Random(3)
    mask = (1 << WIDTH[algo]) - 1
    for len2 in (0, 1, 1 << 32, (1 << 40) + 12345, (1 << 63) + 7):
        c1, c2 = rng.getrandbits(64) & mask, rng.getrandbits(64) & mask
        got = getattr(compiled, f"{algo}_combine")(c1, c2, len2)
        assert got == getattr(reference, f"{algo}_combine")(c1, c2, len2)


@pytest.mark.parametrize("algo", CRCS)
def test_input_over_2gib(algo: str) -> None:
    # Anonymous mmap reads come from the zero page, so this costs address space, not memory.
    n = (1 << 31) + 4099
    func = getattr(compiled, algo)
    with mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ) as m:
        one_shot = func(m)
        view = memoryview(m)
        try:
            pieces = func(view[1 << 30 :], func(view[: 1 << 30]))
            first = EXTERNAL[algo](view[:1000])
        finally:
            view.release()
    assert one_shot == pieces
    assert first == func(bytes(1000))


def test_threads_share_the_module() -> None:
    data = [_data(300_000, seed=s) for s in range(4)]
    want = {i: [compiled.crc32c(d), compiled.crc64nvme(d), compiled.crc32(d)] for i, d in enumerate(data)}
    got: dict[int, list[int]] = {}

    def work(i: int) -> None:
        for _ in range(20):
            got[i] = [compiled.crc32c(data[i]), compiled.crc64nvme(data[i]), compiled.crc32(data[i])]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want


# --- rs3gw.checksums ---------------------------------------------------------------------------


def test_module_backend_names_the_core_in_use() -> None:
    # The suite also runs with RS3GW_CORE=reference (make test-matrix); the backend must say so.
    reference = os.environ.get("RS3GW_CORE") == "reference"
    assert checksums.backend == ("reference" if reference else f"compiled:{compiled.backend}")


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=False
    )


def test_reference_backend_by_env() -> None:
    proc = _run_python(
        "from rs3gw import checksums as c; print(c.backend, c.b64(c.full_object_crc('crc32c', [])))",
        RS3GW_CORE="reference",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["reference", "AAAAAA=="]


def test_missing_build_is_a_loud_import_error() -> None:
    proc = _run_python("import sys; sys.modules['rs3gw._core.crc'] = None; import rs3gw.checksums",
                       RS3GW_CORE="compiled")
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "make build" in proc.stderr


def test_hasher_digests_match_hashlib_and_crcs() -> None:
    data = _data(200_003, seed=4)
    h = checksums.Hasher(checksums.ALGOS)
    for i in range(0, len(data), 65_536):
        h.update(memoryview(data)[i : i + 65_536])
    d = h.digests()
    assert h.size == len(data)
    assert d["md5"] == hashlib.md5(data).digest()
    assert h.md5_hex() == hashlib.md5(data).hexdigest()
    assert d["sha1"] == hashlib.sha1(data).digest()
    assert d["sha256"] == hashlib.sha256(data).digest()
    assert d["crc32"] == zlib.crc32(data).to_bytes(4, "big")
    assert d["crc32c"] == crt.crc32c(data).to_bytes(4, "big")
    assert d["crc64nvme"] == crt.crc64nvme(data).to_bytes(8, "big")


def test_hasher_options() -> None:
    h = checksums.Hasher(["crc32c"], md5=False)
    h.update(b"123456789")
    assert h.digests() == {"crc32c": bytes.fromhex("e3069283")}
    with pytest.raises(ValueError):
        h.md5_hex()
    with pytest.raises(ValueError):
        checksums.Hasher(["md4"])
    empty = checksums.Hasher()
    assert empty.md5_hex() == "d41d8cd98f00b204e9800998ecf8427e"
    assert empty.size == 0


def test_b64_and_decode_round_trip() -> None:
    raw = (0xCBF43926).to_bytes(4, "big")
    text = checksums.b64(raw)
    assert text == base64.b64encode(raw).decode()
    assert checksums.decode_checksum("crc32", text) == raw
    assert checksums.decode_checksum("md5", checksums.b64(bytes(16))) == bytes(16)


@pytest.mark.parametrize(
    ("algo", "value"),
    [
        ("crc32", checksums.b64(bytes(8))),  # wrong length
        ("crc64nvme", checksums.b64(bytes(4))),
        ("sha256", "not base64!"),
        ("crc32", "AAAA"),  # 3 bytes
        ("crc32", "AAAAAA="),  # bad padding
        ("crc32", "ÄÄÄÄ"),
        ("whirlpool", checksums.b64(bytes(4))),
    ],
)
def test_decode_checksum_rejects(algo: str, value: str) -> None:
    with pytest.raises(ValueError):
        checksums.decode_checksum(algo, value)


def test_multipart_etag() -> None:
    parts = [_data(1000, seed=s) for s in range(3)]
    md5s = [hashlib.md5(p).hexdigest() for p in parts]
    want = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    assert checksums.multipart_etag(md5s) == want
    assert checksums.multipart_etag([f'"{m}"' for m in md5s]) == want
    # md5("a"), md5("b") -> openssl md5 over their 32 concatenated binary bytes.
    ab = ["0cc175b9c0f1b6a831c399e269772661", "92eb5ffee6ae2fec3ad71c777531578f"]
    assert checksums.multipart_etag(ab) == "96e024ba2074fe77e8e965ba43a704be-2"
    with pytest.raises(ValueError):
        checksums.multipart_etag([])


@pytest.mark.parametrize("algo", ["crc32", "crc32c", "sha1", "sha256"])
def test_composite_checksum(algo: str) -> None:
    parts = [_data(5000 + s, seed=s) for s in range(4)]
    raws = []
    for p in parts:
        h = checksums.Hasher([algo], md5=False)
        h.update(p)
        raws.append(h.digests()[algo])
    if algo.startswith("crc"):
        outer = EXTERNAL[algo](b"".join(raws)).to_bytes(4, "big")
    else:
        outer = hashlib.new(algo, b"".join(raws)).digest()
    assert checksums.composite_checksum(algo, raws) == base64.b64encode(outer).decode() + "-4"


def test_composite_refuses_crc64nvme() -> None:
    with pytest.raises(ValueError):
        checksums.composite_checksum("crc64nvme", [bytes(8)])


@pytest.mark.parametrize("algo", CRCS)
def test_full_object_crc_equals_direct(algo: str) -> None:
    sizes = [0, 1, 5 << 20, 17, 4096, 3]
    parts = [_data(n, seed=i) for i, n in enumerate(sizes)]
    width = WIDTH[algo] // 8
    pairs = [(EXTERNAL[algo](p).to_bytes(width, "big"), len(p)) for p in parts]
    whole = EXTERNAL[algo](b"".join(parts)).to_bytes(width, "big")
    assert checksums.full_object_crc(algo, pairs) == whole
    assert checksums.full_object_crc(algo, pairs[:1]) == pairs[0][0]
    assert checksums.full_object_crc(algo, []) == bytes(width)
    with pytest.raises(ValueError):
        checksums.full_object_crc(algo, [(b"\x00", 1)])
    with pytest.raises(ValueError):
        checksums.full_object_crc("sha256", pairs)
