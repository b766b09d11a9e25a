/*
 * Stage `drive_prep`: one worker thread per drive copies its planned files
 * (copy.c: hash, write, fdatasync, verify by re-reading), then writes the
 * blobs' properties files and the drive's DriveManifest.xml (manifest.c)
 * from a read-only database connection. The loop half feeds each worker a bounded queue of tasks read
 * from the store, commits every result in one transaction (a file counts as
 * copied only once verified), moves files off a full drive, re-plans a file
 * that changed in staging, and waits in phase `needs-drive` when no drive
 * has room. Every step is idempotent, so a restart resumes where the store
 * says: planned files are copied again, big files from their checkpoint.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog-ids.h"
#include "config.h"
#include "copy.h"
#include "daemon.h"
#include "db.h"
#include "jobctl.h"
#include "drive.h"
#include "lint.h"
#include "log.h"
#include "manifest.h"
#include "placement.h"
#include "plan.h"
#include "seedd-build.h"
#include "stage.h"
#include "throttle.h"
#include "stagetab.h"
#include "util.h"

#define FEED_MAX 1024             /* tasks queued per drive */
#define FEED_PAGE 256             /* rows read per feed query */
#define SMALL_FILE (1u << 20)     /* files below this are copied in synced groups */
#define SMALL_GROUP_FILES 256
#define SMALL_GROUP_BYTES (64u << 20)
#define GROUP_COMMIT_TRIES 5 /* a verifier's commit, before the loop takes it over */
#define MANIFEST_NAME DRIVE_MANIFEST_NAME
#define MANIFEST_TMP DRIVE_MANIFEST_TMP
/*
 * Properties files (manifest.h) go to <job>/PROPS_PARENT/PROPS_DIR/. The
 * parent ".seedd-tmp" cannot be a staged name: lint refuses every path
 * segment ending in LINT_TMP_SUFFIX, and a copy's temporary name is a
 * staged name + that suffix, never the suffix alone. Inside <job>/ the
 * files pass drive_check_foreign and count in drive_job_usage. They are
 * not blobs: only PropertiesPath names them.
 */
#define PROPS_PARENT LINT_TMP_SUFFIX
#define PROPS_DIR "properties"
#define PROGRESS_SEC 1

enum task_kind {
	TASK_COPY,
	TASK_MANIFEST,
};

struct prep_task {
	STAILQ_ENTRY(prep_task) link;
	enum task_kind kind;
	int64_t file_id;
	char *rel_path, *dst_path;
	int64_t size, mtime_ns;
	struct copy_block *resume; /* committed blocks of a checkpoint, or NULL */
	size_t n_resume;
};

/* A group of small files copied and synced, to be verified and reported. */
struct small_group {
	struct prep_task *tasks[SMALL_GROUP_FILES];
	struct file_msg *msgs[SMALL_GROUP_FILES];
	size_t n;
	int synced; /* 0, or -errno of the syncfs */
};

/*
 * A drive's group verifier: a thread that verifies and reports one synced
 * group of small files while the worker copies the next. It has a copier of
 * its own; pending is under the lock.
 */
struct group_verifier {
	pthread_t thread;
	bool started;
	bool quit;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct small_group *pending; /* handed over, not yet reported */
	struct copier *cp;
	struct db *db; /* its own write connection: the group's commit is off the loop */
};

/*
 * A drive's prefetcher: a thread that asks the kernel to read the staging
 * files of the group being copied ahead of the worker (copy_prefetch), so the
 * worker's reads find them in the page cache. Fields under the lock; the
 * paths belong to the group's tasks.
 */
struct prefetcher {
	pthread_t thread;
	bool started;
	bool quit;
	bool busy;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const char *paths[SMALL_GROUP_FILES];
	size_t n, next;
};

struct prep_drive {
	struct prep *p;
	int64_t drive_id;
	char *serial, *path;
	int root_fd;
	unsigned direct; /* COPY_DIRECT_* from the drive's row, read by the worker as it starts */
	struct worker_thread w;
	/* Loop -> worker task queue. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	STAILQ_HEAD(, prep_task) tasks;
	/* Loop side. */
	int64_t inflight[FEED_MAX]; /* file ids handed to the worker, not yet reported */
	size_t n_inflight;
	int64_t cursor;             /* feed: last file id read */
	bool exhausted;             /* no planned file left past the cursor */
	bool full;                  /* ENOSPC seen: place nothing more here */
	bool manifest_pending;      /* a manifest task is queued or running */
	bool counted;               /* its thread's MSG_PREP_COUNTED arrived */
	int64_t capacity;           /* bytes seedd may use */
	int64_t committed;          /* bytes verified on the drive */
	int64_t planned;            /* bytes planned or verified on the drive */
	int64_t last_done;
	double rate;
	/* Worker side, read by the loop for progress. */
	atomic_llong current; /* bytes done of the file being copied */
	struct group_verifier gv;
	struct prefetcher pf;
	bool exited; /* loop side: its MSG_PREP_EXITED arrived */
};

struct prep {
	LIST_ENTRY(prep) link;
	struct daemon *d; /* loop side only */
	int64_t job_id;
	uint64_t gen;
	char *job_name;
	char *db_path;
	int staging_fd;
	bool verify;
	struct throttle *throttle; /* ReadBandwidthMax=: shared by the drive threads, any thread */
	struct prep_drive *drives[DRIVES_PER_JOB_MAX];
	size_t n_drives;
	struct worker_queue *queue;
	struct event *progress;
	bool manifests;
	bool failed;
	struct placer *placer; /* placing what waits, on a thread of its own */
	bool restart; /* stopping: start the job's drive prep again once its threads are gone */
};

/* Worker -> loop: one file's outcome. */
struct file_msg {
	struct worker_msg m;
	int64_t job_id, drive_id, file_id;
	uint64_t gen;
	int status;
	struct copy_result res;
	int64_t old_size;               /* as indexed */
	char *rel_path;                 /* for -ESTALE */
	int64_t new_size, new_mtime_ns; /* for -ESTALE */
	int commit;                     /* committed by the verifier: db_files_verified()'s result */
};

/* Worker -> loop: a group of small files copied, synced and verified together. */
struct files_msg {
	struct worker_msg m;
	int64_t job_id, drive_id;
	uint64_t gen;
	bool committed; /* the verifier committed the verified ones; else the loop does */
	size_t n;
	struct file_msg *items[];
};

struct checkpoint_msg {
	struct worker_msg m;
	int64_t job_id, file_id;
	uint64_t gen;
	size_t n;
	struct block_row blocks[];
};

struct manifest_msg {
	struct worker_msg m;
	int64_t job_id, drive_id;
	uint64_t gen;
	int status;
	char hash[33];
	char *error;
};

/* Worker -> loop: a drive thread's last word; it touches nothing of the prep after it. */
struct exited_msg {
	struct worker_msg m;
	int64_t job_id, drive_id;
	uint64_t gen;
};

/* What the drive held when its thread started: planned or verified, and verified. */
struct counted_msg {
	struct worker_msg m;
	int64_t job_id, drive_id;
	uint64_t gen;
	int r;
	char *err;
	struct file_count held, verified;
};

static uint64_t prep_gen;

static void prep_check_done(struct prep *p);
static void file_done(struct prep *p, struct prep_drive *dr, struct file_msg *fm);
static void prep_free(struct prep *p);
static void prep_reap(struct prep *p);
static struct prep *stopping_find(struct daemon *d, int64_t job_id, uint64_t gen);

/* ---- worker thread ------------------------------------------------------ */

static void
task_free(struct prep_task *t)
{
	if (t == NULL)
		return;
	free(t->rel_path);
	free(t->dst_path);
	free(t->resume);
	free(t);
}

static void
file_msg_free(struct worker_msg *m)
{
	struct file_msg *fm = (struct file_msg *)m;

	copy_result_done(&fm->res);
	free(fm->rel_path);
	free(fm);
}

static void
files_msg_free(struct worker_msg *m)
{
	struct files_msg *gm = (struct files_msg *)m;

	for (size_t i = 0; i < gm->n; i++)
		file_msg_free(&gm->items[i]->m);
	free(gm);
}

static void
plain_msg_free(struct worker_msg *m)
{
	free(m);
}

static void
manifest_msg_free(struct worker_msg *m)
{
	free(((struct manifest_msg *)m)->error);
	free(m);
}

struct copy_ctx {
	struct prep_drive *dr;
	struct prep_task *t;
};

static void
progress_cb(uint64_t bytes_done, void *userdata)
{
	struct copy_ctx *cc = userdata;

	atomic_store(&cc->dr->current, (long long)bytes_done);
	worker_thread_beat(&cc->dr->w);
}

static void
checkpoint_cb(const struct copy_checkpoint *cp, void *userdata)
{
	struct copy_ctx *cc = userdata;
	struct checkpoint_msg *m = xcalloc(1, sizeof(*m) + (cp->n_blocks + 1) * sizeof(m->blocks[0]));

	m->m.kind = MSG_PREP_CHECKPOINT;
	m->m.free_fn = plain_msg_free;
	m->job_id = cc->dr->p->job_id;
	m->gen = cc->dr->p->gen;
	m->file_id = cc->t->file_id;
	m->n = cp->n_blocks;
	for (size_t i = 0; i < cp->n_blocks; i++) {
		m->blocks[i].offset = (int64_t)cp->blocks[i].offset;
		m->blocks[i].length = cp->blocks[i].length;
		memcpy(m->blocks[i].md5, cp->blocks[i].md5, 16);
	}
	worker_queue_push(cc->dr->p->queue, &m->m);
}

static struct file_msg *
file_msg_new(struct prep_drive *dr, const struct prep_task *t)
{
	struct file_msg *fm = xcalloc(1, sizeof(*fm));

	fm->m.kind = MSG_PREP_FILE;
	fm->m.free_fn = file_msg_free;
	fm->job_id = dr->p->job_id;
	fm->gen = dr->p->gen;
	fm->drive_id = dr->drive_id;
	fm->file_id = t->file_id;
	fm->old_size = t->size;
	return fm;
}

/* After -ESTALE, tell the loop what the staging file looks like now. */
static void
restat(struct prep_drive *dr, const struct prep_task *t, struct file_msg *fm)
{
	struct stat st;

	if (fstatat(dr->p->staging_fd, t->rel_path, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISREG(st.st_mode)) {
		fm->new_size = st.st_size;
		fm->new_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	} else
		fm->new_size = -1; /* gone or no longer a file */
}

static int
copy_one(struct prep_drive *dr, struct copier *cp, struct prep_task *t, bool defer,
	 struct file_msg *fm)
{
	struct copy_ctx cc = {.dr = dr, .t = t};
	struct copy_checkpoint resume = {.n_blocks = t->n_resume, .blocks = t->resume};
	struct copy_request req = {
		.src_dirfd = dr->p->staging_fd,
		.src_path = t->rel_path,
		.expected_size = (uint64_t)t->size,
		.expected_mtime_ns = t->mtime_ns,
		.dst_dirfd = dr->root_fd,
		.dst_path = t->dst_path,
		.resume = t->n_resume > 0 ? &resume : NULL,
		.verify = dr->p->verify && !defer,
		.defer_sync = defer,
		.cancel = &dr->w.cancel,
		.pause = &dr->w.pause,
		.throttle = dr->p->throttle,
		.progress = progress_cb,
		.checkpoint = checkpoint_cb,
		.userdata = &cc,
	};

	atomic_store(&dr->current, 0);
	fm->status = copier_copy(cp, &req, &fm->res);
	if (fm->status == -ENOENT || fm->status == -ESTALE) {
		restat(dr, t, fm);
		/* A source that is gone is a staging change, not a copy failure. */
		if (fm->status == -ENOENT && fm->new_size < 0)
			fm->status = -ESTALE;
	}
	if (fm->status < 0 && fm->status != -ECANCELED)
		fm->rel_path = xstrdup(t->rel_path); /* the job log names the file */
	atomic_store(&dr->current, 0);
	return fm->status;
}

/* Take the next task, waiting for one; NULL when cancelled. */
static struct prep_task *
next_task(struct prep_drive *dr, bool wait)
{
	struct prep_task *t;

	pthread_mutex_lock(&dr->lock);
	while (wait && STAILQ_EMPTY(&dr->tasks) && !atomic_load(&dr->w.cancel)) {
		atomic_store(&dr->w.busy, false);
		pthread_cond_wait(&dr->cond, &dr->lock);
	}
	t = atomic_load(&dr->w.cancel) ? NULL : STAILQ_FIRST(&dr->tasks);
	if (t != NULL)
		STAILQ_REMOVE_HEAD(&dr->tasks, link);
	atomic_store(&dr->w.busy, t != NULL);
	worker_thread_beat(&dr->w);
	pthread_mutex_unlock(&dr->lock);
	return t;
}

/* Is the next queued task a small copy (without waiting)? */
static bool
next_is_small(struct prep_drive *dr)
{
	struct prep_task *t;
	bool small;

	pthread_mutex_lock(&dr->lock);
	t = STAILQ_FIRST(&dr->tasks);
	small = t != NULL && t->kind == TASK_COPY && t->size < SMALL_FILE && t->n_resume == 0;
	pthread_mutex_unlock(&dr->lock);
	return small;
}

static struct block_row *blocks_of(const struct copy_result *res);

/*
 * The group's copied files as rows for db_files_verified(): v[k] for each
 * file with status 0, with its blocks in b[k] unless the group was committed
 * already (then v carries the verifier's result). Returns k.
 */
static size_t
group_verified(const struct files_msg *gm, struct verified_file *v, struct block_row **b)
{
	size_t k = 0;

	for (size_t i = 0; i < gm->n; i++) {
		const struct file_msg *fm = gm->items[i];
		if (fm->status != 0)
			continue;
		b[k] = gm->committed ? NULL : blocks_of(&fm->res);
		v[k] = (struct verified_file){.file_id = fm->file_id, .drive_id = fm->drive_id,
					      .md5 = fm->res.md5, .blocks = b[k],
					      .n = fm->res.n_blocks, .verified = fm->res.verified,
					      .result = fm->commit};
		k++;
	}
	return k;
}

/*
 * The group's verified files in one transaction on the verifier's own
 * connection (one fsync of the log, and not on the loop: a commit waits
 * for the disk). If it fails (say the database is busy for longer than the
 * busy timeout) the loop commits the group as before.
 */
static void
group_commit(struct db *db, struct files_msg *gm)
{
	struct verified_file *v = xcalloc(gm->n + 1, sizeof(*v));
	struct block_row **b = xcalloc(gm->n + 1, sizeof(*b));
	size_t k = group_verified(gm, v, b);
	int r = -EAGAIN;
	/* The loop or the other drives' verifiers may hold the write lock: wait here, not there. */
	for (int attempt = 0; k > 0 && r < 0 && attempt < GROUP_COMMIT_TRIES; attempt++)
		r = db_files_verified(db, v, k, daemon_now());
	if (k > 0 && r == 0) {
		gm->committed = true;
		for (size_t i = 0, j = 0; i < gm->n; i++)
			if (gm->items[i]->status == 0)
				gm->items[i]->commit = v[j++].result;
	}
	for (size_t j = 0; j < k; j++)
		free(b[j]);
	free(b);
	free(v);
}

/*
 * Verify a synced group by re-reading each file from the drive (the batch
 * reads overlap), commit it in one transaction of its own connection, then
 * report the group to the loop in one message. Group verifier thread.
 */
static void
verify_group(struct prep_drive *dr, struct copier *cp, struct small_group *g)
{
	struct files_msg *gm;

	if (dr->p->verify && g->synced == 0) {
		struct copy_verify_item items[SMALL_GROUP_FILES];
		size_t k = 0, map[SMALL_GROUP_FILES];

		for (size_t i = 0; i < g->n; i++)
			if (g->msgs[i]->status == 0) {
				items[k] = (struct copy_verify_item){
					g->tasks[i]->dst_path, g->msgs[i]->res.blocks,
					g->msgs[i]->res.n_blocks, 0};
				map[k++] = i;
			}
		(void)copier_verify_batch(cp, dr->root_fd, items, k, &dr->w.cancel);
		for (size_t i = 0; i < k; i++) {
			struct file_msg *fm = g->msgs[map[i]];
			fm->status = items[i].result;
			fm->res.verified = items[i].result == 0;
			if (items[i].result == -EIO)
				snprintf(fm->res.detail, sizeof(fm->res.detail),
					 "the drive copy does not match what was read");
		}
	}
	gm = xcalloc(1, sizeof(*gm) + g->n * sizeof(gm->items[0]));
	gm->m.kind = MSG_PREP_FILES;
	gm->m.free_fn = files_msg_free;
	gm->job_id = dr->p->job_id;
	gm->drive_id = dr->drive_id;
	gm->gen = dr->p->gen;
	for (size_t i = 0; i < g->n; i++) {
		if (g->msgs[i]->status == 0 && g->synced < 0)
			g->msgs[i]->status = g->synced;
		if (g->msgs[i]->status < 0 && g->msgs[i]->rel_path == NULL)
			g->msgs[i]->rel_path = xstrdup(g->tasks[i]->rel_path);
		gm->items[gm->n++] = g->msgs[i];
		task_free(g->tasks[i]);
	}
	if (dr->gv.db != NULL)
		group_commit(dr->gv.db, gm);
	worker_queue_push(dr->p->queue, &gm->m);
	free(g);
}

static void *
group_verifier_main(void *arg)
{
	struct prep_drive *dr = arg;
	struct group_verifier *gv = &dr->gv;

	pthread_mutex_lock(&gv->lock);
	for (;;) {
		while (!gv->quit && gv->pending == NULL)
			pthread_cond_wait(&gv->cond, &gv->lock);
		if (gv->pending == NULL)
			break;
		pthread_mutex_unlock(&gv->lock);
		verify_group(dr, gv->cp, gv->pending);
		pthread_mutex_lock(&gv->lock);
		gv->pending = NULL;
		pthread_cond_broadcast(&gv->cond);
	}
	pthread_mutex_unlock(&gv->lock);
	return NULL;
}

static int
group_verifier_start(struct prep_drive *dr)
{
	struct group_verifier *gv = &dr->gv;
	int r;

	if ((gv->cp = copier_new()) == NULL)
		return -ENOMEM;
	{
		_cleanup_free_ char *err = NULL;
		/* Without a connection of its own the loop commits the groups (slower, not wrong). */
		if (db_open(dr->p->db_path, &gv->db, &err) < 0)
			log_warning("job %s: drive %s: the group verifier has no database connection "
				    "(%s); the loop commits its groups",
				    dr->p->job_name, dr->serial, err ? err : "?");
	}
	copier_set_direct(gv->cp, dr->direct);
	pthread_mutex_init(&gv->lock, NULL);
	pthread_cond_init(&gv->cond, NULL);
	r = worker_thread_create(&gv->thread, group_verifier_main, dr);
	gv->started = r == 0;
	return r;
}

/* Hand a synced group over, once the one before it is reported. */
static void
group_verifier_submit(struct prep_drive *dr, struct small_group *g)
{
	struct group_verifier *gv = &dr->gv;

	pthread_mutex_lock(&gv->lock);
	while (gv->pending != NULL)
		pthread_cond_wait(&gv->cond, &gv->lock);
	gv->pending = g;
	pthread_cond_broadcast(&gv->cond);
	pthread_mutex_unlock(&gv->lock);
}

/* Let the group in hand be reported (a cancel cuts its verification short), then end the thread. */
static void
group_verifier_stop(struct prep_drive *dr)
{
	struct group_verifier *gv = &dr->gv;

	if (gv->started) {
		pthread_mutex_lock(&gv->lock);
		gv->quit = true;
		pthread_cond_broadcast(&gv->cond);
		pthread_mutex_unlock(&gv->lock);
		pthread_join(gv->thread, NULL);
		pthread_mutex_destroy(&gv->lock);
		pthread_cond_destroy(&gv->cond);
		gv->started = false;
	}
	gv->cp = copier_free(gv->cp);
	gv->db = db_close(gv->db);
}

static void *
prefetcher_main(void *arg)
{
	struct prep_drive *dr = arg;
	struct prefetcher *pf = &dr->pf;

	pthread_mutex_lock(&pf->lock);
	for (;;) {
		const char *path;

		while (!pf->quit && pf->next >= pf->n)
			pthread_cond_wait(&pf->cond, &pf->lock);
		if (pf->quit)
			break;
		path = pf->paths[pf->next++];
		pf->busy = true;
		pthread_mutex_unlock(&pf->lock);
		(void)copy_prefetch(dr->p->staging_fd, path); /* only a hint: the copy says what failed */
		pthread_mutex_lock(&pf->lock);
		pf->busy = false;
		pthread_cond_broadcast(&pf->cond);
	}
	pthread_mutex_unlock(&pf->lock);
	return NULL;
}

static int
prefetcher_start(struct prep_drive *dr)
{
	struct prefetcher *pf = &dr->pf;
	int r;

	pthread_mutex_init(&pf->lock, NULL);
	pthread_cond_init(&pf->cond, NULL);
	r = worker_thread_create(&pf->thread, prefetcher_main, dr);
	pf->started = r == 0;
	return r;
}

/* Prefetch the sources of these tasks, in order, from now on. */
static void
prefetcher_set(struct prep_drive *dr, struct prep_task **tasks, size_t n)
{
	struct prefetcher *pf = &dr->pf;

	pthread_mutex_lock(&pf->lock);
	for (size_t i = 0; i < n; i++)
		pf->paths[i] = tasks[i]->rel_path;
	pf->n = n;
	pf->next = 0;
	pthread_cond_broadcast(&pf->cond);
	pthread_mutex_unlock(&pf->lock);
}

/* Stop prefetching; on return the prefetcher holds no path of the group. */
static void
prefetcher_clear(struct prep_drive *dr)
{
	struct prefetcher *pf = &dr->pf;

	pthread_mutex_lock(&pf->lock);
	pf->n = pf->next = 0;
	while (pf->busy)
		pthread_cond_wait(&pf->cond, &pf->lock);
	pthread_mutex_unlock(&pf->lock);
}

static void
prefetcher_stop(struct prep_drive *dr)
{
	struct prefetcher *pf = &dr->pf;

	if (!pf->started)
		return;
	pthread_mutex_lock(&pf->lock);
	pf->quit = true;
	pthread_cond_broadcast(&pf->cond);
	pthread_mutex_unlock(&pf->lock);
	pthread_join(pf->thread, NULL);
	pthread_mutex_destroy(&pf->lock);
	pthread_cond_destroy(&pf->cond);
	pf->started = false;
}

/*
 * Small files: copy a group without syncing each and sync the drive once;
 * the group verifier then re-reads each before any is reported, while this
 * thread copies the next group.
 */
static void
copy_small_group(struct prep_drive *dr, struct copier *cp, struct prep_task *first)
{
	struct small_group *g = xcalloc(1, sizeof(*g));
	size_t bytes = (size_t)first->size;

	g->tasks[g->n++] = first;
	while (g->n < SMALL_GROUP_FILES && bytes < SMALL_GROUP_BYTES && next_is_small(dr)) {
		struct prep_task *t = next_task(dr, false);
		if (t == NULL)
			break;
		g->tasks[g->n++] = t;
		bytes += (size_t)t->size;
	}
	/*
	 * The first is read at once anyway: prefetch from the second on. Not
	 * under a read cap: the kernel's read-ahead would not be paced.
	 */
	if (throttle_rate(dr->p->throttle) == 0)
		prefetcher_set(dr, g->tasks + 1, g->n - 1);
	for (size_t i = 0; i < g->n; i++) {
		g->msgs[i] = file_msg_new(dr, g->tasks[i]);
		(void)copy_one(dr, cp, g->tasks[i], true, g->msgs[i]);
	}
	prefetcher_clear(dr);
	g->synced = syncfs(dr->root_fd) < 0 ? -errno : 0;
	group_verifier_submit(dr, g);
	worker_thread_beat(&dr->w);
}

struct manifest_ctx {
	struct manifest_writer *mw;
	struct manifest_block *blocks;
	size_t cap;
	struct prep_drive *dr;
	int dirs[3]; /* <job>, <job>/.seedd-tmp, <job>/.seedd-tmp/properties; < 0 if not open */
};

/* Open (making it if need be) the directory name in parent. */
static int
open_subdir(int parent, const char *name)
{
	int fd;

	if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Open <job>/.seedd-tmp/properties on the drive. */
static int
props_open(struct manifest_ctx *mc)
{
	const char *names[] = {mc->dr->p->job_name, PROPS_PARENT, PROPS_DIR};
	int parent = mc->dr->root_fd;

	for (size_t i = 0; i < ELEMENTSOF(names); i++) {
		if ((mc->dirs[i] = open_subdir(parent, names[i])) < 0)
			return mc->dirs[i];
		parent = mc->dirs[i];
	}
	return 0;
}

/*
 * Make the properties files durable before the manifest naming them is
 * renamed into place: syncfs for the files (one flush, as for a group of
 * small files), then fsync of the directories they were entered in (on a
 * FUSE mount that fsync is what reaches ntfs-3g).
 */
static int
props_sync(struct manifest_ctx *mc)
{
	if (syncfs(mc->dr->root_fd) < 0)
		return -errno;
	for (size_t i = ELEMENTSOF(mc->dirs); i-- > 0;)
		if (fsync(mc->dirs[i]) < 0 && errno != EINVAL)
			return -errno;
	return 0;
}

static void
props_close(struct manifest_ctx *mc)
{
	for (size_t i = 0; i < ELEMENTSOF(mc->dirs); i++)
		if (mc->dirs[i] >= 0)
			(void)close(mc->dirs[i]);
}

/* The blob's properties file: written if missing or wrong; its Hash set, its path in *ret_path. */
static int
blob_properties(struct manifest_ctx *mc, const struct file_row *f, struct manifest_blob *blob,
                char **ret_path)
{
	char name[MANIFEST_PROPERTIES_NAME_LEN + 1];
	int r;

	if (!f->has_md5)
		return -EINVAL; /* a verified file always has its MD5 (copy.c) */
	if ((r = manifest_properties_put(mc->dirs[2], f->md5, blob->properties_hash)) < 0)
		return r;
	manifest_properties_name(f->md5, name);
	*ret_path = xprintf("%s/%s/%s/%s", mc->dr->p->job_name, PROPS_PARENT, PROPS_DIR, name);
	blob->properties_path = *ret_path;
	return 0;
}

static int
manifest_add_cb(const struct file_row *f, const struct block_row *b, size_t n, void *userdata)
{
	struct manifest_ctx *mc = userdata;
	_cleanup_free_ char *file_path = NULL, *props_path = NULL;
	int r;

	if (atomic_load(&mc->dr->w.cancel))
		return -ECANCELED; /* shutting down: the manifest is written again at restart */
	file_path = drive_file_path(mc->dr->p->job_name, f->rel_path);

	if (n > mc->cap) {
		mc->blocks = xreallocarray(mc->blocks, n, sizeof(*mc->blocks));
		mc->cap = n;
	}
	for (size_t i = 0; i < n; i++) {
		mc->blocks[i].offset = (uint64_t)b[i].offset;
		mc->blocks[i].length = (uint32_t)b[i].length;
		memcpy(mc->blocks[i].md5, b[i].md5, 16);
	}
	struct manifest_blob blob = {
		.blob_path = f->blob_name,
		.file_path = file_path,
		.length = (uint64_t)f->size,
		.disposition = MANIFEST_RENAME,
		.n_blocks = n,
		.blocks = mc->blocks,
	};
	r = blob_properties(mc, f, &blob, &props_path);
	worker_thread_beat(&mc->dr->w);
	return r < 0 ? r : manifest_writer_add_blob(mc->mw, &blob);
}

/*
 * Write DriveManifest.xml from the verified rows of this drive, each blob's
 * properties file on the way (cost measured in bench/README.md: one small
 * create per distinct content here, on the worker, instead of during the
 * copy, where a resumed group would have to redo or re-check them).
 */
static void
write_manifest(struct prep_drive *dr)
{
	struct manifest_msg *mm = xcalloc(1, sizeof(*mm));
	struct manifest_ctx mc = {.dr = dr, .dirs = {-1, -1, -1}};
	_cleanup_free_ char *err = NULL;
	struct db *ro = NULL;
	unsigned char md5[16];
	int r = 0;

	mm->m.kind = MSG_PREP_MANIFEST;
	mm->m.free_fn = manifest_msg_free;
	mm->job_id = dr->p->job_id;
	mm->drive_id = dr->drive_id;
	mm->gen = dr->p->gen;
	if ((r = db_open_readonly(dr->p->db_path, &ro, &err)) < 0) {
		mm->error = xprintf("opening the store: %s", err ? err : strerror(-r));
		goto out;
	}
	if ((r = props_open(&mc)) < 0) {
		mm->error = xprintf("creating %s/%s/%s on %s: %s", dr->p->job_name, PROPS_PARENT,
		                    PROPS_DIR, dr->path, strerror(-r));
		goto out;
	}
	mc.mw = manifest_writer_open(dr->root_fd, MANIFEST_TMP, dr->serial, "seedd " SEEDD_VERSION,
				     &r);
	if (mc.mw == NULL) {
		mm->error = xprintf("creating %s on %s: %s", MANIFEST_TMP, dr->path, strerror(-r));
		goto out;
	}
	r = db_drive_foreach_verified(ro, dr->drive_id, manifest_add_cb, &mc);
	if (r >= 0 && (r = props_sync(&mc)) < 0)
		mm->error =
		    xprintf("syncing the properties files on %s: %s", dr->path, strerror(-r));
	else if (r < 0)
		mm->error = xprintf("writing the manifest of %s: %s", dr->path, strerror(-r));
	if (r < 0) {
		manifest_writer_abort(mc.mw);
		goto out;
	}
	if ((r = manifest_writer_close(mc.mw, MANIFEST_NAME, md5)) < 0) {
		mm->error = xprintf("finishing the manifest of %s: %s", dr->path, strerror(-r));
		goto out;
	}
	manifest_hash_hex(md5, mm->hash);
out:
	mm->status = r;
	free(mc.blocks);
	props_close(&mc);
	db_close(ro);
	worker_queue_push(dr->p->queue, &mm->m);
}

static void
exited_msg_free(struct worker_msg *m)
{
	free(m);
}

static void
drive_exited(struct prep_drive *dr)
{
	struct exited_msg *em = xcalloc(1, sizeof(*em));

	em->m.kind = MSG_PREP_EXITED;
	em->m.free_fn = exited_msg_free;
	em->job_id = dr->p->job_id;
	em->drive_id = dr->drive_id;
	em->gen = dr->p->gen;
	worker_queue_push(dr->p->queue, &em->m);
}

static void
counted_msg_free(struct worker_msg *m)
{
	free(((struct counted_msg *)m)->err);
	free(m);
}

/*
 * Sum what the drive holds on a connection of the thread's own (two scans of
 * its rows: 0.3 s on the loop at 100 000 files). It runs before the thread
 * copies anything, so every commit the loop hears of comes after the sums.
 */
static void
drive_count(struct prep_drive *dr)
{
	struct counted_msg *cm = xcalloc(1, sizeof(*cm));
	struct db *db = NULL;

	cm->m.kind = MSG_PREP_COUNTED;
	cm->m.free_fn = counted_msg_free;
	cm->job_id = dr->p->job_id;
	cm->drive_id = dr->drive_id;
	cm->gen = dr->p->gen;
	if ((cm->r = db_open_readonly(dr->p->db_path, &db, &cm->err)) == 0 &&
	    ((cm->r = db_drive_file_count(db, dr->drive_id, &cm->held)) < 0 ||
	     (cm->r = db_drive_verified_count(db, dr->drive_id, &cm->verified)) < 0))
		cm->err = xstrdup(db_errmsg(db));
	db_close(db);
	worker_queue_push(dr->p->queue, &cm->m);
}

static void *
drive_thread(void *arg)
{
	struct prep_drive *dr = arg;
	struct copier *cp = copier_new();
	struct prep_task *t;

	if (cp == NULL || group_verifier_start(dr) < 0 || prefetcher_start(dr) < 0)
		fatalx("drive %s: starting the copy threads", dr->serial);
	/* The copier lowers these itself when the drive refuses O_DIRECT (direct_lost()). */
	copier_set_direct(cp, dr->direct);
	drive_count(dr);

	while ((t = next_task(dr, true)) != NULL) {
		if (t->kind == TASK_MANIFEST) {
			write_manifest(dr);
			task_free(t);
		} else if (t->size < SMALL_FILE && t->n_resume == 0) {
			copy_small_group(dr, cp, t);
		} else {
			struct file_msg *fm = file_msg_new(dr, t);
			(void)copy_one(dr, cp, t, false, fm);
			worker_queue_push(dr->p->queue, &fm->m);
			task_free(t);
		}
	}
	prefetcher_stop(dr);
	group_verifier_stop(dr);
	atomic_store(&dr->w.busy, false);
	copier_free(cp);
	drive_exited(dr);
	return NULL;
}

/* ---- loop side ---------------------------------------------------------- */

static struct prep *
prep_find(struct daemon *d, int64_t job_id)
{
	struct prep *p;

	LIST_FOREACH(p, &d->preps, link)
		if (p->job_id == job_id)
			return p;
	return NULL;
}

static struct prep_drive *
drive_find(struct prep *p, int64_t drive_id)
{
	for (size_t i = 0; i < p->n_drives; i++)
		if (p->drives[i]->drive_id == drive_id)
			return p->drives[i];
	return NULL;
}

static void
push_task(struct prep_drive *dr, struct prep_task *t)
{
	pthread_mutex_lock(&dr->lock);
	STAILQ_INSERT_TAIL(&dr->tasks, t, link);
	pthread_cond_signal(&dr->cond);
	pthread_mutex_unlock(&dr->lock);
}

static bool
is_inflight(const struct prep_drive *dr, int64_t file_id)
{
	for (size_t i = 0; i < dr->n_inflight; i++)
		if (dr->inflight[i] == file_id)
			return true;
	return false;
}

static void
inflight_remove(struct prep_drive *dr, int64_t file_id)
{
	for (size_t i = 0; i < dr->n_inflight; i++)
		if (dr->inflight[i] == file_id) {
			dr->inflight[i] = dr->inflight[--dr->n_inflight];
			return;
		}
}

/*
 * A copy that goes on from a checkpoint says so in the job log and the
 * journal, with what was kept: "resumed db/full.bak on DISK-2 at the
 * 96.0 MiB checkpoint of 224.0 MiB".
 */
static void
note_resume(struct prep *p, const char *serial, const struct file_row *f,
	    const struct prep_task *t)
{
	struct log_ctx ctx = {.job = p->job_name, .state = "drive_prep", .drive = serial};
	int64_t kept = 0;
	char k[32], of[32];

	for (size_t i = 0; i < t->n_resume; i++)
		kept += t->resume[i].length;
	format_iec(kept, k);
	format_iec(f->size, of);
	_cleanup_free_ char *text = xprintf("resumed %s on %s at the %s checkpoint of %s",
					    f->rel_path, serial, k, of);
	(void)db_event_add(p->d->db, p->job_id, "note", text, daemon_now());
	log_ctx(LOG_INFO, &ctx, "job %s: %s", p->job_name, text);
}

static struct prep_task *
task_from_row(struct prep *p, const struct file_row *f)
{
	struct prep_task *t = xcalloc(1, sizeof(*t));
	struct block_row *b = NULL;
	size_t n = 0;

	t->kind = TASK_COPY;
	t->file_id = f->id;
	t->rel_path = xstrdup(f->rel_path);
	t->dst_path = drive_file_path(p->job_name, f->rel_path);
	t->size = f->size;
	t->mtime_ns = f->mtime_ns;
	if (f->checkpoint > 0 && db_file_blocks(p->d->db, f->id, &b, &n) == 0 && n > 0) {
		t->resume = xcalloc(n, sizeof(*t->resume));
		for (size_t i = 0; i < n; i++) {
			t->resume[i].offset = (uint64_t)b[i].offset;
			t->resume[i].length = (uint32_t)b[i].length;
			memcpy(t->resume[i].md5, b[i].md5, 16);
		}
		t->n_resume = n;
	}
	free(b);
	return t;
}

/* Hand the worker planned files until its queue is full or none are left. */
static void
drive_feed(struct prep_drive *dr)
{
	struct prep *p = dr->p;

	while (!dr->exhausted && dr->n_inflight + FEED_PAGE <= FEED_MAX) {
		struct file_row *rows = NULL;
		size_t n = 0;

		if (db_files_page(p->d->db, p->job_id, "planned", dr->drive_id, dr->cursor, FEED_PAGE,
				  &rows, &n) < 0) {
			log_error("job %s: reading planned files: %s", p->job_name,
				  db_errmsg(p->d->db));
			return;
		}
		if (n == 0)
			dr->exhausted = true;
		for (size_t i = 0; i < n; i++) {
			struct prep_task *t;
			dr->cursor = rows[i].id;
			if (is_inflight(dr, rows[i].id))
				continue;
			dr->inflight[dr->n_inflight++] = rows[i].id;
			t = task_from_row(p, &rows[i]);
			if (t->n_resume > 0)
				note_resume(p, dr->serial, &rows[i], t);
			push_task(dr, t);
		}
		file_rows_free(rows, n);
	}
}

/* Files were placed on this drive again: read from the start next time. */
static void
drive_rewind(struct prep_drive *dr)
{
	dr->cursor = 0;
	dr->exhausted = false;
}

static void
job_fail(struct prep *p, const char *error)
{
	if (p->failed)
		return;
	p->failed = true;
	(void)jobctl_fail(p->d, p->job_id, p->job_name, JOB_DRIVE_PREP, error);
}

static void
set_phase(struct prep *p, enum job_phase phase, const char *detail)
{
	_cleanup_free_ char *text = detail ? xprintf("%s: %s", job_phase_to_string(phase), detail)
					   : xstrdup(job_phase_to_string(phase));
	struct job_row *j = NULL;

	if (db_job_get_by_id(p->d->db, p->job_id, &j) == 0 && j->state == JOB_DRIVE_PREP &&
	    (j->phase == NULL || strcmp(j->phase, text) != 0))
		(void)jobctl_phase(p->d, p->job_id, JOB_DRIVE_PREP, phase, detail);
	job_row_free(j);
}

/*
 * A staging file that disappeared during drive prep is no longer part of
 * the job: it becomes a skipped entry (reported like a symlink), never
 * planned again.
 */
static int
file_vanished(struct prep *p, const char *rel_path)
{
	struct file_row f = {0};
	struct file_entry e;
	int r;

	if (rel_path == NULL || (r = db_file_by_path(p->d->db, p->job_id, rel_path, &f)) < 0)
		return -ENOENT;
	e = (struct file_entry){.rel_path = f.rel_path, .blob_name = f.blob_name,
				.state = "skipped",
				.reason = "vanished from staging during drive prep"};
	r = db_files_insert_batch(p->d->db, p->job_id, &e, 1);
	if (r == 0)
		r = db_job_set_totals(p->d->db, p->job_id, daemon_now());
	file_row_free_one(&f);
	return r;
}

static struct block_row *
blocks_of(const struct copy_result *res)
{
	struct block_row *b = xcalloc(res->n_blocks + 1, sizeof(*b));

	for (size_t i = 0; i < res->n_blocks; i++) {
		b[i].offset = (int64_t)res->blocks[i].offset;
		b[i].length = res->blocks[i].length;
		memcpy(b[i].md5, res->blocks[i].md5, 16);
	}
	return b;
}

/*
 * A group of small files: every verified one is committed in one
 * transaction (one fsync of the log, not one per file); the others go
 * through file_done() one by one. dr may be NULL (a stopped prep).
 */
static void
commit_group(struct daemon *d, struct prep *p, struct prep_drive *dr, struct files_msg *gm)
{
	struct verified_file *v = xcalloc(gm->n + 1, sizeof(*v));
	struct block_row **b = xcalloc(gm->n + 1, sizeof(*b));
	size_t k;
	int r;

	for (size_t i = 0; i < gm->n; i++)
		if (gm->items[i]->status != 0 && p != NULL && dr != NULL)
			file_done(p, dr, gm->items[i]);
	k = group_verified(gm, v, b);
	r = gm->committed || k == 0 ? 0 : db_files_verified(d->db, v, k, daemon_now());
	if (r < 0)
		log_error("committing %zu copied files: %s", k, db_errmsg(d->db));
	for (size_t i = 0, j = 0; i < gm->n; i++) {
		struct file_msg *fm = gm->items[i];
		if (fm->status != 0)
			continue;
		if (dr != NULL) {
			inflight_remove(dr, fm->file_id);
			if (r == 0 && v[j].result == 0)
				dr->committed += (int64_t)fm->res.bytes;
		}
		free(b[j++]);
	}
	free(b);
	free(v);
}

/* One transaction: the file is on its drive, verified, with its block hashes. */
static void
commit_verified(struct daemon *d, struct file_msg *fm, struct prep_drive *dr)
{
	struct block_row *b = blocks_of(&fm->res);
	int r;

	r = db_file_verified(d->db, fm->file_id, fm->drive_id, fm->res.md5, b, fm->res.n_blocks,
			     fm->res.verified, daemon_now());
	free(b);
	if (r < 0 && r != -ESTALE)
		log_error("committing a copied file: %s", db_errmsg(d->db));
	else if (r == 0 && dr != NULL)
		dr->committed += (int64_t)fm->res.bytes;
}

/*
 * The copy of fm found that its drive refuses O_DIRECT and went on buffered
 * (copy_result.direct_error): record it in the drive's row, so the rest of
 * the job and any retry use buffered I/O from the start, and say so once per
 * drive and kind of I/O (the row remembers what was said).
 */
static void
direct_lost(struct daemon *d, const char *job_name, int64_t job_id, const struct file_msg *fm)
{
	const struct copy_result *res = &fm->res;
	struct drive_row row = {0};
	int64_t flags;

	if (res->direct_error == 0 || db_drive_get(d->db, fm->drive_id, &row) < 0)
		return;
	flags = row.direct_io & ~(int64_t)res->direct_what;
	if (flags != row.direct_io && db_drive_set_direct_io(d->db, row.id, flags) == 0) {
		struct log_ctx ctx = {.job = job_name, .state = "drive_prep", .drive = row.serial};
		unsigned what = res->direct_what & COPY_DIRECT_ALL;
		_cleanup_free_ char *t = xprintf(
		    "drive %s refuses O_DIRECT %s (%s); seedd goes through the page cache for them "
		    "from now on (fdatasync, the cache dropped before each re-read); nothing was lost",
		    row.serial,
		    what == COPY_DIRECT_ALL     ? "writes and reads"
		    : what == COPY_DIRECT_WRITE ? "writes"
		                                : "reads",
		    strerror(res->direct_error));

		if (job_name != NULL)
			log_ctx(LOG_WARNING, &ctx, "job %s: %s", job_name, t);
		else
			log_ctx(LOG_WARNING, &ctx, "%s", t);
		(void)db_event_add(d->db, job_id, "note", t, daemon_now());
	}
	drive_row_done(&row);
}

/* A staging file that vanished or changed during its copy, by name, in the job log and the journal. */
static void
note_file_changed(struct prep *p, const struct prep_drive *dr, const struct file_msg *fm)
{
	struct log_ctx ctx = {.job = p->job_name, .state = "drive_prep", .drive = dr->serial};
	_cleanup_free_ char *text =
	    fm->new_size < 0
		? xprintf("staging file %s vanished while it was copied to %s; it is skipped",
			  fm->rel_path ? fm->rel_path : "?", dr->serial)
		: xprintf("staging file %s changed while it was copied to %s; indexed again "
			  "and copied anew",
			  fm->rel_path ? fm->rel_path : "?", dr->serial);

	(void)db_event_add(p->d->db, p->job_id, "note", text, daemon_now());
	log_ctx(LOG_WARNING, &ctx, "job %s: %s", p->job_name, text);
}

static void
file_done(struct prep *p, struct prep_drive *dr, struct file_msg *fm)
{
	int r;

	direct_lost(p->d, p->job_name, p->job_id, fm);
	inflight_remove(dr, fm->file_id);
	if (fm->status == 0) {
		commit_verified(p->d, fm, dr);
		return;
	}
	switch (fm->status) {
	case -ECANCELED:
		return;
	case -ESTALE:
		dr->planned -= fm->old_size;
		if (fm->new_size < 0)
			r = file_vanished(p, fm->rel_path);
		else
			r = db_file_reindex(p->d->db, fm->file_id, fm->new_size, fm->new_mtime_ns,
					    daemon_now());
		if (r < 0)
			log_error("job %s: re-indexing a changed file: %s", p->job_name,
				  db_errmsg(p->d->db));
		note_file_changed(p, dr, fm);
		return;
	case -ENOSPC:
		dr->planned -= fm->old_size;
		dr->full = true;
		(void)db_file_unplace(p->d->db, fm->file_id);
		(void)db_drive_set_state(p->d->db, dr->drive_id, "full");
		{
			_cleanup_free_ char *t = xprintf("drive %s is full; its remaining files "
							 "move to another drive",
							 dr->serial);
			(void)db_event_add(p->d->db, p->job_id, "note", t, daemon_now());
		}
		return;
	default: {
		_cleanup_free_ char *e = xprintf("copying %s to drive %s (%s) failed: %s%s%s%s",
						 fm->rel_path ? fm->rel_path : "a file",
						 dr->serial, dr->path, strerror(-fm->status),
						 fm->res.detail[0] ? ": " : "", fm->res.detail,
						 drive_write_hint(fm->status));
		job_fail(p, e);
		return;
	}
	}
}

static void
manifest_done(struct prep *p, struct prep_drive *dr, struct manifest_msg *mm)
{
	struct log_ctx ctx = {.job = p->job_name, .state = "drive_prep", .drive = dr->serial,
			      .message_id = SEEDD_MESSAGE_DRIVE_DONE};
	_cleanup_free_ char *text = NULL;

	if (mm->status < 0) {
		_cleanup_free_ char *e = xprintf("drive %s: %s%s", dr->serial,
						 mm->error ? mm->error : strerror(-mm->status),
						 drive_write_hint(mm->status));
		job_fail(p, e);
		return;
	}
	if (db_drive_set_manifest(p->d->db, dr->drive_id, mm->hash) < 0 ||
	    db_drive_set_state(p->d->db, dr->drive_id, "manifest-written") < 0) {
		job_fail(p, "recording a manifest hash failed; see the journal");
		return;
	}
	text = xprintf("drive %s: every file verified, %s written (MD5 %s)", dr->serial,
		       MANIFEST_NAME, mm->hash);
	(void)db_event_add(p->d->db, p->job_id, "drive", text, daemon_now());
	log_ctx(LOG_INFO, &ctx, "job %s: %s", p->job_name, text);
}

static bool
drive_idle(const struct prep_drive *dr)
{
	return dr->counted && dr->exhausted && dr->n_inflight == 0 && !dr->manifest_pending;
}

/*
 * Drive prep is over and the drive received nothing: it ends `unused`, gets
 * no manifest and is not named to Azure (stage-azure.c ships only drives
 * with files); the operator may take it back with `seedctl drive remove`.
 */
static void
drive_unused(struct prep *p, struct prep_drive *dr)
{
	struct log_ctx ctx = {.job = p->job_name, .state = "drive_prep", .drive = dr->serial};
	_cleanup_free_ char *text = NULL;

	if (db_drive_set_state(p->d->db, dr->drive_id, "unused") < 0)
		return;
	text = xprintf("drive %s: no file was placed on it; it is unused and not shipped "
		       "(seedctl drive remove %s %s detaches it)",
		       dr->serial, p->job_name, dr->serial);
	(void)db_event_add(p->d->db, p->job_id, "drive", text, daemon_now());
	log_ctx(LOG_INFO, &ctx, "job %s: %s", p->job_name, text);
}

/* Write the manifests once every file of the job is verified. */
static void
queue_manifests(struct prep *p)
{
	p->manifests = true;
	set_phase(p, JOB_PHASE_WRITING_MANIFESTS, NULL);
	for (size_t i = 0; i < p->n_drives; i++) {
		struct prep_drive *dr = p->drives[i];
		struct prep_task *t;
		if (dr->committed == 0 && dr->planned == 0) {
			struct file_count fc = {0};
			if (db_drive_file_count(p->d->db, dr->drive_id, &fc) < 0)
				continue;
			if (fc.files == 0) {
				drive_unused(p, dr);
				continue;
			}
		}
		t = xcalloc(1, sizeof(*t));
		t->kind = TASK_MANIFEST;
		dr->manifest_pending = true;
		push_task(dr, t);
	}
}

/*
 * What no drive's room can take; of it, large files too large for any
 * attached drive that is not full, the largest needing `need` bytes free.
 * One story with the plan (issue 12).
 */
static void
needs_drive(struct prep *p, int64_t files, int64_t bytes, uint64_t large, uint64_t need)
{
	char b[32], n[32];

	format_iec(bytes, b);
	format_iec((int64_t)need, n);
	_cleanup_free_ char *detail =
	    large == 0 ? xprintf("%" PRId64 " files, %s have no drive with room", files, b)
		       : xprintf("%" PRId64 " files, %s have no drive with room; %" PRIu64
				 " too large for any attached drive (one needs a drive with %s "
				 "free)",
				 files, b, large, n);
	set_phase(p, JOB_PHASE_NEEDS_DRIVE, detail);
}

/*
 * Files wait in state `indexed` (never placed, moved off a full drive,
 * changed in staging): the placer places them on the drives that are not
 * full, on a thread of its own (placement.h); MSG_PREP_PLACED comes back.
 */
static void
place_waiting(struct prep *p, const struct file_count *waiting)
{
	struct placer_drive drives[DRIVES_PER_JOB_MAX];
	size_t nd = 0;

	for (size_t i = 0; i < p->n_drives; i++)
		if (!p->drives[i]->full)
			drives[nd++] = (struct placer_drive){.drive_id = p->drives[i]->drive_id,
							     .capacity = p->drives[i]->capacity};
	if (nd == 0) {
		needs_drive(p, waiting->files, waiting->bytes, 0, 0);
		return;
	}
	p->placer = placer_start(p->queue, p->db_path, p->job_id, p->gen, drives, nd);
	if (p->placer == NULL)
		job_fail(p, "could not start a thread to place the waiting files");
}

static void
placed(struct prep *p, const struct placer_msg *pm)
{
	placer_free(p->placer);
	p->placer = NULL;
	if (pm->r < 0) {
		_cleanup_free_ char *e = xprintf("placing the waiting files failed: %s",
						 pm->err ? pm->err : strerror(-pm->r));
		job_fail(p, e);
		return;
	}
	for (size_t i = 0; i < pm->n; i++) {
		struct prep_drive *dr = drive_find(p, pm->drives[i].drive_id);
		if (dr == NULL || pm->drives[i].files == 0)
			continue;
		dr->planned += pm->drives[i].bytes;
		drive_rewind(dr);
	}
	if (pm->left < pm->waiting)
		prep_check_done(p); /* something was placed: copy it */
	else
		needs_drive(p, pm->left, pm->left_bytes, pm->too_large_files, pm->too_large_need);
}

/*
 * Called after every result: feed the workers; when all are idle, place
 * what waits, and then either wait for a drive or write the manifests.
 */
static void
prep_check_done(struct prep *p)
{
	struct file_count waiting = {0}, planned = {0};

	if (p->failed)
		return;
	for (size_t i = 0; i < p->n_drives; i++)
		drive_feed(p->drives[i]);
	for (size_t i = 0; i < p->n_drives; i++)
		if (!drive_idle(p->drives[i]))
			return;
	if (p->placer != NULL)
		return; /* its message calls again */
	if (p->manifests) {
		/* Drive prep is over: the stage table hands the job to the Azure stage. */
		set_phase(p, JOB_PHASE_AWAITING_AZURE, NULL);
		struct daemon *d = p->d;
		int64_t id = p->job_id;
		if (d->azure == NULL)
			(void)db_event_add(d->db, id, "note",
					   "drives prepared; Azure is not configured, so no Azure "
					   "job is created (see seedd.conf(5), [Azure])",
					   daemon_now());
		prep_free(p);
		return;
	}
	if (db_files_count(p->d->db, p->job_id, "indexed", &waiting) < 0 ||
	    db_files_count(p->d->db, p->job_id, "planned", &planned) < 0)
		return;
	if (waiting.files > 0) {
		place_waiting(p, &waiting);
		return;
	}
	if (planned.files == 0)
		queue_manifests(p);
}

static void
progress_cb_timer(evutil_socket_t fd, short what, void *arg)
{
	struct prep *p = arg;

	for (size_t i = 0; i < p->n_drives; i++) {
		struct prep_drive *dr = p->drives[i];
		int64_t done = dr->committed + atomic_load(&dr->current);
		double inst = (double)(done - dr->last_done) / PROGRESS_SEC;
		/* A drive with nothing in flight is idle: its rate is 0, not a decaying tail. */
		if (dr->n_inflight == 0)
			dr->rate = 0;
		else
			dr->rate = dr->rate == 0 ? inst : 0.7 * dr->rate + 0.3 * inst;
		dr->last_done = done;
	}
	jobctl_changed(p->d, p->job_id);
}

bool
prep_drive_progress(struct daemon *d, int64_t job_id, int64_t drive_id,
		    struct drive_progress *ret)
{
	struct prep *p = prep_find(d, job_id);
	struct prep_drive *dr = p ? drive_find(p, drive_id) : NULL;

	if (dr == NULL)
		return false;
	ret->bytes_done = dr->committed + atomic_load(&dr->current);
	ret->rate = dr->n_inflight > 0 ? dr->rate : 0;
	/*
	 * 0 once the drive has all it was given and nothing is in flight; unknown
	 * (-1) while nothing is measured, or while the last files are synced and
	 * read back (no bytes left to copy, but work left).
	 */
	if (dr->n_inflight == 0 && dr->planned <= ret->bytes_done)
		ret->eta = 0;
	else if (ret->rate > 1 && dr->planned > ret->bytes_done) {
		double left = (double)(dr->planned - ret->bytes_done) / ret->rate;
		ret->eta = (int64_t)left + ((double)(int64_t)left < left); /* rounded up: never 0 */
	} else
		ret->eta = -1;
	return true;
}

static void
drive_free(struct prep_drive *dr)
{
	struct prep_task *t;

	while ((t = STAILQ_FIRST(&dr->tasks)) != NULL) {
		STAILQ_REMOVE_HEAD(&dr->tasks, link);
		task_free(t);
	}
	if (dr->root_fd >= 0)
		close(dr->root_fd);
	pthread_mutex_destroy(&dr->lock);
	pthread_cond_destroy(&dr->cond);
	free(dr->serial);
	free(dr->path);
	free(dr);
}

static void
drive_stop(struct prep_drive *dr)
{
	pthread_mutex_lock(&dr->lock);
	atomic_store(&dr->w.cancel, true);
	pthread_cond_broadcast(&dr->cond);
	pthread_mutex_unlock(&dr->lock);
	worker_thread_stop(&dr->w);
}

/* Attach a drive row to the running prep and start its worker. */
static int
drive_attach(struct prep *p, const struct drive_row *row, char **ret_err)
{
	struct prep_drive *dr;
	int r;

	if (drive_find(p, row->id) != NULL)
		return 0;
	dr = xcalloc(1, sizeof(*dr));
	dr->p = p;
	dr->drive_id = row->id;
	dr->serial = xstrdup(row->serial);
	dr->path = xstrdup(row->path);
	dr->capacity = row->capacity;
	dr->direct = (unsigned)row->direct_io & COPY_DIRECT_ALL;
	dr->full = strcmp(row->state, "full") == 0;
	pthread_mutex_init(&dr->lock, NULL);
	pthread_cond_init(&dr->cond, NULL);
	STAILQ_INIT(&dr->tasks);
	dr->root_fd = open(row->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dr->root_fd < 0) {
		xasprintf(ret_err, "cannot open drive %s at %s: %s", row->serial, row->path,
			  strerror(errno));
		drive_free(dr);
		return -errno;
	}
	/* planned, committed and last_done: from its thread's MSG_PREP_COUNTED. */
	if ((r = worker_thread_start(&dr->w, drive_thread, dr)) < 0) {
		xasprintf(ret_err, "cannot start a worker for drive %s: %s", row->serial,
			  strerror(-r));
		drive_free(dr);
		return r;
	}
	p->drives[p->n_drives++] = dr;
	if (!dr->full)
		(void)db_drive_set_state(p->d->db, row->id, "copying");
	return 0;
}

static void
prep_free(struct prep *p)
{
	for (size_t i = 0; i < p->n_drives; i++)
		drive_stop(p->drives[i]);
	for (size_t i = 0; i < p->n_drives; i++)
		drive_free(p->drives[i]);
	placer_free(p->placer);
	if (p->progress)
		event_free(p->progress);
	if (p->staging_fd >= 0)
		close(p->staging_fd);
	p->throttle = throttle_free(p->throttle); /* every drive thread has ended */
	LIST_REMOVE(p, link);
	free(p->job_name);
	free(p->db_path);
	free(p);
}

/*
 * Cancel and failure stop a prep without joining on the loop: a drive
 * thread may be in the middle of a block or a sync, which can take seconds
 * on a busy disk. The prep leaves d->preps (its late results are handled as
 * a stopped prep's leftovers, by gen), every drive thread is told to stop,
 * and the prep waits in d->preps_stopping until each thread's last message
 * (MSG_PREP_EXITED) arrives; joining is then immediate. Shutdown joins
 * whatever is still winding down (prep_stop_all).
 */
static void
prep_stop_async(struct prep *p)
{
	struct daemon *d = p->d;

	if (p->progress) {
		event_free(p->progress);
		p->progress = NULL;
	}
	LIST_REMOVE(p, link);
	LIST_INSERT_HEAD(&d->preps_stopping, p, link);
	for (size_t i = 0; i < p->n_drives; i++) {
		struct prep_drive *dr = p->drives[i];
		pthread_mutex_lock(&dr->lock);
		atomic_store(&dr->w.cancel, true);
		pthread_cond_broadcast(&dr->cond);
		pthread_mutex_unlock(&dr->lock);
	}
	placer_cancel(p->placer);
	prep_reap(p);
}

/*
 * Free a stopping prep once every drive thread said its last word; then
 * start the job's drive prep again if prep_start() was asked meanwhile.
 */
static void
prep_reap(struct prep *p)
{
	struct daemon *d = p->d;
	int64_t job_id = p->job_id;
	bool restart = p->restart;
	_cleanup_free_ char *err = NULL;
	struct job_row *j = NULL;
	int r;

	for (size_t i = 0; i < p->n_drives; i++)
		if (!p->drives[i]->exited)
			return;
	if (p->placer != NULL)
		return; /* its message comes */
	prep_free(p); /* every join returns at once */
	if (!restart || stopping_find(d, job_id, 0) != NULL || d->stopping)
		return;
	if ((r = stagetab_resume_job(d->stages, job_id, &err)) < 0 &&
	    db_job_get_by_id(d->db, job_id, &j) == 0) {
		_cleanup_free_ char *why = xprintf("cannot start drive prep again: %s",
						   err ? err : strerror(-r));
		(void)jobctl_fail(d, job_id, j->name, JOB_DRIVE_PREP, why);
	}
	job_row_free(j);
}

static struct prep *
stopping_find(struct daemon *d, int64_t job_id, uint64_t gen)
{
	struct prep *p;

	LIST_FOREACH(p, &d->preps_stopping, link)
		if (p->job_id == job_id && (gen == 0 || p->gen == gen))
			return p;
	return NULL;
}

static void
drive_exited_handle(struct daemon *d, const struct exited_msg *em)
{
	struct prep *p = stopping_find(d, em->job_id, em->gen), *live = prep_find(d, em->job_id);
	struct prep_drive *dr;

	if (p == NULL && live != NULL && live->gen == em->gen)
		p = live; /* not expected: a drive thread ends only when told to */
	if (p == NULL)
		return;
	if ((dr = drive_find(p, em->drive_id)) != NULL)
		dr->exited = true;
	if (p != live)
		prep_reap(p);
}

static void
placed_handle(struct daemon *d, const struct placer_msg *pm)
{
	struct prep *p = stopping_find(d, pm->job_id, pm->gen), *live = prep_find(d, pm->job_id);

	if (live != NULL && live->gen == pm->gen && live->placer != NULL) {
		placed(live, pm);
		return;
	}
	if (p == NULL || p->placer == NULL)
		return;
	placer_free(p->placer); /* a stopped prep's: it has ended */
	p->placer = NULL;
	prep_reap(p);
}

void
prep_stop(struct daemon *d, int64_t job_id)
{
	struct prep *p = prep_find(d, job_id);

	if (p != NULL)
		prep_stop_async(p);
}

static int
attach_all(struct prep *p, char **ret_err)
{
	struct drive_row *rows = NULL;
	size_t n = 0;
	int r;

	if ((r = db_drive_list(p->d->db, p->job_id, &rows, &n)) < 0) {
		xasprintf(ret_err, "reading drives: %s", db_errmsg(p->d->db));
		return r;
	}
	for (size_t i = 0; i < n && r >= 0; i++)
		r = drive_attach(p, &rows[i], ret_err);
	drive_rows_free(rows, n);
	return r;
}

/*
 * Start (or resume) the drive workers of a job in drive_prep. Files already
 * placed are copied; waiting ones are placed as drives have room.
 */
int
prep_start(struct daemon *d, const struct job_row *j, char **ret_err)
{
	struct timeval sec = {PROGRESS_SEC, 0};
	struct prep *p;
	int r;

	if (prep_find(d, j->id) != NULL)
		return 0;
	/*
	 * The job's last prep still winds down (a retry right after a cancel, a
	 * drive removed): the old threads must not write beside the new, and
	 * joining them here could hold the loop for a sync. The last of them
	 * to go starts the job again (prep_reap).
	 */
	if (stopping_find(d, j->id, 0) != NULL) {
		LIST_FOREACH(p, &d->preps_stopping, link)
			if (p->job_id == j->id)
				p->restart = true;
		return 0;
	}
	p = xcalloc(1, sizeof(*p));
	p->d = d;
	p->job_id = j->id;
	p->gen = ++prep_gen;
	p->job_name = xstrdup(j->name);
	p->db_path = xprintf("%s/seedd.db", d->state_dir);
	p->verify = d->config->verify;
	p->throttle = throttle_new(d->config->read_bandwidth_max);
	p->queue = d->queue;
	LIST_INSERT_HEAD(&d->preps, p, link);
	p->staging_fd = open(j->staging_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (p->staging_fd < 0) {
		xasprintf(ret_err, "cannot open staging directory %s: %s", j->staging_path,
			  strerror(errno));
		r = -errno;
		prep_free(p);
		return r;
	}
	if ((r = attach_all(p, ret_err)) < 0) {
		prep_free(p);
		return r;
	}
	p->progress = event_new(d->base, -1, EV_PERSIST, progress_cb_timer, p);
	event_add(p->progress, &sec);
	set_phase(p, JOB_PHASE_COPYING, NULL);
	prep_check_done(p);
	return 0;
}

void
prep_drive_added(struct daemon *d, int64_t job_id)
{
	struct prep *p = prep_find(d, job_id);
	_cleanup_free_ char *err = NULL;

	if (p == NULL || p->manifests)
		return;
	if (attach_all(p, &err) < 0) {
		log_error("job %s: %s", p->job_name, err);
		return;
	}
	set_phase(p, JOB_PHASE_COPYING, NULL);
	prep_check_done(p);
}

static void
work_msg(struct daemon *d, struct worker_msg *m)
{
	struct file_msg *fm = (struct file_msg *)m;
	struct files_msg *gm = (struct files_msg *)m;
	struct checkpoint_msg *cm = (struct checkpoint_msg *)m;
	struct manifest_msg *mm = (struct manifest_msg *)m;
	int64_t job_id = m->kind == MSG_PREP_FILE	  ? fm->job_id
			 : m->kind == MSG_PREP_FILES	  ? gm->job_id
			 : m->kind == MSG_PREP_CHECKPOINT ? cm->job_id
							  : mm->job_id;
	uint64_t gen = m->kind == MSG_PREP_FILE	      ? fm->gen
		       : m->kind == MSG_PREP_FILES      ? gm->gen
		       : m->kind == MSG_PREP_CHECKPOINT ? cm->gen
							: mm->gen;
	struct prep *p = prep_find(d, job_id);
	struct prep_drive *dr;

	/* A stopped prep's leftovers: verified files and checkpoints are worth keeping. */
	if (p == NULL || p->gen != gen) {
		if (m->kind == MSG_PREP_CHECKPOINT)
			(void)db_file_checkpoint(d->db, cm->file_id, 0, cm->blocks, cm->n);
		else if (m->kind == MSG_PREP_FILE && fm->status == 0)
			commit_verified(d, fm, NULL);
		if (m->kind == MSG_PREP_FILE)
			direct_lost(d, NULL, fm->job_id, fm);
		else if (m->kind == MSG_PREP_FILES)
			commit_group(d, NULL, NULL, gm);
		return;
	}
	switch (m->kind) {
	case MSG_PREP_CHECKPOINT:
		if (db_file_checkpoint(d->db, cm->file_id, 0, cm->blocks, cm->n) < 0)
			log_warning("job %s: recording a checkpoint failed, ignoring: %s",
				    p->job_name, db_errmsg(d->db));
		return;
	case MSG_PREP_FILE:
		if ((dr = drive_find(p, fm->drive_id)) != NULL)
			file_done(p, dr, fm);
		break;
	case MSG_PREP_FILES:
		if ((dr = drive_find(p, gm->drive_id)) != NULL)
			commit_group(d, p, dr, gm);
		break;
	case MSG_PREP_MANIFEST:
		if ((dr = drive_find(p, mm->drive_id)) != NULL) {
			dr->manifest_pending = false;
			manifest_done(p, dr, mm);
		}
		break;
	}
	if (p->failed) {
		prep_stop_async(p);
		jobctl_changed(d, job_id);
		return;
	}
	prep_check_done(p);
}

/* A drive thread's sums of what its drive holds: progress starts from them. */
static void
counted_handle(struct daemon *d, const struct counted_msg *cm)
{
	struct prep *p = prep_find(d, cm->job_id);
	struct prep_drive *dr = p != NULL && p->gen == cm->gen ? drive_find(p, cm->drive_id) : NULL;

	if (dr == NULL)
		return; /* a stopped prep's */
	if (cm->r < 0) {
		_cleanup_free_ char *e = xprintf("reading drive %s: %s", dr->serial,
						 cm->err ? cm->err : strerror(-cm->r));
		job_fail(p, e);
		prep_stop_async(p);
		jobctl_changed(d, p->job_id);
		return;
	}
	/* Added to, not set: nothing should have moved them yet (no placer knows the drive). */
	dr->planned += cm->held.bytes;
	dr->committed += cm->verified.bytes;
	dr->last_done += cm->verified.bytes;
	dr->counted = true;
	prep_check_done(p);
}

void
prep_handle_msg(struct daemon *d, struct worker_msg *m)
{
	if (m->kind == MSG_PREP_COUNTED)
		counted_handle(d, (const struct counted_msg *)m);
	else if (m->kind == MSG_PREP_EXITED)
		drive_exited_handle(d, (struct exited_msg *)m);
	else if (m->kind == MSG_PREP_PLACED)
		placed_handle(d, (struct placer_msg *)m);
	else
		work_msg(d, m);
}

static bool
preps_healthy(struct prep_list *list, int64_t max_age)
{
	struct prep *p;

	LIST_FOREACH(p, list, link) {
		for (size_t i = 0; i < p->n_drives; i++)
			if (!worker_thread_healthy(&p->drives[i]->w, max_age))
				return false;
		if (!placer_healthy(p->placer, max_age))
			return false;
	}
	return true;
}

bool
prep_healthy(struct daemon *d, int64_t max_age, const char **ret_what)
{
	/* Threads winding down after a cancel are still watched. */
	if (preps_healthy(&d->preps, max_age) && preps_healthy(&d->preps_stopping, max_age))
		return true;
	*ret_what = "a drive worker";
	return false;
}

/*
 * After a reload: running preps take the new ReadBandwidthMax= at once
 * (Verify= stays as the prep started with it).
 */
void
prep_reconfigure(struct daemon *d)
{
	uint64_t rate = d->config->read_bandwidth_max;
	struct prep *p;
	char b[32];

	format_iec((int64_t)rate, b);
	LIST_FOREACH(p, &d->preps, link) {
		if (throttle_rate(p->throttle) == rate)
			continue;
		throttle_set_rate(p->throttle, rate);
		if (rate == 0)
			log_info("job %s: reads from staging are no longer capped", p->job_name);
		else
			log_info("job %s: reads from staging capped at %s/s (ReadBandwidthMax=)",
				 p->job_name, b);
	}
}

void
prep_stop_all(struct daemon *d)
{
	while (!LIST_EMPTY(&d->preps))
		prep_free(LIST_FIRST(&d->preps));
	while (!LIST_EMPTY(&d->preps_stopping))
		prep_free(LIST_FIRST(&d->preps_stopping));
}
