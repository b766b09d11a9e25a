/*
 * LD_PRELOAD shim for test_cancel.py: a slow drive or staging file system.
 * Every pwritev() and fdatasync() of a file below $SEEDD_SLOW_DIR, and every
 * fstatat() in a directory below it, first sleeps $SEEDD_SLOW_MS
 * milliseconds, so a copy thread is inside a drive write (an indexer inside
 * a stat) most of the time, as on a busy USB disk or a slow NFS share.
 * Everything else is untouched.
 */
/* Both pwritev and pwritev64 are wrapped, so neither may be an alias of the other. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static bool
slow_fd(int fd)
{
	const char *dir = getenv("SEEDD_SLOW_DIR");
	char link[64], path[PATH_MAX];
	size_t n = dir != NULL ? strlen(dir) : 0;
	ssize_t len;

	if (n == 0)
		return false;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((len = readlink(link, path, sizeof(path) - 1)) < 0)
		return false;
	path[len] = '\0';
	return strncmp(path, dir, n) == 0 && path[n] == '/';
}

static void
slow(int fd)
{
	const char *ms = getenv("SEEDD_SLOW_MS");
	long v = ms != NULL ? atol(ms) : 0;
	struct timespec ts = {v / 1000, (v % 1000) * 1000000L};

	if (v > 0 && slow_fd(fd))
		nanosleep(&ts, NULL);
}

#define WRAP(ret, name, params, args)                                                      \
	ret name params                                                                    \
	{                                                                                  \
		static ret(*next) params;                                                  \
		if (next == NULL)                                                          \
			next = (ret(*) params)dlsym(RTLD_NEXT, #name);                     \
		slow(fd);                                                                  \
		return next args;                                                          \
	}

WRAP(ssize_t, pwritev, (int fd, const struct iovec *iov, int n, off_t off), (fd, iov, n, off))
WRAP(ssize_t, pwritev64, (int fd, const struct iovec *iov, int n, off_t off), (fd, iov, n, off))
WRAP(int, fdatasync, (int fd), (fd))
WRAP(int, fstatat, (int fd, const char *name, struct stat *st, int flags), (fd, name, st, flags))
WRAP(int, fstatat64, (int fd, const char *name, struct stat64 *st, int flags),
     (fd, name, st, flags))
