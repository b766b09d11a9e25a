/*
 * Planning on threads: PlanJob's dry run and PrepareJob's placement (see
 * planner.h). A plan walks and sorts every file of the job, so it runs on a
 * thread of its own with its own read-only connection; the loop only
 * records PrepareJob's placements, a batch per turn, and enters drive_prep
 * through jobctl, after which the stage table starts drive prep. The
 * planner works on up to a few million (id, size) pairs held in flat
 * arrays.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "db.h"
#include "job.h"
#include "jobctl.h"
#include "log.h"
#include "names.h"
#include "placement.h"
#include "plan.h"
#include "planner.h"
#include "stage.h"
#include "util.h"
#include "varlink.h"
#include "worker.h"

#define PLAN_LIST_MAX 1000   /* files listed in a PlanJob reply */
#define PLAN_INVALID_MAX 100 /* refused names, skipped and excluded entries listed, each */
#define PLAN_BEAT 65536      /* files gathered between heartbeats */

struct plan_input {
	atomic_bool *cancel; /* a worker's: checked between steps */
	struct worker_thread *w; /* NULL, or beats every PLAN_BEAT files */
	struct plan_file *files;
	size_t n, cap;
	struct plan_drive drives[DRIVES_PER_JOB_MAX];
	struct drive_row *rows;
	size_t nd;
};

static int
plan_gather_cb(int64_t id, int64_t size, void *userdata)
{
	struct plan_input *in = userdata;

	if (in->n == in->cap) {
		in->cap = in->cap ? in->cap * 2 : 4096;
		in->files = xreallocarray(in->files, in->cap, sizeof(*in->files));
	}
	in->files[in->n++] = (struct plan_file){.id = id, .size = (uint64_t)size};
	if (in->w != NULL && in->n % PLAN_BEAT == 0)
		worker_thread_beat(in->w);
	return 0;
}

static void
plan_input_done(struct plan_input *in)
{
	free(in->files);
	drive_rows_free(in->rows, in->nd);
	*in = (struct plan_input){0};
}

/* Every plannable file and every drive's room (capacity less what is verified there). */
static int
plan_gather(struct db *db, int64_t job_id, struct plan_input *in)
{
	int r;

	if ((r = db_files_foreach_plannable(db, job_id, plan_gather_cb, in)) < 0)
		return r;
	if (in->cancel != NULL && atomic_load(in->cancel))
		return -ECANCELED;
	if ((r = db_drive_list(db, job_id, &in->rows, &in->nd)) < 0)
		return r;
	/* Room as placing counts it: what the verified files cost, not their bytes. */
	for (size_t i = 0; i < in->nd; i++) {
		in->drives[i].id = in->rows[i].id;
		if ((r = placement_room(db, in->rows[i].id, in->rows[i].capacity, false,
					&in->drives[i].free)) < 0)
			return r;
	}
	return 0;
}

static int
cmp_by_id(const void *a, const void *b, void *arg)
{
	const struct plan_file *f = arg;
	int64_t x = f[*(const size_t *)a].id, y = f[*(const size_t *)b].id;

	return x < y ? -1 : x > y;
}

/* Index of file id in in->files via order (indices sorted by id), or -1. */
static ssize_t
plan_index_of(const struct plan_input *in, const size_t *order, int64_t id)
{
	size_t lo = 0, hi = in->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int64_t v = in->files[order[mid]].id;
		if (v == id)
			return (ssize_t)order[mid];
		if (v < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static const char *
drive_serial_of(const struct plan_input *in, int32_t idx)
{
	return idx >= 0 ? in->rows[idx].serial : NULL;
}

/* The first PLAN_LIST_MAX plannable files in id order, with their drive. */
static json_t *
plan_files_json(struct db *db, int64_t job_id, const struct plan_input *in,
		const struct plan *plan)
{
	size_t *order = xcalloc(in->n + 1, sizeof(*order));
	json_t *a = json_array();
	int64_t after = 0;

	for (size_t i = 0; i < in->n; i++)
		order[i] = i;
	qsort_r(order, in->n, sizeof(*order), cmp_by_id, in->files);
	while (json_array_size(a) < PLAN_LIST_MAX) {
		struct file_row *rows = NULL;
		size_t n = 0;
		if (db_files_page(db, job_id, NULL, 0, after, 256, &rows, &n) < 0 || n == 0) {
			file_rows_free(rows, n);
			break;
		}
		for (size_t i = 0; i < n && json_array_size(a) < PLAN_LIST_MAX; i++) {
			ssize_t k = plan_index_of(in, order, rows[i].id);
			after = rows[i].id;
			if (k < 0)
				continue;
			const char *serial = drive_serial_of(in, plan->file_drive[k]);
			bool too_large = serial == NULL &&
					 plan_file_too_large(plan, NULL, &in->files[k]);
			json_array_append_new(a, json_pack("{s:o,s:I,s:o,s:b}", "path",
							   json_text(rows[i].rel_path), "size",
							   (json_int_t)rows[i].size, "drive",
							   serial ? json_string(serial) : json_null(),
							   "tooLarge", too_large));
		}
		file_rows_free(rows, n);
	}
	free(order);
	return a;
}

/*
 * The first PLAN_INVALID_MAX entries in state ("invalid": names Azure would
 * refuse; "skipped": not regular files, unreadable; "excluded": left out by
 * --exclude) as "path: reason", and how many there are in *ret_count.
 */
static json_t *
plan_entries_json(struct db *db, int64_t job_id, const char *state, int64_t *ret_count)
{
	struct file_row *rows = NULL;
	struct file_count fc = {0};
	json_t *a = json_array();
	size_t n = 0;

	*ret_count = db_files_count(db, job_id, state, &fc) == 0 ? fc.files : 0;
	if (*ret_count == 0 || db_files_page(db, job_id, state, 0, 0, PLAN_INVALID_MAX, &rows, &n) < 0)
		return a;
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *t = xprintf("%s: %s", rows[i].rel_path,
						 rows[i].reason ? rows[i].reason : state);
		json_array_append_new(a, json_text(t));
	}
	file_rows_free(rows, n);
	return a;
}

/* Entries of the job that are not planned, by kind, apart (issue 12): keys into o. */
static void
plan_left_out_json(struct db *db, int64_t job_id, json_t *o)
{
	static const struct {
		const char *state, *list, *count;
	} kinds[] = {
		{"invalid", "invalidNames", "invalidCount"},
		{"skipped", "skipped", "skippedCount"},
		{"excluded", "excluded", "excludedCount"},
	};
	struct job_row *j = NULL;
	int64_t n;

	for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
		json_object_set_new(o, kinds[k].list,
				    plan_entries_json(db, job_id, kinds[k].state, &n));
		json_object_set_new(o, kinds[k].count, json_integer(n));
	}
	if (db_job_get_by_id(db, job_id, &j) == 0) {
		json_t *x = j->excludes ? json_loads(j->excludes, 0, NULL) : NULL;
		json_object_set_new(o, "excludes", json_is_array(x) ? x : json_array());
		if (x != NULL && !json_is_array(x))
			json_decref(x);
		json_object_set_new(o, "skipRefused", json_boolean(j->skip_refused));
	}
	job_row_free(j);
}

static json_t *
plan_drives_json(const struct plan_input *in, const struct plan *plan)
{
	json_t *a = json_array();

	for (size_t i = 0; i < in->nd; i++)
		json_array_append_new(a, json_pack("{s:s,s:I,s:I,s:I}", "serial", in->rows[i].serial,
						   "room", (json_int_t)in->drives[i].free, "files",
						   (json_int_t)plan->use[i].files, "bytes",
						   (json_int_t)plan->use[i].bytes));
	return a;
}

static int
plan_run(struct db *db, int64_t job_id, struct plan_input *in, struct plan *plan)
{
	int r;

	if ((r = plan_gather(db, job_id, in)) < 0)
		return r;
	/* With no drive attached, size the estimate for drives like the largest file. */
	return plan_compute(in->files, in->n, in->drives, in->nd, NULL, in->nd ? 0 : UINT64_C(1) << 40,
			    plan);
}

/* The PlanJob reply's "plan" object, from a read connection. */
static json_t *
plan_json(struct db *db, int64_t job_id, atomic_bool *cancel, int *ret)
{
	struct plan_input in = {.cancel = cancel};
	struct plan plan = {0};
	json_t *o = NULL;

	if ((*ret = plan_run(db, job_id, &in, &plan)) == 0) {
		o = json_pack("{s:o,s:I,s:I,s:I,s:o,s:I,s:b}", "files",
			      plan_files_json(db, job_id, &in, &plan), "unplacedFiles",
			      (json_int_t)plan.unplaced_files, "unplacedBytes",
			      (json_int_t)plan.unplaced_bytes, "drivesNeeded",
			      (json_int_t)plan.drives_needed, "drives", plan_drives_json(&in, &plan),
			      "totalFiles", (json_int_t)in.n, "truncated", in.n > PLAN_LIST_MAX);
		/*
		 * One story (issue 12): the files no drive of driveRoom bytes can
		 * take are counted apart, with the room a drive needs for the
		 * largest; drivesNeeded sizes only the rest.
		 */
		json_object_set_new(o, "driveRoom", json_integer((json_int_t)plan.capacity));
		json_object_set_new(o, "drivesAttached", json_integer((json_int_t)in.nd));
		json_object_set_new(o, "tooLargeFiles", json_integer((json_int_t)plan.too_large_files));
		json_object_set_new(o, "tooLargeBytes", json_integer((json_int_t)plan.too_large_bytes));
		json_object_set_new(o, "tooLargeNeeds", json_integer((json_int_t)plan.too_large_need));
		plan_left_out_json(db, job_id, o);
	}
	plan_done(&plan);
	plan_input_done(&in);
	return o;
}

/*
 * PlanJob and PrepareJob plan on a thread of their own with its own
 * read-only connection (a plan walks and sorts every file of the job); the
 * loop only checks the job, starts the thread and sends the reply. PlanJob
 * is a heavy call, one per uid at a time (server_heavy_queue()). PrepareJob's
 * thread then records the plan on a write connection of its own, in short
 * transactions each checked against the job (placement_record()), and the
 * loop enters drive_prep in one transaction of its own; a crash in between
 * leaves a job in staging that plans again (placements are rewritten).
 */
struct planner {
	LIST_ENTRY(planner) link;
	struct worker_thread w;
	struct daemon *d;
	struct worker_queue *queue;
	planner_done_fn done;
	void *userdata;
	int64_t job_id;
	char *job_name;
	char *db_path;
	bool prepare;   /* PrepareJob: record the plan, then start drive prep */
	bool recording; /* PrepareJob: planned; what failed was recording it */
	/* Results. */
	json_t *plan; /* PlanJob's reply; NULL: failed */
	int r;
	char *err;
	/* PrepareJob: the plan, recorded by the thread. */
	struct plan_input in;
	struct plan p;
};

struct planner_msg {
	struct worker_msg m;
	struct planner *pl;
};

static void prepare_planned(struct planner *pl);

static void
planner_msg_free(struct worker_msg *m)
{
	free(m);
}

static void
planner_free(struct planner *pl)
{
	worker_thread_stop(&pl->w);
	LIST_REMOVE(pl, link);
	json_decref(pl->plan);
	plan_done(&pl->p);
	plan_input_done(&pl->in);
	free(pl->job_name);
	free(pl->db_path);
	free(pl->err);
	free(pl);
}

/* PrepareJob's thread: record the plan on a connection of its own. */
static int
prepare_record(struct planner *pl)
{
	struct placement *out = xcalloc(pl->in.n + 1, sizeof(*out));
	struct db *db = NULL;
	int r;

	for (size_t i = 0; i < pl->in.n; i++) {
		int32_t k = pl->p.file_drive[i];
		out[i] = (struct placement){.file_id = pl->in.files[i].id,
					    .drive_id = k >= 0 ? pl->in.rows[k].id : 0};
	}
	if ((r = db_open(pl->db_path, &db, &pl->err)) == 0) {
		r = placement_record(db, pl->job_id, JOB_STAGING, JOB_PHASE_INDEXED, out, pl->in.n,
				     &pl->w.cancel, &pl->w);
		if (r < 0 && r != -ESTALE && r != -ECANCELED)
			xasprintf(&pl->err, "%s", r == -EIO ? db_errmsg(db) : strerror(-r));
	}
	db_close(db);
	free(out);
	return r;
}

static void *
planner_thread(void *arg)
{
	struct planner *pl = arg;
	struct planner_msg *pm = xcalloc(1, sizeof(*pm));
	struct db *ro = NULL;

	atomic_store(&pl->w.busy, true);
	worker_thread_beat(&pl->w);
	if ((pl->r = db_open_readonly(pl->db_path, &ro, &pl->err)) < 0)
		;
	else if (pl->prepare) {
		pl->in.cancel = &pl->w.cancel;
		pl->in.w = &pl->w;
		if ((pl->r = plan_run(ro, pl->job_id, &pl->in, &pl->p)) < 0)
			xasprintf(&pl->err, "%s", pl->r == -EIO ? db_errmsg(ro) : strerror(-pl->r));
		else if (pl->in.nd > 0) {
			pl->recording = true;
			pl->r = prepare_record(pl);
		}
	} else if ((pl->plan = plan_json(ro, pl->job_id, &pl->w.cancel, &pl->r)) == NULL)
		xasprintf(&pl->err, "%s", pl->r == -EIO ? db_errmsg(ro) : strerror(-pl->r));
	db_close(ro);
	atomic_store(&pl->w.busy, false);
	pm->m.kind = MSG_PLAN_DONE;
	pm->m.free_fn = planner_msg_free;
	pm->pl = pl;
	worker_queue_push(pl->queue, &pm->m);
	return NULL;
}

void
planner_handle_msg(struct daemon *d, struct worker_msg *m)
{
	struct planner *pl = ((struct planner_msg *)m)->pl;

	worker_thread_stop(&pl->w);
	if (pl->prepare) {
		prepare_planned(pl);
		return;
	}
	if (pl->plan != NULL)
		pl->done(PLANNER_OK, pl->plan, NULL, pl->userdata);
	else {
		log_error("job %s: planning failed: %s", pl->job_name, pl->err ? pl->err : "?");
		pl->done(PLANNER_FAILED, NULL, "planning failed; see the journal", pl->userdata);
	}
	planner_free(pl);
}

/*
 * Shutdown: wait for the planners and drop a PrepareJob recording its plan
 * (the job stays in staging and plans again); PlanJob results are drained.
 */
bool
planner_healthy(struct daemon *d, int64_t max_age, const char **ret_what)
{
	struct planner *pl;

	LIST_FOREACH(pl, &d->planners, link)
		if (!worker_thread_healthy(&pl->w, max_age)) {
			*ret_what = "a planner thread";
			return false;
		}
	return true;
}

void
planner_stop_all(struct daemon *d)
{
	struct planner *pl, *next;

	for (pl = LIST_FIRST(&d->planners); pl != NULL; pl = next) {
		next = LIST_NEXT(pl, link);
		worker_thread_stop(&pl->w);
	}
}

int
planner_start(struct daemon *d, const struct job_row *j, bool prepare, planner_done_fn done,
	      void *userdata)
{
	struct planner *pl = xcalloc(1, sizeof(*pl));

	pl->d = d;
	pl->queue = d->queue;
	pl->done = done;
	pl->userdata = userdata;
	pl->job_id = j->id;
	pl->job_name = xstrdup(j->name);
	pl->db_path = xprintf("%s/seedd.db", d->state_dir);
	pl->prepare = prepare;
	LIST_INSERT_HEAD(&d->planners, pl, link);
	if (worker_thread_start(&pl->w, planner_thread, pl) < 0) {
		planner_free(pl);
		return -EAGAIN;
	}
	return 0;
}

bool
planner_preparable(const struct job_row *j)
{
	return j->state == JOB_STAGING && j->phase != NULL && strcmp(j->phase, "indexed") == 0;
}

/* PrepareJob refused as the job is now: the reply names its state. */
static void
prepare_refused(struct planner *pl, enum planner_outcome outcome)
{
	struct job_row *j = NULL;
	const char *state = db_job_get_by_id(pl->d->db, pl->job_id, &j) == 0
				    ? job_state_to_string(j->state)
				    : "gone";

	pl->done(outcome, NULL, state, pl->userdata);
	job_row_free(j);
	planner_free(pl);
}

/* PrepareJob's plan is recorded: enter drive_prep, where the stage table starts drive prep. */
static void
prepare_planned(struct planner *pl)
{
	struct daemon *d = pl->d;
	_cleanup_free_ char *text = NULL;
	int r = pl->r;

	if (r == -ESTALE || (r == 0 && pl->in.nd == 0)) {
		prepare_refused(pl, r == -ESTALE ? PLANNER_INVALID_STATE : PLANNER_NO_DRIVE);
		return;
	}
	if (r < 0 || d->stopping) {
		const char *what = pl->recording ? "recording the plan failed" : "planning failed";
		_cleanup_free_ char *reply = xprintf("%s; see the journal", what);

		if (r < 0 && r != -ECANCELED)
			log_error("job %s: %s: %s", pl->job_name, what, pl->err ? pl->err : "?");
		pl->done(PLANNER_FAILED, NULL, reply, pl->userdata);
		planner_free(pl);
		return;
	}
	if (pl->p.too_large_files > 0) {
		char need[32];
		format_iec((int64_t)pl->p.too_large_need, need);
		text = xprintf("drive prep started: %zu files on %zu drives, %" PRIu64
			       " files wait for a drive, %" PRIu64 " of them too large for any "
			       "attached drive (one needs a drive with %s free)",
			       pl->in.n, pl->in.nd, pl->p.unplaced_files, pl->p.too_large_files,
			       need);
	} else
		text = xprintf("drive prep started: %zu files on %zu drives, %" PRIu64
			       " files wait for a drive", pl->in.n, pl->in.nd,
			       pl->p.unplaced_files);
	r = jobctl_advance(d, pl->job_id, pl->job_name, JOB_STAGING, JOB_DRIVE_PREP, JOB_PHASE_COPYING,
			   LOG_INFO, text);
	if (r == -ESTALE) {
		prepare_refused(pl, PLANNER_INVALID_STATE);
		return;
	}
	if (r < 0)
		pl->done(PLANNER_FAILED, NULL, "recording the plan failed; see the journal",
			 pl->userdata);
	else
		pl->done(PLANNER_OK, NULL, NULL, pl->userdata);
	planner_free(pl);
}

bool
planner_preparing(struct daemon *d, int64_t job_id)
{
	struct planner *pl;

	LIST_FOREACH(pl, &d->planners, link)
		if (pl->prepare && pl->job_id == job_id)
			return true;
	return false;
}
