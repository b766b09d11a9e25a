/*
 * Handlers of the drive-prep methods: AddDrive (probe, checks, marker,
 * record), PlanJob (the dry run) and PrepareJob (place files, enter
 * drive_prep, start the workers). Loop thread, but for AddDrive's probe and
 * PlanJob's planner, which run on threads of their own. The planner works
 * on up to a few million (id, size) pairs held in flat arrays.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitlocker.h"
#include "config.h"
#include "conn.h"
#include "daemon.h"
#include "db.h"
#include "copy.h"
#include "drive.h"
#include "job.h"
#include "job-view.h"
#include "jobctl.h"
#include "log.h"
#include "methods.h"
#include "names.h"
#include "planner.h"
#include "probe.h"
#include "server.h"
#include "stage.h"
#include "stagetab.h"
#include "util.h"


static void
reply_drive_rejected(struct call *call, const char *reason)
{
	conn_error(call->conn, SEEDD_ERR_DRIVE_REJECTED, json_pack("{s:s}", "reason", reason));
}

static struct job_row *
call_job_in(struct call *call, bool (*ok)(const struct job_row *), const char *msg)
{
	const char *name = param_str(call, "name");
	struct job_row *j = NULL;
	int r = db_job_get(call->d->db, name, &j);

	if (r == -ENOENT) {
		reply_job_not_found(call, name);
		return NULL;
	}
	if (r < 0) {
		reply_internal(call, "database error; see the journal");
		return NULL;
	}
	if (!ok(j)) {
		reply_invalid_state(call, j->name, job_state_to_string(j->state), msg);
		return job_row_free(j);
	}
	return j;
}

/* Before shipping; a job that failed before shipping too (its retry uses the drive). */
static bool
takes_drives(const struct job_row *j)
{
	enum job_state s = j->state == JOB_FAILED ? j->failed_state : j->state;

	return s == JOB_STAGING || s == JOB_DRIVE_PREP;
}

static int
count_drives(struct daemon *d, int64_t job_id, size_t *ret)
{
	struct drive_row *rows = NULL;
	int r = db_drive_list(d->db, job_id, &rows, ret);

	drive_rows_free(rows, *ret);
	return r;
}

/* What the O_DIRECT probe found, for the log: "" when the drive takes it both ways. */
static const char *
direct_note(unsigned direct)
{
	switch (direct & COPY_DIRECT_ALL) {
	case COPY_DIRECT_ALL:
		return "";
	case COPY_DIRECT_READ:
		return "; it refuses O_DIRECT writes: buffered writes";
	case COPY_DIRECT_WRITE:
		return "; it refuses O_DIRECT reads: re-reads after dropping the cache";
	default:
		return "; it refuses O_DIRECT: buffered I/O, cache dropped before re-reads";
	}
}

static void
log_drive(const struct job_row *j, const char *serial, const char *path, int64_t capacity,
	  unsigned direct)
{
	struct log_ctx ctx = {.job = j->name, .state = job_state_to_string(j->state),
			      .drive = serial};
	char cap[32];

	format_iec(capacity, cap);
	log_ctx(LOG_INFO, &ctx, "job %s: drive %s at %s attached, %s usable%s", j->name, serial,
		path, cap, direct_note(direct));
}

/* Store (or replace) an attached drive's BitLocker key and answer with the drive. */
static void
store_key(struct call *call, int64_t job_id, int64_t drive_id, const char *key, const char *how)
{
	struct drive_row row = {0};

	if (db_drive_get(call->d->db, drive_id, &row) < 0 ||
	    db_secret_put(call->d->db, job_id, drive_id, "bitlocker-key", key, strlen(key)) < 0)
		reply_internal(call, "storing the key failed; see the journal");
	else {
		_cleanup_free_ char *t = xprintf("drive %s: BitLocker key stored%s", row.serial, how);
		(void)db_event_add(call->d->db, job_id, "drive", t, daemon_now());
		conn_reply(call->conn, json_pack("{s:o}", "drive", drive_json(call->d, job_id, &row)),
			   false);
	}
	drive_row_done(&row);
}

/* A line in the job log and the journal (warning or info) about the drive. */
static void
drive_note(struct daemon *d, const struct job_row *j, const char *serial, int priority,
	   const char *text)
{
	struct log_ctx ctx = {.job = j->name, .state = job_state_to_string(j->state),
			      .drive = serial};
	_cleanup_free_ char *t = xprintf("drive %s: %s", serial, text);

	log_ctx(priority, &ctx, "job %s: %s", j->name, t);
	(void)db_event_add(d->db, j->id, "drive", t, daemon_now());
}

/*
 * What the BitLocker check found: skipped and why, or the volume; a warning
 * for AES-CBC, which Azure's documentation does not clearly say it accepts
 * (it names XTS-AES for Windows 10 and later, AES-128/256 otherwise).
 */
static void
log_bitlocker(struct daemon *d, const struct job_row *j, const char *serial,
	      const struct drive_attach *at)
{
	if (at->bitlocker_note != NULL)
		drive_note(d, j, serial, LOG_INFO, at->bitlocker_note);
	if (at->bitlocker_device != NULL) {
		_cleanup_free_ char *t = xprintf("BitLocker volume %s, GUID %s, %s%s",
						 at->bitlocker_device, at->bitlocker_guid,
						 at->bitlocker_cipher,
						 at->bitlocker_note ? "" : ", recovery password checked");
		drive_note(d, j, serial, LOG_INFO, t);
	}
	if (bitlocker_cipher_is_cbc(at->bitlocker_cipher)) {
		_cleanup_free_ char *t =
		    xprintf("its BitLocker volume uses AES-CBC (%s); Azure's docs are unclear that "
			    "it is accepted: prefer XTS-AES (re-encrypt on Windows)",
			    at->bitlocker_cipher);
		drive_note(d, j, serial, LOG_WARNING, t);
	}
}

/* The key of an attached drive was checked: store it, or refuse it. */
static void
rekey_record(const struct probe *pr, struct call *call)
{
	struct job_row *j = NULL;

	if (pr->r < 0)
		reply_drive_rejected(call, pr->err ? pr->err : strerror(-pr->r));
	else if (db_job_get_by_id(call->d->db, pr->job_id, &j) < 0 || !takes_drives(j))
		reply_invalid_state(call, pr->job_name, j ? job_state_to_string(j->state) : "gone",
				    "the job moved on while the key was checked");
	else
		store_key(call, j->id, pr->rekey_drive_id, pr->key,
			  ", checked against its BitLocker volume");
	job_row_free(j);
}

/* Record the probed drive; answer on the connection if it is still there. */
static void
probe_record(const struct probe *pr, struct call *call)
{
	const struct drive_attach *at = &pr->at;
	struct job_row *j = NULL;
	size_t n = 0;
	int64_t id;
	int r;

	if (pr->r < 0) {
		reply_drive_rejected(call, pr->err ? pr->err : strerror(-pr->r));
		return;
	}
	if (db_job_get_by_id(call->d->db, pr->job_id, &j) < 0 || !takes_drives(j)) {
		reply_invalid_state(call, pr->job_name, j ? job_state_to_string(j->state) : "gone",
				    "the job moved on while the drive was probed");
		goto out;
	}
	if (count_drives(call->d, j->id, &n) < 0 || n >= DRIVES_PER_JOB_MAX) {
		reply_drive_rejected(call, "a job takes at most 10 drives (an Azure limit)");
		goto out;
	}
	r = db_drive_attach(call->d->db, j->id,
			    &(struct drive_new){
				.serial = at->serial,
				.path = at->probe.mount_point,
				.uuid = pr->uuid,
				.capacity = at->capacity,
				.free_bytes = at->probe.free_bytes,
				.direct_io = pr->direct,
				.bitlocker_device = at->bitlocker_device,
				.bitlocker_guid = at->bitlocker_guid,
				.bitlocker_cipher = at->bitlocker_cipher,
				.key = pr->key,
			    },
			    &id);
	if (r < 0) {
		_cleanup_free_ char *m = r == -EEXIST
						 ? xprintf("drive %s is already attached to job %s",
							   at->serial, j->name)
						 : xprintf("recording drive %s failed: %s", at->serial,
							   strerror(-r));
		reply_drive_rejected(call, m);
		goto out;
	}
	log_drive(j, at->serial, at->probe.mount_point, at->capacity, pr->direct);
	{
		_cleanup_free_ char *t = xprintf("drive %s attached at %s%s", at->serial,
						 at->probe.mount_point,
						 pr->key ? " with its BitLocker key" : "");
		(void)db_event_add(call->d->db, j->id, "drive", t, daemon_now());
	}
	log_bitlocker(call->d, j, at->serial, at);
	if (j->state == JOB_DRIVE_PREP)
		prep_drive_added(call->d, j->id);
	{
		struct drive_row row = {0};
		if (db_drive_get(call->d->db, id, &row) == 0)
			conn_reply(call->conn, json_pack("{s:o}", "drive", drive_json(call->d, j->id, &row)),
				   false);
		drive_row_done(&row);
	}
	jobctl_changed(call->d, j->id);
out:
	job_row_free(j);
}

/* The drive is probed: record it (or its key) and answer if the caller is still there. */
static void
probed(struct daemon *d, const struct probe *pr, void *userdata)
{
	struct held_call *h = userdata;
	/* A client that went away gets no reply; the drive is recorded all the same. */
	struct call call = {.d = d, .method = "io.seedd.AddDrive", .conn = conn_ref_get(h->ref)};

	if (pr->rekey_drive_id > 0)
		rekey_record(pr, &call);
	else
		probe_record(pr, &call);
	held_call_done(h);
}

/* A probe of the call's drive with its parameters; not started. */
static struct probe *
probe_for_call(struct call *call, const struct job_row *j, const char *path)
{
	struct probe *pr = probe_new(call->d, j->id, j->name, path);
	const char *opt;

	pr->serial = param_has(call, "serial") ? xstrdup(param_str(call, "serial")) : NULL;
	pr->key = param_has(call, "bitlockerKey") ? xstrdup(param_str(call, "bitlockerKey")) : NULL;
	opt = param_has(call, "bitlockerKeyFile") ? param_str(call, "bitlockerKeyFile") : NULL;
	pr->key_file = opt ? xstrdup(opt) : NULL;
	opt = param_has(call, "bitlockerDevice") ? param_str(call, "bitlockerDevice") : NULL;
	pr->bitlocker_device = opt ? xstrdup(opt) : NULL;
	pr->args = (struct drive_attach_args){
		.job_name = pr->job_name,
		.serial = pr->serial,
		.capacity = param_has(call, "capacity") ? param_int(call, "capacity") : 0,
		.require_ntfs = call->d->config->require_ntfs,
		.allow_directory = pr->serial != NULL, /* directories (tests) name their serial */
		.require_bitlocker = call->d->config->require_bitlocker,
		.bitlocker_device = pr->bitlocker_device,
		.bitlocker_key = pr->key,
		.bitlocker_key_file = pr->key_file,
	};
	return pr;
}

static void
probe_call_start(struct call *call, struct probe *pr)
{
	struct held_call *h = held_call_new(call);

	if (probe_start(pr, probed, h) < 0) {
		held_call_done(h);
		reply_internal(call, "cannot start a thread to probe the drive");
	} else
		call->held = true;
}

/*
 * The drive is attached already and a key is given: store (or replace) its
 * BitLocker key, e.g. when the Azure job could not be created without it,
 * checked on a thread against the volume recorded at attach when there is
 * one. Returns true if it took the call.
 */
static bool
update_key(struct call *call, const struct job_row *j, const char *serial, const char *key)
{
	struct drive_row row = {0};
	struct probe *pr;

	if (db_drive_by_serial(call->d->db, j->id, serial, &row) < 0)
		return false;
	if (row.bitlocker_device == NULL) {
		store_key(call, j->id, row.id, key, " (not checked: no BitLocker volume recorded)");
	} else {
		pr = probe_for_call(call, j, row.path);
		pr->rekey_drive_id = row.id;
		free(pr->bitlocker_device);
		pr->bitlocker_device = xstrdup(row.bitlocker_device);
		pr->args.bitlocker_device = pr->bitlocker_device;
		probe_call_start(call, pr);
	}
	drive_row_done(&row);
	return true;
}

void
method_add_drive(struct call *call)
{
	const char *path = param_str(call, "path");
	const char *key = param_has(call, "bitlockerKey") ? param_str(call, "bitlockerKey") : NULL;
	const char *serial = param_has(call, "serial") ? param_str(call, "serial") : NULL;
	const char *bl_dev = param_has(call, "bitlockerDevice") ? param_str(call, "bitlockerDevice")
								 : NULL;
	struct job_row *j;
	size_t n = 0;

	if ((j = call_job_in(call, takes_drives, "drives can be added only before shipping")) ==
	    NULL)
		return;
	if (key != NULL && !bitlocker_key_valid(key)) {
		reply_drive_rejected(call, "the BitLocker recovery key is not 8 groups of 6 digits, "
					   "each divisible by 11 and below 720896");
		goto out;
	}
	/* Before the drive count: a job with 10 drives still takes a key for one of them. */
	if (serial != NULL && key != NULL && update_key(call, j, serial, key))
		goto out;
	if (count_drives(call->d, j->id, &n) < 0 || n >= DRIVES_PER_JOB_MAX) {
		reply_drive_rejected(call, "a job takes at most 10 drives (an Azure limit)");
		goto out;
	}
	if (path[0] != '/') {
		reply_invalid_argument(call, "path", "%s is not an absolute path", path);
		goto out;
	}
	if (bl_dev != NULL && bl_dev[0] != '/') {
		reply_invalid_argument(call, "bitlockerDevice", "%s is not an absolute path", bl_dev);
		goto out;
	}
	probe_call_start(call, probe_for_call(call, j, path));
out:
	job_row_free(j);
}

/*
 * After a drive left a job in drive_prep: its work starts again. Files that
 * wait once more after drive prep was over (phase awaiting-azure) give the
 * job back to drive prep, which places them on the other drives, or waits
 * in needs-drive, and writes the manifests again.
 */
static void
prep_again(struct daemon *d, const struct job_row *j, const struct drive_held *held)
{
	_cleanup_free_ char *err = NULL;
	int r;

	if ((held->verified_files > 0 || held->planned_files > 0) &&
	    job_phase_from_text(j->phase) == JOB_PHASE_AWAITING_AZURE)
		(void)jobctl_phase(d, j->id, JOB_DRIVE_PREP, JOB_PHASE_COPYING, NULL);
	if ((r = stagetab_resume_job(d->stages, j->id, &err)) < 0) {
		_cleanup_free_ char *why = xprintf("cannot start drive prep again after a drive "
						   "was removed: %s", err ? err : strerror(-r));
		(void)jobctl_fail(d, j->id, j->name, JOB_DRIVE_PREP, why);
	}
}

static void
log_removed(const struct job_row *j, const char *serial, const struct drive_held *h)
{
	struct log_ctx ctx = {.job = j->name, .state = job_state_to_string(j->state),
			      .drive = serial};

	log_ctx(LOG_NOTICE, &ctx,
		"job %s: drive %s removed by the operator; %" PRId64 " verified and %" PRId64
		" planned files wait for a drive again",
		j->name, serial, h->verified_files, h->planned_files);
}

/*
 * RemoveDrive: detach a drive before the Azure job names the job's drives.
 * Its planned files, and its verified ones only with force, go back to
 * waiting for a drive, the drive row and its key leave, all in one
 * transaction (db_drive_remove()). A drive prep under way is stopped
 * around it and started again, so those files are placed as any waiting
 * file is. What seedd wrote on the disk stays there.
 */
void
method_remove_drive(struct call *call)
{
	const char *serial = param_str(call, "serial");
	bool force = param_bool(call, "force");
	struct drive_held held = {0};
	struct drive_row row = {0};
	bool running;
	struct job_row *j;
	int r;

	if ((j = call_job_in(call, takes_drives, "drives can be removed only before shipping")) ==
	    NULL)
		return;
	if (j->azure_job_name != NULL) {
		_cleanup_free_ char *m = xprintf("its Azure job %s names the job's drives already; "
						 "cancel the job to change them",
						 j->azure_job_name);
		reply_invalid_state(call, j->name, job_state_to_string(j->state), m);
		goto out;
	}
	if (planner_preparing(call->d, j->id)) {
		reply_invalid_state(call, j->name, job_state_to_string(j->state),
				    "a PrepareJob of this job is placing files on its drives; try "
				    "again when it answered");
		goto out;
	}
	if (db_drive_by_serial(call->d->db, j->id, serial, &row) < 0) {
		reply_invalid_argument(call, "serial", "job %s has no drive %s", j->name, serial);
		goto out;
	}
	if (row.files > 0 && !force) {
		char b[32];
		format_iec(row.used_bytes, b);
		_cleanup_free_ char *m =
		    xprintf("drive %s holds %" PRId64 " verified files (%s) of job %s; with --force "
			    "they wait for a drive again and are copied to the other drives",
			    serial, row.files, b, j->name);
		reply_drive_rejected(call, m);
		goto out;
	}
	running = j->state == JOB_DRIVE_PREP;
	if (running)
		stagetab_stop_job(call->d->stages, j->id);
	r = db_drive_remove(call->d->db, j->id, row.id, force, daemon_now(), &held);
	if (r == 0)
		log_removed(j, serial, &held);
	if (running) /* what went back to waiting, if anything did */
		prep_again(call->d, j, r == 0 ? &held : &(struct drive_held){0});
	if (r == -ENOTEMPTY)
		reply_drive_rejected(call, "the drive received verified files meanwhile; give "
					   "--force to remove it all the same");
	else if (r < 0)
		reply_internal(call, "removing the drive failed; see the journal");
	else
		reply_job_by_id(call, j->id);
	if (r < 0 && r != -ENOTEMPTY)
		log_error("job %s: removing drive %s: %s", j->name, serial,
			  db_errmsg(call->d->db));
	jobctl_changed(call->d, j->id);
out:
	drive_row_done(&row);
	job_row_free(j);
}

/* A failed job has the read-only plan of the step it stopped in (issue 12). */
static bool
plannable(const struct job_row *j)
{
	enum job_state s = j->state == JOB_FAILED ? j->failed_state : j->state;

	return s == JOB_STAGING || s == JOB_DRIVE_PREP;
}

static void
planned(enum planner_outcome outcome, json_t *plan, const char *text, void *userdata)
{
	held_call_finish(userdata, "plan", outcome == PLANNER_OK ? plan : NULL, text);
}

void
method_plan_job(struct call *call)
{
	struct job_row *j;

	if ((j = call_job_in(call, plannable,
			     "only a job in staging or drive_prep, or failed in one of them, has a "
			     "plan")) == NULL)
		return;
	if (planner_start(call->d, j, false, planned, held_call_new(call)) < 0)
		reply_internal(call, "cannot start a thread to plan the job");
	else
		call->held = true;
	job_row_free(j);
}

/* PrepareJob's answer: the job in drive_prep, or why not. */
struct prepare_call {
	struct held_call *h;
	struct daemon *d;
	int64_t job_id;
	char *job_name;
};

static void
prepared(enum planner_outcome outcome, json_t *plan, const char *text, void *userdata)
{
	struct prepare_call *pc = userdata;
	struct call call = {.d = pc->d, .method = "io.seedd.PrepareJob",
			    .conn = conn_ref_get(pc->h->ref)};

	if (call.conn == NULL)
		; /* the caller left; the job went on all the same */
	else if (outcome == PLANNER_OK)
		reply_job_by_id(&call, pc->job_id);
	else if (outcome == PLANNER_INVALID_STATE)
		reply_invalid_state(&call, pc->job_name, text,
				    "the job changed state meanwhile; try again");
	else if (outcome == PLANNER_NO_DRIVE)
		reply_invalid_state(&call, pc->job_name, text,
				    "attach a drive first (seedctl drive add)");
	else
		reply_internal(&call, text);
	held_call_done(pc->h);
	free(pc->job_name);
	free(pc);
}

void
method_prepare_job(struct call *call)
{
	struct job_row *j;

	if ((j = call_job_in(call, planner_preparable,
			     "drive prep starts from staging once indexing is done")) == NULL)
		return;
	if (planner_preparing(call->d, j->id)) {
		reply_invalid_state(call, j->name, job_state_to_string(j->state),
				    "a PrepareJob of this job is under way");
		goto out;
	}
	struct prepare_call *pc = xcalloc(1, sizeof(*pc));
	pc->h = held_call_new(call);
	pc->d = call->d;
	pc->job_id = j->id;
	pc->job_name = xstrdup(j->name);
	if (planner_start(call->d, j, true, prepared, pc) < 0) {
		held_call_done(pc->h);
		free(pc->job_name);
		free(pc);
		reply_internal(call, "cannot start a thread to plan the job");
	} else
		call->held = true;
out:
	job_row_free(j);
}
