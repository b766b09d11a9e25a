/*
 * Multi-buffer MD5 (md5x8.h): RFC 1321's MD5 with each 32-bit word of state a
 * vector of eight, one lane per buffer. All buffers have the same length, so
 * every lane takes the same number of 64-byte blocks and the same padding.
 * Written with GCC/clang vector extensions; md5x8_run() is compiled twice,
 * for AVX2 and for the baseline ISA, and picked at run time.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "md5x8.h"

typedef uint32_t v8u __attribute__((vector_size(32)));

#define INLINE static inline __attribute__((always_inline))

INLINE uint32_t
le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#define ROTL(x, s) (((x) << (s)) | ((x) >> (32 - (s))))
#define F(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))
#define G(b, c, d) ((c) ^ ((d) & ((b) ^ (c))))
#define H(b, c, d) ((b) ^ (c) ^ (d))
#define I(b, c, d) ((c) ^ ((b) | ~(d)))
#define STEP(f, a, b, c, d, k, s, t)                                                               \
	do {                                                                                       \
		(a) += f((b), (c), (d)) + m[k] + (t);                                              \
		(a) = ROTL((a), (s)) + (b);                                                        \
	} while (0)

/* m[w] = word w of the 64-byte block at offset off of each lane, lane by lane. */
INLINE void
load_generic(v8u m[16], const unsigned char *const p[MD5X8_LANES], size_t off)
{
	for (int w = 0; w < 16; w++)
		for (int l = 0; l < MD5X8_LANES; l++)
			m[w][l] = le32(p[l] + off + 4 * (size_t)w);
}

/* One 64-byte block (words m) of each lane into st. */
INLINE void
md5x8_block(v8u st[4], const v8u m[16])
{
	v8u a = st[0], b = st[1], c = st[2], d = st[3];

	STEP(F, a, b, c, d, 0, 7, 0xd76aa478);
	STEP(F, d, a, b, c, 1, 12, 0xe8c7b756);
	STEP(F, c, d, a, b, 2, 17, 0x242070db);
	STEP(F, b, c, d, a, 3, 22, 0xc1bdceee);
	STEP(F, a, b, c, d, 4, 7, 0xf57c0faf);
	STEP(F, d, a, b, c, 5, 12, 0x4787c62a);
	STEP(F, c, d, a, b, 6, 17, 0xa8304613);
	STEP(F, b, c, d, a, 7, 22, 0xfd469501);
	STEP(F, a, b, c, d, 8, 7, 0x698098d8);
	STEP(F, d, a, b, c, 9, 12, 0x8b44f7af);
	STEP(F, c, d, a, b, 10, 17, 0xffff5bb1);
	STEP(F, b, c, d, a, 11, 22, 0x895cd7be);
	STEP(F, a, b, c, d, 12, 7, 0x6b901122);
	STEP(F, d, a, b, c, 13, 12, 0xfd987193);
	STEP(F, c, d, a, b, 14, 17, 0xa679438e);
	STEP(F, b, c, d, a, 15, 22, 0x49b40821);

	STEP(G, a, b, c, d, 1, 5, 0xf61e2562);
	STEP(G, d, a, b, c, 6, 9, 0xc040b340);
	STEP(G, c, d, a, b, 11, 14, 0x265e5a51);
	STEP(G, b, c, d, a, 0, 20, 0xe9b6c7aa);
	STEP(G, a, b, c, d, 5, 5, 0xd62f105d);
	STEP(G, d, a, b, c, 10, 9, 0x02441453);
	STEP(G, c, d, a, b, 15, 14, 0xd8a1e681);
	STEP(G, b, c, d, a, 4, 20, 0xe7d3fbc8);
	STEP(G, a, b, c, d, 9, 5, 0x21e1cde6);
	STEP(G, d, a, b, c, 14, 9, 0xc33707d6);
	STEP(G, c, d, a, b, 3, 14, 0xf4d50d87);
	STEP(G, b, c, d, a, 8, 20, 0x455a14ed);
	STEP(G, a, b, c, d, 13, 5, 0xa9e3e905);
	STEP(G, d, a, b, c, 2, 9, 0xfcefa3f8);
	STEP(G, c, d, a, b, 7, 14, 0x676f02d9);
	STEP(G, b, c, d, a, 12, 20, 0x8d2a4c8a);

	STEP(H, a, b, c, d, 5, 4, 0xfffa3942);
	STEP(H, d, a, b, c, 8, 11, 0x8771f681);
	STEP(H, c, d, a, b, 11, 16, 0x6d9d6122);
	STEP(H, b, c, d, a, 14, 23, 0xfde5380c);
	STEP(H, a, b, c, d, 1, 4, 0xa4beea44);
	STEP(H, d, a, b, c, 4, 11, 0x4bdecfa9);
	STEP(H, c, d, a, b, 7, 16, 0xf6bb4b60);
	STEP(H, b, c, d, a, 10, 23, 0xbebfbc70);
	STEP(H, a, b, c, d, 13, 4, 0x289b7ec6);
	STEP(H, d, a, b, c, 0, 11, 0xeaa127fa);
	STEP(H, c, d, a, b, 3, 16, 0xd4ef3085);
	STEP(H, b, c, d, a, 6, 23, 0x04881d05);
	STEP(H, a, b, c, d, 9, 4, 0xd9d4d039);
	STEP(H, d, a, b, c, 12, 11, 0xe6db99e5);
	STEP(H, c, d, a, b, 15, 16, 0x1fa27cf8);
	STEP(H, b, c, d, a, 2, 23, 0xc4ac5665);

	STEP(I, a, b, c, d, 0, 6, 0xf4292244);
	STEP(I, d, a, b, c, 7, 10, 0x432aff97);
	STEP(I, c, d, a, b, 14, 15, 0xab9423a7);
	STEP(I, b, c, d, a, 5, 21, 0xfc93a039);
	STEP(I, a, b, c, d, 12, 6, 0x655b59c3);
	STEP(I, d, a, b, c, 3, 10, 0x8f0ccc92);
	STEP(I, c, d, a, b, 10, 15, 0xffeff47d);
	STEP(I, b, c, d, a, 1, 21, 0x85845dd1);
	STEP(I, a, b, c, d, 8, 6, 0x6fa87e4f);
	STEP(I, d, a, b, c, 15, 10, 0xfe2ce6e0);
	STEP(I, c, d, a, b, 6, 15, 0xa3014314);
	STEP(I, b, c, d, a, 13, 21, 0x4e0811a1);
	STEP(I, a, b, c, d, 4, 6, 0xf7537e82);
	STEP(I, d, a, b, c, 11, 10, 0xbd3af235);
	STEP(I, c, d, a, b, 2, 15, 0x2ad7d2bb);
	STEP(I, b, c, d, a, 9, 21, 0xeb86d391);

	st[0] += a;
	st[1] += b;
	st[2] += c;
	st[3] += d;
}

/*
 * The whole computation, state and output through memory (no vector in the
 * ABI); load is load_generic or load_avx2.
 */
#define MD5X8_BODY(load, p, len, out)                                                              \
	do {                                                                                       \
		v8u st_[4], m_[16];                                                                \
		const unsigned char *pp_[MD5X8_LANES];                                             \
		unsigned char pad_[MD5X8_LANES][128];                                              \
		size_t full_ = (len) / 64 * 64, padlen_;                                           \
                                                                                                   \
		md5x8_init(st_);                                                                   \
		for (size_t off_ = 0; off_ < full_; off_ += 64) {                                  \
			load(m_, (p), off_);                                                       \
			md5x8_block(st_, m_);                                                      \
		}                                                                                  \
		padlen_ = md5x8_pad((p), (len), pad_, pp_);                                        \
		for (size_t off_ = 0; off_ < padlen_; off_ += 64) {                                \
			load(m_, pp_, off_);                                                       \
			md5x8_block(st_, m_);                                                      \
		}                                                                                  \
		md5x8_out(st_, (out));                                                             \
	} while (0)

INLINE void
md5x8_init(v8u st[4])
{
	static const v8u init[4] = {
	    {0x67452301, 0x67452301, 0x67452301, 0x67452301, 0x67452301, 0x67452301, 0x67452301,
	     0x67452301},
	    {0xefcdab89, 0xefcdab89, 0xefcdab89, 0xefcdab89, 0xefcdab89, 0xefcdab89, 0xefcdab89,
	     0xefcdab89},
	    {0x98badcfe, 0x98badcfe, 0x98badcfe, 0x98badcfe, 0x98badcfe, 0x98badcfe, 0x98badcfe,
	     0x98badcfe},
	    {0x10325476, 0x10325476, 0x10325476, 0x10325476, 0x10325476, 0x10325476, 0x10325476,
	     0x10325476},
	};
	memcpy(st, init, sizeof(init));
}

/*
 * Each lane's last one or two blocks: the rest of its buffer, 0x80, zeros,
 * the length in bits (little-endian). Returns their length.
 */
static size_t
md5x8_pad(const unsigned char *const p[MD5X8_LANES], size_t len,
          unsigned char pad[MD5X8_LANES][128], const unsigned char *pp[MD5X8_LANES])
{
	size_t full = len / 64 * 64, rest = len - full, padlen = rest < 56 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;

	for (int l = 0; l < MD5X8_LANES; l++) {
		memset(pad[l], 0, sizeof(pad[l]));
		memcpy(pad[l], p[l] + full, rest);
		pad[l][rest] = 0x80;
		for (int i = 0; i < 8; i++)
			pad[l][padlen - 8 + (size_t)i] = (unsigned char)(bits >> (8 * i));
		pp[l] = pad[l];
	}
	return padlen;
}

INLINE void
md5x8_out(const v8u st[4], unsigned char out[MD5X8_LANES][16])
{
	for (int l = 0; l < MD5X8_LANES; l++)
		for (int w = 0; w < 4; w++)
			for (int i = 0; i < 4; i++)
				out[l][4 * w + i] = (unsigned char)(st[w][l] >> (8 * i));
}

#if defined(__x86_64__) || defined(__i386__)
/* load_generic() with AVX2: two 8x8 transposes of 32-bit words instead of 128 inserts. */
__attribute__((target("avx2"))) INLINE void
load_avx2(v8u m[16], const unsigned char *const p[MD5X8_LANES], size_t off)
{
	for (int h = 0; h < 2; h++) {
		__m256i r[8], t[8], u[8];

		for (int l = 0; l < 8; l++)
			r[l] = _mm256_loadu_si256(
			    (const __m256i *)(const void *)(p[l] + off + 32 * h));
		for (int i = 0; i < 4; i++) {
			t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
			t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
		}
		for (int i = 0; i < 2; i++) {
			u[4 * i] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
			u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
			u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
			u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
		}
		for (int w = 0; w < 4; w++) {
			m[8 * h + w] = (v8u)_mm256_permute2x128_si256(u[w], u[w + 4], 0x20);
			m[8 * h + w + 4] = (v8u)_mm256_permute2x128_si256(u[w], u[w + 4], 0x31);
		}
	}
}

__attribute__((target("avx2"))) static void
md5x8_avx2(const unsigned char *const p[MD5X8_LANES], size_t len,
           unsigned char out[MD5X8_LANES][16])
{
	MD5X8_BODY(load_avx2, p, len, out);
}

static bool force_generic;

void
md5x8_force_generic(bool on)
{
	force_generic = on;
}

static int
have_avx2(void)
{
	static int avx2 = -1;

	if (force_generic)
		return 0;
	if (avx2 < 0) {
		__builtin_cpu_init();
		avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
	}
	return avx2;
}
#else
void
md5x8_force_generic(bool on)
{
	(void)on;
}

static int
have_avx2(void)
{
	return 0;
}
#define md5x8_avx2 md5x8_generic
#endif

static void
md5x8_generic(const unsigned char *const p[MD5X8_LANES], size_t len,
              unsigned char out[MD5X8_LANES][16])
{
	MD5X8_BODY(load_generic, p, len, out);
}

void
md5x8(const unsigned char *const bufs[], size_t n, size_t len, unsigned char out[][16])
{
	const unsigned char *p[MD5X8_LANES];
	unsigned char res[MD5X8_LANES][16];

	if (n == 0 || n > MD5X8_LANES)
		return;
	/* Idle lanes hash the first buffer again; their results are dropped. */
	for (size_t l = 0; l < MD5X8_LANES; l++)
		p[l] = bufs[l < n ? l : 0];
	if (have_avx2())
		md5x8_avx2(p, len, res);
	else
		md5x8_generic(p, len, res);
	memcpy(out, res, n * 16);
}

const char *
md5x8_impl(void)
{
	return have_avx2() ? "avx2" : "generic";
}
