/*
 * The job transition table, every (state, event) pair against an expected
 * table written here independently as a list of allowed triples, plus the
 * event and state string tables.
 */
#include <stdbool.h>

#include "job.h"
#include "test.h"
#include "util.h"

struct allowed {
	enum job_state from;
	enum job_event ev;
	enum job_state to;
};

/* The only transitions the design allows (DESIGN.md §1); all else is invalid. */
static const struct allowed expected[] = {
    {JOB_STAGING, JOB_EV_PREPARE, JOB_DRIVE_PREP},
    {JOB_DRIVE_PREP, JOB_EV_SHIP, JOB_SHIPPED},
    {JOB_SHIPPED, JOB_EV_IMPORTED, JOB_IMPORTED},
    {JOB_IMPORTED, JOB_EV_RECONCILED, JOB_VAULT_COPY},
    {JOB_VAULT_COPY, JOB_EV_VAULT_DONE, JOB_CLEANUP},
    {JOB_CLEANUP, JOB_EV_CLEANED, JOB_DONE},

    {JOB_STAGING, JOB_EV_FAIL, JOB_FAILED},
    {JOB_DRIVE_PREP, JOB_EV_FAIL, JOB_FAILED},
    {JOB_SHIPPED, JOB_EV_FAIL, JOB_FAILED},
    {JOB_IMPORTED, JOB_EV_FAIL, JOB_FAILED},
    {JOB_VAULT_COPY, JOB_EV_FAIL, JOB_FAILED},
    {JOB_CLEANUP, JOB_EV_FAIL, JOB_FAILED},

    {JOB_STAGING, JOB_EV_CANCEL, JOB_CANCELLED},
    {JOB_DRIVE_PREP, JOB_EV_CANCEL, JOB_CANCELLED},
    {JOB_SHIPPED, JOB_EV_CANCEL, JOB_CANCELLED},
    {JOB_IMPORTED, JOB_EV_CANCEL, JOB_CANCELLED},
    {JOB_VAULT_COPY, JOB_EV_CANCEL, JOB_CANCELLED},
    {JOB_FAILED, JOB_EV_CANCEL, JOB_CANCELLED},

    {JOB_FAILED, JOB_EV_RETRY, JOB_RESUME_STEP},
};

static enum job_state
expected_next(enum job_state s, enum job_event e)
{
	for (size_t i = 0; i < ELEMENTSOF(expected); i++)
		if (expected[i].from == s && expected[i].ev == e)
			return expected[i].to;
	return _JOB_STATE_INVALID;
}

static void
test_grid(void)
{
	int allowed = 0;

	check_int(_JOB_STATE_MAX, 9);
	check_int(_JOB_EVENT_MAX, 9);
	for (int s = 0; s < _JOB_STATE_MAX; s++)
		for (int e = 0; e < _JOB_EVENT_MAX; e++) {
			enum job_state want = expected_next((enum job_state)s, (enum job_event)e);
			enum job_state got = job_next((enum job_state)s, (enum job_event)e);

			if (got != want)
				fprintf(stderr, "job_next(%s, %s)\n",
				        job_state_to_string((enum job_state)s),
				        job_event_to_string((enum job_event)e));
			check_int(got, want);
			if (got != _JOB_STATE_INVALID)
				allowed++;
		}
	check_int(allowed, ELEMENTSOF(expected));
}

static void
test_out_of_range(void)
{
	check_int(job_next(_JOB_STATE_INVALID, JOB_EV_FAIL), _JOB_STATE_INVALID);
	check_int(job_next(_JOB_STATE_MAX, JOB_EV_FAIL), _JOB_STATE_INVALID);
	check_int(job_next(JOB_STAGING, _JOB_EVENT_INVALID), _JOB_STATE_INVALID);
	check_int(job_next(JOB_STAGING, _JOB_EVENT_MAX), _JOB_STATE_INVALID);
	check_int(job_next((enum job_state)1000, (enum job_event)1000), _JOB_STATE_INVALID);
}

static void
test_final_states(void)
{
	/* Nothing leaves done or cancelled. */
	for (int e = 0; e < _JOB_EVENT_MAX; e++) {
		check_int(job_next(JOB_DONE, (enum job_event)e), _JOB_STATE_INVALID);
		check_int(job_next(JOB_CANCELLED, (enum job_event)e), _JOB_STATE_INVALID);
	}
}

static void
test_active(void)
{
	static const bool active[_JOB_STATE_MAX] = {
	    [JOB_STAGING] = true,  [JOB_DRIVE_PREP] = true, [JOB_SHIPPED] = true,
	    [JOB_IMPORTED] = true, [JOB_VAULT_COPY] = true, [JOB_CLEANUP] = true,
	    [JOB_DONE] = false,    [JOB_FAILED] = false,    [JOB_CANCELLED] = false,
	};

	for (int s = 0; s < _JOB_STATE_MAX; s++) {
		check_int(job_state_is_active((enum job_state)s), active[s]);
		/* Exactly the active states can fail. */
		check_int(job_next((enum job_state)s, JOB_EV_FAIL) == JOB_FAILED, active[s]);
	}
	check(!job_state_is_active(_JOB_STATE_INVALID));
	check(!job_state_is_active(_JOB_STATE_MAX));
}

static void
test_strings(void)
{
	static const char *const names[_JOB_EVENT_MAX] = {
	    "prepare", "ship", "imported", "reconciled", "vault_done",
	    "cleaned", "fail", "cancel",   "retry",
	};

	for (int e = 0; e < _JOB_EVENT_MAX; e++) {
		check_str(job_event_to_string((enum job_event)e), names[e]);
		check_int(job_event_from_string(names[e]), e);
	}
	check(job_event_to_string(_JOB_EVENT_INVALID) == NULL);
	check(job_event_to_string(_JOB_EVENT_MAX) == NULL);
	check_int(job_event_from_string(NULL), _JOB_EVENT_INVALID);
	check_int(job_event_from_string(""), _JOB_EVENT_INVALID);
	check_int(job_event_from_string("Prepare"), _JOB_EVENT_INVALID);
	check_int(job_event_from_string("retry "), _JOB_EVENT_INVALID);

	for (int s = 0; s < _JOB_STATE_MAX; s++) {
		const char *n = job_state_to_string((enum job_state)s);
		check(n != NULL);
		check_int(job_state_from_string(n), s);
	}
}

int
main(void)
{
	test_grid();
	test_out_of_range();
	test_final_states();
	test_active();
	test_strings();
	return 0;
}
