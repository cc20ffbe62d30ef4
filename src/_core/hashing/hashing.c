/*
 * rs3gw._core.hashing: MD5, SHA-1, SHA-256, CRC-32, CRC-32C and CRC-64/NVME
 * over one stream, any subset of them, in one pass over the data.
 *
 * The cryptographic digests go through OpenSSL 3 libcrypto (EVP, algorithms
 * fetched once at import), CRC-32/CRC-32C through ISA-L, CRC-64/NVME through
 * our fold kernels (shared/crc64nvme.c). "One pass": each update is cut into
 * blocks that fit in L2 and every requested algorithm runs over a block before
 * the next one is touched, so the data comes from RAM once and the later
 * algorithms read it cache-hot.
 *
 * update() releases the GIL for the whole call on large inputs. A Hasher is
 * not shareable between threads while one of them is inside a call: a busy
 * flag, set and tested only while the GIL is held, turns such use into
 * RuntimeError instead of a corrupted digest.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include <isa-l/crc.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "crc64nvme.h"

/* Below this many bytes the GIL round trip costs more than the hashing. */
#define GIL_RELEASE_MIN_BYTES 4096

/* Block of the one-pass loop, well inside L2. Measured on EPYC (64 KiB L1d,
 * 2 MiB L2) over 64 MiB with benchmarks/bench_hashing.py::test_block_size_sweep:
 * CRC32+CRC32C+CRC64NVME takes ~5.2 ms with any block from 4 KiB to 4 MiB
 * versus 7-11 ms running each algorithm over the whole buffer; MD5 or SHA-256
 * mixes are compute bound and flat within 1-2% over the same range. 64 KiB
 * sits in the middle of the flat region with margin for a smaller L2. */
#define BLOCK_BYTES_DEFAULT (64 * 1024)
#define BLOCK_BYTES_MIN 1024
#define BLOCK_BYTES_MAX (1 << 30) /* crc32_iscsi takes an int length */

/* Algorithm ids, in the order of ALGOS. */
enum { A_MD5, A_CRC32, A_CRC32C, A_CRC64NVME, A_SHA1, A_SHA256, N_ALGOS };
static const char *const algo_names[N_ALGOS] = {"md5", "crc32", "crc32c", "crc64nvme", "sha1", "sha256"};
static const char *const evp_names[N_ALGOS] = {"MD5", NULL, NULL, NULL, "SHA1", "SHA256"};
static const unsigned digest_sizes[N_ALGOS] = {16, 4, 4, 8, 20, 32}; /* bytes */

/* Fetched once at import and never freed: EVP_MD objects are immutable and
 * safe to share between threads and contexts. */
static EVP_MD *evp_md[N_ALGOS];

/* Written only by _set_block_bytes (benchmarks); read once per update. */
static size_t block_bytes = BLOCK_BYTES_DEFAULT;

/* Error codes of the GIL-free part; raise_hash_error turns them into exceptions. */
enum { HASH_OK = 0, HASH_EVP_FAILED = -1 };

typedef struct {
    PyObject_HEAD
    int busy;                       /* a call is running; read/written with the GIL held */
    int broken;                     /* a library call failed mid-update: state is undefined */
    int n_order;
    unsigned char order[N_ALGOS];   /* requested algorithms, deduplicated, in request order */
    EVP_MD_CTX *ctx[N_ALGOS];       /* non-NULL for the requested cryptographic digests */
    unsigned mask;                  /* bit per requested algorithm */
    uint32_t crc32;                 /* finalized form (crc32_gzip_refl convention) */
    uint32_t crc32c_reg;            /* raw register, ~0 at start */
    uint64_t crc64_reg;             /* raw register, ~0 at start */
    unsigned long long size;
} HasherObject;

/* ---------------------------------------------------------------------- */
/* GIL-free core: plain C over caller-pinned memory.                       */

static int hash_block(HasherObject *h, const unsigned char *p, size_t n)
{
    /* Crypto first: MD5/SHA are compute bound, so the hardware prefetcher can
     * hide the RAM read behind them; the CRCs then read the block from cache. */
    for (int i = 0; i < h->n_order; i++) {
        EVP_MD_CTX *ctx = h->ctx[h->order[i]];
        if (ctx != NULL && EVP_DigestUpdate(ctx, p, n) != 1)
            return HASH_EVP_FAILED;
    }
    if (h->mask & (1u << A_CRC32))
        h->crc32 = crc32_gzip_refl(h->crc32, p, (uint64_t)n);
    if (h->mask & (1u << A_CRC32C))
        /* ISA-L's prototype lacks const; it only reads the buffer. n <= 2^30. */
        h->crc32c_reg = crc32_iscsi((unsigned char *)p, (int)n, h->crc32c_reg);
    if (h->mask & (1u << A_CRC64NVME))
        h->crc64_reg = rs3gw_crc64nvme_raw(h->crc64_reg, p, n);
    return HASH_OK;
}

static int hash_buffer(HasherObject *h, const unsigned char *p, size_t n, size_t block)
{
    /* One algorithm gains nothing from blocking; spare it the extra calls. */
    if (h->n_order <= 1)
        block = BLOCK_BYTES_MAX;
    while (n) {
        size_t step = n < block ? n : block;
        int rc = hash_block(h, p, step);
        if (rc != HASH_OK)
            return rc;
        p += step;
        n -= step;
    }
    return HASH_OK;
}

/* ---------------------------------------------------------------------- */
/* Python bindings                                                         */

/* The one place C error codes become exceptions. Called with the GIL, on
 * the thread that made the failing call (OpenSSL's error queue is per thread). */
static void raise_hash_error(int code, const char *what)
{
    if (code == HASH_EVP_FAILED) {
        unsigned long e = ERR_get_error();
        char reason[256] = "unknown OpenSSL error";
        if (e != 0)
            ERR_error_string_n(e, reason, sizeof reason);
        ERR_clear_error();
        PyErr_Format(PyExc_RuntimeError, "%s failed: %s", what, reason);
        return;
    }
    PyErr_Format(PyExc_SystemError, "%s failed with code %d", what, code);
}

/* Takes the object for one call; pair with release_hasher. */
static int acquire_hasher(HasherObject *h)
{
    if (h->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Hasher is in use by another thread; use one Hasher per thread");
        return -1;
    }
    if (h->broken) {
        PyErr_SetString(PyExc_RuntimeError, "Hasher is unusable after an earlier library failure");
        return -1;
    }
    h->busy = 1;
    return 0;
}

static void release_hasher(HasherObject *h)
{
    h->busy = 0;
}

static PyObject *hasher_alloc(PyTypeObject *type)
{
    HasherObject *h = (HasherObject *)type->tp_alloc(type, 0);
    if (h == NULL)
        return NULL;
    /* tp_alloc zeroes the object: no contexts, no algorithms. */
    h->crc32c_reg = UINT32_MAX;
    h->crc64_reg = UINT64_MAX;
    return (PyObject *)h;
}

static void hasher_dealloc(PyObject *self)
{
    HasherObject *h = (HasherObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    for (int i = 0; i < N_ALGOS; i++)
        EVP_MD_CTX_free(h->ctx[i]);
    tp->tp_free(self);
    Py_DECREF(tp); /* heap type */
}

static int algo_id(PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "algorithm names are str, not %.100s", Py_TYPE(name)->tp_name);
        return -1;
    }
    for (int i = 0; i < N_ALGOS; i++) {
        if (PyUnicode_CompareWithASCIIString(name, algo_names[i]) == 0)
            return i;
    }
    PyErr_Format(PyExc_ValueError, "unsupported hash algorithm %R", name);
    return -1;
}

static int add_algo(HasherObject *h, int id)
{
    if (h->mask & (1u << id))
        return 0;
    if (evp_md[id] != NULL) {
        h->ctx[id] = EVP_MD_CTX_new();
        if (h->ctx[id] == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (EVP_DigestInit_ex2(h->ctx[id], evp_md[id], NULL) != 1) {
            raise_hash_error(HASH_EVP_FAILED, "EVP_DigestInit_ex2");
            return -1;
        }
    }
    h->mask |= 1u << id;
    h->order[h->n_order++] = (unsigned char)id;
    return 0;
}

static PyObject *hasher_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"algos", NULL};
    PyObject *algos;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:Hasher", kwlist, &algos))
        return NULL;
    if (PyUnicode_Check(algos) || PyBytes_Check(algos)) {
        PyErr_SetString(PyExc_TypeError, "algos must be an iterable of names, not a single string");
        return NULL;
    }
    PyObject *it = PyObject_GetIter(algos);
    if (it == NULL)
        return NULL;
    HasherObject *h = (HasherObject *)hasher_alloc(type);
    if (h == NULL) {
        Py_DECREF(it);
        return NULL;
    }
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        int id = algo_id(item);
        Py_DECREF(item);
        if (id < 0 || add_algo(h, id) < 0)
            goto fail;
    }
    if (PyErr_Occurred())
        goto fail;
    Py_DECREF(it);
    return (PyObject *)h;
fail:
    Py_DECREF(it);
    Py_DECREF(h);
    return NULL;
}

static PyObject *hasher_update(PyObject *self, PyObject *data)
{
    HasherObject *h = (HasherObject *)self;
    Py_buffer view;
    /* PyBUF_SIMPLE asks for C-contiguous bytes (BufferError otherwise). The
     * export pins the memory until PyBuffer_Release: a bytearray cannot
     * resize and an mmap cannot close while we read it without the GIL. */
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (acquire_hasher(h) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)view.buf;
    size_t n = (size_t)view.len;
    size_t block = block_bytes;
    int rc;
    if (n >= GIL_RELEASE_MIN_BYTES) {
        /* Only plain C runs here; `h` stays alive through the caller's reference
         * and is protected from other threads by the busy flag. */
        Py_BEGIN_ALLOW_THREADS
        rc = hash_buffer(h, p, n, block);
        Py_END_ALLOW_THREADS
    } else {
        rc = hash_buffer(h, p, n, block);
    }
    PyBuffer_Release(&view);
    if (rc != HASH_OK) {
        h->broken = 1;
        release_hasher(h);
        raise_hash_error(rc, "EVP_DigestUpdate");
        return NULL;
    }
    h->size += n;
    release_hasher(h);
    Py_RETURN_NONE;
}

static PyObject *crypto_digest(EVP_MD_CTX *ctx)
{
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    /* Finalize a copy so the stream can go on after digests(). */
    EVP_MD_CTX *tmp = EVP_MD_CTX_new();
    if (tmp == NULL)
        return PyErr_NoMemory();
    int ok = EVP_MD_CTX_copy_ex(tmp, ctx) == 1 && EVP_DigestFinal_ex(tmp, out, &len) == 1;
    EVP_MD_CTX_free(tmp);
    if (!ok) {
        raise_hash_error(HASH_EVP_FAILED, "EVP_DigestFinal_ex");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)len);
}

static PyObject *crc_digest(uint64_t value, unsigned size)
{
    unsigned char out[8];
    for (unsigned i = 0; i < size; i++)
        out[i] = (unsigned char)(value >> (8 * (size - 1 - i))); /* big-endian, as S3 sends */
    return PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)size);
}

static PyObject *one_digest(HasherObject *h, int id)
{
    switch (id) {
    case A_CRC32:
        return crc_digest(h->crc32, digest_sizes[id]);
    case A_CRC32C:
        return crc_digest((uint32_t)~h->crc32c_reg, digest_sizes[id]);
    case A_CRC64NVME:
        return crc_digest(~h->crc64_reg, digest_sizes[id]);
    default:
        return crypto_digest(h->ctx[id]);
    }
}

static PyObject *hasher_digests(PyObject *self, PyObject *unused)
{
    (void)unused;
    HasherObject *h = (HasherObject *)self;
    if (acquire_hasher(h) < 0)
        return NULL;
    PyObject *out = PyDict_New();
    for (int i = 0; out != NULL && i < h->n_order; i++) {
        int id = h->order[i];
        PyObject *d = one_digest(h, id);
        if (d == NULL || PyDict_SetItemString(out, algo_names[id], d) < 0)
            Py_CLEAR(out);
        Py_XDECREF(d);
    }
    release_hasher(h);
    return out;
}

static PyObject *hasher_copy(PyObject *self, PyObject *unused)
{
    (void)unused;
    HasherObject *h = (HasherObject *)self;
    if (acquire_hasher(h) < 0)
        return NULL;
    HasherObject *c = (HasherObject *)hasher_alloc(Py_TYPE(self));
    if (c == NULL)
        goto done;
    c->n_order = h->n_order;
    memcpy(c->order, h->order, sizeof c->order);
    c->mask = h->mask;
    c->crc32 = h->crc32;
    c->crc32c_reg = h->crc32c_reg;
    c->crc64_reg = h->crc64_reg;
    c->size = h->size;
    for (int i = 0; i < N_ALGOS; i++) {
        if (h->ctx[i] == NULL)
            continue;
        c->ctx[i] = EVP_MD_CTX_new();
        if (c->ctx[i] == NULL) {
            PyErr_NoMemory();
            Py_CLEAR(c);
            goto done;
        }
        if (EVP_MD_CTX_copy_ex(c->ctx[i], h->ctx[i]) != 1) {
            raise_hash_error(HASH_EVP_FAILED, "EVP_MD_CTX_copy_ex");
            Py_CLEAR(c);
            goto done;
        }
    }
done:
    release_hasher(h);
    return (PyObject *)c;
}

static PyObject *hasher_get_size(PyObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(((HasherObject *)self)->size);
}

static PyObject *hasher_get_algos(PyObject *self, void *closure)
{
    (void)closure;
    HasherObject *h = (HasherObject *)self;
    PyObject *t = PyTuple_New(h->n_order);
    if (t == NULL)
        return NULL;
    for (int i = 0; i < h->n_order; i++) {
        PyObject *s = PyUnicode_FromString(algo_names[h->order[i]]);
        if (s == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

static PyMethodDef hasher_methods[] = {
    {"update", hasher_update, METH_O,
     "update(data) -> None\n\nFeed a C-contiguous buffer (no copy; GIL released when large)."},
    {"digests", hasher_digests, METH_NOARGS,
     "digests() -> dict[str, bytes]\n\nRaw big-endian digests so far; the stream can continue."},
    {"copy", hasher_copy, METH_NOARGS, "copy() -> Hasher\n\nAn independent Hasher in the same state."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef hasher_getset[] = {
    {"size", hasher_get_size, NULL, "Bytes hashed so far.", NULL},
    {"algos", hasher_get_algos, NULL, "Algorithms computed, in request order.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot hasher_slots[] = {
    {Py_tp_new, hasher_new},
    {Py_tp_dealloc, hasher_dealloc},
    {Py_tp_methods, hasher_methods},
    {Py_tp_getset, hasher_getset},
    {Py_tp_doc, "Hasher(algos)\n\nAny subset of ALGOS over one stream, in one pass per update."},
    {0, NULL},
};

static PyType_Spec hasher_spec = {
    "rs3gw._core.hashing.Hasher",
    sizeof(HasherObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    hasher_slots,
};

/* Benchmarks only: the one-pass block size. */
static PyObject *py_set_block_bytes(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_ssize_t n = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < BLOCK_BYTES_MIN || n > BLOCK_BYTES_MAX) {
        PyErr_Format(PyExc_ValueError, "block size must be in [%d, %d]", BLOCK_BYTES_MIN, BLOCK_BYTES_MAX);
        return NULL;
    }
    block_bytes = (size_t)n;
    Py_RETURN_NONE;
}

static PyMethodDef hashing_methods[] = {
    {"_set_block_bytes", py_set_block_bytes, METH_O,
     "_set_block_bytes(n) -> None\n\nBenchmarks only: bytes per one-pass block."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hashing_module = {
    PyModuleDef_HEAD_INIT,
    "rs3gw._core.hashing",
    "MD5/SHA-1/SHA-256 (OpenSSL) and CRC-32/CRC-32C/CRC-64NVME in one pass, GIL released.",
    -1,
    hashing_methods,
    NULL, NULL, NULL, NULL,
};

static int fetch_digests(void)
{
    for (int i = 0; i < N_ALGOS; i++) {
        if (evp_names[i] == NULL || evp_md[i] != NULL)
            continue;
        evp_md[i] = EVP_MD_fetch(NULL, evp_names[i], NULL);
        if (evp_md[i] == NULL) {
            unsigned long e = ERR_get_error();
            char reason[256] = "no provider offers it";
            if (e != 0)
                ERR_error_string_n(e, reason, sizeof reason);
            ERR_clear_error();
            PyErr_Format(PyExc_ImportError, "OpenSSL cannot fetch %s (%s)", evp_names[i], reason);
            return -1;
        }
    }
    return 0;
}

PyMODINIT_FUNC PyInit_hashing(void)
{
    rs3gw_crc64nvme_init();
    if (fetch_digests() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&hashing_module);
    if (m == NULL)
        return NULL;
    int best = rs3gw_crc64nvme_kernel_best();
    char backend[48];
    snprintf(backend, sizeof backend, "openssl+isa-l+%s",
             best == RS3GW_CRC64_KERNEL_TABLE ? "c" : rs3gw_crc64nvme_kernel_name(best));
    PyObject *algos = PyTuple_New(N_ALGOS);
    if (algos == NULL)
        goto fail;
    for (int i = 0; i < N_ALGOS; i++) {
        PyObject *s = PyUnicode_FromString(algo_names[i]);
        if (s == NULL) {
            Py_DECREF(algos);
            goto fail;
        }
        PyTuple_SET_ITEM(algos, i, s);
    }
    if (PyModule_AddObject(m, "ALGOS", algos) < 0) {
        Py_DECREF(algos);
        goto fail;
    }
    PyObject *type = PyType_FromSpec(&hasher_spec);
    if (type == NULL)
        goto fail;
    if (PyModule_AddObject(m, "Hasher", type) < 0) {
        Py_DECREF(type);
        goto fail;
    }
    if (PyModule_AddStringConstant(m, "backend", backend) < 0 ||
        PyModule_AddIntConstant(m, "GIL_RELEASE_MIN_BYTES", GIL_RELEASE_MIN_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "BLOCK_BYTES", BLOCK_BYTES_DEFAULT) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
