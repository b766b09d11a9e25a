/*
 * The one place a job's state or phase changes. Every change is the store's
 * transaction (db.c: the state or phase and its event row together), then
 * for a state change one catalogued journal line (SEEDD_JOB=, SEEDD_STATE=,
 * MESSAGE_ID= JOB_FAILED or JOB_STATE), then one notify_job() so watchers
 * see it on the next loop turn. Before this file, "fail the job" was written
 * five times and "set the phase" three, and they drifted: one failure logged
 * no catalogued line, one phase change told no watcher.
 *
 * After the write, the stage table is asked whether the job has a new owner
 * (stagetab.h): if so, that stage starts it on the next loop turn. A stage
 * that finishes its part never calls the next one.
 *
 * Each function returns 0, or -ESTALE when the job is no longer in the
 * state the caller expected (somebody else changed it: nothing is written,
 * logged or notified), or another negative errno from the store (logged as
 * an error; nothing notified). Loop thread only. The caller keeps its own
 * clean-up (freeing its stage object) after the call.
 */
#ifndef SEEDD_JOBCTL_H
#define SEEDD_JOBCTL_H

#include <stdbool.h>
#include <stdint.h>

#include "job.h"

struct daemon;

/* from -> failed with error as the reason; journal: "job NAME failed in FROM: ERROR". */
int jobctl_fail(struct daemon *d, int64_t job_id, const char *name, enum job_state from,
		const char *error);
/*
 * from -> to, entering phase. text is both the event's and the journal
 * line's text (NULL: "from -> to"), logged at priority (LOG_INFO,
 * LOG_WARNING when the new state needs a look).
 */
int jobctl_advance(struct daemon *d, int64_t job_id, const char *name, enum job_state from,
		   enum job_state to, enum job_phase phase, int priority, const char *text);
/* from -> cancelled with text as the reason; journal: JOB_CANCELLED. */
int jobctl_cancel(struct daemon *d, int64_t job_id, const char *name, enum job_state from,
		  const char *text);
/*
 * failed -> the step it failed in (*ret_to); journal: "job NAME retried: back
 * to STEP". skip_refused: from now on the job goes on without the names
 * Azure would refuse (recorded in the same transaction).
 */
int jobctl_retry(struct daemon *d, int64_t job_id, const char *name, bool skip_refused,
		 enum job_state *ret_to);
/*
 * A new job in staging (*ret_id), with its --exclude patterns (a JSON array
 * of strings, or NULL); -EEXIST if the name is taken. Journal: JOB_CREATED.
 */
int jobctl_create(struct daemon *d, const char *name, const char *staging, const char *container,
		  const char *excludes, int64_t *ret_id);
/*
 * The job's counters or progress changed (no state or phase): watchers hear
 * of it on the next loop turn (notify.h).
 */
void jobctl_changed(struct daemon *d, int64_t job_id);
/*
 * Only the phase, while the job is in state: stored as its wire name, or
 * "name: detail" (detail NULL: none); an event of kind "phase", no journal line.
 */
int jobctl_phase(struct daemon *d, int64_t job_id, enum job_state state, enum job_phase phase,
		 const char *detail);

/*
 * Forget a done, failed or cancelled job (PurgeJob): it leaves every
 * listing in one transaction, with its secrets; the purger deletes its rows
 * after (purger.h). -ESTALE if it is in another state. Journal: one line.
 */
int jobctl_purge(struct daemon *d, int64_t job_id, const char *name, enum job_state from);

#define JOBCTL_HAND_OFF_MAX 64 /* hand-offs in one loop turn; more resume every job */

/* Shutdown: drop pending hand-offs (a restart resumes every job). */
void jobctl_free(struct daemon *d);

#endif
