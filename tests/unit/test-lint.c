/*
 * lint.c: container names, blob names (lengths in UTF-16 units, segment
 * rules, UTF-8 validity, Windows-invalid names) and BlobPath joining.
 */
#include <stdio.h>
#include <string.h>

#include "test.h"
#include "lint.h"
#include "proto/util.h"

struct name_case {
	const char *name;
	size_t len; /* 0: strlen(name) */
	bool ok;
	const char *reason; /* substring of the reason when !ok */
};

static void
check_case(bool ok, const char *why, const struct name_case *c)
{
	if (ok != c->ok || (!ok && strstr(why, c->reason) == NULL)) {
		fprintf(stderr, "case \"%s\": got %s (%s), want %s (%s)\n", c->name,
		        ok ? "ok" : "refused", ok ? "-" : why, c->ok ? "ok" : "refused",
		        c->ok ? "-" : c->reason);
		check(false);
	}
}

static void
test_container(void)
{
	static const struct name_case cases[] = {
	    {"abc", 0, true, NULL},
	    {"a-b-c", 0, true, NULL},
	    {"123", 0, true, NULL},
	    {"seed-2024", 0, true, NULL},
	    {"", 0, false, "empty"},
	    {"ab", 0, false, "shorter than 3"},
	    {"a--b", 0, false, "consecutive hyphens"},
	    {"-abc", 0, false, "start and end"},
	    {"abc-", 0, false, "start and end"},
	    {"Abc", 0, false, "upper-case"},
	    {"a_b", 0, false, "a-z, 0-9"},
	    {"a.b", 0, false, "a-z, 0-9"},
	    {"a b", 0, false, "a-z, 0-9"},
	    {"a\xc3\xa9z", 0, false, "a-z, 0-9"},
	    {"$root", 0, false, "$root"},
	};
	char name[80];
	const char *why = NULL;

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		bool ok = lint_container_name(cases[i].name, &why);

		check_case(ok, why, &cases[i]);
	}
	check(!lint_container_name(NULL, &why));
	check(!lint_container_name("a--b", NULL));

	/* Length boundaries: 2 and 64 refused, 3 and 63 accepted. */
	memset(name, 'a', sizeof(name));
	name[2] = '\0';
	check(!lint_container_name(name, &why));
	name[2] = 'a';
	name[3] = '\0';
	check(lint_container_name(name, &why));
	name[3] = 'a';
	name[63] = '\0';
	check(lint_container_name(name, &why));
	name[63] = 'a';
	name[64] = '\0';
	check(!lint_container_name(name, &why));
	check(strstr(why, "longer than 63") != NULL);
}

static void
test_blob_table(void)
{
	static const struct name_case cases[] = {
	    {"a", 0, true, NULL},
	    {"dir/file.txt", 0, true, NULL},
	    {"host1/2024-01-01/part-0001.bin", 0, true, NULL},
	    {"a b/c d.txt", 0, true, NULL},
	    {".hidden/file", 0, true, NULL},
	    {"a&b'c#d%e", 0, true, NULL},
	    {"caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac.txt", 0, true, NULL}, /* café/日本.txt */
	    {"\xf0\x9f\x98\x8a", 0, true, NULL},                         /* U+1F60A */
	    {"CONSOLE", 0, true, NULL},
	    {"COM0", 0, true, NULL},
	    {"CON1", 0, true, NULL},
	    {"xcon", 0, true, NULL},
	    {"", 0, false, "empty"},
	    /* trailing '/' or '.', and mixes of the two */
	    {"a/", 0, false, "ends with '/'"},
	    {"/", 0, false, "ends with '/'"},
	    {"a.", 0, false, "ends with '.'"},
	    {"a/b.", 0, false, "ends with '.'"},
	    {"a/./", 0, false, "ends with '/'"},
	    {"a/.", 0, false, "ends with '.'"},
	    /* segment rules */
	    {"/a", 0, false, "empty path segment"},
	    {"a//b", 0, false, "empty path segment"},
	    {"./a", 0, false, "'.' or '..'"},
	    {"a/../b", 0, false, "'.' or '..'"},
	    {"a./b", 0, false, "ends with '.' or space"},
	    {"a /b", 0, false, "ends with '.' or space"},
	    {"a ", 0, false, "ends with '.' or space"},
	    {"CON", 0, false, "device name"},
	    {"dir/backup.bak.seedd-tmp", 0, false, "temporary files"},
	    {"dir.seedd-tmp/x", 0, false, "temporary files"},
	    {"dir/X.SEEDD-TMP", 0, false, "temporary files"},
	    {".Seedd-Tmp/properties/x", 0, false, "temporary files"},
	    {"dir/x.seedd-tmpx", 0, true, NULL},
	    {"dir/con.txt", 0, false, "device name"},
	    {"nul", 0, false, "device name"},
	    {"Aux.tar.gz", 0, false, "device name"},
	    {"prn/x", 0, false, "device name"},
	    {"COM1", 0, false, "device name"},
	    {"lpt9.log", 0, false, "device name"},
	    /* characters Windows or Azure refuse */
	    {"a\\b", 0, false, "backslash"},
	    {"a:b", 0, false, "Windows cannot store"},
	    {"a*b", 0, false, "Windows cannot store"},
	    {"a?b", 0, false, "Windows cannot store"},
	    {"a<b", 0, false, "Windows cannot store"},
	    {"a>b", 0, false, "Windows cannot store"},
	    {"a|b", 0, false, "Windows cannot store"},
	    {"a\"b", 0, false, "Windows cannot store"},
	    {"a\x01z", 0, false, "control"},
	    {"a\tb", 0, false, "control"},
	    {"a\nb", 0, false, "control"},
	    {"a\x1f", 0, false, "control"},
	    {"a\x7f", 0, false, "control"},
	    {"a\xc2\x81z", 0, false, "control"},            /* U+0081 */
	    {"a\0b", 3, false, "control"},                  /* embedded NUL */
	    {"\xee\x80\x80", 0, false, "private-use"},      /* U+E000 */
	    {"\xef\xa3\xbf", 0, false, "private-use"},      /* U+F8FF */
	    {"\xf3\xb0\x80\x80", 0, false, "private-use"},  /* U+F0000 */
	    {"\xef\xb7\x90", 0, false, "noncharacter"},     /* U+FDD0 */
	    {"\xef\xbf\xbe", 0, false, "noncharacter"},     /* U+FFFE */
	    {"\xf0\x9f\xbf\xbf", 0, false, "noncharacter"}, /* U+1FFFF */
	    /* invalid UTF-8 */
	    {"\xff", 0, false, "UTF-8"},
	    {"a\x80z", 0, false, "UTF-8"},               /* lone continuation */
	    {"a\xc3", 0, false, "UTF-8"},                /* truncated */
	    {"\xe2\x82", 0, false, "UTF-8"},             /* truncated 3-byte */
	    {"\xc3\x28", 0, false, "UTF-8"},             /* bad continuation */
	    {"\xc0\xaf", 0, false, "UTF-8"},             /* overlong '/' */
	    {"\xc1\xbf", 0, false, "UTF-8"},             /* overlong DEL */
	    {"\xe0\x80\xaf", 0, false, "UTF-8"},         /* overlong '/' */
	    {"\xf0\x80\x80\xaf", 0, false, "UTF-8"},     /* overlong '/' */
	    {"\xed\xa0\x80", 0, false, "UTF-8"},         /* surrogate U+D800 */
	    {"\xf4\x90\x80\x80", 0, false, "UTF-8"},     /* past U+10FFFF */
	    {"\xf8\x88\x80\x80\x80", 0, false, "UTF-8"}, /* 5-byte form */
	    {"ok\xed\xbf\xbf", 0, false, "UTF-8"},       /* surrogate U+DFFF */
	};
	const char *why = NULL;

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		const struct name_case *c = &cases[i];
		size_t len = c->len != 0 ? c->len : strlen(c->name);
		bool ok = lint_blob_name(c->name, len, &why);

		check_case(ok, why, c);
	}
	check(!lint_blob_name("a/", 2, NULL));
	check(lint_blob_name("a/b", 3, NULL));
	/* The length is honoured: a prefix of a bad name can be fine. */
	check(lint_blob_name("ab/", 2, &why));
}

/*
 * Append `count` copies of the UTF-8 character ch, starting a new segment
 * (a '/', one unit) every `per_seg` characters. Returns the new length.
 */
static size_t
fill(char *buf, size_t pos, const char *ch, size_t count, size_t per_seg)
{
	size_t n = strlen(ch);

	for (size_t i = 0; i < count; i++) {
		if (i > 0 && i % per_seg == 0)
			buf[pos++] = '/';
		memcpy(buf + pos, ch, n);
		pos += n;
	}
	buf[pos] = '\0';
	return pos;
}

static bool
lint(const char *s, const char **why)
{
	return lint_blob_name(s, strlen(s), why);
}

static void
test_blob_length(void)
{
	static char buf[8192];
	const char *why = NULL;
	size_t n;

	/* ASCII: 1019 characters in segments of 200, + 5 slashes = 1024 units. */
	n = fill(buf, 0, "a", 1019, 200);
	check_int(n, 1024);
	check(lint(buf, &why));
	buf[n] = 'a';
	buf[n + 1] = '\0';
	check(!lint(buf, &why));
	check_str(why, "blob name longer than 1024 characters");

	/* Two-byte characters: 1024 units are 2043 bytes and still fine. */
	n = fill(buf, 0, "\xc3\xa9", 1019, 200);
	check_int(n, 2043);
	check(lint(buf, &why));
	fill(buf, 0, "\xc3\xa9", 1020, 200);
	check(!lint(buf, &why));
	check(strstr(why, "longer than 1024") != NULL);

	/* Three-byte characters (U+20AC): same count in units. */
	fill(buf, 0, "\xe2\x82\xac", 1019, 200);
	check(lint(buf, &why));
	fill(buf, 0, "\xe2\x82\xac", 1020, 200);
	check(!lint(buf, &why));

	/*
	 * Four-byte characters are two UTF-16 units each. 510 emoji in
	 * segments of 127 (254 units) + 4 slashes = 1024 units: accepted.
	 * 511 emoji = 1026 units, refused although they are only 515 code
	 * points: the service counts UTF-16 units.
	 */
	fill(buf, 0, "\xf0\x9f\x98\x8a", 510, 127);
	check(lint(buf, &why));
	fill(buf, 0, "\xf0\x9f\x98\x8a", 511, 127);
	check(!lint(buf, &why));
	check(strstr(why, "longer than 1024") != NULL);

	/* A four-byte character straddling the boundary: 1023 + 2 units. */
	n = fill(buf, 0, "a", 1017, 200); /* 1017 + 5 slashes = 1022 units */
	n = fill(buf, n, "\xf0\x9f\x98\x8a", 1, 1);
	check(lint(buf, &why)); /* 1024 */
	buf[0] = 'b';
	memmove(buf + 1, buf, n + 1);
	check(!lint(buf, &why)); /* 1025: the emoji's second unit is one too many */
	check(strstr(why, "longer than 1024") != NULL);
}

static void
test_blob_segments(void)
{
	static char buf[8192];
	const char *why = NULL;
	size_t n;

	/* 254 segments accepted, 255 refused. */
	n = fill(buf, 0, "a", 254, 1);
	check_int(n, 2 * 254 - 1);
	check(lint(buf, &why));
	fill(buf, 0, "a", 255, 1);
	check(!lint(buf, &why));
	check_str(why, "blob name has more than 254 path segments");

	/* One segment: 255 units fine, 256 not, counted in UTF-16 units. */
	fill(buf, 0, "x", 255, 1000);
	check(lint(buf, &why));
	fill(buf, 0, "x", 256, 1000);
	check(!lint(buf, &why));
	check(strstr(why, "path segment longer than 255") != NULL);
	n = fill(buf, 0, "\xf0\x9f\x98\x8a", 127, 1000);
	n = fill(buf, n, "x", 1, 1000);
	check(lint(buf, &why)); /* 255 units */
	fill(buf, 0, "\xf0\x9f\x98\x8a", 128, 1000);
	check(!lint(buf, &why)); /* 256 units in 128 code points */
	fill(buf, 0, "\xe6\x97\xa5", 255, 1000);
	check(lint(buf, &why)); /* 765 bytes, 255 units */
}

static void
test_blob_path(void)
{
	char *p;

	p = lint_blob_path("seed", "job1", "dir/f.bin");
	check_str(p, "seed/job1/dir/f.bin");
	free(p);
	p = lint_blob_path("seed", NULL, "dir/f.bin");
	check_str(p, "seed/dir/f.bin");
	free(p);
	p = lint_blob_path("seed", "", "f.bin");
	check_str(p, "seed/f.bin");
	free(p);
	p = lint_blob_path("seed", "a/b", "caf\xc3\xa9");
	check_str(p, "seed/a/b/caf\xc3\xa9");
	free(p);
}

int
main(void)
{
	test_container();
	test_blob_table();
	test_blob_length();
	test_blob_segments();
	test_blob_path();
	return 0;
}
