/*
 * rs3gw._core.crc: CRC-32 (zlib/gzip), CRC-32C (Castagnoli) and CRC-64/NVME.
 *
 * CRC-32 and CRC-32C come from ISA-L (hand-written SIMD with its own CPU
 * dispatch). ISA-L 2.30 has no CRC-64/NVME, so that one is ours: a
 * PCLMULQDQ fold (x86-64, chosen at run time) over a slice-by-8 table path.
 *
 * All public values are in the finalized form S3 and zlib use (init and
 * xorout all ones already applied), so f(b, f(a)) == f(a + b).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include <isa-l/crc.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RS3GW_HAVE_CLMUL 1
#include <immintrin.h>
#endif

/* Below this many bytes the GIL round trip costs more than the CRC itself. */
#define GIL_RELEASE_MIN_BYTES 4096

/* crc32_iscsi takes an int length; feed it at most this much per call. */
#define ISCSI_MAX_CHUNK ((size_t)1 << 30)

#define CRC64NVME_POLY_REFL 0x9A6C9329AC4BC9B5ULL
#define CRC32_POLY_REFL 0xEDB88320ULL
#define CRC32C_POLY_REFL 0x82F63B78ULL

/* ---------------------------------------------------------------------- */
/* CRC-64/NVME, table path                                                 */

static uint64_t crc64_table[8][256];

static void crc64_tables_init(void)
{
    for (unsigned i = 0; i < 256; i++) {
        uint64_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC64NVME_POLY_REFL : c >> 1;
        crc64_table[0][i] = c;
    }
    for (unsigned i = 0; i < 256; i++) {
        uint64_t c = crc64_table[0][i];
        for (int t = 1; t < 8; t++) {
            c = crc64_table[0][c & 0xff] ^ (c >> 8);
            crc64_table[t][i] = c;
        }
    }
}

static inline uint64_t load_le64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* `crc` is the raw register (no inversion), as is the result. */
static uint64_t crc64_slice8(uint64_t crc, const unsigned char *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        crc = crc64_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint64_t v = crc ^ load_le64(p);
        crc = crc64_table[7][v & 0xff] ^ crc64_table[6][(v >> 8) & 0xff] ^
              crc64_table[5][(v >> 16) & 0xff] ^ crc64_table[4][(v >> 24) & 0xff] ^
              crc64_table[3][(v >> 32) & 0xff] ^ crc64_table[2][(v >> 40) & 0xff] ^
              crc64_table[1][(v >> 48) & 0xff] ^ crc64_table[0][v >> 56];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = crc64_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

/* ---------------------------------------------------------------------- */
/* Reflected polynomial arithmetic mod P (used for fold constants and      */
/* combine). A w-bit reflected value holds the coefficient of x^(w-1-i)    */
/* in bit i, so "multiply by x" is a right shift plus conditional reduce.  */

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

/* x^n mod P, n small (used once at init). */
__attribute__((unused)) static uint64_t xpow_refl(unsigned n, uint64_t poly, int width)
{
    uint64_t v = (uint64_t)1 << (width - 1);
    while (n--)
        v = (v & 1) ? (v >> 1) ^ poly : v >> 1;
    return v;
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
/* CRC-64/NVME, carry-less multiply fold                                   */
/*
 * A 16-byte block loaded little-endian is a 128-bit reflected polynomial
 * X = H*x^64 + L with H in the low qword and L in the high qword.
 * clmul of two 64-bit reflected values yields x*A*B in 128-bit reflected
 * form, hence constants are x^(d-1) and x^(d+63) mod P to move a block d
 * bits forward. After folding, the 128-bit remainder is congruent to the
 * whole prefix, so running the table CRC (register 0) over its 16 bytes
 * finishes the job without a Barrett step.
 */
enum { KERNEL_TABLE = 0, KERNEL_PCLMUL = 1, KERNEL_VPCLMUL = 2 };
static const char *const kernel_names[] = {"table", "pclmul", "vpclmul512"};
static int kernel_best = KERNEL_TABLE; /* what the CPU supports */
static int kernel_used = KERNEL_TABLE; /* what we run; only lowered by tests */

#ifdef RS3GW_HAVE_CLMUL
/* Fold constants (lo = x^(d-1), hi = x^(d+63)) for d = 128 * (i + 1) bits. */
#define FOLD_STEPS 16
static uint64_t fold_lo[FOLD_STEPS], fold_hi[FOLD_STEPS];

static void clmul_init(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1"))
        kernel_best = KERNEL_PCLMUL;
    if (kernel_best == KERNEL_PCLMUL && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("vpclmulqdq"))
        kernel_best = KERNEL_VPCLMUL;
    for (unsigned i = 0; i < FOLD_STEPS; i++) {
        fold_lo[i] = xpow_refl(128 * (i + 1) - 1, CRC64NVME_POLY_REFL, 64);
        fold_hi[i] = xpow_refl(128 * (i + 1) + 63, CRC64NVME_POLY_REFL, 64);
    }
}

#define FOLD_K128(bits) \
    _mm_set_epi64x((long long)fold_hi[(bits) / 128 - 1], (long long)fold_lo[(bits) / 128 - 1])

__attribute__((target("pclmul,sse4.1")))
static inline __m128i fold(__m128i x, __m128i k)
{
    /* k holds (lo-constant, hi-constant) as (qword0, qword1). */
    __m128i h = _mm_clmulepi64_si128(x, k, 0x10); /* x.qword0 (H) * k.qword1 */
    __m128i l = _mm_clmulepi64_si128(x, k, 0x01); /* x.qword1 (L) * k.qword0 */
    return _mm_xor_si128(h, l);
}

/* Four 16-byte lanes x0..x3 (consecutive) plus the rest of the buffer. */
__attribute__((target("pclmul,sse4.1")))
static uint64_t clmul_finish(__m128i x0, __m128i x1, __m128i x2, __m128i x3,
                             const unsigned char *p, size_t n)
{
    const __m128i k128 = FOLD_K128(128);
    __m128i x = _mm_xor_si128(_mm_xor_si128(fold(x0, FOLD_K128(384)), fold(x1, FOLD_K128(256))),
                              _mm_xor_si128(fold(x2, k128), x3));
    while (n >= 16) {
        x = _mm_xor_si128(fold(x, k128), _mm_loadu_si128((const __m128i *)p));
        p += 16;
        n -= 16;
    }
    unsigned char rem[16];
    _mm_storeu_si128((__m128i *)rem, x);
    return crc64_slice8(crc64_slice8(0, rem, 16), p, n);
}

/* Requires n >= 64. Register in, register out. */
__attribute__((target("pclmul,sse4.1")))
static uint64_t crc64_pclmul(uint64_t crc, const unsigned char *p, size_t n)
{
    const __m128i k512 = FOLD_K128(512);
    __m128i x0 = _mm_loadu_si128((const __m128i *)(p + 0));
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    /* The register is the running remainder: xor it into the first 8 bytes. */
    x0 = _mm_xor_si128(x0, _mm_cvtsi64_si128((long long)crc));
    p += 64;
    n -= 64;
    while (n >= 64) {
        x0 = _mm_xor_si128(fold(x0, k512), _mm_loadu_si128((const __m128i *)(p + 0)));
        x1 = _mm_xor_si128(fold(x1, k512), _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = _mm_xor_si128(fold(x2, k512), _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = _mm_xor_si128(fold(x3, k512), _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        n -= 64;
    }
    return clmul_finish(x0, x1, x2, x3, p, n);
}

#define VFOLD_TARGET "avx512f,vpclmulqdq,pclmul,sse4.1"

/* Same fold on four 128-bit lanes at once; k is one constant pair per lane. */
__attribute__((target(VFOLD_TARGET)))
static inline __m512i vfold_xor(__m512i z, __m512i k, __m512i data)
{
    __m512i h = _mm512_clmulepi64_epi128(z, k, 0x10);
    __m512i l = _mm512_clmulepi64_epi128(z, k, 0x01);
    return _mm512_ternarylogic_epi64(h, l, data, 0x96); /* h ^ l ^ data */
}

__attribute__((target(VFOLD_TARGET)))
static inline __m512i vconst(unsigned bits)
{
    return _mm512_broadcast_i32x4(FOLD_K128(bits));
}

/* Requires n >= 256: four 64-byte accumulators keep the multipliers busy. */
__attribute__((target(VFOLD_TARGET)))
static uint64_t crc64_vpclmul(uint64_t crc, const unsigned char *p, size_t n)
{
    const __m512i k2048 = vconst(2048), k512 = vconst(512);
    __m512i z0 = _mm512_loadu_si512((const void *)(p + 0));
    __m512i z1 = _mm512_loadu_si512((const void *)(p + 64));
    __m512i z2 = _mm512_loadu_si512((const void *)(p + 128));
    __m512i z3 = _mm512_loadu_si512((const void *)(p + 192));
    z0 = _mm512_xor_si512(z0, _mm512_zextsi128_si512(_mm_cvtsi64_si128((long long)crc)));
    p += 256;
    n -= 256;
    while (n >= 256) {
        z0 = vfold_xor(z0, k2048, _mm512_loadu_si512((const void *)(p + 0)));
        z1 = vfold_xor(z1, k2048, _mm512_loadu_si512((const void *)(p + 64)));
        z2 = vfold_xor(z2, k2048, _mm512_loadu_si512((const void *)(p + 128)));
        z3 = vfold_xor(z3, k2048, _mm512_loadu_si512((const void *)(p + 192)));
        p += 256;
        n -= 256;
    }
    __m512i z = vfold_xor(z0, vconst(1536), vfold_xor(z1, vconst(1024), vfold_xor(z2, k512, z3)));
    while (n >= 64) {
        z = vfold_xor(z, k512, _mm512_loadu_si512((const void *)p));
        p += 64;
        n -= 64;
    }
    return clmul_finish(_mm512_extracti32x4_epi32(z, 0), _mm512_extracti32x4_epi32(z, 1),
                        _mm512_extracti32x4_epi32(z, 2), _mm512_extracti32x4_epi32(z, 3), p, n);
}
#else
static void clmul_init(void) {}
#endif

static uint64_t crc64nvme_raw(uint64_t crc, const unsigned char *p, size_t n)
{
#ifdef RS3GW_HAVE_CLMUL
    if (kernel_used == KERNEL_VPCLMUL && n >= 256)
        return crc64_vpclmul(crc, p, n);
    if (kernel_used >= KERNEL_PCLMUL && n >= 64)
        return crc64_pclmul(crc, p, n);
#endif
    return crc64_slice8(crc, p, n);
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
    return ~crc64nvme_raw(~crc, p, n);
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
    for (int k = KERNEL_TABLE; k <= kernel_best; k++) {
        if (strcmp(name, kernel_names[k]) == 0) {
            kernel_used = k;
            Py_RETURN_NONE;
        }
    }
    PyErr_Format(PyExc_ValueError, "kernel %R is not available on this CPU", arg);
    return NULL;
}

static PyObject *py_kernels(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    PyObject *t = PyTuple_New(kernel_best + 1);
    if (t == NULL)
        return NULL;
    for (int k = KERNEL_TABLE; k <= kernel_best; k++) {
        PyObject *s = PyUnicode_FromString(kernel_names[k]);
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
    crc64_tables_init();
    x2n_init(x2n_crc32, CRC32_POLY_REFL, 32);
    x2n_init(x2n_crc32c, CRC32C_POLY_REFL, 32);
    x2n_init(x2n_crc64, CRC64NVME_POLY_REFL, 64);
    clmul_init();
    kernel_used = kernel_best;
    char backend[32];
    snprintf(backend, sizeof backend, "isa-l+%s",
             kernel_best == KERNEL_TABLE ? "c" : kernel_names[kernel_best]);
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
