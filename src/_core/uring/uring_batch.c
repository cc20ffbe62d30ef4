/*
 * Batched io_uring submit/reap; see uring_batch.h for the contract.
 *
 * Called from cffi with the GIL released. One rs3gw_ring belongs to one
 * event loop thread; nothing here is thread-safe by itself.
 */
#include "uring_batch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <liburing.h>

struct rs3gw_ring {
    struct io_uring ring;
    int efd;
    struct rs3gw_stats stats;
};

struct rs3gw_ring *rs3gw_ring_open(unsigned entries, int *err)
{
    struct rs3gw_ring *r = calloc(1, sizeof *r);
    if (r == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    /* Plain flags on purpose: COOP_TASKRUN/DEFER_TASKRUN post completions only
     * when this thread next enters the kernel, and a loop asleep in epoll on
     * the eventfd would then never hear about them. */
    int rc = io_uring_queue_init(entries, &r->ring, 0);
    if (rc < 0) {
        free(r);
        *err = rc;
        return NULL;
    }
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0) {
        *err = -errno;
        io_uring_queue_exit(&r->ring);
        free(r);
        return NULL;
    }
    rc = io_uring_register_eventfd(&r->ring, r->efd);
    if (rc < 0) {
        *err = rc;
        close(r->efd);
        io_uring_queue_exit(&r->ring);
        free(r);
        return NULL;
    }
    *err = 0;
    return r;
}

int rs3gw_ring_eventfd(const struct rs3gw_ring *r) { return r->efd; }

int rs3gw_ring_fd(const struct rs3gw_ring *r) { return r->ring.ring_fd; }

unsigned rs3gw_ring_sq_entries(const struct rs3gw_ring *r) { return r->ring.sq.ring_entries; }

const struct rs3gw_stats *rs3gw_ring_stats(const struct rs3gw_ring *r) { return &r->stats; }

unsigned rs3gw_ring_sq_pending(const struct rs3gw_ring *r) { return io_uring_sq_ready(&r->ring); }

/* Hands every placed SQE to the kernel. EINTR is retried; EAGAIN/EBUSY leave
 * the SQEs in the ring (rs3gw_ring_sq_pending() > 0) for the next call. */
static void enter(struct rs3gw_ring *r)
{
    while (io_uring_sq_ready(&r->ring) > 0) {
        int rc = io_uring_submit(&r->ring);
        r->stats.enter_calls++;
        if (rc == -EINTR)
            continue;
        if (rc < 0) {
            r->stats.last_enter_error = rc;
            return;
        }
        r->stats.sqes_submitted += (unsigned)rc;
        if (rc == 0)
            return;
    }
}

static struct io_uring_sqe *get_sqe(struct rs3gw_ring *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (sqe == NULL) {
        /* SQ full: flush what is queued and try once more. */
        enter(r);
        sqe = io_uring_get_sqe(&r->ring);
    }
    return sqe;
}

int rs3gw_submit(struct rs3gw_ring *r, const struct rs3gw_op *ops, unsigned n)
{
    unsigned placed = 0;
    for (; placed < n; placed++) {
        const struct rs3gw_op *op = &ops[placed];
        if (op->opcode < RS3GW_OP_READ || op->opcode > RS3GW_OP_FDATASYNC)
            return placed ? (int)placed : -EINVAL;
        struct io_uring_sqe *sqe = get_sqe(r);
        if (sqe == NULL)
            break;
        unsigned len = op->len > RS3GW_MAX_RW_BYTES ? RS3GW_MAX_RW_BYTES : op->len;
        switch (op->opcode) {
        case RS3GW_OP_READ:
            io_uring_prep_read(sqe, op->fd, op->buf, len, (uint64_t)op->offset);
            break;
        case RS3GW_OP_WRITE:
            io_uring_prep_write(sqe, op->fd, op->buf, len, (uint64_t)op->offset);
            break;
        case RS3GW_OP_FSYNC:
            io_uring_prep_fsync(sqe, op->fd, 0);
            break;
        default:
            io_uring_prep_fsync(sqe, op->fd, IORING_FSYNC_DATASYNC);
            break;
        }
        io_uring_sqe_set_data64(sqe, op->user_data);
    }
    enter(r);
    return (int)placed;
}

int rs3gw_cancel(struct rs3gw_ring *r, const uint64_t *user_data, unsigned n)
{
    unsigned placed = 0;
    for (; placed < n; placed++) {
        struct io_uring_sqe *sqe = get_sqe(r);
        if (sqe == NULL)
            break;
        io_uring_prep_cancel64(sqe, user_data[placed], 0);
        io_uring_sqe_set_data64(sqe, RS3GW_CANCEL_TAG);
    }
    enter(r);
    return (int)placed;
}

static int copy_ready(struct rs3gw_ring *r, struct rs3gw_cqe *out, unsigned max)
{
    unsigned head, seen = 0, n = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&r->ring, head, cqe)
    {
        if (cqe->user_data == RS3GW_CANCEL_TAG) {
            seen++;
            continue;
        }
        if (n == max)
            break;
        out[n].user_data = cqe->user_data;
        out[n].res = cqe->res;
        out[n].flags = cqe->flags;
        n++;
        seen++;
    }
    io_uring_cq_advance(&r->ring, seen);
    r->stats.cqes_reaped += n;
    return (int)n;
}

int rs3gw_reap(struct rs3gw_ring *r, struct rs3gw_cqe *out, unsigned max, int clear_eventfd)
{
    if (clear_eventfd) {
        /* Reset the counter before looking at the CQ: a completion posted
         * after this read signals the eventfd again, so none is missed. */
        uint64_t count;
        ssize_t got = read(r->efd, &count, sizeof count);
        (void)got;
    }
    return copy_ready(r, out, max);
}

int rs3gw_wait(struct rs3gw_ring *r, struct rs3gw_cqe *out, unsigned max, unsigned timeout_ms)
{
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts = {
        .tv_sec = timeout_ms / 1000,
        .tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
    };
    int rc = io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts);
    r->stats.enter_calls++;
    if (rc < 0 && rc != -ETIME && rc != -EINTR)
        return rc;
    return copy_ready(r, out, max);
}

void rs3gw_ring_close(struct rs3gw_ring *r)
{
    if (r == NULL)
        return;
    io_uring_unregister_eventfd(&r->ring);
    close(r->efd);
    io_uring_queue_exit(&r->ring);
    free(r);
}

int rs3gw_probe(void)
{
    struct io_uring ring;
    int rc = io_uring_queue_init(4, &ring, 0);
    if (rc < 0)
        return rc;

    struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    if (probe == NULL) {
        rc = -EOPNOTSUPP; /* IORING_REGISTER_PROBE arrived with IORING_OP_READ (5.6) */
        goto out;
    }
    static const int needed[] = {IORING_OP_READ, IORING_OP_WRITE, IORING_OP_FSYNC, IORING_OP_ASYNC_CANCEL};
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
        if (!io_uring_opcode_supported(probe, needed[i])) {
            rc = -EOPNOTSUPP;
            break;
        }
    }
    io_uring_free_probe(probe);
    if (rc < 0)
        goto out;

    /* A NOP round trip: some sandboxes allow setup but fail io_uring_enter. */
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_nop(sqe);
    rc = io_uring_submit_and_wait(&ring, 1);
    if (rc >= 0) {
        struct io_uring_cqe *cqe;
        rc = io_uring_peek_cqe(&ring, &cqe);
        if (rc == 0) {
            rc = cqe->res < 0 ? cqe->res : 0;
            io_uring_cqe_seen(&ring, cqe);
        }
    }
out:
    io_uring_queue_exit(&ring);
    return rc;
}
