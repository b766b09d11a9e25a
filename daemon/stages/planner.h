/*
 * PlanJob's dry run and PrepareJob's placement, on planner threads (each
 * with its own read-only connection). Loop thread API; done runs on a later
 * loop turn, once.
 */
#ifndef SEEDD_PLANNER_H
#define SEEDD_PLANNER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct daemon;
struct job_row;
struct worker_msg;

enum planner_outcome {
	PLANNER_OK,            /* PlanJob: plan is the reply's "plan"; PrepareJob: in drive_prep */
	PLANNER_INVALID_STATE, /* the job changed meanwhile; text is its state now */
	PLANNER_NO_DRIVE,      /* PrepareJob with no drive attached; text is the state */
	PLANNER_FAILED,        /* text says what failed, for the caller */
};

/* plan is borrowed (PlanJob, PLANNER_OK only); text as the outcome says. */
typedef void (*planner_done_fn)(enum planner_outcome outcome, json_t *plan, const char *text,
				void *userdata);

/*
 * Plan job j on a thread. prepare: record the placements a batch per loop
 * turn, then enter drive_prep. -EAGAIN when no thread could be started
 * (done is not called).
 */
int planner_start(struct daemon *d, const struct job_row *j, bool prepare, planner_done_fn done,
		  void *userdata);
/* A job PrepareJob accepts: in staging and indexed. */
bool planner_preparable(const struct job_row *j);
/* Is a PrepareJob of this job under way? */
bool planner_preparing(struct daemon *d, int64_t job_id);

/* The watchdog: have the busy planners beat within max_age seconds? */
bool planner_healthy(struct daemon *d, int64_t max_age, const char **ret_what);
void planner_handle_msg(struct daemon *d, struct worker_msg *m);
/*
 * Shutdown: wait for the planners and drop a PrepareJob recording its plan
 * (the job stays in staging and plans again); PlanJob results are drained.
 */
void planner_stop_all(struct daemon *d);

#endif
