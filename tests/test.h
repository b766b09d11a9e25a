/*
 * The whole unit-test protocol: a failed check prints file:line and the
 * expression and aborts; a test program that returns 0 passed; 77 is a skip.
 */
#ifndef SEEDD_TEST_H
#define SEEDD_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define check(expr)                                                                                \
	do {                                                                                       \
		if (!(expr)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define check_int(a, b)                                                                            \
	do {                                                                                       \
		long long _a = (long long)(a), _b = (long long)(b);                                \
		if (_a != _b) {                                                                    \
			fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__,         \
				__LINE__, #a, #b, _a, _b);                                         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define check_str(a, b)                                                                            \
	do {                                                                                       \
		const char *_a = (a), *_b = (b);                                                   \
		if (_a == NULL || _b == NULL || strcmp(_a, _b) != 0) {                             \
			fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__,     \
				__LINE__, #a, #b, _a ? _a : "(null)", _b ? _b : "(null)");         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define TEST_SKIP 77

#endif
