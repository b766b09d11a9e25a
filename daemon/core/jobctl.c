/*
 * The one place a job's state or phase changes (jobctl.h): store, journal,
 * notify, in that order, and only the store's success reaches the other two;
 * then the hand-off to the job's new owner, on the next loop turn.
 */
#include <errno.h>
#include <event2/event.h>
#include <string.h>

#include "alert.h"
#include "catalog-ids.h"
#include "daemon.h"
#include "db.h"
#include "jobctl.h"
#include "log.h"
#include "notify.h"
#include "purger.h"
#include "stagetab.h"
#include "util.h"

void
jobctl_changed(struct daemon *d, int64_t job_id)
{
	if (d->notify != NULL)
		notify_job(d->notify, job_id);
}

/* The stage working on the job now (before a change), NULL if none or unknown. */
static const struct stage *
owner_now(struct daemon *d, int64_t job_id)
{
	struct job_row *j = NULL;
	const struct stage *st = NULL;

	if (d->stages != NULL && db_job_get_by_id(d->db, job_id, &j) == 0)
		st = stagetab_owner_of(d->stages, j);
	job_row_free(j);
	return st;
}

/* Jobs handed to a new owner, started on the next loop turn (after the caller is done). */
struct jobctl_hand_offs {
	int64_t ids[JOBCTL_HAND_OFF_MAX];
	size_t n;
	bool overflow; /* one did not fit: every job is resumed (each resume is idempotent) */
	struct event *ev;
};

/* The new owner takes the job; one that cannot start it fails it. */
static void
hand_off_one(struct daemon *d, int64_t job_id)
{
	_cleanup_free_ char *err = NULL;
	struct job_row *j = NULL;
	int r;

	if (db_job_get_by_id(d->db, job_id, &j) < 0)
		return;
	if ((r = stagetab_resume(d->stages, j, &err)) < 0) {
		_cleanup_free_ char *why = xprintf("cannot start %s: %s",
						   stagetab_owner_of(d->stages, j)->name,
						   err ? err : strerror(-r));
		(void)jobctl_fail(d, j->id, j->name, j->state, why);
	}
	job_row_free(j);
}

static void
hand_off_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	struct jobctl_hand_offs *h = d->hand_offs;
	int64_t ids[JOBCTL_HAND_OFF_MAX];
	size_t n = h->n;
	bool overflow = h->overflow;

	memcpy(ids, h->ids, n * sizeof(ids[0]));
	h->n = 0;
	h->overflow = false;
	if (d->stopping)
		return;
	for (size_t i = 0; i < n; i++)
		hand_off_one(d, ids[i]);
	if (overflow)
		stagetab_resume_all(d->stages);
}

static void
hand_off(struct daemon *d, int64_t job_id, const struct stage *before)
{
	static const struct timeval zero = {0, 0};
	struct jobctl_hand_offs *h;
	const struct stage *after = owner_now(d, job_id);

	if (after == NULL || after == before || after->resume == NULL || d->base == NULL)
		return;
	if ((h = d->hand_offs) == NULL) {
		h = d->hand_offs = xcalloc(1, sizeof(*h));
		if ((h->ev = evtimer_new(d->base, hand_off_cb, d)) == NULL)
			fatalx("evtimer_new failed");
	}
	for (size_t i = 0; i < h->n; i++)
		if (h->ids[i] == job_id)
			return;
	if (h->n < JOBCTL_HAND_OFF_MAX)
		h->ids[h->n++] = job_id;
	else
		h->overflow = true;
	evtimer_add(h->ev, &zero);
}

void
jobctl_free(struct daemon *d)
{
	if (d->hand_offs == NULL)
		return;
	event_free(d->hand_offs->ev);
	free(d->hand_offs);
	d->hand_offs = NULL;
}

/* A store error is worth a line; a lost race (-ESTALE) or a deleted job is normal. */
static int
store_failed(struct daemon *d, int64_t job_id, const char *what, int r)
{
	if (r != -ESTALE && r != -ENOENT)
		log_error("job %lld: recording %s failed: %s", (long long)job_id, what,
			  db_errmsg(d->db));
	return r;
}

int
jobctl_fail(struct daemon *d, int64_t job_id, const char *name, enum job_state from,
	    const char *error)
{
	struct log_ctx ctx = {.job = name, .state = job_state_to_string(JOB_FAILED),
			      .message_id = SEEDD_MESSAGE_JOB_FAILED};
	_cleanup_free_ char *text = NULL;
	int r;

	if ((r = db_job_fail(d->db, job_id, from, error, daemon_now())) < 0)
		return store_failed(d, job_id, "the failure", r);
	text = xprintf("job %s failed in %s: %s", name, job_state_to_string(from),
		       error != NULL && *error != '\0' ? error : "unknown error");
	log_ctx(LOG_ERR, &ctx, "%s", text);
	alert_emit(d, ALERT_FAILED, name, ctx.message_id, text);
	jobctl_changed(d, job_id);
	return 0;
}

int
jobctl_advance(struct daemon *d, int64_t job_id, const char *name, enum job_state from,
	       enum job_state to, enum job_phase phase, int priority, const char *text)
{
	struct log_ctx ctx = {.job = name, .state = job_state_to_string(to),
			      .message_id = SEEDD_MESSAGE_JOB_STATE};
	const struct stage *before = owner_now(d, job_id);
	_cleanup_free_ char *line = NULL;
	int r;

	r = db_job_advance(d->db, job_id, from, to, job_phase_to_string(phase), text, daemon_now());
	if (r < 0)
		return store_failed(d, job_id, "the next state", r);
	if (text != NULL)
		line = xprintf("job %s: %s", name, text);
	else
		line = xprintf("job %s: %s -> %s", name, job_state_to_string(from),
			       job_state_to_string(to));
	log_ctx(priority, &ctx, "%s", line);
	if (to == JOB_IMPORTED || to == JOB_DONE)
		alert_emit(d, to == JOB_DONE ? ALERT_DONE : ALERT_IMPORTED, name, ctx.message_id,
			   line);
	jobctl_changed(d, job_id);
	hand_off(d, job_id, before);
	return 0;
}

/*
 * A job entered phase needs-drive (it was in another phase): the catalogued
 * line, once per wait, and NotifyCommand=.
 */
static void
needs_drive_note(struct daemon *d, const struct job_row *j, const char *text)
{
	struct log_ctx ctx = {.job = j->name, .state = job_state_to_string(j->state),
			      .message_id = SEEDD_MESSAGE_JOB_NEEDS_DRIVE};
	_cleanup_free_ char *line = xprintf("job %s needs another drive: %s", j->name, text);

	log_ctx(LOG_NOTICE, &ctx, "%s", line);
	alert_emit(d, ALERT_NEEDS_DRIVE, j->name, ctx.message_id, line);
}

static bool
phase_is(const char *text, enum job_phase phase)
{
	const char *name = job_phase_to_string(phase);
	size_t n = strlen(name);

	return text != NULL && strncmp(text, name, n) == 0 && (text[n] == '\0' || text[n] == ':');
}

int
jobctl_phase(struct daemon *d, int64_t job_id, enum job_state state, enum job_phase phase,
	     const char *detail)
{
	_cleanup_free_ char *text = detail ? xprintf("%s: %s", job_phase_to_string(phase), detail)
					   : xstrdup(job_phase_to_string(phase));
	const struct stage *before = owner_now(d, job_id);
	struct job_row *j = NULL;
	bool needs_drive = false;
	int r;

	if (phase == JOB_PHASE_NEEDS_DRIVE && db_job_get_by_id(d->db, job_id, &j) == 0)
		needs_drive = !phase_is(j->phase, JOB_PHASE_NEEDS_DRIVE);
	if ((r = db_job_set_phase(d->db, job_id, state, text, daemon_now())) < 0) {
		job_row_free(j);
		return store_failed(d, job_id, "the phase", r);
	}
	if (needs_drive)
		needs_drive_note(d, j, detail != NULL ? detail : text);
	job_row_free(j);
	jobctl_changed(d, job_id);
	hand_off(d, job_id, before);
	return 0;
}

int
jobctl_cancel(struct daemon *d, int64_t job_id, const char *name, enum job_state from,
	      const char *text)
{
	struct log_ctx ctx = {.job = name, .state = job_state_to_string(JOB_CANCELLED),
			      .message_id = SEEDD_MESSAGE_JOB_CANCELLED};
	int r;

	if ((r = db_job_cancel(d->db, job_id, from, text, daemon_now())) < 0)
		return store_failed(d, job_id, "the cancel", r);
	log_ctx(LOG_NOTICE, &ctx, "job %s cancelled in %s: %s", name, job_state_to_string(from),
		text);
	jobctl_changed(d, job_id);
	return 0;
}

int
jobctl_retry(struct daemon *d, int64_t job_id, const char *name, bool skip_refused,
	     enum job_state *ret_to)
{
	struct log_ctx ctx = {.job = name, .message_id = SEEDD_MESSAGE_JOB_STATE};
	int r;

	if ((r = db_job_retry_skipping(d->db, job_id, daemon_now(), skip_refused, ret_to)) < 0)
		return store_failed(d, job_id, "the retry", r);
	ctx.state = job_state_to_string(*ret_to);
	log_ctx(LOG_NOTICE, &ctx, "job %s retried: back to %s%s", name,
		job_state_to_string(*ret_to),
		skip_refused ? ", without the names Azure would refuse" : "");
	jobctl_changed(d, job_id);
	hand_off(d, job_id, NULL);
	return 0;
}

int
jobctl_create(struct daemon *d, const char *name, const char *staging, const char *container,
	      const char *excludes, int64_t *ret_id)
{
	struct log_ctx ctx = {.job = name, .state = job_state_to_string(JOB_STAGING),
			      .message_id = SEEDD_MESSAGE_JOB_CREATED};
	int r;

	if ((r = db_job_create_excluding(d->db, name, staging, container, excludes, daemon_now(),
					 ret_id)) < 0) {
		if (r != -EEXIST)
			log_error("creating job %s: %s", name, db_errmsg(d->db));
		return r;
	}
	log_ctx(LOG_INFO, &ctx, "job %s created for staging tree %s", name, staging);
	jobctl_changed(d, *ret_id);
	hand_off(d, *ret_id, NULL);
	return 0;
}

int
jobctl_purge(struct daemon *d, int64_t job_id, const char *name, enum job_state from)
{
	struct log_ctx ctx = {.job = name, .state = job_state_to_string(from)};
	int r;

	if (job_state_is_active(from))
		return -ESTALE;
	if ((r = db_job_purge(d->db, job_id, daemon_now())) < 0)
		return store_failed(d, job_id, "the purge", r);
	log_ctx(LOG_NOTICE, &ctx, "job %s (%s) purged: its records leave the database",
		name, job_state_to_string(from));
	purger_kick(d->purger);
	jobctl_changed(d, job_id);
	return 0;
}
