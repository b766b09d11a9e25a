/*
 * Exclude patterns (exclude.h): each pattern is split into its segments
 * once; a path is split into a scratch copy per match. Matching is the
 * classic wildcard walk with one backtrack point, over segments instead of
 * characters: `**` plays `*`, and any other segment matches exactly one path
 * segment (fnmatch), so the walk is right and takes O(segments^2) at worst.
 */
#include <fnmatch.h>
#include <stdint.h>
#include <string.h>

#include "exclude.h"
#include "util.h"

struct pattern {
	char *text; /* as given */
	char *buf;  /* text with each '/' replaced by NUL */
	char **seg; /* [n] into buf */
	size_t n;
};

struct exclude {
	struct pattern *p;
	size_t n;
	char *path; /* scratch: the path being matched, split */
	char **seg; /* scratch: its segments */
	size_t cap; /* bytes of path, and entries of seg */
};

const char *
exclude_pattern_check(const char *pattern)
{
	size_t len = strlen(pattern);
	const char *s = pattern;

	if (len == 0)
		return "an empty pattern";
	if (len > EXCLUDE_PATTERN_MAX)
		return "longer than 1024 bytes";
	if (pattern[0] == '/')
		return "patterns match paths relative to the staging root: drop the leading '/'";
	if (pattern[len - 1] == '/')
		return "a trailing '/' (a pattern naming a directory leaves out all of it)";
	for (;;) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 0)
			return "an empty segment ('//')";
		if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return "a '.' or '..' segment, which never matches a relative path";
		if (e == NULL)
			return NULL;
		s = e + 1;
	}
}

/* Split buf in place at '/': the segment starts into seg (room for all), their count. */
static size_t
split(char *buf, size_t len, char **seg)
{
	size_t n = 0;

	seg[n++] = buf;
	for (size_t i = 0; i < len; i++)
		if (buf[i] == '/') {
			buf[i] = '\0';
			seg[n++] = buf + i + 1;
		}
	return n;
}

struct exclude *
exclude_new(const char *const *patterns, size_t n)
{
	struct exclude *x;

	if (n == 0)
		return NULL;
	x = xcalloc(1, sizeof(*x));
	x->p = xcalloc(n, sizeof(*x->p));
	x->n = n;
	for (size_t i = 0; i < n; i++) {
		struct pattern *p = &x->p[i];
		size_t len = strlen(patterns[i]);
		p->text = xstrdup(patterns[i]);
		p->buf = xstrdup(patterns[i]);
		p->seg = xcalloc(len + 1, sizeof(*p->seg));
		p->n = split(p->buf, len, p->seg);
	}
	return x;
}

struct exclude *
exclude_free(struct exclude *x)
{
	if (x == NULL)
		return NULL;
	for (size_t i = 0; i < x->n; i++) {
		free(x->p[i].text);
		free(x->p[i].buf);
		free(x->p[i].seg);
	}
	free(x->p);
	free(x->path);
	free(x->seg);
	free(x);
	return NULL;
}

static bool
is_any(const char *seg)
{
	return seg[0] == '*' && seg[1] == '*' && seg[2] == '\0';
}

/* Do the pattern's segments match the path's nn segments? */
static bool
match_segments(const struct pattern *p, char **name, size_t nn)
{
	size_t i = 0, k = 0, star = SIZE_MAX, star_k = 0;

	while (k < nn) {
		if (i < p->n && is_any(p->seg[i])) {
			star = i++;
			star_k = k;
		} else if (i < p->n && fnmatch(p->seg[i], name[k], 0) == 0) {
			i++;
			k++;
		} else if (star != SIZE_MAX) {
			/* `**` takes one more path segment; try the rest from there. */
			i = star + 1;
			k = ++star_k;
		} else
			return false;
	}
	while (i < p->n && is_any(p->seg[i]))
		i++;
	return i == p->n;
}

int
exclude_match(struct exclude *x, const char *path, size_t len)
{
	size_t nn;

	if (x == NULL || len == 0)
		return -1;
	if (len + 1 > x->cap) {
		x->cap = len + 1 > 256 ? len + 1 : 256;
		x->path = xreallocarray(x->path, x->cap, 1);
		x->seg = xreallocarray(x->seg, x->cap, sizeof(*x->seg));
	}
	memcpy(x->path, path, len);
	x->path[len] = '\0';
	nn = split(x->path, len, x->seg);
	for (size_t i = 0; i < x->n; i++)
		if (match_segments(&x->p[i], x->seg, nn))
			return (int)i;
	return -1;
}

const char *
exclude_pattern(const struct exclude *x, int i)
{
	if (x == NULL || i < 0 || (size_t)i >= x->n)
		return NULL;
	return x->p[i].text;
}
