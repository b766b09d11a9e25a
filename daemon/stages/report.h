/*
 * The audit report of a job: drives and serials, Azure job and tracking,
 * every file with its MD5, drive and outcome (import, vault, cleanup), and
 * every transition with its time. Never a secret.
 */
#ifndef SEEDD_REPORT_H
#define SEEDD_REPORT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct daemon;
struct call;
struct db;
struct worker_msg;

#define REPORT_FILES_INLINE 2000 /* files in a GetJobReport reply; the file has them all */

/* What a report is built from; any thread that owns db. */
struct report_in {
	struct db *db;
	json_t *job; /* the Job object, built on the loop (job_json()) */
	const char *state_dir;
	int64_t job_id;
	atomic_bool *cancel; /* NULL, or stops the walk with -ECANCELED */
};

/* Write <state dir>/reports/<job>.json (temporary file, fsync, rename); *ret_path on success. */
int report_write(const struct report_in *in, char **ret_path, char **ret_err);

/* The report as one JSON object for the socket, with at most max_files files. */
json_t *report_build(const struct report_in *in, size_t max_files);

/*
 * Loop thread. GetJobReport: build the reply on a reporter thread and answer
 * when done (call->held; the uid's heavy turn ends with the reply).
 */
void report_call_start(struct call *call, int64_t job_id);
/* Write the job's report file on a reporter thread; a journal note once written. */
void report_file_start(struct daemon *d, int64_t job_id);
void report_handle_msg(struct daemon *d, struct worker_msg *m);
/* Shutdown: stop every reporter; their results are drained (a file not written is written at the next start). */
void report_stop_all(struct daemon *d);

#endif
