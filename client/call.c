/*
 * seedctl's side of the socket (see call.h): one blocking connection, one
 * call, and its reply or stream of replies turned into output and an exit
 * status. Single-threaded; no event loop.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "call.h"
#include "output.h"
#include "util.h"

int
call_open(struct call_conn *c, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	*c = (struct call_conn){.fd = -1};
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	c->fd = fd;
	vl_reader_init(&c->reader);
	return 0;
}

void
call_close(struct call_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	vl_reader_done(&c->reader);
	c->fd = -1;
}

int
call_send(struct call_conn *c, const char *method, json_t *params, bool more)
{
	json_t *msg = vl_call_new(method, json_incref(params), more);
	int r;

	r = vl_send(c->fd, msg);
	json_decref(msg);
	return r;
}

int
call_recv(struct call_conn *c, int timeout_ms, json_t **ret)
{
	json_t *m = NULL, *params, *error;
	int r;

	if ((r = vl_recv(c->fd, &c->reader, &m, timeout_ms)) < 0)
		return r == -EBADMSG || r == -EMSGSIZE ? -EPROTO : r;
	params = json_object_get(m, "parameters");
	error = json_object_get(m, "error");
	if (error != NULL ? !json_is_string(error) || (params && !json_is_object(params))
			  : !json_is_object(params)) {
		json_decref(m);
		return -EPROTO;
	}
	*ret = m;
	return 0;
}

/*
 * seedctl's own failure: "seedctl: TEXT" on err, or with --json one
 * {"error": name, "message": TEXT} object on out, where scripts read.
 */
static void __attribute__((format(printf, 5, 6)))
call_fail(const struct invocation *inv, FILE *out, FILE *err, const char *name, const char *fmt,
	  ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	output_failure(inv->json ? out : err, inv->json, name, msg ? msg : name);
}

/*
 * Print an error reply, if m is one; returns true if it was. A reply that
 * lacks the value the command prints counts as malformed.
 */
static bool
reply_failed(const struct invocation *inv, json_t *m, json_t **ret_value, FILE *out, FILE *err)
{
	const char *error = json_string_value(json_object_get(m, "error"));
	json_t *params = json_object_get(m, "parameters");
	const char *key = inv->command->reply_key;

	if (error != NULL) {
		if (inv->json)
			output_error_json(out, error, params);
		else
			output_error(err, error, params);
		return true;
	}
	*ret_value = key ? json_object_get(params, key) : params;
	if (*ret_value == NULL) {
		call_fail(inv, out, err, SEEDCTL_ERR_MALFORMED,
			  "malformed reply from seedd: no '%s' in it", key);
		return true;
	}
	return false;
}

static int watch_tty_fd = -1;

/* ^C during a watch on a terminal: end the progress lines, then die of the signal. */
static void
watch_signal(int sig)
{
	if (watch_tty_fd >= 0)
		(void)!write(watch_tty_fd, "\n", 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* The stream of a watch: one reply a change, until one without "continues". */
static int
call_watch(const struct invocation *inv, struct call_conn *c, FILE *out, FILE *err)
{
	bool tty = isatty(fileno(out));
	struct output_watch *w = output_watch_new(out, inv->json, tty);
	int r, status = SEEDCTL_EXIT_OK, seen = 0;
	bool failed = false;
	json_t *m, *job;

	if (tty && !inv->json) {
		watch_tty_fd = fileno(out);
		signal(SIGINT, watch_signal);
		signal(SIGTERM, watch_signal);
	}
	for (;;) {
		if ((r = call_recv(c, -1, &m)) < 0) {
			/* A close after the first reply ends the stream normally. */
			if (r == -ECONNRESET && seen > 0)
				break;
			w = output_watch_free(w);
			if (r == -EPROTO)
				call_fail(inv, out, err, SEEDCTL_ERR_MALFORMED,
					  "malformed reply from seedd");
			else
				call_fail(inv, out, err, SEEDCTL_ERR_UNREACHABLE,
					  "connection to seedd lost before a reply");
			return r == -EPROTO ? SEEDCTL_EXIT_REFUSED : SEEDCTL_EXIT_UNREACHABLE;
		}
		seen++;
		if (json_object_get(m, "error") != NULL)
			w = output_watch_free(w); /* end the progress lines before the error */
		if (reply_failed(inv, m, &job, out, err)) {
			json_decref(m);
			status = SEEDCTL_EXIT_REFUSED;
			break;
		}
		failed = output_watch_update(w, job);
		r = json_is_true(json_object_get(m, "continues"));
		json_decref(m);
		if (!r) {
			/* The watched job ended failed: its error is printed; exit 1. */
			if (failed)
				status = SEEDCTL_EXIT_REFUSED;
			break;
		}
	}
	output_watch_free(w);
	return status;
}

static int
call_once(const struct invocation *inv, struct call_conn *c, FILE *out, FILE *err)
{
	int timeout_ms = inv->command->timeout_sec > 0 ? inv->command->timeout_sec * 1000
						       : CALL_TIMEOUT_MS;
	json_t *m = NULL, *value;
	int r;

	if ((r = call_recv(c, timeout_ms, &m)) < 0) {
		if (r == -EPROTO) {
			call_fail(inv, out, err, SEEDCTL_ERR_MALFORMED, "malformed reply from seedd");
			return SEEDCTL_EXIT_REFUSED;
		}
		if (r == -ETIMEDOUT)
			call_fail(inv, out, err, SEEDCTL_ERR_UNREACHABLE,
				  "no reply from seedd at %s within %d s", inv->socket,
				  timeout_ms / 1000);
		else
			call_fail(inv, out, err, SEEDCTL_ERR_UNREACHABLE,
				  "connection to seedd at %s lost before a reply: %s", inv->socket,
				  strerror(-r));
		return SEEDCTL_EXIT_UNREACHABLE;
	}
	if (reply_failed(inv, m, &value, out, err)) {
		json_decref(m);
		return SEEDCTL_EXIT_REFUSED;
	}
	if (inv->json)
		output_json(out, value, false);
	else
		inv->command->print(out, value);
	/* A reply that says it is not ok (doctor: a check failed) exits 1. */
	r = inv->command->ok_key != NULL &&
	    !json_is_true(json_object_get(value, inv->command->ok_key));
	json_decref(m);
	return r ? SEEDCTL_EXIT_REFUSED : SEEDCTL_EXIT_OK;
}

int
call_run(const struct invocation *inv, FILE *out, FILE *err)
{
	struct call_conn c;
	int r;

	if ((r = call_open(&c, inv->socket)) < 0) {
		const char *hint = inv->command->unreachable_hint;
		call_fail(inv, out, err, SEEDCTL_ERR_UNREACHABLE, "cannot reach seedd at %s: %s%s",
			  inv->socket, strerror(-r), hint != NULL ? hint : "");
		return SEEDCTL_EXIT_UNREACHABLE;
	}
	if ((r = call_send(&c, inv->method, inv->params, inv->command->stream)) < 0) {
		call_close(&c);
		if (r == -EMSGSIZE) {
			call_fail(inv, out, err, SEEDCTL_ERR_USAGE, "the call is too large to send");
			return SEEDCTL_EXIT_USAGE;
		}
		call_fail(inv, out, err, SEEDCTL_ERR_UNREACHABLE, "cannot reach seedd at %s: %s",
			  inv->socket, strerror(-r));
		return SEEDCTL_EXIT_UNREACHABLE;
	}
	if (inv->command->stream)
		r = call_watch(inv, &c, out, err);
	else
		r = call_once(inv, &c, out, err);
	call_close(&c);
	fflush(out);
	return r;
}
