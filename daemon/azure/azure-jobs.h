/*
 * The two job APIs as data: building the request bodies of
 * Microsoft.DataBox (customer-disk SKU) and the legacy
 * Microsoft.ImportExport, and reading a job resource back into one common
 * status. Pure JSON, no I/O; shapes from ../shared/reference (databox-api
 * README §3-§6, importexport-api README). Bodies may carry secrets
 * (BitLocker keys, the carrier account number): never log them.
 */
#ifndef SEEDD_AZURE_JOBS_H
#define SEEDD_AZURE_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

#define DATABOX_API_VERSION "2025-07-01"
/* The stable version [spec] importexport-api/spec/2020-08-01, not the 2021-01-01 preview. */
#define IMPORTEXPORT_API_VERSION "2020-08-01"
#define AZURE_MANIFEST_FILE "\\DriveManifest.xml"

/* One prepared drive, as the job needs it. */
struct azure_disk {
	const char *serial;
	const char *manifest_hash; /* 32 upper-case hex digits */
	const char *bitlocker_key; /* secret */
};

/* Where a job stands, whatever the API. */
enum azure_stage {
	AZ_UNKNOWN,            /* a status seedd does not know: treated as in progress */
	AZ_AWAITING_SHIPMENT,  /* created, waiting for carrier and tracking */
	AZ_SHIPPED,            /* drives on their way */
	AZ_RECEIVED,           /* at the datacenter */
	AZ_COPYING,            /* data copy in progress */
	AZ_COMPLETED,          /* copy finished without errors */
	AZ_COMPLETED_PROBLEMS, /* copy finished with errors or warnings */
	AZ_FAILED,
	AZ_CANCELLED,
};

struct azure_drive_status {
	char *serial;
	char *copy_status; /* Azure's words, e.g. Completed, InProgress */
	char *state;       /* ImportExport: the drive's DriveState, which wins over copy_status */
	char *error_code, *error_message; /* DataBox: copyProgress[].error, if any */
	char *actions;     /* DataBox: copyProgress[].actions, comma-separated, or NULL */
	int64_t bytes_processed, total_bytes;
	int64_t files_processed, total_files, files_errored;
	char *error_log, *verbose_log; /* blob URLs of the drive's copy logs, or NULL */
};

struct azure_status {
	char *status; /* Azure's status (DataBox) or state (ImportExport) */
	enum azure_stage stage;
	bool cancellable;
	char *error_code, *error_message; /* properties.error, if any */
	char *actions;  /* DataBox: details.actions (CustomerResolutionCode), comma-separated */
	bool provisioning; /* properties.provisioningState is there and not terminal: still being created */
	bool waiting;   /* DataBox: a stage is WaitingForCustomerAction*: answer with mitigate */
	struct azure_drive_status *drives;
	size_t n_drives;
};

const char *azure_stage_to_string(enum azure_stage s);

/* PUT body of a DataBox customer-disk import job. NULL and *ret_err if config is missing. */
json_t *databox_job_body(const struct config *c, const struct azure_disk *disks, size_t n,
			 char **ret_err);
/* POST markDevicesShipped body. */
json_t *databox_ship_body(const char *carrier, const char *tracking);
/* POST validateInputs body for the job about to be created. */
json_t *databox_validate_body(const struct config *c, const struct azure_disk *disks, size_t n);
/*
 * The validateInputs answer: 0 if all valid; 1 if Azure skipped some checks
 * (CertainInputValidationsSkipped: proceed, *ret_err names the skipped ones
 * for the job log); else -EINVAL and *ret_err says what is not valid.
 */
int databox_validate_result(json_t *reply, char **ret_err);
/* POST mitigate body [spec] MitigateJobRequest: per serial if serial is not NULL. */
json_t *databox_mitigate_body(const char *action, const char *serial);
/* Is action one of the CustomerResolutionCode values [spec]? */
bool databox_resolution_valid(const char *action);

/* PUT body of an ImportExport import job. */
json_t *importexport_job_body(const struct config *c, const struct azure_disk *disks, size_t n,
			      char **ret_err);
/* PATCH body reporting the shipment. */
json_t *importexport_ship_body(const char *carrier, const char *tracking, size_t n_drives);

/* Read a job resource (either API) into st; 0 or -EBADMSG. Free with azure_status_done(). */
int azure_status_parse(enum job_api api, json_t *job, struct azure_status *st);
void azure_status_done(struct azure_status *st);
enum azure_stage azure_stage_of(enum job_api api, const char *status);

/* ARM's error body {"error":{"code","message"}}: allocated strings, or NULL. */
void azure_arm_error(json_t *body, char **ret_code, char **ret_message);

#endif
