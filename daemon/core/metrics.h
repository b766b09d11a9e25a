/* MetricsFile=: Prometheus text-format metrics, rewritten periodically. */
#ifndef SEEDD_METRICS_H
#define SEEDD_METRICS_H

#include <stdbool.h>
#include <stdint.h>

struct daemon;

/*
 * Live progress of a drive being copied (the prep stage knows it; core
 * reaches it only through this callback): bytes on the drive so far and the
 * copy rate in bytes/s. False when the drive is not being copied.
 */
typedef bool (*metrics_drive_fn)(struct daemon *d, int64_t job_id, int64_t drive_id,
				 int64_t *ret_bytes, double *ret_rate);

/*
 * Write MetricsFile= now: through PATH.tmp, created O_EXCL|O_NOFOLLOW in
 * the target directory with mode 0644, then renamed over PATH. 0, or
 * -errno; nothing to do (0) when MetricsFile= is not set.
 */
int metrics_write(struct daemon *d);
/* Write at once and every METRICS_SEC seconds; drive may be NULL. */
void metrics_start(struct daemon *d, metrics_drive_fn drive);
void metrics_stop(struct daemon *d);

#endif
