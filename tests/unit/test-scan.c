/*
 * Tests for the staging scanner (daemon/engine/scan.c) on scratch trees under
 * $TMPDIR: the exact set of files and skipped entries of a mixed tree (as an
 * unprivileged user too, for the unreadable directory), a mount point,
 * batching, cancel, depth limits, and 100 k files in bounded memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scan.h"
#include "test.h"
#include "util.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static char root[PATH_MAX];

/* Every entry seen, as "kind path size error" lines. */
struct seen {
	char **lines;
	size_t n;
	size_t batches;
	size_t max_batch;
	atomic_bool cancel;
	size_t cancel_after; /* batches; 0: never */
	int fail_with;
};

static int
collect_cb(const struct scan_entry *e, size_t n, void *userdata)
{
	struct seen *seen = userdata;

	seen->batches++;
	if (n > seen->max_batch)
		seen->max_batch = n;
	for (size_t i = 0; i < n; i++) {
		check_int(strlen(e[i].path), e[i].path_len);
		seen->lines = xreallocarray(seen->lines, seen->n + 1, sizeof(char *));
		seen->lines[seen->n++] =
		    xprintf("%s %s %llu %d", scan_kind_to_string(e[i].kind), e[i].path,
		            (unsigned long long)e[i].size, e[i].error);
	}
	if (seen->cancel_after != 0 && seen->batches == seen->cancel_after)
		atomic_store(&seen->cancel, true);
	return seen->fail_with;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
seen_done(struct seen *seen)
{
	for (size_t i = 0; i < seen->n; i++)
		free(seen->lines[i]);
	free(seen->lines);
}

/* The sorted lines must be exactly expected (sorted here too). */
static void
check_seen(struct seen *seen, const char **expected, size_t n)
{
	qsort(seen->lines, seen->n, sizeof(char *), cmp_str);
	qsort(expected, n, sizeof(char *), cmp_str);
	for (size_t i = 0; i < seen->n && i < n; i++)
		check_str(seen->lines[i], expected[i]);
	check_int(seen->n, n);
}

static int
open_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	check(fd >= 0);
	return fd;
}

static void
make_file(int dirfd, const char *path, const char *content)
{
	int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	check(fd >= 0);
	check(write(fd, content, strlen(content)) == (ssize_t)strlen(content));
	close(fd);
}

/* The mixed tree; returns whether it has a device node. */
static bool
make_mixed(int fd)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int sock;
	bool dev;

	check(mkdirat(fd, "a", 0755) == 0);
	check(mkdirat(fd, "a/b", 0755) == 0);
	check(mkdirat(fd, "a/b/c", 0755) == 0);
	make_file(fd, "a/b/c/deep.txt", "abc");
	make_file(fd, "a/empty", "");
	check(mkdirat(fd, "ünïcødé ✓", 0755) == 0);
	make_file(fd, "ünïcødé ✓/файл.txt", "hello");
	make_file(fd, "bad-\xff-utf8", "x");
	check(mkdirat(fd, "emptydir", 0755) == 0);
	check(symlinkat("/etc/passwd", fd, "link-passwd") == 0);
	check(symlinkat("a", fd, "link-dir") == 0);
	check(mkfifoat(fd, "fifo", 0644) == 0);
	check(snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/mixed/sock", root) <
	      (int)sizeof(sa.sun_path));
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	check(sock >= 0 && bind(sock, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	close(sock);
	dev = mknodat(fd, "null", S_IFCHR | 0644, makedev(1, 3)) == 0;
	if (!dev)
		printf("no device node in the tree: mknod: %s\n", strerror(errno));
	check(mkdirat(fd, "locked", 0755) == 0);
	make_file(fd, "locked/hidden.txt", "secret");
	check(fchmodat(fd, "locked", 0, 0) == 0);
	return dev;
}

static void
check_mixed(int fd, bool dev, bool locked_readable)
{
	const char *expected[16] = {
	    "file a/b/c/deep.txt 3 0", "file a/empty 0 0",        "file ünïcødé ✓/файл.txt 5 0",
	    "file bad-\xff-utf8 1 0",  "symlink link-passwd 0 0", "symlink link-dir 0 0",
	    "fifo fifo 0 0",           "socket sock 0 0",
	};
	size_t n = 8;
	struct seen seen = {0};

	expected[n++] = locked_readable ? "file locked/hidden.txt 6 0" : "unreadable locked 0 13";
	if (dev)
		expected[n++] = "device null 0 0";
	check_int(scan_tree(fd, NULL, collect_cb, &seen), 0);
	check_int(seen.batches, 1);
	check_seen(&seen, expected, n);
	seen_done(&seen);
}

static void
test_mixed(void)
{
	char path[PATH_MAX + 16];
	bool dev;
	int fd, status;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/mixed", root);
	check(mkdir(path, 0755) == 0);
	fd = open_dir(path);
	dev = make_mixed(fd);
	if (geteuid() != 0) {
		check_mixed(fd, dev, false);
		close(fd);
		return;
	}
	/* Root reads a mode 000 directory; an unprivileged user does not. */
	check_mixed(fd, dev, true);
	pid = fork();
	check(pid >= 0);
	if (pid == 0) {
		check(setgroups(0, NULL) == 0);
		check(setresgid(65534, 65534, 65534) == 0);
		check(setresuid(65534, 65534, 65534) == 0);
		check_mixed(fd, dev, false);
		_exit(0);
	}
	check(waitpid(pid, &status, 0) == pid);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(fd);
}

/* A mount point inside the tree is reported, not entered (root only). */
static int
other_fs_child(const char *path)
{
	const char *expected[] = {"other-fs mnt 0 0", "file plain 0 0"};
	char mnt[PATH_MAX + 16];
	struct seen seen = {0};
	int fd;

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		printf("skip other-fs: no mount namespace: %s\n", strerror(errno));
		return TEST_SKIP;
	}
	check(snprintf(mnt, sizeof(mnt), "%s/mnt", path) < (int)sizeof(mnt));
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") < 0) {
		printf("skip other-fs: cannot mount a tmpfs: %s\n", strerror(errno));
		return TEST_SKIP;
	}
	fd = open_dir(mnt);
	make_file(fd, "inside", "x");
	close(fd);
	fd = open_dir(path);
	check_int(scan_tree(fd, NULL, collect_cb, &seen), 0);
	check_seen(&seen, expected, ELEMENTSOF(expected));
	seen_done(&seen);
	close(fd);
	return 0;
}

static void
test_other_fs(void)
{
	char path[PATH_MAX + 16];
	int fd, status;
	pid_t pid;

	if (geteuid() != 0) {
		printf("skip other-fs: not root\n");
		return;
	}
	snprintf(path, sizeof(path), "%s/otherfs", root);
	check(mkdir(path, 0755) == 0);
	fd = open_dir(path);
	check(mkdirat(fd, "mnt", 0755) == 0);
	make_file(fd, "plain", "");
	close(fd);
	fflush(stdout);
	pid = fork();
	check(pid >= 0);
	if (pid == 0)
		_exit(other_fs_child(path));
	check(waitpid(pid, &status, 0) == pid);
	check(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == TEST_SKIP));
}

static void
test_batches_and_cancel(void)
{
	char path[PATH_MAX + 16];
	struct scan_options opt = {.batch_size = 3};
	struct seen seen = {0};
	int fd;

	snprintf(path, sizeof(path), "%s/ten", root);
	check(mkdir(path, 0755) == 0);
	fd = open_dir(path);
	for (int i = 0; i < 10; i++) {
		char name[16];

		snprintf(name, sizeof(name), "f%d", i);
		make_file(fd, name, "");
	}
	check_int(scan_tree(fd, &opt, collect_cb, &seen), 0);
	check_int(seen.n, 10);
	check_int(seen.batches, 4);
	check_int(seen.max_batch, 3);
	seen_done(&seen);

	/* Batches of exactly the batch size: no empty call at the end. */
	opt.batch_size = 5;
	seen = (struct seen){0};
	check_int(scan_tree(fd, &opt, collect_cb, &seen), 0);
	check_int(seen.batches, 2);
	seen_done(&seen);

	/* Cancelled from the first callback: nothing more is delivered. */
	opt.batch_size = 3;
	seen = (struct seen){.cancel_after = 1};
	opt.cancel = &seen.cancel;
	check_int(scan_tree(fd, &opt, collect_cb, &seen), -ECANCELED);
	check_int(seen.batches, 1);
	check_int(seen.n, 3);
	seen_done(&seen);

	/* The callback stops the scan with its error. */
	opt.cancel = NULL;
	seen = (struct seen){.fail_with = -EIO};
	check_int(scan_tree(fd, &opt, collect_cb, &seen), -EIO);
	check_int(seen.batches, 1);
	seen_done(&seen);
	close(fd);

	check_int(scan_tree(-1, NULL, collect_cb, &seen), -EBADF);
}

/* Excluded by the callback: "*.tmp" (rule 0) and the directory "cache" (rule 1). */
static int
exclude_cb(const char *path, size_t len, void *arg)
{
	size_t *asked = arg;

	(*asked)++;
	check(strncmp(path, "cache/", 6) != 0); /* an excluded directory is never entered */
	if (len > 4 && strcmp(path + len - 4, ".tmp") == 0)
		return 0;
	return strcmp(path, "cache") == 0 ? 1 : -1;
}

static int
excluded_cb(const struct scan_entry *e, size_t n, void *userdata)
{
	for (size_t i = 0; i < n; i++)
		if (e[i].kind == SCAN_EXCLUDED)
			check_int(e[i].rule, strcmp(e[i].path, "cache") == 0 ? 1 : 0);
	if (n > 0 && strcmp(e[n - 1].path, "cache") == 0)
		check(e[n - 1].dir);
	return collect_cb(e, n, userdata);
}

static void
test_exclude(void)
{
	const char *expected[] = {"file keep/a.txt 1 0", "excluded skip.tmp 0 0",
				  "excluded keep/deep.tmp 0 0", "excluded cache 0 0",
				  "fifo p 0 0"};
	char path[PATH_MAX + 16];
	size_t asked = 0;
	struct scan_options opt = {.batch_size = 1, .exclude = exclude_cb, .exclude_arg = &asked};
	struct seen seen = {0};
	int fd;

	snprintf(path, sizeof(path), "%s/excl", root);
	check(mkdir(path, 0755) == 0);
	fd = open_dir(path);
	check(mkdirat(fd, "keep", 0755) == 0);
	check(mkdirat(fd, "cache", 0755) == 0);
	check(mkdirat(fd, "cache/sub", 0755) == 0);
	make_file(fd, "keep/a.txt", "a");
	make_file(fd, "keep/deep.tmp", "tmp");
	make_file(fd, "skip.tmp", "tmp");
	make_file(fd, "cache/x", "x");
	make_file(fd, "cache/sub/y", "y");
	check(mkfifoat(fd, "p", 0644) == 0);
	check_int(scan_tree(fd, &opt, excluded_cb, &seen), 0);
	check_seen(&seen, expected, ELEMENTSOF(expected));
	check_int(asked, 6); /* keep, keep/a.txt, keep/deep.tmp, skip.tmp, cache, p */
	seen_done(&seen);
	close(fd);
}

static void
test_deep(void)
{
	const unsigned levels = 300;
	char path[PATH_MAX + 16], *deep;
	struct scan_options opt = {.max_depth = 5};
	struct seen seen = {0};
	int fd, top;
	const char *expected[1];

	snprintf(path, sizeof(path), "%s/deep", root);
	check(mkdir(path, 0755) == 0);
	top = fd = open_dir(path);
	for (unsigned i = 0; i < levels; i++) {
		int next;

		check(mkdirat(fd, "d", 0755) == 0);
		next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		check(next >= 0);
		if (fd != top)
			close(fd);
		fd = next;
	}
	make_file(fd, "bottom", "0123456789");
	close(fd);

	/* The sixth level is too deep for max_depth 5. */
	check_int(scan_tree(top, &opt, collect_cb, &seen), 0);
	expected[0] = "too-deep d/d/d/d/d/d 0 0";
	check_seen(&seen, expected, 1);
	seen_done(&seen);

	/* The default limit (256) stops this tree too. */
	seen = (struct seen){0};
	check_int(scan_tree(top, NULL, collect_cb, &seen), 0);
	check_int(seen.n, 1);
	check(strncmp(seen.lines[0], "too-deep ", 9) == 0);
	check_int(strlen(seen.lines[0]), 9 + (SCAN_MAX_DEPTH + 1) * 2 - 1 + 4);
	seen_done(&seen);

	/* A limit above it finds the file. */
	seen = (struct seen){0};
	opt.max_depth = levels + 1;
	check_int(scan_tree(top, &opt, collect_cb, &seen), 0);
	deep = xmalloc(levels * 2 + 64);
	deep[0] = '\0';
	strcat(deep, "file ");
	for (unsigned i = 0; i < levels; i++)
		strcat(deep, "d/");
	strcat(deep, "bottom 10 0");
	expected[0] = deep;
	check_seen(&seen, expected, 1);
	seen_done(&seen);
	free(deep);
	close(top);
}

/* 100 k files: every one seen exactly once, and memory does not grow with them. */
struct many {
	unsigned char *seen; /* one byte per file */
	size_t n;
	size_t batches;
};

static int
many_cb(const struct scan_entry *e, size_t n, void *userdata)
{
	struct many *m = userdata;

	m->batches++;
	check(n <= SCAN_BATCH_SIZE);
	for (size_t i = 0; i < n; i++) {
		unsigned d, f;

		check_int(e[i].kind, SCAN_FILE);
		check(sscanf(e[i].path, "d%u/f%u", &d, &f) == 2);
		check(d < 100 && f < 1000);
		check(m->seen[d * 1000 + f] == 0);
		m->seen[d * 1000 + f] = 1;
		m->n++;
	}
	return 0;
}

static long
max_rss_kib(void)
{
	struct rusage ru;

	check(getrusage(RUSAGE_SELF, &ru) == 0);
	return ru.ru_maxrss;
}

static void
test_many(void)
{
	char path[PATH_MAX + 16];
	struct many m = {0};
	long rss;
	int top;

	snprintf(path, sizeof(path), "%s/many", root);
	check(mkdir(path, 0755) == 0);
	top = open_dir(path);
	/* Hard links to one empty file per directory (links per inode are limited):
	 * ten times faster to make than new files. */
	for (unsigned d = 0; d < 100; d++) {
		char name[32];
		int fd;

		snprintf(name, sizeof(name), "d%u", d);
		check(mkdirat(top, name, 0755) == 0);
		fd = openat(top, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		check(fd >= 0);
		make_file(fd, "f0", "");
		for (unsigned f = 1; f < 1000; f++) {
			snprintf(name, sizeof(name), "f%u", f);
			check(linkat(fd, "f0", fd, name, 0) == 0);
		}
		close(fd);
	}
	m.seen = xcalloc(100000, 1);
	rss = max_rss_kib();
	check_int(scan_tree(top, NULL, many_cb, &m), 0);
	check_int(m.n, 100000);
	check_int(m.batches, 100);
#ifndef UNDER_ASAN
	/* Holding the entries would take several MiB; the scanner needs well under one. */
	check(max_rss_kib() - rss < 2048);
#else
	(void)rss;
#endif
	free(m.seen);
	close(top);
}

/* Each file's link count, as the indexer gets it (issue 11: hard links are problems). */
static int
links_cb(const struct scan_entry *e, size_t n, void *userdata)
{
	struct seen *seen = userdata;

	for (size_t i = 0; i < n; i++) {
		seen->lines = xreallocarray(seen->lines, seen->n + 1, sizeof(char *));
		seen->lines[seen->n++] = xprintf("%s %llu", e[i].path, (unsigned long long)e[i].links);
	}
	return 0;
}

static void
test_links(void)
{
	char path[PATH_MAX + 16], outside[PATH_MAX + 32];
	const char *expected[] = {"alone 1", "pair-a 2", "pair-b 2", "to-outside 2"};
	struct seen seen = {0};
	int top;

	snprintf(path, sizeof(path), "%s/links", root);
	snprintf(outside, sizeof(outside), "%s/outside-secret", root);
	check(mkdir(path, 0755) == 0);
	top = open_dir(path);
	make_file(top, "alone", "1");
	make_file(top, "pair-a", "2");
	check(linkat(top, "pair-a", top, "pair-b", 0) == 0);
	make_file(AT_FDCWD, outside, "outside");
	check(linkat(AT_FDCWD, outside, top, "to-outside", 0) == 0);
	check_int(scan_tree(top, NULL, links_cb, &seen), 0);
	check_seen(&seen, expected, ELEMENTSOF(expected));
	seen_done(&seen);
	close(top);
}

int
main(void)
{
	const char *tmpdir = getenv("TMPDIR");
	char cmd[PATH_MAX + 64];

	snprintf(root, sizeof(root), "%s/test-scan.XXXXXX", tmpdir ? tmpdir : "/tmp");
	check(mkdtemp(root) != NULL);
	check(chmod(root, 0755) == 0);
	test_mixed();
	test_other_fs();
	test_batches_and_cancel();
	test_exclude();
	test_deep();
	test_many();
	test_links();
	check(snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s' && rm -rf '%s'", root, root) <
	      (int)sizeof(cmd));
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
	return 0;
}
