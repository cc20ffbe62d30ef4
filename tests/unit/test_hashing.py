"""rs3gw._core.hashing against its reference twin and hashlib/zlib/awscrt/google_crc32c."""

from __future__ import annotations

import array
import hashlib
import itertools
import mmap
import os
import random
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from types import ModuleType

import google_crc32c
import pytest
from awscrt import checksums as crt
from hypothesis import given, settings
from hypothesis import strategies as st

from rs3gw import checksums
from rs3gw._core import crc as compiled_crc
from rs3gw._core import hashing as compiled
from rs3gw._core import hashing_ref as reference

ALGOS = ("md5", "crc32", "crc32c", "crc64nvme", "sha1", "sha256")
SUBSETS = [c for r in range(len(ALGOS) + 1) for c in itertools.combinations(ALGOS, r)]
LENGTHS = (0, 1, 63, 64, 4095, 4096, 65535, 65536, (1 << 20) + 3)
# Above this the pure-Python CRCs are slow, so the twin runs only the full set there.
TWIN_ALL_SUBSETS_MAX = 65536


def _crc_bytes(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


# Independent oracles from other libraries; two for CRC-32C.
ORACLES: dict[str, Callable[[bytes], bytes]] = {
    "md5": lambda d: hashlib.md5(d).digest(),
    "sha1": lambda d: hashlib.sha1(d).digest(),
    "sha256": lambda d: hashlib.sha256(d).digest(),
    "crc32": lambda d: _crc_bytes(zlib.crc32(d), 4),
    "crc32c": lambda d: _crc_bytes(google_crc32c.value(d), 4),
    "crc64nvme": lambda d: _crc_bytes(crt.crc64nvme(d), 8),
}


def _data(n: int, seed: int = 0) -> bytes:
    return random.Random(n * 7919 + seed).randbytes(n)


def _expected(data: bytes, algos: tuple[str, ...] = ALGOS) -> dict[str, bytes]:
    return {a: ORACLES[a](data) for a in algos}


@pytest.fixture(params=[compiled, reference], ids=["compiled", "reference"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return request.param


@pytest.fixture
def small_blocks() -> Iterator[None]:
    # Blocks of 1 KiB so short inputs cross many one-pass block boundaries.
    compiled._set_block_bytes(1024)
    try:
        yield
    finally:
        compiled._set_block_bytes(compiled.BLOCK_BYTES)


def test_backend_and_algos() -> None:
    assert compiled.backend.startswith("openssl+isa-l+")
    assert compiled.backend.endswith(compiled_crc._kernels()[-1].replace("table", "c"))
    assert reference.backend == "reference"
    assert compiled.ALGOS == reference.ALGOS == ALGOS
    assert compiled.GIL_RELEASE_MIN_BYTES == 4096


def test_check_values(impl: ModuleType) -> None:
    h = impl.Hasher(ALGOS)
    h.update(b"123456789")
    d = h.digests()
    assert d["crc32"] == bytes.fromhex("cbf43926")
    assert d["crc32c"] == bytes.fromhex("e3069283")
    assert d["crc64nvme"] == bytes.fromhex("ae8b14860a799888")
    assert d["md5"].hex() == "25f9e794323b453885f5181f1b624d0b"


def test_crc32c_oracles_agree() -> None:
    data = _data(5000)
    assert google_crc32c.value(data) == crt.crc32c(data)


@pytest.mark.parametrize("n", LENGTHS)
def test_every_subset_matches_oracles(n: int) -> None:
    data = _data(n)
    want = _expected(data)
    for subset in SUBSETS:
        h = compiled.Hasher(subset)
        h.update(data)
        got = h.digests()
        assert list(got) == list(subset)
        assert got == {a: want[a] for a in subset}, subset
        assert h.size == n
        assert h.algos == subset
        if n <= TWIN_ALL_SUBSETS_MAX or subset == ALGOS:
            t = reference.Hasher(subset)
            t.update(data)
            assert t.digests() == got, subset
            assert t.size == n


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("n", (1023, 1024, 1025, 4096 + 17, 70_001))
def test_small_blocks_match_oracles(n: int) -> None:
    data = _data(n, seed=3)
    for subset in (ALGOS, ("md5", "crc32c"), ("crc64nvme", "sha256"), ("crc32",)):
        h = compiled.Hasher(subset)
        h.update(data)
        assert h.digests() == _expected(data, subset)


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=6000),
    cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=6),
    subset=st.sets(st.sampled_from(ALGOS), min_size=1),
    block=st.sampled_from([1024, 4096, 65536]),
)
def test_any_chunking_equals_one_shot(data: bytes, cuts: list[int], subset: set[str], block: int) -> None:
    algos = tuple(a for a in ALGOS if a in subset)
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    want = _expected(data, algos)
    compiled._set_block_bytes(block)
    try:
        for impl in (compiled, reference):
            h = impl.Hasher(algos)
            for a, b in itertools.pairwise(points):
                h.update(data[a:b])
            assert h.digests() == want, impl.backend
            assert h.size == len(data)
    finally:
        compiled._set_block_bytes(compiled.BLOCK_BYTES)


def test_large_random_chunking_equals_one_shot() -> None:
    # Chunks on both sides of GIL_RELEASE_MIN_BYTES and of the block size.
    data = _data((1 << 22) + 5, seed=7)
    rng = random.Random(11)
    h = compiled.Hasher(ALGOS)
    pos = 0
    while pos < len(data):
        step = rng.choice((0, 1, 100, 4095, 4096, 65535, 65536, 300_000))
        h.update(memoryview(data)[pos : pos + step])
        pos += step
    assert h.digests() == _expected(data)
    assert h.size == len(data)


def test_digests_do_not_end_the_stream(impl: ModuleType) -> None:
    data = _data(20_000, seed=2)
    h = impl.Hasher(ALGOS)
    h.update(data[:7000])
    assert h.digests() == _expected(data[:7000])
    h.update(data[7000:])
    assert h.digests() == _expected(data)
    assert h.digests() == _expected(data)


def test_buffer_types(impl: ModuleType) -> None:
    raw = _data(10_000, seed=4)
    want = _expected(raw)

    def one_shot(buf: object) -> dict[str, bytes]:
        h = impl.Hasher(ALGOS)
        h.update(buf)
        return h.digests()

    assert one_shot(raw) == want
    assert one_shot(bytearray(raw)) == want
    assert one_shot(memoryview(raw)) == want
    assert one_shot(array.array("B", raw)) == want
    with mmap.mmap(-1, len(raw)) as m:
        m.write(raw)
        assert one_shot(m) == want
    # Unaligned slices: every start offset mod 16 and ragged tails.
    view = memoryview(bytearray(raw))
    for start in (1, 3, 7, 15):
        for stop in (len(raw), len(raw) - 1, len(raw) - 63):
            assert one_shot(view[start:stop]) == _expected(raw[start:stop])
    # Multi-byte items: the digest is over the bytes, not the items.
    words = array.array("Q", raw[:8000])
    assert one_shot(words) == _expected(raw[:8000])
    assert one_shot(memoryview(words)) == _expected(raw[:8000])


def test_rejects_bad_buffers(impl: ModuleType) -> None:
    h = impl.Hasher(ALGOS)
    with pytest.raises((BufferError, TypeError)):
        h.update(memoryview(bytes(64))[::2])
    with pytest.raises((BufferError, TypeError)):
        h.update(memoryview(bytearray(8192))[::-1])  # negative stride
    with pytest.raises(TypeError):
        h.update("text")
    with pytest.raises(TypeError):
        h.update(12)
    # A rejected buffer leaves the stream untouched.
    assert h.size == 0
    assert h.digests() == _expected(b"")


def test_rejects_bad_algos(impl: ModuleType) -> None:
    with pytest.raises(ValueError):
        impl.Hasher(["md4"])
    with pytest.raises(ValueError):
        impl.Hasher(["md5", "CRC32"])
    with pytest.raises(TypeError):
        impl.Hasher("md5")
    with pytest.raises(TypeError):
        impl.Hasher([b"md5"])
    with pytest.raises(TypeError):
        impl.Hasher(5)


def test_empty_and_duplicate_algos(impl: ModuleType) -> None:
    h = impl.Hasher([])
    h.update(b"abc")
    assert h.digests() == {}
    assert h.size == 3
    d = impl.Hasher(iter(["sha1", "md5", "sha1", "md5"]))
    assert d.algos == ("sha1", "md5")
    d.update(b"abc")
    assert list(d.digests()) == ["sha1", "md5"]


def test_copy(impl: ModuleType) -> None:
    data = _data(50_000, seed=5)
    h = impl.Hasher(ALGOS)
    h.update(data[:10_000])
    c = h.copy()
    assert c.size == 10_000 and c.algos == h.algos
    h.update(data[10_000:])
    assert c.digests() == _expected(data[:10_000])
    c.update(b"tail")
    assert c.digests() == _expected(data[:10_000] + b"tail")
    assert h.digests() == _expected(data)
    assert h.size == len(data)
    assert impl.Hasher(()).copy().digests() == {}


def test_input_over_2gib() -> None:
    # Anonymous mmap reads come from the zero page: address space, not memory. One algorithm runs
    # in 1 GiB calls, two run block by block; both must carry lengths past int range.
    n = (1 << 31) + 4099
    with mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ) as m:
        one = compiled.Hasher(["crc32c"])
        one.update(m)
        two = compiled.Hasher(["crc32c", "crc64nvme"])
        two.update(m)
        want_c = _crc_bytes(compiled_crc.crc32c(m), 4)
        want_64 = _crc_bytes(compiled_crc.crc64nvme(m), 8)
    assert one.digests() == {"crc32c": want_c}
    assert two.digests() == {"crc32c": want_c, "crc64nvme": want_64}
    assert one.size == two.size == n


def _race(impl: ModuleType, algos: tuple[str, ...], chunk: bytes) -> tuple[bool, int, list[BaseException]]:
    """A worker updates in a loop while this thread calls digests() until one is refused."""
    h = impl.Hasher(algos)
    stop = threading.Event()
    done = 0
    errors: list[BaseException] = []

    def worker() -> None:
        nonlocal done
        while not stop.is_set():
            try:
                h.update(chunk)
                done += 1
            except RuntimeError as exc:
                errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    refused = False
    deadline = time.monotonic() + 60
    try:
        while not refused and time.monotonic() < deadline:
            try:
                h.digests()
            except RuntimeError as exc:
                refused = "another thread" in str(exc)
    finally:
        stop.set()
        t.join()
    assert h.size == done * len(chunk)
    if not errors:
        assert h.digests() == {a: ORACLES[a](chunk * done) for a in algos}
    return refused, done, errors


def test_concurrent_use_raises_compiled() -> None:
    # digests() only gets the GIL while the worker is inside update() if update() released it for
    # the call, so seeing "in use" also proves the GIL is released. digests() never releases the
    # GIL itself, so the worker cannot see the flag and every update it made must count.
    refused, _done, errors = _race(compiled, ("md5", "crc32c"), _data(8 << 20, seed=6))
    assert refused
    assert errors == []


def test_concurrent_use_raises_reference() -> None:
    # The twin switches threads at bytecode boundaries; either side may be the one refused.
    refused, _done, errors = _race(reference, ("crc32",), _data(200_000, seed=8))
    assert refused or errors


def test_threads_with_own_hashers() -> None:
    data = [_data(600_000, seed=s) for s in range(4)]
    got: dict[int, dict[str, bytes]] = {}

    def work(i: int) -> None:
        h = compiled.Hasher(ALGOS)
        for _ in range(5):
            h.update(data[i])
        got[i] = h.digests()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {i: _expected(d * 5) for i, d in enumerate(data)}


# --- rs3gw.checksums on top of it ----------------------------------------------------------------


@pytest.mark.skipif(os.environ.get("RS3GW_CORE") == "reference",
                    reason="this run selects the reference twin on purpose")
def test_checksums_hasher_is_the_compiled_one() -> None:
    assert checksums.hasher_backend == f"compiled:{compiled.backend}"
    h = checksums.Hasher(["sha256", "crc64nvme"])
    assert isinstance(h._core, compiled.Hasher)
    assert h.algos == ("md5", "sha256", "crc64nvme")
    data = _data(100_000, seed=9)
    h.update(data)
    c = h.copy()
    c.update(b"x")
    assert h.digests() == _expected(data, h.algos)
    assert c.digests() == _expected(data + b"x", h.algos)
    assert h.md5_hex() == hashlib.md5(data).hexdigest()
    assert h.size == len(data) and c.size == len(data) + 1


def test_checksums_reference_switch() -> None:
    code = (
        "from rs3gw import checksums as c; h = c.Hasher(['crc32c']); h.update(b'123456789'); "
        "print(c.hasher_backend, type(h._core).__module__, h.digests()['crc32c'].hex())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "RS3GW_CORE": "reference"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["reference", "rs3gw._core.hashing_ref", "e3069283"]
