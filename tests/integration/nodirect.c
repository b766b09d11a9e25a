/*
 * LD_PRELOAD shim for test_direct_fallback.py: a drive that refuses O_DIRECT
 * the way ntfs-3g on some FUSE setups is feared to, with EFAULT on the I/O
 * (the open and fcntl(O_DIRECT) succeed). Every pread/pwritev of an O_DIRECT
 * fd on a file below $SEEDD_NODIRECT_DIR fails, except seedd's probe file (so
 * the run-time fallback is what meets it); below $SEEDD_NODIRECT_PROBE_DIR the
 * probe file fails too. Buffered I/O is untouched.
 */
/* Both pread and pread64 are wrapped, so neither may be an alias of the other. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define PROBE_NAME "/.seedd-direct-probe.seedd-tmp"

static bool
under(const char *path, const char *env)
{
	const char *dir = getenv(env);
	size_t n = dir != NULL ? strlen(dir) : 0;

	return n > 0 && strncmp(path, dir, n) == 0 && path[n] == '/';
}

static bool
refuse(int fd)
{
	char link[64], path[4096];
	int fl = fcntl(fd, F_GETFL);
	ssize_t n;

	if (fl < 0 || !(fl & O_DIRECT))
		return false;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, sizeof(path) - 1)) < 0)
		return false;
	path[n] = '\0';
	if (under(path, "SEEDD_NODIRECT_PROBE_DIR"))
		return true;
	n = (ssize_t)strlen(path) - (ssize_t)strlen(PROBE_NAME);
	return under(path, "SEEDD_NODIRECT_DIR") && !(n >= 0 && strcmp(path + n, PROBE_NAME) == 0);
}

#define WRAP(ret, name, params, args)                                                              \
	ret name params                                                                            \
	{                                                                                          \
		static ret(*next) params;                                                          \
		if (next == NULL)                                                                  \
			next = (ret(*) params)dlsym(RTLD_NEXT, #name);                             \
		if (refuse(fd)) {                                                                  \
			errno = EFAULT;                                                            \
			return -1;                                                                 \
		}                                                                                  \
		return next args;                                                                  \
	}

WRAP(ssize_t, pread, (int fd, void *buf, size_t n, off_t off), (fd, buf, n, off))
WRAP(ssize_t, pread64, (int fd, void *buf, size_t n, off_t off), (fd, buf, n, off))
WRAP(ssize_t, pwritev, (int fd, const struct iovec *iov, int n, off_t off), (fd, iov, n, off))
WRAP(ssize_t, pwritev64, (int fd, const struct iovec *iov, int n, off_t off), (fd, iov, n, off))
