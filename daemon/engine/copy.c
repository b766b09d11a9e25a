/*
 * The per-file copy engine of drive prep (copy.h). Runs on a drive worker
 * thread, plus the reader, hasher, syncer and verifier threads of its copier.
 *
 * A file of more than one block goes through a pipeline over a ring of
 * RING_SLOTS block buffers:
 *   reader thread: pread block i into its slot (O_DIRECT where possible);
 *   hasher 0: the MD5s of blocks i..i+7, eight side by side (md5x8.c);
 *   hasher 1: block i into the whole-file MD5;
 *   caller thread: pwrite blocks i..i+3 with one pwritev (O_DIRECT where
 *     possible), and every checkpoint_every blocks have the syncer thread
 *     fdatasync the file while the copy goes on (the checkpoint callback
 *     follows, with the blocks' MD5s);
 *   verifier thread: wait for the write-back of block j <= i, drop it from the
 *     page cache, read it back from the device (O_DIRECT where possible) and
 *     compare it with the slot it was written from, which is then free.
 * The whole-file MD5 takes one core, the block MD5s a third of another, the
 * three I/O streams overlap them, and bypassing the page cache saves the
 * copies into and out of it. The check
 * is a memcmp against bytes whose MD5 we record, not a third MD5, so a copy
 * with verification costs little more than one without. This is the design's
 * check (the device holds the bytes we hashed), done per block after its
 * write-back rather than once after the final fdatasync. If the verifier
 * cannot vouch for every block (a mismatch, or a filesystem that refuses
 * O_DIRECT or sync_file_range), the whole file is verified again after
 * fdatasync (verify_file) and that result counts. verify_file reads through
 * the ring as well, the two hashers splitting the block MD5s.
 *
 * A file of at most one block is done inline on the calling thread (its block
 * MD5 is its whole-file MD5) and verified after fdatasync: no thread hand-off.
 *
 * Only paths relative to the staging and drive directory fds are opened, never
 * following a symlink (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, else one
 * openat(O_NOFOLLOW) per component). Memory comes from the aborting x*
 * allocators (see util.h); the ring buffers are allocated once per copier.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "copy.h"
#include "md5x8.h"
#include "throttle.h"
#include "worker.h"
#include "util.h"

#define RING_SLOTS 16   /* room for a batch of MD5X8_LANES blocks and the I/O around it */
#define WRITE_RUN 4     /* blocks the caller writes with one pwritev (the device likes big I/O) */
#define VERIFY_GROUP 64 /* files whose reads copier_verify_batch() overlaps */
#define DIO_ALIGN 4096
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define ROUND_UP(x, a) (((x) + (a)-1) / (a) * (a))

/* One ring buffer and what the reader put in it. */
struct slot {
	unsigned char *buf; /* DIO_ALIGN-aligned, c->buf_size bytes */
	size_t len;         /* bytes read */
	int err;            /* 0 or -errno of the read */
	bool hashed;        /* md5 holds the MD5 of buf[0, len) */
	unsigned char md5[16];
};

/*
 * A hashing stage. In RING_COPY mode hasher 0 takes the MD5 of every chunk
 * (into its slot) and hasher 1 feeds every chunk to the whole-file MD5; in
 * RING_VERIFY mode hasher 0 hashes the even chunks and hasher 1 the odd ones.
 * n and busy are under the copier's lock; ctx is the hasher's own.
 */
struct hasher {
	pthread_t thread;
	bool started;
	bool busy;  /* hashing a chunk, unlocked */
	uint64_t n; /* chunks [0, n) done */
	int err;    /* an MD5 failed (OpenSSL out of memory) */
	unsigned index;
	EVP_MD_CTX *ctx;
	struct copier *c;
};

enum ring_mode { RING_COPY, RING_VERIFY };

/*
 * The syncer: fdatasync of a big file's checkpoint on a thread of its own, so
 * the copy goes on while the drive flushes. Its fields are under the copier's
 * lock; between a request and its collection the fd is the syncer's to use.
 */
enum sync_state { SYNC_IDLE, SYNC_ASKED, SYNC_RUNNING, SYNC_DONE };

struct syncer {
	pthread_t thread;
	bool started;
	enum sync_state state;
	int fd;
	size_t n_blocks; /* what the request covers: blocks [0, n_blocks) */
	int err;         /* SYNC_DONE: 0 or -errno */
};

/* The verifier stage; its fields but buf are under the copier's lock. */
struct verifier {
	pthread_t thread;
	bool started;
	bool active;
	bool busy;                       /* checking a block, unlocked */
	int wfd;                         /* the file being written (for sync_file_range) */
	int rfd;                         /* the same file, opened for reading */
	bool direct;                     /* rfd is O_DIRECT */
	const struct copy_block *blocks; /* entries below the caller's n_done are final */
	uint64_t done;                   /* blocks [0, done) matched */
	int err;                         /* a block did not match or could not be read */
	unsigned char *buf;              /* verifier thread only */
};

/* The last destination directory, kept open: files of one directory come in a row. */
struct dir_cache {
	dev_t dev; /* of the root directory it is below */
	ino_t ino;
	char *path; /* its path below the root ("" for the root itself) */
	size_t len;
	int fd; /* -1: empty */
};

struct copier {
	pthread_mutex_t lock;
	pthread_cond_t reader_cv;   /* the reader waits for work or a free slot */
	pthread_cond_t verifier_cv; /* the verifier waits for a written block */
	pthread_cond_t caller_cv;   /* the caller waits for the reader, hashers or verifier */
	pthread_cond_t hasher_cv;   /* the hashers wait for a chunk */
	pthread_cond_t syncer_cv;   /* the syncer waits for a request */
	pthread_t thread;
	bool thread_started;
	bool quit;
	struct verifier verifier;
	struct hasher hashers[2];
	struct syncer syncer;

	struct slot slots[RING_SLOTS];
	size_t buf_size;
	uint64_t n_read; /* chunks the reader has filled */
	uint64_t n_done; /* chunks the caller is done with */
	bool busy;       /* the reader is reading into a slot, unlocked */

	/* The current read job; set by the caller while the reader is idle. */
	bool active;
	int fd;
	bool direct;  /* O_DIRECT: read lengths rounded up to DIO_ALIGN */
	uint64_t pos; /* offset of the next chunk to read */
	uint64_t end;
	size_t chunk;
	enum ring_mode mode;
	unsigned char (*md5_out)[16]; /* RING_COPY: hasher 0 puts chunk k's MD5 in md5_out[k] */
	/*
	 * RING_COPY: the reader waits in throttle_take() before each read of the
	 * source; it stops waiting on the request's cancel or pause flag, or on
	 * halt (ring_stop). Set by the caller while the reader is idle.
	 */
	struct throttle *throttle;
	const atomic_bool *cancel, *pause;
	atomic_bool halt;

	/* The drive's O_DIRECT use (COPY_DIRECT_*) and why it last lost some; caller only. */
	unsigned drive_direct;
	int direct_error;
	unsigned direct_what;

	EVP_MD *md5;
	EVP_MD_CTX *block_ctx;    /* caller only */
	struct dir_cache dst_dir; /* caller only */
};

/* The state of one copier_copy() call. */
struct job {
	struct copier *c;
	const struct copy_request *req;
	struct copy_result *res;
	uint32_t bs;          /* block size */
	int src;              /* the staging file */
	int dir;              /* the destination's directory (the copier's dst_dir) */
	const char *name;     /* the destination's name in dir */
	int tmp;              /* the temporary file in dir */
	bool tmp_direct;      /* tmp is O_DIRECT: whole 4 KiB units are written */
	bool tmp_padded;      /* tmp was written past the file's size (cut in job_finish) */
	int vfd;              /* the temporary file for the verifier, or -1 */
	bool stream_verified; /* the verifier matched every block */
	size_t n_blocks;
	size_t resumed;            /* blocks [0, resumed) come from a checkpoint, unchecked */
	size_t written;            /* blocks [0, written) are in the temporary file */
	size_t committed;          /* blocks [0, committed) are durable and checkpointed */
	unsigned char (*md5s)[16]; /* pipelined: block MD5s from hasher 0 */
	size_t md5_done;           /* blocks [0, md5_done) have theirs in res->blocks */
};

_printf_(2, 3) static void set_detail(char *detail, const char *fmt, ...)
{
	va_list ap;

	if (detail == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(detail, COPY_DETAIL_MAX, fmt, ap);
	va_end(ap);
}

/* copy_test_direct_fault(): which O_DIRECT drive I/O fails, and with what. */
static atomic_uint fault_which;
static atomic_int fault_err;

void
copy_test_direct_fault(unsigned which, int err)
{
	atomic_store(&fault_err, err);
	atomic_store(&fault_which, which);
}

/* -err if the test hook fails this kind of O_DIRECT drive I/O, else 0. */
static int
direct_fault(unsigned which)
{
	return (atomic_load(&fault_which) & which) ? -atomic_load(&fault_err) : 0;
}

/*
 * Errors by which a filesystem may refuse O_DIRECT rather than fail the I/O:
 * EINVAL (alignment), EFAULT (FUSE), EOPNOTSUPP. Whether it was O_DIRECT is
 * told by redoing the I/O buffered: dislocker, for one, fails writes over
 * BitLocker's metadata with EFAULT however they come.
 */
static bool
direct_refused(int r)
{
	return r == -EINVAL || r == -EFAULT || r == -EOPNOTSUPP || r == -ENOTSUP;
}

/* The drive refused O_DIRECT for what (COPY_DIRECT_*) with errno err: never again. */
static void
copier_drop_direct(struct copier *c, unsigned what, int err)
{
	c->drive_direct &= ~what;
	if (c->direct_error == 0)
		c->direct_error = err;
	c->direct_what |= what;
}

static bool
flag_set(const atomic_bool *flag)
{
	return flag != NULL && atomic_load_explicit(flag, memory_order_relaxed);
}

static int
md5_buf(EVP_MD_CTX *ctx, const EVP_MD *md, const void *buf, size_t len, unsigned char out[16])
{
	if (!EVP_DigestInit_ex2(ctx, md, NULL) || !EVP_DigestUpdate(ctx, buf, len) ||
	    !EVP_DigestFinal_ex(ctx, out, NULL))
		return -EIO;
	return 0;
}

/*
 * Read up to want bytes at off; fewer only at end of file. With O_DIRECT the
 * length asked is rounded up (buf must have room) and a short read is the end.
 */
static ssize_t
read_full(int fd, unsigned char *buf, size_t want, uint64_t off, bool direct)
{
	size_t got = 0;

	while (got < want) {
		size_t ask = direct ? ROUND_UP(want - got, DIO_ALIGN) : want - got;
		ssize_t n = pread(fd, buf + got, ask, (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
		if (direct && (size_t)n < ask)
			break;
	}
	return (ssize_t)MIN(got, want);
}

/* pwritev() of all of iov (n <= IOV_MAX entries, modified) at off. */
static int
writev_full(int fd, struct iovec *iov, int n, uint64_t off)
{
	while (n > 0) {
		ssize_t w = pwritev(fd, iov, n, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -ENOSPC;
		off += (uint64_t)w;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* Switch fd to O_DIRECT if its filesystem allows it. */
static bool
set_direct(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl >= 0 && ((fl & O_DIRECT) || fcntl(fd, F_SETFL, fl | O_DIRECT) == 0);
}

/* ---- Paths ----------------------------------------------------------------- */

/* A relative path: non-empty components of at most NAME_MAX bytes, none "." or "..". */
static bool
rel_path_valid(const char *p)
{
	if (p == NULL || *p == '\0' || strlen(p) >= PATH_MAX)
		return false;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash != NULL ? (size_t)(slash - p) : strlen(p);

		if (len == 0 || len > NAME_MAX)
			return false;
		if (p[0] == '.' && (len == 1 || (len == 2 && p[1] == '.')))
			return false;
		if (slash == NULL)
			return true;
		p = slash + 1;
	}
}

static bool
name_valid(const char *name)
{
	return rel_path_valid(name) && strchr(name, '/') == NULL;
}

int
copy_tmp_name(const char *dst_path, char buf[static NAME_MAX + 1])
{
	const size_t suffix = strlen(COPY_TMP_SUFFIX);
	const char *base;
	size_t len;

	if (!rel_path_valid(dst_path))
		return -EINVAL;
	base = strrchr(dst_path, '/');
	base = base != NULL ? base + 1 : dst_path;
	len = strlen(base);
	if (len > NAME_MAX - suffix) {
		/* Cut at a character boundary: the drive may insist on valid UTF-8. */
		len = NAME_MAX - suffix;
		while (len > 0 && ((unsigned char)base[len] & 0xc0) == 0x80)
			len--;
	}
	memcpy(buf, base, len);
	memcpy(buf + len, COPY_TMP_SUFFIX, suffix + 1);
	return 0;
}

/* The error for a path component that is not a directory: -ELOOP for a symlink, as openat2 says. */
static int
not_dir_error(int dirfd, const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		return -ELOOP;
	return -ENOTDIR;
}

/* Open (or with create, make) directory name in dirfd, never following a symlink. */
static int
open_subdir(int dirfd, const char *name, bool create, bool sync_new)
{
	const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	int fd;

	fd = openat(dirfd, name, flags);
	if (fd >= 0)
		return fd;
	if (errno == ENOTDIR)
		return not_dir_error(dirfd, name);
	if (errno != ENOENT || !create)
		return -errno;
	if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
		return -errno;
	if (sync_new && fsync(dirfd) < 0)
		return -errno;
	fd = openat(dirfd, name, flags);
	if (fd < 0 && errno == ENOTDIR)
		return not_dir_error(dirfd, name);
	return fd >= 0 ? fd : -errno;
}

/*
 * Walk the directories of a valid relative path from rootfd, one component at
 * a time without following symlinks; with create, make missing ones (and
 * fsync each parent of a new one if sync_new). Returns an fd of the last
 * directory and the last component's name inside path.
 */
static int
open_parent(int rootfd, const char *path, bool create, bool sync_new, int *ret_fd,
            const char **ret_name)
{
	_cleanup_close_ int fd = -1;
	char comp[NAME_MAX + 1];
	const char *slash;

	if ((fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3)) < 0)
		return -errno;
	while ((slash = strchr(path, '/')) != NULL) {
		size_t len = (size_t)(slash - path);
		int next;

		memcpy(comp, path, len);
		comp[len] = '\0';
		if ((next = open_subdir(fd, comp, create, sync_new)) < 0)
			return next;
		close(fd);
		fd = next;
		path = slash + 1;
	}
	*ret_fd = TAKE_FD(fd);
	*ret_name = path;
	return 0;
}

/*
 * Open a staging file for reading: nothing outside dirfd's tree, no symlink
 * anywhere. O_NONBLOCK keeps a fifo that replaced the file from blocking us
 * (the caller then refuses anything but a regular file).
 */
static int
open_source(int dirfd, const char *path, int *ret_fd)
{
	static atomic_bool no_openat2;
	const int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	_cleanup_close_ int pfd = -1;
	const char *name;
	int fd, r;

	if (!atomic_load_explicit(&no_openat2, memory_order_relaxed)) {
		struct open_how how = {
		    .flags = (uint64_t)flags,
		    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
		};

		fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
		if (fd >= 0) {
			*ret_fd = fd;
			return 0;
		}
		/* EPERM: a seccomp filter that does not know openat2. */
		if (errno != ENOSYS && errno != EPERM && errno != E2BIG)
			return -errno;
		atomic_store_explicit(&no_openat2, true, memory_order_relaxed);
	}
	if ((r = open_parent(dirfd, path, false, false, &pfd, &name)) < 0)
		return r;
	if ((fd = openat(pfd, name, flags)) < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

int
copy_prefetch(int src_dirfd, const char *src_path)
{
	struct stat st;
	int fd, r = 0;

	if (!rel_path_valid(src_path))
		return -EINVAL;
	if ((r = open_source(src_dirfd, src_path, &fd)) < 0)
		return r;
	if (fstat(fd, &st) < 0)
		r = -errno;
	else if (S_ISREG(st.st_mode))
		r = -posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED); /* returns the error */
	close(fd);
	return r;
}

/* ---- The copier and its threads -------------------------------------------- */

struct copier *
copier_new(void)
{
	struct copier *c = xcalloc(1, sizeof(*c));

	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->reader_cv, NULL);
	pthread_cond_init(&c->verifier_cv, NULL);
	pthread_cond_init(&c->caller_cv, NULL);
	pthread_cond_init(&c->hasher_cv, NULL);
	pthread_cond_init(&c->syncer_cv, NULL);
	c->dst_dir.fd = -1;
	c->drive_direct = COPY_DIRECT_ALL;
	c->md5 = EVP_MD_fetch(NULL, "MD5", NULL);
	c->block_ctx = EVP_MD_CTX_new();
	if (c->md5 == NULL || c->block_ctx == NULL)
		return copier_free(c);
	for (unsigned i = 0; i < 2; i++) {
		c->hashers[i] = (struct hasher){.index = i, .ctx = EVP_MD_CTX_new(), .c = c};
		if (c->hashers[i].ctx == NULL)
			return copier_free(c);
	}
	return c;
}

struct copier *
copier_free(struct copier *c)
{
	if (c == NULL)
		return NULL;
	pthread_mutex_lock(&c->lock);
	c->quit = true;
	pthread_cond_signal(&c->reader_cv);
	pthread_cond_signal(&c->verifier_cv);
	pthread_cond_broadcast(&c->hasher_cv);
	pthread_cond_signal(&c->syncer_cv);
	pthread_mutex_unlock(&c->lock);
	if (c->syncer.started)
		pthread_join(c->syncer.thread, NULL);
	if (c->thread_started)
		pthread_join(c->thread, NULL);
	if (c->verifier.started)
		pthread_join(c->verifier.thread, NULL);
	for (unsigned i = 0; i < 2; i++) {
		if (c->hashers[i].started)
			pthread_join(c->hashers[i].thread, NULL);
		EVP_MD_CTX_free(c->hashers[i].ctx);
	}
	for (size_t i = 0; i < RING_SLOTS; i++)
		free(c->slots[i].buf);
	free(c->verifier.buf);
	if (c->dst_dir.fd >= 0)
		close(c->dst_dir.fd);
	free(c->dst_dir.path);
	EVP_MD_CTX_free(c->block_ctx);
	EVP_MD_free(c->md5);
	pthread_cond_destroy(&c->reader_cv);
	pthread_cond_destroy(&c->verifier_cv);
	pthread_cond_destroy(&c->caller_cv);
	pthread_cond_destroy(&c->hasher_cv);
	pthread_cond_destroy(&c->syncer_cv);
	pthread_mutex_destroy(&c->lock);
	free(c);
	return NULL;
}

void
copier_set_direct(struct copier *c, unsigned flags)
{
	c->drive_direct = flags & COPY_DIRECT_ALL;
}

unsigned
copier_direct(const struct copier *c)
{
	return c->drive_direct;
}

/*
 * The directory of path below rootfd (an fd the copier keeps; do not close it)
 * and the name of path's last component, walked as open_parent() does unless
 * the last call was for the same directory. The drive's directories must not
 * be renamed or removed behind the copier's back.
 */
static int
copier_dst_dir(struct copier *c, int rootfd, const char *path, bool create, bool sync_new,
               int *ret_fd, const char **ret_name)
{
	struct dir_cache *dc = &c->dst_dir;
	const char *slash = strrchr(path, '/');
	size_t len = slash != NULL ? (size_t)(slash - path) : 0;
	struct stat st;
	int fd, r;

	if (fstat(rootfd, &st) < 0)
		return -errno;
	if (dc->fd >= 0 && dc->dev == st.st_dev && dc->ino == st.st_ino && dc->len == len &&
	    memcmp(dc->path, path, len) == 0) {
		*ret_fd = dc->fd;
		*ret_name = slash != NULL ? slash + 1 : path;
		return 0;
	}
	if ((r = open_parent(rootfd, path, create, sync_new, &fd, ret_name)) < 0)
		return r;
	if (dc->fd >= 0)
		close(dc->fd);
	free(dc->path);
	*dc = (struct dir_cache){
	    .dev = st.st_dev,
	    .ino = st.st_ino,
	    .path = xstrndup(path, len),
	    .len = len,
	    .fd = fd,
	};
	*ret_fd = fd;
	return 0;
}

static unsigned char *
aligned_buffer(unsigned char *old, size_t size)
{
	void *p;

	free(old);
	if (posix_memalign(&p, DIO_ALIGN, size) != 0)
		fatalx("copier: allocating %zu bytes", size);
	return p;
}

/* Make every buffer hold at least size bytes (rounded for O_DIRECT). Threads idle. */
static void
copier_buffers(struct copier *c, size_t size)
{
	size = ROUND_UP(size, DIO_ALIGN);
	if (c->buf_size >= size)
		return;
	for (size_t i = 0; i < RING_SLOTS; i++)
		c->slots[i].buf = aligned_buffer(c->slots[i].buf, size);
	c->verifier.buf = aligned_buffer(c->verifier.buf, size);
	c->buf_size = size;
}

/* Start a thread of the copier once, with every signal blocked in it. */
static int
copier_thread(void *arg, pthread_t *thread, bool *started, void *(*fn)(void *))
{
	int r;

	if (*started)
		return 0;
	if ((r = worker_thread_create(thread, fn, arg)) < 0)
		return r;
	*started = true;
	return 0;
}

/*
 * The ring: chunk k of the current job lives in slot k % RING_SLOTS. The reader
 * fills chunks [0, n_read), each hasher is done with [0, hashers[i].n), the
 * caller with [0, n_done) and, while the verifier runs, the verifier with
 * [0, verifier.done). A slot is free again when every stage that needs it is
 * done with it.
 */
static uint64_t
ring_freed(const struct copier *c)
{
	const struct verifier *v = &c->verifier;
	/* A stopped verifier may still be comparing its last block. */
	uint64_t freed = (v->active || v->busy) && v->err == 0 ? v->done : c->n_done;

	for (unsigned i = 0; i < 2; i++)
		freed = MIN(freed, c->hashers[i].n);
	return freed;
}

/* throttle_stop_fn of the reader: the copy is cancelled, paused or being stopped. */
static bool
reader_stopping(void *userdata)
{
	struct copier *c = userdata;

	return flag_set(c->cancel) || flag_set(c->pause) || atomic_load(&c->halt);
}

/*
 * Read the next chunk into its slot, after the throttle's wait (a stop while
 * waiting gives the slot -ECANCELED, which the caller takes for a stop).
 * Called and returns with the lock held.
 */
static void
reader_fill(struct copier *c)
{
	struct slot *s = &c->slots[c->n_read % RING_SLOTS];
	size_t want = (size_t)MIN((uint64_t)c->chunk, c->end - c->pos);
	int fd = c->fd;
	bool direct = c->direct;
	uint64_t off = c->pos;
	bool drive = c->mode == RING_VERIFY; /* RING_COPY reads the source */
	ssize_t n;

	c->busy = true;
	pthread_mutex_unlock(&c->lock);
	n = direct && drive ? direct_fault(COPY_DIRECT_READ) : 0;
	if (n == 0 && !drive && throttle_take(c->throttle, want, reader_stopping, c) < 0)
		n = -ECANCELED;
	if (n == 0)
		n = read_full(fd, s->buf, want, off, direct);
	pthread_mutex_lock(&c->lock);
	c->busy = false;
	if (c->active) {
		s->len = n < 0 ? 0 : (size_t)n;
		s->err = n < 0 ? (int)n : 0;
		s->hashed = false;
		c->n_read++;
		c->pos += want;
		/* After an error or a short read the caller stops: read no further. */
		if (n < 0 || (size_t)n < want)
			c->pos = c->end;
	}
	pthread_cond_signal(&c->caller_cv);
	pthread_cond_broadcast(&c->hasher_cv);
}

static void *
reader_main(void *arg)
{
	struct copier *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->quit &&
		       !(c->active && c->pos < c->end && c->n_read - ring_freed(c) < RING_SLOTS))
			pthread_cond_wait(&c->reader_cv, &c->lock);
		if (c->quit)
			break;
		reader_fill(c);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/*
 * Hash chunk k (slot s) as the mode says; a chunk the reader failed on is
 * skipped. Hasher thread, unlocked. RING_COPY: the block MD5 goes to
 * md5_out[k]. RING_VERIFY: it goes to the slot (a failed one leaves
 * s->hashed false and the caller hashes it). A failure is returned.
 */
static int
hasher_work(struct hasher *h, enum ring_mode mode, uint64_t k, struct slot *s)
{
	struct copier *c = h->c;

	if (s->err < 0)
		return 0;
	if (mode == RING_COPY && h->index == 1)
		return EVP_DigestUpdate(h->ctx, s->buf, s->len) ? 0 : -EIO;
	if (mode == RING_COPY)
		return md5_buf(h->ctx, c->md5, s->buf, s->len, c->md5_out[k]);
	if (k % 2 != h->index)
		return 0;
	s->hashed = md5_buf(h->ctx, c->md5, s->buf, s->len, s->md5) == 0;
	return s->hashed ? 0 : -EIO;
}

/*
 * RING_COPY, hasher 0: the number of chunks from k on (read, whole, without a
 * read error; at most MD5X8_LANES) to hash side by side with md5x8(); 0: take
 * chunk k alone. Locked.
 */
static size_t
hasher_batch(const struct copier *c, uint64_t k)
{
	size_t n = 0;

	while (n < MD5X8_LANES && k + n < c->n_read) {
		const struct slot *s = &c->slots[(k + n) % RING_SLOTS];

		if (s->err < 0 || s->len != c->chunk)
			break;
		n++;
	}
	/* Below three lanes, md5x8() is slower than one MD5 at a time. */
	return n >= 3 ? n : 0;
}

/*
 * RING_COPY, hasher 0 waits for a full batch of chunks unless the reader is
 * done: md5x8() on MD5X8_LANES blocks costs what about three single MD5s do.
 * RING_SLOTS leaves the reader room to read a batch ahead. Locked.
 */
static bool
hasher_ready(const struct copier *c, const struct hasher *h)
{
	if (!c->active || h->n >= c->n_read)
		return false;
	if (c->mode != RING_COPY || h->index != 0)
		return true;
	return c->n_read - h->n >= MD5X8_LANES || c->pos >= c->end;
}

/* Block MD5s of chunks [k, k + n), whole ones, side by side. Hasher thread, unlocked. */
static void
hasher_work_batch(struct copier *c, uint64_t k, size_t n)
{
	const unsigned char *bufs[MD5X8_LANES];

	for (size_t i = 0; i < n; i++)
		bufs[i] = c->slots[(k + i) % RING_SLOTS].buf;
	md5x8(bufs, n, c->chunk, c->md5_out + k);
}

static void *
hasher_main(void *arg)
{
	struct hasher *h = arg;
	struct copier *c = h->c;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		enum ring_mode mode;
		uint64_t k;
		size_t n;
		int r;

		while (!c->quit && !hasher_ready(c, h))
			pthread_cond_wait(&c->hasher_cv, &c->lock);
		if (c->quit)
			break;
		k = h->n;
		mode = c->mode;
		n = mode == RING_COPY && h->index == 0 ? hasher_batch(c, k) : 0;
		h->busy = true;
		pthread_mutex_unlock(&c->lock);
		r = 0;
		if (n > 0)
			hasher_work_batch(c, k, n);
		else {
			r = hasher_work(h, mode, k, &c->slots[k % RING_SLOTS]);
			n = 1;
		}
		pthread_mutex_lock(&c->lock);
		h->busy = false;
		if (r < 0 && h->err == 0)
			h->err = r;
		h->n += n;
		pthread_cond_signal(&c->caller_cv);
		pthread_cond_signal(&c->reader_cv);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/*
 * Have the reader read [0, end) of fd in chunks and the hashers hash them as
 * mode says. In RING_COPY mode hasher 1's context must have been initialised,
 * and hasher 0 puts the MD5 of chunk k in md5_out[k].
 */
static int
ring_start(struct copier *c, int fd, bool direct, uint64_t end, size_t chunk, enum ring_mode mode,
           unsigned char (*md5_out)[16])
{
	int r;

	if ((r = copier_thread(c, &c->thread, &c->thread_started, reader_main)) < 0)
		return r;
	for (unsigned i = 0; i < 2; i++) {
		struct hasher *h = &c->hashers[i];

		if ((r = copier_thread(h, &h->thread, &h->started, hasher_main)) < 0)
			return r;
	}
	pthread_mutex_lock(&c->lock);
	c->fd = fd;
	c->direct = direct;
	c->pos = 0;
	c->end = end;
	c->chunk = chunk;
	c->mode = mode;
	c->md5_out = md5_out;
	c->n_read = 0;
	c->n_done = 0;
	c->hashers[0].n = c->hashers[1].n = 0;
	c->hashers[0].err = c->hashers[1].err = 0;
	atomic_store(&c->halt, false);
	c->active = true;
	pthread_cond_signal(&c->reader_cv);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/*
 * Chunk k is ready for the caller: read (RING_COPY: the caller writes it while
 * hasher 0 hashes it, see ring_wait_hashed), or hashed by both (RING_VERIFY).
 */
static bool
ring_ready(const struct copier *c, uint64_t k)
{
	if (c->mode == RING_VERIFY)
		return c->hashers[0].n > k && c->hashers[1].n > k;
	return c->n_read > k;
}

/* RING_COPY: wait until hasher 0 has hashed chunks [0, n); 0 or its error. */
static int
ring_wait_hashed(struct copier *c, uint64_t n)
{
	int r;

	pthread_mutex_lock(&c->lock);
	while (c->hashers[0].n < n)
		pthread_cond_wait(&c->caller_cv, &c->lock);
	r = c->hashers[0].err;
	pthread_mutex_unlock(&c->lock);
	return r;
}

/*
 * The caller's next chunks, in order: at least one (waits for it), at most
 * max. The caller takes no more chunks than it asked for and stops at the
 * first one with an error or a short length, so this never waits for a chunk
 * that will not come.
 */
static size_t
ring_take_many(struct copier *c, size_t max, struct slot **out)
{
	size_t n = 0;

	pthread_mutex_lock(&c->lock);
	while (!ring_ready(c, c->n_done))
		pthread_cond_wait(&c->caller_cv, &c->lock);
	while (n < max && ring_ready(c, c->n_done + n)) {
		out[n] = &c->slots[(c->n_done + n) % RING_SLOTS];
		n++;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* The caller is done with n chunks: on to the verifier, or free. */
static void
ring_release(struct copier *c, size_t n)
{
	pthread_mutex_lock(&c->lock);
	c->n_done += n;
	pthread_cond_signal(&c->verifier_cv);
	pthread_cond_signal(&c->reader_cv);
	pthread_mutex_unlock(&c->lock);
}

/* Wait until hasher 1 has taken all n chunks (RING_COPY: the whole-file MD5 is fed). */
static int
ring_wait_whole(struct copier *c, uint64_t n)
{
	int r;

	pthread_mutex_lock(&c->lock);
	while (c->hashers[1].n < n)
		pthread_cond_wait(&c->caller_cv, &c->lock);
	r = c->hashers[1].err;
	pthread_mutex_unlock(&c->lock);
	return r;
}

static bool
ring_busy(const struct copier *c)
{
	return c->busy || c->hashers[0].busy || c->hashers[1].busy;
}

/* End the read job, early or not; on return no stage uses the fd or a slot. */
static void
ring_stop(struct copier *c)
{
	atomic_store(&c->halt, true); /* a reader waiting for the throttle stops waiting */
	pthread_mutex_lock(&c->lock);
	c->active = false;
	while (ring_busy(c))
		pthread_cond_wait(&c->caller_cv, &c->lock);
	c->n_read = 0;
	c->n_done = 0;
	c->hashers[0].n = c->hashers[1].n = 0;
	c->throttle = NULL;
	c->cancel = c->pause = NULL;
	pthread_mutex_unlock(&c->lock);
}

/* ---- The syncer ------------------------------------------------------------ */

static void *
syncer_main(void *arg)
{
	struct copier *c = arg;
	struct syncer *y = &c->syncer;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		int fd, r;

		while (!c->quit && y->state != SYNC_ASKED)
			pthread_cond_wait(&c->syncer_cv, &c->lock);
		if (c->quit)
			break;
		y->state = SYNC_RUNNING;
		fd = y->fd;
		pthread_mutex_unlock(&c->lock);
		r = fdatasync(fd) < 0 ? -errno : 0;
		pthread_mutex_lock(&c->lock);
		y->err = r;
		y->state = SYNC_DONE;
		pthread_cond_signal(&c->caller_cv);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* Ask for an fdatasync of fd covering blocks [0, n_blocks). The syncer must be idle. */
static int
syncer_ask(struct copier *c, int fd, size_t n_blocks)
{
	struct syncer *y = &c->syncer;
	int r;

	if ((r = copier_thread(c, &y->thread, &y->started, syncer_main)) < 0)
		return r;
	pthread_mutex_lock(&c->lock);
	y->fd = fd;
	y->n_blocks = n_blocks;
	y->state = SYNC_ASKED;
	pthread_cond_signal(&c->syncer_cv);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/*
 * Collect a finished request (with wait, wait for one in flight): returns 1 and
 * its block count, 0 if none is done (or, with wait, none was asked), or its
 * -errno. After it returns with wait, the syncer no longer uses the fd.
 */
static int
syncer_collect(struct copier *c, bool wait, size_t *ret_n)
{
	struct syncer *y = &c->syncer;
	int r = 0;

	pthread_mutex_lock(&c->lock);
	while (wait && (y->state == SYNC_ASKED || y->state == SYNC_RUNNING))
		pthread_cond_wait(&c->caller_cv, &c->lock);
	if (y->state == SYNC_DONE) {
		r = y->err < 0 ? y->err : 1;
		*ret_n = y->n_blocks;
		y->state = SYNC_IDLE;
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

static bool
syncer_idle(struct copier *c)
{
	bool idle;

	pthread_mutex_lock(&c->lock);
	idle = c->syncer.state == SYNC_IDLE;
	pthread_mutex_unlock(&c->lock);
	return idle;
}

/* ---- The verifier stage ------------------------------------------------------ */

/*
 * Wait for the write-back of block b, drop it from the page cache, read it from
 * the device and compare it with the bytes in the slot it was written from
 * (whose MD5 is the recorded one: a byte compare is as good and far cheaper
 * than hashing again). Verifier thread, unlocked.
 */
static int
verifier_reread(struct verifier *v, const struct copy_block *b, const unsigned char *written)
{
	const unsigned flags =
	    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
	ssize_t n;

	if (sync_file_range(v->wfd, (off_t)b->offset, b->length, flags) < 0)
		return -errno;
	if (!v->direct)
		(void)posix_fadvise(v->rfd, (off_t)b->offset, b->length, POSIX_FADV_DONTNEED);
	else if ((n = direct_fault(COPY_DIRECT_READ)) < 0)
		return (int)n;
	if ((n = read_full(v->rfd, v->buf, b->length, b->offset, v->direct)) < 0)
		return (int)n;
	if ((size_t)n != b->length || memcmp(v->buf, written, b->length) != 0)
		return -EIO;
	return 0;
}

static void *
verifier_main(void *arg)
{
	struct copier *c = arg;
	struct verifier *v = &c->verifier;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		const struct copy_block *b;
		const unsigned char *written;
		int r;

		while (!c->quit && !(v->active && v->err == 0 && v->done < c->n_done))
			pthread_cond_wait(&c->verifier_cv, &c->lock);
		if (c->quit)
			break;
		b = &v->blocks[v->done];
		written = c->slots[v->done % RING_SLOTS].buf;
		v->busy = true;
		pthread_mutex_unlock(&c->lock);
		r = verifier_reread(v, b, written);
		pthread_mutex_lock(&c->lock);
		v->busy = false;
		if (r < 0)
			v->err = r;
		else
			v->done++;
		pthread_cond_signal(&c->reader_cv);
		pthread_cond_signal(&c->caller_cv);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/*
 * Have the verifier check each block of wfd (read back through rfd) once the
 * caller is done with its chunk. Before ring_start(): the ring's slots then
 * wait for the verifier from the first chunk on.
 */
static int
verifier_start(struct copier *c, int wfd, int rfd, bool direct, const struct copy_block *blocks)
{
	struct verifier *v = &c->verifier;
	int r;

	if ((r = copier_thread(c, &v->thread, &v->started, verifier_main)) < 0)
		return r;
	pthread_mutex_lock(&c->lock);
	v->wfd = wfd;
	v->rfd = rfd;
	v->direct = direct;
	v->blocks = blocks;
	v->done = 0;
	v->err = 0;
	v->active = true;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/*
 * Stop the verifier, with wait once it has checked all n chunks (or failed).
 * True if all n matched. Before ring_stop(); on return it uses no fd or slot.
 */
static bool
verifier_stop(struct copier *c, uint64_t n, bool wait)
{
	struct verifier *v = &c->verifier;
	bool ok;

	pthread_mutex_lock(&c->lock);
	while (wait && v->err == 0 && v->done < n)
		pthread_cond_wait(&c->caller_cv, &c->lock);
	v->active = false;
	while (v->busy)
		pthread_cond_wait(&c->caller_cv, &c->lock);
	ok = v->err == 0 && v->done == n;
	pthread_cond_signal(&c->reader_cv);
	pthread_mutex_unlock(&c->lock);
	return ok;
}

/* ---- Verification ---------------------------------------------------------- */

static int
verify_block(const struct copy_block *b, size_t i, const struct slot *s, EVP_MD_CTX *ctx,
             const EVP_MD *md, char *detail)
{
	unsigned char md5[16];
	int r;

	if (s->err < 0) {
		set_detail(detail, "re-reading block %zu at offset %llu", i,
		           (unsigned long long)b->offset);
		return s->err;
	}
	if (s->len != b->length) {
		set_detail(detail, "block %zu at offset %llu is short", i,
		           (unsigned long long)b->offset);
		return -EIO;
	}
	if (!s->hashed && (r = md5_buf(ctx, md, s->buf, s->len, md5)) < 0)
		return r;
	if (memcmp(s->hashed ? s->md5 : md5, b->md5, 16) != 0) {
		set_detail(detail, "block %zu at offset %llu differs on the drive", i,
		           (unsigned long long)b->offset);
		return -EIO;
	}
	return 0;
}

/* Blocks must tile [0, total) with equal lengths but the last. Returns the chunk length. */
static int
verify_geometry(const struct copy_block *blocks, size_t n, uint64_t *ret_total, size_t *ret_chunk)
{
	uint64_t total = 0;

	for (size_t i = 0; i < n; i++) {
		if (blocks[i].offset != total || blocks[i].length == 0 ||
		    blocks[i].length > COPY_BLOCK_SIZE_MAX ||
		    (i > 0 && blocks[i].length > blocks[0].length) ||
		    (i > 0 && i < n - 1 && blocks[i].length != blocks[0].length))
			return -EINVAL;
		total += blocks[i].length;
	}
	*ret_total = total;
	*ret_chunk = n > 0 ? blocks[0].length : 0;
	return 0;
}

/* Read fd and compare every block; a file of more than one block goes through the ring. */
static int
verify_pass(struct copier *c, int fd, bool direct, const struct copy_block *blocks, size_t n,
            size_t chunk, const atomic_bool *cancel, char *detail)
{
	struct slot *s;
	ssize_t len;
	int r = 0;

	if (n == 0)
		return 0;
	if (n == 1) {
		s = &c->slots[0];
		len = direct ? direct_fault(COPY_DIRECT_READ) : 0;
		if (len == 0)
			len = read_full(fd, s->buf, blocks[0].length, 0, direct);
		*s = (struct slot){
		    .buf = s->buf, .len = len < 0 ? 0 : (size_t)len, .err = len < 0 ? (int)len : 0};
		return verify_block(&blocks[0], 0, s, c->block_ctx, c->md5, detail);
	}
	/* The two hashers split the block MD5s. */
	r = ring_start(c, fd, direct, blocks[n - 1].offset + blocks[n - 1].length, chunk,
	               RING_VERIFY, NULL);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if (flag_set(cancel)) {
			set_detail(detail, "cancelled while verifying");
			r = -ECANCELED;
			break;
		}
		s = NULL;
		(void)ring_take_many(c, 1, &s); /* always one */
		r = verify_block(&blocks[i], i, s, c->block_ctx, c->md5, detail);
		ring_release(c, 1);
		if (r < 0)
			break;
	}
	ring_stop(c);
	return r;
}

/* Open name in dir for verification: O_DIRECT where the filesystem allows it. */
static int
verify_open(int dir, const char *name, bool try_direct, int *ret_fd, bool *ret_direct)
{
	const int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	int fd;

	if (try_direct && (fd = openat(dir, name, flags | O_DIRECT)) >= 0) {
		*ret_fd = fd;
		*ret_direct = true;
		return 0;
	}
	if (try_direct && errno != EINVAL && errno != EOPNOTSUPP)
		return -errno;
	if ((fd = openat(dir, name, flags)) < 0)
		return -errno;
	/* Clean pages only: the data must already be durable. */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	*ret_fd = fd;
	*ret_direct = false;
	return 0;
}

/* copier_verify() of name in directory dir. */
static int
verify_file(struct copier *c, int dir, const char *name, const struct copy_block *blocks,
            size_t n_blocks, const atomic_bool *cancel, char *detail)
{
	_cleanup_close_ int fd = -1;
	uint64_t total;
	size_t chunk;
	bool direct = false;
	struct stat st;
	int r;

	if (verify_geometry(blocks, n_blocks, &total, &chunk) < 0) {
		set_detail(detail, "bad verify request");
		return -EINVAL;
	}
	copier_buffers(c, chunk);
	/* Offsets are multiples of chunk; a lone block starts at 0. */
	r = verify_open(dir, name,
	                (c->drive_direct & COPY_DIRECT_READ) &&
	                    (n_blocks <= 1 || chunk % DIO_ALIGN == 0),
	                &fd, &direct);
	if (r < 0) {
		set_detail(detail, "opening the drive file to verify");
		return r;
	}
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != total) {
		set_detail(detail, "drive file is %lld bytes, expected %llu", (long long)st.st_size,
		           (unsigned long long)total);
		return -EIO;
	}
	r = verify_pass(c, fd, direct, blocks, n_blocks, chunk, cancel, detail);
	if (direct && (direct_refused(r) || r == -EIO)) {
		/*
		 * The drive refused O_DIRECT, or gave back short or wrong data:
		 * verify through the dropped cache. If that matches, O_DIRECT was
		 * at fault, not the drive's bytes.
		 */
		int direct_r = r;

		close(fd);
		fd = -1;
		if ((r = verify_open(dir, name, false, &fd, &direct)) < 0)
			return r;
		r = verify_pass(c, fd, direct, blocks, n_blocks, chunk, cancel, detail);
		if (r == 0) {
			copier_drop_direct(c, COPY_DIRECT_READ, -direct_r);
			set_detail(detail, "%s", "");
		}
	}
	if (!direct)
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	return r;
}

int
copier_verify(struct copier *c, int dirfd, const char *path, const struct copy_block *blocks,
              size_t n_blocks, const atomic_bool *cancel, char *detail)
{
	const char *name;
	int dir, r;

	set_detail(detail, "%s", "");
	if (!rel_path_valid(path)) {
		set_detail(detail, "bad verify request");
		return -EINVAL;
	}
	if ((r = copier_dst_dir(c, dirfd, path, false, false, &dir, &name)) < 0) {
		set_detail(detail, "opening the drive file to verify");
		return r;
	}
	return verify_file(c, dir, name, blocks, n_blocks, cancel, detail);
}

/* Open a one-block item, check its size and start reading it from the device. */
static int
batch_open(struct copier *c, int dirfd, const struct copy_verify_item *it, int *ret_fd)
{
	const int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	uint64_t total = it->n_blocks == 1 ? it->blocks[0].length : 0;
	const char *name;
	struct stat st;
	int dir, fd, r;

	if ((r = copier_dst_dir(c, dirfd, it->path, false, false, &dir, &name)) < 0)
		return r;
	if ((fd = openat(dir, name, flags)) < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != total) {
		close(fd);
		return -EIO;
	}
	/* Drop the (clean) cached pages, then have the kernel read them back, async. */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
	*ret_fd = fd;
	return 0;
}

/* Read back a one-block item opened by batch_open() and compare. */
static int
batch_check(struct copier *c, int fd, const struct copy_verify_item *it)
{
	struct slot *s = &c->slots[0];
	ssize_t n;

	if (it->n_blocks == 0)
		return 0;
	n = read_full(fd, s->buf, it->blocks[0].length, 0, false);
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	*s = (struct slot){.buf = s->buf, .len = n < 0 ? 0 : (size_t)n, .err = n < 0 ? (int)n : 0};
	return verify_block(&it->blocks[0], 0, s, c->block_ctx, c->md5, NULL);
}

int
copier_verify_batch(struct copier *c, int dirfd, struct copy_verify_item *items, size_t n,
                    const atomic_bool *cancel)
{
	int fds[VERIFY_GROUP], first = 0;

	for (size_t g = 0; g < n; g += VERIFY_GROUP) {
		size_t m = MIN(n - g, (size_t)VERIFY_GROUP);

		if (flag_set(cancel)) {
			/* What was not checked is not verified. */
			for (size_t i = g; i < n; i++)
				items[i].result = -ECANCELED;
			return -ECANCELED;
		}
		for (size_t i = 0; i < m; i++) {
			struct copy_verify_item *it = &items[g + i];
			uint64_t total;
			size_t chunk;

			fds[i] = -1;
			it->result =
			    !rel_path_valid(it->path) ||
			            verify_geometry(it->blocks, it->n_blocks, &total, &chunk) < 0
			        ? -EINVAL
			        : 0;
			if (it->result == 0 && it->n_blocks <= 1) {
				copier_buffers(c, chunk);
				it->result = batch_open(c, dirfd, it, &fds[i]);
			}
		}
		for (size_t i = 0; i < m; i++) {
			struct copy_verify_item *it = &items[g + i];

			if (fds[i] >= 0) {
				it->result = batch_check(c, fds[i], it);
				close(fds[i]);
			} else if (it->result == 0)
				it->result = copier_verify(c, dirfd, it->path, it->blocks,
				                           it->n_blocks, cancel, NULL);
			if (it->result < 0 && first == 0)
				first = it->result;
		}
	}
	return first;
}

int
copy_verify(int dirfd, const char *path, const struct copy_block *blocks, size_t n_blocks,
            char *detail)
{
	struct copier *c = copier_new();
	int r;

	if (c == NULL)
		return -ENOMEM;
	r = copier_verify(c, dirfd, path, blocks, n_blocks, NULL, detail);
	copier_free(c);
	return r;
}

/* ---- Copying ----------------------------------------------------------------- */

static uint32_t
job_block_len(const struct job *j, size_t i)
{
	return (uint32_t)MIN((uint64_t)j->bs, j->req->expected_size - (uint64_t)i * j->bs);
}

/* The source is still the indexed file: a regular file of the indexed size and mtime. */
static int
job_source_matches(struct job *j, const char *when)
{
	struct stat st;
	int64_t mtime_ns;

	if (fstat(j->src, &st) < 0)
		return -errno;
	mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != j->req->expected_size ||
	    mtime_ns != j->req->expected_mtime_ns) {
		set_detail(j->res->detail, "source changed %s", when);
		return -ESTALE;
	}
	return 0;
}

static int
job_check_request(struct job *j)
{
	const struct copy_request *req = j->req;
	const char *tmp = req->tmp_name, *base;
	int r;

	j->bs = req->block_size != 0 ? req->block_size : COPY_BLOCK_SIZE;
	if (j->bs < COPY_BLOCK_SIZE_MIN || j->bs > COPY_BLOCK_SIZE_MAX || j->bs % DIO_ALIGN != 0 ||
	    !rel_path_valid(req->src_path) || !rel_path_valid(req->dst_path))
		return -EINVAL;
	base = strrchr(req->dst_path, '/');
	base = base != NULL ? base + 1 : req->dst_path;
	if (req->defer_sync)
		tmp = base; /* batch mode writes the final name */
	else if (tmp == NULL && req->resume != NULL)
		tmp = req->resume->tmp_name;
	if (tmp == NULL) {
		if ((r = copy_tmp_name(req->dst_path, j->res->tmp_name)) < 0)
			return r;
	} else {
		if (!name_valid(tmp))
			return -EINVAL;
		strcpy(j->res->tmp_name, tmp);
	}
	if (!req->defer_sync && strcmp(j->res->tmp_name, base) == 0)
		return -EINVAL;
	j->n_blocks = (size_t)((req->expected_size + j->bs - 1) / j->bs);
	return 0;
}

/* How many blocks of the resume checkpoint fit this file; 0 if it is unusable. */
static size_t
job_resume_blocks(const struct job *j)
{
	const struct copy_checkpoint *cp = j->req->resume;

	if (cp == NULL || cp->n_blocks == 0 || cp->n_blocks > j->n_blocks || cp->blocks == NULL)
		return 0;
	for (size_t i = 0; i < cp->n_blocks; i++)
		if (cp->blocks[i].offset != (uint64_t)i * j->bs ||
		    cp->blocks[i].length != job_block_len(j, i))
			return 0;
	return cp->n_blocks;
}

/* Reopen a checkpointed temporary file, cut to its committed blocks. */
static int
job_reopen_tmp(struct job *j, size_t keep)
{
	uint64_t bytes = (uint64_t)keep * j->bs;
	struct stat st;

	if (bytes > j->req->expected_size)
		bytes = j->req->expected_size;
	j->tmp = openat(j->dir, j->res->tmp_name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (j->tmp < 0)
		return -errno;
	if (fstat(j->tmp, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < bytes ||
	    ftruncate(j->tmp, (off_t)bytes) < 0) {
		close(j->tmp);
		j->tmp = -1;
		return -ENOENT;
	}
	memcpy(j->res->blocks, j->req->resume->blocks, keep * sizeof(struct copy_block));
	j->resumed = j->written = j->committed = keep;
	return 0;
}

static int
job_open_tmp(struct job *j)
{
	size_t keep = job_resume_blocks(j);
	int r;

	if (j->n_blocks > 0)
		j->res->blocks = xcalloc(j->n_blocks, sizeof(struct copy_block));
	if (keep == 0 || job_reopen_tmp(j, keep) < 0) {
		j->tmp = openat(j->dir, j->res->tmp_name,
		                O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (j->tmp < 0) {
			set_detail(j->res->detail, "creating the temporary file");
			return -errno;
		}
	}
	/* A pipelined copy bypasses the page cache: no copying into it, no write-back. */
	if (j->n_blocks > 1 && (j->c->drive_direct & COPY_DIRECT_WRITE))
		j->tmp_direct = set_direct(j->tmp);
	/* Reserve the space now: a file that does not fit fails before we copy it. */
	if (j->n_blocks > 1 &&
	    fallocate(j->tmp, FALLOC_FL_KEEP_SIZE, 0, (off_t)j->req->expected_size) < 0 &&
	    (errno == ENOSPC || errno == EDQUOT || errno == EFBIG)) {
		r = -errno;
		set_detail(j->res->detail, "reserving %llu bytes on the drive",
		           (unsigned long long)j->req->expected_size);
		return r;
	}
	return 0;
}

static int
job_open(struct job *j)
{
	int r;

	if ((r = open_source(j->req->src_dirfd, j->req->src_path, &j->src)) < 0) {
		set_detail(j->res->detail, "opening the source");
		return r;
	}
	if ((r = job_source_matches(j, "since indexing")) < 0)
		return r;
	if (j->n_blocks > 1)
		(void)posix_fadvise(j->src, 0, 0, POSIX_FADV_SEQUENTIAL);
	r = copier_dst_dir(j->c, j->req->dst_dirfd, j->req->dst_path, true, !j->req->defer_sync,
	                   &j->dir, &j->name);
	if (r < 0) {
		set_detail(j->res->detail, "opening the destination directory");
		return r;
	}
	return job_open_tmp(j);
}

/* Pipelined: wait until hasher 0 has the MD5s of blocks [0, n). */
static int
job_wait_hashed(struct job *j, size_t n)
{
	int r = ring_wait_hashed(j->c, n);

	if (r < 0)
		set_detail(j->res->detail, "hashing the source");
	return r;
}

/* Pipelined: put the MD5s of blocks [0, n) into the result (for a checkpoint or the end). */
static int
job_record_md5s(struct job *j, size_t n)
{
	int r;

	if (j->md5s == NULL || n <= j->md5_done)
		return 0;
	if ((r = job_wait_hashed(j, n)) < 0)
		return r;
	for (size_t i = j->md5_done; i < n; i++)
		memcpy(j->res->blocks[i].md5, j->md5s[i], 16);
	j->md5_done = n;
	return 0;
}

/* Blocks [0, n) are durable: hand them to the checkpoint callback. */
static void
job_committed(struct job *j, size_t n)
{
	struct copy_checkpoint cp = {
	    .tmp_name = j->res->tmp_name,
	    .n_blocks = n,
	    .blocks = j->res->blocks,
	};

	j->committed = n;
	j->req->checkpoint(&cp, j->req->userdata);
}

/*
 * Report a finished background fdatasync as a checkpoint; with wait, wait for
 * one in flight, after which the syncer no longer uses the temporary file.
 */
static int
job_collect_sync(struct job *j, bool wait)
{
	size_t n;
	int r = syncer_collect(j->c, wait, &n);

	if (r < 0) {
		set_detail(j->res->detail, "fdatasync of the temporary file");
		return r;
	}
	if (r > 0 && n > j->committed)
		job_committed(j, n);
	return 0;
}

/*
 * Start making the written blocks durable in the background; the checkpoint
 * callback follows when the fdatasync is done (job_collect_sync). A boundary
 * met while the last one is still syncing is skipped.
 */
static int
job_checkpoint_async(struct job *j)
{
	int r;

	if (j->req->checkpoint == NULL || j->written <= j->committed || !syncer_idle(j->c))
		return 0;
	if ((r = job_record_md5s(j, j->written)) < 0)
		return r;
	return syncer_ask(j->c, j->tmp, j->written);
}

/* Make the written blocks durable now and hand them to the checkpoint callback. */
static int
job_checkpoint(struct job *j)
{
	int r;

	if ((r = job_collect_sync(j, true)) < 0)
		return r;
	if (j->req->checkpoint == NULL || j->written <= j->committed)
		return 0;
	/* A closed temporary file (stopped while verifying) was synced before. */
	if (j->tmp >= 0 && fdatasync(j->tmp) < 0) {
		set_detail(j->res->detail, "fdatasync of the temporary file");
		return -errno;
	}
	job_committed(j, j->written);
	return 0;
}

/* The cancel or pause flag: checkpoint what is written and stop. */
static int
job_stop(struct job *j)
{
	int r;

	set_detail(j->res->detail, "%s", flag_set(j->req->cancel) ? "cancelled" : "paused");
	if ((r = job_checkpoint(j)) < 0)
		return r;
	return -ECANCELED;
}

static bool
job_stopping(const struct job *j)
{
	return flag_set(j->req->cancel) || flag_set(j->req->pause);
}

/* throttle_stop_fn of the calling thread. */
static bool
job_stopping_cb(void *userdata)
{
	return job_stopping(userdata);
}

/* Write blocks [i, i + m) from their slots with one pwritev; padded: as job_write_run() says. */
static int
job_writev(struct job *j, size_t i, struct slot *const *s, size_t m, bool padded)
{
	struct iovec iov[WRITE_RUN];

	for (size_t k = 0; k < m; k++) {
		iov[k].iov_base = s[k]->buf;
		iov[k].iov_len = padded ? ROUND_UP(s[k]->len, DIO_ALIGN) : s[k]->len;
	}
	return writev_full(j->tmp, iov, (int)m, (uint64_t)i * j->bs);
}

/*
 * Write blocks [i, i + m) (m <= WRITE_RUN; only the last may be short) from
 * their slots to the temporary file. With O_DIRECT a short last block goes out
 * zero-padded to DIO_ALIGN (its buffer has room; the padding is not part of
 * the block, so no other stage reads it) and the file is cut to its size
 * before the final fdatasync. A filesystem that takes the O_DIRECT flag but
 * refuses the write gets buffered writes from then on.
 */
static int
job_write_run(struct job *j, size_t i, struct slot *const *s, size_t m)
{
	struct slot *last = s[m - 1];
	size_t padded = ROUND_UP(last->len, DIO_ALIGN);
	int r, direct_r = 0;

	if (j->tmp_direct) {
		memset(last->buf + last->len, 0, padded - last->len);
		if ((r = direct_fault(COPY_DIRECT_WRITE)) == 0)
			r = job_writev(j, i, s, m, true);
		if (!direct_refused(r)) {
			j->tmp_padded |= r == 0 && padded != last->len;
			goto out;
		}
		/*
		 * Redo the whole run buffered. Only if that works was O_DIRECT at
		 * fault: then the drive's next files are written buffered too.
		 * (dislocker refuses writes over BitLocker's metadata with EFAULT
		 * however they come: that error stands.)
		 */
		direct_r = r;
		j->tmp_direct = false;
		if (fcntl(j->tmp, F_SETFL, fcntl(j->tmp, F_GETFL) & ~O_DIRECT) < 0)
			return -errno;
	}
	r = job_writev(j, i, s, m, false);
	if (r == 0 && direct_r < 0)
		copier_drop_direct(j->c, COPY_DIRECT_WRITE, -direct_r);
	/* Start write-back now, so the final fdatasync has little left to do. */
	if (r == 0 && j->n_blocks > 1)
		(void)sync_file_range(j->tmp, (off_t)((uint64_t)i * j->bs),
		                      (off_t)((uint64_t)(m - 1) * j->bs + last->len),
		                      SYNC_FILE_RANGE_WRITE);
out:
	if (r < 0)
		set_detail(j->res->detail, "writing blocks %zu-%zu at offset %llu", i, i + m - 1,
		           (unsigned long long)i * j->bs);
	return r;
}

/*
 * Block i was read from the source into s: check it and record where it goes.
 * Returns 1 if it is to be written, 0 if a resumed temporary file already
 * holds it, or -errno. A file of one block brings its MD5 in s; in a
 * pipelined copy hasher 0 computes it meanwhile (job_record_md5s() takes it)
 * and hasher 1 feeds the whole-file MD5.
 */
static int
job_block_check(struct job *j, size_t i, const struct slot *s)
{
	struct copy_block *b = &j->res->blocks[i];
	int r;

	if (s->err < 0) {
		set_detail(j->res->detail, "reading the source at block %zu", i);
		return s->err;
	}
	if (s->len != job_block_len(j, i)) {
		set_detail(j->res->detail, "source shrank during the copy");
		return -ESTALE;
	}
	if (i < j->resumed) {
		if ((r = job_wait_hashed(j, i + 1)) < 0)
			return r;
		if (memcmp(b->md5, j->md5s[i], 16) == 0)
			return 0;
		/* The checkpoint does not match the source here: rewrite from this block on. */
		j->resumed = i;
		j->committed = MIN(j->committed, i);
		j->md5_done = MIN(j->md5_done, i);
	}
	b->offset = (uint64_t)i * j->bs;
	b->length = (uint32_t)s->len;
	if (j->md5s == NULL)
		memcpy(b->md5, s->md5, 16);
	return 1;
}

/* Blocks [0, n) are in the temporary file: progress, and a checkpoint when one is due. */
static int
job_blocks_written(struct job *j, size_t n)
{
	size_t every = j->req->checkpoint_every ? j->req->checkpoint_every : COPY_CHECKPOINT_EVERY;
	size_t before = j->written;
	int r;

	j->written = n;
	if (j->req->progress != NULL)
		j->req->progress(MIN((uint64_t)n * j->bs, j->req->expected_size), j->req->userdata);
	if ((r = job_collect_sync(j, false)) < 0)
		return r;
	if (n / every > before / every && n < j->n_blocks)
		return job_checkpoint_async(j);
	return 0;
}

/*
 * Blocks [i, i + m) were read into slots s: check them, write those to be
 * written with one pwritev. Blocks of a resumed file that may be skipped come
 * one at a time (m == 1). Returns m, or -errno.
 */
static ssize_t
job_blocks(struct job *j, size_t i, struct slot *const *s, size_t m)
{
	int r = 0;

	for (size_t k = 0; k < m; k++)
		if ((r = job_block_check(j, i + k, s[k])) < 0)
			return r;
	if (r == 1 && (r = job_write_run(j, i, s, m)) < 0)
		return r;
	if ((r = job_blocks_written(j, i + m)) < 0)
		return r;
	return (ssize_t)m;
}

/* A file of at most one block: no thread, and its block MD5 is its whole MD5. */
static int
job_copy_inline(struct job *j)
{
	struct slot *s = &j->c->slots[0];
	size_t size = (size_t)j->req->expected_size;
	ssize_t n;
	int r;

	if (job_stopping(j))
		return job_stop(j);
	if (size == 0)
		return md5_buf(j->c->block_ctx, j->c->md5, "", 0, j->res->md5);
	if (throttle_take(j->req->throttle, size, job_stopping_cb, j) < 0)
		return job_stop(j);
	if ((n = read_full(j->src, s->buf, size, 0, false)) < 0) {
		set_detail(j->res->detail, "reading the source");
		return (int)n;
	}
	s->len = (size_t)n;
	if ((r = md5_buf(j->c->block_ctx, j->c->md5, s->buf, s->len, s->md5)) < 0)
		return r;
	s->hashed = true;
	if ((r = (int)job_blocks(j, 0, &s, 1)) < 0)
		return r;
	memcpy(j->res->md5, s->md5, 16);
	return 0;
}

/* Start the verifier on the temporary file; without it, copier_verify() checks later. */
static void
job_start_verifier(struct job *j)
{
	bool direct = false;

	if (!j->req->verify || j->req->defer_sync ||
	    verify_open(j->dir, j->res->tmp_name, (j->c->drive_direct & COPY_DIRECT_READ) != 0,
	                &j->vfd, &direct) < 0)
		return;
	if (verifier_start(j->c, j->tmp, j->vfd, direct, j->res->blocks) < 0) {
		close(j->vfd);
		j->vfd = -1;
	}
}

/* Stop the verifier; true if it matched all blocks of a copy that went through. */
static bool
job_stop_verifier(struct job *j, bool completed)
{
	bool ok;

	if (j->vfd < 0)
		return false;
	ok = verifier_stop(j->c, j->n_blocks, completed);
	close(j->vfd);
	j->vfd = -1;
	return ok && completed;
}

static int
job_copy_pipelined(struct job *j)
{
	struct copier *c = j->c;
	unsigned int md_len;
	int r, q;

	if (!EVP_DigestInit_ex2(c->hashers[1].ctx, c->md5, NULL))
		return -EIO;
	job_start_verifier(j);
	j->md5s = xcalloc(j->n_blocks, 16);
	j->md5_done = j->resumed; /* those come from the checkpoint */
	c->throttle = j->req->throttle;
	c->cancel = j->req->cancel;
	c->pause = j->req->pause;
	r = ring_start(c, j->src, set_direct(j->src), j->req->expected_size, j->bs, RING_COPY,
	               j->md5s);
	if (r < 0) {
		job_stop_verifier(j, false);
		return r;
	}
	for (size_t i = 0; i < j->n_blocks;) {
		struct slot *s[WRITE_RUN];
		size_t m;
		ssize_t done;

		if (job_stopping(j)) {
			r = -ECANCELED;
			break;
		}
		m = ring_take_many(c, i < j->resumed ? 1 : MIN((size_t)WRITE_RUN, j->n_blocks - i),
		                   s);
		/* A read error or a short block ends a run: it comes alone, next time. */
		for (size_t k = 1; k < m; k++)
			if (s[k]->err < 0 || s[k]->len != j->bs) {
				m = k;
				break;
			}
		if ((done = job_blocks(j, i, s, m)) < 0) {
			r = (int)done;
			break;
		}
		/* Only now are these blocks final and written: the verifier may check them. */
		ring_release(c, (size_t)done);
		i += (size_t)done;
	}
	if (r == 0)
		r = ring_wait_whole(c, j->n_blocks);
	/* Every block written needs its MD5 now: for the result, or the checkpoint of a stop. */
	if ((r == 0 || r == -ECANCELED) && (q = job_record_md5s(j, j->written)) < 0)
		r = q;
	/* Let a checkpoint in flight finish (job_finish syncs everything anyway). */
	if ((q = job_collect_sync(j, true)) < 0 && r == 0)
		r = q;
	j->stream_verified = job_stop_verifier(j, r == 0);
	ring_stop(c);
	if (r == -ECANCELED)
		return job_stop(j);
	if (r < 0)
		return r;
	if (!EVP_DigestFinal_ex(c->hashers[1].ctx, j->res->md5, &md_len))
		return -EIO;
	return 0;
}

/* The bytes are written: check the source, sync, verify, put the file in place. */
static int
job_finish(struct job *j)
{
	const struct copy_request *req = j->req;
	int r;

	if ((r = job_source_matches(j, "during the copy")) < 0)
		return r;
	if (j->tmp_padded && ftruncate(j->tmp, (off_t)req->expected_size) < 0) {
		set_detail(j->res->detail, "cutting the temporary file to size");
		return -errno;
	}
	if (!req->defer_sync && fdatasync(j->tmp) < 0) {
		set_detail(j->res->detail, "fdatasync of the temporary file");
		return -errno;
	}
	/* Buffered writes of a big file: its (clean) pages need not stay cached. */
	if (!req->defer_sync && !j->tmp_direct && j->n_blocks > 1)
		(void)posix_fadvise(j->tmp, 0, 0, POSIX_FADV_DONTNEED);
	j->written = j->n_blocks;
	/* Some filesystems (FUSE, NFS) report write errors only here. */
	r = close(TAKE_FD(j->tmp));
	if (r < 0 && errno != EINTR) {
		set_detail(j->res->detail, "closing the temporary file");
		return -errno;
	}
	if (req->verify && !req->defer_sync && !j->stream_verified) {
		r = verify_file(j->c, j->dir, j->res->tmp_name, j->res->blocks, j->n_blocks,
		                req->cancel, j->res->detail);
		if (r == -ECANCELED)
			return job_stop(j);
		if (r < 0)
			return r;
	}
	j->res->verified = req->verify && !req->defer_sync;
	if (!req->defer_sync && renameat(j->dir, j->res->tmp_name, j->dir, j->name) < 0) {
		set_detail(j->res->detail, "renaming the temporary file into place");
		return -errno;
	}
	if (!req->defer_sync && fsync(j->dir) < 0) {
		set_detail(j->res->detail, "fsync of the destination directory");
		return -errno;
	}
	return 0;
}

static int
job_run(struct job *j)
{
	int r;

	if ((r = job_check_request(j)) < 0) {
		set_detail(j->res->detail, "bad copy request");
		return r;
	}
	if ((r = job_open(j)) < 0)
		return r;
	copier_buffers(j->c, j->bs);
	if (j->n_blocks <= 1)
		r = job_copy_inline(j);
	else
		r = job_copy_pipelined(j);
	if (r < 0)
		return r;
	j->res->bytes = j->req->expected_size;
	j->res->n_blocks = j->n_blocks;
	return job_finish(j);
}

int
copier_copy(struct copier *c, const struct copy_request *req, struct copy_result *res)
{
	struct job j = {
	    .c = c,
	    .req = req,
	    .res = res,
	    .src = -1,
	    .dir = -1,
	    .tmp = -1,
	    .vfd = -1,
	};
	int r;

	*res = (struct copy_result){.blocks = NULL};
	c->direct_error = 0;
	c->direct_what = 0;
	r = job_run(&j);
	res->direct_error = c->direct_error;
	res->direct_what = c->direct_what;
	if (j.tmp >= 0)
		close(j.tmp);
	if (r < 0 && r != -ECANCELED) {
		/* The temporary file and any checkpoint of it are void now. */
		if (j.dir >= 0)
			(void)unlinkat(j.dir, res->tmp_name, 0);
		else if (req->resume != NULL && res->tmp_name[0] != '\0')
			(void)copy_file_remove_partial(req->dst_dirfd, req->dst_path,
			                               res->tmp_name);
	}
	if (j.src >= 0)
		close(j.src);
	free(j.md5s);
	if (r < 0) {
		free(res->blocks);
		res->blocks = NULL;
		res->n_blocks = 0;
		res->bytes = 0;
		res->verified = false;
	}
	return r == -EDQUOT ? -ENOSPC : r;
}

int
copy_file(const struct copy_request *req, struct copy_result *res)
{
	struct copier *c = copier_new();
	int r;

	if (c == NULL) {
		*res = (struct copy_result){.blocks = NULL};
		return -ENOMEM;
	}
	r = copier_copy(c, req, res);
	copier_free(c);
	return r;
}

int
copy_file_remove_partial(int dst_dirfd, const char *dst_path, const char *tmp_name)
{
	_cleanup_close_ int dir = -1;
	char buf[NAME_MAX + 1];
	const char *name;
	int r;

	if (tmp_name == NULL) {
		if ((r = copy_tmp_name(dst_path, buf)) < 0)
			return r;
		tmp_name = buf;
	}
	if (!rel_path_valid(dst_path) || !name_valid(tmp_name))
		return -EINVAL;
	if ((r = open_parent(dst_dirfd, dst_path, false, false, &dir, &name)) < 0)
		return r == -ENOENT ? 0 : r;
	if (unlinkat(dir, tmp_name, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

void
copy_result_done(struct copy_result *res)
{
	if (res == NULL)
		return;
	free(res->blocks);
	res->blocks = NULL;
	res->n_blocks = 0;
}

/* ---- The O_DIRECT probe -------------------------------------------------------- */

/* Write buf (one aligned block) to fd at 0: 0, -EIO if short, or -errno. */
static int
probe_write(int fd, unsigned char *buf, size_t len)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};

	return writev_full(fd, &iov, 1, 0);
}

/* Read the probe file back into got and compare with want: 1 if equal, 0 if not, -errno. */
static int
probe_read(int dirfd, bool direct, unsigned char *got, const unsigned char *want, size_t len)
{
	int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (direct ? O_DIRECT : 0);
	_cleanup_close_ int fd = openat(dirfd, COPY_PROBE_NAME, flags);
	ssize_t n;

	if (fd < 0)
		return direct && direct_refused(-errno) ? 0 : -errno;
	if (direct && direct_fault(COPY_DIRECT_READ) < 0)
		return 0;
	if (!direct)
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	memset(got, 0, len);
	n = read_full(fd, got, len, 0, direct);
	if (n < 0)
		return direct && direct_refused((int)n) ? 0 : (int)n;
	return (size_t)n == len && memcmp(got, want, len) == 0;
}

/* The probe on an open probe file; the caller removes it. */
static int
probe_run(int dirfd, int fd, unsigned char *buf, unsigned char *back, unsigned *flags,
          char *detail)
{
	const size_t len = COPY_BLOCK_SIZE;
	int r = 0;

	*flags = 0;
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(i * 2654435761u >> 13);
	if (set_direct(fd) && direct_fault(COPY_DIRECT_WRITE) == 0 && probe_write(fd, buf, len) == 0)
		*flags |= COPY_DIRECT_WRITE;
	if (!(*flags & COPY_DIRECT_WRITE)) {
		if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT) < 0 || ftruncate(fd, 0) < 0 ||
		    (r = probe_write(fd, buf, len)) < 0) {
			set_detail(detail, "writing a test file on the drive");
			return r < 0 ? r : -errno;
		}
	}
	if (fdatasync(fd) < 0) {
		set_detail(detail, "fdatasync of a test file on the drive");
		return -errno;
	}
	if ((r = probe_read(dirfd, true, back, buf, len)) > 0) {
		*flags |= COPY_DIRECT_READ;
		return 0;
	}
	if (r == 0)
		r = probe_read(dirfd, false, back, buf, len);
	if (r <= 0)
		set_detail(detail, "reading back a test file from the drive");
	return r < 0 ? r : r == 0 ? -EIO : 0;
}

int
copy_direct_probe(int dirfd, unsigned *ret_flags, char *detail)
{
	unsigned char *buf = aligned_buffer(NULL, COPY_BLOCK_SIZE);
	unsigned char *back = aligned_buffer(NULL, COPY_BLOCK_SIZE);
	unsigned flags = 0;
	int fd, r;

	set_detail(detail, "%s", "");
	(void)unlinkat(dirfd, COPY_PROBE_NAME, 0); /* left by a crash */
	fd = openat(dirfd, COPY_PROBE_NAME, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		set_detail(detail, "creating a test file on the drive");
	} else {
		r = probe_run(dirfd, fd, buf, back, &flags, detail);
		close(fd);
		if (unlinkat(dirfd, COPY_PROBE_NAME, 0) < 0 && r == 0) {
			r = -errno;
			set_detail(detail, "removing a test file from the drive");
		}
	}
	free(buf);
	free(back);
	if (r == 0)
		*ret_flags = flags;
	return r == -EDQUOT ? -ENOSPC : r;
}
