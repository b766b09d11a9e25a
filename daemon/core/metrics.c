/*
 * MetricsFile=: every METRICS_SEC seconds, the jobs per state and each
 * active job's byte counters in the Prometheus text format, written to a
 * temporary file and renamed over the old one so a reader (e.g. the node
 * exporter's textfile collector) never sees half a file. Loop thread.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define METRICS_SEC 15

static void
write_jobs(FILE *f, struct daemon *d)
{
	int64_t counts[_JOB_STATE_MAX] = {0};
	struct job_row **rows = NULL;
	size_t n = 0;

	if (db_job_count_by_state(d->db, counts) == 0) {
		fprintf(f, "# HELP seedd_jobs Jobs by state.\n# TYPE seedd_jobs gauge\n");
		for (int s = 0; s < _JOB_STATE_MAX; s++)
			fprintf(f, "seedd_jobs{state=\"%s\"} %lld\n", job_state_to_string(s),
				(long long)counts[s]);
	}
	if (db_job_list(d->db, &rows, &n) < 0)
		return;
	fprintf(f, "# HELP seedd_job_bytes Bytes indexed for a job.\n# TYPE seedd_job_bytes gauge\n"
		   "# HELP seedd_job_copied_bytes Bytes copied and verified onto drives.\n"
		   "# TYPE seedd_job_copied_bytes gauge\n");
	for (size_t i = 0; i < n; i++) {
		if (job_state_is_final(rows[i]->state))
			continue;
		/* Job names are [A-Za-z0-9._-]: nothing to escape in a label. */
		fprintf(f, "seedd_job_bytes{job=\"%s\"} %lld\n", rows[i]->name,
			(long long)rows[i]->bytes);
		fprintf(f, "seedd_job_copied_bytes{job=\"%s\"} %lld\n", rows[i]->name,
			(long long)rows[i]->copied_bytes);
	}
	job_rows_free(rows, n);
}

int
metrics_write(struct daemon *d)
{
	const char *path = d->config->metrics_file;
	_cleanup_free_ char *tmp = NULL;
	FILE *f;
	int r = 0;

	if (path == NULL)
		return 0;
	tmp = xprintf("%s.tmp", path);
	if ((f = fopen(tmp, "we")) == NULL)
		return -errno;
	fprintf(f, "# HELP seedd_up seedd is running.\n# TYPE seedd_up gauge\nseedd_up 1\n");
	fprintf(f, "# HELP seedd_uptime_seconds Seconds since seedd started.\n"
		   "# TYPE seedd_uptime_seconds counter\nseedd_uptime_seconds %lld\n",
		(long long)daemon_uptime(d));
	write_jobs(f, d);
	if (fflush(f) != 0 || ferror(f))
		r = -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		(void)unlink(tmp);
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
metrics_start(struct daemon *d)
{
	struct timeval tv = {METRICS_SEC, 0};

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
