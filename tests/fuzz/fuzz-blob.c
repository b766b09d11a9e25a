/*
 * Fuzz target: what seedd reads from Azure Storage and Azurite (daemon/
 * azure/azure-blob.c): an HTTP answer, as "HTTP/1.1 NNN ..." (the status;
 * 200 if the first line is not one), header lines, a blank line, then the
 * body, is read as the answer to every kind of call through
 * blob_read_answer(): List Blobs and Get Block List XML, Error XML, blob
 * property headers (Content-Length, Content-MD5, x-ms-copy-progress ...).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "azure-blob.h"
#include "azure-http.h"
#include "fuzz.h"

struct expect {
	enum blob_answer kind;
	long status;
};

static void
check_props(const struct blob_props *p)
{
	fuzz_check(p->name != NULL && *p->name != '\0');
	fuzz_check(p->length >= 0);
	/* a property given empty is reported as absent */
	fuzz_check(p->etag == NULL || *p->etag != '\0');
	fuzz_check(p->copy_status == NULL || *p->copy_status != '\0');
}

static void
check_success(const struct blob_result *r, enum blob_answer kind)
{
	switch (kind) {
	case BLOB_ANSWER_LIST:
		fuzz_check(r->n_list <= 5000 && (r->n_list == 0 || r->list != NULL));
		for (size_t i = 0; i < r->n_list; i++)
			check_props(&r->list[i]);
		fuzz_check(r->next_marker == NULL || *r->next_marker != '\0');
		break;
	case BLOB_ANSWER_BLOCK_LIST:
		for (size_t i = 0; i < r->n_blocks; i++)
			fuzz_check(r->blocks[i].id != NULL && *r->blocks[i].id != '\0' &&
			           r->blocks[i].size >= 0);
		break;
	case BLOB_ANSWER_PROPERTIES:
	case BLOB_ANSWER_COPY:
		fuzz_check(r->props != NULL && strcmp(r->props->name, "blob") == 0);
		break;
	case BLOB_ANSWER_GET:
		fuzz_check(r->body != NULL && r->body_len <= (1u << 20));
		break;
	default:
		break;
	}
}

static void
check_result(const struct blob_result *r, void *userdata)
{
	const struct expect *e = userdata;
	bool ok2xx = e->status >= 200 && e->status < 300;

	fuzz_check(r->status == e->status);
	fuzz_check(r->error == 0 || r->error == -ENOENT || r->error == -EACCES ||
	           r->error == -EIO || r->error == -EBADMSG || r->error == -EMSGSIZE);
	if (r->error != 0)
		fuzz_check(r->message != NULL);
	if (!ok2xx) {
		fuzz_check(r->message != NULL);
		fuzz_check(strpbrk(r->message, "\r\n") == NULL); /* one line for the log */
		fuzz_check(r->error != 0 || e->status == 404 || e->status == 409);
	} else if (r->error == 0) {
		check_success(r, e->kind);
	}
}

/* The status of a first line "HTTP/x NNN", else 200. */
static long
status_of(const char *p, size_t len)
{
	const char *sp = memchr(p, ' ', len);
	long v = 0;

	if (len < 5 || strncmp(p, "HTTP/", 5) != 0 || sp == NULL)
		return 200;
	for (sp++; sp < p + len && *sp >= '0' && *sp <= '9' && v < 1000; sp++)
		v = v * 10 + (*sp - '0');
	return v >= 100 && v < 1000 ? v : 200;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_response resp = {0};
	const char *p = (const char *)data, *end = p + size;
	int rc = 0;

	resp.status = status_of(p, size);
	while (p < end && rc == 0) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		bool blank = n == 1 || (n == 2 && p[0] == '\r');

		rc = http_response_add_line(&resp, p, n);
		p += n;
		if (blank)
			break;
	}
	if (rc < 0)
		goto out;
	/* the body: NUL-terminated, as the HTTP layer gives it */
	resp.body_len = (size_t)(end - p);
	resp.body = malloc(resp.body_len + 1);
	fuzz_check(resp.body != NULL);
	memcpy(resp.body, p, resp.body_len);
	resp.body[resp.body_len] = '\0';
	for (int k = 0; k < _BLOB_ANSWER_MAX; k++) {
		struct expect e = {.kind = (enum blob_answer)k, .status = resp.status};

		blob_read_answer(e.kind, &resp, check_result, &e);
	}
out:
	http_response_clear(&resp);
	return 0;
}
