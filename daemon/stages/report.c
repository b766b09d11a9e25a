/*
 * Audit reports (see report.h). The file is written file entry by file
 * entry, so a job of a million files never sits in memory as one JSON
 * tree. The loop builds only the Job object (it reads the loop's live
 * progress); a reporter thread with its own read-only connection reads the
 * events and every file, and writes the file or builds GetJobReport's reply.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "db.h"
#include "job-view.h"
#include "jobctl.h"
#include "log.h"
#include "names.h"
#include "report.h"
#include "seedd-build.h"
#include "stage.h"
#include "util.h"
#include "varlink.h"
#include "worker.h"

static json_t *
md5_hex(const struct file_row *f)
{
	char hex[33];

	if (!f->has_md5)
		return json_null();
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", f->md5[i]);
	return json_string(hex);
}

static json_t *
str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static const char *
serial_of(struct drive_row *drives, size_t n, int64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (drives[i].id == id)
			return drives[i].serial;
	return NULL;
}

static json_t *
file_json(const struct file_row *f, struct drive_row *drives, size_t nd)
{
	return json_pack("{s:o,s:o,s:I,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:I}", "path",
			 json_text(f->rel_path), "blob", json_text(f->blob_name), "size",
			 (json_int_t)f->size, "state", f->state, "md5", md5_hex(f), "drive",
			 str_or_null(serial_of(drives, nd, f->drive_id)), "import",
			 str_or_null(f->import_state), "importDetail",
			 f->import_detail ? json_text(f->import_detail) : json_null(), "verifiedBy",
			 str_or_null(f->import_method), "vault",
			 str_or_null(f->vault_state), "cleanup", str_or_null(f->cleanup_state),
			 "reason", f->reason ? json_text(f->reason) : json_null(), "links",
			 (json_int_t)(f->links > 0 ? f->links : 1)); /* above 1: a hard link */
}

/* Everything but the files. */
static json_t *
report_head(const struct report_in *in)
{
	json_t *events = json_array();
	struct event_row *ev = NULL;
	size_t n = 0;
	char now[32], t[32];

	if (db_event_list(in->db, in->job_id, 0, &ev, &n) == 0)
		for (size_t i = 0; i < n; i++) {
			format_iso8601(ev[i].time, t);
			json_array_append_new(events,
					      json_pack("{s:s,s:s,s:s,s:o}", "time", t, "kind",
							ev[i].kind, "state",
							job_state_to_string(ev[i].state), "text",
							json_text(ev[i].text ? ev[i].text : "")));
		}
	event_rows_free(ev, n);
	format_iso8601(daemon_now(), now);
	return json_pack("{s:s,s:s,s:O,s:o}", "generated", now, "seeddVersion", SEEDD_VERSION,
			 "job", in->job ? in->job : json_null(), "events", events);
}

/* Call fn for every file of the job, in id order; -ECANCELED once *in->cancel is raised. */
static int
each_file(const struct report_in *in, size_t max, int (*fn)(json_t *f, void *ud), void *ud)
{
	struct drive_row *drives = NULL;
	size_t nd = 0, seen = 0;
	int64_t after = 0;
	int r = 0;

	if (db_drive_list(in->db, in->job_id, &drives, &nd) < 0)
		return -EIO;
	while (r == 0 && seen < max) {
		struct file_row *rows = NULL;
		size_t n = 0;
		if (in->cancel != NULL && atomic_load(in->cancel)) {
			r = -ECANCELED;
			break;
		}
		if (in->w != NULL)
			worker_thread_beat(in->w);
		if (db_files_page(in->db, in->job_id, NULL, 0, after, 512, &rows, &n) < 0) {
			r = -EIO;
			break;
		}
		if (n == 0)
			break;
		for (size_t i = 0; i < n && r == 0 && seen < max; i++, seen++) {
			json_t *f = file_json(&rows[i], drives, nd);
			after = rows[i].id;
			r = fn(f, ud);
			json_decref(f);
		}
		file_rows_free(rows, n);
	}
	drive_rows_free(drives, nd);
	return r;
}

static int
append_cb(json_t *f, void *ud)
{
	json_array_append(ud, f);
	return 0;
}

json_t *
report_build(const struct report_in *in, size_t max_files)
{
	json_t *r = report_head(in), *files = json_array();
	struct job_row *j = NULL;
	char path[4096];

	(void)each_file(in, max_files, append_cb, files);
	json_object_set_new(r, "files", files);
	if (db_job_get_by_id(in->db, in->job_id, &j) == 0) {
		snprintf(path, sizeof(path), "%s/reports/%s.json", in->state_dir, j->name);
		json_object_set_new(r, "filesTruncated",
				    json_boolean(j->files > (int64_t)json_array_size(files)));
		json_object_set_new(r, "reportFile",
				    access(path, R_OK) == 0 ? json_string(path) : json_null());
	}
	job_row_free(j);
	return r;
}

struct writer {
	FILE *out;
	bool first;
};

static int
write_cb(json_t *f, void *ud)
{
	struct writer *w = ud;
	char *s = json_dumps(f, JSON_COMPACT);
	int r;

	r = fprintf(w->out, "%s\n    %s", w->first ? "" : ",", s ? s : "null");
	w->first = false;
	free(s);
	return r < 0 ? -EIO : 0;
}

/* The head's JSON without its closing brace, then the files array streamed in. */
static int
write_stream(const struct report_in *in, FILE *out)
{
	json_t *head = report_head(in);
	char *s = json_dumps(head, JSON_INDENT(2));
	struct writer w = {.out = out, .first = true};
	size_t len = s ? strlen(s) : 0;
	int r;

	json_decref(head);
	if (s == NULL || len < 2) {
		free(s);
		return -EIO;
	}
	*strrchr(s, '}') = '\0'; /* drop the closing brace and the blanks before it */
	len = strlen(s);
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
		s[--len] = '\0';
	fprintf(out, "%s,\n  \"files\": [", s);
	free(s);
	r = each_file(in, SIZE_MAX, write_cb, &w);
	fprintf(out, "\n  ]\n}\n");
	return r;
}

int
report_write(const struct report_in *in, char **ret_path, char **ret_err)
{
	_cleanup_free_ char *dir = xprintf("%s/reports", in->state_dir), *tmp = NULL, *path = NULL;
	struct job_row *j = NULL;
	FILE *out;
	int fd, r;

	if (db_job_get_by_id(in->db, in->job_id, &j) < 0) {
		xasprintf(ret_err, "the job is gone");
		return -ENOENT;
	}
	path = xprintf("%s/%s.json", dir, j->name);
	tmp = xprintf("%s.tmp", path);
	job_row_free(j);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		xasprintf(ret_err, "cannot create %s: %s", dir, strerror(errno));
		return -errno;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || (out = fdopen(fd, "w")) == NULL) {
		xasprintf(ret_err, "cannot write %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	r = write_stream(in, out);
	if (fflush(out) != 0 || fsync(fileno(out)) < 0)
		r = -errno;
	if (fclose(out) != 0 && r == 0)
		r = -EIO;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		xasprintf(ret_err, "writing the audit report %s failed: %s", path, strerror(-r));
		(void)unlink(tmp);
		return r;
	}
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	*ret_path = TAKE_PTR(path);
	return 0;
}

/* ---- reporter threads ---------------------------------------------------- */

/* A GetJobReport that waits for the job's report file being written. */
struct report_waiter {
	struct report_waiter *next;
	report_done_fn done;
	void *userdata;
};

struct reporter {
	LIST_ENTRY(reporter) link;
	struct worker_thread w;
	struct daemon *d;
	struct worker_queue *queue;
	report_done_fn done; /* GetJobReport's answer; NULL: the report file */
	void *userdata;
	int64_t job_id;
	char *db_path;
	char *state_dir;
	json_t *job;
	struct report_waiter *waiters; /* the file's reporter: calls that start when it is written */
	/* Results. */
	json_t *report; /* GetJobReport's reply; NULL: too large or failed */
	char *path;     /* the file written */
	char *err;
	int r;
};

struct reporter_msg {
	struct worker_msg m;
	struct reporter *rp;
};

static void
reporter_msg_free(struct worker_msg *m)
{
	free(m);
}

static void
reporter_free(struct reporter *rp)
{
	worker_thread_stop(&rp->w);
	LIST_REMOVE(rp, link);
	json_decref(rp->job);
	json_decref(rp->report);
	free(rp->db_path);
	free(rp->state_dir);
	free(rp->path);
	free(rp->err);
	free(rp);
}

/* The largest report with at most REPORT_FILES_INLINE files that fits in one message. */
static json_t *
reply_report(const struct report_in *in)
{
	for (size_t max = REPORT_FILES_INLINE; max >= 10; max /= 4) {
		json_t *report = report_build(in, max);
		char *s = json_dumps(report, JSON_COMPACT);
		bool fits = s != NULL && strlen(s) < VL_MESSAGE_MAX - 4096;

		free(s);
		if (fits)
			return report;
		json_decref(report);
		if (in->cancel != NULL && atomic_load(in->cancel))
			break;
	}
	return NULL;
}

static void *
reporter_thread(void *arg)
{
	struct reporter *rp = arg;
	struct reporter_msg *rm = xcalloc(1, sizeof(*rm));
	struct report_in in = {.job = rp->job, .state_dir = rp->state_dir, .job_id = rp->job_id,
			       .cancel = &rp->w.cancel, .w = &rp->w};

	atomic_store(&rp->w.busy, true);
	worker_thread_beat(&rp->w);
	if ((rp->r = db_open_readonly(rp->db_path, &in.db, &rp->err)) < 0)
		;
	else if (rp->done == NULL)
		rp->r = report_write(&in, &rp->path, &rp->err);
	else if ((rp->report = reply_report(&in)) == NULL)
		rp->r = atomic_load(&rp->w.cancel) ? -ECANCELED : -EMSGSIZE;
	else if (atomic_load(&rp->w.cancel)) { /* cut short: not the report */
		json_decref(rp->report);
		rp->report = NULL;
		rp->r = -ECANCELED;
	}
	db_close(in.db);
	atomic_store(&rp->w.busy, false);
	rm->m.kind = MSG_REPORT_DONE;
	rm->m.free_fn = reporter_msg_free;
	rm->rp = rp;
	worker_queue_push(rp->queue, &rm->m);
	return NULL;
}

static struct reporter *
reporter_start(struct daemon *d, int64_t job_id, report_done_fn done, void *userdata)
{
	struct reporter *rp = xcalloc(1, sizeof(*rp));

	rp->d = d;
	rp->queue = d->queue;
	rp->done = done;
	rp->userdata = userdata;
	rp->job_id = job_id;
	rp->job = job_json_by_id(d, job_id); /* reads the loop's live progress */
	rp->db_path = xprintf("%s/seedd.db", d->state_dir);
	rp->state_dir = xstrdup(d->state_dir);
	LIST_INSERT_HEAD(&d->reporters, rp, link);
	if (worker_thread_start(&rp->w, reporter_thread, rp) < 0) {
		reporter_free(rp);
		return NULL;
	}
	return rp;
}

static struct reporter *
file_reporter_find(struct daemon *d, int64_t job_id)
{
	struct reporter *rp;

	LIST_FOREACH(rp, &d->reporters, link)
		if (rp->done == NULL && rp->job_id == job_id)
			return rp;
	return NULL;
}

/*
 * A job turns done before its report file is written (the report holds that
 * transition); a GetJobReport meanwhile waits for the file, so that it names
 * it as it did when the file was written on the loop.
 */
int
report_request(struct daemon *d, int64_t job_id, report_done_fn done, void *userdata)
{
	struct reporter *file = file_reporter_find(d, job_id);

	if (file != NULL) {
		struct report_waiter *w = xcalloc(1, sizeof(*w));
		w->done = done;
		w->userdata = userdata;
		w->next = file->waiters;
		file->waiters = w;
		return 0;
	}
	return reporter_start(d, job_id, done, userdata) != NULL ? 0 : -EAGAIN;
}

void
report_file_start(struct daemon *d, int64_t job_id)
{
	if (file_reporter_find(d, job_id) != NULL)
		return; /* being written */
	if (reporter_start(d, job_id, NULL, NULL) == NULL)
		log_error("job %" PRId64 ": cannot start a thread to write the audit report; "
			  "will try again at the next start", job_id);
}

/* The requests that waited for the file start now (or are refused at shutdown). */
static void
waiters_start(struct daemon *d, struct reporter *rp)
{
	struct report_waiter *w;

	while ((w = rp->waiters) != NULL) {
		rp->waiters = w->next;
		if (d->stopping)
			w->done(NULL, -ECANCELED, "seedd is stopping", w->userdata);
		else if (reporter_start(d, rp->job_id, w->done, w->userdata) == NULL)
			w->done(NULL, -EAGAIN, "cannot start a thread to build the report",
				w->userdata);
		free(w);
	}
}

static void
report_file_written(struct daemon *d, struct reporter *rp)
{
	_cleanup_free_ char *text = NULL;

	if (rp->r == -ECANCELED) {
		log_info("job %" PRId64 ": stopping; the audit report is written at the next start",
			 rp->job_id);
		return;
	}
	if (rp->r < 0) {
		log_error("job %" PRId64 ": %s; will try again at the next start", rp->job_id,
			  rp->err ? rp->err : strerror(-rp->r));
		return;
	}
	text = xprintf("audit report written to %s", rp->path);
	(void)db_event_add(d->db, rp->job_id, "note", text, daemon_now());
	jobctl_changed(d, rp->job_id);
}

static void
report_answer(struct reporter *rp)
{
	if (rp->report != NULL)
		rp->done(rp->report, 0, NULL, rp->userdata);
	else if (rp->r == -ECANCELED)
		rp->done(NULL, rp->r, "seedd is stopping", rp->userdata);
	else if (rp->r == -EMSGSIZE)
		rp->done(NULL, rp->r, "the report is too large for one reply; see the report file",
			 rp->userdata);
	else {
		log_error("job %" PRId64 ": building the report failed: %s", rp->job_id,
			  rp->err ? rp->err : strerror(-rp->r));
		rp->done(NULL, rp->r, "building the report failed; see the journal", rp->userdata);
	}
}

void
report_handle_msg(struct daemon *d, struct worker_msg *m)
{
	struct reporter *rp = ((struct reporter_msg *)m)->rp;

	worker_thread_stop(&rp->w); /* it has pushed its last message: ends at once */
	if (rp->done == NULL) {
		report_file_written(d, rp);
		waiters_start(d, rp);
	} else
		report_answer(rp);
	reporter_free(rp);
}

bool
report_healthy(struct daemon *d, int64_t max_age, const char **ret_what)
{
	struct reporter *rp;

	LIST_FOREACH(rp, &d->reporters, link)
		if (!worker_thread_healthy(&rp->w, max_age)) {
			*ret_what = "a report thread";
			return false;
		}
	return true;
}

void
report_stop_all(struct daemon *d)
{
	struct reporter *rp;

	LIST_FOREACH(rp, &d->reporters, link)
		worker_thread_stop(&rp->w);
}
