/*
 * The store's files on drives: placing files, copy checkpoints with their
 * blocks, and verified copies; each one transaction that keeps the job's and
 * the drive's counters in step.
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
		if ((r = db_bind(db, st, "i", p->drive_id)) < 0)
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
		r = db_run(db, STMT_FILE_UNPLAN, p->file_id, "");
	else
		r = db_run(db, STMT_FILE_PLACE, p->file_id, "i", p->drive_id);
	if (r < 0)
		return r;
	if (sqlite3_changes(db->sqlite) == 0)
		return place_failure(db, p);
	/* A new drive (or none) reset the checkpoint: drop the blocks past it. */
	return db_run(db, STMT_BLOCK_TRIM_CHECKPOINT, p->file_id, "");
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
	    (r = db_run(db, STMT_FILE_CHECKPOINT, file_id, "i", (int64_t)(first + n))) < 0)
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
int
blocks_read(struct db *db, int64_t file_id, struct block_row **buf, size_t *cap, size_t *ret_n)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_BLOCK_LIST];
	size_t n = 0;
	int r, rc;

	if ((r = db_bind(db, st, "i", file_id)) < 0)
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
	    (r = db_run(db, STMT_FILE_VERIFIED, file_id, "bii", md5, (size_t)16, (int64_t)n,
	             (int64_t)verified)) < 0 ||
	    (r = db_run(db, STMT_DRIVE_ADD_USED, drive_id, "ii", (int64_t)1, f.size)) < 0)
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
	    (r = db_run(db, STMT_FILE_RESET, file_id, "ii", size, mtime_ns)) < 0)
		return r;
	return db_run(db, STMT_JOB_ADD_BYTES, f.job_id, "ii", size - f.size, now);
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
	return db_run(db, STMT_FILE_RESET, file_id, "ii", f.size, f.mtime_ns);
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

