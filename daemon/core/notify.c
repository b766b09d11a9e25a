/*
 * Job-change notifications, coalesced per loop turn (notify.h). The pending
 * set is a small array: a turn changes a handful of jobs, and seedd runs few.
 */
#include <event2/event.h>
#include <stdlib.h>

#include "notify.h"
#include "util.h"

struct notify {
	struct event *ev;
	notify_fn fn;
	void *userdata;
	int64_t *pending;
	size_t n, cap;
};

static void
notify_turn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct notify *n = arg;
	int64_t *ids = n->pending;
	size_t count = n->n;

	/* The observer may change jobs again: those go to the next turn. */
	n->pending = NULL;
	n->n = n->cap = 0;
	for (size_t i = 0; i < count; i++)
		n->fn(ids[i], n->userdata);
	free(ids);
}

struct notify *
notify_new(struct event_base *base, notify_fn fn, void *userdata)
{
	struct notify *n = xcalloc(1, sizeof(*n));

	n->fn = fn;
	n->userdata = userdata;
	n->ev = evtimer_new(base, notify_turn_cb, n);
	if (n->ev == NULL)
		fatalx("evtimer_new failed");
	return n;
}

struct notify *
notify_free(struct notify *n)
{
	if (n == NULL)
		return NULL;
	event_free(n->ev);
	free(n->pending);
	free(n);
	return NULL;
}

void
notify_job(struct notify *n, int64_t job_id)
{
	static const struct timeval zero = {0, 0};

	for (size_t i = 0; i < n->n; i++)
		if (n->pending[i] == job_id)
			return;
	if (n->n == n->cap) {
		n->cap = n->cap ? 2 * n->cap : 8;
		n->pending = xreallocarray(n->pending, n->cap, sizeof(*n->pending));
	}
	n->pending[n->n++] = job_id;
	if (!evtimer_pending(n->ev, NULL))
		evtimer_add(n->ev, &zero);
}
