/*
 * Names shared by seedd and seedctl: job states, varlink error names and
 * limits of the socket protocol. Pure data, no I/O.
 */
#ifndef SEEDD_NAMES_H
#define SEEDD_NAMES_H

#include <stdbool.h>

/* Job states, in the order of the job's life. Stored by name in SQLite. */
enum job_state {
	JOB_STAGING,
	JOB_DRIVE_PREP,
	JOB_SHIPPED,
	JOB_IMPORTED,
	JOB_VAULT_COPY,
	JOB_CLEANUP,
	JOB_DONE,
	JOB_FAILED,
	JOB_CANCELLED,
	_JOB_STATE_MAX,
	_JOB_STATE_INVALID = -1,
};

const char *job_state_to_string(enum job_state s);
enum job_state job_state_from_string(const char *s);
bool job_state_is_final(enum job_state s);

#define SEEDD_INTERFACE "io.seedd"

/* Varlink error names. */
#define VL_ERR_INVALID_PARAMETER "org.varlink.service.InvalidParameter"
#define VL_ERR_METHOD_NOT_FOUND "org.varlink.service.MethodNotFound"
#define VL_ERR_INTERFACE_NOT_FOUND "org.varlink.service.InterfaceNotFound"
#define SEEDD_ERR_JOB_NOT_FOUND "io.seedd.JobNotFound"
#define SEEDD_ERR_JOB_EXISTS "io.seedd.JobExists"
#define SEEDD_ERR_INVALID_STATE "io.seedd.InvalidState"
#define SEEDD_ERR_PERMISSION_DENIED "io.seedd.PermissionDenied"
#define SEEDD_ERR_INVALID_ARGUMENT "io.seedd.InvalidArgument"
#define SEEDD_ERR_DRIVE_REJECTED "io.seedd.DriveRejected"
#define SEEDD_ERR_AZURE "io.seedd.AzureError"
#define SEEDD_ERR_INTERNAL "io.seedd.InternalError"

/* Protocol limits. */
#define VL_MESSAGE_MAX (1024 * 1024)   /* one message, NUL excluded */
#define JOB_NAME_MIN 3
#define JOB_NAME_MAX 24
#define PATH_PARAM_MAX 4096
#define TEXT_PARAM_MAX 1024
#define DRIVES_PER_JOB_MAX 10

/* True if name is a valid job name: 3-24 of [A-Za-z0-9._-]. */
bool job_name_valid(const char *name);

#endif
