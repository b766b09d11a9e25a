/*
 * The Job object of CONTRACT §4: the job row, its drives with live progress,
 * its problems and, after the import, what the reconcile, vault copy and
 * cleanup counted. See job-view.h.
 */
#include <inttypes.h>
#include <string.h>

#include "azure-http.h"
#include "daemon.h"
#include "db.h"
#include "drivelog.h"
#include "job-view.h"
#include "job.h"
#include "stage.h"
#include "util.h"
#include "varlink.h"

#define PROBLEMS_SHOWN 20 /* problem files in a Job object */

static json_t *
json_str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

json_t *
json_time(int64_t t)
{
	char buf[32];

	if (t <= 0)
		return json_null();
	format_iso8601(t, buf);
	return json_string(buf);
}

json_t *
drive_json(struct daemon *d, int64_t job_id, const struct drive_row *dr)
{
	struct drive_progress pg;
	json_t *o = json_pack("{s:o,s:o,s:I,s:I,s:I,s:s,s:o}", "serial", json_text(dr->serial),
			      "path", json_text(dr->path), "capacity", (json_int_t)dr->capacity,
			      "usedBytes", (json_int_t)dr->used_bytes, "files", (json_int_t)dr->files,
			      "state", dr->state, "manifestHash", json_str_or_null(dr->manifest_hash));

	if (dr->azure_status != NULL) {
		_cleanup_free_ char *el = dr->error_log ? http_redact_url(dr->error_log) : NULL;
		_cleanup_free_ char *vl = dr->verbose_log ? http_redact_url(dr->verbose_log) : NULL;
		_cleanup_free_ char *ls = NULL;
		(void)db_drive_log_status(d->db, dr->id, &ls);
		json_object_set_new(o, "azure",
				    json_pack("{s:o,s:s,s:I,s:I,s:I,s:o,s:o}", "logStatus",
					      json_str_or_null(ls), "copyStatus",
					      dr->azure_status, "bytesProcessed",
					      (json_int_t)dr->azure_bytes, "totalBytes",
					      (json_int_t)dr->azure_total, "filesErrored",
					      (json_int_t)dr->azure_files_errored, "errorLog",
					      json_str_or_null(el), "verboseLog", json_str_or_null(vl)));
	}
	if (dr->bitlocker_device != NULL)
		json_object_set_new(o, "bitlocker",
				    json_pack("{s:o,s:o,s:o}", "device", json_text(dr->bitlocker_device),
					      "guid", json_text(dr->bitlocker_guid), "cipher",
					      json_text(dr->bitlocker_cipher)));
	/* rate: bytes/s, 0 when idle; eta: seconds, null when unknown (nothing measured). */
	if (prep_drive_progress(d, job_id, dr->id, &pg)) {
		json_object_set_new(o, "copiedBytes", json_integer(pg.bytes_done));
		json_object_set_new(o, "rate", json_integer((json_int_t)pg.rate));
		json_object_set_new(o, "eta", pg.eta >= 0 ? json_integer(pg.eta) : json_null());
	} else {
		json_object_set_new(o, "rate", json_integer(0));
		json_object_set_new(o, "eta", json_null());
	}
	return o;
}

json_t *
drives_json(struct daemon *d, int64_t job_id)
{
	struct drive_row *rows = NULL;
	size_t n = 0;
	json_t *a = json_array();

	if (db_drive_list(d->db, job_id, &rows, &n) < 0)
		return a;
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, drive_json(d, job_id, &rows[i]));
	drive_rows_free(rows, n);
	return a;
}

/* Bytes copied but not yet committed, summed over the job's drives. */
static int64_t
inflight_bytes(struct daemon *d, const struct job_row *j, json_t *drives)
{
	size_t i;
	json_t *dr;
	int64_t sum = 0;

	json_array_foreach(drives, i, dr) {
		json_t *c = json_object_get(dr, "copiedBytes");
		if (c != NULL)
			sum += json_integer_value(c) -
			       json_integer_value(json_object_get(dr, "usedBytes"));
	}
	return sum > 0 ? sum : 0;
}

/* Files with other hard links (stage-index.c): appended to a, counted in *count. */
static void
hard_links_json(struct daemon *d, int64_t job_id, json_t *a, int64_t *count)
{
	struct file_row *rows = NULL;
	struct file_count fc = {0};
	size_t n = 0;

	if (db_files_linked_count(d->db, job_id, &fc) < 0 || fc.files == 0)
		return;
	*count += fc.files;
	if (db_files_linked(d->db, job_id, 0, PROBLEMS_SHOWN, &rows, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *why = xprintf(
		    "%" PRId64 " hard links: copied, but the same data may be reachable outside "
		    "the staging tree",
		    rows[i].links);
		json_array_append_new(a, json_pack("{s:o,s:s,s:o}", "path",
						   json_text(rows[i].rel_path), "kind", "hardlink",
						   "reason", json_text(why)));
	}
	file_rows_free(rows, n);
}

/* Files Azure would refuse, seedd skipped, or with hard links: the first few, and how many. */
/*
 * The job's rate (bytes/s over its drives, 0 when idle) and ETA (seconds
 * until the slowest drive is done; null when any drive's is unknown, no
 * drive is copying, or files wait for a drive).
 */
static void
job_rate_eta(json_t *o, json_t *drives, const char *phase)
{
	json_int_t rate = 0, eta = -1;
	bool live = false, unknown = false;
	size_t i;
	json_t *dr;

	json_array_foreach(drives, i, dr) {
		json_t *e = json_object_get(dr, "eta");
		rate += json_integer_value(json_object_get(dr, "rate"));
		if (json_object_get(dr, "copiedBytes") == NULL)
			continue; /* no live progress */
		live = true;
		if (json_is_integer(e)) {
			if (json_integer_value(e) > eta)
				eta = json_integer_value(e);
		} else
			unknown = true;
	}
	json_object_set_new(o, "rate", json_integer(rate));
	/* Files that wait for a drive make the end unknown, however soon the drives are done. */
	if (phase != NULL && strncmp(phase, "needs-drive", 11) == 0)
		unknown = true;
	json_object_set_new(o, "eta", live && !unknown && eta >= 0 ? json_integer(eta) : json_null());
}

/*
 * Files Azure would refuse or seedd skipped: the first few, and how many of
 * each kind. Refused names of a job retried with --skip-refused are the
 * operator's choice: kind "skipped-by-operator". Entries an --exclude
 * pattern left out are no problem (the Job object counts them apart).
 */
static json_t *
problems_json(struct daemon *d, const struct job_row *j, int64_t *ret_count, json_t *counts)
{
	const char *states[] = {"invalid", "skipped"};
	int64_t job_id = j->id;
	json_t *a = json_array();

	*ret_count = 0;
	for (size_t s = 0; s < ELEMENTSOF(states); s++) {
		const char *kind = s == 0 && j->skip_refused ? "skipped-by-operator" : states[s];
		struct file_row *rows = NULL;
		struct file_count fc = {0};
		size_t n = 0;
		if (db_files_count(d->db, job_id, states[s], &fc) < 0 || fc.files == 0)
			continue;
		*ret_count += fc.files;
		json_object_set_new(counts, kind, json_integer(fc.files));
		if (db_files_page(d->db, job_id, states[s], 0, 0, PROBLEMS_SHOWN, &rows, &n) < 0)
			continue;
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, json_pack("{s:o,s:s,s:o}", "path",
							   json_text(rows[i].rel_path), "kind",
							   kind, "reason",
							   json_str_or_null(rows[i].reason)));
		file_rows_free(rows, n);
	}
	int64_t before = *ret_count;
	hard_links_json(d, job_id, a, ret_count);
	if (*ret_count > before)
		json_object_set_new(counts, "hardlink", json_integer(*ret_count - before));
	return a;
}

/*
 * The job's --exclude patterns ("excludes", [] if none) and how many entries
 * they left out ("excluded"; an excluded directory counts once).
 */
static void
excludes_json(struct daemon *d, const struct job_row *j, json_t *o)
{
	json_t *x = j->excludes ? json_loads(j->excludes, 0, NULL) : NULL;
	int64_t n = 0;

	if (!json_is_array(x)) {
		json_decref(x);
		x = json_array();
	}
	json_object_set_new(o, "excludes", x);
	if (json_array_size(x) > 0)
		(void)db_files_number(d->db, j->id, "excluded", &n);
	json_object_set_new(o, "excluded", json_integer(n));
}

/* How many files each import verification method verified (files.import_method). */
static json_t *
verified_by_json(struct daemon *d, int64_t job_id)
{
	static const char *const methods[] = {"content-md5", "block-list",
					      "block-list-no-verbose-log", "repaired-upload"};
	json_t *o = json_object();
	struct file_count fc;

	for (size_t i = 0; i < ELEMENTSOF(methods); i++)
		if (db_files_count_method(d->db, job_id, methods[i], &fc) == 0 && fc.files > 0)
			json_object_set_new(o, methods[i], json_integer(fc.files));
	return o;
}

/* Drives whose Azure log ends in a drive-level failure: nothing of them was imported. */
static json_t *
drive_failures_json(struct daemon *d, int64_t job_id)
{
	struct drive_row *rows = NULL;
	json_t *a = json_array();
	size_t n = 0;

	if (db_drive_list(d->db, job_id, &rows, &n) < 0)
		return a;
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *ls = NULL;
		if (db_drive_log_status(d->db, rows[i].id, &ls) == 0 &&
		    drivelog_drive_failed_status(ls))
			json_array_append_new(a, json_pack("{s:o,s:s,s:I}", "serial",
							   json_text(rows[i].serial), "status", ls,
							   "files", (json_int_t)rows[i].files));
	}
	drive_rows_free(rows, n);
	return a;
}

/* Counts of the reconcile, vault copy and cleanup, and the files that were not ok. */
static json_t *
after_import_json(struct daemon *d, int64_t job_id)
{
	static const char *const import_states[] = {"ok",	"missing", "corrupt",
						    "renamed", "failed",  "repaired"};
	json_t *counts = json_object(), *bad = json_array();
	struct file_count fc;
	int64_t after = 0;

	for (size_t i = 0; i < ELEMENTSOF(import_states); i++)
		if (db_files_count_mark(d->db, job_id, DB_MARK_IMPORT, import_states[i], &fc) == 0)
			json_object_set_new(counts, import_states[i], json_integer(fc.files));
	/* Every file that was not imported as it was shipped (bounded by the reply cap). */
	while (json_array_size(bad) < 1000) {
		struct file_row *rows = NULL;
		size_t n = 0;
		if (db_files_page_not_ok(d->db, job_id, after, 512, &rows, &n) < 0 || n == 0) {
			file_rows_free(rows, n);
			break;
		}
		for (size_t i = 0; i < n; i++) {
			after = rows[i].id;
			json_array_append_new(
				bad, json_pack("{s:o,s:s,s:o}", "path", json_text(rows[i].rel_path),
					       "import", rows[i].import_state, "detail",
					       rows[i].import_detail ? json_text(rows[i].import_detail)
								     : json_null()));
		}
		file_rows_free(rows, n);
	}
	json_t *o = json_pack("{s:o,s:o,s:o,s:o}", "import", counts, "notOk", bad, "verifiedBy",
			      verified_by_json(d, job_id), "driveFailures",
			      drive_failures_json(d, job_id));
	if (db_files_count_mark(d->db, job_id, DB_MARK_VAULT, "verified", &fc) == 0)
		json_object_set_new(o, "vaultVerified", json_integer(fc.files));
	if (db_files_count_mark(d->db, job_id, DB_MARK_CLEANUP, "staging-deleted", &fc) == 0)
		json_object_set_new(o, "stagingDeleted", json_integer(fc.files));
	if (db_files_count_mark(d->db, job_id, DB_MARK_CLEANUP, "staging-kept", &fc) == 0)
		json_object_set_new(o, "stagingKept", json_integer(fc.files));
	return o;
}

json_t *
job_json(struct daemon *d, const struct job_row *j)
{
	json_t *drives = drives_json(d, j->id), *problems, *o, *counts = json_object();
	int64_t nproblems, since = 0, ifiles, ibytes;
	json_t *azure = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "api",
				  json_str_or_null(j->azure_api), "jobName",
				  json_str_or_null(j->azure_job_name), "state",
				  json_str_or_null(j->azure_state), "carrier",
				  json_str_or_null(j->carrier), "trackingNumber",
				  json_str_or_null(j->tracking_number), "shipDeadline",
				  json_time(j->ship_deadline));

	problems = problems_json(d, j, &nproblems, counts);
	o = json_pack("{s:s,s:s,s:s,s:o,s:s,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:o,s:o}", "name",
		      j->name, "state", job_state_to_string(j->state), "phase",
		      j->phase ? j->phase : "", "stagingPath", json_text(j->staging_path),
		      "container", j->container, "files", (json_int_t)j->files, "bytes",
		      (json_int_t)j->bytes, "copiedFiles", (json_int_t)j->copied_files,
		      "copiedBytes", (json_int_t)(j->copied_bytes + inflight_bytes(d, j, drives)),
		      "verifiedFiles", (json_int_t)j->verified_files, "azure", azure, "error",
		      json_str_or_null(j->error), "created", json_time(j->created), "updated",
		      json_time(j->updated));
	json_object_set_new(o, "drives", drives);
	if (j->state >= JOB_IMPORTED && j->state <= JOB_DONE)
		json_object_set_new(o, "afterImport", after_import_json(d, j->id));
	json_object_set_new(o, "problems", problems);
	json_object_set_new(o, "problemCount", json_integer(nproblems));
	json_object_set_new(o, "problemCounts", counts);
	excludes_json(d, j, o);
	job_rate_eta(o, json_object_get(o, "drives"), j->phase);
	(void)db_job_state_since(d->db, j->id, &since);
	json_object_set_new(o, "stateSince", json_time(since));
	if (index_progress(d, j->id, &ifiles, &ibytes)) {
		json_object_set_new(o, "indexedFiles", json_integer(ifiles));
		json_object_set_new(o, "indexedBytes", json_integer(ibytes));
	}
	return o;
}

json_t *
job_json_by_id(struct daemon *d, int64_t id)
{
	struct job_row *j = NULL;
	json_t *o;

	if (db_job_get_by_id(d->db, id, &j) < 0)
		return NULL;
	o = job_json(d, j);
	job_row_free(j);
	return o;
}

