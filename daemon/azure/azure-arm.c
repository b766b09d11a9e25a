/*
 * Entra ID tokens and ARM requests on the loop, over azure-http.c. Tokens
 * are cached per scope and renewed five minutes before they expire; a call
 * that meets 401 drops the token and tries once more with a new one. Long-
 * running operations are followed through Azure-AsyncOperation or Location
 * on loop timers. Secrets (the client secret, tokens) never reach a log:
 * azure-http.c logs no bodies or headers. Loop thread only.
 */
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "azure-arm.h"
#include "azure-http.h"
#include "azure-jobs.h"
#include "config.h"
#include "log.h"
#include "util.h"

#define TOKEN_MARGIN_SEC 300    /* renew this long before expiry */
#define LRO_POLL_MS 5000        /* when Azure sends no Retry-After */
#define LRO_MAX_SEC (6 * 3600)  /* give up on an operation after this */
#define ARM_MAX_RESPONSE (8u << 20)

struct token_waiter {
	LIST_ENTRY(token_waiter) link;
	azure_token_fn fn; /* NULL once cancelled */
	void *userdata;
};

struct token {
	LIST_ENTRY(token) link;
	char *scope;
	char *value; /* secret */
	int64_t expires;
	struct http_call *fetch;
	struct event *fail_ev;
	LIST_HEAD(, token_waiter) waiters;
};

struct azure {
	struct event_base *base;
	const struct config *config;
	struct http *http;
	LIST_HEAD(, token) tokens;
	LIST_HEAD(, arm_call) calls;
	long lro_poll_ms;
};

struct arm_call {
	LIST_ENTRY(arm_call) link;
	struct azure *az;
	char *method, *url, *body, *scope;
	unsigned flags;
	arm_done_fn done;
	void *userdata;
	struct http_call *http;
	struct token_waiter *waiter;
	struct event *timer;
	bool retried_auth;
	unsigned malformed; /* 2xx answers whose body was not JSON */
	/* Long-running operation. */
	bool in_lro, async_op;
	char *poll_url;
	int64_t lro_started;
};

static int64_t
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static void
secret_free(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

struct azure *
azure_new(struct event_base *base, const struct config *c, char **ret_err)
{
	struct azure *az = xcalloc(1, sizeof(*az));

	az->base = base;
	az->config = c;
	az->lro_poll_ms = LRO_POLL_MS;
	LIST_INIT(&az->tokens);
	LIST_INIT(&az->calls);
	az->http = http_new(base, c->ca_file, ret_err);
	if (az->http == NULL) {
		free(az);
		return NULL;
	}
	return az;
}

static void
tokens_drop(struct azure *az)
{
	struct token *t;

	while ((t = LIST_FIRST(&az->tokens)) != NULL) {
		struct token_waiter *w;
		LIST_REMOVE(t, link);
		http_cancel(t->fetch);
		while ((w = LIST_FIRST(&t->waiters)) != NULL) {
			LIST_REMOVE(w, link);
			if (w->fn)
				w->fn(NULL, "Cancelled", "the configuration changed", w->userdata);
			free(w);
		}
		secret_free(t->value);
		event_free(t->fail_ev);
		free(t->scope);
		free(t);
	}
}

static void
call_free(struct arm_call *c)
{
	LIST_REMOVE(c, link);
	http_cancel(c->http);
	azure_token_cancel(c->waiter);
	if (c->timer)
		event_free(c->timer);
	free(c->method);
	free(c->url);
	secret_free(c->body); /* job bodies carry BitLocker keys */
	free(c->scope);
	free(c->poll_url);
	free(c);
}

struct azure *
azure_free(struct azure *az)
{
	if (az == NULL)
		return NULL;
	while (!LIST_EMPTY(&az->calls))
		call_free(LIST_FIRST(&az->calls));
	tokens_drop(az);
	http_free(az->http);
	free(az);
	return NULL;
}

void
azure_set_config(struct azure *az, const struct config *c)
{
	az->config = c;
	tokens_drop(az);
}

void
azure_set_lro_poll_ms(struct azure *az, long ms)
{
	az->lro_poll_ms = ms > 0 ? ms : LRO_POLL_MS;
}

struct http *
azure_http(struct azure *az)
{
	return az->http;
}

/* ---- tokens ------------------------------------------------------------- */

static char *
form_escape(const char *s)
{
	char *e = curl_easy_escape(NULL, s, 0), *r;

	if (e == NULL)
		fatalx("curl_easy_escape failed");
	r = xstrdup(e);
	curl_free(e);
	return r;
}

static void
token_finish(struct token *t, const char *code, const char *message)
{
	struct token_waiter *w;

	while ((w = LIST_FIRST(&t->waiters)) != NULL) {
		LIST_REMOVE(w, link);
		if (w->fn)
			w->fn(t->value, code, message, w->userdata);
		free(w);
	}
}

static void
token_done_cb(struct http_response *resp, void *userdata)
{
	struct token *t = userdata;
	json_t *body = NULL, *exp;
	_cleanup_free_ char *code = NULL, *msg = NULL;
	const char *tok;

	t->fetch = NULL;
	if (resp->error != 0) {
		msg = xprintf("cannot reach the Entra ID token endpoint: %s", resp->errmsg);
		token_finish(t, ARM_CODE_TOKEN_UNREACHABLE, msg);
		return;
	}
	body = json_loadb(resp->body, resp->body_len, 0, NULL);
	tok = json_string_value(json_object_get(body, "access_token"));
	exp = json_object_get(body, "expires_in");
	if (resp->status == 200 && tok != NULL) {
		int64_t secs = json_is_integer(exp) ? json_integer_value(exp)
			       : json_is_string(exp) ? strtoll(json_string_value(exp), NULL, 10)
						     : 3599;
		secret_free(t->value);
		t->value = xstrdup(tok);
		t->expires = mono_now() + secs;
		token_finish(t, NULL, NULL);
	} else {
		azure_arm_error(body, &code, &msg);
		if (msg == NULL)
			msg = xprintf("Entra ID answered HTTP %ld", resp->status);
		token_finish(t, code ? code : "TokenRequestFailed", msg);
	}
	json_decref(body);
}

static void
token_fetch(struct azure *az, struct token *t)
{
	const struct config *c = az->config;
	_cleanup_free_ char *url = NULL, *id = NULL, *scope = NULL, *secret = NULL;
	char *form;
	struct http_header h[] = {{"Content-Type", "application/x-www-form-urlencoded"},
				  {"Accept", "application/json"}};

	url = xprintf("%s/%s/oauth2/v2.0/token", c->authority_host, c->tenant_id);
	id = form_escape(c->client_id);
	scope = form_escape(t->scope);
	secret = form_escape(c->client_secret.value);
	form = xprintf("client_id=%s&scope=%s&client_secret=%s&grant_type=client_credentials", id,
		       scope, secret);
	explicit_bzero(secret, strlen(secret));
	struct http_request req = {
		.method = "POST",
		.url = url,
		.timeout_ms = (long)c->request_timeout_sec * 1000,
		.connect_timeout_ms = (long)c->request_timeout_sec * 1000,
		.headers = h,
		.n_headers = ELEMENTSOF(h),
		.body = form,
		.body_len = strlen(form),
		.redact_body_in_log = true,
		.secret_answer = true, /* the access token */
		.log_name = "entra-token",
	};
	t->fetch = http_send(az->http, &req, token_done_cb, t);
	secret_free(form);
}

static void
token_fail_cb(evutil_socket_t fd, short what, void *arg)
{
	struct token *t = arg;

	token_finish(t, "ConfigurationMissing",
		     "[Azure] TenantId=, ClientId=, AuthorityHost= and a client secret are needed");
}

static bool
auth_configured(const struct config *c)
{
	return c->tenant_id != NULL && c->client_id != NULL && c->client_secret.value != NULL &&
	       c->authority_host != NULL;
}

struct token_waiter *
azure_token(struct azure *az, const char *scope, azure_token_fn done, void *userdata)
{
	struct token *t;
	struct token_waiter *w;

	LIST_FOREACH(t, &az->tokens, link)
		if (strcmp(t->scope, scope) == 0)
			break;
	if (t != NULL && t->value != NULL && t->expires - mono_now() > TOKEN_MARGIN_SEC) {
		done(t->value, NULL, NULL, userdata);
		return NULL;
	}
	if (t == NULL) {
		t = xcalloc(1, sizeof(*t));
		t->scope = xstrdup(scope);
		LIST_INIT(&t->waiters);
		t->fail_ev = evtimer_new(az->base, token_fail_cb, t);
		LIST_INSERT_HEAD(&az->tokens, t, link);
	}
	w = xcalloc(1, sizeof(*w));
	w->fn = done;
	w->userdata = userdata;
	LIST_INSERT_HEAD(&t->waiters, w, link);
	if (!auth_configured(az->config)) {
		struct timeval zero = {0, 0};
		evtimer_add(t->fail_ev, &zero); /* fail on a later iteration, never re-entrantly */
	} else if (t->fetch == NULL)
		token_fetch(az, t);
	return w;
}

void
azure_token_cancel(struct token_waiter *w)
{
	if (w != NULL)
		w->fn = NULL;
}

static void
token_forget(struct azure *az, const char *scope)
{
	struct token *t;

	LIST_FOREACH(t, &az->tokens, link)
		if (strcmp(t->scope, scope) == 0 && t->fetch == NULL) {
			secret_free(t->value);
			t->value = NULL;
			t->expires = 0;
		}
}

/* ---- ARM calls ---------------------------------------------------------- */

char *
azure_arm_scope(const struct config *c)
{
	switch (c->cloud) {
	case CLOUD_AZURE_CHINA:
		return xstrdup("https://management.chinacloudapi.cn/.default");
	case CLOUD_AZURE_US_GOVERNMENT:
		return xstrdup("https://management.usgovcloudapi.net/.default");
	case CLOUD_CUSTOM:
		return xprintf("%s/.default", c->resource_manager_endpoint);
	default:
		return xstrdup("https://management.azure.com/.default");
	}
}

static void arm_send(struct arm_call *c);
static void arm_http_cb(struct http_response *resp, void *userdata);

static void
arm_finish(struct arm_call *c, long status, json_t *body, int error, const char *code,
	   const char *message, const char *location)
{
	struct arm_result r = {
		.status = status,
		.body = body,
		.error = error,
		.code = code,
		.message = message,
		.location = location,
		.in_operation = c->in_lro,
	};
	arm_done_fn done = c->done;
	void *ud = c->userdata;

	call_free(c);
	done(&r, ud);
}

/*
 * Tokens go only to Azure (issue 11): a URL seedd did not build itself
 * (an operation's Azure-AsyncOperation or Location) is followed only when
 * its scheme, host and port are those of ResourceManagerEndpoint=. Else the
 * call fails, naming the host, before any request with a token is sent.
 */
static bool
arm_url_trusted(struct arm_call *c, const char *url)
{
	_cleanup_free_ char *host = NULL, *arm = NULL, *msg = NULL;
	const char *base = c->az->config->resource_manager_endpoint;

	if (http_same_origin(url, base))
		return true;
	host = http_url_authority(url);
	arm = http_url_authority(base);
	msg = xprintf("Azure named an operation URL on %s, not the Resource Manager endpoint (%s): "
		      "not followed, no token sent",
		      host, arm);
	log_warning("%s", msg);
	arm_finish(c, 0, NULL, -EPERM, "UntrustedOperationUrl", msg, NULL);
	return false;
}

static void
arm_token_cb(const char *token, const char *code, const char *message, void *userdata)
{
	struct arm_call *c = userdata;
	struct http_header h[4];
	_cleanup_free_ char *auth = NULL;
	size_t n = 0;

	c->waiter = NULL;
	if (token == NULL) {
		arm_finish(c, 0, NULL, -EACCES, code, message, NULL);
		return;
	}
	if (!arm_url_trusted(c, c->in_lro ? c->poll_url : c->url))
		return; /* the last guard: lro_begin and lro_answer check first */
	auth = xprintf("Bearer %s", token);
	h[n++] = (struct http_header){"Authorization", auth};
	h[n++] = (struct http_header){"Accept", "application/json"};
	if (c->body != NULL && !c->in_lro)
		h[n++] = (struct http_header){"Content-Type", "application/json"};
	struct http_request req = {
		.method = c->in_lro ? "GET" : c->method,
		.url = c->in_lro ? c->poll_url : c->url,
		.headers = h,
		.n_headers = n,
		.body = c->in_lro ? NULL : c->body,
		.body_len = c->body && !c->in_lro ? strlen(c->body) : 0,
		.max_response = ARM_MAX_RESPONSE,
		.timeout_ms = (long)c->az->config->request_timeout_sec * 1000,
		.connect_timeout_ms = (long)c->az->config->request_timeout_sec * 1000,
		.once_unless_refused = (c->flags & ARM_CREATE) && !c->in_lro,
		.log_name = "arm",
	};
	c->http = http_send(c->az->http, &req, arm_http_cb, c);
	explicit_bzero(auth, strlen(auth));
}

/* Get a token (cached, or fetched), then send; the waiter is kept to cancel it. */
static void
arm_send(struct arm_call *c)
{
	c->waiter = azure_token(c->az, c->scope, arm_token_cb, c);
}

static void
lro_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	arm_send(arg);
}

/* Wait Retry-After (or the default) before the next poll of the operation. */
static void
lro_schedule(struct arm_call *c, const struct http_response *resp)
{
	/* Seconds or an HTTP-date [RFC 9110 §10.2.3]; 0 or a past date: poll at once. */
	long ms = http_retry_after_ms(resp);
	struct timeval tv;

	if (ms < 0)
		ms = c->az->lro_poll_ms;
	if (ms > 600000)
		ms = 600000;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (c->timer == NULL)
		c->timer = evtimer_new(c->az->base, lro_timer_cb, c);
	evtimer_add(c->timer, &tv);
}

static void
retry_later(struct arm_call *c, long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	if (c->timer == NULL)
		c->timer = evtimer_new(c->az->base, lro_timer_cb, c);
	evtimer_add(c->timer, &tv);
}

static void
arm_fail_http(struct arm_call *c, const struct http_response *resp, json_t *body)
{
	_cleanup_free_ char *code = NULL, *msg = NULL;

	azure_arm_error(body, &code, &msg);
	if (msg == NULL)
		msg = resp->error ? xstrdup(resp->errmsg)
				  : xprintf("HTTP %ld from %s", resp->status, c->method);
	arm_finish(c, resp->status, body, resp->error ? resp->error : -EIO,
		   code ? code : resp->error ? "TransportError" : "HttpError", msg,
		   http_response_header(resp, "location"));
}

/* An answer to a poll of a long-running operation. */
static void
lro_answer(struct arm_call *c, const struct http_response *resp, json_t *body)
{
	if (mono_now() - c->lro_started > LRO_MAX_SEC) {
		arm_finish(c, resp->status, body, -ETIMEDOUT, "OperationTimedOut",
			   "the Azure operation did not finish in 6 hours", NULL);
		return;
	}
	if (c->async_op && resp->status == 200) {
		const char *st = json_string_value(json_object_get(body, "status"));
		if (st != NULL && strcmp(st, "Succeeded") == 0) {
			/* Read the resource itself for the final body. */
			c->async_op = false;
			free(c->poll_url);
			c->poll_url = xstrdup(c->url);
			arm_send(c);
		} else if (st != NULL && (strcmp(st, "Failed") == 0 || strcmp(st, "Canceled") == 0))
			arm_fail_http(c, resp, body);
		else
			lro_schedule(c, resp);
		return;
	}
	if (resp->status == 202) {
		const char *loc = http_response_header(resp, "location");
		if (loc != NULL && !arm_url_trusted(c, loc))
			return;
		if (loc != NULL) {
			free(c->poll_url);
			c->poll_url = xstrdup(loc);
		}
		lro_schedule(c, resp);
		return;
	}
	if (resp->status >= 200 && resp->status < 300) {
		arm_finish(c, resp->status, body, 0, NULL, NULL, NULL);
		return;
	}
	arm_fail_http(c, resp, body);
}

/* Does this answer start a long-running operation to follow? */
static bool
lro_begin(struct arm_call *c, const struct http_response *resp)
{
	const char *async = http_response_header(resp, "azure-asyncoperation");
	const char *loc = http_response_header(resp, "location");

	if (!(c->flags & ARM_FOLLOW_LRO) || (resp->status != 201 && resp->status != 202))
		return false;
	if (async == NULL && (loc == NULL || resp->status != 202))
		return false;
	if (!arm_url_trusted(c, async ? async : loc))
		return true; /* failed and freed */
	c->in_lro = true;
	c->async_op = async != NULL;
	c->poll_url = xstrdup(async ? async : loc);
	c->lro_started = mono_now();
	lro_schedule(c, resp);
	return true;
}

static void
arm_http_cb(struct http_response *resp, void *userdata)
{
	struct arm_call *c = userdata;
	json_t *body = NULL;

	c->http = NULL;
	if (resp->error != 0) {
		arm_fail_http(c, resp, NULL);
		return;
	}
	if (resp->body_len > 0) {
		body = json_loadb(resp->body, resp->body_len, 0, NULL);
		if (body == NULL && resp->status >= 200 && resp->status < 300) {
			/* A cut-off answer to a read is read again, a few times. */
			if ((c->in_lro || strcmp(c->method, "GET") == 0) && ++c->malformed < 4) {
				log_warning("Azure's answer was not JSON; asking again");
				retry_later(c, 1000L << c->malformed);
				return;
			}
			arm_finish(c, resp->status, NULL, -EBADMSG, "MalformedResponse",
				   "Azure answered with a body that is not JSON", NULL);
			return;
		}
	}
	if (resp->status == 401 && !c->retried_auth) {
		/* Expired or revoked: forget the token, try once more with a new one. */
		c->retried_auth = true;
		token_forget(c->az, c->scope);
		arm_send(c);
	} else if (c->in_lro)
		lro_answer(c, resp, body);
	else if (lro_begin(c, resp))
		;
	else if (resp->status >= 200 && resp->status < 300)
		arm_finish(c, resp->status, body, 0, NULL, NULL, http_response_header(resp, "location"));
	else
		arm_fail_http(c, resp, body);
	json_decref(body);
}

struct arm_call *
arm_request(struct azure *az, const char *method, const char *path, const char *api_version,
	    json_t *body, unsigned flags, arm_done_fn done, void *userdata)
{
	struct arm_call *c = xcalloc(1, sizeof(*c));
	const char *base = az->config->resource_manager_endpoint;

	c->az = az;
	c->method = xstrdup(method);
	if (strncmp(path, "http://", 7) == 0 || strncmp(path, "https://", 8) == 0)
		c->url = xstrdup(path);
	else
		c->url = xprintf("%s%s%capi-version=%s", base, path, strchr(path, '?') ? '&' : '?',
				 api_version);
	c->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
	c->scope = azure_arm_scope(az->config);
	c->flags = flags;
	c->done = done;
	c->userdata = userdata;
	LIST_INSERT_HEAD(&az->calls, c, link);
	if (!http_same_origin(c->url, base))
		retry_later(c, 0); /* arm_token_cb refuses it, on a later iteration */
	else
		arm_send(c);
	return c;
}

void
arm_cancel(struct arm_call *c)
{
	if (c != NULL)
		call_free(c);
}
