/*
 * The job store. Only db.c and db-migrate.c include sqlite3.h.
 *
 * One write connection, owned by the loop thread. Every state change is one
 * BEGIN IMMEDIATE ... COMMIT: an UPDATE ... WHERE id=? AND state=? plus an
 * event row, so a stale transition changes nothing and reports -ESTALE.
 *
 * Return values: 0 or a positive count on success, negative errno on failure:
 * -ENOENT no such job, -EEXIST name (or tracking number) taken, -ESTALE the job
 * was no longer in the expected state, -EINVAL the transition table (job_next())
 * forbids the move or an argument is invalid, -EIO a database error (logged by
 * the caller with db_errmsg()), -EBUSY the database stayed locked past the busy
 * timeout, -ENOSPC the disk is full, -EPROTO the database schema is newer than
 * this binary.
 */
#ifndef SEEDD_DB_H
#define SEEDD_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "names.h"

struct db;

/* A job row. Strings are owned by the struct; free with job_row_free(). */
struct job_row {
	int64_t id;
	char *name;
	enum job_state state;
	enum job_state failed_state; /* the step a failed job stopped in, else _JOB_STATE_INVALID */
	char *phase;
	char *staging_path;
	char *container;
	int64_t files, bytes;
	int64_t copied_files, copied_bytes, verified_files;
	char *azure_job_name, *azure_state, *carrier, *tracking_number;
	int64_t ship_deadline; /* UNIX seconds, 0 if none */
	char *error;           /* NULL if none */
	int attempts;
	int64_t created, updated; /* UNIX seconds */
};

struct event_row {
	int64_t time;
	char *kind;
	enum job_state state;
	char *text;
};

struct drive_row {
	int64_t id;
	int64_t job_id;
	char *serial;
	char *path;
	int64_t capacity, used_bytes, files;
	char *state;
	char *manifest_hash; /* NULL until the manifest is written */
};

/* Schema version this binary writes (PRAGMA user_version). */
#define DB_SCHEMA_VERSION 1

/* Event kinds (events.kind). */
#define DB_EVENT_CREATED "created"
#define DB_EVENT_TRANSITION "transition"
#define DB_EVENT_FAILED "failed"
#define DB_EVENT_RETRY "retry"
#define DB_EVENT_CANCELLED "cancelled"
#define DB_EVENT_PHASE "phase"
#define DB_EVENT_NOTE "note"

/*
 * Open (creating if needed, mode 0600) and migrate the database at path.
 * On failure *ret_err gets an allocated message naming the problem.
 */
int db_open(const char *path, struct db **ret, char **ret_err);
struct db *db_close(struct db *db);
const char *db_errmsg(struct db *db);

/* Schema version found in the file at open (before migrating). */
int db_schema_version_found(struct db *db);

/*
 * Check that the connection really runs with journal_mode=wal, synchronous=FULL,
 * foreign_keys=ON and busy_timeout=5000 (db_open() does, and fails otherwise).
 * -EIO and an allocated message in *ret_err naming the first one that is off.
 */
int db_pragma_check(struct db *db, char **ret_err);

/* Jobs. */
int db_job_create(struct db *db, const char *name, const char *staging_path,
		  const char *container, int64_t now, int64_t *ret_id);
int db_job_get(struct db *db, const char *name, struct job_row **ret);
int db_job_get_by_id(struct db *db, int64_t id, struct job_row **ret);
/* All jobs, oldest first. *ret is an array of n pointers; free with job_rows_free(). */
int db_job_list(struct db *db, struct job_row ***ret, size_t *ret_n);
/* counts[s] = number of jobs in state s. */
int db_job_count_by_state(struct db *db, int64_t counts[_JOB_STATE_MAX]);

/*
 * Move job id from state `from` to `to` with phase and an event row (kind
 * "transition", text). -ESTALE if the job is not in `from`.
 */
int db_job_advance(struct db *db, int64_t id, enum job_state from, enum job_state to,
		   const char *phase, const char *text, int64_t now);
/* from -> failed, remembering `from` as the failed step and error as the reason. */
int db_job_fail(struct db *db, int64_t id, enum job_state from, const char *error, int64_t now);
/* failed -> the remembered step, clearing the error, counting attempts. */
int db_job_retry(struct db *db, int64_t id, int64_t now, enum job_state *ret_state);
/* from -> cancelled. */
int db_job_cancel(struct db *db, int64_t id, enum job_state from, const char *text, int64_t now);
/* Change only the phase (and log an event of kind "phase") while in active `state`. */
int db_job_set_phase(struct db *db, int64_t id, enum job_state state, const char *phase,
		     int64_t now);
/*
 * Record carrier and tracking number (and a "note" event), in any state.
 * -EEXIST if another job already has this tracking number.
 */
int db_job_set_tracking(struct db *db, int64_t id, const char *carrier, const char *tracking,
			int64_t now);
/* Append an event row without changing the job. */
int db_event_add(struct db *db, int64_t job_id, const char *kind, const char *text, int64_t now);
/*
 * The job's events, oldest first: the newest `limit` of them (0: all). Free
 * with event_rows_free(). No such job gives 0 rows, not -ENOENT.
 */
int db_event_list(struct db *db, int64_t job_id, size_t limit, struct event_row **ret,
		  size_t *ret_n);

/* Drives. */
int db_drive_list(struct db *db, int64_t job_id, struct drive_row **ret, size_t *ret_n);

struct job_row *job_row_free(struct job_row *j);
void job_rows_free(struct job_row **rows, size_t n);
void event_rows_free(struct event_row *rows, size_t n);
void drive_rows_free(struct drive_row *rows, size_t n);

#endif
