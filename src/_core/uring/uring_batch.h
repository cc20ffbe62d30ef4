/*
 * rs3gw._core._uring: batched io_uring submit/reap over liburing (>= 2.3).
 *
 * Python crosses into C once per batch: rs3gw_submit() takes an array of
 * operations and makes one io_uring_enter for all of them; rs3gw_reap()
 * copies every ready completion into a caller-owned array. No Python objects
 * are touched here; buffers are raw pointers the caller keeps alive until
 * their completion has been reaped.
 */
#ifndef RS3GW_URING_BATCH_H
#define RS3GW_URING_BATCH_H

#include <stdint.h>

#define RS3GW_OP_READ 1
#define RS3GW_OP_WRITE 2
#define RS3GW_OP_FSYNC 3
#define RS3GW_OP_FDATASYNC 4

/* Completions of cancel requests carry this tag; rs3gw_reap() drops them. */
#define RS3GW_CANCEL_TAG UINT64_MAX

/* The kernel caps a single read/write at this many bytes (MAX_RW_COUNT). */
#define RS3GW_MAX_RW_BYTES 0x7ffff000U

struct rs3gw_op {
    uint64_t user_data;
    void *buf;
    int64_t offset; /* -1: current file position (pipes, sockets) */
    uint32_t len;
    int32_t fd;
    uint32_t opcode;
};

struct rs3gw_cqe {
    uint64_t user_data;
    int32_t res; /* bytes, or -errno */
    uint32_t flags;
};

struct rs3gw_stats {
    uint64_t enter_calls;    /* io_uring_enter syscalls made by submit/wait */
    uint64_t sqes_submitted; /* SQEs the kernel accepted */
    uint64_t cqes_reaped;    /* CQEs handed back to the caller */
    int32_t last_enter_error;
};

struct rs3gw_ring;

/* NULL on failure with *err = -errno. */
struct rs3gw_ring *rs3gw_ring_open(unsigned entries, int *err);
int rs3gw_ring_eventfd(const struct rs3gw_ring *r);
int rs3gw_ring_fd(const struct rs3gw_ring *r);
unsigned rs3gw_ring_sq_entries(const struct rs3gw_ring *r);
const struct rs3gw_stats *rs3gw_ring_stats(const struct rs3gw_ring *r);
/* SQEs placed in the ring but not yet accepted by the kernel. */
unsigned rs3gw_ring_sq_pending(const struct rs3gw_ring *r);

/* Places n ops and enters the kernel once (more only if n exceeds the SQ).
 * Returns the number placed (every placed op yields exactly one CQE) or
 * -errno for an unknown opcode. */
int rs3gw_submit(struct rs3gw_ring *r, const struct rs3gw_op *ops, unsigned n);
/* Queues one cancel per user_data and submits them. */
int rs3gw_cancel(struct rs3gw_ring *r, const uint64_t *user_data, unsigned n);
/* Copies up to max ready CQEs; never blocks. clear_eventfd first drains the
 * eventfd counter so the next completion re-arms the reader. */
int rs3gw_reap(struct rs3gw_ring *r, struct rs3gw_cqe *out, unsigned max, int clear_eventfd);
/* Like rs3gw_reap but waits up to timeout_ms for the first CQE (0 or -ETIME on timeout). */
int rs3gw_wait(struct rs3gw_ring *r, struct rs3gw_cqe *out, unsigned max, unsigned timeout_ms);
void rs3gw_ring_close(struct rs3gw_ring *r);

/* 0 if a ring can be set up and runs read/write/fsync/cancel here, else -errno. */
int rs3gw_probe(void);

#endif
