/*
 * Handlers of the io.seedd job and drive methods, and the Job object of
 * CONTRACT §4. Each handler reads or changes the store through one db_*
 * call per transition and tells watchers. Loop thread only.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "azure-http.h"
#include "catalog-ids.h"
#include "config.h"
#include "conn.h"
#include "daemon.h"
#include "db.h"
#include "jobctl.h"
#include "job-view.h"
#include "drivelog.h"
#include "exclude.h"
#include "job.h"
#include "log.h"
#include "methods.h"
#include "names.h"
#include "report.h"
#include "server.h"
#include "stage.h"
#include "stagetab.h"
#include "seedd-build.h"
#include "util.h"

#define EVENTS_MAX 10000  /* events in one GetJobLog reply */

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

/*
 * The --exclude patterns of a CreateJob as the JSON text the job keeps
 * (*ret NULL: none), or -EINVAL after an InvalidArgument naming the first
 * bad one.
 */
static int
excludes_param(struct call *call, char **ret)
{
	json_t *a = json_object_get(call->params, "excludes"), *v;
	size_t i;

	*ret = NULL;
	json_array_foreach(a, i, v) {
		const char *why = exclude_pattern_check(json_string_value(v));
		if (why != NULL) {
			reply_invalid_argument(call, "excludes", "exclude pattern '%s': %s",
					       json_string_value(v), why);
			return -EINVAL;
		}
	}
	if (json_array_size(a) > 0)
		*ret = json_dumps(a, JSON_COMPACT);
	return 0;
}

void
method_create_job(struct call *call)
{
	const char *name = param_str(call, "name");
	const char *staging = param_str(call, "stagingPath");
	const char *container = param_has(call, "container") ? param_str(call, "container")
							      : call->d->config->import_container;
	_cleanup_free_ char *excludes = NULL;
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
	if (excludes_param(call, &excludes) < 0 || staging_check(call, staging) < 0)
		return;
	/* The stage table starts indexing on the next loop turn. */
	r = jobctl_create(call->d, name, staging, container, excludes, &id);
	if (r == -EEXIST) {
		conn_error(call->conn, SEEDD_ERR_JOB_EXISTS, json_pack("{s:s}", "name", name));
		return;
	}
	if (r < 0) {
		reply_internal(call, "database error; see the journal");
		return;
	}
	reply_job_by_id(call, id);
}

/*
 * hideFinished: leave out done and cancelled jobs (seedctl's `job list` and
 * `watch` without --all). A failed job stays: it waits for a retry or a purge.
 */
static bool
job_hidden(const struct call *call, const struct job_row *j)
{
	return param_bool(call, "hideFinished") && job_state_is_final(j->state);
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
		if (!job_hidden(call, rows[i]))
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
	enum job_phase ph = job_phase_from_text(j->phase);
	if (j->state != JOB_DRIVE_PREP || ph != JOB_PHASE_AWAITING_TRACKING) {
		const char *why = j->state == JOB_DRIVE_PREP && ph == JOB_PHASE_AWAITING_AZURE
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
	if (r < 0 ||
	    jobctl_phase(call->d, j->id, JOB_DRIVE_PREP, JOB_PHASE_SHIPPING, NULL) < 0) {
		reply_internal(call, "database error; see the journal");
		goto out;
	}
	/* The Azure stage owns the job before and after: it is told to go on. */
	(void)stagetab_resume_job(call->d->stages, j->id, NULL);
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
	stagetab_stop_job(call->d->stages, j->id);
	r = jobctl_cancel(call->d, j->id, j->name, j->state, "cancelled by the operator");
	if (r == -ESTALE)
		reply_invalid_state(call, j->name, job_state_to_string(j->state),
				    "the job changed state meanwhile; try again");
	else if (r < 0)
		reply_internal(call, "database error; see the journal");
	else
		reply_job_by_id(call, j->id);
	job_row_free(j);
}

void
method_retry_job(struct call *call)
{
	struct job_row *j = call_job(call);
	bool skip = param_has(call, "skipRefused") &&
		    json_is_true(json_object_get(call->params, "skipRefused"));
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
	/* Names are refused while staging; later steps have no such names to skip. */
	if (skip && j->failed_state != JOB_STAGING) {
		reply_invalid_state(call, j->name, job_state_to_string(j->state),
				    "--skip-refused applies to a job that failed in staging; this "
				    "one failed in a later step");
		job_row_free(j);
		return;
	}
	/* The stage table resumes the step on the next loop turn. */
	r = jobctl_retry(call->d, j->id, j->name, skip, &to);
	if (r == -ESTALE)
		reply_invalid_state(call, j->name, job_state_to_string(j->state),
				    "the job changed state meanwhile; try again");
	else if (r < 0)
		reply_internal(call, "database error; see the journal");
	else
		reply_job_by_id(call, j->id);
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
static void
report_answered(json_t *report, int r, const char *message, void *userdata)
{
	held_call_finish(userdata, "report", report, message);
}

void
method_get_job_report(struct call *call)
{
	struct job_row *j = call_job(call);

	if (j == NULL)
		return;
	if (report_request(call->d, j->id, report_answered, held_call_new(call)) < 0)
		reply_internal(call, "cannot start a thread to build the report");
	else
		call->held = true; /* answered when built; the uid's heavy turn ends then */
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
		if (!job_hidden(call, rows[i]))
			conn_reply(call->conn,
				   json_pack("{s:o}", "job", job_json(call->d, rows[i])), true);
	job_rows_free(rows, n);
}

/*
 * PurgeJob: forget a done, failed or cancelled job (jobctl_purge()). The
 * answer names the audit report file, which stays in the state directory.
 */
void
method_purge_job(struct call *call)
{
	struct job_row *j = call_job(call);
	_cleanup_free_ char *report = NULL;
	int r;

	if (j == NULL)
		return;
	if (job_state_is_active(j->state)) {
		reply_invalid_state(call, j->name, job_state_to_string(j->state),
				    "only a done, failed or cancelled job can be purged; cancel it "
				    "first");
		goto out;
	}
	report = xprintf("%s/reports/%s.json", call->d->state_dir, j->name);
	r = jobctl_purge(call->d, j->id, j->name, j->state);
	if (r == -ESTALE || r == -ENOENT)
		reply_invalid_state(call, j->name, job_state_to_string(j->state),
				    "the job changed meanwhile; try again");
	else if (r < 0)
		reply_internal(call, "database error; see the journal");
	else
		conn_reply(call->conn,
			   json_pack("{s:s,s:o}", "name", j->name, "report",
				     access(report, F_OK) == 0 ? json_text(report) : json_null()),
			   false);
out:
	job_row_free(j);
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
