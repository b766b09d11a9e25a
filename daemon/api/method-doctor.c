/*
 * Doctor: is the set-up right? The daemon's own line and a summary of its
 * configuration (no secret) here; the Azure, storage and drive checks in
 * stages/doctor.c, answered later. Anyone who may connect may ask; the
 * checks that write (a probe blob in each container, which may create a
 * missing container, and a probe file on each drive) run only for root and
 * AdminGroup=, the others only read. Loop thread.
 */
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "daemon.h"
#include "doctor.h"
#include "methods.h"
#include "seedd-build.h"
#include "server.h"
#include "util.h"

struct doctor_call {
	struct held_call *h;
	json_t *checks; /* the daemon's and the configuration's lines */
	bool write;
};

static json_t *
line(const char *name, const char *status, const char *text)
{
	return json_pack("{s:s,s:s,s:s}", "name", name, "status", status, "text", text);
}

/* "seedd 0.5.0, pid 123, up 3m 2s, on /run/seedd/seedd.sock, state in /var/lib/seedd". */
static json_t *
daemon_line(struct call *call)
{
	struct daemon *d = call->d;
	int64_t up = daemon_uptime(d);
	_cleanup_free_ char *text =
	    xprintf("seedd %s, pid %d, up %lldh %02lldm %02llds, on %s, state in %s", SEEDD_VERSION,
		    (int)getpid(), (long long)(up / 3600), (long long)(up / 60 % 60),
		    (long long)(up % 60), server_path(call->conn->server), d->state_dir);

	return line("daemon", "ok", text);
}

static json_t *
config_line(struct call *call)
{
	const struct config *c = call->d->config;
	const char *missing = config_azure_missing(c);
	_cleanup_free_ char *text = NULL;
	json_t *o;

	if (missing != NULL)
		text = xprintf("%s; Azure is not configured: %s= is not set",
			       c->path ? c->path : "built-in defaults", missing);
	else
		text = xprintf("%s", c->path ? c->path : "built-in defaults");
	o = line("configuration", "ok", text);
	json_object_set_new(o, "config", config_summary(c));
	return o;
}

static void
checked(json_t *checks, void *userdata)
{
	struct doctor_call *dc = userdata;
	struct conn *c = conn_ref_get(dc->h->ref);
	json_t *all = dc->checks, *v;
	bool ok = true;
	size_t i;

	json_array_extend(all, checks);
	json_array_foreach(all, i, v)
		if (strcmp(json_string_value(json_object_get(v, "status")), "fail") == 0)
			ok = false;
	if (c != NULL)
		conn_reply(c,
			   json_pack("{s:b,s:b,s:O}", "ok", ok, "writeProbes", dc->write, "checks",
				     all),
			   false);
	held_call_done(dc->h);
	json_decref(dc->checks);
	free(dc);
}

void
method_doctor(struct call *call)
{
	struct doctor_call *dc = xcalloc(1, sizeof(*dc));

	dc->write = methods_caller_may_mutate(call);
	dc->checks = json_pack("[o,o]", daemon_line(call), config_line(call));
	dc->h = held_call_new(call);
	call->held = true;
	doctor_start(call->d, dc->write, checked, dc);
}
