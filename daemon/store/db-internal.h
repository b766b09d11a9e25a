/*
 * Private to the store's db*.c files (and the white-box test-db.c): the
 * connection struct, the statement table and the transaction helper. Nothing
 * else may include this header, because it pulls in sqlite3.h.
 */
#ifndef SEEDD_DB_INTERNAL_H
#define SEEDD_DB_INTERNAL_H

#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>

#include "db.h"

/* Every statement seedd runs after open; SQL in db_statements[] (db.c). */
enum db_stmt {
	STMT_JOB_INSERT,
	STMT_JOB_BY_NAME,
	STMT_JOB_BY_ID,
	STMT_JOB_LIST,
	STMT_JOB_STATE,
	STMT_JOB_COUNT,
	STMT_JOB_ADVANCE,
	STMT_JOB_FAIL,
	STMT_JOB_RETRY,
	STMT_JOB_CANCEL,
	STMT_JOB_SET_PHASE,
	STMT_JOB_SET_TRACKING,
	STMT_EVENT_INSERT,
	STMT_EVENT_LIST,
	STMT_DRIVE_LIST,
	STMT_JOB_SET_TOTALS,
	STMT_JOB_ADD_COPIED,
	STMT_JOB_ADD_BYTES,
	STMT_FILE_UPSERT,
	STMT_FILE_JOB_PLACED,
	STMT_FILE_BY_PATH,
	STMT_FILE_INFO,
	STMT_FILE_COUNT,
	STMT_FILE_COUNT_STATE,
	STMT_FILE_NUMBER_STATE,
	STMT_FILE_PAGE,
	STMT_FILE_PAGE_STATE,
	STMT_FILE_PAGE_DRIVE,
	STMT_FILE_PAGE_STATE_DRIVE,
	STMT_FILE_PLANNABLE,
	STMT_FILE_WAITING,
	STMT_DRIVE_SIZES_HELD,
	STMT_DRIVE_SIZES_VERIFIED,
	STMT_JOB_STATE_PHASE,
	STMT_FILE_CLEAR,
	STMT_JOB_CLEAR_COUNTS,
	STMT_DRIVE_CLEAR_COUNTS,
	STMT_DRIVE_COUNT,
	STMT_DRIVE_COUNT_VERIFIED,
	STMT_FILE_PLACE,
	STMT_FILE_UNPLAN,
	STMT_FILE_RESET,
	STMT_FILE_CHECKPOINT,
	STMT_FILE_VERIFIED,
	STMT_BLOCK_PUT,
	STMT_BLOCK_TRIM,
	STMT_BLOCK_TRIM_CHECKPOINT,
	STMT_BLOCK_LIST,
	STMT_DRIVE_INSERT,
	STMT_DRIVE_GET,
	STMT_DRIVE_JOB,
	STMT_DRIVE_SET_STATE,
	STMT_DRIVE_SET_MANIFEST,
	STMT_DRIVE_SET_DIRECT_IO,
	STMT_DRIVE_SET_BITLOCKER,
	STMT_DRIVE_ADD_USED,
	STMT_DRIVE_VERIFIED,
	STMT_JOB_SET_AZURE_NAME,
	STMT_JOB_AZURE_CREATED,
	STMT_JOB_AZURE_CONFIRMED,
	STMT_JOB_SET_AZURE_STATE,
	STMT_JOB_SET_AZURE_ERROR,
	STMT_JOB_SET_WARNED,
	STMT_DRIVE_SET_AZURE,
	STMT_DRIVE_BY_SERIAL,
	STMT_FILE_ROW_BY_PATH,
	STMT_FILE_PAGE_NOT_OK,
	STMT_FILE_MARK_IMPORT,
	STMT_FILE_MARK_VAULT,
	STMT_FILE_MARK_CLEANUP,
	STMT_FILE_COUNT_IMPORT,
	STMT_FILE_COUNT_VAULT,
	STMT_FILE_COUNT_CLEANUP,
	STMT_FILE_COUNT_METHOD,
	STMT_DRIVE_SET_LOG_STATUS,
	STMT_DRIVE_LOG_STATUS,
	STMT_DRIVE_NETWORK_REPAIR,
	STMT_DRIVES_ALLOW_NETWORK_REPAIR,
	STMT_FILE_PAGE_LINKED,
	STMT_FILE_COUNT_LINKED,
	STMT_JOB_STATE_SINCE,
	STMT_JOB_SET_SKIP_REFUSED,
	STMT_FILE_COUNT_LEFT_OUT,
	STMT_FILE_PAGE_LEFT_OUT,
	STMT_SECRET_DELETE, /* the only statements that touch secrets */
	STMT_SECRET_INSERT,
	STMT_SECRET_GET,
	STMT_SECRET_DELETE_JOB,
	/* -- drives: RemoveDrive, PurgeJob and the purger */
	STMT_DRIVE_SET_UNUSED,
	STMT_DRIVE_HELD,
	STMT_DRIVE_FREE_BLOCKS,
	STMT_DRIVE_FREE_FILES,
	STMT_DRIVE_DELETE,
	STMT_JOB_PURGE,
	STMT_JOB_PURGED_NEXT,
	STMT_PURGE_FILE_PAGE,
	STMT_PURGE_BLOCKS,
	STMT_PURGE_FILES,
	STMT_PURGE_EVENTS,
	STMT_PURGE_JOB,
	_STMT_MAX,
};

extern const char *const db_statements[_STMT_MAX];

struct db {
	sqlite3 *sqlite;
	sqlite3_stmt *stmts[_STMT_MAX];
	int version_found; /* user_version at open, before migrating */
	bool readonly;     /* opened by db_open_readonly(): db_tx_begin() refuses */
	bool in_tx;        /* between db_tx_begin() and commit/rollback */
	bool committing;   /* set only inside db_tx_commit(); checked by the commit hook */
	char errmsg[256];  /* the last database error, for db_errmsg() */
	int busy_ms;       /* how long a statement waits for another connection's lock */
	int64_t busy_since; /* CLOCK_MONOTONIC µs of the first try of the current wait */
	void (*fault_hook)(void *arg, int err, const char *msg); /* db_set_fault_hook() */
	void *fault_arg;
};

/*
 * The only way to write: BEGIN IMMEDIATE, then db_tx_commit() or
 * db_tx_rollback(). Transactions do not nest. A commit issued any other way
 * aborts the process through the commit hook. Return 0 or negative errno.
 */
int db_tx_begin(struct db *db);
int db_tx_commit(struct db *db);
void db_tx_rollback(struct db *db);

/* Map a SQLite result code to a negative errno, remembering the message. */
int db_error(struct db *db, int rc);

/* Read an integer PRAGMA (no arguments) into *ret. */
int db_pragma_int(struct db *db, const char *name, int64_t *ret);

/* Apply every migration step above the file's user_version (db-migrate.c). */
int db_migrate(struct db *db, char **ret_err);

/*
 * Helpers shared by the store's db*.c files; not part of db.h. Each runs on
 * the caller's connection, inside the caller's transaction where it writes.
 */

/* db.c: statements, binding, columns, transactions */
#define DB_BUSY_TIMEOUT_MS 5000
void stmt_resetp(sqlite3_stmt **st);
#define _cleanup_reset_ _cleanup_(stmt_resetp)
int db_bind_va(struct db *db, sqlite3_stmt *st, int first, const char *types, va_list ap);
int db_bind(struct db *db, sqlite3_stmt *st, const char *types, ...);
int db_bind_at(struct db *db, sqlite3_stmt *st, int first, const char *types, ...);
int step_done(struct db *db, sqlite3_stmt *st);
int db_run(struct db *db, enum db_stmt s, int64_t id, const char *types, ...);
char *col_str(sqlite3_stmt *st, int i);
enum job_state col_state(sqlite3_stmt *st, int i);
int tx_end(struct db *db, int r);
int set_busy(struct db *db, int ms);

/* db-jobs.c: job rows and events */
void drive_row_read(sqlite3_stmt *st, struct drive_row *d);
int job_update(struct db *db, enum db_stmt s, int64_t id, const char *types, ...);
int job_in(struct db *db, int64_t job_id, enum job_state state, enum job_phase phase);
int event_insert(struct db *db, int64_t job_id, const char *kind, const char *text, int64_t now);
void wal_scrub(struct db *db);

/* db-files.c: file rows, blocks, counters */
enum file_state {
	FILE_INDEXED,
	FILE_INVALID,
	FILE_SKIPPED,
	FILE_PLANNED,
	FILE_VERIFIED,
	_FILE_STATE_MAX,
	_FILE_STATE_INVALID = -1,
};

/* What the write functions need to know of a file (INFO_COLUMNS). */
struct file_info {
	int64_t id, job_id, size, mtime_ns, drive_id, checkpoint;
	enum file_state state;
	bool reread;
};

int file_info_get(struct db *db, int64_t file_id, struct file_info *ret);
void file_row_read(sqlite3_stmt *st, struct file_row *f);
void file_row_done(struct file_row *f);
int job_add_copied(struct db *db, int64_t job_id, int64_t files, int64_t bytes, int64_t verified,
                   int64_t now);
int blocks_trim(struct db *db, int64_t file_id, int64_t idx);
int blocks_put(struct db *db, int64_t file_id, size_t first, const struct block_row *b, size_t n);
int file_leave_drive(struct db *db, const struct file_info *f, int64_t now);

/* db-copy.c: placing, copying, verifying */
int blocks_read(struct db *db, int64_t file_id, struct block_row **buf, size_t *cap, size_t *ret_n);

#endif
