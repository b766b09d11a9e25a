/*
 * Audit reports (see report.h). The file is written file entry by file
 * entry, so a job of a million files never sits in memory as one JSON
 * tree. Loop thread (it reads the store; the write is one sequential file).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "db.h"
#include "methods.h"
#include "report.h"
#include "seedd-build.h"
#include "util.h"

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
	return json_pack("{s:o,s:o,s:I,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "path",
			 json_text(f->rel_path), "blob", json_text(f->blob_name), "size",
			 (json_int_t)f->size, "state", f->state, "md5", md5_hex(f), "drive",
			 str_or_null(serial_of(drives, nd, f->drive_id)), "import",
			 str_or_null(f->import_state), "importDetail",
			 f->import_detail ? json_text(f->import_detail) : json_null(), "verifiedBy",
			 str_or_null(f->import_method), "vault",
			 str_or_null(f->vault_state), "cleanup", str_or_null(f->cleanup_state),
			 "reason", f->reason ? json_text(f->reason) : json_null());
}

/* Everything but the files. */
static json_t *
report_head(struct daemon *d, int64_t job_id)
{
	json_t *job = job_json_by_id(d, job_id), *events = json_array();
	struct event_row *ev = NULL;
	size_t n = 0;
	char now[32], t[32];

	if (db_event_list(d->db, job_id, 0, &ev, &n) == 0)
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
	return json_pack("{s:s,s:s,s:o,s:o}", "generated", now, "seeddVersion", SEEDD_VERSION,
			 "job", job ? job : json_null(), "events", events);
}

/* Call fn for every file of the job, in id order. */
static int
each_file(struct daemon *d, int64_t job_id, size_t max, int (*fn)(json_t *f, void *ud), void *ud)
{
	struct drive_row *drives = NULL;
	size_t nd = 0, seen = 0;
	int64_t after = 0;
	int r = 0;

	if (db_drive_list(d->db, job_id, &drives, &nd) < 0)
		return -EIO;
	while (r == 0 && seen < max) {
		struct file_row *rows = NULL;
		size_t n = 0;
		if (db_files_page(d->db, job_id, NULL, 0, after, 512, &rows, &n) < 0) {
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
report_build(struct daemon *d, int64_t job_id, size_t max_files)
{
	json_t *r = report_head(d, job_id), *files = json_array();
	struct job_row *j = NULL;
	char path[4096];

	(void)each_file(d, job_id, max_files, append_cb, files);
	json_object_set_new(r, "files", files);
	if (db_job_get_by_id(d->db, job_id, &j) == 0) {
		snprintf(path, sizeof(path), "%s/reports/%s.json", d->state_dir, j->name);
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
write_stream(struct daemon *d, int64_t job_id, FILE *out)
{
	json_t *head = report_head(d, job_id);
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
	r = each_file(d, job_id, SIZE_MAX, write_cb, &w);
	fprintf(out, "\n  ]\n}\n");
	return r;
}

int
report_write(struct daemon *d, int64_t job_id, char **ret_path, char **ret_err)
{
	_cleanup_free_ char *dir = xprintf("%s/reports", d->state_dir), *tmp = NULL, *path = NULL;
	struct job_row *j = NULL;
	FILE *out;
	int fd, r;

	if (db_job_get_by_id(d->db, job_id, &j) < 0) {
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
	r = write_stream(d, job_id, out);
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
