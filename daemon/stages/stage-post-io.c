/*
 * Worker threads of the post-import stages. A repair reader reads one
 * staging file in manifest-sized blocks, hashing each, and hands them to the
 * loop (at most two waiting) to upload; the file must be unchanged since it
 * was indexed, or it cannot stand in for what was shipped. The cleaner
 * deletes the staging files of a finished job from its own read-only
 * database connection: only files seedd indexed, only if size and mtime are
 * unchanged, never through a symlink, then the directories that became
 * empty. Neither thread touches the loop's state; results go through the
 * worker queue. See stage-post.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "azure-blob.h"
#include "daemon.h"
#include "db.h"
#include "log.h"
#include "stage-post.h"
#include "stage.h"
#include "util.h"

#define REPAIR_INFLIGHT 2
#define CLEAN_BATCH 256
#define DIRS_MAX 100000 /* directories remembered for removal once empty */

struct block_msg {
	struct worker_msg m;
	int64_t job_id, file_id;
	uint64_t gen;
	size_t idx, len;
	unsigned char md5[16];
	void *data;
};

struct read_done_msg {
	struct worker_msg m;
	int64_t job_id, file_id;
	uint64_t gen;
	int status;
	char error[256];
};

struct cleaned_msg {
	struct worker_msg m;
	int64_t job_id;
	uint64_t gen;
	size_t n;
	bool last;
	char *error;
	struct file_mark marks[CLEAN_BATCH];
	char *strings[2 * CLEAN_BATCH];
	size_t n_strings;
};

static void
block_msg_free(struct worker_msg *m)
{
	free(((struct block_msg *)m)->data);
	free(m);
}

static void
plain_free(struct worker_msg *m)
{
	free(m);
}

static void
cleaned_msg_free(struct worker_msg *m)
{
	struct cleaned_msg *cm = (struct cleaned_msg *)m;

	for (size_t i = 0; i < cm->n_strings; i++)
		free(cm->strings[i]);
	free(cm->error);
	free(cm);
}

/*
 * Open the parent directory of rel (relative to rootfd) one component at a
 * time with O_NOFOLLOW, so no symlink in the path is followed. *ret_name
 * points into rel at the last component.
 */
static int
open_parent(int rootfd, const char *rel, const char **ret_name)
{
	_cleanup_free_ char *copy = xstrdup(rel);
	char *save = NULL, *part, *next;
	int fd = dup(rootfd);

	if (fd < 0)
		return -errno;
	part = strtok_r(copy, "/", &save);
	while (part != NULL && (next = strtok_r(NULL, "/", &save)) != NULL) {
		int sub;
		if (strcmp(part, "..") == 0 || strcmp(part, ".") == 0) {
			close(fd);
			return -EINVAL;
		}
		sub = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		if (sub < 0)
			return -errno;
		fd = sub;
		part = next;
	}
	*ret_name = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
	return fd;
}

static bool
same_file(const struct stat *st, int64_t size, int64_t mtime_ns)
{
	return S_ISREG(st->st_mode) && st->st_size == size &&
	       (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec == mtime_ns;
}

/* ---- repair reader ------------------------------------------------------------ */

static int
wait_room(struct repair *rp)
{
	pthread_mutex_lock(&rp->lock);
	while (rp->inflight >= REPAIR_INFLIGHT && !atomic_load(&rp->w.cancel))
		pthread_cond_wait(&rp->cond, &rp->lock);
	rp->inflight++;
	pthread_mutex_unlock(&rp->lock);
	return atomic_load(&rp->w.cancel) ? -ECANCELED : 0;
}

static int
read_blocks(struct repair *rp, int fd, struct worker_queue *q, int64_t job_id)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int64_t off = 0;
	size_t idx = 0;
	int r = 0;

	while (off < rp->size && r == 0) {
		size_t len = (size_t)(rp->size - off < BLOB_BLOCK_MAX ? rp->size - off : BLOB_BLOCK_MAX);
		struct block_msg *bm;
		size_t got = 0;

		if ((r = wait_room(rp)) < 0)
			break;
		bm = xcalloc(1, sizeof(*bm));
		bm->data = xmalloc(len);
		while (got < len) {
			ssize_t n = pread(fd, (char *)bm->data + got, len - got, off + (off_t)got);
			if (n <= 0) {
				r = n < 0 ? -errno : -ESTALE;
				break;
			}
			got += (size_t)n;
		}
		if (r < 0) {
			block_msg_free(&bm->m);
			break;
		}
		EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
		EVP_DigestUpdate(ctx, bm->data, len);
		EVP_DigestFinal_ex(ctx, bm->md5, NULL);
		bm->m.kind = MSG_POST_BLOCK;
		bm->m.free_fn = block_msg_free;
		bm->job_id = job_id;
		bm->file_id = rp->file_id;
		bm->gen = rp->gen;
		bm->idx = idx++;
		bm->len = len;
		worker_queue_push(q, &bm->m);
		worker_thread_beat(&rp->w);
		off += (int64_t)len;
	}
	EVP_MD_CTX_free(ctx);
	return r;
}

struct reader_args {
	struct repair *rp;
	int rootfd;
	struct worker_queue *q;
	int64_t job_id;
};

static void *
repair_thread(void *arg)
{
	struct reader_args *a = arg;
	struct repair *rp = a->rp;
	struct read_done_msg *dm = xcalloc(1, sizeof(*dm));
	struct worker_queue *q;
	const char *name;
	struct stat st;
	int dirfd, fd = -1, r;

	atomic_store(&rp->w.busy, true);
	dirfd = open_parent(a->rootfd, rp->rel_path, &name);
	r = dirfd;
	if (dirfd >= 0) {
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		r = fd < 0 ? -errno : 0;
		close(dirfd);
	}
	if (r == 0 && (fstat(fd, &st) < 0 || !same_file(&st, rp->size, rp->mtime_ns)))
		r = -ESTALE;
	if (r == 0)
		r = read_blocks(rp, fd, a->q, a->job_id);
	if (fd >= 0 && r == 0 && (fstat(fd, &st) < 0 || !same_file(&st, rp->size, rp->mtime_ns)))
		r = -ESTALE;
	if (fd >= 0)
		close(fd);
	dm->m.kind = MSG_POST_READ_DONE;
	dm->m.free_fn = plain_free;
	dm->job_id = a->job_id;
	dm->file_id = rp->file_id;
	dm->gen = rp->gen;
	dm->status = r;
	snprintf(dm->error, sizeof(dm->error), "%s",
		 r == -ESTALE ? "it changed in staging since it was copied to the drive"
			      : strerror(-r));
	close(a->rootfd);
	q = a->q;
	free(a);
	atomic_store(&rp->w.busy, false);
	/* Last, even when cancelled: the loop joins (at once) and frees rp when it arrives. */
	worker_queue_push(q, &dm->m);
	return NULL;
}

int
post_repair_start(struct post *p, struct repair *rp)
{
	struct reader_args *a = xcalloc(1, sizeof(*a));
	int r;

	rp->p = p;
	rp->gen = p->gen;
	pthread_mutex_init(&rp->lock, NULL);
	pthread_cond_init(&rp->cond, NULL);
	a->rp = rp;
	a->q = p->d->queue;
	a->job_id = p->job_id;
	a->rootfd = open(p->staging_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (a->rootfd < 0) {
		r = -errno;
		free(a);
		return r;
	}
	if ((r = worker_thread_start(&rp->w, repair_thread, a)) < 0) {
		close(a->rootfd);
		free(a);
	}
	return r;
}

void
post_repair_cancel(struct repair *rp)
{
	pthread_mutex_lock(&rp->lock);
	atomic_store(&rp->w.cancel, true);
	pthread_cond_broadcast(&rp->cond);
	pthread_mutex_unlock(&rp->lock);
}

/* Immediate once its last message arrived; otherwise only at shutdown. */
void
post_repair_stop(struct repair *rp)
{
	post_repair_cancel(rp);
	worker_thread_stop(&rp->w);
	pthread_mutex_destroy(&rp->lock);
	pthread_cond_destroy(&rp->cond);
}

/* ---- cleaner ------------------------------------------------------------------- */

struct cleaner {
	struct worker_thread *w;
	struct worker_queue *q;
	int64_t job_id;
	uint64_t gen;
	char *db_path, *staging_path;
	char **dirs;
	size_t n_dirs;
};

static void
remember_dirs(struct cleaner *c, const char *rel)
{
	_cleanup_free_ char *d = xstrdup(rel);
	char *slash;

	while ((slash = strrchr(d, '/')) != NULL) {
		*slash = '\0';
		for (size_t i = 0; i < c->n_dirs; i++)
			if (strcmp(c->dirs[i], d) == 0)
				return; /* and so are its parents */
		if (c->n_dirs >= DIRS_MAX)
			return;
		c->dirs = xreallocarray(c->dirs, c->n_dirs + 1, sizeof(char *));
		c->dirs[c->n_dirs++] = xstrdup(d);
	}
}

static void
mark(struct cleaned_msg *cm, int64_t id, const char *state, char *detail)
{
	cm->marks[cm->n++] = (struct file_mark){.file_id = id, .state = state, .detail = detail};
	if (detail != NULL)
		cm->strings[cm->n_strings++] = detail;
}

/* Delete one staging file if it is still the one seedd indexed. */
static void
clean_one(struct cleaner *c, int rootfd, const struct file_row *f, struct cleaned_msg *cm)
{
	const char *name;
	struct stat st;
	int dirfd = open_parent(rootfd, f->rel_path, &name);

	if (dirfd < 0) {
		mark(cm, f->id, dirfd == -ENOENT ? "staging-deleted" : "staging-kept",
		     xprintf("%s: %s", f->rel_path, strerror(-dirfd)));
		return;
	}
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		mark(cm, f->id, errno == ENOENT ? "staging-deleted" : "staging-kept",
		     xprintf("%s: %s", f->rel_path, strerror(errno)));
	else if (!same_file(&st, f->size, f->mtime_ns))
		mark(cm, f->id, "staging-kept", xprintf("%s: changed since it was indexed", f->rel_path));
	else if (unlinkat(dirfd, name, 0) < 0)
		mark(cm, f->id, "staging-kept", xprintf("%s: %s", f->rel_path, strerror(errno)));
	else
		mark(cm, f->id, "staging-deleted", NULL);
	close(dirfd);
	remember_dirs(c, f->rel_path);
}

static int
depth_cmp(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	size_t dx = 0, dy = 0;

	for (; *x; x++)
		dx += *x == '/';
	for (; *y; y++)
		dy += *y == '/';
	return dx < dy ? 1 : dx > dy ? -1 : 0;
}

/* Remove the directories the cleaned files were in, deepest first, if now empty. */
static void
remove_dirs(struct cleaner *c, int rootfd)
{
	qsort(c->dirs, c->n_dirs, sizeof(char *), depth_cmp);
	for (size_t i = 0; i < c->n_dirs; i++) {
		const char *name;
		int dirfd = open_parent(rootfd, c->dirs[i], &name);
		if (dirfd >= 0) {
			(void)unlinkat(dirfd, name, AT_REMOVEDIR); /* ENOTEMPTY: someone else's */
			close(dirfd);
		}
		free(c->dirs[i]);
	}
	free(c->dirs);
	c->dirs = NULL;
	c->n_dirs = 0;
}

static struct cleaned_msg *
cleaned_new(struct cleaner *c)
{
	struct cleaned_msg *cm = xcalloc(1, sizeof(*cm));

	cm->m.kind = MSG_POST_CLEANED;
	cm->m.free_fn = cleaned_msg_free;
	cm->job_id = c->job_id;
	cm->gen = c->gen;
	return cm;
}

static int
clean_all(struct cleaner *c, struct db *ro, int rootfd)
{
	int64_t after = 0;

	for (;;) {
		struct file_row *rows = NULL;
		struct cleaned_msg *cm;
		size_t n = 0;
		int r;

		if (atomic_load(&c->w->cancel))
			return -ECANCELED;
		if ((r = db_files_page(ro, c->job_id, "verified", 0, after, CLEAN_BATCH, &rows,
				       &n)) < 0)
			return r;
		if (n == 0) {
			file_rows_free(rows, n);
			return 0;
		}
		cm = cleaned_new(c);
		for (size_t i = 0; i < n && !atomic_load(&c->w->cancel); i++) {
			after = rows[i].id;
			if (rows[i].cleanup_state && strcmp(rows[i].cleanup_state, "blob-deleted") == 0)
				clean_one(c, rootfd, &rows[i], cm);
		}
		file_rows_free(rows, n);
		worker_queue_push(c->q, &cm->m);
		worker_thread_beat(c->w);
	}
}

static void *
cleaner_thread(void *arg)
{
	struct cleaner *c = arg;
	struct cleaned_msg *last = cleaned_new(c);
	struct worker_queue *last_q = c->q;
	_cleanup_free_ char *err = NULL;
	struct db *ro = NULL;
	int rootfd, r;

	atomic_store(&c->w->busy, true);
	rootfd = open(c->staging_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rootfd < 0)
		last->error = xprintf("cannot open staging directory %s: %s", c->staging_path,
				      strerror(errno));
	else if ((r = db_open_readonly(c->db_path, &ro, &err)) < 0)
		last->error = xprintf("opening the store: %s", err ? err : strerror(-r));
	else if ((r = clean_all(c, ro, rootfd)) < 0)
		last->error = r == -ECANCELED ? NULL : xprintf("cleaning staging: %s", strerror(-r));
	if (rootfd >= 0 && last->error == NULL && !atomic_load(&c->w->cancel))
		remove_dirs(c, rootfd);
	for (size_t i = 0; i < c->n_dirs; i++)
		free(c->dirs[i]);
	free(c->dirs);
	if (rootfd >= 0)
		close(rootfd);
	db_close(ro);
	last->last = true;
	atomic_store(&c->w->busy, false);
	free(c->db_path);
	free(c->staging_path);
	free(c);
	/* Last, even when cancelled: the loop joins (at once) when it arrives. */
	worker_queue_push(last_q, &last->m);
	return NULL;
}

int
post_cleaner_start(struct post *p)
{
	struct cleaner *c = xcalloc(1, sizeof(*c));
	int r;

	c->w = &p->cleaner;
	c->q = p->d->queue;
	c->job_id = p->job_id;
	c->gen = p->gen;
	c->db_path = xprintf("%s/seedd.db", p->d->state_dir);
	c->staging_path = xstrdup(p->staging_path);
	if ((r = worker_thread_start(&p->cleaner, cleaner_thread, c)) < 0) {
		free(c->db_path);
		free(c->staging_path);
		free(c);
		return r;
	}
	p->cleaner_running = true;
	return 0;
}

void
post_cleaner_cancel(struct post *p)
{
	if (p->cleaner_running)
		atomic_store(&p->cleaner.cancel, true);
}

/* Immediate once the cleaner's last message arrived; otherwise only at shutdown. */
void
post_io_stop(struct post *p)
{
	if (p->cleaner_running) {
		worker_thread_stop(&p->cleaner);
		p->cleaner_running = false;
	}
}

void
post_io_handle_msg(struct daemon *d, struct worker_msg *m)
{
	struct block_msg *bm = (struct block_msg *)m;
	struct read_done_msg *dm = (struct read_done_msg *)m;
	struct cleaned_msg *cm = (struct cleaned_msg *)m;
	int64_t job_id = m->kind == MSG_POST_BLOCK ? bm->job_id
			 : m->kind == MSG_POST_READ_DONE ? dm->job_id : cm->job_id;
	uint64_t gen = m->kind == MSG_POST_BLOCK ? bm->gen
		       : m->kind == MSG_POST_READ_DONE ? dm->gen : cm->gen;
	struct post *p = post_lookup(d, job_id, gen);

	if (p == NULL)
		return;
	/* A thread's last message: it has ended (or is about to), so the join is immediate. */
	if (m->kind == MSG_POST_READ_DONE && p->repair != NULL && p->repair->file_id == dm->file_id)
		worker_thread_stop(&p->repair->w);
	else if (m->kind == MSG_POST_CLEANED && cm->last && p->cleaner_running)
		p->cleaner_running = false, worker_thread_stop(&p->cleaner);
	if (p->stopping)
		post_reap(p); /* a stopped post's: nothing else counts */
	else if (m->kind == MSG_POST_BLOCK)
		post_block_read(p, bm->file_id, bm->idx, bm->data, bm->len, bm->md5);
	else if (m->kind == MSG_POST_READ_DONE)
		post_read_done(p, dm->file_id, dm->status, dm->error);
	else
		post_cleaned(p, cm->marks, cm->n, cm->last, cm->error);
}
