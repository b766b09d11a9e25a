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
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db-internal.h"
#include "job.h"
#include "util.h"

/* ---- Errors, statements, binding ------------------------------------------ */

/* Written once at start, before any worker thread opens a connection. */
static void (*default_fault_hook)(void *arg, int err, const char *msg);
static void *default_fault_arg;

void
db_set_default_fault_hook(void (*fn)(void *arg, int err, const char *msg), void *arg)
{
	default_fault_hook = fn;
	default_fault_arg = arg;
}

void
db_set_fault_hook(struct db *db, void (*fn)(void *arg, int err, const char *msg), void *arg)
{
	db->fault_hook = fn;
	db->fault_arg = arg;
}

/* The file cannot be written at all (not a busy lock, a constraint or a lost race). */
static int
write_fault(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_IOERR:
	case SQLITE_CANTOPEN:
		return -EIO;
	default:
		return 0;
	}
}

int
db_error(struct db *db, int rc)
{
	int fault;

	(void)snprintf(db->errmsg, sizeof(db->errmsg), "%s", sqlite3_errmsg(db->sqlite));
	if (db->fault_hook != NULL && !db->readonly && (fault = write_fault(rc)) != 0)
		db->fault_hook(db->fault_arg, fault, db->errmsg);
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
void
stmt_resetp(sqlite3_stmt **st)
{
	if (*st == NULL)
		return;
	(void)sqlite3_reset(*st);
	(void)sqlite3_clear_bindings(*st);
}

/*
 * Bind parameters first, first+1, ... by a type string: 'i' int64_t,
 * 't' const char * (NULL binds NULL), 's' enum job_state stored by name
 * (_JOB_STATE_INVALID binds NULL), 'b' a blob as const void *, size_t (NULL
 * binds NULL).
 */
int
db_bind_va(struct db *db, sqlite3_stmt *st, int first, const char *types, va_list ap)
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

int
db_bind(struct db *db, sqlite3_stmt *st, const char *types, ...)
{
	va_list ap;
	int r;

	va_start(ap, types);
	r = db_bind_va(db, st, 1, types, ap);
	va_end(ap);
	return r;
}

/* Like db_bind(), from parameter `first` on. */
int
db_bind_at(struct db *db, sqlite3_stmt *st, int first, const char *types, ...)
{
	va_list ap;
	int r;

	va_start(ap, types);
	r = db_bind_va(db, st, first, types, ap);
	va_end(ap);
	return r;
}

/* Step a statement that returns no row. */
int
step_done(struct db *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	return db_error(db, rc);
}

/* Run statement s with ?1 = id and the rest bound by types from ?2; no row expected. */
int
db_run(struct db *db, enum db_stmt s, int64_t id, const char *types, ...)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[s];
	va_list ap;
	int r;

	if ((r = db_bind(db, st, "i", id)) < 0)
		return r;
	va_start(ap, types);
	r = db_bind_va(db, st, 2, types, ap);
	va_end(ap);
	if (r < 0)
		return r;
	return step_done(db, st);
}

char *
col_str(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	return s != NULL ? xstrdup((const char *)s) : NULL;
}

enum job_state
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
int
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
int
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

static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

/*
 * Before the first connection: no memory statistics. With them every
 * sqlite3_malloc() and free takes one process-wide mutex, and a worker
 * thread (5 nicer than the loop) preempted while holding it made the loop
 * wait ~5 ms at a time during drive prep. seedd never reads them.
 */
static void
sqlite_setup(void)
{
	(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	(void)sqlite3_initialize();
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
	pthread_once(&sqlite_once, sqlite_setup);
	db = xcalloc(1, sizeof(*db));
	db->fault_hook = default_fault_hook;
	db->fault_arg = default_fault_arg;
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
	pthread_once(&sqlite_once, sqlite_setup);
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
