/*
 * The staging read cap (throttle.h). One mutex guards the schedule; sleeping
 * happens outside it, on the caller's thread, with clock_nanosleep in ticks
 * of at most THROTTLE_TICK_NSEC so that a cancel or a new rate is seen soon.
 *
 * The schedule is a virtual clock ("theoretical arrival time"): each take
 * moves `next` on by bytes / rate and sleeps until it. `next` starts at the
 * cap's start and is never moved back by more than THROTTLE_SLACK_NSEC behind
 * now, so time lost between reads (a hash, a write, a slow NAS) is made up
 * for, while the total never gets ahead of rate x (now - start).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "throttle.h"
#include "util.h"

#define NSEC_PER_SEC 1000000000ll

struct throttle {
	pthread_mutex_t lock;
	uint64_t rate;  /* bytes per second; 0: no cap */
	int64_t next;   /* CLOCK_MONOTONIC ns: when the bytes taken so far are paid for */
	uint64_t epoch; /* bumped by each rate change: sleepers of an older one stop waiting */
};

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

struct throttle *
throttle_new(uint64_t rate)
{
	struct throttle *t = xcalloc(1, sizeof(*t));

	pthread_mutex_init(&t->lock, NULL);
	t->rate = rate;
	t->next = now_ns();
	return t;
}

struct throttle *
throttle_free(struct throttle *t)
{
	if (t == NULL)
		return NULL;
	pthread_mutex_destroy(&t->lock);
	free(t);
	return NULL;
}

void
throttle_set_rate(struct throttle *t, uint64_t rate)
{
	pthread_mutex_lock(&t->lock);
	if (rate != t->rate) {
		t->rate = rate;
		t->next = now_ns();
		t->epoch++;
	}
	pthread_mutex_unlock(&t->lock);
}

uint64_t
throttle_rate(struct throttle *t)
{
	uint64_t rate;

	pthread_mutex_lock(&t->lock);
	rate = t->rate;
	pthread_mutex_unlock(&t->lock);
	return rate;
}

/* How long bytes take at rate, in ns (rounded up; saturates far beyond any real wait). */
static int64_t
duration_ns(uint64_t bytes, uint64_t rate)
{
	uint64_t sec = bytes / rate, rest = bytes % rate;

	if (sec > (uint64_t)INT32_MAX)
		return (int64_t)INT32_MAX * NSEC_PER_SEC;
	return (int64_t)sec * NSEC_PER_SEC +
	       (int64_t)((rest * (uint64_t)NSEC_PER_SEC + rate - 1) / rate);
}

/* Is the rate of this epoch still the one in force? */
static bool
epoch_current(struct throttle *t, uint64_t epoch)
{
	bool same;

	pthread_mutex_lock(&t->lock);
	same = t->epoch == epoch;
	pthread_mutex_unlock(&t->lock);
	return same;
}

int
throttle_take(struct throttle *t, uint64_t bytes, throttle_stop_fn stop, void *userdata)
{
	int64_t now, until, tick;
	uint64_t epoch;

	if (t == NULL || bytes == 0)
		return 0;
	pthread_mutex_lock(&t->lock);
	if (t->rate == 0) {
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	now = now_ns();
	if (t->next < now - THROTTLE_SLACK_NSEC)
		t->next = now - THROTTLE_SLACK_NSEC;
	t->next += duration_ns(bytes, t->rate);
	until = t->next;
	epoch = t->epoch;
	pthread_mutex_unlock(&t->lock);

	while ((now = now_ns()) < until) {
		struct timespec ts;

		if (stop != NULL && stop(userdata))
			return -ECANCELED;
		if (!epoch_current(t, epoch))
			return 0; /* the new rate paces the next take */
		tick = until - now < THROTTLE_TICK_NSEC ? until : now + THROTTLE_TICK_NSEC;
		ts.tv_sec = (time_t)(tick / NSEC_PER_SEC);
		ts.tv_nsec = (long)(tick % NSEC_PER_SEC);
		(void)clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
	return stop != NULL && stop(userdata) ? -ECANCELED : 0;
}
