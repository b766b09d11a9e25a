/*
 * The work of the job stages that run on threads: indexing the staging tree
 * (stage-index.c) and drive prep (stage-prep.c). Their loop-side halves run
 * on the loop thread; the rest on worker threads. See DESIGN.md §2-§3.
 */
#ifndef SEEDD_STAGE_H
#define SEEDD_STAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "worker.h"

struct daemon;
struct job_row;
struct call;

/* Kinds of worker messages, dispatched by stage_handle_msg(). */
enum stage_msg_kind {
	MSG_INDEX_BATCH,
	MSG_INDEX_DONE,
	MSG_PREP_FILE,
	MSG_PREP_FILES, /* a group of small files, committed in one transaction */
	MSG_PREP_CHECKPOINT,
	MSG_PREP_IDLE,
	MSG_PREP_MANIFEST,
	MSG_PREP_EXITED, /* a drive thread ended */
	MSG_POST_BLOCK,
	MSG_POST_READ_DONE,
	MSG_POST_CLEANED,
	MSG_DRIVE_PROBED,
	MSG_PLAN_DONE,
	MSG_REPORT_DONE,
};

/* AddDrive's probe threads (method-prep.c). */
void probe_handle_msg(struct daemon *d, struct worker_msg *m);
void probe_stop_all(struct daemon *d);
/* PlanJob's planner threads (method-prep.c). */
void planner_handle_msg(struct daemon *d, struct worker_msg *m);
void planner_stop_all(struct daemon *d);

/* Loop thread: the one drain function of the daemon's worker queue. */
void stage_handle_msg(struct worker_msg *m, void *userdata);

/* Start (or restart) indexing the job's staging tree; phase "indexing". */
int index_start(struct daemon *d, const struct job_row *j);
/* Stop the job's indexer if one runs (cancel, shutdown). */
void index_stop(struct daemon *d, int64_t job_id);
void index_handle_msg(struct daemon *d, struct worker_msg *m);
/* While the job's staging tree is being indexed: the files and bytes found so far. */
bool index_progress(struct daemon *d, int64_t job_id, int64_t *ret_files, int64_t *ret_bytes);
void index_stop_all(struct daemon *d);

/* Drive prep. */
int prep_start(struct daemon *d, const struct job_row *j, char **ret_err);
void prep_stop(struct daemon *d, int64_t job_id);
void prep_handle_msg(struct daemon *d, struct worker_msg *m);
void prep_stop_all(struct daemon *d);
/* A drive was added to a job in drive_prep: place waiting files, start its worker. */
void prep_drive_added(struct daemon *d, int64_t job_id);
/* Live progress of a job's drive (bytes in flight, rate, ETA); false if none. */
struct drive_progress {
	int64_t bytes_done;    /* committed + in flight */
	double rate;           /* bytes per second, smoothed */
	int64_t eta;           /* seconds, -1 if unknown */
};
bool prep_drive_progress(struct daemon *d, int64_t job_id, int64_t drive_id,
			 struct drive_progress *ret);
/* Are all workers alive (for the watchdog)? */
bool stage_healthy(struct daemon *d);

/* After the import: reconcile, repair, vault copy, cleanup (stage-post.c). */
struct post;
void post_resume(struct daemon *d, const struct job_row *j);
void post_resume_id(struct daemon *d, int64_t job_id);
void post_stop(struct daemon *d, int64_t job_id);
void post_stop_all(struct daemon *d);
void post_report_missing(struct daemon *d, const struct job_row *j);
struct post *post_lookup(struct daemon *d, int64_t job_id, uint64_t gen);

/* The Azure stages (stage-azure.c). */
int azure_stage_start(struct daemon *d, char **ret_err);
void azure_stage_stop(struct daemon *d);
void azure_stage_reload(struct daemon *d);
void azure_resume(struct daemon *d, const struct job_row *j);
void azure_resume_id(struct daemon *d, int64_t job_id);
void azure_cancel(struct daemon *d, const struct job_row *j);
void azure_forget(struct daemon *d, int64_t job_id);
/*
 * MitigateJob: POST Azure's mitigate call for a shipped DataBox job [spec
 * examples/JobMitigate.json]. done runs once, on a later loop iteration:
 * code NULL when Azure accepted it (then the job is polled again), else
 * Azure's code and message (also "Cancelled" when seedd stops first).
 */
typedef void (*azure_mitigate_fn)(const char *code, const char *message, void *userdata);
void azure_mitigate(struct daemon *d, const struct job_row *j, const char *action,
		    const char *serial, azure_mitigate_fn done, void *userdata);
void azure_poll_all(struct daemon *d);
void azure_check_deadlines(struct daemon *d);

/* Resume the job's threaded stage if its state has one (after RetryJob). */
void stage_resume_job(struct daemon *d, int64_t job_id);
/* Resume the Azure and storage steps of every job (after a reload). */
void stage_resume_remote(struct daemon *d);
/* Resume every job whose stage runs on threads (at start). */
void stage_resume_all(struct daemon *d);
/* Stop every thread (shutdown); queued results are committed. */
void stage_stop_all(struct daemon *d);

#endif
