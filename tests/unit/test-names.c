/*
 * proto/names.c: the job-state string table (stored in SQLite and sent on
 * the wire, so the strings are part of the contract) and job name checks.
 */
#include "names.h"
#include "test.h"
#include "util.h"

static void
test_states(void)
{
	/* CONTRACT §4, in the order of a job's life. */
	static const char *const names[] = {
		"staging", "drive_prep", "shipped", "imported", "vault_copy",
		"cleanup", "done",       "failed",  "cancelled",
	};

	check_int(ELEMENTSOF(names), _JOB_STATE_MAX);
	for (int s = 0; s < _JOB_STATE_MAX; s++) {
		check_str(job_state_to_string(s), names[s]);
		check_int(job_state_from_string(names[s]), s);
		check_int(job_state_from_string(job_state_to_string(s)), s);
	}
	check(job_state_to_string(_JOB_STATE_MAX) == NULL);
	check(job_state_to_string(_JOB_STATE_INVALID) == NULL);
	check(job_state_to_string(1000) == NULL);
	check_int(job_state_from_string(NULL), _JOB_STATE_INVALID);
	check_int(job_state_from_string(""), _JOB_STATE_INVALID);
	check_int(job_state_from_string("Staging"), _JOB_STATE_INVALID);
	check_int(job_state_from_string("drive-prep"), _JOB_STATE_INVALID);
	check_int(job_state_from_string("done "), _JOB_STATE_INVALID);
	check_int(job_state_from_string("stagingx"), _JOB_STATE_INVALID);

	check(job_state_is_final(JOB_DONE));
	check(job_state_is_final(JOB_CANCELLED));
	for (int s = JOB_STAGING; s <= JOB_CLEANUP; s++)
		check(!job_state_is_final(s));
}

static void
test_job_names(void)
{
	static const struct {
		const char *name;
		bool valid;
	} cases[] = {
		{"abc", true},
		{"backup-2026", true},
		{"a.b_c-D", true},
		{"123", true},
		{"...", true},
		{"---", true},
		{"_x_", true},
		{"ABCDEFGHIJKLMNOPQRSTUVWX", true},   /* 24 */
		{"abcdefghijklmnopqrstuvw", true},    /* 23 */
		{"ABCDEFGHIJKLMNOPQRSTUVWXY", false}, /* 25 */
		{"ab", false},                        /* 2 */
		{"a", false},
		{"", false},
		{"abc def", false},
		{"abc/def", false},
		{"../x", false},
		{"abc:1", false},
		{"job@x", false},
		{"caf\xc3\xa9", false},
		{"ab\n", false},
		{"abc\t", false},
		{"a+b", false},
		{"a%2e", false},
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++)
		if (job_name_valid(cases[i].name) != cases[i].valid) {
			fprintf(stderr, "job name '%s': want %s\n", cases[i].name,
				cases[i].valid ? "valid" : "invalid");
			check(false);
		}
	check(!job_name_valid(NULL));

	/* Every length from 0 to 30 of an allowed character. */
	for (int n = 0; n <= 30; n++) {
		char buf[32];
		memset(buf, 'j', (size_t)n);
		buf[n] = '\0';
		check_int(job_name_valid(buf), n >= JOB_NAME_MIN && n <= JOB_NAME_MAX);
	}
	/* Every byte in the middle of an otherwise valid name. */
	for (int c = 1; c < 256; c++) {
		char buf[4] = {'a', (char)c, 'b', '\0'};
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
		check_int(job_name_valid(buf), ok);
	}
}

int
main(void)
{
	test_states();
	test_job_names();
	return 0;
}
