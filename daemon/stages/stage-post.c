/*
 * After Azure's import, on the loop: reconcile what the import container
 * holds against seedd's own record of every file (the same data the
 * manifests were written from), using Azure's copy logs for the reasons.
 * A blob with a Content-MD5 (from the properties file seedd wrote, README
 * §1.2, §5) is checked by its length and that MD5; a blob without one by
 * what Azure does record: its length, its verbose-log entry (the service
 * checked every block against the manifest's Hash, README §0 step 5) and its
 * committed block list (Get Block List), whose ids encode each block's MD5
 * ("MD5/" + base64) and must be the manifest's, in order, with their sizes;
 * seedd then sets the verified Content-MD5 on it (Set Blob Properties): Copy
 * Blob copies a blob's properties, so the vault copy is checked by length and
 * Content-MD5 like any other. (Whether Copy Blob keeps the committed block
 * list the docs we found do not say; Azurite keeps it, tests/unit/
 * test-azure-blob.c; seedd does not rely on it.) Each file records how it was
 * verified (files.import_method). A drive whose log ends in a drive-level
 * status (BitLockerKeyInvalid, ManifestCorrupted, ...) imported nothing: it
 * is named in a journal event, the drive's row and the report, and its files
 * join the repair list. Then re-upload from staging whatever is missing,
 * corrupt, renamed or failed in Azure's log (the repair list), check it
 * again; copy every blob into the vault container and verify each copy;
 * then clean up: delete the job's import blobs and the staging
 * files it indexed (only unchanged ones, never through a symlink), and write
 * the audit report. Nothing is deleted before its vault copy is verified.
 * Each step is idempotent and its progress is in the store, so a restart
 * resumes it. Blocks to upload and staging files to delete are read and
 * removed on worker threads (stage-post-io.c). Loop thread.
 */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "azure-arm.h"
#include "azure-blob.h"
#include "catalog-ids.h"
#include "config.h"
#include "daemon.h"
#include "db.h"
#include "jobctl.h"
#include "drivelog.h"
#include "log.h"
#include "manifest.h"
#include "report.h"
#include "stage-post.h"
#include "stage.h"
#include "stagetab.h"
#include "util.h"

#define LIST_PAGE 5000
#define LOG_MAX (64u << 20)
#define COPIES_IN_FLIGHT 8
#define DELETES_IN_FLIGHT 8
#define COPY_POLL_SEC 2
#define COPY_POLLS_MAX 43200 /* a day of polls for one server-side copy */
#define EXAMPLES 20
#define BLOCK_CHECKS_IN_FLIGHT 16
/* The import verification methods (files.import_method). */
#define BY_MD5 "content-md5"
#define BY_BLOCKS "block-list"
#define BY_BLOCKS_NO_LOG "block-list-no-verbose-log"
#define BY_REPAIR "repaired-upload"
#define BLOCKS_PENDING "no Content-MD5; its block list is checked next"
/*
 * Content-Type set with the verified Content-MD5. Set Blob Properties clears
 * what it is not given; a blob without Content-MD5 had no properties file
 * applied, so the import gave it no other x-ms-blob-content-* [INFERRED], and
 * Put Block List without x-ms-blob-content-type leaves this default [DOC Put
 * Block List: "the default content type is application/octet-stream"].
 */
#define IMPORTED_CONTENT_TYPE "application/octet-stream"

static void post_next(struct post *p);
static void post_drop(struct post *p);
static void repair_free(struct post *p);

/* ---- bookkeeping -------------------------------------------------------- */

static struct post *
post_find(struct daemon *d, int64_t job_id)
{
	struct post *p;

	LIST_FOREACH(p, &d->posts, link)
		if (p->job_id == job_id && !p->stopping)
			return p;
	return NULL;
}

static struct post *
stopping_find(struct daemon *d, int64_t job_id)
{
	struct post *p;

	LIST_FOREACH(p, &d->posts, link)
		if (p->job_id == job_id && p->stopping)
			return p;
	return NULL;
}

/* Joins the threads: immediate once their last messages arrived (post_reap), else shutdown only. */
void
post_free(struct post *p)
{
	struct post_op *op;

	LIST_REMOVE(p, link);
	while ((op = LIST_FIRST(&p->ops)) != NULL)
		post_op_free(op);
	repair_free(p);
	post_io_stop(p);
	if (p->timer)
		event_free(p->timer);
	for (size_t i = 0; i < p->n_logs; i++)
		drivelog_done(&p->logs[i]);
	for (size_t i = 0; i < p->n_failed; i++) {
		free(p->failed[i].serial);
		free(p->failed[i].status);
	}
	for (size_t i = 0; i < p->n_renamed; i++)
		free(p->renamed[i]);
	free(p->renamed);
	free(p->marker);
	free(p->name);
	free(p->container);
	free(p->staging_path);
	free(p);
}

struct post_op *
post_op_new(struct post *p, int64_t file_id)
{
	struct post_op *op = xcalloc(1, sizeof(*op));

	op->p = p;
	op->file_id = file_id;
	LIST_INSERT_HEAD(&p->ops, op, link);
	p->inflight++;
	return op;
}

void
post_op_free(struct post_op *op)
{
	LIST_REMOVE(op, link);
	op->p->inflight--;
	blob_cancel(op->call);
	if (op->timer)
		event_free(op->timer);
	free(op->name);
	free(op);
}

static void
post_fail(struct post *p, const char *what, const struct blob_result *r)
{
	_cleanup_free_ char *err = NULL;

	if (r != NULL)
		err = xprintf("%s: %s: %s", what, r->code ? r->code : "error",
			      r->message ? r->message : "no message");
	else
		err = xstrdup(what);
	(void)jobctl_fail(p->d, p->job_id, p->name, p->state, err);
	post_drop(p);
}

/* post_fail() of one file's operation: the error names the file (its blob). */
static void
post_fail_file(struct post *p, const char *what, const char *name, const struct blob_result *r)
{
	_cleanup_free_ char *w = xprintf("%s: %s", what, name != NULL ? name : "?");

	post_fail(p, w, r);
}

static void
phase(struct post *p, enum job_phase ph)
{
	(void)jobctl_phase(p->d, p->job_id, p->state, ph, NULL);
}

/* A note in the job log, and the same line in the journal (a file's note names the file). */
static void
note(struct post *p, const char *text)
{
	struct log_ctx ctx = {.job = p->name, .state = job_state_to_string(p->state)};

	(void)db_event_add(p->d->db, p->job_id, "note", text, daemon_now());
	log_ctx(LOG_INFO, &ctx, "job %s: %s", p->name, text);
}

/* Move on to the next state; false if that failed (then p is stopped). */
static bool
advance(struct post *p, enum job_state to, enum job_phase ph, const char *text)
{
	if (jobctl_advance(p->d, p->job_id, p->name, p->state, to, ph, LOG_INFO, text) < 0) {
		post_fail(p, "recording the next state failed", NULL);
		return false;
	}
	p->state = to;
	p->step = POST_START;
	p->cursor = 0;
	return true;
}

static const char *
rel_of(const struct post *p, const char *blob_name)
{
	size_t n = strlen(p->name);

	if (strncmp(blob_name, p->name, n) != 0 || blob_name[n] != '/')
		return NULL;
	return blob_name + n + 1;
}

/* ---- reconcile: Azure's logs ---------------------------------------------- */

static void
log_done(const struct blob_result *r, void *userdata)
{
	struct post_op *op = userdata;
	struct post *p = op->p;
	_cleanup_free_ char *err = NULL, *t = NULL;

	op->call = NULL;
	if (r->error == 0 && p->n_logs < ELEMENTSOF(p->logs)) {
		if (drivelog_parse(r->body, r->body_len, &p->logs[p->n_logs], &err) == 0) {
			struct drivelog *l = &p->logs[p->n_logs++];
			t = xprintf("Azure's %s log of drive %s: drive status %s, %zu blobs listed",
				    op->name, l->drive_id ? l->drive_id : "?",
				    l->drive_status && *l->drive_status ? l->drive_status : "?",
				    l->n_blobs);
		} else
			t = xprintf("Azure's %s log could not be read (%s); the blob listing decides",
				    op->name, err ? err : "not a DriveLog");
	} else
		t = xprintf("Azure's %s log could not be fetched (%s); the blob listing decides",
			    op->name, r->message ? r->message : "error");
	note(p, t);
	post_op_free(op);
	if (p->inflight == 0)
		post_next(p);
}

/* Fetch every drive's error and verbose log Azure reported. */
static void
fetch_logs(struct post *p)
{
	struct drive_row *rows = NULL;
	size_t n = 0;

	p->step = POST_LOGS;
	if (db_drive_list(p->d->db, p->job_id, &rows, &n) < 0) {
		post_fail(p, "reading drives failed", NULL);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const char *links[] = {rows[i].error_log, rows[i].verbose_log};
		const char *kind[] = {"error", "verbose"};
		for (size_t k = 0; k < 2; k++) {
			struct post_op *op;
			if (links[k] == NULL || *links[k] == '\0')
				continue;
			op = post_op_new(p, 0);
			op->name = xstrdup(kind[k]);
			op->call = blob_get_url(p->d->blob, links[k], LOG_MAX, log_done, op);
		}
	}
	drive_rows_free(rows, n);
	if (p->inflight == 0)
		post_next(p);
}

/* What the logs say of a staged file (verbose logs list every blob, error logs failures). */
static const struct drivelog_blob *
log_of(const struct post *p, const char *rel)
{
	_cleanup_free_ char *path = xprintf("%s/%s", p->name, rel);
	const struct drivelog_blob *found = NULL;

	for (size_t i = 0; i < p->n_logs; i++) {
		const struct drivelog_blob *b = drivelog_find_file(&p->logs[i], path);
		if (b != NULL && (found == NULL || b->verdict != DLOG_OK))
			found = b;
	}
	return found;
}

/* ---- reconcile: drive-level failures ------------------------------------------ */

/* The drive-level failure status of a file's drive, or NULL. */
static const char *
drive_failure(const struct post *p, int64_t drive_id)
{
	for (size_t i = 0; i < p->n_failed; i++)
		if (p->failed[i].drive_id == drive_id)
			return p->failed[i].status;
	return NULL;
}

static const char *
drive_serial(const struct post *p, int64_t drive_id)
{
	for (size_t i = 0; i < p->n_failed; i++)
		if (p->failed[i].drive_id == drive_id)
			return p->failed[i].serial;
	return "?";
}

/* Name a drive-level failure once (journal, job log), the first time it is recorded. */
static void
drive_failed_note(struct post *p, const struct drive_row *dr, const char *status)
{
	struct log_ctx ctx = {.job = p->name, .state = job_state_to_string(p->state),
			      .drive = dr->serial, .message_id = SEEDD_MESSAGE_DRIVE_IMPORT_FAILED};
	char b[32];
	format_iec(dr->used_bytes, b);
	_cleanup_free_ char *t = xprintf(
	    "drive %s: Azure could not import it: %s; none of its %" PRId64 " files (%s) is in "
	    "the import container",
	    dr->serial, status, dr->files, b);

	log_ctx(LOG_WARNING, &ctx, "job %s: %s", p->name, t);
	(void)db_event_add(p->d->db, p->job_id, "note", t, daemon_now());
}

/*
 * Record each drive's DriveLog/Status in its row and collect the drives whose
 * status is a drive-level failure (README §4.3): nothing of them was imported.
 */
static void
drive_statuses(struct post *p)
{
	struct drive_row *rows = NULL;
	size_t n = 0;

	if (db_drive_list(p->d->db, p->job_id, &rows, &n) < 0)
		return;
	for (size_t k = 0; k < p->n_logs; k++) {
		const struct drivelog *l = &p->logs[k];
		for (size_t i = 0; i < n; i++) {
			_cleanup_free_ char *old = NULL;
			if (strcmp(rows[i].serial, l->drive_id) != 0 || *l->drive_status == '\0')
				continue;
			(void)db_drive_log_status(p->d->db, rows[i].id, &old);
			if (old == NULL || strcmp(old, l->drive_status) != 0) {
				(void)db_drive_set_log_status(p->d->db, rows[i].id, l->drive_status);
				if (l->drive_failed)
					drive_failed_note(p, &rows[i], l->drive_status);
			}
			if (l->drive_failed && drive_failure(p, rows[i].id) == NULL &&
			    p->n_failed < ELEMENTSOF(p->failed))
				p->failed[p->n_failed++] = (struct post_failed_drive){
				    rows[i].id, xstrdup(rows[i].serial), xstrdup(l->drive_status)};
		}
	}
	drive_rows_free(rows, n);
}

/*
 * Nothing of a drive with a drive-level failure was imported: uploading it
 * all is the WAN transfer the operator shipped disks to avoid, so seedd asks
 * first. The job fails naming the drives; `job retry` is the yes (db.c sets
 * drives.network_repair in the retry's transaction), and the repair goes on.
 * True if the job failed (then p is freed).
 */
static bool
network_repair_refused(struct post *p)
{
	_cleanup_free_ char *list = NULL, *err = NULL;

	for (size_t i = 0; i < p->n_failed; i++) {
		bool agreed = false;
		char *l;

		if (db_drive_network_repair(p->d->db, p->failed[i].drive_id, &agreed) >= 0 && agreed)
			continue;
		l = xprintf("%s%s%s: %s", list ? list : "", list ? ", " : "", p->failed[i].serial,
			    p->failed[i].status);
		free(list);
		list = l;
	}
	if (list == NULL)
		return false;
	err = xprintf("Azure could not import drive %s; nothing of it was uploaded: "
		      "`seedctl job retry %s` uploads its files from staging over the network",
		      list, p->name);
	post_fail(p, err, NULL);
	return true;
}

/* ---- reconcile: the listing ------------------------------------------------ */

static void
verdict(struct file_mark *m, char **detail, const char *state, const char *method, char *text)
{
	m->state = state;
	m->method = method;
	*detail = text;
	m->detail = text;
}

/*
 * A file that was already verified (or repaired) before a restart keeps how:
 * its Content-MD5 may be the one seedd set after checking its block list. So
 * does one whose block check was pending: a blob judged without Content-MD5
 * that has one now got it from seedd, after its block list matched.
 */
static const char *
earlier_method(const struct file_row *f, const char *fallback)
{
	static const char *const methods[] = {BY_MD5, BY_BLOCKS, BY_BLOCKS_NO_LOG, BY_REPAIR};
	const char *st = f->import_state;

	if (st == NULL || f->import_method == NULL)
		return fallback;
	if (strcmp(st, "ok") != 0 && strcmp(st, "repaired") != 0 &&
	    (strcmp(st, "corrupt") != 0 || strncmp(f->import_method, BY_BLOCKS, strlen(BY_BLOCKS)) != 0))
		return fallback;
	/* The mark outlives f: hand back our own static string. */
	for (size_t i = 0; i < ELEMENTSOF(methods); i++)
		if (strcmp(f->import_method, methods[i]) == 0)
			return methods[i];
	return fallback;
}

/*
 * The verdict on one listed blob that names a file of ours: renamed, a fault
 * in Azure's log, the wrong length, Content-MD5 checked; without Content-MD5
 * its block list is compared next (POST_BLOCKS): until then it is "corrupt"
 * with a block-list method, so a crash leaves it to be checked again or
 * repaired, never taken as imported.
 */
static void
judge(struct post *p, const struct file_row *f, const struct blob_props *b,
      struct file_mark *m, char **detail)
{
	const struct drivelog_blob *lb = log_of(p, f->rel_path);
	const char *dfail = drive_failure(p, f->drive_id);

	m->file_id = f->id;
	if (dfail != NULL)
		verdict(m, detail, "failed", NULL,
			xprintf("drive %s: %s", drive_serial(p, f->drive_id), dfail));
	else if (lb != NULL && lb->verdict == DLOG_RENAMED)
		verdict(m, detail, "renamed", NULL,
			xprintf("Azure stored it as %s", lb->blob_path ? lb->blob_path : "?"));
	else if (b->length != f->size)
		verdict(m, detail, "corrupt", NULL,
			xprintf("%" PRId64 " bytes in Azure, %" PRId64 " staged", b->length,
				f->size));
	else if (lb != NULL && lb->verdict != DLOG_OK)
		verdict(m, detail, "failed", NULL, xprintf("Azure: %s", lb->status));
	else if (b->has_md5 && memcmp(b->md5, f->md5, 16) != 0)
		verdict(m, detail, "corrupt", NULL,
			xstrdup("Content-MD5 differs from the staged file's"));
	else if (b->has_md5 && f->import_state != NULL && strcmp(f->import_state, "repaired") == 0)
		verdict(m, detail, "repaired", BY_REPAIR, NULL);
	else if (b->has_md5)
		verdict(m, detail, "ok", earlier_method(f, BY_MD5), NULL);
	else /* the schema knows no "checking" state: corrupt until its block list is checked */
		verdict(m, detail, "corrupt", lb != NULL ? BY_BLOCKS : BY_BLOCKS_NO_LOG,
			xstrdup(BLOCKS_PENDING));
}

/* A listed blob Azure made by renaming one of ours: delete it once ours is repaired. */
static void
maybe_renamed(struct post *p, const struct blob_props *b)
{
	for (size_t i = 0; i < p->n_logs; i++)
		for (size_t k = 0; k < p->logs[i].n_blobs; k++) {
			const struct drivelog_blob *lb = &p->logs[i].blobs[k];
			const char *slash = lb->blob_path ? strchr(lb->blob_path, '/') : NULL;
			if (lb->verdict != DLOG_RENAMED || slash == NULL ||
			    strcmp(slash + 1, b->name) != 0)
				continue;
			p->renamed = xreallocarray(p->renamed, p->n_renamed + 1, sizeof(char *));
			p->renamed[p->n_renamed++] = xstrdup(b->name);
			return;
		}
}

static void list_page(struct post *p);

static void
list_done(const struct blob_result *r, void *userdata)
{
	struct post_op *op = userdata;
	struct post *p = op->p;
	struct file_mark *marks;
	char **details;
	size_t n = 0;

	op->call = NULL;
	post_op_free(op);
	if (r->error != 0) {
		post_fail(p, "listing the import container failed", r);
		return;
	}
	marks = xcalloc(r->n_list + 1, sizeof(*marks));
	details = xcalloc(r->n_list + 1, sizeof(*details));
	for (size_t i = 0; i < r->n_list; i++) {
		const char *rel = rel_of(p, r->list[i].name);
		struct file_row f = {0};
		if (rel == NULL)
			continue;
		if (db_file_by_path(p->d->db, p->job_id, rel, &f) == 0 &&
		    strcmp(f.state, "verified") == 0)
			judge(p, &f, &r->list[i], &marks[n], &details[n]), n++;
		else
			maybe_renamed(p, &r->list[i]);
		file_row_free_one(&f);
	}
	if (n > 0 && db_files_mark(p->d->db, DB_MARK_IMPORT, marks, n) < 0)
		log_warning("job %s: recording the reconcile failed: %s", p->name,
			    db_errmsg(p->d->db));
	for (size_t i = 0; i < n; i++)
		free(details[i]);
	free(details);
	free(marks);
	free(p->marker);
	p->marker = r->next_marker ? xstrdup(r->next_marker) : NULL;
	if (p->marker != NULL)
		list_page(p);
	else
		post_next(p);
}

static void
list_page(struct post *p)
{
	_cleanup_free_ char *prefix = xprintf("%s/", p->name);
	struct post_op *op = post_op_new(p, 0);

	p->step = POST_LIST;
	op->call = blob_list(p->d->blob, p->container, prefix, p->marker, LIST_PAGE, list_done, op);
}

/* Files the listing did not show: missing, or what the logs say happened. */
static void
mark_unlisted(struct post *p)
{
	int64_t after = 0;

	for (;;) {
		struct file_row *rows = NULL;
		struct file_mark marks[256];
		char *details[256];
		size_t n = 0, k = 0;

		if (db_files_page(p->d->db, p->job_id, "verified", 0, after, 256, &rows, &n) < 0 ||
		    n == 0) {
			file_rows_free(rows, n);
			return;
		}
		for (size_t i = 0; i < n; i++) {
			const struct drivelog_blob *lb;
			after = rows[i].id;
			if (rows[i].import_state != NULL)
				continue;
			lb = log_of(p, rows[i].rel_path);
			marks[k] = (struct file_mark){.file_id = rows[i].id};
			if (drive_failure(p, rows[i].drive_id) != NULL) {
				marks[k].state = "failed";
				details[k] = xprintf("drive %s: %s", drive_serial(p, rows[i].drive_id),
						     drive_failure(p, rows[i].drive_id));
			} else if (lb != NULL && lb->verdict == DLOG_RENAMED) {
				marks[k].state = "renamed";
				details[k] = xprintf("Azure stored it as %s", lb->blob_path);
			} else if (lb != NULL && lb->verdict != DLOG_OK) {
				marks[k].state = "failed";
				details[k] = xprintf("Azure: %s", lb->status);
			} else {
				marks[k].state = "missing";
				details[k] = xstrdup("not in the import container");
			}
			marks[k].detail = details[k];
			k++;
		}
		if (k > 0)
			(void)db_files_mark(p->d->db, DB_MARK_IMPORT, marks, k);
		for (size_t i = 0; i < k; i++)
			free(details[i]);
		file_rows_free(rows, n);
	}
}

/* ---- reconcile: block lists of blobs without Content-MD5 ---------------------- */

static void blocks_fill(struct post *p);

/* Whether Azure's committed blocks are the manifest's: same ids, in order, same sizes. */
static bool
blocks_match(const struct blob_block *got, size_t n_got, const struct block_row *want,
	     size_t n_want, char **ret_why)
{
	char id[MANIFEST_BLOCK_ID_LEN + 1];

	if (n_got != n_want) {
		*ret_why = xprintf("Azure committed %zu blocks, the manifest has %zu", n_got, n_want);
		return false;
	}
	for (size_t i = 0; i < n_want; i++) {
		manifest_block_id(want[i].md5, id);
		if (strcmp(got[i].id, id) != 0 || got[i].size != want[i].length) {
			*ret_why = xprintf("committed block %zu is %s (%" PRId64 " bytes), the "
					   "manifest's %s (%" PRId64 " bytes)",
					   i, got[i].id, got[i].size, id, want[i].length);
			return false;
		}
	}
	return true;
}

static void
md5_set(const struct blob_result *r, void *userdata)
{
	struct post_op *op = userdata;
	struct post *p = op->p;
	struct file_mark m = {.file_id = op->file_id, .state = "ok", .method = op->method};

	op->call = NULL;
	if (r->error != 0) {
		post_fail_file(p, "setting the verified Content-MD5 on an imported blob failed", op->name, r);
		return;
	}
	if (db_files_mark(p->d->db, DB_MARK_IMPORT, &m, 1) < 0)
		log_warning("job %s: recording the reconcile failed: %s", p->name,
			    db_errmsg(p->d->db));
	post_op_free(op);
	blocks_fill(p);
}

static void
block_list_got(const struct blob_result *r, void *userdata)
{
	struct post_op *op = userdata;
	struct post *p = op->p;
	_cleanup_free_ struct block_row *want = NULL;
	_cleanup_free_ char *why = NULL;
	size_t n_want = 0;

	op->call = NULL;
	if (r->error == -ENOENT)
		why = xstrdup("gone from the import container");
	else if (r->error != 0) {
		post_fail_file(p, "reading the block list of an imported blob failed", op->name, r);
		return;
	} else if (db_file_blocks(p->d->db, op->file_id, &want, &n_want) < 0) {
		post_fail_file(p, "reading a file's blocks failed", op->name, NULL);
		return;
	}
	if (why == NULL && blocks_match(r->blocks, r->n_blocks, want, n_want, &why)) {
		/* Verified: give it the Content-MD5 its vault copy is checked by. */
		op->call = blob_set_content_md5(p->d->blob, p->container, op->name, op->md5,
						IMPORTED_CONTENT_TYPE, md5_set, op);
		return;
	}
	struct file_mark m = {.file_id = op->file_id, .state = "corrupt", .detail = why};
	_cleanup_free_ char *t = xprintf("%s: %s", op->name, why);
	note(p, t);
	(void)db_files_mark(p->d->db, DB_MARK_IMPORT, &m, 1);
	post_op_free(op);
	blocks_fill(p);
}

static bool
wants_blocks(const struct file_row *f)
{
	return f->import_state != NULL && strcmp(f->import_state, "corrupt") == 0 &&
	       f->import_method != NULL && strncmp(f->import_method, BY_BLOCKS, strlen(BY_BLOCKS)) == 0;
}

static void
block_check_start(struct post *p, const struct file_row *f)
{
	struct post_op *op = post_op_new(p, f->id);
	const char *slash = strchr(f->blob_name, '/');

	op->name = xstrdup(slash ? slash + 1 : f->blob_name);
	op->size = f->size;
	memcpy(op->md5, f->md5, 16);
	op->method = f->import_method != NULL && strcmp(f->import_method, BY_BLOCKS) == 0
			 ? BY_BLOCKS
			 : BY_BLOCKS_NO_LOG;
	op->call = blob_get_block_list(p->d->blob, p->container, op->name, block_list_got, op);
}

static void fill(struct post *p, unsigned max, bool (*want)(const struct file_row *f),
		 void (*start)(struct post *p, const struct file_row *f));

/* Compare the block list of every blob the listing found without Content-MD5. */
static void
blocks_fill(struct post *p)
{
	fill(p, BLOCK_CHECKS_IN_FLIGHT, wants_blocks, block_check_start);
}

static void
blocks_start(struct post *p)
{
	p->step = POST_BLOCKS;
	p->cursor = 0;
	p->exhausted = false;
	blocks_fill(p);
}

/* Start the reconcile from scratch: forget earlier verdicts that were not repairs. */
static void
reconcile_start(struct post *p)
{
	phase(p, JOB_PHASE_RECONCILING);
	free(p->marker);
	p->marker = NULL;
	fetch_logs(p);
}

/* ---- repair: re-upload from staging ---------------------------------------- */

static void repair_next(struct post *p);

static void
repair_free(struct post *p)
{
	struct repair *rp = p->repair;

	if (rp == NULL)
		return;
	post_repair_stop(rp);
	for (size_t i = 0; i < rp->n_blocks; i++)
		free(rp->block_ids[i]);
	free(rp->block_ids);
	free(rp->rel_path);
	free(rp->blob_name);
	free(rp->why);
	free(rp);
	p->repair = NULL;
}

static void
repair_checked(const struct blob_result *r, void *userdata)
{
	struct post_op *op = userdata;
	struct post *p = op->p;
	struct repair *rp = p->repair;
	_cleanup_free_ char *detail = xprintf("uploaded again from staging and checked (%s)",
					      rp->why ? rp->why : "not imported");
	struct file_mark m = {.file_id = rp->file_id, .state = "repaired", .detail = detail,
			      .method = BY_REPAIR};

	op->call = NULL;
	post_op_free(op);
	if (r->error != 0 || r->props == NULL || r->props->length != rp->size ||
	    !r->props->has_md5 || memcmp(r->props->md5, rp->md5, 16) != 0) {
		_cleanup_free_ char *e = xprintf("the repaired blob %s does not match the staged file",
						 rp->blob_name);
		post_fail(p, e, r->error ? r : NULL);
		return;
	}
	(void)db_files_mark(p->d->db, DB_MARK_IMPORT, &m, 1);
	p->repaired++;
	if (p->repaired <= EXAMPLES) {
		_cleanup_free_ char *t = xprintf("repaired %s: uploaded from staging, Content-MD5 "
						 "checked (%s)",
						 rp->rel_path, rp->why ? rp->why : "not imported");
		note(p, t);
	}
	repair_free(p);
	repair_next(p);
}

static void
block_list_done(const struct blob_result *r, void *userdata)
{
	struct post_op *op = userdata;
	struct post *p = op->p;

	op->call = NULL;
	post_op_free(op);
	if (r->error != 0) {
		post_fail_file(p, "committing a repaired blob failed", p->repair ? p->repair->rel_path : NULL, r);
		return;
	}
	op = post_op_new(p, p->repair->file_id);
	op->call = blob_get_properties(p->d->blob, p->container, p->repair->blob_name,
				       repair_checked, op);
}

/* Every block is read and put: commit the block list with the file's MD5. */
static void
repair_commit(struct post *p)
{
	struct repair *rp = p->repair;
	struct post_op *op = post_op_new(p, rp->file_id);

	op->call = blob_put_block_list(p->d->blob, p->container, rp->blob_name,
				       (const char *const *)rp->block_ids, rp->n_blocks, rp->md5,
				       block_list_done, op);
}

static void
block_put_done(const struct blob_result *r, void *userdata)
{
	struct post_op *op = userdata;
	struct post *p = op->p;
	struct repair *rp = p->repair;

	op->call = NULL;
	post_op_free(op);
	if (r->error != 0) {
		post_fail_file(p, "uploading a block of a repaired file failed", rp ? rp->rel_path : NULL, r);
		return;
	}
	rp->n_put++;
	pthread_mutex_lock(&rp->lock);
	rp->inflight--;
	pthread_cond_signal(&rp->cond);
	pthread_mutex_unlock(&rp->lock);
	if (rp->read_done && rp->n_put == rp->n_read)
		repair_commit(p);
}

void
post_block_read(struct post *p, int64_t file_id, size_t idx, void *data, size_t len,
		const unsigned char md5[16])
{
	struct repair *rp = p->repair;
	struct post_op *op;

	if (rp == NULL || rp->file_id != file_id)
		return;
	if (idx >= rp->n_blocks) {
		rp->block_ids = xreallocarray(rp->block_ids, idx + 1, sizeof(char *));
		for (size_t i = rp->n_blocks; i <= idx; i++)
			rp->block_ids[i] = NULL;
		rp->n_blocks = idx + 1;
	}
	rp->block_ids[idx] = xmalloc(MANIFEST_BLOCK_ID_LEN + 1);
	manifest_block_id(md5, rp->block_ids[idx]);
	rp->n_read++;
	op = post_op_new(p, file_id);
	op->call = blob_put_block(p->d->blob, p->container, rp->blob_name, rp->block_ids[idx], data,
				  len, md5, block_put_done, op);
}

void
post_read_done(struct post *p, int64_t file_id, int status, const char *error)
{
	struct repair *rp = p->repair;

	if (rp == NULL || rp->file_id != file_id)
		return;
	rp->read_done = true;
	if (status < 0) {
		_cleanup_free_ char *e = xprintf("cannot repair %s from staging: %s", rp->rel_path,
						 error);
		post_fail(p, e, NULL);
		return;
	}
	if (rp->n_put == rp->n_read)
		repair_commit(p);
}

/* The next file to repair: missing, corrupt, renamed or failed in Azure. */
static bool
repair_pick(struct post *p, struct file_row *ret)
{
	for (;;) {
		struct file_row *rows = NULL;
		size_t n = 0;

		if (db_files_page(p->d->db, p->job_id, "verified", 0, p->cursor, 256, &rows, &n) < 0 ||
		    n == 0) {
			file_rows_free(rows, n);
			return false;
		}
		for (size_t i = 0; i < n; i++) {
			const char *st = rows[i].import_state;
			p->cursor = rows[i].id;
			if (st != NULL && strcmp(st, "ok") != 0 && strcmp(st, "repaired") != 0) {
				*ret = rows[i];
				rows[i] = (struct file_row){0};
				file_rows_free(rows, n);
				return true;
			}
		}
		file_rows_free(rows, n);
	}
}

static void
repair_next(struct post *p)
{
	struct file_row f = {0};
	struct repair *rp;
	const char *slash;

	p->step = POST_REPAIR;
	if (!repair_pick(p, &f)) {
		post_next(p);
		return;
	}
	if (p->repaired == 0)
		phase(p, JOB_PHASE_REPAIRING);
	rp = xcalloc(1, sizeof(*rp));
	rp->file_id = f.id;
	rp->rel_path = xstrdup(f.rel_path);
	rp->why = f.import_detail ? xstrdup(f.import_detail) : NULL;
	slash = strchr(f.blob_name, '/');
	rp->blob_name = xstrdup(slash ? slash + 1 : f.blob_name);
	rp->size = f.size;
	rp->mtime_ns = f.mtime_ns;
	memcpy(rp->md5, f.md5, 16);
	file_row_free_one(&f);
	p->repair = rp;
	if (post_repair_start(p, rp) < 0)
		post_fail(p, "cannot start a reader for the repair", NULL);
}

/* ---- renamed copies ---------------------------------------------------------- */

static void
renamed_deleted(const struct blob_result *r, void *userdata)
{
	struct post_op *op = userdata;
	struct post *p = op->p;
	_cleanup_free_ char *t = xprintf("deleted %s, Azure's renamed copy of a file of ours",
					 op->name);

	op->call = NULL;
	if (r->error == 0)
		note(p, t);
	post_op_free(op);
	if (p->inflight == 0)
		post_next(p);
}

static void
delete_renamed(struct post *p)
{
	p->step = POST_RENAMED;
	for (size_t i = 0; i < p->n_renamed; i++) {
		struct post_op *op = post_op_new(p, 0);
		op->name = xstrdup(p->renamed[i]);
		op->call = blob_delete(p->d->blob, p->container, op->name, renamed_deleted, op);
	}
	if (p->inflight == 0)
		post_next(p);
}

static bool
reconciled(struct post *p)
{
	struct file_count ok = {0}, rep = {0}, md5 = {0}, bl = {0}, blnl = {0};
	_cleanup_free_ char *text = NULL;

	(void)db_files_count_mark(p->d->db, p->job_id, DB_MARK_IMPORT, "ok", &ok);
	(void)db_files_count_mark(p->d->db, p->job_id, DB_MARK_IMPORT, "repaired", &rep);
	(void)db_files_count_method(p->d->db, p->job_id, BY_MD5, &md5);
	(void)db_files_count_method(p->d->db, p->job_id, BY_BLOCKS, &bl);
	(void)db_files_count_method(p->d->db, p->job_id, BY_BLOCKS_NO_LOG, &blnl);
	text = xprintf("reconciled: %" PRId64 " files as imported (%" PRId64
		       " by Content-MD5, %" PRId64 " by block list and Azure's verbose log, %" PRId64
		       " by block list without a verbose log), %" PRId64
		       " repaired from staging; every file is in the import container",
		       ok.files, md5.files, bl.files, blnl.files, rep.files);
	return advance(p, JOB_VAULT_COPY, JOB_PHASE_COPYING_TO_VAULT, text);
}

/* ---- vault copy ---------------------------------------------------------------- */

static void vault_fill(struct post *p);

static bool
props_match(const struct blob_props *b, const struct post_op *op)
{
	return b != NULL && b->length == op->size && b->has_md5 && memcmp(b->md5, op->md5, 16) == 0;
}

static void vault_check(struct post_op *op);

static void
vault_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	vault_check(arg);
}

static void
vault_checked(const struct blob_result *r, void *userdata)
{
	struct post_op *op = userdata;
	struct post *p = op->p;
	const struct blob_props *b = r->props;
	struct file_mark m = {.file_id = op->file_id, .state = "verified"};

	op->call = NULL;
	if (r->error != 0) {
		post_fail_file(p, "checking a vault copy failed", op->name, r);
		return;
	}
	if (b->copy_status != NULL && strcmp(b->copy_status, "pending") == 0 &&
	    op->polls < COPY_POLLS_MAX) {
		struct timeval tv = {COPY_POLL_SEC, 0};
		op->polls++;
		/* Azure copies server-side; ask again in a while. */
		if (op->timer == NULL)
			op->timer = evtimer_new(p->d->base, vault_poll_cb, op);
		evtimer_add(op->timer, &tv);
		return;
	}
	if ((b->copy_status != NULL && strcmp(b->copy_status, "success") != 0) ||
	    !props_match(b, op)) {
		_cleanup_free_ char *e = xprintf("the vault copy of %s is not the file seedd shipped "
						 "(copy status %s)",
						 op->name, b->copy_status ? b->copy_status : "none");
		post_fail(p, e, NULL);
		return;
	}
	if (db_files_mark(p->d->db, DB_MARK_VAULT, &m, 1) < 0)
		log_warning("job %s: recording a vault copy failed: %s", p->name,
			    db_errmsg(p->d->db));
	post_op_free(op);
	vault_fill(p);
}

static void
vault_check(struct post_op *op)
{
	struct post *p = op->p;

	op->call = blob_get_properties(p->d->blob, p->d->config->vault_container, op->name,
				       vault_checked, op);
}

static void
vault_copied(const struct blob_result *r, void *userdata)
{
	struct post_op *op = userdata;

	op->call = NULL;
	if (r->error != 0) {
		post_fail(op->p, "copying a blob into the vault failed", r);
		return;
	}
	vault_check(op);
}

/*
 * Keep up to max requests going, one per verified file that want() picks,
 * started by start(), in id order from p->cursor; when every file has been
 * handed out and answered, go on to the next step.
 */
static void
fill(struct post *p, unsigned max, bool (*want)(const struct file_row *f),
     void (*start)(struct post *p, const struct file_row *f))
{
	while (!p->exhausted && p->inflight < max) {
		struct file_row *rows = NULL;
		size_t n = 0;

		if (db_files_page(p->d->db, p->job_id, "verified", 0, p->cursor, max, &rows, &n) < 0 ||
		    n == 0) {
			file_rows_free(rows, n);
			p->exhausted = true;
			break;
		}
		for (size_t i = 0; i < n; i++) {
			p->cursor = rows[i].id;
			if (want(&rows[i]))
				start(p, &rows[i]);
		}
		file_rows_free(rows, n);
	}
	if (p->exhausted && p->inflight == 0)
		post_next(p);
}

/* The blob name within its container: "<job>/<rel path>". */
static const char *
name_in_container(const struct file_row *f)
{
	const char *slash = strchr(f->blob_name, '/');

	return slash ? slash + 1 : f->blob_name;
}

static bool
wants_vault(const struct file_row *f)
{
	return f->vault_state == NULL || strcmp(f->vault_state, "verified") != 0;
}

static void
vault_copy_start(struct post *p, const struct file_row *f)
{
	struct post_op *op = post_op_new(p, f->id);
	_cleanup_free_ char *src = NULL;

	op->name = xstrdup(name_in_container(f));
	op->size = f->size;
	memcpy(op->md5, f->md5, 16);
	src = blob_url(p->d->blob, p->container, op->name);
	op->call = blob_copy(p->d->blob, p->d->config->vault_container, op->name, src,
			     p->d->config->access_tier, vault_copied, op);
}

/* Keep COPIES_IN_FLIGHT copies going until every file's vault copy is verified. */
static void
vault_fill(struct post *p)
{
	fill(p, COPIES_IN_FLIGHT, wants_vault, vault_copy_start);
}

static void
vault_container_ready(const struct blob_result *r, void *userdata)
{
	struct post_op *op = userdata;
	struct post *p = op->p;

	op->call = NULL;
	post_op_free(op);
	if (r->error != 0) {
		post_fail(p, "creating the vault container failed", r);
		return;
	}
	p->step = POST_VAULT;
	p->cursor = 0;
	p->exhausted = false;
	vault_fill(p);
}

static void
vault_start(struct post *p)
{
	struct post_op *op;

	if (p->d->config->vault_container == NULL) {
		post_fail(p, "[Vault] Container= is not set: there is no vault to copy into", NULL);
		return;
	}
	phase(p, JOB_PHASE_COPYING_TO_VAULT);
	op = post_op_new(p, 0);
	op->call = blob_create_container(p->d->blob, p->d->config->vault_container,
					 vault_container_ready, op);
}

/* ---- cleanup: import blobs ---------------------------------------------------- */

static void blobs_fill(struct post *p);

static void
blob_deleted(const struct blob_result *r, void *userdata)
{
	struct post_op *op = userdata;
	struct post *p = op->p;
	struct file_mark m = {.file_id = op->file_id, .state = "blob-deleted"};

	op->call = NULL;
	if (r->error != 0) {
		post_fail_file(p, "deleting an import blob failed", op->name, r);
		return;
	}
	(void)db_files_mark(p->d->db, DB_MARK_CLEANUP, &m, 1);
	post_op_free(op);
	blobs_fill(p);
}

/* Only blobs whose vault copy is verified, and only once. */
static bool
wants_delete(const struct file_row *f)
{
	return f->cleanup_state == NULL && f->vault_state != NULL &&
	       strcmp(f->vault_state, "verified") == 0;
}

static void
blob_delete_start(struct post *p, const struct file_row *f)
{
	struct post_op *op = post_op_new(p, f->id);

	op->name = xstrdup(name_in_container(f));
	op->call = blob_delete(p->d->blob, p->container, op->name, blob_deleted, op);
}

/* Delete the import blobs seedd put there, each only once its vault copy is verified. */
static void
blobs_fill(struct post *p)
{
	fill(p, DELETES_IN_FLIGHT, wants_delete, blob_delete_start);
}

/* ---- cleanup: staging files (thread) and the report ------------------------------ */

void
post_cleaned(struct post *p, const struct file_mark *marks, size_t n, bool last,
	     const char *error)
{
	if (n > 0 && db_files_mark(p->d->db, DB_MARK_CLEANUP, marks, n) < 0)
		log_warning("job %s: recording deleted staging files failed: %s", p->name,
			    db_errmsg(p->d->db));
	for (size_t i = 0; i < n; i++)
		if (strcmp(marks[i].state, "staging-kept") == 0 && p->kept_noted++ < EXAMPLES) {
			_cleanup_free_ char *t = xprintf("kept a staging file: %s",
							 marks[i].detail ? marks[i].detail : "?");
			note(p, t);
		}
	if (!last)
		return;
	if (error != NULL) {
		post_fail(p, error, NULL);
		return;
	}
	post_next(p);
}

/*
 * The job is done once its staging files are dealt with; the audit report is
 * written after that transition so it holds every transition, on a reporter
 * thread (report.c: it streams every file and fsyncs). A report that could
 * not be written (or a kill -9 before it was) is written again at the next
 * start (post_report_missing).
 */
static void
write_report(struct post *p)
{
	_cleanup_free_ char *text = NULL;
	struct file_count kept = {0};
	struct daemon *d = p->d;
	int64_t id = p->job_id;

	p->step = POST_REPORT;
	(void)db_files_count_mark(d->db, id, DB_MARK_CLEANUP, "staging-kept", &kept);
	text = xprintf("cleaned up: import blobs deleted, staging files deleted (%" PRId64
		       " kept because they changed or could not be removed)",
		       kept.files);
	if (!advance(p, JOB_DONE, JOB_PHASE_DONE, text))
		return;
	post_drop(p); /* the cleaner has ended: freed at once */
	report_file_start(d, id); /* on a thread; notes "audit report written" */
}

/* At start: a done job whose report is missing gets it now. */
void
post_report_missing(struct daemon *d, const struct job_row *j)
{
	_cleanup_free_ char *path = xprintf("%s/reports/%s.json", d->state_dir, j->name);

	if (j->state != JOB_DONE || access(path, F_OK) == 0)
		return;
	report_file_start(d, j->id);
}

/* ---- the step machine --------------------------------------------------------- */

static void
post_next(struct post *p)
{
	if (p->inflight > 0)
		return;
	switch (p->state) {
	case JOB_IMPORTED:
		switch (p->step) {
		case POST_START:
			reconcile_start(p);
			return;
		case POST_LOGS:
			drive_statuses(p);
			list_page(p);
			return;
		case POST_LIST:
			mark_unlisted(p);
			blocks_start(p);
			return;
		case POST_BLOCKS:
			if (network_repair_refused(p))
				return;
			p->cursor = 0;
			repair_next(p);
			return;
		case POST_REPAIR:
			delete_renamed(p);
			return;
		case POST_RENAMED:
			if (reconciled(p))
				post_next(p);
			return;
		default:
			return;
		}
	case JOB_VAULT_COPY:
		if (p->step == POST_START)
			vault_start(p);
		else if (advance(p, JOB_CLEANUP, JOB_PHASE_DELETING_IMPORT_BLOBS,
				 "every file is copied into the vault and verified there"))
			post_next(p);
		return;
	case JOB_CLEANUP:
		switch (p->step) {
		case POST_START:
			phase(p, JOB_PHASE_DELETING_IMPORT_BLOBS);
			p->step = POST_BLOBS;
			p->cursor = 0;
			p->exhausted = false;
			blobs_fill(p);
			return;
		case POST_BLOBS:
			phase(p, JOB_PHASE_DELETING_STAGING_FILES);
			p->step = POST_STAGING;
			p->kept_noted = 0;
			if (post_cleaner_start(p) < 0)
				post_fail(p, "cannot start the staging cleaner", NULL);
			return;
		case POST_STAGING:
			write_report(p);
			return;
		default:
			return;
		}
	default:
		return;
	}
}

/* ---- entry points -------------------------------------------------------------- */

static uint64_t post_gen;

void
post_resume(struct daemon *d, const struct job_row *j)
{
	struct post *p;

	if (j->state != JOB_IMPORTED && j->state != JOB_VAULT_COPY && j->state != JOB_CLEANUP)
		return;
	if (post_find(d, j->id) != NULL)
		return;
	/* Its last post still winds down: two cleaners must not race; the last thread resumes it. */
	if ((p = stopping_find(d, j->id)) != NULL) {
		p->restart = true;
		return;
	}
	if (d->blob == NULL) {
		struct log_ctx ctx = {.job = j->name, .state = job_state_to_string(j->state)};
		log_ctx(LOG_WARNING, &ctx,
			"job %s waits: the storage account is not configured ([Storage])", j->name);
		return;
	}
	p = xcalloc(1, sizeof(*p));
	p->d = d;
	p->job_id = j->id;
	p->gen = ++post_gen;
	p->name = xstrdup(j->name);
	p->container = xstrdup(j->container);
	p->staging_path = xstrdup(j->staging_path);
	p->state = j->state;
	LIST_INIT(&p->ops);
	LIST_INSERT_HEAD(&d->posts, p, link);
	post_next(p);
}

bool
post_healthy(struct daemon *d, int64_t max_age, const char **ret_what)
{
	struct post *p;

	/* Stopping posts too: their threads are still watched while they wind down. */
	LIST_FOREACH(p, &d->posts, link) {
		if (p->repair != NULL && !worker_thread_healthy(&p->repair->w, max_age)) {
			*ret_what = "a repair reader";
			return false;
		}
		if (p->cleaner_running && !worker_thread_healthy(&p->cleaner, max_age)) {
			*ret_what = "the staging cleaner";
			return false;
		}
	}
	return true;
}

static bool
threads_ended(const struct post *p)
{
	return (p->repair == NULL || !p->repair->w.running) && !p->cleaner_running;
}

/*
 * Stop a post without joining on the loop: its repair reader may be inside
 * a read of a slow staging file system, its cleaner inside an unlink. Its
 * requests end now and its threads are told to stop; it stays listed,
 * stopping (late results are dropped), until each thread's last message
 * arrived, then post_reap() frees it and the joins return at once.
 * Shutdown joins instead (post_stop_all).
 */
static void
post_drop(struct post *p)
{
	struct post_op *op;

	while ((op = LIST_FIRST(&p->ops)) != NULL)
		post_op_free(op);
	if (p->timer) {
		event_free(p->timer);
		p->timer = NULL;
	}
	p->stopping = true;
	if (p->repair != NULL)
		post_repair_cancel(p->repair);
	post_cleaner_cancel(p);
	post_reap(p);
}

/* Free a stopping post once its threads ended; resume its job if that was asked meanwhile. */
void
post_reap(struct post *p)
{
	_cleanup_free_ char *err = NULL;
	struct daemon *d = p->d;
	int64_t job_id = p->job_id;
	bool restart = p->restart;

	if (!threads_ended(p))
		return;
	post_free(p);
	if (restart && !d->stopping && stopping_find(d, job_id) == NULL &&
	    stagetab_resume_job(d->stages, job_id, &err) < 0)
		log_error("job %" PRId64 ": cannot resume after the import: %s", job_id,
			  err ? err : "reading the job failed");
}

void
post_stop(struct daemon *d, int64_t job_id)
{
	struct post *p = post_find(d, job_id);

	if (p != NULL)
		post_drop(p);
}

/*
 * Shutdown joins every thread. A reload (the blob client is made again)
 * stops each post like a cancel; the stage table resumes its job at once,
 * or post_reap() does once its threads ended.
 */
void
post_stop_all(struct daemon *d)
{
	struct post *p, *next;

	for (p = LIST_FIRST(&d->posts); p != NULL; p = next) {
		next = LIST_NEXT(p, link);
		if (d->stopping)
			post_free(p);
		else if (!p->stopping)
			post_drop(p);
	}
}

/* The post a thread's message is from, stopping or not. */
struct post *
post_lookup(struct daemon *d, int64_t job_id, uint64_t gen)
{
	struct post *p;

	LIST_FOREACH(p, &d->posts, link)
		if (p->job_id == job_id && p->gen == gen)
			return p;
	return NULL;
}
