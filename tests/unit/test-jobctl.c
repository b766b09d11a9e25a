/*
 * core jobctl, the one place a job changes, on a real database in a temp
 * directory with a real event loop and notify: a failure changes the state,
 * writes its event and its one journal line and reaches the notify observer
 * once per loop turn; a transition does the same with the state-change line
 * at the caller's priority; a phase change writes its event and notifies but
 * logs nothing; a stale change (the job moved meanwhile: -ESTALE) writes,
 * logs and notifies nothing. The journal line is read on the stderr target,
 * whose format test-log checks (MESSAGE_ID is journal-only).
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "db.h"
#include "job.h"
#include "jobctl.h"
#include "log.h"
#include "notify.h"
#include "test.h"
#include "util.h"

static char tmpdir[] = "/tmp/test-jobctl.XXXXXX";
static char out_path[] = "/tmp/test-jobctl-log.XXXXXX";
static int out_fd = -1, saved_stderr = -1;
static int64_t seen[16];
static size_t n_seen;

static void
observer(int64_t job_id, void *userdata)
{
	check(userdata == seen);
	check(n_seen < 16);
	seen[n_seen++] = job_id;
}

static void
one_turn(struct daemon *d)
{
	check(event_base_loop(d->base, EVLOOP_ONCE | EVLOOP_NONBLOCK) >= 0);
}

/* Send stderr (the log) to the capture file, emptied. */
static void
capture(void)
{
	check(ftruncate(out_fd, 0) == 0);
	check(lseek(out_fd, 0, SEEK_SET) == 0); /* the dup shares this offset */
	check(dup2(out_fd, STDERR_FILENO) == STDERR_FILENO);
}

/* Restore stderr and check the captured log is exactly expect. */
static void
check_log(const char *expect)
{
	char buf[4096];
	ssize_t n;

	check(dup2(saved_stderr, STDERR_FILENO) == STDERR_FILENO);
	n = pread(out_fd, buf, sizeof(buf) - 1, 0);
	check(n >= 0);
	buf[n] = '\0';
	check_str(buf, expect);
}

static struct job_row *
job(struct daemon *d, int64_t id)
{
	struct job_row *j = NULL;

	check_int(db_job_get_by_id(d->db, id, &j), 0);
	return j;
}

/* The job's newest event is kind: text. */
static void
check_last_event(struct daemon *d, int64_t id, const char *kind, const char *text)
{
	struct event_row *ev = NULL;
	size_t n = 0;

	check_int(db_event_list(d->db, id, 1, &ev, &n), 0);
	check_int(n, 1);
	check_str(ev[0].kind, kind);
	check_str(ev[0].text, text);
	event_rows_free(ev, n);
}

static size_t
events(struct daemon *d, int64_t id)
{
	struct event_row *ev = NULL;
	size_t n = 0;

	check_int(db_event_list(d->db, id, 0, &ev, &n), 0);
	event_rows_free(ev, n);
	return n;
}

static int64_t
new_job(struct daemon *d, const char *name)
{
	int64_t id = 0;

	check_int(db_job_create(d->db, name, "/srv/staging", "vault", daemon_now(), &id), 0);
	return id;
}

static void
test_phase(struct daemon *d, int64_t id)
{
	struct job_row *j;

	n_seen = 0;
	capture();
	check_int(jobctl_phase(d, id, JOB_STAGING, "indexing"), 0);
	check_int(jobctl_phase(d, id, JOB_STAGING, "indexed"), 0);
	check_log(""); /* a phase has no journal line */
	j = job(d, id);
	check_str(j->phase, "indexed");
	job_row_free(j);
	check_last_event(d, id, DB_EVENT_PHASE, "indexed");
	check_int(n_seen, 0); /* on the next turn, not now */
	one_turn(d);
	check_int(n_seen, 1); /* two changes, one notification */
	check_int(seen[0], id);
	one_turn(d);
	check_int(n_seen, 1);
}

static void
test_fail(struct daemon *d, int64_t id)
{
	char expect[512];
	struct job_row *j;

	n_seen = 0;
	capture();
	check_int(jobctl_fail(d, id, "backup-1", JOB_STAGING, "12 file names Azure would refuse"),
		  0);
	snprintf(expect, sizeof(expect),
		 "seedd[%d]: error: [job=backup-1 state=failed] job backup-1 failed in staging: "
		 "12 file names Azure would refuse\n",
		 (int)getpid());
	check_log(expect);
	j = job(d, id);
	check_int(j->state, JOB_FAILED);
	check_int(j->failed_state, JOB_STAGING);
	check_str(j->error, "12 file names Azure would refuse");
	job_row_free(j);
	check_last_event(d, id, DB_EVENT_FAILED, "12 file names Azure would refuse");
	one_turn(d);
	check_int(n_seen, 1);
	check_int(seen[0], id);
}

/* The job already failed: every change from an older state is stale and silent. */
static void
test_stale(struct daemon *d, int64_t id)
{
	size_t before = events(d, id);
	struct job_row *j;

	n_seen = 0;
	capture();
	check_int(jobctl_fail(d, id, "backup-1", JOB_STAGING, "again"), -ESTALE);
	check_int(jobctl_advance(d, id, "backup-1", JOB_STAGING, JOB_DRIVE_PREP, "copying",
				 LOG_INFO, "drive prep started"),
		  -ESTALE);
	check_int(jobctl_phase(d, id, JOB_STAGING, "indexing"), -ESTALE);
	check_log("");
	check_int(events(d, id), before);
	j = job(d, id);
	check_int(j->state, JOB_FAILED);
	check_str(j->error, "12 file names Azure would refuse");
	job_row_free(j);
	one_turn(d);
	check_int(n_seen, 0);
}

static void
test_advance(struct daemon *d, int64_t id)
{
	char expect[512];
	struct job_row *j;
	int pid = (int)getpid();

	n_seen = 0;
	capture();
	check_int(jobctl_advance(d, id, "backup-2", JOB_STAGING, JOB_DRIVE_PREP, "copying",
				 LOG_INFO, "drive prep started: 3 files on 1 drives"),
		  0);
	check_int(jobctl_advance(d, id, "backup-2", JOB_DRIVE_PREP, JOB_SHIPPED, NULL, LOG_WARNING,
				 NULL),
		  0);
	snprintf(expect, sizeof(expect),
		 "seedd[%d]: info: [job=backup-2 state=drive_prep] job backup-2: drive prep "
		 "started: 3 files on 1 drives\n"
		 "seedd[%d]: warning: [job=backup-2 state=shipped] job backup-2: drive_prep -> "
		 "shipped\n",
		 pid, pid);
	check_log(expect);
	j = job(d, id);
	check_int(j->state, JOB_SHIPPED);
	job_row_free(j);
	check_last_event(d, id, DB_EVENT_TRANSITION, "drive_prep -> shipped");
	one_turn(d);
	check_int(n_seen, 1);
	check_int(seen[0], id);

	/* No notify attached (a tool without watchers): the change still happens. */
	struct notify *saved = d->notify;
	d->notify = NULL;
	check_int(jobctl_phase(d, id, JOB_SHIPPED, "in-transit"), 0);
	d->notify = saved;
	one_turn(d);
	check_int(n_seen, 1);
}

int
main(void)
{
	struct daemon d = {0};
	_cleanup_free_ char *path = NULL, *err = NULL;
	int64_t a, b;

	check(mkdtemp(tmpdir) != NULL);
	check((out_fd = mkstemp(out_path)) >= 0);
	check((saved_stderr = dup(STDERR_FILENO)) >= 0);
	log_init(LOG_TARGET_STDERR, LOG_DEBUG);
	path = xprintf("%s/seedd.db", tmpdir);
	check_int(db_open(path, &d.db, &err), 0);
	check((d.base = event_base_new()) != NULL);
	check((d.notify = notify_new(d.base, observer, seen)) != NULL);

	a = new_job(&d, "backup-1");
	b = new_job(&d, "backup-2");
	one_turn(&d);
	test_phase(&d, a);
	test_fail(&d, a);
	test_stale(&d, a);
	test_advance(&d, b);

	d.notify = notify_free(d.notify);
	event_base_free(d.base);
	d.db = db_close(d.db);
	(void)unlink(path);
	(void)unlink(out_path);
	for (const char *s = "-wal\0-shm\0"; *s; s += strlen(s) + 1) {
		_cleanup_free_ char *p = xprintf("%s%s", path, s);
		(void)unlink(p);
	}
	(void)rmdir(tmpdir);
	printf("ok jobctl\n");
	return 0;
}
