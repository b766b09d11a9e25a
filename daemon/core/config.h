/*
 * seedd.conf(5): an INI file in systemd style, read with inih.
 *
 * An unknown section or key, or a bad value, is an error naming file:line.
 * Secrets (client secret, account key, SAS token, return carrier account
 * number) are read from the files the config names, or from
 * $CREDENTIALS_DIRECTORY, into struct secret, which the log and JSON code
 * refuse to print.
 */
#ifndef SEEDD_CONFIG_H
#define SEEDD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

/* A secret value. Never logged, never sent over the socket. */
struct secret {
	char *value; /* NULL if not set */
	size_t len;
};

enum azure_cloud {
	CLOUD_AZURE_PUBLIC,
	CLOUD_AZURE_CHINA,
	CLOUD_AZURE_US_GOVERNMENT,
	CLOUD_CUSTOM,
};

enum job_api {
	JOB_API_DATABOX,
	JOB_API_IMPORTEXPORT,
};

struct config {
	char *path; /* the file read, NULL for built-in defaults */

	/* [Daemon] */
	char *admin_group; /* NULL: root only */
	gid_t admin_gid;   /* resolved at load; valid if admin_group != NULL */
	unsigned poll_interval_sec;
	char *metrics_file;
	unsigned unread_timeout_sec; /* a control connection whose replies stay unread is closed */
	char *notify_command;        /* run on catalogued job events (alert.h); NULL: none */
	unsigned notify_timeout_sec; /* a notify command still running then is killed */

	/* [Azure] */
	enum azure_cloud cloud;
	enum job_api job_api;
	char *tenant_id, *client_id, *client_secret_file;
	char *subscription_id, *resource_group, *location;
	char *authority_host, *resource_manager_endpoint, *ca_file;
	unsigned operation_poll_sec; /* LRO poll interval when Azure sends no Retry-After */
	unsigned request_timeout_sec; /* one HTTP attempt, connect included */
	struct secret client_secret;

	/* [Storage] */
	char *account_id, *account_name, *account_key_file, *sas_token_file, *blob_endpoint;
	char *import_container;
	struct secret account_key, sas_token;

	/* [Vault] */
	char *vault_container;
	char *access_tier;

	/* [Shipping] */
	char *contact_name, *phone, *email, *company_name;
	char *street_address1, *street_address2, *city, *state_or_province, *postal_code, *country;
	char *return_carrier, *return_carrier_account_number_file;
	struct secret return_carrier_account_number;

	/* [Drives] */
	bool require_ntfs;
	bool require_bitlocker; /* the drive must be on a BitLocker volume its key opens */
	bool verify;
	unsigned ship_deadline_days;
	unsigned receive_warn_days; /* warn when shipped drives are not received after this */
	uint64_t read_bandwidth_max; /* bytes/s read from staging per job; 0: no cap */
};

/*
 * Load path into a new config. If path is NULL, read the default path and
 * accept its absence (built-in defaults). On error returns -EINVAL (or
 * -errno) and *ret_err holds "file:line: message".
 * ret_err may be NULL; it is set to NULL on success and is the caller's to free.
 * A missing explicit path gives -ENOENT with "path: No such file or directory".
 * Secret files (and $CREDENTIALS_DIRECTORY) are read here, so a config load
 * error can name a secret file, never its content.
 */
int config_load(const char *path, struct config **ret, char **ret_err);
struct config *config_free(struct config *c);

/*
 * True if Azure is configured enough to create jobs: TenantId, ClientId,
 * SubscriptionId, ResourceGroup, Location, AccountId and a client secret.
 */
bool config_azure_ready(const struct config *c);
/* The first key config_azure_ready() misses ("ClientSecretFile" for the secret), or NULL. */
const char *config_azure_missing(const struct config *c);

/*
 * What the configuration says, without a secret: {"file": path or
 * "built-in defaults", "Daemon": {Key: value, ...}, "Azure": {...}, ...}
 * in seedd.conf(5)'s sections and key names, keys left unset omitted; the
 * secret *File= keys give the path, a secret from $CREDENTIALS_DIRECTORY
 * shows as "credential NAME". [Shipping] is left out (addresses and phone
 * numbers are no one's business on the socket); "azureMissing" names the
 * key config_azure_missing() finds, if any. For seedd --check-config and
 * Doctor. A new reference.
 */
json_t *config_summary(const struct config *c);

/* True if url is https://, or http:// to a loopback host. */
bool config_url_allowed(const char *url);

/* True if name is a valid container name: 3-63 of [a-z0-9-], no leading, trailing or double '-'. */
bool config_container_valid(const char *name);

/* "AzurePublic", ..., "Custom" / "DataBox", "ImportExport"; NULL if out of range. */
const char *config_cloud_name(enum azure_cloud cloud);
const char *config_job_api_name(enum job_api api);

#endif
