/*
 * Shared by the fuzz targets and driver.c: the libFuzzer entry point and an
 * invariant check that aborts (assert() is compiled out in release builds).
 */
#ifndef SEEDD_FUZZ_H
#define SEEDD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Run one input; always returns 0. A broken invariant aborts. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fuzz_check(expr)                                                                           \
	do {                                                                                       \
		if (!(expr)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__,       \
			        #expr);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
