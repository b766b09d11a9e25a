/*
 * seedctl's command table and argument parser. Commands are data: each entry
 * names its words ("job create"), its positional arguments and options, the
 * varlink method it calls and how its reply is printed. Help, usage lines and
 * argument checks all come from the table.
 */
#ifndef SEEDCTL_COMMANDS_H
#define SEEDCTL_COMMANDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* seedctl's exit status (CONTRACT §4). */
enum {
	SEEDCTL_EXIT_OK = 0,
	SEEDCTL_EXIT_REFUSED = 1,     /* the daemon answered an error */
	SEEDCTL_EXIT_USAGE = 2,       /* bad command line */
	SEEDCTL_EXIT_UNREACHABLE = 3, /* no connection, or it dropped before a reply */
};

/* The error names of seedctl's own failures, for --json (seedctl(1) EXIT STATUS). */
#define SEEDCTL_ERR_USAGE "seedctl.Usage"             /* exit 2 */
#define SEEDCTL_ERR_UNREACHABLE "seedctl.Unreachable" /* exit 3 */
#define SEEDCTL_ERR_MALFORMED "seedctl.MalformedReply" /* exit 1 */

/* How an argument's text becomes a parameter value. */
enum arg_kind {
	ARG_JOB,     /* a job name, checked with job_name_valid() */
	ARG_PATH,    /* a path, made absolute on the client side */
	ARG_TEXT,    /* non-empty text */
	ARG_SIZE,    /* bytes, with an optional K/M/G/T suffix (1024-based) */
	ARG_KEYFILE, /* a file whose trimmed content is sent (a secret) */
	ARG_GLOB,    /* an exclude pattern, checked with exclude_pattern_check() */
	ARG_FLAG,    /* an option without a value: the parameter is true */
};

struct arg_spec {
	const char *metavar; /* NAME, PATH; NULL for ARG_FLAG */
	const char *param;   /* parameter name in the call */
	enum arg_kind kind;
	bool optional;
};

/* Command options; a command lists the ones it allows and requires. */
enum {
	OPT_STAGING = 1u << 0,
	OPT_CONTAINER = 1u << 1,
	OPT_SERIAL = 1u << 2,
	OPT_CAPACITY = 1u << 3,
	OPT_KEYFILE = 1u << 4,
	OPT_CARRIER = 1u << 5,
	OPT_TRACKING = 1u << 6,
	OPT_BLDEVICE = 1u << 7,
	OPT_ACTION = 1u << 8, /* job mitigate */
	OPT_EXCLUDE = 1u << 9, /* job create, repeatable */
	OPT_SKIP_REFUSED = 1u << 10, /* job retry, a flag */
	OPT_FORCE = 1u << 11,  /* drive remove */
	OPT_ALL = 1u << 12,    /* job list, watch: done and cancelled jobs too */
};

/* How the unwrapped reply value is printed in human mode (output.c). */
typedef void (*command_print_fn)(FILE *f, json_t *value);

struct command {
	const char *name;  /* command words, "job create" */
	const char *about; /* one sentence for --help */
	struct arg_spec args[2];
	int min_args, max_args;
	unsigned options;  /* OPT_* allowed */
	unsigned required; /* OPT_* that must be given */
	const char *method;    /* "GetJob"; SEEDD_INTERFACE is prepended; NULL: help */
	const char *reply_key; /* the reply parameter printed; NULL = all parameters */
	bool stream;           /* sent with "more": true (watch) */
	const char *ok_key;    /* a boolean of the reply: false exits 1 (doctor's "ok") */
	int timeout_sec;       /* for the reply; 0: CALL_TIMEOUT_MS */
	const char *unreachable_hint; /* appended when seedd cannot be reached (doctor) */
	command_print_fn print;
};

extern const struct command commands_table[];
extern const size_t commands_count;

/* A command option ("--staging DIR"): the table is read by the completion generator too. */
struct option_spec {
	unsigned flag;
	const char *name; /* without the leading "--" */
	struct arg_spec arg;
};
/* Options that may be given more than once: the parameter is an array of the values. */
#define OPTS_REPEATABLE (OPT_EXCLUDE)
/* Option i of the table, NULL past its end. */
const struct option_spec *commands_option(size_t i);

enum invocation_action {
	INVOCATION_CALL,
	INVOCATION_HELP,
	INVOCATION_VERSION,
};

/* A parsed command line. */
struct invocation {
	enum invocation_action action;
	const struct command *command; /* NULL for plain --help and --version */
	char *help_group;              /* "job" for "help job": the group's usages */
	char *method;                  /* "io.seedd.GetJob" */
	json_t *params;                /* the call's parameters */
	bool json;                     /* --json */
	char *socket;                  /* --socket, $SEEDD_SOCKET or the default */
};

/*
 * Parse argv (argv[0] is the program name) into *ret. Global options may
 * appear anywhere; "--" ends options. Returns SEEDCTL_EXIT_OK, or
 * SEEDCTL_EXIT_USAGE with *err set to an allocated message naming the bad
 * input (and *ret left empty). Reads $SEEDD_SOCKET and key files.
 */
int commands_build(int argc, char **argv, struct invocation *ret, char **err);
void invocation_done(struct invocation *inv);
/* True if argv asks for --json (before any "--"), even where it does not parse. */
bool commands_want_json(int argc, char **argv);

/* Print the full help, or one command's usage line, or those of a group ("job"). */
void commands_help(FILE *f);
void commands_usage(FILE *f, const struct command *c);
void commands_usage_group(FILE *f, const char *group);

/* Parse "4096", "500M", "2T" (1024-based) into bytes; -EINVAL if not a positive size. */
int commands_parse_size(const char *s, int64_t *ret);

#endif
