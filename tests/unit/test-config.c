/*
 * config.c: a full file parsed into the expected struct, every kind of bad
 * line refused with the exact "file:LINE:" prefix, secrets from files and
 * from $CREDENTIALS_DIRECTORY, cloud presets and the endpoint rule.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "seedd-build.h"
#include "test.h"

static char tmpdir[] = "/tmp/test-config-XXXXXX";

/* Write content to tmpdir/name with mode; returns a static path (one at a time). */
static const char *
write_file(const char *name, const char *content, size_t len, mode_t mode)
{
	static char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	(void)unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	check(fd >= 0);
	check(write(fd, content, len) == (ssize_t)len);
	check(fchmod(fd, mode) == 0);
	close(fd);
	return path;
}

static const char *
write_conf(const char *content)
{
	return write_file("seedd.conf", content, strlen(content), 0644);
}

/* Load text as a config that must fail; returns the error (caller frees). */
static char *
load_bad(const char *text, int expect_r)
{
	struct config *c = NULL;
	char *err = NULL;
	int r;

	r = config_load(write_conf(text), &c, &err);
	if (r != expect_r)
		fprintf(stderr, "unexpected r=%d for:\n%s\nerr=%s\n", r, text,
		        err ? err : "(null)");
	check_int(r, expect_r);
	check(c == NULL);
	check(err != NULL);
	return err;
}

/* The error must be exactly "<conf path>:<line>: <message>". */
static void
check_error(const char *text, unsigned line, const char *message)
{
	char *err = load_bad(text, -EINVAL), expect[8192];

	snprintf(expect, sizeof(expect), "%s/seedd.conf:%u: %s", tmpdir, line, message);
	check_str(err, expect);
	free(err);
}

static struct config *
load_good(const char *text)
{
	struct config *c = NULL;
	char *err = NULL;
	int r;

	r = config_load(write_conf(text), &c, &err);
	if (r != 0)
		fprintf(stderr, "unexpected error: %s\n", err);
	check_int(r, 0);
	check(err == NULL);
	check(c != NULL);
	return c;
}

static void
test_defaults(void)
{
	struct config *c = load_good("# nothing but a comment\n\n");
	char *err = (char *)"untouched";

	check(c->path != NULL);
	check(c->admin_group == NULL);
	check_int(c->poll_interval_sec, 900);
	check(c->metrics_file == NULL);
	check_int(c->cloud, CLOUD_AZURE_PUBLIC);
	check_int(c->job_api, JOB_API_DATABOX);
	check_str(c->authority_host, "https://login.microsoftonline.com");
	check_str(c->resource_manager_endpoint, "https://management.azure.com");
	check(c->tenant_id == NULL && c->client_id == NULL && c->client_secret.value == NULL);
	check(c->blob_endpoint == NULL && c->account_key.value == NULL &&
	      c->sas_token.value == NULL);
	check_str(c->import_container, "seedd-import");
	check(c->vault_container == NULL);
	check_str(c->access_tier, "Cool");
	check(c->require_ntfs);
	check(c->require_bitlocker);
	check(c->verify);
	check_int(c->ship_deadline_days, 14);
	check(!config_azure_ready(c));
	check_str(config_azure_missing(c), "TenantId");
	config_free(c);

	/* The default path may be absent: built-in defaults. */
	if (access(SEEDD_CONFIG_PATH, F_OK) < 0 && errno == ENOENT) {
		c = NULL;
		check_int(config_load(NULL, &c, &err), 0);
		check(err == NULL);
		check(c != NULL && c->path == NULL);
		check_int(c->poll_interval_sec, 900);
		config_free(c);
	}
}

static void
test_missing_explicit(void)
{
	struct config *c = NULL;
	char path[256], *err = NULL, expect[512];

	snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
	check_int(config_load(path, &c, &err), -ENOENT);
	check(c == NULL);
	snprintf(expect, sizeof(expect), "%s: No such file or directory", path);
	check_str(err, expect);
	free(err);
	check_int(config_load(tmpdir, &c, NULL), -EISDIR);
}

static void
test_full(void)
{
	char conf[8192], secret_path[256], key_path[256], sas_path[256], acct_path[256];
	char long_id[400];
	struct config *c;

	snprintf(secret_path, sizeof(secret_path), "%s",
	         write_file("client-secret", "s3cret\n", 7, 0600));
	snprintf(key_path, sizeof(key_path), "%s", write_file("account-key", "a2V5\r\n", 6, 0600));
	snprintf(sas_path, sizeof(sas_path), "%s", write_file("sas", "sv=2023&sig=x", 13, 0600));
	snprintf(acct_path, sizeof(acct_path), "%s", write_file("acct", "12345\n\n", 7, 0640));
	/* A storage account's ARM id can exceed inih's 200-byte default line. */
	snprintf(long_id, sizeof(long_id),
	         "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
	         "%s/providers/Microsoft.Storage/storageAccounts/seeddstore",
	         "a-very-long-resource-group-name-that-goes-on-and-on-and-on-and-on-and-on-"
	         "and-on-and-on-x");
	check(strlen(long_id) > 200);
	snprintf(conf, sizeof(conf),
	         "; seedd test configuration\r\n"
	         "[Daemon]\n"
	         "AdminGroup=root\n"
	         "PollIntervalSec = 60\n"
	         "MetricsFile=/run/seedd/metrics.prom\n"
	         "\n"
	         "[Azure]\n"
	         "Cloud=AzureChina\n"
	         "JobApi=ImportExport\n"
	         "TenantId=11111111-2222-3333-4444-555555555555\n"
	         "ClientId=client\n"
	         "ClientSecretFile=%s\n"
	         "SubscriptionId=sub\n"
	         "ResourceGroup=rg\n"
	         "Location=westeurope\n"
	         "CAFile=/etc/ssl/certs/ca.pem\n"
	         "[Storage]\n"
	         "AccountId=%s\n"
	         "AccountName=seeddstore\n"
	         "AccountKeyFile=%s\n"
	         "SasTokenFile=%s\n"
	         "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1\n"
	         "ImportContainer=import-1\n"
	         "[Vault]\n"
	         "Container=vault\n"
	         "AccessTier=Archive\n"
	         "[Shipping]\n"
	         "ContactName=Jane Doe ; not a comment\n"
	         "Phone=+49 30 1234\n"
	         "Email=jane@example.com\n"
	         "CompanyName=Example GmbH\n"
	         "StreetAddress1=Hauptstraße 1\n"
	         "StreetAddress2=\n"
	         "City=Berlin\n"
	         "StateOrProvince=BE\n"
	         "PostalCode=10115\n"
	         "Country=DE\n"
	         "ReturnCarrier=DHL\n"
	         "ReturnCarrierAccountNumberFile=%s\n"
	         "[Drives]\n"
	         "RequireNTFS=off\n"
	         "RequireBitLocker=no\n"
	         "Verify=0\n"
	         "ShipDeadlineDays=90\n",
	         secret_path, long_id, key_path, sas_path, acct_path);
	c = load_good(conf);
	check_str(c->admin_group, "root");
	check_int(c->admin_gid, 0);
	check_int(c->poll_interval_sec, 60);
	check_str(c->metrics_file, "/run/seedd/metrics.prom");
	check_int(c->cloud, CLOUD_AZURE_CHINA);
	check_int(c->job_api, JOB_API_IMPORTEXPORT);
	check_str(c->tenant_id, "11111111-2222-3333-4444-555555555555");
	check_str(c->client_id, "client");
	check_str(c->client_secret_file, secret_path);
	check_str(c->client_secret.value, "s3cret");
	check_int(c->client_secret.len, 6);
	check_str(c->subscription_id, "sub");
	check_str(c->resource_group, "rg");
	check_str(c->location, "westeurope");
	check_str(c->authority_host, "https://login.chinacloudapi.cn");
	check_str(c->resource_manager_endpoint, "https://management.chinacloudapi.cn");
	check_str(c->ca_file, "/etc/ssl/certs/ca.pem");
	check_str(c->account_id, long_id);
	check_str(c->account_name, "seeddstore");
	check_str(c->account_key.value, "a2V5");
	check_int(c->account_key.len, 4);
	check_str(c->sas_token.value, "sv=2023&sig=x");
	check_str(c->blob_endpoint, "http://127.0.0.1:10000/devstoreaccount1");
	check_str(c->import_container, "import-1");
	check_str(c->vault_container, "vault");
	check_str(c->access_tier, "Archive");
	check_str(c->contact_name, "Jane Doe ; not a comment");
	check_str(c->phone, "+49 30 1234");
	check_str(c->email, "jane@example.com");
	check_str(c->company_name, "Example GmbH");
	check_str(c->street_address1, "Hauptstraße 1");
	check(c->street_address2 == NULL);
	check_str(c->city, "Berlin");
	check_str(c->state_or_province, "BE");
	check_str(c->postal_code, "10115");
	check_str(c->country, "DE");
	check_str(c->return_carrier, "DHL");
	check_str(c->return_carrier_account_number.value, "12345");
	check(!c->require_ntfs);
	check(!c->require_bitlocker);
	check(!c->verify);
	check_int(c->ship_deadline_days, 90);
	check(config_azure_ready(c));
	check(config_azure_missing(c) == NULL);
	config_free(c);
}

static const struct {
	const char *text;
	unsigned line;
	const char *message;
} bad_cases[] = {
    {"[Daemon]\nPollIntervalSec=0\n", 2, "PollIntervalSec=0: out of range"},
    {"[Daemon]\nPollIntervalSec=86401\n", 2, "PollIntervalSec=86401: out of range"},
    {"[Daemon]\n\n# c\nPollIntervalSec=15m\n", 4, "PollIntervalSec=15m: not a number"},
    {"[Daemon]\nPollIntervalSec=-1\n", 2, "PollIntervalSec=-1: not a number"},
    {"[Daemon]\nPollIntervalSec=99999999999\n", 2, "PollIntervalSec=99999999999: not a number"},
    {"[Drives]\nShipDeadlineDays=0\n", 2, "ShipDeadlineDays=0: out of range"},
    {"[Drives]\nShipDeadlineDays=91\n", 2, "ShipDeadlineDays=91: out of range"},
    {"[Drives]\nRequireNTFS=maybe\n", 2,
     "RequireNTFS=maybe: not a boolean (yes, no, true, false, on, off, 1, 0)"},
    {"[Drives]\nRequireBitLocker=sometimes\n", 2,
     "RequireBitLocker=sometimes: not a boolean (yes, no, true, false, on, off, 1, 0)"},
    {"[Drives]\nVerify=Yes\n", 2,
     "Verify=Yes: not a boolean (yes, no, true, false, on, off, 1, 0)"},
    {"[Daemon]\nPollIntervalSec=60\n[Drives]\nVerify=yes\n[Daemon]\nPollIntervalSec=70\n", 6,
     "duplicate key PollIntervalSec=70 (first set on line 2)"},
    {"[Daemon]\nFoo=bar\n", 2, "unknown key Foo=bar in section [Daemon]"},
    {"[Daemon]\npollintervalsec=60\n", 2, "unknown key pollintervalsec=60 in section [Daemon]"},
    {"[Daemon]\nPollIntervalSec=60\n\n[Network]\n", 4, "unknown section [Network]"},
    {"[Daemon]\n  [Nope]  \nX=1\n", 2, "unknown section [Nope]"},
    {"PollIntervalSec=60\n", 1, "PollIntervalSec=60: key outside a section"},
    {"[Daemon]\nthis is not a pair\n", 2, "syntax error (expected [Section] or Key=value)"},
    {"[Daemon\nPollIntervalSec=60\n", 1, "syntax error (expected [Section] or Key=value)"},
    {"[Daemon]\n  PollIntervalSec=60\n   \t\nAdminGroup=no-such-group-seedd\n", 4,
     "AdminGroup=no-such-group-seedd: no such group"},
    {"[Azure]\nCloud=AzureGermany\n", 2,
     "Cloud=AzureGermany: must be AzurePublic, AzureChina, AzureUSGovernment or Custom"},
    {"[Azure]\nJobApi=Rest\n", 2, "JobApi=Rest: must be DataBox or ImportExport"},
    {"[Vault]\nAccessTier=cool\n", 2, "AccessTier=cool: must be Hot, Cool, Cold or Archive"},
    {"[Azure]\nCAFile=certs/ca.pem\n", 2, "CAFile=certs/ca.pem: not an absolute path"},
    {"[Azure]\nTenantId=a\x01"
     "b\n",
     2,
     "TenantId=a\x01"
     "b: control character or invalid UTF-8"},
    {"[Shipping]\nCity=\xff\xfe\n", 2, "City=\xff\xfe: control character or invalid UTF-8"},
    {"[Azure]\nAuthorityHost=http://example.com\n", 2,
     "AuthorityHost=http://example.com: endpoint must be https://, or http:// to 127.0.0.1, "
     "[::1] or localhost"},
    {"[Storage]\nBlobEndpoint=http://localhost.evil.com/x\n", 2,
     "BlobEndpoint=http://localhost.evil.com/x: endpoint must be https://, or http:// to "
     "127.0.0.1, [::1] or localhost"},
    {"[Azure]\nResourceManagerEndpoint=ftp://127.0.0.1\n", 2,
     "ResourceManagerEndpoint=ftp://127.0.0.1: endpoint must be https://, or http:// to "
     "127.0.0.1, [::1] or localhost"},
    {"[Storage]\nImportContainer=Import\n", 2,
     "ImportContainer=Import: container names are 3-63 lower-case letters, digits and "
     "single hyphens, starting and ending with a letter or digit"},
    {"[Vault]\nContainer=a--b\n", 2,
     "Container=a--b: container names are 3-63 lower-case letters, digits and single "
     "hyphens, starting and ending with a letter or digit"},
    {"[Azure]\nCloud=Custom\nAuthorityHost=https://login.example\n", 2,
     "Cloud=Custom requires AuthorityHost= and ResourceManagerEndpoint="},
    {"[Azure]\nClientSecretFile=/nonexistent/seedd-secret\n", 2,
     "ClientSecretFile=/nonexistent/seedd-secret: No such file or directory"},
    {"[Shipping]\nCity=x\n\n[Shipping]\nReturnCarrierAccountNumberFile=/nonexistent/n\n", 5,
     "ReturnCarrierAccountNumberFile=/nonexistent/n: No such file or directory"},
    {"[Drives]\nReadBandwidthMax=50 M\n", 2,
     "ReadBandwidthMax=50 M: not a size (a number of bytes, optionally with K, M, G or T)"},
    {"[Drives]\nReadBandwidthMax=50MB/s\n", 2,
     "ReadBandwidthMax=50MB/s: not a size (a number of bytes, optionally with K, M, G or T)"},
    {"[Drives]\nReadBandwidthMax=-1\n", 2,
     "ReadBandwidthMax=-1: not a size (a number of bytes, optionally with K, M, G or T)"},
    {"[Drives]\nReadBandwidthMax=1000\n", 2,
     "ReadBandwidthMax=1000: out of range (0, or 64K to 64T)"},
    {"[Drives]\nReadBandwidthMax=65T\n", 2,
     "ReadBandwidthMax=65T: out of range (0, or 64K to 64T)"},
    {"[Drives]\nReadBandwidthMax=99999999999999999999999\n", 2,
     "ReadBandwidthMax=99999999999999999999999: out of range (0, or 64K to 64T)"},
    {"[Daemon]\nNotifyCommand=notify.sh\n", 2, "NotifyCommand=notify.sh: not an absolute path"},
    {"[Daemon]\nNotifyCommand=/nonexistent/seedd-notify\n", 2,
     "NotifyCommand=/nonexistent/seedd-notify: no such file"},
    {"[Daemon]\nNotifyCommand=/\n", 2, "NotifyCommand=/: not a regular file"},
    {"[Daemon]\nNotifyTimeoutSec=0\n", 2, "NotifyTimeoutSec=0: out of range"},
};

/* ReadBandwidthMax= takes 1024-based K, M, G, T (with B or iB, either case), and 0. */
static void
test_sizes(void)
{
	static const struct {
		const char *value;
		uint64_t bytes;
	} cases[] = {
	    {"0", 0},
	    {"0M", 0},
	    {"65536", 65536},
	    {"64K", 64 << 10},
	    {"50M", 50ull << 20},
	    {"50m", 50ull << 20},
	    {"50MiB", 50ull << 20},
	    {"50MB", 50ull << 20},
	    {"2G", 2ull << 30},
	    {"64T", 64ull << 40},
	};
	char text[640], exe[512];
	struct config *c;

	c = load_good("[Drives]\n");
	check(c->read_bandwidth_max == 0);
	check(c->notify_command == NULL);
	check_int(c->notify_timeout_sec, 30);
	config_free(c);
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		snprintf(text, sizeof(text), "[Drives]\nReadBandwidthMax=%s\n", cases[i].value);
		c = load_good(text);
		check(c->read_bandwidth_max == cases[i].bytes);
		config_free(c);
	}
	/* NotifyCommand= must be executable by seedd. */
	snprintf(exe, sizeof(exe), "%s", write_file("notify", "#!/bin/sh\n", 10, 0755));
	snprintf(text, sizeof(text), "[Daemon]\nNotifyCommand=%s\nNotifyTimeoutSec=5\n", exe);
	c = load_good(text);
	check_str(c->notify_command, exe);
	check_int(c->notify_timeout_sec, 5);
	config_free(c);
	check(chmod(exe, 0644) == 0); /* no x bit: refused even for root */
	{
		char *err = load_bad(text, -EINVAL);
		check(strstr(err, "not executable by seedd") != NULL);
		free(err);
	}
}

static void
test_bad_values(void)
{
	size_t i;

	for (i = 0; i < ELEMENTSOF(bad_cases); i++)
		check_error(bad_cases[i].text, bad_cases[i].line, bad_cases[i].message);
}

/* Line numbers stay right after long lines, CRLF endings and comments. */
static void
test_line_numbers(void)
{
	char text[8192], line[1200];

	memset(line, 'x', 1000);
	line[1000] = '\0';
	snprintf(text, sizeof(text),
	         "# comment\r\n[Storage]\r\nAccountId=%s\r\n; another\r\n\r\nAccountName=%s\r\n"
	         "ImportContainer=NO\r\n",
	         line, line);
	check_error(text, 7,
	            "ImportContainer=NO: container names are 3-63 lower-case letters, digits and "
	            "single hyphens, starting and ending with a letter or digit");

	/* The longest line accepted: 4096 bytes, a CR before the newline included. */
	char *max = malloc(4200);
	struct config *cm;

	check(max != NULL);
	memset(max, 'v', 4200);
	memcpy(max, "[Storage]\nAccountId=", 20);
	max[10 + 4094] = 'e';
	strcpy(max + 10 + 4095, "\r\nAccountName=n\n");
	cm = load_good(max);
	check_int(strlen(cm->account_id), 4095 - 10);
	check(cm->account_id[4095 - 10 - 1] == 'e');
	config_free(cm);
	strcpy(max + 10 + 4095, "v\r\nAccountName=n\n");
	check_error(max, 2, "line longer than 4096 bytes");
	free(max);

	/* An over-long line is refused where it starts. */
	char huge[6000];
	memset(huge, 'y', 5000);
	huge[5000] = '\0';
	snprintf(text, sizeof(text), "[Storage]\nAccountName=a\nAccountId=%s\n", huge);
	check_error(text, 3, "line longer than 4096 bytes");

	/* A NUL byte is refused with its line. */
	static const char nul[] = "[Daemon]\nPollIntervalSec=60\nMetrics\0File=/x\n";
	char *err = NULL, expect[256];
	struct config *c = NULL;

	check_int(config_load(write_file("seedd.conf", nul, sizeof(nul) - 1, 0644), &c, &err),
	          -EINVAL);
	snprintf(expect, sizeof(expect), "%s/seedd.conf:3: NUL byte in file", tmpdir);
	check_str(err, expect);
	free(err);
}

static void
test_empty_resets(void)
{
	struct config *c = load_good("[Daemon]\nPollIntervalSec=\nAdminGroup=\n"
	                             "[Storage]\nImportContainer=\n[Vault]\nAccessTier=\n");

	check_int(c->poll_interval_sec, 900);
	check(c->admin_group == NULL);
	check_str(c->import_container, "seedd-import");
	check_str(c->access_tier, "Cool");
	config_free(c);
}

static void
test_cloud_presets(void)
{
	struct config *c;

	c = load_good("[Azure]\nCloud=AzureUSGovernment\n");
	check_str(c->authority_host, "https://login.microsoftonline.us");
	check_str(c->resource_manager_endpoint, "https://management.usgovcloudapi.net");
	config_free(c);

	c = load_good("[Azure]\nCloud=AzurePublic\nAuthorityHost=http://[::1]:8443\n");
	check_str(c->authority_host, "http://[::1]:8443");
	check_str(c->resource_manager_endpoint, "https://management.azure.com");
	config_free(c);

	c = load_good("[Azure]\nCloud=Custom\nAuthorityHost=http://localhost:7000\n"
	              "ResourceManagerEndpoint=http://127.0.0.1:7001/\n");
	check_int(c->cloud, CLOUD_CUSTOM);
	check_str(c->authority_host, "http://localhost:7000");
	check_str(c->resource_manager_endpoint, "http://127.0.0.1:7001/");
	config_free(c);

	check_error("[Azure]\n\nCloud=Custom\n", 3,
	            "Cloud=Custom requires AuthorityHost= and ResourceManagerEndpoint=");
	check_str(config_cloud_name(CLOUD_AZURE_US_GOVERNMENT), "AzureUSGovernment");
	check_str(config_job_api_name(JOB_API_DATABOX), "DataBox");
	check(config_cloud_name((enum azure_cloud)42) == NULL);
}

/*
 * config_summary(): a secret by its file's path or its credential's name,
 * never its value; [Shipping] left out; the rest under its section.
 */
static void
check_summary(const struct config *c, const char *sas_file)
{
	json_t *sum = config_summary(c);
	_cleanup_free_ char *text = json_dumps(sum, JSON_COMPACT);

	check(strstr(text, "from-cred") == NULL && strstr(text, "key-from-cred") == NULL &&
	      strstr(text, "sas-from-file") == NULL && strstr(text, "777") == NULL);
	check_str(json_string_value(json_object_get(json_object_get(sum, "Storage"),
						    "SasTokenFile")),
		  sas_file);
	check_str(json_string_value(json_object_get(json_object_get(sum, "Azure"),
						    "ClientSecretFile")),
		  "credential azure-client-secret");
	check(json_object_get(sum, "Shipping") == NULL);
	check(json_is_true(json_object_get(json_object_get(sum, "Drives"), "Verify")));
	check_str(json_string_value(json_object_get(sum, "azureMissing")), "TenantId");
	json_decref(sum);
}

static void
test_credentials(void)
{
	char creddir[256], conf[512], file[256], *err = NULL, expect[512];
	struct config *c;

	snprintf(creddir, sizeof(creddir), "%s/creds", tmpdir);
	check(mkdir(creddir, 0700) == 0);
	write_file("creds/azure-client-secret", "from-cred\n", 10, 0400);
	write_file("creds/storage-account-key", "key-from-cred", 13, 0400);
	write_file("creds/return-carrier-account-number", "777\n", 4, 0400);
	snprintf(file, sizeof(file), "%s", write_file("sas-file", "sas-from-file\n", 14, 0600));
	check(setenv("CREDENTIALS_DIRECTORY", creddir, 1) == 0);

	/* Credentials fill what no *File= key names; a *File= key wins. */
	write_file("creds/storage-sas-token", "sas-from-cred", 13, 0400);
	snprintf(conf, sizeof(conf), "[Storage]\nSasTokenFile=%s\n", file);
	c = load_good(conf);
	check_str(c->client_secret.value, "from-cred");
	check_int(c->client_secret.len, 9);
	check_str(c->account_key.value, "key-from-cred");
	check_str(c->sas_token.value, "sas-from-file");
	check_str(c->return_carrier_account_number.value, "777");
	check_summary(c, file);
	config_free(c);

	/* An empty credential is an error naming the credential file. */
	write_file("creds/storage-sas-token", "\n", 1, 0400);
	check_int(config_load(write_conf("[Daemon]\n"), &c, &err), -EINVAL);
	snprintf(expect, sizeof(expect), "%s/storage-sas-token: secret file is empty", creddir);
	check_str(err, expect);
	free(err);

	check(unsetenv("CREDENTIALS_DIRECTORY") == 0);
	c = load_good("[Daemon]\n");
	check(c->client_secret.value == NULL && c->sas_token.value == NULL);
	config_free(c);
}

static void
test_secret_files(void)
{
	char conf[8192], path[256], *big;
	struct config *c;

	/* Readable by others: refused, naming the file and its mode (issue 11). */
	snprintf(path, sizeof(path), "%s", write_file("loose", "loose-secret\n", 13, 0644));
	snprintf(conf, sizeof(conf), "[Azure]\nClientSecretFile=%s\n", path);
	{
		char msg[512];

		snprintf(msg, sizeof(msg),
		         "ClientSecretFile=%s: secret file is accessible to others (mode 0644); "
		         "chmod o= it",
		         path);
		check_error(conf, 2, msg);
		write_file("loose", "loose-secret\n", 13, 0604);
		snprintf(msg, sizeof(msg),
		         "ClientSecretFile=%s: secret file is accessible to others (mode 0604); "
		         "chmod o= it",
		         path);
		check_error(conf, 2, msg);
	}
	/* Group-readable: only when the group is seedd's own. */
	write_file("loose", "loose-secret\n", 13, 0640);
	c = load_good(conf);
	check_str(c->client_secret.value, "loose-secret");
	config_free(c);
	if (geteuid() == 0) {
		gid_t other = getegid() == 65534 ? 65533 : 65534;
		char msg[512];

		check(chown(path, (uid_t)-1, other) == 0);
		snprintf(msg, sizeof(msg),
		         "ClientSecretFile=%s: secret file is accessible to group %u, not seedd's "
		         "own group %u (mode 0640); chmod g= it, or chgrp it to seedd's group",
		         path, (unsigned)other, (unsigned)getegid());
		check_error(conf, 2, msg);
		check(chmod(path, 0600) == 0); /* another group, but no access for it */
		c = load_good(conf);
		check_str(c->client_secret.value, "loose-secret");
		config_free(c);
	}

	snprintf(path, sizeof(path), "%s", write_file("empty", "", 0, 0600));
	snprintf(conf, sizeof(conf), "\n[Storage]\nAccountKeyFile=%s\n", path);
	{
		char msg[512];

		snprintf(msg, sizeof(msg), "AccountKeyFile=%s: secret file is empty", path);
		check_error(conf, 3, msg);
	}

	big = malloc(64 * 1024 + 1);
	check(big != NULL);
	memset(big, 'k', 64 * 1024 + 1);
	snprintf(path, sizeof(path), "%s", write_file("big", big, 64 * 1024, 0600));
	snprintf(conf, sizeof(conf), "[Storage]\nAccountKeyFile=%s\n", path);
	c = load_good(conf);
	check_int(c->account_key.len, 64 * 1024);
	config_free(c);

	snprintf(path, sizeof(path), "%s", write_file("big", big, 64 * 1024 + 1, 0600));
	snprintf(conf, sizeof(conf), "[Storage]\nAccountKeyFile=%s\n", path);
	{
		char msg[512];

		snprintf(msg, sizeof(msg), "AccountKeyFile=%s: file too large", path);
		check_error(conf, 2, msg);
	}
	free(big);
}

static void
test_url_rule(void)
{
	static const char *const ok[] = {
	    "https://x",
	    "https://login.microsoftonline.com",
	    "HTTPS://Example.com/path",
	    "http://127.0.0.1:10000",
	    "http://127.0.0.1:10000/devstoreaccount1",
	    "http://127.0.0.1",
	    "http://localhost",
	    "http://localhost:8080/",
	    "http://localhost:65535",
	    "http://[::1]",
	    "http://[::1]:443/x?y#z",
	};
	static const char *const refused[] = {
	    "http://example.com",
	    "http://localhost.evil.com",
	    "http://127.0.0.1.evil.com",
	    "http://127.0.0.1@evil.com",
	    "http://evil.com@127.0.0.1",
	    "http://127.0.0.2",
	    "http://[::2]",
	    "http://[::1]x",
	    "http://localhost:",
	    "http://localhost:80x",
	    "http://localhost:1234567",
	    "http://localhost:65536",
	    "http://localhost:0",
	    "https://",
	    "https:///path",
	    "https://a b",
	    "ftp://127.0.0.1",
	    "127.0.0.1",
	    "",
	};
	size_t i;

	for (i = 0; i < ELEMENTSOF(ok); i++)
		if (!config_url_allowed(ok[i])) {
			fprintf(stderr, "refused: %s\n", ok[i]);
			check(0);
		}
	for (i = 0; i < ELEMENTSOF(refused); i++)
		if (config_url_allowed(refused[i])) {
			fprintf(stderr, "allowed: %s\n", refused[i]);
			check(0);
		}
	check(!config_url_allowed(NULL));
}

/*
 * systemd/seedd.conf.example names every key: with each "#Key=value" line
 * uncommented it must load, and give the built-in defaults.
 */
static void
test_example_file(void)
{
	const char *root = getenv("SOURCE_ROOT");
	char path[512], line[1024], text[16384] = "";
	struct config *c;
	unsigned keys = 0;
	FILE *f;

	if (root == NULL) {
		printf("SOURCE_ROOT unset: example file check skipped\n");
		return;
	}
	snprintf(path, sizeof(path), "%s/systemd/seedd.conf.example", root);
	f = fopen(path, "re");
	check(f != NULL);
	while (fgets(line, sizeof(line), f) != NULL) {
		const char *l = line;

		if (line[0] == '#' && line[1] >= 'A' && line[1] <= 'Z' &&
		    strchr(line, '=') != NULL) {
			l = line + 1;
			keys++;
		}
		check(strlen(text) + strlen(l) < sizeof(text));
		strcat(text, l);
	}
	fclose(f);
	check_int(keys, 45); /* CONTRACT.md §6 + OperationPollSec, RequestTimeoutSec, ReceiveWarnDays,
	                        UnreadTimeoutSec, NotifyCommand, NotifyTimeoutSec,
	                        ReadBandwidthMax */
	c = load_good(text);
	check_int(c->poll_interval_sec, 900);
	check_int(c->unread_timeout_sec, 60);
	check_int(c->cloud, CLOUD_AZURE_PUBLIC);
	check_str(c->authority_host, "https://login.microsoftonline.com");
	check_str(c->import_container, "seedd-import");
	check_str(c->access_tier, "Cool");
	check(c->require_ntfs && c->require_bitlocker && c->verify);
	check_int(c->ship_deadline_days, 14);
	config_free(c);
}

static void
test_container_names(void)
{
	check(config_container_valid("abc"));
	check(config_container_valid("seedd-import"));
	check(config_container_valid("0a-b-c9"));
	check(!config_container_valid("ab"));
	check(!config_container_valid("-abc"));
	check(!config_container_valid("abc-"));
	check(!config_container_valid("a--b"));
	check(!config_container_valid("a_b"));
	check(!config_container_valid("ABC"));
	check(!config_container_valid(
	    "a123456789012345678901234567890123456789012345678901234567890123"));
	check(config_container_valid(
	    "a12345678901234567890123456789012345678901234567890123456789012"));
	check(!config_container_valid(NULL));
}

int
main(void)
{
	check(mkdtemp(tmpdir) != NULL);
	check(unsetenv("CREDENTIALS_DIRECTORY") == 0);
	log_init(LOG_TARGET_STDERR, LOG_WARNING);

	test_defaults();
	test_missing_explicit();
	test_full();
	test_bad_values();
	test_sizes();
	test_line_numbers();
	test_empty_resets();
	test_cloud_presets();
	test_credentials();
	test_secret_files();
	test_url_rule();
	test_container_names();
	test_example_file();

	{
		char cmd[256];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		check(system(cmd) == 0);
	}
	return 0;
}
