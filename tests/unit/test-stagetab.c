/*
 * core stagetab, the stage table, on a real database and event loop with
 * stages of the test's own: claims that overlap are refused; the owner of
 * every (state, phase) is the one that claims it; a transition or a phase
 * change that moves a job to another owner starts that owner once, on the
 * next loop turn (not while the caller still holds its objects), and one
 * that stays with its owner starts nothing; a new owner that cannot start
 * fails the job; cancel stops the job in every stage; the watchdog's answer
 * names the stage whose worker is stuck; worker messages reach the stage
 * of their kind. Then seedd's own table: no two stages claim one pair, and
 * the hand-offs of a job's life go where DESIGN.md says.
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
#include "stage.h"
#include "stagetab.h"
#include "test.h"
#include "util.h"
#include "worker.h"

static char tmpdir[] = "/tmp/test-stagetab.XXXXXX";

struct counts {
	int resumed, stopped, stopped_all, msgs;
	int64_t last_job;
	bool fail_resume, sick;
};
static struct counts ca, cb;

static int
resume_a(struct daemon *d, const struct job_row *j, char **ret_err)
{
	ca.resumed++;
	ca.last_job = j->id;
	return 0;
}

static int
resume_b(struct daemon *d, const struct job_row *j, char **ret_err)
{
	cb.resumed++;
	cb.last_job = j->id;
	if (cb.fail_resume) {
		*ret_err = xstrdup("no drive thread");
		return -EAGAIN;
	}
	return 0;
}

static void stop_a(struct daemon *d, int64_t id) { ca.stopped++; }
static void stop_b(struct daemon *d, int64_t id) { cb.stopped++; }
static void stop_all_a(struct daemon *d) { ca.stopped_all++; }
static void stop_all_b(struct daemon *d) { cb.stopped_all++; }
static void msg_b(struct daemon *d, struct worker_msg *m) { cb.msgs++; }

static bool
healthy_b(struct daemon *d, int64_t max_age, const char **ret_what)
{
	*ret_what = "a copier";
	return !cb.sick;
}

/* A: staging, indexing or no phase. B: drive_prep in any phase. */
static const struct stage stage_a = {
	.name = "A",
	.claims = {{STAGE_STATE(JOB_STAGING),
		    STAGE_PHASE(JOB_PHASE_NONE) | STAGE_PHASE(JOB_PHASE_INDEXING)}},
	.resume = resume_a,
	.stop = stop_a,
	.stop_all = stop_all_a,
};
static const struct stage stage_b = {
	.name = "B",
	.claims = {{STAGE_STATE(JOB_DRIVE_PREP), STAGE_ANY_PHASE}},
	.resume = resume_b,
	.stop = stop_b,
	.stop_all = stop_all_b,
	.healthy = healthy_b,
	.handle_msg = msg_b,
	.msg_first = MSG_PREP_FILE,
	.msg_last = MSG_PREP_EXITED,
};
/* Overlaps A at (staging, indexing). */
static const struct stage stage_c = {
	.name = "C",
	.claims = {{STAGE_STATE(JOB_STAGING), STAGE_PHASE(JOB_PHASE_INDEXING)}},
};

static void
one_turn(struct daemon *d)
{
	check(event_base_loop(d->base, EVLOOP_ONCE | EVLOOP_NONBLOCK) >= 0);
}

static int64_t
new_job(struct daemon *d, const char *name)
{
	int64_t id = 0;

	check_int(db_job_create(d->db, name, "/srv/staging", "vault", daemon_now(), &id), 0);
	return id;
}

static enum job_state
state_of(struct daemon *d, int64_t id)
{
	struct job_row *j = NULL;
	enum job_state s;

	check_int(db_job_get_by_id(d->db, id, &j), 0);
	s = j->state;
	job_row_free(j);
	return s;
}

static void
test_claims(struct daemon *d)
{
	check_int(stagetab_add(d->stages, &stage_a), 0);
	check_int(stagetab_add(d->stages, &stage_b), 0);
	check_int(stagetab_add(d->stages, &stage_c), -EEXIST);
	check(stagetab_owner(d->stages, JOB_STAGING, JOB_PHASE_NONE) == &stage_a);
	check(stagetab_owner(d->stages, JOB_STAGING, JOB_PHASE_INDEXING) == &stage_a);
	check(stagetab_owner(d->stages, JOB_STAGING, JOB_PHASE_INDEXED) == NULL);
	check(stagetab_owner(d->stages, JOB_DRIVE_PREP, JOB_PHASE_AWAITING_AZURE) == &stage_b);
	check(stagetab_owner(d->stages, JOB_SHIPPED, JOB_PHASE_IN_TRANSIT) == NULL);
	check(stagetab_owner(d->stages, JOB_DRIVE_PREP, _JOB_PHASE_INVALID) == NULL);
}

/* indexed (nobody) -> drive_prep (B): B starts once, on the next turn. */
static void
test_hand_off(struct daemon *d)
{
	int64_t id = new_job(d, "hand-off");

	check_int(jobctl_phase(d, id, JOB_STAGING, JOB_PHASE_INDEXED, NULL), 0);
	one_turn(d);
	check_int(ca.resumed + cb.resumed, 0); /* A owned it before: no new owner */
	check_int(jobctl_advance(d, id, "hand-off", JOB_STAGING, JOB_DRIVE_PREP, JOB_PHASE_COPYING,
				 LOG_INFO, NULL),
		  0);
	check_int(cb.resumed, 0); /* not while the caller holds its objects */
	one_turn(d);
	check_int(cb.resumed, 1);
	check_int(cb.last_job, id);
	/* Within B's own phases nothing starts again. */
	check_int(jobctl_phase(d, id, JOB_DRIVE_PREP, JOB_PHASE_WRITING_MANIFESTS, NULL), 0);
	check_int(jobctl_phase(d, id, JOB_DRIVE_PREP, JOB_PHASE_NEEDS_DRIVE, "2 files"), 0);
	one_turn(d);
	check_int(cb.resumed, 1);
	check_int(ca.resumed, 0);
}

/* A new owner that cannot start fails the job, naming the stage and why. */
static void
test_hand_off_fails(struct daemon *d)
{
	int64_t id = new_job(d, "no-start");
	struct job_row *j = NULL;

	cb.fail_resume = true;
	check_int(jobctl_phase(d, id, JOB_STAGING, JOB_PHASE_INDEXED, NULL), 0);
	check_int(jobctl_advance(d, id, "no-start", JOB_STAGING, JOB_DRIVE_PREP, JOB_PHASE_COPYING,
				 LOG_INFO, NULL),
		  0);
	one_turn(d);
	cb.fail_resume = false;
	check_int(state_of(d, id), JOB_FAILED);
	check_int(db_job_get_by_id(d->db, id, &j), 0);
	check_str(j->error, "cannot start B: no drive thread");
	job_row_free(j);
}

/* Create and retry hand the job to its owner too. */
static void
test_create_and_retry(struct daemon *d)
{
	enum job_state to;
	int64_t id;

	ca.resumed = 0;
	check_int(jobctl_create(d, "created", "/srv/staging", "vault", NULL, &id), 0);
	one_turn(d);
	check_int(ca.resumed, 1);
	check_int(ca.last_job, id);
	check_int(jobctl_fail(d, id, "created", JOB_STAGING, "disk gone"), 0);
	one_turn(d);
	check_int(ca.resumed, 1); /* failed has no owner */
	check_int(jobctl_retry(d, id, "created", false, &to), 0);
	check_int(to, JOB_STAGING);
	one_turn(d);
	check_int(ca.resumed, 2);
}

static void
test_stop_health_msgs(struct daemon *d)
{
	struct worker_msg m = {.kind = MSG_PREP_CHECKPOINT};
	const char *who = NULL, *what = NULL;

	stagetab_stop_job(d->stages, 42);
	check_int(ca.stopped, 1);
	check_int(cb.stopped, 1);
	check(stagetab_healthy(d->stages, &who, &what));
	cb.sick = true;
	check(!stagetab_healthy(d->stages, &who, &what));
	check_str(who, "B");
	check_str(what, "a copier");
	cb.sick = false;
	stagetab_handle_msg(&m, d->stages);
	check_int(cb.msgs, 1);
	stagetab_stop_all(d->stages);
	check_int(ca.stopped_all, 1);
	check_int(cb.stopped_all, 1);
}

/* seedd's own table: registers, and owns each step of a job's life as designed. */
static void
test_seedd_table(struct daemon *d)
{
	struct stagetab *t = stagetab_new(d);
	static const struct {
		enum job_state s;
		enum job_phase p;
		const char *owner;
	} want[] = {
		{JOB_STAGING, JOB_PHASE_NONE, "indexing"},
		{JOB_STAGING, JOB_PHASE_INDEXING, "indexing"},
		{JOB_STAGING, JOB_PHASE_INDEXED, NULL},
		{JOB_DRIVE_PREP, JOB_PHASE_COPYING, "drive prep"},
		{JOB_DRIVE_PREP, JOB_PHASE_WRITING_MANIFESTS, "drive prep"},
		{JOB_DRIVE_PREP, JOB_PHASE_NEEDS_DRIVE, "drive prep"},
		{JOB_DRIVE_PREP, JOB_PHASE_AWAITING_AZURE, "Azure"},
		{JOB_DRIVE_PREP, JOB_PHASE_AWAITING_TRACKING, "Azure"},
		{JOB_DRIVE_PREP, JOB_PHASE_SHIPPING, "Azure"},
		{JOB_DRIVE_PREP, JOB_PHASE_CANCELLING, "Azure"},
		{JOB_SHIPPED, JOB_PHASE_IN_TRANSIT, "Azure"},
		{JOB_SHIPPED, JOB_PHASE_AZURE, "Azure"},
		{JOB_IMPORTED, JOB_PHASE_RECONCILE_PENDING, "after the import"},
		{JOB_VAULT_COPY, JOB_PHASE_COPYING_TO_VAULT, "after the import"},
		{JOB_CLEANUP, JOB_PHASE_DELETING_STAGING_FILES, "after the import"},
		{JOB_DONE, JOB_PHASE_DONE, "report"},
		{JOB_FAILED, JOB_PHASE_NONE, NULL},
		{JOB_CANCELLED, JOB_PHASE_NONE, NULL},
	};

	check_int(stages_register(t), 0);
	for (size_t i = 0; i < ELEMENTSOF(want); i++) {
		const struct stage *st = stagetab_owner(t, want[i].s, want[i].p);
		if (want[i].owner == NULL)
			check(st == NULL);
		else {
			check(st != NULL);
			check_str(st->name, want[i].owner);
		}
	}
	/* Every phase's wire name reads back as its kind. */
	for (int p = 0; p < _JOB_PHASE_MAX; p++)
		check_int(job_phase_from_text(job_phase_to_string(p)), p);
	check_int(job_phase_from_text("needs-drive: 3 files, 1 GiB"), JOB_PHASE_NEEDS_DRIVE);
	check_int(job_phase_from_text("azure: Received 45%"), JOB_PHASE_AZURE);
	check_int(job_phase_from_text("no-such-phase"), _JOB_PHASE_INVALID);
	stagetab_free(t);
}

int
main(void)
{
	struct daemon d = {0};
	_cleanup_free_ char *path = NULL, *err = NULL;

	check(mkdtemp(tmpdir) != NULL);
	path = xprintf("%s/seedd.db", tmpdir);
	check_int(db_open(path, &d.db, &err), 0);
	check((d.base = event_base_new()) != NULL);
	d.stages = stagetab_new(&d);
	log_init(LOG_TARGET_STDERR, LOG_EMERG); /* quiet: no journal lines checked here */
	test_claims(&d);
	test_hand_off(&d);
	test_hand_off_fails(&d);
	test_create_and_retry(&d);
	test_stop_health_msgs(&d);
	test_seedd_table(&d);
	jobctl_free(&d);
	d.stages = stagetab_free(d.stages);
	d.db = db_close(d.db);
	event_base_free(d.base);
	unlink(path);
	free(path);
	path = xprintf("%s/seedd.db-wal", tmpdir);
	unlink(path);
	free(path);
	path = xprintf("%s/seedd.db-shm", tmpdir);
	unlink(path);
	rmdir(tmpdir);
	return 0;
}
