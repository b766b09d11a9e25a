/*
 * Doctor's checks of the set-up (seedctl doctor): an Entra token; the
 * subscription, resource group and storage account readable through ARM;
 * the import and vault containers writable (a probe blob written and
 * deleted); each drive seedd is still to write (of a job in staging, or in
 * drive prep before its manifest) mounted and writable. Azure calls go through the azure/ layer on the loop, with a
 * client of the doctor's own (a fresh token, at most two attempts a
 * request); the drives are looked at on a thread. Each check is bounded
 * (DOCTOR_CHECK_SEC). Loop thread API.
 */
#ifndef SEEDD_DOCTOR_H
#define SEEDD_DOCTOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct daemon;
struct worker_msg;

#define DOCTOR_CHECK_SEC 20 /* seconds one check may take */

/*
 * checks (borrowed): an array of {"name", "status": "ok"|"fail"|"skip",
 * "text"}, in a fixed order; a failed check's text says what to fix.
 */
typedef void (*doctor_done_fn)(json_t *checks, void *userdata);

/*
 * Run the checks; done runs once, on a later loop turn. write: write probes
 * (blobs, a file on each drive) and create a missing container, as seedd
 * itself would; else only read (a listing, the marker, the mount flags).
 */
void doctor_start(struct daemon *d, bool write, doctor_done_fn done, void *userdata);

/* The watchdog: has the drive thread of each run beaten within max_age seconds? */
bool doctor_healthy(struct daemon *d, int64_t max_age, const char **ret_what);
void doctor_handle_msg(struct daemon *d, struct worker_msg *m);
/*
 * Shutdown, or a reload (the clients hold the old configuration): every
 * run answers now, its unfinished checks failed with "run it again".
 */
void doctor_stop_all(struct daemon *d);

#endif
