/*
 * seedctl's blocking varlink calls: connect to seedd's socket, send one
 * call, read replies with a timeout, and run a parsed invocation end to end.
 */
#ifndef SEEDCTL_CALL_H
#define SEEDCTL_CALL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "commands.h"
#include "varlink.h"

#define CALL_TIMEOUT_MS 30000

struct call_conn {
	int fd;
	struct vl_reader reader;
};

/* Connect to the Unix socket at path; -errno on failure (-ENAMETOOLONG for a long path). */
int call_open(struct call_conn *c, const char *path);
void call_close(struct call_conn *c);

/* Send {"method":..., "parameters":...[, "more":true]}; params is borrowed. */
int call_send(struct call_conn *c, const char *method, json_t *params, bool more);

/*
 * Read one reply (timeout_ms, -1 for none) and check its shape: an object
 * with a "parameters" object, or with an "error" string. -ETIMEDOUT,
 * -ECONNRESET when seedd closed first, -EPROTO for a malformed reply.
 */
int call_recv(struct call_conn *c, int timeout_ms, json_t **ret);

/*
 * Run an INVOCATION_CALL: call seedd, print the reply on out (human or
 * JSON), errors on err. Returns a SEEDCTL_EXIT_* status.
 */
int call_run(const struct invocation *inv, FILE *out, FILE *err);

#endif
