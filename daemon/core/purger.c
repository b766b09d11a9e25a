/*
 * The purger (purger.h). It sleeps on a condition until kicked, then takes
 * the purged jobs one at a time, oldest first, until none is left. Each
 * step is one short transaction; the quit flag is read between them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "db.h"
#include "log.h"
#include "purger.h"
#include "util.h"
#include "worker.h"

struct purger {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool quit, kicked;
	struct db *db;
};

static bool
purger_quitting(struct purger *p)
{
	bool quit;

	pthread_mutex_lock(&p->lock);
	quit = p->quit;
	pthread_mutex_unlock(&p->lock);
	return quit;
}

/* Delete one purged job's rows; false if the store failed (logged) or we quit. */
static bool
purge_one(struct purger *p, int64_t job_id)
{
	int64_t cursor = 0;
	int r;

	while (!purger_quitting(p)) {
		if ((r = db_purge_step(p->db, job_id, &cursor)) == 0)
			return true;
		if (r < 0 && r != -EBUSY) {
			log_error("purging job #%lld: %s", (long long)job_id, db_errmsg(p->db));
			return false;
		}
	}
	return false;
}

static void *
purger_main(void *arg)
{
	struct purger *p = arg;
	int64_t id;

	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (!p->quit && !p->kicked)
			pthread_cond_wait(&p->cond, &p->lock);
		p->kicked = false;
		pthread_mutex_unlock(&p->lock);
		while (!purger_quitting(p) && db_purge_next(p->db, &id) == 0)
			if (!purge_one(p, id))
				break; /* a store error: tried again at the next kick or start */
		if (purger_quitting(p))
			return NULL;
	}
}

struct purger *
purger_start(const char *db_path)
{
	struct purger *p = xcalloc(1, sizeof(*p));
	_cleanup_free_ char *err = NULL;

	if (db_open(db_path, &p->db, &err) < 0) {
		log_error("the purger cannot open %s: %s", db_path, err ? err : "?");
		free(p);
		return NULL;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->kicked = true; /* a purge a crash interrupted goes on */
	if (worker_thread_create(&p->thread, purger_main, p) != 0) {
		log_error("cannot start the purger thread");
		pthread_cond_destroy(&p->cond);
		pthread_mutex_destroy(&p->lock);
		db_close(p->db);
		free(p);
		return NULL;
	}
	return p;
}

void
purger_kick(struct purger *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->kicked = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

struct purger *
purger_stop(struct purger *p)
{
	if (p == NULL)
		return NULL;
	pthread_mutex_lock(&p->lock);
	p->quit = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	db_close(p->db);
	free(p);
	return NULL;
}
