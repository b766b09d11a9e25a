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
struct db;
struct worker_msg;
struct worker_thread;

#define REPORT_FILES_INLINE 2000 /* files in a GetJobReport reply; the file has them all */

/* What a report is built from; any thread that owns db. */
struct report_in {
	struct db *db;
	json_t *job; /* the Job object, built on the loop (job_json()) */
	const char *state_dir;
	int64_t job_id;
	atomic_bool *cancel; /* NULL, or stops the walk with -ECANCELED */
	struct worker_thread *w; /* NULL, or beats once a page (the watchdog reads it) */
};

/* Write <state dir>/reports/<job>.json (temporary file, fsync, rename); *ret_path on success. */
int report_write(const struct report_in *in, char **ret_path, char **ret_err);

/* The report as one JSON object for the socket, with at most max_files files. */
json_t *report_build(const struct report_in *in, size_t max_files);

/*
 * Loop thread. The report of a job as one reply, built on a reporter thread:
 * done runs on a later loop turn with the report (borrowed; r 0), or NULL,
 * a negative errno and a message for the caller (-ECANCELED: seedd stops;
 * -EMSGSIZE: too large for one reply). Returns -EAGAIN when no thread
 * could be started (done is not called).
 */
typedef void (*report_done_fn)(json_t *report, int r, const char *message, void *userdata);
int report_request(struct daemon *d, int64_t job_id, report_done_fn done, void *userdata);
/* Write the job's report file on a reporter thread; a journal note once written. */
void report_file_start(struct daemon *d, int64_t job_id);
void report_handle_msg(struct daemon *d, struct worker_msg *m);
/* The watchdog: have the busy reporters beat within max_age seconds? */
bool report_healthy(struct daemon *d, int64_t max_age, const char **ret_what);
/* Shutdown: stop every reporter; their results are drained (a file not written is written at the next start). */
void report_stop_all(struct daemon *d);

#endif
