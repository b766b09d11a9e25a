/*
 * Fuzz target: the varlink framing of proto/varlink.c, what seedd reads from
 * any local client. The bytes go to one vl_reader whole and to another in
 * pieces whose sizes derive from the data; both must hand out the same
 * messages and keep the same unfinished tail. Every object decoded must come
 * back equal through vl_encode and a fresh reader.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "varlink.h"

struct result {
	int rc;      /* 1, -EBADMSG or -EMSGSIZE */
	json_t *obj; /* when rc == 1 */
};

struct results {
	struct result *v;
	size_t n, cap;
	bool overflow; /* a -EMSGSIZE ended the read */
};

static void
results_add(struct results *rs, int rc, json_t *obj)
{
	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? rs->cap * 2 : 16;
		rs->v = realloc(rs->v, rs->cap * sizeof(*rs->v));
		fuzz_check(rs->v != NULL);
	}
	rs->v[rs->n++] = (struct result){rc, obj};
}

static void
results_free(struct results *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		json_decref(rs->v[i].obj);
	free(rs->v);
}

/* Take every complete message, as a connection would until it gives up. */
static void
drain(struct vl_reader *r, struct results *rs)
{
	json_t *obj;
	int k;

	while (!rs->overflow) {
		obj = NULL;
		k = vl_reader_next(r, &obj);
		fuzz_check(k == 1 || k == 0 || k == -EBADMSG || k == -EMSGSIZE);
		fuzz_check((k == 1) == (obj != NULL));
		if (k == 0)
			break;
		fuzz_check(k != 1 || json_is_object(obj));
		results_add(rs, k, obj);
		rs->overflow = k == -EMSGSIZE;
	}
}

static void
feed(struct vl_reader *r, struct results *rs, const uint8_t *data, size_t len)
{
	int k = vl_reader_feed(r, data, len);

	fuzz_check(k == 0 || k == -EMSGSIZE);
	if (k < 0)
		rs->overflow = true;
	else
		drain(r, rs);
}

/* FNV-1a: the piece sizes follow from the data, so a crash reproduces. */
static uint64_t
hash(const uint8_t *data, size_t size)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 0x100000001b3ULL;
	return h | 1;
}

static void
feed_in_pieces(struct vl_reader *r, struct results *rs, const uint8_t *data, size_t size)
{
	uint64_t h = hash(data, size);
	size_t off = 0, n;

	while (off < size && !rs->overflow) {
		h ^= h << 13;
		h ^= h >> 7;
		h ^= h << 17;
		n = h % 8 == 0 ? (size_t)(h >> 8) % 4096 : (size_t)(h >> 8) % 16;
		if (n > size - off)
			n = size - off;
		feed(r, rs, data + off, n); /* n may be 0: a no-op feed */
		off += n;
	}
}

/* Encode obj, decode it again: the same object, and the same bytes again. */
static void
round_trip(const json_t *obj)
{
	struct vl_reader r;
	char *buf = NULL, *buf2 = NULL;
	size_t len, len2;
	json_t *back = NULL;

	if (vl_encode(obj, &buf, &len) == -EMSGSIZE)
		return;
	fuzz_check(len >= 3 && buf[len - 1] == '\0' && memchr(buf, '\0', len - 1) == NULL);
	vl_reader_init(&r);
	fuzz_check(vl_reader_feed(&r, buf, len) == 0);
	fuzz_check(vl_reader_next(&r, &back) == 1);
	fuzz_check(json_equal(obj, back));
	fuzz_check(vl_reader_next(&r, &back) == 0 && r.len == 0);
	fuzz_check(vl_encode(back, &buf2, &len2) == 0);
	fuzz_check(len2 == len && memcmp(buf, buf2, len) == 0);
	vl_reader_done(&r);
	json_decref(back);
	free(buf);
	free(buf2);
}

static void
check_same(const struct results *a, const struct results *b)
{
	fuzz_check(a->n == b->n);
	for (size_t i = 0; i < a->n; i++) {
		fuzz_check(a->v[i].rc == b->v[i].rc);
		fuzz_check(a->v[i].rc != 1 || json_equal(a->v[i].obj, b->v[i].obj));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vl_reader whole, pieces;
	struct results rw = {0}, rp = {0};
	const uint8_t *nul = size > 0 ? memrchr(data, '\0', size) : NULL;
	size_t tail = nul != NULL ? size - (size_t)(nul - data) - 1 : size;

	vl_reader_init(&whole);
	vl_reader_init(&pieces);
	feed(&whole, &rw, data, size);
	feed_in_pieces(&pieces, &rp, data, size);
	if (!rw.overflow && !rp.overflow) {
		check_same(&rw, &rp);
		fuzz_check(whole.len == tail && pieces.len == tail);
	}
	for (size_t i = 0; i < rw.n; i++)
		if (rw.v[i].rc == 1)
			round_trip(rw.v[i].obj);
	results_free(&rw);
	results_free(&rp);
	vl_reader_done(&whole);
	vl_reader_done(&pieces);
	return 0;
}
