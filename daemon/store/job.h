/*
 * The job state machine as pure data: a (state, event) -> state table with no
 * I/O, so every pair can be tested. The database enforces the table: a
 * transition is applied only if the job is still in the state it was read in.
 */
#ifndef SEEDD_JOB_H
#define SEEDD_JOB_H

#include "names.h"

enum job_event {
	JOB_EV_PREPARE,       /* staging -> drive_prep: PrepareJob with enough capacity */
	JOB_EV_SHIP,          /* drive_prep -> shipped: Azure accepted carrier + tracking */
	JOB_EV_IMPORTED,      /* shipped -> imported: Azure reports the import completed */
	JOB_EV_RECONCILED,    /* imported -> vault_copy: every file verified in the import container */
	JOB_EV_VAULT_DONE,    /* vault_copy -> cleanup: every vault copy verified */
	JOB_EV_CLEANED,       /* cleanup -> done */
	JOB_EV_FAIL,          /* any active state -> failed (the step is remembered) */
	JOB_EV_CANCEL,        /* a cancellable state -> cancelled */
	JOB_EV_RETRY,         /* failed -> the step it failed in (JOB_RESUME_STEP) */
	_JOB_EVENT_MAX,
	_JOB_EVENT_INVALID = -1,
};

/*
 * Returned by job_next() for JOB_EV_RETRY from failed: the new state is the
 * step the job failed in, which the store remembers.
 */
#define JOB_RESUME_STEP ((enum job_state)_JOB_STATE_MAX)

const char *job_event_to_string(enum job_event e);
enum job_event job_event_from_string(const char *s);

/* The state after event e in state s, JOB_RESUME_STEP, or _JOB_STATE_INVALID if not allowed. */
enum job_state job_next(enum job_state s, enum job_event e);

/* True for states where work runs and a failure can happen (staging .. cleanup). */
bool job_state_is_active(enum job_state s);

/*
 * What a job is doing within its state. The store keeps the phase as text,
 * its wire name, or "name: detail" where a detail goes with it
 * ("needs-drive: 3 files, 1.2 GiB", "azure: Received 45%"); the kind is what
 * the code compares and what the stage table routes on (stagetab.h).
 */
enum job_phase {
	JOB_PHASE_NONE,                   /* "" */
	JOB_PHASE_INDEXING,               /* staging */
	JOB_PHASE_INDEXED,                /* staging: waits for PrepareJob */
	JOB_PHASE_COPYING,                /* drive_prep */
	JOB_PHASE_WRITING_MANIFESTS,
	JOB_PHASE_NEEDS_DRIVE,
	JOB_PHASE_AWAITING_AZURE,         /* drive_prep, Azure's part */
	JOB_PHASE_CREATING_AZURE_JOB,
	JOB_PHASE_AWAITING_TRACKING,
	JOB_PHASE_SHIPPING,
	JOB_PHASE_CANCELLING,
	JOB_PHASE_IN_TRANSIT,             /* shipped */
	JOB_PHASE_AZURE,                  /* shipped: Azure's own status */
	JOB_PHASE_RECONCILE_PENDING,      /* imported, before the reconcile starts */
	JOB_PHASE_IMPORT_PROBLEMS,        /* imported, Azure reported problems */
	JOB_PHASE_RECONCILING,            /* imported */
	JOB_PHASE_REPAIRING,
	JOB_PHASE_COPYING_TO_VAULT,       /* vault_copy */
	JOB_PHASE_DELETING_IMPORT_BLOBS,  /* cleanup */
	JOB_PHASE_DELETING_STAGING_FILES,
	JOB_PHASE_DONE,                   /* done */
	_JOB_PHASE_MAX,
	_JOB_PHASE_INVALID = -1,
};

/* The wire name ("" for none). */
const char *job_phase_to_string(enum job_phase p);
/* The kind of a stored phase text ("needs-drive: ..." -> NEEDS_DRIVE); NULL is none. */
enum job_phase job_phase_from_text(const char *text);

#endif
