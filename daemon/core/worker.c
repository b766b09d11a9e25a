/*
 * Threads and the worker -> loop queue: a mutex-protected list plus an
 * eventfd the loop watches. The loop thread owns the queue's event; any
 * thread may push. See worker.h.
 */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "worker.h"

/*
 * The loop handles queued results for at most this long per turn, then lets
 * the other events (control connections) run before it goes on.
 */
#define WORKER_NICE 5 /* how much nicer than the loop a worker thread runs */
#define WORKER_DRAIN_TURN_USEC 5000

struct worker_queue {
	pthread_mutex_t lock;
	STAILQ_HEAD(, worker_msg) msgs;
	int efd;
	struct event *ev;
	worker_drain_fn handle;
	void *userdata;
};

int64_t
worker_monotonic_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static int64_t
monotonic_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
queue_wake(struct worker_queue *q)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is saturated: the loop is woken anyway. */
	if (write(q->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		fatalx("writing the worker eventfd: %s", strerror(errno));
}

/*
 * Handle queued messages, in order, for up to WORKER_DRAIN_TURN_USEC; what
 * is left goes back to the head of the queue and the loop is woken again,
 * so it comes after the events already waiting.
 */
static void
queue_drain_turn(struct worker_queue *q)
{
	STAILQ_HEAD(, worker_msg) batch = STAILQ_HEAD_INITIALIZER(batch);
	int64_t end = monotonic_usec() + WORKER_DRAIN_TURN_USEC;
	struct worker_msg *m;

	pthread_mutex_lock(&q->lock);
	STAILQ_CONCAT(&batch, &q->msgs);
	pthread_mutex_unlock(&q->lock);
	while ((m = STAILQ_FIRST(&batch)) != NULL && monotonic_usec() < end) {
		STAILQ_REMOVE_HEAD(&batch, link);
		q->handle(m, q->userdata);
		m->free_fn(m);
	}
	if (STAILQ_EMPTY(&batch))
		return;
	pthread_mutex_lock(&q->lock);
	STAILQ_CONCAT(&batch, &q->msgs);
	STAILQ_CONCAT(&q->msgs, &batch);
	pthread_mutex_unlock(&q->lock);
	queue_wake(q);
}

static void
queue_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_queue *q = arg;
	uint64_t n;

	if (read(q->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		fatalx("reading the worker eventfd: %s", strerror(errno));
	queue_drain_turn(q);
}

struct worker_queue *
worker_queue_new(struct event_base *base, worker_drain_fn handle, void *userdata)
{
	struct worker_queue *q = xcalloc(1, sizeof(*q));

	pthread_mutex_init(&q->lock, NULL);
	STAILQ_INIT(&q->msgs);
	q->handle = handle;
	q->userdata = userdata;
	if ((q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		fatalx("eventfd: %s", strerror(errno));
	q->ev = event_new(base, q->efd, EV_READ | EV_PERSIST, queue_event_cb, q);
	event_add(q->ev, NULL);
	return q;
}

struct worker_queue *
worker_queue_free(struct worker_queue *q)
{
	struct worker_msg *m;

	if (q == NULL)
		return NULL;
	event_free(q->ev);
	close(q->efd);
	while ((m = STAILQ_FIRST(&q->msgs)) != NULL) {
		STAILQ_REMOVE_HEAD(&q->msgs, link);
		m->free_fn(m);
	}
	pthread_mutex_destroy(&q->lock);
	free(q);
	return NULL;
}

void
worker_queue_push(struct worker_queue *q, struct worker_msg *m)
{
	pthread_mutex_lock(&q->lock);
	STAILQ_INSERT_TAIL(&q->msgs, m, link);
	pthread_mutex_unlock(&q->lock);
	queue_wake(q);
}

void
worker_queue_drain(struct worker_queue *q)
{
	STAILQ_HEAD(, worker_msg) batch = STAILQ_HEAD_INITIALIZER(batch);
	struct worker_msg *m;

	pthread_mutex_lock(&q->lock);
	STAILQ_CONCAT(&batch, &q->msgs);
	pthread_mutex_unlock(&q->lock);
	while ((m = STAILQ_FIRST(&batch)) != NULL) {
		STAILQ_REMOVE_HEAD(&batch, link);
		q->handle(m, q->userdata);
		m->free_fn(m);
	}
}

struct thread_start {
	void *(*fn)(void *);
	void *arg;
};

/*
 * Every worker thread runs WORKER_NICE steps nicer than the loop thread: on
 * two cores, the copy, verify, index and hash threads of a busy job would
 * otherwise hold the CPUs while a socket call waits for the loop; a nicer
 * thread still gets every idle cycle, so throughput is the same on a quiet
 * machine. Linux keeps a nice value per thread; raising one needs no
 * privilege, and a refusal only costs the preference.
 */
static void *
thread_trampoline(void *arg)
{
	struct thread_start st = *(struct thread_start *)arg;

	int nice;

	free(arg);
	/* The loop's own (the main thread's tid is the pid), so helpers of helpers get no nicer. */
	errno = 0;
	nice = getpriority(PRIO_PROCESS, (id_t)getpid());
	if (errno == 0)
		(void)setpriority(PRIO_PROCESS, (id_t)gettid(), nice + WORKER_NICE < 19 ? nice + WORKER_NICE : 19);
	return st.fn(st.arg);
}

int
worker_thread_create(pthread_t *thread, void *(*fn)(void *), void *arg)
{
	struct thread_start *st = xmalloc(sizeof(*st));
	sigset_t all, old;
	int r;

	*st = (struct thread_start){fn, arg};
	/* Signals belong to the loop thread: start the thread with all blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = pthread_create(thread, NULL, thread_trampoline, st);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		free(st);
	return -r;
}

int
worker_thread_start(struct worker_thread *w, void *(*fn)(void *), void *arg)
{
	int r;

	atomic_store(&w->cancel, false);
	atomic_store(&w->pause, false);
	atomic_store(&w->busy, false);
	atomic_store(&w->heartbeat, worker_monotonic_sec());
	if ((r = worker_thread_create(&w->thread, fn, arg)) < 0)
		return r;
	w->running = true;
	return 0;
}

void
worker_thread_stop(struct worker_thread *w)
{
	if (!w->running)
		return;
	atomic_store(&w->cancel, true);
	pthread_join(w->thread, NULL);
	w->running = false;
}

void
worker_thread_beat(struct worker_thread *w)
{
	atomic_store(&w->heartbeat, worker_monotonic_sec());
}

bool
worker_thread_healthy(struct worker_thread *w, int64_t max_age)
{
	if (!w->running || !atomic_load(&w->busy))
		return true;
	return worker_monotonic_sec() - atomic_load(&w->heartbeat) <= max_age;
}
