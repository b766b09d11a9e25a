/*
 * The store's files: their states and rows, scanner batches and counts, and
 * after the import the per-file outcome of reconcile, vault copy and cleanup.
 * Placing, copying and verifying are in db-copy.c.
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

/* ---- Files: states, rows, helpers run inside a transaction -------------------- */

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

int
file_info_get(struct db *db, int64_t file_id, struct file_info *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_FILE_INFO];
	int r;

	if ((r = db_bind(db, st, "i", file_id)) < 0)
		return r;
	return file_info_step(db, st, ret);
}

static int
file_info_by_path(struct db *db, int64_t job_id, const char *rel_path, struct file_info *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_FILE_BY_PATH];
	int r;

	if ((r = db_bind(db, st, "it", job_id, rel_path)) < 0)
		return r;
	return file_info_step(db, st, ret);
}

/* A row of FILE_COLUMNS. */
void
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

void
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

/* Add to the job's copied counters; now < 0 keeps jobs.updated. */
int
job_add_copied(struct db *db, int64_t job_id, int64_t files, int64_t bytes, int64_t verified,
               int64_t now)
{
	if (now < 0)
		return db_run(db, STMT_JOB_ADD_COPIED, job_id, "iii", files, bytes, verified);
	return db_run(db, STMT_JOB_ADD_COPIED, job_id, "iiii", files, bytes, verified, now);
}

/* Drop the file's blocks from idx on. */
int
blocks_trim(struct db *db, int64_t file_id, int64_t idx)
{
	return db_run(db, STMT_BLOCK_TRIM, file_id, "i", idx);
}

int
blocks_put(struct db *db, int64_t file_id, size_t first, const struct block_row *b, size_t n)
{
	int r = 0;

	for (size_t i = 0; r >= 0 && i < n; i++)
		r = db_run(db, STMT_BLOCK_PUT, file_id, "iiib", (int64_t)(first + i), b[i].offset,
		        b[i].length, b[i].md5, sizeof(b[i].md5));
	return r;
}

/*
 * The file is leaving its drive: a verified one leaves the drive's and the
 * job's copied counters, a planned or verified one loses its blocks.
 */
int
file_leave_drive(struct db *db, const struct file_info *f, int64_t now)
{
	int r;

	if (f->state == FILE_VERIFIED) {
		if (f->drive_id > 0 && (r = db_run(db, STMT_DRIVE_ADD_USED, f->drive_id, "ii",
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

	return db_run(db, STMT_FILE_UPSERT, job_id, "tiitttit", e->rel_path, e->size, e->mtime_ns,
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

	if ((r = db_bind(db, st, "i", job_id)) < 0)
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
	if ((r = db_bind(db, st, "i", job_id)) < 0 ||
	    (left_out >= 0 && (r = db_bind_at(db, st, 2, "i", (int64_t)left_out)) < 0) ||
	    (state != NULL && left_out < 0 && (r = db_bind_at(db, st, 2, "t", state)) < 0))
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
	if ((r = db_bind(db, st, "it", job_id, state)) < 0)
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
	if ((r = db_bind(db, st, "iii", job_id, after_id, (int64_t)limit)) < 0 ||
	    (left_out_of(state) >= 0 && (r = db_bind_at(db, st, 4, "i", (int64_t)left_out_of(state))) < 0) ||
	    (state != NULL && left_out_of(state) < 0 && (r = db_bind_at(db, st, 4, "t", state)) < 0) ||
	    (drive_id != 0 && (r = db_bind_at(db, st, 5, "i", drive_id)) < 0))
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
	if ((r = db_bind(db, st, "iii", job_id, after_id, (int64_t)limit)) < 0)
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

	if ((r = db_bind(db, st, "i", job_id)) < 0)
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

	if ((r = db_bind(db, st, "i", job_id)) < 0)
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
	if ((r = db_run(db, STMT_FILE_CLEAR, job_id, "")) >= 0 &&
	    (r = db_run(db, STMT_DRIVE_CLEAR_COUNTS, job_id, "")) >= 0)
		r = job_update(db, STMT_JOB_CLEAR_COUNTS, job_id, "");
	return tx_end(db, r);
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
		r = db_bind(db, st, "ittt", m->file_id, m->state, m->detail, m->method);
	else
		r = db_bind(db, st, "it", m->file_id, m->state);
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
	if ((r = db_bind(db, st, "it", job_id, value)) < 0)
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

	if ((r = db_bind(db, st, "it", job_id, method)) < 0)
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
	r = db_run(db, STMT_DRIVE_SET_LOG_STATUS, drive_id, "t", status);
	if (r >= 0 && sqlite3_changes(db->sqlite) == 0)
		r = -ENOENT;
	return tx_end(db, r);
}

/* Step st, bound to ?1 = id, to its one row: 0, -ENOENT without one. */
static int
step_row(struct db *db, sqlite3_stmt *st, int64_t id)
{
	int r, rc;

	if ((r = db_bind(db, st, "i", id)) < 0)
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

	if ((r = db_bind(db, st, "it", job_id, rel_path)) < 0)
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
	if ((r = db_bind(db, st, "iii", job_id, after_id, (int64_t)limit)) < 0)
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
