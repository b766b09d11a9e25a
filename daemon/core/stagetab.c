/*
 * The stage table (stagetab.h). A job's owner is found from its state and
 * the kind of its phase; hand-offs are queued and run on the next loop turn,
 * after the caller that changed the job has finished with its own objects.
 */
#include <errno.h>
#include <event2/event.h>
#include <string.h>

#include "daemon.h"
#include "db.h"
#include "jobctl.h"
#include "log.h"
#include "stagetab.h"
#include "util.h"
#include "worker.h"

#define HAND_OFF_MAX 64 /* jobs handed off in one loop turn; more wait a turn */

struct stagetab {
	struct daemon *d;
	const struct stage *stages[STAGE_MAX];
	size_t n;
	const struct stage *by_msg[_MSG_KIND_MAX];
	int64_t pending[HAND_OFF_MAX];
	size_t n_pending;
	bool overflow; /* a hand-off did not fit: rescan every job next turn */
	struct event *ev_hand_off;
};

static void hand_off_cb(evutil_socket_t fd, short what, void *arg);

struct stagetab *
stagetab_new(struct daemon *d)
{
	struct stagetab *t = xcalloc(1, sizeof(*t));

	t->d = d;
	if (d->base != NULL && (t->ev_hand_off = evtimer_new(d->base, hand_off_cb, t)) == NULL)
		fatalx("evtimer_new failed");
	return t;
}

struct stagetab *
stagetab_free(struct stagetab *t)
{
	if (t == NULL)
		return NULL;
	if (t->ev_hand_off != NULL)
		event_free(t->ev_hand_off);
	free(t);
	return NULL;
}

static bool
claims(const struct stage *st, enum job_state s, enum job_phase p)
{
	if (s < 0 || p < 0)
		return false;
	for (size_t i = 0; i < STAGE_CLAIMS_MAX; i++)
		if ((st->claims[i].states & STAGE_STATE(s)) && (st->claims[i].phases & STAGE_PHASE(p)))
			return true;
	return false;
}

static bool
overlaps(const struct stage *a, const struct stage *b)
{
	for (int s = 0; s < _JOB_STATE_MAX; s++)
		for (int p = 0; p < _JOB_PHASE_MAX; p++)
			if (claims(a, s, p) && claims(b, s, p))
				return true;
	return false;
}

int
stagetab_add(struct stagetab *t, const struct stage *st)
{
	if (t->n == STAGE_MAX)
		return -ENOSPC;
	for (size_t i = 0; i < t->n; i++)
		if (overlaps(t->stages[i], st))
			return -EEXIST;
	if (st->handle_msg != NULL)
		for (int k = st->msg_first; k <= (int)st->msg_last; k++) {
			if (t->by_msg[k] != NULL)
				return -EEXIST;
			t->by_msg[k] = st;
		}
	t->stages[t->n++] = st;
	return 0;
}

const struct stage *
stagetab_owner(const struct stagetab *t, enum job_state s, enum job_phase p)
{
	for (size_t i = 0; i < t->n; i++)
		if (claims(t->stages[i], s, p))
			return t->stages[i];
	return NULL;
}

const struct stage *
stagetab_owner_of(const struct stagetab *t, const struct job_row *j)
{
	return stagetab_owner(t, j->state, job_phase_from_text(j->phase));
}

int
stagetab_start(struct stagetab *t, char **ret_err)
{
	int r;

	for (size_t i = 0; i < t->n; i++)
		if (t->stages[i]->start != NULL && (r = t->stages[i]->start(t->d, ret_err)) < 0)
			return r;
	return 0;
}

static int
resume_one(struct stagetab *t, const struct job_row *j, char **ret_err)
{
	const struct stage *st = stagetab_owner_of(t, j);

	if (st == NULL || st->resume == NULL)
		return 0;
	return st->resume(t->d, j, ret_err);
}

/* At start or reload: a job that cannot resume stays as it is (a restart tries again). */
static void
resume_logged(struct stagetab *t, const struct job_row *j)
{
	_cleanup_free_ char *err = NULL;
	const struct stage *st = stagetab_owner_of(t, j);
	int r;

	if (st == NULL || st->resume == NULL)
		return;
	if ((r = st->resume(t->d, j, &err)) < 0)
		log_error("job %s: cannot resume %s: %s", j->name, job_state_to_string(j->state),
			  err ? err : strerror(-r));
	else if (j->state != JOB_DONE && j->state != JOB_FAILED && j->state != JOB_CANCELLED)
		log_info("job %s: resuming %s (%s)", j->name, job_state_to_string(j->state),
			 st->name);
}

static void
resume_where(struct stagetab *t, bool (*pick)(const struct stage *st))
{
	struct job_row **rows = NULL;
	size_t n = 0;

	if (db_job_list(t->d->db, &rows, &n) < 0) {
		log_error("reading jobs to resume: %s", db_errmsg(t->d->db));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct stage *st = stagetab_owner_of(t, rows[i]);
		if (st != NULL && (pick == NULL || pick(st)))
			resume_logged(t, rows[i]);
	}
	job_rows_free(rows, n);
}

void
stagetab_resume_all(struct stagetab *t)
{
	resume_where(t, NULL);
}

int
stagetab_resume_job(struct stagetab *t, int64_t job_id, char **ret_err)
{
	struct job_row *j = NULL;
	int r;

	if ((r = db_job_get_by_id(t->d->db, job_id, &j)) < 0)
		return r;
	r = resume_one(t, j, ret_err);
	job_row_free(j);
	return r;
}

void
stagetab_hand_off(struct stagetab *t, int64_t job_id, const struct stage *before)
{
	static const struct timeval zero = {0, 0};
	struct job_row *j = NULL;
	const struct stage *after;

	if (db_job_get_by_id(t->d->db, job_id, &j) < 0)
		return;
	after = stagetab_owner_of(t, j);
	job_row_free(j);
	if (after == NULL || after == before || after->resume == NULL)
		return;
	for (size_t i = 0; i < t->n_pending; i++)
		if (t->pending[i] == job_id)
			return;
	if (t->n_pending < HAND_OFF_MAX)
		t->pending[t->n_pending++] = job_id;
	else
		t->overflow = true;
	if (t->ev_hand_off != NULL)
		evtimer_add(t->ev_hand_off, &zero);
}

/* The new owner takes the job; one that cannot start it fails it. */
static void
hand_off_one(struct stagetab *t, int64_t job_id)
{
	_cleanup_free_ char *err = NULL;
	struct job_row *j = NULL;
	int r;

	if (db_job_get_by_id(t->d->db, job_id, &j) < 0)
		return;
	if ((r = resume_one(t, j, &err)) < 0) {
		_cleanup_free_ char *why = xprintf("cannot start %s: %s",
						   stagetab_owner_of(t, j)->name,
						   err ? err : strerror(-r));
		(void)jobctl_fail(t->d, j->id, j->name, j->state, why);
	}
	job_row_free(j);
}

static void
hand_off_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stagetab *t = arg;
	int64_t ids[HAND_OFF_MAX];
	size_t n = t->n_pending;
	bool overflow = t->overflow;

	memcpy(ids, t->pending, n * sizeof(ids[0]));
	t->n_pending = 0;
	t->overflow = false;
	if (t->d->stopping)
		return;
	for (size_t i = 0; i < n; i++)
		hand_off_one(t, ids[i]);
	if (overflow)
		resume_where(t, NULL); /* every resume is idempotent */
}

void
stagetab_stop_job(struct stagetab *t, int64_t job_id)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->stages[i]->stop != NULL)
			t->stages[i]->stop(t->d, job_id);
}

void
stagetab_stop_all(struct stagetab *t)
{
	for (size_t i = t->n; i-- > 0;)
		if (t->stages[i]->stop_all != NULL)
			t->stages[i]->stop_all(t->d);
}

static bool
restarted(const struct stage *st)
{
	return st->restart_on_reload;
}

void
stagetab_reload(struct stagetab *t)
{
	for (size_t i = t->n; i-- > 0;)
		if (t->stages[i]->restart_on_reload && t->stages[i]->stop_all != NULL)
			t->stages[i]->stop_all(t->d);
	for (size_t i = 0; i < t->n; i++) {
		_cleanup_free_ char *err = NULL;
		const struct stage *st = t->stages[i];
		if (st->restart_on_reload && st->start != NULL && st->start(t->d, &err) < 0) {
			log_error("%s cannot be set up with the new configuration: %s; its work waits",
				  st->name, err ? err : "unknown error");
			return;
		}
	}
	resume_where(t, restarted);
}

bool
stagetab_healthy(struct stagetab *t, const char **ret_who, const char **ret_what)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct stage *st = t->stages[i];
		*ret_what = NULL;
		if (st->healthy != NULL && !st->healthy(t->d, STAGE_HEARTBEAT_MAX, ret_what)) {
			*ret_who = st->name;
			return false;
		}
	}
	return true;
}

void
stagetab_handle_msg(struct worker_msg *m, void *userdata)
{
	struct stagetab *t = userdata;
	const struct stage *st = m->kind >= 0 && m->kind < _MSG_KIND_MAX ? t->by_msg[m->kind] : NULL;

	if (st == NULL)
		fatalx("worker message of kind %d has no stage", m->kind);
	st->handle_msg(t->d, m);
}
