/*
 * Threads and the queue that carries their results to the loop. Every
 * thread is started with worker_thread_create(), signals blocked (they are
 * the loop's). A worker thread never touches libevent, curl or the loop's
 * SQLite connection: it pushes a message and the loop, woken through an
 * eventfd, drains the queue and commits. Helper threads of a worker (the
 * copier's, a drive's prefetcher and group verifier) live and die inside it.
 */
#ifndef SEEDD_WORKER_H
#define SEEDD_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

struct event_base;
struct worker_queue;

/* A message from a thread to the loop; embed it as the first member of your own. */
struct worker_msg {
	STAILQ_ENTRY(worker_msg) link;
	int kind;
	void (*free_fn)(struct worker_msg *m); /* frees the whole message */
};

typedef void (*worker_drain_fn)(struct worker_msg *m, void *userdata);

/* The loop side: handle() runs on the loop thread for each message, in order. */
struct worker_queue *worker_queue_new(struct event_base *base, worker_drain_fn handle,
				      void *userdata);
struct worker_queue *worker_queue_free(struct worker_queue *q);
/* Any thread. Takes ownership of m. */
void worker_queue_push(struct worker_queue *q, struct worker_msg *m);
/* Loop thread (or main after the loop ended): handle everything queued now. */
void worker_queue_drain(struct worker_queue *q);

/* A thread with a cancel flag and a heartbeat the watchdog reads. */
struct worker_thread {
	pthread_t thread;
	bool running;
	atomic_bool cancel;
	atomic_bool pause;
	atomic_llong heartbeat; /* CLOCK_MONOTONIC seconds, written by the thread */
	atomic_bool busy;       /* the heartbeat matters only while busy */
};

/* pthread_create() with every signal blocked in the new thread; 0 or -errno. */
int worker_thread_create(pthread_t *thread, void *(*fn)(void *), void *arg);

int worker_thread_start(struct worker_thread *w, void *(*fn)(void *), void *arg);
/* Raise the cancel flag and wait for the thread to end. */
void worker_thread_stop(struct worker_thread *w);
/* For the thread itself. */
void worker_thread_beat(struct worker_thread *w);
/* True if the thread is idle, or busy with a heartbeat younger than max_age seconds. */
bool worker_thread_healthy(struct worker_thread *w, int64_t max_age);

int64_t worker_monotonic_sec(void);

#endif
