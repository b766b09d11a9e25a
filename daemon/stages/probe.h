/*
 * AddDrive's probe of a drive on a thread of its own (a slow disk never
 * stalls the loop): the checks of drive_attach_check() or, for a drive
 * attached already, of its BitLocker key; the O_DIRECT test; seedd's marker.
 * Loop thread API.
 */
#ifndef SEEDD_PROBE_H
#define SEEDD_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "drive.h"
#include "worker.h"

struct daemon;
struct probe;

/* The probe is the caller's to read during the call, and freed after it. */
typedef void (*probe_done_fn)(struct daemon *d, const struct probe *pr, void *userdata);

struct probe {
	LIST_ENTRY(probe) link;
	bool listed;
	struct worker_thread w;
	struct daemon *d;
	struct worker_queue *queue;
	probe_done_fn done;
	void *userdata;
	/* Set by the caller before probe_start() (owned by the probe, freed with it). */
	int64_t job_id;
	char *job_name, *path, *serial, *key, *key_file, *bitlocker_device;
	struct drive_attach_args args;
	int64_t rekey_drive_id; /* > 0: the drive is attached; only check the key */
	/* Results. */
	int r;
	char *err;
	struct drive_attach at;
	char uuid[DRIVE_UUID_LEN + 1];
	unsigned direct; /* COPY_DIRECT_* the drive takes */
};

/* A probe of the drive at path for the job; fill in the rest, then probe_start(). */
struct probe *probe_new(struct daemon *d, int64_t job_id, const char *job_name, const char *path);
/* Run it on a thread; done runs on a later loop turn. -EAGAIN (probe freed, no done) if no thread. */
int probe_start(struct probe *pr, probe_done_fn done, void *userdata);
/* The watchdog: have the busy probes beat within max_age seconds? */
bool probe_healthy(struct daemon *d, int64_t max_age, const char **ret_what);
void probe_handle_msg(struct daemon *d, struct worker_msg *m);
/*
 * Shutdown: wait for the probes (each ends by queueing its result, which the
 * final drain of the worker queue records and frees).
 */
void probe_stop_all(struct daemon *d);

#endif
