/*
 * The job store: the one SQLite write connection, owned and used only by the
 * loop thread. Opens the file (mode 0600, WAL, synchronous=FULL,
 * foreign_keys=ON, a busy handler), migrates it (db-migrate.c), prepares every
 * statement of db_statements[] once, and owns every commit: a commit hook
 * aborts the process on any commit not issued by db_tx_commit(). Each job
 * transition is one BEGIN IMMEDIATE transaction of a guarded UPDATE plus an
 * event row, checked against job_next() first.
 *
 * Drive prep adds the files, blocks, drives and secrets of a job: scanner
 * batches, placement, checkpoints and verified copies, each one transaction
 * that also keeps the job's and the drive's counters in step. A worker thread
 * that must read (the manifest writer) opens its own read-only connection
 * with db_open_readonly(); every write refuses on it. As no connection is
 * ever used by two threads, each is opened SQLITE_OPEN_NOMUTEX (no per-call
 * locking). The Azure stages add
 * the Azure job's name, API, status and warnings, and each drive's import
 * progress as Azure reports it.
 *
 * Rows handed out are copies made with the x* allocators, which abort on
 * exhaustion; that is safe because all state lives here and a restart resumes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db-internal.h"
#include "job.h"
#include "util.h"

#define DB_BUSY_TIMEOUT_MS 5000

/* ---- Errors, statements, binding ------------------------------------------ */

int
db_error(struct db *db, int rc)
{
	(void)snprintf(db->errmsg, sizeof(db->errmsg), "%s", sqlite3_errmsg(db->sqlite));
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return -EEXIST;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return -ENOENT;
	}
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_NOMEM:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

const char *
db_errmsg(struct db *db)
{
	return db->errmsg[0] != '\0' ? db->errmsg : "no error";
}

/* Reset a statement and drop its bindings when it goes out of scope. */
static void
stmt_resetp(sqlite3_stmt **st)
{
	if (*st == NULL)
		return;
	(void)sqlite3_reset(*st);
	(void)sqlite3_clear_bindings(*st);
}
#define _cleanup_reset_ _cleanup_(stmt_resetp)

/*
 * Bind parameters first, first+1, ... by a type string: 'i' int64_t,
 * 't' const char * (NULL binds NULL), 's' enum job_state stored by name
 * (_JOB_STATE_INVALID binds NULL), 'b' a blob as const void *, size_t (NULL
 * binds NULL).
 */
static int
bind_va(struct db *db, sqlite3_stmt *st, int first, const char *types, va_list ap)
{
	const void *p;
	const char *s;
	size_t len;
	int rc = SQLITE_OK;

	for (int i = first; *types != '\0' && rc == SQLITE_OK; types++, i++) {
		switch (*types) {
		case 'i':
			rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
			break;
		case 'b':
			p = va_arg(ap, const void *);
			len = va_arg(ap, size_t);
			if (p == NULL)
				rc = sqlite3_bind_null(st, i);
			else
				rc = sqlite3_bind_blob64(st, i, p, len, SQLITE_TRANSIENT);
			break;
		case 't':
		case 's':
			if (*types == 't')
				s = va_arg(ap, const char *);
			else
				s = job_state_to_string((enum job_state)va_arg(ap, int));
			if (s == NULL)
				rc = sqlite3_bind_null(st, i);
			else
				rc = sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
			break;
		default:
			fatalx("db: bad bind type '%c'", *types);
		}
	}
	return rc == SQLITE_OK ? 0 : db_error(db, rc);
}

static int
bind(struct db *db, sqlite3_stmt *st, const char *types, ...)
{
	va_list ap;
	int r;

	va_start(ap, types);
	r = bind_va(db, st, 1, types, ap);
	va_end(ap);
	return r;
}

/* Like bind(), from parameter `first` on. */
static int
bind_at(struct db *db, sqlite3_stmt *st, int first, const char *types, ...)
{
	va_list ap;
	int r;

	va_start(ap, types);
	r = bind_va(db, st, first, types, ap);
	va_end(ap);
	return r;
}

/* Step a statement that returns no row. */
static int
step_done(struct db *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	return db_error(db, rc);
}

static char *
col_str(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	return s != NULL ? xstrdup((const char *)s) : NULL;
}

static enum job_state
col_state(sqlite3_stmt *st, int i)
{
	return job_state_from_string((const char *)sqlite3_column_text(st, i));
}

/* ---- Transactions ----------------------------------------------------------- */

/* Fossil's guard rail: every commit goes through db_tx_commit(). */
static int
commit_hook_cb(void *userdata)
{
	struct db *db = userdata;

	if (!db->committing)
		fatalx("db: a commit outside db_tx_commit(); refusing to continue");
	return 0;
}

int
db_tx_begin(struct db *db)
{
	int rc;

	if (db->in_tx)
		fatalx("db: nested transaction");
	if (db->readonly) {
		(void)snprintf(db->errmsg, sizeof(db->errmsg), "a write on a read-only connection");
		return -EROFS;
	}
	if ((rc = sqlite3_exec(db->sqlite, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK)
		return db_error(db, rc);
	db->in_tx = true;
	return 0;
}

int
db_tx_commit(struct db *db)
{
	int r, rc;

	if (!db->in_tx)
		fatalx("db: commit outside a transaction");
	db->committing = true;
	rc = sqlite3_exec(db->sqlite, "COMMIT", NULL, NULL, NULL);
	db->committing = false;
	if (rc != SQLITE_OK) {
		r = db_error(db, rc);
		db_tx_rollback(db);
		return r;
	}
	db->in_tx = false;
	return 0;
}

void
db_tx_rollback(struct db *db)
{
	if (!db->in_tx)
		return;
	if (!sqlite3_get_autocommit(db->sqlite))
		(void)sqlite3_exec(db->sqlite, "ROLLBACK", NULL, NULL, NULL);
	db->in_tx = false;
}

/* Commit if r >= 0, else roll back; return r or the commit's error. */
static int
tx_end(struct db *db, int r)
{
	if (r < 0) {
		db_tx_rollback(db);
		return r;
	}
	return db_tx_commit(db);
}

/* ---- Open and close --------------------------------------------------------- */

int
db_pragma_int(struct db *db, const char *name, int64_t *ret)
{
	_cleanup_free_ char *sql = xprintf("PRAGMA %s", name);
	sqlite3_stmt *st;
	int r, rc;

	if ((rc = sqlite3_prepare_v2(db->sqlite, sql, -1, &st, NULL)) != SQLITE_OK)
		return db_error(db, rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*ret = sqlite3_column_int64(st, 0);
		r = 0;
	} else
		r = rc == SQLITE_DONE ? -EIO : db_error(db, rc);
	(void)sqlite3_finalize(st);
	return r;
}

static int
pragma_journal_mode(struct db *db, char mode[static 16])
{
	sqlite3_stmt *st;
	int r, rc;

	if ((rc = sqlite3_prepare_v2(db->sqlite, "PRAGMA journal_mode", -1, &st, NULL)) !=
	    SQLITE_OK)
		return db_error(db, rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL) {
		(void)snprintf(mode, 16, "%s", (const char *)sqlite3_column_text(st, 0));
		r = 0;
	} else
		r = rc == SQLITE_DONE ? -EIO : db_error(db, rc);
	(void)sqlite3_finalize(st);
	return r;
}

int
db_pragma_check(struct db *db, char **ret_err)
{
	static const struct {
		const char *name;
		int64_t want;
	} ints[] = {
	    {"synchronous", 2}, /* FULL */
	    {"foreign_keys", 1},
	};
	char mode[16];
	int64_t v;
	int r;

	if ((r = pragma_journal_mode(db, mode)) < 0)
		goto fail;
	if (strcmp(mode, "wal") != 0) {
		xasprintf(ret_err, "database journal_mode is %s, not wal", mode);
		return -EIO;
	}
	if (db->busy_ms != DB_BUSY_TIMEOUT_MS) {
		xasprintf(ret_err, "database busy timeout is %d ms, not %d", db->busy_ms,
			  DB_BUSY_TIMEOUT_MS);
		return -EIO;
	}
	for (size_t i = 0; i < ELEMENTSOF(ints); i++) {
		if ((r = db_pragma_int(db, ints[i].name, &v)) < 0)
			goto fail;
		if (v != ints[i].want) {
			xasprintf(ret_err, "database %s is %lld, not %lld", ints[i].name,
			          (long long)v, (long long)ints[i].want);
			return -EIO;
		}
	}
	return 0;
fail:
	xasprintf(ret_err, "reading database pragmas: %s", db_errmsg(db));
	return r;
}

static int64_t
monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Waiting for a lock another connection holds (a worker's commit, the
 * checkpointer). SQLite's own busy_timeout handler sleeps 1, 2, 5, 10, 15,
 * 20, 25, 25, 25, 50, 50 and then 100 ms between tries, so a lock held for
 * 3 ms cost the loop 8 ms and one held for 30 ms cost 53; this one tries
 * again every 200 µs, up to busy_ms in all.
 */
static int
busy_cb(void *arg, int tries)
{
	static const struct timespec step = {0, 200 * 1000};
	struct db *db = arg;
	int64_t now = monotonic_us();

	if (tries == 0)
		db->busy_since = now;
	if (now - db->busy_since >= (int64_t)db->busy_ms * 1000)
		return 0;
	(void)nanosleep(&step, NULL);
	return 1;
}

/* Wait up to ms for another connection's lock (0: not at all, SQLITE_BUSY at once). */
static int
set_busy(struct db *db, int ms)
{
	db->busy_ms = ms;
	return sqlite3_busy_handler(db->sqlite, ms > 0 ? busy_cb : NULL, db);
}

/* Create the file 0600 if missing, and make it 0600 in any case. */
static int
create_file(const char *path)
{
	_cleanup_close_ int fd = -1;

	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return -errno;
	if (fchmod(fd, 0600) < 0)
		return -errno;
	return 0;
}

/*
 * Per-connection settings. They run before the commit hook is installed,
 * because switching to WAL counts as a commit. A 64 MiB page cache keeps the
 * files indexes of a big job in memory while scanning and placing (three
 * times faster at 200 000 files than the 2 MiB default).
 */
static int
configure(struct db *db)
{
	/*
	 * secure_delete: deleted rows and freed pages are overwritten with
	 * zeros, so a BitLocker recovery password deleted at done or cancel
	 * (secrets_forget) leaves no copy in the file. SQLite has it per
	 * connection, not per table; for the whole file it costs little, see
	 * the README (security).
	 */
	static const char pragmas[] = "PRAGMA foreign_keys = ON;"
	                              "PRAGMA secure_delete = ON;"
	                              "PRAGMA journal_mode = WAL;"
	                              "PRAGMA synchronous = FULL;"
	                              "PRAGMA cache_size = -65536;";
	int rc;

	(void)sqlite3_extended_result_codes(db->sqlite, 1);
	if ((rc = set_busy(db, DB_BUSY_TIMEOUT_MS)) != SQLITE_OK)
		return db_error(db, rc);
	if ((rc = sqlite3_exec(db->sqlite, pragmas, NULL, NULL, NULL)) != SQLITE_OK)
		return db_error(db, rc);
	(void)sqlite3_commit_hook(db->sqlite, commit_hook_cb, db);
	return 0;
}

static int
prepare_all(struct db *db, char **ret_err)
{
	int rc;

	for (int i = 0; i < _STMT_MAX; i++) {
		if (db_statements[i] == NULL)
			fatalx("db: statement %d has no SQL", i);
		rc = sqlite3_prepare_v3(db->sqlite, db_statements[i], -1, SQLITE_PREPARE_PERSISTENT,
		                        &db->stmts[i], NULL);
		if (rc != SQLITE_OK) {
			int r = db_error(db, rc);
			xasprintf(ret_err, "preparing database statement %d: %s", i, db_errmsg(db));
			return r;
		}
	}
	return 0;
}

static int
check_version(struct db *db, char **ret_err)
{
	int64_t v;
	int r;

	if ((r = db_pragma_int(db, "user_version", &v)) < 0) {
		xasprintf(ret_err, "reading the database schema version: %s", db_errmsg(db));
		return r;
	}
	if (v < 0 || v > DB_SCHEMA_VERSION) {
		xasprintf(ret_err,
		          "database schema version %lld is newer than this seedd supports (%d); "
		          "upgrade seedd",
		          (long long)v, DB_SCHEMA_VERSION);
		return -EPROTO;
	}
	db->version_found = (int)v;
	return 0;
}

static void
db_closep(struct db **db)
{
	*db = db_close(*db);
}

int
db_set_autocheckpoint(struct db *db, bool on)
{
	int rc = sqlite3_wal_autocheckpoint(db->sqlite, on ? 1000 : 0);

	return rc == SQLITE_OK ? 0 : db_error(db, rc);
}

int
db_checkpoint(struct db *db, int64_t *ret_log, int64_t *ret_done)
{
	int log = 0, done = 0;
	int rc = sqlite3_wal_checkpoint_v2(db->sqlite, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);

	if (ret_log != NULL)
		*ret_log = log;
	if (ret_done != NULL)
		*ret_done = done;
	return rc == SQLITE_OK || rc == SQLITE_BUSY ? 0 : db_error(db, rc);
}

int
db_open(const char *path, struct db **ret, char **ret_err)
{
	_cleanup_(db_closep) struct db *db = NULL;
	int r, rc;

	if ((r = create_file(path)) < 0) {
		xasprintf(ret_err, "creating %s: %s", path, strerror(-r));
		return r;
	}
	db = xcalloc(1, sizeof(*db));
	rc = sqlite3_open_v2(path, &db->sqlite, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		r = db->sqlite != NULL ? db_error(db, rc) : -ENOMEM;
	else
		r = configure(db);
	if (r < 0) {
		xasprintf(ret_err, "opening database %s: %s", path, db_errmsg(db));
		return r;
	}
	if ((r = check_version(db, ret_err)) < 0 || (r = db_migrate(db, ret_err)) < 0 ||
	    (r = prepare_all(db, ret_err)) < 0 || (r = db_pragma_check(db, ret_err)) < 0)
		return r;
	*ret = TAKE_PTR(db);
	return 0;
}

/* The read-only connection's settings: the journal mode is the writer's. */
static int
configure_readonly(struct db *db)
{
	int rc;

	(void)sqlite3_extended_result_codes(db->sqlite, 1);
	if ((rc = set_busy(db, DB_BUSY_TIMEOUT_MS)) != SQLITE_OK)
		return db_error(db, rc);
	rc = sqlite3_exec(db->sqlite, "PRAGMA query_only = ON", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return db_error(db, rc);
	(void)sqlite3_commit_hook(db->sqlite, commit_hook_cb, db);
	return 0;
}

int
db_open_readonly(const char *path, struct db **ret, char **ret_err)
{
	_cleanup_(db_closep) struct db *db = NULL;
	int r, rc;

	if (access(path, R_OK) < 0) {
		r = -errno;
		xasprintf(ret_err, "opening database %s: %s", path, strerror(-r));
		return r;
	}
	db = xcalloc(1, sizeof(*db));
	db->readonly = true;
	rc = sqlite3_open_v2(path, &db->sqlite, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		r = db->sqlite != NULL ? db_error(db, rc) : -ENOMEM;
	else
		r = configure_readonly(db);
	if (r < 0) {
		xasprintf(ret_err, "opening database %s read-only: %s", path, db_errmsg(db));
		return r;
	}
	if ((r = check_version(db, ret_err)) < 0)
		return r;
	if (db->version_found != DB_SCHEMA_VERSION) {
		xasprintf(ret_err,
		          "database schema version %d is not %d; seedd migrates it at start",
		          db->version_found, DB_SCHEMA_VERSION);
		return -EPROTO;
	}
	if ((r = prepare_all(db, ret_err)) < 0)
		return r;
	*ret = TAKE_PTR(db);
	return 0;
}

struct db *
db_close(struct db *db)
{
	if (db == NULL)
		return NULL;
	db_tx_rollback(db);
	for (int i = 0; i < _STMT_MAX; i++)
		(void)sqlite3_finalize(db->stmts[i]);
	(void)sqlite3_close_v2(db->sqlite);
	free(db);
	return NULL;
}

int
db_schema_version_found(struct db *db)
{
	return db->version_found;
}

/* ---- Reading rows ------------------------------------------------------------ */

static struct job_row *
job_row_read(sqlite3_stmt *st)
{
	struct job_row *j = xcalloc(1, sizeof(*j));

	j->id = sqlite3_column_int64(st, 0);
	j->name = col_str(st, 1);
	j->state = col_state(st, 2);
	j->failed_state = col_state(st, 3);
	j->phase = col_str(st, 4);
	j->staging_path = col_str(st, 5);
	j->container = col_str(st, 6);
	j->files = sqlite3_column_int64(st, 7);
	j->bytes = sqlite3_column_int64(st, 8);
	j->copied_files = sqlite3_column_int64(st, 9);
	j->copied_bytes = sqlite3_column_int64(st, 10);
	j->verified_files = sqlite3_column_int64(st, 11);
	j->azure_job_name = col_str(st, 12);
	j->azure_state = col_str(st, 13);
	j->carrier = col_str(st, 14);
	j->tracking_number = col_str(st, 15);
	j->ship_deadline = sqlite3_column_int64(st, 16);
	j->error = col_str(st, 17);
	j->attempts = sqlite3_column_int(st, 18);
	j->created = sqlite3_column_int64(st, 19);
	j->updated = sqlite3_column_int64(st, 20);
	j->azure_api = col_str(st, 21);
	j->azure_created = sqlite3_column_int64(st, 22);
	j->shipped_at = sqlite3_column_int64(st, 23);
	j->deadline_warned = sqlite3_column_int(st, 24);
	j->receive_warned = sqlite3_column_int(st, 25) != 0;
	j->excludes = col_str(st, 26);
	j->skip_refused = sqlite3_column_int(st, 27) != 0;
	return j;
}

/* Step a bound single-job SELECT. */
static int
job_get_one(struct db *db, sqlite3_stmt *st, struct job_row **ret)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return db_error(db, rc);
	*ret = job_row_read(st);
	return 0;
}

int
db_job_get(struct db *db, const char *name, struct job_row **ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_JOB_BY_NAME];
	int r;

	if ((r = bind(db, st, "t", name)) < 0)
		return r;
	return job_get_one(db, st, ret);
}

int
db_job_get_by_id(struct db *db, int64_t id, struct job_row **ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_JOB_BY_ID];
	int r;

	if ((r = bind(db, st, "i", id)) < 0)
		return r;
	return job_get_one(db, st, ret);
}

int
db_job_list(struct db *db, struct job_row ***ret, size_t *ret_n)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_JOB_LIST];
	struct job_row **rows = NULL;
	size_t n = 0;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rows = xreallocarray(rows, n + 1, sizeof(*rows));
		rows[n++] = job_row_read(st);
	}
	if (rc != SQLITE_DONE) {
		job_rows_free(rows, n);
		return db_error(db, rc);
	}
	*ret = rows;
	*ret_n = n;
	return 0;
}

int
db_job_count_by_state(struct db *db, int64_t counts[_JOB_STATE_MAX])
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_JOB_COUNT];
	int64_t c[_JOB_STATE_MAX] = {0};
	enum job_state s;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if ((s = col_state(st, 0)) != _JOB_STATE_INVALID)
			c[s] = sqlite3_column_int64(st, 1);
	if (rc != SQLITE_DONE)
		return db_error(db, rc);
	memcpy(counts, c, sizeof(c));
	return 0;
}

int
db_event_list(struct db *db, int64_t job_id, size_t limit, struct event_row **ret, size_t *ret_n)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_EVENT_LIST];
	struct event_row *rows = NULL;
	size_t n = 0;
	int r, rc;

	if ((r = bind(db, st, "ii", job_id, limit == 0 ? (int64_t)-1 : (int64_t)limit)) < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rows = xreallocarray(rows, n + 1, sizeof(*rows));
		rows[n++] = (struct event_row){
		    .time = sqlite3_column_int64(st, 0),
		    .kind = col_str(st, 1),
		    .state = col_state(st, 2),
		    .text = col_str(st, 3),
		};
	}
	if (rc != SQLITE_DONE) {
		event_rows_free(rows, n);
		return db_error(db, rc);
	}
	*ret = rows;
	*ret_n = n;
	return 0;
}

/* A row of DRIVE_COLUMNS. */
static void
drive_row_read(sqlite3_stmt *st, struct drive_row *d)
{
	*d = (struct drive_row){
	    .id = sqlite3_column_int64(st, 0),
	    .job_id = sqlite3_column_int64(st, 1),
	    .serial = col_str(st, 2),
	    .path = col_str(st, 3),
	    .capacity = sqlite3_column_int64(st, 4),
	    .used_bytes = sqlite3_column_int64(st, 5),
	    .files = sqlite3_column_int64(st, 6),
	    .state = col_str(st, 7),
	    .manifest_hash = col_str(st, 8),
	    .uuid = col_str(st, 9),
	    .free_bytes = sqlite3_column_int64(st, 10),
	    .azure_status = col_str(st, 11),
	    .error_log = col_str(st, 12),
	    .verbose_log = col_str(st, 13),
	    .azure_bytes = sqlite3_column_int64(st, 14),
	    .azure_total = sqlite3_column_int64(st, 15),
	    .azure_files_errored = sqlite3_column_int64(st, 16),
	    .direct_io = sqlite3_column_int64(st, 17),
	    .bitlocker_device = col_str(st, 18),
	    .bitlocker_guid = col_str(st, 19),
	    .bitlocker_cipher = col_str(st, 20),
	};
}

int
db_drive_list(struct db *db, int64_t job_id, struct drive_row **ret, size_t *ret_n)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_DRIVE_LIST];
	struct drive_row *rows = NULL;
	size_t n = 0;
	int r, rc;

	if ((r = bind(db, st, "i", job_id)) < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rows = xreallocarray(rows, n + 1, sizeof(*rows));
		drive_row_read(st, &rows[n++]);
	}
	if (rc != SQLITE_DONE) {
		drive_rows_free(rows, n);
		return db_error(db, rc);
	}
	*ret = rows;
	*ret_n = n;
	return 0;
}

struct job_row *
job_row_free(struct job_row *j)
{
	if (j == NULL)
		return NULL;
	free(j->name);
	free(j->phase);
	free(j->staging_path);
	free(j->container);
	free(j->azure_job_name);
	free(j->azure_state);
	free(j->carrier);
	free(j->tracking_number);
	free(j->error);
	free(j->excludes);
	free(j->azure_api);
	free(j);
	return NULL;
}

void
job_rows_free(struct job_row **rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		job_row_free(rows[i]);
	free(rows);
}

void
event_rows_free(struct event_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(rows[i].kind);
		free(rows[i].text);
	}
	free(rows);
}

void
drive_row_done(struct drive_row *d)
{
	if (d == NULL)
		return;
	free(d->serial);
	free(d->path);
	free(d->state);
	free(d->manifest_hash);
	free(d->uuid);
	free(d->azure_status);
	free(d->error_log);
	free(d->verbose_log);
	free(d->bitlocker_device);
	free(d->bitlocker_guid);
	free(d->bitlocker_cipher);
	*d = (struct drive_row){0};
}

void
drive_rows_free(struct drive_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		drive_row_done(&rows[i]);
	free(rows);
}

/* ---- Writing: helpers run inside a transaction -------------------------------- */

/* The job's state and failed step; -ENOENT if there is no such job. */
static int
job_state_get(struct db *db, int64_t id, enum job_state *ret_state, enum job_state *ret_failed)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_JOB_STATE];
	int r, rc;

	if ((r = bind(db, st, "i", id)) < 0)
		return r;
	if ((rc = sqlite3_step(st)) == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return db_error(db, rc);
	*ret_state = col_state(st, 0);
	*ret_failed = col_state(st, 1);
	return 0;
}

static int run(struct db *db, enum db_stmt s, int64_t id, const char *types, ...);

/*
 * Run UPDATE statement s with ?1 = id and the rest bound by types from ?2.
 * It must change one row: if it changes none, -ENOENT if there is no such
 * job, else -ESTALE (the WHERE clause's state did not match).
 */
static int
job_update(struct db *db, enum db_stmt s, int64_t id, const char *types, ...)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[s];
	enum job_state state, failed;
	va_list ap;
	int r;

	if ((r = bind(db, st, "i", id)) < 0)
		return r;
	va_start(ap, types);
	r = bind_va(db, st, 2, types, ap);
	va_end(ap);
	if (r < 0 || (r = step_done(db, st)) < 0)
		return r;
	if (sqlite3_changes(db->sqlite) > 0)
		return 0;
	if ((r = job_state_get(db, id, &state, &failed)) < 0)
		return r;
	return -ESTALE;
}

/* The event row records the job's state as it is after the change. */
static int
event_insert(struct db *db, int64_t job_id, const char *kind, const char *text, int64_t now)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_EVENT_INSERT];
	int r;

	if ((r = bind(db, st, "iitt", job_id, now, kind, text != NULL ? text : "")) < 0)
		return r;
	return step_done(db, st);
}

static int
job_insert(struct db *db, const char *name, const char *staging_path, const char *container,
           const char *excludes, int64_t now, int64_t *ret_id)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_JOB_INSERT];
	int r;

	if ((r = bind(db, st, "tttit", name, staging_path, container, now, excludes)) < 0 ||
	    (r = step_done(db, st)) < 0)
		return r;
	*ret_id = sqlite3_last_insert_rowid(db->sqlite);
	return 0;
}

/* The forward event that moves from -> to, or _JOB_EVENT_INVALID. */
static enum job_event
forward_event(enum job_state from, enum job_state to)
{
	for (int e = JOB_EV_PREPARE; e <= JOB_EV_CLEANED; e++)
		if (job_next(from, (enum job_event)e) == to)
			return (enum job_event)e;
	return _JOB_EVENT_INVALID;
}

/*
 * Inside a transaction: delete the job's secrets (BitLocker recovery
 * passwords, needed only until Azure has the job) and say so in its log,
 * never the value. *ret_deleted: whether any was there.
 */
static int
secrets_forget(struct db *db, int64_t job_id, int64_t now, bool *ret_deleted)
{
	_cleanup_free_ char *text = NULL;
	int changes, r;

	if ((r = run(db, STMT_SECRET_DELETE_JOB, job_id, "")) < 0)
		return r;
	changes = sqlite3_changes(db->sqlite);
	*ret_deleted = changes > 0;
	if (changes == 0)
		return 0;
	text = xprintf("%d BitLocker recovery password%s deleted from the database", changes,
	               changes == 1 ? "" : "s");
	return event_insert(db, job_id, DB_EVENT_SECRETS, text, now);
}

/*
 * After a commit that deleted secrets: copy the WAL into the file and
 * truncate it, so the pages that held them (zeroed by secure_delete) leave
 * no older copy in the WAL. Best effort and never waits: with a reader
 * active it does what it can, and the WAL is reused later anyway.
 */
static void
wal_scrub(struct db *db)
{
	(void)set_busy(db, 0);
	(void)sqlite3_wal_checkpoint_v2(db->sqlite, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	(void)set_busy(db, DB_BUSY_TIMEOUT_MS);
}

/* ---- Writing: one transaction each -------------------------------------------- */

int
db_job_create(struct db *db, const char *name, const char *staging_path, const char *container,
              int64_t now, int64_t *ret_id)
{
	return db_job_create_excluding(db, name, staging_path, container, NULL, now, ret_id);
}

int
db_job_create_excluding(struct db *db, const char *name, const char *staging_path,
                        const char *container, const char *excludes, int64_t now,
                        int64_t *ret_id)
{
	_cleanup_free_ char *text = NULL;
	int64_t id = 0;
	int r;

	if (!job_name_valid(name) || staging_path == NULL)
		return -EINVAL;
	text = xprintf("created from %s", staging_path);
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_insert(db, name, staging_path, container, excludes, now, &id);
	if (r >= 0)
		r = event_insert(db, id, DB_EVENT_CREATED, text, now);
	if ((r = tx_end(db, r)) < 0)
		return r;
	if (ret_id != NULL)
		*ret_id = id;
	return 0;
}

int
db_job_advance(struct db *db, int64_t id, enum job_state from, enum job_state to, const char *phase,
               const char *text, int64_t now)
{
	_cleanup_free_ char *deftext = NULL;
	bool forgot = false;
	int r;

	if (forward_event(from, to) == _JOB_EVENT_INVALID)
		return -EINVAL;
	if (text == NULL)
		text = deftext =
		    xprintf("%s -> %s", job_state_to_string(from), job_state_to_string(to));
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_update(db, STMT_JOB_ADVANCE, id, "ssti", from, to, phase != NULL ? phase : "", now);
	if (r >= 0)
		r = event_insert(db, id, DB_EVENT_TRANSITION, text, now);
	if (r >= 0 && to == JOB_DONE)
		r = secrets_forget(db, id, now, &forgot);
	if ((r = tx_end(db, r)) >= 0 && forgot)
		wal_scrub(db);
	return r;
}

int
db_job_fail(struct db *db, int64_t id, enum job_state from, const char *error, int64_t now)
{
	int r;

	if (job_next(from, JOB_EV_FAIL) != JOB_FAILED)
		return -EINVAL;
	if (error == NULL || *error == '\0')
		error = "unknown error";
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_update(db, STMT_JOB_FAIL, id, "sti", from, error, now);
	if (r >= 0)
		r = event_insert(db, id, DB_EVENT_FAILED, error, now);
	return tx_end(db, r);
}

/* Inside the transaction: the step to resume, or -ESTALE if the job is not failed. */
static int
retry_step(struct db *db, int64_t id, enum job_state *ret)
{
	enum job_state state, step;
	int r;

	if ((r = job_state_get(db, id, &state, &step)) < 0)
		return r;
	if (job_next(state, JOB_EV_RETRY) != JOB_RESUME_STEP)
		return -ESTALE;
	if (!job_state_is_active(step)) {
		(void)snprintf(db->errmsg, sizeof(db->errmsg),
		               "job %lld is failed but has no step to resume", (long long)id);
		return -EIO;
	}
	*ret = step;
	return 0;
}

int
db_job_retry(struct db *db, int64_t id, int64_t now, enum job_state *ret_state)
{
	return db_job_retry_skipping(db, id, now, false, ret_state);
}

int
db_job_retry_skipping(struct db *db, int64_t id, int64_t now, bool skip_refused,
                      enum job_state *ret_state)
{
	_cleanup_free_ char *text = NULL;
	enum job_state step = _JOB_STATE_INVALID;
	int r;

	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = retry_step(db, id, &step);
	if (r >= 0)
		r = job_update(db, STMT_JOB_RETRY, id, "si", step, now);
	/*
	 * A reconcile fails the job rather than upload a drive Azure could not
	 * import; retrying it is the operator's yes (stage-post.c).
	 */
	if (r >= 0 && step == JOB_IMPORTED)
		r = run(db, STMT_DRIVES_ALLOW_NETWORK_REPAIR, id, "");
	if (r >= 0 && skip_refused)
		r = run(db, STMT_JOB_SET_SKIP_REFUSED, id, "");
	if (r >= 0) {
		text = xprintf(skip_refused ? "resuming %s without the names Azure would refuse "
		                              "(--skip-refused)"
		                            : "resuming %s",
		               job_state_to_string(step));
		r = event_insert(db, id, DB_EVENT_RETRY, text, now);
	}
	if ((r = tx_end(db, r)) < 0)
		return r;
	if (ret_state != NULL)
		*ret_state = step;
	return 0;
}

int
db_job_cancel(struct db *db, int64_t id, enum job_state from, const char *text, int64_t now)
{
	_cleanup_free_ char *deftext = NULL;
	bool forgot = false;
	int r;

	if (job_next(from, JOB_EV_CANCEL) != JOB_CANCELLED)
		return -EINVAL;
	if (text == NULL)
		text = deftext = xprintf("cancelled in %s", job_state_to_string(from));
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_update(db, STMT_JOB_CANCEL, id, "si", from, now);
	if (r >= 0)
		r = event_insert(db, id, DB_EVENT_CANCELLED, text, now);
	if (r >= 0)
		r = secrets_forget(db, id, now, &forgot);
	if ((r = tx_end(db, r)) >= 0 && forgot)
		wal_scrub(db);
	return r;
}

int
db_job_set_phase(struct db *db, int64_t id, enum job_state state, const char *phase, int64_t now)
{
	int r;

	if (!job_state_is_active(state) || phase == NULL)
		return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_update(db, STMT_JOB_SET_PHASE, id, "sti", state, phase, now);
	if (r >= 0)
		r = event_insert(db, id, DB_EVENT_PHASE, phase, now);
	return tx_end(db, r);
}

int
db_job_set_tracking(struct db *db, int64_t id, const char *carrier, const char *tracking,
                    int64_t now)
{
	_cleanup_free_ char *text = NULL;
	int r;

	if (carrier == NULL || *carrier == '\0' || tracking == NULL || *tracking == '\0')
		return -EINVAL;
	text = xprintf("carrier %s tracking %s", carrier, tracking);
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_update(db, STMT_JOB_SET_TRACKING, id, "tti", carrier, tracking, now);
	if (r >= 0)
		r = event_insert(db, id, DB_EVENT_NOTE, text, now);
	return tx_end(db, r);
}

/* ---- The Azure stages ----------------------------------------------------------- */

static bool
azure_api_valid(const char *api)
{
	return api != NULL && (strcmp(api, DB_AZURE_API_DATABOX) == 0 ||
	                       strcmp(api, DB_AZURE_API_IMPORT_EXPORT) == 0);
}

int
db_job_set_azure_name(struct db *db, int64_t id, const char *azure_job_name, const char *api,
                      int64_t now)
{
	_cleanup_free_ char *text = NULL;
	int r;

	if (azure_job_name == NULL || *azure_job_name == '\0' || !azure_api_valid(api))
		return -EINVAL;
	text = xprintf("Azure job %s (%s)", azure_job_name, api);
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_update(db, STMT_JOB_SET_AZURE_NAME, id, "tti", azure_job_name, api, now);
	if (r == -ESTALE)
		r = 0; /* already recorded: nothing to write */
	else if (r >= 0)
		r = event_insert(db, id, DB_EVENT_AZURE, text, now);
	return tx_end(db, r);
}

/* Inside the transaction: 1 if this call recorded the creation, 0 if it was known. */
static int
job_azure_created(struct db *db, int64_t id, const char *azure_state, int64_t ship_deadline,
                  int64_t now)
{
	bool first;
	int r;

	r = job_update(db, STMT_JOB_AZURE_CREATED, id, "i", now);
	if (r < 0 && r != -ESTALE)
		return r;
	first = r >= 0;
	if ((r = job_update(db, STMT_JOB_AZURE_CONFIRMED, id, "tii", azure_state, ship_deadline,
	                    now)) < 0)
		return r;
	return first ? 1 : 0;
}

int
db_job_azure_created(struct db *db, int64_t id, const char *azure_state, int64_t ship_deadline,
                     int64_t now)
{
	_cleanup_free_ char *text = NULL;
	char due[32];
	int r;

	if (azure_state == NULL || *azure_state == '\0' || ship_deadline < 0 || now <= 0)
		return -EINVAL;
	if (ship_deadline > 0) {
		format_iso8601(ship_deadline, due);
		text = xprintf("Azure job created, status %s; tracking due by %s", azure_state,
		               due);
	} else
		text = xprintf("Azure job created, status %s", azure_state);
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_azure_created(db, id, azure_state, ship_deadline, now);
	if (r > 0)
		r = event_insert(db, id, DB_EVENT_AZURE, text, now);
	return tx_end(db, r);
}

int
db_job_set_azure_state(struct db *db, int64_t id, const char *azure_state, int64_t now)
{
	_cleanup_free_ char *text = NULL;
	bool changed = false;
	int r;

	if (azure_state == NULL || *azure_state == '\0')
		return -EINVAL;
	text = xprintf("Azure status: %s", azure_state);
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_update(db, STMT_JOB_SET_AZURE_STATE, id, "ti", azure_state, now);
	if (r == -ESTALE)
		r = 0; /* the same state: nothing to write */
	else if (r >= 0) {
		changed = true;
		r = event_insert(db, id, DB_EVENT_AZURE, text, now);
	}
	if ((r = tx_end(db, r)) < 0)
		return r;
	return changed ? 1 : 0;
}

int
db_job_set_azure_error(struct db *db, int64_t id, const char *error, int64_t now)
{
	_cleanup_free_ char *text = NULL;
	bool changed = false;
	int r;

	if (error != NULL && *error == '\0')
		return -EINVAL;
	text = error ? xprintf("Azure reports: %s", error) : xstrdup("Azure's error is cleared");
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_update(db, STMT_JOB_SET_AZURE_ERROR, id, "ti", error, now);
	if (r == -ESTALE)
		r = 0; /* the same error, or a job that is over: nothing to write */
	else if (r >= 0) {
		changed = true;
		r = event_insert(db, id, DB_EVENT_AZURE, text, now);
	}
	if ((r = tx_end(db, r)) < 0)
		return r;
	return changed ? 1 : 0;
}

int
db_job_set_warned(struct db *db, int64_t id, int deadline_warned, bool receive_warned)
{
	int r;

	if (deadline_warned < 0)
		return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_update(db, STMT_JOB_SET_WARNED, id, "ii", (int64_t)deadline_warned,
	               (int64_t)receive_warned);
	return tx_end(db, r);
}

int
db_event_add(struct db *db, int64_t job_id, const char *kind, const char *text, int64_t now)
{
	int r;

	if (kind == NULL || *kind == '\0')
		return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = event_insert(db, job_id, kind, text, now);
	return tx_end(db, r);
}

/* ---- Files: states, rows, helpers run inside a transaction -------------------- */

enum file_state {
	FILE_INDEXED,
	FILE_INVALID,
	FILE_SKIPPED,
	FILE_PLANNED,
	FILE_VERIFIED,
	_FILE_STATE_MAX,
	_FILE_STATE_INVALID = -1,
};

/* The files.state CHECK of schema v1 lists the same names. */
/* clang-format off */
static const char *const file_states[_FILE_STATE_MAX] = {
    [FILE_INDEXED] = "indexed",
    [FILE_INVALID] = "invalid",
    [FILE_SKIPPED] = "skipped",
    [FILE_PLANNED] = "planned",
    [FILE_VERIFIED] = "verified",
};
/* clang-format on */

static const char *const drive_states[] = {
    "attached", "copying", "copied", "manifest-written", "full",
};

static enum file_state
file_state_from_string(const char *s)
{
	for (int i = 0; s != NULL && i < _FILE_STATE_MAX; i++)
		if (strcmp(s, file_states[i]) == 0)
			return (enum file_state)i;
	return _FILE_STATE_INVALID;
}

/*
 * Readers split state skipped in two (db.h): "excluded" (an --exclude
 * pattern left the entry out) and "skipped" (the others). 1 for excluded,
 * 0 for skipped, -1 for any other state.
 */
static int
left_out_of(const char *state)
{
	if (state == NULL)
		return -1;
	if (strcmp(state, "excluded") == 0)
		return 1;
	return strcmp(state, "skipped") == 0 ? 0 : -1;
}

/* A state a reader may ask for: a file state or "excluded". */
static bool
state_arg_valid(const char *state)
{
	return file_state_from_string(state) != _FILE_STATE_INVALID || left_out_of(state) == 1;
}

/* What the write functions need to know of a file (INFO_COLUMNS). */
struct file_info {
	int64_t id, job_id, size, mtime_ns, drive_id, checkpoint;
	enum file_state state;
	bool reread;
};

/* Step a bound INFO_COLUMNS statement; -ENOENT if it gives no row. */
static int
file_info_step(struct db *db, sqlite3_stmt *st, struct file_info *ret)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return db_error(db, rc);
	*ret = (struct file_info){
	    .id = sqlite3_column_int64(st, 0),
	    .job_id = sqlite3_column_int64(st, 1),
	    .state = file_state_from_string((const char *)sqlite3_column_text(st, 2)),
	    .size = sqlite3_column_int64(st, 3),
	    .mtime_ns = sqlite3_column_int64(st, 4),
	    .drive_id = sqlite3_column_int64(st, 5),
	    .checkpoint = sqlite3_column_int64(st, 6),
	    .reread = sqlite3_column_int64(st, 7) != 0,
	};
	return 0;
}

static int
file_info_get(struct db *db, int64_t file_id, struct file_info *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_FILE_INFO];
	int r;

	if ((r = bind(db, st, "i", file_id)) < 0)
		return r;
	return file_info_step(db, st, ret);
}

static int
file_info_by_path(struct db *db, int64_t job_id, const char *rel_path, struct file_info *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_FILE_BY_PATH];
	int r;

	if ((r = bind(db, st, "it", job_id, rel_path)) < 0)
		return r;
	return file_info_step(db, st, ret);
}

/* A row of FILE_COLUMNS. */
static void
file_row_read(sqlite3_stmt *st, struct file_row *f)
{
	*f = (struct file_row){
	    .id = sqlite3_column_int64(st, 0),
	    .job_id = sqlite3_column_int64(st, 1),
	    .size = sqlite3_column_int64(st, 2),
	    .mtime_ns = sqlite3_column_int64(st, 3),
	    .drive_id = sqlite3_column_int64(st, 4),
	    .checkpoint = sqlite3_column_int64(st, 5),
	    .rel_path = col_str(st, 6),
	    .blob_name = col_str(st, 7),
	    .state = col_str(st, 8),
	    .reason = col_str(st, 9),
	};
	if (sqlite3_column_bytes(st, 10) == (int)sizeof(f->md5)) {
		memcpy(f->md5, sqlite3_column_blob(st, 10), sizeof(f->md5));
		f->has_md5 = true;
	}
	f->import_state = col_str(st, 11);
	f->import_detail = col_str(st, 12);
	f->vault_state = col_str(st, 13);
	f->cleanup_state = col_str(st, 14);
	f->import_method = col_str(st, 15);
	f->links = sqlite3_column_int64(st, 16);
}

static void
file_row_done(struct file_row *f)
{
	free(f->rel_path);
	free(f->blob_name);
	free(f->state);
	free(f->reason);
	free(f->import_state);
	free(f->import_detail);
	free(f->vault_state);
	free(f->cleanup_state);
	free(f->import_method);
}

void
file_rows_free(struct file_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		file_row_done(&rows[i]);
	free(rows);
}

/* Run statement s with ?1 = id and the rest bound by types from ?2; no row expected. */
static int
run(struct db *db, enum db_stmt s, int64_t id, const char *types, ...)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[s];
	va_list ap;
	int r;

	if ((r = bind(db, st, "i", id)) < 0)
		return r;
	va_start(ap, types);
	r = bind_va(db, st, 2, types, ap);
	va_end(ap);
	if (r < 0)
		return r;
	return step_done(db, st);
}

/* Add to the job's copied counters; now < 0 keeps jobs.updated. */
static int
job_add_copied(struct db *db, int64_t job_id, int64_t files, int64_t bytes, int64_t verified,
               int64_t now)
{
	if (now < 0)
		return run(db, STMT_JOB_ADD_COPIED, job_id, "iii", files, bytes, verified);
	return run(db, STMT_JOB_ADD_COPIED, job_id, "iiii", files, bytes, verified, now);
}

/* Drop the file's blocks from idx on. */
static int
blocks_trim(struct db *db, int64_t file_id, int64_t idx)
{
	return run(db, STMT_BLOCK_TRIM, file_id, "i", idx);
}

static int
blocks_put(struct db *db, int64_t file_id, size_t first, const struct block_row *b, size_t n)
{
	int r = 0;

	for (size_t i = 0; r >= 0 && i < n; i++)
		r = run(db, STMT_BLOCK_PUT, file_id, "iiib", (int64_t)(first + i), b[i].offset,
		        b[i].length, b[i].md5, sizeof(b[i].md5));
	return r;
}

/*
 * The file is leaving its drive: a verified one leaves the drive's and the
 * job's copied counters, a planned or verified one loses its blocks.
 */
static int
file_leave_drive(struct db *db, const struct file_info *f, int64_t now)
{
	int r;

	if (f->state == FILE_VERIFIED) {
		if (f->drive_id > 0 && (r = run(db, STMT_DRIVE_ADD_USED, f->drive_id, "ii",
		                                (int64_t)-1, -f->size)) < 0)
			return r;
		if ((r = job_add_copied(db, f->job_id, -1, -f->size, f->reread ? -1 : 0, now)) < 0)
			return r;
	}
	if (f->state == FILE_PLANNED || f->state == FILE_VERIFIED)
		return blocks_trim(db, f->id, 0);
	return 0;
}

/* ---- Files: scanning and counting ------------------------------------------- */

static bool
file_entry_valid(const struct file_entry *e)
{
	enum file_state s = file_state_from_string(e->state);

	return e->rel_path != NULL && *e->rel_path != '\0' && e->blob_name != NULL &&
	       e->size >= 0 && (s == FILE_INDEXED || s == FILE_INVALID || s == FILE_SKIPPED) &&
	       (e->excluded_by == NULL || s == FILE_SKIPPED);
}

static int
file_upsert(struct db *db, int64_t job_id, const struct file_entry *e)
{
	const char *reason = strcmp(e->state, "indexed") == 0 ? NULL : e->reason;

	return run(db, STMT_FILE_UPSERT, job_id, "tiitttit", e->rel_path, e->size, e->mtime_ns,
	           e->blob_name, e->state, reason, e->links > 1 ? e->links : (int64_t)1,
	           e->excluded_by);
}

/* The slow path, once the job has planned or verified files. */
static int
file_rescan(struct db *db, int64_t job_id, const struct file_entry *e)
{
	struct file_info f;
	int r;

	r = file_info_by_path(db, job_id, e->rel_path, &f);
	if (r == -ENOENT)
		return file_upsert(db, job_id, e);
	if (r < 0)
		return r;
	if (f.state == FILE_VERIFIED && f.size == e->size && f.mtime_ns == e->mtime_ns)
		return 0;
	if ((r = file_leave_drive(db, &f, -1)) < 0)
		return r;
	return file_upsert(db, job_id, e);
}

/* Does the job have a planned or verified file (one with blocks or counted on a drive)? */
static int
job_has_placed(struct db *db, int64_t job_id, bool *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_FILE_JOB_PLACED];
	int r, rc;

	if ((r = bind(db, st, "i", job_id)) < 0)
		return r;
	if ((rc = sqlite3_step(st)) != SQLITE_ROW)
		return db_error(db, rc);
	*ret = sqlite3_column_int(st, 0) != 0;
	return 0;
}

/*
 * Before anything is placed (the first scan, and rescans while staging) a
 * plain upsert is enough: no row has blocks or counts on a drive.
 */
static int job_in(struct db *db, int64_t job_id, enum job_state state, enum job_phase phase);

/* Insert or rescan n rows in one transaction, first checking the job if check. */
static int
files_insert(struct db *db, int64_t job_id, const struct job_state_phase *check,
	     const struct file_entry *e, size_t n)
{
	bool placed = false;
	int r;

	for (size_t i = 0; i < n; i++)
		if (!file_entry_valid(&e[i]))
			return -EINVAL;
	if (n == 0)
		return 0;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = check != NULL ? job_in(db, job_id, check->state, check->phase) : 0;
	if (r >= 0)
		r = job_has_placed(db, job_id, &placed);
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = placed ? file_rescan(db, job_id, &e[i]) : file_upsert(db, job_id, &e[i]);
	return tx_end(db, r);
}

int
db_files_insert_batch(struct db *db, int64_t job_id, const struct file_entry *e, size_t n)
{
	return files_insert(db, job_id, NULL, e, n);
}

int
db_files_insert_batch_in(struct db *db, int64_t job_id, enum job_state state,
			 enum job_phase phase, const struct file_entry *e, size_t n)
{
	struct job_state_phase check = {state, phase};

	return files_insert(db, job_id, &check, e, n);
}

int
db_job_set_totals(struct db *db, int64_t job_id, int64_t now)
{
	int r;

	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_update(db, STMT_JOB_SET_TOTALS, job_id, "i", now);
	return tx_end(db, r);
}

int
db_files_count(struct db *db, int64_t job_id, const char *state, struct file_count *ret)
{
	int left_out = left_out_of(state);
	_cleanup_reset_ sqlite3_stmt *st =
	    db->stmts[state == NULL ? STMT_FILE_COUNT
				    : left_out >= 0 ? STMT_FILE_COUNT_LEFT_OUT : STMT_FILE_COUNT_STATE];
	int r, rc;

	if (state != NULL && !state_arg_valid(state))
		return -EINVAL;
	if ((r = bind(db, st, "i", job_id)) < 0 ||
	    (left_out >= 0 && (r = bind_at(db, st, 2, "i", (int64_t)left_out)) < 0) ||
	    (state != NULL && left_out < 0 && (r = bind_at(db, st, 2, "t", state)) < 0))
		return r;
	if ((rc = sqlite3_step(st)) != SQLITE_ROW)
		return db_error(db, rc);
	ret->files = sqlite3_column_int64(st, 0);
	ret->bytes = sqlite3_column_int64(st, 1);
	return 0;
}

int
db_files_number(struct db *db, int64_t job_id, const char *state, int64_t *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_FILE_NUMBER_STATE];
	struct file_count fc;
	int r, rc;

	if (state == NULL || !state_arg_valid(state))
		return -EINVAL;
	if (left_out_of(state) >= 0) { /* few rows: reading them is cheap */
		if ((r = db_files_count(db, job_id, state, &fc)) < 0)
			return r;
		*ret = fc.files;
		return 0;
	}
	if ((r = bind(db, st, "it", job_id, state)) < 0)
		return r;
	if ((rc = sqlite3_step(st)) != SQLITE_ROW)
		return db_error(db, rc);
	*ret = sqlite3_column_int64(st, 0);
	return 0;
}

static enum db_stmt
page_stmt(const char *state, int64_t drive_id)
{
	if (left_out_of(state) >= 0 && drive_id == 0)
		return STMT_FILE_PAGE_LEFT_OUT;
	if (state == NULL)
		return drive_id == 0 ? STMT_FILE_PAGE : STMT_FILE_PAGE_DRIVE;
	return drive_id == 0 ? STMT_FILE_PAGE_STATE : STMT_FILE_PAGE_STATE_DRIVE;
}

int
db_files_page(struct db *db, int64_t job_id, const char *state, int64_t drive_id, int64_t after_id,
              size_t limit, struct file_row **ret, size_t *ret_n)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[page_stmt(state, drive_id)];
	struct file_row *rows = NULL;
	size_t n = 0;
	int r, rc;

	if (limit == 0 || drive_id < 0 || (state != NULL && !state_arg_valid(state)))
		return -EINVAL;
	if (limit > INT32_MAX)
		limit = INT32_MAX;
	if (left_out_of(state) >= 0 && drive_id != 0) { /* skipped rows are on no drive */
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	if ((r = bind(db, st, "iii", job_id, after_id, (int64_t)limit)) < 0 ||
	    (left_out_of(state) >= 0 && (r = bind_at(db, st, 4, "i", (int64_t)left_out_of(state))) < 0) ||
	    (state != NULL && left_out_of(state) < 0 && (r = bind_at(db, st, 4, "t", state)) < 0) ||
	    (drive_id != 0 && (r = bind_at(db, st, 5, "i", drive_id)) < 0))
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rows = xreallocarray(rows, n + 1, sizeof(*rows));
		file_row_read(st, &rows[n++]);
	}
	if (rc != SQLITE_DONE) {
		file_rows_free(rows, n);
		return db_error(db, rc);
	}
	*ret = rows;
	*ret_n = n;
	return 0;
}

int
db_files_linked(struct db *db, int64_t job_id, int64_t after_id, size_t limit,
                struct file_row **ret, size_t *ret_n)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_FILE_PAGE_LINKED];
	struct file_row *rows = NULL;
	size_t n = 0;
	int r, rc;

	if (limit == 0)
		return -EINVAL;
	if (limit > INT32_MAX)
		limit = INT32_MAX;
	if ((r = bind(db, st, "iii", job_id, after_id, (int64_t)limit)) < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rows = xreallocarray(rows, n + 1, sizeof(*rows));
		file_row_read(st, &rows[n++]);
	}
	if (rc != SQLITE_DONE) {
		file_rows_free(rows, n);
		return db_error(db, rc);
	}
	*ret = rows;
	*ret_n = n;
	return 0;
}

int
db_files_linked_count(struct db *db, int64_t job_id, struct file_count *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_FILE_COUNT_LINKED];
	int r, rc;

	if ((r = bind(db, st, "i", job_id)) < 0)
		return r;
	if ((rc = sqlite3_step(st)) != SQLITE_ROW)
		return db_error(db, rc);
	ret->files = sqlite3_column_int64(st, 0);
	ret->bytes = sqlite3_column_int64(st, 1);
	return 0;
}

/* Stream (id, size) rows of statement s bound to ?1 = id. */
static int
foreach_id_size(struct db *db, enum db_stmt s, int64_t job_id,
                int (*cb)(int64_t id, int64_t size, void *userdata), void *userdata)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[s];
	int r, rc;

	if ((r = bind(db, st, "i", job_id)) < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if ((r = cb(sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), userdata)) <
		    0)
			return r;
	return rc == SQLITE_DONE ? 0 : db_error(db, rc);
}

int
db_files_foreach_plannable(struct db *db, int64_t job_id,
                           int (*cb)(int64_t id, int64_t size, void *userdata), void *userdata)
{
	return foreach_id_size(db, STMT_FILE_PLANNABLE, job_id, cb, userdata);
}

int
db_files_foreach_waiting(struct db *db, int64_t job_id,
                         int (*cb)(int64_t id, int64_t size, void *userdata), void *userdata)
{
	return foreach_id_size(db, STMT_FILE_WAITING, job_id, cb, userdata);
}

int
db_drive_foreach_held(struct db *db, int64_t drive_id, bool planned_too,
                      int (*cb)(int64_t id, int64_t size, void *userdata), void *userdata)
{
	return foreach_id_size(db, planned_too ? STMT_DRIVE_SIZES_HELD : STMT_DRIVE_SIZES_VERIFIED,
			       drive_id, cb, userdata);
}

int
db_files_clear(struct db *db, int64_t job_id)
{
	int r;

	if ((r = db_tx_begin(db)) < 0)
		return r;
	if ((r = run(db, STMT_FILE_CLEAR, job_id, "")) >= 0 &&
	    (r = run(db, STMT_DRIVE_CLEAR_COUNTS, job_id, "")) >= 0)
		r = job_update(db, STMT_JOB_CLEAR_COUNTS, job_id, "");
	return tx_end(db, r);
}

/* ---- Files: placing, copying, verifying --------------------------------------- */

/* Why placing p changed no row. */
static int
place_failure(struct db *db, const struct placement *p)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_DRIVE_JOB];
	struct file_info f;
	int r, rc;

	if ((r = file_info_get(db, p->file_id, &f)) < 0)
		return r;
	if (p->drive_id != 0) {
		if ((r = bind(db, st, "i", p->drive_id)) < 0)
			return r;
		if ((rc = sqlite3_step(st)) == SQLITE_DONE)
			return -ENOENT;
		if (rc != SQLITE_ROW)
			return db_error(db, rc);
		if (sqlite3_column_int64(st, 0) != f.job_id)
			return -EINVAL;
	}
	return -ESTALE;
}

static int
file_place(struct db *db, const struct placement *p)
{
	int r;

	if (p->drive_id == 0)
		r = run(db, STMT_FILE_UNPLAN, p->file_id, "");
	else
		r = run(db, STMT_FILE_PLACE, p->file_id, "i", p->drive_id);
	if (r < 0)
		return r;
	if (sqlite3_changes(db->sqlite) == 0)
		return place_failure(db, p);
	/* A new drive (or none) reset the checkpoint: drop the blocks past it. */
	return run(db, STMT_BLOCK_TRIM_CHECKPOINT, p->file_id, "");
}

int
db_files_place(struct db *db, const struct placement *p, size_t n)
{
	int r;

	for (size_t i = 0; i < n; i++)
		if (p[i].drive_id < 0)
			return -EINVAL;
	if (n == 0)
		return 0;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = 0;
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = file_place(db, &p[i]);
	return tx_end(db, r);
}

/* Inside the transaction: 0 if the job is in state (and phase, unless _JOB_PHASE_INVALID), else -ESTALE. */
static int
job_in(struct db *db, int64_t job_id, enum job_state state, enum job_phase phase)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_JOB_STATE_PHASE];
	const char *have;
	int r, rc;

	if ((r = bind(db, st, "i", job_id)) < 0)
		return r;
	if ((rc = sqlite3_step(st)) == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return db_error(db, rc);
	if (col_state(st, 0) != state)
		return -ESTALE;
	if (phase == _JOB_PHASE_INVALID)
		return 0;
	have = (const char *)sqlite3_column_text(st, 1);
	return have != NULL && job_phase_from_text(have) == phase ? 0 : -ESTALE;
}

int
db_files_place_in(struct db *db, int64_t job_id, enum job_state state, enum job_phase phase,
		  const struct placement *p, size_t n)
{
	int r;

	for (size_t i = 0; i < n; i++)
		if (p[i].drive_id < 0)
			return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_in(db, job_id, state, phase);
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = file_place(db, &p[i]);
	return tx_end(db, r);
}

static bool
blocks_valid(const struct block_row *b, size_t n)
{
	if (n > 0 && b == NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		if (b[i].offset < 0 || b[i].length <= 0)
			return false;
	return true;
}

/* Contiguous from offset 0 and exactly `size` long (or no blocks at all). */
static bool
blocks_cover(const struct block_row *b, size_t n, int64_t size)
{
	int64_t end = 0;

	for (size_t i = 0; i < n; i++) {
		if (b[i].offset != end || b[i].length > INT64_MAX - end)
			return false;
		end += b[i].length;
	}
	return n == 0 || end == size;
}

static int
file_checkpoint(struct db *db, int64_t file_id, size_t first, const struct block_row *b, size_t n)
{
	struct file_info f;
	int r;

	if ((r = file_info_get(db, file_id, &f)) < 0)
		return r;
	if (f.state != FILE_PLANNED)
		return -ESTALE;
	if ((int64_t)first > f.checkpoint)
		return -EINVAL;
	if ((r = blocks_put(db, file_id, first, b, n)) < 0 ||
	    (r = run(db, STMT_FILE_CHECKPOINT, file_id, "i", (int64_t)(first + n))) < 0)
		return r;
	return blocks_trim(db, file_id, (int64_t)(first + n));
}

int
db_file_checkpoint(struct db *db, int64_t file_id, size_t first, const struct block_row *b,
                   size_t n)
{
	int r;

	if (!blocks_valid(b, n) || first > INT32_MAX || n > INT32_MAX)
		return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = file_checkpoint(db, file_id, first, b, n);
	return tx_end(db, r);
}

/* Read file_id's blocks into *buf (grown as needed, *cap entries). */
static int
blocks_read(struct db *db, int64_t file_id, struct block_row **buf, size_t *cap, size_t *ret_n)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_BLOCK_LIST];
	size_t n = 0;
	int r, rc;

	if ((r = bind(db, st, "i", file_id)) < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == *cap) {
			*cap = *cap == 0 ? 16 : *cap * 2;
			*buf = xreallocarray(*buf, *cap, sizeof(**buf));
		}
		(*buf)[n] = (struct block_row){
		    .offset = sqlite3_column_int64(st, 0),
		    .length = sqlite3_column_int64(st, 1),
		};
		if (sqlite3_column_bytes(st, 2) == (int)sizeof((*buf)[n].md5))
			memcpy((*buf)[n].md5, sqlite3_column_blob(st, 2), sizeof((*buf)[n].md5));
		n++;
	}
	if (rc != SQLITE_DONE)
		return db_error(db, rc);
	*ret_n = n;
	return 0;
}

int
db_file_blocks(struct db *db, int64_t file_id, struct block_row **ret, size_t *ret_n)
{
	_cleanup_free_ struct block_row *rows = NULL;
	struct file_info f;
	size_t cap = 0, n = 0;
	int r;

	if ((r = blocks_read(db, file_id, &rows, &cap, &n)) < 0)
		return r;
	if (n == 0 && (r = file_info_get(db, file_id, &f)) < 0)
		return r;
	*ret = TAKE_PTR(rows);
	*ret_n = n;
	return 0;
}

static int
file_verified(struct db *db, int64_t file_id, int64_t drive_id, const unsigned char md5[16],
              const struct block_row *b, size_t n, bool verified, int64_t now)
{
	struct file_info f;
	int r;

	if ((r = file_info_get(db, file_id, &f)) < 0)
		return r;
	if (f.state != FILE_PLANNED || f.drive_id != drive_id)
		return -ESTALE;
	if (!blocks_cover(b, n, f.size))
		return -EINVAL;
	if ((r = blocks_put(db, file_id, 0, b, n)) < 0 ||
	    (r = blocks_trim(db, file_id, (int64_t)n)) < 0 ||
	    (r = run(db, STMT_FILE_VERIFIED, file_id, "bii", md5, (size_t)16, (int64_t)n,
	             (int64_t)verified)) < 0 ||
	    (r = run(db, STMT_DRIVE_ADD_USED, drive_id, "ii", (int64_t)1, f.size)) < 0)
		return r;
	return job_add_copied(db, f.job_id, 1, f.size, verified ? 1 : 0, now);
}

int
db_file_verified(struct db *db, int64_t file_id, int64_t drive_id, const unsigned char md5[16],
                 const struct block_row *b, size_t n, bool verified, int64_t now)
{
	int r;

	if (md5 == NULL || drive_id <= 0 || !blocks_valid(b, n) || n > INT32_MAX)
		return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = file_verified(db, file_id, drive_id, md5, b, n, verified, now);
	return tx_end(db, r);
}

int
db_files_verified(struct db *db, struct verified_file *v, size_t n, int64_t now)
{
	int r = 0;

	for (size_t i = 0; i < n; i++)
		if (v[i].md5 == NULL || v[i].drive_id <= 0 || !blocks_valid(v[i].blocks, v[i].n) ||
		    v[i].n > INT32_MAX)
			return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	for (size_t i = 0; i < n && r >= 0; i++) {
		v[i].result = file_verified(db, v[i].file_id, v[i].drive_id, v[i].md5, v[i].blocks,
					    v[i].n, v[i].verified, now);
		r = v[i].result == -ESTALE ? 0 : v[i].result;
	}
	return tx_end(db, r);
}

static int
file_reindex(struct db *db, int64_t file_id, int64_t size, int64_t mtime_ns, int64_t now)
{
	struct file_info f;
	int r;

	if ((r = file_info_get(db, file_id, &f)) < 0)
		return r;
	if (f.state == FILE_INVALID || f.state == FILE_SKIPPED)
		return -ESTALE;
	if ((r = file_leave_drive(db, &f, now)) < 0 ||
	    (r = run(db, STMT_FILE_RESET, file_id, "ii", size, mtime_ns)) < 0)
		return r;
	return run(db, STMT_JOB_ADD_BYTES, f.job_id, "ii", size - f.size, now);
}

int
db_file_reindex(struct db *db, int64_t file_id, int64_t size, int64_t mtime_ns, int64_t now)
{
	int r;

	if (size < 0)
		return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = file_reindex(db, file_id, size, mtime_ns, now);
	return tx_end(db, r);
}

static int
file_unplace(struct db *db, int64_t file_id)
{
	struct file_info f;
	int r;

	if ((r = file_info_get(db, file_id, &f)) < 0)
		return r;
	if (f.state == FILE_INVALID || f.state == FILE_SKIPPED)
		return -ESTALE;
	if (f.state == FILE_INDEXED)
		return 0;
	if ((r = file_leave_drive(db, &f, -1)) < 0)
		return r;
	return run(db, STMT_FILE_RESET, file_id, "ii", f.size, f.mtime_ns);
}

int
db_file_unplace(struct db *db, int64_t file_id)
{
	int r;

	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = file_unplace(db, file_id);
	return tx_end(db, r);
}

/* ---- Drives and secrets -------------------------------------------------------- */

static bool
nonempty(const char *s)
{
	return s != NULL && *s != '\0';
}

int
db_drive_add(struct db *db, int64_t job_id, const char *serial, const char *path, const char *uuid,
             int64_t capacity, int64_t free_bytes, int64_t *ret_id)
{
	int64_t id;
	int r;

	if (!nonempty(serial) || !nonempty(path) || !nonempty(uuid) || capacity < 0 ||
	    free_bytes < 0)
		return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = run(db, STMT_DRIVE_INSERT, job_id, "tttii", serial, path, uuid, capacity, free_bytes);
	id = sqlite3_last_insert_rowid(db->sqlite);
	if ((r = tx_end(db, r)) < 0)
		return r;
	if (ret_id != NULL)
		*ret_id = id;
	return 0;
}

static int secret_put(struct db *db, int64_t job_id, int64_t drive_id, const char *kind,
                      const void *value, size_t len);

int
db_drive_attach(struct db *db, int64_t job_id, const struct drive_new *n, int64_t *ret_id)
{
	bool bl = n->bitlocker_device != NULL;
	int64_t id;
	int r;

	if (!nonempty(n->serial) || !nonempty(n->path) || !nonempty(n->uuid) || n->capacity < 0 ||
	    n->free_bytes < 0 || n->direct_io < 0 || n->direct_io > 3 ||
	    (bl && (!nonempty(n->bitlocker_device) || !nonempty(n->bitlocker_guid) ||
	            !nonempty(n->bitlocker_cipher))) ||
	    (n->key != NULL && !nonempty(n->key)))
		return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = run(db, STMT_DRIVE_INSERT, job_id, "tttii", n->serial, n->path, n->uuid, n->capacity,
	        n->free_bytes);
	id = sqlite3_last_insert_rowid(db->sqlite);
	if (r >= 0)
		r = run(db, STMT_DRIVE_SET_DIRECT_IO, id, "i", n->direct_io);
	if (r >= 0 && bl)
		r = run(db, STMT_DRIVE_SET_BITLOCKER, id, "ttt", n->bitlocker_device,
		        n->bitlocker_guid, n->bitlocker_cipher);
	if (r >= 0 && n->key != NULL)
		r = secret_put(db, job_id, id, "bitlocker-key", n->key, strlen(n->key));
	if ((r = tx_end(db, r)) < 0)
		return r;
	if (ret_id != NULL)
		*ret_id = id;
	return 0;
}

/* Step a bound single-drive SELECT. */
static int
drive_get_one(struct db *db, sqlite3_stmt *st, struct drive_row *ret)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return db_error(db, rc);
	drive_row_read(st, ret);
	return 0;
}

int
db_drive_get(struct db *db, int64_t drive_id, struct drive_row *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_DRIVE_GET];
	int r;

	if ((r = bind(db, st, "i", drive_id)) < 0)
		return r;
	return drive_get_one(db, st, ret);
}

int
db_drive_by_serial(struct db *db, int64_t job_id, const char *serial, struct drive_row *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_DRIVE_BY_SERIAL];
	int r;

	if (serial == NULL)
		return -EINVAL;
	if ((r = bind(db, st, "it", job_id, serial)) < 0)
		return r;
	return drive_get_one(db, st, ret);
}

/* Count and size of the files of statement s on drive_id. */
static int
drive_count(struct db *db, enum db_stmt s, int64_t drive_id, struct file_count *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[s];
	int r, rc;

	if ((r = bind(db, st, "i", drive_id)) < 0)
		return r;
	if ((rc = sqlite3_step(st)) != SQLITE_ROW)
		return db_error(db, rc);
	ret->files = sqlite3_column_int64(st, 0);
	ret->bytes = sqlite3_column_int64(st, 1);
	return 0;
}

int
db_drive_file_count(struct db *db, int64_t drive_id, struct file_count *ret)
{
	return drive_count(db, STMT_DRIVE_COUNT, drive_id, ret);
}

int
db_drive_verified_count(struct db *db, int64_t drive_id, struct file_count *ret)
{
	return drive_count(db, STMT_DRIVE_COUNT_VERIFIED, drive_id, ret);
}

/* One transaction of UPDATE s on drive_id; -ENOENT if there is no such drive. */
static int
drive_update(struct db *db, enum db_stmt s, int64_t drive_id, const char *value)
{
	int r;

	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = run(db, s, drive_id, "t", value);
	if (r >= 0 && sqlite3_changes(db->sqlite) == 0)
		r = -ENOENT;
	return tx_end(db, r);
}

int
db_drive_set_state(struct db *db, int64_t drive_id, const char *state)
{
	bool known = false;
	int r;

	if (state != NULL && strcmp(state, "unused") == 0) {
		if ((r = db_tx_begin(db)) < 0)
			return r;
		r = run(db, STMT_DRIVE_SET_UNUSED, drive_id, "");
		if (r >= 0 && sqlite3_changes(db->sqlite) == 0)
			r = -ENOENT;
		return tx_end(db, r);
	}
	for (size_t i = 0; state != NULL && i < ELEMENTSOF(drive_states); i++)
		known = known || strcmp(state, drive_states[i]) == 0;
	if (!known)
		return -EINVAL;
	return drive_update(db, STMT_DRIVE_SET_STATE, drive_id, state);
}

int
db_drive_set_direct_io(struct db *db, int64_t drive_id, int64_t flags)
{
	int r;

	if (flags < 0 || flags > 3)
		return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = run(db, STMT_DRIVE_SET_DIRECT_IO, drive_id, "i", flags);
	if (r >= 0 && sqlite3_changes(db->sqlite) == 0)
		r = -ENOENT;
	return tx_end(db, r);
}

int
db_drive_set_bitlocker(struct db *db, int64_t drive_id, const char *device, const char *guid,
                       const char *cipher)
{
	int r;

	if (!nonempty(device) || !nonempty(guid) || !nonempty(cipher))
		return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = run(db, STMT_DRIVE_SET_BITLOCKER, drive_id, "ttt", device, guid, cipher);
	if (r >= 0 && sqlite3_changes(db->sqlite) == 0)
		r = -ENOENT;
	return tx_end(db, r);
}

int
db_drive_set_manifest(struct db *db, int64_t drive_id, const char *manifest_hash)
{
	return drive_update(db, STMT_DRIVE_SET_MANIFEST, drive_id, manifest_hash);
}

int
db_drive_set_azure(struct db *db, int64_t drive_id, const char *status, int64_t bytes,
                   int64_t total, int64_t files_errored, const char *error_log,
                   const char *verbose_log)
{
	int r;

	if (bytes < 0 || total < 0 || files_errored < 0)
		return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = run(db, STMT_DRIVE_SET_AZURE, drive_id, "tiiitt", status, bytes, total, files_errored,
	        error_log, verbose_log);
	if (r >= 0 && sqlite3_changes(db->sqlite) == 0)
		r = -ENOENT;
	return tx_end(db, r);
}

int
db_drive_foreach_verified(struct db *db, int64_t drive_id,
                          int (*cb)(const struct file_row *f, const struct block_row *b, size_t n,
                                    void *userdata),
                          void *userdata)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_DRIVE_VERIFIED];
	_cleanup_free_ struct block_row *blocks = NULL;
	struct file_row f;
	size_t cap = 0, n = 0;
	int r, rc;

	if ((r = bind(db, st, "i", drive_id)) < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		file_row_read(st, &f);
		r = blocks_read(db, f.id, &blocks, &cap, &n);
		if (r >= 0)
			r = cb(&f, blocks, n, userdata);
		file_row_done(&f);
		if (r < 0)
			return r;
	}
	return rc == SQLITE_DONE ? 0 : db_error(db, rc);
}

static int
secret_put(struct db *db, int64_t job_id, int64_t drive_id, const char *kind, const void *value,
           size_t len)
{
	int r;

	if ((r = run(db, STMT_SECRET_DELETE, job_id, "it", drive_id, kind)) < 0 ||
	    (r = run(db, STMT_SECRET_INSERT, job_id, "itb", drive_id, kind, value, len)) < 0)
		return r;
	return sqlite3_changes(db->sqlite) == 0 ? -ENOENT : 0;
}

int
db_secret_put(struct db *db, int64_t job_id, int64_t drive_id, const char *kind, const void *value,
              size_t len)
{
	int r;

	if (drive_id <= 0 || !nonempty(kind) || value == NULL || len == 0 || len > INT32_MAX)
		return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = secret_put(db, job_id, drive_id, kind, value, len);
	return tx_end(db, r);
}

int
db_secret_get(struct db *db, int64_t drive_id, const char *kind, char **ret_value)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_SECRET_GET];
	size_t len;
	char *v;
	int r, rc;

	if (!nonempty(kind))
		return -EINVAL;
	if ((r = bind(db, st, "it", drive_id, kind)) < 0)
		return r;
	if ((rc = sqlite3_step(st)) == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return db_error(db, rc);
	len = (size_t)sqlite3_column_bytes(st, 0);
	v = xmalloc(len + 1);
	if (len > 0)
		memcpy(v, sqlite3_column_blob(st, 0), len);
	v[len] = '\0';
	*ret_value = v;
	return 0;
}

/* ---- After the import: per-file outcome of reconcile, vault copy, cleanup ---- */

static const enum db_stmt mark_stmt[] = {
	[DB_MARK_IMPORT] = STMT_FILE_MARK_IMPORT,
	[DB_MARK_VAULT] = STMT_FILE_MARK_VAULT,
	[DB_MARK_CLEANUP] = STMT_FILE_MARK_CLEANUP,
};

static const enum db_stmt count_stmt[] = {
	[DB_MARK_IMPORT] = STMT_FILE_COUNT_IMPORT,
	[DB_MARK_VAULT] = STMT_FILE_COUNT_VAULT,
	[DB_MARK_CLEANUP] = STMT_FILE_COUNT_CLEANUP,
};

static int
mark_one(struct db *db, enum db_mark kind, const struct file_mark *m)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[mark_stmt[kind]];
	int r, rc;

	if (kind == DB_MARK_IMPORT)
		r = bind(db, st, "ittt", m->file_id, m->state, m->detail, m->method);
	else
		r = bind(db, st, "it", m->file_id, m->state);
	if (r < 0)
		return r;
	if ((rc = sqlite3_step(st)) != SQLITE_DONE)
		return db_error(db, rc);
	return sqlite3_changes(db->sqlite) == 1 ? 0 : -ESTALE;
}

int
db_files_mark(struct db *db, enum db_mark kind, const struct file_mark *m, size_t n)
{
	int r;

	if ((unsigned)kind >= ELEMENTSOF(mark_stmt))
		return -EINVAL;
	if ((r = db_tx_begin(db)) < 0)
		return r;
	for (size_t i = 0; i < n && r >= 0; i++)
		r = mark_one(db, kind, &m[i]);
	return tx_end(db, r);
}

int
db_files_count_mark(struct db *db, int64_t job_id, enum db_mark kind, const char *value,
		    struct file_count *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = NULL;
	int r, rc;

	if ((unsigned)kind >= ELEMENTSOF(count_stmt))
		return -EINVAL;
	st = db->stmts[count_stmt[kind]];
	if ((r = bind(db, st, "it", job_id, value)) < 0)
		return r;
	if ((rc = sqlite3_step(st)) != SQLITE_ROW)
		return db_error(db, rc);
	ret->files = sqlite3_column_int64(st, 0);
	ret->bytes = sqlite3_column_int64(st, 1);
	return 0;
}

int
db_files_count_method(struct db *db, int64_t job_id, const char *method, struct file_count *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_FILE_COUNT_METHOD];
	int r, rc;

	if ((r = bind(db, st, "it", job_id, method)) < 0)
		return r;
	if ((rc = sqlite3_step(st)) != SQLITE_ROW)
		return db_error(db, rc);
	ret->files = sqlite3_column_int64(st, 0);
	ret->bytes = sqlite3_column_int64(st, 1);
	return 0;
}

int
db_drive_set_log_status(struct db *db, int64_t drive_id, const char *status)
{
	int r;

	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = run(db, STMT_DRIVE_SET_LOG_STATUS, drive_id, "t", status);
	if (r >= 0 && sqlite3_changes(db->sqlite) == 0)
		r = -ENOENT;
	return tx_end(db, r);
}

/* Step st, bound to ?1 = id, to its one row: 0, -ENOENT without one. */
static int
step_row(struct db *db, sqlite3_stmt *st, int64_t id)
{
	int r, rc;

	if ((r = bind(db, st, "i", id)) < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	return rc == SQLITE_ROW ? 0 : db_error(db, rc);
}

int
db_drive_log_status(struct db *db, int64_t drive_id, char **ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_DRIVE_LOG_STATUS];
	int r;

	*ret = NULL;
	if ((r = step_row(db, st, drive_id)) < 0)
		return r;
	*ret = col_str(st, 0);
	return 0;
}

int
db_job_state_since(struct db *db, int64_t job_id, int64_t *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_JOB_STATE_SINCE];
	int r;

	*ret = 0;
	if ((r = step_row(db, st, job_id)) < 0)
		return r;
	*ret = sqlite3_column_int64(st, 0);
	return 0;
}

int
db_drive_network_repair(struct db *db, int64_t drive_id, bool *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_DRIVE_NETWORK_REPAIR];
	int r;

	*ret = false;
	if ((r = step_row(db, st, drive_id)) < 0)
		return r;
	*ret = sqlite3_column_int64(st, 0) != 0;
	return 0;
}

int
db_file_by_path(struct db *db, int64_t job_id, const char *rel_path, struct file_row *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_FILE_ROW_BY_PATH];
	int r, rc;

	if ((r = bind(db, st, "it", job_id, rel_path)) < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return db_error(db, rc);
	file_row_read(st, ret);
	return 0;
}

void
file_row_free_one(struct file_row *f)
{
	file_row_done(f);
	*f = (struct file_row){0};
}

int
db_files_page_not_ok(struct db *db, int64_t job_id, int64_t after_id, size_t limit,
		     struct file_row **ret, size_t *ret_n)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_FILE_PAGE_NOT_OK];
	struct file_row *rows;
	size_t n = 0;
	int r, rc;

	if (limit == 0)
		return -EINVAL;
	if ((r = bind(db, st, "iii", job_id, after_id, (int64_t)limit)) < 0)
		return r;
	rows = xcalloc(limit, sizeof(*rows));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		file_row_read(st, &rows[n++]);
	if (rc != SQLITE_DONE) {
		file_rows_free(rows, n);
		return db_error(db, rc);
	}
	*ret = rows;
	*ret_n = n;
	return 0;
}

/* ---- Removing drives and purging jobs (issue 12) ------------------------------ */

/* What the drive holds (STMT_DRIVE_HELD), inside the caller's transaction. */
static int
drive_held(struct db *db, int64_t drive_id, struct drive_held *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_DRIVE_HELD];
	int r, rc;

	if ((r = bind(db, st, "i", drive_id)) < 0)
		return r;
	if ((rc = sqlite3_step(st)) != SQLITE_ROW)
		return db_error(db, rc);
	*ret = (struct drive_held){
	    .verified_files = sqlite3_column_int64(st, 0),
	    .verified_bytes = sqlite3_column_int64(st, 1),
	    .reread_files = sqlite3_column_int64(st, 2),
	    .planned_files = sqlite3_column_int64(st, 3),
	};
	return 0;
}

static char *
drive_removed_text(const char *serial, const struct drive_held *h)
{
	char b[32];

	if (h->verified_files == 0 && h->planned_files == 0)
		return xprintf("drive %s removed", serial);
	format_iec(h->verified_bytes, b);
	return xprintf("drive %s removed; its %" PRId64 " verified files (%s) and %" PRId64
		       " planned ones wait for a drive again",
		       serial, h->verified_files, b, h->planned_files);
}

int
db_drive_remove(struct db *db, int64_t job_id, int64_t drive_id, bool force, int64_t now,
		struct drive_held *ret)
{
	_cleanup_free_ char *text = NULL;
	struct drive_row row = {0};
	struct drive_held h = {0};
	int r;

	if ((r = db_drive_get(db, drive_id, &row)) < 0)
		return r;
	if (row.job_id != job_id) {
		drive_row_done(&row);
		return -ENOENT;
	}
	if ((r = db_tx_begin(db)) < 0)
		goto out;
	r = drive_held(db, drive_id, &h);
	if (r >= 0 && h.verified_files > 0 && !force)
		r = -ENOTEMPTY;
	if (r >= 0 && h.verified_files > 0)
		r = job_add_copied(db, job_id, -h.verified_files, -h.verified_bytes,
		                   -h.reread_files, now);
	if (r >= 0)
		r = run(db, STMT_DRIVE_FREE_BLOCKS, drive_id, "");
	if (r >= 0)
		r = run(db, STMT_DRIVE_FREE_FILES, drive_id, "");
	/* Its secrets go with it (ON DELETE CASCADE); secure_delete zeroes their pages. */
	if (r >= 0)
		r = run(db, STMT_DRIVE_DELETE, drive_id, "i", job_id);
	if (r >= 0 && sqlite3_changes(db->sqlite) == 0)
		r = -ENOENT;
	if (r >= 0) {
		text = drive_removed_text(row.serial, &h);
		r = event_insert(db, job_id, "drive", text, now);
	}
	if ((r = tx_end(db, r)) >= 0)
		wal_scrub(db);
out:
	if (ret != NULL && (r >= 0 || r == -ENOTEMPTY))
		*ret = h;
	drive_row_done(&row);
	return r;
}

int
db_job_purge(struct db *db, int64_t id, int64_t now)
{
	struct job_row *j = NULL;
	int r;

	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = run(db, STMT_JOB_PURGE, id, "i", now);
	if (r >= 0 && sqlite3_changes(db->sqlite) == 0)
		r = db_job_get_by_id(db, id, &j) == 0 ? -ESTALE : -ENOENT;
	if (r >= 0)
		r = run(db, STMT_SECRET_DELETE_JOB, id, "");
	job_row_free(j);
	if ((r = tx_end(db, r)) >= 0)
		wal_scrub(db);
	return r;
}

int
db_purge_next(struct db *db, int64_t *ret_id)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_JOB_PURGED_NEXT];
	int rc = sqlite3_step(st);

	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return db_error(db, rc);
	*ret_id = sqlite3_column_int64(st, 0);
	return 0;
}

/*
 * The next files of a purged job past *cursor, as many as fit in
 * max_blocks blocks (at least one file): the ids first..last.
 */
static int
purge_window(struct db *db, int64_t job_id, int64_t cursor, int64_t max_blocks,
	     int64_t *ret_first, int64_t *ret_last)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_PURGE_FILE_PAGE];
	int64_t blocks = 0, n = 0;
	int r, rc = SQLITE_DONE;

	if ((r = bind(db, st, "iii", job_id, cursor, (int64_t)DB_PURGE_FILES)) < 0)
		return r;
	while ((n == 0 || blocks < max_blocks) && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n++ == 0)
			*ret_first = sqlite3_column_int64(st, 0);
		*ret_last = sqlite3_column_int64(st, 0);
		blocks += sqlite3_column_int64(st, 1); /* a file's blocks: 0..checkpoint-1 */
	}
	if (n == 0 && rc != SQLITE_DONE)
		return db_error(db, rc);
	return n > 0;
}

int
db_purge_step(struct db *db, int64_t job_id, int64_t *cursor)
{
	int64_t first = 0, last = 0;
	int n = 0, r;

	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = purge_window(db, job_id, *cursor, DB_PURGE_BLOCKS, &first, &last);
	if (r > 0) {
		r = run(db, STMT_PURGE_BLOCKS, job_id, "ii", first, last);
		if (r >= 0)
			r = run(db, STMT_PURGE_FILES, job_id, "ii", first, last);
		n = sqlite3_changes(db->sqlite);
	} else if (r == 0) {
		r = run(db, STMT_PURGE_EVENTS, job_id, "i", (int64_t)DB_PURGE_FILES);
		n = sqlite3_changes(db->sqlite);
		if (r >= 0 && n == 0)
			r = run(db, STMT_PURGE_JOB, job_id, "");
	}
	if ((r = tx_end(db, r)) < 0)
		return r;
	if (last > 0)
		*cursor = last;
	return n;
}
