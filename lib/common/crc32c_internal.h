/* crc32c_internal.h -- the hardware CRC32C kernel and its CPU check. */
#ifndef SFP_CRC32C_INTERNAL_H
#define SFP_CRC32C_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

int sfp_cpu_has_sse42(void);
uint32_t sfp_crc32c_sse42(uint32_t crc, const void *data, size_t n);
#endif
