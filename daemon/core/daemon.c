/*
 * The loop's housekeeping: signals (SIGTERM/SIGINT stop, SIGHUP reloads),
 * the systemd watchdog and status line, and config reload. Loop thread.
 */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "catalog-ids.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "stagetab.h"
#include "util.h"
#include "worker.h"

/*
 * Test-only clock hook, off unless the environment names it:
 * SEEDD_TEST_CLOCK_FILE is a file holding seconds to add to the wall clock,
 * read again whenever its mtime changes, so an integration test can make the
 * clock jump forward and back (tests/integration/test_faults_azure.py).
 * Without it nothing is read and daemon_now() is time(NULL). Only what reads
 * the wall clock through daemon_now() moves; timers and intervals run on the
 * monotonic clock and never see a jump.
 */
static const char *clock_file;
static pthread_once_t clock_once = PTHREAD_ONCE_INIT;
static _Atomic int64_t clock_offset, clock_file_mtime = -1;

static void
clock_file_init(void)
{
	clock_file = getenv("SEEDD_TEST_CLOCK_FILE");
	if (clock_file != NULL && *clock_file == '\0')
		clock_file = NULL;
}

static int64_t
test_clock_offset(void)
{
	struct stat st;
	int64_t mtime, off = 0;
	FILE *f;

	pthread_once(&clock_once, clock_file_init);
	if (clock_file == NULL || stat(clock_file, &st) < 0)
		return 0;
	mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	if (atomic_exchange(&clock_file_mtime, mtime) != mtime && (f = fopen(clock_file, "re"))) {
		if (fscanf(f, "%" SCNd64, &off) == 1)
			atomic_store(&clock_offset, off);
		fclose(f);
	}
	return atomic_load(&clock_offset);
}

int64_t
daemon_now(void)
{
	return (int64_t)time(NULL) + test_clock_offset();
}

static int64_t
monotonic_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

int64_t
daemon_uptime(const struct daemon *d)
{
	return monotonic_sec() - d->started;
}

void
daemon_status(struct daemon *d, const char *fmt, ...)
{
	_cleanup_free_ char *line = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&line, fmt, ap) < 0)
		fatalx("vasprintf failed");
	va_end(ap);
	(void)sd_notifyf(0, "STATUS=%s", line);
}

void
daemon_stop(struct daemon *d, const char *why)
{
	struct log_ctx ctx = {.message_id = SEEDD_MESSAGE_STOPPED};

	if (d->stopping)
		return;
	d->stopping = true;
	log_ctx(LOG_INFO, &ctx, "stopping: %s", why);
	(void)sd_notify(0, "STOPPING=1\nSTATUS=Stopping");
	if (d->stop_accepting != NULL)
		d->stop_accepting(d);
	event_base_loopexit(d->base, NULL);
}

static void
store_fault_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	daemon_stop(arg, "the job database cannot be written");
}

void
daemon_store_fault(void *arg, int err, const char *msg)
{
	/* A moment for the replies already queued (a call that failed says so) to go out. */
	static const struct timeval flush = {0, 300000};
	struct daemon *d = arg;
	const char *fix = err == -EROFS ? "make it writable"
			  : err == -ENOSPC ? "free space on its file system"
					   : "check the disk it is on";

	if (d->exit_status != 0)
		return;
	d->exit_status = 1;
	log_ctx(LOG_CRIT, NULL, "the job database in %s cannot be written: %s (%s); seedd stops so that no "
		 "work goes on unrecorded: %s, then start seedd again, and every job resumes "
		 "from its last recorded step",
		 d->state_dir, strerror(-err), msg, fix);
	if (d->base == NULL || event_base_once(d->base, -1, EV_TIMEOUT, store_fault_stop_cb, d,
					       &flush) < 0)
		daemon_stop(d, "the job database cannot be written");
}

struct store_fault_msg {
	struct worker_msg m;
	int err;
	char text[256];
};

static void
store_fault_msg_free(struct worker_msg *m)
{
	free(m);
}

void
daemon_store_fault_worker(void *arg, int err, const char *msg)
{
	struct daemon *d = arg;
	struct store_fault_msg *fm = xcalloc(1, sizeof(*fm));

	fm->m.kind = MSG_STORE_FAULT;
	fm->m.free_fn = store_fault_msg_free;
	fm->err = err;
	(void)snprintf(fm->text, sizeof(fm->text), "%s", msg);
	worker_queue_push(d->queue, &fm->m);
}

void
daemon_store_fault_msg(struct daemon *d, struct worker_msg *m)
{
	struct store_fault_msg *fm = (struct store_fault_msg *)m;

	daemon_store_fault(d, fm->err, fm->text);
}

void
daemon_reload(struct daemon *d)
{
	struct config *c = NULL;
	_cleanup_free_ char *err = NULL;
	struct log_ctx ctx = {.message_id = SEEDD_MESSAGE_CONFIG_RELOADED};
	int r;

	(void)sd_notify(0, "RELOADING=1");
	r = config_load(d->config_path, &c, &err);
	if (r < 0)
		log_error("reloading configuration failed, keeping the old one: %s", err);
	else {
		config_free(d->config);
		d->config = c;
		stagetab_reload(d->stages);
		log_ctx(LOG_INFO, &ctx, "configuration reloaded from %s",
			c->path ? c->path : "built-in defaults");
	}
	(void)sd_notify(0, "READY=1");
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	if (sig == SIGHUP)
		daemon_reload(d);
	else
		daemon_stop(d, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/*
 * Ping only from a live loop whose busy workers, of every stage, all beat
 * recently: a worker hung on a dead disk becomes a missed ping, and systemd
 * restarts us (each stage says which of its threads is stuck).
 */
static void
watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	const char *who = NULL, *what_ = NULL;

	if (d->stages == NULL || stagetab_healthy(d->stages, &who, &what_))
		(void)sd_notify(0, "WATCHDOG=1");
	else
		log_warning("%s: %s has not made progress for %d s; withholding the watchdog ping",
			    who, what_ ? what_ : "a worker", STAGE_HEARTBEAT_MAX);
}

int
daemon_start(struct daemon *d, const char *listening)
{
	uint64_t usec = 0;

	d->ev_term = evsignal_new(d->base, SIGTERM, signal_cb, d);
	d->ev_int = evsignal_new(d->base, SIGINT, signal_cb, d);
	d->ev_hup = evsignal_new(d->base, SIGHUP, signal_cb, d);
	event_add(d->ev_term, NULL);
	event_add(d->ev_int, NULL);
	event_add(d->ev_hup, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		struct timeval half = {
			.tv_sec = (time_t)(usec / 2 / 1000000),
			.tv_usec = (suseconds_t)(usec / 2 % 1000000),
		};
		d->watchdog_usec = usec;
		d->ev_watchdog = event_new(d->base, -1, EV_PERSIST, watchdog_cb, d);
		event_add(d->ev_watchdog, &half);
		(void)sd_notify(0, "WATCHDOG=1");
	}
	d->started = monotonic_sec();
	(void)sd_notify(0, "READY=1");
	daemon_status(d, "Listening on %s", listening);
	return 0;
}

void
daemon_free_events(struct daemon *d)
{
	struct event **evs[] = {&d->ev_term, &d->ev_int, &d->ev_hup, &d->ev_watchdog};

	for (size_t i = 0; i < ELEMENTSOF(evs); i++)
		if (*evs[i] != NULL) {
			event_free(*evs[i]);
			*evs[i] = NULL;
		}
}
