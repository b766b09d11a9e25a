/*
 * The job state machine as a const (state, event) -> state table and the
 * event name table. Pure data and lookups, no I/O; callable from any thread.
 * The store (db.c) checks every transition against job_next() before it
 * writes, so the table and the database cannot disagree.
 */
#include <string.h>

#include "job.h"
#include "util.h"

/*
 * Entries hold the next state plus one, so an unlisted (zero) entry means the
 * event is not allowed in that state.
 */
#define TO(s) ((unsigned char)((s) + 1))

/* clang-format off */
static const unsigned char job_table[_JOB_STATE_MAX][_JOB_EVENT_MAX] = {
	[JOB_STAGING] = {
		[JOB_EV_PREPARE] = TO(JOB_DRIVE_PREP),
		[JOB_EV_FAIL] = TO(JOB_FAILED),
		[JOB_EV_CANCEL] = TO(JOB_CANCELLED),
	},
	[JOB_DRIVE_PREP] = {
		[JOB_EV_SHIP] = TO(JOB_SHIPPED),
		[JOB_EV_FAIL] = TO(JOB_FAILED),
		[JOB_EV_CANCEL] = TO(JOB_CANCELLED),
	},
	[JOB_SHIPPED] = {
		[JOB_EV_IMPORTED] = TO(JOB_IMPORTED),
		[JOB_EV_FAIL] = TO(JOB_FAILED),
		[JOB_EV_CANCEL] = TO(JOB_CANCELLED),
	},
	[JOB_IMPORTED] = {
		[JOB_EV_RECONCILED] = TO(JOB_VAULT_COPY),
		[JOB_EV_FAIL] = TO(JOB_FAILED),
		[JOB_EV_CANCEL] = TO(JOB_CANCELLED),
	},
	[JOB_VAULT_COPY] = {
		[JOB_EV_VAULT_DONE] = TO(JOB_CLEANUP),
		[JOB_EV_FAIL] = TO(JOB_FAILED),
		[JOB_EV_CANCEL] = TO(JOB_CANCELLED),
	},
	/* Cleanup deletes data; once it starts it may fail but not be cancelled. */
	[JOB_CLEANUP] = {
		[JOB_EV_CLEANED] = TO(JOB_DONE),
		[JOB_EV_FAIL] = TO(JOB_FAILED),
	},
	[JOB_FAILED] = {
		[JOB_EV_CANCEL] = TO(JOB_CANCELLED),
		[JOB_EV_RETRY] = TO(JOB_RESUME_STEP),
	},
	/* done and cancelled are final: no event leaves them. */
};
/* clang-format on */

static const char *const job_event_table[_JOB_EVENT_MAX] = {
    [JOB_EV_PREPARE] = "prepare",
    [JOB_EV_SHIP] = "ship",
    [JOB_EV_IMPORTED] = "imported",
    [JOB_EV_RECONCILED] = "reconciled",
    [JOB_EV_VAULT_DONE] = "vault_done",
    [JOB_EV_CLEANED] = "cleaned",
    [JOB_EV_FAIL] = "fail",
    [JOB_EV_CANCEL] = "cancel",
    [JOB_EV_RETRY] = "retry",
};

const char *
job_event_to_string(enum job_event e)
{
	if (e < 0 || e >= _JOB_EVENT_MAX)
		return NULL;
	return job_event_table[e];
}

enum job_event
job_event_from_string(const char *s)
{
	if (s == NULL)
		return _JOB_EVENT_INVALID;
	for (int i = 0; i < _JOB_EVENT_MAX; i++)
		if (strcmp(job_event_table[i], s) == 0)
			return (enum job_event)i;
	return _JOB_EVENT_INVALID;
}

enum job_state
job_next(enum job_state s, enum job_event e)
{
	if (s < 0 || s >= _JOB_STATE_MAX || e < 0 || e >= _JOB_EVENT_MAX)
		return _JOB_STATE_INVALID;
	if (job_table[s][e] == 0)
		return _JOB_STATE_INVALID;
	return (enum job_state)(job_table[s][e] - 1);
}

bool
job_state_is_active(enum job_state s)
{
	return s >= JOB_STAGING && s <= JOB_CLEANUP;
}

static const char *const job_phase_table[_JOB_PHASE_MAX] = {
	[JOB_PHASE_NONE] = "",
	[JOB_PHASE_INDEXING] = "indexing",
	[JOB_PHASE_INDEXED] = "indexed",
	[JOB_PHASE_COPYING] = "copying",
	[JOB_PHASE_WRITING_MANIFESTS] = "writing-manifests",
	[JOB_PHASE_NEEDS_DRIVE] = "needs-drive",
	[JOB_PHASE_AWAITING_AZURE] = "awaiting-azure",
	[JOB_PHASE_CREATING_AZURE_JOB] = "creating-azure-job",
	[JOB_PHASE_AWAITING_TRACKING] = "awaiting-tracking",
	[JOB_PHASE_SHIPPING] = "shipping",
	[JOB_PHASE_CANCELLING] = "cancelling",
	[JOB_PHASE_IN_TRANSIT] = "in-transit",
	[JOB_PHASE_AZURE] = "azure",
	[JOB_PHASE_RECONCILE_PENDING] = "reconcile-pending",
	[JOB_PHASE_IMPORT_PROBLEMS] = "import-problems",
	[JOB_PHASE_RECONCILING] = "reconciling",
	[JOB_PHASE_REPAIRING] = "repairing",
	[JOB_PHASE_COPYING_TO_VAULT] = "copying-to-vault",
	[JOB_PHASE_DELETING_IMPORT_BLOBS] = "deleting-import-blobs",
	[JOB_PHASE_DELETING_STAGING_FILES] = "deleting-staging-files",
	[JOB_PHASE_DONE] = "done",
};

const char *
job_phase_to_string(enum job_phase p)
{
	return p >= 0 && p < _JOB_PHASE_MAX ? job_phase_table[p] : "";
}

enum job_phase
job_phase_from_text(const char *text)
{
	size_t n;

	if (text == NULL || *text == '\0')
		return JOB_PHASE_NONE;
	n = strcspn(text, ":");
	for (int p = 1; p < _JOB_PHASE_MAX; p++)
		if (strlen(job_phase_table[p]) == n && strncmp(text, job_phase_table[p], n) == 0)
			return (enum job_phase)p;
	return _JOB_PHASE_INVALID;
}
