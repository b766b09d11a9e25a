/*
 * proto/util.c: the UTF-8 check that guards every string seedd puts in a
 * reply or a log line, ISO 8601 formatting and the x* string allocators.
 */
#include <stdint.h>

#include <jansson.h>
#include <malloc.h>
#include <string.h>

#include "test.h"
#include "util.h"
#include "varlink.h"

struct utf8_case {
	const char *s;
	size_t len; /* 0: strlen(s) */
	bool valid;
};

static const struct utf8_case utf8_cases[] = {
	{"", 0, true},
	{"plain ASCII, with \t and \x7f", 0, true},
	{"caf\xc3\xa9", 0, true},                    /* U+00E9, 2 bytes */
	{"\xe2\x82\xac", 0, true},                   /* U+20AC, 3 bytes */
	{"\xf0\x9f\x98\x80", 0, true},               /* U+1F600, 4 bytes */
	{"\xc2\x80", 0, true},                       /* U+0080, smallest 2-byte */
	{"\xe0\xa0\x80", 0, true},                   /* U+0800, smallest 3-byte */
	{"\xf0\x90\x80\x80", 0, true},               /* U+10000, smallest 4-byte */
	{"\xef\xbf\xbf", 0, true},                   /* U+FFFF */
	{"\xf4\x8f\xbf\xbf", 0, true},               /* U+10FFFF, the last code point */
	{"\xed\x9f\xbf", 0, true},                   /* U+D7FF, just below the surrogates */
	{"\xee\x80\x80", 0, true},                   /* U+E000, just above them */
	{"a\0b", 3, true},                           /* NUL is a valid code point */
	{"\xc0\x80", 0, false},                      /* overlong NUL */
	{"\xc1\xbf", 0, false},                      /* overlong U+007F */
	{"\xe0\x80\xaf", 0, false},                  /* overlong '/' in 3 bytes */
	{"\xe0\x9f\xbf", 0, false},                  /* overlong U+07FF */
	{"\xf0\x80\x80\xaf", 0, false},              /* overlong '/' in 4 bytes */
	{"\xf0\x8f\xbf\xbf", 0, false},              /* overlong U+FFFF */
	{"\xed\xa0\x80", 0, false},                  /* U+D800, first surrogate */
	{"\xed\xbf\xbf", 0, false},                  /* U+DFFF, last surrogate */
	{"\xed\xa0\xbd\xed\xb8\x80", 0, false},      /* CESU-8 surrogate pair */
	{"\xf4\x90\x80\x80", 0, false},              /* U+110000 */
	{"\xf7\xbf\xbf\xbf", 0, false},              /* U+1FFFFF */
	{"\xf8\x88\x80\x80\x80", 0, false},          /* 5-byte form */
	{"\xfc\x84\x80\x80\x80\x80", 0, false},      /* 6-byte form */
	{"\xfe", 0, false},
	{"\xff", 0, false},
	{"\x80", 0, false},                          /* lone continuation byte */
	{"a\xbf", 0, false},
	{"\xc3", 0, false},                          /* truncated 2-byte */
	{"\xe2\x82", 0, false},                      /* truncated 3-byte */
	{"\xf0\x9f\x98", 0, false},                  /* truncated 4-byte */
	{"caf\xc3", 0, false},                       /* truncated at the end */
	{"\xc3(", 0, false},                         /* bad continuation */
	{"\xe2\x28\xa1", 0, false},
	{"\xf0\x9f\x28\x80", 0, false},
	{"\xe9", 0, false},                          /* Latin-1, not UTF-8 */
};

static void
test_utf8(void)
{
	for (size_t i = 0; i < ELEMENTSOF(utf8_cases); i++) {
		const struct utf8_case *c = &utf8_cases[i];
		size_t len = c->len ? c->len : strlen(c->s);

		if (utf8_valid(c->s, len) != c->valid) {
			fprintf(stderr, "utf8 case %zu: want %s\n", i,
				c->valid ? "valid" : "invalid");
			check(false);
		}
	}
	/* The length bounds the check: a valid prefix of a bad string is fine. */
	check(utf8_valid("ok\xff", 2));
	check(!utf8_valid("ok\xff", 3));
	/* A sequence cut by the length is truncated even if the bytes go on. */
	check(!utf8_valid("\xe2\x82\xac", 2));
}

static void
test_iso8601(void)
{
	static const struct {
		int64_t t;
		const char *s;
	} cases[] = {
		{0, "1970-01-01T00:00:00Z"},
		{951782400, "2000-02-29T00:00:00Z"},
		{1795650232, "2026-11-25T23:43:52Z"},
		{-1, "1969-12-31T23:59:59Z"},
		{4102444799, "2099-12-31T23:59:59Z"},
		{253402300799, "9999-12-31T23:59:59Z"},
	};
	char buf[32];

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		memset(buf, 'x', sizeof(buf));
		format_iso8601(cases[i].t, buf);
		check_str(buf, cases[i].s);
	}
	/* Out of range for struct tm: still a terminated string in the buffer. */
	memset(buf, 'x', sizeof(buf));
	format_iso8601(INT64_MAX, buf);
	check(memchr(buf, '\0', sizeof(buf)) != NULL);
}

static void
test_strings(void)
{
	_cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
	char big[5000];

	check_int(xasprintf(&a, "%s-%d-%05.1f", "job", 42, 2.5), 12);
	check_str(a, "job-42-002.5");
	check_int(xasprintf(&b, "%s", ""), 0);
	check_str(b, "");
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	c = xprintf("<%s>", big);
	check_int(strlen(c), sizeof(big) + 1);
	check(c[0] == '<' && c[sizeof(big)] == '>');
	d = xstrndup("seedd", 4);
	check_str(d, "seed");
	e = xstrdup("drive");
	check_str(e, "drive");
}

static void
test_alloc(void)
{
	_cleanup_free_ int *v = xcalloc(16, sizeof(int));
	_cleanup_free_ char *p = xmalloc(3);

	for (int i = 0; i < 16; i++)
		check_int(v[i], 0);
	v = xreallocarray(v, 1024, sizeof(int));
	v[1023] = 7;
	check_int(v[1023], 7);
	memcpy(p, "ab", 3);
	check_str(p, "ab");
}

static bool
all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		if (c[i] != 0)
			return false;
	return true;
}

/* Memory that held a secret is wiped before it is freed (issue 11). */
static void
test_secure_alloc(void)
{
	static const char key[] = "111111-222222-333333-444444-555555-666666-777777-888888";
	json_malloc_t m = NULL;
	json_free_t f = NULL;
	struct vl_reader r;
	char *p = xmalloc(100), *q;
	json_t *req;

	memset(p, 'k', malloc_usable_size(p));
	secure_wipe(p);
	check(all_zero(p, malloc_usable_size(p)));
	memcpy(p, key, sizeof(key));
	q = secure_realloc(p, 4096); /* p is wiped and freed */
	check_str(q, key);
	check(secure_realloc(q, 0) == NULL);
	secure_wipe(NULL);
	secure_free(NULL);

	/* jansson frees (and so wipes) every JSON value through secure_free. */
	secure_alloc_install();
	json_get_alloc_funcs(&m, &f);
	check(f == secure_free);

	/* The varlink reader keeps no copy of a handled request. */
	vl_reader_init(&r);
	req = json_pack("{s:s,s:{s:s}}", "method", "io.seedd.AddDrive", "parameters",
	                "bitlockerKey", key);
	{
		char *text = json_dumps(req, JSON_COMPACT);
		json_t *got = NULL;

		check(vl_reader_feed(&r, text, strlen(text) + 1) == 0);
		check(vl_reader_feed(&r, "{\"method\":", 11) == 0); /* the next, unfinished */
		check_int(vl_reader_next(&r, &got), 1);
		check(memmem(r.buf, r.cap, key, strlen(key)) == NULL);
		check_int(r.len, 11);
		json_decref(got);
		secure_free(text);
	}
	json_decref(req);
	vl_reader_done(&r);
}

int
main(void)
{
	test_utf8();
	test_iso8601();
	test_strings();
	test_alloc();
	test_secure_alloc();
	return 0;
}
