/*
 * Logging to the journal (sd_journal_send, structured fields) or, when no
 * journal is reachable, plain lines on stderr. Thread-safe.
 *
 * Fields: SEEDD_JOB=, SEEDD_STATE=, SEEDD_DRIVE= where they apply, and
 * MESSAGE_ID= for catalogued events (catalog-ids.h, systemd/seedd.catalog).
 * Never pass a secret to any of these functions.
 */
#ifndef SEEDD_LOG_H
#define SEEDD_LOG_H

#include <stdbool.h>
#include <syslog.h>

#include "util.h"

enum log_target {
	LOG_TARGET_AUTO,    /* journal if /run/systemd/journal/socket exists, else stderr */
	LOG_TARGET_JOURNAL,
	LOG_TARGET_STDERR,
};

/* Context of a message; any field may be NULL. */
struct log_ctx {
	const char *job;
	const char *state;
	const char *drive;
	const char *message_id; /* 32 hex digits from catalog-ids.h */
};

void log_init(enum log_target target, int max_priority);
/* Switch target (AUTO is resolved now); for tests and --log-target style options. */
void log_set_target(enum log_target target);
/* The resolved target: LOG_TARGET_JOURNAL or LOG_TARGET_STDERR, never AUTO. */
enum log_target log_get_target(void);
void log_set_max_priority(int priority);
int log_get_max_priority(void);
bool log_to_journal(void);

/* Log at priority (LOG_ERR .. LOG_DEBUG) with context ctx (may be NULL). */
void log_ctx(int priority, const struct log_ctx *ctx, const char *fmt, ...) _printf_(3, 4);

#define log_error(...) log_ctx(LOG_ERR, NULL, __VA_ARGS__)
#define log_warning(...) log_ctx(LOG_WARNING, NULL, __VA_ARGS__)
#define log_notice(...) log_ctx(LOG_NOTICE, NULL, __VA_ARGS__)
#define log_info(...) log_ctx(LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...) log_ctx(LOG_DEBUG, NULL, __VA_ARGS__)

#endif
