/*
 * Stage `staging`: index the staging tree on a worker thread. The thread
 * walks the tree (scan.c, never following a symlink), lints every blob name
 * (lint.c) and writes the rows itself, on a connection of its own, in short
 * transactions that each check the job is still indexing (a cancel or a
 * retry ends the walk); the loop only hears the end. Memory stays bounded
 * by one batch however large the tree. A job with names Azure would
 * refuse fails its staging step, naming them; the operator fixes them and
 * retries, which indexes again, or retries with --skip-refused, after which
 * they are left out (the job row keeps that choice, so every later index
 * does the same). The job's --exclude patterns (kept in its row too, so a
 * restart indexes alike) are asked before each entry is looked at: a match
 * is recorded as excluded, and an excluded directory is not walked.
 */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <string.h>

#include "daemon.h"
#include "db.h"
#include "exclude.h"
#include "jobctl.h"
#include "lint.h"
#include "log.h"
#include "scan.h"
#include "stage.h"
#include "stagetab.h"
#include "util.h"

#define INDEX_BATCH 2000 /* entries the walk hands over at a time */
#define INDEX_TX 500     /* rows per transaction: the loop's writes wait at most this long */
#define INDEX_EXAMPLES 20 /* offenders named in the job's events */

struct indexer {
	LIST_ENTRY(indexer) link;
	int64_t job_id;
	uint64_t gen;
	/* Read by the thread; set before it starts, never changed. */
	char *job_name, *container, *staging_path;
	char *db_path;
	struct exclude *excl; /* the job's --exclude patterns; NULL: none */
	bool skip_refused;    /* refused names are left out rather than failing the job */
	struct worker_queue *queue;
	struct worker_thread w;
	struct db *db; /* the thread's own write connection */
	bool stopping; /* cancelled: freed when its MSG_INDEX_DONE arrives */
	bool restart;  /* stopping: index the job again then (index_start() was asked meanwhile) */
	/* Thread-side counts. */
	int64_t files, bytes, invalid, skipped, excluded;
	/* Files and bytes the walk found so far (the count a watcher sees while indexing). */
	atomic_llong found_files, found_bytes;
	/* Loop side: a tick that tells watchers of a new count, and the count told. */
	struct daemon *d;
	struct event *tick;
	int64_t told_files;
};

struct index_done_msg {
	struct worker_msg m;
	int64_t job_id;
	uint64_t gen;
	int status;
	int64_t files, bytes, invalid, skipped, excluded;
	char *error; /* why the walk failed, if status < 0 */
};

static uint64_t index_gen;

static void
done_msg_free(struct worker_msg *m)
{
	struct index_done_msg *dm = (struct index_done_msg *)m;

	free(dm->error);
	free(dm);
}

static char *
skip_reason(const struct scan_entry *se)
{
	if (se->kind == SCAN_UNREADABLE)
		return xprintf("%s: %s", scan_kind_to_string(se->kind), strerror(se->error));
	return xprintf("%s: not copied", scan_kind_to_string(se->kind));
}

/* Thread: fill one row from a scan entry, linting the blob name. */
static void
entry_fill(struct indexer *ix, const struct scan_entry *se, struct file_entry *fe)
{
	_cleanup_free_ char *rel = xstrndup(se->path, se->path_len);
	const char *why = NULL;
	char *blob_path = lint_blob_path(ix->container, ix->job_name, rel);
	const char *blob_name = blob_path + strlen(ix->container) + 1;

	*fe = (struct file_entry){.rel_path = TAKE_PTR(rel), .blob_name = blob_path};
	if (se->kind == SCAN_EXCLUDED) {
		const char *pattern = exclude_pattern(ix->excl, se->rule);
		fe->state = "skipped";
		fe->excluded_by = xstrdup(pattern ? pattern : "?");
		fe->reason = xprintf("excluded by --exclude '%s'%s", fe->excluded_by,
				     se->dir ? " (a directory: nothing in it was looked at)" : "");
		ix->excluded++;
	} else if (se->kind != SCAN_FILE) {
		fe->state = "skipped";
		fe->reason = skip_reason(se);
		ix->skipped++;
	} else if (!lint_blob_name(blob_name, strlen(blob_name), &why)) {
		why = why ? why : "Azure would refuse the blob name";
		fe->state = "invalid";
		fe->reason = ix->skip_refused ? xprintf("%s; skipped by the operator (job retry "
							"--skip-refused)", why)
					      : xstrdup(why);
		fe->size = (int64_t)se->size;
		fe->mtime_ns = se->mtime_ns;
		fe->links = (int64_t)se->links;
		ix->invalid++;
	} else {
		fe->state = "indexed";
		fe->size = (int64_t)se->size;
		fe->mtime_ns = se->mtime_ns;
		fe->links = (int64_t)se->links;
		ix->files++;
		ix->bytes += (int64_t)se->size;
	}
}

static void
entries_free(struct file_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)e[i].rel_path);
		free((char *)e[i].blob_name);
		free((char *)e[i].reason);
		free((char *)e[i].excluded_by);
	}
	free(e);
}

/* Thread: the scanner asks before it looks at an entry. */
static int
index_exclude_cb(const char *path, size_t len, void *arg)
{
	struct indexer *ix = arg;

	return exclude_match(ix->excl, path, len);
}

/* Thread: write one batch of the walk, INDEX_TX rows per transaction. */
static int
index_batch_cb(const struct scan_entry *entries, size_t n, void *userdata)
{
	struct indexer *ix = userdata;
	struct file_entry *e = xcalloc(n + 1, sizeof(*e));
	int r = 0;

	worker_thread_beat(&ix->w);
	for (size_t i = 0; i < n; i++)
		entry_fill(ix, &entries[i], &e[i]);
	for (size_t done = 0; r >= 0 && done < n; done += INDEX_TX) {
		if (atomic_load(&ix->w.cancel))
			r = -ECANCELED;
		else
			r = db_files_insert_batch_in(ix->db, ix->job_id, JOB_STAGING,
						     JOB_PHASE_INDEXING, e + done,
						     n - done < INDEX_TX ? n - done : INDEX_TX);
	}
	entries_free(e, n);
	/* The job is no longer indexing (cancelled, or indexing again): stop like a cancel. */
	return r == -ESTALE ? -ECANCELED : r;
}

/* Thread: walk and write; the result goes into dm. */
static void
index_walk(struct indexer *ix, struct index_done_msg *dm)
{
	struct scan_options opt = {.batch_size = INDEX_BATCH, .cancel = &ix->w.cancel,
				   .found_files = &ix->found_files, .found_bytes = &ix->found_bytes,
				   .exclude = ix->excl ? index_exclude_cb : NULL, .exclude_arg = ix};
	char *err = NULL;
	int fd;

	if ((dm->status = db_open(ix->db_path, &ix->db, &err)) < 0) {
		dm->error = xprintf("opening the job store to index: %s", err ? err : "?");
		free(err);
		return;
	}
	fd = open(ix->staging_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		dm->status = -errno;
		dm->error = xprintf("cannot open staging directory %s: %s", ix->staging_path,
				    strerror(errno));
	} else {
		dm->status = scan_tree(fd, &opt, index_batch_cb, ix);
		if (dm->status == -EIO)
			dm->error = xprintf("writing the index of %s: %s", ix->staging_path,
					    db_errmsg(ix->db));
		else if (dm->status < 0 && dm->status != -ECANCELED)
			dm->error = xprintf("walking %s: %s", ix->staging_path,
					    strerror(-dm->status));
		close(fd);
	}
	/* The job's totals sum every row: here, not on the loop (0.3 s at 200 000 files). */
	if (dm->status == 0 && (dm->status = db_job_set_totals(ix->db, ix->job_id,
								daemon_now())) < 0)
		dm->error = xprintf("recording the totals of %s: %s", ix->staging_path,
				    db_errmsg(ix->db));
	db_close(ix->db);
	ix->db = NULL;
}

static void *
index_thread(void *arg)
{
	struct indexer *ix = arg;
	struct index_done_msg *dm = xcalloc(1, sizeof(*dm));

	atomic_store(&ix->w.busy, true);
	index_walk(ix, dm);
	dm->m.kind = MSG_INDEX_DONE;
	dm->m.free_fn = done_msg_free;
	dm->job_id = ix->job_id;
	dm->gen = ix->gen;
	dm->files = ix->files;
	dm->bytes = ix->bytes;
	dm->invalid = ix->invalid;
	dm->skipped = ix->skipped;
	dm->excluded = ix->excluded;
	atomic_store(&ix->w.busy, false);
	worker_queue_push(ix->queue, &dm->m);
	return NULL;
}

static struct indexer *
indexer_find(struct daemon *d, int64_t job_id)
{
	struct indexer *ix;

	LIST_FOREACH(ix, &d->indexers, link)
		if (ix->job_id == job_id && !ix->stopping)
			return ix;
	return NULL;
}

/* The indexer a message is from, stopping or not. */
static struct indexer *
indexer_find_gen(struct daemon *d, int64_t job_id, uint64_t gen)
{
	struct indexer *ix;

	LIST_FOREACH(ix, &d->indexers, link)
		if (ix->job_id == job_id && ix->gen == gen)
			return ix;
	return NULL;
}

static void
indexer_free(struct indexer *ix)
{
	LIST_REMOVE(ix, link);
	if (ix->tick != NULL)
		event_free(ix->tick);
	free(ix->db_path);
	free(ix->job_name);
	free(ix->container);
	free(ix->staging_path);
	exclude_free(ix->excl);
	free(ix);
}

static void
indexer_cancel(struct indexer *ix)
{
	atomic_store(&ix->w.cancel, true);
}

/*
 * Cancel: the walk may be inside a stat of a slow staging file system, so
 * the loop does not join it; the indexer is marked stopping (the cancel
 * flag, and the job's state checked with each batch, end the walk) and is
 * freed when its last message, MSG_INDEX_DONE, arrives.
 */
void
index_stop(struct daemon *d, int64_t job_id)
{
	struct indexer *ix = indexer_find(d, job_id);

	if (ix == NULL)
		return;
	ix->stopping = true;
	indexer_cancel(ix);
}

/* Shutdown: cancel and join every indexer (stopping ones too). */
void
index_stop_all(struct daemon *d)
{
	while (!LIST_EMPTY(&d->indexers)) {
		struct indexer *ix = LIST_FIRST(&d->indexers);
		indexer_cancel(ix);
		worker_thread_stop(&ix->w);
		indexer_free(ix);
	}
}

/*
 * The job's indexer still winds down after a cancel: a second walk must
 * not write beside it (its transactions check only that the job is
 * indexing), and joining it here could hold the loop for a stat on a slow
 * share. It indexes the job again when its last message arrives.
 */
static bool
index_restart_later(struct daemon *d, int64_t job_id)
{
	struct indexer *ix;
	bool waiting = false;

	LIST_FOREACH(ix, &d->indexers, link)
		if (ix->job_id == job_id && ix->stopping)
			ix->restart = waiting = true;
	return waiting;
}

/* Each second of a walk: watchers hear of a new count (batches are far apart on a slow share). */
static void
index_tick(evutil_socket_t fd, short what, void *arg)
{
	struct indexer *ix = arg;
	int64_t n = atomic_load(&ix->found_files);

	if (n != ix->told_files) {
		ix->told_files = n;
		jobctl_changed(ix->d, ix->job_id);
	}
}

/*
 * The job's patterns (a JSON array of strings, checked by CreateJob); NULL
 * if it has none. One that no longer passes the check is dropped, logged:
 * a pattern that would exclude more than it said is worse than none.
 */
static struct exclude *
excludes_of(const struct job_row *j)
{
	const char *pats[EXCLUDE_MAX];
	json_t *a = j->excludes ? json_loads(j->excludes, 0, NULL) : NULL, *v;
	struct exclude *x;
	size_t i, n = 0;

	json_array_foreach(a, i, v) {
		if (n == EXCLUDE_MAX)
			break;
		if (json_is_string(v) && exclude_pattern_check(json_string_value(v)) == NULL)
			pats[n++] = json_string_value(v);
		else
			log_warning("job %s: ignoring a stored exclude pattern that is not valid",
				    j->name);
	}
	x = exclude_new(pats, n);
	json_decref(a);
	return x;
}

int
index_start(struct daemon *d, const struct job_row *j)
{
	struct indexer *ix;
	int r;

	if (indexer_find(d, j->id) != NULL)
		return 0; /* resumes are idempotent: the walk goes on */
	if (index_restart_later(d, j->id))
		return 0;
	if ((r = db_files_clear(d->db, j->id)) < 0 ||
	    (r = jobctl_phase(d, j->id, JOB_STAGING, JOB_PHASE_INDEXING, NULL)) < 0)
		return r;
	ix = xcalloc(1, sizeof(*ix));
	ix->job_id = j->id;
	ix->gen = ++index_gen;
	ix->job_name = xstrdup(j->name);
	ix->container = xstrdup(j->container);
	ix->staging_path = xstrdup(j->staging_path);
	ix->db_path = xprintf("%s/seedd.db", d->state_dir);
	ix->excl = excludes_of(j);
	ix->skip_refused = j->skip_refused;
	ix->queue = d->queue;
	if ((r = worker_thread_start(&ix->w, index_thread, ix)) < 0) {
		free(ix->db_path);
		free(ix->job_name);
		free(ix->container);
		free(ix->staging_path);
		exclude_free(ix->excl);
		free(ix);
		return r;
	}
	LIST_INSERT_HEAD(&d->indexers, ix, link);
	ix->d = d;
	ix->tick = event_new(d->base, -1, EV_PERSIST, index_tick, ix);
	if (ix->tick != NULL)
		event_add(ix->tick, &(struct timeval){1, 0});
	return 0;
}

/* Name up to INDEX_EXAMPLES files of a state in the job's events. */
static void
note_examples(struct daemon *d, int64_t job_id, const char *state, const char *what)
{
	struct file_row *rows = NULL;
	size_t n = 0;

	if (db_files_page(d->db, job_id, state, 0, 0, INDEX_EXAMPLES, &rows, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *text = xprintf("%s %s: %s", what, rows[i].rel_path,
						    rows[i].reason ? rows[i].reason : "");
		(void)db_event_add(d->db, job_id, "note", text, daemon_now());
	}
	file_rows_free(rows, n);
}

/*
 * Files with other hard links (issue 11): copied like any file, but the same
 * data may also be reachable outside the staging tree (a link to a file
 * elsewhere), so they are named: in the job log here, in the Job object's
 * problems (job-view.c) and in the report (each file's links).
 */
static void
note_hard_links(struct daemon *d, int64_t job_id, const struct log_ctx *ctx)
{
	_cleanup_free_ char *text = NULL;
	struct file_row *rows = NULL;
	struct file_count fc = {0};
	size_t n = 0;

	if (db_files_linked_count(d->db, job_id, &fc) < 0 || fc.files == 0)
		return;
	text = xprintf("%" PRId64 " staged files have other hard links (copied, but the same data "
		       "may be reachable outside the staging tree); see job show",
		       fc.files);
	(void)db_event_add(d->db, job_id, "note", text, daemon_now());
	log_ctx(LOG_WARNING, ctx, "job %s: %s", ctx->job, text);
	if (db_files_linked(d->db, job_id, 0, INDEX_EXAMPLES, &rows, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *t = xprintf("hard link %s: %" PRId64 " links", rows[i].rel_path,
						 rows[i].links);
		(void)db_event_add(d->db, job_id, "note", t, daemon_now());
	}
	file_rows_free(rows, n);
}

/* The refused names of a job retried with --skip-refused: left out, said and named. */
static void
note_refused_skipped(struct daemon *d, int64_t job_id, const struct log_ctx *ctx, int64_t n)
{
	_cleanup_free_ char *text = xprintf("%" PRId64 " file names Azure would refuse are left out: "
					    "skipped by the operator (job retry --skip-refused)",
					    n);

	(void)db_event_add(d->db, job_id, "note", text, daemon_now());
	log_ctx(LOG_NOTICE, ctx, "job %s: %s", ctx->job, text);
	note_examples(d, job_id, "invalid", "refused name");
}

static void
index_done(struct daemon *d, struct indexer *ix, struct index_done_msg *dm)
{
	_cleanup_free_ char *name = xstrdup(ix->job_name), *summary = NULL, *excl = NULL;
	struct log_ctx ctx = {.job = name, .state = "staging"};
	bool skip_refused = ix->skip_refused, excludes = ix->excl != NULL;
	char size[32];
	int64_t id = ix->job_id;

	worker_thread_stop(&ix->w);
	indexer_free(ix);
	if (dm->status == -ECANCELED)
		return;
	if (dm->status < 0) {
		(void)jobctl_fail(d, id, name, JOB_STAGING, dm->error);
		return;
	}
	format_iec(dm->bytes, size);
	if (excludes)
		excl = xprintf("; %" PRId64 " entries excluded (--exclude)", dm->excluded);
	summary = xprintf("indexed %" PRId64 " files, %s; %" PRId64
			  " names Azure would refuse; %" PRId64 " entries skipped%s",
			  dm->files, size, dm->invalid, dm->skipped, excl ? excl : "");
	(void)db_event_add(d->db, id, "note", summary, daemon_now());
	log_ctx(LOG_INFO, &ctx, "job %s: %s", name, summary);
	if (dm->skipped > 0)
		note_examples(d, id, "skipped", "skipped");
	note_hard_links(d, id, &ctx);
	if (dm->excluded > 0)
		note_examples(d, id, "excluded", "left out");
	if (dm->invalid > 0 && skip_refused)
		note_refused_skipped(d, id, &ctx, dm->invalid);
	else if (dm->invalid > 0) {
		_cleanup_free_ char *err = NULL;
		note_examples(d, id, "invalid", "invalid name");
		err = xprintf("%" PRId64 " file names Azure would refuse (see job log); rename "
			      "them in staging, then retry (or retry with --skip-refused to go on "
			      "without them)",
			      dm->invalid);
		(void)jobctl_fail(d, id, name, JOB_STAGING, err);
		return;
	}
	(void)jobctl_phase(d, id, JOB_STAGING, JOB_PHASE_INDEXED, NULL);
}

bool
index_progress(struct daemon *d, int64_t job_id, int64_t *ret_files, int64_t *ret_bytes)
{
	struct indexer *ix = indexer_find(d, job_id);

	if (ix == NULL)
		return false;
	*ret_files = atomic_load(&ix->found_files);
	*ret_bytes = atomic_load(&ix->found_bytes);
	return true;
}


/* Free a cancelled indexer whose walk ended; index its job again if that was asked meanwhile. */
static void
index_reap(struct daemon *d, struct indexer *ix)
{
	_cleanup_free_ char *name = xstrdup(ix->job_name), *err = NULL;
	int64_t job_id = ix->job_id;
	bool restart = ix->restart;
	struct indexer *other;
	int r;

	indexer_free(ix);
	if (!restart || d->stopping)
		return;
	LIST_FOREACH(other, &d->indexers, link)
		if (other->job_id == job_id)
			return; /* the last of them restarts */
	if ((r = stagetab_resume_job(d->stages, job_id, &err)) < 0) {
		_cleanup_free_ char *why = xprintf("cannot index again: %s",
						   err ? err : strerror(-r));
		(void)jobctl_fail(d, job_id, name, JOB_STAGING, why);
	}
}

void
index_handle_msg(struct daemon *d, struct worker_msg *m)
{
	struct index_done_msg *dm = (struct index_done_msg *)m;
	int64_t job_id = dm->job_id;
	struct indexer *ix = indexer_find_gen(d, job_id, dm->gen);

	if (ix == NULL)
		return; /* a stopped scan's leftovers */
	if (ix->stopping) { /* cancelled */
		worker_thread_stop(&ix->w); /* it has pushed its last message */
		index_reap(d, ix);
		return;
	}
	index_done(d, ix, dm);
	jobctl_changed(d, job_id);
}

bool
index_healthy(struct daemon *d, int64_t max_age, const char **ret_what)
{
	struct indexer *ix;

	/* Stopping indexers too: a walk winding down is still watched. */
	LIST_FOREACH(ix, &d->indexers, link)
		if (!worker_thread_healthy(&ix->w, max_age)) {
			*ret_what = "the staging indexer";
			return false;
		}
	return true;
}
