/*
 * LD_PRELOAD shim for test_cancel.py: a slow drive or staging file system.
 * Every pwritev() and fdatasync() of a file below $SEEDD_SLOW_DIR, and every
 * fstatat() in a directory below it, first sleeps $SEEDD_SLOW_MS
 * milliseconds, so a copy thread is inside a drive write (an indexer inside
 * a stat) most of the time, as on a busy USB disk or a slow NFS share.
 * For test_winddown.py, a hung one: while the file $SEEDD_HOLD exists, each
 * of those calls and every pread() below $SEEDD_SLOW_DIR waits, having
 * created $SEEDD_HOLD.held (the test's sign that a thread is stuck).
 * Everything else is untouched.
 */
/* Both pwritev and pwritev64 are wrapped, so neither may be an alias of the other. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <fcntl.h>
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

/* Wait while the gate file exists, polling every 10 ms. */
static void
hold(void)
{
	const char *gate = getenv("SEEDD_HOLD");
	struct timespec tick = {0, 10 * 1000000L};
	char held[PATH_MAX];
	int fd;

	if (gate == NULL || access(gate, F_OK) < 0)
		return;
	snprintf(held, sizeof(held), "%s.held", gate);
	if ((fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) >= 0)
		close(fd);
	while (access(gate, F_OK) == 0)
		nanosleep(&tick, NULL);
}

static void
slow(int fd)
{
	const char *ms = getenv("SEEDD_SLOW_MS");
	long v = ms != NULL ? atol(ms) : 0;
	struct timespec ts = {v / 1000, (v % 1000) * 1000000L};

	if (!slow_fd(fd))
		return;
	hold();
	if (v > 0)
		nanosleep(&ts, NULL);
}

/* pread is the store's too: only looked at when a test holds. */
static void
held_read(int fd)
{
	if (getenv("SEEDD_HOLD") != NULL && slow_fd(fd))
		hold();
}

#define WRAP_WITH(before, ret, name, params, args)                                         \
	ret name params                                                                    \
	{                                                                                  \
		static ret(*next) params;                                                  \
		if (next == NULL)                                                          \
			next = (ret(*) params)dlsym(RTLD_NEXT, #name);                     \
		before(fd);                                                                \
		return next args;                                                          \
	}
#define WRAP(ret, name, params, args) WRAP_WITH(slow, ret, name, params, args)

WRAP(ssize_t, pwritev, (int fd, const struct iovec *iov, int n, off_t off), (fd, iov, n, off))
WRAP(ssize_t, pwritev64, (int fd, const struct iovec *iov, int n, off_t off), (fd, iov, n, off))
WRAP(int, fdatasync, (int fd), (fd))
WRAP_WITH(held_read, ssize_t, pread, (int fd, void *buf, size_t n, off_t off), (fd, buf, n, off))
WRAP_WITH(held_read, ssize_t, pread64, (int fd, void *buf, size_t n, off64_t off),
	  (fd, buf, n, off))
WRAP(int, fstatat, (int fd, const char *name, struct stat *st, int flags), (fd, name, st, flags))
WRAP(int, fstatat64, (int fd, const char *name, struct stat64 *st, int flags),
     (fd, name, st, flags))
