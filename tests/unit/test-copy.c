/*
 * Tests for the copy engine (daemon/engine/copy.c) on scratch directories under
 * $TMPDIR: byte-identical copies and their MD5s, stale sources, cancel and
 * resume, a full drive (a 2 MiB tmpfs in a private mount namespace, as root),
 * symlinks (with openat2 and, under a seccomp filter, without), verification.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <openssl/evp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "copy.h"
#include "test.h"
#include "util.h"

#define MIB (1u << 20)
#define MTIME_NS 1600000000123456789LL

static char root[PATH_MAX];
static int src_fd = -1; /* the "staging" tree */
static int dst_fd = -1; /* the "drive" */

struct capture {
	int n_checkpoints;
	struct copy_block *blocks; /* of the last checkpoint */
	size_t n_blocks;
	char tmp_name[NAME_MAX + 1];
	atomic_bool cancel;
	atomic_bool pause;
	uint64_t stop_at; /* set cancel (or pause) once this many bytes are done */
	bool use_pause;
	const char *modify; /* source to change once stop_at bytes are done */
	bool shrink;
};

static uint64_t rng = 88172645463325252ull;

static void
fill_random(unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		buf[i] = (unsigned char)rng;
	}
}

static void
set_mtime(int dirfd, const char *path)
{
	struct timespec ts[2] = {
	    {.tv_sec = MTIME_NS / 1000000000, .tv_nsec = MTIME_NS % 1000000000},
	    {.tv_sec = MTIME_NS / 1000000000, .tv_nsec = MTIME_NS % 1000000000},
	};

	check(utimensat(dirfd, path, ts, AT_SYMLINK_NOFOLLOW) == 0);
}

/* Write a random file of size bytes (parents must exist) with mtime MTIME_NS. */
static unsigned char *
make_file(int dirfd, const char *path, size_t size)
{
	unsigned char *data = xmalloc(size + 1);
	int fd;

	fill_random(data, size);
	fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	check(fd >= 0);
	check(write(fd, data, size) == (ssize_t)size);
	check(close(fd) == 0);
	set_mtime(dirfd, path);
	return data;
}

/* The whole file, or NULL if it does not exist. */
static unsigned char *
slurp(int dirfd, const char *path, size_t *ret_size)
{
	struct stat st;
	unsigned char *data;
	int fd;

	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
	check(fstat(fd, &st) == 0);
	data = xmalloc((size_t)st.st_size + 1);
	check(read(fd, data, (size_t)st.st_size) == st.st_size);
	close(fd);
	*ret_size = (size_t)st.st_size;
	return data;
}

static bool
exists(int dirfd, const char *path)
{
	struct stat st;

	return fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void
md5(const void *buf, size_t len, unsigned char out[16])
{
	check(EVP_Digest(buf, len, out, NULL, EVP_md5(), NULL) == 1);
}

static void
progress_cb(uint64_t done, void *userdata)
{
	struct capture *cap = userdata;
	int fd;

	if (cap == NULL || cap->stop_at == 0 || done < cap->stop_at)
		return;
	cap->stop_at = 0;
	if (cap->modify == NULL) {
		atomic_store(cap->use_pause ? &cap->pause : &cap->cancel, true);
		return;
	}
	fd = openat(src_fd, cap->modify, O_WRONLY | O_CLOEXEC);
	check(fd >= 0);
	if (cap->shrink)
		check(ftruncate(fd, 1) == 0);
	else
		check(pwrite(fd, "x", 1, 0) == 1);
	close(fd);
}

static void
checkpoint_cb(const struct copy_checkpoint *cp, void *userdata)
{
	struct capture *cap = userdata;

	/* Checkpoints only move forward, also when synced in the background. */
	check(cap->n_checkpoints == 0 || cp->n_blocks > cap->n_blocks);
	cap->n_checkpoints++;
	free(cap->blocks);
	cap->blocks = xreallocarray(NULL, cp->n_blocks, sizeof(*cp->blocks));
	memcpy(cap->blocks, cp->blocks, cp->n_blocks * sizeof(*cp->blocks));
	cap->n_blocks = cp->n_blocks;
	snprintf(cap->tmp_name, sizeof(cap->tmp_name), "%s", cp->tmp_name);
}

static struct copy_request
request(const char *src, const char *dst, size_t size, struct capture *cap)
{
	return (struct copy_request){
	    .src_dirfd = src_fd,
	    .src_path = src,
	    .expected_size = size,
	    .expected_mtime_ns = MTIME_NS,
	    .dst_dirfd = dst_fd,
	    .dst_path = dst,
	    .verify = true,
	    .cancel = cap != NULL ? &cap->cancel : NULL,
	    .pause = cap != NULL ? &cap->pause : NULL,
	    .progress = progress_cb,
	    .checkpoint = cap != NULL ? checkpoint_cb : NULL,
	    .userdata = cap,
	};
}

/* res describes data exactly: blocks of bs, their MD5s, the whole MD5; dst holds data. */
static void
check_copy(const struct copy_result *res, const unsigned char *data, size_t size, uint32_t bs,
           const char *dst)
{
	unsigned char sum[16], *copy;
	size_t copy_size, n = (size + bs - 1) / bs;
	char tmp[NAME_MAX + 1];

	check_int(res->bytes, size);
	check_int(res->n_blocks, n);
	for (size_t i = 0; i < n; i++) {
		size_t len = size - i * bs < bs ? size - i * bs : bs;

		check_int(res->blocks[i].offset, (uint64_t)i * bs);
		check_int(res->blocks[i].length, len);
		md5(data + i * bs, len, sum);
		check(memcmp(res->blocks[i].md5, sum, 16) == 0);
	}
	md5(data, size, sum);
	check(memcmp(res->md5, sum, 16) == 0);
	copy = slurp(dst_fd, dst, &copy_size);
	check(copy != NULL);
	check_int(copy_size, size);
	check(memcmp(copy, data, size) == 0);
	free(copy);
	check(copy_tmp_name(dst, tmp) == 0);
	check(!exists(dst_fd, tmp));
	check_str(res->detail, "");
}

static void
test_sizes(void)
{
	static const size_t sizes[] = {0, 1, 4 * MIB, 4 * MIB + 1, 13 * MIB + 12345};
	struct copier *c = copier_new();

	check(c != NULL);
	check(mkdirat(src_fd, "sizes", 0755) == 0);
	for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
		char src[64], dst[64];
		unsigned char *data;
		struct copy_request req;
		struct copy_result res;

		snprintf(src, sizeof(src), "sizes/f%zu", sizes[i]);
		snprintf(dst, sizeof(dst), "a/b/c/f%zu", sizes[i]);
		data = make_file(src_fd, src, sizes[i]);
		req = request(src, dst, sizes[i], NULL);
		/* The first copies go through copy_file(), the rest share one copier. */
		check_int(i < 2 ? copy_file(&req, &res) : copier_copy(c, &req, &res), 0);
		check(res.verified);
		check_copy(&res, data, sizes[i], COPY_BLOCK_SIZE, dst);
		copy_result_done(&res);
		check(res.blocks == NULL);
		free(data);
	}
	copier_free(c);
}

/* A small block size: many blocks, pipelined, through one copier. */
static void
test_small_blocks(void)
{
	struct copier *c = copier_new();
	static const size_t sizes[] = {4096, 8192, 65536 * 3, 65536 * 3 + 1, 1000000};

	check(mkdirat(src_fd, "small", 0755) == 0);
	for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
		char src[64];
		unsigned char *data;
		struct copy_request req;
		struct copy_result res;

		snprintf(src, sizeof(src), "small/f%zu", i);
		data = make_file(src_fd, src, sizes[i]);
		req = request(src, src, sizes[i], NULL);
		req.block_size = 65536;
		check_int(copier_copy(c, &req, &res), 0);
		check_copy(&res, data, sizes[i], 65536, src);
		copy_result_done(&res);
		free(data);
	}
	copier_free(c);
}

static void
test_bad_requests(void)
{
	static const char *const bad[] = {"",     "/etc/passwd", "../x", "a/../x",
	                                  "a//b", "a/",          "./a",  "a/."};
	struct copy_request req;
	struct copy_result res;
	char name[NAME_MAX + 1], longname[300];

	free(make_file(src_fd, "bad", 10));
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		req = request(bad[i], "bad", 10, NULL);
		check_int(copy_file(&req, &res), -EINVAL);
		req = request("bad", bad[i], 10, NULL);
		check_int(copy_file(&req, &res), -EINVAL);
		check(res.blocks == NULL);
	}
	req = request("bad", "bad", 10, NULL);
	req.block_size = 1000;
	check_int(copy_file(&req, &res), -EINVAL);
	req.block_size = 0;
	req.tmp_name = "bad";
	check_int(copy_file(&req, &res), -EINVAL);
	req.tmp_name = "x/y";
	check_int(copy_file(&req, &res), -EINVAL);
	check(!exists(dst_fd, "bad"));

	/* The default temporary name, cut to fit NAME_MAX at a character boundary. */
	check_int(copy_tmp_name("dir/file.bin", name), 0);
	check_str(name, "file.bin.seedd-tmp");
	memset(longname, 'a', sizeof(longname));
	memcpy(longname + 244, "\xc3\xa9", 2);
	longname[255] = '\0';
	check_int(copy_tmp_name(longname, name), 0);
	check_int(strlen(name), 244 + strlen(COPY_TMP_SUFFIX));
	check(memcmp(name + 244, COPY_TMP_SUFFIX, strlen(COPY_TMP_SUFFIX)) == 0);
	check_int(copy_tmp_name("../x", name), -EINVAL);
}

static void
test_stale(void)
{
	static const size_t sizes[] = {1000, 9 * MIB};
	struct copy_request req;
	struct copy_result res;

	check(mkdirat(src_fd, "stale", 0755) == 0);
	free(make_file(src_fd, "stale/a", 1000));
	req = request("stale/a", "stale/a", 999, NULL);
	check_int(copy_file(&req, &res), -ESTALE);
	req = request("stale/a", "stale/a", 1000, NULL);
	req.expected_mtime_ns = MTIME_NS + 1;
	check_int(copy_file(&req, &res), -ESTALE);
	check(strstr(res.detail, "since indexing") != NULL);
	check(!exists(dst_fd, "stale/a"));
	check(!exists(dst_fd, "stale/a.seedd-tmp"));

	/* Changed (in place, then shrunk) while being copied. */
	for (size_t i = 0; i < ELEMENTSOF(sizes) * 2; i++) {
		struct capture cap = {.stop_at = 1, .modify = "stale/b", .shrink = i % 2};
		size_t size = sizes[i / 2];

		free(make_file(src_fd, "stale/b", size));
		req = request("stale/b", "stale/b", size, &cap);
		check_int(copy_file(&req, &res), -ESTALE);
		check(res.blocks == NULL);
		check(!exists(dst_fd, "stale/b"));
		check(!exists(dst_fd, "stale/b.seedd-tmp"));
		free(cap.blocks);
	}

	/* A fifo where the file was: refused without blocking. */
	check(mkfifoat(src_fd, "stale/fifo", 0644) == 0);
	set_mtime(src_fd, "stale/fifo");
	req = request("stale/fifo", "stale/fifo", 0, NULL);
	check_int(copy_file(&req, &res), -ESTALE);
	check(!exists(dst_fd, "stale/fifo"));
}

/* The temporary file of a capture, in the directory of dst. */
static const char *
tmp_path(const char *dst, const struct capture *cap)
{
	static char buf[PATH_MAX];
	const char *slash = strrchr(dst, '/');

	snprintf(buf, sizeof(buf), "%.*s%s", slash ? (int)(slash - dst + 1) : 0, dst,
	         cap->tmp_name);
	return buf;
}

/* Cancel (or pause) after stop_at bytes; returns the temporary file's last checkpoint. */
static void
cancel_copy(const char *path, size_t size, uint32_t bs, uint32_t every, uint64_t stop_at,
            bool use_pause, struct capture *cap)
{
	struct copy_request req;
	struct copy_result res;

	*cap = (struct capture){.stop_at = stop_at, .use_pause = use_pause};
	req = request(path, path, size, cap);
	req.block_size = bs;
	req.checkpoint_every = every;
	check_int(copy_file(&req, &res), -ECANCELED);
	check_str(res.detail, use_pause ? "paused" : "cancelled");
	check(res.blocks == NULL);
	check(!exists(dst_fd, path));
	check(exists(dst_fd, tmp_path(path, cap)));
}

static int
resume_copy(const char *path, size_t size, uint32_t bs, struct capture *cap,
            struct copy_result *res)
{
	struct copy_checkpoint cp = {
	    .tmp_name = cap->tmp_name,
	    .n_blocks = cap->n_blocks,
	    .blocks = cap->blocks,
	};
	struct copy_request req = request(path, path, size, NULL);

	req.block_size = bs;
	req.resume = &cp;
	return copy_file(&req, res);
}

static void
test_cancel_resume(void)
{
	const size_t size = 3 * MIB + 777;
	const uint32_t bs = 65536;
	struct capture cap;
	struct copy_result res;
	unsigned char *data;
	int fd;

	check(mkdirat(src_fd, "resume", 0755) == 0);
	data = make_file(src_fd, "resume/f", size);

	/*
	 * Checkpoints every 4 blocks (synced in the background: the one at 8 is
	 * skipped if the one at 4 is still syncing), then one at the stop: 11
	 * blocks written, or up to 3 more as blocks are written in runs of up to 4.
	 */
	cancel_copy("resume/f", size, bs, 4, 11 * bs, false, &cap);
	check(cap.n_checkpoints >= 2 && cap.n_checkpoints <= 4);
	check(cap.n_blocks >= 11 && cap.n_blocks <= 14);
	check_int(resume_copy("resume/f", size, bs, &cap, &res), 0);
	check_copy(&res, data, size, bs, "resume/f");
	copy_result_done(&res);
	free(cap.blocks);
	check(unlinkat(dst_fd, "resume/f", 0) == 0);

	/* Resume from an older checkpoint than the file holds: the rest is rewritten. */
	cancel_copy("resume/f", size, bs, 4, 11 * bs, true, &cap);
	cap.n_blocks = 8;
	check_int(resume_copy("resume/f", size, bs, &cap, &res), 0);
	check_copy(&res, data, size, bs, "resume/f");
	copy_result_done(&res);
	free(cap.blocks);
	check(unlinkat(dst_fd, "resume/f", 0) == 0);

	/* A checkpoint hash that does not match the source: rewritten from that block. */
	cancel_copy("resume/f", size, bs, 100, 11 * bs, false, &cap);
	check_int(cap.n_checkpoints, 1);
	cap.blocks[5].md5[0] ^= 1;
	check_int(resume_copy("resume/f", size, bs, &cap, &res), 0);
	check_copy(&res, data, size, bs, "resume/f");
	copy_result_done(&res);
	free(cap.blocks);
	check(unlinkat(dst_fd, "resume/f", 0) == 0);

	/* A committed block damaged on the drive is caught by the verification. */
	cancel_copy("resume/f", size, bs, 4, 11 * bs, false, &cap);
	fd = openat(dst_fd, tmp_path("resume/f", &cap), O_WRONLY | O_CLOEXEC);
	check(fd >= 0);
	check(pwrite(fd, "\xff", 1, 2 * bs + 3) == 1);
	close(fd);
	check_int(resume_copy("resume/f", size, bs, &cap, &res), -EIO);
	check(strstr(res.detail, "block 2 ") != NULL);
	check(!exists(dst_fd, "resume/f"));
	check(!exists(dst_fd, tmp_path("resume/f", &cap)));
	free(cap.blocks);

	/* A checkpoint whose temporary file is gone: copied from the start. */
	cancel_copy("resume/f", size, bs, 4, 11 * bs, false, &cap);
	check_int(copy_file_remove_partial(dst_fd, "resume/f", NULL), 0);
	check(!exists(dst_fd, tmp_path("resume/f", &cap)));
	check_int(copy_file_remove_partial(dst_fd, "resume/f", NULL), 0);
	check_int(resume_copy("resume/f", size, bs, &cap, &res), 0);
	check_copy(&res, data, size, bs, "resume/f");
	copy_result_done(&res);
	free(cap.blocks);
	free(data);

	/* The real block size: 41 MiB, cancelled after the second block (or the run it is in). */
	data = make_file(src_fd, "resume/big", 41 * MIB);
	cancel_copy("resume/big", 41 * MIB, 0, 0, 2 * COPY_BLOCK_SIZE, false, &cap);
	check(cap.n_blocks >= 2 && cap.n_blocks <= 5);
	check_int(resume_copy("resume/big", 41 * MIB, 0, &cap, &res), 0);
	check_copy(&res, data, 41 * MIB, COPY_BLOCK_SIZE, "resume/big");
	copy_result_done(&res);
	free(cap.blocks);
	free(data);
}

static void
test_verify(void)
{
	struct copy_request req;
	struct copy_result res;
	char detail[COPY_DETAIL_MAX];
	unsigned char *data;
	int fd;

	check(mkdirat(src_fd, "verify", 0755) == 0);
	data = make_file(src_fd, "verify/f", 9 * MIB);
	req = request("verify/f", "verify/f", 9 * MIB, NULL);
	check_int(copy_file(&req, &res), 0);
	check_int(copy_verify(dst_fd, "verify/f", res.blocks, res.n_blocks, detail), 0);

	fd = openat(dst_fd, "verify/f", O_WRONLY | O_CLOEXEC);
	check(fd >= 0);
	check(pwrite(fd, data + 2 * MIB, 1, 2 * MIB) == 1);
	check(fdatasync(fd) == 0);
	check_int(copy_verify(dst_fd, "verify/f", res.blocks, res.n_blocks, detail), 0);
	data[2 * MIB] ^= 0x40;
	check(pwrite(fd, data + 2 * MIB, 1, 2 * MIB) == 1);
	check(fdatasync(fd) == 0);
	check_int(copy_verify(dst_fd, "verify/f", res.blocks, res.n_blocks, detail), -EIO);
	check_str(detail, "block 0 at offset 0 differs on the drive");
	data[2 * MIB] ^= 0x40;
	check(pwrite(fd, data + 2 * MIB, 1, 2 * MIB) == 1);
	data[COPY_BLOCK_SIZE + 5] ^= 1;
	check(pwrite(fd, data + COPY_BLOCK_SIZE + 5, 1, COPY_BLOCK_SIZE + 5) == 1);
	check(fdatasync(fd) == 0);
	check_int(copy_verify(dst_fd, "verify/f", res.blocks, res.n_blocks, detail), -EIO);
	check_str(detail, "block 1 at offset 4194304 differs on the drive");
	check(ftruncate(fd, 9 * MIB - 1) == 0);
	check_int(copy_verify(dst_fd, "verify/f", res.blocks, res.n_blocks, detail), -EIO);
	check(strstr(detail, "expected 9437184") != NULL);
	close(fd);
	check_int(copy_verify(dst_fd, "verify/missing", res.blocks, res.n_blocks, detail), -ENOENT);
	copy_result_done(&res);
	free(data);

	/* A one-block file, and an empty one. */
	data = make_file(src_fd, "verify/small", 5000);
	req = request("verify/small", "verify/small", 5000, NULL);
	check_int(copy_file(&req, &res), 0);
	fd = openat(dst_fd, "verify/small", O_WRONLY | O_CLOEXEC);
	check(pwrite(fd, "\0", 1, 4999) == 1 && fdatasync(fd) == 0);
	close(fd);
	check_int(copy_verify(dst_fd, "verify/small", res.blocks, res.n_blocks, NULL),
	          data[4999] == 0 ? 0 : -EIO);
	copy_result_done(&res);
	free(data);
	free(make_file(dst_fd, "verify/empty", 0));
	check_int(copy_verify(dst_fd, "verify/empty", NULL, 0, detail), 0);
	check_int(copy_verify(dst_fd, "verify/small", NULL, 0, detail), -EIO);
}

/*
 * Batch mode: the final name written directly, no sync or verification inside;
 * then syncfs and copier_verify_batch (with one bad, one missing, one large file).
 */
static void
test_defer_sync(void)
{
	enum { N = 150 };
	struct copier *c = copier_new();
	struct copy_result *res = xcalloc(N, sizeof(*res));
	struct copy_verify_item *items = xcalloc(N, sizeof(*items));
	unsigned char *data[N];
	char path[N][32], src[32];
	struct capture cap = {.stop_at = 1, .modify = "batch/stale"};
	struct copy_request req;
	struct copy_result stale;
	int fd;

	check(mkdirat(src_fd, "batch", 0755) == 0);
	for (size_t i = 0; i < N; i++) {
		size_t size = i == 7 ? 9 * MIB : 1 + i * 100;

		snprintf(src, sizeof(src), "batch/f%zu", i);
		snprintf(path[i], sizeof(path[i]), "batch/%s/f%zu", i % 3 ? "x" : "y", i);
		data[i] = make_file(src_fd, src, size);
		req = request(src, path[i], size, NULL);
		req.defer_sync = true;
		check_int(copier_copy(c, &req, &res[i]), 0);
		check(!res[i].verified);
		check_str(res[i].tmp_name, src + 6);
		items[i] = (struct copy_verify_item){path[i], res[i].blocks, res[i].n_blocks, 1};
	}
	check(syncfs(dst_fd) == 0);
	check_int(copier_verify_batch(c, dst_fd, items, N, NULL), 0);
	for (size_t i = 0; i < N; i++) {
		check_int(items[i].result, 0);
		check_copy(&res[i], data[i], i == 7 ? 9 * MIB : 1 + i * 100, COPY_BLOCK_SIZE,
		           path[i]);
	}

	/* A damaged file, a missing one, a damaged large one: each item says which. */
	fd = openat(dst_fd, path[100], O_WRONLY | O_CLOEXEC);
	check(fd >= 0 && pwrite(fd, "\x01", 1, 5) == 1 && fdatasync(fd) == 0);
	close(fd);
	fd = openat(dst_fd, path[7], O_WRONLY | O_CLOEXEC);
	check(fd >= 0 && pwrite(fd, "\x01", 1, 5 * MIB) == 1 && fdatasync(fd) == 0);
	close(fd);
	check(unlinkat(dst_fd, path[120], 0) == 0);
	check_int(copier_verify_batch(c, dst_fd, items, N, NULL),
	          data[7][5 * MIB] == 1 ? -ENOENT : -EIO);
	for (size_t i = 0; i < N; i++) {
		if (i == 120)
			check_int(items[i].result, -ENOENT);
		else if (i == 100)
			check_int(items[i].result, data[100][5] == 1 ? 0 : -EIO);
		else if (i == 7)
			check_int(items[i].result, data[7][5 * MIB] == 1 ? 0 : -EIO);
		else
			check_int(items[i].result, 0);
	}
	for (size_t i = 0; i < N; i++) {
		copy_result_done(&res[i]);
		free(data[i]);
	}

	/* A batch-mode file that changes while copied is removed, not left half-written. */
	free(make_file(src_fd, "batch/stale", 5000));
	req = request("batch/stale", "batch/stale", 5000, &cap);
	req.defer_sync = true;
	check_int(copier_copy(c, &req, &stale), -ESTALE);
	check(!exists(dst_fd, "batch/stale"));
	free(cap.blocks);
	copier_free(c);
	free(res);
	free(items);
}

/* One copier on two drives with the same directory names: each file lands on its own drive. */
static void
test_two_drives(void)
{
	char path[PATH_MAX + 16];
	struct copier *c = copier_new();
	struct copy_request req;
	struct copy_result res;
	int other;

	snprintf(path, sizeof(path), "%s/drive2", root);
	check(mkdir(path, 0755) == 0);
	other = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	check(other >= 0);
	check(mkdirat(src_fd, "two", 0755) == 0);
	free(make_file(src_fd, "two/f1", 100));
	free(make_file(src_fd, "two/f2", 100));
	req = request("two/f1", "same/dir/f1", 100, NULL);
	check_int(copier_copy(c, &req, &res), 0);
	copy_result_done(&res);
	req = request("two/f2", "same/dir/f2", 100, NULL);
	req.dst_dirfd = other;
	check_int(copier_copy(c, &req, &res), 0);
	copy_result_done(&res);
	check_int(copier_verify(c, dst_fd, "same/dir/f2", NULL, 0, NULL, NULL), -ENOENT);
	check(exists(dst_fd, "same/dir/f1") && !exists(dst_fd, "same/dir/f2"));
	check(exists(other, "same/dir/f2") && !exists(other, "same/dir/f1"));
	close(other);
	copier_free(c);
}

static void
check_refused(const char *src, const char *dst)
{
	struct copy_request req = request(src, dst, 100, NULL);
	struct copy_result res;

	check_int(copy_file(&req, &res), -ELOOP);
	check(res.blocks == NULL);
}

/* Symlinks in the source or destination path are never followed. */
static void
symlink_cases(const char *tag)
{
	char dst[64];
	size_t size;
	unsigned char *data;

	snprintf(dst, sizeof(dst), "out-%s", tag);
	check_refused("link-passwd", dst);
	check_refused("link-dir/secret", dst);
	check(!exists(dst_fd, dst));
	snprintf(dst, sizeof(dst), "evil/%s", tag);
	check_refused("sym/plain", dst);
	snprintf(dst, sizeof(dst), "../outside/%s", tag);
	check(!exists(src_fd, dst));
	snprintf(dst, sizeof(dst), "../outside/%s.seedd-tmp", tag);
	check(!exists(src_fd, dst));
	data = slurp(src_fd, "../outside/secret", &size);
	check(data != NULL && size == 6 && memcmp(data, "secret", 6) == 0);
	free(data);
	snprintf(dst, sizeof(dst), "plain-%s", tag);
	{
		struct copy_request req = request("sym/plain", dst, 100, NULL);
		struct copy_result res;
		int fd = openat(src_fd, "sym/plain", O_RDONLY | O_CLOEXEC);

		check(fd >= 0);
		close(fd);
		check_int(copy_file(&req, &res), 0);
		copy_result_done(&res);
	}
}

/* Make openat2 fail with ENOSYS, as on an old kernel, for this process. */
static void
block_openat2(void)
{
	struct sock_filter filter[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = ELEMENTSOF(filter), .filter = filter};

	check(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
	check(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0);
	check(syscall(SYS_openat2, AT_FDCWD, ".", NULL, 0) < 0 && errno == ENOSYS);
}

static void
test_symlinks(void)
{
	int status, outside, fd;
	pid_t pid;

	check(mkdirat(src_fd, "../outside", 0755) == 0);
	outside = openat(src_fd, "../outside", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	check(outside >= 0);
	fd = openat(outside, "secret", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	check(fd >= 0 && write(fd, "secret", 6) == 6);
	close(fd);
	close(outside);
	check(symlinkat("/etc/passwd", src_fd, "link-passwd") == 0);
	check(symlinkat("../outside", src_fd, "link-dir") == 0);
	check(mkdirat(src_fd, "sym", 0755) == 0);
	free(make_file(src_fd, "sym/plain", 100));
	check(symlinkat("../outside", dst_fd, "evil") == 0);

	symlink_cases("openat2");
	pid = fork();
	check(pid >= 0);
	if (pid == 0) {
		block_openat2();
		symlink_cases("fallback");
		_exit(0);
	}
	check(waitpid(pid, &status, 0) == pid);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	check(exists(dst_fd, "plain-fallback"));

	/* A symlink where the temporary file goes is not followed either. */
	check(symlinkat("../outside/planted", dst_fd, "planted.seedd-tmp") == 0);
	check_refused("sym/plain", "planted");
	check(!exists(src_fd, "../outside/planted"));
}

/* In a child: a 2 MiB tmpfs as the drive, in a mount namespace of its own. */
static int
enospc_child(void)
{
	struct copy_request req;
	struct copy_result res;
	char target[PATH_MAX + 16];

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		printf("skip ENOSPC: cannot make a mount namespace: %s\n", strerror(errno));
		return TEST_SKIP;
	}
	snprintf(target, sizeof(target), "%s/small-drive", root);
	check(mkdir(target, 0755) == 0);
	if (mount("tmpfs", target, "tmpfs", 0, "size=2m") < 0) {
		printf("skip ENOSPC: cannot mount a tmpfs: %s\n", strerror(errno));
		return TEST_SKIP;
	}
	dst_fd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	check(dst_fd >= 0);

	/* Over one block: the reservation fails before any copying. */
	req = request("enospc/big", "d/big", 13 * MIB, NULL);
	check_int(copy_file(&req, &res), -ENOSPC);
	check(!exists(dst_fd, "d/big.seedd-tmp") && !exists(dst_fd, "d/big"));
	/* One block: the write fails. */
	req = request("enospc/mid", "d/mid", 3 * MIB, NULL);
	check_int(copy_file(&req, &res), -ENOSPC);
	check(!exists(dst_fd, "d/mid.seedd-tmp") && !exists(dst_fd, "d/mid"));
	/* What fits still works. */
	req = request("enospc/mid", "d/mid", 3 * MIB, NULL);
	req.src_path = "enospc/fits";
	req.expected_size = MIB;
	check_int(copy_file(&req, &res), 0);
	copy_result_done(&res);
	return 0;
}

static void
test_enospc(void)
{
	int status;
	pid_t pid;

	if (geteuid() != 0) {
		printf("skip ENOSPC: not root, cannot mount a small tmpfs\n");
		return;
	}
	check(mkdirat(src_fd, "enospc", 0755) == 0);
	free(make_file(src_fd, "enospc/big", 13 * MIB));
	free(make_file(src_fd, "enospc/mid", 3 * MIB));
	free(make_file(src_fd, "enospc/fits", MIB));
	fflush(stdout);
	pid = fork();
	check(pid >= 0);
	if (pid == 0)
		_exit(enospc_child());
	check(waitpid(pid, &status, 0) == pid);
	check(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == TEST_SKIP));
}

/* Copy src to dst with c and check the result; returns the copy's direct_error. */
static int
copy_checked(struct copier *c, const char *src, const char *dst, const unsigned char *data,
             size_t size, unsigned *ret_what)
{
	struct copy_request req = request(src, dst, size, NULL);
	struct copy_result res;
	int err;

	check_int(copier_copy(c, &req, &res), 0);
	check(res.verified);
	check_copy(&res, data, size, COPY_BLOCK_SIZE, dst);
	err = res.direct_error;
	*ret_what = res.direct_what;
	copy_result_done(&res);
	return err;
}

/*
 * The O_DIRECT probe, and a drive that refuses O_DIRECT at run time (the
 * test hook makes it fail with EFAULT, as FUSE drives may):
 * the copy goes on buffered, verified, and the copier stays buffered.
 */
static void
test_direct_fallback(void)
{
	const size_t size = 13 * MIB + 4321;
	unsigned flags = 99, what = 0, probed;
	char detail[COPY_DETAIL_MAX];
	struct copier *c = copier_new();
	unsigned char *data;

	check_int(copy_direct_probe(dst_fd, &probed, detail), 0);
	check_str(detail, "");
	check(!exists(dst_fd, COPY_PROBE_NAME));
	if (probed != COPY_DIRECT_ALL)
		printf("note: the test directory takes O_DIRECT %#x only\n", probed);
	copy_test_direct_fault(COPY_DIRECT_WRITE, EFAULT);
	check_int(copy_direct_probe(dst_fd, &flags, NULL), 0);
	check_int(flags, probed & ~COPY_DIRECT_WRITE);
	copy_test_direct_fault(COPY_DIRECT_READ, EFAULT);
	check_int(copy_direct_probe(dst_fd, &flags, NULL), 0);
	check_int(flags, probed & ~COPY_DIRECT_READ);
	check(!exists(dst_fd, COPY_PROBE_NAME));

	check(mkdirat(src_fd, "direct", 0755) == 0);
	data = make_file(src_fd, "direct/f", size);
	/* Writes refused: the run is redone buffered, the drive loses O_DIRECT writes. */
	copy_test_direct_fault(COPY_DIRECT_WRITE, EFAULT);
	check_int(copier_direct(c), COPY_DIRECT_ALL);
	if (probed & COPY_DIRECT_WRITE) {
		check_int(copy_checked(c, "direct/f", "direct/w1", data, size, &what), EFAULT);
		check_int(what, COPY_DIRECT_WRITE);
	} else
		(void)copy_checked(c, "direct/f", "direct/w1", data, size, &what);
	check_int(copier_direct(c) & COPY_DIRECT_WRITE, 0);
	/* The next file is written buffered from the start: the hook is not reached. */
	check_int(copy_checked(c, "direct/f", "direct/w2", data, size, &what), 0);
	check_int(what, 0);

	/* Re-reads refused: verified through the dropped cache, and reads go buffered. */
	copy_test_direct_fault(COPY_DIRECT_READ, EFAULT);
	copier_set_direct(c, COPY_DIRECT_ALL);
	if (probed & COPY_DIRECT_READ) {
		check_int(copy_checked(c, "direct/f", "direct/r1", data, size, &what), EFAULT);
		check(what & COPY_DIRECT_READ);
	} else
		(void)copy_checked(c, "direct/f", "direct/r1", data, size, &what);
	check_int(copier_direct(c) & COPY_DIRECT_READ, 0);
	/* The next file is re-read buffered: the hook is not reached. */
	check_int(copy_checked(c, "direct/f", "direct/r2", data, size, &what), 0);

	/* A drive probed as buffered-only never tries O_DIRECT. */
	copy_test_direct_fault(COPY_DIRECT_ALL, EFAULT);
	copier_set_direct(c, 0);
	check_int(copy_checked(c, "direct/f", "direct/b", data, size, &what), 0);
	copy_test_direct_fault(0, 0);
	copier_free(c);
	free(data);
}

static void
cleanup(void)
{
	char cmd[PATH_MAX + 32];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
}

int
main(void)
{
	const char *tmpdir = getenv("TMPDIR");

	snprintf(root, sizeof(root), "%s/test-copy.XXXXXX", tmpdir ? tmpdir : "/tmp");
	check(mkdtemp(root) != NULL);
	check(mkdirat(AT_FDCWD, root, 0755) < 0);
	{
		char path[PATH_MAX + 16];

		snprintf(path, sizeof(path), "%s/staging", root);
		check(mkdir(path, 0755) == 0);
		src_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		snprintf(path, sizeof(path), "%s/drive", root);
		check(mkdir(path, 0755) == 0);
		dst_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		check(src_fd >= 0 && dst_fd >= 0);
	}
	test_sizes();
	test_small_blocks();
	test_bad_requests();
	test_stale();
	test_cancel_resume();
	test_verify();
	test_direct_fallback();
	test_defer_sync();
	test_two_drives();
	test_symlinks();
	test_enospc();
	close(src_fd);
	close(dst_fd);
	cleanup();
	return 0;
}
