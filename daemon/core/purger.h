/*
 * The purger: a thread with its own database connection that deletes the
 * rows of purged jobs (db_job_purge()) a small transaction at a time
 * (db_purge_step()), so that neither the loop nor its writes wait for the
 * seconds a job of a million files takes to delete. At start it resumes a
 * purge a crash interrupted; purger_kick() wakes it for a new one.
 */
#ifndef SEEDD_PURGER_H
#define SEEDD_PURGER_H

struct purger;

/* Start it on the database at db_path; NULL (logged) if it cannot start. */
struct purger *purger_start(const char *db_path);
/* A job was purged: go and delete its rows. NULL: nothing (they wait for the next start). */
void purger_kick(struct purger *p);
/* Stop it between two transactions; what is left is deleted after the next start. */
struct purger *purger_stop(struct purger *p);

#endif
