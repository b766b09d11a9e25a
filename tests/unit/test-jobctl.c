/*
 * core jobctl, the one place a job changes, on a real database in a temp
 * directory with a real event loop and notify: a failure changes the state,
 * writes its event and its one journal line and reaches the notify observer
 * once per loop turn; a transition does the same with the state-change line
 * at the caller's priority; a phase change writes its event and notifies but
 * logs nothing; a stale change (the job moved meanwhile: -ESTALE) writes,
 * logs and notifies nothing. The journal line is read on the stderr target;
 * as root, its journal fields (SEEDD_JOB, SEEDD_STATE, the catalogued
 * MESSAGE_ID) are read too, from a socket of our own at
 * /run/systemd/journal/socket in a private mount namespace (as test-log).
 */
#include <errno.h>
#include <event2/event.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "catalog-ids.h"

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
	check_int(jobctl_phase(d, id, JOB_STAGING, JOB_PHASE_INDEXING, NULL), 0);
	check_int(jobctl_phase(d, id, JOB_STAGING, JOB_PHASE_INDEXED, NULL), 0);
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
	check_int(jobctl_advance(d, id, "backup-1", JOB_STAGING, JOB_DRIVE_PREP, JOB_PHASE_COPYING,
				 LOG_INFO, "drive prep started"),
		  -ESTALE);
	check_int(jobctl_phase(d, id, JOB_STAGING, JOB_PHASE_INDEXING, NULL), -ESTALE);
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
	struct notify *saved = d->notify;
	int pid = (int)getpid();

	n_seen = 0;
	capture();
	check_int(jobctl_advance(d, id, "backup-2", JOB_STAGING, JOB_DRIVE_PREP, JOB_PHASE_COPYING,
				 LOG_INFO, "drive prep started: 3 files on 1 drives"),
		  0);
	check_int(jobctl_advance(d, id, "backup-2", JOB_DRIVE_PREP, JOB_SHIPPED, JOB_PHASE_NONE, LOG_WARNING,
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
	d->notify = NULL;
	check_int(jobctl_phase(d, id, JOB_SHIPPED, JOB_PHASE_IN_TRANSIT, NULL), 0);
	d->notify = saved;
	one_turn(d);
	check_int(n_seen, 1);
}

/* The next journal datagram is expect. */
static void
check_datagram(int fd, const char *expect)
{
	char buf[4096];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	check(n > 0);
	buf[n] = '\0';
	check_str(buf, expect);
}

/* In a child with its own /run/systemd and its own database: the catalogued fields. */
static int
journal_child(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct daemon d = {0};
	_cleanup_free_ char *path = xprintf("%s/journal.db", tmpdir), *err = NULL;
	int64_t id;
	int fd;

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", "/run/systemd", "tmpfs", 0, "mode=0755") < 0 ||
	    mkdir("/run/systemd/journal", 0755) < 0)
		return TEST_SKIP;
	strcpy(sa.sun_path, "/run/systemd/journal/socket");
	check((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) >= 0);
	check(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	log_set_target(LOG_TARGET_AUTO);
	check_int(log_get_target(), LOG_TARGET_JOURNAL);
	check_int(db_open(path, &d.db, &err), 0);
	id = new_job(&d, "journal-job");

	check_int(jobctl_advance(&d, id, "journal-job", JOB_STAGING, JOB_DRIVE_PREP, JOB_PHASE_COPYING,
				 LOG_INFO, "drive prep started"),
		  0);
	check_datagram(fd, "MESSAGE=job journal-job: drive prep started\nPRIORITY=6\n"
			   "SYSLOG_IDENTIFIER=seedd\nSEEDD_JOB=journal-job\nSEEDD_STATE=drive_prep\n"
			   "MESSAGE_ID=" SEEDD_MESSAGE_JOB_STATE "\n");
	check_int(jobctl_fail(&d, id, "journal-job", JOB_DRIVE_PREP, "drive full"), 0);
	check_datagram(fd, "MESSAGE=job journal-job failed in drive_prep: drive full\nPRIORITY=3\n"
			   "SYSLOG_IDENTIFIER=seedd\nSEEDD_JOB=journal-job\nSEEDD_STATE=failed\n"
			   "MESSAGE_ID=" SEEDD_MESSAGE_JOB_FAILED "\n");
	check(recv(fd, (char[8]){0}, 8, MSG_DONTWAIT) < 0); /* one line each, no more */
	d.db = db_close(d.db);
	return 0;
}

static void
test_journal(void)
{
	pid_t pid;
	int status;

	if (geteuid() != 0 || access("/run/systemd", F_OK) < 0) {
		printf("not root or no /run/systemd: journal check skipped\n");
		return;
	}
	check((pid = fork()) >= 0);
	if (pid == 0)
		_exit(journal_child());
	check(waitpid(pid, &status, 0) == pid);
	check(WIFEXITED(status));
	if (WEXITSTATUS(status) == TEST_SKIP)
		printf("no private mount namespace: journal check skipped\n");
	else
		check_int(WEXITSTATUS(status), 0);
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
	test_journal();

	d.notify = notify_free(d.notify);
	event_base_free(d.base);
	d.db = db_close(d.db);
	(void)unlink(out_path);
	for (size_t i = 0; i < 6; i++) {
		_cleanup_free_ char *p = xprintf("%s/%s.db%s", tmpdir, i < 3 ? "seedd" : "journal",
						 (const char *[]){"", "-wal", "-shm"}[i % 3]);
		(void)unlink(p);
	}
	check(rmdir(tmpdir) == 0); /* nothing else was left */
	printf("ok jobctl\n");
	return 0;
}
