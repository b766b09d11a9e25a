/*
 * The state directory's lock. A POSIX record lock (fcntl F_SETLK), not
 * flock(): F_GETLK tells the second daemon the pid that holds it, from the
 * kernel rather than from a file that may be stale. The pid is also written
 * into the file for people (`cat seedd.lock`); it is only read back when the
 * holder is in another pid namespace (F_GETLK then says 0). The lock goes
 * with the process: nothing else opens this file (closing any descriptor of
 * it would drop a POSIX lock), and O_CLOEXEC keeps it from children.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "statelock.h"
#include "util.h"

/* The pid written in the file by its holder, 0 if none. */
static pid_t
pid_in_file(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	long v;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	v = strtol(buf, NULL, 10);
	return v > 0 && v <= 4194304 /* PID_MAX_LIMIT */ ? (pid_t)v : 0;
}

static pid_t
lock_holder(int fd)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};

	if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK && fl.l_pid > 0)
		return fl.l_pid;
	return pid_in_file(fd);
}

static int
write_pid(int fd)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n)
		return -errno;
	return 0;
}

int
state_lock_take(const char *dir, pid_t *ret_holder, char **ret_err)
{
	_cleanup_free_ char *path = xprintf("%s/%s", dir, STATE_LOCK_NAME);
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	int fd, r;

	*ret_holder = 0;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		r = -errno;
		xasprintf(ret_err, "cannot open the lock file %s: %s", path, strerror(errno));
		return r;
	}
	if (fcntl(fd, F_SETLK, &fl) < 0) {
		r = errno == EACCES || errno == EAGAIN ? -EBUSY : -errno;
		if (r == -EBUSY) {
			*ret_holder = lock_holder(fd);
			if (*ret_holder > 0)
				xasprintf(ret_err,
				          "state directory %s is in use by seedd pid %ld "
				          "(lock %s)",
				          dir, (long)*ret_holder, path);
			else
				xasprintf(ret_err,
				          "state directory %s is in use by another seedd "
				          "(lock %s)",
				          dir, path);
		} else
			xasprintf(ret_err, "cannot lock %s: %s", path, strerror(-r));
		close(fd);
		return r;
	}
	if ((r = write_pid(fd)) < 0) {
		xasprintf(ret_err, "cannot write %s: %s", path, strerror(-r));
		close(fd);
		return r;
	}
	return fd;
}
