/*
 * The control socket: obtaining it (systemd socket activation first, else a
 * safe bind), accepting connections with per-uid caps and a free-fd reserve,
 * and the set of live connections (for Watch broadcasts). Loop thread only.
 */
#ifndef SEEDD_SERVER_H
#define SEEDD_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct daemon;
struct server;
struct conn;

#define SERVER_CONN_MAX 256     /* connections in all */
#define SERVER_CONN_PER_UID 32  /* connections of one uid */
/*
 * Of SERVER_CONN_MAX, the last this many are for uid 0 and AdminGroup=
 * members only: other users together never hold more than 240, so root's
 * `seedctl status` gets in while 8 users hold 32 Watch connections each.
 */
#define SERVER_CONN_RESERVE 16
#define SERVER_FD_RESERVE 16    /* pause accept() when fewer fds than this are free */

/*
 * Listen on path, or on the systemd-passed socket if path is NULL and one was
 * passed, or on default_path. On error *ret_err names the problem.
 */
struct call;
/*
 * The method layer's entry: runs every call the connections read (main
 * installs methods_dispatch; the transport knows no method).
 */
typedef void (*server_dispatch_fn)(struct call *call);

int server_new(struct daemon *d, const char *path, const char *default_path,
	       server_dispatch_fn dispatch, struct server **ret, char **ret_err);
/* Hand a call read by a connection to the dispatcher. */
void server_dispatch(struct server *s, struct call *call);
struct server *server_free(struct server *s);
void server_stop_accepting(struct server *s);
const char *server_path(const struct server *s);
/* Whether the socket came from systemd. */
bool server_activated(const struct server *s);

/* Connection bookkeeping, called by conn.c. */
void server_conn_gone(struct server *s, struct conn *c);
/* After freeing a connection that held much: malloc_trim(0) on a later loop turn. */
void server_trim_later(struct server *s);
struct daemon *server_daemon(const struct server *s);

/*
 * Heavy read calls (PlanJob, GetJobReport): at most one at a time per uid.
 * A call waits in one queue (its connection serves nothing else meanwhile)
 * and the loop starts at most one call per uid per turn, oldest first, so a
 * uid that floods waits for itself while other uids and root are served.
 * queue takes the call (rights and parameters checked) and runs fn(call)
 * later, with call->queued set; a handler that answers later sets
 * call->held and calls server_heavy_done() once it has answered.
 */
void server_heavy_queue(struct server *s, const struct call *call, void (*fn)(struct call *));
void server_heavy_done(struct server *s, uid_t uid);

/* Send job (a Job object) to every connection watching it. */
/* Whether a Watch connection follows job name (or every job). */
bool server_watches(struct server *s, const char *name);
void server_broadcast_job(struct server *s, const char *name, json_t *job, bool last);

#endif
