/*
 * Tests for the Blob client (daemon/azure/azure-blob.c) against Azurite, Microsoft's
 * Storage emulator, started as two children (HTTP, and HTTPS with a test CA
 * for CAFile=): containers, blocks and block lists with MD5, paged listing
 * of awkward names, get, copy with a tier, set tier, delete, Azure's errors
 * (404, MD5 mismatch, bad key), an account SAS, a bearer token that cannot
 * be had, config checks, cancel and free in flight, and a debug log without
 * the key or a SAS signature. Skips only if Azurite is not installed.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "azure-arm.h"
#include "azure-blob.h"
#include "azure-http.h"
#include "config.h"
#include "log.h"
#include "test.h"
#include "util.h"

#define ACCOUNT "devstoreaccount1"
#define KEY                                                                                        \
	"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#define WRONG_KEY                                                                                  \
	"AAAAvdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

static struct event_base *base;
static struct http *http;
static char tmpdir[] = "/tmp/test-azure-blob.XXXXXX";
static char endpoint[128];     /* http://127.0.0.1:PORT/devstoreaccount1 */
static char tls_endpoint[128]; /* https://... */
static char sas_sig[128];      /* the SAS's sig, for the log check */
static char jwt[1024];         /* the bearer token the fake Entra hands out */
static unsigned token_requests;
static int log_fd = -1, real_stderr = -1;

/* ---- results -------------------------------------------------------------- */

/* What a done callback saw, deep-copied. */
struct got {
	bool done;
	long status;
	int error;
	char *code, *message;
	bool has_props;
	struct blob_props props;
	struct blob_props *list;
	size_t n_list;
	char *next_marker;
	char *body;
	size_t body_len;
	struct blob_block *blocks;
	size_t n_blocks;
};

static char *
dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static void
props_copy(struct blob_props *d, const struct blob_props *s)
{
	*d = *s;
	d->name = dup_or_null(s->name);
	d->etag = dup_or_null(s->etag);
	d->content_type = dup_or_null(s->content_type);
	d->access_tier = dup_or_null(s->access_tier);
	d->copy_status = dup_or_null(s->copy_status);
	d->copy_id = dup_or_null(s->copy_id);
	d->copy_status_description = dup_or_null(s->copy_status_description);
}

static void
got_cb(const struct blob_result *r, void *userdata)
{
	struct got *g = userdata;

	check(!g->done);
	g->done = true;
	g->status = r->status;
	g->error = r->error;
	g->code = dup_or_null(r->code);
	g->message = dup_or_null(r->message);
	if (r->error != 0)
		check(r->message != NULL);
	if (r->props != NULL) {
		g->has_props = true;
		props_copy(&g->props, r->props);
	}
	if (r->n_list > 0) {
		g->list = xcalloc(r->n_list, sizeof(*g->list));
		for (size_t i = 0; i < r->n_list; i++)
			props_copy(&g->list[i], &r->list[i]);
		g->n_list = r->n_list;
	}
	g->next_marker = dup_or_null(r->next_marker);
	if (r->n_blocks > 0) {
		g->blocks = xcalloc(r->n_blocks, sizeof(*g->blocks));
		for (size_t i = 0; i < r->n_blocks; i++)
			g->blocks[i] =
			    (struct blob_block){xstrdup(r->blocks[i].id), r->blocks[i].size};
		g->n_blocks = r->n_blocks;
	}
	if (r->body != NULL) {
		g->body = xmalloc(r->body_len + 1);
		memcpy(g->body, r->body, r->body_len);
		g->body_len = r->body_len;
	}
}

static void
got_clear(struct got *g)
{
	free(g->code);
	free(g->message);
	blob_props_done(&g->props);
	for (size_t i = 0; i < g->n_list; i++)
		blob_props_done(&g->list[i]);
	free(g->list);
	free(g->next_marker);
	free(g->body);
	for (size_t i = 0; i < g->n_blocks; i++)
		free(g->blocks[i].id);
	free(g->blocks);
	*g = (struct got){0};
}

static void
never_cb(const struct blob_result *r, void *userdata)
{
	check(!"a cancelled or freed call called back");
}

static void
run_until(const bool *flag)
{
	while (!*flag)
		check(event_base_loop(base, EVLOOP_ONCE) == 0);
}

static void
run_for_ms(long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

/* Start op(args..., got_cb, &g) and wait for its answer, never inside the call. */
#define CALL(g, op, ...)                                                                           \
	do {                                                                                       \
		got_clear(&(g));                                                                   \
		check(op(__VA_ARGS__, got_cb, &(g)) != NULL);                                      \
		check(!(g).done);                                                                  \
		run_until(&(g).done);                                                              \
	} while (0)

static void
md5(const void *data, size_t len, unsigned char out[16])
{
	unsigned int n = 0;

	check(EVP_Digest(data, len, out, &n, EVP_md5(), NULL) == 1);
	check_int(n, 16);
}

static char *
b64(const void *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

/* A manifest-style block id: "MD5/" and the block's MD5 in base64. */
static char *
block_id(const unsigned char m[16])
{
	_cleanup_free_ char *s = b64(m, 16);

	return xprintf("MD5/%s", s);
}

static void
fill(unsigned char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (unsigned char)(seed >> 16);
	}
}

/* Upload data as one block and commit it with its MD5. */
static void
upload(struct blob_client *bc, const char *container, const char *name, const void *data,
       size_t len)
{
	unsigned char m[16];
	_cleanup_free_ char *id = NULL;
	const char *ids[1];
	struct got g = {0};

	md5(data, len, m);
	id = block_id(m);
	ids[0] = id;
	CALL(g, blob_put_block, bc, container, name, id, data, len, m);
	check_int(g.error, 0);
	check_int(g.status, 201);
	CALL(g, blob_put_block_list, bc, container, name, ids, 1, m);
	check_int(g.error, 0);
	check_int(g.status, 201);
	got_clear(&g);
}

/* ---- configs -------------------------------------------------------------- */

static char key_value[] = KEY;
static char wrong_key_value[] = WRONG_KEY;

static struct config
cfg_key(const char *ep, char *key)
{
	return (struct config){
	    .account_name = (char *)ACCOUNT,
	    .blob_endpoint = (char *)ep,
	    .account_key = {.value = key, .len = strlen(key)},
	};
}

static struct blob_client *
client_on(struct http *h, const struct config *c)
{
	char *err = NULL;
	struct blob_client *bc = blob_client_new(h, NULL, c, &err);

	if (bc == NULL)
		fprintf(stderr, "blob_client_new: %s\n", err);
	check(bc != NULL);
	check(err == NULL);
	return bc;
}

/* blob_client_new fails, its message containing want. */
static void
check_refused(struct azure *az, const struct config *c, const char *want)
{
	char *err = NULL;

	check(blob_client_new(http, az, c, &err) == NULL);
	check(err != NULL);
	if (strstr(err, want) == NULL)
		fprintf(stderr, "'%s' lacks '%s'\n", err, want);
	check(strstr(err, want) != NULL);
	free(err);
}

/* ---- Azurite -------------------------------------------------------------- */

static int
free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	check(fd >= 0);
	check(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	check(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static pid_t
azurite_start(const char *bin, const char *name, int port, bool tls)
{
	char dir[PATH_MAX], logpath[PATH_MAX + 16], portstr[16], cert[PATH_MAX + 16],
	    key[PATH_MAX + 16];
	pid_t parent = getpid(), pid;

	snprintf(dir, sizeof(dir), "%s/%s", tmpdir, name);
	check(mkdir(dir, 0700) == 0);
	snprintf(logpath, sizeof(logpath), "%s.log", dir);
	snprintf(portstr, sizeof(portstr), "%d", port);
	snprintf(cert, sizeof(cert), "%s/tls/server.pem", tmpdir);
	snprintf(key, sizeof(key), "%s/tls/server.key", tmpdir);
	pid = fork();
	check(pid >= 0);
	if (pid == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan if a check aborts */
		if (getppid() != parent || fd < 0)
			_exit(127);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		unsetenv("MALLOC_PERTURB_"); /* meson's setting slows node down a lot */
		if (tls)
			execl(bin, bin, "--blobHost", "127.0.0.1", "--blobPort", portstr,
			      "--location", dir, "--silent", "--skipApiVersionCheck",
			      "--disableTelemetry", "--cert", cert, "--key", key, "--oauth",
			      "basic", (char *)NULL);
		else
			execl(bin, bin, "--blobHost", "127.0.0.1", "--blobPort", portstr,
			      "--location", dir, "--silent", "--skipApiVersionCheck",
			      "--disableTelemetry", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Wait until 127.0.0.1:port accepts a connection (Azurite takes a second or two). */
static void
wait_port(pid_t pid, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	                         .sin_port = htons((uint16_t)port)};

	for (int i = 0; i < 600; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

		check(fd >= 0);
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
		if (r == 0)
			return;
		check(waitpid(pid, NULL, WNOHANG) == 0); /* Azurite still running */
		usleep(50000);
	}
	check(!"Azurite did not listen within 30 s");
}

static void
azurite_stop(pid_t pid)
{
	int status;

	check(kill(pid, SIGTERM) == 0);
	check(waitpid(pid, &status, 0) == pid);
}

/* ---- the debug log -------------------------------------------------------- */

/* A failed check: show the captured log (and the check's own line) first. */
static void
dump_log(int sig)
{
	char buf[4096];
	ssize_t n;
	off_t off = 0;

	while ((n = pread(log_fd, buf, sizeof(buf), off)) > 0) {
		if (write(real_stderr, buf, (size_t)n) < 0)
			break;
		off += n;
	}
	if (sig == SIGALRM) {
		signal(SIGABRT, SIG_DFL);
		abort();
	}
}

static void
capture_log(void)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/debug.log", tmpdir);
	log_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	check(log_fd >= 0);
	real_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	check(real_stderr >= 0);
	check(dup2(log_fd, STDERR_FILENO) == STDERR_FILENO);
	signal(SIGABRT, dump_log);
	signal(SIGALRM, dump_log);
}

static void
test_log(void)
{
	_cleanup_free_ char *buf = NULL, *head = NULL;
	struct stat st;
	ssize_t n;

	fflush(stderr);
	check(fstat(log_fd, &st) == 0);
	buf = xmalloc((size_t)st.st_size + 1);
	n = pread(log_fd, buf, (size_t)st.st_size, 0);
	check(n == st.st_size);
	buf[n] = '\0';
	check(dup2(real_stderr, STDERR_FILENO) == STDERR_FILENO);
	signal(SIGABRT, SIG_DFL);
	fputs(buf, stderr);
	check(strstr(buf, "blob: PUT http://127.0.0.1:") != NULL); /* the capture worked */
	check(strstr(buf, "sig=REDACTED") != NULL);
	check(strstr(buf, "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1") == NULL);
	check(strstr(buf, "AAAAvdM02xNOcqFlqUwJPLlmEtlCDXJ1") == NULL);
	check(strstr(buf, "SharedKey") == NULL);
	check(strstr(buf, "Bearer") == NULL);
	check(jwt[0] != '\0');
	check(strstr(buf, jwt) == NULL);
	check(strstr(buf, strchr(jwt, '.') + 1) == NULL); /* nor the token's payload */
	check(sas_sig[0] != '\0');
	check(strstr(buf, sas_sig) == NULL);
	head = xstrdup(sas_sig);
	head[8] = '\0';
	check(strstr(buf, head) == NULL); /* not even its start */
	fprintf(stderr, "debug log: %zd bytes, no key or signature\n", n);
}

/* ---- tests ---------------------------------------------------------------- */

static void
test_config(void)
{
	struct config c = {0};
	struct blob_client *bc;
	char *u;

	check_refused(NULL, &c, "AccountName");
	c.account_name = (char *)"acct";
	check_refused(NULL, &c, "AccountKeyFile");
	c.cloud = CLOUD_CUSTOM;
	check_refused(NULL, &c, "BlobEndpoint");
	c.cloud = CLOUD_AZURE_PUBLIC;
	c.account_name = (char *)"Not/A-Name";
	check_refused(NULL, &c, "AccountName");
	c.account_name = (char *)"acct";
	c.account_key = (struct secret){.value = (char *)"not base64!", .len = 11};
	check_refused(NULL, &c, "AccountKeyFile");

	c.account_key = (struct secret){.value = key_value, .len = strlen(key_value)};
	bc = client_on(http, &c);
	u = blob_url(bc, "c-1", "dir one/ü+#?%.txt");
	check_str(u, "https://acct.blob.core.windows.net/c-1/dir%20one/%C3%BC%2B%23%3F%25.txt");
	free(u);
	blob_client_free(bc);

	c.cloud = CLOUD_AZURE_CHINA;
	bc = client_on(http, &c);
	u = blob_url(bc, "c", "b");
	check_str(u, "https://acct.blob.core.chinacloudapi.cn/c/b");
	free(u);
	blob_client_free(bc);

	c.cloud = CLOUD_AZURE_US_GOVERNMENT;
	c.account_key = (struct secret){0};
	c.sas_token = (struct secret){.value = (char *)"?sv=2021-12-02&sig=abc", .len = 22};
	bc = client_on(http, &c);
	u = blob_url(bc, "c", "b");
	check_str(u, "https://acct.blob.core.usgovcloudapi.net/c/b"); /* no SAS in it */
	free(u);
	blob_client_free(bc);

	c.cloud = CLOUD_CUSTOM;
	c.blob_endpoint = (char *)"https://127.0.0.1:10000/devstoreaccount1/";
	bc = client_on(http, &c);
	u = blob_url(bc, "c", "a/b");
	check_str(u, "https://127.0.0.1:10000/devstoreaccount1/c/a/b");
	free(u);
	blob_client_free(bc);

	c.sas_token = (struct secret){.value = (char *)"sv=1 2", .len = 6};
	check_refused(NULL, &c, "SasTokenFile");
	c.sas_token = (struct secret){0};
	check_refused(NULL, &c, "AccountKeyFile"); /* no az: no bearer either */
	blob_client_free(NULL);
	blob_cancel(NULL);
}

static void
test_containers(struct blob_client *bc)
{
	struct got g = {0};

	CALL(g, blob_create_container, bc, "import");
	check_int(g.error, 0);
	check_int(g.status, 201);
	CALL(g, blob_create_container, bc, "import");
	check_int(g.error, 0);
	check_int(g.status, 409);
	check_str(g.code, "ContainerAlreadyExists");
	CALL(g, blob_create_container, bc, "vault");
	check_int(g.error, 0);
	CALL(g, blob_create_container, bc, "Bad_Name");
	check_int(g.error, -EIO);
	check_int(g.status, 400);
	check(g.code != NULL);
	CALL(g, blob_create_container, bc, "");
	check_int(g.error, -EINVAL);
	check_int(g.status, 0);
	got_clear(&g);
}

#define NAME "dir one/ünïcödé ☃/file+1 (a)&b.bin"
static unsigned char data[70000 + 65536 + 1234];
static const size_t block_len[3] = {70000, 65536, 1234};
static unsigned char whole_md5[16];

static void
test_blocks(struct blob_client *bc)
{
	char *ids[3];
	unsigned char m[16];
	size_t off = 0;
	struct got g = {0};

	fill(data, sizeof(data), 7);
	md5(data, sizeof(data), whole_md5);
	for (int i = 0; i < 3; i++) {
		md5(data + off, block_len[i], m);
		ids[i] = block_id(m);
		CALL(g, blob_put_block, bc, "import", NAME, ids[i], data + off, block_len[i], m);
		check_int(g.error, 0);
		check_int(g.status, 201);
		off += block_len[i];
	}
	CALL(g, blob_put_block_list, bc, "import", NAME, (const char *const *)ids, 3, whole_md5);
	check_int(g.error, 0);
	check_int(g.status, 201);

	CALL(g, blob_get_properties, bc, "import", NAME);
	check_int(g.error, 0);
	check_int(g.status, 200);
	check(g.has_props);
	check_str(g.props.name, NAME);
	check_int(g.props.length, sizeof(data));
	check(g.props.has_md5);
	check(memcmp(g.props.md5, whole_md5, 16) == 0);
	check(g.props.etag != NULL);
	check(g.props.copy_status == NULL);

	/* a block whose MD5 is not its data's: Azure says Md5Mismatch, Azurite InvalidOperation */
	md5("other", 5, m);
	CALL(g, blob_put_block, bc, "import", NAME, ids[0], data, block_len[0], m);
	check_int(g.status, 400);
	check_int(g.error, -EIO);
	check(g.code != NULL);
	check(strcmp(g.code, "Md5Mismatch") == 0 || strcmp(g.code, "InvalidOperation") == 0);
	fprintf(stderr, "wrong block MD5: %s: %s\n", g.code, g.message);

	CALL(g, blob_put_block, bc, "import", NAME, ids[0], data, BLOB_BLOCK_MAX + 1, m);
	check_int(g.error, -EINVAL); /* over the manifest's block size: not sent */
	check_int(g.status, 0);
	const char *bad[] = {ids[0], ""};
	CALL(g, blob_put_block_list, bc, "import", NAME, bad, 2, whole_md5);
	check_int(g.error, -EINVAL);
	for (int i = 0; i < 3; i++)
		free(ids[i]);
	got_clear(&g);
}

/*
 * Get Block List gives back the ids the blocks were put with, in order, with
 * their sizes; Set Blob Properties sets Content-MD5 and Content-Type, and a
 * Copy Blob carries them into the copy (what the vault check relies on).
 */
static void
test_block_list(struct blob_client *bc)
{
	unsigned char m[16], other[16];
	_cleanup_free_ char *src = NULL;
	size_t off = 0;
	struct got g = {0};

	CALL(g, blob_get_block_list, bc, "import", NAME);
	check_int(g.error, 0);
	check_int(g.n_blocks, 3);
	for (size_t i = 0; i < 3 && i < g.n_blocks; i++) {
		_cleanup_free_ char *id = NULL;
		md5(data + off, block_len[i], m);
		id = block_id(m);
		check_str(g.blocks[i].id, id);
		check_int(g.blocks[i].size, block_len[i]);
		off += block_len[i];
	}
	CALL(g, blob_get_block_list, bc, "import", "no such blob");
	check_int(g.error, -ENOENT);

	md5("other", 5, other);
	CALL(g, blob_set_content_md5, bc, "import", NAME, other, "application/x-seedd");
	check_int(g.error, 0);
	CALL(g, blob_get_properties, bc, "import", NAME);
	check(g.props.has_md5 && memcmp(g.props.md5, other, 16) == 0);
	check_str(g.props.content_type, "application/x-seedd");
	CALL(g, blob_set_content_md5, bc, "import", NAME, whole_md5, NULL);
	check_int(g.error, 0);
	CALL(g, blob_get_properties, bc, "import", NAME);
	check(g.props.has_md5 && memcmp(g.props.md5, whole_md5, 16) == 0);

	src = blob_url(bc, "import", NAME);
	CALL(g, blob_copy, bc, "vault", "blocklist-copy", src, NULL);
	check_int(g.error, 0);
	CALL(g, blob_get_properties, bc, "vault", "blocklist-copy");
	check(g.props.has_md5 && memcmp(g.props.md5, whole_md5, 16) == 0);
	check_int(g.props.length, sizeof(data));
	CALL(g, blob_get_block_list, bc, "vault", "blocklist-copy");
	/* Not relied on: the docs found do not say Copy Blob keeps the block list. */
	fprintf(stderr,
	        "Azurite: a Copy Blob's committed block list has %zu blocks "
	        "(the source has 3)\n",
	        g.n_blocks);
	got_clear(&g);
}

static void
test_get(struct blob_client *bc)
{
	_cleanup_free_ char *url = blob_url(bc, "import", NAME);
	_cleanup_free_ char *missing = blob_url(bc, "import", "no such blob");
	struct got g = {0};

	CALL(g, blob_get_url, bc, url, sizeof(data));
	check_int(g.error, 0);
	check_int(g.status, 200);
	check_int(g.body_len, sizeof(data));
	check(memcmp(g.body, data, sizeof(data)) == 0);

	CALL(g, blob_get_url, bc, url, 100);
	check_int(g.error, -EMSGSIZE);
	check(g.body == NULL);

	CALL(g, blob_get_url, bc, missing, 100);
	check_int(g.error, -ENOENT);
	check_int(g.status, 404);
	check_str(g.code, "BlobNotFound");
	check(strchr(g.message, '\n') == NULL);

	CALL(g, blob_get_url, bc, "http://127.0.0.1:9/elsewhere/c/b", 100);
	check_int(g.error, -EINVAL); /* our key goes to our account only */
	check_int(g.status, 0);
	got_clear(&g);
}

static const char *const list_names[] = {
    "list/a b.txt", "list/dir/ü.txt", "list/x/y/z", "list/日本語.bin", "list/p+q&r<s>.txt",
};

static void
test_list(struct blob_client *bc)
{
	bool seen[ELEMENTSOF(list_names)] = {false};
	_cleanup_free_ char *marker = NULL;
	struct got g = {0};
	unsigned pages = 0, total = 0;

	for (size_t i = 0; i < ELEMENTSOF(list_names); i++)
		upload(bc, "import", list_names[i], list_names[i], strlen(list_names[i]));
	upload(bc, "import", "lisu", "outside the prefix", 18);
	do {
		CALL(g, blob_list, bc, "import", "list/", marker, 2);
		check_int(g.error, 0);
		check_int(g.status, 200);
		check(g.n_list <= 2);
		pages++;
		for (size_t i = 0; i < g.n_list; i++) {
			size_t j;
			unsigned char m[16];

			for (j = 0; j < ELEMENTSOF(list_names); j++)
				if (strcmp(g.list[i].name, list_names[j]) == 0)
					break;
			check(j < ELEMENTSOF(list_names));
			check(!seen[j]);
			seen[j] = true;
			total++;
			check_int(g.list[i].length, strlen(list_names[j]));
			md5(list_names[j], strlen(list_names[j]), m);
			check(g.list[i].has_md5);
			check(memcmp(g.list[i].md5, m, 16) == 0);
			check(g.list[i].etag != NULL);
		}
		free(marker);
		marker = TAKE_PTR(g.next_marker);
		check(pages <= 3);
	} while (marker != NULL);
	check_int(pages, 3);
	check_int(total, ELEMENTSOF(list_names));

	CALL(g, blob_list, bc, "import", NULL, NULL, 0);
	check_int(g.error, 0);
	check_int(g.n_list, ELEMENTSOF(list_names) + 2); /* NAME and "lisu" too */
	check(g.next_marker == NULL);
	CALL(g, blob_list, bc, "nosuchcontainer", NULL, NULL, 0);
	check_int(g.error, -ENOENT);
	check_str(g.code, "ContainerNotFound");
	got_clear(&g);
}

/* Copy NAME into the vault as Cool, set it Hot, delete it. */
static void
test_copy(struct blob_client *bc, const char *vault)
{
	_cleanup_free_ char *src = blob_url(bc, "import", NAME);
	struct got g = {0};

	CALL(g, blob_copy, bc, vault, NAME, src, "Cool");
	check_int(g.error, 0);
	check_int(g.status, 202);
	check(g.has_props);
	check_str(g.props.copy_status, "success");
	check(g.props.copy_id != NULL);

	CALL(g, blob_get_properties, bc, vault, NAME);
	check_int(g.error, 0);
	check_int(g.props.length, sizeof(data));
	check(g.props.has_md5);
	check(memcmp(g.props.md5, whole_md5, 16) == 0);
	check_str(g.props.copy_status, "success");
	check(g.props.access_tier != NULL); /* Azurite reports it */
	check_str(g.props.access_tier, "Cool");
	check_int(g.props.copy_done, sizeof(data));
	check_int(g.props.copy_total, sizeof(data));

	CALL(g, blob_set_tier, bc, vault, NAME, "Hot");
	check_int(g.error, 0);
	check(g.status == 200 || g.status == 202);
	CALL(g, blob_get_properties, bc, vault, NAME);
	check_int(g.error, 0);
	check_str(g.props.access_tier, "Hot");
	CALL(g, blob_set_tier, bc, vault, NAME, "Lukewarm");
	check_int(g.error, -EIO);
	check_int(g.status, 400);

	CALL(g, blob_delete, bc, vault, NAME);
	check_int(g.error, 0);
	check_int(g.status, 202);
	CALL(g, blob_get_properties, bc, vault, NAME);
	check_int(g.error, -ENOENT);
	check_int(g.status, 404);
	check_str(g.code, "BlobNotFound"); /* a HEAD: from x-ms-error-code */
	check(g.message != NULL);
	CALL(g, blob_delete, bc, vault, NAME);
	check_int(g.error, 0); /* already gone: fine */
	check_int(g.status, 404);
	got_clear(&g);
}

/* Azure says AuthenticationFailed for a bad signature; Azurite 3.35 AuthorizationFailure. */
static void
check_auth_failed(const char *code)
{
	check(code != NULL);
	check(strcmp(code, "AuthenticationFailed") == 0 ||
	      strcmp(code, "AuthorizationFailure") == 0);
}

static void
test_errors(struct blob_client *bc)
{
	struct config c = cfg_key(endpoint, wrong_key_value);
	struct blob_client *bad = client_on(http, &c);
	struct got g = {0};

	CALL(g, blob_get_properties, bc, "import", "missing/blob");
	check_int(g.error, -ENOENT);
	check_int(g.status, 404);
	check_str(g.code, "BlobNotFound");

	CALL(g, blob_create_container, bad, "import");
	check_int(g.error, -EACCES);
	check_int(g.status, 403);
	check_auth_failed(g.code);
	CALL(g, blob_get_properties, bad, "import", NAME);
	check_int(g.error, -EACCES);
	check_int(g.status, 403);
	blob_client_free(bad);
	got_clear(&g);
}

/* An account SAS (sv 2021-12-02 string to sign) for Azurite's account, or with the wrong key. */
static char *
make_sas(const char *key)
{
	static const char sts[] =
	    ACCOUNT "\nrwdlacup\nb\nsco\n\n2099-01-01T00:00:00Z\n\nhttps,http\n"
	            "2021-12-02\n\n";
	unsigned char raw[66], mac[32];
	unsigned int mac_len = 0;
	_cleanup_free_ char *sig = NULL, *enc = NULL;

	check(EVP_DecodeBlock(raw, (const unsigned char *)key, (int)strlen(key)) == 66);
	check(HMAC(EVP_sha256(), raw, 64, (const unsigned char *)sts, strlen(sts), mac, &mac_len));
	sig = b64(mac, mac_len);
	enc = xmalloc(3 * strlen(sig) + 1);
	enc[0] = '\0';
	for (const char *p = sig; *p != '\0'; p++) {
		if (*p == '+' || *p == '/' || *p == '=')
			sprintf(enc + strlen(enc), "%%%02X", *p);
		else
			sprintf(enc + strlen(enc), "%c", *p);
	}
	if (strcmp(key, KEY) == 0)
		snprintf(sas_sig, sizeof(sas_sig), "%s", sig);
	return xprintf("?sv=2021-12-02&ss=b&srt=sco&sp=rwdlacup&se=2099-01-01T00%%3A00%%3A00Z"
	               "&spr=https%%2Chttp&sig=%s",
	               enc);
}

static void
test_sas(void)
{
	_cleanup_free_ char *sas = make_sas(KEY), *bad_sas = make_sas(WRONG_KEY);
	struct config c = {.blob_endpoint = endpoint, .sas_token = {sas, strlen(sas)}};
	struct blob_client *bc = client_on(http, &c), *bad;
	_cleanup_free_ char *url = NULL, *src = NULL;
	struct got g = {0};
	bool found = false;

	CALL(g, blob_create_container, bc, "sas-import");
	check_int(g.error, 0);
	upload(bc, "sas-import", "via sas/ü.txt", "hello, sas", 10);
	CALL(g, blob_get_properties, bc, "sas-import", "via sas/ü.txt");
	check_int(g.error, 0);
	check_int(g.props.length, 10);
	CALL(g, blob_list, bc, "import", "list/", NULL, 0);
	check_int(g.error, 0);
	check_int(g.n_list, ELEMENTSOF(list_names));
	url = blob_url(bc, "sas-import", "via sas/ü.txt");
	check(strstr(url, "sig=") == NULL);
	CALL(g, blob_get_url, bc, url, 100);
	check_int(g.error, 0);
	check_int(g.body_len, 10);
	check(memcmp(g.body, "hello, sas", 10) == 0);

	/* the copy source gets the SAS too */
	CALL(g, blob_copy, bc, "vault", "from sas", url, "Cool");
	check_int(g.error, 0);
	check_str(g.props.copy_status, "success");
	CALL(g, blob_list, bc, "vault", NULL, NULL, 0);
	check_int(g.error, 0);
	for (size_t i = 0; i < g.n_list; i++)
		if (strcmp(g.list[i].name, "from sas") == 0)
			found = g.list[i].length == 10 && g.list[i].access_tier != NULL &&
			        strcmp(g.list[i].access_tier, "Cool") == 0 &&
			        g.list[i].copy_status != NULL;
	check(found);
	CALL(g, blob_set_tier, bc, "vault", "from sas", "Hot");
	check_int(g.error, 0);
	CALL(g, blob_delete, bc, "vault", "from sas");
	check_int(g.error, 0);

	/* a URL with its own SAS is taken as it is */
	src = xprintf("%s%s", url, sas);
	c.sas_token = (struct secret){bad_sas, strlen(bad_sas)};
	bad = client_on(http, &c);
	CALL(g, blob_get_url, bad, src, 100);
	check_int(g.error, 0);
	check_int(g.body_len, 10);
	CALL(g, blob_get_properties, bad, "sas-import", "via sas/ü.txt");
	check_int(g.error, -EACCES);
	check_int(g.status, 403);
	check_auth_failed(g.code);
	blob_client_free(bad);
	blob_client_free(bc);
	got_clear(&g);
}

static void
test_https(void)
{
	char ca[PATH_MAX], *err = NULL;
	struct config c = cfg_key(tls_endpoint, key_value);
	struct http *with_ca, *without;
	struct blob_client *bc;
	struct got g = {0};

	snprintf(ca, sizeof(ca), "%s/tls/ca.pem", tmpdir);
	c.ca_file = ca;
	with_ca = http_new(base, c.ca_file, &err);
	check(with_ca != NULL && err == NULL);
	http_set_system_ca_path(with_ca, tmpdir); /* no system CAs: only CAFile= */
	bc = client_on(with_ca, &c);
	CALL(g, blob_create_container, bc, "tls");
	check_int(g.error, 0);
	check_int(g.status, 201);
	upload(bc, "tls", "over tls", "secure", 6);
	CALL(g, blob_get_properties, bc, "tls", "over tls");
	check_int(g.error, 0);
	check_int(g.props.length, 6);
	blob_client_free(bc);

	without = http_new(base, NULL, &err);
	check(without != NULL);
	bc = client_on(without, &c);
	CALL(g, blob_get_properties, bc, "tls", "over tls");
	check_int(g.error, -EPROTO); /* not trusted without CAFile= */
	check_int(g.status, 0);
	blob_client_free(bc);
	http_free(without);
	http_free(with_ca);
	got_clear(&g);
}

/* Bearer auth without a usable Entra configuration: the token's error arrives. */
static void
test_bearer(void)
{
	struct config c = {
	    .blob_endpoint = endpoint,
	    .tenant_id = (char *)"tenant",
	    .client_id = (char *)"client",
	    .client_secret = {(char *)"secret", 6},
	};
	char *err = NULL;
	struct azure *az = azure_new(base, &c, &err);
	struct blob_client *bc;
	struct got g = {0};

	check(az != NULL && err == NULL);
	c.client_id = NULL;
	check_refused(az, &c, "ClientId");
	c.client_id = (char *)"client";
	bc = blob_client_new(NULL, az, &c, &err); /* the azure's HTTP client */
	check(bc != NULL && err == NULL);
	CALL(g, blob_get_properties, bc, "import", NAME);
	check_int(g.error, -EACCES);
	check_int(g.status, 0);
	check_str(g.code, "ConfigurationMissing");
	blob_client_free(bc);
	azure_free(az);
	got_clear(&g);
}

static char *
b64url(const char *s)
{
	char *out = b64(s, strlen(s));

	for (char *p = out; *p != '\0'; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	out[strcspn(out, "=")] = '\0';
	return out;
}

/* An unsigned JWT as Entra would issue for Azure Storage (Azurite's "basic" OAuth checks no
 * signature). */
static void
make_jwt(const char *aud)
{
	long now = (long)time(NULL);
	_cleanup_free_ char *payload =
	    xprintf("{\"aud\":\"%s\",\"iss\":\"https://sts.windows.net/"
	            "11111111-2222-3333-4444-555555555555/\",\"iat\":%ld,\"nbf\":%ld,\"exp\":%ld,"
	            "\"oid\":\"seedd-test\"}",
	            aud, now - 60, now - 60, now + 3600);
	_cleanup_free_ char *h = b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}");
	_cleanup_free_ char *p = b64url(payload);

	snprintf(jwt, sizeof(jwt), "%s.%s.c2lnbmF0dXJl", h, p);
}

/* POST /{tenant}/oauth2/v2.0/token: the client-credentials answer. */
static void
token_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req), *out = evbuffer_new();
	size_t len = evbuffer_get_length(in);
	_cleanup_free_ char *body = xmalloc(len + 1);

	check(evbuffer_copyout(in, body, len) == (ev_ssize_t)len);
	body[len] = '\0';
	check(strstr(body, "scope=https%3A%2F%2Fstorage.azure.com%2F.default") != NULL);
	check(strstr(evhttp_request_get_uri(req), "/tenant/oauth2/v2.0/token") != NULL);
	token_requests++;
	evbuffer_add_printf(out,
	                    "{\"token_type\":\"Bearer\",\"expires_in\":3599,"
	                    "\"access_token\":\"%s\"}",
	                    jwt);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "application/json");
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

/* Bearer auth with a token from a fake Entra endpoint, against Azurite over TLS. */
static void
test_bearer_ok(void)
{
	struct evhttp *entra = evhttp_new(base);
	struct evhttp_bound_socket *sock;
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);
	char authority[64], ca[PATH_MAX], *err = NULL;
	_cleanup_free_ char *src = NULL;
	struct config c = {
	    .blob_endpoint = tls_endpoint,
	    .tenant_id = (char *)"tenant",
	    .client_id = (char *)"client",
	    .client_secret = {(char *)"secret", 6},
	    .authority_host = authority,
	    .ca_file = ca,
	};
	struct azure *az;
	struct blob_client *bc;
	struct got g = {0};

	check(entra != NULL);
	sock = evhttp_bind_socket_with_handle(entra, "127.0.0.1", 0);
	check(sock != NULL);
	check(getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&sa, &salen) == 0);
	snprintf(authority, sizeof(authority), "http://127.0.0.1:%d", ntohs(sa.sin_port));
	evhttp_set_gencb(entra, token_cb, NULL);
	snprintf(ca, sizeof(ca), "%s/tls/ca.pem", tmpdir);
	make_jwt("https://management.azure.com"); /* not for Storage: refused */
	az = azure_new(base, &c, &err);
	check(az != NULL && err == NULL);
	bc = blob_client_new(NULL, az, &c, &err);
	check(bc != NULL && err == NULL);
	CALL(g, blob_create_container, bc, "bearer");
	check_int(g.error, -EACCES);
	check(g.status == 401 || g.status == 403);
	fprintf(stderr, "token for the wrong audience: %ld %s\n", g.status, g.code);
	blob_client_free(bc);
	azure_free(az);

	make_jwt("https://storage.azure.com");
	token_requests = 0;
	az = azure_new(base, &c, &err);
	check(az != NULL && err == NULL);
	bc = blob_client_new(NULL, az, &c, &err);
	check(bc != NULL && err == NULL);

	CALL(g, blob_create_container, bc, "bearer");
	check_int(g.error, 0);
	check_int(g.status, 201);
	check_int(token_requests, 1);
	upload(bc, "bearer", "with a token", "bearer!", 7); /* the cached token, handed at once */
	CALL(g, blob_get_properties, bc, "bearer", "with a token");
	check_int(g.error, 0);
	check_int(g.props.length, 7);
	src = blob_url(bc, "bearer", "with a token");
	CALL(g, blob_copy, bc, "bearer", "copied", src, "Cool");
	check_int(g.error, 0);
	check_str(g.props.copy_status, "success");
	CALL(g, blob_list, bc, "bearer", NULL, NULL, 0);
	check_int(g.error, 0);
	check_int(g.n_list, 2);
	CALL(g, blob_get_url, bc, src, 100);
	check_int(g.error, 0);
	check_int(g.body_len, 7);
	check_int(token_requests, 1);
	blob_client_free(bc);
	azure_free(az);
	evhttp_free(entra);
	got_clear(&g);
}

static struct blob_client *freed_in_done;

static void
free_client_cb(const struct blob_result *r, void *userdata)
{
	bool *done = userdata;

	*done = true;
	freed_in_done = blob_client_free(freed_in_done);
}

static void
test_cancel(void)
{
	struct config c = cfg_key(endpoint, key_value);
	struct blob_client *bc = client_on(http, &c);
	struct got g = {0};
	bool done = false;

	blob_cancel(blob_get_properties(bc, "import", NAME, never_cb, NULL));
	blob_cancel(blob_get_url(bc, "bad url", 10, never_cb, NULL)); /* a local error too */
	CALL(g, blob_get_properties, bc, "import", NAME);
	check_int(g.error, 0);

	check(blob_list(bc, "import", NULL, NULL, 0, never_cb, NULL) != NULL);
	check(blob_delete(bc, "import", "x", never_cb, NULL) != NULL);
	check(blob_create_container(bc, "", never_cb, NULL) != NULL);
	check(http_in_flight(http) == 3);
	bc = blob_client_free(bc);
	check(http_in_flight(http) == 0);
	run_for_ms(100);

	/* done may free the client, with other calls still in flight */
	freed_in_done = client_on(http, &c);
	check(blob_get_properties(freed_in_done, "import", NAME, free_client_cb, &done) != NULL);
	check(blob_list(freed_in_done, "import", NULL, NULL, 0, never_cb, NULL) != NULL);
	run_until(&done);
	check(freed_in_done == NULL);
	check(http_in_flight(http) == 0);
	run_for_ms(100);
	got_clear(&g);
}

int
main(void)
{
	const char *root = getenv("SOURCE_ROOT");
	char bin[PATH_MAX], cmd[2 * PATH_MAX];
	struct blob_client *bc;
	struct config c;
	char *err = NULL;
	pid_t plain, tls;
	int port, tls_port;

	check(root != NULL);
	snprintf(bin, sizeof(bin), "%s/node_modules/.bin/azurite-blob", root);
	if (access(bin, X_OK) != 0) {
		fprintf(stderr, "%s missing (run npm ci in the source root): skipping\n", bin);
		return TEST_SKIP;
	}
	signal(SIGPIPE, SIG_IGN);
	check(mkdtemp(tmpdir) != NULL);
	snprintf(cmd, sizeof(cmd), "sh %s/tests/azure-sim/mkcert.sh %s/tls", root, tmpdir);
	check(system(cmd) == 0);
	port = free_port();
	tls_port = free_port();
	plain = azurite_start(bin, "azurite-plain", port, false);
	tls = azurite_start(bin, "azurite-tls", tls_port, true);
	snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/" ACCOUNT, port);
	snprintf(tls_endpoint, sizeof(tls_endpoint), "https://127.0.0.1:%d/" ACCOUNT, tls_port);

	log_init(LOG_TARGET_STDERR, LOG_DEBUG);
	capture_log();
	alarm(55);
	base = event_base_new();
	check(base != NULL);
	http = http_new(base, NULL, &err);
	check(http != NULL && err == NULL);
	test_config();
	wait_port(plain, port);
	wait_port(tls, tls_port);

	c = cfg_key(endpoint, key_value);
	bc = client_on(http, &c);
	test_containers(bc);
	test_blocks(bc);
	test_block_list(bc);
	test_get(bc);
	test_list(bc);
	test_copy(bc, "vault");
	test_errors(bc);
	test_sas();
	test_https();
	test_bearer();
	test_bearer_ok();
	test_cancel();
	check(http_in_flight(http) == 0);
	blob_client_free(bc);
	test_log();

	http_free(http);
	event_base_free(base);
	azurite_stop(plain);
	azurite_stop(tls);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	check(system(cmd) == 0);
	return 0;
}
