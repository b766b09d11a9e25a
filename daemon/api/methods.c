/*
 * The method table and the one place where calls are checked: the method
 * must exist, a mutating method needs uid 0 or AdminGroup=, and every
 * parameter must have its declared type and bounds (unknown ones are
 * refused) before a handler sees it. Also org.varlink.service. Loop thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "catalog-ids.h"
#include "config.h"
#include "conn.h"
#include "daemon.h"
#include "exclude.h"
#include "log.h"
#include "methods.h"
#include "names.h"
#include "seedd-build.h"
#include "server.h"
#include "util.h"

extern const char seedd_interface_description[];

static const char varlink_service_description[] =
	"interface org.varlink.service\n"
	"method GetInfo() -> (vendor: string, product: string, version: string, url: string, "
	"interfaces: []string)\n"
	"method GetInterfaceDescription(interface: string) -> (description: string)\n"
	"error InterfaceNotFound (interface: string)\n"
	"error MethodNotFound (method: string)\n"
	"error MethodNotImplemented (method: string)\n"
	"error InvalidParameter (parameter: string)\n";

#define P_NAME {"name", PARAM_STRING, true, JOB_NAME_MAX, 0, 0}
#define P_END {NULL, 0, false, 0, 0, 0}

static const struct param_spec params_none[] = {P_END};
static const struct param_spec params_name[] = {P_NAME, P_END};
static const struct param_spec params_create[] = {
	P_NAME,
	{"stagingPath", PARAM_STRING, true, PATH_PARAM_MAX, 0, 0},
	{"container", PARAM_STRING, false, 63, 0, 0},
	{"excludes", PARAM_STRINGS, false, EXCLUDE_PATTERN_MAX, 0, EXCLUDE_MAX},
	P_END,
};
static const struct param_spec params_retry[] = {
	P_NAME,
	{"skipRefused", PARAM_BOOL, false, 0, 0, 0},
	P_END,
};
static const struct param_spec params_ship[] = {
	P_NAME,
	{"carrier", PARAM_STRING, true, 64, 0, 0},
	{"trackingNumber", PARAM_STRING, true, 64, 0, 0},
	P_END,
};
static const struct param_spec params_add_drive[] = {
	P_NAME,
	{"path", PARAM_STRING, true, PATH_PARAM_MAX, 0, 0},
	{"serial", PARAM_STRING, false, 128, 0, 0},
	{"capacity", PARAM_INT, false, 0, 1, INT64_MAX},
	{"bitlockerKey", PARAM_STRING, false, 64, 0, 0},
	{"bitlockerKeyFile", PARAM_STRING, false, PATH_PARAM_MAX, 0, 0},
	{"bitlockerDevice", PARAM_STRING, false, PATH_PARAM_MAX, 0, 0},
	P_END,
};
static const struct param_spec params_mitigate[] = {
	P_NAME,
	{"action", PARAM_STRING, true, 32, 0, 0},
	{"serial", PARAM_STRING, false, 128, 0, 0},
	P_END,
};
static const struct param_spec params_watch[] = {
	{"name", PARAM_STRING, false, JOB_NAME_MAX, 0, 0},
	{"hideFinished", PARAM_BOOL, false, 0, 0, 0},
	P_END,
};
static const struct param_spec params_list[] = {
	{"hideFinished", PARAM_BOOL, false, 0, 0, 0},
	P_END,
};
static const struct param_spec params_remove_drive[] = {
	P_NAME,
	{"serial", PARAM_STRING, true, 128, 0, 0},
	{"force", PARAM_BOOL, false, 0, 0, 0},
	P_END,
};
static const struct param_spec params_interface[] = {
	{"interface", PARAM_STRING, true, 256, 0, 0},
	P_END,
};

static void method_get_info(struct call *call);
static void method_get_interface_description(struct call *call);

static const struct method method_table[] = {
	{"org.varlink.service.GetInfo", 0, params_none, method_get_info},
	{"org.varlink.service.GetInterfaceDescription", 0, params_interface,
	 method_get_interface_description},
	{"io.seedd.GetStatus", 0, params_none, method_get_status},
	{"io.seedd.CreateJob", METHOD_MUTATES, params_create, method_create_job},
	{"io.seedd.ListJobs", 0, params_list, method_list_jobs},
	{"io.seedd.GetJob", 0, params_name, method_get_job},
	{"io.seedd.PlanJob", METHOD_HEAVY, params_name, method_plan_job},
	{"io.seedd.PrepareJob", METHOD_MUTATES, params_name, method_prepare_job},
	{"io.seedd.ShipJob", METHOD_MUTATES, params_ship, method_ship_job},
	{"io.seedd.CancelJob", METHOD_MUTATES, params_name, method_cancel_job},
	{"io.seedd.RetryJob", METHOD_MUTATES, params_retry, method_retry_job},
	{"io.seedd.MitigateJob", METHOD_MUTATES, params_mitigate, method_mitigate_job},
	{"io.seedd.GetJobLog", 0, params_name, method_get_job_log},
	{"io.seedd.GetJobReport", METHOD_HEAVY, params_name, method_get_job_report},
	{"io.seedd.AddDrive", METHOD_MUTATES, params_add_drive, method_add_drive},
	{"io.seedd.ListDrives", 0, params_name, method_list_drives},
	{"io.seedd.RemoveDrive", METHOD_MUTATES, params_remove_drive, method_remove_drive},
	{"io.seedd.PurgeJob", METHOD_MUTATES, params_name, method_purge_job},
	{"io.seedd.Watch", 0, params_watch, method_watch},
	{"io.seedd.Doctor", METHOD_HEAVY, params_none, method_doctor},
};

static const struct method *
method_find(const char *name)
{
	for (size_t i = 0; i < ELEMENTSOF(method_table); i++)
		if (strcmp(method_table[i].name, name) == 0)
			return &method_table[i];
	return NULL;
}

static const struct param_spec *
spec_find(const struct param_spec *spec, const char *name)
{
	for (; spec->name != NULL; spec++)
		if (strcmp(spec->name, name) == 0)
			return spec;
	return NULL;
}

/* A JSON string that fits max_len bytes and has no NUL inside. */
static bool
string_ok(json_t *v, size_t max_len)
{
	return json_is_string(v) && json_string_length(v) <= max_len &&
	       strlen(json_string_value(v)) == json_string_length(v);
}

/* An array of at most max such strings. */
static bool
strings_ok(json_t *v, size_t max_len, long long max)
{
	size_t i;
	json_t *e;

	if (!json_is_array(v) || (long long)json_array_size(v) > max)
		return false;
	json_array_foreach(v, i, e)
		if (!string_ok(e, max_len))
			return false;
	return true;
}

/* The name of the first bad parameter, or NULL if all are fine. */
static const char *
params_check(const struct param_spec *spec, json_t *params)
{
	const char *key;
	json_t *v;

	json_object_foreach(params, key, v) {
		const struct param_spec *p = spec_find(spec, key);
		if (p == NULL)
			return key;
		if (json_is_null(v) && !p->required)
			continue;
		switch (p->type) {
		case PARAM_STRING:
			if (!string_ok(v, p->max_len))
				return key;
			break;
		case PARAM_STRINGS:
			if (!strings_ok(v, p->max_len, p->max))
				return key;
			break;
		case PARAM_INT:
			if (!json_is_integer(v) || json_integer_value(v) < p->min ||
			    json_integer_value(v) > p->max)
				return key;
			break;
		case PARAM_BOOL:
			if (!json_is_boolean(v))
				return key;
			break;
		}
	}
	for (; spec->name != NULL; spec++) {
		v = json_object_get(params, spec->name);
		if (spec->required && (v == NULL || json_is_null(v)))
			return spec->name;
	}
	return NULL;
}

bool
methods_caller_may_mutate(const struct call *call)
{
	const struct config *c = call->d->config;

	if (call->conn->uid == 0)
		return true;
	return c->admin_group != NULL && conn_in_group(call->conn, c->admin_gid);
}

void
methods_dispatch(struct call *call)
{
	const struct method *m = method_find(call->method);
	const char *bad;

	if (m == NULL) {
		conn_error(call->conn, VL_ERR_METHOD_NOT_FOUND,
			   json_pack("{s:s}", "method", call->method));
		return;
	}
	if ((m->flags & METHOD_MUTATES) && !methods_caller_may_mutate(call)) {
		struct log_ctx ctx = {.message_id = SEEDD_MESSAGE_PERMISSION_DENIED};
		log_ctx(LOG_NOTICE, &ctx, "refused %s from uid %u (pid %d): not root or in AdminGroup=",
			m->name, call->conn->uid, (int)call->conn->pid);
		conn_error(call->conn, SEEDD_ERR_PERMISSION_DENIED,
			   json_pack("{s:s}", "method", m->name));
		return;
	}
	if ((bad = params_check(m->params, call->params)) != NULL) {
		conn_error(call->conn, VL_ERR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", bad));
		return;
	}
	if (m->flags & METHOD_HEAVY)
		server_heavy_queue(call->conn->server, call, m->fn);
	else
		m->fn(call);
}

const char *
param_str(const struct call *call, const char *name)
{
	return json_string_value(json_object_get(call->params, name));
}

bool
param_has(const struct call *call, const char *name)
{
	json_t *v = json_object_get(call->params, name);

	return v != NULL && !json_is_null(v);
}

long long
param_int(const struct call *call, const char *name)
{
	return json_integer_value(json_object_get(call->params, name));
}

bool
param_bool(const struct call *call, const char *name)
{
	return json_is_true(json_object_get(call->params, name));
}

static void
method_get_info(struct call *call)
{
	conn_reply(call->conn,
		   json_pack("{s:s,s:s,s:s,s:s,s:[s,s]}", "vendor", "seedd", "product", "seedd",
			     "version", SEEDD_VERSION, "url", "https://github.com/seedd/seedd",
			     "interfaces", "org.varlink.service", SEEDD_INTERFACE),
		   false);
}

static void
method_get_interface_description(struct call *call)
{
	const char *name = param_str(call, "interface");
	const char *text = NULL;

	if (strcmp(name, SEEDD_INTERFACE) == 0)
		text = seedd_interface_description;
	else if (strcmp(name, "org.varlink.service") == 0)
		text = varlink_service_description;
	if (text == NULL) {
		conn_error(call->conn, VL_ERR_INTERFACE_NOT_FOUND,
			   json_pack("{s:s}", "interface", name));
		return;
	}
	conn_reply(call->conn, json_pack("{s:s}", "description", text), false);
}

void
reply_job_not_found(struct call *call, const char *name)
{
	conn_error(call->conn, SEEDD_ERR_JOB_NOT_FOUND, json_pack("{s:s}", "name", name));
}

void
reply_invalid_state(struct call *call, const char *name, const char *state, const char *msg)
{
	conn_error(call->conn, SEEDD_ERR_INVALID_STATE,
		   json_pack("{s:s,s:s,s:s}", "name", name, "state", state, "message", msg));
}

void
reply_invalid_argument(struct call *call, const char *param, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		fatalx("vasprintf failed");
	va_end(ap);
	conn_error(call->conn, SEEDD_ERR_INVALID_ARGUMENT,
		   json_pack("{s:s,s:s}", "parameter", param, "message", msg));
}

void
reply_internal(struct call *call, const char *what)
{
	conn_error(call->conn, SEEDD_ERR_INTERNAL, json_pack("{s:s}", "message", what));
}

struct held_call *
held_call_new(struct call *call)
{
	struct held_call *h = xcalloc(1, sizeof(*h));

	h->server = call->conn->server;
	h->ref = conn_ref_new(call->conn);
	h->uid = call->conn->uid;
	h->heavy = call->queued;
	return h;
}

void
held_call_finish(struct held_call *h, const char *key, json_t *value, const char *message)
{
	struct conn *c = conn_ref_get(h->ref);

	if (c != NULL && value != NULL)
		conn_reply(c, json_pack("{s:O}", key, value), false);
	else if (c != NULL)
		conn_error(c, SEEDD_ERR_INTERNAL, json_pack("{s:s}", "message", message));
	held_call_done(h);
}

void
held_call_done(struct held_call *h)
{
	if (h->heavy)
		server_heavy_done(h->server, h->uid);
	conn_ref_free(h->ref); /* resumes the connection */
	free(h);
}
