/*
 * The audit report of a job: drives and serials, Azure job and tracking,
 * every file with its MD5, drive and outcome (import, vault, cleanup), and
 * every transition with its time. Never a secret.
 */
#ifndef SEEDD_REPORT_H
#define SEEDD_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct daemon;

#define REPORT_FILES_INLINE 2000 /* files in a GetJobReport reply; the file has them all */

/* Write <state dir>/reports/<job>.json (temporary file, fsync, rename); *ret_path on success. */
int report_write(struct daemon *d, int64_t job_id, char **ret_path, char **ret_err);

/* The report as one JSON object for the socket, with at most max_files files. */
json_t *report_build(struct daemon *d, int64_t job_id, size_t max_files);

#endif
