/*
 * MitigateJob: the operator's answer to Azure's "waiting for customer
 * action" on a shipped DataBox job, sent through Azure's mitigate call
 * ([spec] databox-api/spec/2025-07-01 MitigateJobRequest,
 * examples/JobMitigate.json). The reply waits for Azure's answer. Loop thread.
 */
#include <errno.h>
#include <string.h>

#include "azure-jobs.h"
#include "conn.h"
#include "daemon.h"
#include "db.h"
#include "log.h"
#include "methods.h"
#include "stage.h"
#include "util.h"

struct mitigation {
	struct daemon *d;
	struct conn_ref *ref;
	int64_t job_id;
};

static void
mitigation_done(const char *code, const char *message, void *userdata)
{
	struct mitigation *m = userdata;
	/* A client that went away gets no reply; the call was made all the same. */
	struct call call = {.d = m->d, .method = "io.seedd.MitigateJob",
			    .conn = conn_ref_get(m->ref)};

	if (code != NULL)
		conn_error(call.conn, SEEDD_ERR_AZURE,
			   json_pack("{s:s,s:s}", "code", code, "message", message));
	else
		reply_job_by_id(&call, m->job_id);
	conn_ref_free(m->ref);
	free(m);
}

/* The refusal for a job that cannot be mitigated, or NULL. */
static const char *
why_not(const struct daemon *d, const struct job_row *j)
{
	if (d->azure == NULL)
		return "Azure is not configured (seedd.conf(5), [Azure])";
	if (j->state != JOB_SHIPPED)
		return "only a shipped job, whose drives Azure is importing, can wait for a "
		       "customer action";
	if (j->azure_api != NULL && strcmp(j->azure_api, "ImportExport") == 0)
		return "the ImportExport API has no mitigate call; contact Azure support";
	return NULL;
}

void
method_mitigate_job(struct call *call)
{
	const char *name = param_str(call, "name"), *action = param_str(call, "action");
	const char *serial = param_has(call, "serial") ? param_str(call, "serial") : NULL;
	struct job_row *j = NULL;
	struct drive_row dr = {0};
	const char *why;
	int r = db_job_get(call->d->db, name, &j);

	if (r == -ENOENT) {
		reply_job_not_found(call, name);
		return;
	}
	if (r < 0) {
		reply_internal(call, "database error; see the journal");
		return;
	}
	if ((why = why_not(call->d, j)) != NULL) {
		reply_invalid_state(call, j->name, job_state_to_string(j->state), why);
		goto out;
	}
	if (!databox_resolution_valid(action)) {
		reply_invalid_argument(call, "action",
				       "action must be one of None, MoveToCleanUpDevice, Resume, "
				       "Restart, ReachOutToOperation");
		goto out;
	}
	if (serial != NULL && db_drive_by_serial(call->d->db, j->id, serial, &dr) < 0) {
		reply_invalid_argument(call, "serial", "job %s has no drive %s", j->name, serial);
		goto out;
	}
	struct mitigation *m = xcalloc(1, sizeof(*m));
	m->d = call->d;
	m->job_id = j->id;
	m->ref = conn_ref_new(call->conn);
	azure_mitigate(call->d, j, action, serial, mitigation_done, m);
out:
	drive_row_done(&dr);
	job_row_free(j);
}
