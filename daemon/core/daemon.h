/*
 * The daemon's one shared object. Owned and touched only by the loop thread;
 * every loop callback gets it (or an object pointing to it) as userdata.
 */
#ifndef SEEDD_DAEMON_H
#define SEEDD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

struct event_base;
struct event;
struct config;
struct db;
struct server;
struct worker_queue;
struct worker_msg;
struct indexer;
struct prep;
struct azure;
struct azjob;
struct arm_call;
struct post;
struct blob_client;
struct alerts;

struct daemon {
	struct event_base *base;
	struct config *config;
	char *config_path; /* --config, or NULL for the default path */
	char *state_dir;
	char *socket_path; /* --socket, or NULL */
	struct db *db;
	struct checkpointer *checkpointer; /* copies the database's log on a thread of its own */
	struct purger *purger; /* deletes the rows of purged jobs on a thread of its own */
	struct server *server;
	struct notify *notify; /* job changes, coalesced per loop turn; Watch observes */
	struct stagetab *stages; /* who works on a job in each state and phase */
	struct jobctl_hand_offs *hand_offs; /* jobs to start with their new owner next turn */
	struct alerts *alerts; /* NotifyCommand= runs (alert.c); NULL until the first */
	void (*stop_accepting)(struct daemon *d); /* installed by main: the socket stops accepting */
	struct worker_queue *queue;              /* results from worker threads */
	LIST_HEAD(indexer_list, indexer) indexers; /* running staging scans */
	LIST_HEAD(prep_list, prep) preps;          /* jobs in drive prep */
	struct prep_list preps_stopping;           /* cancelled or failed: threads winding down */
	struct azure *azure;                       /* NULL unless Azure is configured */
	LIST_HEAD(azjob_list, azjob) azjobs;       /* jobs with Azure work in flight */
	struct arm_call *azure_list;               /* the poll's list call */
	struct event *ev_poll, *ev_deadline;
	struct blob_client *blob;                  /* NULL unless [Storage] is configured */
	LIST_HEAD(post_list, post) posts;          /* jobs after the import */
	LIST_HEAD(probe_list, probe) probes;       /* AddDrive probes on threads */
	LIST_HEAD(planner_list, planner) planners; /* PlanJob planners on threads */
	LIST_HEAD(reporter_list, reporter) reporters; /* reports built on threads */
	LIST_HEAD(doctor_list, doctor) doctors;       /* Doctor runs (seedctl doctor) */
	struct event *ev_metrics;
	bool metrics_failed;

	struct event *ev_term, *ev_int, *ev_hup, *ev_watchdog;
	uint64_t watchdog_usec;
	int64_t started; /* CLOCK_MONOTONIC seconds */
	bool stopping;
	int exit_status; /* seedd's exit status once the loop ends: 0, or 1 after a store fault */
};

/* Wall clock, UNIX seconds. */
int64_t daemon_now(void);
/* Seconds since start. */
int64_t daemon_uptime(const struct daemon *d);

/* Set up signals, the watchdog timer and tell systemd we are ready (listening: for the status). */
int daemon_start(struct daemon *d, const char *listening);
/* Stop accepting, tell systemd, leave the loop. */
void daemon_stop(struct daemon *d, const char *why);
/*
 * The store's fault hook (db_set_fault_hook, arg: the daemon): the database
 * cannot be written (file system full or read-only, I/O error). Says so once,
 * naming the state directory and the way out, and stops seedd with exit
 * status 1; what was committed stands and every job resumes at the next start.
 */
void daemon_store_fault(void *arg, int err, const char *msg);
/*
 * The same for a worker thread's own connection (db_set_default_fault_hook):
 * the fault goes to the loop as a message, where daemon_store_fault() runs.
 */
void daemon_store_fault_worker(void *arg, int err, const char *msg);
/* The loop's side of daemon_store_fault_worker()'s message. */
void daemon_store_fault_msg(struct daemon *d, struct worker_msg *m);
/* Re-read the configuration; keep the old one on error. */
void daemon_reload(struct daemon *d);
void daemon_free_events(struct daemon *d);

/* One line of what the daemon is doing, for `systemctl status` (STATUS=). */
void daemon_status(struct daemon *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
