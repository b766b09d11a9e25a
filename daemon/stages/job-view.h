/*
 * The Job object of CONTRACT §4 (and its drives), built from the store and
 * the stages' live progress. GetJob, ListJobs, Watch and the report read it;
 * nothing here changes a job. Loop thread only (it reads the loop's database
 * connection and the stages' in-memory progress).
 */
#ifndef SEEDD_JOB_VIEW_H
#define SEEDD_JOB_VIEW_H

#include <jansson.h>
#include <stdint.h>

struct daemon;
struct drive_row;
struct job_row;

json_t *job_json(struct daemon *d, const struct job_row *j);
/* NULL when the job is gone or the store fails. */
json_t *job_json_by_id(struct daemon *d, int64_t id);
json_t *drive_json(struct daemon *d, int64_t job_id, const struct drive_row *dr);
/* The job's drives, an array of drive_json(). */
json_t *drives_json(struct daemon *d, int64_t job_id);
/* ISO 8601 UTC of a UNIX time, null for 0 (never set). */
json_t *json_time(int64_t t);

#endif
