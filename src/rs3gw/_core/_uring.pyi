# cffi API-mode module built from src/_core/uring/uring_build.py: `ffi` and `lib` expose liburing and
# our batch submit/reap helpers (src/_core/uring/uring_batch.h); rs3gw._core.uring is its Python face.
from typing import Any

ffi: Any
lib: Any
