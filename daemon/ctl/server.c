/*
 * The control socket. Obtains the listening socket (systemd socket
 * activation, else a careful bind: probe for a live instance before removing
 * a stale socket, umask around bind, explicit chmod 0660), accepts with
 * per-uid and total caps and a free-fd reserve, and keeps the list of live
 * connections. Loop thread only.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <malloc.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "config.h"
#include "conn.h"
#include "daemon.h"
#include "log.h"
#include "server.h"
#include "util.h"

/* A heavy call waiting for its uid's turn. */
struct heavy_call {
	TAILQ_ENTRY(heavy_call) link;
	struct conn_ref *ref;
	uid_t uid;
	char *method;
	json_t *params;
	bool more;
	void (*fn)(struct call *call);
};

/* A uid with a heavy call running (held: answered later), or started this turn. */
struct heavy_uid {
	LIST_ENTRY(heavy_uid) link;
	uid_t uid;
	bool held;
};

struct server {
	struct daemon *d;
	int fd;
	char *path;
	bool activated; /* from systemd: never unlink */
	bool bound;     /* we created the socket file */
	struct event *ev_accept;
	struct event *ev_resume; /* re-enables accept after fd exhaustion */
	struct conn_list conns;
	unsigned n_conns;
	unsigned next_id;
	TAILQ_HEAD(, heavy_call) heavy; /* oldest first */
	LIST_HEAD(, heavy_uid) heavy_busy;
	struct event *ev_heavy; /* starts the next heavy calls, one per uid */
	struct event *ev_trim;  /* gives freed connection buffers back to the OS */
	server_dispatch_fn dispatch;
};

static void server_accept_cb(evutil_socket_t fd, short what, void *arg);
static void heavy_run_cb(evutil_socket_t fd, short what, void *arg);

static void
trim_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)malloc_trim(0);
}

/*
 * A dropped peer may leave megabytes of freed chunks between live ones,
 * which malloc keeps: give them back a moment later, once libevent has run
 * the finalizers that free a bufferevent's buffers (bufferevent_free() only
 * schedules them, so a trim right after it found them still in use).
 */
void
server_trim_later(struct server *s)
{
	static const struct timeval later = {0, 100000};

	if (!evtimer_pending(s->ev_trim, NULL))
		ev_check(evtimer_add(s->ev_trim, &later), "evtimer_add");
}

/* The first socket passed by systemd, or -1. */
static int
listen_fd_from_systemd(void)
{
	int n = sd_listen_fds(1);

	if (n <= 0)
		return -1;
	for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++)
		if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0)
			return fd;
	return -1;
}

/*
 * Is something listening on path? 1 yes, 0 no (nothing there, or a stale
 * socket), -errno if path is not a socket we may replace.
 */
static int
probe_live(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, r;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	r = r == 0 ? 1 : (errno == ECONNREFUSED || errno == ENOENT) ? 0 : -errno;
	close(fd);
	return r;
}

static int
make_parent_dir(const char *path)
{
	_cleanup_free_ char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');

	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int
bind_socket(const char *path, gid_t group, bool set_group, char **ret_err)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		xasprintf(ret_err, "socket path %s is too long", path);
		return -ENAMETOOLONG;
	}
	if ((r = make_parent_dir(path)) < 0) {
		xasprintf(ret_err, "cannot create the directory of %s: %s", path, strerror(-r));
		return r;
	}
	r = probe_live(path);
	if (r == 1) {
		xasprintf(ret_err, "another seedd is already listening on %s", path);
		return -EADDRINUSE;
	}
	if (r == -EEXIST) {
		xasprintf(ret_err, "%s exists and is not a socket; refusing to replace it", path);
		return r;
	}
	if (r < 0) {
		xasprintf(ret_err, "cannot probe %s: %s", path, strerror(-r));
		return r;
	}
	(void)unlink(path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
		xasprintf(ret_err, "socket: %s", strerror(errno));
		return -errno;
	}
	old = umask(0117);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (r < 0 || chmod(path, 0660) < 0 || (set_group && chown(path, (uid_t)-1, group) < 0) ||
	    listen(fd, 64) < 0) {
		r = -errno;
		xasprintf(ret_err, "cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	return fd;
}

int
server_new(struct daemon *d, const char *path, const char *default_path,
	   server_dispatch_fn dispatch, struct server **ret, char **ret_err)
{
	struct server *s = xcalloc(1, sizeof(*s));
	int fd = -1;

	s->dispatch = dispatch;
	LIST_INIT(&s->conns);
	TAILQ_INIT(&s->heavy);
	LIST_INIT(&s->heavy_busy);
	s->d = d;
	if ((s->ev_heavy = evtimer_new(d->base, heavy_run_cb, s)) == NULL ||
	    (s->ev_trim = evtimer_new(d->base, trim_cb, s)) == NULL)
		fatalx("evtimer_new failed");
	if (path == NULL && (fd = listen_fd_from_systemd()) >= 0) {
		s->activated = true;
		s->path = xstrdup("(socket activation)");
		(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	} else {
		const struct config *c = d->config;
		s->path = xstrdup(path ? path : default_path);
		fd = bind_socket(s->path, c->admin_gid, c->admin_group != NULL, ret_err);
		if (fd < 0) {
			event_free(s->ev_heavy);
			event_free(s->ev_trim);
			free(s->path);
			free(s);
			return fd;
		}
		s->bound = true;
	}
	/* Children must not think they were activated. */
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	s->fd = fd;
	s->ev_accept = event_new(d->base, fd, EV_READ | EV_PERSIST, server_accept_cb, s);
	if (s->ev_accept == NULL)
		fatalx("event_new failed");
	ev_check(event_add(s->ev_accept, NULL), "event_add");
	*ret = s;
	return 0;
}

void
server_stop_accepting(struct server *s)
{
	if (s->ev_accept != NULL)
		ev_check(event_del(s->ev_accept), "event_del");
	if (s->ev_resume != NULL)
		ev_check(event_del(s->ev_resume), "event_del");
}

static void
heavy_call_free(struct heavy_call *h)
{
	conn_ref_free(h->ref);
	free(h->method);
	json_decref(h->params);
	free(h);
}

static void
heavy_free_all(struct server *s)
{
	struct heavy_call *h;
	struct heavy_uid *u;

	while ((h = TAILQ_FIRST(&s->heavy)) != NULL) {
		TAILQ_REMOVE(&s->heavy, h, link);
		heavy_call_free(h);
	}
	while ((u = LIST_FIRST(&s->heavy_busy)) != NULL) {
		LIST_REMOVE(u, link);
		free(u);
	}
	event_free(s->ev_heavy);
}

struct server *
server_free(struct server *s)
{
	struct conn *c;

	if (s == NULL)
		return NULL;
	server_stop_accepting(s);
	while ((c = LIST_FIRST(&s->conns)) != NULL)
		conn_free(c);
	heavy_free_all(s);
	event_free(s->ev_trim);
	if (s->ev_accept)
		event_free(s->ev_accept);
	if (s->ev_resume)
		event_free(s->ev_resume);
	if (s->fd >= 0)
		close(s->fd);
	if (s->bound)
		(void)unlink(s->path);
	free(s->path);
	free(s);
	return NULL;
}

const char *
server_path(const struct server *s)
{
	return s->path;
}

bool
server_activated(const struct server *s)
{
	return s->activated;
}

struct daemon *
server_daemon(const struct server *s)
{
	return s->d;
}

static unsigned
conns_of_uid(const struct server *s, uid_t uid)
{
	const struct conn *c;
	unsigned n = 0;

	LIST_FOREACH(c, &s->conns, link)
		if (c->uid == uid)
			n++;
	return n;
}

/* True when fewer than SERVER_FD_RESERVE descriptors are left. */
static bool
fds_low(int newest_fd)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return false;
	return (rlim_t)newest_fd + SERVER_FD_RESERVE >= rl.rlim_cur;
}

/* Room for this peer: under its uid's cap, and under the cap for its kind. */
static bool
server_admits(const struct server *s, int fd, const struct ucred *cred)
{
	const struct config *c = s->d->config;

	if (s->n_conns >= SERVER_CONN_MAX || conns_of_uid(s, cred->uid) >= SERVER_CONN_PER_UID)
		return false;
	if (s->n_conns < SERVER_CONN_MAX - SERVER_CONN_RESERVE)
		return true;
	/* Only the reserve is left: root and AdminGroup= members. */
	return cred->uid == 0 ||
	       (c->admin_group != NULL && peer_in_group(fd, cred->uid, cred->gid, c->admin_gid));
}

static void
server_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	if (!s->d->stopping)
		ev_check(event_add(s->ev_accept, NULL), "event_add");
}

static void
server_pause(struct server *s)
{
	struct timeval one = {1, 0};

	ev_check(event_del(s->ev_accept), "event_del");
	if (s->ev_resume == NULL &&
	    (s->ev_resume = evtimer_new(s->d->base, server_resume_cb, s)) == NULL)
		fatalx("evtimer_new failed");
	ev_check(evtimer_add(s->ev_resume, &one), "evtimer_add");
}

static void
server_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct server *s = arg;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd;

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE) {
			log_warning("out of file descriptors; pausing accept for a second");
			server_pause(s);
		} else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warning("accept: %s", strerror(errno));
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warning("SO_PEERCRED: %s; dropping connection", strerror(errno));
		close(fd);
		return;
	}
	if (!server_admits(s, fd, &cred)) {
		log_warning("connection limit reached for uid %u; dropping connection", cred.uid);
		close(fd);
		return;
	}
	if (fds_low(fd))
		server_pause(s);
	struct conn *c = conn_new(s, fd, cred.uid, cred.gid, cred.pid);
	c->id = ++s->next_id;
	LIST_INSERT_HEAD(&s->conns, c, link);
	s->n_conns++;
	log_debug("connection %u from pid %d uid %u", c->id, (int)cred.pid, cred.uid);
}

void
server_conn_gone(struct server *s, struct conn *c)
{
	LIST_REMOVE(c, link);
	s->n_conns--;
}

bool
server_watches(struct server *s, const char *name)
{
	struct conn *c;

	LIST_FOREACH(c, &s->conns, link)
		if (c->state == CONN_WATCHING &&
		    (c->watch_name == NULL || strcmp(c->watch_name, name) == 0))
			return true;
	return false;
}

void
server_broadcast_job(struct server *s, const char *name, json_t *job, bool last)
{
	struct conn *c, *next;

	for (c = LIST_FIRST(&s->conns); c != NULL; c = next) {
		next = LIST_NEXT(c, link); /* a send may free c */
		if (c->state == CONN_WATCHING)
			conn_send_watch(c, name, job, last);
	}
}

/* ---- heavy calls ---------------------------------------------------------- */

static struct heavy_uid *
heavy_busy_find(struct server *s, uid_t uid)
{
	struct heavy_uid *u;

	LIST_FOREACH(u, &s->heavy_busy, link)
		if (u->uid == uid)
			return u;
	return NULL;
}

/* Arm the next turn if a queued call's uid is free (else its answer will). */
static void
heavy_schedule(struct server *s)
{
	static const struct timeval zero = {0, 0};
	struct heavy_call *h;

	TAILQ_FOREACH(h, &s->heavy, link)
		if (heavy_busy_find(s, h->uid) == NULL) {
			ev_check(evtimer_add(s->ev_heavy, &zero), "evtimer_add");
			return;
		}
}

/* Run one queued call (its connection may be gone: then it is dropped). */
static bool
heavy_run_one(struct server *s, struct heavy_call *h)
{
	struct call call = {
		.d = s->d,
		.conn = conn_ref_get(h->ref),
		.method = h->method,
		.params = h->params,
		.more = h->more,
		.queued = true,
	};

	if (call.conn != NULL)
		h->fn(&call);
	return call.conn != NULL && call.held;
}

static void
heavy_run_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	struct heavy_call *h, *next;
	struct heavy_uid *u, *unext;

	for (h = TAILQ_FIRST(&s->heavy); h != NULL; h = next) {
		next = TAILQ_NEXT(h, link);
		if (heavy_busy_find(s, h->uid) != NULL)
			continue;
		u = xcalloc(1, sizeof(*u));
		u->uid = h->uid;
		LIST_INSERT_HEAD(&s->heavy_busy, u, link);
		TAILQ_REMOVE(&s->heavy, h, link);
		u->held = heavy_run_one(s, h);
		heavy_call_free(h); /* resumes the connection */
		next = TAILQ_FIRST(&s->heavy); /* a handler may have changed the queue */
	}
	/* A uid answered already waits only for the next turn. */
	for (u = LIST_FIRST(&s->heavy_busy); u != NULL; u = unext) {
		unext = LIST_NEXT(u, link);
		if (!u->held) {
			LIST_REMOVE(u, link);
			free(u);
		}
	}
	heavy_schedule(s);
}

void
server_dispatch(struct server *s, struct call *call)
{
	s->dispatch(call);
}

void
server_heavy_queue(struct server *s, const struct call *call, void (*fn)(struct call *))
{
	struct heavy_call *h = xcalloc(1, sizeof(*h));

	h->ref = conn_ref_new(call->conn); /* the connection waits for this reply */
	h->uid = call->conn->uid;
	h->method = xstrdup(call->method);
	h->params = json_incref(call->params);
	h->more = call->more;
	h->fn = fn;
	TAILQ_INSERT_TAIL(&s->heavy, h, link);
	heavy_schedule(s);
}

void
server_heavy_done(struct server *s, uid_t uid)
{
	struct heavy_uid *u = heavy_busy_find(s, uid);

	if (u != NULL && u->held) {
		LIST_REMOVE(u, link);
		free(u);
	}
	heavy_schedule(s);
}
