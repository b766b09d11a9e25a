/*
 * The stage table's entries: which job states and phases each stage works
 * on, and its resume, stop, health and messages. The order is the order of
 * start; shutdown and reload go the other way (post before azure: the
 * post-import stage uses the Azure stage's blob client).
 */
#include <errno.h>

#include "daemon.h"
#include "db.h"
#include "doctor.h"
#include "planner.h"
#include "probe.h"
#include "report.h"
#include "stage-post.h"
#include "stage.h"
#include "stagetab.h"

/* ---- resume adapters: every resume is idempotent ---------------------------- */

static int
index_resume(struct daemon *d, const struct job_row *j, char **ret_err)
{
	return index_start(d, j);
}

static int
azure_resume_job(struct daemon *d, const struct job_row *j, char **ret_err)
{
	azure_resume(d, j);
	return 0;
}

static int
post_resume_job(struct daemon *d, const struct job_row *j, char **ret_err)
{
	post_resume(d, j);
	return 0;
}

static int
report_resume(struct daemon *d, const struct job_row *j, char **ret_err)
{
	post_report_missing(d, j);
	return 0;
}

static void
azure_stop_all(struct daemon *d)
{
	azure_stage_stop(d);
}

/* ---- the entries ------------------------------------------------------------ */

#define PREP_PHASES                                                                                \
	(STAGE_PHASE(JOB_PHASE_NONE) | STAGE_PHASE(JOB_PHASE_COPYING) |                            \
	 STAGE_PHASE(JOB_PHASE_WRITING_MANIFESTS) | STAGE_PHASE(JOB_PHASE_NEEDS_DRIVE))
#define AZURE_PREP_PHASES                                                                          \
	(STAGE_PHASE(JOB_PHASE_AWAITING_AZURE) | STAGE_PHASE(JOB_PHASE_CREATING_AZURE_JOB) |       \
	 STAGE_PHASE(JOB_PHASE_AWAITING_TRACKING) | STAGE_PHASE(JOB_PHASE_SHIPPING) |              \
	 STAGE_PHASE(JOB_PHASE_CANCELLING))

static const struct stage stage_report = {
	.name = "report",
	.claims = {{STAGE_STATE(JOB_DONE), STAGE_ANY_PHASE}},
	.resume = report_resume,
	.stop_all = report_stop_all,
	.healthy = report_healthy,
	.handle_msg = report_handle_msg,
	.msg_first = MSG_REPORT_DONE,
	.msg_last = MSG_REPORT_DONE,
};

static const struct stage stage_probe = {
	.name = "drive probe",
	.stop_all = probe_stop_all,
	.healthy = probe_healthy,
	.handle_msg = probe_handle_msg,
	.msg_first = MSG_DRIVE_PROBED,
	.msg_last = MSG_DRIVE_PROBED,
};

static const struct stage stage_planner = {
	.name = "planner",
	.stop_all = planner_stop_all,
	.healthy = planner_healthy,
	.handle_msg = planner_handle_msg,
	.msg_first = MSG_PLAN_DONE,
	.msg_last = MSG_PLAN_DONE,
};

/* Its runs hold a client made from the configuration: a reload answers them. */
static const struct stage stage_doctor = {
	.name = "doctor",
	.stop_all = doctor_stop_all,
	.restart_on_reload = true,
	.healthy = doctor_healthy,
	.handle_msg = doctor_handle_msg,
	.msg_first = MSG_DOCTOR_DONE,
	.msg_last = MSG_DOCTOR_DONE,
};

static const struct stage stage_index = {
	.name = "indexing",
	.claims = {{STAGE_STATE(JOB_STAGING),
		    STAGE_PHASE(JOB_PHASE_NONE) | STAGE_PHASE(JOB_PHASE_INDEXING)}},
	.resume = index_resume,
	.stop = index_stop,
	.stop_all = index_stop_all,
	.healthy = index_healthy,
	.handle_msg = index_handle_msg,
	.msg_first = MSG_INDEX_DONE,
	.msg_last = MSG_INDEX_DONE,
};

static const struct stage stage_prep = {
	.name = "drive prep",
	.claims = {{STAGE_STATE(JOB_DRIVE_PREP), PREP_PHASES}},
	.resume = prep_start,
	.stop = prep_stop,
	.stop_all = prep_stop_all,
	.reconfigure = prep_reconfigure,
	.healthy = prep_healthy,
	.handle_msg = prep_handle_msg,
	.msg_first = MSG_PREP_FILE,
	.msg_last = MSG_PREP_EXITED,
};

static const struct stage stage_azure = {
	.name = "Azure",
	.claims = {{STAGE_STATE(JOB_DRIVE_PREP), AZURE_PREP_PHASES},
		   {STAGE_STATE(JOB_SHIPPED), STAGE_ANY_PHASE}},
	.resume = azure_resume_job,
	.stop = azure_forget,
	.stop_all = azure_stop_all,
	.start = azure_stage_start,
	.restart_on_reload = true,
};

static const struct stage stage_post = {
	.name = "after the import",
	.claims = {{STAGE_STATE(JOB_IMPORTED) | STAGE_STATE(JOB_VAULT_COPY) |
			    STAGE_STATE(JOB_CLEANUP),
		    STAGE_ANY_PHASE}},
	.resume = post_resume_job,
	.stop = post_stop,
	.stop_all = post_stop_all,
	.restart_on_reload = true,
	.healthy = post_healthy,
	.handle_msg = post_io_handle_msg,
	.msg_first = MSG_POST_BLOCK,
	.msg_last = MSG_POST_CLEANED,
};

int
stages_register(struct stagetab *t)
{
	static const struct stage *const all[] = {
		&stage_report, &stage_probe, &stage_planner, &stage_doctor,
		&stage_index,  &stage_prep,  &stage_azure,   &stage_post,
	};
	int r;

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if ((r = stagetab_add(t, all[i])) < 0)
			return r;
	return 0;
}
