/*
 * The stage table: which stage does the work of a job in each (state,
 * phase), and the one way the rest of seedd reaches a stage. Stages register
 * at start (main.c, lowest first); after a transition or phase change jobctl
 * asks the table, and when the owner changed jobctl has the new owner start
 * the job on the next loop turn. Nobody calls the next stage by name. The table also
 * routes worker messages by kind, asks every stage whether its threads are
 * alive (the watchdog), stops them, and restarts the stages that depend on
 * the configuration after a reload. Loop thread only.
 */
#ifndef SEEDD_STAGETAB_H
#define SEEDD_STAGETAB_H

#include <stdbool.h>
#include <stdint.h>

#include "job.h"

struct daemon;
struct job_row;
struct worker_msg;

/* Kinds of worker messages; each stage handles a range of them. */
enum stage_msg_kind {
	MSG_INDEX_DONE,
	MSG_PREP_FILE,
	MSG_PREP_FILES, /* a group of small files, committed in one transaction */
	MSG_PREP_CHECKPOINT,
	MSG_PREP_IDLE,
	MSG_PREP_MANIFEST,
	MSG_PREP_PLACED,  /* the placer placed what waited */
	MSG_PREP_COUNTED, /* a drive thread summed what its drive holds */
	MSG_PREP_EXITED, /* a drive thread ended */
	MSG_POST_BLOCK,
	MSG_POST_READ_DONE,
	MSG_POST_CLEANED,
	MSG_DRIVE_PROBED,
	MSG_PLAN_DONE,
	MSG_REPORT_DONE,
	MSG_DOCTOR_DONE, /* a doctor's look at the drives ended */
	MSG_STORE_FAULT, /* a worker's connection cannot write the database (core/daemon.c) */
	_MSG_KIND_MAX,
};

#define STAGE_STATE(s) (1u << (s))
#define STAGE_PHASE(p) (1u << (p))
#define STAGE_ANY_PHASE UINT32_MAX
#define STAGE_CLAIMS_MAX 2
#define STAGE_MAX 12
#define STAGE_HEARTBEAT_MAX 300 /* seconds a busy worker may go without a beat */

/* (state, phase) pairs: every state in states with every phase in phases. */
struct stage_claim {
	uint32_t states;
	uint32_t phases;
};

struct stage {
	const char *name;
	struct stage_claim claims[STAGE_CLAIMS_MAX]; /* the jobs it works on; none: a helper */
	/* Start or resume the work of a job it claims; idempotent. */
	int (*resume)(struct daemon *d, const struct job_row *j, char **ret_err);
	/* Stop the job's work now (cancel); NULL: nothing runs per job. */
	void (*stop)(struct daemon *d, int64_t job_id);
	/* Shutdown, and before a restart at reload: every thread stopped. */
	void (*stop_all)(struct daemon *d);
	/* Set up what the stage needs from the configuration (clients); NULL: nothing. */
	int (*start)(struct daemon *d, char **ret_err);
	/* Stopped and started again when the configuration is reloaded. */
	bool restart_on_reload;
	/* After a reload, for a stage not restarted: take new settings in running work; NULL: none. */
	void (*reconfigure)(struct daemon *d);
	/* Are its busy workers alive? *ret_what names the one that is not. */
	bool (*healthy)(struct daemon *d, int64_t max_age, const char **ret_what);
	void (*handle_msg)(struct daemon *d, struct worker_msg *m);
	enum stage_msg_kind msg_first, msg_last; /* when handle_msg is set */
};

struct stagetab;

struct stagetab *stagetab_new(struct daemon *d);
struct stagetab *stagetab_free(struct stagetab *t);
/* Add a stage (static storage); its claims must not overlap another's. -EEXIST if they do. */
int stagetab_add(struct stagetab *t, const struct stage *st);

/* The stage that works on a job in (state, phase); NULL: it waits for the operator or is final. */
const struct stage *stagetab_owner(const struct stagetab *t, enum job_state s, enum job_phase p);
const struct stage *stagetab_owner_of(const struct stagetab *t, const struct job_row *j);

/* Start every stage's set-up (start); the first error is returned. */
int stagetab_start(struct stagetab *t, char **ret_err);
/* Resume every job with its owner (at start). */
void stagetab_resume_all(struct stagetab *t);
/* Resume this job with its owner now (after CreateJob, ShipJob, RetryJob). 0 if none. */
int stagetab_resume_job(struct stagetab *t, int64_t job_id, char **ret_err);
/* Resume job j with its owner (0 if it has none). */
int stagetab_resume(struct stagetab *t, const struct job_row *j, char **ret_err);
/* Cancel: every stage stops the job's work. */
void stagetab_stop_job(struct stagetab *t, int64_t job_id);
/* Shutdown: every stage stops, the highest first. */
void stagetab_stop_all(struct stagetab *t);
/*
 * The configuration changed: let running stages take new settings (reconfigure),
 * restart the stages that depend on it, resume their jobs.
 */
void stagetab_reload(struct stagetab *t);
/* The watchdog: are all busy workers of every stage alive? *ret_who names the stage. */
bool stagetab_healthy(struct stagetab *t, const char **ret_who, const char **ret_what);
/* The worker queue's drain function (userdata: the table). */
void stagetab_handle_msg(struct worker_msg *m, void *userdata);

#endif
