/*
 * The store's jobs: reading job rows and events, each job transition (a
 * guarded UPDATE plus an event row, one transaction), the Azure stages' job
 * columns, and purging a job (issue 12).
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

	if ((r = db_bind(db, st, "t", name)) < 0)
		return r;
	return job_get_one(db, st, ret);
}

int
db_job_get_by_id(struct db *db, int64_t id, struct job_row **ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_JOB_BY_ID];
	int r;

	if ((r = db_bind(db, st, "i", id)) < 0)
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

	if ((r = db_bind(db, st, "ii", job_id, limit == 0 ? (int64_t)-1 : (int64_t)limit)) < 0)
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
void
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

	if ((r = db_bind(db, st, "i", job_id)) < 0)
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

	if ((r = db_bind(db, st, "i", id)) < 0)
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
int
job_update(struct db *db, enum db_stmt s, int64_t id, const char *types, ...)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[s];
	enum job_state state, failed;
	va_list ap;
	int r;

	if ((r = db_bind(db, st, "i", id)) < 0)
		return r;
	va_start(ap, types);
	r = db_bind_va(db, st, 2, types, ap);
	va_end(ap);
	if (r < 0 || (r = step_done(db, st)) < 0)
		return r;
	if (sqlite3_changes(db->sqlite) > 0)
		return 0;
	if ((r = job_state_get(db, id, &state, &failed)) < 0)
		return r;
	return -ESTALE;
}

/* Inside the transaction: 0 if the job is in state (and phase, unless _JOB_PHASE_INVALID), else -ESTALE. */
int
job_in(struct db *db, int64_t job_id, enum job_state state, enum job_phase phase)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_JOB_STATE_PHASE];
	const char *have;
	int r, rc;

	if ((r = db_bind(db, st, "i", job_id)) < 0)
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

/* The event row records the job's state as it is after the change. */
int
event_insert(struct db *db, int64_t job_id, const char *kind, const char *text, int64_t now)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_EVENT_INSERT];
	int r;

	if ((r = db_bind(db, st, "iitt", job_id, now, kind, text != NULL ? text : "")) < 0)
		return r;
	return step_done(db, st);
}

static int
job_insert(struct db *db, const char *name, const char *staging_path, const char *container,
           const char *excludes, int64_t now, int64_t *ret_id)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_JOB_INSERT];
	int r;

	if ((r = db_bind(db, st, "tttit", name, staging_path, container, now, excludes)) < 0 ||
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

	if ((r = db_run(db, STMT_SECRET_DELETE_JOB, job_id, "")) < 0)
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
void
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
	enum job_state state = JOB_FAILED, step = JOB_FAILED; /* set when r == 0; -O3 cannot tell */
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
		r = db_run(db, STMT_DRIVES_ALLOW_NETWORK_REPAIR, id, "");
	if (r >= 0 && skip_refused)
		r = db_run(db, STMT_JOB_SET_SKIP_REFUSED, id, "");
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

/* ---- Purging jobs (issue 12) ---------------------------------------------------- */

int
db_job_purge(struct db *db, int64_t id, int64_t now)
{
	struct job_row *j = NULL;
	int r;

	if ((r = db_tx_begin(db)) < 0)
		return r;
	r = db_run(db, STMT_JOB_PURGE, id, "i", now);
	if (r >= 0 && sqlite3_changes(db->sqlite) == 0)
		r = db_job_get_by_id(db, id, &j) == 0 ? -ESTALE : -ENOENT;
	if (r >= 0)
		r = db_run(db, STMT_SECRET_DELETE_JOB, id, "");
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

	if ((r = db_bind(db, st, "iii", job_id, cursor, (int64_t)DB_PURGE_FILES)) < 0)
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
		r = db_run(db, STMT_PURGE_BLOCKS, job_id, "ii", first, last);
		if (r >= 0)
			r = db_run(db, STMT_PURGE_FILES, job_id, "ii", first, last);
		n = sqlite3_changes(db->sqlite);
	} else if (r == 0) {
		r = db_run(db, STMT_PURGE_EVENTS, job_id, "i", (int64_t)DB_PURGE_FILES);
		n = sqlite3_changes(db->sqlite);
		if (r >= 0 && n == 0)
			r = db_run(db, STMT_PURGE_JOB, job_id, "");
	}
	if ((r = tx_end(db, r)) < 0)
		return r;
	if (last > 0)
		*cursor = last;
	return n;
}
