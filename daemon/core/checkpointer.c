/*
 * The checkpointer (checkpointer.h). The thread sleeps on a condition with a
 * timeout, so stopping it is immediate.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "checkpointer.h"
#include "db.h"
#include "log.h"
#include "util.h"
#include "worker.h"

struct checkpointer {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool quit;
	struct db *db;
};

static void
deadline_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *
checkpointer_main(void *arg)
{
	struct checkpointer *c = arg;
	struct timespec ts;
	bool quit = false;

	while (!quit) {
		pthread_mutex_lock(&c->lock);
		deadline_in(&ts, CHECKPOINT_INTERVAL_MS);
		while (!c->quit && pthread_cond_timedwait(&c->cond, &c->lock, &ts) != ETIMEDOUT)
			;
		quit = c->quit;
		pthread_mutex_unlock(&c->lock);
		if (db_checkpoint(c->db, NULL, NULL) < 0)
			log_warning("checkpointing the database: %s", db_errmsg(c->db));
	}
	return NULL;
}

struct checkpointer *
checkpointer_start(const char *db_path)
{
	struct checkpointer *c = xcalloc(1, sizeof(*c));
	_cleanup_free_ char *err = NULL;
	pthread_condattr_t ca;

	if (db_open(db_path, &c->db, &err) < 0) {
		log_error("the checkpointer cannot open %s: %s", db_path, err ? err : "?");
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (worker_thread_create(&c->thread, checkpointer_main, c) != 0) {
		log_error("cannot start the checkpointer thread");
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->lock);
		db_close(c->db);
		free(c);
		return NULL;
	}
	return c;
}

struct checkpointer *
checkpointer_stop(struct checkpointer *c)
{
	if (c == NULL)
		return NULL;
	pthread_mutex_lock(&c->lock);
	c->quit = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	db_close(c->db);
	free(c);
	return NULL;
}
