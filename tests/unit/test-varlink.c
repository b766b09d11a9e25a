/*
 * proto/varlink.c: NUL framing under every split, the 1 MiB cap (and that
 * memory stays under it), bad messages consumed without losing the next,
 * encoding, and the blocking send/receive seedctl uses.
 */
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "names.h"
#include "test.h"
#include "util.h"
#include "varlink.h"

#define CHUNK 65536

static json_t *
next_ok(struct vl_reader *r)
{
	json_t *o = NULL;

	check_int(vl_reader_next(r, &o), 1);
	check(json_is_object(o));
	return o;
}

static void
check_drained(struct vl_reader *r)
{
	json_t *o = NULL;

	check_int(vl_reader_next(r, &o), 0);
	check(o == NULL);
}

/* Feed len bytes of data in chunks of at most CHUNK; every feed must succeed. */
static void
feed_all(struct vl_reader *r, const char *data, size_t len)
{
	for (size_t off = 0; off < len; off += CHUNK)
		check_int(vl_reader_feed(r, data + off, len - off < CHUNK ? len - off : CHUNK), 0);
}

/* Two messages cut into two feeds at every byte offset, and fed a byte at a time. */
static void
test_split(void)
{
	static const char wire[] = "{\"method\":\"io.seedd.GetJob\",\"parameters\":"
				   "{\"name\":\"caf\xc3\xa9\"}}\0"
				   "{\"parameters\":{},\"continues\":true}";
	size_t n = sizeof(wire); /* the final NUL is the second message's terminator */

	for (size_t k = 0; k <= n; k++) {
		struct vl_reader r;
		json_t *got[2];
		int ngot = 0, ret;

		vl_reader_init(&r);
		check_int(vl_reader_feed(&r, wire, k), 0);
		while ((ret = vl_reader_next(&r, &got[ngot])) == 1)
			ngot++;
		check_int(ret, 0);
		check_int(ngot, k >= strlen(wire) + 1 ? (k == n ? 2 : 1) : 0);
		check_int(vl_reader_feed(&r, wire + k, n - k), 0);
		while ((ret = vl_reader_next(&r, &got[ngot])) == 1)
			ngot++;
		check_int(ret, 0);
		check_int(ngot, 2);
		check_str(json_string_value(json_object_get(got[0], "method")), "io.seedd.GetJob");
		check_str(json_string_value(json_object_get(json_object_get(got[0], "parameters"),
							    "name")),
			  "caf\xc3\xa9");
		check(json_is_true(json_object_get(got[1], "continues")));
		check_int(r.len, 0);
		json_decref(got[0]);
		json_decref(got[1]);
		vl_reader_done(&r);
	}
}

/* One byte a feed. */
static void
test_bytewise(void)
{
	static const char wire[] = "{\"a\":\"\xe2\x82\xac\"}\0{\"b\":[1,2,3]}";
	size_t n = sizeof(wire);
	struct vl_reader r;
	int ngot = 0;

	vl_reader_init(&r);
	for (size_t i = 0; i < n; i++) {
		json_t *o;
		check_int(vl_reader_feed(&r, wire + i, 1), 0);
		if (vl_reader_next(&r, &o) == 1) {
			ngot++;
			json_decref(o);
		}
	}
	check_int(ngot, 2);
	check_drained(&r);
	vl_reader_done(&r);
}

/* A thousand messages in a single feed come out in order. */
static void
test_many(void)
{
	struct vl_reader r;
	char *buf = xmalloc(1000 * 16), *p = buf;

	for (int i = 0; i < 1000; i++) {
		int n = snprintf(p, 16, "{\"i\":%d}", i);
		p += n + 1; /* keep snprintf's NUL as the terminator */
	}
	vl_reader_init(&r);
	check_int(vl_reader_feed(&r, buf, (size_t)(p - buf)), 0);
	for (int i = 0; i < 1000; i++) {
		json_t *o = next_ok(&r);
		check_int(json_integer_value(json_object_get(o, "i")), i);
		json_decref(o);
	}
	check_drained(&r);
	vl_reader_done(&r);
	free(buf);
}

/* {"a":"xxx…"} of exactly len bytes, not terminated. */
static char *
message_of_size(size_t len)
{
	char *m = xmalloc(len + 1);

	memcpy(m, "{\"a\":\"", 6);
	memset(m + 6, 'x', len - 8);
	memcpy(m + len - 2, "\"}", 2);
	m[len] = '\0';
	return m;
}

static void
test_max_size(void)
{
	struct vl_reader r;
	char *m = message_of_size(VL_MESSAGE_MAX);
	json_t *o;

	/* Exactly VL_MESSAGE_MAX bytes plus the NUL is accepted. */
	vl_reader_init(&r);
	feed_all(&r, m, VL_MESSAGE_MAX + 1);
	o = next_ok(&r);
	check_int(strlen(json_string_value(json_object_get(o, "a"))), VL_MESSAGE_MAX - 8);
	json_decref(o);
	check_drained(&r);
	vl_reader_done(&r);

	/* Without its NUL it waits for more, holding no more than the cap. */
	vl_reader_init(&r);
	feed_all(&r, m, VL_MESSAGE_MAX);
	check_drained(&r);
	check(r.cap <= VL_MESSAGE_MAX);
	/* One more byte without a NUL is refused before the buffer grows. */
	check_int(vl_reader_feed(&r, "x", 1), -EMSGSIZE);
	check(r.cap <= VL_MESSAGE_MAX);
	check_int(r.len, VL_MESSAGE_MAX);
	check_int(vl_reader_feed(&r, "xyz", 3), -EMSGSIZE);
	check(r.cap <= VL_MESSAGE_MAX);
	vl_reader_done(&r);

	/* The same in a single feed: nothing is allocated at all. */
	free(m);
	m = message_of_size(VL_MESSAGE_MAX + 1);
	vl_reader_init(&r);
	check_int(vl_reader_feed(&r, m, VL_MESSAGE_MAX + 1), -EMSGSIZE);
	check_int(r.cap, 0);
	check(r.buf == NULL);
	vl_reader_done(&r);

	/* An oversized message whose NUL arrives with the next one is refused alone. */
	vl_reader_init(&r);
	feed_all(&r, m, VL_MESSAGE_MAX);
	check_int(vl_reader_feed(&r, "x\0{\"ok\":1}", 11), 0);
	o = NULL;
	check_int(vl_reader_next(&r, &o), -EMSGSIZE);
	check(o == NULL);
	o = next_ok(&r);
	check_int(json_integer_value(json_object_get(o, "ok")), 1);
	json_decref(o);
	check_drained(&r);
	vl_reader_done(&r);
	free(m);
}

/* Each bad message gives -EBADMSG once and is consumed; the good one after still decodes. */
static void
test_bad_messages(void)
{
	static const char *const bad[] = {
		"",
		"{bad json}",
		"{\"a\":1",
		"{\"a\":1}}",
		"[1,2]",
		"\"just a string\"",
		"42",
		"null",
		"{\"s\":\"\xff\"}",
		"{\"s\":\"\xc0\x80\"}",
		"{\"s\":\"\xed\xa0\x80\"}",
		"{\"\xfe\":1}",
		"{\"s\":\"\\u0000\"}",
		"{\"a\":1,\"a\":2}",
	};
	struct vl_reader r;

	vl_reader_init(&r);
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		json_t *o = NULL;

		check_int(vl_reader_feed(&r, bad[i], strlen(bad[i]) + 1), 0);
		check_int(vl_reader_feed(&r, "{\"ok\":true}", 12), 0);
		if (vl_reader_next(&r, &o) != -EBADMSG) {
			fprintf(stderr, "bad message %zu was not refused\n", i);
			check(false);
		}
		check(o == NULL);
		o = next_ok(&r);
		check(json_is_true(json_object_get(o, "ok")));
		json_decref(o);
		check_drained(&r);
	}
	vl_reader_done(&r);
}

/* Deep nesting is refused by the parser's depth limit, not by a crash. */
static void
test_deep_nesting(void)
{
	char *deep = xmalloc(200001);
	struct vl_reader r;
	json_t *o = NULL;

	vl_reader_init(&r);
	memset(deep, '[', 100000);
	memset(deep + 100000, ']', 100000);
	deep[0] = '{';
	deep[200000] = '\0';
	check_int(vl_reader_feed(&r, deep, 200001), 0);
	check_int(vl_reader_next(&r, &o), -EBADMSG);
	check(o == NULL);
	check_drained(&r);
	free(deep);
	vl_reader_done(&r);
}

static void
test_encode(void)
{
	json_t *in = json_pack("{s:s,s:{s:s,s:I,s:b,s:n,s:[i,i]}}", "method", "io.seedd.AddDrive",
			       "parameters", "path", "/mnt/\xe2\x82\xac \"q\"\n", "capacity",
			       (json_int_t)4398046511104, "x", 1, "serial", "list", 1, 2);
	struct vl_reader r;
	char *buf = NULL, *big;
	size_t len = 0;
	json_t *out, *huge;

	check_int(vl_encode(in, &buf, &len), 0);
	check(len > 1);
	check(buf[len - 1] == '\0');
	check_int(strlen(buf), len - 1);
	check(strchr(buf, '\n') == NULL); /* compact: the newline in the path is escaped */
	vl_reader_init(&r);
	check_int(vl_reader_feed(&r, buf, len), 0);
	out = next_ok(&r);
	check(json_equal(in, out));
	json_decref(out);
	vl_reader_done(&r);
	free(buf);
	json_decref(in);

	/* Too large to send: refused, nothing returned. */
	big = message_of_size(VL_MESSAGE_MAX + 1);
	big[VL_MESSAGE_MAX - 1] = '\0'; /* {"a":"…"} is one byte over */
	huge = json_pack("{s:s}", "a", big + 6);
	buf = NULL;
	check_int(vl_encode(huge, &buf, &len), -EMSGSIZE);
	check(buf == NULL);
	json_decref(huge);
	free(big);
}

static json_t *
params(json_t *m)
{
	return json_object_get(m, "parameters");
}

static void
test_builders(void)
{
	json_t *m;

	m = vl_call_new("io.seedd.GetStatus", NULL, 0);
	check_str(json_string_value(json_object_get(m, "method")), "io.seedd.GetStatus");
	check(json_is_object(json_object_get(m, "parameters")));
	check_int(json_object_size(json_object_get(m, "parameters")), 0);
	check(json_object_get(m, "more") == NULL);
	json_decref(m);

	m = vl_call_new("io.seedd.Watch", json_pack("{s:s}", "name", "abc"), 1);
	check(json_is_true(json_object_get(m, "more")));
	check_str(json_string_value(json_object_get(params(m), "name")), "abc");
	json_decref(m);

	m = vl_reply_new(json_pack("{s:i}", "uptime", 5), 1);
	check(json_is_true(json_object_get(m, "continues")));
	check_int(json_integer_value(json_object_get(params(m), "uptime")), 5);
	json_decref(m);
	m = vl_reply_new(NULL, 0);
	check(json_object_get(m, "continues") == NULL);
	check(json_is_object(json_object_get(m, "parameters")));
	json_decref(m);

	m = vl_error_new(SEEDD_ERR_JOB_NOT_FOUND, json_pack("{s:s}", "name", "x"));
	check_str(json_string_value(json_object_get(m, "error")), "io.seedd.JobNotFound");
	check_str(json_string_value(json_object_get(params(m), "name")), "x");
	json_decref(m);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
test_socket(void)
{
	struct vl_reader r;
	json_t *msg = json_pack("{s:s}", "method", "io.seedd.ListJobs"), *got = NULL;
	int sv[2];
	int64_t t0;

	check_int(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	vl_reader_init(&r);

	/* Two messages, each received whole. */
	check_int(vl_send(sv[0], msg), 0);
	check_int(vl_send(sv[0], msg), 0);
	check_int(vl_recv(sv[1], &r, &got, 1000), 0);
	check(json_equal(msg, got));
	json_decref(got);
	got = NULL;
	check_int(vl_recv(sv[1], &r, &got, -1), 0); /* already buffered */
	check(json_equal(msg, got));
	json_decref(got);
	got = NULL;

	/* Nothing to read: the timeout fires, not much later. */
	t0 = now_ms();
	check_int(vl_recv(sv[1], &r, &got, 100), -ETIMEDOUT);
	check(now_ms() - t0 >= 90);
	check(now_ms() - t0 < 5000);
	check(got == NULL);

	/* Half a message times out and is kept; the rest completes it. */
	check_int(write(sv[0], "{\"half\":", 8), 8);
	check_int(vl_recv(sv[1], &r, &got, 50), -ETIMEDOUT);
	check_int(write(sv[0], "1}", 3), 3);
	check_int(vl_recv(sv[1], &r, &got, 1000), 0);
	check_int(json_integer_value(json_object_get(got, "half")), 1);
	json_decref(got);
	got = NULL;

	/* A bad message is reported, and the connection goes on. */
	check_int(write(sv[0], "nope\0{\"b\":2}", 13), 13);
	check_int(vl_recv(sv[1], &r, &got, 1000), -EBADMSG);
	check_int(vl_recv(sv[1], &r, &got, 1000), 0);
	check_int(json_integer_value(json_object_get(got, "b")), 2);
	json_decref(got);
	got = NULL;

	/* The peer closes mid-message: -ECONNRESET. */
	check_int(write(sv[0], "{\"cut\":", 7), 7);
	close(sv[0]);
	check_int(vl_recv(sv[1], &r, &got, 1000), -ECONNRESET);
	check(got == NULL);
	/* Sending to a closed peer fails without SIGPIPE. */
	check_int(vl_send(sv[1], msg), -EPIPE);
	close(sv[1]);
	vl_reader_done(&r);
	json_decref(msg);
}

/* A message near the cap crosses a socket whose buffer is far smaller. */
static void
test_socket_large(void)
{
	char *big = message_of_size(VL_MESSAGE_MAX);
	struct vl_reader r;
	json_t *msg, *got = NULL;
	int sv[2], status;
	pid_t pid;

	big[VL_MESSAGE_MAX - 2] = '\0'; /* {"a":"…"} is exactly VL_MESSAGE_MAX */
	msg = json_pack("{s:s}", "a", big + 6);
	check_int(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	check(pid >= 0);
	if (pid == 0) {
		close(sv[1]);
		_exit(vl_send(sv[0], msg) == 0 ? 0 : 1);
	}
	close(sv[0]);
	vl_reader_init(&r);
	check_int(vl_recv(sv[1], &r, &got, 10000), 0);
	check(json_equal(msg, got));
	check(r.cap <= 2 * VL_MESSAGE_MAX + CHUNK);
	check_int(waitpid(pid, &status, 0), pid);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	json_decref(got);
	json_decref(msg);
	vl_reader_done(&r);
	close(sv[1]);
	free(big);
}

int
main(void)
{
	signal(SIGPIPE, SIG_DFL); /* vl_send must not raise it */
	test_split();
	test_bytewise();
	test_many();
	test_max_size();
	test_bad_messages();
	test_deep_nesting();
	test_encode();
	test_builders();
	test_socket();
	test_socket_large();
	return 0;
}
