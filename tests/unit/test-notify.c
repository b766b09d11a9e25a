/*
 * core notify: job changes reach the observer once per job per loop turn, in
 * the order the jobs first changed; a change made by the observer waits for
 * the next turn; nothing is delivered after notify_free().
 */
#include <event2/event.h>
#include <stdbool.h>

#include "notify.h"
#include "test.h"

static int64_t seen[16];
static size_t n_seen;
static struct notify *the_notify;
static bool observer_changes;

static void
observer(int64_t job_id, void *userdata)
{
	check(userdata == &seen);
	check(n_seen < 16);
	seen[n_seen++] = job_id;
	/* An observer that changes a job (as a stage reacting would) defers it. */
	if (observer_changes && job_id == 1)
		notify_job(the_notify, 99);
}

static void
one_turn(struct event_base *base)
{
	/* 1: nothing was pending, which is fine too */
	check(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK) >= 0);
}

static void
test_coalesced(struct event_base *base)
{
	the_notify = notify_new(base, observer, &seen);
	n_seen = 0;
	notify_job(the_notify, 3);
	notify_job(the_notify, 1);
	notify_job(the_notify, 3);
	notify_job(the_notify, 3);
	notify_job(the_notify, 2);
	check_int(n_seen, 0); /* nothing before the turn */
	one_turn(base);
	check_int(n_seen, 3);
	check_int(seen[0], 3);
	check_int(seen[1], 1);
	check_int(seen[2], 2);
	one_turn(base);
	check_int(n_seen, 3); /* delivered once */

	/* The next turn's change is told again. */
	notify_job(the_notify, 3);
	one_turn(base);
	check_int(n_seen, 4);
	check_int(seen[3], 3);
	the_notify = notify_free(the_notify);
}

static void
test_observer_changes(struct event_base *base)
{
	the_notify = notify_new(base, observer, &seen);
	n_seen = 0;
	observer_changes = true;
	notify_job(the_notify, 1);
	one_turn(base);
	check_int(n_seen, 1);
	check_int(seen[0], 1);
	one_turn(base);
	check_int(n_seen, 2);
	check_int(seen[1], 99);
	observer_changes = false;
	the_notify = notify_free(the_notify);
}

static void
test_free_drops(struct event_base *base)
{
	the_notify = notify_new(base, observer, &seen);
	n_seen = 0;
	for (int64_t i = 0; i < 40; i++) /* past the first allocation */
		notify_job(the_notify, i % 20);
	the_notify = notify_free(the_notify);
	check(the_notify == NULL);
	one_turn(base);
	check_int(n_seen, 0);
	check(notify_free(NULL) == NULL);
}

int
main(void)
{
	struct event_base *base = event_base_new();

	check(base != NULL);
	test_coalesced(base);
	test_observer_changes(base);
	test_free_drops(base);
	event_base_free(base);
	printf("ok notify\n");
	return 0;
}
