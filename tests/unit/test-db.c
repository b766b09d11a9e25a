/*
 * The job store on a temporary directory: open, create mode and PRAGMAs,
 * migrations and the newer-schema refusal, every transition function with
 * its event row and its -ESTALE/-EINVAL/-ENOENT cases, counts, event limits,
 * tracking uniqueness, atomicity when the event INSERT fails, and the commit
 * guard. Then the drive-prep store: scanner batches and rescans, totals,
 * paging, placement, checkpoints, verified files and their counters,
 * reindex/unplace, drives, secrets, the read-only connection (from a
 * thread), the Azure job and drive fields, the query plans, and a 200k-file
 * run. White-box: a second raw SQLite connection and db-internal.h are used
 * to look at and tamper with the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db-internal.h"
#include "db.h"
#include "job.h"
#include "test.h"
#include "util.h"

static char tmpdir[] = "/tmp/test-db.XXXXXX";

/* A fresh database path in the temp dir. */
static char *
db_path(const char *name)
{
	return xprintf("%s/%s.db", tmpdir, name);
}

static struct db *
open_ok(const char *path)
{
	struct db *db = NULL;
	_cleanup_free_ char *err = NULL;
	int r = db_open(path, &db, &err);

	if (r < 0)
		fprintf(stderr, "db_open: %d %s\n", r, err ? err : "(no message)");
	check_int(r, 0);
	check(db != NULL);
	check(err == NULL);
	return db;
}

static sqlite3 *
raw_open(const char *path)
{
	sqlite3 *raw = NULL;

	check_int(sqlite3_open(path, &raw), SQLITE_OK);
	check_int(sqlite3_busy_timeout(raw, 5000), SQLITE_OK);
	return raw;
}

static void
raw_exec(sqlite3 *raw, const char *sql)
{
	int rc = sqlite3_exec(raw, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(raw));
	check_int(rc, SQLITE_OK);
}

/* The first column of the first row of sql as an integer. */
static int64_t
raw_int(sqlite3 *raw, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v;

	check_int(sqlite3_prepare_v2(raw, sql, -1, &st, NULL), SQLITE_OK);
	check_int(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static char *
raw_text(sqlite3 *raw, const char *sql)
{
	sqlite3_stmt *st;
	char *v;

	check_int(sqlite3_prepare_v2(raw, sql, -1, &st, NULL), SQLITE_OK);
	check_int(sqlite3_step(st), SQLITE_ROW);
	v = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return v;
}

static int64_t
new_job(struct db *db, const char *name)
{
	int64_t id = -1;

	check_int(db_job_create(db, name, "/srv/staging", "vault", 1000, &id), 0);
	check(id > 0);
	return id;
}

static struct job_row *
get(struct db *db, int64_t id)
{
	struct job_row *j = NULL;

	check_int(db_job_get_by_id(db, id, &j), 0);
	check(j != NULL);
	return j;
}

static enum job_state
state_of(struct db *db, int64_t id)
{
	struct job_row *j = get(db, id);
	enum job_state s = j->state;

	job_row_free(j);
	return s;
}

static size_t
event_count(struct db *db, int64_t id)
{
	struct event_row *ev = NULL;
	size_t n = 0;

	check_int(db_event_list(db, id, 0, &ev, &n), 0);
	event_rows_free(ev, n);
	return n;
}

/* The job's newest event has this kind, state and text (text NULL: any). */
static void
check_last_event(struct db *db, int64_t id, const char *kind, enum job_state s, const char *text)
{
	struct event_row *ev = NULL;
	size_t n = 0;

	check_int(db_event_list(db, id, 1, &ev, &n), 0);
	check_int(n, 1);
	check_str(ev[0].kind, kind);
	check_int(ev[0].state, s);
	if (text != NULL)
		check_str(ev[0].text, text);
	event_rows_free(ev, n);
}

static void
test_create_mode_pragmas(void)
{
	_cleanup_free_ char *path = db_path("mode");
	_cleanup_free_ char *wal = xprintf("%s-wal", path);
	_cleanup_free_ char *err = NULL;
	int64_t v;
	struct stat st;
	struct db *db;
	int fd;

	/* A file that exists with a looser mode is tightened to 0600. */
	check((fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) >= 0);
	check(fchmod(fd, 0644) == 0);
	close(fd);
	db = open_ok(path);
	check(stat(path, &st) == 0);
	check_int(st.st_mode & 07777, 0600);
	check(stat(wal, &st) == 0);
	check_int(st.st_mode & 07777, 0600);
	check_int(db_schema_version_found(db), 0);

	check_int(db_pragma_check(db, &err), 0);
	check(err == NULL);
	/* And read back directly on the connection. */
	check_int(db_pragma_int(db, "synchronous", &v), 0);
	check_int(v, 2);
	check_int(db_pragma_int(db, "foreign_keys", &v), 0);
	check_int(v, 1);
	/* The busy wait is seedd's own handler (busy_cb), so PRAGMA busy_timeout reads 0. */
	check_int(db->busy_ms, 5000);
	check_int(db_pragma_int(db, "user_version", &v), 0);
	check_int(v, DB_SCHEMA_VERSION);
	{
		sqlite3 *raw = raw_open(path);
		_cleanup_free_ char *mode = raw_text(raw, "PRAGMA journal_mode");

		check_str(mode, "wal");
		sqlite3_close(raw);
	}
	/* The check notices a setting that is off. */
	check_int(sqlite3_exec(db->sqlite, "PRAGMA foreign_keys = OFF", NULL, NULL, NULL), 0);
	check_int(db_pragma_check(db, &err), -EIO);
	check(err != NULL && strstr(err, "foreign_keys") != NULL);
	db_close(db);

	/* A fresh file is created 0600 whatever the umask. */
	{
		_cleanup_free_ char *fresh = db_path("fresh");
		mode_t old = umask(0);

		db = open_ok(fresh);
		umask(old);
		check(stat(fresh, &st) == 0);
		check_int(st.st_mode & 07777, 0600);
		db_close(db);
	}
}

static void
test_reopen(void)
{
	_cleanup_free_ char *path = db_path("reopen");
	struct job_row *j = NULL;
	struct db *db = open_ok(path);
	int64_t id = new_job(db, "keep-me");

	check_int(db_job_advance(db, id, JOB_STAGING, JOB_DRIVE_PREP, "copying", NULL, 1001), 0);
	db_close(db);

	db = open_ok(path);
	check_int(db_schema_version_found(db), DB_SCHEMA_VERSION);
	check_int(db_job_get(db, "keep-me", &j), 0);
	check_int(j->id, id);
	check_int(j->state, JOB_DRIVE_PREP);
	check_str(j->phase, "copying");
	check_str(j->staging_path, "/srv/staging");
	check_str(j->container, "vault");
	check_int(j->created, 1000);
	check_int(j->updated, 1001);
	job_row_free(j);
	check_int(event_count(db, id), 2);
	db_close(db);
}

static void
test_migrate_from_zero(void)
{
	_cleanup_free_ char *path = db_path("zero");
	static const char *const tables[] = {"jobs",   "files",   "blocks",
	                                     "drives", "secrets", "events"};
	sqlite3 *raw = raw_open(path);
	struct db *db;

	/* A database SQLite made, with user_version 0 and no tables. */
	raw_exec(raw, "PRAGMA user_version = 0");
	sqlite3_close(raw);
	db = open_ok(path);
	check_int(db_schema_version_found(db), 0);
	db_close(db);

	raw = raw_open(path);
	check_int(raw_int(raw, "PRAGMA user_version"), DB_SCHEMA_VERSION);
	for (size_t i = 0; i < ELEMENTSOF(tables); i++) {
		_cleanup_free_ char *q = xprintf(
		    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'",
		    tables[i]);
		check_int(raw_int(raw, q), 1);
	}
	/* Deleting a job cascades to its events. */
	raw_exec(raw, "PRAGMA foreign_keys = ON");
	raw_exec(raw, "INSERT INTO jobs (name, state, staging_path, created, updated) "
	              "VALUES ('x', 'staging', '/s', 1, 1)");
	raw_exec(raw,
	         "INSERT INTO events (job_id, time, kind) VALUES (last_insert_rowid(), 1, 'n')");
	raw_exec(raw, "DELETE FROM jobs WHERE name = 'x'");
	check_int(raw_int(raw, "SELECT count(*) FROM events"), 0);
	/* The state column refuses a name that is not a state. */
	check(sqlite3_exec(raw,
	                   "INSERT INTO jobs (name, state, staging_path, created, updated) "
	                   "VALUES ('y', 'bogus', '/s', 1, 1)",
	                   NULL, NULL, NULL) != SQLITE_OK);
	sqlite3_close(raw);
}

static void
test_migration_failure_is_atomic(void)
{
	_cleanup_free_ char *path = db_path("broken");
	_cleanup_free_ char *err = NULL;
	struct db *db = NULL;
	sqlite3 *raw = raw_open(path);

	/* A stray jobs table makes step 1 fail half-way. */
	raw_exec(raw, "CREATE TABLE jobs (x INTEGER)");
	sqlite3_close(raw);
	check(db_open(path, &db, &err) < 0);
	check(db == NULL);
	check(err != NULL && strstr(err, "schema version 1") != NULL);

	raw = raw_open(path);
	check_int(raw_int(raw, "PRAGMA user_version"), 0);
	check_int(raw_int(raw, "SELECT count(*) FROM sqlite_master WHERE name = 'files'"), 0);
	sqlite3_close(raw);
}

static void
test_newer_schema_refused(void)
{
	_cleanup_free_ char *path = db_path("newer");
	_cleanup_free_ char *err = NULL;
	_cleanup_free_ char *want = NULL;
	_cleanup_free_ char *newer = xprintf("PRAGMA user_version = %d", DB_SCHEMA_VERSION + 1);
	struct db *db = NULL;
	sqlite3 *raw = raw_open(path);

	raw_exec(raw, newer);
	sqlite3_close(raw);
	check_int(db_open(path, &db, &err), -EPROTO);
	check(db == NULL);
	want = xprintf("database schema version %d is newer than this seedd supports (%d); "
	               "upgrade seedd",
	               DB_SCHEMA_VERSION + 1, DB_SCHEMA_VERSION);
	check_str(err, want);

	raw = raw_open(path);
	check_int(raw_int(raw, "PRAGMA user_version"), DB_SCHEMA_VERSION + 1);
	sqlite3_close(raw);
}

static void
test_not_a_database(void)
{
	_cleanup_free_ char *path = db_path("garbage");
	_cleanup_free_ char *err = NULL;
	struct db *db = NULL;
	FILE *f = fopen(path, "w");

	check(f != NULL);
	for (int i = 0; i < 64; i++)
		fputs("this is not an SQLite file ", f);
	fclose(f);
	check_int(db_open(path, &db, &err), -EIO);
	check(db == NULL);
	check(err != NULL && strstr(err, path) != NULL);
}

static void
test_create(struct db *db)
{
	struct job_row *j = NULL;
	int64_t id = new_job(db, "alpha"), other = 0;

	j = get(db, id);
	check_str(j->name, "alpha");
	check_int(j->state, JOB_STAGING);
	check_str(j->phase, "indexing");
	check_int(j->failed_state, _JOB_STATE_INVALID);
	check(j->error == NULL);
	check(j->tracking_number == NULL);
	check_int(j->attempts, 0);
	check_int(j->created, 1000);
	check_int(j->updated, 1000);
	job_row_free(j);
	check_int(event_count(db, id), 1);
	check_last_event(db, id, DB_EVENT_CREATED, JOB_STAGING, "created from /srv/staging");

	check_int(db_job_create(db, "alpha", "/elsewhere", NULL, 1005, &other), -EEXIST);
	check_int(other, 0);
	check_int(db_job_create(db, "a", "/s", NULL, 1005, &other), -EINVAL);
	check_int(db_job_create(db, "bad/name", "/s", NULL, 1005, &other), -EINVAL);
	check_int(db_job_get(db, "nope", &j), -ENOENT);
	check_int(db_job_get_by_id(db, 424242, &j), -ENOENT);
	check_int(event_count(db, id), 1);
}

static void
test_advance(struct db *db)
{
	static const enum job_state path[] = {JOB_STAGING,  JOB_DRIVE_PREP, JOB_SHIPPED,
	                                      JOB_IMPORTED, JOB_VAULT_COPY, JOB_CLEANUP,
	                                      JOB_DONE};
	int64_t id = new_job(db, "advance");
	struct job_row *j;

	/* Forbidden moves change nothing. */
	check_int(db_job_advance(db, id, JOB_STAGING, JOB_SHIPPED, "x", NULL, 1), -EINVAL);
	check_int(db_job_advance(db, id, JOB_STAGING, JOB_FAILED, "x", NULL, 1), -EINVAL);
	check_int(db_job_advance(db, id, JOB_STAGING, JOB_CANCELLED, "x", NULL, 1), -EINVAL);
	check_int(db_job_advance(db, id, JOB_STAGING, JOB_STAGING, "x", NULL, 1), -EINVAL);
	check_int(db_job_advance(db, 999999, JOB_STAGING, JOB_DRIVE_PREP, "x", NULL, 1), -ENOENT);
	/* A stale `from` changes nothing. */
	check_int(db_job_advance(db, id, JOB_DRIVE_PREP, JOB_SHIPPED, "x", NULL, 1), -ESTALE);
	check_int(event_count(db, id), 1);

	for (size_t i = 0; i + 1 < ELEMENTSOF(path); i++) {
		check_int(
		    db_job_advance(db, id, path[i], path[i + 1], "step", NULL, 2000 + (int64_t)i),
		    0);
		check_int(state_of(db, id), path[i + 1]);
		_cleanup_free_ char *text = xprintf("%s -> %s", job_state_to_string(path[i]),
		                                    job_state_to_string(path[i + 1]));
		check_last_event(db, id, DB_EVENT_TRANSITION, path[i + 1], text);
		/* Repeating the same move is now stale. */
		check_int(db_job_advance(db, id, path[i], path[i + 1], "step", NULL, 1), -ESTALE);
	}
	check_int(event_count(db, id), ELEMENTSOF(path));
	j = get(db, id);
	check_int(j->updated, 2005);
	check_str(j->phase, "step");
	job_row_free(j);

	id = new_job(db, "advance-text");
	check_int(db_job_advance(db, id, JOB_STAGING, JOB_DRIVE_PREP, NULL, "plan ok", 5), 0);
	check_last_event(db, id, DB_EVENT_TRANSITION, JOB_DRIVE_PREP, "plan ok");
	j = get(db, id);
	check_str(j->phase, "");
	job_row_free(j);
}

static void
test_fail_retry(struct db *db)
{
	int64_t id = new_job(db, "failing");
	enum job_state resumed = _JOB_STATE_INVALID;
	struct job_row *j;

	check_int(db_job_advance(db, id, JOB_STAGING, JOB_DRIVE_PREP, "copying", NULL, 1), 0);
	check_int(db_job_retry(db, id, 2, &resumed), -ESTALE);
	check_int(resumed, _JOB_STATE_INVALID);
	check_int(db_job_fail(db, id, JOB_STAGING, "nope", 2), -ESTALE);
	check_int(db_job_fail(db, id, JOB_DONE, "nope", 2), -EINVAL);
	check_int(db_job_fail(db, id, JOB_FAILED, "nope", 2), -EINVAL);
	check_int(db_job_fail(db, 999999, JOB_DRIVE_PREP, "nope", 2), -ENOENT);
	check_int(event_count(db, id), 2);

	check_int(db_job_fail(db, id, JOB_DRIVE_PREP, "drive sdb: EIO", 3), 0);
	j = get(db, id);
	check_int(j->state, JOB_FAILED);
	check_int(j->failed_state, JOB_DRIVE_PREP);
	check_str(j->error, "drive sdb: EIO");
	check_str(j->phase, "copying");
	check_int(j->updated, 3);
	job_row_free(j);
	check_last_event(db, id, DB_EVENT_FAILED, JOB_FAILED, "drive sdb: EIO");
	check_int(db_job_fail(db, id, JOB_DRIVE_PREP, "again", 3), -ESTALE);

	check_int(db_job_retry(db, id, 4, &resumed), 0);
	check_int(resumed, JOB_DRIVE_PREP);
	j = get(db, id);
	check_int(j->state, JOB_DRIVE_PREP);
	check_int(j->failed_state, _JOB_STATE_INVALID);
	check(j->error == NULL);
	check_int(j->attempts, 1);
	job_row_free(j);
	check_last_event(db, id, DB_EVENT_RETRY, JOB_DRIVE_PREP, "resuming drive_prep");
	check_int(db_job_retry(db, id, 5, &resumed), -ESTALE);

	/* A second failure later in the life resumes that later step. */
	check_int(db_job_advance(db, id, JOB_DRIVE_PREP, JOB_SHIPPED, "polling", NULL, 6), 0);
	check_int(db_job_fail(db, id, JOB_SHIPPED, "azure 500", 7), 0);
	check_int(db_job_retry(db, id, 8, NULL), 0);
	j = get(db, id);
	check_int(j->state, JOB_SHIPPED);
	check_int(j->attempts, 2);
	job_row_free(j);
	check_int(db_job_retry(db, 999999, 8, &resumed), -ENOENT);
	check_int(event_count(db, id), 7);
}

static void
test_cancel(struct db *db)
{
	int64_t a = new_job(db, "cancel-a"), b = new_job(db, "cancel-b"),
	        c = new_job(db, "cancel-c");
	struct job_row *j;

	check_int(db_job_cancel(db, a, JOB_DRIVE_PREP, NULL, 1), -ESTALE);
	check_int(db_job_cancel(db, a, JOB_CLEANUP, NULL, 1), -EINVAL);
	check_int(db_job_cancel(db, a, JOB_DONE, NULL, 1), -EINVAL);
	check_int(db_job_cancel(db, a, JOB_CANCELLED, NULL, 1), -EINVAL);
	check_int(db_job_cancel(db, 999999, JOB_STAGING, NULL, 1), -ENOENT);
	check_int(db_job_cancel(db, a, JOB_STAGING, NULL, 2), 0);
	check_int(state_of(db, a), JOB_CANCELLED);
	check_last_event(db, a, DB_EVENT_CANCELLED, JOB_CANCELLED, "cancelled in staging");
	check_int(db_job_cancel(db, a, JOB_STAGING, NULL, 2), -ESTALE);
	check_int(db_job_advance(db, a, JOB_STAGING, JOB_DRIVE_PREP, "x", NULL, 3), -ESTALE);
	check_int(db_job_set_phase(db, a, JOB_STAGING, "x", 3), -ESTALE);

	/* A failed job can be cancelled; it then has no step to resume. */
	check_int(db_job_fail(db, b, JOB_STAGING, "lint", 2), 0);
	check_int(db_job_cancel(db, b, JOB_FAILED, "operator gave up", 3), 0);
	j = get(db, b);
	check_int(j->state, JOB_CANCELLED);
	check_int(j->failed_state, _JOB_STATE_INVALID);
	job_row_free(j);
	check_last_event(db, b, DB_EVENT_CANCELLED, JOB_CANCELLED, "operator gave up");
	check_int(db_job_retry(db, b, 4, NULL), -ESTALE);

	/* Not once cleanup started. */
	check_int(db_job_advance(db, c, JOB_STAGING, JOB_DRIVE_PREP, "", NULL, 1), 0);
	check_int(db_job_advance(db, c, JOB_DRIVE_PREP, JOB_SHIPPED, "", NULL, 1), 0);
	check_int(db_job_advance(db, c, JOB_SHIPPED, JOB_IMPORTED, "", NULL, 1), 0);
	check_int(db_job_advance(db, c, JOB_IMPORTED, JOB_VAULT_COPY, "", NULL, 1), 0);
	check_int(db_job_advance(db, c, JOB_VAULT_COPY, JOB_CLEANUP, "", NULL, 1), 0);
	check_int(db_job_cancel(db, c, JOB_CLEANUP, NULL, 2), -EINVAL);
	check_int(state_of(db, c), JOB_CLEANUP);
}

static void
test_set_phase(struct db *db)
{
	int64_t id = new_job(db, "phased");
	struct job_row *j;

	check_int(db_job_set_phase(db, id, JOB_STAGING, "linting", 50), 0);
	j = get(db, id);
	check_str(j->phase, "linting");
	check_int(j->state, JOB_STAGING);
	check_int(j->updated, 50);
	job_row_free(j);
	check_last_event(db, id, DB_EVENT_PHASE, JOB_STAGING, "linting");
	check_int(db_job_set_phase(db, id, JOB_DRIVE_PREP, "copying", 51), -ESTALE);
	check_int(db_job_set_phase(db, id, JOB_DONE, "x", 51), -EINVAL);
	check_int(db_job_set_phase(db, id, JOB_FAILED, "x", 51), -EINVAL);
	check_int(db_job_set_phase(db, id, JOB_STAGING, NULL, 51), -EINVAL);
	check_int(db_job_set_phase(db, 999999, JOB_STAGING, "x", 51), -ENOENT);
	check_int(event_count(db, id), 2);
}

static void
test_counts_and_list(struct db *db)
{
	int64_t counts[_JOB_STATE_MAX], total = 0;
	struct job_row **rows = NULL;
	size_t n = 0;

	check_int(db_job_count_by_state(db, counts), 0);
	check_int(db_job_list(db, &rows, &n), 0);
	for (int s = 0; s < _JOB_STATE_MAX; s++)
		total += counts[s];
	check_int(total, n);
	for (size_t i = 0; i < n; i++) {
		int64_t same = 0;
		if (i > 0)
			check(rows[i]->id > rows[i - 1]->id);
		for (size_t k = 0; k < n; k++)
			same += rows[k]->state == rows[i]->state;
		check_int(counts[rows[i]->state], same);
	}
	job_rows_free(rows, n);
}

static void
test_counts_fresh(const char *path)
{
	int64_t counts[_JOB_STATE_MAX];
	struct db *db = open_ok(path);
	int64_t a = new_job(db, "c-one");

	(void)new_job(db, "c-two");
	(void)new_job(db, "c-three");
	check_int(db_job_advance(db, a, JOB_STAGING, JOB_DRIVE_PREP, "", NULL, 1), 0);
	check_int(db_job_fail(db, a, JOB_DRIVE_PREP, "x", 1), 0);
	memset(counts, 0x55, sizeof(counts));
	check_int(db_job_count_by_state(db, counts), 0);
	check_int(counts[JOB_STAGING], 2);
	check_int(counts[JOB_FAILED], 1);
	check_int(counts[JOB_DRIVE_PREP], 0);
	check_int(counts[JOB_DONE], 0);
	db_close(db);
}

static void
test_events(struct db *db)
{
	int64_t id = new_job(db, "chatty");
	struct event_row *ev = NULL;
	size_t n = 0;

	for (int i = 0; i < 5; i++) {
		_cleanup_free_ char *t = xprintf("note %d", i);
		check_int(db_event_add(db, id, DB_EVENT_NOTE, t, 100 + i), 0);
	}
	check_int(db_event_list(db, id, 3, &ev, &n), 0);
	check_int(n, 3);
	check_str(ev[0].text, "note 2");
	check_str(ev[2].text, "note 4");
	check_int(ev[0].time, 102);
	check_int(ev[2].state, JOB_STAGING);
	event_rows_free(ev, n);

	check_int(db_event_list(db, id, 0, &ev, &n), 0);
	check_int(n, 6);
	check_str(ev[0].kind, DB_EVENT_CREATED);
	check_str(ev[5].text, "note 4");
	event_rows_free(ev, n);
	check_int(db_event_list(db, id, 100, &ev, &n), 0);
	check_int(n, 6);
	event_rows_free(ev, n);

	check_int(db_event_add(db, 999999, DB_EVENT_NOTE, "x", 1), -ENOENT);
	check_int(db_event_add(db, id, "", "x", 1), -EINVAL);
	check_int(db_event_list(db, 999999, 0, &ev, &n), 0);
	check_int(n, 0);
	event_rows_free(ev, n);
}

static void
test_tracking(struct db *db)
{
	int64_t a = new_job(db, "ship-a"), b = new_job(db, "ship-b");
	struct job_row *j;

	check_int(db_job_set_tracking(db, a, "UPS", "1Z999", 10), 0);
	check_last_event(db, a, DB_EVENT_NOTE, JOB_STAGING, "carrier UPS tracking 1Z999");
	check_int(db_job_set_tracking(db, b, "FedEx", "1Z999", 11), -EEXIST);
	j = get(db, b);
	check(j->tracking_number == NULL);
	check(j->carrier == NULL);
	job_row_free(j);
	check_int(event_count(db, b), 1);
	/* The same job may record its own number again. */
	check_int(db_job_set_tracking(db, a, "UPS", "1Z999", 12), 0);
	check_int(db_job_set_tracking(db, b, "FedEx", "7712", 13), 0);
	j = get(db, b);
	check_str(j->carrier, "FedEx");
	check_str(j->tracking_number, "7712");
	check_int(j->updated, 13);
	job_row_free(j);
	check_int(db_job_set_tracking(db, 999999, "UPS", "0000", 1), -ENOENT);
	check_int(db_job_set_tracking(db, a, "UPS", "", 1), -EINVAL);
}

/*
 * Make every event INSERT fail (a trigger from a second connection): each
 * transition must then report an error and leave the job as it was.
 */
static void
test_atomic(struct db *db, const char *path)
{
	int64_t id = new_job(db, "atomic"), other = 0;
	sqlite3 *raw = raw_open(path);
	struct job_row *before, *after;
	size_t events;

	check_int(db_job_advance(db, id, JOB_STAGING, JOB_DRIVE_PREP, "copying", NULL, 1), 0);
	before = get(db, id);
	events = event_count(db, id);
	raw_exec(raw, "CREATE TRIGGER no_events BEFORE INSERT ON events "
	              "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");

	check_int(db_job_advance(db, id, JOB_DRIVE_PREP, JOB_SHIPPED, "x", NULL, 9), -EIO);
	check(strstr(db_errmsg(db), "injected failure") != NULL);
	check_int(db_job_fail(db, id, JOB_DRIVE_PREP, "x", 9), -EIO);
	check_int(db_job_cancel(db, id, JOB_DRIVE_PREP, NULL, 9), -EIO);
	check_int(db_job_set_phase(db, id, JOB_DRIVE_PREP, "x", 9), -EIO);
	check_int(db_job_set_tracking(db, id, "UPS", "atomic-1", 9), -EIO);
	check_int(db_job_create(db, "atomic-new", "/s", NULL, 9, &other), -EIO);
	check_int(db_job_get(db, "atomic-new", &after), -ENOENT);

	after = get(db, id);
	check_int(after->state, before->state);
	check_str(after->phase, before->phase);
	check_int(after->updated, before->updated);
	check(after->error == NULL);
	check(after->tracking_number == NULL);
	job_row_free(after);
	check_int(event_count(db, id), events);

	/* Retry: fail for real first, then break the retry's event. */
	raw_exec(raw, "DROP TRIGGER no_events");
	check_int(db_job_fail(db, id, JOB_DRIVE_PREP, "real", 10), 0);
	raw_exec(raw, "CREATE TRIGGER no_events BEFORE INSERT ON events "
	              "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
	check_int(db_job_retry(db, id, 11, NULL), -EIO);
	after = get(db, id);
	check_int(after->state, JOB_FAILED);
	check_int(after->failed_state, JOB_DRIVE_PREP);
	check_int(after->attempts, 0);
	check_str(after->error, "real");
	job_row_free(after);

	raw_exec(raw, "DROP TRIGGER no_events");
	sqlite3_close(raw);
	check_int(db_job_retry(db, id, 12, NULL), 0);
	check_int(state_of(db, id), JOB_DRIVE_PREP);
	job_row_free(before);
}

/* A commit that bypasses db_tx_commit() aborts the process before it lands. */
static void
test_commit_guard(struct db *db)
{
	int64_t id = new_job(db, "guarded");
	struct job_row *j;
	int status = 0;
	pid_t pid;

	fflush(NULL);
	check((pid = fork()) >= 0);
	if (pid == 0) {
		(void)freopen("/dev/null", "w", stderr);
		(void)sqlite3_exec(db->sqlite, "UPDATE jobs SET phase = 'sneaky'", NULL, NULL,
		                   NULL);
		_exit(0);
	}
	check(waitpid(pid, &status, 0) == pid);
	check(WIFSIGNALED(status));
	check_int(WTERMSIG(status), SIGABRT);
	j = get(db, id);
	check_str(j->phase, "indexing");
	job_row_free(j);
	/* The parent's connection still works. */
	check_int(db_job_set_phase(db, id, JOB_STAGING, "after", 1), 0);
}

static void
test_drives_and_secrets(struct db *db, const char *path)
{
	int64_t id = new_job(db, "drives");
	_cleanup_free_ char *sql = NULL;
	struct drive_row *d = NULL;
	sqlite3 *raw = raw_open(path);
	size_t n = 0;

	sql = xprintf("INSERT INTO drives (job_id, serial, path, uuid, capacity) VALUES "
	              "(%lld, 'WD-1', '/mnt/a', 'u1', 1000), (%lld, 'WD-2', '/mnt/b', 'u2', 2000)",
	              (long long)id, (long long)id);
	raw_exec(raw, sql);
	sqlite3_close(raw);
	check_int(db_drive_list(db, id, &d, &n), 0);
	check_int(n, 2);
	check_str(d[0].serial, "WD-1");
	check_str(d[1].path, "/mnt/b");
	check_int(d[1].capacity, 2000);
	check_int(d[0].job_id, id);
	check_str(d[0].state, "attached");
	check(d[0].manifest_hash == NULL);
	drive_rows_free(d, n);

	/* No statement of the store but the three secret ones may touch secrets. */
	for (int i = 0; i < _STMT_MAX; i++)
		if (i != STMT_SECRET_DELETE && i != STMT_SECRET_INSERT && i != STMT_SECRET_GET &&
		    i != STMT_SECRET_DELETE_JOB)
			check(strcasestr(db_statements[i], "secret") == NULL);
	/* And only STMT_SECRET_GET reads a value out. */
	check(strcasestr(db_statements[STMT_SECRET_GET], "SELECT value") != NULL);
	check(strcasestr(db_statements[STMT_SECRET_DELETE], "SELECT") == NULL);
	check(strcasestr(db_statements[STMT_SECRET_DELETE_JOB], "SELECT") == NULL);
}

/* ---- Drive prep: files, blocks, drives, secrets ------------------------------ */

static int64_t
new_drive(struct db *db, int64_t job, const char *serial)
{
	_cleanup_free_ char *path = xprintf("/mnt/%s", serial);
	_cleanup_free_ char *uuid = xprintf("uuid-%s", serial);
	int64_t id = -1;

	check_int(db_drive_add(db, job, serial, path, uuid, 1 << 30, 1 << 29, &id), 0);
	check(id > 0);
	return id;
}

static struct file_entry
entry(const char *rel_path, int64_t size, int64_t mtime_ns)
{
	return (struct file_entry){
	    .rel_path = rel_path,
	    .size = size,
	    .mtime_ns = mtime_ns,
	    .blob_name = rel_path,
	    .state = "indexed",
	};
}

/* Insert one indexed file and return its id. */
static int64_t
new_file(struct db *db, int64_t job, const char *rel_path, int64_t size)
{
	struct file_entry e = entry(rel_path, size, 1);
	int64_t id;
	sqlite3_stmt *st;

	check_int(db_files_insert_batch(db, job, &e, 1), 0);
	check_int(sqlite3_prepare_v2(db->sqlite,
	                             "SELECT id FROM files WHERE job_id = ?1 AND rel_path = ?2", -1,
	                             &st, NULL),
	          SQLITE_OK);
	sqlite3_bind_int64(st, 1, job);
	sqlite3_bind_text(st, 2, rel_path, -1, SQLITE_STATIC);
	check_int(sqlite3_step(st), SQLITE_ROW);
	id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return id;
}

/* The file row of id (which must exist); free with file_rows_free(f, 1). */
static struct file_row *
file_get(struct db *db, int64_t job, int64_t id)
{
	struct file_row *f = NULL;
	size_t n = 0;

	check_int(db_files_page(db, job, NULL, 0, id - 1, 1, &f, &n), 0);
	check_int(n, 1);
	check_int(f[0].id, id);
	return f;
}

static void
check_file(struct db *db, int64_t job, int64_t id, const char *state, int64_t drive,
           int64_t checkpoint, size_t blocks)
{
	struct file_row *f = file_get(db, job, id);
	struct block_row *b = NULL;
	size_t n = 99;

	check_str(f->state, state);
	check_int(f->drive_id, drive);
	check_int(f->checkpoint, checkpoint);
	file_rows_free(f, 1);
	check_int(db_file_blocks(db, id, &b, &n), 0);
	check_int(n, blocks);
	free(b);
}

/* n blocks of blksize bytes from offset first*blksize, MD5s marked by seed. */
static void
make_blocks(struct block_row *b, size_t first, size_t n, int64_t blksize, unsigned char seed)
{
	for (size_t i = 0; i < n; i++) {
		b[i] =
		    (struct block_row){.offset = (int64_t)(first + i) * blksize, .length = blksize};
		memset(b[i].md5, seed + (unsigned char)(first + i), sizeof(b[i].md5));
	}
}

static void
check_drive(struct db *db, int64_t drive, int64_t files, int64_t used)
{
	struct drive_row d;

	check_int(db_drive_get(db, drive, &d), 0);
	check_int(d.files, files);
	check_int(d.used_bytes, used);
	drive_row_done(&d);
}

static void
check_copied(struct db *db, int64_t job, int64_t files, int64_t bytes, int64_t verified)
{
	struct job_row *j = get(db, job);

	check_int(j->copied_files, files);
	check_int(j->copied_bytes, bytes);
	check_int(j->verified_files, verified);
	job_row_free(j);
}

/* The job's incremental counters equal a recount from its files. */
static void
check_totals_consistent(struct db *db, int64_t job)
{
	struct job_row *before = get(db, job), *after;

	check_int(db_job_set_totals(db, job, before->updated), 0);
	after = get(db, job);
	check_int(after->files, before->files);
	check_int(after->bytes, before->bytes);
	check_int(after->copied_files, before->copied_files);
	check_int(after->copied_bytes, before->copied_bytes);
	check_int(after->verified_files, before->verified_files);
	job_row_free(before);
	job_row_free(after);
}

static void
test_files_scan(struct db *db, const char *path)
{
	int64_t job = new_job(db, "scan");
	struct file_entry e[] = {
	    entry("a.txt", 10, 1),
	    entry("dir/b.bin", 200, 2),
	    {.rel_path = "bad:name",
	     .size = 5,
	     .blob_name = "x",
	     .state = "invalid",
	     .reason = "colon"},
	    {.rel_path = "link",
	     .size = 0,
	     .blob_name = "y",
	     .state = "skipped",
	     .reason = "symlink"},
	    {.rel_path = "c", .size = 7, .blob_name = "z", .state = "indexed", .reason = "junk"},
	};
	struct file_entry bad = entry("x", 1, 1),
	                  boom[] = {entry("ok-1", 1, 1), entry("boom", 1, 1)};
	struct file_count c;
	struct file_row *rows = NULL;
	struct job_row *j;
	size_t n = 0;
	sqlite3 *raw;

	check_int(db_files_insert_batch(db, job, e, ELEMENTSOF(e)), 0);
	check_int(db_files_insert_batch(db, job, e, 0), 0);
	/* Bad entries are refused before anything is written. */
	bad.state = "planned";
	check_int(db_files_insert_batch(db, job, &bad, 1), -EINVAL);
	bad.state = NULL;
	check_int(db_files_insert_batch(db, job, &bad, 1), -EINVAL);
	bad = entry(NULL, 1, 1);
	check_int(db_files_insert_batch(db, job, &bad, 1), -EINVAL);
	bad = entry("x", -1, 1);
	check_int(db_files_insert_batch(db, job, &bad, 1), -EINVAL);
	bad = entry("x", 1, 1);
	bad.blob_name = NULL;
	check_int(db_files_insert_batch(db, job, &bad, 1), -EINVAL);
	check_int(db_files_insert_batch(db, 999999, e, 1), -ENOENT);

	/* A failure half-way through a batch leaves none of it. */
	raw = raw_open(path);
	raw_exec(raw, "CREATE TRIGGER no_boom BEFORE INSERT ON files WHEN NEW.rel_path = 'boom' "
	              "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
	check_int(db_files_insert_batch(db, job, boom, 2), -EIO);
	raw_exec(raw, "DROP TRIGGER no_boom");
	sqlite3_close(raw);

	check_int(db_files_count(db, job, NULL, &c), 0);
	check_int(c.files, 5);
	check_int(c.bytes, 222);
	check_int(db_files_count(db, job, "indexed", &c), 0);
	check_int(c.files, 3);
	check_int(c.bytes, 217);
	check_int(db_files_count(db, job, "invalid", &c), 0);
	check_int(c.files, 1);
	check_int(c.bytes, 5);
	check_int(db_files_count(db, job, "verified", &c), 0);
	check_int(c.files, 0);
	check_int(c.bytes, 0);
	check_int(db_files_count(db, job, "bogus", &c), -EINVAL);
	{
		int64_t num = -1;
		check_int(db_files_number(db, job, "indexed", &num), 0);
		check_int(num, 3);
		check_int(db_files_number(db, job, "invalid", &num), 0);
		check_int(num, 1);
		check_int(db_files_number(db, job, "planned", &num), 0);
		check_int(num, 0);
		check_int(db_files_number(db, job, "bogus", &num), -EINVAL);
		check_int(db_files_number(db, job, NULL, &num), -EINVAL);
	}

	check_int(db_files_page(db, job, NULL, 0, 0, 100, &rows, &n), 0);
	check_int(n, 5);
	check_str(rows[0].rel_path, "a.txt");
	check_str(rows[0].blob_name, "a.txt");
	check_int(rows[0].size, 10);
	check_int(rows[0].mtime_ns, 1);
	check_int(rows[0].drive_id, 0);
	check(!rows[0].has_md5);
	check(rows[0].reason == NULL);
	check_str(rows[2].state, "invalid");
	check_str(rows[2].reason, "colon");
	check_str(rows[3].state, "skipped");
	check_str(rows[3].reason, "symlink");
	check(rows[4].reason == NULL); /* an indexed file has no reason */
	file_rows_free(rows, n);

	/* Totals count only what will be copied. */
	j = get(db, job);
	check_int(j->files, 0);
	job_row_free(j);
	check_int(db_job_set_totals(db, job, 77), 0);
	j = get(db, job);
	check_int(j->files, 3);
	check_int(j->bytes, 217);
	check_int(j->copied_files, 0);
	check_int(j->copied_bytes, 0);
	check_int(j->updated, 77);
	job_row_free(j);
	check_int(db_job_set_totals(db, 999999, 1), -ENOENT);
}

/*
 * Issue 12: a job's --exclude patterns and --skip-refused are kept with it;
 * entries a pattern left out are "excluded" to readers, apart from "skipped".
 */
static void
test_excluded_and_skip_refused(struct db *db)
{
	int64_t job = -1, num = -1;
	struct file_entry e[] = {
	    entry("a.txt", 10, 1),
	    {.rel_path = "fifo", .blob_name = "f", .state = "skipped", .reason = "fifo: not copied"},
	    {.rel_path = "x.tmp", .size = 0, .blob_name = "x", .state = "skipped",
	     .reason = "excluded by '*.tmp'", .excluded_by = "*.tmp"},
	    {.rel_path = "cache", .blob_name = "c", .state = "skipped",
	     .reason = "excluded by 'cache'", .excluded_by = "cache"},
	};
	struct file_entry bad = entry("y.tmp", 1, 1);
	struct file_row *rows = NULL;
	struct file_count c;
	struct job_row *j;
	size_t n = 0;

	check_int(db_job_create_excluding(db, "excl", "/srv/s", "vault", "[\"*.tmp\",\"cache\"]",
	                                  5, &job), 0);
	j = get(db, job);
	check_str(j->excludes, "[\"*.tmp\",\"cache\"]");
	check(!j->skip_refused);
	job_row_free(j);
	j = get(db, new_job(db, "no-excl"));
	check(j->excludes == NULL);
	job_row_free(j);

	/* Only a skipped entry can have been excluded. */
	bad.excluded_by = "*.tmp";
	check_int(db_files_insert_batch(db, job, &bad, 1), -EINVAL);
	check_int(db_files_insert_batch(db, job, e, ELEMENTSOF(e)), 0);
	check_int(db_files_count(db, job, "skipped", &c), 0);
	check_int(c.files, 1);
	check_int(db_files_count(db, job, "excluded", &c), 0);
	check_int(c.files, 2);
	check_int(db_files_number(db, job, "excluded", &num), 0);
	check_int(num, 2);
	check_int(db_files_number(db, job, "skipped", &num), 0);
	check_int(num, 1);
	check_int(db_files_page(db, job, "excluded", 0, 0, 10, &rows, &n), 0);
	check_int(n, 2);
	check_str(rows[0].rel_path, "x.tmp");
	check_str(rows[0].state, "excluded");
	check_str(rows[1].reason, "excluded by 'cache'");
	file_rows_free(rows, n);
	check_int(db_files_page(db, job, "skipped", 0, 0, 10, &rows, &n), 0);
	check_int(n, 1);
	check_str(rows[0].rel_path, "fifo");
	check_str(rows[0].state, "skipped");
	file_rows_free(rows, n);
	check_int(db_files_page(db, job, "excluded", 7, 0, 10, &rows, &n), 0);
	check_int(n, 0);
	/* All rows: an excluded one reads as such. */
	check_int(db_files_page(db, job, NULL, 0, 0, 10, &rows, &n), 0);
	check_int(n, 4);
	check_str(rows[2].state, "excluded");
	check_str(rows[1].state, "skipped");
	file_rows_free(rows, n);

	/* --skip-refused: recorded with the retry, in its event. */
	check_int(db_job_fail(db, job, JOB_STAGING, "1 file names Azure would refuse", 6), 0);
	check_int(db_job_retry_skipping(db, job, 7, true, NULL), 0);
	j = get(db, job);
	check(j->skip_refused);
	check_int(j->state, JOB_STAGING);
	job_row_free(j);
	check_last_event(db, job, DB_EVENT_RETRY, JOB_STAGING,
	                 "resuming staging without the names Azure would refuse (--skip-refused)");
	check_int(db_job_retry_skipping(db, job, 8, true, NULL), -ESTALE);
}

/* A rescan keeps verified unchanged files and resets everything else. */
static void
test_files_rescan(struct db *db)
{
	int64_t job = new_job(db, "rescan"), d = new_drive(db, job, "RS-1");
	struct file_entry again[] = {entry("keep", 100, 1), entry("changed", 300, 2),
	                             entry("planned", 50, 1), entry("added", 7, 1)};
	int64_t keep = new_file(db, job, "keep", 100), changed = new_file(db, job, "changed", 300),
	        planned = new_file(db, job, "planned", 50);
	struct placement p[] = {{keep, d}, {changed, d}, {planned, d}};
	unsigned char md5[16];
	struct block_row b[2];
	struct file_row *f;
	struct job_row *j;

	memset(md5, 0xab, sizeof(md5));
	check_int(db_files_place(db, p, ELEMENTSOF(p)), 0);
	make_blocks(b, 0, 2, 50, 1);
	check_int(db_file_verified(db, keep, d, md5, b, 2, true, 10), 0);
	make_blocks(b, 0, 1, 300, 1);
	check_int(db_file_verified(db, changed, d, md5, b, 1, false, 11), 0);
	make_blocks(b, 0, 1, 25, 1);
	check_int(db_file_checkpoint(db, planned, 0, b, 1), 0);
	check_drive(db, d, 2, 400);
	check_copied(db, job, 2, 400, 1);

	check_int(db_files_insert_batch(db, job, again, ELEMENTSOF(again)), 0);
	/* Verified and unchanged: left as is. */
	check_file(db, job, keep, "verified", d, 2, 2);
	f = file_get(db, job, keep);
	check(f->has_md5);
	check(memcmp(f->md5, md5, 16) == 0);
	file_rows_free(f, 1);
	/* Changed: reset, and it left the drive's and the job's counters. */
	check_file(db, job, changed, "indexed", 0, 0, 0);
	f = file_get(db, job, changed);
	check(!f->has_md5);
	check_int(f->mtime_ns, 2);
	file_rows_free(f, 1);
	/* Planned, even unchanged: back to indexed, blocks dropped. */
	check_file(db, job, planned, "indexed", 0, 0, 0);
	check_drive(db, d, 1, 100);
	check_copied(db, job, 1, 100, 1);

	check_int(db_job_set_totals(db, job, 12), 0);
	j = get(db, job);
	check_int(j->files, 4);
	check_int(j->bytes, 457);
	check_int(j->copied_files, 1);
	check_int(j->copied_bytes, 100);
	check_int(j->verified_files, 1);
	job_row_free(j);
}

/* Page through rows matching the filters; check them; return how many. */
static size_t
page_all(struct db *db, int64_t job, const char *state, int64_t drive, size_t limit)
{
	struct file_row *rows;
	int64_t after = 0;
	size_t n, total = 0;

	do {
		rows = NULL;
		check_int(db_files_page(db, job, state, drive, after, limit, &rows, &n), 0);
		check(n <= limit);
		for (size_t i = 0; i < n; i++) {
			check(rows[i].id > after);
			after = rows[i].id;
			check_int(rows[i].job_id, job);
			if (state != NULL)
				check_str(rows[i].state, state);
			if (drive != 0)
				check_int(rows[i].drive_id, drive);
		}
		total += n;
		file_rows_free(rows, n);
	} while (n == limit);
	return total;
}

static void
test_files_page(struct db *db)
{
	int64_t job = new_job(db, "pages"), other = new_job(db, "pages-other");
	int64_t d1 = new_drive(db, job, "PG-1"), d2 = new_drive(db, job, "PG-2");
	struct file_entry e[30];
	struct placement p[30];
	char names[30][16];
	size_t np = 0, on[3] = {0};
	struct file_row *rows;
	size_t n;

	for (int i = 0; i < 30; i++) {
		(void)snprintf(names[i], sizeof(names[i]), "f%02d", i);
		e[i] = entry(names[i], i, 1);
		if (i % 7 == 6) {
			e[i].state = "invalid";
			e[i].reason = "bad";
		}
	}
	check_int(db_files_insert_batch(db, job, e, 30), 0);
	check_int(db_files_insert_batch(db, other, e, 30), 0);
	for (int i = 0; i < 30; i++) {
		if (i % 7 == 6 || i % 3 == 2)
			continue;
		p[np++] = (struct placement){new_file(db, job, names[i], i), i % 3 == 0 ? d1 : d2};
		on[i % 3]++;
	}
	check_int(db_files_place(db, p, np), 0);

	check_int(page_all(db, job, NULL, 0, 7), 30);
	check_int(page_all(db, job, NULL, 0, 1), 30);
	check_int(page_all(db, job, NULL, 0, 1000), 30);
	check_int(page_all(db, job, "planned", 0, 4), np);
	check_int(page_all(db, job, "invalid", 0, 4), 4);
	check_int(page_all(db, job, "indexed", 0, 4), 30 - np - 4);
	check_int(page_all(db, job, NULL, d1, 3), on[0]);
	check_int(page_all(db, job, "planned", d2, 3), on[1]);
	check_int(page_all(db, job, "indexed", d1, 3), 0);
	check_int(page_all(db, other, "planned", 0, 3), 0);
	check_int(page_all(db, other, NULL, 0, 3), 30);

	rows = NULL;
	check_int(db_files_page(db, job, NULL, 0, INT64_MAX - 1, 10, &rows, &n), 0);
	check_int(n, 0);
	free(rows);
	check_int(db_files_page(db, job, NULL, 0, 0, 0, &rows, &n), -EINVAL);
	check_int(db_files_page(db, job, "bogus", 0, 0, 10, &rows, &n), -EINVAL);
	check_int(db_files_page(db, job, NULL, -1, 0, 10, &rows, &n), -EINVAL);
}

static void
test_place(struct db *db)
{
	int64_t job = new_job(db, "place"), jb = new_job(db, "place-b");
	int64_t a1 = new_drive(db, job, "PL-1"), a2 = new_drive(db, job, "PL-2"),
	        b1 = new_drive(db, jb, "PL-B");
	int64_t x = new_file(db, job, "x", 300), y = new_file(db, job, "y", 100),
	        z = new_file(db, job, "z", 5);
	struct file_entry inv_e = {.rel_path = "inv", .blob_name = "inv", .state = "invalid"};
	int64_t inv;
	struct block_row b[3];
	unsigned char md5[16] = {0};

	check_int(db_files_insert_batch(db, job, &inv_e, 1), 0);
	inv = x + 3;
	check_file(db, job, inv, "invalid", 0, 0, 0);

	check_int(db_files_place(db, (struct placement[]){{x, a1}, {y, a1}}, 2), 0);
	check_file(db, job, x, "planned", a1, 0, 0);
	check_file(db, job, y, "planned", a1, 0, 0);
	/* Any bad pair and nothing is placed. */
	check_int(db_files_place(db, (struct placement[]){{z, a1}, {x, b1}}, 2), -EINVAL);
	check_int(db_files_place(db, (struct placement[]){{z, a1}, {inv, a1}}, 2), -ESTALE);
	check_int(db_files_place(db, (struct placement[]){{z, a1}, {999999, a1}}, 2), -ENOENT);
	check_int(db_files_place(db, (struct placement[]){{z, 999999}}, 1), -ENOENT);
	check_int(db_files_place(db, (struct placement[]){{z, -1}}, 1), -EINVAL);
	check_file(db, job, z, "indexed", 0, 0, 0);
	check_file(db, job, x, "planned", a1, 0, 0);
	check_int(db_files_place(db, NULL, 0), 0);

	/* Planned again on the same drive keeps the checkpoint, another drive drops it. */
	make_blocks(b, 0, 2, 100, 1);
	check_int(db_file_checkpoint(db, x, 0, b, 2), 0);
	check_int(db_files_place(db, (struct placement[]){{x, a1}}, 1), 0);
	check_file(db, job, x, "planned", a1, 2, 2);
	check_int(db_files_place(db, (struct placement[]){{x, a2}}, 1), 0);
	check_file(db, job, x, "planned", a2, 0, 0);
	/* Drive 0: back to indexed. */
	check_int(db_file_checkpoint(db, y, 0, b, 1), 0);
	check_int(db_files_place(db, (struct placement[]){{y, 0}}, 1), 0);
	check_file(db, job, y, "indexed", 0, 0, 0);
	check_int(db_files_place(db, (struct placement[]){{y, 0}}, 1), 0);
	/* A verified file is not placed again. */
	make_blocks(b, 0, 3, 100, 1);
	check_int(db_file_verified(db, x, a2, md5, b, 3, true, 1), 0);
	check_int(db_files_place(db, (struct placement[]){{x, a1}}, 1), -ESTALE);
	check_int(db_files_place(db, (struct placement[]){{x, 0}}, 1), -ESTALE);
	check_file(db, job, x, "verified", a2, 3, 3);
}

static void
test_checkpoint_verified(struct db *db)
{
	int64_t job = new_job(db, "verify");
	int64_t d1 = new_drive(db, job, "VF-1"), d2 = new_drive(db, job, "VF-2");
	int64_t big = new_file(db, job, "big", 10000), small = new_file(db, job, "small", 5),
	        idle = new_file(db, job, "idle", 1);
	struct block_row b[10], *got = NULL;
	unsigned char md5[16];
	struct file_row *f;
	size_t n = 0;

	memset(md5, 0x5a, sizeof(md5));
	check_int(db_files_place(db, (struct placement[]){{big, d1}, {small, d1}}, 2), 0);
	check_int(db_job_set_totals(db, job, 100), 0);

	make_blocks(b, 0, 3, 1000, 0x10);
	check_int(db_file_checkpoint(db, big, 0, b, 3), 0);
	check_file(db, job, big, "planned", d1, 3, 3);
	check_int(db_file_checkpoint(db, big, 5, b, 1), -EINVAL); /* a gap */
	make_blocks(b, 3, 2, 1000, 0x10);
	check_int(db_file_checkpoint(db, big, 3, b, 2), 0);
	check_file(db, job, big, "planned", d1, 5, 5);
	/* Redoing block 4 replaces it. */
	make_blocks(b, 4, 1, 1000, 0x70);
	check_int(db_file_checkpoint(db, big, 4, b, 1), 0);
	check_int(db_file_blocks(db, big, &got, &n), 0);
	check_int(n, 5);
	check_int(got[4].offset, 4000);
	check_int(got[4].md5[0], 0x74);
	check_int(got[3].md5[0], 0x13);
	free(got);
	/* Going back drops the blocks past the new checkpoint. */
	check_int(db_file_checkpoint(db, big, 2, b, 1), 0);
	check_file(db, job, big, "planned", d1, 3, 3);
	check_int(db_file_checkpoint(db, idle, 0, b, 1), -ESTALE);
	check_int(db_file_checkpoint(db, 999999, 0, b, 1), -ENOENT);
	check_int(db_file_checkpoint(db, big, 0, NULL, 1), -EINVAL);
	b[0].length = 0;
	check_int(db_file_checkpoint(db, big, 0, b, 1), -EINVAL);

	/* Not planned on that drive: stale, and nothing changes. */
	make_blocks(b, 0, 10, 1000, 0x20);
	check_int(db_file_verified(db, big, d2, md5, b, 10, true, 200), -ESTALE);
	check_int(db_file_verified(db, idle, d1, md5, b, 1, true, 200), -ESTALE);
	check_int(db_file_verified(db, 999999, d1, md5, b, 10, true, 200), -ENOENT);
	check_int(db_file_verified(db, big, d1, NULL, b, 10, true, 200), -EINVAL);
	/* Blocks must cover the file exactly. */
	check_int(db_file_verified(db, big, d1, md5, b, 9, true, 200), -EINVAL);
	b[5].offset++;
	check_int(db_file_verified(db, big, d1, md5, b, 10, true, 200), -EINVAL);
	b[5].offset--;
	check_file(db, job, big, "planned", d1, 3, 3);
	check_drive(db, d1, 0, 0);
	check_copied(db, job, 0, 0, 0);

	check_int(db_file_verified(db, big, d1, md5, b, 10, true, 200), 0);
	check_file(db, job, big, "verified", d1, 10, 10);
	check_int(db_file_blocks(db, big, &got, &n), 0);
	check_int(n, 10);
	for (size_t i = 0; i < n; i++) {
		check_int(got[i].offset, (int64_t)i * 1000);
		check_int(got[i].length, 1000);
		check_int(got[i].md5[15], 0x20 + i); /* the checkpointed ones were replaced */
	}
	free(got);
	f = file_get(db, job, big);
	check(f->has_md5);
	check(memcmp(f->md5, md5, 16) == 0);
	file_rows_free(f, 1);
	check_drive(db, d1, 1, 10000);
	check_drive(db, d2, 0, 0);
	check_copied(db, job, 1, 10000, 1);
	f = NULL;
	{
		struct job_row *j = get(db, job);

		check_int(j->updated, 200);
		job_row_free(j);
	}
	check_int(db_file_verified(db, big, d1, md5, b, 10, true, 201), -ESTALE);
	check_int(db_file_checkpoint(db, big, 0, b, 1), -ESTALE);

	/* Copied without a re-read, and without a block list. */
	check_int(db_file_verified(db, small, d1, md5, NULL, 0, false, 202), 0);
	check_file(db, job, small, "verified", d1, 0, 0);
	check_drive(db, d1, 2, 10005);
	check_copied(db, job, 2, 10005, 1);
	check_totals_consistent(db, job);

	check_int(db_file_blocks(db, idle, &got, &n), 0);
	check_int(n, 0);
	free(got);
	check_int(db_file_blocks(db, 999999, &got, &n), -ENOENT);
}

static void
test_reindex_unplace(struct db *db)
{
	int64_t job = new_job(db, "reindex"), d = new_drive(db, job, "RX-1");
	int64_t p = new_file(db, job, "p", 100), v = new_file(db, job, "v", 200),
	        i = new_file(db, job, "i", 300);
	struct file_entry s_e = {
	    .rel_path = "s", .blob_name = "s", .state = "skipped", .reason = "fifo"};
	int64_t s = i + 1;
	unsigned char md5[16] = {1};
	struct block_row b[2];
	struct file_row *f;
	struct job_row *j;

	check_int(db_files_insert_batch(db, job, &s_e, 1), 0);
	check_int(db_files_place(db, (struct placement[]){{p, d}, {v, d}}, 2), 0);
	make_blocks(b, 0, 1, 50, 1);
	check_int(db_file_checkpoint(db, p, 0, b, 1), 0);
	make_blocks(b, 0, 2, 100, 1);
	check_int(db_file_verified(db, v, d, md5, b, 2, true, 5), 0);
	check_int(db_job_set_totals(db, job, 6), 0);
	check_copied(db, job, 1, 200, 1);

	/* A planned file that changed: indexed, no blocks, job bytes follow. */
	check_int(db_file_reindex(db, p, 150, 9, 600), 0);
	check_file(db, job, p, "indexed", 0, 0, 0);
	f = file_get(db, job, p);
	check_int(f->size, 150);
	check_int(f->mtime_ns, 9);
	file_rows_free(f, 1);
	j = get(db, job);
	check_int(j->bytes, 650);
	check_int(j->files, 3);
	check_int(j->updated, 600);
	job_row_free(j);
	/* A verified one leaves its drive's and the job's copied counters. */
	check_int(db_file_reindex(db, v, 190, 9, 601), 0);
	check_file(db, job, v, "indexed", 0, 0, 0);
	f = file_get(db, job, v);
	check(!f->has_md5);
	file_rows_free(f, 1);
	check_drive(db, d, 0, 0);
	check_copied(db, job, 0, 0, 0);
	check_totals_consistent(db, job);
	check_int(db_file_reindex(db, s, 1, 1, 602), -ESTALE);
	check_int(db_file_reindex(db, 999999, 1, 1, 602), -ENOENT);
	check_int(db_file_reindex(db, p, -1, 1, 602), -EINVAL);

	/* Unplace: a planned file with blocks, then a verified one. */
	check_int(db_files_place(db, (struct placement[]){{p, d}, {v, d}}, 2), 0);
	check_int(db_file_checkpoint(db, p, 0, b, 1), 0);
	make_blocks(b, 0, 1, 190, 1);
	check_int(db_file_verified(db, v, d, md5, b, 1, false, 7), 0);
	check_drive(db, d, 1, 190);
	check_int(db_file_unplace(db, p), 0);
	check_file(db, job, p, "indexed", 0, 0, 0);
	check_int(db_file_unplace(db, v), 0);
	check_file(db, job, v, "indexed", 0, 0, 0);
	check_drive(db, d, 0, 0);
	check_copied(db, job, 0, 0, 0);
	check_int(db_file_unplace(db, i), 0); /* already indexed */
	check_file(db, job, i, "indexed", 0, 0, 0);
	check_int(db_file_unplace(db, s), -ESTALE);
	check_int(db_file_unplace(db, 999999), -ENOENT);
	check_totals_consistent(db, job);
	j = get(db, job);
	check_int(j->bytes, 640);
	job_row_free(j);
}

static int
collect_cb(int64_t id, int64_t size, void *userdata)
{
	int64_t *ids = userdata;

	if (ids[0] >= 7)
		return -E2BIG;
	ids[++ids[0]] = id;
	(void)size;
	return 0;
}

/* What the drive-prep stage reads back, and starting the index over. */
static void
test_waiting_counts_clear(struct db *db)
{
	int64_t job = new_job(db, "clear"), d = new_drive(db, job, "CL-1");
	int64_t a = new_file(db, job, "a", 10), b = new_file(db, job, "b", 20),
	        c = new_file(db, job, "c", 30);
	struct file_entry inv = {.rel_path = "inv", .blob_name = "inv", .state = "invalid"};
	struct block_row blk[1];
	unsigned char md5[16] = {0};
	int64_t ids[8] = {0};
	struct block_row *got = NULL;
	struct file_count fc;
	struct job_row *j;
	size_t n;

	check_int(db_files_insert_batch(db, job, &inv, 1), 0);
	check_int(db_files_place(db, (struct placement[]){{a, d}, {b, d}}, 2), 0);
	make_blocks(blk, 0, 1, 10, 1);
	check_int(db_file_verified(db, a, d, md5, blk, 1, true, 3), 0);

	check_int(db_files_foreach_waiting(db, job, collect_cb, ids), 0);
	check_int(ids[0], 1);
	check_int(ids[1], c);
	memset(ids, 0, sizeof(ids));
	check_int(db_files_foreach_plannable(db, job, collect_cb, ids), 0);
	check_int(ids[0], 2);
	check_int(ids[1], c); /* indexed ones first */
	check_int(ids[2], b);

	check_int(db_drive_file_count(db, d, &fc), 0);
	check_int(fc.files, 2);
	check_int(fc.bytes, 30);
	check_int(db_drive_verified_count(db, d, &fc), 0);
	check_int(fc.files, 1);
	check_int(fc.bytes, 10);
	check_int(db_drive_file_count(db, 999999, &fc), 0);
	check_int(fc.files, 0);

	check_int(db_job_set_totals(db, job, 4), 0);
	check_int(db_files_clear(db, job), 0);
	check_int(db_files_count(db, job, NULL, &fc), 0);
	check_int(fc.files, 0);
	check_int(db_file_blocks(db, a, &got, &n), -ENOENT);
	check_drive(db, d, 0, 0);
	check_copied(db, job, 0, 0, 0);
	j = get(db, job);
	check_int(j->files, 0);
	check_int(j->bytes, 0);
	job_row_free(j);
	check_int(db_files_clear(db, 999999), -ENOENT);
	check(new_file(db, job, "a", 10) > 0);
	check_int(db_files_count(db, job, "indexed", &fc), 0);
	check_int(fc.files, 1);
}

/*
 * A job failed in `imported` over a drive Azure could not import: retrying it
 * is the operator's yes to uploading that drive over the network, recorded in
 * the retry's transaction for the drives the reconcile read a log of, and for
 * no other job's drives and no other step's retry.
 */
static void
test_retry_network_repair(struct db *db)
{
	int64_t job = new_job(db, "netrepair"), other = new_job(db, "netrepair-2");
	int64_t failed = new_drive(db, job, "NR-1"), unread = new_drive(db, job, "NR-2");
	int64_t elsewhere = new_drive(db, other, "NR-3");
	bool yes = true;

	check_int(db_drive_network_repair(db, failed, &yes), 0);
	check(!yes);
	check_int(db_drive_network_repair(db, 999999, &yes), -ENOENT);
	check_int(db_drive_set_log_status(db, failed, "BitLockerKeyInvalid"), 0);
	check_int(db_drive_set_log_status(db, elsewhere, "ManifestCorrupted"), 0);

	/* A retry of another step says nothing of the network. */
	check_int(db_job_advance(db, job, JOB_STAGING, JOB_DRIVE_PREP, "copying", NULL, 1), 0);
	check_int(db_job_fail(db, job, JOB_DRIVE_PREP, "EIO", 2), 0);
	check_int(db_job_retry(db, job, 3, NULL), 0);
	check_int(db_drive_network_repair(db, failed, &yes), 0);
	check(!yes);

	check_int(db_job_advance(db, job, JOB_DRIVE_PREP, JOB_SHIPPED, "polling", NULL, 4), 0);
	check_int(db_job_advance(db, job, JOB_SHIPPED, JOB_IMPORTED, "reconciling", NULL, 5), 0);
	check_int(db_job_fail(db, job, JOB_IMPORTED, "Azure could not import drive NR-1", 6), 0);
	check_int(db_drive_network_repair(db, failed, &yes), 0);
	check(!yes);
	check_int(db_job_retry(db, job, 7, NULL), 0);
	check_int(db_drive_network_repair(db, failed, &yes), 0);
	check(yes);
	check_int(db_drive_network_repair(db, unread, &yes), 0);
	check(!yes);
	check_int(db_drive_network_repair(db, elsewhere, &yes), 0);
	check(!yes);
}

static void
test_drives(struct db *db)
{
	int64_t job = new_job(db, "drive-add"), other = new_job(db, "drive-add-2");
	int64_t id = 0, again = 0;
	struct drive_row d, *rows = NULL;
	size_t n = 0;

	check_int(db_drive_add(db, job, "WD-9", "/mnt/x", "u-9", 4000, 3500, &id), 0);
	check_int(db_drive_get(db, id, &d), 0);
	check_int(d.id, id);
	check_int(d.job_id, job);
	check_str(d.serial, "WD-9");
	check_str(d.path, "/mnt/x");
	check_str(d.uuid, "u-9");
	check_int(d.capacity, 4000);
	check_int(d.free_bytes, 3500);
	check_int(d.used_bytes, 0);
	check_int(d.files, 0);
	check_str(d.state, "attached");
	check(d.manifest_hash == NULL);
	check_int(d.direct_io, 3); /* O_DIRECT both ways until a probe says otherwise */
	drive_row_done(&d);
	check(d.serial == NULL);

	/* What the drive takes of O_DIRECT: 0-3, kept in the row. */
	check_int(db_drive_set_direct_io(db, id, 1), 0);
	check_int(db_drive_get(db, id, &d), 0);
	check_int(d.direct_io, 1);
	drive_row_done(&d);
	check_int(db_drive_set_direct_io(db, id, 4), -EINVAL);
	check_int(db_drive_set_direct_io(db, id, -1), -EINVAL);
	check_int(db_drive_set_direct_io(db, 999999, 0), -ENOENT);
	check_int(db_drive_set_direct_io(db, id, 0), 0);
	check_int(db_drive_get(db, id, &d), 0);
	check_int(d.direct_io, 0);
	drive_row_done(&d);

	check_int(db_drive_add(db, job, "WD-9", "/mnt/y", "u-x", 1, 1, &again), -EEXIST);
	check_int(again, 0);
	check_int(db_drive_add(db, other, "WD-9", "/mnt/y", "u-y", 1, 1, &again), 0);
	check(again > id);
	check_int(db_drive_add(db, 999999, "WD-0", "/mnt/z", "u", 1, 1, NULL), -ENOENT);
	check_int(db_drive_add(db, job, "WD-0", "/mnt/z", "", 1, 1, NULL), -EINVAL);
	check_int(db_drive_add(db, job, "WD-0", NULL, "u", 1, 1, NULL), -EINVAL);
	check_int(db_drive_add(db, job, "WD-0", "/mnt/z", "u", -1, 1, NULL), -EINVAL);

	check_int(db_drive_set_state(db, id, "copying"), 0);
	check_int(db_drive_set_state(db, id, "bogus"), -EINVAL);
	check_int(db_drive_set_state(db, id, NULL), -EINVAL);
	check_int(db_drive_set_state(db, 999999, "full"), -ENOENT);
	check_int(db_drive_set_manifest(db, id, "sha256:abc"), 0);
	check_int(db_drive_set_manifest(db, 999999, "x"), -ENOENT);
	check_int(db_drive_get(db, id, &d), 0);
	check_str(d.state, "copying");
	check_str(d.manifest_hash, "sha256:abc");
	drive_row_done(&d);
	check_int(db_drive_set_state(db, id, "manifest-written"), 0);
	check_int(db_drive_set_manifest(db, id, NULL), 0);

	check_int(db_drive_list(db, job, &rows, &n), 0);
	check_int(n, 1);
	check_str(rows[0].uuid, "u-9");
	check_int(rows[0].free_bytes, 3500);
	check_str(rows[0].state, "manifest-written");
	check(rows[0].manifest_hash == NULL);
	drive_rows_free(rows, n);
	check_int(db_drive_get(db, 999999, &d), -ENOENT);
}

/* AddDrive's record: row, O_DIRECT verdict, BitLocker volume and key, one transaction. */
static void
test_drive_attach(struct db *db)
{
	int64_t job = new_job(db, "drive-attach"), id = 0, id2 = 0;
	const char *key = "235818-357951-253979-013365-241120-245575-342914-591910";
	struct drive_new n = {
	    .serial = "BL-1", .path = "/mnt/bl", .uuid = "u-bl", .capacity = 100,
	    .free_bytes = 90, .direct_io = 1, .bitlocker_device = "/dev/sdb1",
	    .bitlocker_guid = "8f595209-f5b9-49a0-85d4-cb8f80258c27",
	    .bitlocker_cipher = "aes-xts-plain64", .key = key,
	};
	struct drive_row d;
	char *v = NULL;

	check_int(db_drive_attach(db, job, &n, &id), 0);
	check_int(db_drive_get(db, id, &d), 0);
	check_str(d.serial, "BL-1");
	check_int(d.direct_io, 1);
	check_str(d.bitlocker_device, "/dev/sdb1");
	check_str(d.bitlocker_guid, "8f595209-f5b9-49a0-85d4-cb8f80258c27");
	check_str(d.bitlocker_cipher, "aes-xts-plain64");
	drive_row_done(&d);
	check(d.bitlocker_device == NULL);
	check_int(db_secret_get(db, id, "bitlocker-key", &v), 0);
	check_str(v, key);
	free(v);

	/* The check skipped: no volume, no key; the columns stay NULL. */
	n = (struct drive_new){.serial = "DIR-1", .path = "/tmp/d", .uuid = "u-d", .direct_io = 3};
	check_int(db_drive_attach(db, job, &n, &id2), 0);
	check_int(db_drive_get(db, id2, &d), 0);
	check(d.bitlocker_device == NULL && d.bitlocker_guid == NULL && d.bitlocker_cipher == NULL);
	drive_row_done(&d);
	check_int(db_secret_get(db, id2, "bitlocker-key", &v), -ENOENT);

	/* All or nothing: a duplicate serial leaves no half drive, and no key behind. */
	n = (struct drive_new){.serial = "BL-1", .path = "/mnt/other", .uuid = "u-o",
	                       .direct_io = 3, .key = key};
	check_int(db_drive_attach(db, job, &n, NULL), -EEXIST);
	n.serial = "BL-2";
	n.bitlocker_device = "/dev/sdc1"; /* without GUID and cipher */
	check_int(db_drive_attach(db, job, &n, NULL), -EINVAL);
	n.bitlocker_device = NULL;
	n.direct_io = 4;
	check_int(db_drive_attach(db, job, &n, NULL), -EINVAL);
	check_int(db_drive_by_serial(db, job, "BL-2", &d), -ENOENT);

	/* Setting the volume later (same columns). */
	check_int(db_drive_set_bitlocker(db, id2, "/dev/sdd1", "g", "aes-cbc-eboiv"), 0);
	check_int(db_drive_get(db, id2, &d), 0);
	check_str(d.bitlocker_cipher, "aes-cbc-eboiv");
	drive_row_done(&d);
	check_int(db_drive_set_bitlocker(db, id2, "/dev/sdd1", NULL, "x"), -EINVAL);
	check_int(db_drive_set_bitlocker(db, 999999, "/dev/sdd1", "g", "x"), -ENOENT);
}

static bool
has(const char *field, const char *secret)
{
	return field != NULL && strstr(field, secret) != NULL;
}

static void
check_no_secret(const struct drive_row *d, const char *secret)
{
	check(!has(d->serial, secret) && !has(d->path, secret) && !has(d->uuid, secret));
	check(!has(d->state, secret) && !has(d->manifest_hash, secret));
}

static void
test_secrets(struct db *db, const char *path)
{
	static const char key1[] = "111111-222222-333333-444444-555555-666666-777777-888888";
	static const char key2[] = "999999-000000-123456-654321-111111-222222-333333-444444";
	int64_t job = new_job(db, "secret"), other = new_job(db, "secret-2");
	int64_t d = new_drive(db, job, "SC-1"), od = new_drive(db, other, "SC-2");
	_cleanup_free_ char *q = NULL;
	struct drive_row one, *rows = NULL;
	char *v = NULL;
	size_t n = 0;
	sqlite3 *raw;

	check_int(db_secret_put(db, job, d, "bitlocker", key1, strlen(key1)), 0);
	check_int(db_secret_get(db, d, "bitlocker", &v), 0);
	check_str(v, key1);
	explicit_bzero(v, strlen(v));
	free(v);
	/* Putting again replaces it. */
	check_int(db_secret_put(db, job, d, "bitlocker", key2, strlen(key2)), 0);
	check_int(db_secret_get(db, d, "bitlocker", &v), 0);
	check_str(v, key2);
	free(v);
	v = NULL;
	raw = raw_open(path);
	q = xprintf("SELECT count(*) FROM secrets WHERE drive_id = %lld", (long long)d);
	check_int(raw_int(raw, q), 1);
	sqlite3_close(raw);

	check_int(db_secret_put(db, other, d, "bitlocker", key1, strlen(key1)), -ENOENT);
	check_int(db_secret_put(db, job, 999999, "bitlocker", key1, strlen(key1)), -ENOENT);
	check_int(db_secret_put(db, job, 0, "bitlocker", key1, strlen(key1)), -EINVAL);
	check_int(db_secret_put(db, job, d, "bitlocker", key1, 0), -EINVAL);
	check_int(db_secret_put(db, job, d, "", key1, 1), -EINVAL);
	check_int(db_secret_get(db, d, "other-kind", &v), -ENOENT);
	check_int(db_secret_get(db, od, "bitlocker", &v), -ENOENT);
	check(v == NULL);

	/* Never listed. */
	check_int(db_drive_list(db, job, &rows, &n), 0);
	check_int(n, 1);
	check_no_secret(&rows[0], key2);
	check_no_secret(&rows[0], "111111");
	drive_rows_free(rows, n);
	check_int(db_drive_get(db, d, &one), 0);
	check_no_secret(&one, key2);
	drive_row_done(&one);
}

/* ---- The read-only connection --------------------------------------------------- */

struct seen {
	int64_t ids[8];
	size_t blocks[8];
	size_t n;
	int stop_after; /* 0: never */
	bool ok;        /* every block in order and as written */
};

static int
seen_cb(const struct file_row *f, const struct block_row *b, size_t n, void *userdata)
{
	struct seen *s = userdata;

	if (s->n == ELEMENTSOF(s->ids))
		return -E2BIG;
	s->ids[s->n] = f->id;
	s->blocks[s->n] = n;
	s->n++;
	if (strcmp(f->state, "verified") != 0 || !f->has_md5 || f->md5[0] != (unsigned char)f->id)
		s->ok = false;
	for (size_t i = 0; i < n; i++)
		if (b[i].offset != (int64_t)i * 10 || b[i].md5[0] != (unsigned char)(0x40 + i))
			s->ok = false;
	if (s->stop_after != 0 && (int)s->n == s->stop_after)
		return -ECANCELED;
	return 0;
}

struct stream_thread {
	const char *path;
	int64_t drive;
	int r;
	struct seen seen;
};

/* A worker: its own read-only connection, opened, used and closed in the thread. */
static void *
stream_thread(void *userdata)
{
	struct stream_thread *t = userdata;
	struct db *ro = NULL;
	char *err = NULL;

	t->r = db_open_readonly(t->path, &ro, &err);
	free(err);
	if (t->r < 0)
		return NULL;
	t->seen.ok = true;
	t->r = db_drive_foreach_verified(ro, t->drive, seen_cb, &t->seen);
	db_close(ro);
	return NULL;
}

/* Verify file id on drive with nblocks blocks of 10 bytes (file size 10 * nblocks). */
static void
verify_file(struct db *db, int64_t id, int64_t drive, size_t nblocks)
{
	struct block_row b[4];
	unsigned char md5[16];

	memset(md5, (unsigned char)id, sizeof(md5));
	make_blocks(b, 0, nblocks, 10, 0x40);
	check_int(db_file_verified(db, id, drive, md5, b, nblocks, true, 1), 0);
}

static void
test_readonly(void)
{
	_cleanup_free_ char *path = db_path("ro"), *old = db_path("ro-old");
	_cleanup_free_ char *missing = db_path("ro-missing");
	_cleanup_free_ char *err = NULL;
	struct db *db = open_ok(path), *ro = NULL;
	int64_t job = new_job(db, "read-only"), d = new_drive(db, job, "RO-1"),
	        d2 = new_drive(db, job, "RO-2");
	int64_t f1 = new_file(db, job, "f1", 20), f2 = new_file(db, job, "f2", 10),
	        f3 = new_file(db, job, "f3", 30), f4 = new_file(db, job, "f4", 30);
	struct file_entry e = entry("new", 1, 1);
	struct stream_thread t = {.path = path, .drive = d};
	struct seen s = {.ok = true};
	struct job_row *j = NULL;
	pthread_t th;
	sqlite3 *raw;
	int64_t id;
	int rc;

	check_int(db_files_place(db, (struct placement[]){{f1, d}, {f2, d2}, {f3, d}, {f4, d}}, 4),
	          0);
	verify_file(db, f4, d, 3);
	verify_file(db, f1, d, 2);
	verify_file(db, f2, d2, 1);

	check_int(db_open_readonly(path, &ro, &err), 0);
	check(err == NULL);
	/* Writes are refused, by the store and by SQLite itself. */
	check_int(db_job_create(ro, "ro-write", "/s", NULL, 1, &id), -EROFS);
	check_int(db_files_insert_batch(ro, job, &e, 1), -EROFS);
	check_int(db_drive_add(ro, job, "RO-3", "/m", "u", 1, 1, &id), -EROFS);
	check_int(db_secret_put(ro, job, d, "bitlocker", "k", 1), -EROFS);
	check_int(db_file_unplace(ro, f3), -EROFS);
	check_int(db_job_set_azure_name(ro, job, "seedd-ro", "DataBox", 1), -EROFS);
	check_int(db_job_set_azure_state(ro, job, "Received", 1), -EROFS);
	check_int(db_drive_set_azure(ro, d, "Received", 1, 1, 0, NULL, NULL), -EROFS);
	rc = sqlite3_exec(ro->sqlite, "UPDATE jobs SET phase = 'sneaky'", NULL, NULL, NULL);
	check_int(rc & 0xff, SQLITE_READONLY);
	check_int(db_job_get_by_id(ro, job, &j), 0);
	check_str(j->phase, "indexing");
	job_row_free(j);

	/* Drive d's verified files, in id order, with their blocks in order. */
	check_int(db_drive_foreach_verified(ro, d, seen_cb, &s), 0);
	check(s.ok);
	check_int(s.n, 2);
	check_int(s.ids[0], f1);
	check_int(s.blocks[0], 2);
	check_int(s.ids[1], f4);
	check_int(s.blocks[1], 3);
	s = (struct seen){.ok = true, .stop_after = 1};
	check_int(db_drive_foreach_verified(ro, d, seen_cb, &s), -ECANCELED);
	check_int(s.n, 1);
	/* A commit on the writer shows in the reader's next walk. */
	verify_file(db, f3, d, 3);
	s = (struct seen){.ok = true};
	check_int(db_drive_foreach_verified(ro, d, seen_cb, &s), 0);
	check_int(s.n, 3);
	check_int(s.ids[1], f3);
	db_close(ro);

	/* The same from a worker thread with its own connection. */
	check_int(pthread_create(&th, NULL, stream_thread, &t), 0);
	check_int(pthread_join(th, NULL), 0);
	check_int(t.r, 0);
	check(t.seen.ok);
	check_int(t.seen.n, 3);
	check_int(t.seen.ids[2], f4);
	db_close(db);

	/* Without the writer (no -wal, no -shm) it still reads. */
	check_int(db_open_readonly(path, &ro, &err), 0);
	s = (struct seen){.ok = true};
	check_int(db_drive_foreach_verified(ro, d, seen_cb, &s), 0);
	check_int(s.n, 3);
	db_close(ro);

	/* A database never migrated, or not there at all. */
	raw = raw_open(old);
	raw_exec(raw, "PRAGMA user_version = 0");
	sqlite3_close(raw);
	check_int(db_open_readonly(old, &ro, &err), -EPROTO);
	check(err != NULL);
	free(TAKE_PTR(err));
	check_int(db_open_readonly(missing, &ro, &err), -ENOENT);
	check(err != NULL && strstr(err, missing) != NULL);
	check(access(missing, F_OK) < 0);
}

/* Every statement on files or blocks seeks an index: no full scan, no sort. */
static void
test_query_plans(struct db *db)
{
	for (int i = 0; i < _STMT_MAX; i++) {
		_cleanup_free_ char *sql = xprintf("EXPLAIN QUERY PLAN %s", db_statements[i]);
		const char *q = db_statements[i];
		bool files = strstr(q, "FROM files") != NULL || strstr(q, "UPDATE files") != NULL ||
		             strstr(q, "FROM blocks") != NULL;
		sqlite3_stmt *st;

		check_int(sqlite3_prepare_v2(db->sqlite, sql, -1, &st, NULL), SQLITE_OK);
		while (sqlite3_step(st) == SQLITE_ROW) {
			const char *detail = (const char *)sqlite3_column_text(st, 3);

			if (strstr(detail, "SCAN files") != NULL ||
			    strstr(detail, "SCAN blocks") != NULL ||
			    (files && strstr(detail, "TEMP B-TREE") != NULL))
				fprintf(stderr, "statement %d: %s\n", i, detail);
			check(strstr(detail, "SCAN files") == NULL);
			check(strstr(detail, "SCAN blocks") == NULL);
			check(!files || strstr(detail, "TEMP B-TREE") == NULL);
		}
		sqlite3_finalize(st);
	}
}

/* ---- The Azure stages ---------------------------------------------------------------- */

/* Both NULL or equal. */
static bool
same(const char *a, const char *b)
{
	return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

/* A fresh job has no Azure fields; db_job_get() and db_job_list() fill them. */
static void
check_azure_fields(struct db *db, int64_t id, const char *api, int64_t created, int64_t shipped,
                   int warned, bool received)
{
	struct job_row *j = get(db, id), *by_name = NULL, **rows = NULL;
	size_t n = 0, found = 0;

	check(same(j->azure_api, api));
	check_int(j->azure_created, created);
	check_int(j->shipped_at, shipped);
	check_int(j->deadline_warned, warned);
	check_int(j->receive_warned, received);
	check_int(db_job_get(db, j->name, &by_name), 0);
	check_int(by_name->azure_created, created);
	check_int(by_name->shipped_at, shipped);
	check_int(by_name->deadline_warned, warned);
	check_int(by_name->receive_warned, received);
	check(same(by_name->azure_api, api));
	check_int(db_job_list(db, &rows, &n), 0);
	for (size_t i = 0; i < n; i++) {
		if (rows[i]->id != id)
			continue;
		found++;
		check(same(rows[i]->azure_api, api));
		check_int(rows[i]->azure_created, created);
		check_int(rows[i]->shipped_at, shipped);
		check_int(rows[i]->deadline_warned, warned);
		check_int(rows[i]->receive_warned, received);
	}
	check_int(found, 1);
	job_rows_free(rows, n);
	job_row_free(by_name);
	job_row_free(j);
}

static void
test_azure_name(struct db *db)
{
	int64_t id = new_job(db, "azure-name");
	struct job_row *j;
	size_t events;

	check_azure_fields(db, id, NULL, 0, 0, 0, false);
	events = event_count(db, id);
	check_int(db_job_set_azure_name(db, id, "seedd-azure-name", DB_AZURE_API_DATABOX, 100), 0);
	check_last_event(db, id, DB_EVENT_AZURE, JOB_STAGING, "Azure job seedd-azure-name (DataBox)");
	check_int(event_count(db, id), events + 1);
	j = get(db, id);
	check_str(j->azure_job_name, "seedd-azure-name");
	check_int(j->updated, 100);
	job_row_free(j);
	check_azure_fields(db, id, "DataBox", 0, 0, 0, false);

	/* The same values again: nothing written. */
	check_int(db_job_set_azure_name(db, id, "seedd-azure-name", "DataBox", 101), 0);
	check_int(event_count(db, id), events + 1);
	j = get(db, id);
	check_int(j->updated, 100);
	job_row_free(j);

	/* Another API (or name) is recorded, with its event. */
	check_int(db_job_set_azure_name(db, id, "seedd-azure-name", "ImportExport", 102), 0);
	check_last_event(db, id, DB_EVENT_AZURE, JOB_STAGING,
	                 "Azure job seedd-azure-name (ImportExport)");
	check_int(event_count(db, id), events + 2);
	check_azure_fields(db, id, "ImportExport", 0, 0, 0, false);

	check_int(db_job_set_azure_name(db, id, "x", "Bogus", 1), -EINVAL);
	check_int(db_job_set_azure_name(db, id, "x", NULL, 1), -EINVAL);
	check_int(db_job_set_azure_name(db, id, "", "DataBox", 1), -EINVAL);
	check_int(db_job_set_azure_name(db, id, NULL, "DataBox", 1), -EINVAL);
	check_int(db_job_set_azure_name(db, 999999, "x", "DataBox", 1), -ENOENT);
	check_int(event_count(db, id), events + 2);
}

static void
test_azure_created(struct db *db)
{
	int64_t id = new_job(db, "azure-created"), nodl = new_job(db, "azure-no-deadline");
	struct job_row *j;
	size_t events;

	check_int(db_job_set_azure_name(db, id, "seedd-azure-created", "DataBox", 100), 0);
	events = event_count(db, id);
	/* 1700000000 is 2023-11-14T22:13:20Z. */
	check_int(db_job_azure_created(db, id, "Created", 1700000000, 200), 0);
	check_last_event(db, id, DB_EVENT_AZURE, JOB_STAGING,
	                 "Azure job created, status Created; tracking due by 2023-11-14T22:13:20Z");
	check_int(event_count(db, id), events + 1);
	j = get(db, id);
	check_str(j->azure_state, "Created");
	check_int(j->ship_deadline, 1700000000);
	check_int(j->updated, 200);
	job_row_free(j);
	check_azure_fields(db, id, "DataBox", 200, 0, 0, false);

	/* Again (a restart): the first time is kept, the rest recorded, no new event. */
	check_int(db_job_azure_created(db, id, "Shipping", 1700086400, 300), 0);
	check_int(event_count(db, id), events + 1);
	j = get(db, id);
	check_str(j->azure_state, "Shipping");
	check_int(j->ship_deadline, 1700086400);
	check_int(j->updated, 300);
	job_row_free(j);
	check_azure_fields(db, id, "DataBox", 200, 0, 0, false);

	check_int(db_job_azure_created(db, nodl, "Created", 0, 50), 0);
	check_last_event(db, nodl, DB_EVENT_AZURE, JOB_STAGING, "Azure job created, status Created");
	check_azure_fields(db, nodl, NULL, 50, 0, 0, false);

	check_int(db_job_azure_created(db, id, NULL, 1, 1), -EINVAL);
	check_int(db_job_azure_created(db, id, "", 1, 1), -EINVAL);
	check_int(db_job_azure_created(db, id, "Created", -1, 1), -EINVAL);
	check_int(db_job_azure_created(db, id, "Created", 1, 0), -EINVAL);
	check_int(db_job_azure_created(db, 999999, "Created", 1, 1), -ENOENT);
	check_int(event_count(db, id), events + 1);
}

static void
test_azure_state_warned(struct db *db)
{
	int64_t id = new_job(db, "azure-state");
	struct job_row *j;
	size_t events;

	check_int(db_job_azure_created(db, id, "Created", 1700000000, 10), 0);
	events = event_count(db, id);
	check_int(db_job_set_azure_state(db, id, "Created", 20), 0);
	check_int(event_count(db, id), events);
	j = get(db, id);
	check_int(j->updated, 10);
	job_row_free(j);

	check_int(db_job_set_azure_state(db, id, "Received", 30), 1);
	check_last_event(db, id, DB_EVENT_AZURE, JOB_STAGING, "Azure status: Received");
	check_int(event_count(db, id), events + 1);
	j = get(db, id);
	check_str(j->azure_state, "Received");
	check_int(j->updated, 30);
	job_row_free(j);
	check_int(db_job_set_azure_state(db, id, "Received", 40), 0);
	check_int(event_count(db, id), events + 1);
	check_int(db_job_set_azure_state(db, id, NULL, 1), -EINVAL);
	check_int(db_job_set_azure_state(db, id, "", 1), -EINVAL);
	check_int(db_job_set_azure_state(db, 999999, "Received", 1), -ENOENT);

	check_int(db_job_set_warned(db, id, 7, false), 0);
	check_azure_fields(db, id, NULL, 10, 0, 7, false);
	check_int(db_job_set_warned(db, id, 3, true), 0);
	check_azure_fields(db, id, NULL, 10, 0, 3, true);
	check_int(db_job_set_warned(db, id, 3, true), 0); /* the same again is fine */
	check_int(db_job_set_warned(db, id, 0, false), 0);
	check_azure_fields(db, id, NULL, 10, 0, 0, false);
	check_int(db_job_set_warned(db, id, -1, false), -EINVAL);
	check_int(db_job_set_warned(db, 999999, 1, true), -ENOENT);
	check_int(event_count(db, id), events + 1);
	j = get(db, id);
	check_int(j->updated, 30);
	job_row_free(j);
}

/* shipped_at comes with the move to shipped and stays; tracking works in any state. */
static void
test_azure_shipped(struct db *db)
{
	int64_t id = new_job(db, "azure-ship"), other = new_job(db, "azure-ship-2");

	check_int(db_job_advance(db, id, JOB_STAGING, JOB_DRIVE_PREP, "x", NULL, 10), 0);
	check_azure_fields(db, id, NULL, 0, 0, 0, false);
	check_int(db_job_set_tracking(db, id, "UPS", "1ZAZURE", 15), 0);
	check_int(db_job_advance(db, id, JOB_DRIVE_PREP, JOB_SHIPPED, "x", NULL, 20), 0);
	check_azure_fields(db, id, NULL, 0, 20, 0, false);
	check_int(db_job_set_tracking(db, id, "FedEx", "7700AZURE", 25), 0);
	check_int(db_job_advance(db, id, JOB_SHIPPED, JOB_IMPORTED, "x", NULL, 30), 0);
	check_azure_fields(db, id, NULL, 0, 20, 0, false);

	check_int(db_job_fail(db, other, JOB_STAGING, "boom", 40), 0);
	check_int(db_job_set_tracking(db, other, "UPS", "7700AZURE", 41), -EEXIST);
	check_int(db_job_set_tracking(db, other, "UPS", "1ZOTHER", 42), 0);
	check_azure_fields(db, other, NULL, 0, 0, 0, false);
}

/* A failing event INSERT leaves the job as it was. */
static void
test_azure_atomic(struct db *db, const char *path)
{
	int64_t id = new_job(db, "azure-atomic");
	sqlite3 *raw = raw_open(path);
	struct job_row *j;

	raw_exec(raw, "CREATE TRIGGER no_events BEFORE INSERT ON events "
	              "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
	check_int(db_job_set_azure_name(db, id, "seedd-atomic", "DataBox", 5), -EIO);
	check_int(db_job_azure_created(db, id, "Created", 100, 5), -EIO);
	check_int(db_job_set_azure_state(db, id, "Received", 5), -EIO);
	raw_exec(raw, "DROP TRIGGER no_events");
	j = get(db, id);
	check(j->azure_job_name == NULL && j->azure_api == NULL && j->azure_state == NULL);
	check_int(j->azure_created, 0);
	check_int(j->ship_deadline, 0);
	check_int(j->updated, 1000);
	job_row_free(j);

	/* The schema's CHECKs. */
	check(sqlite3_exec(raw, "UPDATE jobs SET azure_api = 'Bogus'", NULL, NULL, NULL) !=
	      SQLITE_OK);
	check(sqlite3_exec(raw, "UPDATE jobs SET receive_warned = 2", NULL, NULL, NULL) !=
	      SQLITE_OK);
	check(sqlite3_exec(raw, "UPDATE jobs SET shipped_at = -1", NULL, NULL, NULL) != SQLITE_OK);
	check(sqlite3_exec(raw, "UPDATE drives SET azure_bytes = -1", NULL, NULL, NULL) !=
	      SQLITE_OK);
	sqlite3_close(raw);
}

static void
check_drive_azure(const struct drive_row *d, const char *status, int64_t bytes, int64_t total,
                  int64_t errored, const char *error_log, const char *verbose_log)
{
	check(same(d->azure_status, status));
	check(same(d->error_log, error_log));
	check(same(d->verbose_log, verbose_log));
	check_int(d->azure_bytes, bytes);
	check_int(d->azure_total, total);
	check_int(d->azure_files_errored, errored);
}

/* The drive's Azure fields through db_drive_get(), db_drive_list() and db_drive_by_serial(). */
static void
check_drive_everywhere(struct db *db, int64_t job, int64_t drive, const char *serial,
                       const char *status, int64_t bytes, int64_t total, int64_t errored,
                       const char *error_log, const char *verbose_log)
{
	struct drive_row d, *rows = NULL;
	size_t n = 0, found = 0;

	check_int(db_drive_get(db, drive, &d), 0);
	check_drive_azure(&d, status, bytes, total, errored, error_log, verbose_log);
	drive_row_done(&d);
	check_int(db_drive_by_serial(db, job, serial, &d), 0);
	check_int(d.id, drive);
	check_int(d.job_id, job);
	check_str(d.serial, serial);
	check_drive_azure(&d, status, bytes, total, errored, error_log, verbose_log);
	drive_row_done(&d);
	check(d.azure_status == NULL && d.error_log == NULL && d.verbose_log == NULL);
	check_int(db_drive_list(db, job, &rows, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (rows[i].id == drive) {
			found++;
			check_drive_azure(&rows[i], status, bytes, total, errored, error_log,
			                  verbose_log);
		}
	check_int(found, 1);
	drive_rows_free(rows, n);
}

static void
test_azure_drives(struct db *db)
{
	int64_t job = new_job(db, "azure-drives"), other = new_job(db, "azure-drives-2");
	int64_t d1 = new_drive(db, job, "AZ-1"), d2 = new_drive(db, job, "AZ-2");
	struct drive_row d;

	check_drive_everywhere(db, job, d1, "AZ-1", NULL, 0, 0, 0, NULL, NULL);
	check_int(db_drive_set_azure(db, d1, "Received", 10, 100, 0, NULL, NULL), 0);
	check_drive_everywhere(db, job, d1, "AZ-1", "Received", 10, 100, 0, NULL, NULL);
	check_int(db_drive_set_azure(db, d1, "Completed", 100, 100, 2, "https://a/err.xml",
	                             "https://a/verbose.xml"),
	          0);
	check_drive_everywhere(db, job, d1, "AZ-1", "Completed", 100, 100, 2, "https://a/err.xml",
	                       "https://a/verbose.xml");
	/* NULL strings keep the old values; the numbers are replaced. */
	check_int(db_drive_set_azure(db, d1, NULL, 90, 95, 3, NULL, NULL), 0);
	check_drive_everywhere(db, job, d1, "AZ-1", "Completed", 90, 95, 3, "https://a/err.xml",
	                       "https://a/verbose.xml");
	check_int(db_drive_set_azure(db, d1, NULL, 90, 95, 3, NULL, "https://b/verbose.xml"), 0);
	check_drive_everywhere(db, job, d1, "AZ-1", "Completed", 90, 95, 3, "https://a/err.xml",
	                       "https://b/verbose.xml");
	/* The other drive is untouched. */
	check_drive_everywhere(db, job, d2, "AZ-2", NULL, 0, 0, 0, NULL, NULL);

	check_int(db_drive_set_azure(db, d1, "x", -1, 0, 0, NULL, NULL), -EINVAL);
	check_int(db_drive_set_azure(db, d1, "x", 0, -1, 0, NULL, NULL), -EINVAL);
	check_int(db_drive_set_azure(db, d1, "x", 0, 0, -1, NULL, NULL), -EINVAL);
	check_int(db_drive_set_azure(db, 999999, "x", 0, 0, 0, NULL, NULL), -ENOENT);
	check_drive_everywhere(db, job, d1, "AZ-1", "Completed", 90, 95, 3, "https://a/err.xml",
	                       "https://b/verbose.xml");

	check_int(db_drive_by_serial(db, job, "AZ-3", &d), -ENOENT);
	check_int(db_drive_by_serial(db, other, "AZ-1", &d), -ENOENT);
	check_int(db_drive_by_serial(db, 999999, "AZ-1", &d), -ENOENT);
	check_int(db_drive_by_serial(db, job, NULL, &d), -EINVAL);
}

/* ---- A big job --------------------------------------------------------------------- */

#define BULK_FILES 200000
#define BULK_BATCH 2000

struct bulk_sum {
	int64_t n, bytes, last_id;
	bool ordered;
};

static int
bulk_cb(int64_t id, int64_t size, void *userdata)
{
	struct bulk_sum *s = userdata;

	if (id <= s->last_id)
		s->ordered = false;
	s->last_id = id;
	s->n++;
	s->bytes += size;
	return 0;
}

static double
since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void
bulk_insert(struct db *db, int64_t job)
{
	static char names[BULK_BATCH][32];
	static struct file_entry e[BULK_BATCH];

	for (int64_t first = 0; first < BULK_FILES; first += BULK_BATCH) {
		for (int64_t i = 0; i < BULK_BATCH; i++) {
			(void)snprintf(names[i], sizeof(names[i]), "d%03lld/file-%07lld",
			               (long long)((first + i) % 997), (long long)(first + i));
			e[i] = entry(names[i], (first + i) % 4096, 1);
		}
		check_int(db_files_insert_batch(db, job, e, BULK_BATCH), 0);
	}
}

static void
test_bulk(void)
{
	_cleanup_free_ char *path = db_path("bulk");
	_cleanup_free_ struct placement *p = xcalloc(BULK_FILES, sizeof(*p));
	struct db *db = open_ok(path);
	int64_t job = new_job(db, "bulk"), d = new_drive(db, job, "BULK-1"), first_id;
	struct bulk_sum s = {.ordered = true};
	int64_t want_bytes = 0;
	struct timespec t0;
	struct job_row *j;
	struct file_count c;

	for (int64_t i = 0; i < BULK_FILES; i++)
		want_bytes += i % 4096;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	bulk_insert(db, job);
	fprintf(stderr, "bulk: inserted %d files in batches of %d: %.2f s\n", BULK_FILES,
	        BULK_BATCH, since(&t0));

	clock_gettime(CLOCK_MONOTONIC, &t0);
	check_int(db_files_foreach_plannable(db, job, bulk_cb, &s), 0);
	fprintf(stderr, "bulk: foreach_plannable: %.2f s\n", since(&t0));
	check_int(s.n, BULK_FILES);
	check_int(s.bytes, want_bytes);
	check(s.ordered);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	check_int(db_job_set_totals(db, job, 2), 0);
	check_int(db_files_count(db, job, "indexed", &c), 0);
	fprintf(stderr, "bulk: set_totals + count: %.2f s\n", since(&t0));
	j = get(db, job);
	check_int(j->files, BULK_FILES);
	check_int(j->bytes, want_bytes);
	job_row_free(j);
	check_int(c.files, BULK_FILES);

	/* Place them all in one transaction. */
	first_id = s.last_id - BULK_FILES + 1;
	for (int64_t i = 0; i < BULK_FILES; i++)
		p[i] = (struct placement){first_id + i, d};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	check_int(db_files_place(db, p, BULK_FILES), 0);
	fprintf(stderr, "bulk: placed %d files in one call: %.2f s\n", BULK_FILES, since(&t0));
	check_int(db_files_count(db, job, "planned", &c), 0);
	check_int(c.files, BULK_FILES);
	s = (struct bulk_sum){.ordered = true};
	check_int(db_files_foreach_plannable(db, job, bulk_cb, &s), 0);
	check_int(s.n, BULK_FILES);
	check_int(s.bytes, want_bytes);
	db_close(db);
}


/* ---- Secrets leave once a job is done or cancelled (issue 11) ------------------ */

/* Does the file at path (missing: no) hold the bytes of s? */
static bool
file_holds(const char *path, const char *s)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t len;
	bool found;

	if (f == NULL)
		return false;
	check(fseek(f, 0, SEEK_END) == 0);
	len = (size_t)ftell(f);
	rewind(f);
	buf = xmalloc(len + 1);
	check(fread(buf, 1, len, f) == len);
	fclose(f);
	found = memmem(buf, len, s, strlen(s)) != NULL;
	free(buf);
	return found;
}

/* The text of the job's "secrets-deleted" event, or NULL. */
static char *
secrets_event(struct db *db, int64_t id)
{
	struct event_row *ev = NULL;
	char *text = NULL;
	size_t n = 0;

	check_int(db_event_list(db, id, 0, &ev, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (strcmp(ev[i].kind, DB_EVENT_SECRETS) == 0)
			text = xstrdup(ev[i].text);
	event_rows_free(ev, n);
	return text;
}

static void
test_secrets_forgotten(void)
{
	static const char done_key[] = "121212-232323-343434-454545-565656-676767-787878-898989";
	static const char cancel_key[] = "101010-202020-303030-404040-505050-606060-707070-808080";
	static const char failed_key[] = "131313-242424-353535-464646-575757-686868-797979-000000";
	static const enum job_state path[] = {JOB_STAGING,    JOB_DRIVE_PREP, JOB_SHIPPED,
	                                      JOB_IMPORTED,   JOB_VAULT_COPY, JOB_CLEANUP,
	                                      JOB_DONE};
	_cleanup_free_ char *dbp = db_path("forget"), *wal = xprintf("%s-wal", dbp);
	_cleanup_free_ char *text = NULL;
	struct db *db = open_ok(dbp);
	int64_t done = new_job(db, "f-done"), cancelled = new_job(db, "f-cancel");
	int64_t failed = new_job(db, "f-failed");
	int64_t d1 = new_drive(db, done, "FD-1"), d2 = new_drive(db, done, "FD-2");
	int64_t dc = new_drive(db, cancelled, "FC-1"), df = new_drive(db, failed, "FF-1");
	char *v = NULL;

	check_int(db_secret_put(db, done, d1, "bitlocker-key", done_key, strlen(done_key)), 0);
	check_int(db_secret_put(db, done, d2, "bitlocker-key", done_key, strlen(done_key)), 0);
	check_int(db_secret_put(db, cancelled, dc, "bitlocker-key", cancel_key, strlen(cancel_key)),
	          0);
	check_int(db_secret_put(db, failed, df, "bitlocker-key", failed_key, strlen(failed_key)), 0);

	/* Kept through every active state, gone at done, said in the log. */
	for (size_t i = 0; i + 1 < ELEMENTSOF(path); i++) {
		check_int(db_secret_get(db, d1, "bitlocker-key", &v), 0);
		free(v);
		check(secrets_event(db, done) == NULL);
		check_int(db_job_advance(db, done, path[i], path[i + 1], "", NULL, 3000 + (int64_t)i),
		          0);
	}
	check_int(db_secret_get(db, d1, "bitlocker-key", &v), -ENOENT);
	check_int(db_secret_get(db, d2, "bitlocker-key", &v), -ENOENT);
	text = secrets_event(db, done);
	check_str(text, "2 BitLocker recovery passwords deleted from the database");

	/* Cancelled: gone too. Failed (retry may resume): kept. */
	check_int(db_job_cancel(db, cancelled, JOB_STAGING, NULL, 4000), 0);
	check_int(db_secret_get(db, dc, "bitlocker-key", &v), -ENOENT);
	free(text);
	text = secrets_event(db, cancelled);
	check_str(text, "1 BitLocker recovery password deleted from the database");
	check_int(db_job_fail(db, failed, JOB_STAGING, "broken", 4001), 0);
	check_int(db_secret_get(db, df, "bitlocker-key", &v), 0);
	free(v);
	check(secrets_event(db, failed) == NULL);

	/* secure_delete and the WAL checkpoint: no copy left in the files. */
	check(!file_holds(dbp, done_key) && !file_holds(wal, done_key));
	check(!file_holds(dbp, cancel_key) && !file_holds(wal, cancel_key));
	check(file_holds(dbp, failed_key) || file_holds(wal, failed_key)); /* the scan works */
	db_close(db);
	check(!file_holds(dbp, done_key) && !file_holds(dbp, cancel_key));
}

/* v4 on a v3 file: passwords of jobs already done or cancelled leave, said in their log. */
static void
test_v4_forgets_old_secrets(void)
{
	_cleanup_free_ char *path = db_path("v3");
	struct db *db = open_ok(path);
	int64_t done = new_job(db, "v3-done"), active = new_job(db, "v3-active");
	int64_t dd = new_drive(db, done, "V3-1"), da = new_drive(db, active, "V3-2");
	_cleanup_free_ char *text = NULL;
	sqlite3 *raw;
	char *v = NULL;

	check_int(db_secret_put(db, done, dd, "bitlocker-key", "k-done", 6), 0);
	check_int(db_secret_put(db, active, da, "bitlocker-key", "k-active", 8), 0);
	db_close(db);
	/* Back to a v3 file whose job is done (as a v3 seedd left it). */
	raw = raw_open(path);
	/* -- drives: v5 */
	raw_exec(raw, "DROP INDEX jobs_purged");
	raw_exec(raw, "ALTER TABLE jobs DROP COLUMN purged");
	raw_exec(raw, "ALTER TABLE drives DROP COLUMN unused");
	raw_exec(raw, "DROP INDEX files_job_linked");
	raw_exec(raw, "ALTER TABLE files DROP COLUMN links");
	/* v5 (plan) */
	raw_exec(raw, "ALTER TABLE jobs DROP COLUMN excludes");
	raw_exec(raw, "ALTER TABLE jobs DROP COLUMN skip_refused");
	raw_exec(raw, "ALTER TABLE files DROP COLUMN excluded_by");
	raw_exec(raw, "UPDATE jobs SET state = 'done' WHERE name = 'v3-done'");
	raw_exec(raw, "PRAGMA user_version = 3");
	sqlite3_close(raw);

	db = open_ok(path);
	check_int(db_schema_version_found(db), 3);
	check_int(db_secret_get(db, dd, "bitlocker-key", &v), -ENOENT);
	check_int(db_secret_get(db, da, "bitlocker-key", &v), 0);
	check_str(v, "k-active");
	free(v);
	text = secrets_event(db, done);
	check_str(text, "1 BitLocker recovery password(s) deleted from the database");
	check(secrets_event(db, active) == NULL);
	db_close(db);
}

/* How many rows the SQL counts (through the connection: a white-box check). */
static int64_t
count_sql(struct db *db, const char *sql, int64_t id)
{
	sqlite3_stmt *st;
	int64_t v;

	check_int(sqlite3_prepare_v2(db->sqlite, sql, -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_int64(st, 1, id);
	check_int(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/*
 * A drive that received nothing is 'unused' until another state is set; a
 * removed drive's files wait again (verified ones only with force), its key
 * goes with it, all or nothing.
 */
static void
test_drive_unused_remove(struct db *db)
{
	int64_t job = new_job(db, "remove"), a = new_drive(db, job, "RM-A"),
		b = new_drive(db, job, "RM-B");
	int64_t p = new_file(db, job, "p", 100), v = new_file(db, job, "v", 200);
	unsigned char md5[16] = {1};
	struct drive_held h = {0};
	struct block_row bl[2];
	struct drive_row d;
	char *key = NULL;

	check_int(db_drive_set_state(db, b, "unused"), 0);
	check_int(db_drive_get(db, b, &d), 0);
	check_str(d.state, "unused");
	drive_row_done(&d);
	check_int(db_drive_set_state(db, b, "copying"), 0);
	check_int(db_drive_get(db, b, &d), 0);
	check_str(d.state, "copying");
	drive_row_done(&d);
	check_int(db_drive_set_state(db, 999999, "unused"), -ENOENT);

	check_int(db_secret_put(db, job, a, "bitlocker-key", "k-a", 3), 0);
	check_int(db_files_place(db, (struct placement[]){{p, a}, {v, a}}, 2), 0);
	make_blocks(bl, 0, 1, 50, 1);
	check_int(db_file_checkpoint(db, p, 0, bl, 1), 0);
	make_blocks(bl, 0, 2, 100, 1);
	check_int(db_file_verified(db, v, a, md5, bl, 2, true, 5), 0);
	check_int(db_job_set_totals(db, job, 6), 0);
	check_copied(db, job, 1, 200, 1);
	/* Without force: refused, nothing changed. */
	check_int(db_drive_remove(db, job, a, false, 10, &h), -ENOTEMPTY);
	check_int(h.verified_files, 1);
	check_file(db, job, v, "verified", a, 2, 2);
	check_int(db_drive_remove(db, job + 1000, a, true, 10, NULL), -ENOENT);
	check_int(db_drive_remove(db, job, a, true, 10, &h), 0);
	check(h.verified_files == 1 && h.verified_bytes == 200 && h.planned_files == 1);
	check_file(db, job, p, "indexed", 0, 0, 0);
	check_file(db, job, v, "indexed", 0, 0, 0);
	check_copied(db, job, 0, 0, 0);
	check_totals_consistent(db, job);
	check_int(db_drive_get(db, a, &d), -ENOENT);
	check_int(db_secret_get(db, a, "bitlocker-key", &key), -ENOENT);
	check_int(count_sql(db, "SELECT count(*) FROM events WHERE job_id = ?1 AND kind = 'drive' "
			    "AND text LIKE 'drive RM-A removed; its 1 verified files%'", job), 1);
	check_int(db_drive_remove(db, job, a, true, 11, NULL), -ENOENT);
	check_int(db_drive_remove(db, job, b, false, 11, NULL), 0);
}

/*
 * A purged job leaves every reader at once (its name free), then its rows go
 * a window at a time; a purge cut short resumes from cursor 0.
 */
static void
test_purge(struct db *db)
{
	int64_t job = new_job(db, "purge-me"), keep = new_job(db, "purge-keep");
	int64_t d = new_drive(db, job, "PG-1"), cursor = 0, steps = 0, id = 0, other, first;
	unsigned char md5[16] = {2};
	static struct file_entry e[DB_PURGE_FILES + 10];
	static char names[DB_PURGE_FILES + 10][16];
	static struct placement pl[300];
	static struct verified_file vf[300];
	struct block_row bl[8];
	struct job_row *j = NULL;
	int64_t counts[_JOB_STATE_MAX], before;
	int r;

	/* In three transactions, not one per file: the first window is DB_PURGE_FILES files. */
	for (size_t i = 0; i < ELEMENTSOF(e); i++) {
		snprintf(names[i], sizeof(names[i]), "f%zu", i);
		e[i] = entry(names[i], 800, 1);
	}
	check_int(db_files_insert_batch(db, job, e, ELEMENTSOF(e)), 0);
	first = new_file(db, job, "f0", 800); /* known: its id */
	make_blocks(bl, 0, 8, 100, 1);
	for (size_t i = 0; i < ELEMENTSOF(pl); i++) {
		pl[i] = (struct placement){first + (int64_t)i, d};
		vf[i] = (struct verified_file){.file_id = first + (int64_t)i, .drive_id = d,
					       .md5 = md5, .blocks = bl, .n = 8, .verified = true};
	}
	check_int(db_files_place(db, pl, ELEMENTSOF(pl)), 0);
	check_int(db_files_verified(db, vf, ELEMENTSOF(vf), 5), 0);
	check_int(count_sql(db, "SELECT count(*) FROM blocks WHERE file_id IN "
			    "(SELECT id FROM files WHERE job_id = ?1)", job), 8 * 300);
	other = new_file(db, keep, "k", 1);
	check_int(db_secret_put(db, job, d, "bitlocker-key", "k-p", 3), 0);
	check_int(db_job_purge(db, job, 20), -ESTALE); /* staging */
	check_int(db_job_cancel(db, job, JOB_STAGING, NULL, 21), 0);
	check_int(db_purge_next(db, &id), -ENOENT);
	check_int(db_job_count_by_state(db, counts), 0);
	before = counts[JOB_CANCELLED];
	check_int(db_job_purge(db, job, 22), 0);
	check_int(db_job_purge(db, job, 22), -ENOENT);
	check_int(db_job_get(db, "purge-me", &j), -ENOENT);
	check_int(db_job_get_by_id(db, job, &j), -ENOENT);
	check_int(db_job_count_by_state(db, counts), 0);
	check_int(counts[JOB_CANCELLED], before - 1);
	check_int(db_secret_get(db, d, "bitlocker-key", (char **)&j), -ENOENT);
	check_int(db_purge_next(db, &id), 0);
	check_int(id, job);
	/* One step, then "a crash": the next purge starts from cursor 0. */
	check_int(db_purge_step(db, job, &cursor), DB_PURGE_FILES);
	check(cursor > 0);
	cursor = 0;
	while ((r = db_purge_step(db, job, &cursor)) > 0)
		steps++;
	check_int(r, 0);
	check_int(steps, 2); /* the 10 files left, then the events */
	check_int(count_sql(db, "SELECT count(*) FROM files WHERE job_id = ?1", job), 0);
	check_int(count_sql(db, "SELECT count(*) FROM drives WHERE job_id = ?1", job), 0);
	check_int(count_sql(db, "SELECT count(*) FROM jobs WHERE id = ?1", job), 0);
	check_int(count_sql(db, "SELECT count(*) FROM files WHERE id = ?1", other), 1);
	check_int(db_purge_next(db, &id), -ENOENT);
	check_int(db_job_create(db, "purge-me", "/srv", "vault", 30, &id), 0); /* the name is free */
}

static void
cleanup_tmpdir(void)
{
	_cleanup_free_ char *cmd = xprintf("rm -rf '%s'", tmpdir);

	(void)system(cmd);
}

static int
held_sum_cb(int64_t id, int64_t size, void *userdata)
{
	(void)id;
	*(int64_t *)userdata += size;
	return 0;
}

/* A writer of its own places only while the job is where it expects it. */
static void
test_place_in(struct db *db)
{
	int64_t job = new_job(db, "place-in");
	int64_t dr = new_drive(db, job, "PI-1");
	int64_t x = new_file(db, job, "x", 300), y = new_file(db, job, "y", 100);
	int64_t sum = 0;

	check_int(db_job_set_phase(db, job, JOB_STAGING, "indexed", 10), 0);
	check_int(db_files_place_in(db, job, JOB_STAGING, JOB_PHASE_INDEXING,
				    (struct placement[]){{x, dr}}, 1),
		  -ESTALE);
	check_int(db_files_place_in(db, job, JOB_DRIVE_PREP, _JOB_PHASE_INVALID,
				    (struct placement[]){{x, dr}}, 1),
		  -ESTALE);
	check_file(db, job, x, "indexed", 0, 0, 0);
	check_int(db_files_place_in(db, job, JOB_STAGING, JOB_PHASE_INDEXED,
				    (struct placement[]){{x, dr}, {y, dr}}, 2),
		  0);
	check_file(db, job, x, "planned", dr, 0, 0);
	/* What the drive holds: planned counts only when asked for. */
	check_int(db_drive_foreach_held(db, dr, true, held_sum_cb, &sum), 0);
	check_int(sum, 400);
	sum = 0;
	check_int(db_drive_foreach_held(db, dr, false, held_sum_cb, &sum), 0);
	check_int(sum, 0);
	/* Indexing rows: refused once the job has left indexing. */
	struct file_entry e = entry("late", 7, 1);
	check_int(db_files_insert_batch_in(db, job, JOB_STAGING, JOB_PHASE_INDEXING, &e, 1),
		  -ESTALE);
}

struct lock_holder {
	const char *path;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool held;
};

static void *
hold_lock_thread(void *arg)
{
	struct lock_holder *h = arg;
	sqlite3 *raw = raw_open(h->path);

	raw_exec(raw, "BEGIN IMMEDIATE");
	pthread_mutex_lock(&h->lock);
	h->held = true;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
	usleep(100 * 1000);
	raw_exec(raw, "COMMIT");
	sqlite3_close(raw);
	return NULL;
}

/* A write waits (busy_cb) while another connection holds the lock, then goes through. */
static void
test_busy_wait(struct db *db, const char *path)
{
	struct lock_holder h = {.path = path};
	int64_t job = new_job(db, "busy");
	pthread_t t;

	pthread_mutex_init(&h.lock, NULL);
	pthread_cond_init(&h.cond, NULL);
	check_int(pthread_create(&t, NULL, hold_lock_thread, &h), 0);
	pthread_mutex_lock(&h.lock);
	while (!h.held)
		pthread_cond_wait(&h.cond, &h.lock);
	pthread_mutex_unlock(&h.lock);
	check_int(db_event_add(db, job, "note", "after the lock", 20), 0);
	pthread_join(t, NULL);
	pthread_mutex_destroy(&h.lock);
	pthread_cond_destroy(&h.cond);
}

/*
 * No memory statistics once a connection is open: with them every SQLite
 * allocation in any thread takes one global mutex, which the loop then waits
 * on behind a preempted worker (bench/control-plane).
 */
static void
test_no_memstatus(struct db *db)
{
	void *p;

	check(db != NULL);
	p = sqlite3_malloc(1 << 20);
	check(p != NULL);
	check_int((int)(sqlite3_memory_used() > 0), 0);
	sqlite3_free(p);
}

int
main(void)
{
	_cleanup_free_ char *path = NULL, *counts_path = NULL;
	struct db *db;

	check(mkdtemp(tmpdir) != NULL);
	test_create_mode_pragmas();
	test_reopen();
	test_migrate_from_zero();
	test_migration_failure_is_atomic();
	test_newer_schema_refused();
	test_not_a_database();

	path = db_path("main");
	db = open_ok(path);
	test_create(db);
	test_advance(db);
	test_fail_retry(db);
	test_cancel(db);
	test_set_phase(db);
	test_events(db);
	test_tracking(db);
	test_atomic(db, path);
	test_commit_guard(db);
	test_drives_and_secrets(db, path);
	test_files_scan(db, path);
	test_excluded_and_skip_refused(db);
	test_files_rescan(db);
	test_files_page(db);
	test_place(db);
	test_place_in(db);
	test_busy_wait(db, path);
	test_no_memstatus(db);
	test_checkpoint_verified(db);
	test_reindex_unplace(db);
	test_waiting_counts_clear(db);
	test_drives(db);
	test_retry_network_repair(db);
	test_drive_attach(db);
	test_secrets(db, path);
	test_azure_name(db);
	test_azure_created(db);
	test_azure_state_warned(db);
	test_azure_shipped(db);
	test_azure_atomic(db, path);
	test_azure_drives(db);
	test_query_plans(db);
	test_counts_and_list(db);
	test_drive_unused_remove(db);
	test_purge(db);
	check(db_close(db) == NULL);
	check(db_close(NULL) == NULL);

	counts_path = db_path("counts");
	test_counts_fresh(counts_path);
	test_readonly();
	test_secrets_forgotten();
	test_v4_forgets_old_secrets();
	test_bulk();
	cleanup_tmpdir();
	return 0;
}
