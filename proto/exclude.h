/*
 * Exclude patterns of a job (`seedctl job create … --exclude GLOB`), shared
 * by seedctl (which checks them before sending) and seedd (which checks them
 * again and applies them while indexing).
 *
 * A pattern is matched against an entry's whole path relative to the
 * staging root ("sql/full.bak"), segment by segment: the pattern and the
 * path are split at '/', and each pattern segment is an fnmatch(3) glob
 * (`*`, `?`, `[…]`, `\` escapes) for exactly one path segment, so `*` never
 * crosses a '/'. A segment that is exactly `**` matches any number of path
 * segments, none included: `**`, a '/' and `*.tmp` match a .tmp file at
 * any depth; `cache` (or `cache`, '/', `**`) the directory cache and, since
 * an excluded directory is not walked, everything in it. A leading dot is an
 * ordinary character (`*` matches ".hidden"). Bytes are compared as they
 * are (the C locale); names need not be UTF-8.
 *
 * Pure code. An exclude set carries a scratch buffer: one thread at a time.
 */
#ifndef SEEDD_EXCLUDE_H
#define SEEDD_EXCLUDE_H

#include <stdbool.h>
#include <stddef.h>

#define EXCLUDE_MAX 64           /* patterns per job */
#define EXCLUDE_PATTERN_MAX 1024 /* bytes of one pattern (a blob name's limit) */

/*
 * NULL if pattern may be used, else why not (static text, for a message
 * that also names the pattern): empty, too long, absolute, a trailing '/',
 * an empty, "." or ".." segment (none of them ever matches a relative path).
 */
const char *exclude_pattern_check(const char *pattern);

struct exclude;

/* A set of n checked patterns (copied); NULL if n is 0. Aborts on OOM. */
struct exclude *exclude_new(const char *const *patterns, size_t n);
/* NULL is fine; returns NULL. */
struct exclude *exclude_free(struct exclude *x);

/*
 * The index of the first pattern that matches path (len bytes, relative,
 * '/'-separated, no leading or trailing '/'), or -1 if none does or x is NULL.
 */
int exclude_match(struct exclude *x, const char *path, size_t len);

/* Pattern i of the set (as given), NULL past its end. */
const char *exclude_pattern(const struct exclude *x, int i);

#endif
