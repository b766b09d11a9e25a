/*
 * Placing files on drives off the loop thread. Two users: PrepareJob's
 * planner thread records its plan, and drive prep's placer thread places
 * what waits (a file moved off a full drive, one changed in staging, one
 * that found no room before a drive came). Both write on a connection of
 * their own in short transactions, so the loop only waits for the write
 * lock for one batch at most, and both count a drive's room the way the
 * planner does (plan_file_cost() of every file it holds), so the two never
 * disagree on what fits.
 */
#ifndef SEEDD_PLACEMENT_H
#define SEEDD_PLACEMENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "worker.h"

struct daemon;
struct worker_queue;

/*
 * Room left on a drive of `capacity` bytes under the planner's default cost:
 * capacity less the cost of the files it holds (verified ones, and if
 * planned_too planned ones). Any connection, any thread.
 */
int placement_room(struct db *db, int64_t drive_id, int64_t capacity, bool planned_too,
		   uint64_t *ret);

/*
 * Record p[0..n) in transactions of a bounded size, each only while the job
 * is in state (and phase unless _JOB_PHASE_INVALID): -ESTALE when it is not
 * any more, -ECANCELED when *cancel was raised between two batches; what was
 * recorded stays (placing again rewrites it). w, if not NULL, beats per batch.
 */
int placement_record(struct db *db, int64_t job_id, enum job_state state, enum job_phase phase,
		     const struct placement *p, size_t n, atomic_bool *cancel,
		     struct worker_thread *w);

/* ---- The placer: one thread places a drive_prep job's waiting files ---- */

struct placer_drive {
	int64_t drive_id;
	int64_t capacity;
	/* Result: what was placed on it. */
	int64_t files, bytes;
};

/* The placer's result, pushed to the loop (kind MSG_PREP_PLACED). */
struct placer_msg {
	struct worker_msg m;
	int64_t job_id;
	uint64_t gen;
	int r;                       /* 0, or -errno (-ESTALE: the job left drive_prep) */
	char *err;                   /* with r < 0 where known */
	int64_t waiting;             /* files that waited */
	int64_t left, left_bytes;    /* of those, what no drive has room for */
	uint64_t too_large_files;    /* of those, too large for any of the drives */
	uint64_t too_large_need;     /* free bytes the largest of them needs */
	size_t n;
	struct placer_drive drives[]; /* as given to placer_start(), results filled */
};

/*
 * Start placing job_id's waiting files on drives[0..n) (its drives that are
 * not full). The message carries (job_id, gen) back; NULL if no thread could
 * be started.
 */
struct placer *placer_start(struct worker_queue *q, const char *db_path, int64_t job_id,
			    uint64_t gen, const struct placer_drive *drives, size_t n);
/* Ask it to stop; its message still comes, with -ECANCELED. */
void placer_cancel(struct placer *pl);
/* Join and free, once its message has come (or at shutdown: joins). NULL is fine. */
void placer_free(struct placer *pl);
bool placer_healthy(struct placer *pl, int64_t max_age);

#endif
