/*
 * The Azure part of a job's life, on the loop: create the import job once
 * the drives are prepared (its name is the job's, stored before the first
 * request, and an existing job is found with GET before any PUT, so a crash
 * or a retry never makes a second one), send the shipment, follow the job
 * by polling until Azure has imported it, cancel it where Azure allows, and
 * warn in the journal as the tracking deadline nears. Transient failures are
 * retried by the HTTP layer; what is left fails the step, and RetryJob
 * resumes it. Loop thread only.
 */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <string.h>

#include "azure-arm.h"
#include "azure-blob.h"
#include "azure-jobs.h"
#include "alert.h"
#include "catalog-ids.h"
#include "config.h"
#include "daemon.h"
#include "db.h"
#include "jobctl.h"
#include "log.h"
#include "stage.h"
#include "util.h"

#define DEADLINE_CHECK_SEC 3600
#define DAY 86400
/*
 * A create whose outcome is unknown (timed out, reset, 5xx, 409, or 202
 * without anywhere to follow) is confirmed by reading the job by name, up to
 * this many times OperationPollSec= apart, before the PUT is sent again; and
 * a PUT is sent at most this many times per attempt of the step.
 */
#define CONFIRM_POLLS 10
#define CREATE_ROUNDS 3

enum az_step {
	STEP_IDLE,
	STEP_LOOKUP,   /* GET: does the Azure job exist already? */
	STEP_VALIDATE, /* POST validateInputs (DataBox) */
	STEP_CREATE,   /* PUT, following the operation */
	STEP_SHIP,     /* markDevicesShipped / PATCH Shipping */
	STEP_SHIP_GET, /* GET after shipping */
	STEP_CANCEL_GET,
	STEP_CANCEL,
	STEP_POLL,
};

struct azjob {
	LIST_ENTRY(azjob) link;
	struct daemon *d;
	int64_t job_id;
	char *name;
	enum job_api api;
	enum az_step step;
	struct arm_call *call;
	enum job_phase cancel_back; /* the phase to return to if Azure refuses a cancel */
	struct event *timer;     /* the next confirming GET of a create */
	struct event *again;     /* the next try of a shipment Resource Manager could not take */
	unsigned confirm_polls, create_rounds;
	char *why_confirm;       /* what made the create uncertain, for the log and the error */
	/* A MitigateJob in flight (beside polling). */
	struct arm_call *mitigate;
	char *mitigate_text;
	azure_mitigate_fn mitigate_done;
	void *mitigate_ud;
};


/* ---- bookkeeping -------------------------------------------------------- */

static struct azjob *
azjob_find(struct daemon *d, int64_t job_id)
{
	struct azjob *a;

	LIST_FOREACH(a, &d->azjobs, link)
		if (a->job_id == job_id)
			return a;
	return NULL;
}

static struct azjob *
azjob_get(struct daemon *d, const struct job_row *j)
{
	struct azjob *a = azjob_find(d, j->id);

	if (a != NULL)
		return a;
	a = xcalloc(1, sizeof(*a));
	a->d = d;
	a->job_id = j->id;
	a->name = xstrdup(j->name);
	a->api = j->azure_api && strcmp(j->azure_api, "ImportExport") == 0 ? JOB_API_IMPORTEXPORT
		 : j->azure_api ? JOB_API_DATABOX : d->config->job_api;
	LIST_INSERT_HEAD(&d->azjobs, a, link);
	return a;
}

static void
azjob_free(struct azjob *a)
{
	LIST_REMOVE(a, link);
	arm_cancel(a->call);
	arm_cancel(a->mitigate);
	if (a->mitigate_done != NULL)
		a->mitigate_done("Cancelled", "seedd stopped following the job before Azure answered",
				 a->mitigate_ud);
	free(a->mitigate_text);
	if (a->timer != NULL)
		event_free(a->timer);
	if (a->again != NULL)
		event_free(a->again);
	free(a->why_confirm);
	free(a->name);
	free(a);
}

/* A request in flight or a confirming GET waiting on its timer. */
static bool
busy(const struct azjob *a)
{
	return a->call != NULL || (a->timer != NULL && evtimer_pending(a->timer, NULL)) ||
	       (a->again != NULL && evtimer_pending(a->again, NULL));
}

static const char *
api_name(enum job_api api)
{
	return api == JOB_API_IMPORTEXPORT ? "ImportExport" : "DataBox";
}

static const char *
api_version(enum job_api api)
{
	return api == JOB_API_IMPORTEXPORT ? IMPORTEXPORT_API_VERSION : DATABOX_API_VERSION;
}

static char *
job_path(const struct azjob *a)
{
	const struct config *c = a->d->config;

	return xprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.%s/jobs/%s",
		       c->subscription_id, c->resource_group, api_name(a->api), a->name);
}

static struct job_row *
job_load(struct azjob *a)
{
	struct job_row *j = NULL;

	return db_job_get_by_id(a->d->db, a->job_id, &j) == 0 ? j : NULL;
}

static void
fail_job(struct azjob *a, enum job_state from, const char *what, const struct arm_result *r)
{
	_cleanup_free_ char *err = NULL;

	if (r != NULL)
		err = xprintf("%s: Azure error %s: %s", what, r->code ? r->code : "unknown",
			      r->message ? r->message : "no message");
	else
		err = xstrdup(what);
	(void)jobctl_fail(a->d, a->job_id, a->name, from, err);
	azjob_free(a);
}

static bool
ok(const struct arm_result *r)
{
	return r->error == 0 && r->status >= 200 && r->status < 300;
}

static void
set_phase(struct azjob *a, enum job_state state, enum job_phase phase, const char *detail)
{
	(void)jobctl_phase(a->d, a->job_id, state, phase, detail);
}

static void
call(struct azjob *a, enum az_step step, const char *method, const char *suffix, json_t *body,
     unsigned flags, arm_done_fn done)
{
	_cleanup_free_ char *path = job_path(a), *full = xprintf("%s%s", path, suffix);

	a->step = step;
	a->call = arm_request(a->d->azure, method, full, api_version(a->api), body, flags, done, a);
}

/* ---- create ------------------------------------------------------------- */

struct disk_set {
	struct azure_disk disks[DRIVES_PER_JOB_MAX];
	char *keys[DRIVES_PER_JOB_MAX];
	struct drive_row *rows;
	size_t n, n_rows;
};

static void
disk_set_done(struct disk_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->keys[i] != NULL) {
			explicit_bzero(s->keys[i], strlen(s->keys[i]));
			free(s->keys[i]);
		}
	drive_rows_free(s->rows, s->n_rows);
}

/* A drive goes to Azure only if it carries files: never an `unused` one (stage-prep.c). */
static bool
drive_ships(const struct drive_row *dr)
{
	return dr->files > 0 && strcmp(dr->state, "unused") != 0;
}

/* The drives that carry files, with manifest hash and BitLocker key; *ret_err if one lacks them. */
static int
disk_set_load(struct azjob *a, struct disk_set *s, char **ret_err)
{
	int r;

	*s = (struct disk_set){0};
	if ((r = db_drive_list(a->d->db, a->job_id, &s->rows, &s->n_rows)) < 0)
		return r;
	for (size_t i = 0; i < s->n_rows; i++) {
		const struct drive_row *dr = &s->rows[i];
		if (!drive_ships(dr))
			continue;
		if (dr->manifest_hash == NULL) {
			xasprintf(ret_err, "drive %s has no manifest yet", dr->serial);
			return -EINVAL;
		}
		if (db_secret_get(a->d->db, dr->id, "bitlocker-key", &s->keys[s->n]) < 0) {
			xasprintf(ret_err,
				  "drive %s has no BitLocker recovery key: give it with `seedctl drive add "
				  "%s %s --serial %s --bitlocker-key-file FILE`, then `seedctl job retry %s`",
				  dr->serial, a->name, dr->path, dr->serial, a->name);
			return -ENOKEY;
		}
		s->disks[s->n] = (struct azure_disk){dr->serial, dr->manifest_hash, s->keys[s->n]};
		s->n++;
	}
	if (s->n == 0) {
		xasprintf(ret_err, "no drive carries files");
		return -EINVAL;
	}
	return 0;
}

static void
created(struct azjob *a, const struct arm_result *r)
{
	struct azure_status st;
	int64_t deadline = daemon_now() + (int64_t)a->d->config->ship_deadline_days * DAY;
	struct log_ctx ctx = {.job = a->name, .state = "drive_prep",
			      .message_id = SEEDD_MESSAGE_JOB_STATE};
	struct job_row *j = job_load(a);

	if (j != NULL && j->azure_created > 0)
		deadline = j->ship_deadline; /* found again after a restart: keep the first deadline */
	job_row_free(j);
	if (azure_status_parse(a->api, r->body, &st) < 0) {
		fail_job(a, JOB_DRIVE_PREP, "reading the created Azure job failed", NULL);
		return;
	}
	(void)db_job_azure_created(a->d->db, a->job_id, st.status, deadline, daemon_now());
	log_ctx(LOG_INFO, &ctx, "job %s: Azure job created (%s), status %s", a->name,
		api_name(a->api), st.status);
	azure_status_done(&st);
	a->step = STEP_IDLE;
	set_phase(a, JOB_DRIVE_PREP, JOB_PHASE_AWAITING_TRACKING, NULL);
	azure_check_deadlines(a->d);
}

static void create_send(struct azjob *a);
static void confirm_start(struct azjob *a, const char *why);

/* Is this job resource done being created? (A GET may find it while it is not [inferred].) */
static bool
provisioned(const struct azjob *a, json_t *body)
{
	struct azure_status st;
	bool done;

	if (azure_status_parse(a->api, body, &st) < 0)
		return false;
	done = !st.provisioning;
	azure_status_done(&st);
	return done;
}

/*
 * Could Azure have acted on a create that did not answer success? A
 * timeout or reset after sending, a 5xx other than the refusals the HTTP
 * layer resends (429, 503), a 409 (the job may exist already: the re-PUT
 * answer is undocumented [inferred]), or a transport failure while
 * following the operation. A failed operation (its own error answer) and
 * other 4xx are definite, and so is an operation URL on a host that is
 * not the Resource Manager's (azure-arm.c refuses it: -EPERM), which asking
 * again would only meet again.
 */
static bool
create_uncertain(const struct arm_result *r)
{
	if (r->error == -EACCES || r->error == -EBADMSG || r->error == -EPERM)
		return false;
	if (r->error != 0 && r->status == 0)
		return true;
	if (r->in_operation)
		return false;
	return r->status == 409 || r->status == 500 || r->status == 502 || r->status == 504;
}

static void
create_done(const struct arm_result *r, void *userdata)
{
	struct azjob *a = userdata;
	_cleanup_free_ char *why = NULL;

	a->call = NULL;
	if (ok(r) && r->body != NULL && provisioned(a, r->body)) {
		created(a, r);
		return;
	}
	if (ok(r)) { /* 201/202 with nothing to follow, or a job still being provisioned */
		why = xprintf("Azure answered the create with HTTP %ld and no operation to follow",
			      r->status);
		confirm_start(a, why);
		return;
	}
	if (create_uncertain(r)) {
		why = xprintf("the create's outcome is unknown (%s: %s)", r->code ? r->code : "error",
			      r->message ? r->message : "no message");
		confirm_start(a, why);
		return;
	}
	fail_job(a, JOB_DRIVE_PREP, "creating the Azure job failed", r);
}

/* ---- confirming an uncertain create: GET by name before any second PUT ---- */

static void confirm_get(struct azjob *a);

static void
confirm_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	confirm_get(arg);
}

static void
confirm_later(struct azjob *a)
{
	struct timeval tv = {(time_t)a->d->config->operation_poll_sec, 0};

	if (a->timer == NULL)
		a->timer = evtimer_new(a->d->base, confirm_timer_cb, a);
	evtimer_add(a->timer, &tv);
}

static void
confirm_done(const struct arm_result *r, void *userdata)
{
	struct azjob *a = userdata;
	struct log_ctx ctx = {.job = a->name, .state = "drive_prep"};

	a->call = NULL;
	if (ok(r) && r->body != NULL && provisioned(a, r->body)) {
		log_ctx(LOG_INFO, &ctx, "job %s: the Azure job was found by name after %s", a->name,
			a->why_confirm);
		created(a, r);
		return;
	}
	if (!ok(r) && r->status != 404) {
		fail_job(a, JOB_DRIVE_PREP, "looking up the Azure job after an uncertain create failed",
			 r);
		return;
	}
	if (++a->confirm_polls < CONFIRM_POLLS) {
		confirm_later(a);
		return;
	}
	if (ok(r) || a->create_rounds >= CREATE_ROUNDS) {
		_cleanup_free_ char *err = xprintf(
			"%s, and the Azure job %s after %u looks; `seedctl job retry %s` looks again "
			"before creating it",
			a->why_confirm, ok(r) ? "is still being created" : "was not found", a->confirm_polls,
			a->name);
		fail_job(a, JOB_DRIVE_PREP, err, NULL);
		return;
	}
	log_ctx(LOG_NOTICE, &ctx, "job %s: no Azure job after %s; sending the create again",
		a->name, a->why_confirm);
	create_send(a); /* checked: no job by this name exists */
}

static void
confirm_get(struct azjob *a)
{
	call(a, STEP_LOOKUP, "GET", "", NULL, 0, confirm_done);
}

static void
confirm_start(struct azjob *a, const char *why)
{
	struct log_ctx ctx = {.job = a->name, .state = "drive_prep"};

	free(a->why_confirm);
	a->why_confirm = xstrdup(why);
	a->confirm_polls = 0;
	log_ctx(LOG_NOTICE, &ctx, "job %s: %s; reading the job by name before anything else",
		a->name, why);
	confirm_get(a);
}

static void
create_send(struct azjob *a)
{
	struct disk_set s;
	_cleanup_free_ char *err = NULL;
	json_t *body;

	if (disk_set_load(a, &s, &err) < 0) {
		disk_set_done(&s);
		fail_job(a, JOB_DRIVE_PREP, err ? err : "reading drives failed", NULL);
		return;
	}
	body = a->api == JOB_API_DATABOX ? databox_job_body(a->d->config, s.disks, s.n, &err)
					 : importexport_job_body(a->d->config, s.disks, s.n, &err);
	disk_set_done(&s);
	if (body == NULL) {
		fail_job(a, JOB_DRIVE_PREP, err, NULL);
		return;
	}
	a->create_rounds++;
	call(a, STEP_CREATE, "PUT", "", body, ARM_FOLLOW_LRO | ARM_CREATE, create_done);
	json_decref(body); /* it holds BitLocker keys: not kept */
}

static void
validate_done(const struct arm_result *r, void *userdata)
{
	struct azjob *a = userdata;
	_cleanup_free_ char *err = NULL;

	a->call = NULL;
	if (!ok(r)) {
		fail_job(a, JOB_DRIVE_PREP, "validating the Azure job inputs failed", r);
		return;
	}
	int v = databox_validate_result(r->body, &err);
	if (v < 0) {
		fail_job(a, JOB_DRIVE_PREP, err, NULL);
		return;
	}
	if (v > 0) {
		struct log_ctx ctx = {.job = a->name, .state = "drive_prep"};
		(void)db_event_add(a->d->db, a->job_id, "azure", err, daemon_now());
		log_ctx(LOG_NOTICE, &ctx, "job %s: %s", a->name, err);
	}
	create_send(a);
}

static void
validate_send(struct azjob *a)
{
	const struct config *c = a->d->config;
	struct disk_set s;
	_cleanup_free_ char *err = NULL, *path = NULL;
	json_t *body;

	if (disk_set_load(a, &s, &err) < 0) {
		disk_set_done(&s);
		fail_job(a, JOB_DRIVE_PREP, err ? err : "reading drives failed", NULL);
		return;
	}
	body = databox_validate_body(c, s.disks, s.n);
	disk_set_done(&s);
	path = xprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.DataBox/locations/"
		       "%s/validateInputs",
		       c->subscription_id, c->resource_group, c->location);
	a->step = STEP_VALIDATE;
	a->call = arm_request(a->d->azure, "POST", path, DATABOX_API_VERSION, body, 0,
			      validate_done, a);
	json_decref(body);
}

static void
lookup_done(const struct arm_result *r, void *userdata)
{
	struct azjob *a = userdata;

	a->call = NULL;
	if (ok(r) && r->body != NULL && provisioned(a, r->body)) {
		created(a, r); /* made before a crash or an earlier attempt: never PUT again */
		return;
	}
	if (ok(r)) { /* found while still being created: wait for it, never PUT */
		confirm_start(a, "the Azure job exists but is still being created");
		return;
	}
	if (r->status != 404) {
		fail_job(a, JOB_DRIVE_PREP, "looking up the Azure job failed", r);
		return;
	}
	if (a->api == JOB_API_DATABOX)
		validate_send(a);
	else
		create_send(a);
}

static void
create_start(struct azjob *a)
{
	(void)db_job_set_azure_name(a->d->db, a->job_id, a->name, api_name(a->api), daemon_now());
	set_phase(a, JOB_DRIVE_PREP, JOB_PHASE_CREATING_AZURE_JOB, NULL);
	a->create_rounds = 0;
	call(a, STEP_LOOKUP, "GET", "", NULL, 0, lookup_done);
}

/* ---- ship ---------------------------------------------------------------- */

static void
ship_get_done(const struct arm_result *r, void *userdata)
{
	struct azjob *a = userdata;
	struct azure_status st = {0};
	struct job_row *j;
	_cleanup_free_ char *text = NULL;

	a->call = NULL;
	if (ok(r) && azure_status_parse(a->api, r->body, &st) == 0 &&
	    db_job_set_azure_state(a->d->db, a->job_id, st.status, daemon_now()) == 0)
		jobctl_changed(a->d, a->job_id);
	azure_status_done(&st);
	if ((j = job_load(a)) == NULL) {
		azjob_free(a);
		return;
	}
	text = xprintf("drives shipped with %s, tracking %s; Azure accepted it", j->carrier,
		       j->tracking_number);
	(void)jobctl_advance(a->d, a->job_id, a->name, JOB_DRIVE_PREP, JOB_SHIPPED, JOB_PHASE_IN_TRANSIT,
			     LOG_INFO, text);
	job_row_free(j);
	a->step = STEP_IDLE;
}

static void ship_start(struct azjob *a);

static void
ship_again_cb(evutil_socket_t fd, short what, void *arg)
{
	ship_start(arg);
}

/* No answer at all: refused, unreachable, timed out, reset, or no token for want of Entra ID. */
static bool
unreachable(const struct arm_result *r)
{
	if (r->status != 0)
		return false;
	if (r->error == -EACCES)
		return r->code != NULL && strcmp(r->code, ARM_CODE_TOKEN_UNREACHABLE) == 0;
	return r->error == -ECONNREFUSED || r->error == -EHOSTUNREACH || r->error == -ETIMEDOUT ||
	       r->error == -ECONNRESET;
}

/*
 * No answer at all from Resource Manager (or Entra ID for its token), after
 * the HTTP layer's own retries: an outage, not a refusal.
 * The shipment waits in phase shipping, saying so, and is tried again every
 * PollIntervalSec= from the GET that finds out whether Azure took it before,
 * so it is never sent twice. Returns false for an answer that fails the step.
 */
static bool
ship_wait_if_unreachable(struct azjob *a, const struct arm_result *r)
{
	struct timeval tv = {(time_t)a->d->config->poll_interval_sec, 0};
	struct log_ctx ctx = {.job = a->name, .state = "drive_prep"};
	_cleanup_free_ char *detail = NULL;

	if (!unreachable(r))
		return false;
	detail = xprintf("Resource Manager unreachable (%s); trying again every %u s",
			 r->message ? r->message : "no answer", a->d->config->poll_interval_sec);
	log_ctx(LOG_WARNING, &ctx, "job %s: sending the shipment: %s", a->name, detail);
	set_phase(a, JOB_DRIVE_PREP, JOB_PHASE_SHIPPING, detail);
	if (a->again == NULL)
		a->again = evtimer_new(a->d->base, ship_again_cb, a);
	evtimer_add(a->again, &tv);
	a->step = STEP_IDLE;
	return true;
}

static void
ship_done(const struct arm_result *r, void *userdata)
{
	struct azjob *a = userdata;

	a->call = NULL;
	if (ship_wait_if_unreachable(a, r))
		return;
	if (!ok(r)) {
		fail_job(a, JOB_DRIVE_PREP, "sending the shipment to Azure failed", r);
		return;
	}
	call(a, STEP_SHIP_GET, "GET", "", NULL, 0, ship_get_done);
}

static void ship_send(struct azjob *a);

/* Before sending: a restart may find the shipment already accepted; never send it twice. */
static void
ship_check_done(const struct arm_result *r, void *userdata)
{
	struct azjob *a = userdata;
	struct azure_status st = {0};
	bool shipped;

	a->call = NULL;
	if (ship_wait_if_unreachable(a, r))
		return;
	if (!ok(r) || azure_status_parse(a->api, r->body, &st) < 0) {
		azure_status_done(&st);
		fail_job(a, JOB_DRIVE_PREP, "reading the Azure job before shipping failed", r);
		return;
	}
	shipped = st.stage >= AZ_SHIPPED && st.stage != AZ_UNKNOWN;
	azure_status_done(&st);
	if (shipped)
		ship_get_done(r, a);
	else
		ship_send(a);
}

static void
ship_start(struct azjob *a)
{
	call(a, STEP_SHIP_GET, "GET", "", NULL, 0, ship_check_done);
}

static void
ship_send(struct azjob *a)
{
	struct job_row *j = job_load(a);
	json_t *body;

	if (j == NULL || j->carrier == NULL || j->tracking_number == NULL) {
		job_row_free(j);
		fail_job(a, JOB_DRIVE_PREP, "no carrier or tracking number recorded", NULL);
		return;
	}
	if (a->api == JOB_API_DATABOX) {
		body = databox_ship_body(j->carrier, j->tracking_number);
		call(a, STEP_SHIP, "POST", "/markDevicesShipped", body, 0, ship_done);
	} else {
		struct drive_row *rows = NULL;
		size_t n = 0, used = 0;
		(void)db_drive_list(a->d->db, a->job_id, &rows, &n);
		for (size_t i = 0; i < n; i++)
			used += drive_ships(&rows[i]);
		drive_rows_free(rows, n);
		body = importexport_ship_body(j->carrier, j->tracking_number, used);
		call(a, STEP_SHIP, "PATCH", "", body, 0, ship_done);
	}
	json_decref(body);
	job_row_free(j);
}

/* ---- cancel -------------------------------------------------------------- */

static void
cancel_done(const struct arm_result *r, void *userdata)
{
	struct azjob *a = userdata;
	struct log_ctx refused = {.job = a->name, .state = "drive_prep"};

	a->call = NULL;
	if (!ok(r)) {
		_cleanup_free_ char *t = xprintf("Azure refused to cancel: %s: %s",
						 r->code ? r->code : "error",
						 r->message ? r->message : "no message");
		(void)db_event_add(a->d->db, a->job_id, "azure", t, daemon_now());
		log_ctx(LOG_WARNING, &refused, "job %s: %s", a->name, t);
		set_phase(a, JOB_DRIVE_PREP, a->cancel_back, NULL);
		azjob_free(a);
		return;
	}
	(void)jobctl_cancel(a->d, a->job_id, a->name, JOB_DRIVE_PREP,
			    "cancelled by the operator, and in Azure");
	azjob_free(a);
}

static void
cancel_get_done(const struct arm_result *r, void *userdata)
{
	struct azjob *a = userdata;
	struct azure_status st = {0};
	json_t *body;

	a->call = NULL;
	if (r->status == 404) { /* never created, or gone: nothing to cancel in Azure */
		(void)jobctl_cancel(a->d, a->job_id, a->name, JOB_DRIVE_PREP,
				    "cancelled by the operator (no Azure job exists)");
		azjob_free(a);
		return;
	}
	if (!ok(r) || azure_status_parse(a->api, r->body, &st) < 0 || !st.cancellable) {
		struct arm_result why = {.code = "NotCancellable",
					 .message = st.status ? st.status : "status unknown"};
		azure_status_done(&st);
		cancel_done(ok(r) ? &why : r, a);
		return;
	}
	azure_status_done(&st);
	if (a->api == JOB_API_DATABOX) {
		body = json_pack("{s:s}", "reason", "Cancelled by the operator with seedctl");
		call(a, STEP_CANCEL, "POST", "/cancel", body, 0, cancel_done);
	} else {
		body = json_pack("{s:{s:b}}", "properties", "cancelRequested", 1);
		call(a, STEP_CANCEL, "PATCH", "", body, 0, cancel_done);
	}
	json_decref(body);
}

static void
cancel_start(struct azjob *a)
{
	call(a, STEP_CANCEL_GET, "GET", "", NULL, 0, cancel_get_done);
}

/* ---- mitigate -------------------------------------------------------------- */

static void poll_job(struct azjob *a);

static void
mitigate_done(const struct arm_result *r, void *userdata)
{
	struct azjob *a = userdata;
	struct log_ctx ctx = {.job = a->name, .state = "shipped"};
	azure_mitigate_fn done = a->mitigate_done;
	void *ud = a->mitigate_ud;
	_cleanup_free_ char *text = a->mitigate_text;

	a->mitigate = NULL;
	a->mitigate_done = NULL;
	a->mitigate_text = NULL;
	if (!ok(r)) {
		_cleanup_free_ char *t = xprintf("Azure refused %s: %s: %s", text,
						 r->code ? r->code : "error",
						 r->message ? r->message : "no message");
		(void)db_event_add(a->d->db, a->job_id, "azure", t, daemon_now());
		log_ctx(LOG_WARNING, &ctx, "job %s: %s", a->name, t);
		done(r->code ? r->code : "AzureError", r->message ? r->message : "no message", ud);
		return;
	}
	(void)db_event_add(a->d->db, a->job_id, "azure", text, daemon_now());
	log_ctx(LOG_NOTICE, &ctx, "job %s: %s; Azure accepted it", a->name, text);
	done(NULL, NULL, ud);
	poll_job(a); /* the answer shows in the job's next status */
}

void
azure_mitigate(struct daemon *d, const struct job_row *j, const char *action, const char *serial,
	       azure_mitigate_fn done, void *userdata)
{
	struct azjob *a = azjob_get(d, j);
	_cleanup_free_ char *jp = job_path(a), *path = NULL;
	json_t *body;

	if (a->mitigate != NULL) {
		done("Busy", "a mitigate call for this job is still waiting for Azure", userdata);
		return;
	}
	a->mitigate_done = done;
	a->mitigate_ud = userdata;
	a->mitigate_text = serial ? xprintf("mitigate sent: %s for drive %s", action, serial)
				  : xprintf("mitigate sent: %s", action);
	path = xprintf("%s/mitigate", jp);
	body = databox_mitigate_body(action, serial);
	a->mitigate = arm_request(d->azure, "POST", path, DATABOX_API_VERSION, body, 0,
				  mitigate_done, a);
	json_decref(body);
}

/* ---- poll ---------------------------------------------------------------- */

static void
record_drives(struct azjob *a, const struct azure_status *st)
{
	for (size_t i = 0; i < st->n_drives; i++) {
		const struct azure_drive_status *ds = &st->drives[i];
		struct drive_row row = {0};
		/* ImportExport: the drive's state is what counts (azure-jobs.c), so it is kept. */
		const char *status = ds->state ? ds->state : ds->copy_status;
		if (db_drive_by_serial(a->d->db, a->job_id, ds->serial, &row) == 0)
			(void)db_drive_set_azure(a->d->db, row.id, status,
						 ds->bytes_processed, ds->total_bytes,
						 ds->files_errored, ds->error_log, ds->verbose_log);
		drive_row_done(&row);
	}
}

static char *
progress_phase(const struct azure_status *st)
{
	int64_t done = 0, total = 0;

	for (size_t i = 0; i < st->n_drives; i++) {
		done += st->drives[i].bytes_processed;
		total += st->drives[i].total_bytes;
	}
	if (st->stage == AZ_COPYING && total > 0)
		return xprintf("%s %" PRId64 "%%", st->status, done * 100 / total);
	return xstrdup(st->status);
}

/* A summary of drives whose copy did not end Completed, for the event log. */
static char *
problems_text(const struct azure_status *st)
{
	char *t = xprintf("Azure finished with problems (status %s%s%s)", st->status,
			  st->error_message ? ": " : "", st->error_message ? st->error_message : "");

	for (size_t i = 0; i < st->n_drives; i++) {
		const struct azure_drive_status *ds = &st->drives[i];
		const char *s = ds->state ? ds->state : ds->copy_status;
		char *n;
		if (s && (strcmp(s, "Completed") == 0 || strcmp(s, "ShippedBack") == 0))
			continue;
		if (ds->state != NULL)
			n = xprintf("%s; drive %s: %s (copy status: %s)", t, ds->serial, ds->state,
				    ds->copy_status ? ds->copy_status : "none");
		else
			n = xprintf("%s; drive %s: %s, %" PRId64 " files errored", t, ds->serial,
				    s ? s : "unknown", ds->files_errored);
		free(t);
		t = n;
	}
	return t;
}

static void
imported(struct azjob *a, const struct azure_status *st)
{
	bool problems = st->stage == AZ_COMPLETED_PROBLEMS;
	_cleanup_free_ char *text = problems ? problems_text(st)
					     : xprintf("Azure imported the drives (status %s)",
						       st->status);

	struct daemon *d = a->d;
	int64_t id = a->job_id;

	(void)jobctl_advance(d, id, a->name, JOB_SHIPPED, JOB_IMPORTED,
			     problems ? JOB_PHASE_IMPORT_PROBLEMS : JOB_PHASE_RECONCILE_PENDING,
			     problems ? LOG_WARNING : LOG_INFO, text);
	azjob_free(a); /* the stage table hands the job to the post-import stage */
}

/*
 * Azure's properties.error and the drives' copyProgress[].error on a job
 * that goes on, with the actions Azure offers [spec
 * examples/JobsGetWaitingForAction.json: status stays DataCopy, a stage is
 * WaitingForCustomerAction, details.actions lists the codes]. NULL if none.
 */
static char *
azure_error_text(const struct azure_status *st)
{
	char *t = NULL, *n;

	if (st->error_code != NULL || st->error_message != NULL)
		t = xprintf("%s%s: %s", st->waiting ? "waiting for customer action: " : "",
			    st->error_code ? st->error_code : "error",
			    st->error_message ? st->error_message : "no message");
	else if (st->waiting)
		t = xstrdup("waiting for customer action");
	if (t != NULL && st->actions != NULL) {
		n = xprintf("%s (actions: %s)", t, st->actions);
		free(t);
		t = n;
	}
	for (size_t i = 0; i < st->n_drives; i++) {
		const struct azure_drive_status *ds = &st->drives[i];
		if (ds->error_code == NULL && ds->error_message == NULL && ds->actions == NULL)
			continue;
		n = xprintf("%s%sdrive %s: %s: %s%s%s%s", t ? t : "", t ? "; " : "", ds->serial,
			    ds->error_code ? ds->error_code : "error",
			    ds->error_message ? ds->error_message : "no message",
			    ds->actions ? " (actions: " : "", ds->actions ? ds->actions : "",
			    ds->actions ? ")" : "");
		free(t);
		t = n;
	}
	return t;
}

/* Record Azure's error in the job (and the journal, once per change), or clear it. */
static void
note_azure_error(struct azjob *a, const struct azure_status *st, const char *text)
{
	struct log_ctx ctx = {.job = a->name, .state = "shipped",
			      .message_id = SEEDD_MESSAGE_AZURE_ACTION_NEEDED};

	if (db_job_set_azure_error(a->d->db, a->job_id, text, daemon_now()) <= 0 || text == NULL)
		return;
	if (st->waiting || st->actions != NULL)
		log_ctx(LOG_WARNING, &ctx,
			"job %s: Azure is waiting for the customer (status %s): %s; answer with "
			"`seedctl job mitigate %s --action ACTION [--serial SERIAL]`",
			a->name, st->status, text, a->name);
	else
		log_ctx(LOG_WARNING, &ctx, "job %s: Azure reports an error (status %s): %s", a->name,
			st->status, text);
}

/* Apply what Azure says about a shipped job. */
static void
apply_status(struct azjob *a, json_t *job)
{
	struct azure_status st;
	_cleanup_free_ char *phase = NULL;

	if (azure_status_parse(a->api, job, &st) < 0) {
		log_warning("job %s: Azure's job resource has no status; will poll again", a->name);
		return;
	}
	(void)db_job_set_azure_state(a->d->db, a->job_id, st.status, daemon_now());
	record_drives(a, &st);
	switch (st.stage) {
	case AZ_COMPLETED:
	case AZ_COMPLETED_PROBLEMS:
		/* A wait for the customer is over; what is left of it is in the problems text. */
		(void)db_job_set_azure_error(a->d->db, a->job_id, NULL, daemon_now());
		imported(a, &st);
		break;
	case AZ_FAILED:
	case AZ_CANCELLED: {
		struct arm_result r = {.code = st.status,
				       .message = st.error_message ? st.error_message
								   : "no reason given"};
		fail_job(a, JOB_SHIPPED, "Azure ended the import", &r);
		break;
	}
	default: {
		_cleanup_free_ char *err = azure_error_text(&st);
		note_azure_error(a, &st, err);
		if (err != NULL)
			phase = xprintf("%s: %s", st.status, err);
		else
			phase = progress_phase(&st);
		set_phase(a, JOB_SHIPPED, JOB_PHASE_AZURE, phase);
		break;
	}
	}
	azure_status_done(&st);
}

/* The phase says a shipped job's polls get no answer; the next answer sets it anew. */
static void
poll_unreachable(struct azjob *a, const struct arm_result *r)
{
	struct job_row *j = job_load(a);
	_cleanup_free_ char *detail = NULL;

	if (j == NULL)
		return;
	detail = xprintf("%s: Resource Manager unreachable (%s); polling again every %u s",
			 j->azure_state ? j->azure_state : "status unknown",
			 r->message ? r->message : "no answer", a->d->config->poll_interval_sec);
	set_phase(a, JOB_SHIPPED, JOB_PHASE_AZURE, detail);
	job_row_free(j);
}

static void
poll_done(const struct arm_result *r, void *userdata)
{
	struct azjob *a = userdata;

	a->call = NULL;
	a->step = STEP_IDLE;
	if (r->status == 404) {
		fail_job(a, JOB_SHIPPED,
			 "the Azure job no longer exists (expired or deleted in Azure)", NULL);
		return;
	}
	if (!ok(r) || r->body == NULL) {
		/* Transient trouble was retried already; try again at the next poll. */
		log_warning("job %s: polling Azure failed, will try again: %s: %s", a->name,
			    r->code ? r->code : "error", r->message ? r->message : "");
		if (unreachable(r))
			poll_unreachable(a, r);
		return;
	}
	apply_status(a, r->body);
}

static void
poll_job(struct azjob *a)
{
	if (a->call != NULL)
		return;
	call(a, STEP_POLL, "GET", a->api == JOB_API_DATABOX ? "?$expand=details" : "", NULL, 0,
	     poll_done);
}

/*
 * One list call for the resource group answers for every shipped DataBox
 * job it names; jobs it does not name are asked for one by one.
 */
static void
list_done(const struct arm_result *r, void *userdata)
{
	struct daemon *d = userdata;
	struct azjob *a, *next;
	json_t *it;
	size_t i;

	d->azure_list = NULL;
	if (!ok(r) || !json_is_array(json_object_get(r->body, "value"))) {
		log_warning("listing Azure jobs failed (%s); asking for each job",
			    r->message ? r->message : "no answer");
		for (a = LIST_FIRST(&d->azjobs); a != NULL; a = next) {
			next = LIST_NEXT(a, link);
			if (a->step == STEP_POLL && a->call == NULL)
				poll_job(a);
		}
		return;
	}
	json_array_foreach(json_object_get(r->body, "value"), i, it) {
		const char *name = json_string_value(json_object_get(it, "name"));
		for (a = LIST_FIRST(&d->azjobs); a != NULL; a = next) {
			next = LIST_NEXT(a, link);
			if (name && a->step == STEP_POLL && a->call == NULL &&
			    strcmp(a->name, name) == 0) {
				a->step = STEP_IDLE;
				apply_status(a, it);
			}
		}
	}
	/* A next page is not followed here: jobs left over are asked for one by one. */
	for (a = LIST_FIRST(&d->azjobs); a != NULL; a = next) {
		next = LIST_NEXT(a, link);
		if (a->step == STEP_POLL && a->call == NULL)
			poll_job(a);
	}
}

void
azure_poll_all(struct daemon *d)
{
	struct job_row **rows = NULL;
	size_t n = 0, databox = 0;
	const struct config *c = d->config;

	if (d->azure == NULL || db_job_list(d->db, &rows, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct azjob *a;
		if (rows[i]->state != JOB_SHIPPED)
			continue;
		a = azjob_get(d, rows[i]);
		if (a->call != NULL)
			continue;
		a->step = STEP_POLL;
		databox += a->api == JOB_API_DATABOX;
	}
	job_rows_free(rows, n);
	if (databox > 1 && d->azure_list == NULL) {
		_cleanup_free_ char *path = xprintf(
			"/subscriptions/%s/resourceGroups/%s/providers/Microsoft.DataBox/jobs",
			c->subscription_id, c->resource_group);
		d->azure_list = arm_request(d->azure, "GET", path, DATABOX_API_VERSION, NULL, 0,
					    list_done, d);
		return;
	}
	struct azjob *a, *next;
	for (a = LIST_FIRST(&d->azjobs); a != NULL; a = next) {
		next = LIST_NEXT(a, link);
		if (a->step == STEP_POLL && a->call == NULL)
			poll_job(a);
	}
}

/* ---- deadlines ------------------------------------------------------------ */

static void
warn_deadline(struct daemon *d, const struct job_row *j, int64_t now)
{
	static const int thresholds[] = {1, 3, 7};
	int64_t left = j->ship_deadline - now;
	int days = (int)((left + DAY - 1) / DAY);
	struct log_ctx ctx = {.job = j->name, .state = job_state_to_string(j->state),
			      .message_id = SEEDD_MESSAGE_DEADLINE_NEAR};
	char when[32];

	for (size_t i = 0; i < ELEMENTSOF(thresholds); i++) {
		int th = thresholds[i];
		if (days > th || (j->deadline_warned != 0 && j->deadline_warned <= th))
			continue;
		format_iso8601(j->ship_deadline, when);
		_cleanup_free_ char *text = xprintf(
		    "job %s: the tracking number is due in %d day%s (by %s), or Azure deletes the "
		    "job; ship with `seedctl job ship %s --carrier C --tracking T`",
		    j->name, days < 0 ? 0 : days, days == 1 ? "" : "s", when, j->name);
		log_ctx(LOG_WARNING, &ctx, "%s", text);
		alert_emit(d, ALERT_DEADLINE_NEAR, j->name, ctx.message_id, text);
		(void)db_job_set_warned(d->db, j->id, th, j->receive_warned);
		return;
	}
}

static void
warn_receive(struct daemon *d, const struct job_row *j, int64_t now)
{
	int64_t limit = (int64_t)d->config->receive_warn_days * DAY;
	struct log_ctx ctx = {.job = j->name, .state = "shipped",
			      .message_id = SEEDD_MESSAGE_DEADLINE_NEAR};

	if (j->receive_warned || j->shipped_at == 0 || now - j->shipped_at < limit)
		return;
	if (j->azure_state != NULL && strcmp(j->azure_state, "ShippedToAzureDC") != 0 &&
	    strcmp(j->azure_state, "Shipping") != 0)
		return; /* received already */
	log_ctx(LOG_WARNING, &ctx,
		"job %s: the drives were shipped %" PRId64 " days ago and Azure has not received "
		"them yet (status %s); check tracking %s with %s",
		j->name, (now - j->shipped_at) / DAY, j->azure_state ? j->azure_state : "unknown",
		j->tracking_number ? j->tracking_number : "?", j->carrier ? j->carrier : "the carrier");
	(void)db_job_set_warned(d->db, j->id, j->deadline_warned, true);
}

void
azure_check_deadlines(struct daemon *d)
{
	struct job_row **rows = NULL;
	size_t n = 0;
	int64_t now = daemon_now();

	if (db_job_list(d->db, &rows, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		const struct job_row *j = rows[i];
		if (j->state == JOB_DRIVE_PREP && j->azure_created > 0 && j->tracking_number == NULL &&
		    j->ship_deadline > 0)
			warn_deadline(d, j, now);
		else if (j->state == JOB_SHIPPED)
			warn_receive(d, j, now);
	}
	job_rows_free(rows, n);
}

/* ---- entry points --------------------------------------------------------- */

static void
poll_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	azure_poll_all(arg);
}

static void
deadline_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	azure_check_deadlines(arg);
}

int
azure_stage_start(struct daemon *d, char **ret_err)
{
	struct timeval poll = {(time_t)d->config->poll_interval_sec, 0};
	struct timeval hour = {DEADLINE_CHECK_SEC, 0};

	if (!config_azure_ready(d->config))
		return 0;
	d->azure = azure_new(d->base, d->config, ret_err);
	if (d->azure == NULL)
		return -EINVAL;
	azure_set_lro_poll_ms(d->azure, (long)d->config->operation_poll_sec * 1000);
	{
		_cleanup_free_ char *berr = NULL;
		d->blob = blob_client_new(azure_http(d->azure), d->azure, d->config, &berr);
		if (d->blob == NULL)
			log_warning("no storage account: %s; jobs will wait after Azure's import",
				    berr ? berr : "incomplete [Storage]");
	}
	d->ev_poll = event_new(d->base, -1, EV_PERSIST, poll_timer_cb, d);
	event_add(d->ev_poll, &poll);
	d->ev_deadline = event_new(d->base, -1, EV_PERSIST, deadline_timer_cb, d);
	event_add(d->ev_deadline, &hour);
	azure_check_deadlines(d);
	return 0;
}

void
azure_stage_stop(struct daemon *d)
{
	d->blob = blob_client_free(d->blob);
	while (!LIST_EMPTY(&d->azjobs))
		azjob_free(LIST_FIRST(&d->azjobs));
	arm_cancel(d->azure_list);
	d->azure_list = NULL;
	if (d->ev_poll)
		event_free(d->ev_poll);
	if (d->ev_deadline)
		event_free(d->ev_deadline);
	d->ev_poll = d->ev_deadline = NULL;
	d->azure = azure_free(d->azure);
}

/*
 * After a reload every Azure setting takes effect: the clients are made
 * anew and each job's Azure or storage step starts again where the store
 * says. Every such step is idempotent (a job is looked up before it is
 * created or shipped), so work in flight is simply asked for again.
 */
/*
 * Pick up the Azure work of a job where its state and phase say: create,
 * ship, cancel, or poll. Jobs with nothing to do are left alone.
 */
void
azure_resume(struct daemon *d, const struct job_row *j)
{
	struct azjob *a;
	enum job_phase ph = job_phase_from_text(j->phase);

	if (d->azure == NULL)
		return;
	if (j->state == JOB_SHIPPED) {
		a = azjob_get(d, j);
		if (!busy(a))
			poll_job(a);
		return;
	}
	if (j->state != JOB_DRIVE_PREP)
		return;
	if (ph == JOB_PHASE_AWAITING_AZURE || ph == JOB_PHASE_CREATING_AZURE_JOB) {
		a = azjob_get(d, j);
		if (!busy(a))
			create_start(a);
	} else if (ph == JOB_PHASE_SHIPPING) {
		a = azjob_get(d, j);
		if (!busy(a))
			ship_start(a);
	} else if (ph == JOB_PHASE_CANCELLING) {
		a = azjob_get(d, j);
		if (!busy(a))
			cancel_start(a);
	}
}

/* CancelJob for a job known to Azure: ask Azure first (async); the reply shows phase cancelling. */
void
azure_cancel(struct daemon *d, const struct job_row *j)
{
	struct azjob *a = azjob_get(d, j);

	arm_cancel(a->call);
	a->call = NULL;
	if (a->timer != NULL)
		evtimer_del(a->timer);
	if (a->again != NULL)
		evtimer_del(a->again);
	a->cancel_back = job_phase_from_text(j->phase);
	if (a->cancel_back < 0 || a->cancel_back == JOB_PHASE_CANCELLING)
		a->cancel_back = JOB_PHASE_AWAITING_TRACKING;
	(void)jobctl_phase(d, j->id, JOB_DRIVE_PREP, JOB_PHASE_CANCELLING, NULL);
	cancel_start(a);
}

void
azure_forget(struct daemon *d, int64_t job_id)
{
	struct azjob *a = azjob_find(d, job_id);

	if (a != NULL)
		azjob_free(a);
}
