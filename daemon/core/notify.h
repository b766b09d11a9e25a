/*
 * Job-change notifications, coalesced per loop turn. Whoever changes a job
 * calls notify_job(); on the next loop turn the observer is told once per
 * changed job, in the order the jobs first changed. So a stage that moves a
 * job's phase five times in one callback costs one Job object for the
 * watchers, and none when nobody watches (the observer decides). Loop thread
 * only.
 */
#ifndef SEEDD_NOTIFY_H
#define SEEDD_NOTIFY_H

#include <stdint.h>

struct event_base;
struct notify;

typedef void (*notify_fn)(int64_t job_id, void *userdata);

struct notify *notify_new(struct event_base *base, notify_fn fn, void *userdata);
/* Pending notifications are dropped; returns NULL. */
struct notify *notify_free(struct notify *n);
/* Job job_id changed: tell the observer on the next turn (once per turn). */
void notify_job(struct notify *n, int64_t job_id);

#endif
