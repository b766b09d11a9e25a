/*
 * Request bodies and status parsing of the DataBox (customer disk) and
 * ImportExport job APIs. Pure JSON; see azure-jobs.h. Any thread.
 */
#include <errno.h>
#include <string.h>

#include "azure-jobs.h"
#include "util.h"

static const char *const stage_table[] = {
	[AZ_UNKNOWN] = "unknown",
	[AZ_AWAITING_SHIPMENT] = "awaiting-shipment",
	[AZ_SHIPPED] = "shipped",
	[AZ_RECEIVED] = "received",
	[AZ_COPYING] = "copying",
	[AZ_COMPLETED] = "completed",
	[AZ_COMPLETED_PROBLEMS] = "completed-with-problems",
	[AZ_FAILED] = "failed",
	[AZ_CANCELLED] = "cancelled",
};

const char *
azure_stage_to_string(enum azure_stage s)
{
	return s < ELEMENTSOF(stage_table) ? stage_table[s] : "unknown";
}

/* Optional string members are left out when unset. */
static void
set_opt(json_t *o, const char *key, const char *value)
{
	if (value != NULL && *value != '\0')
		json_object_set_new(o, key, json_string(value));
}

/* The first required Shipping/Azure key that is missing, or NULL. */
static const char *
missing_for_job(const struct config *c)
{
	const struct {
		const char *name;
		const char *value;
	} need[] = {
		{"[Azure] Location=", c->location},
		{"[Storage] AccountId=", c->account_id},
		{"[Shipping] ContactName=", c->contact_name},
		{"[Shipping] Phone=", c->phone},
		{"[Shipping] Email=", c->email},
		{"[Shipping] StreetAddress1=", c->street_address1},
		{"[Shipping] City=", c->city},
		{"[Shipping] PostalCode=", c->postal_code},
		{"[Shipping] Country=", c->country},
		{"[Shipping] ReturnCarrier=", c->return_carrier},
		{"[Shipping] ReturnCarrierAccountNumberFile=", c->return_carrier_account_number.value},
	};

	for (size_t i = 0; i < ELEMENTSOF(need); i++)
		if (need[i].value == NULL || *need[i].value == '\0')
			return need[i].name;
	return NULL;
}

static json_t *
databox_contact(const struct config *c)
{
	json_t *o = json_pack("{s:s,s:s,s:[s]}", "contactName", c->contact_name, "phone", c->phone,
			      "emailList", c->email);
	return o;
}

static json_t *
databox_address(const struct config *c)
{
	json_t *o = json_pack("{s:s,s:s}", "streetAddress1", c->street_address1, "country",
			      c->country);

	set_opt(o, "streetAddress2", c->street_address2);
	set_opt(o, "city", c->city);
	set_opt(o, "stateOrProvince", c->state_or_province);
	set_opt(o, "postalCode", c->postal_code);
	set_opt(o, "companyName", c->company_name);
	return o;
}

json_t *
databox_job_body(const struct config *c, const struct azure_disk *disks, size_t n,
		 char **ret_err)
{
	const char *missing = missing_for_job(c);
	json_t *collection, *details;

	if (missing != NULL) {
		xasprintf(ret_err, "%s is required to create the Azure job", missing);
		return NULL;
	}
	collection = json_object();
	for (size_t i = 0; i < n; i++)
		json_object_set_new(collection, disks[i].serial,
				    json_pack("{s:s,s:s,s:s}", "manifestFile", AZURE_MANIFEST_FILE,
					      "manifestHash", disks[i].manifest_hash,
					      "bitLockerKey", disks[i].bitlocker_key));
	details = json_pack(
		"{s:s,s:o,s:o,s:{s:s,s:s},s:o,s:[{s:{s:s,s:s},s:s}],s:{s:s},s:b}", "jobDetailsType",
		"DataBoxCustomerDisk", "contactDetails", databox_contact(c), "shippingAddress",
		databox_address(c), "returnToCustomerPackageDetails", "carrierName",
		c->return_carrier, "carrierAccountNumber", c->return_carrier_account_number.value,
		"importDiskDetailsCollection", collection, "dataImportDetails", "accountDetails",
		"dataAccountType", "StorageAccount", "storageAccountId", c->account_id,
		"logCollectionLevel", "Verbose", "keyEncryptionKey", "kekType", "MicrosoftManaged",
		"enableManifestBackup", 0);
	return json_pack("{s:s,s:{s:s},s:{s:s,s:o}}", "location", c->location, "sku", "name",
			 "DataBoxCustomerDisk", "properties", "transferType", "ImportToAzure",
			 "details", details);
}

json_t *
databox_ship_body(const char *carrier, const char *tracking)
{
	return json_pack("{s:{s:s,s:s}}", "deliverToDcPackageDetails", "carrierName", carrier,
			 "trackingId", tracking);
}

json_t *
databox_validate_body(const struct config *c, const struct azure_disk *disks, size_t n)
{
	json_t *details = json_array();

	json_array_append_new(details,
			      json_pack("{s:s,s:o,s:s}", "validationType", "ValidateAddress",
					"shippingAddress", databox_address(c), "deviceType",
					"DataBoxCustomerDisk"));
	json_array_append_new(details, json_pack("{s:s}", "validationType",
						 "ValidateSubscriptionIsAllowedToCreateJob"));
	json_array_append_new(details,
			      json_pack("{s:s,s:s,s:s,s:s,s:s}", "validationType",
					"ValidateSkuAvailability", "deviceType",
					"DataBoxCustomerDisk", "transferType", "ImportToAzure",
					"country", c->country, "location", c->location));
	json_array_append_new(details, json_pack("{s:s,s:s}", "validationType",
						 "ValidateCreateOrderLimit", "deviceType",
						 "DataBoxCustomerDisk"));
	(void)disks;
	(void)n;
	return json_pack("{s:s,s:o}", "validationCategory", "JobCreationValidation",
			 "individualRequestDetails", details);
}

/*
 * [spec] ValidationStatus: CertainInputValidationsSkipped means the
 * service did not run some checks, not that an input is wrong; the job is
 * created and the job log names what was skipped. A check that did run and
 * failed still stops it.
 */
static int
validate_skipped(json_t *items, char **ret_err)
{
	char *names = xstrdup("");
	json_t *it;
	size_t i;

	json_array_foreach(items, i, it) {
		const char *type = json_string_value(json_object_get(it, "validationType"));
		const char *v = json_string_value(json_object_get(it, "status"));
		const char *a = json_string_value(json_object_get(it, "validationStatus"));
		const char *st = v ? v : a;
		char *n;
		if (st == NULL || strcmp(st, "Valid") == 0)
			continue;
		if (strcmp(st, "Skipped") != 0) {
			free(names);
			xasprintf(ret_err, "Azure's validation %s: %s: %s", type ? type : "(no type)",
				  st, json_string_value(json_object_get(json_object_get(it, "error"),
									 "message"))
					  ?: "no reason given");
			return -EINVAL;
		}
		n = xprintf("%s%s%s", names, *names ? ", " : "", type ? type : "(no type)");
		free(names);
		names = n;
	}
	xasprintf(ret_err,
		  "Azure skipped some input validations (CertainInputValidationsSkipped: %s); the job "
		  "is created anyway",
		  *names ? names : "none named");
	free(names);
	return 1;
}

int
databox_validate_result(json_t *reply, char **ret_err)
{
	json_t *props = json_object_get(reply, "properties"), *items, *it;
	const char *status = json_string_value(json_object_get(props, "status"));
	size_t i;

	if (status == NULL) {
		xasprintf(ret_err, "validateInputs answered without a status");
		return -EINVAL;
	}
	if (strcmp(status, "AllValidToProceed") == 0)
		return 0;
	items = json_object_get(props, "individualResponseDetails");
	if (strcmp(status, "CertainInputValidationsSkipped") == 0)
		return validate_skipped(items, ret_err);
	json_array_foreach(items, i, it) {
		const char *v = json_string_value(json_object_get(it, "status"));
		const char *a = json_string_value(json_object_get(it, "validationStatus"));
		json_t *err = json_object_get(it, "error");
		if ((v && strcmp(v, "Valid") != 0 && strcmp(v, "Skipped") != 0) ||
		    (a && strcmp(a, "Valid") != 0)) {
			xasprintf(ret_err, "Azure's validation %s: %s: %s",
				  json_string_value(json_object_get(it, "validationType"))
					  ?: "(no type)",
				  v ? v : a,
				  json_string_value(json_object_get(err, "message"))
					  ?: "no reason given");
			return -EINVAL;
		}
	}
	xasprintf(ret_err, "Azure's validation says %s", status);
	return -EINVAL;
}

static const char *const resolution_codes[] = {"None", "MoveToCleanUpDevice", "Resume",
					      "Restart", "ReachOutToOperation"};

bool
databox_resolution_valid(const char *action)
{
	for (size_t i = 0; i < ELEMENTSOF(resolution_codes); i++)
		if (action != NULL && strcmp(action, resolution_codes[i]) == 0)
			return true;
	return false;
}

json_t *
databox_mitigate_body(const char *action, const char *serial)
{
	if (serial != NULL) /* [spec] examples/JobMitigate.json */
		return json_pack("{s:{s:s}}", "serialNumberCustomerResolutionMap", serial, action);
	return json_pack("{s:s}", "customerResolutionCode", action);
}

json_t *
importexport_job_body(const struct config *c, const struct azure_disk *disks, size_t n,
		      char **ret_err)
{
	const char *missing = missing_for_job(c);
	json_t *drives, *addr;

	if (missing != NULL) {
		xasprintf(ret_err, "%s is required to create the Azure job", missing);
		return NULL;
	}
	drives = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(drives, json_pack("{s:s,s:s,s:s,s:s,s:s}", "driveId",
							disks[i].serial, "bitLockerKey",
							disks[i].bitlocker_key, "manifestFile",
							AZURE_MANIFEST_FILE, "manifestHash",
							disks[i].manifest_hash, "driveHeaderHash",
							""));
	addr = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "recipientName", c->contact_name,
			 "streetAddress1", c->street_address1, "city", c->city, "postalCode",
			 c->postal_code, "countryOrRegion", c->country, "phone", c->phone, "email",
			 c->email);
	set_opt(addr, "streetAddress2", c->street_address2);
	set_opt(addr, "stateOrProvince", c->state_or_province);
	return json_pack("{s:s,s:{s:s,s:s,s:o,s:{s:s,s:s},s:s,s:s,s:b,s:o}}", "location",
			 c->location, "properties", "storageAccountId", c->account_id, "jobType",
			 "Import", "returnAddress", addr, "returnShipping", "carrierName",
			 c->return_carrier, "carrierAccountNumber",
			 c->return_carrier_account_number.value, "diagnosticsPath", "waimportexport",
			 "logLevel", "Verbose", "backupDriveManifest", 0, "driveList", drives);
}

json_t *
importexport_ship_body(const char *carrier, const char *tracking, size_t n_drives)
{
	return json_pack("{s:{s:s,s:{s:s,s:s,s:I}}}", "properties", "state", "Shipping",
			 "deliveryPackage", "carrierName", carrier, "trackingNumber", tracking,
			 "driveCount", (json_int_t)n_drives);
}

static bool
is(const char *s, const char *v)
{
	return s != NULL && strcmp(s, v) == 0;
}

enum azure_stage
azure_stage_of(enum job_api api, const char *s)
{
	if (s == NULL)
		return AZ_UNKNOWN;
	if (api == JOB_API_IMPORTEXPORT) {
		if (is(s, "Creating"))
			return AZ_AWAITING_SHIPMENT;
		if (is(s, "Shipping"))
			return AZ_SHIPPED;
		if (is(s, "Received"))
			return AZ_RECEIVED;
		if (is(s, "Transferring"))
			return AZ_COPYING;
		if (is(s, "Packaging") || is(s, "Completed"))
			return AZ_COMPLETED;
		if (is(s, "Closed"))
			return AZ_COMPLETED_PROBLEMS;
		if (is(s, "Canceled") || is(s, "Cancelled"))
			return AZ_CANCELLED;
		return AZ_UNKNOWN;
	}
	if (is(s, "AwaitingShipmentDetails") || is(s, "Created"))
		return AZ_AWAITING_SHIPMENT;
	if (is(s, "ShippedToAzureDC"))
		return AZ_SHIPPED;
	if (is(s, "AtAzureDC"))
		return AZ_RECEIVED;
	if (is(s, "DataCopy"))
		return AZ_COPYING;
	if (is(s, "Completed") || is(s, "PreparingToShipFromAzureDC") ||
	    is(s, "ShippedToCustomer"))
		return AZ_COMPLETED;
	if (is(s, "CompletedWithErrors") || is(s, "CompletedWithWarnings"))
		return AZ_COMPLETED_PROBLEMS;
	if (strncmp(s, "Failed", 6) == 0 || is(s, "Aborted"))
		return AZ_FAILED;
	if (is(s, "Cancelled"))
		return AZ_CANCELLED;
	return AZ_UNKNOWN;
}

static char *
dup_str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? xstrdup(s) : NULL;
}

static int64_t
get_int(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static struct azure_drive_status *
drive_slot(struct azure_status *st, const char *serial)
{
	for (size_t i = 0; i < st->n_drives; i++)
		if (strcmp(st->drives[i].serial, serial) == 0)
			return &st->drives[i];
	st->drives = xreallocarray(st->drives, st->n_drives + 1, sizeof(*st->drives));
	st->drives[st->n_drives] = (struct azure_drive_status){.serial = xstrdup(serial)};
	return &st->drives[st->n_drives++];
}

/* ["A","B"] as "A, B"; NULL for none. */
static char *
join_strings(json_t *arr)
{
	char *t = NULL;
	json_t *it;
	size_t i;

	json_array_foreach(arr, i, it) {
		char *n;
		if (!json_is_string(it))
			continue;
		n = xprintf("%s%s%s", t ? t : "", t ? ", " : "", json_string_value(it));
		free(t);
		t = n;
	}
	return t;
}

/* [spec] StageStatus WaitingForCustomerAction, …ForKek, …ForCleanUp in details.jobStages[]. */
static bool
stages_waiting(json_t *details)
{
	json_t *it;
	size_t i;

	json_array_foreach(json_object_get(details, "jobStages"), i, it) {
		const char *s = json_string_value(json_object_get(it, "stageStatus"));
		if (s != NULL && strncmp(s, "WaitingForCustomerAction", 24) == 0)
			return true;
	}
	return false;
}

static void
parse_databox_drives(json_t *details, struct azure_status *st)
{
	json_t *it;
	size_t i;

	json_array_foreach(json_object_get(details, "copyProgress"), i, it) {
		const char *serial = json_string_value(json_object_get(it, "serialNumber"));
		if (serial == NULL)
			continue;
		struct azure_drive_status *d = drive_slot(st, serial);
		free(d->copy_status);
		d->copy_status = dup_str(it, "copyStatus");
		d->bytes_processed = get_int(it, "bytesProcessed");
		d->total_bytes = get_int(it, "totalBytesToProcess");
		d->files_processed = get_int(it, "filesProcessed");
		d->total_files = get_int(it, "totalFilesToProcess");
		d->files_errored = get_int(it, "filesErroredOut");
		free(d->error_code);
		free(d->error_message);
		free(d->actions);
		d->error_code = dup_str(json_object_get(it, "error"), "code");
		d->error_message = dup_str(json_object_get(it, "error"), "message");
		d->actions = join_strings(json_object_get(it, "actions"));
	}
	json_array_foreach(json_object_get(details, "copyLogDetails"), i, it) {
		const char *serial = json_string_value(json_object_get(it, "serialNumber"));
		if (serial == NULL)
			continue;
		struct azure_drive_status *d = drive_slot(st, serial);
		free(d->error_log);
		free(d->verbose_log);
		d->error_log = dup_str(it, "errorLogLink");
		d->verbose_log = dup_str(it, "verboseLogLink");
	}
}

static void
parse_importexport_drives(json_t *props, struct azure_status *st)
{
	json_t *it;
	size_t i;

	json_array_foreach(json_object_get(props, "driveList"), i, it) {
		const char *serial = json_string_value(json_object_get(it, "driveId"));
		if (serial == NULL)
			continue;
		struct azure_drive_status *d = drive_slot(st, serial);
		free(d->copy_status); /* a driveId listed twice: the last entry wins */
		free(d->state);
		free(d->error_log);
		free(d->verbose_log);
		d->copy_status = dup_str(it, "copyStatus");
		d->state = dup_str(it, "state");
		d->bytes_processed = get_int(it, "bytesSucceeded");
		d->error_log = dup_str(it, "errorLogUri");
		d->verbose_log = dup_str(it, "verboseLogUri");
	}
}

/*
 * ImportExport: the drive's state [spec DriveStatus.state; doc drive
 * states] decides, not copyStatus, which is free text [spec: "Detailed
 * status about the data transfer process"]. Completed and ShippedBack are
 * done; CompletedMoreInfo and NeverReceived are done with problems; anything
 * else (Specified, Received, Transferring, or a state seedd does not know)
 * is not done. Without a state (not seen in any spec version) copyStatus is
 * read the old way.
 */
enum drive_end { DRIVE_NOT_DONE, DRIVE_DONE, DRIVE_PROBLEM };

static enum drive_end
importexport_drive_end(const struct azure_drive_status *d)
{
	const char *s = d->state;

	if (s == NULL) {
		s = d->copy_status;
		if (s == NULL)
			return DRIVE_DONE;
		return is(s, "CompletedMoreInfo") || is(s, "Failed") ? DRIVE_PROBLEM : DRIVE_DONE;
	}
	if (is(s, "Completed") || is(s, "ShippedBack"))
		return DRIVE_DONE;
	if (is(s, "CompletedMoreInfo") || is(s, "NeverReceived"))
		return DRIVE_PROBLEM;
	return DRIVE_NOT_DONE;
}

/*
 * A finished job whose drives did not all finish cleanly has problems; an
 * ImportExport job whose state says finished while a drive has not is still
 * copying (imported only when every drive has completed).
 */
static void
refine_completed(enum job_api api, struct azure_status *st)
{
	bool not_done = false;

	if (st->stage != AZ_COMPLETED && st->stage != AZ_COMPLETED_PROBLEMS)
		return;
	for (size_t i = 0; i < st->n_drives; i++) {
		const char *cs = st->drives[i].copy_status;
		if (api == JOB_API_IMPORTEXPORT) {
			enum drive_end e = importexport_drive_end(&st->drives[i]);
			not_done |= e == DRIVE_NOT_DONE;
			if (e == DRIVE_PROBLEM)
				st->stage = AZ_COMPLETED_PROBLEMS;
		} else if (cs != NULL && strcmp(cs, "Completed") != 0)
			st->stage = AZ_COMPLETED_PROBLEMS;
	}
	if (not_done)
		st->stage = AZ_COPYING;
}

int
azure_status_parse(enum job_api api, json_t *job, struct azure_status *st)
{
	json_t *props = json_object_get(job, "properties");

	*st = (struct azure_status){0};
	if (!json_is_object(props))
		return -EBADMSG;
	st->status = dup_str(props, api == JOB_API_DATABOX ? "status" : "state");
	if (st->status == NULL)
		return -EBADMSG;
	st->stage = azure_stage_of(api, st->status);
	if (api == JOB_API_DATABOX) {
		json_t *details = json_object_get(props, "details");
		st->cancellable = json_is_true(json_object_get(props, "isCancellable"));
		parse_databox_drives(details, st);
		st->actions = join_strings(json_object_get(details, "actions"));
		st->waiting = stages_waiting(details) || is(st->status, "WaitingForCustomerAction");
	} else {
		st->cancellable = st->stage == AZ_AWAITING_SHIPMENT;
		parse_importexport_drives(props, st);
	}
	/*
	 * ARM's provisioningState [spec ImportExport JobDetails; ARM RPC]: a
	 * resource found while its create is still running is not created yet.
	 */
	const char *ps = json_string_value(json_object_get(props, "provisioningState"));
	st->provisioning = ps != NULL && !is(ps, "Succeeded") && !is(ps, "Failed") &&
			   !is(ps, "Canceled");
	json_t *err = json_object_get(props, "error");
	if (json_is_object(err)) {
		st->error_code = dup_str(err, "code");
		st->error_message = dup_str(err, "message");
	}
	refine_completed(api, st);
	return 0;
}

void
azure_status_done(struct azure_status *st)
{
	for (size_t i = 0; i < st->n_drives; i++) {
		free(st->drives[i].serial);
		free(st->drives[i].copy_status);
		free(st->drives[i].state);
		free(st->drives[i].error_code);
		free(st->drives[i].error_message);
		free(st->drives[i].actions);
		free(st->drives[i].error_log);
		free(st->drives[i].verbose_log);
	}
	free(st->drives);
	free(st->status);
	free(st->error_code);
	free(st->error_message);
	free(st->actions);
	*st = (struct azure_status){0};
}

void
azure_arm_error(json_t *body, char **ret_code, char **ret_message)
{
	json_t *err = json_object_get(body, "error");

	*ret_code = NULL;
	*ret_message = NULL;
	if (json_is_object(err)) {
		*ret_code = dup_str(err, "code");
		*ret_message = dup_str(err, "message");
	} else if (json_is_string(err)) { /* Entra: {"error":"invalid_client",...} */
		*ret_code = xstrdup(json_string_value(err));
		*ret_message = dup_str(body, "error_description");
	}
}
