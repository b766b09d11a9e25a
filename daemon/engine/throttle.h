/*
 * A cap on the bytes per second read from a job's staging tree
 * (ReadBandwidthMax=, seedd.conf(5)), shared by the job's drive workers and
 * their copiers' reader threads. Any thread may call any function; callers
 * sleep in throttle_take(), which is never called on the loop thread.
 */
#ifndef SEEDD_THROTTLE_H
#define SEEDD_THROTTLE_H

#include <stdbool.h>
#include <stdint.h>

/* Credit a reader may catch up on after a pause; bounds the burst after idle time. */
#define THROTTLE_SLACK_NSEC 250000000ll
/* The longest a sleeper goes without looking at its stop callback and the rate. */
#define THROTTLE_TICK_NSEC 100000000ll

struct throttle;

/* Returns true when the caller must stop waiting (a cancel or pause). */
typedef bool (*throttle_stop_fn)(void *userdata);

/* A new cap of rate bytes per second; 0 means no cap. */
struct throttle *throttle_new(uint64_t rate);
struct throttle *throttle_free(struct throttle *t);

/*
 * Change the cap (reload); sleepers stop waiting for the old one. Pacing
 * starts afresh from now.
 */
void throttle_set_rate(struct throttle *t, uint64_t rate);
uint64_t throttle_rate(struct throttle *t);

/*
 * Account for reading bytes and sleep until they fit under the cap: counted
 * from the cap's start (throttle_new or the last change), the bytes taken by
 * all callers never run ahead of rate x elapsed. Returns 0 when the caller may
 * read, -ECANCELED as soon as stop (may be NULL) says so. t NULL, or rate 0:
 * returns at once.
 */
int throttle_take(struct throttle *t, uint64_t bytes, throttle_stop_fn stop, void *userdata);

#endif
