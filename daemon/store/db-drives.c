/*
 * The store's drives and secrets: adding drives with their keys, their
 * states, manifests and Azure progress, and removing a drive (issue 12).
 * Secrets are read and written only here (STMT_SECRET_*).
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

/* ---- Drives and secrets -------------------------------------------------------- */

static const char *const drive_states[] = {
    "attached", "copying", "copied", "manifest-written", "full",
};

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
	r = db_run(db, STMT_DRIVE_INSERT, job_id, "tttii", serial, path, uuid, capacity, free_bytes);
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
	r = db_run(db, STMT_DRIVE_INSERT, job_id, "tttii", n->serial, n->path, n->uuid, n->capacity,
	        n->free_bytes);
	id = sqlite3_last_insert_rowid(db->sqlite);
	if (r >= 0)
		r = db_run(db, STMT_DRIVE_SET_DIRECT_IO, id, "i", n->direct_io);
	if (r >= 0 && bl)
		r = db_run(db, STMT_DRIVE_SET_BITLOCKER, id, "ttt", n->bitlocker_device,
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

	if ((r = db_bind(db, st, "i", drive_id)) < 0)
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
	if ((r = db_bind(db, st, "it", job_id, serial)) < 0)
		return r;
	return drive_get_one(db, st, ret);
}

/* Count and size of the files of statement s on drive_id. */
static int
drive_count(struct db *db, enum db_stmt s, int64_t drive_id, struct file_count *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[s];
	int r, rc;

	if ((r = db_bind(db, st, "i", drive_id)) < 0)
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
	r = db_run(db, s, drive_id, "t", value);
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
		r = db_run(db, STMT_DRIVE_SET_UNUSED, drive_id, "");
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
	r = db_run(db, STMT_DRIVE_SET_DIRECT_IO, drive_id, "i", flags);
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
	r = db_run(db, STMT_DRIVE_SET_BITLOCKER, drive_id, "ttt", device, guid, cipher);
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
	r = db_run(db, STMT_DRIVE_SET_AZURE, drive_id, "tiiitt", status, bytes, total, files_errored,
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

	if ((r = db_bind(db, st, "i", drive_id)) < 0)
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

	if ((r = db_run(db, STMT_SECRET_DELETE, job_id, "it", drive_id, kind)) < 0 ||
	    (r = db_run(db, STMT_SECRET_INSERT, job_id, "itb", drive_id, kind, value, len)) < 0)
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
	if ((r = db_bind(db, st, "it", drive_id, kind)) < 0)
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

/* ---- Removing drives (issue 12) ----------------------------------------------- */

/* What the drive holds (STMT_DRIVE_HELD), inside the caller's transaction. */
static int
drive_held(struct db *db, int64_t drive_id, struct drive_held *ret)
{
	_cleanup_reset_ sqlite3_stmt *st = db->stmts[STMT_DRIVE_HELD];
	int r, rc;

	if ((r = db_bind(db, st, "i", drive_id)) < 0)
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
		r = db_run(db, STMT_DRIVE_FREE_BLOCKS, drive_id, "");
	if (r >= 0)
		r = db_run(db, STMT_DRIVE_FREE_FILES, drive_id, "");
	/* Its secrets go with it (ON DELETE CASCADE); secure_delete zeroes their pages. */
	if (r >= 0)
		r = db_run(db, STMT_DRIVE_DELETE, drive_id, "i", job_id);
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
