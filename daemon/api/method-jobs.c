/*
 * Handlers of the io.seedd job and drive methods, and the Job object of
 * CONTRACT §4. Each handler reads or changes the store through one db_*
 * call per transition and tells watchers. Loop thread only.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "azure-http.h"
#include "catalog-ids.h"
#include "config.h"
#include "conn.h"
#include "daemon.h"
#include "db.h"
#include "jobctl.h"
#include "drivelog.h"
#include "job.h"
#include "log.h"
#include "methods.h"
#include "names.h"
#include "report.h"
#include "server.h"
#include "stage.h"
#include "seedd-build.h"
#include "util.h"

#define EVENTS_MAX 10000  /* events in one GetJobLog reply */
#define PROBLEMS_SHOWN 20 /* problem files in a Job object */

static json_t *
json_str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *
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
	if (prep_drive_progress(d, job_id, dr->id, &pg)) {
		json_object_set_new(o, "copiedBytes", json_integer(pg.bytes_done));
		json_object_set_new(o, "rate", json_integer((json_int_t)pg.rate));
		json_object_set_new(o, "eta", pg.eta >= 0 ? json_integer(pg.eta) : json_null());
	}
	return o;
}

static json_t *
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

/* Files Azure would refuse or seedd skipped: the first few, and how many. */
static json_t *
problems_json(struct daemon *d, int64_t job_id, int64_t *ret_count)
{
	const char *states[] = {"invalid", "skipped"};
	json_t *a = json_array();

	*ret_count = 0;
	for (size_t s = 0; s < ELEMENTSOF(states); s++) {
		struct file_row *rows = NULL;
		struct file_count fc = {0};
		size_t n = 0;
		if (db_files_count(d->db, job_id, states[s], &fc) < 0 || fc.files == 0)
			continue;
		*ret_count += fc.files;
		if (db_files_page(d->db, job_id, states[s], 0, 0, PROBLEMS_SHOWN, &rows, &n) < 0)
			continue;
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, json_pack("{s:o,s:s,s:o}", "path",
							   json_text(rows[i].rel_path), "kind",
							   states[s], "reason",
							   json_str_or_null(rows[i].reason)));
		file_rows_free(rows, n);
	}
	return a;
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

static json_t *
job_json(struct daemon *d, const struct job_row *j)
{
	json_t *drives = drives_json(d, j->id), *problems, *o;
	int64_t nproblems;
	json_t *azure = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "api",
				  json_str_or_null(j->azure_api), "jobName",
				  json_str_or_null(j->azure_job_name), "state",
				  json_str_or_null(j->azure_state), "carrier",
				  json_str_or_null(j->carrier), "trackingNumber",
				  json_str_or_null(j->tracking_number), "shipDeadline",
				  json_time(j->ship_deadline));

	problems = problems_json(d, j->id, &nproblems);
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

/* Load the job named in the call, or answer JobNotFound / InternalError. */
static struct job_row *
call_job(struct call *call)
{
	const char *name = param_str(call, "name");
	struct job_row *j = NULL;
	int r = db_job_get(call->d->db, name, &j);

	if (r == -ENOENT)
		reply_job_not_found(call, name);
	else if (r < 0) {
		log_error("reading job %s: %s", name, db_errmsg(call->d->db));
		reply_internal(call, "database error; see the journal");
	}
	return r < 0 ? NULL : j;
}

void
reply_job_by_id(struct call *call, int64_t id)
{
	json_t *o = job_json_by_id(call->d, id);

	if (o == NULL) {
		reply_internal(call, "job vanished");
		return;
	}
	conn_reply(call->conn, json_pack("{s:o}", "job", o), false);
}

void
method_get_status(struct call *call)
{
	int64_t counts[_JOB_STATE_MAX] = {0};
	json_t *jobs = json_object();

	if (db_job_count_by_state(call->d->db, counts) < 0) {
		json_decref(jobs);
		reply_internal(call, "database error; see the journal");
		return;
	}
	for (int s = 0; s < _JOB_STATE_MAX; s++)
		json_object_set_new(jobs, job_state_to_string(s), json_integer(counts[s]));
	conn_reply(call->conn,
		   json_pack("{s:s,s:I,s:o}", "version", SEEDD_VERSION, "uptime",
			     (json_int_t)daemon_uptime(call->d), "jobs", jobs),
		   false);
}

/* Check the staging path: absolute, a directory we can open, no symlink at its end. */
static int
staging_check(struct call *call, const char *path)
{
	struct stat st;
	int fd;

	if (path[0] != '/') {
		reply_invalid_argument(call, "stagingPath", "%s is not an absolute path", path);
		return -EINVAL;
	}
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		reply_invalid_argument(call, "stagingPath", "cannot open directory %s: %s", path,
				       strerror(errno));
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	close(fd);
	return 0;
}

/* Azure container rule: 3-63 of [a-z0-9-], starting and ending alphanumeric, no "--". */
static bool
container_valid(const char *s)
{
	size_t n = strlen(s);

	if (n < 3 || n > 63 || s[0] == '-' || s[n - 1] == '-' || strstr(s, "--") != NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

static void
log_job(int priority, const char *msgid, const struct job_row *j, enum job_state state,
	const char *fmt, const char *arg)
{
	struct log_ctx ctx = {
		.job = j->name,
		.state = job_state_to_string(state),
		.message_id = msgid,
	};

	log_ctx(priority, &ctx, fmt, j->name, arg);
}

void
method_create_job(struct call *call)
{
	const char *name = param_str(call, "name");
	const char *staging = param_str(call, "stagingPath");
	const char *container = param_has(call, "container") ? param_str(call, "container")
							      : call->d->config->import_container;
	int64_t id;
	int r;

	if (!job_name_valid(name)) {
		reply_invalid_argument(call, "name",
				       "job name '%s' must be 3-24 letters, digits, '-', '_' or '.'",
				       name);
		return;
	}
	if (!container_valid(container)) {
		reply_invalid_argument(call, "container",
				       "container '%s' must be 3-63 lower-case letters, digits and "
				       "single hyphens, starting and ending with a letter or digit",
				       container);
		return;
	}
	if (staging_check(call, staging) < 0)
		return;
	r = db_job_create(call->d->db, name, staging, container, daemon_now(), &id);
	if (r == -EEXIST) {
		conn_error(call->conn, SEEDD_ERR_JOB_EXISTS, json_pack("{s:s}", "name", name));
		return;
	}
	if (r < 0) {
		log_error("creating job %s: %s", name, db_errmsg(call->d->db));
		reply_internal(call, "database error; see the journal");
		return;
	}
	struct job_row *j = NULL;
	if (db_job_get_by_id(call->d->db, id, &j) == 0) {
		log_job(LOG_INFO, SEEDD_MESSAGE_JOB_CREATED, j, JOB_STAGING,
			"job %s created for staging tree %s", staging);
		if ((r = index_start(call->d, j)) < 0)
			log_error("job %s: cannot start indexing: %s", name, strerror(-r));
	}
	job_row_free(j);
	reply_job_by_id(call, id);
	jobctl_changed(call->d, id);
}

void
method_list_jobs(struct call *call)
{
	struct job_row **rows = NULL;
	size_t n = 0;
	json_t *a;

	if (db_job_list(call->d->db, &rows, &n) < 0) {
		reply_internal(call, "database error; see the journal");
		return;
	}
	a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, job_json(call->d, rows[i]));
	job_rows_free(rows, n);
	conn_reply(call->conn, json_pack("{s:o}", "jobs", a), false);
}

void
method_get_job(struct call *call)
{
	struct job_row *j = call_job(call);

	if (j == NULL)
		return;
	conn_reply(call->conn, json_pack("{s:o}", "job", job_json(call->d, j)), false);
	job_row_free(j);
}

/* Carrier and tracking: printable ASCII words, as carriers print them. */
static bool
shipping_text_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64 || s[0] == ' ' || s[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return false;
	return true;
}

void
method_ship_job(struct call *call)
{
	const char *carrier = param_str(call, "carrier"), *tracking = param_str(call, "trackingNumber");
	struct job_row *j = call_job(call);
	int r;

	if (j == NULL)
		return;
	if (!shipping_text_valid(carrier) || !shipping_text_valid(tracking)) {
		reply_invalid_argument(call, shipping_text_valid(carrier) ? "trackingNumber" : "carrier",
				       "carrier and tracking number must be 1-64 printable ASCII "
				       "characters");
		goto out;
	}
	if (j->state != JOB_DRIVE_PREP || j->phase == NULL ||
	    strcmp(j->phase, "awaiting-tracking") != 0) {
		const char *why = j->state == JOB_DRIVE_PREP && j->phase &&
						  strcmp(j->phase, "awaiting-azure") == 0
					  ? "no Azure job exists: Azure is not configured (seedd.conf(5), "
					    "[Azure])"
					  : "a job is shipped once its drives are prepared and its Azure "
					    "job exists (phase awaiting-tracking)";
		reply_invalid_state(call, j->name, job_state_to_string(j->state), why);
		goto out;
	}
	r = db_job_set_tracking(call->d->db, j->id, carrier, tracking, daemon_now());
	if (r == -EEXIST) {
		reply_invalid_argument(call, "trackingNumber",
				       "tracking number %s is already used by another job", tracking);
		goto out;
	}
	if (r < 0 || jobctl_phase(call->d, j->id, JOB_DRIVE_PREP, "shipping") < 0) {
		reply_internal(call, "database error; see the journal");
		goto out;
	}
	azure_resume_id(call->d, j->id);
	reply_job_by_id(call, j->id);
out:
	job_row_free(j);
}

void
method_list_drives(struct call *call)
{
	struct job_row *j = call_job(call);

	if (j == NULL)
		return;
	conn_reply(call->conn, json_pack("{s:o}", "drives", drives_json(call->d, j->id)), false);
	job_row_free(j);
}

void
method_cancel_job(struct call *call)
{
	struct job_row *j = call_job(call);
	int r;

	if (j == NULL)
		return;
	if (job_next(j->state, JOB_EV_CANCEL) == _JOB_STATE_INVALID) {
		reply_invalid_state(call, j->name, job_state_to_string(j->state),
				    "the job can no longer be cancelled");
		job_row_free(j);
		return;
	}
	if (j->state == JOB_SHIPPED && j->azure_created > 0) {
		reply_invalid_state(call, j->name, "shipped",
				    "the drives are shipped: Azure no longer lets the job be "
				    "cancelled, so seedd keeps following it");
		job_row_free(j);
		return;
	}
	if (j->state == JOB_DRIVE_PREP && j->azure_job_name != NULL && call->d->azure != NULL) {
		/* Azure decides; the job shows phase cancelling until it answers. */
		azure_cancel(call->d, j);
		reply_job_by_id(call, j->id);
		jobctl_changed(call->d, j->id);
		job_row_free(j);
		return;
	}
	index_stop(call->d, j->id);
	prep_stop(call->d, j->id);
	azure_forget(call->d, j->id);
	post_stop(call->d, j->id);
	r = db_job_cancel(call->d->db, j->id, j->state, "cancelled by the operator",
			  daemon_now());
	if (r == -ESTALE)
		reply_invalid_state(call, j->name, job_state_to_string(j->state),
				    "the job changed state meanwhile; try again");
	else if (r < 0)
		reply_internal(call, "database error; see the journal");
	else {
		log_job(LOG_NOTICE, SEEDD_MESSAGE_JOB_CANCELLED, j, JOB_CANCELLED,
			"job %s cancelled%s", "");
		reply_job_by_id(call, j->id);
		jobctl_changed(call->d, j->id);
	}
	job_row_free(j);
}

void
method_retry_job(struct call *call)
{
	struct job_row *j = call_job(call);
	enum job_state to;
	int r;

	if (j == NULL)
		return;
	if (j->state != JOB_FAILED) {
		reply_invalid_state(call, j->name, job_state_to_string(j->state),
				    "only a failed job can be retried");
		job_row_free(j);
		return;
	}
	r = db_job_retry(call->d->db, j->id, daemon_now(), &to);
	if (r == -ESTALE)
		reply_invalid_state(call, j->name, job_state_to_string(j->state),
				    "the job changed state meanwhile; try again");
	else if (r < 0)
		reply_internal(call, "database error; see the journal");
	else {
		log_job(LOG_NOTICE, SEEDD_MESSAGE_JOB_STATE, j, to, "job %s retried: back to %s",
			job_state_to_string(to));
		stage_resume_job(call->d, j->id);
		reply_job_by_id(call, j->id);
		jobctl_changed(call->d, j->id);
	}
	job_row_free(j);
}

static json_t *
events_json(struct daemon *d, int64_t job_id, size_t limit)
{
	struct event_row *ev = NULL;
	size_t n = 0;
	json_t *a;

	if (db_event_list(d->db, job_id, limit, &ev, &n) < 0)
		return NULL;
	a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:o,s:s,s:s,s:s}", "time",
						   json_time(ev[i].time), "kind", ev[i].kind,
						   "state", job_state_to_string(ev[i].state),
						   "text", ev[i].text ? ev[i].text : ""));
	event_rows_free(ev, n);
	return a;
}

void
method_get_job_log(struct call *call)
{
	struct job_row *j = call_job(call);
	json_t *a;

	if (j == NULL)
		return;
	if ((a = events_json(call->d, j->id, EVENTS_MAX)) == NULL)
		reply_internal(call, "database error; see the journal");
	else
		conn_reply(call->conn, json_pack("{s:o}", "events", a), false);
	job_row_free(j);
}

/*
 * The audit report: the job, its drives, every transition, and its files
 * with hashes and outcomes (the first REPORT_FILES_INLINE; the report file
 * in the state directory has them all once the job is done). A reply that
 * would pass the protocol's size cap is cut to fewer files. Built on a
 * reporter thread (report.c); the uid's heavy turn lasts until the reply.
 */
void
method_get_job_report(struct call *call)
{
	struct job_row *j = call_job(call);

	if (j == NULL)
		return;
	report_call_start(call, j->id); /* on a thread; answers when built */
	job_row_free(j);
}

static bool
state_ends_watch(enum job_state s)
{
	return s == JOB_DONE || s == JOB_FAILED || s == JOB_CANCELLED;
}

/* A new watcher of every job first gets the current state of each. */
static void
watch_send_all(struct call *call)
{
	struct job_row **rows = NULL;
	size_t n = 0;

	if (db_job_list(call->d->db, &rows, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		conn_reply(call->conn, json_pack("{s:o}", "job", job_json(call->d, rows[i])), true);
	job_rows_free(rows, n);
}

void
method_watch(struct call *call)
{
	struct job_row *j = NULL;
	json_t *o;

	if (!param_has(call, "name")) {
		if (!call->more) {
			conn_error(call->conn, VL_ERR_INVALID_PARAMETER,
				   json_pack("{s:s}", "parameter", "more"));
			return;
		}
		conn_watch(call->conn, NULL);
		watch_send_all(call);
		return;
	}
	if ((j = call_job(call)) == NULL)
		return;
	o = job_json(call->d, j);
	if (!call->more || state_ends_watch(j->state)) {
		conn_reply(call->conn, json_pack("{s:o}", "job", o), false);
	} else {
		conn_reply(call->conn, json_pack("{s:o}", "job", o), true);
		conn_watch(call->conn, j->name);
	}
	job_row_free(j);
}

/*
 * The Watch observer of job changes (once per job per loop turn): the Job
 * object, with its counts over the files, is built only if somebody
 * watches this job.
 */
void
watch_job_changed(int64_t job_id, void *userdata)
{
	struct daemon *d = userdata;
	struct job_row *j = NULL;
	json_t *o;

	if (d->server == NULL || db_job_get_by_id(d->db, job_id, &j) < 0)
		return;
	if (server_watches(d->server, j->name)) {
		o = job_json(d, j);
		server_broadcast_job(d->server, j->name, o, state_ends_watch(j->state));
		json_decref(o);
	}
	job_row_free(j);
}
