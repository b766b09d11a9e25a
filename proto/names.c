/* Job-state string table and name checks shared by daemon and client. */
#include <string.h>

#include "names.h"
#include "util.h"

static const char *const job_state_table[_JOB_STATE_MAX] = {
	[JOB_STAGING] = "staging",	 [JOB_DRIVE_PREP] = "drive_prep",
	[JOB_SHIPPED] = "shipped",	 [JOB_IMPORTED] = "imported",
	[JOB_VAULT_COPY] = "vault_copy", [JOB_CLEANUP] = "cleanup",
	[JOB_DONE] = "done",		 [JOB_FAILED] = "failed",
	[JOB_CANCELLED] = "cancelled",
};

const char *
job_state_to_string(enum job_state s)
{
	if (s < 0 || s >= _JOB_STATE_MAX)
		return NULL;
	return job_state_table[s];
}

enum job_state
job_state_from_string(const char *s)
{
	if (s == NULL)
		return _JOB_STATE_INVALID;
	for (int i = 0; i < _JOB_STATE_MAX; i++)
		if (strcmp(job_state_table[i], s) == 0)
			return (enum job_state)i;
	return _JOB_STATE_INVALID;
}

bool
job_state_is_final(enum job_state s)
{
	return s == JOB_DONE || s == JOB_CANCELLED;
}

bool
job_name_valid(const char *name)
{
	size_t n;

	if (name == NULL)
		return false;
	n = strlen(name);
	if (n < JOB_NAME_MIN || n > JOB_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}
