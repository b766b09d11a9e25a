/*
 * Varlink framing (NUL-terminated JSON) shared by seedd and seedctl.
 * See varlink.h for the contract. No event library, no threads.
 */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <string.h>
#include <time.h>

#include "names.h"
#include "util.h"
#include "varlink.h"

#define READ_CHUNK 65536

void
vl_reader_init(struct vl_reader *r)
{
	*r = (struct vl_reader){0};
}

void
vl_reader_done(struct vl_reader *r)
{
	secure_free(r->buf); /* a request may have held a BitLocker recovery password */
	*r = (struct vl_reader){0};
}

int
vl_reader_feed(struct vl_reader *r, const void *data, size_t len)
{
	const char *nul;
	size_t pending;

	if (len == 0)
		return 0;
	/*
	 * Bytes after the last NUL belong to an unfinished message; the cap
	 * applies to it alone. Count what would follow the last NUL once
	 * data is appended, before growing the buffer.
	 */
	nul = memrchr(data, '\0', len);
	if (nul != NULL)
		pending = len - (size_t)(nul - (const char *)data) - 1;
	else {
		/* buf[0, scan) holds no NUL: skip it, or tiny feeds cost O(n^2) */
		const char *old = r->len > r->scan
		                      ? memrchr(r->buf + r->scan, '\0', r->len - r->scan)
		                      : NULL;
		size_t tail = old ? r->len - (size_t)(old - r->buf) - 1 : r->len;
		pending = tail + len;
	}
	if (pending > VL_MESSAGE_MAX)
		return -EMSGSIZE;
	if (r->len + len > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		while (cap < r->len + len)
			cap *= 2;
		r->buf = secure_realloc(r->buf, cap); /* the old block is wiped */
		r->cap = cap;
	}
	memcpy(r->buf + r->len, data, len);
	r->len += len;
	return 0;
}

static void
reader_consume(struct vl_reader *r, size_t n)
{
	memmove(r->buf, r->buf + n, r->len - n);
	r->len -= n;
	explicit_bzero(r->buf + r->len, n); /* no copy of a handled message stays behind */
	r->scan = 0;
	/* Give back memory once a large message has been handled. */
	if (r->len == 0 && r->cap > 1024 * 1024) {
		secure_free(r->buf);
		r->buf = NULL;
		r->cap = 0;
	}
}

int
vl_reader_next(struct vl_reader *r, json_t **ret)
{
	char *nul;
	size_t n;
	json_t *obj;

	nul = r->len > r->scan ? memchr(r->buf + r->scan, '\0', r->len - r->scan) : NULL;
	if (nul == NULL) {
		r->scan = r->len;
		return r->len > VL_MESSAGE_MAX ? -EMSGSIZE : 0;
	}
	n = (size_t)(nul - r->buf);
	if (n > VL_MESSAGE_MAX) {
		reader_consume(r, n + 1);
		return -EMSGSIZE;
	}
	if (!utf8_valid(r->buf, n)) {
		reader_consume(r, n + 1);
		return -EBADMSG;
	}
	obj = json_loadb(r->buf, n, JSON_REJECT_DUPLICATES, NULL);
	reader_consume(r, n + 1);
	if (obj == NULL)
		return -EBADMSG;
	if (!json_is_object(obj)) {
		json_decref(obj);
		return -EBADMSG;
	}
	*ret = obj;
	return 1;
}

int
vl_encode(const json_t *obj, char **ret, size_t *ret_len)
{
	char *s;
	size_t n;

	s = json_dumps(obj, JSON_COMPACT);
	if (s == NULL)
		fatalx("vl_encode: json_dumps failed");
	n = strlen(s);
	if (n > VL_MESSAGE_MAX) {
		free(s);
		return -EMSGSIZE;
	}
	/* json_dumps leaves room for exactly the terminator we send. */
	*ret = s;
	*ret_len = n + 1;
	return 0;
}

json_t *
vl_call_new(const char *method, json_t *params, int more)
{
	json_t *o = json_object();

	json_object_set_new(o, "method", json_string(method));
	json_object_set_new(o, "parameters", params ? params : json_object());
	if (more)
		json_object_set_new(o, "more", json_true());
	return o;
}

json_t *
vl_reply_new(json_t *params, int continues)
{
	json_t *o = json_object();

	json_object_set_new(o, "parameters", params ? params : json_object());
	if (continues)
		json_object_set_new(o, "continues", json_true());
	return o;
}

json_t *
vl_error_new(const char *error, json_t *params)
{
	json_t *o = json_object();

	json_object_set_new(o, "error", json_string(error));
	json_object_set_new(o, "parameters", params ? params : json_object());
	return o;
}

int
vl_send(int fd, const json_t *msg)
{
	_cleanup_free_ char *buf = NULL;
	size_t len, off = 0;
	int r;

	if ((r = vl_encode(msg, &buf, &len)) < 0)
		return r;
	while (off < len) {
		ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)n;
	}
	return 0;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
vl_recv(int fd, struct vl_reader *r, json_t **ret, int timeout_ms)
{
	char buf[READ_CHUNK];
	int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : -1;
	int k;

	for (;;) {
		ssize_t n;

		if ((k = vl_reader_next(r, ret)) != 0)
			return k < 0 ? k : 0;
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();
			struct pollfd p = {.fd = fd, .events = POLLIN};
			if (left <= 0)
				return -ETIMEDOUT;
			k = poll(&p, 1, (int)left);
			if (k < 0 && errno != EINTR)
				return -errno;
			if (k <= 0)
				continue;
		}
		n = read(fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		if ((k = vl_reader_feed(r, buf, (size_t)n)) < 0)
			return k;
	}
}


/* A JSON string of s; bytes that are not UTF-8 are written as \\xHH. */
json_t *
json_text(const char *s)
{
	size_t len = strlen(s);
	char *buf, *o;

	if (utf8_valid(s, len))
		return json_stringn(s, len);
	/* Escape bytes that are not UTF-8 one at a time. */
	buf = o = xmalloc(len * 4 + 1);
	for (size_t i = 0; i < len;) {
		size_t n = 1;
		while (n <= 4 && i + n <= len && !utf8_valid(s + i, n))
			n++;
		if (n <= 4 && i + n <= len) {
			memcpy(o, s + i, n);
			o += n;
			i += n;
		} else {
			o += sprintf(o, "\\x%02X", (unsigned char)s[i]);
			i++;
		}
	}
	*o = '\0';
	json_t *j = json_string(buf);
	free(buf);
	return j;
}
