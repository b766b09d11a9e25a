/*
 * The stage table (stagetab.h). A job's owner is found from its state and
 * the kind of its phase. The table calls nothing above it but the stages'
 * own entries; jobctl decides when a job changes hands.
 */
#include <errno.h>
#include <string.h>

#include "daemon.h"
#include "db.h"
#include "log.h"
#include "stagetab.h"
#include "util.h"
#include "worker.h"

struct stagetab {
	struct daemon *d;
	const struct stage *stages[STAGE_MAX];
	size_t n;
	const struct stage *by_msg[_MSG_KIND_MAX];
};

struct stagetab *
stagetab_new(struct daemon *d)
{
	struct stagetab *t = xcalloc(1, sizeof(*t));

	t->d = d;
	return t;
}

struct stagetab *
stagetab_free(struct stagetab *t)
{
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

int
stagetab_resume(struct stagetab *t, const struct job_row *j, char **ret_err)
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
	r = stagetab_resume(t, j, ret_err);
	job_row_free(j);
	return r;
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
	for (size_t i = 0; i < t->n; i++)
		if (t->stages[i]->reconfigure != NULL)
			t->stages[i]->reconfigure(t->d);
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
