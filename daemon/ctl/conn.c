/*
 * A control connection: reads bytes from a bufferevent into a varlink
 * reader, dispatches each complete call, writes replies. A malformed message
 * gets an error reply; an oversized one an error and a close; a peer that
 * stops reading or stays idle is dropped. Stops reading means: its unread
 * replies pass CONN_OUTPUT_MAX, or none of them could be written for
 * UnreadTimeoutSec=. A dropped peer's buffers are freed on the next loop
 * turn, never later. A peer that pipelines many calls
 * gets CONN_BATCH of them served per loop turn, so it cannot hold the loop
 * while other peers wait. Loop thread only.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "conn.h"
#include "daemon.h"
#include "log.h"
#include "names.h"
#include "server.h"
#include "util.h"

#define GROUPS_MAX 256

static const char *const conn_state_table[_CONN_STATE_MAX] = {
	[CONN_IDLE] = "idle",
	[CONN_WATCHING] = "watching",
	[CONN_CLOSING] = "closing",
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_close_after_flush(struct conn *c);
static void conn_more_cb(evutil_socket_t fd, short what, void *arg);

void
ev_check(int r, const char *what)
{
	if (r < 0)
		fatalx("%s failed", what);
}

/* Every state change goes through here, so the log shows old -> new. CLOSING is final. */
static void
conn_set_state(struct conn *c, enum conn_state state)
{
	if (c->state == state || c->state == CONN_CLOSING)
		return;
	log_debug("connection %u: %s -> %s", c->id, conn_state_table[c->state],
		  conn_state_table[state]);
	c->state = state;
}

/*
 * The read timeout drops an idle peer (off while a reply or a Watch is
 * pending); the write timeout, always on, drops a peer none of whose pending
 * output could be written for UnreadTimeoutSec= (libevent restarts it on
 * every write that makes progress, and arms it only while output waits).
 */
static void
conn_set_idle_timeout(struct conn *c, bool on)
{
	struct timeval idle = {CONN_IDLE_TIMEOUT_SEC, 0};
	struct timeval unread = {(time_t)server_daemon(c->server)->config->unread_timeout_sec, 0};

	ev_check(bufferevent_set_timeouts(c->bev, on ? &idle : NULL, &unread),
		 "bufferevent_set_timeouts");
}

struct conn *
conn_new(struct server *s, int fd, uid_t uid, gid_t gid, pid_t pid)
{
	struct daemon *d = server_daemon(s);
	struct conn *c = xcalloc(1, sizeof(*c));

	c->server = s;
	c->uid = uid;
	c->gid = gid;
	c->pid = pid;
	LIST_INIT(&c->refs);
	vl_reader_init(&c->reader);
	c->bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatalx("bufferevent_socket_new failed");
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	/* Unserved input stays bounded: the socket is not read past this. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, CONN_INPUT_MAX);
	c->ev_more = evtimer_new(d->base, conn_more_cb, c);
	if (c->ev_more == NULL)
		fatalx("evtimer_new failed");
	conn_set_idle_timeout(c, true);
	ev_check(bufferevent_enable(c->bev, EV_READ | EV_WRITE), "bufferevent_enable");
	return c;
}

struct conn_ref *
conn_ref_new(struct conn *c)
{
	struct conn_ref *ref = xcalloc(1, sizeof(*ref));

	ref->conn = c;
	ref->oneway = c->oneway;
	LIST_INSERT_HEAD(&c->refs, ref, link);
	/* Waiting for a reply is not idleness. */
	conn_set_idle_timeout(c, false);
	return ref;
}

struct conn *
conn_ref_get(struct conn_ref *ref)
{
	if (ref->conn != NULL)
		ref->conn->oneway = ref->oneway;
	return ref->conn;
}

/* Serve the rest of the input on the next turn (after the other peers' events). */
static void
conn_yield(struct conn *c)
{
	static const struct timeval zero = {0, 0};

	ev_check(evtimer_add(c->ev_more, &zero), "evtimer_add");
}

/*
 * Drop the peer without flushing: stop reading and writing now, free the
 * connection and its buffers on the next turn (callers up the stack still
 * hold c). Replies sent meanwhile are discarded (state CLOSING).
 */
static void
conn_drop(struct conn *c, const char *why)
{
	if (c->dropped)
		return;
	log_warning("connection %u (pid %d uid %u) %s; dropping it", c->id, (int)c->pid,
		    (unsigned)c->uid, why);
	conn_set_state(c, CONN_CLOSING);
	c->dropped = true;
	ev_check(bufferevent_disable(c->bev, EV_READ | EV_WRITE), "bufferevent_disable");
	conn_yield(c);
}

void
conn_ref_free(struct conn_ref *ref)
{
	struct conn *c;

	if (ref == NULL)
		return;
	if ((c = ref->conn) != NULL) {
		LIST_REMOVE(ref, link);
		/* Serve the next calls, or close a connection that overflowed meanwhile. */
		if (LIST_EMPTY(&c->refs)) {
			if (c->state == CONN_IDLE && !c->eof)
				conn_set_idle_timeout(c, true);
			conn_yield(c);
		}
	}
	free(ref);
}

void
conn_free(struct conn *c)
{
	struct conn_ref *ref;
	struct server *s;
	size_t held;

	if (c == NULL)
		return;
	while ((ref = LIST_FIRST(&c->refs)) != NULL) {
		LIST_REMOVE(ref, link);
		ref->conn = NULL;
	}
	s = c->server;
	server_conn_gone(s, c);
	held = evbuffer_get_length(bufferevent_get_output(c->bev)) +
	       evbuffer_get_length(bufferevent_get_input(c->bev));
	event_free(c->ev_more);
	bufferevent_free(c->bev);
	vl_reader_done(&c->reader);
	free(c->watch_name);
	free(c);
	if (held >= CONN_TRIM_MIN)
		server_trim_later(s); /* its memory really returns to the OS */
}

bool
conn_in_group(const struct conn *c, gid_t gid)
{
	return peer_in_group(bufferevent_getfd(c->bev), c->uid, c->gid, gid);
}

bool
peer_in_group(int fd, uid_t uid, gid_t peer_gid, gid_t gid)
{
	gid_t groups[GROUPS_MAX];
	socklen_t len = sizeof(groups);

	if (uid == 0 || peer_gid == gid)
		return true;
	/* SO_PEERGROUPS gives the groups at connect time, without a race. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
		for (size_t i = 0; i < len / sizeof(gid_t); i++)
			if (groups[i] == gid)
				return true;
		return false;
	}
	/* Fallback: the user's groups now, which may differ from the peer's. */
	struct passwd pw, *pwp = NULL;
	char buf[4096];
	int n = GROUPS_MAX;
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &pwp) != 0 || pwp == NULL)
		return false;
	if (getgrouplist(pw.pw_name, peer_gid, groups, &n) < 0)
		return false;
	for (int i = 0; i < n; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

static void
conn_send(struct conn *c, json_t *msg)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;

	if (c->state == CONN_CLOSING) {
		json_decref(msg);
		return;
	}
	if (vl_encode(msg, &buf, &len) < 0) {
		json_decref(msg);
		log_error("connection %u: reply larger than %d bytes", c->id, VL_MESSAGE_MAX);
		msg = vl_error_new(SEEDD_ERR_INTERNAL,
				   json_pack("{s:s}", "message", "reply too large"));
		if (vl_encode(msg, &buf, &len) < 0)
			fatalx("cannot encode an error reply");
	}
	json_decref(msg);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) + len > CONN_OUTPUT_MAX)
		return conn_drop(c, "does not read its replies (over 8 MiB unread)");
	if (bufferevent_write(c->bev, buf, len) < 0)
		conn_drop(c, "cannot take a reply (out of memory)");
}

void
conn_reply(struct conn *c, json_t *params, bool continues)
{
	if (c == NULL || c->oneway) {
		json_decref(params);
		return;
	}
	conn_send(c, vl_reply_new(params, continues));
}

void
conn_error(struct conn *c, const char *error, json_t *params)
{
	if (c == NULL || c->oneway) {
		json_decref(params);
		return;
	}
	conn_send(c, vl_error_new(error, params));
}

void
conn_watch(struct conn *c, const char *name)
{
	free(c->watch_name);
	c->watch_name = name ? xstrdup(name) : NULL;
	conn_set_state(c, CONN_WATCHING);
	conn_set_idle_timeout(c, false);
}

void
conn_send_watch(struct conn *c, const char *name, json_t *job, bool last)
{
	if (c->state != CONN_WATCHING)
		return;
	if (c->watch_name != NULL && strcmp(c->watch_name, name) != 0)
		return;
	json_incref(job);
	if (last && c->watch_name != NULL) {
		conn_reply(c, json_pack("{s:o}", "job", job), false);
		conn_set_state(c, CONN_IDLE);
		if (c->state == CONN_IDLE)
			conn_set_idle_timeout(c, true);
	} else
		conn_reply(c, json_pack("{s:o}", "job", job), true);
	if (c->state == CONN_CLOSING)
		conn_close_after_flush(c);
}

/* Close once the output is flushed. */
static void
conn_close_after_flush(struct conn *c)
{
	if (c->dropped)
		return; /* freed on the next turn */
	conn_set_state(c, CONN_CLOSING);
	ev_check(bufferevent_disable(c->bev, EV_READ), "bufferevent_disable");
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_free(c);
}

static void
conn_bad_message(struct conn *c, const char *what)
{
	log_debug("connection %u: %s", c->id, what);
	c->oneway = false;
	conn_error(c, VL_ERR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", what));
}

/* Check the envelope of a call and dispatch it. */
static void
conn_handle(struct conn *c, json_t *msg)
{
	struct daemon *d = server_daemon(c->server);
	json_t *method = json_object_get(msg, "method");
	json_t *params = json_object_get(msg, "parameters");
	json_t *more = json_object_get(msg, "more");
	json_t *oneway = json_object_get(msg, "oneway");

	c->oneway = false;
	if (!json_is_string(method))
		return conn_bad_message(c, "method");
	if (params != NULL && !json_is_object(params))
		return conn_bad_message(c, "parameters");
	if ((more != NULL && !json_is_boolean(more)) || (oneway != NULL && !json_is_boolean(oneway)))
		return conn_bad_message(c, more && !json_is_boolean(more) ? "more" : "oneway");
	c->oneway = json_is_true(oneway);

	json_t *empty = params ? NULL : json_object();
	struct call call = {
		.d = d,
		.conn = c,
		.method = json_string_value(method),
		.params = params ? params : empty,
		.more = json_is_true(more),
	};
	server_dispatch(c->server, &call);
	json_decref(empty);
}

/*
 * Serve up to CONN_BATCH calls from the input, in order. Stops early while a
 * call waits for a later reply (a reference is held), so replies keep the
 * order of the calls; yields when the batch is used up and input remains.
 */
static void
conn_serve(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	char buf[65536];
	int n, r, served = 0;

	while (c->state != CONN_CLOSING && LIST_EMPTY(&c->refs)) {
		json_t *msg = NULL;
		if (served == CONN_BATCH) {
			conn_yield(c);
			return;
		}
		r = vl_reader_next(&c->reader, &msg);
		if (r == 0) {
			if ((n = evbuffer_remove(in, buf, sizeof(buf))) == 0)
				break;
			if (n < 0)
				return conn_drop(c, "cannot read its input");
			r = vl_reader_feed(&c->reader, buf, (size_t)n);
			explicit_bzero(buf, (size_t)n); /* requests may carry secrets */
			if (r < 0)
				goto too_long;
			continue;
		}
		if (r == -EMSGSIZE)
			goto too_long;
		served++;
		if (r < 0) {
			conn_bad_message(c, "message is not a JSON object");
			continue;
		}
		conn_handle(c, msg);
		json_decref(msg);
	}
	if (c->state == CONN_CLOSING || (c->eof && LIST_EMPTY(&c->refs)))
		conn_close_after_flush(c);
	return;

too_long:
	log_warning("connection %u (pid %d): message longer than %d bytes; closing", c->id,
		    (int)c->pid, VL_MESSAGE_MAX);
	c->oneway = false;
	conn_error(c, VL_ERR_INVALID_PARAMETER,
		   json_pack("{s:s}", "parameter", "message too long"));
	conn_close_after_flush(c);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	/* Input that arrives while a batch waits for its turn joins it there. */
	if (!c->dropped && !evtimer_pending(c->ev_more, NULL))
		conn_serve(c);
}

static void
conn_more_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	if (c->dropped)
		conn_free(c);
	else
		conn_serve(c);
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->state == CONN_CLOSING && !c->dropped)
		conn_free(c);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && c->state != CONN_CLOSING) {
		/* The peer shut its side: answer the calls it sent first. */
		c->eof = true;
		conn_set_idle_timeout(c, false);
		if (!evtimer_pending(c->ev_more, NULL))
			conn_serve(c);
		return;
	}
	if (c->dropped)
		return; /* freed on the next turn */
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_WRITING)) {
		log_warning("connection %u (pid %d uid %u) left its replies unread for %u s; "
			    "dropping it", c->id, (int)c->pid, (unsigned)c->uid,
			    server_daemon(c->server)->config->unread_timeout_sec);
	} else if (what & BEV_EVENT_TIMEOUT)
		log_debug("connection %u idle for %d s; closing", c->id, CONN_IDLE_TIMEOUT_SEC);
	else if (what & BEV_EVENT_ERROR)
		log_debug("connection %u: %s", c->id, strerror(EVUTIL_SOCKET_ERROR()));
	conn_free(c);
}
