/*
 * Azure Blob Storage over azure-http.c: URLs (path segments and query
 * values percent-encoded), authorization (SharedKey signed with HMAC-SHA256,
 * a SAS appended to the URL, or an Entra bearer token from azure-arm.c) and
 * the answers (headers, List Blobs and Error XML read with libxml2). struct
 * blob_client owns the endpoint and copies of the secrets; struct blob_call
 * owns one request until its done callback. Loop thread only; every done runs
 * on a later loop iteration, because azure-http.c delivers that way, even
 * for an error found before sending. Keys, SAS and tokens never reach a log:
 * azure-http.c logs no headers and redacts sig= in URLs. Memory: x*
 * allocators (abort on exhaustion; the daemon's state is in SQLite).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include "azure-arm.h"
#include "azure-blob.h"
#include "azure-http.h"
#include "config.h"
#include "util.h"

#define BLOB_LIST_MAX_RESULTS 5000u
#define BLOB_LIST_MAX_RESPONSE ((size_t)32 << 20) /* 5000 entries with 1 KiB names */
/* 50,000 blocks (the most a blob has) of ~100 bytes of XML each. */
#define BLOB_BLOCK_LIST_MAX_RESPONSE ((size_t)8 << 20)
#define BLOB_GET_MIN_RESPONSE ((size_t)64 << 10)  /* room for an Error XML */
#define BLOB_CALL_MAX_HEADERS 4

enum blob_auth {
	AUTH_SHARED_KEY,
	AUTH_SAS,
	AUTH_BEARER,
};

enum blob_op {
	OP_LIST,
	OP_PROPERTIES,
	OP_GET,
	OP_PUT_BLOCK,
	OP_PUT_BLOCK_LIST,
	OP_COPY,
	OP_SET_TIER,
	OP_DELETE,
	OP_CREATE_CONTAINER,
	OP_BLOCK_LIST,
	OP_SET_PROPERTIES,
};

struct blob_client {
	struct http *http;
	struct azure *az;
	enum blob_auth auth;
	char *endpoint;     /* scheme://host[:port][/path], no trailing '/' */
	char *account;      /* AccountName=, NULL if not set */
	unsigned char *key; /* secret: the decoded account key */
	size_t key_len;
	char *sas; /* secret: the SAS query, without '?' */
	long timeout_ms;
	LIST_HEAD(, blob_call) calls;
};

struct blob_call {
	LIST_ENTRY(blob_call) link;
	struct blob_client *bc;
	enum blob_op op;
	const char *method;
	char *url;    /* may hold a SAS: wiped when freed */
	bool own_sas; /* the URL carries its own SAS: none of our auth */
	char *name;   /* the blob, for result->props */
	struct http_header headers[BLOB_CALL_MAX_HEADERS]; /* values owned, may hold a SAS */
	size_t n_headers;
	char *body;
	size_t body_len;
	size_t max_response, max_body; /* max_body: the caller's bound on a 2xx body */
	int local_error; /* found before sending; delivered through a refused request */
	char *local_code, *local_message;
	blob_done_fn done;
	void *userdata;
	struct http_call *http;
	struct token_waiter *waiter;
};

/* What a finished call hands to done; owns what the result points to. */
struct outcome {
	struct blob_result r;
	struct blob_props props;
	struct blob_props *list;
	size_t n_list;
	struct blob_block *blocks;
	size_t n_blocks;
	char *next_marker, *code, *message;
};

static void
wipe_free(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static void
wipe_freep(char **s)
{
	wipe_free(*s);
}

/* ---- encodings ------------------------------------------------------------ */

static bool
unreserved(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

/* Percent-encode all but RFC 3986 unreserved characters (and '/' if keep_slash). */
static char *
pct_encode(const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = xreallocarray(NULL, strlen(s) + 1, 3), *p = out;

	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (unreserved(ch) || (keep_slash && ch == '/')) {
			*p++ = (char)ch;
		} else {
			*p++ = '%';
			*p++ = hex[ch >> 4];
			*p++ = hex[ch & 15];
		}
	}
	*p = '\0';
	return out;
}


/* Decode %XX escapes of s[0..len); a malformed escape stays as it is. */
static char *
pct_decode(const char *s, size_t len)
{
	char *out = xmalloc(len + 1), *p = out;

	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (s[i] == '%' && i + 2 < len && (hi = hex_digit(s[i + 1])) >= 0 &&
		    (lo = hex_digit(s[i + 2])) >= 0) {
			*p++ = (char)(hi << 4 | lo);
			i += 2;
		} else {
			*p++ = s[i];
		}
	}
	*p = '\0';
	return out;
}

static char *
b64_encode(const void *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

/* Strict base64 (no blanks, '=' only as padding); NULL if s is not. */
static unsigned char *
b64_decode(const char *s, size_t *ret_len)
{
	size_t n = strlen(s), pad = 0;
	unsigned char *out;
	int r;

	if (n == 0 || n % 4 != 0 || n > INT_MAX / 2)
		return NULL;
	if (s[n - 1] == '=')
		pad = s[n - 2] == '=' ? 2 : 1;
	if (strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") !=
	    n - pad)
		return NULL;
	out = xmalloc(n / 4 * 3 + 1);
	r = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
	if (r < 0 || (size_t)r < pad) {
		free(out);
		return NULL;
	}
	*ret_len = (size_t)r - pad;
	return out;
}

/* An MD5 in base64; false if s is not exactly 16 bytes of base64. */
static bool
md5_decode(const char *s, unsigned char md5[16])
{
	_cleanup_free_ unsigned char *raw = NULL;
	size_t len = 0;

	raw = b64_decode(s, &len);
	if (raw == NULL || len != 16)
		return false;
	memcpy(md5, raw, 16);
	return true;
}

/* url with query appended ("?q" or "&q"); frees url. */
static char *
url_add_query(char *url, const char *query)
{
	char *r;

	if (query == NULL || *query == '\0')
		return url;
	r = xprintf("%s%c%s", url, strchr(url, '?') != NULL ? '&' : '?', query);
	wipe_free(url);
	return r;
}

/* RFC 1123 date of now, in the C locale's names whatever the locale. */
static void
http_date(char *buf, size_t size)
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	snprintf(buf, size, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
	         months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ---- SharedKey ------------------------------------------------------------ */

struct kv {
	char *k, *v;
};

static int
kv_cmp(const void *a, const void *b)
{
	const struct kv *x = a, *y = b;
	int r = strcmp(x->k, y->k);

	return r != 0 ? r : strcmp(x->v, y->v);
}

static void
kv_free(struct kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].k);
		wipe_free(kv[i].v);
	}
	free(kv);
}

static void
lowercase(char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/*
 * "/account/path" then "\nname:value" per query parameter, names lowercased,
 * values decoded, sorted, repeated names joined with ','. The path is the
 * one sent, still encoded; for path-style emulator URLs it starts with the
 * account again ("/devstoreaccount1/devstoreaccount1/c/b", as Azurite wants).
 */
static void
canonical_resource(FILE *f, const char *account, const char *url)
{
	const char *p = strstr(url, "://"), *path, *q, *end;
	struct kv *params;
	size_t n = 0, cap = 1;

	p = p != NULL ? p + 3 : url;
	path = p + strcspn(p, "/?#");
	q = path + strcspn(path, "?#");
	fprintf(f, "/%s", account);
	if (q == path)
		fputc('/', f);
	else
		fwrite(path, 1, (size_t)(q - path), f);
	if (*q != '?')
		return;
	q++;
	end = q + strcspn(q, "#");
	for (const char *s = q; s < end; s++)
		cap += *s == '&';
	params = xcalloc(cap, sizeof(*params));
	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q)), *stop = amp ? amp : end;
		const char *eq = memchr(q, '=', (size_t)(stop - q));

		if (stop > q) {
			params[n].k = pct_decode(q, (size_t)((eq ? eq : stop) - q));
			lowercase(params[n].k);
			params[n].v =
			    eq ? pct_decode(eq + 1, (size_t)(stop - eq - 1)) : xstrdup("");
			n++;
		}
		q = stop + 1;
	}
	qsort(params, n, sizeof(*params), kv_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && strcmp(params[i].k, params[i - 1].k) == 0)
			fprintf(f, ",%s", params[i].v);
		else
			fprintf(f, "\n%s:%s", params[i].k, params[i].v);
	}
	kv_free(params, n);
}

static const char *
header_find(const struct http_header *h, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(h[i].name, name) == 0)
			return h[i].value;
	return NULL;
}

/* The x-ms-* headers, lowercased and sorted, one "name:value\n" each. */
static void
canonical_headers(FILE *f, const struct http_header *h, size_t n)
{
	struct kv *ms = xcalloc(n + 1, sizeof(*ms));
	size_t m = 0;

	for (size_t i = 0; i < n; i++) {
		if (strncasecmp(h[i].name, "x-ms-", 5) != 0)
			continue;
		ms[m].k = xstrdup(h[i].name);
		lowercase(ms[m].k);
		ms[m].v = xstrdup(h[i].value + strspn(h[i].value, " \t"));
		m++;
	}
	qsort(ms, m, sizeof(*ms), kv_cmp);
	for (size_t i = 0; i < m; i++)
		fprintf(f, "%s:%s\n", ms[i].k, ms[i].v);
	kv_free(ms, m);
}

/*
 * The Authorization value for a request: the Blob service's string to sign
 * (version 2015-02-21 and later: Content-Length empty when 0) signed with
 * HMAC-SHA256 under the account key.
 */
static char *
shared_key_auth(const struct blob_client *bc, const char *method, const char *url,
                const struct http_header *h, size_t n, size_t body_len)
{
	static const char *const fields[] = {
	    "Content-Encoding",
	    "Content-Language",
	    "Content-Length",
	    "Content-MD5",
	    "Content-Type",
	    "Date",
	    "If-Modified-Since",
	    "If-Match",
	    "If-None-Match",
	    "If-Unmodified-Since",
	    "Range",
	};
	_cleanup_free_ char *sts = NULL, *sig = NULL;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	size_t len = 0;
	FILE *f;

	f = open_memstream(&sts, &len);
	if (f == NULL)
		fatalx("open_memstream failed");
	fprintf(f, "%s\n", method);
	for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
		const char *v = header_find(h, n, fields[i]);

		if (strcmp(fields[i], "Content-Length") == 0) {
			if (body_len > 0)
				fprintf(f, "%zu", body_len);
		} else if (v != NULL) {
			fputs(v, f);
		}
		fputc('\n', f);
	}
	canonical_headers(f, h, n);
	canonical_resource(f, bc->account, url);
	if (fclose(f) != 0 || sts == NULL)
		fatalx("open_memstream failed");
	if (HMAC(EVP_sha256(), bc->key, (int)bc->key_len, (const unsigned char *)sts, len, mac,
	         &mac_len) == NULL)
		fatalx("HMAC-SHA256 failed");
	sig = b64_encode(mac, mac_len);
	explicit_bzero(mac, sizeof(mac));
	return xprintf("SharedKey %s:%s", bc->account, sig);
}

/* ---- the client ----------------------------------------------------------- */

static bool
account_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n < 3 || n > 24)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

/* The endpoint; NULL and *ret_err naming the key to set. */
static char *
endpoint_new(const struct config *c, char **ret_err)
{
	const char *suffix = "core.windows.net";
	char *e;
	size_t n;

	if (c->blob_endpoint != NULL && *c->blob_endpoint != '\0') {
		e = xstrdup(c->blob_endpoint);
		n = strcspn(e, "?#");
		while (n > 0 && e[n - 1] == '/')
			n--;
		e[n] = '\0';
		return e;
	}
	if (c->cloud == CLOUD_CUSTOM) {
		*ret_err = xstrdup("BlobEndpoint= is required with Cloud=Custom");
		return NULL;
	}
	if (c->account_name == NULL) {
		*ret_err = xstrdup("AccountName= (or BlobEndpoint=) is required for Azure Storage");
		return NULL;
	}
	if (!account_name_valid(c->account_name)) {
		*ret_err = xstrdup("AccountName= is not a storage account name (3-24 of a-z, 0-9)");
		return NULL;
	}
	if (c->cloud == CLOUD_AZURE_CHINA)
		suffix = "core.chinacloudapi.cn";
	else if (c->cloud == CLOUD_AZURE_US_GOVERNMENT)
		suffix = "core.usgovcloudapi.net";
	return xprintf("https://%s.blob.%s", c->account_name, suffix);
}

/* Pick the auth (see azure-blob.h); -EINVAL and *ret_err naming the missing key. */
static int
client_set_auth(struct blob_client *bc, const struct config *c, char **ret_err)
{
	if (c->account_key.value != NULL) {
		if (c->account_name == NULL) {
			*ret_err = xstrdup("AccountName= is required with an account key");
			return -EINVAL;
		}
		bc->key = b64_decode(c->account_key.value, &bc->key_len);
		if (bc->key == NULL) {
			*ret_err = xstrdup("AccountKeyFile=: the account key is not base64");
			return -EINVAL;
		}
		bc->auth = AUTH_SHARED_KEY;
		return 0;
	}
	if (c->sas_token.value != NULL) {
		const char *s = c->sas_token.value + (c->sas_token.value[0] == '?');

		if (*s == '\0' || strpbrk(s, " \t\r\n#?") != NULL) {
			*ret_err = xstrdup("SasTokenFile=: not a SAS token (a URL query string)");
			return -EINVAL;
		}
		bc->sas = xstrdup(s);
		bc->auth = AUTH_SAS;
		return 0;
	}
	if (bc->az == NULL) {
		*ret_err = xstrdup("no storage credentials: set AccountKeyFile= or SasTokenFile=");
		return -EINVAL;
	}
	if (c->tenant_id == NULL || c->client_id == NULL || c->client_secret.value == NULL) {
		*ret_err =
		    xprintf("no storage credentials: set AccountKeyFile=, SasTokenFile= or %s",
		            c->tenant_id == NULL   ? "TenantId= for a bearer token"
		            : c->client_id == NULL ? "ClientId= for a bearer token"
		                                   : "ClientSecretFile= for a bearer token");
		return -EINVAL;
	}
	bc->auth = AUTH_BEARER;
	return 0;
}

struct blob_client *
blob_client_new(struct http *h, struct azure *az, const struct config *c, char **ret_err)
{
	struct blob_client *bc;
	char *err = NULL;

	if (ret_err != NULL)
		*ret_err = NULL;
	bc = xcalloc(1, sizeof(*bc));
	LIST_INIT(&bc->calls);
	bc->az = az;
	bc->http = h != NULL ? h : az != NULL ? azure_http(az) : NULL;
	bc->account = c->account_name != NULL ? xstrdup(c->account_name) : NULL;
	bc->timeout_ms = c->request_timeout_sec > 0 ? (long)c->request_timeout_sec * 1000 : 0;
	if (bc->http == NULL)
		err = xstrdup("no HTTP client");
	else if ((bc->endpoint = endpoint_new(c, &err)) != NULL)
		(void)client_set_auth(bc, c, &err);
	if (err != NULL) {
		if (ret_err != NULL)
			*ret_err = err;
		else
			free(err);
		return blob_client_free(bc);
	}
	return bc;
}

static void call_free(struct blob_call *c);

struct blob_client *
blob_client_free(struct blob_client *bc)
{
	if (bc == NULL)
		return NULL;
	while (!LIST_EMPTY(&bc->calls))
		call_free(LIST_FIRST(&bc->calls));
	if (bc->key != NULL)
		explicit_bzero(bc->key, bc->key_len);
	free(bc->key);
	wipe_free(bc->sas);
	free(bc->endpoint);
	free(bc->account);
	free(bc);
	return NULL;
}

static char *
url_make(const struct blob_client *bc, const char *container, const char *name, const char *query)
{
	_cleanup_free_ char *ec = pct_encode(container != NULL ? container : "", false);
	_cleanup_free_ char *en = name != NULL ? pct_encode(name, true) : NULL;

	return url_add_query(
	    xprintf("%s/%s%s%s", bc->endpoint, ec, en != NULL ? "/" : "", en != NULL ? en : ""),
	    query);
}

char *
blob_url(const struct blob_client *bc, const char *container, const char *name)
{
	return url_make(bc, container, name, NULL);
}

/* True if url's query has a sig= parameter: a SAS of its own. */
static bool
url_has_sig(const char *url)
{
	const char *q = strchr(url, '?');

	while (q != NULL) {
		q++;
		if (strncasecmp(q, "sig=", 4) == 0)
			return true;
		q = strchr(q, '&');
	}
	return false;
}

/* True if url is a resource under this client's endpoint. */
static bool
url_in_account(const struct blob_client *bc, const char *url)
{
	size_t n = strlen(bc->endpoint);

	return strncasecmp(url, bc->endpoint, n) == 0 && url[n] == '/' && url[n + 1] != '\0';
}

/* ---- calls ---------------------------------------------------------------- */

/* Free c's memory; c is neither listed nor in flight. */
static void
call_destroy(struct blob_call *c)
{
	wipe_free(c->url);
	for (size_t i = 0; i < c->n_headers; i++)
		wipe_free((char *)c->headers[i].value);
	free(c->name);
	free(c->body);
	free(c->local_code);
	free(c->local_message);
	free(c);
}

static void
call_free(struct blob_call *c)
{
	LIST_REMOVE(c, link);
	http_cancel(c->http);
	azure_token_cancel(c->waiter);
	call_destroy(c);
}

void
blob_cancel(struct blob_call *c)
{
	if (c != NULL)
		call_free(c);
}

static void call_fail(struct blob_call *c, int error, const char *code, const char *fmt, ...)
    _printf_(4, 5);

/* Remember the first error found before sending. */
static void
call_fail(struct blob_call *c, int error, const char *code, const char *fmt, ...)
{
	va_list ap;

	if (c->local_error != 0)
		return;
	c->local_error = error;
	c->local_code = code != NULL ? xstrdup(code) : NULL;
	va_start(ap, fmt);
	if (vasprintf(&c->local_message, fmt, ap) < 0)
		fatalx("vasprintf failed");
	va_end(ap);
}

static void
call_header(struct blob_call *c, const char *name, const char *value)
{
	if (c->n_headers >= ELEMENTSOF(c->headers))
		fatalx("blob call: too many headers");
	c->headers[c->n_headers].name = name;
	c->headers[c->n_headers].value = xstrdup(value);
	c->n_headers++;
}

/* Our SAS on url unless it has its own; takes url. */
static void
call_set_url(struct blob_call *c, char *url)
{
	wipe_free(c->url);
	c->url = url;
	if (c->bc->auth == AUTH_SAS && !c->own_sas)
		c->url = url_add_query(c->url, c->bc->sas);
}

static struct blob_call *
call_new(struct blob_client *bc, enum blob_op op, const char *method, blob_done_fn done,
         void *userdata)
{
	struct blob_call *c = xcalloc(1, sizeof(*c));

	c->bc = bc;
	c->op = op;
	c->method = method;
	c->done = done;
	c->userdata = userdata;
	LIST_INSERT_HEAD(&bc->calls, c, link);
	return c;
}

/* A call on a container (name NULL) or a blob in it. */
static struct blob_call *
call_on(struct blob_client *bc, enum blob_op op, const char *method, const char *container,
        const char *name, const char *query, blob_done_fn done, void *userdata)
{
	struct blob_call *c = call_new(bc, op, method, done, userdata);

	if (container == NULL || *container == '\0')
		call_fail(c, -EINVAL, NULL, "no container name");
	if (name != NULL) {
		if (*name == '\0')
			call_fail(c, -EINVAL, NULL, "empty blob name");
		c->name = xstrdup(name);
	}
	call_set_url(c, url_make(bc, container, name, query));
	return c;
}

static void call_http_cb(struct http_response *resp, void *userdata);

/* Send c, with token for the bearer auth. */
static void
call_send(struct blob_call *c, const char *token)
{
	struct blob_client *bc = c->bc;
	struct http_header h[BLOB_CALL_MAX_HEADERS + 3];
	_cleanup_(wipe_freep) char *auth = NULL;
	char date[64];
	size_t n = 0;
	struct http_request req = {
	    .method = c->method,
	    .url = c->url,
	    .headers = h,
	    .body = c->body,
	    .body_len = c->body_len,
	    .timeout_ms = bc->timeout_ms,
	    .max_response = c->max_response,
	    .log_name = "blob",
	};

	if (c->local_error != 0) {
		/* azure-http.c refuses an empty URL and answers on a later iteration */
		req =
		    (struct http_request){.method = "GET", .url = "", .log_name = "blob-not-sent"};
		c->http = http_send(bc->http, &req, call_http_cb, c);
		return;
	}
	http_date(date, sizeof(date));
	h[n++] = (struct http_header){"x-ms-date", date};
	h[n++] = (struct http_header){"x-ms-version", BLOB_API_VERSION};
	for (size_t i = 0; i < c->n_headers; i++)
		h[n++] = c->headers[i];
	if (!c->own_sas && bc->auth == AUTH_SHARED_KEY)
		auth = shared_key_auth(bc, c->method, c->url, h, n, c->body_len);
	else if (!c->own_sas && bc->auth == AUTH_BEARER)
		auth = xprintf("Bearer %s", token);
	if (auth != NULL)
		h[n++] = (struct http_header){"Authorization", auth};
	req.n_headers = n;
	c->http = http_send(bc->http, &req, call_http_cb, c);
}

static void
call_token_cb(const char *token, const char *code, const char *message, void *userdata)
{
	struct blob_call *c = userdata;

	c->waiter = NULL;
	if (token == NULL)
		call_fail(c, -EACCES, code != NULL ? code : "TokenUnavailable", "%s",
		          message != NULL ? message : "no Entra ID token for Azure Storage");
	call_send(c, token);
}

static struct blob_call *
call_start(struct blob_call *c)
{
	if (c->local_error == 0 && c->bc->auth == AUTH_BEARER && !c->own_sas) {
		/* a cached token comes at once: call_token_cb has sent, and this is NULL */
		c->waiter = azure_token(c->bc->az, STORAGE_SCOPE, call_token_cb, c);
		return c;
	}
	call_send(c, NULL);
	return c;
}

/* ---- answers -------------------------------------------------------------- */

/* libxml2's generic (per-thread) error handler prints encoding errors; not here. */
static void
xml_quiet(void *ctx, const char *msg, ...)
{
}

/* An XML document, or NULL; no network, no entity substitution, no DOCTYPE. */
static xmlDoc *
xml_read(const char *body, size_t len)
{
	xmlDoc *doc;

	if (len == 0 || len > INT_MAX)
		return NULL;
	xmlSetGenericErrorFunc(NULL, xml_quiet);
	doc = xmlReadMemory(body, (int)len, NULL, NULL,
	                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (doc != NULL && doc->intSubset != NULL) {
		xmlFreeDoc(doc);
		return NULL;
	}
	return doc;
}

static bool
is_elem(const xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && xmlStrcmp(n->name, BAD_CAST name) == 0;
}

static char *
xml_text(const xmlNode *n)
{
	xmlChar *t = xmlNodeGetContent(n);
	char *s = xstrdup(t != NULL ? (const char *)t : "");

	xmlFree(t);
	return s;
}

/* <Error><Code/><Message/></Error>: the code and the message's first line. */
static void
error_parse(const struct http_response *resp, char **ret_code, char **ret_message)
{
	xmlDoc *doc = xml_read(resp->body, resp->body_len);
	xmlNode *root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;

	if (root != NULL && is_elem(root, "Error")) {
		for (xmlNode *n = root->children; n != NULL; n = n->next) {
			if (is_elem(n, "Code") && *ret_code == NULL) {
				*ret_code = xml_text(n);
			} else if (is_elem(n, "Message") && *ret_message == NULL) {
				*ret_message = xml_text(n);
				(*ret_message)[strcspn(*ret_message, "\r\n")] = '\0';
			}
		}
	}
	xmlFreeDoc(doc);
}

static int
parse_int64(const char *s, int64_t *ret)
{
	char *end;
	long long v;

	if (*s < '0' || *s > '9')
		return -EBADMSG;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -EBADMSG;
	*ret = v;
	return 0;
}

static void
copy_progress(struct blob_props *p, const char *v)
{
	int64_t done, total;

	if (v != NULL && sscanf(v, "%" SCNd64 "/%" SCNd64, &done, &total) == 2) {
		p->copy_done = done;
		p->copy_total = total;
	}
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

/* Get Blob Properties (or Copy Blob) answer headers; -EBADMSG if unreadable. */
static int
props_from_headers(struct blob_props *p, const struct http_response *resp, const char *name)
{
	const char *v;

	p->name = dup_or_null(name);
	v = http_response_header(resp, "content-length");
	if (v != NULL && parse_int64(v, &p->length) < 0)
		return -EBADMSG;
	v = http_response_header(resp, "content-md5");
	if (v != NULL && *v != '\0') {
		if (!md5_decode(v, p->md5))
			return -EBADMSG;
		p->has_md5 = true;
	}
	p->etag = dup_or_null(http_response_header(resp, "etag"));
	p->content_type = dup_or_null(http_response_header(resp, "content-type"));
	p->access_tier = dup_or_null(http_response_header(resp, "x-ms-access-tier"));
	p->copy_status = dup_or_null(http_response_header(resp, "x-ms-copy-status"));
	p->copy_id = dup_or_null(http_response_header(resp, "x-ms-copy-id"));
	p->copy_status_description =
	    dup_or_null(http_response_header(resp, "x-ms-copy-status-description"));
	copy_progress(p, http_response_header(resp, "x-ms-copy-progress"));
	return 0;
}

/* One <Properties> child of a List Blobs entry. */
static int
entry_property(struct blob_props *p, const xmlNode *n)
{
	_cleanup_free_ char *t = xml_text(n);
	char **field = NULL;

	if (is_elem(n, "Content-Length"))
		return parse_int64(t, &p->length);
	if (is_elem(n, "Content-MD5")) {
		if (*t == '\0')
			return 0;
		p->has_md5 = md5_decode(t, p->md5);
		return p->has_md5 ? 0 : -EBADMSG;
	}
	if (is_elem(n, "CopyProgress")) {
		copy_progress(p, t);
		return 0;
	}
	if (is_elem(n, "Etag"))
		field = &p->etag;
	else if (is_elem(n, "Content-Type"))
		field = &p->content_type;
	else if (is_elem(n, "AccessTier"))
		field = &p->access_tier;
	else if (is_elem(n, "CopyStatus"))
		field = &p->copy_status;
	else if (is_elem(n, "CopyId"))
		field = &p->copy_id;
	else if (is_elem(n, "CopyStatusDescription"))
		field = &p->copy_status_description;
	if (field != NULL && *field == NULL && *t != '\0')
		*field = TAKE_PTR(t);
	return 0;
}

/* One <Blob>: <Name> (percent-encoded if Encoded="true") and <Properties>. */
static int
entry_parse(struct blob_props *p, const xmlNode *blob)
{
	for (const xmlNode *n = blob->children; n != NULL; n = n->next) {
		if (is_elem(n, "Name") && p->name == NULL) {
			xmlChar *enc = xmlGetProp(n, BAD_CAST "Encoded");

			p->name = xml_text(n);
			if (enc != NULL && xmlStrcmp(enc, BAD_CAST "true") == 0) {
				char *d = pct_decode(p->name, strlen(p->name));

				free(p->name);
				p->name = d;
			}
			xmlFree(enc);
		} else if (is_elem(n, "Properties")) {
			for (const xmlNode *q = n->children; q != NULL; q = q->next)
				if (q->type == XML_ELEMENT_NODE && entry_property(p, q) < 0)
					return -EBADMSG;
		}
	}
	return p->name != NULL && *p->name != '\0' ? 0 : -EBADMSG;
}

static int
list_parse_blobs(struct outcome *o, const xmlNode *blobs)
{
	for (const xmlNode *b = blobs->children; b != NULL; b = b->next) {
		if (!is_elem(b, "Blob"))
			continue;
		if (o->n_list >= BLOB_LIST_MAX_RESULTS)
			return -EBADMSG;
		o->list = xreallocarray(o->list, o->n_list + 1, sizeof(*o->list));
		o->list[o->n_list] = (struct blob_props){0};
		o->n_list++;
		if (entry_parse(&o->list[o->n_list - 1], b) < 0)
			return -EBADMSG;
	}
	return 0;
}

/* <EnumerationResults><Blobs><Blob/>...</Blobs><NextMarker/></EnumerationResults> */
static int
list_parse(struct outcome *o, const struct http_response *resp)
{
	xmlDoc *doc = xml_read(resp->body, resp->body_len);
	xmlNode *root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
	int r = -EBADMSG;

	if (root != NULL && is_elem(root, "EnumerationResults")) {
		r = 0;
		for (xmlNode *n = root->children; n != NULL && r == 0; n = n->next) {
			if (is_elem(n, "Blobs")) {
				r = list_parse_blobs(o, n);
			} else if (is_elem(n, "NextMarker") && o->next_marker == NULL) {
				o->next_marker = xml_text(n);
				if (*o->next_marker == '\0') {
					free(o->next_marker);
					o->next_marker = NULL;
				}
			}
		}
	}
	xmlFreeDoc(doc);
	return r;
}

/* One <Block><Name/><Size/></Block> of a Get Block List answer. */
static int
block_parse(struct outcome *o, const xmlNode *blk)
{
	struct blob_block b = {.size = -1};

	for (const xmlNode *n = blk->children; n != NULL; n = n->next) {
		_cleanup_free_ char *t = NULL;
		if (is_elem(n, "Name") && b.id == NULL)
			b.id = xml_text(n);
		else if (is_elem(n, "Size") && parse_int64(t = xml_text(n), &b.size) < 0)
			b.size = -1;
	}
	if (b.id == NULL || *b.id == '\0' || b.size < 0) {
		free(b.id);
		return -EBADMSG;
	}
	o->blocks = xreallocarray(o->blocks, o->n_blocks + 1, sizeof(*o->blocks));
	o->blocks[o->n_blocks++] = b;
	return 0;
}

/* <BlockList><CommittedBlocks><Block/>...</CommittedBlocks>...</BlockList> */
static int
block_list_parse(struct outcome *o, const struct http_response *resp)
{
	xmlDoc *doc = xml_read(resp->body, resp->body_len);
	xmlNode *root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
	int r = -EBADMSG;

	if (root != NULL && is_elem(root, "BlockList")) {
		r = 0;
		for (xmlNode *n = root->children; n != NULL && r == 0; n = n->next) {
			if (!is_elem(n, "CommittedBlocks"))
				continue;
			for (xmlNode *b = n->children; b != NULL && r == 0; b = b->next)
				if (is_elem(b, "Block"))
					r = block_parse(o, b);
		}
	}
	xmlFreeDoc(doc);
	return r;
}

static void
outcome_http_error(struct outcome *o, const struct blob_call *c, const struct http_response *resp)
{
	struct blob_result *r = &o->r;
	const char *hdr = http_response_header(resp, "x-ms-error-code");
	long status = resp->status;

	error_parse(resp, &o->code, &o->message);
	if (o->code == NULL && hdr != NULL)
		o->code = xstrdup(hdr);
	if (o->message == NULL)
		o->message = xprintf("Azure Storage answered HTTP %ld", status);
	r->code = o->code;
	r->message = o->message;
	if (status == 404)
		r->error = c->op == OP_DELETE ? 0 : -ENOENT;
	else if (status == 401 || status == 403)
		r->error = -EACCES;
	else if (status == 409 && c->op == OP_CREATE_CONTAINER && o->code != NULL &&
	         strcmp(o->code, "ContainerAlreadyExists") == 0)
		r->error = 0;
	else
		r->error = -EIO;
}

static void
outcome_fail(struct outcome *o, int error, const char *message)
{
	o->r.error = error;
	o->r.message = message;
}

/* A 2xx answer, per operation. */
static void
outcome_success(struct outcome *o, const struct blob_call *c, const struct http_response *resp)
{
	struct blob_result *r = &o->r;

	switch (c->op) {
	case OP_PROPERTIES:
	case OP_COPY:
		if (props_from_headers(&o->props, resp, c->name) < 0)
			outcome_fail(o, -EBADMSG, "unreadable blob property headers");
		else
			r->props = &o->props;
		break;
	case OP_LIST:
		if (list_parse(o, resp) < 0) {
			outcome_fail(o, -EBADMSG, "unreadable List Blobs answer");
			break;
		}
		r->list = o->list;
		r->n_list = o->n_list;
		r->next_marker = o->next_marker;
		break;
	case OP_BLOCK_LIST:
		if (block_list_parse(o, resp) < 0) {
			outcome_fail(o, -EBADMSG, "unreadable Get Block List answer");
			break;
		}
		r->blocks = o->blocks;
		r->n_blocks = o->n_blocks;
		break;
	case OP_GET:
		if (resp->body_len > c->max_body) {
			o->message = xprintf("blob larger than %zu bytes", c->max_body);
			outcome_fail(o, -EMSGSIZE, o->message);
			break;
		}
		r->body = resp->body;
		r->body_len = resp->body_len;
		break;
	default:
		break;
	}
}

static void
outcome_done(struct outcome *o)
{
	blob_props_done(&o->props);
	for (size_t i = 0; i < o->n_list; i++)
		blob_props_done(&o->list[i]);
	free(o->list);
	for (size_t i = 0; i < o->n_blocks; i++)
		free(o->blocks[i].id);
	free(o->blocks);
	free(o->next_marker);
	free(o->code);
	free(o->message);
}

/* What Azure answered (an HTTP response received), per operation. */
static void
outcome_read(struct outcome *o, const struct blob_call *c, const struct http_response *resp)
{
	if (resp->status < 200 || resp->status >= 300)
		outcome_http_error(o, c, resp);
	else
		outcome_success(o, c, resp);
}

void
blob_read_answer(enum blob_answer kind, const struct http_response *resp, blob_done_fn done,
                 void *ud)
{
	static const enum blob_op ops[] = {
	    [BLOB_ANSWER_LIST] = OP_LIST,
	    [BLOB_ANSWER_BLOCK_LIST] = OP_BLOCK_LIST,
	    [BLOB_ANSWER_PROPERTIES] = OP_PROPERTIES,
	    [BLOB_ANSWER_COPY] = OP_COPY,
	    [BLOB_ANSWER_GET] = OP_GET,
	    [BLOB_ANSWER_DELETE] = OP_DELETE,
	    [BLOB_ANSWER_CREATE_CONTAINER] = OP_CREATE_CONTAINER,
	};
	struct blob_call c = {.op = ops[kind], .name = (char *)"blob", .max_body = 1u << 20};
	struct outcome o = {.r.status = resp->status};

	outcome_read(&o, &c, resp);
	done(&o.r, ud);
	outcome_done(&o);
}

static void
call_http_cb(struct http_response *resp, void *userdata)
{
	struct blob_call *c = userdata;
	struct outcome o = {.r.status = resp->status};

	c->http = NULL;
	/* unlinked first: done may free the client or cancel other calls */
	LIST_REMOVE(c, link);
	if (c->local_error != 0) {
		o.r.status = 0;
		o.r.error = c->local_error;
		o.r.code = c->local_code;
		o.r.message = c->local_message;
	} else if (resp->error != 0) {
		outcome_fail(&o, resp->error, resp->errmsg);
	} else {
		outcome_read(&o, c, resp);
	}
	if (c->done != NULL)
		c->done(&o.r, c->userdata);
	outcome_done(&o);
	call_destroy(c);
}

void
blob_props_done(struct blob_props *p)
{
	if (p == NULL)
		return;
	free(p->name);
	free(p->etag);
	free(p->content_type);
	free(p->access_tier);
	free(p->copy_status);
	free(p->copy_id);
	free(p->copy_status_description);
	*p = (struct blob_props){0};
}

/* ---- operations ----------------------------------------------------------- */

struct blob_call *
blob_list(struct blob_client *bc, const char *container, const char *prefix, const char *marker,
          unsigned max_results, blob_done_fn done, void *ud)
{
	_cleanup_free_ char *p = pct_encode(prefix != NULL ? prefix : "", false);
	_cleanup_free_ char *m = pct_encode(marker != NULL ? marker : "", false);
	_cleanup_free_ char *q = NULL;
	struct blob_call *c;

	if (max_results > BLOB_LIST_MAX_RESULTS)
		max_results = BLOB_LIST_MAX_RESULTS;
	q = xprintf("restype=container&comp=list&include=copy%s%s%s%s", *p ? "&prefix=" : "", p,
	            *m ? "&marker=" : "", m);
	if (max_results > 0) {
		char *t = xprintf("%s&maxresults=%u", q, max_results);

		free(q);
		q = t;
	}
	c = call_on(bc, OP_LIST, "GET", container, NULL, q, done, ud);
	c->max_response = BLOB_LIST_MAX_RESPONSE;
	return call_start(c);
}

struct blob_call *
blob_get_properties(struct blob_client *bc, const char *container, const char *name,
                    blob_done_fn done, void *ud)
{
	return call_start(call_on(bc, OP_PROPERTIES, "HEAD", container, name != NULL ? name : "",
	                          NULL, done, ud));
}

struct blob_call *
blob_get_url(struct blob_client *bc, const char *url, size_t max_bytes, blob_done_fn done, void *ud)
{
	struct blob_call *c = call_new(bc, OP_GET, "GET", done, ud);

	if (url == NULL)
		url = "";
	c->own_sas = url_has_sig(url);
	if (!c->own_sas && !url_in_account(bc, url))
		call_fail(c, -EINVAL, NULL, "not a blob URL of this storage account");
	c->max_body = max_bytes > 0 ? max_bytes : (size_t)4 << 20;
	c->max_response = c->max_body > BLOB_GET_MIN_RESPONSE ? c->max_body : BLOB_GET_MIN_RESPONSE;
	call_set_url(c, xstrdup(url));
	return call_start(c);
}

struct blob_call *
blob_put_block(struct blob_client *bc, const char *container, const char *name,
               const char *block_id, const void *data, size_t len, const unsigned char md5[16],
               blob_done_fn done, void *ud)
{
	_cleanup_free_ char *id = pct_encode(block_id != NULL ? block_id : "", false);
	_cleanup_free_ char *q = xprintf("comp=block&blockid=%s", id);
	_cleanup_free_ char *m = b64_encode(md5, 16);
	struct blob_call *c;

	c = call_on(bc, OP_PUT_BLOCK, "PUT", container, name != NULL ? name : "", q, done, ud);
	if (*id == '\0')
		call_fail(c, -EINVAL, NULL, "empty block id");
	if (len > BLOB_BLOCK_MAX || (data == NULL && len > 0))
		call_fail(c, -EINVAL, NULL, "block of %zu bytes (at most %u)", len, BLOB_BLOCK_MAX);
	else {
		c->body = xmalloc(len + 1);
		if (len > 0)
			memcpy(c->body, data, len);
		c->body_len = len;
	}
	call_header(c, "Content-MD5", m);
	return call_start(c);
}

/* <BlockList><Latest>id</Latest>...</BlockList>, ids XML-escaped. */
static char *
block_list_xml(const char *const *ids, size_t n, bool *ret_bad)
{
	char *out = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&out, &size);

	if (f == NULL)
		fatalx("open_memstream failed");
	fputs("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>", f);
	for (size_t i = 0; i < n; i++) {
		if (ids[i] == NULL || *ids[i] == '\0') {
			*ret_bad = true;
			continue;
		}
		fputs("<Latest>", f);
		for (const char *p = ids[i]; *p != '\0'; p++) {
			if (*p == '&')
				fputs("&amp;", f);
			else if (*p == '<')
				fputs("&lt;", f);
			else if (*p == '>')
				fputs("&gt;", f);
			else
				fputc(*p, f);
		}
		fputs("</Latest>", f);
	}
	fputs("</BlockList>", f);
	if (fclose(f) != 0 || out == NULL)
		fatalx("open_memstream failed");
	return out;
}

struct blob_call *
blob_put_block_list(struct blob_client *bc, const char *container, const char *name,
                    const char *const *block_ids, size_t n, const unsigned char content_md5[16],
                    blob_done_fn done, void *ud)
{
	_cleanup_free_ char *m = b64_encode(content_md5, 16);
	struct blob_call *c;
	bool bad = false;

	c = call_on(bc, OP_PUT_BLOCK_LIST, "PUT", container, name != NULL ? name : "",
	            "comp=blocklist", done, ud);
	c->body = block_list_xml(block_ids, n, &bad);
	c->body_len = strlen(c->body);
	if (bad)
		call_fail(c, -EINVAL, NULL, "empty block id in the block list");
	call_header(c, "Content-Type", "application/xml; charset=utf-8");
	call_header(c, "x-ms-blob-content-md5", m);
	return call_start(c);
}

struct blob_call *
blob_copy(struct blob_client *bc, const char *container, const char *name, const char *source_url,
          const char *tier, blob_done_fn done, void *ud)
{
	_cleanup_(wipe_freep) char *src = xstrdup(source_url != NULL ? source_url : "");
	struct blob_call *c;

	c = call_on(bc, OP_COPY, "PUT", container, name != NULL ? name : "", NULL, done, ud);
	if (strncmp(src, "https://", 8) != 0 && strncmp(src, "http://", 7) != 0)
		call_fail(c, -EINVAL, NULL, "copy source is not an http(s) URL");
	if (bc->auth == AUTH_SAS && !url_has_sig(src))
		src = url_add_query(src, bc->sas); /* the source needs the SAS too */
	call_header(c, "x-ms-copy-source", src);
	if (tier != NULL)
		call_header(c, "x-ms-access-tier", tier);
	return call_start(c);
}

struct blob_call *
blob_set_tier(struct blob_client *bc, const char *container, const char *name, const char *tier,
              blob_done_fn done, void *ud)
{
	struct blob_call *c;

	c = call_on(bc, OP_SET_TIER, "PUT", container, name != NULL ? name : "", "comp=tier", done,
	            ud);
	if (tier == NULL || *tier == '\0')
		call_fail(c, -EINVAL, NULL, "no access tier");
	call_header(c, "x-ms-access-tier", tier != NULL ? tier : "");
	return call_start(c);
}

struct blob_call *
blob_get_block_list(struct blob_client *bc, const char *container, const char *name,
                    blob_done_fn done, void *ud)
{
	struct blob_call *c = call_on(bc, OP_BLOCK_LIST, "GET", container, name != NULL ? name : "",
	                              "comp=blocklist&blocklisttype=committed", done, ud);

	c->max_response = BLOB_BLOCK_LIST_MAX_RESPONSE;
	return call_start(c);
}

struct blob_call *
blob_set_content_md5(struct blob_client *bc, const char *container, const char *name,
                     const unsigned char md5[16], const char *content_type, blob_done_fn done,
                     void *ud)
{
	_cleanup_free_ char *m = b64_encode(md5, 16);
	struct blob_call *c = call_on(bc, OP_SET_PROPERTIES, "PUT", container,
	                              name != NULL ? name : "", "comp=properties", done, ud);

	call_header(c, "x-ms-blob-content-md5", m);
	if (content_type != NULL)
		call_header(c, "x-ms-blob-content-type", content_type);
	return call_start(c);
}

struct blob_call *
blob_delete(struct blob_client *bc, const char *container, const char *name, blob_done_fn done,
            void *ud)
{
	return call_start(
	    call_on(bc, OP_DELETE, "DELETE", container, name != NULL ? name : "", NULL, done, ud));
}

struct blob_call *
blob_create_container(struct blob_client *bc, const char *container, blob_done_fn done, void *ud)
{
	return call_start(call_on(bc, OP_CREATE_CONTAINER, "PUT", container, NULL,
	                          "restype=container", done, ud));
}
