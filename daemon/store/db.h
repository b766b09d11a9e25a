/*
 * The job store. Only db.c and db-migrate.c include sqlite3.h.
 *
 * One write connection, owned by the loop thread. Every state change is one
 * BEGIN IMMEDIATE ... COMMIT: an UPDATE ... WHERE id=? AND state=? plus an
 * event row, so a stale transition changes nothing and reports -ESTALE.
 *
 * Return values: 0 or a positive count on success, negative errno on failure:
 * -ENOENT no such job, -EEXIST name (or tracking number) taken, -ESTALE the job
 * was no longer in the expected state, -EINVAL the transition table (job_next())
 * forbids the move or an argument is invalid, -EIO a database error (logged by
 * the caller with db_errmsg()), -EBUSY the database stayed locked past the busy
 * timeout, -ENOSPC the disk is full, -EPROTO the database schema is newer than
 * this binary, -EROFS a write on a read-only connection (db_open_readonly()).
 *
 * Files: a file row is 'indexed' (valid, not placed), 'invalid' (a name Azure
 * would refuse; reason), 'skipped' (not a regular file or on another file
 * system; reason; never copied), 'planned' (on a drive, blocks 0..checkpoint-1
 * recorded) or 'verified' (copied and checked, all its blocks recorded).
 * A 'skipped' row that one of the job's --exclude patterns left out carries
 * the pattern (files.excluded_by); readers see such rows in the state
 * "excluded" (file_row.state, and the `state` argument of db_files_count,
 * db_files_number and db_files_page), and "skipped" means only the others.
 * Counters kept in step: jobs.files/bytes count indexed, planned and verified
 * files; jobs.copied_files/copied_bytes and drives.files/used_bytes count
 * verified ones; jobs.verified_files those whose copy was re-read.
 */
#ifndef SEEDD_DB_H
#define SEEDD_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"
#include "names.h"

struct db;

/* A job row. Strings are owned by the struct; free with job_row_free(). */
struct job_row {
	int64_t id;
	char *name;
	enum job_state state;
	enum job_state failed_state; /* the step a failed job stopped in, else _JOB_STATE_INVALID */
	char *phase;
	char *staging_path;
	char *container;
	int64_t files, bytes;
	int64_t copied_files, copied_bytes, verified_files;
	char *azure_job_name, *azure_state, *carrier, *tracking_number;
	int64_t ship_deadline; /* UNIX seconds, 0 if none */
	char *error;           /* NULL if none */
	int attempts;
	int64_t created, updated; /* UNIX seconds */
	char *azure_api;          /* DB_AZURE_API_*, NULL until the Azure job is named */
	int64_t azure_created;    /* when Azure confirmed the job, 0: not yet */
	int64_t shipped_at;       /* when the job moved to shipped, 0: not yet */
	int deadline_warned;      /* smallest days-before-deadline threshold warned, 0: none */
	bool receive_warned;      /* the "not received yet" warning was given */
	char *excludes;           /* --exclude patterns as a JSON array of strings; NULL: none */
	bool skip_refused;        /* job retry --skip-refused: go on without refused names */
};

struct event_row {
	int64_t time;
	char *kind;
	enum job_state state;
	char *text;
};

struct drive_row {
	int64_t id;
	int64_t job_id;
	char *serial;
	char *path;
	int64_t capacity, used_bytes, files;
	char *state;         /* attached, copying, copied, manifest-written, full, unused */
	char *manifest_hash; /* NULL until the manifest is written */
	char *uuid;          /* the id in seedd's marker file on the drive */
	int64_t free_bytes;  /* free when attached */
	int64_t direct_io;   /* COPY_DIRECT_* flags: what the drive takes of O_DIRECT */
	/* As the Azure job last reported the drive: NULL and 0 until it does. */
	char *azure_status, *error_log, *verbose_log;
	int64_t azure_bytes, azure_total, azure_files_errored;
	/* The BitLocker volume checked at AddDrive; all NULL when the check was skipped. */
	char *bitlocker_device, *bitlocker_guid, *bitlocker_cipher;
};

/* One staging entry from the scanner; nothing is owned. */
struct file_entry {
	const char *rel_path;  /* '/'-separated, relative to the staging root */
	int64_t size, mtime_ns;
	const char *blob_name; /* "<container>/<job>/<rel_path>" */
	const char *state;     /* "indexed", "invalid" or "skipped" */
	const char *reason;    /* NULL unless invalid/skipped (ignored for indexed) */
	int64_t links;         /* link count when indexed; 0 means 1 */
	const char *excluded_by; /* skipped only: the --exclude pattern that matched; else NULL */
};

struct file_count {
	int64_t files, bytes;
};

/* A file row. Strings are owned by the row; free arrays with file_rows_free(). */
struct file_row {
	int64_t id, job_id, size, mtime_ns, drive_id /* 0 if none */, checkpoint;
	char *rel_path, *blob_name, *state, *reason; /* reason NULL unless set */
	unsigned char md5[16];
	bool has_md5;
	/* After the import (NULL until set): */
	char *import_state;  /* ok, missing, corrupt, renamed, failed, repaired */
	char *import_detail; /* Azure's status, or what differed */
	char *vault_state;   /* copying, verified */
	char *cleanup_state; /* blob-deleted, staging-deleted, staging-kept */
	char *import_method; /* how the import was verified: content-md5, block-list, ... */
	int64_t links;       /* link count when indexed: above 1, a problem (hard link) */
};

struct placement {
	int64_t file_id, drive_id; /* drive_id 0: back to 'indexed' */
};

/* One block of a file: Azure block blob block and DriveManifest <Block>. */
struct block_row {
	int64_t offset, length;
	unsigned char md5[16];
};

/* Schema version this binary writes (PRAGMA user_version). */
#define DB_SCHEMA_VERSION 5

/* Event kinds (events.kind). */
#define DB_EVENT_CREATED "created"
#define DB_EVENT_TRANSITION "transition"
#define DB_EVENT_FAILED "failed"
#define DB_EVENT_RETRY "retry"
#define DB_EVENT_CANCELLED "cancelled"
#define DB_EVENT_PHASE "phase"
#define DB_EVENT_NOTE "note"
#define DB_EVENT_AZURE "azure"
/* The job's BitLocker recovery passwords were deleted (done or cancelled). */
#define DB_EVENT_SECRETS "secrets-deleted"

/* The APIs an Azure job can be created with (jobs.azure_api). */
#define DB_AZURE_API_DATABOX "DataBox"
#define DB_AZURE_API_IMPORT_EXPORT "ImportExport"

/*
 * Open (creating if needed, mode 0600) and migrate the database at path.
 * On failure *ret_err gets an allocated message naming the problem.
 */
int db_open(const char *path, struct db **ret, char **ret_err);
struct db *db_close(struct db *db);
/*
 * SQLite checkpoints the write-ahead log on the committing connection when it
 * passes 1000 pages (on by default). The loop's connection turns it off, so
 * no commit of the loop copies the log into the database and syncs it;
 * db_checkpoint() does that on a thread of its own (a PASSIVE checkpoint:
 * it waits for no reader or writer). *ret_log and *ret_done: the log's
 * frames and those copied.
 */
int db_set_autocheckpoint(struct db *db, bool on);
/*
 * fn(arg, -errno, message) whenever a statement on db fails because the
 * database cannot be written at all: its file system is full (-ENOSPC) or
 * read-only (-EROFS), or an I/O error (-EIO). Any thread that uses db; NULL
 * removes it. The loop's connection has one: seedd stops rather than go on
 * with work it cannot record (core/daemon.c).
 */
void db_set_fault_hook(struct db *db, void (*fn)(void *arg, int err, const char *msg),
		       void *arg);
/*
 * The hook every later db_open() installs on its connection (the workers'
 * own connections), set once before any thread opens one; NULL: none.
 */
void db_set_default_fault_hook(void (*fn)(void *arg, int err, const char *msg), void *arg);
int db_checkpoint(struct db *db, int64_t *ret_log, int64_t *ret_done);
const char *db_errmsg(struct db *db);

/* Schema version found in the file at open (before migrating). */
int db_schema_version_found(struct db *db);

/*
 * Check that the connection really runs with journal_mode=wal, synchronous=FULL,
 * foreign_keys=ON and a busy timeout of 5000 ms (db_open() does, and fails otherwise).
 * -EIO and an allocated message in *ret_err naming the first one that is off.
 */
int db_pragma_check(struct db *db, char **ret_err);

/* Jobs. */
int db_job_create(struct db *db, const char *name, const char *staging_path,
		  const char *container, int64_t now, int64_t *ret_id);
/* The same, with the job's --exclude patterns (a JSON array of strings, or NULL: none). */
int db_job_create_excluding(struct db *db, const char *name, const char *staging_path,
			    const char *container, const char *excludes, int64_t now,
			    int64_t *ret_id);
int db_job_get(struct db *db, const char *name, struct job_row **ret);
int db_job_get_by_id(struct db *db, int64_t id, struct job_row **ret);
/* All jobs, oldest first. *ret is an array of n pointers; free with job_rows_free(). */
int db_job_list(struct db *db, struct job_row ***ret, size_t *ret_n);
/* counts[s] = number of jobs in state s. */
int db_job_count_by_state(struct db *db, int64_t counts[_JOB_STATE_MAX]);

/*
 * Move job id from state `from` to `to` with phase and an event row (kind
 * "transition", text). -ESTALE if the job is not in `from`. The move to
 * shipped also sets shipped_at = now.
 */
int db_job_advance(struct db *db, int64_t id, enum job_state from, enum job_state to,
		   const char *phase, const char *text, int64_t now);
/* from -> failed, remembering `from` as the failed step and error as the reason. */
int db_job_fail(struct db *db, int64_t id, enum job_state from, const char *error, int64_t now);
/* failed -> the remembered step, clearing the error, counting attempts. */
int db_job_retry(struct db *db, int64_t id, int64_t now, enum job_state *ret_state);
/*
 * The same; skip_refused also records, in the same transaction, that the job
 * goes on without the names Azure would refuse (jobs.skip_refused, for good).
 */
int db_job_retry_skipping(struct db *db, int64_t id, int64_t now, bool skip_refused,
			  enum job_state *ret_state);
/* from -> cancelled. */
int db_job_cancel(struct db *db, int64_t id, enum job_state from, const char *text, int64_t now);
/* Change only the phase (and log an event of kind "phase") while in active `state`. */
int db_job_set_phase(struct db *db, int64_t id, enum job_state state, const char *phase,
		     int64_t now);
/*
 * Record carrier and tracking number (and a "note" event), in any state.
 * -EEXIST if another job already has this tracking number.
 */
int db_job_set_tracking(struct db *db, int64_t id, const char *carrier, const char *tracking,
			int64_t now);
/*
 * The Azure job. Each is one transaction; -ENOENT if there is no such job,
 * -EINVAL for a NULL or empty string or a negative number.
 *
 * Record the deterministic Azure job name and the API (DB_AZURE_API_*)
 * before the first request, with an "azure" event "Azure job NAME (API)".
 * The same values again change nothing and write no event (0 either way).
 */
int db_job_set_azure_name(struct db *db, int64_t id, const char *azure_job_name,
			  const char *api, int64_t now);
/*
 * Azure confirmed the job: azure_created = now (kept if already set),
 * azure_state and ship_deadline (UNIX seconds, 0: none) recorded. The first
 * time only, an "azure" event "Azure job created, status S; tracking due by
 * <ISO 8601 time>" (without the "; tracking ..." part if ship_deadline is 0).
 */
int db_job_azure_created(struct db *db, int64_t id, const char *azure_state,
			 int64_t ship_deadline, int64_t now);
/* 1 and an "azure" event "Azure status: S" if the state changed, 0 if it is the same. */
int db_job_set_azure_state(struct db *db, int64_t id, const char *azure_state, int64_t now);
/*
 * Azure's error on a job still in progress (error NULL clears it): 1 and an
 * "azure" event if it changed, 0 if the same or the job is failed, cancelled
 * or complete.
 */
int db_job_set_azure_error(struct db *db, int64_t id, const char *error, int64_t now);
/* Which warnings were given (see struct job_row); no event, jobs.updated kept. */
int db_job_set_warned(struct db *db, int64_t id, int deadline_warned, bool receive_warned);

/* Append an event row without changing the job. */
int db_event_add(struct db *db, int64_t job_id, const char *kind, const char *text, int64_t now);
/*
 * The job's events, oldest first: the newest `limit` of them (0: all). Free
 * with event_rows_free(). No such job gives 0 rows, not -ENOENT.
 */
int db_event_list(struct db *db, int64_t job_id, size_t limit, struct event_row **ret,
		  size_t *ret_n);
/* When the job entered its current state (its first event in it); 0 if unknown. */
int db_job_state_since(struct db *db, int64_t job_id, int64_t *ret);

/*
 * A separate connection for a worker thread that must read (the manifest
 * writer): opened read-only with query_only=ON, no migrations (a file not at
 * DB_SCHEMA_VERSION gives -EPROTO), the commit guard installed. Every write
 * function gives -EROFS on it. Never share a connection between threads.
 */
int db_open_readonly(const char *path, struct db **ret, char **ret_err);

/*
 * Files. Each write is one transaction: all of it happens or none.
 *
 * Upsert n scanner entries on (job_id, rel_path). A new path is inserted; a
 * known one gets the new size, mtime, blob name, state and reason, and loses
 * its drive, MD5, checkpoint and blocks, except a 'verified' row whose size
 * and mtime are unchanged, which is left as it is. A verified row that is
 * reset leaves its drive's and job's copied counters. jobs.files/bytes are
 * not touched: call db_job_set_totals() after the scan. -EINVAL for a bad
 * entry (NULL path or blob name, a state other than the three above).
 */
int db_files_insert_batch(struct db *db, int64_t job_id, const struct file_entry *e, size_t n);
/* The same, only while the job is in state and phase (-ESTALE if not), for a writer of its own. */
struct job_state_phase {
	enum job_state state;
	enum job_phase phase;
};
int db_files_insert_batch_in(struct db *db, int64_t job_id, enum job_state state,
			     enum job_phase phase, const struct file_entry *e, size_t n);
/*
 * Recount the job from its files: files/bytes = indexed, planned and verified
 * ones; copied_files/copied_bytes = verified ones; verified_files = verified
 * ones whose copy was re-read. Sets updated = now.
 */
int db_job_set_totals(struct db *db, int64_t job_id, int64_t now);
/* Count and total size of the job's files in `state` (NULL: all). */
int db_files_count(struct db *db, int64_t job_id, const char *state, struct file_count *ret);
/* Only how many of the job's files are in `state`: read from the index, cheap on big jobs. */
int db_files_number(struct db *db, int64_t job_id, const char *state, int64_t *ret);
/*
 * Files of the job indexed with other hard links (link count above 1): copied
 * like any file, but named as problems (the same data may also be reachable
 * outside the staging tree). Pages of at most limit rows after after_id, and
 * their count.
 */
int db_files_linked(struct db *db, int64_t job_id, int64_t after_id, size_t limit,
                    struct file_row **ret, size_t *ret_n);
int db_files_linked_count(struct db *db, int64_t job_id, struct file_count *ret);

/*
 * Page through a job's files in id order: rows with id > after_id, at most
 * limit (> 0), only those in `state` (NULL: any) and on drive_id (0: any).
 * Free with file_rows_free().
 */
int db_files_page(struct db *db, int64_t job_id, const char *state, int64_t drive_id,
		  int64_t after_id, size_t limit, struct file_row **ret, size_t *ret_n);
/*
 * Stream the job's 'indexed' and 'planned' files, indexed ones first, each
 * in id order, without holding rows: cb(id, size, userdata) per file. A
 * negative return of cb stops the walk and is returned. cb must not write
 * to the store through this connection.
 */
int db_files_foreach_plannable(struct db *db, int64_t job_id,
			       int (*cb)(int64_t id, int64_t size, void *userdata), void *userdata);
/* The same for the job's 'indexed' files only (waiting for a drive), in id order. */
int db_files_foreach_waiting(struct db *db, int64_t job_id,
			     int (*cb)(int64_t id, int64_t size, void *userdata), void *userdata);
/*
 * Forget every file of the job (and their blocks) before indexing again; the
 * job's and its drives' file counters go back to 0.
 */
int db_files_clear(struct db *db, int64_t job_id);
/*
 * Place n files: each (file, drive) makes the file 'planned' on the drive,
 * drive 0 makes it 'indexed' with no drive. A file moved to another drive (or
 * back to indexed) loses its checkpoint and blocks; one planned again on the
 * same drive keeps them. -ESTALE if a file is not indexed or planned, -ENOENT
 * if a file or drive does not exist, -EINVAL if the drive belongs to another
 * job; then nothing is placed.
 */
int db_files_place(struct db *db, const struct placement *p, size_t n);
/*
 * db_files_place() for a thread with a write connection of its own: in the
 * same transaction, only while the job is still in state (and phase, unless
 * _JOB_PHASE_INVALID); -ESTALE if it is not, and nothing is placed.
 */
int db_files_place_in(struct db *db, int64_t job_id, enum job_state state, enum job_phase phase,
		      const struct placement *p, size_t n);
/*
 * The (id, size) of every file drive_id holds: verified, and if planned_too
 * also planned. A negative return of cb stops the walk and is returned.
 */
int db_drive_foreach_held(struct db *db, int64_t drive_id, bool planned_too,
			  int (*cb)(int64_t id, int64_t size, void *userdata), void *userdata);
/*
 * A checkpoint inside a big planned file: upsert blocks [first, first+n) and
 * set checkpoint = first + n, dropping any block past it. -ESTALE if the file
 * is not 'planned', -EINVAL if first > checkpoint (a gap).
 */
int db_file_checkpoint(struct db *db, int64_t file_id, size_t first, const struct block_row *b,
		       size_t n);
/* The file's blocks in order; free(*ret). -ENOENT if there is no such file. */
int db_file_blocks(struct db *db, int64_t file_id, struct block_row **ret, size_t *ret_n);
/*
 * The file is on drive_id and checked: replace its blocks with b[0..n), set
 * md5, state 'verified' and checkpoint n; add it to the drive's files and
 * used_bytes and to the job's copied_files/copied_bytes (and verified_files
 * if `verified`, i.e. the copy was re-read); set jobs.updated = now.
 * -ESTALE if the file is not 'planned' on drive_id. -EINVAL unless the blocks
 * are contiguous from offset 0 and cover exactly the file's size (n 0: no
 * block list).
 */
int db_file_verified(struct db *db, int64_t file_id, int64_t drive_id, const unsigned char md5[16],
		     const struct block_row *b, size_t n, bool verified, int64_t now);
/*
 * db_file_verified() for many files in one transaction (the small files a
 * drive worker copied and synced together). A file that is no longer
 * planned on its drive gets result -ESTALE and is left out; any other error
 * rolls back all of them and is returned.
 */
struct verified_file {
	int64_t file_id, drive_id;
	const unsigned char *md5; /* 16 bytes */
	const struct block_row *blocks;
	size_t n;
	bool verified;
	int result; /* set */
};
int db_files_verified(struct db *db, struct verified_file *v, size_t n, int64_t now);

/*
 * The file changed in staging since indexing: new size and mtime, state
 * 'indexed', no drive, no MD5, checkpoint and blocks dropped; jobs.bytes
 * adjusted (and the copied counters if it was verified), jobs.updated = now.
 * -ESTALE if the file is 'invalid' or 'skipped'.
 */
int db_file_reindex(struct db *db, int64_t file_id, int64_t size, int64_t mtime_ns, int64_t now);
/*
 * Take a planned or verified file off its drive (ENOSPC, a lost drive):
 * 'indexed', no drive, checkpoint and blocks dropped, counters adjusted.
 * An indexed file is left as is; -ESTALE if it is 'invalid' or 'skipped'.
 */
int db_file_unplace(struct db *db, int64_t file_id);

/* Drives. */
int db_drive_list(struct db *db, int64_t job_id, struct drive_row **ret, size_t *ret_n);
/* A new 'attached' drive. -EEXIST if the job already has this serial. */
int db_drive_add(struct db *db, int64_t job_id, const char *serial, const char *path,
		 const char *uuid, int64_t capacity, int64_t free_bytes, int64_t *ret_id);
/* A drive as AddDrive records it, all in one transaction (db_drive_attach). */
struct drive_new {
	const char *serial, *path, *uuid;
	int64_t capacity, free_bytes;
	int64_t direct_io; /* COPY_DIRECT_* flags, 0-3 */
	/* The BitLocker volume checked: all three, or all NULL (check skipped). */
	const char *bitlocker_device, *bitlocker_guid, *bitlocker_cipher;
	const char *key; /* the recovery key, stored as the secret "bitlocker-key"; NULL: none */
};
/*
 * db_drive_add, the O_DIRECT verdict, the BitLocker volume and the key in one
 * transaction, so a crash leaves the drive whole or absent. -EEXIST if the job
 * already has this serial; -EINVAL for a missing field.
 */
int db_drive_attach(struct db *db, int64_t job_id, const struct drive_new *n, int64_t *ret_id);
/* Fill *ret (free its strings with drive_row_done()). -ENOENT if there is no such drive. */
int db_drive_get(struct db *db, int64_t drive_id, struct drive_row *ret);
/* Count and size of the files planned or verified on the drive. */
int db_drive_file_count(struct db *db, int64_t drive_id, struct file_count *ret);
/* Count and size of the files verified on the drive (= its files/used_bytes). */
int db_drive_verified_count(struct db *db, int64_t drive_id, struct file_count *ret);
/*
 * state: attached, copying, copied, manifest-written, full or unused (else
 * -EINVAL). unused (the drive received nothing) is kept apart from the
 * others (schema v5) and cleared by any of them.
 */
int db_drive_set_state(struct db *db, int64_t drive_id, const char *state);
/*
 * RemoveDrive, in one transaction: the drive's planned and verified files go
 * back to 'indexed' (no drive, no MD5, checkpoint and blocks dropped; the
 * job's copied counters lose the verified ones), the drive row and its
 * secrets are deleted, and a "drive" event says what went back to waiting.
 * -ENOTEMPTY (nothing changed) if it holds verified files and !force;
 * -ENOENT if the job has no such drive. *ret (may be NULL): what it held.
 */
struct drive_held {
	int64_t verified_files, verified_bytes, reread_files, planned_files;
};
int db_drive_remove(struct db *db, int64_t job_id, int64_t drive_id, bool force, int64_t now,
		    struct drive_held *ret);
/* What the drive takes of O_DIRECT: COPY_DIRECT_* flags, 0-3 (else -EINVAL). */
int db_drive_set_direct_io(struct db *db, int64_t drive_id, int64_t flags);
/* The BitLocker volume the key was checked against (device, volume GUID, cipher; none NULL). */
int db_drive_set_bitlocker(struct db *db, int64_t drive_id, const char *device, const char *guid,
                           const char *cipher);
/* The hash of the drive's written manifest (NULL clears it). */
int db_drive_set_manifest(struct db *db, int64_t drive_id, const char *manifest_hash);
/*
 * What the Azure job reports of the drive. The numbers are replaced; a NULL
 * string keeps the old value. -EINVAL for a negative number.
 */
int db_drive_set_azure(struct db *db, int64_t drive_id, const char *status, int64_t bytes,
		       int64_t total, int64_t files_errored, const char *error_log,
		       const char *verbose_log);
/* Like db_drive_get(), by the job's drive serial. -ENOENT if the job has no such drive. */
int db_drive_by_serial(struct db *db, int64_t job_id, const char *serial, struct drive_row *ret);
/*
 * Stream drive_id's verified files in id order with their blocks in order:
 * cb(file, blocks, n_blocks, userdata), all pointing to memory valid only
 * during the call. A negative return of cb stops the walk and is returned.
 * Meant for a read-only connection; cb must not use this connection.
 */
int db_drive_foreach_verified(struct db *db, int64_t drive_id,
			      int (*cb)(const struct file_row *f, const struct block_row *b,
					size_t n, void *userdata),
			      void *userdata);

/*
 * Secrets (BitLocker recovery keys): stored for a drive of the job, replacing
 * any of the same kind; never listed. db_secret_get() gives a NUL-terminated
 * copy for the Azure request only; the caller wipes and frees it. -ENOENT if
 * the drive (of that job) or the secret does not exist.
 */
int db_secret_put(struct db *db, int64_t job_id, int64_t drive_id, const char *kind,
		  const void *value, size_t len);
int db_secret_get(struct db *db, int64_t drive_id, const char *kind, char **ret_value);

/*
 * After the import, each verified file carries three marks: what the import
 * container holds of it (reconcile), its vault copy, and its cleanup.
 * db_files_mark() sets one kind of mark on n files in one transaction
 * (-ESTALE, and nothing set, if a file is not verified). detail is used by
 * DB_MARK_IMPORT only.
 */
enum db_mark {
	DB_MARK_IMPORT,  /* ok, missing, corrupt, renamed, failed, repaired */
	DB_MARK_VAULT,   /* copying, verified */
	DB_MARK_CLEANUP, /* blob-deleted, staging-deleted, staging-kept */
};
struct file_mark {
	int64_t file_id;
	const char *state;  /* NULL clears the mark */
	const char *detail; /* DB_MARK_IMPORT: Azure's status or what differed; may be NULL */
	const char *method; /* DB_MARK_IMPORT: how it was verified (files.import_method), or NULL */
};
int db_files_mark(struct db *db, enum db_mark kind, const struct file_mark *m, size_t n);
/* Verified files of the job whose mark of this kind is value (NULL: unset). */
int db_files_count_mark(struct db *db, int64_t job_id, enum db_mark kind, const char *value,
			struct file_count *ret);

/* Verified files of the job whose import_method is method (NULL: unset). */
int db_files_count_method(struct db *db, int64_t job_id, const char *method,
			  struct file_count *ret);
/* Azure's DriveLog/Status of the drive (drives.log_status, NULL: none), set by the reconcile. */
int db_drive_set_log_status(struct db *db, int64_t drive_id, const char *status);
int db_drive_log_status(struct db *db, int64_t drive_id, char **ret);
/*
 * Whether the operator agreed (by retrying the job failed in `imported`) that
 * the files of a drive Azure could not import are uploaded over the network.
 */
int db_drive_network_repair(struct db *db, int64_t drive_id, bool *ret);

/* Files whose import mark is set and not ok (missing, corrupt, ..., repaired), in id order. */
int db_files_page_not_ok(struct db *db, int64_t job_id, int64_t after_id, size_t limit,
			 struct file_row **ret, size_t *ret_n);
/* The job's file at rel_path; free its strings with file_row_free_one(). -ENOENT if none. */
int db_file_by_path(struct db *db, int64_t job_id, const char *rel_path, struct file_row *ret);
void file_row_free_one(struct file_row *f);

/*
 * PurgeJob: one short transaction makes a done, failed or cancelled job
 * disappear for every reader (db_job_get*, db_job_list, the counts), frees
 * its name and tracking number and deletes its secrets. -ESTALE if the job
 * is in another state, -ENOENT if there is no such job. Its rows are then
 * deleted by db_purge_step() in small transactions (the purger thread):
 * a crash in between resumes with db_purge_next().
 */
int db_job_purge(struct db *db, int64_t id, int64_t now);
/* The oldest purged job whose rows are still there; -ENOENT if none. */
int db_purge_next(struct db *db, int64_t *ret_id);
/*
 * One transaction of the purge of job_id: its next files past *cursor (at
 * most DB_PURGE_FILES files or about DB_PURGE_BLOCKS blocks) with their
 * blocks, or once no file is left DB_PURGE_FILES of its events, or last
 * its row (drives with it). Returns the rows deleted: 0 once the job is
 * gone. *cursor starts at 0 and is advanced.
 */
#define DB_PURGE_FILES 1000
#define DB_PURGE_BLOCKS 20000
int db_purge_step(struct db *db, int64_t job_id, int64_t *cursor);

struct job_row *job_row_free(struct job_row *j);
void job_rows_free(struct job_row **rows, size_t n);
void event_rows_free(struct event_row *rows, size_t n);
void drive_rows_free(struct drive_row *rows, size_t n);
/* Free the strings of one row filled by db_drive_get() and zero it. */
void drive_row_done(struct drive_row *d);
void file_rows_free(struct file_row *rows, size_t n);

#endif
