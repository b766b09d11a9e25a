/*
 * seedd: parse arguments, load the configuration, open the job store, get
 * the control socket, run the loop, and shut down cleanly. Exit status:
 * 0 clean stop, 1 runtime failure, 2 bad usage or configuration.
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libxml/parser.h>
#include <systemd/sd-daemon.h>

#include "alert.h"
#include "catalog-ids.h"
#include "checkpointer.h"
#include "purger.h"
#include "config.h"
#include "daemon.h"
#include "db.h"
#include "jobctl.h"
#include "harden.h"
#include "log.h"
#include "methods.h"
#include "metrics.h"
#include "notify.h"
#include "seedd-build.h"
#include "server.h"
#include "stage.h"
#include "stagetab.h"
#include "statelock.h"
#include "worker.h"
#include "util.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

static const char *arg_config;
static const char *arg_state_dir;
static const char *arg_socket;
static bool arg_check_config;

/* Every option of parse_args(), as seedd(8) "Options" describes it. */
static const struct {
	const char *option, *text;
} option_help[] = {
	{"--config PATH", "read the configuration from PATH (default: " SEEDD_CONFIG_PATH ",\n"
			  "                   built-in defaults if it does not exist); see seedd.conf(5)"},
	{"--state-dir DIR", "keep the database and reports in DIR (default: $STATE_DIRECTORY,\n"
			    "                   else " SEEDD_STATE_DIR ")"},
	{"--socket PATH", "listen on PATH (default: the socket systemd passes,\n"
			  "                   else $RUNTIME_DIRECTORY/seedd.sock, else " SEEDD_RUNTIME_DIR
			  "/seedd.sock)"},
	{"--check-config", "check the configuration as a start would, print a summary of it\n"
			   "                   (no secrets) and exit: 0 valid, 2 not (file:line: why);\n"
			   "                   opens no state directory, socket or database"},
	{"--version", "print the version and exit"},
	{"-h, --help", "print this help and exit"},
};

static void
usage(FILE *f)
{
	fputs("usage: seedd [--config PATH] [--state-dir DIR] [--socket PATH]\n"
	      "       seedd --check-config [--config PATH]\n"
	      "       seedd --version | --help\n\n"
	      "The offline seeding daemon for Azure Import/Export; seedctl(1) controls it.\n\n"
	      "Options:\n",
	      f);
	for (size_t i = 0; i < ELEMENTSOF(option_help); i++)
		fprintf(f, "  %-16s %s\n", option_help[i].option, option_help[i].text);
	fputs("\nExit status: 0 clean stop, 1 runtime failure, 2 bad usage or configuration.\n"
	      "See seedd(8).\n",
	      f);
}

static int
parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"state-dir", required_argument, NULL, 's'},
		{"socket", required_argument, NULL, 'S'},
		{"check-config", no_argument, NULL, 'C'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			arg_config = optarg;
			break;
		case 's':
			arg_state_dir = optarg;
			break;
		case 'S':
			arg_socket = optarg;
			break;
		case 'C':
			arg_check_config = true;
			break;
		case 'V':
			printf("seedd %s\n", SEEDD_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "seedd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return -EINVAL;
	}
	return 1;
}

/* One line a section: "[Azure] Cloud=AzurePublic JobApi=DataBox ...". */
static void
print_config_summary(FILE *f, json_t *sum)
{
	const char *section, *key;
	json_t *keys, *v;

	json_object_foreach(sum, section, keys) {
		if (!json_is_object(keys))
			continue;
		fprintf(f, "[%s]", section);
		json_object_foreach(keys, key, v) {
			if (json_is_string(v))
				fprintf(f, " %s=%s", key, json_string_value(v));
			else if (json_is_integer(v))
				fprintf(f, " %s=%" JSON_INTEGER_FORMAT, key, json_integer_value(v));
			else
				fprintf(f, " %s=%s", key, json_is_true(v) ? "yes" : "no");
		}
		fputc('\n', f);
	}
}

/*
 * --check-config: load the configuration exactly as a start does (secret
 * files and their modes included) and say what it holds. Nothing else of
 * a start happens: no state directory, lock, socket or database.
 */
static int
check_config(const struct config *c)
{
	json_t *sum = config_summary(c);
	const char *missing = json_string_value(json_object_get(sum, "azureMissing"));

	printf("%s: valid\n", json_string_value(json_object_get(sum, "file")));
	print_config_summary(stdout, sum);
	if (missing != NULL)
		printf("Azure is not configured (%s= is not set): jobs stop before their Azure "
		       "step\n", missing);
	json_decref(sum);
	return fflush(stdout) == 0 ? 0 : EXIT_RUNTIME;
}

/* MetricsFile='s per-drive bytes and rate, from the prep stage (core reaches up only through this). */
static bool
metrics_drive(struct daemon *d, int64_t job_id, int64_t drive_id, int64_t *ret_bytes,
	      double *ret_rate)
{
	struct drive_progress pg;

	if (!prep_drive_progress(d, job_id, drive_id, &pg))
		return false;
	*ret_bytes = pg.bytes_done;
	*ret_rate = pg.rate;
	return true;
}

/* --state-dir, else the first of $STATE_DIRECTORY, else the built-in default. */
static char *
state_dir_resolve(void)
{
	const char *env = getenv("STATE_DIRECTORY");

	if (arg_state_dir != NULL)
		return xstrdup(arg_state_dir);
	if (env != NULL && *env != '\0')
		return xstrndup(env, strcspn(env, ":"));
	return xstrdup(SEEDD_STATE_DIR);
}

/* $RUNTIME_DIRECTORY/seedd.sock, else the built-in default. */
static char *
default_socket_path(void)
{
	const char *env = getenv("RUNTIME_DIRECTORY");

	if (env != NULL && *env != '\0')
		return xprintf("%.*s/seedd.sock", (int)strcspn(env, ":"), env);
	return xstrdup(SEEDD_RUNTIME_DIR "/seedd.sock");
}

/* Held for the life of the process: one seedd per state directory. */
static int state_lock_fd = -1;

static int
lock_state_dir(struct daemon *d)
{
	_cleanup_free_ char *err = NULL;
	pid_t holder;
	int r;

	if ((r = state_lock_take(d->state_dir, &holder, &err)) < 0) {
		log_error("%s", err);
		if (log_get_target() == LOG_TARGET_JOURNAL)
			fprintf(stderr, "seedd: %s\n", err);
		return r;
	}
	state_lock_fd = r;
	return 0;
}

/* Worker messages: a store fault is the daemon's; the rest go to their stage. */
static void
loop_handle_msg(struct worker_msg *m, void *userdata)
{
	struct daemon *d = userdata;

	if (m->kind == MSG_STORE_FAULT)
		daemon_store_fault_msg(d, m);
	else
		stagetab_handle_msg(m, d->stages);
}

static int
open_store(struct daemon *d)
{
	_cleanup_free_ char *path = NULL, *err = NULL;
	int r;

	if (mkdir(d->state_dir, 0700) < 0 && errno != EEXIST) {
		log_error("cannot create state directory %s: %s", d->state_dir, strerror(errno));
		return -errno;
	}
	if ((r = lock_state_dir(d)) < 0)
		return r;
	path = xprintf("%s/seedd.db", d->state_dir);
	if ((r = db_open(path, &d->db, &err)) < 0) {
		log_error("cannot open job store %s: %s", path, err ? err : strerror(-r));
		return r;
	}
	db_set_fault_hook(d->db, daemon_store_fault, d);
	/* The log is copied into the database on a thread, never by a commit of the loop. */
	if ((d->checkpointer = checkpointer_start(path)) != NULL)
		(void)db_set_autocheckpoint(d->db, false);
	d->purger = purger_start(path);
	return 0;
}

static void
stop_accepting(struct daemon *d)
{
	if (d->server != NULL)
		server_stop_accepting(d->server);
}

static int
run(struct daemon *d)
{
	_cleanup_free_ char *def = default_socket_path(), *err = NULL;
	struct log_ctx ctx = {.message_id = SEEDD_MESSAGE_STARTED};
	int r;

	if ((r = open_store(d)) < 0)
		return EXIT_RUNTIME;
	if ((r = server_new(d, arg_socket, def, methods_dispatch, &d->server, &err)) < 0) {
		log_error("%s", err);
		return EXIT_RUNTIME;
	}
	d->stop_accepting = stop_accepting;
	d->stages = stagetab_new(d);
	if ((r = stages_register(d->stages)) < 0)
		fatalx("the stage table: two stages claim one state and phase");
	d->queue = worker_queue_new(d->base, loop_handle_msg, d);
	/* The workers' own connections (not the checkpointer's and purger's, opened before). */
	db_set_default_fault_hook(daemon_store_fault_worker, d);
	d->notify = notify_new(d->base, watch_job_changed, d);
	daemon_start(d, server_path(d->server));
	log_ctx(LOG_INFO, &ctx, "seedd %s started; socket %s, state %s", SEEDD_VERSION,
		server_path(d->server), d->state_dir);
	if (stagetab_start(d->stages, &err) < 0) {
		log_error("cannot set up the Azure client: %s", err ? err : "unknown error");
		return EXIT_RUNTIME;
	}
	metrics_start(d, metrics_drive);
	stagetab_resume_all(d->stages);
	if (event_base_dispatch(d->base) < 0) {
		log_error("event loop failed");
		return EXIT_RUNTIME;
	}
	return d->exit_status != 0 ? EXIT_RUNTIME : 0;
}

int
main(int argc, char **argv)
{
	struct daemon d = {0};
	_cleanup_free_ char *err = NULL;
	int r, status;

	/*
	 * Before any JSON value or libevent buffer exists: both then wipe what
	 * they free (requests carry BitLocker recovery passwords, issue 11).
	 */
	secure_alloc_install();
	event_set_mem_functions(malloc, secure_realloc, secure_free);
	log_init(LOG_TARGET_AUTO, LOG_INFO);
	if ((r = parse_args(argc, argv)) <= 0)
		return r == 0 ? 0 : EXIT_USAGE;
	if ((r = harden_process()) < 0)
		log_warning("cannot turn core dumps off: %s; running anyway", strerror(-r));
	if (config_load(arg_config, &d.config, &err) < 0 && arg_check_config) {
		/* A command's answer: on the terminal, never in the journal. */
		fprintf(stderr, "seedd: %s\n", err);
		return EXIT_USAGE;
	} else if (d.config == NULL) {
		log_error("%s", err);
		if (log_get_target() == LOG_TARGET_JOURNAL)
			fprintf(stderr, "seedd: %s\n", err);
		return EXIT_USAGE;
	}
	if (arg_check_config) {
		status = check_config(d.config);
		config_free(d.config);
		return status;
	}
	d.config_path = arg_config ? xstrdup(arg_config) : NULL;
	d.state_dir = state_dir_resolve();
	LIST_INIT(&d.indexers);
	LIST_INIT(&d.preps);
	LIST_INIT(&d.preps_stopping);
	LIST_INIT(&d.azjobs);
	LIST_INIT(&d.posts);
	LIST_INIT(&d.probes);
	LIST_INIT(&d.planners);
	LIST_INIT(&d.reporters);
	LIST_INIT(&d.doctors);
	xmlInitParser(); /* before any thread uses libxml2 */
	if ((d.base = event_base_new()) == NULL)
		fatalx("event_base_new failed");

	status = run(&d);

	/* Workers reach a safe point (between blocks), their results are committed. */
	if (d.stages != NULL)
		stagetab_stop_all(d.stages);
	if (d.queue != NULL) /* commit what the threads finished before they stopped */
		worker_queue_drain(d.queue);
	jobctl_free(&d);
	alert_free(&d);
	d.stages = stagetab_free(d.stages);
	metrics_stop(&d);
	d.queue = worker_queue_free(d.queue);
	d.notify = notify_free(d.notify);
	d.server = server_free(d.server);
	daemon_free_events(&d);
	d.purger = purger_stop(d.purger);
	d.checkpointer = checkpointer_stop(d.checkpointer);
	if (status == 0 && d.exit_status != 0)
		status = EXIT_RUNTIME; /* the last commits, above, found the database unwritable */
	d.db = db_close(d.db);
	if (state_lock_fd >= 0)
		close(state_lock_fd); /* after the store: the next seedd finds it closed */
	event_base_free(d.base);
	config_free(d.config);
	free(d.config_path);
	free(d.state_dir);
	if (status == 0)
		log_info("stopped");
	return status;
}
