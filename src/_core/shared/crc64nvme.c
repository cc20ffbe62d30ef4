/*
 * CRC-64/NVME kernels shared by rs3gw._core.crc and rs3gw._core.hashing.
 *
 * ISA-L 2.30 has no CRC-64/NVME, so this one is ours: a PCLMULQDQ fold
 * (x86-64, chosen at run time; AVX-512 VPCLMULQDQ when present) over a
 * slice-by-8 table path. Compiled into each module that needs it; with
 * -fvisibility=hidden every copy keeps its own tables and kernel choice.
 * Nothing here touches Python, so all of it may run with the GIL released.
 */
#include "crc64nvme.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RS3GW_HAVE_CLMUL 1
#include <immintrin.h>
#endif

#define CRC64NVME_POLY_REFL RS3GW_CRC64NVME_POLY_REFL

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

/* x^n mod P in reflected form (bit i holds the coefficient of x^(63-i)),
 * n small: used once at init for the fold constants. */
__attribute__((unused)) static uint64_t xpow_refl(unsigned n, uint64_t poly, int width)
{
    uint64_t v = (uint64_t)1 << (width - 1);
    while (n--)
        v = (v & 1) ? (v >> 1) ^ poly : v >> 1;
    return v;
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
static const char *const kernel_names[] = {"table", "pclmul", "vpclmul512"};
static int kernel_best = RS3GW_CRC64_KERNEL_TABLE; /* what the CPU supports */
static int kernel_used = RS3GW_CRC64_KERNEL_TABLE; /* what we run; only lowered by tests */

#ifdef RS3GW_HAVE_CLMUL
/* Fold constants (lo = x^(d-1), hi = x^(d+63)) for d = 128 * (i + 1) bits. */
#define FOLD_STEPS 16
static uint64_t fold_lo[FOLD_STEPS], fold_hi[FOLD_STEPS];

static void clmul_init(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1"))
        kernel_best = RS3GW_CRC64_KERNEL_PCLMUL;
    if (kernel_best == RS3GW_CRC64_KERNEL_PCLMUL && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("vpclmulqdq"))
        kernel_best = RS3GW_CRC64_KERNEL_VPCLMUL;
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

uint64_t rs3gw_crc64nvme_raw(uint64_t crc, const unsigned char *p, size_t n)
{
#ifdef RS3GW_HAVE_CLMUL
    if (kernel_used == RS3GW_CRC64_KERNEL_VPCLMUL && n >= 256)
        return crc64_vpclmul(crc, p, n);
    if (kernel_used >= RS3GW_CRC64_KERNEL_PCLMUL && n >= 64)
        return crc64_pclmul(crc, p, n);
#endif
    return crc64_slice8(crc, p, n);
}

void rs3gw_crc64nvme_init(void)
{
    crc64_tables_init();
    clmul_init();
    kernel_used = kernel_best;
}

int rs3gw_crc64nvme_kernel_best(void)
{
    return kernel_best;
}

const char *rs3gw_crc64nvme_kernel_name(int kernel)
{
    return kernel_names[kernel];
}

int rs3gw_crc64nvme_use_kernel(const char *name)
{
    for (int k = RS3GW_CRC64_KERNEL_TABLE; k <= kernel_best; k++) {
        if (strcmp(name, kernel_names[k]) == 0) {
            kernel_used = k;
            return 0;
        }
    }
    return -1;
}
