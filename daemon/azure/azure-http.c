/*
 * The HTTP client under azure.c and auth.c: libcurl's multi interface on the
 * daemon's libevent loop, in the shape of curl's hiperfifo example. struct
 * http owns the multi handle, its one timer and one persistent event per curl
 * socket (struct http_sock, attached with curl_multi_assign); struct
 * http_call owns one request (its copies, its easy handle, found again via
 * CURLOPT_PRIVATE) and one timer of its own, which starts each attempt after
 * a backoff and delivers the result, so done callbacks always run at the top
 * of the loop, never inside libcurl. Loop thread only. Memory: x* allocators
 * (abort on exhaustion; the daemon's state is in SQLite and resumes).
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "azure-http.h"
#include "config.h"
#include "log.h"
#include "seedd-build.h"
#include "util.h"

#define HTTP_CONNECT_TIMEOUT_MS 10000L
#define HTTP_TIMEOUT_MS 60000L
#define HTTP_MAX_RESPONSE ((size_t)4 << 20)
#define HTTP_MAX_RESPONSE_CAP ((size_t)1 << 30)
#define HTTP_MAX_ATTEMPTS 5u
#define HTTP_BACKOFF_MS 1000L
#define HTTP_BACKOFF_MAX_MS 60000L
#define HTTP_RETRY_AFTER_MAX_S 600L
#define HTTP_MAX_HEADERS 100u
#define HTTP_MAX_HEADER_LINE 16384u /* ARM's signed Location URLs reach ~3.2 KB */
#define HTTP_SYSTEM_CA_PATH "/etc/ssl/certs"

/* One socket curl asked us to watch. */
struct http_sock {
	LIST_ENTRY(http_sock) entry;
	struct http *h;
	struct event *ev;
};

enum call_state {
	CALL_WAITING,  /* wait timer armed: start the next attempt */
	CALL_RUNNING,  /* easy handle in the multi */
	CALL_FINISHED, /* wait timer armed: deliver the response */
};

struct http_call {
	LIST_ENTRY(http_call) entry;
	struct http *h;
	enum call_state state;
	const char *method; /* a string literal from http_methods */
	char *url;
	char *log_name;
	char *body; /* NULL: no request body */
	size_t body_len;
	struct curl_slist *headers;
	long connect_timeout_ms, timeout_ms, backoff_ms;
	size_t max_response;
	unsigned max_attempts;
	bool once_unless_refused;
	bool secret_answer;
	http_done_fn done;
	void *userdata;

	struct event *wait;
	CURL *easy;
	struct http_response *resp;
	size_t body_cap;
	int abort_error; /* set when our write/header callback stopped the transfer */
	char errbuf[CURL_ERROR_SIZE];
	struct timespec started;
};

struct http {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	char *ca_file; /* NULL: curl's defaults (the system store) */
	char *ca_path;
	LIST_HEAD(, http_call) calls;
	LIST_HEAD(, http_sock) socks;
	unsigned n_calls;
	unsigned max_attempts; /* for requests that name none; 0: HTTP_MAX_ATTEMPTS */
};

static const char *const http_methods[] = {"GET", "PUT", "POST", "PATCH", "DELETE", "HEAD"};

/* ---- responses ------------------------------------------------------------ */

static void
response_clear_headers(struct http_response *r)
{
	for (size_t i = 0; i < r->n_headers; i++) {
		free(r->headers[i].name);
		free(r->headers[i].value);
	}
	free(r->headers);
	r->headers = NULL;
	r->n_headers = 0;
}

/* Forget the previous attempt; attempts and seconds stay. */
void
http_response_clear(struct http_response *r)
{
	response_clear_headers(r);
	secure_free(r->body);
	r->body = NULL;
	r->body_len = 0;
	r->status = 0;
	r->error = 0;
	r->errmsg[0] = '\0';
}

static void
response_free(struct http_response *r)
{
	if (r == NULL)
		return;
	http_response_clear(r);
	free(r);
}

const char *
http_response_header(const struct http_response *r, const char *name)
{
	for (size_t i = 0; i < r->n_headers; i++)
		if (strcasecmp(r->headers[i].name, name) == 0)
			return r->headers[i].value;
	return NULL;
}

static void response_set_error(struct http_response *r, int error, const char *fmt, ...)
    _printf_(3, 4);

static void
response_set_error(struct http_response *r, int error, const char *fmt, ...)
{
	va_list ap;

	r->error = error;
	va_start(ap, fmt);
	vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
	va_end(ap);
}

/* ---- URL redaction -------------------------------------------------------- */

static bool
param_is_secret(const char *name, size_t len)
{
	static const char *const exact[] = {"sig", "se", "st", "s", "h", "t", "c", "code"};
	static const char *const parts[] = {"token",    "secret",    "key",       "sig",
	                                    "password", "assertion", "credential"};
	char lower[64];

	if (len >= sizeof(lower))
		return true; /* an odd name: say nothing about it */
	for (size_t i = 0; i < len; i++)
		lower[i] = (char)tolower((unsigned char)name[i]);
	lower[len] = '\0';
	for (size_t i = 0; i < ELEMENTSOF(exact); i++)
		if (strcmp(lower, exact[i]) == 0)
			return true;
	for (size_t i = 0; i < ELEMENTSOF(parts); i++)
		if (strstr(lower, parts[i]) != NULL)
			return true;
	return false;
}

static void
redact_query(FILE *f, const char *q, size_t len)
{
	const char *end = q + len;

	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *stop = amp != NULL ? amp : end;
		const char *eq = memchr(q, '=', (size_t)(stop - q));

		if (eq != NULL && param_is_secret(q, (size_t)(eq - q)))
			fprintf(f, "%.*s=REDACTED", (int)(eq - q), q);
		else
			fwrite(q, 1, (size_t)(stop - q), f);
		if (amp == NULL)
			break;
		fputc('&', f);
		q = amp + 1;
	}
}

/* Whether url starts with a scheme that ends at colon (RFC 3986 §3.1). */
static bool
scheme_ends_at(const char *url, const char *colon)
{
	if (colon == url || !isalpha((unsigned char)url[0]))
		return false;
	for (const char *p = url; p < colon; p++)
		if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' && *p != '.')
			return false;
	return true;
}

char *
http_redact_url(const char *url)
{
	const char *end, *rest, *scheme, *at = NULL, *q;
	char *out = NULL;
	size_t size = 0;
	FILE *f;

	if (url == NULL)
		return xstrdup("");
	f = open_memstream(&out, &size);
	if (f == NULL)
		fatalx("open_memstream failed");
	end = url + strcspn(url, "#");
	rest = url;
	scheme = strstr(url, "://");
	if (scheme != NULL && scheme < end && scheme_ends_at(url, scheme)) {
		const char *auth = scheme + 3;
		size_t auth_len = strcspn(auth, "/?#");

		for (const char *p = auth; p < auth + auth_len; p++)
			if (*p == '@')
				at = p;
		if (at != NULL) {
			fprintf(f, "%.*sREDACTED@", (int)(auth - url), url);
			rest = at + 1;
		}
	}
	q = memchr(rest, '?', (size_t)(end - rest));
	if (q == NULL) {
		fwrite(rest, 1, (size_t)(end - rest), f);
	} else {
		fwrite(rest, 1, (size_t)(q + 1 - rest), f);
		redact_query(f, q + 1, (size_t)(end - q - 1));
	}
	if (fclose(f) != 0 || out == NULL)
		fatalx("open_memstream failed");
	return out;
}

/* ---- retry policy --------------------------------------------------------- */

static int
curl_result_to_errno(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return -ECONNRESET;
	case CURLE_FILESIZE_EXCEEDED:
		return -EMSGSIZE;
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EPERM;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EPROTO;
	}
}

/* See http_send() in azure-http.h for the policy. */
static bool
call_should_retry(const struct http_call *c, CURLcode result)
{
	const struct http_response *r = c->resp;
	bool post = strcmp(c->method, "POST") == 0 || c->once_unless_refused;

	if (r->attempts >= c->max_attempts)
		return false;
	if (r->error != 0) {
		/*
		 * Nothing reached a server: no connection, or a TLS handshake
		 * cut short (a server restarting resets it; the request is sent
		 * only after the handshake, so even a POST is safe to resend).
		 */
		if (result == CURLE_COULDNT_CONNECT || result == CURLE_COULDNT_RESOLVE_HOST ||
		    result == CURLE_SSL_CONNECT_ERROR)
			return true;
		if (post)
			return false;
		return r->error == -ETIMEDOUT || r->error == -ECONNRESET;
	}
	switch (r->status) {
	case 429:
	case 503:
		return true;
	case 408:
	case 500:
	case 502:
	case 504:
		return !post;
	default:
		return false;
	}
}

/* Retry-After as milliseconds (capped at 10 minutes), or -1 if unusable. */
static long
parse_retry_after(const char *v)
{
	long secs;

	if (isdigit((unsigned char)*v)) {
		unsigned long n;
		char *end;

		errno = 0;
		n = strtoul(v, &end, 10);
		end += strspn(end, " \t");
		if (*end != '\0')
			return -1;
		secs = errno == ERANGE || n > HTTP_RETRY_AFTER_MAX_S ? HTTP_RETRY_AFTER_MAX_S
		                                                     : (long)n;
	} else {
		time_t t = curl_getdate(v, NULL);

		if (t == -1)
			return -1;
		secs = t <= time(NULL) ? 0 : (long)(t - time(NULL));
		if (secs > HTTP_RETRY_AFTER_MAX_S)
			secs = HTTP_RETRY_AFTER_MAX_S;
	}
	return secs * 1000;
}

/* base doubled per failed attempt, capped, then +-25%. */
static long
backoff_ms(long base, unsigned failed)
{
	long d = base > HTTP_BACKOFF_MAX_MS ? HTTP_BACKOFF_MAX_MS : base;
	long j;

	for (unsigned i = 1; i < failed && d < HTTP_BACKOFF_MAX_MS; i++)
		d *= 2;
	if (d > HTTP_BACKOFF_MAX_MS)
		d = HTTP_BACKOFF_MAX_MS;
	j = d / 4;
	d = d - j + (long)arc4random_uniform((uint32_t)(2 * j + 1));
	return d > HTTP_BACKOFF_MAX_MS ? HTTP_BACKOFF_MAX_MS : d;
}

long
http_retry_after_ms(const struct http_response *r)
{
	const char *ra = http_response_header(r, "retry-after");

	return ra != NULL ? parse_retry_after(ra) : -1;
}

static long
call_retry_delay_ms(const struct http_call *c)
{
	long ms = http_retry_after_ms(c->resp);

	return ms >= 0 ? ms : backoff_ms(c->backoff_ms, c->resp->attempts);
}

/* ---- logging -------------------------------------------------------------- */

static bool
log_wants_debug(void)
{
	return log_get_max_priority() >= LOG_DEBUG;
}

static void
call_describe_result(const struct http_call *c, char *buf, size_t size)
{
	const struct http_response *r = c->resp;

	if (r->error != 0)
		snprintf(buf, size, "failed (%s)", r->errmsg);
	else
		snprintf(buf, size, "%ld", r->status);
}

/* A 429: say so, with ARM's remaining-quota headers. */
static void
call_log_throttled(const struct http_call *c, long delay_ms)
{
	const struct http_response *r = c->resp;
	_cleanup_free_ char *url = http_redact_url(c->url);
	char quota[512] = "";
	size_t len = 0;

	for (size_t i = 0; i < r->n_headers && len < sizeof(quota); i++) {
		if (strncmp(r->headers[i].name, "x-ms-ratelimit-remaining-", 25) != 0)
			continue;
		len += (size_t)snprintf(quota + len, sizeof(quota) - len, " %s=%s",
		                        r->headers[i].name + 25, r->headers[i].value);
	}
	if (delay_ms >= 0)
		log_notice("%s: %s %s: throttled (429), retry in %.1f s;%s", c->log_name, c->method,
		           url, (double)delay_ms / 1000, len ? quota : " no quota headers");
	else
		log_notice("%s: %s %s: throttled (429), giving up after %u attempts;%s",
		           c->log_name, c->method, url, r->attempts,
		           len ? quota : " no quota headers");
}

static void
call_log_retry(const struct http_call *c, long delay_ms)
{
	_cleanup_free_ char *url = NULL;
	char what[300];

	if (!log_wants_debug())
		return;
	url = http_redact_url(c->url);
	call_describe_result(c, what, sizeof(what));
	log_debug("%s: %s %s: %s, attempt %u of %u, retry in %.1f s", c->log_name, c->method, url,
	          what, c->resp->attempts, c->max_attempts, (double)delay_ms / 1000);
}

static void
call_log_done(const struct http_call *c)
{
	_cleanup_free_ char *url = NULL;
	char what[300];

	if (!log_wants_debug())
		return;
	url = http_redact_url(c->url);
	call_describe_result(c, what, sizeof(what));
	log_debug("%s: %s %s: %s, %u attempt%s, %.3f s", c->log_name, c->method, url, what,
	          c->resp->attempts, c->resp->attempts == 1 ? "" : "s", c->resp->seconds);
}

/* ---- calls ---------------------------------------------------------------- */

static void
call_schedule(struct http_call *c, enum call_state state, long delay_ms)
{
	struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};

	c->state = state;
	if (evtimer_add(c->wait, &tv) < 0)
		fatalx("evtimer_add failed");
}

/* Unlink c from its http and free it, response included unless taken. */
static void
call_free(struct http_call *c)
{
	LIST_REMOVE(c, entry);
	c->h->n_calls--;
	if (c->easy != NULL) {
		curl_multi_remove_handle(c->h->multi, c->easy);
		curl_easy_cleanup(c->easy);
	}
	event_free(c->wait);
	curl_slist_free_all(c->headers); /* curl frees with secure_free: Authorization */
	response_free(c->resp);
	secure_free(c->url);  /* may carry a SAS */
	free(c->log_name);
	secure_free(c->body); /* a token request's client secret, a job's BitLocker keys */
	free(c);
}

static size_t
http_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct http_call *c = arg;
	struct http_response *r = c->resp;
	size_t n = size * nmemb;

	if (n > c->max_response - r->body_len) {
		c->abort_error = -EMSGSIZE;
		snprintf(r->errmsg, sizeof(r->errmsg), "response body over %zu bytes",
		         c->max_response);
		return 0;
	}
	if (r->body_len + n + 1 > c->body_cap) {
		size_t cap = c->body_cap > 0 ? c->body_cap : 16384;

		while (cap < r->body_len + n + 1)
			cap *= 2;
		if (cap > c->max_response + 1)
			cap = c->max_response + 1;
		r->body = secure_realloc(r->body, cap); /* a token answer holds the token */
		c->body_cap = cap;
	}
	memcpy(r->body + r->body_len, ptr, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return n;
}

static int
header_too_big(struct http_response *r, const char *what)
{
	snprintf(r->errmsg, sizeof(r->errmsg), "%s", what);
	return -EMSGSIZE;
}

int
http_response_add_line(struct http_response *r, const char *buf, size_t n)
{
	size_t len = n, vlen;
	const char *colon, *v;
	struct http_field *f;

	if (n > HTTP_MAX_HEADER_LINE)
		return header_too_big(r, "response header line over 16 KiB");
	while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == '\n'))
		len--;
	if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		response_clear_headers(r);
		return 0;
	}
	colon = memchr(buf, ':', len);
	if (colon == NULL || colon == buf || memchr(buf, '\0', len) != NULL)
		return 0; /* the blank end line, or a malformed one (libcurl refuses NULs): ignored */
	if (r->n_headers >= HTTP_MAX_HEADERS)
		return header_too_big(r, "more than 100 response headers");
	/* libcurl's line is not NUL-terminated: scan within it (found by fuzz-http) */
	for (v = colon + 1; v < buf + len && (*v == ' ' || *v == '\t'); v++)
		;
	vlen = (size_t)(buf + len - v);
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	r->headers = xreallocarray(r->headers, r->n_headers + 1, sizeof(*r->headers));
	f = &r->headers[r->n_headers++];
	f->name = xstrndup(buf, (size_t)(colon - buf));
	for (char *p = f->name; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	f->value = xstrndup(v, vlen);
	return 0;
}

/* One header line; a status line starts a new set (after 1xx answers). */
static size_t
http_header_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct http_call *c = arg;
	size_t n = size * nitems;
	int r = http_response_add_line(c->resp, buf, n);

	if (r < 0) {
		c->abort_error = r;
		return 0;
	}
	return n;
}

static bool
url_is_loopback(const char *url)
{
	CURLU *u = curl_url();
	char *host = NULL;
	bool loopback = false;

	if (u == NULL)
		fatalx("curl_url failed");
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
		loopback = strcmp(host, "127.0.0.1") == 0 || strcmp(host, "[::1]") == 0 ||
		           strcmp(host, "::1") == 0 || strcasecmp(host, "localhost") == 0;
	curl_free(host);
	curl_url_cleanup(u);
	return loopback;
}

/* The lower-cased part of u, or NULL. */
static char *
url_part(CURLU *u, CURLUPart part, unsigned flags)
{
	char *v = NULL, *r;

	if (curl_url_get(u, part, &v, flags) != CURLUE_OK)
		return NULL;
	r = xstrdup(v);
	curl_free(v);
	for (char *p = r; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return r;
}

/* Parse url (absolute, http or https) into scheme, host and port; false if it is not one. */
static bool
url_origin(const char *url, char **ret_scheme, char **ret_host, char **ret_port)
{
	CURLU *u = curl_url();
	char *user = NULL;
	bool ok;

	if (u == NULL)
		fatalx("curl_url failed");
	*ret_scheme = *ret_host = *ret_port = NULL;
	ok = url != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK;
	if (ok && curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK)
		ok = false; /* userinfo: never an Azure URL, and a classic spoofing trick */
	curl_free(user);
	if (ok) {
		*ret_scheme = url_part(u, CURLUPART_SCHEME, 0);
		*ret_host = url_part(u, CURLUPART_HOST, 0);
		*ret_port = url_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT);
		ok = *ret_scheme != NULL && *ret_host != NULL && *ret_port != NULL &&
		     (strcmp(*ret_scheme, "https") == 0 || strcmp(*ret_scheme, "http") == 0);
	}
	curl_url_cleanup(u);
	return ok;
}

bool
http_same_origin(const char *url, const char *base)
{
	char *s1, *h1, *p1, *s2, *h2, *p2;
	bool same;

	same = url_origin(url, &s1, &h1, &p1);
	if (!url_origin(base, &s2, &h2, &p2))
		same = false;
	same = same && strcmp(s1, s2) == 0 && strcmp(h1, h2) == 0 && strcmp(p1, p2) == 0;
	free(s1), free(h1), free(p1), free(s2), free(h2), free(p2);
	return same;
}

char *
http_url_authority(const char *url)
{
	CURLU *u = curl_url();
	char *host, *port, *r;

	if (u == NULL)
		fatalx("curl_url failed");
	if (url == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
		curl_url_cleanup(u);
		return xstrdup("(not a URL)");
	}
	host = url_part(u, CURLUPART_HOST, 0);
	port = url_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT);
	r = xprintf("%s:%s", host ? host : "?", port ? port : "?");
	free(host);
	free(port);
	curl_url_cleanup(u);
	return r;
}

/*
 * OpenSSL keeps the plaintext of the last TLS record read (a token answer,
 * say) in its buffer until the next one overwrites it; have it cleansed once
 * handed to curl (issue 11). Only when curl's TLS backend is OpenSSL, which
 * is all this callback is ever called for.
 */
static CURLcode
ssl_ctx_cb(CURL *e, void *ssl_ctx, void *userdata)
{
#ifdef SSL_OP_CLEANSE_PLAINTEXT
	SSL_CTX_set_options((SSL_CTX *)ssl_ctx, SSL_OP_CLEANSE_PLAINTEXT);
#endif
	return CURLE_OK;
}

#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(e, opt, val);                                        \
	} while (0)

static CURLcode
call_set_method(struct http_call *c, CURL *e)
{
	CURLcode rc = CURLE_OK;

	if (strcmp(c->method, "GET") == 0) {
		SET(CURLOPT_HTTPGET, 1L);
	} else if (strcmp(c->method, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else {
		if (c->body != NULL) {
			SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
			SET(CURLOPT_POSTFIELDS, c->body);
		}
		if (strcmp(c->method, "POST") != 0)
			SET(CURLOPT_CUSTOMREQUEST, c->method);
	}
	return rc;
}

/* A fresh easy handle for the next attempt. */
static CURLcode
call_setup_easy(struct http_call *c, CURL *e)
{
	struct http *h = c->h;
	CURLcode rc = CURLE_OK;

	SET(CURLOPT_URL, c->url);
	SET(CURLOPT_PRIVATE, c);
	SET(CURLOPT_ERRORBUFFER, c->errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->ca_file != NULL) {
		/* CAfile and CApath both load into OpenSSL's store: an addition */
		SET(CURLOPT_CAINFO, h->ca_file);
		SET(CURLOPT_CAPATH, h->ca_path);
	}
	if (url_is_loopback(c->url))
		SET(CURLOPT_NOPROXY, "*");
	SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	SET(CURLOPT_TIMEOUT_MS, c->timeout_ms);
	if (strcmp(c->method, "HEAD") != 0) /* a HEAD's Content-Length is the blob's, not a body */
		SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response);
	SET(CURLOPT_WRITEFUNCTION, http_write_cb);
	SET(CURLOPT_WRITEDATA, c);
	SET(CURLOPT_HEADERFUNCTION, http_header_cb);
	SET(CURLOPT_HEADERDATA, c);
	SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
	SET(CURLOPT_HTTPHEADER, c->headers);
	SET(CURLOPT_USERAGENT, "seedd/" SEEDD_VERSION);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	if (rc == CURLE_OK)
		rc = call_set_method(c, e);
	/*
	 * Only for a secret answer: with this callback curl no longer caches
	 * the CA store, which costs a reload per new connection. Another TLS
	 * backend refuses the option: nothing to cleanse there.
	 */
	if (c->secret_answer)
		(void)curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
	return rc;
}

#undef SET

static void
call_start(struct http_call *c)
{
	struct http_response *r = c->resp;
	CURLMcode mc;
	CURLcode rc;
	CURL *e;

	http_response_clear(r);
	r->attempts++;
	c->abort_error = 0;
	c->body_cap = 0;
	c->errbuf[0] = '\0';
	e = curl_easy_init();
	if (e == NULL) {
		response_set_error(r, -ENOMEM, "curl_easy_init failed");
		call_schedule(c, CALL_FINISHED, 0);
		return;
	}
	rc = call_setup_easy(c, e);
	if (rc != CURLE_OK) {
		curl_easy_cleanup(e);
		response_set_error(r, -EPROTO, "%s", curl_easy_strerror(rc));
		call_schedule(c, CALL_FINISHED, 0);
		return;
	}
	mc = curl_multi_add_handle(c->h->multi, e);
	if (mc != CURLM_OK) {
		curl_easy_cleanup(e);
		response_set_error(r, -EPROTO, "%s", curl_multi_strerror(mc));
		call_schedule(c, CALL_FINISHED, 0);
		return;
	}
	c->easy = e;
	c->state = CALL_RUNNING;
}

/* curl finished an attempt: record it, then retry later or deliver. */
static void
call_attempt_done(struct http_call *c, CURLcode result)
{
	struct http_response *r = c->resp;
	long status = 0, delay;

	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(c->h->multi, c->easy);
	curl_easy_cleanup(c->easy);
	c->easy = NULL;
	r->status = status;
	if (c->abort_error != 0)
		r->error = c->abort_error; /* errmsg already set */
	else if (result != CURLE_OK)
		response_set_error(r, curl_result_to_errno(result), "%s",
		                   c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(result));
	if (!call_should_retry(c, result)) {
		if (r->error == 0 && r->status == 429)
			call_log_throttled(c, -1);
		call_schedule(c, CALL_FINISHED, 0);
		return;
	}
	delay = call_retry_delay_ms(c);
	if (r->error == 0 && r->status == 429)
		call_log_throttled(c, delay);
	else
		call_log_retry(c, delay);
	call_schedule(c, CALL_WAITING, delay);
}

/* Hand the response over; c is gone before done runs. */
static void
call_deliver(struct http_call *c)
{
	struct http_response *r = c->resp;
	http_done_fn done = c->done;
	void *userdata = c->userdata;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	r->seconds = (double)(now.tv_sec - c->started.tv_sec) +
	             (double)(now.tv_nsec - c->started.tv_nsec) / 1e9;
	if (r->body == NULL)
		r->body = xstrdup("");
	call_log_done(c);
	c->resp = NULL;
	call_free(c);
	if (done != NULL)
		done(r, userdata);
	response_free(r);
}

static void
http_wait_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_call *c = arg;

	if (c->state == CALL_FINISHED)
		call_deliver(c);
	else
		call_start(c);
}

static bool
header_name_valid(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || *s == ':' || *s == 0x7f)
			return false;
	return true;
}

static void
slist_add(struct curl_slist **l, const char *s)
{
	struct curl_slist *n = curl_slist_append(*l, s);

	if (n == NULL)
		fatalx("curl_slist_append failed");
	*l = n;
}

/* Copy the request's headers; -EINVAL for a header that could inject. */
static int
call_copy_headers(struct http_call *c, const struct http_request *req)
{
	bool content_type = false;

	for (size_t i = 0; i < req->n_headers; i++) {
		const struct http_header *hd = &req->headers[i];
		const char *v = hd->value != NULL ? hd->value : "";
		_cleanup_(secure_freep) char *line = NULL; /* may be Authorization */

		if (!header_name_valid(hd->name) || strpbrk(v, "\r\n") != NULL)
			return -EINVAL;
		if (strcasecmp(hd->name, "Content-Type") == 0)
			content_type = true;
		/* "Name;" is curl's way to send a header with an empty value */
		line = *v != '\0' ? xprintf("%s: %s", hd->name, v) : xprintf("%s;", hd->name);
		slist_add(&c->headers, line);
	}
	if (c->body != NULL && !content_type)
		slist_add(&c->headers, "Content-Type:"); /* not curl's form type */
	slist_add(&c->headers, "Expect:");               /* no 100-continue wait */
	return 0;
}

static int
call_copy_request(struct http_call *c, const struct http_request *req)
{
	c->url = xstrdup(req->url != NULL ? req->url : "");
	c->log_name = xstrdup(req->log_name != NULL ? req->log_name : "http");
	c->method = "?";
	for (size_t i = 0; i < ELEMENTSOF(http_methods); i++)
		if (req->method != NULL && strcmp(req->method, http_methods[i]) == 0)
			c->method = http_methods[i];
	c->connect_timeout_ms =
	    req->connect_timeout_ms > 0 ? req->connect_timeout_ms : HTTP_CONNECT_TIMEOUT_MS;
	c->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : HTTP_TIMEOUT_MS;
	c->backoff_ms = req->backoff_ms > 0 ? req->backoff_ms : HTTP_BACKOFF_MS;
	c->max_response = req->max_response > 0 ? req->max_response : HTTP_MAX_RESPONSE;
	if (c->max_response > HTTP_MAX_RESPONSE_CAP)
		c->max_response = HTTP_MAX_RESPONSE_CAP;
	c->max_attempts = req->max_attempts > 0 ? req->max_attempts
			  : c->h->max_attempts > 0 ? c->h->max_attempts
						  : HTTP_MAX_ATTEMPTS;
	c->once_unless_refused = req->once_unless_refused;
	c->secret_answer = req->secret_answer;

	if (*c->method == '?') {
		response_set_error(c->resp, -EINVAL, "unsupported HTTP method");
		return -EINVAL;
	}
	if (req->body == NULL && req->body_len > 0) {
		response_set_error(c->resp, -EINVAL, "body length without a body");
		return -EINVAL;
	}
	if (req->body != NULL || strcmp(c->method, "PUT") == 0 || strcmp(c->method, "POST") == 0 ||
	    strcmp(c->method, "PATCH") == 0) {
		/* an empty body still sends Content-Length: 0, which ARM wants */
		c->body = xmalloc(req->body_len + 1);
		if (req->body_len > 0)
			memcpy(c->body, req->body, req->body_len);
		c->body_len = req->body_len;
	}
	if (call_copy_headers(c, req) < 0) {
		response_set_error(c->resp, -EINVAL, "request header with a bad name or value");
		return -EINVAL;
	}
	if (!config_url_allowed(c->url)) {
		response_set_error(c->resp, -EPERM,
		                   "URL refused: neither https:// nor http:// to a loopback host");
		return -EPERM;
	}
	return 0;
}

struct http_call *
http_send(struct http *h, const struct http_request *req, http_done_fn done, void *userdata)
{
	struct http_call *c = xcalloc(1, sizeof(*c));

	c->h = h;
	c->done = done;
	c->userdata = userdata;
	c->resp = xcalloc(1, sizeof(*c->resp));
	clock_gettime(CLOCK_MONOTONIC, &c->started);
	c->wait = evtimer_new(h->base, http_wait_cb, c);
	if (c->wait == NULL)
		fatalx("evtimer_new failed");
	LIST_INSERT_HEAD(&h->calls, c, entry);
	h->n_calls++;
	if (call_copy_request(c, req) < 0)
		call_schedule(c, CALL_FINISHED, 0);
	else
		call_schedule(c, CALL_WAITING, 0);
	return c;
}

void
http_cancel(struct http_call *c)
{
	if (c != NULL)
		call_free(c);
}

unsigned
http_in_flight(const struct http *h)
{
	return h->n_calls;
}

/* ---- curl's multi callbacks ----------------------------------------------- */

static void
http_check_done(struct http *h)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		CURL *e = msg->easy_handle;
		CURLcode result = msg->data.result;
		char *priv = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		/* msg is invalid once the handle is removed: copied above */
		curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
		call_attempt_done((struct http_call *)(void *)priv, result);
	}
}

static void
http_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_sock *s = arg;
	struct http *h = s->h; /* s may be freed inside socket_action */
	int flags = 0, running;
	CURLMcode mc;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	mc = curl_multi_socket_action(h->multi, fd, flags, &running);
	if (mc != CURLM_OK)
		log_warning("curl_multi_socket_action: %s", curl_multi_strerror(mc));
	http_check_done(h);
}

static void
http_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http *h = arg;
	int running;
	CURLMcode mc;

	mc = curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	if (mc != CURLM_OK)
		log_warning("curl_multi_socket_action: %s", curl_multi_strerror(mc));
	http_check_done(h);
}

static void
http_sock_free(struct http_sock *s)
{
	LIST_REMOVE(s, entry);
	event_free(s->ev);
	free(s);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl asks, one event per socket. */
static int
http_socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http *h = userp;
	struct http_sock *s = socketp;
	short kind = EV_PERSIST;

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			http_sock_free(s);
			curl_multi_assign(h->multi, fd, NULL);
		}
		return 0;
	}
	if (what & CURL_POLL_IN)
		kind |= EV_READ;
	if (what & CURL_POLL_OUT)
		kind |= EV_WRITE;
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->h = h;
		s->ev = event_new(h->base, fd, kind, http_event_cb, s);
		if (s->ev == NULL)
			fatalx("event_new failed");
		LIST_INSERT_HEAD(&h->socks, s, entry);
		curl_multi_assign(h->multi, fd, s);
	} else {
		event_del(s->ev);
		event_assign(s->ev, h->base, fd, kind, http_event_cb, s);
	}
	if ((kind & (EV_READ | EV_WRITE)) == 0)
		return 0;
	return event_add(s->ev, NULL) < 0 ? -1 : 0;
}

/* CURLMOPT_TIMERFUNCTION: only (re)arm or delete; the loop calls back. */
static int
http_multi_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct http *h = userp;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

	if (timeout_ms < 0)
		return evtimer_del(h->timer) < 0 ? -1 : 0;
	return evtimer_add(h->timer, &tv) < 0 ? -1 : 0;
}

/* ---- the client ----------------------------------------------------------- */

static struct http *
http_fail(struct http *h, char **ret_err, const char *msg)
{
	if (ret_err != NULL)
		*ret_err = xstrdup(msg);
	return http_free(h);
}

struct http *
http_new(struct event_base *base, const char *ca_file, char **ret_err)
{
	struct http *h;

	if (ret_err != NULL)
		*ret_err = NULL;
	if (ca_file != NULL && access(ca_file, R_OK) < 0) {
		if (ret_err != NULL)
			xasprintf(ret_err, "CAFile %s: %s", ca_file, strerror(errno));
		return NULL;
	}
	/*
	 * curl's own buffers (the request it sends: Authorization, the body;
	 * header lists) are wiped when curl frees them (issue 11).
	 */
	if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, secure_free, secure_realloc, strdup,
	                         calloc) != CURLE_OK) {
		if (ret_err != NULL)
			*ret_err = xstrdup("curl_global_init failed");
		return NULL;
	}
	h = xcalloc(1, sizeof(*h));
	h->base = base;
	LIST_INIT(&h->calls);
	LIST_INIT(&h->socks);
	h->ca_file = ca_file != NULL ? xstrdup(ca_file) : NULL;
	h->ca_path = xstrdup(HTTP_SYSTEM_CA_PATH);
	h->timer = evtimer_new(base, http_timer_cb, h);
	if (h->timer == NULL)
		return http_fail(h, ret_err, "evtimer_new failed");
	h->multi = curl_multi_init();
	if (h->multi == NULL)
		return http_fail(h, ret_err, "curl_multi_init failed");
	if (curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_socket_cb) != CURLM_OK ||
	    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) != CURLM_OK ||
	    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_multi_timer_cb) != CURLM_OK ||
	    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h) != CURLM_OK)
		return http_fail(h, ret_err, "curl_multi_setopt failed");
	return h;
}

void
http_set_max_attempts(struct http *h, unsigned n)
{
	h->max_attempts = n;
}

void
http_set_system_ca_path(struct http *h, const char *dir)
{
	free(h->ca_path);
	h->ca_path = xstrdup(dir);
}

struct http *
http_free(struct http *h)
{
	struct http_sock *s;

	if (h == NULL)
		return NULL;
	while (!LIST_EMPTY(&h->calls))
		call_free(LIST_FIRST(&h->calls));
	/* may call http_socket_cb (REMOVE) and the timer callback */
	if (h->multi != NULL)
		curl_multi_cleanup(h->multi);
	while ((s = LIST_FIRST(&h->socks)) != NULL)
		http_sock_free(s);
	if (h->timer != NULL)
		event_free(h->timer);
	free(h->ca_file);
	free(h->ca_path);
	free(h);
	curl_global_cleanup();
	return NULL;
}
