"""Builds the compiled core (src/_core/<folder>/ -> rs3gw._core.<name>); metadata lives in pyproject.toml.

One folder per compiled module, plus src/_core/shared/ for C linked into more than one of them
(src/_core/README.md has the table).

A missing system library is a build error, never a silent pure-Python build.
"""

from __future__ import annotations

import glob
import os
import tempfile
from dataclasses import dataclass, field

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CORE = "src/_core"
SHARED = f"{CORE}/shared"  # C linked into more than one module

# Our C is held to warnings-as-errors; Cython-generated C gets the same minus the
# unused-function noise Cython emits by design.
C_FLAGS = ["-O3", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-fvisibility=hidden"]
CYTHON_C_FLAGS = ["-O3", "-Wall", "-Werror", "-Wno-unused-function", "-Wno-unreachable-code"]


@dataclass(frozen=True)
class SystemLib:
    name: str  # -l<name>
    header: str  # include that must compile
    symbol: str  # function that must link
    debian: str  # package that provides both


@dataclass(frozen=True)
class CoreModule:
    name: str  # rs3gw._core.<name>
    sources: list[str]
    libs: list[SystemLib] = field(default_factory=list)
    include_dirs: list[str] = field(default_factory=list)  # where its own "..." headers live
    cffi: str = ""  # "<builder.py>:ffibuilder" for a cffi API-mode module; its sources live in the builder


ISAL = SystemLib("isal", "isa-l/crc.h", "crc32_iscsi", "libisal-dev")
ZSTD = SystemLib("zstd", "zstd.h", "ZSTD_compressCCtx", "libzstd-dev")
LZ4 = SystemLib("lz4", "lz4.h", "LZ4_compress_default", "liblz4-dev")
URING = SystemLib("uring", "liburing.h", "io_uring_queue_init", "liburing-dev")
CRYPTO = SystemLib("crypto", "openssl/evp.h", "EVP_MAC_fetch", "libssl-dev")

MODULES = [
    CoreModule("_uring", [], [URING], cffi=f"{CORE}/uring/uring_build.py:ffibuilder"),
    CoreModule("batch", [f"{CORE}/batch/batch.pyx"], [ZSTD, LZ4, ISAL]),
    # The generated chunked.c is compiled from build/cython/, away from chunked_core.h: name its folder.
    CoreModule("chunked", [f"{CORE}/chunked/chunked.pyx", f"{CORE}/chunked/chunked_core.c"], [CRYPTO],
               include_dirs=[f"{CORE}/chunked"]),
    CoreModule("crc", [f"{CORE}/crc/crc.c", f"{SHARED}/crc64nvme.c"], [ISAL], include_dirs=[SHARED]),
    CoreModule("hashing", [f"{CORE}/hashing/hashing.c", f"{SHARED}/crc64nvme.c"], [ISAL, CRYPTO],
               include_dirs=[SHARED]),
]


def _extension(mod: CoreModule) -> Extension:
    cython = any(s.endswith(".pyx") for s in mod.sources)
    return Extension(
        f"rs3gw._core.{mod.name}",
        sources=mod.sources,
        include_dirs=mod.include_dirs,
        # build_ext only compares sources with the built module: without the headers here, an edit
        # to shared/crc64nvme.h would leave crc and hashing stale.
        depends=sorted(h for d in mod.include_dirs for h in glob.glob(f"{d}/*.h")),
        libraries=[lib.name for lib in mod.libs],
        extra_compile_args=CYTHON_C_FLAGS if cython else C_FLAGS,
    )


def _cythonize(exts: list[Extension]) -> list[Extension]:
    if not any(src.endswith(".pyx") for ext in exts for src in ext.sources):
        return exts
    from Cython.Build import cythonize

    return cythonize(
        exts,
        # Generated C goes to build/, not beside the .pyx: it is an artefact, never a source.
        build_dir="build/cython",
        compiler_directives={"language_level": 3, "warn.unused": True, "warn.maybe_uninitialized": True},
    )


class BuildCore(build_ext):
    """build_ext that probes each system library first and fails with the Debian package name."""

    def build_extensions(self) -> None:
        seen: set[str] = set()
        for mod in _selected():
            for lib in mod.libs:
                if lib.name not in seen:
                    seen.add(lib.name)
                    self._probe(lib)
        super().build_extensions()

    def _probe(self, lib: SystemLib) -> None:
        from setuptools.errors import CompileError, LinkError, PlatformError

        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, f"probe_{lib.name}.c")
            with open(src, "w") as f:
                f.write(f"#include <{lib.header}>\nint main(void) {{ return (int)(long)&{lib.symbol}; }}\n")
            try:
                objs = self.compiler.compile([src], output_dir=tmp)
                self.compiler.link_executable(objs, "probe", output_dir=tmp, libraries=[lib.name])
            except (CompileError, LinkError) as exc:
                raise PlatformError(
                    f"\n\nrs3gw needs lib{lib.name} ({lib.header}, -l{lib.name}) to build its compiled core.\n"
                    f"Install it with:  apt-get install {lib.debian}   (or run `make deps`)\n"
                    "There is no pure-Python build.\n"
                ) from exc


def _selected() -> list[CoreModule]:
    """RS3GW_BUILD_ONLY=a,b builds just those modules: a development aid for working on one module
    while another's sources are in flux. Release and CI builds leave it unset and build all."""
    only = {n.strip() for n in os.environ.get("RS3GW_BUILD_ONLY", "").split(",") if n.strip()}
    unknown = only - {m.name for m in MODULES}
    if unknown:
        raise SystemExit(f"RS3GW_BUILD_ONLY names unknown modules: {', '.join(sorted(unknown))}")
    return [m for m in MODULES if not only or m.name in only]


setup(
    ext_modules=_cythonize([_extension(m) for m in _selected() if not m.cffi]),
    cffi_modules=[m.cffi for m in _selected() if m.cffi],
    cmdclass={"build_ext": BuildCore},
)
