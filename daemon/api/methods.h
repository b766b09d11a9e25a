/*
 * The varlink method table: name, whether it mutates (then the caller must
 * be uid 0 or in AdminGroup=), the typed parameter list checked before the
 * handler runs, and the handler. Loop thread only.
 */
#ifndef SEEDD_METHODS_H
#define SEEDD_METHODS_H

#include <jansson.h>
#include <stdbool.h>

#include "conn.h"

struct daemon;
struct conn;

enum param_type {
	PARAM_STRING,
	PARAM_INT,
	PARAM_BOOL,
	PARAM_STRINGS, /* an array of strings */
};

struct param_spec {
	const char *name;
	enum param_type type;
	bool required;
	size_t max_len;     /* strings (and each of PARAM_STRINGS): bytes; ints: unused */
	long long min, max; /* ints; PARAM_STRINGS: max is the most elements */
};

#define METHOD_MUTATES 0x1
#define METHOD_HEAVY 0x2 /* a heavy read: one at a time per uid (server_heavy_queue()) */

typedef void (*method_fn)(struct call *call);

struct method {
	const char *name;
	unsigned flags;
	const struct param_spec *params; /* terminated by {NULL} */
	method_fn fn;
};

/* Look up, check rights and parameters, run. Every path sends a reply. */
void methods_dispatch(struct call *call);

/* Parameter accessors for handlers (the spec guarantees the type). */
const char *param_str(const struct call *call, const char *name);
bool param_has(const struct call *call, const char *name);
long long param_int(const struct call *call, const char *name);
/* false when absent or null. */
bool param_bool(const struct call *call, const char *name);

/* Handlers (method-*.c). */
void method_get_status(struct call *call);
void method_create_job(struct call *call);
void method_list_jobs(struct call *call);
void method_get_job(struct call *call);
/* The Watch observer of job changes (notify.h), installed by main. */
void watch_job_changed(int64_t job_id, void *userdata);
void method_plan_job(struct call *call);
void method_prepare_job(struct call *call);
void method_ship_job(struct call *call);
void method_cancel_job(struct call *call);
void method_retry_job(struct call *call);
void method_mitigate_job(struct call *call);
void method_get_job_log(struct call *call);
void method_get_job_report(struct call *call);
void method_add_drive(struct call *call);
void method_remove_drive(struct call *call);
void method_purge_job(struct call *call);
void method_list_drives(struct call *call);
void method_watch(struct call *call);
void method_doctor(struct call *call);

/* uid 0, or a member of AdminGroup=: may call methods that change things. */
bool methods_caller_may_mutate(const struct call *call);

/* Errors with their parameters. */
void reply_job_not_found(struct call *call, const char *name);
void reply_invalid_state(struct call *call, const char *name, const char *state, const char *msg);
void reply_invalid_argument(struct call *call, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void reply_internal(struct call *call, const char *what);

/* Reply with the Job object of CONTRACT §4 for the job with this id. */
void reply_job_by_id(struct call *call, int64_t id);

/*
 * A call answered later, by a stage's callback: the connection is held
 * (conn_ref: NULL once the peer left) and a heavy call's uid turn ends in
 * held_call_done(), which also frees it. The handler sets call->held.
 */
struct held_call {
	struct server *server;
	struct conn_ref *ref;
	uid_t uid;
	bool heavy;
};
struct held_call *held_call_new(struct call *call);
void held_call_done(struct held_call *h);
/* Answer {key: value} (value borrowed), or InternalError with message if value is NULL; then done. */
void held_call_finish(struct held_call *h, const char *key, json_t *value, const char *message);

#endif
