/*
 * The job store on a temporary directory: open, create mode and PRAGMAs,
 * migrations and the newer-schema refusal, every transition function with
 * its event row and its -ESTALE/-EINVAL/-ENOENT cases, counts, event limits,
 * tracking uniqueness, atomicity when the event INSERT fails, and the commit
 * guard. White-box: a second raw SQLite connection and db-internal.h are used
 * to look at and tamper with the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
	check_int(db_pragma_int(db, "busy_timeout", &v), 0);
	check_int(v, 5000);
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
	struct db *db = NULL;
	sqlite3 *raw = raw_open(path);

	raw_exec(raw, "PRAGMA user_version = 2");
	sqlite3_close(raw);
	check_int(db_open(path, &db, &err), -EPROTO);
	check(db == NULL);
	want = xprintf("database schema version 2 is newer than this seedd supports (%d); "
	               "upgrade seedd",
	               DB_SCHEMA_VERSION);
	check_str(err, want);

	raw = raw_open(path);
	check_int(raw_int(raw, "PRAGMA user_version"), 2);
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

	sql = xprintf("INSERT INTO drives (job_id, serial, path, capacity) VALUES "
	              "(%lld, 'WD-1', '/mnt/a', 1000), (%lld, 'WD-2', '/mnt/b', 2000)",
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

	/* No statement of the store may read secrets. */
	for (int i = 0; i < _STMT_MAX; i++)
		check(strcasestr(db_statements[i], "secret") == NULL);
}

static void
cleanup_tmpdir(void)
{
	_cleanup_free_ char *cmd = xprintf("rm -rf '%s'", tmpdir);

	(void)system(cmd);
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
	test_counts_and_list(db);
	check(db_close(db) == NULL);
	check(db_close(NULL) == NULL);

	counts_path = db_path("counts");
	test_counts_fresh(counts_path);
	cleanup_tmpdir();
	return 0;
}
