/*
 * Fuzz target: the response headers seedd keeps from Azure, Entra and the
 * storage emulators (daemon/azure/azure-http.c). The input is a header
 * block: it is cut into lines at LF, each kept with its LF as libcurl hands
 * it over, and fed through http_response_add_line() (status lines start a
 * new set, 16 KiB a line, 100 headers). Then Retry-After is read (seconds or
 * an HTTP-date, capped at 10 minutes) and every value is redacted as a
 * Location or Azure-AsyncOperation URL is before it is logged.
 */
#include <errno.h>
#include <string.h>

#include "azure-http.h"
#include "fuzz.h"

static void
check_fields(const struct http_response *r)
{
	fuzz_check(r->n_headers <= 100);
	for (size_t i = 0; i < r->n_headers; i++) {
		const char *name = r->headers[i].name, *value = r->headers[i].value;
		size_t vlen = strlen(value);

		fuzz_check(*name != '\0' && strchr(name, ':') == NULL);
		for (const char *p = name; *p != '\0'; p++)
			fuzz_check(*p < 'A' || *p > 'Z');
		fuzz_check(vlen == 0 || (value[0] != ' ' && value[0] != '\t' &&
		                         value[vlen - 1] != ' ' && value[vlen - 1] != '\t'));
		fuzz_check(strchr(value, '\n') == NULL);
		/* the first of a name is what a lookup finds */
		const char *found = http_response_header(r, name);
		fuzz_check(found != NULL);
		for (size_t j = 0; j < i; j++)
			if (strcasecmp(r->headers[j].name, name) == 0)
				break;
			else if (j + 1 == i)
				fuzz_check(found == value);
	}
}

static void
check_redact(const char *url)
{
	char *u = http_redact_url(url);
	const char *q;

	fuzz_check(u != NULL && strchr(u, '#') == NULL); /* the fragment is dropped */
	/* every sig= parameter of the query (a SAS signature) says REDACTED */
	if ((q = strchr(u, '?')) != NULL)
		for (const char *s = q; (s = strcasestr(s + 1, "sig=")) != NULL;)
			if (s == q + 1 || s[-1] == '&')
				fuzz_check(strncmp(s + 4, "REDACTED", 8) == 0);
	free(u);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_response r = {0};
	const char *p = (const char *)data, *end = p + size;
	int rc = 0;
	long ms;

	while (p < end && rc == 0) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(end - p);

		rc = http_response_add_line(&r, p, n);
		fuzz_check(rc == 0 || rc == -EMSGSIZE);
		fuzz_check(rc == 0 || r.errmsg[0] != '\0');
		p += n;
	}
	check_fields(&r);
	ms = http_retry_after_ms(&r);
	fuzz_check(ms >= -1 && ms <= 600000 && (ms == -1 || ms % 1000 == 0));
	fuzz_check((ms == -1) || http_response_header(&r, "retry-after") != NULL);
	for (size_t i = 0; i < r.n_headers; i++)
		check_redact(r.headers[i].value);
	http_response_clear(&r);
	return 0;
}
