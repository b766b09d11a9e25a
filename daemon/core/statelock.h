/*
 * One seedd per state directory: an exclusive lock on <state dir>/seedd.lock,
 * taken before the job store is opened and held for the life of the process
 * (the kernel drops it when the process ends, kill -9 included).
 */
#ifndef SEEDD_STATELOCK_H
#define SEEDD_STATELOCK_H

#include <sys/types.h>

#define STATE_LOCK_NAME "seedd.lock"

/*
 * Lock dir's lock file; returns its descriptor (keep it open), or -EBUSY if
 * another process holds it (*ret_holder its pid, 0 if unknown), or another
 * -errno. *ret_err names the problem on failure.
 */
int state_lock_take(const char *dir, pid_t *ret_holder, char **ret_err);

#endif
