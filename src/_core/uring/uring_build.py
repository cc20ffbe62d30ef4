"""cffi API-mode builder for rs3gw._core._uring (liburing + uring_batch.c beside this file).

Run by setup.py through ``cffi_modules`` (from the project root, so the paths handed to cffi are
relative to it); the Python face is rs3gw._core.uring.
"""

from __future__ import annotations

import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

# setup.py's C_FLAGS: warnings are errors for our C and for the cffi-generated wrapper alike.
C_FLAGS = ["-O3", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-fvisibility=hidden"]

CDEF = """
#define RS3GW_OP_READ 1
#define RS3GW_OP_WRITE 2
#define RS3GW_OP_FSYNC 3
#define RS3GW_OP_FDATASYNC 4
#define RS3GW_MAX_RW_BYTES ...

struct rs3gw_op {
    uint64_t user_data;
    void *buf;
    int64_t offset;
    uint32_t len;
    int32_t fd;
    uint32_t opcode;
};

struct rs3gw_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};

struct rs3gw_stats {
    uint64_t enter_calls;
    uint64_t sqes_submitted;
    uint64_t cqes_reaped;
    int32_t last_enter_error;
};

struct rs3gw_ring;

struct rs3gw_ring *rs3gw_ring_open(unsigned entries, int *err);
int rs3gw_ring_eventfd(const struct rs3gw_ring *r);
int rs3gw_ring_fd(const struct rs3gw_ring *r);
unsigned rs3gw_ring_sq_entries(const struct rs3gw_ring *r);
const struct rs3gw_stats *rs3gw_ring_stats(const struct rs3gw_ring *r);
unsigned rs3gw_ring_sq_pending(const struct rs3gw_ring *r);
int rs3gw_submit(struct rs3gw_ring *r, const struct rs3gw_op *ops, unsigned n);
int rs3gw_cancel(struct rs3gw_ring *r, const uint64_t *user_data, unsigned n);
int rs3gw_reap(struct rs3gw_ring *r, struct rs3gw_cqe *out, unsigned max, int clear_eventfd);
int rs3gw_wait(struct rs3gw_ring *r, struct rs3gw_cqe *out, unsigned max, unsigned timeout_ms);
void rs3gw_ring_close(struct rs3gw_ring *r);
int rs3gw_probe(void);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "rs3gw._core._uring",
    '#include "uring_batch.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, "uring_batch.c"))],
    include_dirs=[os.path.relpath(HERE)],
    # So an edit to the header alone rebuilds the module (build_ext compares only what it is told).
    depends=[os.path.relpath(os.path.join(HERE, "uring_batch.h"))],
    libraries=["uring"],
    extra_compile_args=C_FLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
