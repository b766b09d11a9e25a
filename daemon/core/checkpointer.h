/*
 * The checkpointer: a thread with its own database connection that copies
 * the write-ahead log into the database every few seconds (a PASSIVE
 * checkpoint, db.h), so that the loop's commits never do it. The loop's
 * connection has SQLite's automatic checkpoint turned off.
 */
#ifndef SEEDD_CHECKPOINTER_H
#define SEEDD_CHECKPOINTER_H

#define CHECKPOINT_INTERVAL_MS 2000

struct checkpointer;

/* Start it on the database at db_path; NULL (logged) if it cannot start. */
struct checkpointer *checkpointer_start(const char *db_path);
/* Stop it after a last checkpoint. */
struct checkpointer *checkpointer_stop(struct checkpointer *c);

#endif
