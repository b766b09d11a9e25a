/* MetricsFile=: Prometheus text-format metrics, rewritten periodically. */
#ifndef SEEDD_METRICS_H
#define SEEDD_METRICS_H

struct daemon;

int metrics_write(struct daemon *d);
void metrics_start(struct daemon *d);
void metrics_stop(struct daemon *d);

#endif
