/*
 * CRC-64/NVME (the S3 x-amz-checksum-crc64nvme), shared by the compiled
 * modules that need it. Pure C: no Python, safe without the GIL.
 */
#ifndef RS3GW_CRC64NVME_H
#define RS3GW_CRC64NVME_H

#include <stddef.h>
#include <stdint.h>

#define RS3GW_CRC64NVME_POLY_REFL 0x9A6C9329AC4BC9B5ULL

/* Kernels, slowest first; the best one the CPU runs is picked at init. */
enum { RS3GW_CRC64_KERNEL_TABLE = 0, RS3GW_CRC64_KERNEL_PCLMUL = 1, RS3GW_CRC64_KERNEL_VPCLMUL = 2 };

/* Builds the tables and picks the kernel. Call once from module init. */
void rs3gw_crc64nvme_init(void);

/* Raw register in, raw register out (no init/xorout): a stream starts at
 * ~0 and its CRC is the final register inverted. */
uint64_t rs3gw_crc64nvme_raw(uint64_t reg, const unsigned char *p, size_t n);

/* Finalized form (S3 and awscrt values): f(b, f(a)) == f(a + b). */
static inline uint64_t rs3gw_crc64nvme(uint64_t crc, const unsigned char *p, size_t n)
{
    return ~rs3gw_crc64nvme_raw(~crc, p, n);
}

int rs3gw_crc64nvme_kernel_best(void);
const char *rs3gw_crc64nvme_kernel_name(int kernel);
/* Tests only: run a lower kernel (by name); -1 if this CPU cannot run it. */
int rs3gw_crc64nvme_use_kernel(const char *name);

#endif
