/*
 * core worker: a worker thread starts with every signal blocked (they are
 * the loop's) and WORKER_NICE (5) steps nicer than the loop thread, so bulk
 * work yields the CPUs to the loop; a thread a worker starts gets no nicer.
 */
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include "test.h"
#include "worker.h"

struct seen {
	int nice;
	bool sigterm_blocked;
	int inner_nice; /* of a thread this thread started */
};

static int
own_nice(void)
{
	errno = 0;
	int n = getpriority(PRIO_PROCESS, (id_t)gettid());
	check_int(errno, 0);
	return n;
}

static void *
inner_thread(void *arg)
{
	((struct seen *)arg)->inner_nice = own_nice();
	return NULL;
}

static void *
outer_thread(void *arg)
{
	struct seen *s = arg;
	sigset_t now;
	pthread_t t;

	s->nice = own_nice();
	pthread_sigmask(SIG_SETMASK, NULL, &now);
	s->sigterm_blocked = sigismember(&now, SIGTERM) == 1;
	check_int(worker_thread_create(&t, inner_thread, s), 0);
	pthread_join(t, NULL);
	return NULL;
}

int
main(void)
{
	struct seen s = {0};
	int loop_nice = own_nice();
	pthread_t t;

	check_int(worker_thread_create(&t, outer_thread, &s), 0);
	pthread_join(t, NULL);
	check(s.sigterm_blocked);
	if (loop_nice + 5 <= 19) {
		check_int(s.nice, loop_nice + 5);
		check_int(s.inner_nice, loop_nice + 5);
	}
	check_int(own_nice(), loop_nice); /* the loop thread itself is untouched */
	return 0;
}
