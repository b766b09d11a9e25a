/*
 * MD5 of up to eight buffers of the same length at once: the eight MD5
 * computations run side by side in the lanes of SIMD registers (AVX2 where
 * the CPU has it, else the compiler's generic vector code), which takes the
 * block MD5s of a big file at several times the speed of one MD5 stream.
 * The result is the same as MD5() of each buffer (checked against OpenSSL by
 * tests/unit/test-md5x8.c).
 */
#ifndef SEEDD_MD5X8_H
#define SEEDD_MD5X8_H

#include <stdbool.h>
#include <stddef.h>

#define MD5X8_LANES 8

/* out[i] = MD5(bufs[i][0, len)) for i < n; 1 <= n <= MD5X8_LANES. */
void md5x8(const unsigned char *const bufs[], size_t n, size_t len, unsigned char out[][16]);

/* "avx2" or "generic": the code md5x8() runs on this CPU. */
const char *md5x8_impl(void);

/* For tests: run the generic code even where AVX2 is there. Not thread-safe. */
void md5x8_force_generic(bool on);

#endif
