/*
 * Glue between the loop and the stages that run on threads: the drain
 * function of the worker queue, resuming jobs at start and stopping every
 * thread at shutdown. Loop thread.
 */
#include <errno.h>
#include <string.h>

#include "daemon.h"
#include "db.h"
#include "log.h"
#include "report.h"
#include "stage-post.h"
#include "stage.h"
#include "util.h"
#include "worker.h"

void
stage_handle_msg(struct worker_msg *m, void *userdata)
{
	struct daemon *d = userdata;

	switch (m->kind) {
	case MSG_INDEX_BATCH:
	case MSG_INDEX_DONE:
		index_handle_msg(d, m);
		break;
	case MSG_POST_BLOCK:
	case MSG_POST_READ_DONE:
	case MSG_POST_CLEANED:
		post_io_handle_msg(d, m);
		break;
	case MSG_DRIVE_PROBED:
		probe_handle_msg(d, m);
		break;
	case MSG_PLAN_DONE:
		planner_handle_msg(d, m);
		break;
	case MSG_REPORT_DONE:
		report_handle_msg(d, m);
		break;
	default: /* MSG_PREP_* */
		prep_handle_msg(d, m);
		break;
	}
}

/* Phases in which drive prep itself (copying, manifests) still has work. */
static bool
prep_phase(const char *phase)
{
	return phase == NULL || strcmp(phase, "copying") == 0 ||
	       strcmp(phase, "writing-manifests") == 0 || strncmp(phase, "needs-drive", 11) == 0;
}

static void
resume_one(struct daemon *d, const struct job_row *j)
{
	_cleanup_free_ char *err = NULL;
	int r = 0;

	if (j->state == JOB_STAGING && (j->phase == NULL || strcmp(j->phase, "indexed") != 0))
		r = index_start(d, j);
	else if (j->state == JOB_DRIVE_PREP && prep_phase(j->phase))
		r = prep_start(d, j, &err);
	else if (j->state == JOB_DRIVE_PREP || j->state == JOB_SHIPPED) {
		azure_resume(d, j);
		return;
	} else if (j->state == JOB_IMPORTED || j->state == JOB_VAULT_COPY ||
		   j->state == JOB_CLEANUP) {
		post_resume(d, j);
		return;
	} else {
		post_report_missing(d, j);
		return;
	}
	if (r < 0)
		log_error("job %s: cannot resume %s: %s", j->name, job_state_to_string(j->state),
			  err ? err : strerror(-r));
	else
		log_info("job %s: resuming %s", j->name, job_state_to_string(j->state));
}

void
stage_resume_job(struct daemon *d, int64_t job_id)
{
	struct job_row *j = NULL;

	if (db_job_get_by_id(d->db, job_id, &j) == 0)
		resume_one(d, j);
	job_row_free(j);
}

void
stage_resume_remote(struct daemon *d)
{
	struct job_row **rows = NULL;
	size_t n = 0;

	if (db_job_list(d->db, &rows, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		const struct job_row *j = rows[i];
		if ((j->state == JOB_DRIVE_PREP && !prep_phase(j->phase)) || j->state == JOB_SHIPPED)
			azure_resume(d, j);
		else if (j->state == JOB_IMPORTED || j->state == JOB_VAULT_COPY ||
			 j->state == JOB_CLEANUP)
			post_resume(d, j);
	}
	job_rows_free(rows, n);
}

void
stage_resume_all(struct daemon *d)
{
	struct job_row **rows = NULL;
	size_t n = 0;

	if (db_job_list(d->db, &rows, &n) < 0) {
		log_error("reading jobs to resume: %s", db_errmsg(d->db));
		return;
	}
	for (size_t i = 0; i < n; i++)
		resume_one(d, rows[i]);
	job_rows_free(rows, n);
}

void
stage_stop_all(struct daemon *d)
{
	probe_stop_all(d);
	planner_stop_all(d);
	report_stop_all(d);
	index_stop_all(d);
	prep_stop_all(d);
	post_stop_all(d);
	/* Commit what the threads finished before they stopped. */
	if (d->queue != NULL)
		worker_queue_drain(d->queue);
}
