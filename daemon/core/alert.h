/*
 * NotifyCommand= (seedd.conf(5)): an executable run on catalogued job events,
 * for sites without journal alerting. No shell: argv is the path alone, and
 * the environment is built from nothing (SEEDD_JOB, SEEDD_EVENT, MESSAGE_ID,
 * SEEDD_TEXT and a minimal PATH), so nothing of seedd's own, no credential,
 * reaches it. A command runs at most NotifyTimeoutSec= and is then killed
 * with its process group; at most ALERT_RUNNING_MAX run at once, then up to
 * ALERT_QUEUE_MAX wait, and further events are dropped with a journal line.
 * Loop thread only; nothing here waits for a child.
 */
#ifndef SEEDD_ALERT_H
#define SEEDD_ALERT_H

#define ALERT_RUNNING_MAX 4
#define ALERT_QUEUE_MAX 32
#define ALERT_TEXT_MAX 1024 /* SEEDD_TEXT is cut to this many bytes */
#define ALERT_PATH "PATH=/usr/local/bin:/usr/bin:/bin"

struct daemon;

enum alert_event {
	ALERT_DEADLINE_NEAR, /* "deadline-near" */
	ALERT_FAILED,        /* "failed" */
	ALERT_NEEDS_DRIVE,   /* "needs-drive" */
	ALERT_IMPORTED,      /* "imported" */
	ALERT_DONE,          /* "done" */
	_ALERT_EVENT_MAX,
};

/* SEEDD_EVENT's value for ev. */
const char *alert_event_name(enum alert_event ev);

/*
 * Run NotifyCommand= for an event of job (its journal line's MESSAGE_ID and
 * text), now or when a slot frees; nothing if the key is unset.
 */
void alert_emit(struct daemon *d, enum alert_event ev, const char *job, const char *message_id,
		const char *text);

/*
 * Shutdown: forget the commands (running ones are not waited for and run
 * on to their end; systemd's stop takes them with the service).
 */
void alert_free(struct daemon *d);

#endif
