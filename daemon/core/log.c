/*
 * Logging: one structured journal entry per message (sd_journal_sendv), or
 * one whole line on stderr when the journal is out of reach or refuses the
 * entry. Called from any thread; the target and the priority ceiling are
 * atomics and stderr lines are written under a mutex, so lines never mix.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* CODE_FILE= would always name this file: leave it out. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "log.h"

#define LOG_JOURNAL_SOCKET "/run/systemd/journal/socket"
#define LOG_IDENT "seedd"
#define LOG_MSG_PREFIX "MESSAGE="
#define LOG_MSG_PREFIX_LEN (sizeof(LOG_MSG_PREFIX) - 1)
#define LOG_STACK_BUF 2048

static _Atomic int log_target = LOG_TARGET_AUTO; /* AUTO until resolved */
static _Atomic int log_max_priority = LOG_INFO;
static pthread_mutex_t log_stderr_lock = PTHREAD_MUTEX_INITIALIZER;

/* clang-format off */
static const char *const log_level_names[] = {
	[LOG_EMERG] = "emerg",
	[LOG_ALERT] = "alert",
	[LOG_CRIT] = "crit",
	[LOG_ERR] = "error",
	[LOG_WARNING] = "warning",
	[LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};
/* clang-format on */

static enum log_target
log_resolve(enum log_target target)
{
	if (target != LOG_TARGET_AUTO)
		return target;
	return access(LOG_JOURNAL_SOCKET, F_OK) == 0 ? LOG_TARGET_JOURNAL : LOG_TARGET_STDERR;
}

static enum log_target
log_current_target(void)
{
	enum log_target t = atomic_load(&log_target);

	if (t == LOG_TARGET_AUTO) {
		t = log_resolve(LOG_TARGET_AUTO);
		atomic_store(&log_target, t);
	}
	return t;
}

void
log_init(enum log_target target, int max_priority)
{
	log_set_target(target);
	log_set_max_priority(max_priority);
}

void
log_set_target(enum log_target target)
{
	atomic_store(&log_target, log_resolve(target));
}

enum log_target
log_get_target(void)
{
	return log_current_target();
}

void
log_set_max_priority(int priority)
{
	atomic_store(&log_max_priority, priority & LOG_PRIMASK);
}

int
log_get_max_priority(void)
{
	return atomic_load(&log_max_priority);
}

bool
log_to_journal(void)
{
	return log_current_target() == LOG_TARGET_JOURNAL;
}

/* Append "NAME=value" to iov as a newly allocated string (freed by the caller). */
static void
log_iov_field(struct iovec *iov, size_t *n, const char *name, const char *value)
{
	char *s;
	int len;

	if (value == NULL)
		return;
	len = xasprintf(&s, "%s=%s", name, value);
	iov[(*n)++] = (struct iovec){.iov_base = s, .iov_len = (size_t)len};
}

/*
 * msg starts with "MESSAGE=". Returns sd_journal_sendv's result, or -ENOENT
 * if the journal socket is gone: sd_journal_sendv() reports that as success.
 */
static int
log_journal(int priority, const struct log_ctx *ctx, const char *msg)
{
	char prio[16];
	struct iovec iov[7];
	size_t n = 0, first_alloc, i;
	int r;

	if (access(LOG_JOURNAL_SOCKET, F_OK) < 0)
		return -ENOENT;
	(void)snprintf(prio, sizeof(prio), "PRIORITY=%d", priority);
	iov[n++] = (struct iovec){.iov_base = (char *)msg, .iov_len = strlen(msg)};
	iov[n++] = (struct iovec){.iov_base = prio, .iov_len = strlen(prio)};
	iov[n++] = (struct iovec){.iov_base = (char *)"SYSLOG_IDENTIFIER=" LOG_IDENT,
	                          .iov_len = sizeof("SYSLOG_IDENTIFIER=" LOG_IDENT) - 1};
	first_alloc = n;
	if (ctx != NULL) {
		log_iov_field(iov, &n, "SEEDD_JOB", ctx->job);
		log_iov_field(iov, &n, "SEEDD_STATE", ctx->state);
		log_iov_field(iov, &n, "SEEDD_DRIVE", ctx->drive);
		log_iov_field(iov, &n, "MESSAGE_ID", ctx->message_id);
	}
	r = sd_journal_sendv(iov, (int)n);
	for (i = first_alloc; i < n; i++)
		free(iov[i].iov_base);
	return r;
}

/* Append "key=value" to the bracketed context list in buf. */
static void
log_ctx_item(char *buf, size_t size, const char *key, const char *value)
{
	size_t len = strlen(buf);

	if (value == NULL || len + 1 >= size)
		return;
	(void)snprintf(buf + len, size - len, "%s%s=%s", buf[0] == '\0' ? "[" : " ", key, value);
}

static void
log_write_all(int fd, const char *s, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

/*
 * "seedd[PID]: LEVEL: [job=J state=S drive=D] text", one line: control
 * characters in the text become spaces so a message cannot forge a line.
 */
static void
log_stderr(int priority, const struct log_ctx *ctx, const char *text)
{
	char prefix[512] = "", *line;
	size_t i, len;

	if (ctx != NULL) {
		log_ctx_item(prefix, sizeof(prefix), "job", ctx->job);
		log_ctx_item(prefix, sizeof(prefix), "state", ctx->state);
		log_ctx_item(prefix, sizeof(prefix), "drive", ctx->drive);
		if (prefix[0] != '\0' && strlen(prefix) + 3 < sizeof(prefix))
			strcat(prefix, "] ");
	}
	len = (size_t)xasprintf(&line, LOG_IDENT "[%d]: %s: %s%s\n", (int)getpid(),
	                        log_level_names[priority], prefix, text);
	for (i = 0; i + 1 < len; i++)
		if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
			line[i] = ' ';
	pthread_mutex_lock(&log_stderr_lock);
	log_write_all(STDERR_FILENO, line, len);
	pthread_mutex_unlock(&log_stderr_lock);
	free(line);
}

void
log_ctx(int priority, const struct log_ctx *ctx, const char *fmt, ...)
{
	char stackbuf[LOG_STACK_BUF], *msg = stackbuf, *heap = NULL;
	int saved_errno = errno, n;
	va_list ap;

	priority &= LOG_PRIMASK;
	if (priority > atomic_load_explicit(&log_max_priority, memory_order_relaxed))
		return;

	memcpy(stackbuf, LOG_MSG_PREFIX, LOG_MSG_PREFIX_LEN);
	va_start(ap, fmt);
	n = vsnprintf(stackbuf + LOG_MSG_PREFIX_LEN, sizeof(stackbuf) - LOG_MSG_PREFIX_LEN, fmt,
	              ap);
	va_end(ap);
	if (n < 0) {
		errno = saved_errno;
		return;
	}
	if ((size_t)n >= sizeof(stackbuf) - LOG_MSG_PREFIX_LEN) {
		heap = xmalloc(LOG_MSG_PREFIX_LEN + (size_t)n + 1);
		memcpy(heap, LOG_MSG_PREFIX, LOG_MSG_PREFIX_LEN);
		errno = saved_errno; /* for %m */
		va_start(ap, fmt);
		(void)vsnprintf(heap + LOG_MSG_PREFIX_LEN, (size_t)n + 1, fmt, ap);
		va_end(ap);
		msg = heap;
	}

	if (log_current_target() != LOG_TARGET_JOURNAL || log_journal(priority, ctx, msg) < 0)
		log_stderr(priority, ctx, msg + LOG_MSG_PREFIX_LEN);
	free(heap);
	errno = saved_errno;
}
