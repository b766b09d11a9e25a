/*
 * Tests for the job API data layer (daemon/azure/azure-jobs.c): validateInputs
 * answers, the ImportExport drive state over copyStatus, DataBox's
 * "waiting for customer action" (the spec example's shape), provisioning,
 * and the mitigate body.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "azure-jobs.h"

static json_t *
parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);

	if (j == NULL) {
		fprintf(stderr, "bad test JSON: %s\n", e.text);
		abort();
	}
	return j;
}

static void
test_validate(void)
{
	char *err = NULL;
	json_t *j;

	j = parse("{\"properties\":{\"status\":\"AllValidToProceed\",\"individualResponseDetails\":[]}}");
	check_int(databox_validate_result(j, &err), 0);
	check(err == NULL);
	json_decref(j);

	/* [spec] ValidationStatus CertainInputValidationsSkipped: proceed, name what was skipped */
	j = parse("{\"properties\":{\"status\":\"CertainInputValidationsSkipped\","
		  "\"individualResponseDetails\":["
		  "{\"validationType\":\"ValidateAddress\",\"validationStatus\":\"Valid\"},"
		  "{\"validationType\":\"ValidateCreateOrderLimit\",\"status\":\"Skipped\"},"
		  "{\"validationType\":\"ValidateSkuAvailability\",\"status\":\"Skipped\"}]}}");
	check_int(databox_validate_result(j, &err), 1);
	check(strstr(err, "CertainInputValidationsSkipped") != NULL);
	check(strstr(err, "ValidateCreateOrderLimit, ValidateSkuAvailability") != NULL);
	free(err);
	err = NULL;
	json_decref(j);

	/* skipped overall, but a check that ran failed: refused */
	j = parse("{\"properties\":{\"status\":\"CertainInputValidationsSkipped\","
		  "\"individualResponseDetails\":["
		  "{\"validationType\":\"ValidateCreateOrderLimit\",\"status\":\"Skipped\"},"
		  "{\"validationType\":\"ValidateAddress\",\"validationStatus\":\"Invalid\"}]}}");
	check_int(databox_validate_result(j, &err), -EINVAL);
	check(strstr(err, "ValidateAddress: Invalid") != NULL);
	free(err);
	err = NULL;
	json_decref(j);

	j = parse("{\"properties\":{\"status\":\"InputsRevisitRequired\",\"individualResponseDetails\":["
		  "{\"validationType\":\"ValidateSkuAvailability\",\"status\":\"Invalid\","
		  "\"error\":{\"code\":\"X\",\"message\":\"no disks in this region\"}}]}}");
	check_int(databox_validate_result(j, &err), -EINVAL);
	check(strstr(err, "no disks in this region") != NULL);
	free(err);
	json_decref(j);
}

/* An ImportExport job in state js whose two drives have these state/copyStatus (NULL: absent). */
static enum azure_stage
ie_stage(const char *js, const char *s0, const char *c0, const char *s1, const char *c1)
{
	json_t *job = json_pack("{s:{s:s,s:[]}}", "properties", "state", js, "driveList");
	json_t *list = json_object_get(json_object_get(job, "properties"), "driveList");
	const char *st[2] = {s0, s1}, *cs[2] = {c0, c1};
	struct azure_status s;
	enum azure_stage r;

	for (int i = 0; i < 2; i++) {
		json_t *d = json_pack("{s:s}", "driveId", i ? "SN1" : "SN0");
		if (st[i])
			json_object_set_new(d, "state", json_string(st[i]));
		if (cs[i])
			json_object_set_new(d, "copyStatus", json_string(cs[i]));
		json_array_append_new(list, d);
	}
	check_int(azure_status_parse(JOB_API_IMPORTEXPORT, job, &s), 0);
	r = s.stage;
	if (st[0] != NULL)
		check_str(s.drives[0].state, st[0]);
	azure_status_done(&s);
	json_decref(job);
	return r;
}

static void
test_importexport_drives(void)
{
	/* every drive completed: imported; copyStatus text does not matter */
	check_int(ie_stage("Completed", "Completed", "Completed", "ShippedBack", "Failed"),
		  AZ_COMPLETED);
	check_int(ie_stage("Packaging", "Completed", "Done, 0 errors", "Completed", NULL),
		  AZ_COMPLETED);
	/* a drive's state says problems although copyStatus says Completed */
	check_int(ie_stage("Packaging", "CompletedMoreInfo", "Completed", "Completed", "Completed"),
		  AZ_COMPLETED_PROBLEMS);
	check_int(ie_stage("Completed", "NeverReceived", NULL, "ShippedBack", "Completed"),
		  AZ_COMPLETED_PROBLEMS);
	/* the job's state ran ahead of a drive: not imported yet */
	check_int(ie_stage("Packaging", "Transferring", "Completed", "Completed", "Completed"),
		  AZ_COPYING);
	check_int(ie_stage("Completed", "Received", NULL, "Completed", NULL), AZ_COPYING);
	check_int(ie_stage("Closed", "CompletedMoreInfo", NULL, "Specified", NULL), AZ_COPYING);
	/* no state at all (not in any spec version): copyStatus as before */
	check_int(ie_stage("Completed", NULL, "Completed", NULL, "CompletedMoreInfo"),
		  AZ_COMPLETED_PROBLEMS);
	check_int(ie_stage("Transferring", "Transferring", "InProgress", "Received", NULL),
		  AZ_COPYING);
	check_str(IMPORTEXPORT_API_VERSION, "2020-08-01");
}

static void
test_waiting(void)
{
	/* the shape of [spec] examples/JobsGetWaitingForAction.json, trimmed */
	json_t *j = parse(
		"{\"properties\":{\"status\":\"DataCopy\",\"isCancellable\":false,"
		"\"error\":{\"additionalInfo\":[],\"code\":\"SsemUserCopyErrorWaitingForAction\","
		"\"message\":\"Job has an error in copy stage\",\"target\":\"CopyIntervention\","
		"\"details\":[]},"
		"\"details\":{\"actions\":[\"MoveToCleanUpDevice\",\"Resume\"],"
		"\"jobStages\":[{\"stageName\":\"AtAzureDC\",\"stageStatus\":\"Succeeded\"},"
		"{\"stageName\":\"DataCopy\",\"stageStatus\":\"WaitingForCustomerAction\"}],"
		"\"copyProgress\":[{\"serialNumber\":\"D1\",\"copyStatus\":\"InProgress\","
		"\"error\":{\"code\":\"DiskErr\",\"message\":\"bad\"},\"actions\":[\"Resume\"]},"
		"{\"serialNumber\":\"D2\",\"copyStatus\":\"InProgress\",\"actions\":[]}]}}}");
	struct azure_status s;

	check_int(azure_status_parse(JOB_API_DATABOX, j, &s), 0);
	check_int(s.stage, AZ_COPYING);
	check(s.waiting);
	check(!s.provisioning);
	check_str(s.error_code, "SsemUserCopyErrorWaitingForAction");
	check_str(s.actions, "MoveToCleanUpDevice, Resume");
	check_int(s.n_drives, 2);
	check_str(s.drives[0].error_code, "DiskErr");
	check_str(s.drives[0].actions, "Resume");
	check(s.drives[1].error_code == NULL && s.drives[1].actions == NULL);
	azure_status_done(&s);
	json_decref(j);

	j = parse("{\"properties\":{\"status\":\"DataCopy\",\"details\":{\"jobStages\":["
		  "{\"stageName\":\"DataCopy\",\"stageStatus\":\"InProgress\"}]}}}");
	check_int(azure_status_parse(JOB_API_DATABOX, j, &s), 0);
	check(!s.waiting && s.actions == NULL && s.error_code == NULL);
	azure_status_done(&s);
	json_decref(j);
}

static void
test_provisioning(void)
{
	json_t *j = parse("{\"properties\":{\"state\":\"Creating\",\"provisioningState\":\"Creating\"}}");
	struct azure_status s;

	check_int(azure_status_parse(JOB_API_IMPORTEXPORT, j, &s), 0);
	check(s.provisioning);
	azure_status_done(&s);
	json_decref(j);
	j = parse("{\"properties\":{\"state\":\"Creating\",\"provisioningState\":\"Succeeded\"}}");
	check_int(azure_status_parse(JOB_API_IMPORTEXPORT, j, &s), 0);
	check(!s.provisioning);
	azure_status_done(&s);
	json_decref(j);
}

static void
test_mitigate_body(void)
{
	json_t *b = databox_mitigate_body("Resume", "D1");
	char *t = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);

	/* [spec] examples/JobMitigate.json */
	check_str(t, "{\"serialNumberCustomerResolutionMap\":{\"D1\":\"Resume\"}}");
	free(t);
	json_decref(b);
	b = databox_mitigate_body("MoveToCleanUpDevice", NULL);
	t = json_dumps(b, JSON_COMPACT);
	check_str(t, "{\"customerResolutionCode\":\"MoveToCleanUpDevice\"}");
	free(t);
	json_decref(b);
	check(databox_resolution_valid("ReachOutToOperation"));
	check(databox_resolution_valid("None"));
	check(!databox_resolution_valid("resume"));
	check(!databox_resolution_valid(""));
	check(!databox_resolution_valid(NULL));
}

int
main(void)
{
	test_validate();
	test_importexport_drives();
	test_waiting();
	test_provisioning();
	test_mitigate_body();
	return 0;
}
