/*
 * The one place a job's state or phase changes (jobctl.h): store, journal,
 * notify, in that order, and only the store's success reaches the other two.
 */
#include <errno.h>

#include "catalog-ids.h"
#include "daemon.h"
#include "db.h"
#include "jobctl.h"
#include "log.h"
#include "notify.h"

void
jobctl_changed(struct daemon *d, int64_t job_id)
{
	if (d->notify != NULL)
		notify_job(d->notify, job_id);
}

/* A store error is worth a line; a lost race (-ESTALE) or a deleted job is normal. */
static int
store_failed(struct daemon *d, int64_t job_id, const char *what, int r)
{
	if (r != -ESTALE && r != -ENOENT)
		log_error("job %lld: recording %s failed: %s", (long long)job_id, what,
			  db_errmsg(d->db));
	return r;
}

int
jobctl_fail(struct daemon *d, int64_t job_id, const char *name, enum job_state from,
	    const char *error)
{
	struct log_ctx ctx = {.job = name, .state = job_state_to_string(JOB_FAILED),
			      .message_id = SEEDD_MESSAGE_JOB_FAILED};
	int r;

	if ((r = db_job_fail(d->db, job_id, from, error, daemon_now())) < 0)
		return store_failed(d, job_id, "the failure", r);
	log_ctx(LOG_ERR, &ctx, "job %s failed in %s: %s", name, job_state_to_string(from),
		error != NULL && *error != '\0' ? error : "unknown error");
	jobctl_changed(d, job_id);
	return 0;
}

int
jobctl_advance(struct daemon *d, int64_t job_id, const char *name, enum job_state from,
	       enum job_state to, const char *phase, int priority, const char *text)
{
	struct log_ctx ctx = {.job = name, .state = job_state_to_string(to),
			      .message_id = SEEDD_MESSAGE_JOB_STATE};
	int r;

	if ((r = db_job_advance(d->db, job_id, from, to, phase, text, daemon_now())) < 0)
		return store_failed(d, job_id, "the next state", r);
	if (text != NULL)
		log_ctx(priority, &ctx, "job %s: %s", name, text);
	else
		log_ctx(priority, &ctx, "job %s: %s -> %s", name, job_state_to_string(from),
			job_state_to_string(to));
	jobctl_changed(d, job_id);
	return 0;
}

int
jobctl_phase(struct daemon *d, int64_t job_id, enum job_state state, const char *phase)
{
	int r;

	if ((r = db_job_set_phase(d->db, job_id, state, phase, daemon_now())) < 0)
		return store_failed(d, job_id, "the phase", r);
	jobctl_changed(d, job_id);
	return 0;
}
