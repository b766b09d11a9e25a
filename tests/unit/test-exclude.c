/* Exclude patterns (proto/exclude.c): what a pattern matches, and which are refused. */
#include <string.h>

#include "exclude.h"
#include "test.h"

/* The index of the first of the patterns matching path, or -1. */
static int
first_match(const char *const *patterns, size_t n, const char *path)
{
	struct exclude *x = exclude_new(patterns, n);
	int r = exclude_match(x, path, strlen(path));

	exclude_free(x);
	return r;
}

static bool
matches(const char *pattern, const char *path)
{
	return first_match(&pattern, 1, path) == 0;
}

static void
test_star_stays_in_its_segment(void)
{
	check(matches("*.tmp", "a.tmp"));
	check(!matches("*.tmp", "dir/a.tmp")); /* '*' never crosses '/' */
	check(matches("*/*.tmp", "dir/a.tmp"));
	check(!matches("*", "dir/a"));
	check(matches("*", "dir"));     /* the directory, and so all of it */
	check(matches("*", ".hidden")); /* no special leading dot */
	check(matches("dir/?.tmp", "dir/a.tmp"));
	check(!matches("dir/?.tmp", "dir/ab.tmp"));
	check(matches("[abc]x", "bx"));
	check(!matches("[!abc]x", "bx"));
	check(matches("\\*", "*"));
	check(!matches("\\*", "a"));
	check(!matches("a", "ab"));
	check(!matches("ab", "a"));
	check(!matches("a", "a/b")); /* whole paths: the walk never enters a matched dir anyway */
}

static void
test_double_star(void)
{
	check(matches("**/*.tmp", "a.tmp"));
	check(matches("**/*.tmp", "x/y/z/a.tmp"));
	check(!matches("**/*.tmp", "x/y/z/a.tmpx"));
	check(matches("cache/**", "cache"));
	check(matches("cache/**", "cache/a/b"));
	check(!matches("cache/**", "cached/a"));
	check(matches("a/**/b", "a/b"));
	check(matches("a/**/b", "a/x/y/b"));
	check(!matches("a/**/b", "a/x/y/c"));
	check(matches("a/**/b/**/c", "a/1/b/2/3/c"));
	check(matches("a/**/b/**/c", "a/b/b/c"));
	check(!matches("a/**/b/**/c", "a/1/c/2/b"));
	check(matches("**", "anything/at/all"));
	check(matches("**/node_modules", "web/app/node_modules"));
	/* Backtracking: the first "x" a `**` could stop at is not the right one. */
	check(matches("**/x/y", "x/x/x/y"));
	check(!matches("**/x/y", "x/x/x/z"));
	/* Not a whole segment: just two stars, so it stays in its segment. */
	check(matches("a**", "abc"));
	check(!matches("a**", "a/bc"));
}

static void
test_first_pattern_wins(void)
{
	const char *pats[] = {"*.log", "logs", "**/*.log"};
	struct exclude *x = exclude_new(pats, 3);

	check_int(exclude_match(x, "a.log", 5), 0);
	check_int(exclude_match(x, "logs", 4), 1);
	check_int(exclude_match(x, "d/a.log", 7), 2);
	check_int(exclude_match(x, "d/a.txt", 7), -1);
	/* A longer path than the scratch buffer had: it grows. */
	char long_path[3000];
	memset(long_path, 'a', sizeof(long_path));
	for (size_t i = 1; i + 1 < sizeof(long_path); i += 2)
		long_path[i] = '/';
	memcpy(long_path + sizeof(long_path) - 5, "x.log", 5);
	check_int(exclude_match(x, long_path, sizeof(long_path)), 2);
	check_str(exclude_pattern(x, 1), "logs");
	check(exclude_pattern(x, 3) == NULL);
	check(exclude_pattern(x, -1) == NULL);
	exclude_free(x);
	/* No set: nothing is excluded. */
	check(exclude_new(pats, 0) == NULL);
	check_int(exclude_match(NULL, "a.log", 5), -1);
	check(exclude_free(NULL) == NULL);
}

static void
test_check(void)
{
	char big[EXCLUDE_PATTERN_MAX + 2];

	check(exclude_pattern_check("*.tmp") == NULL);
	check(exclude_pattern_check("a/**/b") == NULL);
	check(exclude_pattern_check(".cache") == NULL);
	check(exclude_pattern_check("") != NULL);
	check(exclude_pattern_check("/abs") != NULL);
	check(strstr(exclude_pattern_check("/abs"), "relative") != NULL);
	check(exclude_pattern_check("dir/") != NULL);
	check(exclude_pattern_check("a//b") != NULL);
	check(exclude_pattern_check("./a") != NULL);
	check(exclude_pattern_check("a/..") != NULL);
	check(exclude_pattern_check("a/../b") != NULL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	check(exclude_pattern_check(big) != NULL);
	big[EXCLUDE_PATTERN_MAX] = '\0';
	check(exclude_pattern_check(big) == NULL);
}

int
main(void)
{
	test_star_stays_in_its_segment();
	test_double_star();
	test_first_pattern_wins();
	test_check();
	return 0;
}
