/*
 * seedd's HTTP client: libcurl's multi interface driven by the daemon's
 * libevent loop (one persistent event per curl socket, one timer), with
 * retries on loop timers, bounded responses and redacted debug logging.
 * Loop thread only: every function here, and every done callback, runs on
 * the thread that runs the event base.
 */
#ifndef SEEDD_AZURE_HTTP_H
#define SEEDD_AZURE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct http;
struct http_call;

/* A request header; name must be a token, neither part may hold CR or LF. */
struct http_header {
	const char *name, *value;
};

struct http_request {
	const char *method;                /* GET, PUT, POST, PATCH, DELETE or HEAD */
	const char *url;                   /* must pass config_url_allowed(), else -EPERM */
	const struct http_header *headers; /* copied; never logged */
	size_t n_headers;
	const void *body; /* copied; NULL for none; never logged */
	size_t body_len;
	long connect_timeout_ms; /* per attempt; 0: 10 s */
	long timeout_ms;         /* whole attempt; 0: 60 s */
	size_t max_response;     /* body bound; 0: 4 MiB; more is -EMSGSIZE */
	unsigned max_attempts;   /* 0: 5; 1: no retry */
	long backoff_ms;         /* first retry delay without Retry-After; 0: 1 s */
	bool redact_body_in_log; /* no effect: request bodies are never logged */
	bool once_unless_refused; /* retried like POST whatever the method: only on 429, 503
	                             and when no connection was made (a create PUT whose
	                             outcome is unknown is checked with a GET, not resent) */
	const char *log_name;    /* short label for the log line; NULL: "http" */
	bool secret_answer;      /* the answer is a secret (a token): OpenSSL cleanses
	                            its plaintext buffer (costs the CA store cache) */
};

/* A response header: name lowercased, value without surrounding blanks. */
struct http_field {
	char *name, *value;
};

struct http_response {
	long status;      /* HTTP status of the last attempt; 0 if none */
	int error;        /* 0 or: -ETIMEDOUT, -ECONNRESET, -ECONNREFUSED,
	                     -EHOSTUNREACH (name not resolved), -EMSGSIZE (body or
	                     headers over the bounds), -EPROTO (TLS and other
	                     transport failures), -EPERM (URL refused, nothing
	                     sent), -EINVAL (bad method or header), -ENOMEM
	                     (inside libcurl) */
	char errmsg[256]; /* "" if error is 0 */
	char *body;       /* NUL-terminated, never NULL */
	size_t body_len;
	struct http_field *headers; /* of the last attempt, at most 100 */
	size_t n_headers;           /* done may take body or headers: set the pointer
	                               to NULL (and n_headers to 0) */
	unsigned attempts;          /* requests sent (0 if refused before sending) */
	double seconds;             /* from http_send() to completion, waits included */
};

/*
 * Add one response header line as libcurl hands it over (CRLF included; it
 * may hold NULs): a status line ("HTTP/...") starts a new set (after 1xx
 * answers), a blank or malformed line is ignored. -EMSGSIZE, with r->errmsg
 * saying why, for a line over 16 KiB or a 101st header. For the header
 * callback and the fuzz target (tests/fuzz/fuzz-http.c).
 */
int http_response_add_line(struct http_response *r, const char *line, size_t len);
/* Free r's headers and body and zero its status and error (not r itself). */
void http_response_clear(struct http_response *r);

/* The value of the first header called name (case-insensitive), or NULL. */
const char *http_response_header(const struct http_response *r, const char *name);

/*
 * r's Retry-After (delta-seconds or an HTTP-date) in milliseconds, capped at
 * 10 minutes; -1 if absent or unreadable. For callers polling ARM's LROs.
 */
long http_retry_after_ms(const struct http_response *r);

/*
 * Called once per call that is neither cancelled nor freed with its http,
 * always from the event loop, never from inside http_send(). resp is freed
 * after return; the call handle is already gone when done runs. done may
 * send, cancel other calls, and free the http.
 */
typedef void (*http_done_fn)(struct http_response *resp, void *userdata);

/*
 * A client on base. ca_file (may be NULL) adds a trust anchor to the system
 * store (/etc/ssl/certs); certificates are always verified. Calls
 * curl_global_init(), so create it before starting threads. On failure
 * returns NULL and *ret_err (if ret_err is not NULL) is an allocated message;
 * on success *ret_err is NULL.
 */
struct http *http_new(struct event_base *base, const char *ca_file, char **ret_err);

/* Cancel every call (no done callbacks), free everything; returns NULL. */
struct http *http_free(struct http *h);

/*
 * Attempts of a request that names no max_attempts (0: the default, 5). A
 * client that answers a person now (Doctor) tries once or twice: a long
 * retry would only hide the fault it looks for.
 */
void http_set_max_attempts(struct http *h, unsigned n);

/* For tests: the store that ca_file is added to, instead of /etc/ssl/certs. */
void http_set_system_ca_path(struct http *h, const char *dir);

/*
 * Start a request; never NULL. Every outcome, errors included, comes through
 * done on a later loop iteration. Retries (on loop timers, never sleeping):
 * 408, 429, 500, 502, 503, 504 and transport errors (timeout, reset,
 * refused, unresolved) up to max_attempts, waiting Retry-After (seconds or
 * an HTTP-date, at most 10 minutes) if given, else backoff_ms doubled per
 * attempt up to 60 s, with +-25% jitter. POST is not idempotent: it is
 * retried only on 429 and 503 (refusals asking for a retry) and when no
 * connection could be made; so is any request with once_unless_refused. PATCH counts as idempotent (ARM's PATCH sets
 * fields). Other 4xx and redirects are returned as they are.
 */
struct http_call *http_send(struct http *h, const struct http_request *req, http_done_fn done,
                            void *userdata);

/*
 * Abort a call that is still in flight (its done has not run: the handle is
 * gone once done is called); done is not called. NULL is ignored.
 */
void http_cancel(struct http_call *c);

/* Calls sent and not yet delivered or cancelled. */
unsigned http_in_flight(const struct http *h);

/*
 * url for a log line: userinfo and the values of secret-looking query
 * parameters (sig, se, st, s, h, t, c, code and any name containing token,
 * secret, key, sig or password) replaced by REDACTED, fragment dropped.
 * Returns an allocated string.
 */
char *http_redact_url(const char *url);

/*
 * Are url and base both absolute http(s) URLs with the same origin: scheme,
 * host and port (the scheme's default when absent) equal, case-insensitive?
 * A URL with userinfo never matches. Tokens go only to the endpoint they are
 * for: a URL read from a response is sent one only when this holds.
 */
bool http_same_origin(const char *url, const char *base);

/* url's host and port as "host:port" for a message, or "(not a URL)". Allocated. */
char *http_url_authority(const char *url);

#endif
