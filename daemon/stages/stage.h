/*
 * The job stages: indexing the staging tree (stage-index.c), drive prep
 * (stage-prep.c), the Azure job (stage-azure.c), after the import
 * (stage-post.c), and the report, probe and planner threads. Each is an
 * entry of the stage table (stage.c, core/stagetab.h); their loop-side
 * halves run on the loop thread, the rest on worker threads. See DESIGN.md
 * §2-§3.
 */
#ifndef SEEDD_STAGE_H
#define SEEDD_STAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "stagetab.h"
#include "worker.h"

struct daemon;
struct job_row;

/*
 * Enter every stage into the table (stagetab.h), lowest first: what each
 * owns, how it resumes, stops and reports its health. 0, or -EEXIST if two
 * claim the same (state, phase).
 */
struct stagetab;
int stages_register(struct stagetab *t);

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
/* After a reload: running preps take the new ReadBandwidthMax=. */
void prep_reconfigure(struct daemon *d);
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
/* The watchdog: are the busy workers of each stage alive (heartbeat younger than max_age)? */
bool prep_healthy(struct daemon *d, int64_t max_age, const char **ret_what);
bool index_healthy(struct daemon *d, int64_t max_age, const char **ret_what);
bool post_healthy(struct daemon *d, int64_t max_age, const char **ret_what);

/* After the import: reconcile, repair, vault copy, cleanup (stage-post.c). */
struct post;
void post_resume(struct daemon *d, const struct job_row *j);
void post_stop(struct daemon *d, int64_t job_id);
void post_stop_all(struct daemon *d);
void post_report_missing(struct daemon *d, const struct job_row *j);
struct post *post_lookup(struct daemon *d, int64_t job_id, uint64_t gen);

/* The Azure stages (stage-azure.c). */
int azure_stage_start(struct daemon *d, char **ret_err);
void azure_stage_stop(struct daemon *d);
void azure_resume(struct daemon *d, const struct job_row *j);
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

#endif
