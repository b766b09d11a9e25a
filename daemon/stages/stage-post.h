/*
 * The stages after Azure's import (imported, vault_copy, cleanup): state
 * shared by stage-post.c (the loop side) and stage-post-io.c (the worker
 * threads that read staging files for repairs and delete them at cleanup).
 */
#ifndef SEEDD_STAGE_POST_H
#define SEEDD_STAGE_POST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "db.h"
#include "drivelog.h"
#include "names.h"
#include "worker.h"

struct daemon;
struct blob_call;
struct event;

enum post_step {
	POST_START,
	POST_LOGS,    /* imported: fetching Azure's copy logs */
	POST_LIST,    /* imported: listing the import container */
	POST_BLOCKS,  /* imported: Get Block List of blobs without Content-MD5 */
	POST_REPAIR,  /* imported: re-uploading the repair list */
	POST_RENAMED, /* imported: deleting Azure's renamed copies of ours */
	POST_VAULT,   /* vault_copy: copying and verifying */
	POST_BLOBS,   /* cleanup: deleting import blobs */
	POST_STAGING, /* cleanup: deleting staging files (worker thread) */
	POST_REPORT,  /* cleanup: writing the audit report */
};

/* One blob request in flight. */
struct post_op {
	LIST_ENTRY(post_op) link;
	struct post *p;
	struct blob_call *call;
	int64_t file_id;
	char *name;
	int64_t size;
	unsigned char md5[16];
	const char *method; /* block checks: BY_BLOCKS or BY_BLOCKS_NO_LOG (static) */
	unsigned polls;
	struct event *timer; /* the next poll of a pending copy */
};

/* The repair of one file: blocks read by a thread, uploaded by the loop. */
struct repair {
	int64_t file_id;
	char *rel_path, *blob_name; /* blob name within the container */
	char *why;                  /* the reconcile's detail: what was wrong */
	int64_t size, mtime_ns;
	unsigned char md5[16];
	char **block_ids;
	size_t n_blocks, n_put, n_read;
	bool read_done;
	int read_status;
	char read_error[256];
	/* Reader thread. */
	struct worker_thread w;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned inflight;
	struct post *p;
	uint64_t gen;
};

struct post {
	LIST_ENTRY(post) link;
	struct daemon *d;
	int64_t job_id;
	uint64_t gen;
	/*
	 * Stopped (cancel, failure, reload) while a thread still ran: the post
	 * stays listed, inert, until each thread's last message arrives, then
	 * is freed (post_reap); restart: resume the job then (asked meanwhile).
	 */
	bool stopping, restart;
	char *name, *container, *staging_path;
	enum job_state state;
	enum post_step step;
	LIST_HEAD(, post_op) ops;
	unsigned inflight;
	struct event *timer;
	/* reconcile */
	struct drivelog logs[2 * DRIVES_PER_JOB_MAX];
	size_t n_logs;
	char *marker;
	/* Drives whose log says a drive-level failure (README §4.3): nothing imported. */
	struct post_failed_drive {
		int64_t drive_id;
		char *serial, *status;
	} failed[DRIVES_PER_JOB_MAX];
	size_t n_failed;
	char **renamed; /* Azure's renamed copies of our blobs, to delete */
	size_t n_renamed;
	/* repair */
	struct repair *repair;
	int64_t repaired;
	/* vault and cleanup paging */
	int64_t cursor;
	bool exhausted;
	int64_t kept_noted; /* staging files kept, named in the events so far */
	/* cleanup thread */
	struct worker_thread cleaner;
	bool cleaner_running;
};

struct post_op *post_op_new(struct post *p, int64_t file_id);
void post_op_free(struct post_op *op);
void post_free(struct post *p);
void post_reap(struct post *p);

/* stage-post-io.c: worker threads. */
int post_repair_start(struct post *p, struct repair *rp);
/* Raise the reader's cancel flag; it still sends its last message (MSG_POST_READ_DONE). */
void post_repair_cancel(struct repair *rp);
void post_repair_stop(struct repair *rp);
int post_cleaner_start(struct post *p);
/* Raise the cleaner's cancel flag; it still sends its last message. */
void post_cleaner_cancel(struct post *p);
void post_io_stop(struct post *p);
void post_io_handle_msg(struct daemon *d, struct worker_msg *m);

/* Loop side entry points used by stage-post-io.c. */
void post_block_read(struct post *p, int64_t file_id, size_t idx, void *data, size_t len,
		     const unsigned char md5[16]);
void post_read_done(struct post *p, int64_t file_id, int status, const char *error);
void post_cleaned(struct post *p, const struct file_mark *marks, size_t n, bool last,
		  const char *error);

#endif
