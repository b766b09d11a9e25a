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
#include "plan.h"
#include "server.h"
#include "stage.h"
#include "util.h"

#define PLAN_LIST_MAX 1000   /* files listed in a PlanJob reply */
#define PLAN_INVALID_MAX 100 /* invalid names listed */
#define PLACE_BATCH 1000     /* placements per transaction, one transaction per loop turn */

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

/*
 * AddDrive probes the drive (mountinfo, udev, the boot sector, a walk of what
 * the job already has there) and writes its marker on a thread of its own, so
 * a slow disk never stalls the loop; the loop then records it and answers.
 */
struct probe {
	LIST_ENTRY(probe) link;
	struct worker_thread w;
	struct daemon *d;
	struct conn_ref *ref;
	struct worker_queue *queue;
	int64_t job_id;
	char *job_name, *path, *serial, *key, *key_file, *bitlocker_device;
	struct drive_attach_args args;
	int64_t rekey_drive_id; /* > 0: the drive is attached; only check and store the key */
	/* Results. */
	int r;
	char *err;
	struct drive_attach at;
	char uuid[DRIVE_UUID_LEN + 1];
	unsigned direct; /* COPY_DIRECT_* the drive takes */
};

struct probe_msg {
	struct worker_msg m;
	struct probe *pr;
};

static void
probe_free(struct probe *pr)
{
	worker_thread_stop(&pr->w);
	LIST_REMOVE(pr, link);
	conn_ref_free(pr->ref);
	drive_attach_done(&pr->at);
	if (pr->key != NULL) {
		explicit_bzero(pr->key, strlen(pr->key));
		free(pr->key);
	}
	free(pr->job_name);
	free(pr->path);
	free(pr->serial);
	free(pr->key_file);
	free(pr->bitlocker_device);
	free(pr->err);
	free(pr);
}

static void
probe_msg_free(struct worker_msg *m)
{
	free(m);
}

/*
 * Whether the drive takes O_DIRECT, with a test file of seedd's own (DESIGN
 * §3a: FUSE drives may refuse it). A drive that fails even buffered I/O is
 * refused.
 */
static int
probe_direct(struct probe *pr, int root_fd)
{
	char detail[COPY_DETAIL_MAX];
	int r = copy_direct_probe(root_fd, &pr->direct, detail);

	if (r < 0)
		xasprintf(&pr->err, "%s on %s failed: %s%s", detail, pr->at.probe.mount_point,
			  strerror(-r), drive_write_hint(r));
	return r;
}

static void *
probe_thread(void *arg)
{
	struct probe *pr = arg;
	struct probe_msg *pm = xcalloc(1, sizeof(*pm));
	int fd;

	atomic_store(&pr->w.busy, true);
	if (pr->rekey_drive_id > 0) {
		/* The key of an attached drive, against the volume recorded for it. */
		pr->at.probe.mount_point = xstrdup(pr->path);
		pr->r = drive_bitlocker_check(&pr->args, &pr->at, &pr->err);
	} else if ((pr->r = drive_attach_check(pr->path, &pr->args, &pr->at, &pr->err)) == 0) {
		fd = open(pr->at.probe.mount_point, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		pr->r = fd < 0 ? -errno : probe_direct(pr, fd);
		if (pr->r == 0 &&
		    (pr->r = drive_marker_write(fd, pr->job_name, pr->at.serial, pr->uuid)) < 0)
			xasprintf(&pr->err, "cannot write seedd's marker on %s: %s",
				  pr->at.probe.mount_point, strerror(-pr->r));
		if (pr->r < 0 && pr->err == NULL)
			xasprintf(&pr->err, "cannot open %s: %s", pr->at.probe.mount_point,
				  strerror(-pr->r));
		if (fd >= 0)
			close(fd);
	}
	atomic_store(&pr->w.busy, false);
	pm->m.kind = MSG_DRIVE_PROBED;
	pm->m.free_fn = probe_msg_free;
	pm->pr = pr;
	worker_queue_push(pr->queue, &pm->m);
	return NULL;
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
rekey_record(struct probe *pr, struct call *call)
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
probe_record(struct probe *pr, struct call *call)
{
	struct drive_attach *at = &pr->at;
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

void
probe_handle_msg(struct daemon *d, struct worker_msg *m)
{
	struct probe *pr = ((struct probe_msg *)m)->pr;
	/* A client that went away gets no reply; the drive is recorded all the same. */
	struct call call = {.d = d, .method = "io.seedd.AddDrive", .conn = conn_ref_get(pr->ref)};

	worker_thread_stop(&pr->w);
	if (pr->rekey_drive_id > 0)
		rekey_record(pr, &call);
	else
		probe_record(pr, &call);
	probe_free(pr);
}

/*
 * Shutdown: wait for the probes (each ends by queueing its result, which the
 * final drain of the worker queue records and frees).
 */
void
probe_stop_all(struct daemon *d)
{
	struct probe *pr;

	LIST_FOREACH(pr, &d->probes, link)
		worker_thread_stop(&pr->w);
}

/* A probe of the call's drive with its parameters; not started. */
static struct probe *
probe_new(struct call *call, const struct job_row *j, const char *path)
{
	struct probe *pr = xcalloc(1, sizeof(*pr));
	const char *opt;

	pr->d = call->d;
	pr->queue = call->d->queue;
	pr->job_id = j->id;
	pr->job_name = xstrdup(j->name);
	pr->path = xstrdup(path);
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
	pr->ref = conn_ref_new(call->conn);
	LIST_INSERT_HEAD(&call->d->probes, pr, link);
	return pr;
}

static void
probe_start(struct call *call, struct probe *pr)
{
	if (worker_thread_start(&pr->w, probe_thread, pr) < 0) {
		probe_free(pr);
		reply_internal(call, "cannot start a thread to probe the drive");
	}
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
		pr = probe_new(call, j, row.path);
		pr->rekey_drive_id = row.id;
		free(pr->bitlocker_device);
		pr->bitlocker_device = xstrdup(row.bitlocker_device);
		pr->args.bitlocker_device = pr->bitlocker_device;
		probe_start(call, pr);
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
	probe_start(call, probe_new(call, j, path));
out:
	job_row_free(j);
}

/* ---- planning ----------------------------------------------------------- */

struct plan_input {
	atomic_bool *cancel; /* a worker's: checked between steps */
	struct plan_file *files;
	size_t n, cap;
	struct plan_drive drives[DRIVES_PER_JOB_MAX];
	struct drive_row *rows;
	size_t nd;
};

static int
plan_gather_cb(int64_t id, int64_t size, void *userdata)
{
	struct plan_input *in = userdata;

	if (in->n == in->cap) {
		in->cap = in->cap ? in->cap * 2 : 4096;
		in->files = xreallocarray(in->files, in->cap, sizeof(*in->files));
	}
	in->files[in->n++] = (struct plan_file){.id = id, .size = (uint64_t)size};
	return 0;
}

static void
plan_input_done(struct plan_input *in)
{
	free(in->files);
	drive_rows_free(in->rows, in->nd);
	*in = (struct plan_input){0};
}

/* Every plannable file and every drive's room (capacity less what is verified there). */
static int
plan_gather(struct db *db, int64_t job_id, struct plan_input *in)
{
	int r;

	if ((r = db_files_foreach_plannable(db, job_id, plan_gather_cb, in)) < 0)
		return r;
	if (in->cancel != NULL && atomic_load(in->cancel))
		return -ECANCELED;
	if ((r = db_drive_list(db, job_id, &in->rows, &in->nd)) < 0)
		return r;
	for (size_t i = 0; i < in->nd; i++) {
		int64_t room = in->rows[i].capacity - in->rows[i].used_bytes;
		in->drives[i] = (struct plan_drive){.id = in->rows[i].id,
						    .free = room > 0 ? (uint64_t)room : 0};
	}
	return 0;
}

static int
cmp_by_id(const void *a, const void *b, void *arg)
{
	const struct plan_file *f = arg;
	int64_t x = f[*(const size_t *)a].id, y = f[*(const size_t *)b].id;

	return x < y ? -1 : x > y;
}

/* Index of file id in in->files via order (indices sorted by id), or -1. */
static ssize_t
plan_index_of(const struct plan_input *in, const size_t *order, int64_t id)
{
	size_t lo = 0, hi = in->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int64_t v = in->files[order[mid]].id;
		if (v == id)
			return (ssize_t)order[mid];
		if (v < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static const char *
drive_serial_of(const struct plan_input *in, int32_t idx)
{
	return idx >= 0 ? in->rows[idx].serial : NULL;
}

/* The first PLAN_LIST_MAX plannable files in id order, with their drive. */
static json_t *
plan_files_json(struct db *db, int64_t job_id, const struct plan_input *in,
		const struct plan *plan)
{
	size_t *order = xcalloc(in->n + 1, sizeof(*order));
	json_t *a = json_array();
	int64_t after = 0;

	for (size_t i = 0; i < in->n; i++)
		order[i] = i;
	qsort_r(order, in->n, sizeof(*order), cmp_by_id, in->files);
	while (json_array_size(a) < PLAN_LIST_MAX) {
		struct file_row *rows = NULL;
		size_t n = 0;
		if (db_files_page(db, job_id, NULL, 0, after, 256, &rows, &n) < 0 || n == 0) {
			file_rows_free(rows, n);
			break;
		}
		for (size_t i = 0; i < n && json_array_size(a) < PLAN_LIST_MAX; i++) {
			ssize_t k = plan_index_of(in, order, rows[i].id);
			after = rows[i].id;
			if (k < 0)
				continue;
			const char *serial = drive_serial_of(in, plan->file_drive[k]);
			json_array_append_new(a, json_pack("{s:o,s:I,s:o}", "path",
							   json_text(rows[i].rel_path), "size",
							   (json_int_t)rows[i].size, "drive",
							   serial ? json_string(serial) : json_null()));
		}
		file_rows_free(rows, n);
	}
	free(order);
	return a;
}

static json_t *
plan_invalid_json(struct db *db, int64_t job_id)
{
	json_t *a = json_array();
	const char *states[] = {"invalid", "skipped"};

	for (size_t s = 0; s < ELEMENTSOF(states); s++) {
		struct file_row *rows = NULL;
		size_t n = 0;
		if (db_files_page(db, job_id, states[s], 0, 0, PLAN_INVALID_MAX, &rows, &n) < 0)
			continue;
		for (size_t i = 0; i < n; i++) {
			_cleanup_free_ char *t = xprintf("%s: %s", rows[i].rel_path,
							 rows[i].reason ? rows[i].reason : states[s]);
			json_array_append_new(a, json_text(t));
		}
		file_rows_free(rows, n);
	}
	return a;
}

static json_t *
plan_drives_json(const struct plan_input *in, const struct plan *plan)
{
	json_t *a = json_array();

	for (size_t i = 0; i < in->nd; i++)
		json_array_append_new(a, json_pack("{s:s,s:I,s:I,s:I}", "serial", in->rows[i].serial,
						   "room", (json_int_t)in->drives[i].free, "files",
						   (json_int_t)plan->use[i].files, "bytes",
						   (json_int_t)plan->use[i].bytes));
	return a;
}

static int
plan_run(struct db *db, int64_t job_id, struct plan_input *in, struct plan *plan)
{
	int r;

	if ((r = plan_gather(db, job_id, in)) < 0)
		return r;
	/* With no drive attached, size the estimate for drives like the largest file. */
	return plan_compute(in->files, in->n, in->drives, in->nd, NULL, in->nd ? 0 : UINT64_C(1) << 40,
			    plan);
}

static bool
plannable(const struct job_row *j)
{
	return j->state == JOB_STAGING || j->state == JOB_DRIVE_PREP;
}

/* The PlanJob reply's "plan" object, from a read connection. */
static json_t *
plan_json(struct db *db, int64_t job_id, atomic_bool *cancel, int *ret)
{
	struct plan_input in = {.cancel = cancel};
	struct plan plan = {0};
	json_t *o = NULL;

	if ((*ret = plan_run(db, job_id, &in, &plan)) == 0)
		o = json_pack("{s:o,s:I,s:I,s:I,s:o,s:o,s:I,s:b}", "files",
			      plan_files_json(db, job_id, &in, &plan), "unplacedFiles",
			      (json_int_t)plan.unplaced_files, "unplacedBytes",
			      (json_int_t)plan.unplaced_bytes, "drivesNeeded",
			      (json_int_t)plan.drives_needed, "invalidNames",
			      plan_invalid_json(db, job_id), "drives", plan_drives_json(&in, &plan),
			      "totalFiles", (json_int_t)in.n, "truncated", in.n > PLAN_LIST_MAX);
	plan_done(&plan);
	plan_input_done(&in);
	return o;
}

/*
 * PlanJob and PrepareJob plan on a thread of their own with its own
 * read-only connection (a plan walks and sorts every file of the job); the
 * loop only checks the job, starts the thread and sends the reply. PlanJob
 * is a heavy call, one per uid at a time (server_heavy_queue()). PrepareJob
 * then records the plan on the loop's write connection, PLACE_BATCH
 * placements per transaction and per loop turn, and enters drive_prep in
 * one transaction of its own; a crash in between leaves a job in staging
 * that plans again (placements are rewritten), as before.
 */
struct planner {
	LIST_ENTRY(planner) link;
	struct worker_thread w;
	struct daemon *d;
	struct worker_queue *queue;
	struct conn_ref *ref; /* the reply is dropped if the connection is gone */
	uid_t uid;
	int64_t job_id;
	char *job_name;
	char *db_path;
	bool prepare; /* PrepareJob: record the plan, then start drive prep */
	/* Results. */
	json_t *plan; /* PlanJob's reply; NULL: failed */
	int r;
	char *err;
	/* PrepareJob: the plan, recorded a batch per loop turn. */
	struct plan_input in;
	struct plan p;
	size_t recorded;
	struct event *ev_record;
};

struct planner_msg {
	struct worker_msg m;
	struct planner *pl;
};

static void prepare_planned(struct planner *pl, struct call *call);

static void
planner_msg_free(struct worker_msg *m)
{
	free(m);
}

static void
planner_free(struct planner *pl)
{
	worker_thread_stop(&pl->w);
	LIST_REMOVE(pl, link);
	conn_ref_free(pl->ref);
	json_decref(pl->plan);
	plan_done(&pl->p);
	plan_input_done(&pl->in);
	if (pl->ev_record != NULL)
		event_free(pl->ev_record);
	free(pl->job_name);
	free(pl->db_path);
	free(pl->err);
	free(pl);
}

static void *
planner_thread(void *arg)
{
	struct planner *pl = arg;
	struct planner_msg *pm = xcalloc(1, sizeof(*pm));
	struct db *ro = NULL;

	atomic_store(&pl->w.busy, true);
	worker_thread_beat(&pl->w);
	if ((pl->r = db_open_readonly(pl->db_path, &ro, &pl->err)) < 0)
		;
	else if (pl->prepare) {
		pl->in.cancel = &pl->w.cancel;
		if ((pl->r = plan_run(ro, pl->job_id, &pl->in, &pl->p)) < 0)
			xasprintf(&pl->err, "%s", pl->r == -EIO ? db_errmsg(ro) : strerror(-pl->r));
	} else if ((pl->plan = plan_json(ro, pl->job_id, &pl->w.cancel, &pl->r)) == NULL)
		xasprintf(&pl->err, "%s", pl->r == -EIO ? db_errmsg(ro) : strerror(-pl->r));
	db_close(ro);
	atomic_store(&pl->w.busy, false);
	pm->m.kind = MSG_PLAN_DONE;
	pm->m.free_fn = planner_msg_free;
	pm->pl = pl;
	worker_queue_push(pl->queue, &pm->m);
	return NULL;
}

void
planner_handle_msg(struct daemon *d, struct worker_msg *m)
{
	struct planner *pl = ((struct planner_msg *)m)->pl;
	struct call call = {.d = d, .method = "io.seedd.PlanJob", .conn = conn_ref_get(pl->ref)};

	worker_thread_stop(&pl->w);
	if (pl->prepare) {
		prepare_planned(pl, &call);
		return;
	}
	if (pl->plan != NULL) {
		conn_reply(call.conn, json_pack("{s:O}", "plan", pl->plan), false);
	} else {
		log_error("job %s: planning failed: %s", pl->job_name, pl->err ? pl->err : "?");
		reply_internal(&call, "planning failed; see the journal");
	}
	server_heavy_done(d->server, pl->uid);
	planner_free(pl); /* resumes the connection */
}

/*
 * Shutdown: wait for the planners and drop a PrepareJob recording its plan
 * (the job stays in staging and plans again); PlanJob results are drained.
 */
void
planner_stop_all(struct daemon *d)
{
	struct planner *pl, *next;

	for (pl = LIST_FIRST(&d->planners); pl != NULL; pl = next) {
		next = LIST_NEXT(pl, link);
		worker_thread_stop(&pl->w);
		if (pl->ev_record != NULL)
			planner_free(pl);
	}
}

/* Start planning job j on a thread for this call; 0, or -1 after an error reply. */
static int
planner_start(struct call *call, const struct job_row *j, bool prepare)
{
	struct planner *pl = xcalloc(1, sizeof(*pl));

	pl->d = call->d;
	pl->queue = call->d->queue;
	pl->uid = call->conn->uid;
	pl->job_id = j->id;
	pl->job_name = xstrdup(j->name);
	pl->db_path = xprintf("%s/seedd.db", call->d->state_dir);
	pl->prepare = prepare;
	pl->ref = conn_ref_new(call->conn);
	LIST_INSERT_HEAD(&call->d->planners, pl, link);
	if (worker_thread_start(&pl->w, planner_thread, pl) < 0) {
		planner_free(pl);
		reply_internal(call, "cannot start a thread to plan the job");
		return -1;
	}
	return 0;
}

void
method_plan_job(struct call *call)
{
	struct job_row *j;

	if ((j = call_job_in(call, plannable, "only a job in staging or drive_prep has a plan")) ==
	    NULL)
		return;
	if (planner_start(call, j, false) == 0)
		call->held = true;
	job_row_free(j);
}

static bool
preparable(const struct job_row *j)
{
	return j->state == JOB_STAGING && j->phase != NULL && strcmp(j->phase, "indexed") == 0;
}

/* The job entered drive_prep (jobctl logged and told it): start the workers, answer. */
static void
prepare_started(struct planner *pl, struct call *call)
{
	_cleanup_free_ char *err = NULL;
	struct job_row *j = NULL;

	if (db_job_get_by_id(call->d->db, pl->job_id, &j) == 0 && prep_start(call->d, j, &err) < 0)
		(void)jobctl_fail(call->d, pl->job_id, pl->job_name, JOB_DRIVE_PREP, err);
	job_row_free(j);
	reply_job_by_id(call, pl->job_id);
}

/*
 * Record the next PLACE_BATCH placements in one transaction; after the last,
 * enter drive_prep. The job is checked each turn: a job cancelled or
 * changed meanwhile stops the recording.
 */
static void
prepare_record_cb(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval zero = {0, 0};
	struct planner *pl = arg;
	struct call call = {.d = pl->d, .method = "io.seedd.PrepareJob",
			    .conn = conn_ref_get(pl->ref)};
	struct placement batch[PLACE_BATCH];
	_cleanup_free_ char *text = NULL;
	struct job_row *j = NULL;
	size_t n = 0;
	int r;

	if ((r = db_job_get_by_id(call.d->db, pl->job_id, &j)) < 0 || !preparable(j)) {
		reply_invalid_state(&call, pl->job_name, j ? job_state_to_string(j->state) : "gone",
				    "the job changed state meanwhile; try again");
		goto out;
	}
	for (; n < PLACE_BATCH && pl->recorded < pl->in.n; n++, pl->recorded++) {
		int32_t k = pl->p.file_drive[pl->recorded];
		batch[n] = (struct placement){.file_id = pl->in.files[pl->recorded].id,
					      .drive_id = k >= 0 ? pl->in.rows[k].id : 0};
	}
	if ((r = db_files_place(call.d->db, batch, n)) < 0) {
		reply_internal(&call, "recording the plan failed; see the journal");
		goto out;
	}
	if (pl->recorded < pl->in.n) {
		evtimer_add(pl->ev_record, &zero);
		job_row_free(j);
		return;
	}
	text = xprintf("drive prep started: %zu files on %zu drives, %" PRIu64
		       " files wait for a drive", pl->in.n, pl->in.nd, pl->p.unplaced_files);
	r = jobctl_advance(call.d, pl->job_id, pl->job_name, JOB_STAGING, JOB_DRIVE_PREP, "copying",
			   LOG_INFO, text);
	if (r == -ESTALE)
		reply_invalid_state(&call, pl->job_name, job_state_to_string(j->state),
				    "the job changed state meanwhile; try again");
	else if (r < 0)
		reply_internal(&call, "recording the plan failed; see the journal");
	else
		prepare_started(pl, &call);
out:
	job_row_free(j);
	planner_free(pl); /* resumes the connection */
}

/* PrepareJob's plan is computed: record it from the next loop turn on. */
static void
prepare_planned(struct planner *pl, struct call *call)
{
	static const struct timeval zero = {0, 0};

	if (pl->r < 0 || pl->d->stopping) {
		if (pl->r < 0)
			log_error("job %s: planning failed: %s", pl->job_name, pl->err ? pl->err : "?");
		reply_internal(call, "planning failed; see the journal");
	} else if (pl->in.nd == 0)
		reply_invalid_state(call, pl->job_name, "staging",
				    "attach a drive first (seedctl drive add)");
	else {
		pl->ev_record = evtimer_new(pl->d->base, prepare_record_cb, pl);
		if (pl->ev_record == NULL)
			fatalx("evtimer_new failed");
		evtimer_add(pl->ev_record, &zero);
		return;
	}
	planner_free(pl);
}

static bool
preparing(struct daemon *d, int64_t job_id)
{
	struct planner *pl;

	LIST_FOREACH(pl, &d->planners, link)
		if (pl->prepare && pl->job_id == job_id)
			return true;
	return false;
}

void
method_prepare_job(struct call *call)
{
	struct job_row *j;

	if ((j = call_job_in(call, preparable,
			     "drive prep starts from staging once indexing is done")) == NULL)
		return;
	if (preparing(call->d, j->id))
		reply_invalid_state(call, j->name, job_state_to_string(j->state),
				    "a PrepareJob of this job is under way");
	else
		(void)planner_start(call, j, true);
	job_row_free(j);
}
