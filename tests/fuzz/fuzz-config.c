/*
 * Fuzz target: config_load() (daemon/core/config.c) on a seedd.conf holding the
 * bytes. The file is a memfd made once per process and rewritten for each
 * input, read as /proc/self/fd/N. An error must read "PATH:LINE: ..." with
 * a line the input has; a loaded config must hold values its keys allow.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"

#define CONFIG_SIZE_MAX (1024 * 1024) /* config.c's CONFIG_MAX_SIZE */

static int conf_fd = -1;
static char conf_path[64];

static void
setup(void)
{
	unsetenv("CREDENTIALS_DIRECTORY");
	log_init(LOG_TARGET_STDERR, LOG_ERR); /* no warnings about secret file modes */
	conf_fd = memfd_create("fuzz-seedd.conf", MFD_CLOEXEC);
	fuzz_check(conf_fd >= 0);
	snprintf(conf_path, sizeof(conf_path), "/proc/self/fd/%d", conf_fd);
}

static void
write_conf(const uint8_t *data, size_t size)
{
	size_t off = 0;
	ssize_t n;

	fuzz_check(ftruncate(conf_fd, 0) == 0);
	while (off < size) {
		n = pwrite(conf_fd, data + off, size - off, (off_t)off);
		fuzz_check(n > 0);
		off += (size_t)n;
	}
}

/* "PATH:LINE: text" with 1 <= LINE <= lines in the input. */
static void
check_error(const char *err, const uint8_t *data, size_t size)
{
	size_t plen = strlen(conf_path), lines = 1;
	unsigned long line;
	char *end;

	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	fuzz_check(err != NULL);
	fuzz_check(strncmp(err, conf_path, plen) == 0 && err[plen] == ':');
	fuzz_check(err[plen + 1] >= '1' && err[plen + 1] <= '9');
	line = strtoul(err + plen + 1, &end, 10);
	fuzz_check(end[0] == ':' && end[1] == ' ' && end[2] != '\0');
	fuzz_check(line >= 1 && line <= lines);
}

static bool
in_range(unsigned v, unsigned lo, unsigned hi)
{
	return v >= lo && v <= hi;
}

static void
check_config(const struct config *c)
{
	fuzz_check(c->path != NULL && strcmp(c->path, conf_path) == 0);
	fuzz_check(config_cloud_name(c->cloud) != NULL);
	fuzz_check(config_job_api_name(c->job_api) != NULL);
	fuzz_check(config_url_allowed(c->authority_host));
	fuzz_check(config_url_allowed(c->resource_manager_endpoint));
	fuzz_check(c->blob_endpoint == NULL || config_url_allowed(c->blob_endpoint));
	fuzz_check(config_container_valid(c->import_container));
	fuzz_check(c->vault_container == NULL || config_container_valid(c->vault_container));
	fuzz_check(c->access_tier != NULL);
	fuzz_check(in_range(c->poll_interval_sec, 1, 86400));
	fuzz_check(in_range(c->operation_poll_sec, 1, 300));
	fuzz_check(in_range(c->request_timeout_sec, 1, 600));
	fuzz_check(in_range(c->ship_deadline_days, 1, 90));
	fuzz_check(in_range(c->receive_warn_days, 1, 90));
	fuzz_check(c->client_secret_file == NULL || c->client_secret_file[0] == '/');
	fuzz_check(c->client_secret_file == NULL || c->client_secret.value != NULL);
	fuzz_check(config_azure_ready(c) == (config_azure_missing(c) == NULL));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = NULL;
	char *err = NULL;
	int r;

	if (size > CONFIG_SIZE_MAX)
		return 0;
	if (conf_fd < 0)
		setup();
	write_conf(data, size);
	r = config_load(conf_path, &c, &err);
	if (r == 0) {
		fuzz_check(c != NULL && err == NULL);
		check_config(c);
		config_free(c);
	} else {
		fuzz_check(r < 0 && c == NULL);
		check_error(err, data, size);
		free(err);
	}
	return 0;
}
