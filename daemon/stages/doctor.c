/*
 * Doctor (see doctor.h). The Azure checks run on the loop through a client
 * of their own, so the token is fetched now with the secret as it is (not
 * taken from a cache filled before the secret changed), and a reload never
 * pulls the client from under a check. The drives are looked at on a
 * thread: a dead disk stalls that thread, never the loop, and its check
 * ends after DOCTOR_CHECK_SEC all the same. A run answers once every check
 * has ended, on a loop turn of its own, and frees itself when its thread is
 * done too.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "azure-arm.h"
#include "azure-blob.h"
#include "azure-http.h"
#include "config.h"
#include "daemon.h"
#include "db.h"
#include "doctor.h"
#include "drive.h"
#include "log.h"
#include "stagetab.h"
#include "util.h"
#include "worker.h"

#define DOCTOR_ATTEMPTS 2 /* a request is tried at most twice: a person waits */
#define PROBE_TEXT "seedd doctor probe: written and deleted by seedctl doctor\n"
#define PROBE_BLOCK_ID "ZG9jdG9y" /* base64 of "doctor" */
#define DRIVE_PROBE_BYTES 4096
#define CREDENTIALS_HINT                                                                           \
	"the storage credentials (AccountKeyFile=, SasTokenFile= with permissions racwdl, or the "  \
	"app's Storage Blob Data Contributor role) do not allow it"

enum check_id {
	CHECK_TOKEN,
	CHECK_SUBSCRIPTION,
	CHECK_GROUP,
	CHECK_ACCOUNT,
	CHECK_IMPORT,
	CHECK_VAULT,
	_CHECK_MAX,
};

enum check_status { CHECK_PENDING, CHECK_OK, CHECK_FAIL, CHECK_SKIP };

static const char *const status_names[] = {"pending", "ok", "fail", "skip"};

static const char *const check_names[] = {
	[CHECK_TOKEN] = "Entra token",
	[CHECK_SUBSCRIPTION] = "subscription",
	[CHECK_GROUP] = "resource group",
	[CHECK_ACCOUNT] = "storage account",
	[CHECK_IMPORT] = "import container",
	[CHECK_VAULT] = "vault container",
};

/* What each ARM check reads: the key naming it and an api-version Azure serves. */
static const struct {
	const char *key, *api_version;
} arm_targets[] = {
	[CHECK_SUBSCRIPTION] = {"[Azure] SubscriptionId=", "2022-12-01"},
	[CHECK_GROUP] = {"[Azure] ResourceGroup=", "2021-04-01"},
	[CHECK_ACCOUNT] = {"[Storage] AccountId=", "2023-05-01"},
};

/* A container probe: list (read only), or put, commit and delete a blob. */
enum probe_step { PROBE_LIST, PROBE_PUT, PROBE_CREATE, PROBE_COMMIT, PROBE_DELETE };

struct doctor;

struct check {
	struct doctor *doc;
	enum check_id id;
	enum check_status status;
	char *text;
	struct event *timer;
	struct arm_call *arm;
	struct blob_call *blob;
	struct token_waiter *waiter;
	const char *container;
	enum probe_step step;
	bool created;
	char *refusal; /* a write refused: "code: message", while a listing asks if it exists */
};

/* One drive: set by the loop before the thread starts, the result by the thread. */
struct drive_item {
	char *job, *serial, *path, *uuid;
	enum check_status status;
	char *text;
};

struct doctor {
	LIST_ENTRY(doctor) link;
	struct daemon *d;
	bool write;
	doctor_done_fn done;
	void *userdata;
	struct azure *az;
	struct blob_client *bc;
	char *probe_name;
	struct check checks[_CHECK_MAX];
	struct drive_item *drives;
	size_t n_drives;
	atomic_size_t drives_done; /* drives[0, drives_done) have their result */
	struct worker_thread w;
	bool thread_started, thread_ended, drives_timed_out, answered;
	struct event *drive_timer, *finish;
};

struct doctor_msg {
	struct worker_msg m;
	struct doctor *doc;
};

static void maybe_finish(struct doctor *doc);

/* ---- checks ------------------------------------------------------------------ */

/* The first line of an Azure message (Entra's carry "\r\nTrace ID: ..."). */
static char *
first_line(const char *s)
{
	if (s == NULL)
		return xstrdup("no message");
	return xstrndup(s, strcspn(s, "\r\n"));
}

static void check_set(struct check *ck, enum check_status st, const char *fmt, ...) _printf_(3, 4);

/* End a check (once; later calls are ignored) with its status and text. */
static void
check_set(struct check *ck, enum check_status st, const char *fmt, ...)
{
	va_list ap;

	if (ck->status != CHECK_PENDING)
		return;
	ck->status = st;
	va_start(ap, fmt);
	if (vasprintf(&ck->text, fmt, ap) < 0)
		fatalx("vasprintf: out of memory");
	va_end(ap);
	if (ck->timer != NULL)
		evtimer_del(ck->timer);
	maybe_finish(ck->doc);
}

/* Stop whatever the check has in flight; no callback follows. */
static void
check_cancel(struct check *ck)
{
	arm_cancel(ck->arm);
	ck->arm = NULL;
	blob_cancel(ck->blob);
	ck->blob = NULL;
	azure_token_cancel(ck->waiter);
	ck->waiter = NULL;
}

static void
check_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct check *ck = arg;

	check_cancel(ck);
	check_set(ck, CHECK_FAIL,
		  "no answer within %d s: check the network, a proxy or a firewall between this "
		  "machine and Azure, and RequestTimeoutSec=",
		  DOCTOR_CHECK_SEC);
	if (ck->id == CHECK_TOKEN)
		for (int i = CHECK_SUBSCRIPTION; i <= CHECK_ACCOUNT; i++)
			check_set(&ck->doc->checks[i], CHECK_SKIP, "needs an Entra token (above)");
}

static void
check_arm_timer(struct check *ck)
{
	struct timeval tv = {DOCTOR_CHECK_SEC, 0};

	if (ck->timer == NULL)
		ck->timer = evtimer_new(ck->doc->d->base, check_timeout_cb, ck);
	evtimer_add(ck->timer, &tv);
}

/* ---- Resource Manager -------------------------------------------------------- */

static const char *
jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "?";
}

/* What an ARM read that worked found; a subscription that is not Enabled fails. */
static void
arm_ok(struct check *ck, json_t *body)
{
	const struct config *c = ck->doc->d->config;
	const char *state = json_string_value(json_object_get(body, "state"));
	const char *name = jstr(body, "name");

	switch (ck->id) {
	case CHECK_SUBSCRIPTION:
		if (state != NULL && strcmp(state, "Enabled") != 0)
			check_set(ck, CHECK_FAIL,
				  "subscription %s (%s) is %s: Azure takes no new jobs in it; "
				  "enable it, or set SubscriptionId= to one that is Enabled",
				  jstr(body, "displayName"), c->subscription_id, state);
		else
			check_set(ck, CHECK_OK, "%s (%s), %s", jstr(body, "displayName"),
				  c->subscription_id, state != NULL ? state : "state not reported");
		break;
	case CHECK_GROUP:
		check_set(ck, CHECK_OK, "%s in %s", name, jstr(body, "location"));
		break;
	default:
		if (c->account_name != NULL && strcasecmp(name, c->account_name) != 0)
			check_set(ck, CHECK_FAIL,
				  "AccountId= names storage account %s, AccountName= says %s: make "
				  "both name the account the drives are imported into",
				  name, c->account_name);
		else
			check_set(ck, CHECK_OK, "%s (%s, %s)", name, jstr(body, "kind"),
				  jstr(body, "location"));
	}
}

static void
arm_done_cb(const struct arm_result *r, void *userdata)
{
	struct check *ck = userdata;
	const struct config *c = ck->doc->d->config;
	_cleanup_free_ char *msg = first_line(r->message);
	const char *key = arm_targets[ck->id].key, *code = r->code ? r->code : "no code";

	ck->arm = NULL;
	if (r->error == 0 && r->status >= 200 && r->status < 300)
		arm_ok(ck, r->body);
	else if (r->status == 404)
		check_set(ck, CHECK_FAIL, "not found (%s: %s): check %s", code, msg, key);
	else if (r->status == 401 || r->status == 403)
		check_set(ck, CHECK_FAIL,
			  "Azure refused to show it (%s: %s): give the app ClientId=%s a role that "
			  "can read it (Reader at least; creating jobs needs Contributor on the "
			  "resource group), or check %s",
			  code, msg, c->client_id, key);
	else if (r->status == 0)
		check_set(ck, CHECK_FAIL,
			  "cannot reach Resource Manager at %s (%s): check "
			  "ResourceManagerEndpoint=, the network and CAFile=",
			  c->resource_manager_endpoint, msg);
	else
		check_set(ck, CHECK_FAIL, "HTTP %ld from Resource Manager (%s: %s); check %s",
			  r->status, code, msg, key);
}

static void
arm_start(struct doctor *doc)
{
	const struct config *c = doc->d->config;
	_cleanup_free_ char *sub = xprintf("/subscriptions/%s", c->subscription_id);
	_cleanup_free_ char *rg =
	    xprintf("/subscriptions/%s/resourcegroups/%s", c->subscription_id, c->resource_group);
	const char *paths[] = {[CHECK_SUBSCRIPTION] = sub, [CHECK_GROUP] = rg,
			       [CHECK_ACCOUNT] = c->account_id};

	for (int i = CHECK_SUBSCRIPTION; i <= CHECK_ACCOUNT; i++) {
		struct check *ck = &doc->checks[i];
		check_arm_timer(ck);
		ck->arm = arm_request(doc->az, "GET", paths[i], arm_targets[i].api_version, NULL, 0,
				      arm_done_cb, ck);
	}
}

static void
token_cb(const char *token, const char *code, const char *message, void *userdata)
{
	struct check *ck = userdata;
	struct doctor *doc = ck->doc;
	const struct config *c = doc->d->config;
	_cleanup_free_ char *msg = first_line(message);

	ck->waiter = NULL;
	if (token == NULL) {
		check_set(ck, CHECK_FAIL,
			  "no token for ClientId=%s in TenantId=%s from %s (%s: %s): check "
			  "ClientSecretFile= (the secret's value, not its id, and not expired), "
			  "ClientId= and TenantId=",
			  c->client_id, c->tenant_id, c->authority_host, code ? code : "no code", msg);
		for (int i = CHECK_SUBSCRIPTION; i <= CHECK_ACCOUNT; i++)
			check_set(&doc->checks[i], CHECK_SKIP, "needs an Entra token (above)");
		return;
	}
	check_set(ck, CHECK_OK, "for ClientId=%s from %s", c->client_id, c->authority_host);
	arm_start(doc);
}

static void
azure_checks_start(struct doctor *doc)
{
	const struct config *c = doc->d->config;
	const char *missing = config_azure_missing(c);
	_cleanup_free_ char *err = NULL, *scope = NULL;
	struct check *ck = &doc->checks[CHECK_TOKEN];

	if (missing == NULL && (doc->az = azure_new(doc->d->base, c, &err)) == NULL)
		check_set(ck, CHECK_FAIL, "cannot set up the Azure client: %s", err);
	else if (missing != NULL)
		check_set(ck, CHECK_FAIL,
			  "Azure is not configured: %s= is not set (seedd.conf(5); seedd --check-config "
			  "shows what is)",
			  missing);
	if (ck->status != CHECK_PENDING) {
		for (int i = CHECK_SUBSCRIPTION; i <= CHECK_ACCOUNT; i++)
			check_set(&doc->checks[i], CHECK_SKIP, "needs the Azure settings (above)");
		return;
	}
	http_set_max_attempts(azure_http(doc->az), DOCTOR_ATTEMPTS);
	scope = azure_arm_scope(c);
	check_arm_timer(ck);
	ck->waiter = azure_token(doc->az, scope, token_cb, ck);
}

/* ---- containers -------------------------------------------------------------- */

static void probe_cb(const struct blob_result *r, void *userdata);

static void
probe_send(struct check *ck, enum probe_step step)
{
	struct doctor *doc = ck->doc;
	const char *id = PROBE_BLOCK_ID;
	unsigned char md5[16];

	ck->step = step;
	switch (step) {
	case PROBE_LIST:
		ck->blob = blob_list(doc->bc, ck->container, "seedd-doctor-", NULL, 1, probe_cb, ck);
		break;
	case PROBE_CREATE:
		ck->blob = blob_create_container(doc->bc, ck->container, probe_cb, ck);
		break;
	case PROBE_PUT:
		if (EVP_Digest(PROBE_TEXT, strlen(PROBE_TEXT), md5, NULL, EVP_md5(), NULL) != 1)
			fatalx("MD5 failed");
		ck->blob = blob_put_block(doc->bc, ck->container, doc->probe_name, id, PROBE_TEXT,
					  strlen(PROBE_TEXT), md5, probe_cb, ck);
		break;
	case PROBE_COMMIT:
		if (EVP_Digest(PROBE_TEXT, strlen(PROBE_TEXT), md5, NULL, EVP_md5(), NULL) != 1)
			fatalx("MD5 failed");
		ck->blob = blob_put_block_list(doc->bc, ck->container, doc->probe_name, &id, 1, md5,
					       probe_cb, ck);
		break;
	case PROBE_DELETE:
		ck->blob = blob_delete(doc->bc, ck->container, doc->probe_name, probe_cb, ck);
		break;
	}
}

static const char *const probe_doing[] = {
	[PROBE_LIST] = "list",
	[PROBE_PUT] = "write to",
	[PROBE_CREATE] = "create",
	[PROBE_COMMIT] = "write to",
	[PROBE_DELETE] = "delete a blob in",
};

/* A probe step failed: what to fix, by what Azure (or the network) said. */
static void
probe_failed(struct check *ck, const struct blob_result *r)
{
	_cleanup_free_ char *msg = first_line(r->message);
	_cleanup_free_ char *url = blob_url(ck->doc->bc, ck->container, NULL);
	_cleanup_free_ char *where = http_url_authority(url);
	const char *code = r->code ? r->code : "no code";

	if (r->status == 0)
		check_set(ck, CHECK_FAIL,
			  "cannot reach the blob endpoint %s (%s): check [Storage] BlobEndpoint= or "
			  "AccountName=, the network and CAFile=",
			  where, msg);
	else if (r->status == 404 && ck->step != PROBE_DELETE)
		check_set(ck, CHECK_FAIL,
			  "container %s does not exist (%s)%s; check the container name and "
			  "[Storage] AccountName=/BlobEndpoint=",
			  ck->container, code,
			  ck->doc->write ? "" : "; seedctl doctor run as root creates it");
	else if (r->status == 401 || r->status == 403)
		check_set(ck, CHECK_FAIL,
			  "may not %s container %s (%s: %s): " CREDENTIALS_HINT,
			  probe_doing[ck->step], ck->container, code, msg);
	else
		check_set(ck, CHECK_FAIL, "cannot %s container %s: HTTP %ld (%s: %s)",
			  probe_doing[ck->step], ck->container, r->status, code, msg);
}

/* The listing after a refused write: is the container missing too? */
static void
refusal_listed(struct check *ck, const struct blob_result *r)
{
	if (r->error == 0)
		check_set(ck, CHECK_FAIL, "may not write to container %s (%s): " CREDENTIALS_HINT,
			  ck->container, ck->refusal);
	else if (r->status == 404)
		check_set(ck, CHECK_FAIL,
			  "container %s does not exist, and may neither be created nor written to "
			  "(%s): create it, or give seedd credentials that may (%s)",
			  ck->container, ck->refusal, "SasTokenFile= with permissions racwdl");
	else
		probe_failed(ck, r);
}

static void
probe_cb(const struct blob_result *r, void *userdata)
{
	struct check *ck = userdata;

	ck->blob = NULL;
	if (r->error != 0 && ck->step == PROBE_PUT && (r->status == 401 || r->status == 403) &&
	    ck->refusal == NULL) {
		/* Azure checks rights before the container: a refusal hides a missing one. */
		_cleanup_free_ char *msg = first_line(r->message);
		ck->refusal = xprintf("%s: %s", r->code ? r->code : "no code", msg);
		probe_send(ck, PROBE_LIST);
		return;
	}
	if (ck->step == PROBE_LIST && ck->refusal != NULL) {
		refusal_listed(ck, r);
		return;
	}
	if (r->error != 0 && ck->step == PROBE_PUT && r->status == 404 && !ck->created) {
		probe_send(ck, PROBE_CREATE); /* as seedd creates the vault before copying */
		return;
	}
	if (r->error != 0) {
		probe_failed(ck, r);
		return;
	}
	switch (ck->step) {
	case PROBE_LIST:
		check_set(ck, CHECK_OK, "%s is readable (writing is tried for root or AdminGroup= "
					"only)",
			  ck->container);
		break;
	case PROBE_CREATE:
		ck->created = true;
		probe_send(ck, PROBE_PUT);
		break;
	case PROBE_PUT:
		probe_send(ck, PROBE_COMMIT);
		break;
	case PROBE_COMMIT:
		probe_send(ck, PROBE_DELETE);
		break;
	case PROBE_DELETE:
		check_set(ck, CHECK_OK, "%s: %sa probe blob written and deleted", ck->container,
			  ck->created ? "created it; " : "");
		break;
	}
}

static void
probe_start(struct doctor *doc, enum check_id id, const char *container)
{
	struct check *ck = &doc->checks[id];

	if (container == NULL) {
		check_set(ck, CHECK_FAIL,
			  "[Vault] Container= is not set: the vault copy after the import fails "
			  "without it");
		return;
	}
	ck->container = container;
	check_arm_timer(ck);
	probe_send(ck, doc->write ? PROBE_PUT : PROBE_LIST);
}

static void
storage_checks_start(struct doctor *doc)
{
	const struct config *c = doc->d->config;
	_cleanup_free_ char *err = NULL;
	unsigned char rnd[8];
	char hex[sizeof(rnd) * 2 + 1];

	if (doc->az != NULL)
		doc->bc = blob_client_new(azure_http(doc->az), doc->az, c, &err);
	else if (config_azure_missing(c) != NULL)
		err = xprintf("the storage account needs the [Azure] settings too (%s= is not set)",
			      config_azure_missing(c));
	if (doc->bc == NULL) {
		check_set(&doc->checks[CHECK_IMPORT], CHECK_FAIL, "no storage client: %s",
			  err ? err : "[Storage] is incomplete");
		check_set(&doc->checks[CHECK_VAULT], CHECK_FAIL, "no storage client: %s",
			  err ? err : "[Storage] is incomplete");
		return;
	}
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		memset(rnd, 0, sizeof(rnd));
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
	/* No '/': no job's blob ("<job>/<path>") can have this name. */
	doc->probe_name = xprintf("seedd-doctor-%s.probe", hex);
	probe_start(doc, CHECK_IMPORT, c->import_container);
	probe_start(doc, CHECK_VAULT, c->vault_container);
}

/* ---- drives (thread) ------------------------------------------------------- */

/* Write, sync and remove a small file in <job>/.seedd-tmp, removing what it made. */
static int
drive_write_probe(int root, const char *job)
{
	static const char tmp[] = ".seedd-tmp";
	char name[64], buf[DRIVE_PROBE_BYTES] = {0};
	bool made_job = false, made_tmp = false;
	int jfd = -1, tfd = -1, fd = -1, r = 0;

	snprintf(name, sizeof(name), "doctor-%d.probe", (int)getpid());
	if (mkdirat(root, job, 0755) == 0)
		made_job = true;
	else if (errno != EEXIST)
		return -errno;
	if ((jfd = openat(root, job, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		r = -errno;
	else if (mkdirat(jfd, tmp, 0755) == 0)
		made_tmp = true;
	else if (errno != EEXIST)
		r = -errno;
	if (r == 0 && (tfd = openat(jfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		r = -errno;
	if (r == 0 &&
	    (fd = openat(tfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
		r = -errno;
	if (r == 0 && write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		r = errno != 0 ? -errno : -EIO;
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (fd >= 0) {
		close(fd);
		(void)unlinkat(tfd, name, 0);
	}
	if (tfd >= 0)
		close(tfd);
	if (made_tmp)
		(void)unlinkat(jfd, tmp, AT_REMOVEDIR); /* fails if a copy put files there: fine */
	if (jfd >= 0)
		close(jfd);
	if (made_job)
		(void)unlinkat(root, job, AT_REMOVEDIR);
	return r;
}

static void drive_set(struct drive_item *it, enum check_status st, const char *fmt, ...)
	_printf_(3, 4);

static void
drive_set(struct drive_item *it, enum check_status st, const char *fmt, ...)
{
	va_list ap;

	it->status = st;
	va_start(ap, fmt);
	if (vasprintf(&it->text, fmt, ap) < 0)
		fatalx("vasprintf: out of memory");
	va_end(ap);
}

/* Is the drive there (its marker, with the uuid seedd wrote), writable, and how full? */
static void
drive_look(struct drive_item *it, int fd, bool write)
{
	_cleanup_free_ char *job = NULL, *uuid = NULL;
	struct statvfs sv;
	char free_text[32];
	int r;

	if ((r = drive_marker_read(fd, &job, &uuid)) == -ENOENT)
		drive_set(it, CHECK_FAIL,
			  "%s has no seedd marker: the drive is not mounted there; mount drive %s "
			  "at %s",
			  it->path, it->serial, it->path);
	else if (r < 0)
		drive_set(it, CHECK_FAIL, "cannot read seedd's marker in %s: %s", it->path,
			  strerror(-r));
	else if (strcmp(job, it->job) != 0 || (it->uuid != NULL && strcmp(uuid, it->uuid) != 0))
		drive_set(it, CHECK_FAIL,
			  "%s holds another drive (its marker names job %s): mount drive %s there",
			  it->path, job, it->serial);
	else if (fstatvfs(fd, &sv) < 0)
		drive_set(it, CHECK_FAIL, "cannot stat %s: %s", it->path, strerror(errno));
	else if (sv.f_flag & ST_RDONLY)
		drive_set(it, CHECK_FAIL,
			  "%s is mounted read-only: remount it read-write (ntfs-3g mounts a "
			  "hibernated or unclean NTFS volume read-only: shut Windows down fully, or "
			  "run ntfsfix)",
			  it->path);
	else if (write && (r = drive_write_probe(fd, it->job)) < 0)
		drive_set(it, CHECK_FAIL, "cannot write on %s: %s%s", it->path, strerror(-r),
			  drive_write_hint(r));
	else {
		format_iec((int64_t)sv.f_bavail * (int64_t)sv.f_frsize, free_text);
		drive_set(it, CHECK_OK, "%s, %s free; %s", it->path, free_text,
			  write ? "a probe file written and removed"
				: "writing is tried for root or AdminGroup= only");
	}
}

static void
doctor_msg_free(struct worker_msg *m)
{
	free(m);
}

static void *
drive_thread(void *arg)
{
	struct doctor *doc = arg;
	struct doctor_msg *dm = xcalloc(1, sizeof(*dm));

	atomic_store(&doc->w.busy, true);
	for (size_t i = 0; i < doc->n_drives && !atomic_load(&doc->w.cancel); i++) {
		struct drive_item *it = &doc->drives[i];
		int fd = open(it->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		worker_thread_beat(&doc->w);
		if (fd < 0)
			drive_set(it, CHECK_FAIL, "%s: %s: mount drive %s there", it->path,
				  strerror(errno), it->serial);
		else {
			drive_look(it, fd, doc->write);
			close(fd);
		}
		atomic_store(&doc->drives_done, i + 1);
	}
	atomic_store(&doc->w.busy, false);
	dm->m.kind = MSG_DOCTOR_DONE;
	dm->m.free_fn = doctor_msg_free;
	dm->doc = doc;
	worker_queue_push(doc->d->queue, &dm->m);
	return NULL;
}

static void
drive_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct doctor *doc = arg;

	doc->drives_timed_out = true;
	maybe_finish(doc);
}

/*
 * Will seedd write to this job's drives? In staging (once prepared) and
 * while drive prep copies; once the manifests are written the drives may
 * be unmounted and packed, and no one should be told to mount them again.
 */
static bool
job_writes_drives(const struct job_row *j)
{
	enum job_phase ph = job_phase_from_text(j->phase);

	if (j->state == JOB_STAGING)
		return true;
	return j->state == JOB_DRIVE_PREP &&
	       (ph == JOB_PHASE_NONE || ph == JOB_PHASE_COPYING ||
		ph == JOB_PHASE_WRITING_MANIFESTS || ph == JOB_PHASE_NEEDS_DRIVE);
}

/* The drives seedd is still to write: of the jobs above, those without their manifest. */
static void
drives_collect(struct doctor *doc)
{
	struct job_row **jobs = NULL;
	struct drive_row *rows = NULL;
	size_t n_jobs = 0, n_rows = 0;

	if (db_job_list(doc->d->db, &jobs, &n_jobs) < 0)
		return;
	for (size_t i = 0; i < n_jobs; i++) {
		if (!job_writes_drives(jobs[i]))
			continue;
		if (db_drive_list(doc->d->db, jobs[i]->id, &rows, &n_rows) < 0)
			continue;
		doc->drives = xreallocarray(doc->drives, doc->n_drives + n_rows, sizeof(*doc->drives));
		for (size_t k = 0; k < n_rows; k++) {
			if (rows[k].state != NULL && strcmp(rows[k].state, "manifest-written") == 0)
				continue;
			doc->drives[doc->n_drives++] = (struct drive_item){
			    .job = xstrdup(jobs[i]->name),
			    .serial = xstrdup(rows[k].serial),
			    .path = xstrdup(rows[k].path),
			    .uuid = rows[k].uuid ? xstrdup(rows[k].uuid) : NULL,
			};
		}
		drive_rows_free(rows, n_rows);
		rows = NULL;
	}
	job_rows_free(jobs, n_jobs);
}

static void
drive_checks_start(struct doctor *doc)
{
	struct timeval tv = {DOCTOR_CHECK_SEC, 0};

	drives_collect(doc);
	if (doc->n_drives == 0)
		return;
	doc->drive_timer = evtimer_new(doc->d->base, drive_timeout_cb, doc);
	evtimer_add(doc->drive_timer, &tv);
	if (worker_thread_start(&doc->w, drive_thread, doc) < 0) {
		for (size_t i = 0; i < doc->n_drives; i++)
			drive_set(&doc->drives[i], CHECK_FAIL, "cannot start a thread to look");
		atomic_store(&doc->drives_done, doc->n_drives);
		doc->thread_ended = true;
		return;
	}
	doc->thread_started = true;
}

/* ---- the answer -------------------------------------------------------------- */

static json_t *
check_json(const char *name, enum check_status st, const char *text)
{
	return json_pack("{s:s,s:s,s:s}", "name", name, "status", status_names[st], "text",
			 text != NULL ? text : "");
}

static json_t *
doctor_json(struct doctor *doc)
{
	json_t *a = json_array();
	size_t done = atomic_load(&doc->drives_done);

	for (int i = 0; i < _CHECK_MAX; i++)
		json_array_append_new(a, check_json(check_names[i], doc->checks[i].status,
						    doc->checks[i].text));
	if (doc->n_drives == 0)
		json_array_append_new(a, check_json("drives", CHECK_OK,
						     "no drive waits to be written (none attached to a "
						     "job in staging or copying)"));
	for (size_t i = 0; i < doc->n_drives; i++) {
		struct drive_item *it = &doc->drives[i];
		_cleanup_free_ char *name = xprintf("drive %s (%s)", it->serial, it->job);
		_cleanup_free_ char *late = xprintf(
		    "no answer within %d s: the drive or its file system hangs (a failing disk, "
		    "a stuck FUSE mount); see dmesg",
		    DOCTOR_CHECK_SEC);

		if (i < done)
			json_array_append_new(a, check_json(name, it->status, it->text));
		else
			json_array_append_new(a, check_json(name, CHECK_FAIL, late));
	}
	return a;
}

static void
doctor_free(struct doctor *doc)
{
	LIST_REMOVE(doc, link);
	if (doc->thread_started)
		worker_thread_stop(&doc->w);
	for (int i = 0; i < _CHECK_MAX; i++) {
		check_cancel(&doc->checks[i]);
		if (doc->checks[i].timer != NULL)
			event_free(doc->checks[i].timer);
		free(doc->checks[i].text);
		free(doc->checks[i].refusal);
	}
	doc->bc = blob_client_free(doc->bc);
	doc->az = azure_free(doc->az);
	for (size_t i = 0; i < doc->n_drives; i++) {
		free(doc->drives[i].job);
		free(doc->drives[i].serial);
		free(doc->drives[i].path);
		free(doc->drives[i].uuid);
		free(doc->drives[i].text);
	}
	free(doc->drives);
	if (doc->drive_timer != NULL)
		event_free(doc->drive_timer);
	if (doc->finish != NULL)
		event_free(doc->finish);
	free(doc->probe_name);
	free(doc);
}

/* Answer now: every check still open fails with why. Then the clients go. */
static void
doctor_answer(struct doctor *doc, const char *why)
{
	json_t *checks;

	if (doc->answered)
		return;
	doc->answered = true;
	for (int i = 0; i < _CHECK_MAX; i++) {
		check_cancel(&doc->checks[i]);
		if (why != NULL)
			check_set(&doc->checks[i], CHECK_FAIL, "%s", why);
	}
	checks = doctor_json(doc);
	doc->done(checks, doc->userdata);
	json_decref(checks);
	doc->bc = blob_client_free(doc->bc);
	doc->az = azure_free(doc->az);
	if (doc->drive_timer != NULL)
		evtimer_del(doc->drive_timer);
}

static void
finish_cb(evutil_socket_t fd, short what, void *arg)
{
	struct doctor *doc = arg;

	doctor_answer(doc, NULL);
	if (!doc->thread_started || doc->thread_ended)
		doctor_free(doc);
}

/* Every check ended (the drives: done or out of time)? Answer on a turn of its own. */
static void
maybe_finish(struct doctor *doc)
{
	struct timeval zero = {0, 0};

	if (doc->answered || doc->finish == NULL)
		return;
	for (int i = 0; i < _CHECK_MAX; i++)
		if (doc->checks[i].status == CHECK_PENDING)
			return;
	if (doc->thread_started && !doc->thread_ended && !doc->drives_timed_out)
		return;
	evtimer_add(doc->finish, &zero);
}

void
doctor_start(struct daemon *d, bool write, doctor_done_fn done, void *userdata)
{
	struct doctor *doc = xcalloc(1, sizeof(*doc));

	doc->d = d;
	doc->write = write;
	doc->done = done;
	doc->userdata = userdata;
	for (int i = 0; i < _CHECK_MAX; i++) {
		doc->checks[i].doc = doc;
		doc->checks[i].id = (enum check_id)i;
	}
	LIST_INSERT_HEAD(&d->doctors, doc, link);
	azure_checks_start(doc);
	storage_checks_start(doc);
	drive_checks_start(doc);
	/* Created last: nothing answers before every check has started. */
	doc->finish = evtimer_new(d->base, finish_cb, doc);
	maybe_finish(doc);
}

void
doctor_handle_msg(struct daemon *d, struct worker_msg *m)
{
	struct doctor *doc = ((struct doctor_msg *)m)->doc;

	worker_thread_stop(&doc->w);
	doc->thread_ended = true;
	if (doc->answered)
		doctor_free(doc);
	else
		maybe_finish(doc);
}

void
doctor_stop_all(struct daemon *d)
{
	struct doctor *doc, *next;

	for (doc = LIST_FIRST(&d->doctors); doc != NULL; doc = next) {
		next = LIST_NEXT(doc, link);
		doctor_answer(doc, "seedd stopped or reloaded its configuration meanwhile: run "
				   "seedctl doctor again");
		if (!doc->thread_started || doc->thread_ended)
			doctor_free(doc);
		else if (d->stopping)
			worker_thread_stop(&doc->w); /* its message comes in the final drain */
		else
			atomic_store(&doc->w.cancel, true); /* a hung drive must not stall a reload */
	}
}

bool
doctor_healthy(struct daemon *d, int64_t max_age, const char **ret_what)
{
	struct doctor *doc;

	LIST_FOREACH(doc, &d->doctors, link)
		if (doc->thread_started && !doc->thread_ended &&
		    !worker_thread_healthy(&doc->w, max_age)) {
			*ret_what = "a doctor's look at the drives";
			return false;
		}
	return true;
}
