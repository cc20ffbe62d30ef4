"""rs3gw._core.load / implementation: the one place RS3GW_CORE picks a compiled module or its twin.

Each test sets RS3GW_CORE itself, so the file means the same in the compiled and the reference run.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rs3gw._core
from rs3gw._core import ENV, TWINS, implementation, load

NAMES = sorted(TWINS)
# Tuning constants of the C side (when to release the GIL, block size); a twin has no such thing.
C_ONLY = {"GIL_RELEASE_MIN_BYTES", "BLOCK_BYTES"}


def _public(module: object) -> set[str]:
    return {n for n in dir(module) if not n.startswith("_")}


@pytest.mark.parametrize("unset", [True, False], ids=["unset", "empty"])
@pytest.mark.parametrize("name", NAMES)
def test_compiled_is_the_default(monkeypatch: pytest.MonkeyPatch, name: str, unset: bool) -> None:
    if unset:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, "")
    assert implementation() == "compiled"
    module = load(name)
    assert module is importlib.import_module(f"rs3gw._core.{name}")
    assert module.__file__ is not None and module.__file__.endswith(".so")
    assert module.backend != "reference"


@pytest.mark.parametrize("value", ["compiled", " Compiled "])
def test_compiled_by_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENV, value)
    assert implementation() == "compiled"
    assert load("crc").__name__ == "rs3gw._core.crc"


@pytest.mark.parametrize("name", NAMES)
def test_reference_selects_the_twin(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(ENV, "reference")
    assert implementation() == "reference"
    module = load(name)
    assert module.__name__ == f"rs3gw._core.{name}_ref"
    assert module.backend == "reference"


@pytest.mark.parametrize("value", ["bogus", "ref", "pure", "1"])
def test_unknown_value_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENV, value)
    with pytest.raises(ValueError, match=rf"RS3GW_CORE must be one of .*compiled.*reference.*{value!r}"):
        implementation()
    with pytest.raises(ValueError, match="RS3GW_CORE"):
        load("crc")


@pytest.mark.parametrize("module", ["rs3gw.checksums", "rs3gw.s3.chunked"])
def test_unknown_value_stops_the_import(module: str) -> None:
    # Before the loader, any value but "reference" silently meant compiled.
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], env={**os.environ, ENV: "refernce"},
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "ValueError: RS3GW_CORE must be one of" in proc.stderr and "'refernce'" in proc.stderr


@pytest.mark.parametrize("name", NAMES)
def test_missing_build_is_an_import_error_naming_make_build(monkeypatch: pytest.MonkeyPatch,
                                                             name: str) -> None:
    # None in sys.modules makes the import fail exactly as an absent .so does.
    monkeypatch.setitem(sys.modules, f"rs3gw._core.{name}", None)
    monkeypatch.setenv(ENV, "compiled")
    with pytest.raises(ImportError, match="make build") as info:
        load(name)
    assert info.value.name == f"rs3gw._core.{name}"
    # The twin is chosen only when asked for, never as a fallback.
    monkeypatch.setenv(ENV, "reference")
    assert load(name).__name__ == f"rs3gw._core.{name}_ref"


def test_missing_build_stops_the_server_modules() -> None:
    code = "import sys; sys.modules['rs3gw._core.chunked'] = None; import rs3gw.s3.chunked"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, ENV: "compiled"},
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "ImportError: rs3gw._core.chunked is not built" in proc.stderr and "make build" in proc.stderr


@pytest.mark.parametrize("name", ["_uring", "uring", "io_threads", "directio", "crc_ref", "nope"])
def test_load_takes_only_modules_with_a_twin(name: str) -> None:
    with pytest.raises(ValueError, match=rf"load\(\) takes one of .*not {name!r}") as info:
        load(name)
    if name == "_uring":
        assert "RS3GW_IO_BACKEND" in str(info.value)


def test_every_compiled_module_has_a_twin_or_is_uring() -> None:
    # Each compiled module ships a .pyi beside it; a new one needs a twin or a deliberate entry here.
    stubs = {p.stem for p in Path(rs3gw._core.__file__).parent.glob("*.pyi")}
    assert stubs == set(TWINS) | {"_uring"}
    assert all(twin == f"{name}_ref" for name, twin in TWINS.items())


@pytest.mark.parametrize("name", NAMES)
def test_twin_offers_the_compiled_api(name: str) -> None:
    compiled = importlib.import_module(f"rs3gw._core.{name}")
    twin = importlib.import_module(f"rs3gw._core.{TWINS[name]}")
    assert _public(compiled) - C_ONLY <= _public(twin)
