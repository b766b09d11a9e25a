/*
 * Placing files on drives off the loop thread (placement.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "placement.h"
#include "plan.h"
#include "stage.h"
#include "util.h"

/*
 * Placements per transaction: a batch of 500 takes a few ms, the longest the
 * loop's own writes wait for the lock.
 */
#define PLACE_BATCH 500

struct charge {
	struct plan_cost cost;
	uint64_t charged;
};

static int
charge_cb(int64_t id, int64_t size, void *userdata)
{
	struct charge *c = userdata;
	struct plan_file f = {.id = id, .size = size > 0 ? (uint64_t)size : 0};

	c->charged += plan_file_cost(&c->cost, &f);
	return 0;
}

int
placement_room(struct db *db, int64_t drive_id, int64_t capacity, bool planned_too,
	       uint64_t *ret)
{
	struct charge c = {.cost = PLAN_COST_DEFAULT};
	int r;

	if ((r = db_drive_foreach_held(db, drive_id, planned_too, charge_cb, &c)) < 0)
		return r;
	*ret = capacity > 0 && (uint64_t)capacity > c.charged ? (uint64_t)capacity - c.charged : 0;
	return 0;
}

int
placement_record(struct db *db, int64_t job_id, enum job_state state, enum job_phase phase,
		 const struct placement *p, size_t n, atomic_bool *cancel, struct worker_thread *w)
{
	int r;

	for (size_t done = 0; done < n; done += PLACE_BATCH) {
		size_t k = n - done < PLACE_BATCH ? n - done : PLACE_BATCH;
		if (cancel != NULL && atomic_load(cancel))
			return -ECANCELED;
		if ((r = db_files_place_in(db, job_id, state, phase, p + done, k)) < 0)
			return r;
		if (w != NULL)
			worker_thread_beat(w);
	}
	return 0;
}

/* ---- The placer ---------------------------------------------------------- */

struct placer {
	struct worker_thread w;
	struct worker_queue *queue;
	char *db_path;
	struct placer_msg *msg; /* the result, pushed when done */
};

struct gather {
	struct plan_file *files;
	size_t n, cap;
};

static int
gather_cb(int64_t id, int64_t size, void *userdata)
{
	struct gather *g = userdata;

	if (g->n == g->cap) {
		g->cap = g->cap ? g->cap * 2 : 1024;
		g->files = xreallocarray(g->files, g->cap, sizeof(*g->files));
	}
	g->files[g->n++] = (struct plan_file){.id = id, .size = size > 0 ? (uint64_t)size : 0};
	return 0;
}

static void
placer_msg_free(struct worker_msg *m)
{
	struct placer_msg *pm = (struct placer_msg *)m;

	free(pm->err);
	free(pm);
}

/* Turn the plan into placements, counting what each drive gets and what is left. */
static struct placement *
placements_of(struct placer_msg *pm, const struct gather *g, const struct plan *plan,
	      size_t *ret_n)
{
	struct placement *out = xcalloc(g->n + 1, sizeof(*out));
	size_t n = 0;

	for (size_t i = 0; i < g->n; i++) {
		int32_t k = plan->file_drive[i];
		if (k < 0) {
			pm->left++;
			pm->left_bytes += (int64_t)g->files[i].size;
			continue;
		}
		out[n++] = (struct placement){.file_id = g->files[i].id,
					      .drive_id = pm->drives[k].drive_id};
		pm->drives[k].files++;
		pm->drives[k].bytes += (int64_t)g->files[i].size;
	}
	*ret_n = n;
	return out;
}

static int
place(struct placer *pl, struct db *db)
{
	struct placer_msg *pm = pl->msg;
	struct plan_drive drives[DRIVES_PER_JOB_MAX];
	struct placement *out = NULL;
	struct gather g = {0};
	struct plan plan = {0};
	size_t n = 0;
	int r;

	if ((r = db_files_foreach_waiting(db, pm->job_id, gather_cb, &g)) < 0)
		goto out;
	pm->waiting = (int64_t)g.n;
	for (size_t i = 0; i < pm->n && r >= 0; i++) {
		drives[i].id = pm->drives[i].drive_id;
		r = placement_room(db, pm->drives[i].drive_id, pm->drives[i].capacity, true,
				   &drives[i].free);
	}
	if (r < 0 || g.n == 0)
		goto out;
	worker_thread_beat(&pl->w);
	if ((r = plan_compute(g.files, g.n, drives, pm->n, NULL, 0, &plan)) < 0)
		goto out;
	out = placements_of(pm, &g, &plan, &n);
	pm->too_large_files = plan.too_large_files;
	pm->too_large_need = plan.too_large_need;
	r = placement_record(db, pm->job_id, JOB_DRIVE_PREP, _JOB_PHASE_INVALID, out, n,
			     &pl->w.cancel, &pl->w);
out:
	plan_done(&plan);
	free(out);
	free(g.files);
	return r;
}

static void *
placer_thread(void *arg)
{
	struct placer *pl = arg;
	struct placer_msg *pm = pl->msg;
	struct db *db = NULL;
	char *err = NULL;

	atomic_store(&pl->w.busy, true);
	worker_thread_beat(&pl->w);
	if ((pm->r = db_open(pl->db_path, &db, &err)) < 0)
		pm->err = err;
	else if ((pm->r = place(pl, db)) < 0 && pm->r != -ECANCELED && pm->r != -ESTALE)
		pm->err = xstrdup(pm->r == -EIO ? db_errmsg(db) : strerror(-pm->r));
	db_close(db);
	atomic_store(&pl->w.busy, false);
	pl->msg = NULL;
	worker_queue_push(pl->queue, &pm->m);
	return NULL;
}

struct placer *
placer_start(struct worker_queue *q, const char *db_path, int64_t job_id, uint64_t gen,
	     const struct placer_drive *drives, size_t n)
{
	struct placer *pl;
	struct placer_msg *pm;

	if (n > DRIVES_PER_JOB_MAX)
		return NULL;
	pl = xcalloc(1, sizeof(*pl));
	pm = xcalloc(1, sizeof(*pm) + n * sizeof(pm->drives[0]));

	pm->m.kind = MSG_PREP_PLACED;
	pm->m.free_fn = placer_msg_free;
	pm->job_id = job_id;
	pm->gen = gen;
	pm->n = n;
	for (size_t i = 0; i < n; i++)
		pm->drives[i] = (struct placer_drive){.drive_id = drives[i].drive_id,
						      .capacity = drives[i].capacity};
	pl->queue = q;
	pl->db_path = xstrdup(db_path);
	pl->msg = pm;
	if (worker_thread_start(&pl->w, placer_thread, pl) < 0) {
		placer_msg_free(&pm->m);
		free(pl->db_path);
		free(pl);
		return NULL;
	}
	return pl;
}

void
placer_cancel(struct placer *pl)
{
	if (pl != NULL)
		atomic_store(&pl->w.cancel, true);
}

void
placer_free(struct placer *pl)
{
	if (pl == NULL)
		return;
	worker_thread_stop(&pl->w);
	free(pl->db_path);
	free(pl);
}

bool
placer_healthy(struct placer *pl, int64_t max_age)
{
	return pl == NULL || worker_thread_healthy(&pl->w, max_age);
}
