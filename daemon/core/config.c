/*
 * seedd.conf(5) loader: reads the file into memory, feeds it line by line to
 * inih through a reader that counts lines (Debian's libinih is built without
 * INI_HANDLER_LINENO), checks every key against one table, then applies the
 * cloud presets and reads the secrets. Runs on the loop thread, at start and
 * on SIGHUP; the result is a new struct config, never a half-changed one.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "log.h"
#include "seedd-build.h"

#define CONFIG_MAX_SIZE (1024 * 1024)
#define CONFIG_MAX_LINE 4096
#define SECRET_MAX_SIZE (64 * 1024)

enum key_type {
	KEY_STRING,    /* free text, valid UTF-8, no control characters */
	KEY_PATH,      /* absolute path */
	KEY_URL,       /* config_url_allowed() */
	KEY_BOOL,      /* yes/no/true/false/1/0/on/off */
	KEY_UINT,      /* decimal in [min, max] */
	KEY_CLOUD,     /* enum azure_cloud */
	KEY_JOB_API,   /* enum job_api */
	KEY_TIER,      /* Hot, Cool, Cold, Archive */
	KEY_GROUP,     /* a group name, resolved */
	KEY_CONTAINER, /* config_container_valid() */
	KEY_SIZE,      /* bytes, optionally with K, M, G or T (1024-based), in [min, max] or 0 */
	KEY_EXEC,      /* absolute path of an executable regular file */
};

struct key_def {
	const char *section;
	const char *name;
	enum key_type type;
	size_t offset;     /* of the field in struct config */
	const char *deflt; /* applied before parsing and for an empty value; NULL: unset */
	uint64_t min, max; /* KEY_UINT and KEY_SIZE only */
};

/* clang-format off */
#define KEY(s, n, t, f, d) { s, n, t, offsetof(struct config, f), d, 0, 0 }
#define KEY_RANGE(s, n, f, d, lo, hi) { s, n, KEY_UINT, offsetof(struct config, f), d, lo, hi }
#define KEY_BYTES(s, n, f, d, lo, hi) { s, n, KEY_SIZE, offsetof(struct config, f), d, lo, hi }
#define KiB 1024ull

static const struct key_def config_keys[] = {
	KEY("Daemon", "AdminGroup", KEY_GROUP, admin_group, NULL),
	KEY_RANGE("Daemon", "PollIntervalSec", poll_interval_sec, "900", 1, 86400),
	KEY("Daemon", "MetricsFile", KEY_PATH, metrics_file, NULL),
	KEY_RANGE("Daemon", "UnreadTimeoutSec", unread_timeout_sec, "60", 1, 3600),
	KEY("Daemon", "NotifyCommand", KEY_EXEC, notify_command, NULL),
	KEY_RANGE("Daemon", "NotifyTimeoutSec", notify_timeout_sec, "30", 1, 3600),

	KEY("Azure", "Cloud", KEY_CLOUD, cloud, "AzurePublic"),
	KEY("Azure", "JobApi", KEY_JOB_API, job_api, "DataBox"),
	KEY("Azure", "TenantId", KEY_STRING, tenant_id, NULL),
	KEY("Azure", "ClientId", KEY_STRING, client_id, NULL),
	KEY("Azure", "ClientSecretFile", KEY_PATH, client_secret_file, NULL),
	KEY("Azure", "SubscriptionId", KEY_STRING, subscription_id, NULL),
	KEY("Azure", "ResourceGroup", KEY_STRING, resource_group, NULL),
	KEY("Azure", "Location", KEY_STRING, location, NULL),
	KEY("Azure", "AuthorityHost", KEY_URL, authority_host, NULL),
	KEY("Azure", "ResourceManagerEndpoint", KEY_URL, resource_manager_endpoint, NULL),
	KEY("Azure", "CAFile", KEY_PATH, ca_file, NULL),
	KEY_RANGE("Azure", "OperationPollSec", operation_poll_sec, "5", 1, 300),
	KEY_RANGE("Azure", "RequestTimeoutSec", request_timeout_sec, "60", 1, 600),

	KEY("Storage", "AccountId", KEY_STRING, account_id, NULL),
	KEY("Storage", "AccountName", KEY_STRING, account_name, NULL),
	KEY("Storage", "AccountKeyFile", KEY_PATH, account_key_file, NULL),
	KEY("Storage", "SasTokenFile", KEY_PATH, sas_token_file, NULL),
	KEY("Storage", "BlobEndpoint", KEY_URL, blob_endpoint, NULL),
	KEY("Storage", "ImportContainer", KEY_CONTAINER, import_container, "seedd-import"),

	KEY("Vault", "Container", KEY_CONTAINER, vault_container, NULL),
	KEY("Vault", "AccessTier", KEY_TIER, access_tier, "Cool"),

	KEY("Shipping", "ContactName", KEY_STRING, contact_name, NULL),
	KEY("Shipping", "Phone", KEY_STRING, phone, NULL),
	KEY("Shipping", "Email", KEY_STRING, email, NULL),
	KEY("Shipping", "CompanyName", KEY_STRING, company_name, NULL),
	KEY("Shipping", "StreetAddress1", KEY_STRING, street_address1, NULL),
	KEY("Shipping", "StreetAddress2", KEY_STRING, street_address2, NULL),
	KEY("Shipping", "City", KEY_STRING, city, NULL),
	KEY("Shipping", "StateOrProvince", KEY_STRING, state_or_province, NULL),
	KEY("Shipping", "PostalCode", KEY_STRING, postal_code, NULL),
	KEY("Shipping", "Country", KEY_STRING, country, NULL),
	KEY("Shipping", "ReturnCarrier", KEY_STRING, return_carrier, NULL),
	KEY("Shipping", "ReturnCarrierAccountNumberFile", KEY_PATH,
	    return_carrier_account_number_file, NULL),

	KEY("Drives", "RequireNTFS", KEY_BOOL, require_ntfs, "yes"),
	KEY("Drives", "RequireBitLocker", KEY_BOOL, require_bitlocker, "yes"),
	KEY("Drives", "Verify", KEY_BOOL, verify, "yes"),
	KEY_RANGE("Drives", "ShipDeadlineDays", ship_deadline_days, "14", 1, 90),
	KEY_RANGE("Drives", "ReceiveWarnDays", receive_warn_days, "10", 1, 90),
	/* 0: no cap; else from 64 KiB/s, so one 4 MiB block waits at most a minute. */
	KEY_BYTES("Drives", "ReadBandwidthMax", read_bandwidth_max, "0", 64 * KiB,
		  64 * KiB * KiB * KiB * KiB),
};
/* clang-format on */

static const char *const config_sections[] = {
    "Daemon", "Azure", "Storage", "Vault", "Shipping", "Drives",
};

static const char *const cloud_names[] = {
    [CLOUD_AZURE_PUBLIC] = "AzurePublic",
    [CLOUD_AZURE_CHINA] = "AzureChina",
    [CLOUD_AZURE_US_GOVERNMENT] = "AzureUSGovernment",
    [CLOUD_CUSTOM] = "Custom",
};

/* Entra ID authority and ARM endpoint of each named cloud. */
static const struct {
	const char *authority_host;
	const char *resource_manager;
} cloud_presets[] = {
    [CLOUD_AZURE_PUBLIC] = {"https://login.microsoftonline.com", "https://management.azure.com"},
    [CLOUD_AZURE_CHINA] = {"https://login.chinacloudapi.cn", "https://management.chinacloudapi.cn"},
    [CLOUD_AZURE_US_GOVERNMENT] = {"https://login.microsoftonline.us",
                                   "https://management.usgovcloudapi.net"},
};

static const char *const job_api_names[] = {
    [JOB_API_DATABOX] = "DataBox",
    [JOB_API_IMPORTEXPORT] = "ImportExport",
};

static const char *const access_tiers[] = {"Hot", "Cool", "Cold", "Archive"};

/* Each secret: the *File key naming it and its systemd credential name. */
#define SECRET(s, k, file, secret, cred)                                                           \
	{                                                                                          \
		s, k, offsetof(struct config, file), offsetof(struct config, secret), cred         \
	}
static const struct {
	const char *section, *file_key;
	size_t file_offset, secret_offset;
	const char *credential;
} config_secrets[] = {
    SECRET("Azure", "ClientSecretFile", client_secret_file, client_secret, "azure-client-secret"),
    SECRET("Storage", "AccountKeyFile", account_key_file, account_key, "storage-account-key"),
    SECRET("Storage", "SasTokenFile", sas_token_file, sas_token, "storage-sas-token"),
    SECRET("Shipping", "ReturnCarrierAccountNumberFile", return_carrier_account_number_file,
           return_carrier_account_number, "return-carrier-account-number"),
};

/* State of one parse: the file in memory, the reader's position, errors. */
struct parse_ctx {
	struct config *c;
	const char *path; /* for messages */
	const char *buf;
	size_t len, pos;
	unsigned lineno;                        /* line the reader handed out last */
	unsigned seen[ELEMENTSOF(config_keys)]; /* line of each key, 0 if unset */
	char *err;                              /* first error, "path:line: text" */
};

#define FIELD(c, off, type) ((type *)(void *)((char *)(c) + (off)))

static int parse_error(struct parse_ctx *p, unsigned line, const char *fmt, ...) _printf_(3, 4);

static int
parse_error(struct parse_ctx *p, unsigned line, const char *fmt, ...)
{
	char *msg;
	va_list ap;

	if (p->err != NULL)
		return -EINVAL;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		fatalx("vasprintf: out of memory");
	va_end(ap);
	if (line > 0)
		xasprintf(&p->err, "%s:%u: %s", p->path, line, msg);
	else
		xasprintf(&p->err, "%s: %s", p->path, msg);
	free(msg);
	return -EINVAL;
}

/* The rest of an http:// authority after the host: empty, or ":" and a port. */
static bool
url_port_valid(const char *s, const char *end)
{
	unsigned long port = 0;

	if (s == end)
		return true;
	if (*s != ':' || ++s == end || end - s > 5)
		return false;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9')
			return false;
		port = port * 10 + (unsigned long)(*s - '0');
	}
	return port >= 1 && port <= 65535;
}

bool
config_url_allowed(const char *url)
{
	const char *host, *end, *port;
	size_t hostlen, i;

	if (url == NULL)
		return false;
	for (i = 0; url[i] != '\0'; i++)
		if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
			return false;
	if (strncasecmp(url, "https://", 8) == 0)
		return url[8] != '\0' && url[8] != '/' && url[8] != '@';
	if (strncasecmp(url, "http://", 7) != 0)
		return false;

	host = url + 7;
	end = host + strcspn(host, "/?#");
	if (memchr(host, '@', (size_t)(end - host)) != NULL)
		return false; /* userinfo hides the real host */
	if (*host == '[') {
		if (strncmp(host, "[::1]", 5) != 0)
			return false;
		port = host + 5;
	} else {
		hostlen = strcspn(host, ":/?#");
		if (!((hostlen == 9 && strncmp(host, "127.0.0.1", 9) == 0) ||
		      (hostlen == 9 && strncasecmp(host, "localhost", 9) == 0)))
			return false;
		port = host + hostlen;
	}
	return url_port_valid(port, end);
}

bool
config_container_valid(const char *name)
{
	size_t len, i;

	if (name == NULL)
		return false;
	len = strlen(name);
	if (len < 3 || len > 63 || name[0] == '-' || name[len - 1] == '-')
		return false;
	for (i = 0; i < len; i++) {
		if (name[i] == '-') {
			if (name[i + 1] == '-')
				return false;
		} else if (!(name[i] >= 'a' && name[i] <= 'z') &&
		           !(name[i] >= '0' && name[i] <= '9'))
			return false;
	}
	return true;
}

const char *
config_cloud_name(enum azure_cloud cloud)
{
	return (size_t)cloud < ELEMENTSOF(cloud_names) ? cloud_names[cloud] : NULL;
}

const char *
config_job_api_name(enum job_api api)
{
	return (size_t)api < ELEMENTSOF(job_api_names) ? job_api_names[api] : NULL;
}

static int
lookup_name(const char *const *names, size_t n, const char *value)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (names[i] != NULL && strcmp(names[i], value) == 0)
			return (int)i;
	return -1;
}

static int
parse_bool(const char *v, bool *ret)
{
	static const char *const yes[] = {"yes", "true", "1", "on"};
	static const char *const no[] = {"no", "false", "0", "off"};

	if (lookup_name(yes, ELEMENTSOF(yes), v) >= 0)
		*ret = true;
	else if (lookup_name(no, ELEMENTSOF(no), v) >= 0)
		*ret = false;
	else
		return -EINVAL;
	return 0;
}

/*
 * A size: decimal digits, then optionally K, M, G or T (either case; 1024,
 * 1024^2, ...) and an optional "B" or "iB", as seedctl's --capacity reads
 * them. 0 (with or without a unit) is allowed whatever min says.
 */
static int
parse_size(const char *v, uint64_t min, uint64_t max, uint64_t *ret)
{
	static const char units[] = "KMGT";
	const char *u, *s = v;
	uint64_t n = 0;
	unsigned shift = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (n > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	if (*s != '\0') {
		if ((u = strchr(units, *s >= 'a' && *s <= 'z' ? *s - 'a' + 'A' : *s)) == NULL)
			return -EINVAL;
		shift = 10 * (unsigned)(u - units + 1);
		s++;
		if (strcmp(s, "") != 0 && strcmp(s, "B") != 0 && strcmp(s, "iB") != 0)
			return -EINVAL;
	}
	if (n > max >> shift)
		return -ERANGE;
	n <<= shift;
	if (n != 0 && n < min)
		return -ERANGE;
	*ret = n;
	return 0;
}

static int
parse_uint(const char *v, uint64_t min, uint64_t max, unsigned *ret)
{
	unsigned long n = 0;
	const char *s;

	if (*v == '\0' || strlen(v) > 10)
		return -EINVAL;
	for (s = v; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		n = n * 10 + (unsigned long)(*s - '0');
	}
	if (n < min || n > max)
		return -ERANGE;
	*ret = (unsigned)n;
	return 0;
}

static bool
text_valid(const char *v)
{
	const unsigned char *s;

	for (s = (const unsigned char *)v; *s != '\0'; s++)
		if (*s < ' ' || *s == 0x7f)
			return false;
	return utf8_valid(v, strlen(v));
}

/* An executable regular file: why not, or NULL. */
static const char *
exec_invalid(const char *path)
{
	struct stat st;

	if (path[0] != '/' || !text_valid(path))
		return "not an absolute path";
	if (stat(path, &st) < 0)
		return errno == ENOENT ? "no such file" : "cannot stat it";
	if (!S_ISREG(st.st_mode))
		return "not a regular file";
	if (faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) < 0)
		return "not executable by seedd";
	return NULL;
}

/* Resolve a group name to its gid with getgrnam_r, growing the buffer on ERANGE. */
static int
resolve_group(const char *name, gid_t *ret)
{
	struct group grp, *result = NULL;
	size_t size = 1024;
	char *buf = NULL;
	int r;

	for (;;) {
		buf = xreallocarray(buf, size, 1);
		r = getgrnam_r(name, &grp, buf, size, &result);
		if (r != ERANGE || size >= 1024 * 1024)
			break;
		size *= 4;
	}
	if (r == 0 && result != NULL)
		*ret = result->gr_gid;
	free(buf);
	if (r != 0)
		return -r;
	return result != NULL ? 0 : -ENOENT;
}

static void
set_string(struct config *c, const struct key_def *k, const char *v)
{
	char **field = FIELD(c, k->offset, char *);

	free(*field);
	*field = v != NULL ? xstrdup(v) : NULL;
}

/*
 * Check one value and store it in c (an empty value stores the default).
 * Returns NULL, or what is wrong with the value.
 */
static const char *
key_set(struct config *c, const struct key_def *k, const char *v)
{
	const char *why;
	int i;

	if (v == NULL || *v == '\0')
		v = k->deflt;
	if (v == NULL) {
		set_string(c, k, NULL);
		return NULL;
	}

	switch (k->type) {
	case KEY_STRING:
		if (!text_valid(v))
			return "control character or invalid UTF-8";
		break;
	case KEY_PATH:
		if (v[0] != '/' || !text_valid(v))
			return "not an absolute path";
		break;
	case KEY_URL:
		if (!config_url_allowed(v))
			return "endpoint must be https://, or http:// to 127.0.0.1, [::1] or "
			       "localhost";
		break;
	case KEY_BOOL:
		if (parse_bool(v, FIELD(c, k->offset, bool)) < 0)
			return "not a boolean (yes, no, true, false, on, off, 1, 0)";
		return NULL;
	case KEY_UINT:
		i = parse_uint(v, k->min, k->max, FIELD(c, k->offset, unsigned));
		if (i == -ERANGE)
			return "out of range";
		if (i < 0)
			return "not a number";
		return NULL;
	case KEY_SIZE:
		i = parse_size(v, k->min, k->max, FIELD(c, k->offset, uint64_t));
		if (i == -ERANGE)
			return "out of range (0, or 64K to 64T)";
		if (i < 0)
			return "not a size (a number of bytes, optionally with K, M, G or T)";
		return NULL;
	case KEY_EXEC:
		if ((why = exec_invalid(v)) != NULL)
			return why;
		break;
	case KEY_CLOUD:
		if ((i = lookup_name(cloud_names, ELEMENTSOF(cloud_names), v)) < 0)
			return "must be AzurePublic, AzureChina, AzureUSGovernment or Custom";
		*FIELD(c, k->offset, enum azure_cloud) = (enum azure_cloud)i;
		return NULL;
	case KEY_JOB_API:
		if ((i = lookup_name(job_api_names, ELEMENTSOF(job_api_names), v)) < 0)
			return "must be DataBox or ImportExport";
		*FIELD(c, k->offset, enum job_api) = (enum job_api)i;
		return NULL;
	case KEY_TIER:
		if (lookup_name(access_tiers, ELEMENTSOF(access_tiers), v) < 0)
			return "must be Hot, Cool, Cold or Archive";
		break;
	case KEY_GROUP:
		i = resolve_group(v, &c->admin_gid);
		if (i == -ENOENT)
			return "no such group";
		if (i < 0)
			return "cannot look up group";
		break;
	case KEY_CONTAINER:
		if (!config_container_valid(v))
			return "container names are 3-63 lower-case letters, digits and single "
			       "hyphens, starting and ending with a letter or digit";
		break;
	}
	set_string(c, k, v);
	return NULL;
}

static const struct key_def *
key_find(const char *section, const char *name, size_t *ret_index)
{
	size_t i;

	for (i = 0; i < ELEMENTSOF(config_keys); i++)
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strcmp(config_keys[i].name, name) == 0) {
			*ret_index = i;
			return &config_keys[i];
		}
	return NULL;
}

static bool
section_known(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < ELEMENTSOF(config_sections); i++)
		if (strlen(config_sections[i]) == len &&
		    strncmp(config_sections[i], name, len) == 0)
			return true;
	return false;
}

/* inih handler: one name=value pair, on line p->lineno. Nonzero means go on. */
static int
config_handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *p = user;
	const struct key_def *k;
	const char *why;
	size_t i;

	if (*section == '\0')
		why = "key outside a section";
	else if ((k = key_find(section, name, &i)) == NULL) {
		parse_error(p, p->lineno, "unknown key %s=%s in section [%s]", name, value,
		            section);
		return 0;
	} else if (p->seen[i] != 0) {
		parse_error(p, p->lineno, "duplicate key %s=%s (first set on line %u)", name, value,
		            p->seen[i]);
		return 0;
	} else {
		p->seen[i] = p->lineno;
		why = key_set(p->c, k, value);
	}
	if (why == NULL)
		return 1;
	parse_error(p, p->lineno, "%s=%s: %s", name, value, why);
	return 0;
}

/*
 * A section header naming an unknown section is an error even when no key
 * follows it, which inih would never report: check headers as they pass.
 */
static int
check_section_line(struct parse_ctx *p, const char *line, size_t len)
{
	const char *close;

	while (len > 0 && (*line == ' ' || *line == '\t')) {
		line++;
		len--;
	}
	if (len == 0 || *line != '[')
		return 0;
	if ((close = memchr(line, ']', len)) == NULL)
		return 0; /* inih reports the syntax error */
	if (!section_known(line + 1, (size_t)(close - line - 1)))
		return parse_error(p, p->lineno, "unknown section [%.*s]", (int)(close - line - 1),
		                   line + 1);
	return 0;
}

/*
 * fgets-style reader over the buffer. inih calls it once per line, or again
 * for the rest of a line longer than its buffer, so lines are counted where
 * they start. Returning NULL ends the parse (end of file or an error).
 */
static char *
config_reader(char *str, int num, void *stream)
{
	struct parse_ctx *p = stream;
	const char *start = p->buf + p->pos, *nl;
	size_t linelen, n;

	if (p->pos >= p->len || p->err != NULL || num < 2)
		return NULL;
	nl = memchr(start, '\n', p->len - p->pos);
	linelen = nl != NULL ? (size_t)(nl - start) + 1 : p->len - p->pos;
	if (p->pos == 0 || p->buf[p->pos - 1] == '\n') {
		p->lineno++;
		if (linelen - (nl != NULL) > CONFIG_MAX_LINE) {
			parse_error(p, p->lineno, "line longer than %d bytes", CONFIG_MAX_LINE);
			return NULL;
		}
		if (check_section_line(p, start, linelen) < 0)
			return NULL;
	}
	n = linelen < (size_t)num - 1 ? linelen : (size_t)num - 1;
	memcpy(str, start, n);
	str[n] = '\0';
	p->pos += n;
	return str;
}

/*
 * Debian's libinih exposes its INI_* switches as variables. Use the heap
 * line buffer so lines up to CONFIG_MAX_LINE fit (a storage account's ARM id
 * exceeds the 200-byte stack default; +2 for the newline and the NUL), no
 * continuation lines and no inline comments (systemd style), and stop at
 * the first error. Only this file uses inih, on the loop thread.
 */
static void
config_ini_setup(void)
{
	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_max_line = CONFIG_MAX_LINE + 2;
	ini_allow_multiline = false;
	ini_allow_inline_comments = false;
	ini_allow_no_value = false;
	ini_stop_on_first_error = true;
}

static int
config_parse_buffer(struct parse_ctx *p)
{
	const char *nul;
	unsigned line = 1;
	size_t i;
	int r;

	if ((nul = memchr(p->buf, '\0', p->len)) != NULL) {
		for (i = 0; p->buf + i < nul; i++)
			line += p->buf[i] == '\n';
		return parse_error(p, line, "NUL byte in file");
	}
	config_ini_setup();
	r = ini_parse_stream(config_reader, p, config_handler, p);
	if (p->err != NULL)
		return -EINVAL;
	if (r == -2)
		fatalx("inih: out of memory");
	if (r != 0)
		return parse_error(p, (unsigned)r,
		                   "syntax error (expected [Section] or Key=value)");
	return 0;
}

/* Read a whole small file (at most max bytes) into a NUL-terminated buffer. */
static int
read_small_file(const char *path, size_t max, struct stat *ret_st, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	size_t len = 0;
	ssize_t n;
	char *buf;
	int r = 0;

	/* O_NONBLOCK: a FIFO named as a secret file must not hang a reload. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (!S_ISREG(st.st_mode))
		return -EBADFD;
	if (st.st_size > (off_t)max)
		return -EFBIG;
	buf = xmalloc(max + 2);
	while (len <= max) {
		n = read(fd, buf + len, max + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = -errno;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (r == 0 && len > max)
		r = -EFBIG;
	if (r < 0) {
		explicit_bzero(buf, max + 2);
		free(buf);
		return r;
	}
	buf[len] = '\0';
	if (ret_st != NULL)
		*ret_st = st;
	*ret = buf;
	*ret_len = len;
	return 0;
}

static const char *
file_strerror(int r)
{
	if (r == -EBADFD)
		return "not a regular file";
	if (r == -EFBIG)
		return "file too large";
	return strerror(-r);
}

static void
secret_wipe(struct secret *s)
{
	if (s->value != NULL) {
		explicit_bzero(s->value, s->len);
		free(s->value);
	}
	*s = (struct secret){0};
}

/*
 * May a secret file of this owner group and mode be used? Others must have
 * no access at all; the group only when it is seedd's own (its effective
 * gid: group seedd under the unit), whose members could read the process
 * anyway. On a refusal why[] says so, naming the mode.
 */
static bool
secret_mode_ok(const struct stat *st, char *why, size_t len)
{
	unsigned mode = (unsigned)(st->st_mode & 07777);

	if ((st->st_mode & S_IRWXO) != 0) {
		(void)snprintf(why, len, "secret file is accessible to others (mode %04o); chmod o= it",
		               mode);
		return false;
	}
	if ((st->st_mode & S_IRWXG) != 0 && st->st_gid != getegid()) {
		(void)snprintf(why, len,
		               "secret file is accessible to group %u, not seedd's own group %u "
		               "(mode %04o); chmod g= it, or chgrp it to seedd's group",
		               (unsigned)st->st_gid, (unsigned)getegid(), mode);
		return false;
	}
	return true;
}

/*
 * Read a secret: one value, a trailing newline (or CRLF) stripped. A secret
 * readable by others, or by a group other than seedd's, is refused
 * (secret_mode_ok); why[] then says why.
 */
static int
secret_read(const char *path, struct secret *ret, char *why, size_t why_len)
{
	struct stat st;
	size_t len;
	char *buf;
	int r;

	if ((r = read_small_file(path, SECRET_MAX_SIZE, &st, &buf, &len)) < 0) {
		(void)snprintf(why, why_len, "%s", file_strerror(r));
		return r;
	}
	if (!secret_mode_ok(&st, why, why_len))
		r = -EACCES;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	if (r == 0 && (len == 0 || memchr(buf, '\0', len) != NULL)) {
		(void)snprintf(why, why_len, "%s",
		               len == 0 ? "secret file is empty" : "NUL byte in secret");
		r = -EINVAL;
	}
	if (r < 0) {
		explicit_bzero(buf, SECRET_MAX_SIZE + 2);
		free(buf);
		return r;
	}
	secret_wipe(ret);
	ret->value = buf;
	ret->len = len;
	return 0;
}

/*
 * Each secret comes from the file its *File= key names (an error if that
 * fails), else from $CREDENTIALS_DIRECTORY/NAME if present.
 */
static int
config_load_secrets(struct parse_ctx *p)
{
	const char *creddir = getenv("CREDENTIALS_DIRECTORY"), *file;
	char why[256];
	_cleanup_free_ char *credpath = NULL;
	struct secret *secret;
	size_t i, k = 0;
	int r;

	for (i = 0; i < ELEMENTSOF(config_secrets); i++) {
		file = *FIELD(p->c, config_secrets[i].file_offset, char *);
		secret = FIELD(p->c, config_secrets[i].secret_offset, struct secret);
		if (file != NULL) {
			if (secret_read(file, secret, why, sizeof(why)) == 0)
				continue;
			(void)key_find(config_secrets[i].section, config_secrets[i].file_key, &k);
			return parse_error(p, p->seen[k], "%s=%s: %s", config_secrets[i].file_key,
			                   file, why);
		}
		if (creddir == NULL || *creddir == '\0')
			continue;
		free(credpath);
		xasprintf(&credpath, "%s/%s", creddir, config_secrets[i].credential);
		r = secret_read(credpath, secret, why, sizeof(why));
		if (r < 0 && r != -ENOENT) {
			xasprintf(&p->err, "%s: %s", credpath, why);
			return -EINVAL;
		}
	}
	return 0;
}

static int
config_apply_cloud(struct parse_ctx *p)
{
	struct config *c = p->c;
	size_t k = 0;

	if (c->cloud == CLOUD_CUSTOM) {
		if (c->authority_host != NULL && c->resource_manager_endpoint != NULL)
			return 0;
		(void)key_find("Azure", "Cloud", &k);
		return parse_error(
		    p, p->seen[k],
		    "Cloud=Custom requires AuthorityHost= and ResourceManagerEndpoint=");
	}
	if (c->authority_host == NULL)
		c->authority_host = xstrdup(cloud_presets[c->cloud].authority_host);
	if (c->resource_manager_endpoint == NULL)
		c->resource_manager_endpoint = xstrdup(cloud_presets[c->cloud].resource_manager);
	return 0;
}

static struct config *
config_new_defaults(void)
{
	struct config *c = xcalloc(1, sizeof(*c));
	size_t i;

	for (i = 0; i < ELEMENTSOF(config_keys); i++)
		if (config_keys[i].deflt != NULL && key_set(c, &config_keys[i], NULL) != NULL)
			fatalx("config: bad built-in default %s=%s", config_keys[i].name,
			       config_keys[i].deflt);
	return c;
}

static void
config_freep(struct config **c)
{
	*c = config_free(*c);
}

int
config_load(const char *path, struct config **ret, char **ret_err)
{
	_cleanup_(config_freep) struct config *c = NULL;
	struct parse_ctx p = {0};
	_cleanup_free_ char *buf = NULL;
	bool is_explicit = path != NULL;
	int r;

	if (ret_err != NULL)
		*ret_err = NULL;
	if (path == NULL)
		path = SEEDD_CONFIG_PATH;
	c = config_new_defaults();
	p.c = c;
	p.path = path;

	r = read_small_file(path, CONFIG_MAX_SIZE, NULL, &buf, &p.len);
	if (r == -ENOENT && !is_explicit)
		p.path = "built-in defaults";
	else if (r < 0)
		(void)parse_error(&p, 0, "%s", file_strerror(r));
	else {
		c->path = xstrdup(path);
		p.buf = buf;
		r = config_parse_buffer(&p);
	}
	if (p.err == NULL)
		r = config_apply_cloud(&p);
	if (p.err == NULL)
		r = config_load_secrets(&p);
	if (p.err != NULL) {
		if (ret_err != NULL)
			*ret_err = TAKE_PTR(p.err);
		free(p.err);
		return r < 0 && r != -EINVAL ? r : -EINVAL;
	}
	*ret = TAKE_PTR(c);
	return 0;
}

struct config *
config_free(struct config *c)
{
	size_t i;

	if (c == NULL)
		return NULL;
	for (i = 0; i < ELEMENTSOF(config_keys); i++)
		switch (config_keys[i].type) {
		case KEY_BOOL:
		case KEY_UINT:
		case KEY_SIZE:
		case KEY_CLOUD:
		case KEY_JOB_API:
			break;
		default:
			free(*FIELD(c, config_keys[i].offset, char *));
		}
	for (i = 0; i < ELEMENTSOF(config_secrets); i++)
		secret_wipe(FIELD(c, config_secrets[i].secret_offset, struct secret));
	free(c->path);
	free(c);
	return NULL;
}

const char *
config_azure_missing(const struct config *c)
{
	static const struct {
		const char *key;
		size_t offset;
	} required[] = {
	    {"TenantId", offsetof(struct config, tenant_id)},
	    {"ClientId", offsetof(struct config, client_id)},
	    {"SubscriptionId", offsetof(struct config, subscription_id)},
	    {"ResourceGroup", offsetof(struct config, resource_group)},
	    {"Location", offsetof(struct config, location)},
	    {"AccountId", offsetof(struct config, account_id)},
	};
	size_t i;

	for (i = 0; i < ELEMENTSOF(required); i++)
		if (*(char *const *)(const void *)((const char *)c + required[i].offset) == NULL)
			return required[i].key;
	if (c->client_secret.value == NULL)
		return "ClientSecretFile";
	return NULL;
}

bool
config_azure_ready(const struct config *c)
{
	return config_azure_missing(c) == NULL;
}

/* One key's value as text (or a number or a boolean); NULL if unset. */
static json_t *
key_value(const struct config *c, const struct key_def *k)
{
	const char *s;

	switch (k->type) {
	case KEY_BOOL:
		return json_boolean(*FIELD(c, k->offset, bool));
	case KEY_UINT:
		return json_integer(*FIELD(c, k->offset, unsigned));
	case KEY_CLOUD:
		return json_string(config_cloud_name(*FIELD(c, k->offset, enum azure_cloud)));
	case KEY_JOB_API:
		return json_string(config_job_api_name(*FIELD(c, k->offset, enum job_api)));
	default:
		s = *FIELD(c, k->offset, char *);
		return s != NULL ? json_string(s) : NULL;
	}
}

/* Secrets that came from $CREDENTIALS_DIRECTORY, not from a *File= key. */
static void
summary_credentials(const struct config *c, json_t *sections)
{
	const struct secret *secret;
	json_t *sec;
	size_t i;

	for (i = 0; i < ELEMENTSOF(config_secrets); i++) {
		secret = FIELD(c, config_secrets[i].secret_offset, struct secret);
		if (secret->value == NULL || *FIELD(c, config_secrets[i].file_offset, char *) != NULL)
			continue;
		if ((sec = json_object_get(sections, config_secrets[i].section)) == NULL)
			continue;
		json_object_set_new(sec, config_secrets[i].file_key,
		                    json_sprintf("credential %s", config_secrets[i].credential));
	}
}

json_t *
config_summary(const struct config *c)
{
	json_t *o = json_object(), *sec, *v;
	const char *missing = config_azure_missing(c);
	size_t i;

	json_object_set_new(o, "file", json_string(c->path ? c->path : "built-in defaults"));
	for (i = 0; i < ELEMENTSOF(config_sections); i++)
		if (strcmp(config_sections[i], "Shipping") != 0)
			json_object_set_new(o, config_sections[i], json_object());
	for (i = 0; i < ELEMENTSOF(config_keys); i++) {
		if ((sec = json_object_get(o, config_keys[i].section)) == NULL)
			continue;
		if ((v = key_value(c, &config_keys[i])) != NULL)
			json_object_set_new(sec, config_keys[i].name, v);
	}
	summary_credentials(c, o);
	if (missing != NULL)
		json_object_set_new(o, "azureMissing", json_string(missing));
	return o;
}
