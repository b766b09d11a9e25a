/*
 * One client connection of the control socket: a state machine reading
 * NUL-framed varlink calls, dispatching them through methods.c and writing
 * replies. Loop thread only.
 */
#ifndef SEEDD_CONN_H
#define SEEDD_CONN_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "varlink.h"

struct server;
struct bufferevent;
struct event;

#define CONN_IDLE_TIMEOUT_SEC 60
#define CONN_OUTPUT_MAX (8 * 1024 * 1024) /* a peer that stops reading is dropped */
#define CONN_TRIM_MIN (1024 * 1024) /* freeing this much buffered gives memory back to the OS */
/*
 * Calls served in one turn of the loop before the connection yields to the
 * other peers; the rest stay buffered and are served on a later turn.
 */
#define CONN_BATCH 8
#define CONN_INPUT_MAX (256 * 1024) /* stop reading the socket past this much unserved input */

enum conn_state {
	CONN_IDLE,     /* waiting for a call */
	CONN_WATCHING, /* streaming Watch replies */
	CONN_CLOSING,  /* flushing a last reply, then closing */
	_CONN_STATE_MAX,
};

/*
 * A reference to a connection for a reply that comes later (a call whose
 * work runs on a thread, or that waits its turn): conn becomes NULL when the
 * connection goes away, and the reply is then dropped. While a connection
 * has a reference it serves no further call, so replies keep the order of
 * the calls; freeing the last reference resumes it.
 */
struct conn_ref {
	LIST_ENTRY(conn_ref) link;
	struct conn *conn;
	bool oneway;
};

struct conn {
	LIST_ENTRY(conn) link;
	LIST_HEAD(, conn_ref) refs;
	struct server *server;
	struct bufferevent *bev;
	struct event *ev_more; /* serves the rest of the input on a later turn */
	struct vl_reader reader;
	enum conn_state state;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	bool oneway;      /* the current call wants no reply */
	bool eof;         /* the peer shut its side: serve what is buffered, then close */
	bool dropped;     /* closed without a flush: freed on the next loop turn */
	char *watch_name; /* watched job, NULL for all (when CONN_WATCHING) */
	unsigned id;      /* for log lines */
};

/*
 * One call on a connection, as the transport hands it to the dispatcher
 * (server_new()'s dispatch: methods_dispatch, installed by main). The
 * envelope is checked; the parameters are not.
 */
struct daemon;
struct call {
	struct daemon *d;
	struct conn *conn;
	const char *method;
	json_t *params; /* checked against the spec; borrowed */
	bool more;
	bool queued; /* a heavy call whose turn came */
	bool held;   /* set by a heavy call's handler that answers later */
};


LIST_HEAD(conn_list, conn);

/*
 * For ctl/: a libevent call that fails only when memory or the kernel's
 * event set (epoll_ctl) does leaves no way to go on serving, so the daemon
 * stops, as it does when malloc fails (its state is in SQLite and resumes).
 */
void ev_check(int r, const char *what);

struct conn *conn_new(struct server *s, int fd, uid_t uid, gid_t gid, pid_t pid);
void conn_free(struct conn *c);

/* uid 0, or a member of the group gid (from SO_PEERGROUPS, else getgrouplist). */
bool conn_in_group(const struct conn *c, gid_t gid);
/* The same for a peer not yet a connection: socket fd, credentials from SO_PEERCRED. */
bool peer_in_group(int fd, uid_t uid, gid_t peer_gid, gid_t gid);

struct conn_ref *conn_ref_new(struct conn *c);
/* The connection to answer on (its oneway flag restored), or NULL if it is gone. */
struct conn *conn_ref_get(struct conn_ref *ref);
void conn_ref_free(struct conn_ref *ref);

/* Reply to the current call; both steal params (may be NULL); c NULL drops the reply. */
void conn_reply(struct conn *c, json_t *params, bool continues);
void conn_error(struct conn *c, const char *error, json_t *params);

/* Turn the connection into a watcher of job `name` (NULL: all jobs). */
void conn_watch(struct conn *c, const char *name);
/* A watch update for job `name`; last ends a named watch. */
void conn_send_watch(struct conn *c, const char *name, json_t *job, bool last);

#endif
