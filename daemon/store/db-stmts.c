/*
 * Every SQL statement of the store, in one table indexed by enum db_stmt
 * (db-internal.h). Kept as one table rather than split per family: db_open()
 * prepares them all in one loop, the column lists (JOB_COLUMNS, ...) are
 * shared by several families, and one table shows at a glance every
 * statement that touches a table (e.g. the few that touch secrets).
 */
#include "db-internal.h"

#define JOB_COLUMNS                                                                                \
	"id, name, state, failed_state, phase, staging_path, container, files, bytes, "            \
	"copied_files, copied_bytes, verified_files, azure_job_name, azure_state, carrier, "       \
	"tracking_number, ship_deadline, error, attempts, created, updated, azure_api, "            \
	"azure_created, shipped_at, deadline_warned, receive_warned, excludes, skip_refused"

/* A skipped row an --exclude pattern left out reads as state "excluded" (db.h). */
#define FILE_COLUMNS                                                                               \
	"id, job_id, size, mtime_ns, drive_id, checkpoint, rel_path, blob_name, "                  \
	"iif(excluded_by IS NULL, state, 'excluded'), reason, "                                    \
	"md5, import_state, import_detail, vault_state, cleanup_state, import_method, links"
#define INFO_COLUMNS "id, job_id, state, size, mtime_ns, drive_id, checkpoint, reread"
#define DRIVE_COLUMNS                                                                              \
	"id, job_id, serial, path, capacity, used_bytes, files, " DRIVE_STATE_COLUMN ", "           \
	"manifest_hash, uuid, "                                                                    \
	"free_bytes, azure_status, error_log, verbose_log, azure_bytes, azure_total, "              \
	"azure_files_errored, direct_io, bitlocker_device, bitlocker_guid, bitlocker_cipher"
/* The drive's state as the world sees it: 'unused' is a flag (schema v5). */
#define DRIVE_STATE_COLUMN "iif(unused, 'unused', state)"
#define PAGE_SQL(where)                                                                            \
	"SELECT " FILE_COLUMNS " FROM files WHERE " where " AND id > ?2 ORDER BY id LIMIT ?3"

/* Only STMT_SECRET_* may touch the secrets table; test-db.c checks that. */
/* clang-format off */
const char *const db_statements[_STMT_MAX] = {
	[STMT_JOB_INSERT] = "INSERT INTO jobs (name, state, phase, staging_path, container, "
			    "created, updated, excludes) "
			    "VALUES (?1, 'staging', 'indexing', ?2, ?3, ?4, ?4, ?5)",
	[STMT_JOB_SET_SKIP_REFUSED] = "UPDATE jobs SET skip_refused = 1 WHERE id = ?1",
	/* A purged job is gone for every reader (schema v5). */
	[STMT_JOB_BY_NAME] = "SELECT " JOB_COLUMNS " FROM jobs WHERE name = ?1 AND purged = 0",
	[STMT_JOB_BY_ID] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1 AND purged = 0",
	[STMT_JOB_LIST] = "SELECT " JOB_COLUMNS " FROM jobs WHERE purged = 0 ORDER BY id",
	[STMT_JOB_STATE] = "SELECT state, failed_state FROM jobs WHERE id = ?1",
	[STMT_JOB_COUNT] = "SELECT state, count(*) FROM jobs WHERE purged = 0 GROUP BY state",
	[STMT_JOB_ADVANCE] = "UPDATE jobs SET state = ?3, phase = ?4, updated = ?5, "
			     "shipped_at = iif(?3 = 'shipped', ?5, shipped_at) "
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
	[STMT_DRIVE_LIST] = "SELECT " DRIVE_COLUMNS " FROM drives WHERE job_id = ?1 ORDER BY id",
	[STMT_JOB_SET_TOTALS] = "UPDATE jobs SET (files, bytes, copied_files, copied_bytes, "
				"verified_files) = (SELECT count(*), coalesce(sum(size), 0), "
				"count(*) FILTER (WHERE state = 'verified'), "
				"coalesce(sum(size) FILTER (WHERE state = 'verified'), 0), "
				"count(*) FILTER (WHERE state = 'verified' AND reread = 1) "
				"FROM files WHERE job_id = ?1 AND "
				"state IN ('indexed', 'planned', 'verified')), updated = ?2 "
				"WHERE id = ?1",
	/* ?5 unbound (NULL) keeps updated. */
	[STMT_JOB_ADD_COPIED] = "UPDATE jobs SET copied_files = copied_files + ?2, "
				"copied_bytes = copied_bytes + ?3, "
				"verified_files = verified_files + ?4, "
				"updated = coalesce(?5, updated) WHERE id = ?1",
	[STMT_JOB_ADD_BYTES] = "UPDATE jobs SET bytes = bytes + ?2, updated = ?3 WHERE id = ?1",
	[STMT_FILE_UPSERT] = "INSERT INTO files (job_id, rel_path, size, mtime_ns, blob_name, "
			     "state, reason, links, excluded_by) "
			     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
			     "ON CONFLICT (job_id, rel_path) DO UPDATE SET size = excluded.size, "
			     "links = excluded.links, excluded_by = excluded.excluded_by, "
			     "mtime_ns = excluded.mtime_ns, blob_name = excluded.blob_name, "
			     "state = excluded.state, reason = excluded.reason, drive_id = NULL, "
			     "md5 = NULL, checkpoint = 0, reread = 0 "
			     "WHERE NOT (state = 'verified' AND size = excluded.size AND "
			     "mtime_ns = excluded.mtime_ns)",
	[STMT_FILE_JOB_PLACED] = "SELECT EXISTS (SELECT 1 FROM files WHERE job_id = ?1 AND "
				 "state IN ('planned', 'verified'))",
	[STMT_FILE_BY_PATH] = "SELECT " INFO_COLUMNS " FROM files "
			      "WHERE job_id = ?1 AND rel_path = ?2",
	[STMT_FILE_INFO] = "SELECT " INFO_COLUMNS " FROM files WHERE id = ?1",
	/* Files with other hard links (issue 11), through the partial index files_job_linked. */
	[STMT_FILE_PAGE_LINKED] = "SELECT " FILE_COLUMNS " FROM files WHERE job_id = ?1 AND "
				  "links > 1 AND id > ?2 ORDER BY id LIMIT ?3",
	[STMT_FILE_COUNT_LINKED] = "SELECT count(*), coalesce(sum(size), 0) FROM files "
				   "WHERE job_id = ?1 AND links > 1",
	[STMT_FILE_COUNT] = "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE job_id = ?1",
	[STMT_FILE_ROW_BY_PATH] = "SELECT " FILE_COLUMNS " FROM files WHERE job_id = ?1 AND "
				  "rel_path = ?2",
	[STMT_FILE_PAGE_NOT_OK] = "SELECT " FILE_COLUMNS " FROM files WHERE job_id = ?1 AND "
				  "import_state IS NOT NULL AND import_state != 'ok' AND id > ?2 "
				  "ORDER BY id LIMIT ?3",
	[STMT_FILE_MARK_IMPORT] = "UPDATE files SET import_state = ?2, import_detail = ?3, "
				  "import_method = ?4 WHERE id = ?1 AND state = 'verified'",
	[STMT_FILE_MARK_VAULT] = "UPDATE files SET vault_state = ?2 WHERE id = ?1 AND state = 'verified'",
	[STMT_FILE_MARK_CLEANUP] = "UPDATE files SET cleanup_state = ?2 "
				   "WHERE id = ?1 AND state = 'verified'",
	[STMT_FILE_COUNT_IMPORT] = "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE "
				   "job_id = ?1 AND state = 'verified' AND import_state IS ?2",
	[STMT_FILE_COUNT_VAULT] = "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE "
				  "job_id = ?1 AND state = 'verified' AND vault_state IS ?2",
	[STMT_FILE_COUNT_METHOD] = "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE "
				   "job_id = ?1 AND state = 'verified' AND import_method IS ?2",
	[STMT_DRIVE_SET_LOG_STATUS] = "UPDATE drives SET log_status = ?2 WHERE id = ?1",
	[STMT_DRIVE_LOG_STATUS] = "SELECT log_status FROM drives WHERE id = ?1",
	[STMT_DRIVE_NETWORK_REPAIR] = "SELECT network_repair FROM drives WHERE id = ?1",
	/* Only drives the reconcile read a log of; whether its status failed is its call. */
	[STMT_DRIVES_ALLOW_NETWORK_REPAIR] = "UPDATE drives SET network_repair = 1 "
					     "WHERE job_id = ?1 AND log_status IS NOT NULL",
	/* The first event after the last one recorded in another state than the job's now. */
	[STMT_JOB_STATE_SINCE] = "SELECT coalesce(min(time), 0) FROM events WHERE job_id = ?1 AND "
				 "id > coalesce((SELECT max(id) FROM events WHERE job_id = ?1 AND "
				 "state IS NOT (SELECT state FROM jobs WHERE id = ?1)), 0)",
	[STMT_FILE_COUNT_CLEANUP] = "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE "
				    "job_id = ?1 AND state = 'verified' AND cleanup_state IS ?2",
	[STMT_FILE_COUNT_STATE] = "SELECT count(*), coalesce(sum(size), 0) FROM files "
				  "WHERE job_id = ?1 AND state = ?2",
	/* From the index files_job_state alone: no table row read (metrics, every 15 s). */
	[STMT_FILE_NUMBER_STATE] = "SELECT count(*) FROM files WHERE job_id = ?1 AND state = ?2",
	/* Skipped rows, ?2 = 1: those an --exclude pattern left out, 0: the others. */
	[STMT_FILE_COUNT_LEFT_OUT] = "SELECT count(*), coalesce(sum(size), 0) FROM files "
				     "WHERE job_id = ?1 AND state = 'skipped' AND "
				     "(excluded_by IS NOT NULL) = ?2",
	[STMT_FILE_PAGE_LEFT_OUT] = PAGE_SQL("job_id = ?1 AND state = 'skipped' AND "
					     "(excluded_by IS NOT NULL) = ?4"),
	/*
	 * Bound alike: ?1 job, ?2 after id, ?3 limit, ?4 state, ?5 drive. With a
	 * state they seek (job_id|drive_id, state, id); without, the unary + makes
	 * them walk the rowid from ?2 instead of sorting the whole job per page.
	 */
	[STMT_FILE_PAGE] = PAGE_SQL("+job_id = ?1"),
	[STMT_FILE_PAGE_STATE] = PAGE_SQL("job_id = ?1 AND state = ?4"),
	[STMT_FILE_PAGE_DRIVE] = PAGE_SQL("+job_id = ?1 AND +drive_id = ?5"),
	[STMT_FILE_PAGE_STATE_DRIVE] = PAGE_SQL("job_id = ?1 AND state = ?4 AND drive_id = ?5"),
	/* "indexed" < "planned": the order of files_job_state, so no sort. */
	[STMT_FILE_PLANNABLE] = "SELECT id, size FROM files WHERE job_id = ?1 AND "
				"state IN ('indexed', 'planned') ORDER BY state, id",
	[STMT_FILE_WAITING] = "SELECT id, size FROM files WHERE job_id = ?1 AND state = 'indexed' "
			      "ORDER BY id",
	[STMT_DRIVE_SIZES_HELD] = "SELECT id, size FROM files WHERE drive_id = ?1 AND "
			    "state IN ('planned', 'verified')",
	[STMT_DRIVE_SIZES_VERIFIED] = "SELECT id, size FROM files WHERE drive_id = ?1 AND "
				     "state = 'verified'",
	[STMT_JOB_STATE_PHASE] = "SELECT state, phase FROM jobs WHERE id = ?1",
	[STMT_FILE_CLEAR] = "DELETE FROM files WHERE job_id = ?1",
	[STMT_JOB_CLEAR_COUNTS] = "UPDATE jobs SET files = 0, bytes = 0, copied_files = 0, "
				  "copied_bytes = 0, verified_files = 0 WHERE id = ?1",
	[STMT_DRIVE_CLEAR_COUNTS] = "UPDATE drives SET files = 0, used_bytes = 0 WHERE job_id = ?1",
	[STMT_DRIVE_COUNT] = "SELECT count(*), coalesce(sum(size), 0) FROM files "
			     "WHERE drive_id = ?1 AND state IN ('planned', 'verified')",
	[STMT_DRIVE_COUNT_VERIFIED] = "SELECT count(*), coalesce(sum(size), 0) FROM files "
				      "WHERE drive_id = ?1 AND state = 'verified'",
	/* Right-hand sides see the old row: a new drive resets the checkpoint. */
	[STMT_FILE_PLACE] = "UPDATE files SET state = 'planned', drive_id = ?2, "
			    "checkpoint = iif(drive_id IS ?2, checkpoint, 0) "
			    "WHERE id = ?1 AND state IN ('indexed', 'planned') AND "
			    "job_id = (SELECT job_id FROM drives WHERE id = ?2)",
	[STMT_FILE_UNPLAN] = "UPDATE files SET state = 'indexed', drive_id = NULL, checkpoint = 0 "
			     "WHERE id = ?1 AND state IN ('indexed', 'planned')",
	[STMT_FILE_RESET] = "UPDATE files SET state = 'indexed', drive_id = NULL, md5 = NULL, "
			    "checkpoint = 0, reread = 0, size = ?2, mtime_ns = ?3 WHERE id = ?1",
	[STMT_FILE_CHECKPOINT] = "UPDATE files SET checkpoint = ?2 WHERE id = ?1",
	[STMT_FILE_VERIFIED] = "UPDATE files SET state = 'verified', md5 = ?2, checkpoint = ?3, "
			       "reread = ?4 WHERE id = ?1",
	[STMT_BLOCK_PUT] = "INSERT INTO blocks (file_id, idx, \"offset\", length, md5) "
			   "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (file_id, idx) DO UPDATE "
			   "SET \"offset\" = excluded.\"offset\", length = excluded.length, "
			   "md5 = excluded.md5",
	[STMT_BLOCK_TRIM] = "DELETE FROM blocks WHERE file_id = ?1 AND idx >= ?2",
	[STMT_BLOCK_TRIM_CHECKPOINT] = "DELETE FROM blocks WHERE file_id = ?1 AND "
				       "idx >= (SELECT checkpoint FROM files WHERE id = ?1)",
	[STMT_BLOCK_LIST] = "SELECT \"offset\", length, md5 FROM blocks WHERE file_id = ?1 "
			    "ORDER BY idx",
	[STMT_DRIVE_INSERT] = "INSERT INTO drives (job_id, serial, path, uuid, capacity, "
			      "free_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[STMT_DRIVE_GET] = "SELECT " DRIVE_COLUMNS " FROM drives WHERE id = ?1",
	[STMT_DRIVE_JOB] = "SELECT job_id FROM drives WHERE id = ?1",
	[STMT_DRIVE_SET_STATE] = "UPDATE drives SET state = ?2, unused = 0 WHERE id = ?1",
	[STMT_DRIVE_SET_MANIFEST] = "UPDATE drives SET manifest_hash = ?2 WHERE id = ?1",
	[STMT_DRIVE_SET_DIRECT_IO] = "UPDATE drives SET direct_io = ?2 WHERE id = ?1",
	[STMT_DRIVE_SET_BITLOCKER] = "UPDATE drives SET bitlocker_device = ?2, bitlocker_guid = ?3, "
				     "bitlocker_cipher = ?4 WHERE id = ?1",
	[STMT_DRIVE_ADD_USED] = "UPDATE drives SET files = files + ?2, "
				"used_bytes = used_bytes + ?3 WHERE id = ?1",
	[STMT_DRIVE_VERIFIED] = "SELECT " FILE_COLUMNS " FROM files "
				"WHERE drive_id = ?1 AND state = 'verified' ORDER BY id",
	/* The Azure stages. The guarded ones change nothing when nothing is new. */
	[STMT_JOB_SET_AZURE_NAME] = "UPDATE jobs SET azure_job_name = ?2, azure_api = ?3, "
				    "updated = ?4 WHERE id = ?1 AND "
				    "(azure_job_name IS NOT ?2 OR azure_api IS NOT ?3)",
	[STMT_JOB_AZURE_CREATED] = "UPDATE jobs SET azure_created = ?2 "
				   "WHERE id = ?1 AND azure_created = 0",
	[STMT_JOB_AZURE_CONFIRMED] = "UPDATE jobs SET azure_state = ?2, ship_deadline = ?3, "
				     "updated = ?4 WHERE id = ?1",
	[STMT_JOB_SET_AZURE_STATE] = "UPDATE jobs SET azure_state = ?2, updated = ?3 "
				     "WHERE id = ?1 AND azure_state IS NOT ?2",
	/* Azure's own error on a job that goes on (not failed): set, or cleared with NULL. */
	[STMT_JOB_SET_AZURE_ERROR] = "UPDATE jobs SET error = ?2, updated = ?3 "
				     "WHERE id = ?1 AND state NOT IN ('failed', 'cancelled', 'done') "
				     "AND error IS NOT ?2",
	[STMT_JOB_SET_WARNED] = "UPDATE jobs SET deadline_warned = ?2, receive_warned = ?3 "
				"WHERE id = ?1",
	/* NULL strings keep the old value. */
	[STMT_DRIVE_SET_AZURE] = "UPDATE drives SET azure_status = coalesce(?2, azure_status), "
				 "azure_bytes = ?3, azure_total = ?4, azure_files_errored = ?5, "
				 "error_log = coalesce(?6, error_log), "
				 "verbose_log = coalesce(?7, verbose_log) WHERE id = ?1",
	[STMT_DRIVE_BY_SERIAL] = "SELECT " DRIVE_COLUMNS " FROM drives "
				 "WHERE job_id = ?1 AND serial = ?2",
	[STMT_SECRET_DELETE] = "DELETE FROM secrets WHERE job_id = ?1 AND drive_id = ?2 AND "
			       "kind = ?3",
	[STMT_SECRET_INSERT] = "INSERT INTO secrets (job_id, drive_id, kind, value) "
			       "SELECT job_id, id, ?3, ?4 FROM drives WHERE id = ?2 AND job_id = ?1",
	[STMT_SECRET_DELETE_JOB] = "DELETE FROM secrets WHERE job_id = ?1",
	/* -- drives */
	[STMT_DRIVE_SET_UNUSED] = "UPDATE drives SET unused = 1 WHERE id = ?1",
	/* What a drive holds: verified files (count, bytes, re-read ones) and planned ones. */
	[STMT_DRIVE_HELD] = "SELECT count(*) FILTER (WHERE state = 'verified'), "
			    "coalesce(sum(size) FILTER (WHERE state = 'verified'), 0), "
			    "count(*) FILTER (WHERE state = 'verified' AND reread = 1), "
			    "count(*) FILTER (WHERE state = 'planned') "
			    "FROM files WHERE drive_id = ?1",
	[STMT_DRIVE_FREE_BLOCKS] = "DELETE FROM blocks WHERE file_id IN "
				   "(SELECT id FROM files WHERE drive_id = ?1)",
	/* Back to waiting for a drive, as db_file_unplace() leaves one file. */
	[STMT_DRIVE_FREE_FILES] = "UPDATE files SET state = 'indexed', drive_id = NULL, md5 = NULL, "
				  "checkpoint = 0, reread = 0 WHERE drive_id = ?1 AND "
				  "state IN ('planned', 'verified')",
	[STMT_DRIVE_DELETE] = "DELETE FROM drives WHERE id = ?1 AND job_id = ?2",
	[STMT_JOB_PURGE] = "UPDATE jobs SET purged = 1, name = '#' || id, tracking_number = NULL, "
			   "updated = ?2 WHERE id = ?1 AND purged = 0 AND "
			   "state IN ('done', 'failed', 'cancelled')",
	[STMT_JOB_PURGED_NEXT] = "SELECT id FROM jobs WHERE purged = 1 ORDER BY id LIMIT 1",
	/* Files in rowid order from a cursor (the unary +: no sort of the whole job per page). */
	[STMT_PURGE_FILE_PAGE] = "SELECT id, checkpoint FROM files WHERE +job_id = ?1 AND id > ?2 "
				 "ORDER BY id LIMIT ?3",
	[STMT_PURGE_BLOCKS] = "DELETE FROM blocks WHERE file_id IN (SELECT id FROM files "
			      "WHERE +job_id = ?1 AND id BETWEEN ?2 AND ?3)",
	[STMT_PURGE_FILES] = "DELETE FROM files WHERE +job_id = ?1 AND id BETWEEN ?2 AND ?3",
	[STMT_PURGE_EVENTS] = "DELETE FROM events WHERE id IN (SELECT id FROM events "
			      "WHERE job_id = ?1 ORDER BY id LIMIT ?2)",
	/* Drives and what is left of the job go with its row (ON DELETE CASCADE). */
	[STMT_PURGE_JOB] = "DELETE FROM jobs WHERE id = ?1 AND purged = 1",
	[STMT_SECRET_GET] = "SELECT value FROM secrets WHERE drive_id = ?1 AND kind = ?2 "
			    "ORDER BY id DESC LIMIT 1",
};
/* clang-format on */
