/*
 * NotifyCommand= runner (alert.h). Loop thread. A command is started with
 * posix_spawn (glibc clones with CLONE_VFORK: the loop waits only until the
 * child has exec'd, never for it to run), in a process group of its own so a
 * timeout kills whatever it started too. Its end is seen through a pidfd on
 * the loop and reaped with waitpid(WNOHANG), so no SIGCHLD handler and no
 * blocking wait; where pidfd_open is missing, a short timer polls instead.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alert.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "util.h"

#define ALERT_POLL_USEC 200000 /* the reaping poll without pidfd */

struct alert {
	TAILQ_ENTRY(alert) link;
	struct alerts *owner;
	enum alert_event ev;
	char *job, *message_id, *text;
	char *path;        /* NotifyCommand= when it started */
	unsigned timeout;  /* NotifyTimeoutSec= when it started */
	pid_t pid;         /* 0: waiting in the queue */
	int pidfd;         /* -1: polled */
	struct event *ev_exit, *ev_timeout;
	bool killed;       /* by the timeout */
};

TAILQ_HEAD(alert_list, alert);

struct alerts {
	struct daemon *d;
	struct alert_list running, queued;
	size_t n_running, n_queued;
};

static const char *const event_names[] = {
	[ALERT_DEADLINE_NEAR] = "deadline-near",
	[ALERT_FAILED] = "failed",
	[ALERT_NEEDS_DRIVE] = "needs-drive",
	[ALERT_IMPORTED] = "imported",
	[ALERT_DONE] = "done",
};

const char *
alert_event_name(enum alert_event ev)
{
	return (size_t)ev < ELEMENTSOF(event_names) ? event_names[ev] : NULL;
}

static void
alert_free_one(struct alert *a)
{
	if (a == NULL)
		return;
	if (a->ev_exit != NULL)
		event_free(a->ev_exit);
	if (a->ev_timeout != NULL)
		event_free(a->ev_timeout);
	if (a->pidfd >= 0)
		close(a->pidfd);
	free(a->job);
	free(a->message_id);
	free(a->text);
	free(a->path);
	free(a);
}

/* "KEY=value" for the child's environment; value may be NULL (empty). */
static char *
env_entry(const char *key, const char *value)
{
	return xprintf("%s=%s", key, value != NULL ? value : "");
}

/*
 * posix_spawn the command: stdin and stdout on /dev/null, stderr seedd's
 * (the journal, under systemd), signals at their defaults and unblocked, a
 * process group of its own. Every other fd of seedd is O_CLOEXEC.
 */
static int
alert_spawn(struct alert *a)
{
	char *argv[] = {a->path, NULL};
	char *envp[] = {
	    xstrdup(ALERT_PATH),
	    env_entry("SEEDD_JOB", a->job),
	    env_entry("SEEDD_EVENT", alert_event_name(a->ev)),
	    env_entry("MESSAGE_ID", a->message_id),
	    env_entry("SEEDD_TEXT", a->text),
	    NULL,
	};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int r;

	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
						POSIX_SPAWN_SETPGROUP);
	r = -posix_spawn(&a->pid, a->path, &fa, &attr, argv, envp);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	for (size_t i = 0; envp[i] != NULL; i++)
		free(envp[i]);
	if (r < 0)
		a->pid = 0;
	return r;
}

static void alert_start_next(struct alerts *as);

/* Say how the command ended: only a failure is worth more than a debug line. */
static void
alert_log_end(const struct alert *a, int status)
{
	const char *ev = alert_event_name(a->ev);

	if (a->killed)
		log_warning("NotifyCommand %s (%s, job %s) killed after %u s (NotifyTimeoutSec=)",
			    a->path, ev, a->job, a->timeout);
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		log_debug("NotifyCommand %s (%s, job %s) done", a->path, ev, a->job);
	else if (WIFEXITED(status))
		log_warning("NotifyCommand %s (%s, job %s) failed with exit status %d", a->path, ev,
			    a->job, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		log_warning("NotifyCommand %s (%s, job %s) killed by signal %s", a->path, ev,
			    a->job, strsignal(WTERMSIG(status)));
}

/* The pidfd is readable (or the poll timer fired): reap the child if it ended. */
static void
alert_exit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct alert *a = arg;
	struct alerts *as = a->owner;
	int status = 0;
	pid_t r;

	do
		r = waitpid(a->pid, &status, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return; /* still running (a poll tick) */
	if (r < 0)
		log_warning("NotifyCommand %s: waiting for pid %d: %s", a->path, (int)a->pid,
			    strerror(errno));
	else
		alert_log_end(a, status);
	TAILQ_REMOVE(&as->running, a, link);
	as->n_running--;
	alert_free_one(a);
	alert_start_next(as);
}

static void
alert_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct alert *a = arg;

	a->killed = true;
	/* The group first (whatever the command started), then the command itself. */
	(void)kill(-a->pid, SIGKILL);
	(void)kill(a->pid, SIGKILL);
}

/* Watch for the end of a started command, and arm its timeout. */
static void
alert_watch(struct alerts *as, struct alert *a)
{
	struct event_base *base = as->d->base;
	struct timeval poll = {0, ALERT_POLL_USEC}, limit = {(time_t)a->timeout, 0};

	a->pidfd = (int)syscall(SYS_pidfd_open, a->pid, 0);
	if (a->pidfd >= 0) {
		a->ev_exit = event_new(base, a->pidfd, EV_READ | EV_PERSIST, alert_exit_cb, a);
		event_add(a->ev_exit, NULL);
	} else {
		a->ev_exit = event_new(base, -1, EV_PERSIST, alert_exit_cb, a);
		event_add(a->ev_exit, &poll);
	}
	a->ev_timeout = evtimer_new(base, alert_timeout_cb, a);
	evtimer_add(a->ev_timeout, &limit);
}

/* Start a (taking the configuration of now); false if it could not start (and is freed). */
static bool
alert_start(struct alerts *as, struct alert *a)
{
	const struct config *c = as->d->config;
	int r;

	if (c->notify_command == NULL) {
		alert_free_one(a); /* unset by a reload while it waited */
		return false;
	}
	a->path = xstrdup(c->notify_command);
	a->timeout = c->notify_timeout_sec;
	if ((r = alert_spawn(a)) < 0) {
		log_warning("NotifyCommand %s (%s, job %s) could not be started: %s", a->path,
			    alert_event_name(a->ev), a->job, strerror(-r));
		alert_free_one(a);
		return false;
	}
	alert_watch(as, a);
	TAILQ_INSERT_TAIL(&as->running, a, link);
	as->n_running++;
	return true;
}

static void
alert_start_next(struct alerts *as)
{
	struct alert *a;

	while (as->n_running < ALERT_RUNNING_MAX && (a = TAILQ_FIRST(&as->queued)) != NULL) {
		TAILQ_REMOVE(&as->queued, a, link);
		as->n_queued--;
		(void)alert_start(as, a);
	}
}

static struct alerts *
alerts_get(struct daemon *d)
{
	if (d->alerts == NULL) {
		d->alerts = xcalloc(1, sizeof(*d->alerts));
		d->alerts->d = d;
		TAILQ_INIT(&d->alerts->running);
		TAILQ_INIT(&d->alerts->queued);
	}
	return d->alerts;
}

void
alert_emit(struct daemon *d, enum alert_event ev, const char *job, const char *message_id,
	   const char *text)
{
	struct alerts *as;
	struct alert *a;

	if (d->config == NULL || d->config->notify_command == NULL || d->base == NULL ||
	    d->stopping)
		return;
	as = alerts_get(d);
	if (as->n_running >= ALERT_RUNNING_MAX && as->n_queued >= ALERT_QUEUE_MAX) {
		log_warning("NotifyCommand: %d running and %d waiting; the %s event of job %s is "
			    "dropped",
			    ALERT_RUNNING_MAX, ALERT_QUEUE_MAX, alert_event_name(ev), job);
		return;
	}
	a = xcalloc(1, sizeof(*a));
	a->owner = as;
	a->ev = ev;
	a->pidfd = -1;
	a->job = xstrdup(job);
	a->message_id = xstrdup(message_id);
	a->text = xstrndup(text != NULL ? text : "", ALERT_TEXT_MAX);
	if (as->n_running < ALERT_RUNNING_MAX)
		(void)alert_start(as, a);
	else {
		TAILQ_INSERT_TAIL(&as->queued, a, link);
		as->n_queued++;
	}
}

void
alert_free(struct daemon *d)
{
	struct alerts *as = d->alerts;
	struct alert *a;

	if (as == NULL)
		return;
	if (as->n_running + as->n_queued > 0)
		log_info("NotifyCommand: %zu still running, %zu not started at shutdown",
			 as->n_running, as->n_queued);
	while ((a = TAILQ_FIRST(&as->running)) != NULL) {
		TAILQ_REMOVE(&as->running, a, link);
		alert_free_one(a);
	}
	while ((a = TAILQ_FIRST(&as->queued)) != NULL) {
		TAILQ_REMOVE(&as->queued, a, link);
		alert_free_one(a);
	}
	free(as);
	d->alerts = NULL;
}
