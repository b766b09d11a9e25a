/*
 * The job store: the one SQLite write connection, owned and used only by the
 * loop thread. Opens the file (mode 0600, WAL, synchronous=FULL,
 * foreign_keys=ON, busy_timeout), migrates it (db-migrate.c), prepares every
 * statement of db_statements[] once, and owns every commit: a commit hook
 * aborts the process on any commit not issued by db_tx_commit(). Each job
 * transition is one BEGIN IMMEDIATE transaction of a guarded UPDATE plus an
 * event row, checked against job_next() first.
 *
 * Rows handed out are copies made with the x* allocators, which abort on
 * exhaustion; that is safe because all state lives here and a restart resumes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "db-internal.h"
#include "job.h"
#include "util.h"

#define DB_BUSY_TIMEOUT_MS 5000

#define JOB_COLUMNS                                                                                \
	"id, name, state, failed_state, phase, staging_path, container, files, bytes, "            \
	"copied_files, copied_bytes, verified_files, azure_job_name, azure_state, carrier, "       \
	"tracking_number, ship_deadline, error, attempts, created, updated"

/* No statement here may read the secrets table; test-db.c checks that. */
/* clang-format off */
const char *const db_statements[_STMT_MAX] = {
	[STMT_JOB_INSERT] = "INSERT INTO jobs (name, state, phase, staging_path, container, "
			    "created, updated) VALUES (?1, 'staging', 'indexing', ?2, ?3, ?4, ?4)",
	[STMT_JOB_BY_NAME] = "SELECT " JOB_COLUMNS " FROM jobs WHERE name = ?1",
	[STMT_JOB_BY_ID] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1",
	[STMT_JOB_LIST] = "SELECT " JOB_COLUMNS " FROM jobs ORDER BY id",
	[STMT_JOB_STATE] = "SELECT state, failed_state FROM jobs WHERE id = ?1",
	[STMT_JOB_COUNT] = "SELECT state, count(*) FROM jobs GROUP BY state",
	[STMT_JOB_ADVANCE] = "UPDATE jobs SET state = ?3, phase = ?4, updated = ?5 "
			     "WHERE id = ?1 AND state = ?2",
	[STMT_JOB_FAIL] = "UPDATE jobs SET state = 'failed', failed_state = ?2, error = ?3, "
			  "updated = ?4 WHERE id = ?1 AND state = ?2",
	[STMT_JOB_RETRY] = "UPDATE jobs SET state = failed_state, failed_state = NULL, "
			   "error = NULL, attempts = attempts + 1, next_attempt_at = 0, "
			   "updated = ?3 WHERE id = ?1 AND state = 'failed' AND failed_state = ?2",
	[STMT_JOB_CANCEL] = "UPDATE jobs SET state = 'cancelled', failed_state = NULL, "
			    "updated = ?3 WHERE id = ?1 AND state = ?2",
	[STMT_JOB_SET_PHASE] = "UPDATE jobs SET phase = ?3, updated = ?4 "
			       "WHERE id = ?1 AND state = ?2",
	[STMT_JOB_SET_TRACKING] = "UPDATE jobs SET carrier = ?2, tracking_number = ?3, "
				  "updated = ?4 WHERE id = ?1",
	[STMT_EVENT_INSERT] = "INSERT INTO events (job_id, time, kind, state, text) "
			      "VALUES (?1, ?2, ?3, (SELECT state FROM jobs WHERE id = ?1), ?4)",
	[STMT_EVENT_LIST] = "SELECT time, kind, state, text FROM (SELECT id, time, kind, state, "
			    "text FROM events WHERE job_id = ?1 ORDER BY id DESC LIMIT ?2) "
			    "ORDER BY id",
	[STMT_DRIVE_LIST] = "SELECT id, job_id, serial, path, capacity, used_bytes, files, state, "
			    "manifest_hash FROM drives WHERE job_id = ?1 ORDER BY id",
};
/* clang-format on */

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
 * (_JOB_STATE_INVALID binds NULL).
 */
static int
bind_va(struct db *db, sqlite3_stmt *st, int first, const char *types, va_list ap)
{
	const char *s;
	int rc = SQLITE_OK;

	for (int i = first; *types != '\0' && rc == SQLITE_OK; types++, i++) {
		switch (*types) {
		case 'i':
			rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
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
	    {"busy_timeout", DB_BUSY_TIMEOUT_MS},
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
 * because switching to WAL counts as a commit.
 */
static int
configure(struct db *db)
{
	static const char pragmas[] = "PRAGMA foreign_keys = ON;"
	                              "PRAGMA journal_mode = WAL;"
	                              "PRAGMA synchronous = FULL;";
	int rc;

	(void)sqlite3_extended_result_codes(db->sqlite, 1);
	if ((rc = sqlite3_busy_timeout(db->sqlite, DB_BUSY_TIMEOUT_MS)) != SQLITE_OK)
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
db_open(const char *path, struct db **ret, char **ret_err)
{
	_cleanup_(db_closep) struct db *db = NULL;
	int r, rc;

	if ((r = create_file(path)) < 0) {
		xasprintf(ret_err, "creating %s: %s", path, strerror(-r));
		return r;
	}
	db = xcalloc(1, sizeof(*db));
	rc = sqlite3_open_v2(path, &db->sqlite, SQLITE_OPEN_READWRITE, NULL);
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
		rows[n++] = (struct drive_row){
		    .id = sqlite3_column_int64(st, 0),
		    .job_id = sqlite3_column_int64(st, 1),
		    .serial = col_str(st, 2),
		    .path = col_str(st, 3),
		    .capacity = sqlite3_column_int64(st, 4),
		    .used_bytes = sqlite3_column_int64(st, 5),
		    .files = sqlite3_column_int64(st, 6),
		    .state = col_str(st, 7),
		    .manifest_hash = col_str(st, 8),
		};
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
drive_rows_free(struct drive_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(rows[i].serial);
		free(rows[i].path);
		free(rows[i].state);
		free(rows[i].manifest_hash);
	}
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
           int64_t now, int64_t *ret_id)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_JOB_INSERT];
	int r;

	if ((r = bind(db, st, "ttti", name, staging_path, container, now)) < 0 ||
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

/* ---- Writing: one transaction each -------------------------------------------- */

int
db_job_create(struct db *db, const char *name, const char *staging_path, const char *container,
              int64_t now, int64_t *ret_id)
{
	_cleanup_free_ char *text = NULL;
	int64_t id = 0;
	int r;

	if (!job_name_valid(name) || staging_path == NULL)
		return -EINVAL;
	text = xprintf("created from %s", staging_path);
	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = job_insert(db, name, staging_path, container, now, &id);
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
	return tx_end(db, r);
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
	_cleanup_free_ char *text = NULL;
	enum job_state step = _JOB_STATE_INVALID;
	int r;

	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = retry_step(db, id, &step);
	if (r >= 0)
		r = job_update(db, STMT_JOB_RETRY, id, "si", step, now);
	if (r >= 0) {
		text = xprintf("resuming %s", job_state_to_string(step));
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
	return tx_end(db, r);
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
