/*
 * rs3gw._core.crc: CRC-32 (zlib/gzip), CRC-32C (Castagnoli) and CRC-64/NVME.
 *
 * CRC-32 and CRC-32C come from ISA-L (hand-written SIMD with its own CPU
 * dispatch). ISA-L 2.30 has no CRC-64/NVME, so that one is ours, in
 * shared/crc64nvme.c (linked into rs3gw._core.hashing too).
 *
 * All public values are in the finalized form S3 and zlib use (init and
 * xorout all ones already applied), so f(b, f(a)) == f(a + b).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include <isa-l/crc.h>

#include "crc64nvme.h"

/* Below this many bytes the GIL round trip costs more than the CRC itself. */
#define GIL_RELEASE_MIN_BYTES 4096

/* crc32_iscsi takes an int length; feed it at most this much per call. */
#define ISCSI_MAX_CHUNK ((size_t)1 << 30)

#define CRC64NVME_POLY_REFL RS3GW_CRC64NVME_POLY_REFL
#define CRC32_POLY_REFL 0xEDB88320ULL
#define CRC32C_POLY_REFL 0x82F63B78ULL

/* ---------------------------------------------------------------------- */
/* Reflected polynomial arithmetic mod P (used for combine). A w-bit      */
/* reflected value holds the coefficient of x^(w-1-i) in bit i, so        */
/* "multiply by x" is a right shift plus conditional reduce.              */

static uint64_t mulmod_refl(uint64_t a, uint64_t b, uint64_t poly, int width)
{
    uint64_t top = (uint64_t)1 << (width - 1);
    uint64_t p = 0;
    for (uint64_t m = top; m; m >>= 1) {
        if (a & m)
            p ^= b;
        b = (b & 1) ? (b >> 1) ^ poly : b >> 1;
    }
    return p;
}

/* x^(2^k) mod P for k in [0, 68): enough for x^(8 * len) with len < 2^64. */
#define X2N_SLOTS 68
static uint64_t x2n_crc32[X2N_SLOTS], x2n_crc32c[X2N_SLOTS], x2n_crc64[X2N_SLOTS];

static void x2n_init(uint64_t *tab, uint64_t poly, int width)
{
    tab[0] = (uint64_t)1 << (width - 2);
    for (int k = 1; k < X2N_SLOTS; k++)
        tab[k] = mulmod_refl(tab[k - 1], tab[k - 1], poly, width);
}

/* crc(A+B) from crc(A), crc(B) and len(B): since init == xorout, the
 * all-ones terms cancel and crc(A+B) = crc(A) * x^(8*len2) + crc(B). */
static uint64_t combine_refl(uint64_t crc1, uint64_t crc2, unsigned long long len2,
                             const uint64_t *x2n, uint64_t poly, int width)
{
    uint64_t xp = (uint64_t)1 << (width - 1);
    int k = 3;
    while (len2) {
        if (len2 & 1)
            xp = mulmod_refl(x2n[k], xp, poly, width);
        len2 >>= 1;
        k++;
    }
    return mulmod_refl(xp, crc1, poly, width) ^ crc2;
}

/* ---------------------------------------------------------------------- */
/* Finalized-form kernels. None of these touch Python objects: they run     */
/* with the GIL released.                                                  */

static uint64_t k_crc32(uint64_t crc, const unsigned char *p, size_t n)
{
    /* crc32_gzip_refl applies the ones-init/xorout itself (zlib convention). */
    return crc32_gzip_refl((uint32_t)crc, p, (uint64_t)n);
}

static uint64_t k_crc32c(uint64_t crc, const unsigned char *p, size_t n)
{
    /* crc32_iscsi works on the raw register: invert on the way in and out. */
    unsigned int reg = ~(uint32_t)crc;
    while (n) {
        size_t step = n < ISCSI_MAX_CHUNK ? n : ISCSI_MAX_CHUNK;
        /* ISA-L's prototype lacks const; it only reads the buffer. */
        reg = crc32_iscsi((unsigned char *)p, (int)step, reg);
        p += step;
        n -= step;
    }
    return (uint32_t)~reg;
}

static uint64_t k_crc64nvme(uint64_t crc, const unsigned char *p, size_t n)
{
    return rs3gw_crc64nvme(crc, p, n);
}

typedef uint64_t (*crc_kernel)(uint64_t, const unsigned char *, size_t);

/* ---------------------------------------------------------------------- */
/* Python bindings                                                         */

/* Converts an int in [0, 2**width) or raises OverflowError/TypeError. */
static int as_crc_value(PyObject *obj, int width, uint64_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "crc must be int, not %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (width < 64 && v >> width) {
        PyErr_Format(PyExc_OverflowError, "crc must be in [0, 2**%d)", width);
        return -1;
    }
    *out = v;
    return 0;
}

static PyObject *run_crc(PyObject *args, PyObject *kwargs, const char *fmt,
                         crc_kernel kernel, int width)
{
    static char *kwlist[] = {"data", "crc", NULL};
    Py_buffer view;
    PyObject *crc_obj = NULL;
    uint64_t crc = 0;

    /* y* asks for a C-contiguous buffer; the export pins the memory (a
     * bytearray cannot resize, an mmap cannot close) until we release it. */
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, fmt, kwlist, &view, &crc_obj))
        return NULL;
    if (crc_obj != NULL && as_crc_value(crc_obj, width, &crc) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)view.buf;
    size_t n = (size_t)view.len;
    if (n >= GIL_RELEASE_MIN_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        crc = kernel(crc, p, n);
        Py_END_ALLOW_THREADS
    } else {
        crc = kernel(crc, p, n);
    }
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(crc);
}

static PyObject *py_crc32(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    return run_crc(args, kwargs, "y*|O:crc32", k_crc32, 32);
}

static PyObject *py_crc32c(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    return run_crc(args, kwargs, "y*|O:crc32c", k_crc32c, 32);
}

static PyObject *py_crc64nvme(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    return run_crc(args, kwargs, "y*|O:crc64nvme", k_crc64nvme, 64);
}

static PyObject *run_combine(PyObject *args, const char *fmt, const uint64_t *x2n,
                             uint64_t poly, int width)
{
    PyObject *o1, *o2, *olen;
    uint64_t crc1, crc2;
    if (!PyArg_ParseTuple(args, fmt, &o1, &o2, &olen))
        return NULL;
    if (as_crc_value(o1, width, &crc1) < 0 || as_crc_value(o2, width, &crc2) < 0)
        return NULL;
    if (!PyLong_Check(olen)) {
        PyErr_SetString(PyExc_TypeError, "len2 must be int");
        return NULL;
    }
    unsigned long long len2 = PyLong_AsUnsignedLongLong(olen);
    if (len2 == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    return PyLong_FromUnsignedLongLong(combine_refl(crc1, crc2, len2, x2n, poly, width));
}

static PyObject *py_crc32_combine(PyObject *self, PyObject *args)
{
    (void)self;
    return run_combine(args, "OOO:crc32_combine", x2n_crc32, CRC32_POLY_REFL, 32);
}

static PyObject *py_crc32c_combine(PyObject *self, PyObject *args)
{
    (void)self;
    return run_combine(args, "OOO:crc32c_combine", x2n_crc32c, CRC32C_POLY_REFL, 32);
}

static PyObject *py_crc64nvme_combine(PyObject *self, PyObject *args)
{
    (void)self;
    return run_combine(args, "OOO:crc64nvme_combine", x2n_crc64, CRC64NVME_POLY_REFL, 64);
}

/* Tests only: run a lower CRC-64 kernel so every path is checked on one CPU. */
static PyObject *py_use_kernel(PyObject *self, PyObject *arg)
{
    (void)self;
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL)
        return NULL;
    if (rs3gw_crc64nvme_use_kernel(name) == 0)
        Py_RETURN_NONE;
    PyErr_Format(PyExc_ValueError, "kernel %R is not available on this CPU", arg);
    return NULL;
}

static PyObject *py_kernels(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    int best = rs3gw_crc64nvme_kernel_best();
    PyObject *t = PyTuple_New(best + 1);
    if (t == NULL)
        return NULL;
    for (int k = RS3GW_CRC64_KERNEL_TABLE; k <= best; k++) {
        PyObject *s = PyUnicode_FromString(rs3gw_crc64nvme_kernel_name(k));
        if (s == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, k, s);
    }
    return t;
}

static PyMethodDef crc_methods[] = {
    {"crc32", (PyCFunction)(void (*)(void))py_crc32, METH_VARARGS | METH_KEYWORDS,
     "crc32(data, crc=0) -> int\n\nCRC-32 as zlib.crc32; continues from crc."},
    {"crc32c", (PyCFunction)(void (*)(void))py_crc32c, METH_VARARGS | METH_KEYWORDS,
     "crc32c(data, crc=0) -> int\n\nCRC-32C (Castagnoli); continues from crc."},
    {"crc64nvme", (PyCFunction)(void (*)(void))py_crc64nvme, METH_VARARGS | METH_KEYWORDS,
     "crc64nvme(data, crc=0) -> int\n\nCRC-64/NVME; continues from crc."},
    {"crc32_combine", py_crc32_combine, METH_VARARGS,
     "crc32_combine(crc1, crc2, len2) -> int\n\nCRC-32 of A+B from crc(A), crc(B), len(B)."},
    {"crc32c_combine", py_crc32c_combine, METH_VARARGS,
     "crc32c_combine(crc1, crc2, len2) -> int"},
    {"crc64nvme_combine", py_crc64nvme_combine, METH_VARARGS,
     "crc64nvme_combine(crc1, crc2, len2) -> int"},
    {"_use_kernel", py_use_kernel, METH_O,
     "_use_kernel(name) -> None\n\nTests only: pick the CRC-64 kernel (one of _kernels())."},
    {"_kernels", py_kernels, METH_NOARGS,
     "_kernels() -> tuple[str, ...]\n\nCRC-64 kernels this CPU can run, best last."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef crc_module = {
    PyModuleDef_HEAD_INIT,
    "rs3gw._core.crc",
    "CRC-32, CRC-32C and CRC-64/NVME over buffers, GIL released on large inputs.",
    -1,
    crc_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_crc(void)
{
    rs3gw_crc64nvme_init();
    x2n_init(x2n_crc32, CRC32_POLY_REFL, 32);
    x2n_init(x2n_crc32c, CRC32C_POLY_REFL, 32);
    x2n_init(x2n_crc64, CRC64NVME_POLY_REFL, 64);
    int best = rs3gw_crc64nvme_kernel_best();
    char backend[32];
    snprintf(backend, sizeof backend, "isa-l+%s",
             best == RS3GW_CRC64_KERNEL_TABLE ? "c" : rs3gw_crc64nvme_kernel_name(best));
    PyObject *m = PyModule_Create(&crc_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddStringConstant(m, "backend", backend) < 0 ||
        PyModule_AddIntConstant(m, "GIL_RELEASE_MIN_BYTES", GIL_RELEASE_MIN_BYTES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
