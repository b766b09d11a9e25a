/*
 * MetricsFile=: every METRICS_SEC seconds, the jobs per state, each active
 * job's bytes, files by state and seconds to its tracking deadline, and each
 * of its drives' bytes and copy rate, in the Prometheus text format. Loop
 * thread.
 *
 * The file must pass both `promtool check metrics` (text format 0.0.4) and
 * the OpenMetrics parser of python3-prometheus-client, which node_exporter's
 * textfile collector and scrapers use:
 * - each family is written whole, HELP and TYPE once, then all its samples;
 * - no counter: the two formats disagree on a counter's family name (0.0.4
 *   wants the TYPE line to name "x_total", OpenMetrics wants "x" and refuses
 *   "x_total" as a clashing name), so what only grows is a gauge of a point
 *   in time (seedd_start_time_seconds, as Prometheus' own
 *   process_start_time_seconds);
 * - it ends with "# EOF", which OpenMetrics requires and 0.0.4 reads as a
 *   comment.
 *
 * Written through PATH.tmp opened O_CREAT|O_EXCL|O_NOFOLLOW in the target
 * directory (a planted symlink there is never followed), fchmod 0644 (the
 * unit's UMask=0077 would leave 0600, unreadable to a node_exporter running
 * as another user), then renamed over PATH, so a reader never sees half a
 * file. Not fsynced: the loop thread must not wait on the disk, and a file
 * lost to a power cut is rewritten within METRICS_SEC of the next start.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define METRICS_SEC 15

/* The files.state values of the schema (db-migrate.c FILE_STATES), in this order. */
static const char *const file_states[] = {"indexed", "invalid", "skipped", "planned", "verified"};
#define FILE_STATE_COUNT ELEMENTSOF(file_states)
enum { FS_INDEXED, FS_INVALID, FS_SKIPPED, FS_PLANNED, FS_VERIFIED };

static metrics_drive_fn metrics_drive;

/* One job that is not done or cancelled, with what its families need. */
struct mjob {
	const struct job_row *row;
	int64_t files[FILE_STATE_COUNT];
	struct drive_row *drives;
	size_t ndrives;
	int64_t *drive_bytes;
	double *drive_rate;
};

struct snapshot {
	struct job_row **rows;
	size_t nrows;
	struct mjob *jobs;
	size_t njobs;
};

/*
 * Files by state on the loop thread, cheaply for a job of millions of files:
 * verified ones from the job row (copied_files, kept in step with them), the
 * others counted from the index (job_id, state) alone, without reading a
 * table row (about 30 ms per million on the development machine).
 */
static void
snapshot_files(struct daemon *d, struct mjob *m, const struct job_row *row)
{
	for (int s = FS_INDEXED; s <= FS_PLANNED; s++)
		(void)db_files_number(d->db, row->id, file_states[s], &m->files[s]);
	m->files[FS_VERIFIED] = row->copied_files;
}

static void
snapshot_job(struct daemon *d, struct mjob *m, const struct job_row *row)
{
	m->row = row;
	snapshot_files(d, m, row);
	if (db_drive_list(d->db, row->id, &m->drives, &m->ndrives) < 0) {
		m->drives = NULL;
		m->ndrives = 0;
	}
	m->drive_bytes = xcalloc(m->ndrives + 1, sizeof(int64_t));
	m->drive_rate = xcalloc(m->ndrives + 1, sizeof(double));
	for (size_t i = 0; i < m->ndrives; i++) {
		m->drive_bytes[i] = m->drives[i].used_bytes;
		if (metrics_drive != NULL)
			(void)metrics_drive(d, row->id, m->drives[i].id, &m->drive_bytes[i],
					    &m->drive_rate[i]);
	}
}

static int
snapshot_take(struct daemon *d, struct snapshot *s)
{
	*s = (struct snapshot){0};
	if (db_job_list(d->db, &s->rows, &s->nrows) < 0)
		return -EIO;
	s->jobs = xcalloc(s->nrows + 1, sizeof(struct mjob));
	for (size_t i = 0; i < s->nrows; i++)
		if (!job_state_is_final(s->rows[i]->state))
			snapshot_job(d, &s->jobs[s->njobs++], s->rows[i]);
	return 0;
}

static void
snapshot_free(struct snapshot *s)
{
	for (size_t i = 0; i < s->njobs; i++) {
		drive_rows_free(s->jobs[i].drives, s->jobs[i].ndrives);
		free(s->jobs[i].drive_bytes);
		free(s->jobs[i].drive_rate);
	}
	free(s->jobs);
	job_rows_free(s->rows, s->nrows);
}

static void
family(FILE *f, const char *name, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

/* A label value: backslash, double quote and line feed escaped (text format 0.0.4). */
static void
put_label(FILE *f, const char *v)
{
	fputc('"', f);
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
	fputc('"', f);
}

/* Job names are [A-Za-z0-9._-]: nothing to escape. A serial is free text. */
static void
drive_sample(FILE *f, const char *name, const struct mjob *m, size_t i)
{
	fprintf(f, "%s{job=\"%s\",serial=", name, m->row->name);
	put_label(f, m->drives[i].serial);
	fputc('}', f);
}

static void
write_jobs(FILE *f, struct daemon *d, const struct snapshot *s)
{
	int64_t counts[_JOB_STATE_MAX] = {0};

	if (db_job_count_by_state(d->db, counts) == 0) {
		family(f, "seedd_jobs", "Jobs by state.");
		for (int st = 0; st < _JOB_STATE_MAX; st++)
			fprintf(f, "seedd_jobs{state=\"%s\"} %lld\n", job_state_to_string(st),
				(long long)counts[st]);
	}
	family(f, "seedd_job_bytes", "Bytes indexed for a job that is not done or cancelled.");
	for (size_t i = 0; i < s->njobs; i++)
		fprintf(f, "seedd_job_bytes{job=\"%s\"} %lld\n", s->jobs[i].row->name,
			(long long)s->jobs[i].row->bytes);
	family(f, "seedd_job_copied_bytes", "Bytes copied and verified onto drives.");
	for (size_t i = 0; i < s->njobs; i++)
		fprintf(f, "seedd_job_copied_bytes{job=\"%s\"} %lld\n", s->jobs[i].row->name,
			(long long)s->jobs[i].row->copied_bytes);
	family(f, "seedd_job_files", "A job's staging files by state.");
	for (size_t i = 0; i < s->njobs; i++)
		for (size_t st = 0; st < FILE_STATE_COUNT; st++)
			fprintf(f, "seedd_job_files{job=\"%s\",state=\"%s\"} %lld\n",
				s->jobs[i].row->name, file_states[st],
				(long long)s->jobs[i].files[st]);
}

/* Seconds left to record the tracking number: jobs whose Azure job exists, not yet shipped. */
static void
write_deadlines(FILE *f, const struct snapshot *s, int64_t now)
{
	family(f, "seedd_job_tracking_deadline_seconds",
	       "Seconds left to ship a job and record its tracking number (negative: passed).");
	for (size_t i = 0; i < s->njobs; i++) {
		const struct job_row *j = s->jobs[i].row;
		if (j->ship_deadline > 0 && j->tracking_number == NULL)
			fprintf(f, "seedd_job_tracking_deadline_seconds{job=\"%s\"} %lld\n", j->name,
				(long long)(j->ship_deadline - now));
	}
}

static void
write_drives(FILE *f, const struct snapshot *s)
{
	family(f, "seedd_drive_bytes", "Bytes on a job's drive, committed and in flight.");
	for (size_t i = 0; i < s->njobs; i++)
		for (size_t k = 0; k < s->jobs[i].ndrives; k++) {
			drive_sample(f, "seedd_drive_bytes", &s->jobs[i], k);
			fprintf(f, " %lld\n", (long long)s->jobs[i].drive_bytes[k]);
		}
	family(f, "seedd_drive_capacity_bytes", "Capacity of a job's drive.");
	for (size_t i = 0; i < s->njobs; i++)
		for (size_t k = 0; k < s->jobs[i].ndrives; k++) {
			drive_sample(f, "seedd_drive_capacity_bytes", &s->jobs[i], k);
			fprintf(f, " %lld\n", (long long)s->jobs[i].drives[k].capacity);
		}
	family(f, "seedd_drive_copy_rate_bytes_per_second",
	       "Current copy rate onto a job's drive; 0 when it is not being copied.");
	for (size_t i = 0; i < s->njobs; i++)
		for (size_t k = 0; k < s->jobs[i].ndrives; k++) {
			drive_sample(f, "seedd_drive_copy_rate_bytes_per_second", &s->jobs[i], k);
			fprintf(f, " %.0f\n", s->jobs[i].drive_rate[k]);
		}
}

static void
write_all(FILE *f, struct daemon *d)
{
	struct snapshot s;
	int64_t now = daemon_now();

	family(f, "seedd_up", "1 while seedd runs.");
	fputs("seedd_up 1\n", f);
	family(f, "seedd_start_time_seconds", "When seedd started, UNIX seconds.");
	fprintf(f, "seedd_start_time_seconds %lld\n", (long long)(now - daemon_uptime(d)));
	if (snapshot_take(d, &s) == 0) {
		write_jobs(f, d, &s);
		write_deadlines(f, &s, now);
		write_drives(f, &s);
	}
	snapshot_free(&s);
	fputs("# EOF\n", f);
}

/*
 * Create PATH.tmp in dirfd: never through a symlink (O_EXCL refuses any
 * existing name, O_NOFOLLOW says so twice). What is left at that name (a
 * crash between create and rename, or a planted link) is unlinked, not
 * followed, and the create tried once more.
 */
static int
tmp_create(int dirfd, const char *name)
{
	int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, fd;

	if ((fd = openat(dirfd, name, flags, 0644)) < 0 && errno == EEXIST) {
		if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
			return -errno;
		fd = openat(dirfd, name, flags, 0644);
	}
	if (fd < 0)
		return -errno;
	if (fchmod(fd, 0644) < 0) {
		int r = -errno;
		close(fd);
		(void)unlinkat(dirfd, name, 0);
		return r;
	}
	return fd;
}

/* Write the metrics into fd (consumed). */
static int
write_fd(struct daemon *d, int fd)
{
	FILE *f = fdopen(fd, "w");
	int r = 0;

	if (f == NULL) {
		r = -errno;
		close(fd);
		return r;
	}
	write_all(f, d);
	if (fflush(f) != 0 || ferror(f))
		r = -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	return r;
}

int
metrics_write(struct daemon *d)
{
	const char *path = d->config->metrics_file, *slash;
	_cleanup_free_ char *dir = NULL, *base = NULL, *tmp = NULL;
	_cleanup_close_ int dirfd = -1;
	int fd, r;

	if (path == NULL)
		return 0;
	slash = strrchr(path, '/');
	dir = slash == NULL ? xstrdup(".") : slash == path ? xstrdup("/")
							   : xstrndup(path, (size_t)(slash - path));
	base = xstrdup(slash ? slash + 1 : path);
	tmp = xprintf("%s.tmp", base);
	if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -errno;
	if ((fd = tmp_create(dirfd, tmp)) < 0)
		return fd;
	r = write_fd(d, fd);
	if (r == 0 && renameat(dirfd, tmp, dirfd, base) < 0)
		r = -errno;
	if (r < 0)
		(void)unlinkat(dirfd, tmp, 0);
	return r;
}

static void
metrics_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	int r = metrics_write(d);

	if (r < 0 && !d->metrics_failed) {
		log_warning("writing MetricsFile=%s failed: %s; will keep trying",
			    d->config->metrics_file, strerror(-r));
		d->metrics_failed = true;
	} else if (r == 0)
		d->metrics_failed = false;
}

void
metrics_start(struct daemon *d, metrics_drive_fn drive)
{
	struct timeval tv = {METRICS_SEC, 0};

	metrics_drive = drive;
	d->ev_metrics = event_new(d->base, -1, EV_PERSIST, metrics_cb, d);
	event_add(d->ev_metrics, &tv);
	metrics_cb(-1, 0, d);
}

void
metrics_stop(struct daemon *d)
{
	if (d->ev_metrics != NULL)
		event_free(d->ev_metrics);
	d->ev_metrics = NULL;
}
