/*
 * md5x8.c: multi-buffer MD5 against OpenSSL's MD5, on the AVX2 code (where
 * the CPU has it) and the generic code, for every lane count and for lengths
 * around the 64-byte block and padding boundaries, and the 4 MiB block.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "md5x8.h"
#include "proto/util.h"

#define MAX_LEN ((size_t)4 << 20)

static void
md5_ref(const unsigned char *buf, size_t len, unsigned char out[16])
{
	check(EVP_Digest(buf, len, out, NULL, EVP_md5(), NULL) == 1);
}

/* Every lane count, with each lane's buffer at a different offset of data (odd alignments). */
static void
check_len(const unsigned char *data, size_t len)
{
	const unsigned char *bufs[MD5X8_LANES];
	unsigned char out[MD5X8_LANES][16], ref[16];

	for (size_t l = 0; l < MD5X8_LANES; l++)
		bufs[l] = data + l * 7;
	for (size_t n = 1; n <= MD5X8_LANES; n++) {
		memset(out, 0, sizeof(out));
		md5x8(bufs, n, len, out);
		for (size_t l = 0; l < n; l++) {
			md5_ref(bufs[l], len, ref);
			if (memcmp(ref, out[l], 16) != 0)
				fprintf(stderr, "%s: len %zu, %zu lanes, lane %zu differs\n",
				        md5x8_impl(), len, n, l);
			check(memcmp(ref, out[l], 16) == 0);
		}
		/* Lanes past n are not written. */
		for (size_t l = n; l < MD5X8_LANES; l++)
			for (size_t i = 0; i < 16; i++)
				check(out[l][i] == 0);
	}
}

static void
test_lengths(const unsigned char *data)
{
	static const size_t lens[] = {0,   1,   3,   55,  56,   57,   63,   64,         65,     119,
	                              120, 127, 128, 129, 1000, 4095, 4096, 65536 + 13, MAX_LEN};

	for (size_t i = 0; i < ELEMENTSOF(lens); i++)
		check_len(data, lens[i]);
}

/* The known answers of RFC 1321, appendix A.5, in all eight lanes. */
static void
test_rfc1321(void)
{
	static const struct {
		const char *in, *md5;
	} cases[] = {
	    {"", "d41d8cd98f00b204e9800998ecf8427e"},
	    {"abc", "900150983cd24fb0d6963f7d28e17f72"},
	    {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
	    {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
	     "57edf4a22be3c955ac49da2e2107b67a"},
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		const unsigned char *bufs[MD5X8_LANES];
		unsigned char out[MD5X8_LANES][16];
		char hex[33];

		for (size_t l = 0; l < MD5X8_LANES; l++)
			bufs[l] = (const unsigned char *)cases[i].in;
		md5x8(bufs, MD5X8_LANES, strlen(cases[i].in), out);
		for (size_t l = 0; l < MD5X8_LANES; l++) {
			for (size_t b = 0; b < 16; b++)
				snprintf(hex + 2 * b, 3, "%02x", out[l][b]);
			check_str(hex, cases[i].md5);
		}
	}
}

int
main(void)
{
	unsigned char *data = malloc(MAX_LEN + MD5X8_LANES * 7);

	check(data != NULL);
	srand(20261126);
	for (size_t i = 0; i < MAX_LEN + MD5X8_LANES * 7; i++)
		data[i] = (unsigned char)rand();
	printf("# md5x8 runs the %s code here\n", md5x8_impl());
	test_rfc1321();
	test_lengths(data);
	md5x8_force_generic(true);
	check_str(md5x8_impl(), "generic");
	test_rfc1321();
	test_lengths(data);
	md5x8_force_generic(false);
	free(data);
	return 0;
}
