/*
 * Small helpers shared by seedd and seedctl: scope-bound cleanup, allocators
 * that abort on exhaustion, and bounded string helpers.
 *
 * The x* allocators never return NULL: a daemon out of memory aborts and is
 * restarted by systemd, which is safe because every state change lives in
 * SQLite and every step resumes after a restart.
 */
#ifndef SEEDD_UTIL_H
#define SEEDD_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))

/* Hand ownership out of a _cleanup_ variable. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		__typeof__(p) _p = (p);                                                            \
		(p) = NULL;                                                                        \
		_p;                                                                                \
	})
#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int _fd = (fd);                                                                    \
		(fd) = -1;                                                                         \
		_fd;                                                                               \
	})

static inline void
freep(void *p)
{
	free(*(void **)p);
}

static inline void
closep(int *fd)
{
	if (*fd >= 0)
		(void)close(*fd);
}

_noreturn_ void fatalx(const char *fmt, ...) _printf_(1, 2);

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
int xasprintf(char **ret, const char *fmt, ...) _printf_(2, 3);
char *xprintf(const char *fmt, ...) _printf_(1, 2);

/*
 * Memory that may have held a secret (a request carrying a BitLocker
 * recovery password, a token, the client secret) is wiped before it goes
 * back to the heap. secure_wipe zeroes all of p's malloc block (NULL: no-op);
 * secure_free wipes, then frees; secure_realloc moves to a new block and
 * wipes the old one (n 0: frees; NULL: a new block; aborts on exhaustion).
 * secure_alloc_install makes jansson free (and so wipe) every JSON value
 * this way; call it before any JSON is made (seedd and seedctl main).
 */
void secure_wipe(void *p);
void secure_free(void *p);
void *secure_realloc(void *p, size_t n);
void secure_alloc_install(void);

static inline void
secure_freep(void *p)
{
	secure_free(*(void **)p);
}

/* Format a UNIX time (seconds) as ISO 8601 UTC ("2026-11-25T23:43:52Z"). */
void format_iso8601(int64_t t, char buf[static 32]);
/* A size in IEC units for people: "512 B", "96.0 MiB", "1.5 TiB". */
void format_iec(int64_t n, char buf[static 32]);

/* The value of a hex digit (either case), or -1. */
int hex_digit(char c);

/* True if s is a string we may put in a JSON reply or a log line (valid UTF-8). */
bool utf8_valid(const char *s, size_t len);

#endif
