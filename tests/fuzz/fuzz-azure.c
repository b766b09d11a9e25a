/*
 * Fuzz target: what seedd reads from Azure's control plane (daemon/
 * azure-jobs.c): a job resource of either API through azure_status_parse(),
 * ARM and Entra error bodies through azure_arm_error(), and the DataBox
 * validateInputs answer. The bytes are parsed as JSON first (any value, NUL
 * escapes allowed); what does not parse is not run.
 */
#include <errno.h>
#include <string.h>

#include "azure-jobs.h"
#include "fuzz.h"

static void
check_status(enum job_api api, json_t *job)
{
	struct azure_status st;
	int r;

	memset(&st, 0xa5, sizeof(st)); /* azure_status_parse() must set it all */
	r = azure_status_parse(api, job, &st);
	fuzz_check(r == 0 || r == -EBADMSG);
	if (r == 0) {
		fuzz_check(st.status != NULL);
		enum azure_stage said = azure_stage_of(api, st.status);
		/*
		 * The drives may only lower a finished job: to "with problems", or
		 * (ImportExport, a drive not done yet) back to copying.
		 */
		fuzz_check(st.stage == said ||
		           (st.stage == AZ_COMPLETED_PROBLEMS && said == AZ_COMPLETED) ||
		           (api == JOB_API_IMPORTEXPORT && st.stage == AZ_COPYING &&
		            (said == AZ_COMPLETED || said == AZ_COMPLETED_PROBLEMS)));
		fuzz_check(azure_stage_to_string(st.stage) != NULL);
		for (size_t i = 0; i < st.n_drives; i++) {
			fuzz_check(st.drives[i].serial != NULL);
			for (size_t j = 0; j < i; j++) /* one entry per drive */
				fuzz_check(strcmp(st.drives[i].serial, st.drives[j].serial) != 0);
		}
	}
	azure_status_done(&st); /* fine on a failed parse: it zeroed st */
}

static void
check_errors(json_t *j)
{
	char *code = (char *)1, *message = (char *)1, *err = NULL;
	int r;

	azure_arm_error(j, &code, &message);
	fuzz_check(code != (char *)1 && message != (char *)1);
	free(code);
	free(message);
	r = databox_validate_result(j, &err);
	fuzz_check(r == 0 || r == -EINVAL);
	fuzz_check((r == 0) == (err == NULL));
	free(err);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

	if (j == NULL)
		return 0;
	check_status(JOB_API_DATABOX, j);
	check_status(JOB_API_IMPORTEXPORT, j);
	check_errors(j);
	json_decref(j);
	return 0;
}
