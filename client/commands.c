/*
 * seedctl's command table and command-line parser (see commands.h). Pure
 * apart from resolving paths, reading key files and $SEEDD_SOCKET; nothing
 * here talks to seedd. Single-threaded, like all of seedctl.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "exclude.h"
#include "names.h"
#include "output.h"
#include "seedd-build.h"
#include "util.h"

#define DEFAULT_SOCKET SEEDD_RUNTIME_DIR "/seedd.sock"
#define KEYFILE_MAX 4096

static const struct option_spec option_table[] = {
	{OPT_STAGING, "staging", {"DIR", "stagingPath", ARG_PATH, false}},
	{OPT_CONTAINER, "container", {"C", "container", ARG_TEXT, false}},
	{OPT_ACTION, "action", {"A", "action", ARG_TEXT, false}}, /* before --serial in usage */
	{OPT_SERIAL, "serial", {"S", "serial", ARG_TEXT, false}},
	{OPT_CAPACITY, "capacity", {"BYTES", "capacity", ARG_SIZE, false}},
	{OPT_KEYFILE, "bitlocker-key-file", {"F", "bitlockerKey", ARG_KEYFILE, false}},
	{OPT_BLDEVICE, "bitlocker-device", {"DEV", "bitlockerDevice", ARG_PATH, false}},
	{OPT_CARRIER, "carrier", {"C", "carrier", ARG_TEXT, false}},
	{OPT_TRACKING, "tracking", {"T", "trackingNumber", ARG_TEXT, false}},
	{OPT_EXCLUDE, "exclude", {"GLOB", "excludes", ARG_GLOB, false}},
	{OPT_SKIP_REFUSED, "skip-refused", {NULL, "skipRefused", ARG_FLAG, false}},
	{OPT_FORCE, "force", {NULL, "force", ARG_FLAG, false}},
	/* Sent inverted (hideFinished) unless given: see command_params(). */
	{OPT_ALL, "all", {NULL, "all", ARG_FLAG, false}},
};
#define OPTION_COUNT ELEMENTSOF(option_table)

const struct option_spec *
commands_option(size_t i)
{
	return i < OPTION_COUNT ? &option_table[i] : NULL;
}

#define ARG_NAME {"NAME", "name", ARG_JOB, false}
#define JOB_COMMAND(n, m, k, p, a)                                                                 \
	{                                                                                          \
		.name = (n), .about = (a), .args = {ARG_NAME}, .min_args = 1, .max_args = 1,       \
		.method = (m), .reply_key = (k), .print = (p),                                     \
	}

/* In the order of CONTRACT §4; --help and seedctl(1) follow it. */
const struct command commands_table[] = {
	{
		.name = "status",
		.about = "Show the daemon version, its uptime and the jobs in each state.",
		.method = "GetStatus",
		.print = output_status,
	},
	{
		.name = "job create",
		.about = "Register a job and index its staging tree.",
		.args = {ARG_NAME},
		.min_args = 1,
		.max_args = 1,
		.options = OPT_STAGING | OPT_CONTAINER | OPT_EXCLUDE,
		.required = OPT_STAGING,
		.method = "CreateJob",
		.reply_key = "job",
		.print = output_job,
	},
	{
		.name = "job list",
		.about = "List the jobs; done and cancelled ones only with --all.",
		.options = OPT_ALL,
		.method = "ListJobs",
		.reply_key = "jobs",
		.print = output_jobs,
	},
	JOB_COMMAND("job show", "GetJob", "job", output_job, "Show one job in detail."),
	JOB_COMMAND("job log", "GetJobLog", "events", output_events, "Show a job's event history."),
	{
		.name = "drive add",
		.about = "Attach a mounted drive to a job.",
		.args = {ARG_NAME, {"PATH", "path", ARG_PATH, false}},
		.min_args = 2,
		.max_args = 2,
		.options = OPT_SERIAL | OPT_CAPACITY | OPT_KEYFILE | OPT_BLDEVICE,
		.method = "AddDrive",
		.reply_key = "drive",
		.print = output_drive,
	},
	JOB_COMMAND("drive list", "ListDrives", "drives", output_drives, "List a job's drives."),
	{
		.name = "drive remove",
		.about = "Detach a drive before shipping; --force if it holds verified files, "
			 "which then go to the other drives.",
		.args = {ARG_NAME, {"SERIAL", "serial", ARG_TEXT, false}},
		.min_args = 2,
		.max_args = 2,
		.options = OPT_FORCE,
		.method = "RemoveDrive",
		.reply_key = "job",
		.print = output_job,
	},
	JOB_COMMAND("job plan", "PlanJob", "plan", output_plan,
		    "Dry run: which file goes to which drive, what is left over, names Azure would "
		    "refuse."),
	JOB_COMMAND("job prepare", "PrepareJob", "job", output_job,
		    "Start drive preparation: copy, verify, write manifests, create the Azure job."),
	{
		.name = "job ship",
		.about = "Record the shipment and send it to Azure.",
		.args = {ARG_NAME},
		.min_args = 1,
		.max_args = 1,
		.options = OPT_CARRIER | OPT_TRACKING,
		.required = OPT_CARRIER | OPT_TRACKING,
		.method = "ShipJob",
		.reply_key = "job",
		.print = output_job,
	},
	JOB_COMMAND("job cancel", "CancelJob", "job", output_job,
		    "Cancel a job, and its Azure job where still allowed."),
	{
		.name = "job retry",
		.about = "Retry the step a failed job stopped at.",
		.args = {ARG_NAME},
		.min_args = 1,
		.max_args = 1,
		.options = OPT_SKIP_REFUSED,
		.method = "RetryJob",
		.reply_key = "job",
		.print = output_job,
	},
	JOB_COMMAND("job report", "GetJobReport", "report", output_report,
		    "Print the audit report: drives, tracking, per-file hashes, every transition."),
	{
		.name = "watch",
		.about = "Follow the progress of one job, or of all jobs (done and cancelled ones "
			 "only with --all), until it is over.",
		.args = {{"NAME", "name", ARG_JOB, true}},
		.min_args = 0,
		.max_args = 1,
		.options = OPT_ALL,
		.method = "Watch",
		.reply_key = "job",
		.stream = true,
	},
	{
		.name = "job mitigate",
		.about = "Answer Azure's WaitingForCustomerAction with its mitigate call.",
		.args = {ARG_NAME},
		.min_args = 1,
		.max_args = 1,
		.options = OPT_ACTION | OPT_SERIAL,
		.required = OPT_ACTION,
		.method = "MitigateJob",
		.reply_key = "job",
		.print = output_job,
	},
	{
		.name = "doctor",
		.about = "Check the set-up: daemon, configuration, Azure credentials and rights, "
			 "containers, drives; one line each, ok or what to fix (exit 1 if any "
			 "check fails).",
		.method = "Doctor",
		.print = output_doctor,
		.ok_key = "ok",
		.timeout_sec = 90, /* each check ends within 20 s; a token comes first */
		.unreachable_hint = "; is seedd running (systemctl status seedd), and is --socket "
				    "or $SEEDD_SOCKET its socket?",
	},
	{
		.name = "job purge",
		.about = "Forget a done, failed or cancelled job; its report file stays.",
		.args = {ARG_NAME},
		.min_args = 1,
		.max_args = 1,
		.method = "PurgeJob",
		.print = output_purged,
	},
	{
		/* No method: answered by seedctl itself (help_fill). */
		.name = "help",
		.about = "Show the list of commands, or the usage of a command or of a group "
			 "(\"help job\").",
		.args = {{"COMMAND", "command", ARG_TEXT, true}},
		.min_args = 0,
		.max_args = 1,
	},
};
const size_t commands_count = ELEMENTSOF(commands_table);

/* The command line split into global flags, option values and the rest. */
struct cmdline {
	char **pos;
	int npos;
	const char **optval[OPTION_COUNT]; /* each option's values, in order; NULL: not given */
	size_t nval[OPTION_COUNT];
	const char *socket;
	bool json, help, version;
};

/*
 * Word "level" (0 or 1) of a command's name: its start in *ret and its
 * length, 0 if the name has no such word.
 */
static size_t
command_word(const struct command *c, int level, const char **ret)
{
	const char *sp = strchr(c->name, ' ');

	if (level == 0) {
		*ret = c->name;
		return sp ? (size_t)(sp - c->name) : strlen(c->name);
	}
	if (sp == NULL)
		return 0;
	*ret = sp + 1;
	return strlen(sp + 1);
}

/* True if c's first word is w0 (length n0); any command if w0 is NULL. */
static bool
command_in_group(const struct command *c, const char *w0, size_t n0)
{
	const char *w;

	return w0 == NULL || (command_word(c, 0, &w) == n0 && strncmp(w, w0, n0) == 0);
}

/* True if command i is the first in group w0 to have its level word. */
static bool
command_word_first(size_t i, int level, const char *w0, size_t n0)
{
	const char *w = NULL, *v = NULL;
	size_t n = command_word(&commands_table[i], level, &w);

	for (size_t j = 0; j < i; j++) {
		const struct command *c = &commands_table[j];
		if (command_in_group(c, w0, n0) && command_word(c, level, &v) == n &&
		    strncmp(v, w, n) == 0)
			return false;
	}
	return true;
}

/* The distinct level words of group w0 that start with prefix, comma-separated. */
static char *
command_words_list(int level, const char *w0, size_t n0, const char *prefix)
{
	char *list = xstrdup(""), *next;

	for (size_t i = 0; i < commands_count; i++) {
		const struct command *c = &commands_table[i];
		const char *w;
		size_t n;

		if (!command_in_group(c, w0, n0) || (n = command_word(c, level, &w)) == 0 ||
		    strncmp(w, prefix, strlen(prefix)) != 0 ||
		    !command_word_first(i, level, w0, n0))
			continue;
		next = xprintf("%s%s%.*s", list, *list ? ", " : "", (int)n, w);
		free(list);
		list = next;
	}
	return list;
}

/*
 * Find the command whose level word is arg, exactly or as a unique prefix,
 * among the commands of group w0 (level 1) or all of them (level 0).
 */
static int
command_match(const char *arg, int level, const char *w0, size_t n0, const struct command **ret,
	      char **err)
{
	const struct command *found = NULL;
	const char *fw = NULL, *w;
	size_t len = strlen(arg), fn = 0, n;
	bool ambiguous = false;

	for (size_t i = 0; i < commands_count; i++) {
		const struct command *c = &commands_table[i];

		if (!command_in_group(c, w0, n0) || (n = command_word(c, level, &w)) == 0)
			continue;
		if (n == len && strncmp(w, arg, n) == 0) {
			*ret = c;
			return 0;
		}
		if (len == 0 || len > n || strncmp(w, arg, len) != 0)
			continue;
		if (found == NULL) {
			found = c;
			fw = w;
			fn = n;
		} else if (fn != n || strncmp(fw, w, n) != 0)
			ambiguous = true;
	}
	if (found != NULL && !ambiguous) {
		*ret = found;
		return 0;
	}
	if (found != NULL) {
		_cleanup_free_ char *list = command_words_list(level, w0, n0, arg);
		*err = xprintf("ambiguous command '%.*s%s%s' (could be: %s)", (int)n0, w0 ? w0 : "",
			       w0 ? " " : "", arg, list);
	} else
		*err = xprintf("unknown command '%.*s%s%s' (see seedctl --help)", (int)n0,
			       w0 ? w0 : "", w0 ? " " : "", arg);
	return -EINVAL;
}

/* Resolve the command words at the start of pos; *ret_words is how many were used. */
static int
command_resolve(char **pos, int npos, const struct command **ret, int *ret_words, char **err)
{
	const struct command *c;
	const char *w0, *w1;
	size_t n0;
	int r;

	if (npos == 0) {
		*err = xstrdup("no command given (see seedctl --help)");
		return -EINVAL;
	}
	if ((r = command_match(pos[0], 0, NULL, 0, &c, err)) < 0)
		return r;
	n0 = command_word(c, 0, &w0);
	if (command_word(c, 1, &w1) == 0) {
		*ret = c;
		*ret_words = 1;
		return 0;
	}
	if (npos < 2) {
		_cleanup_free_ char *list = command_words_list(1, w0, n0, "");
		*err = xprintf("'%.*s' needs a subcommand: %s", (int)n0, w0, list);
		return -EINVAL;
	}
	if ((r = command_match(pos[1], 1, w0, n0, &c, err)) < 0)
		return r;
	*ret = c;
	*ret_words = 2;
	return 0;
}

/* True if the len bytes at a are exactly name. */
static bool
option_is(const char *a, size_t len, const char *name)
{
	return strlen(name) == len && strncmp(a, name, len) == 0;
}

static const struct option_spec *
option_find(const char *name, size_t len)
{
	for (size_t i = 0; i < OPTION_COUNT; i++)
		if (option_is(name, len, option_table[i].name))
			return &option_table[i];
	return NULL;
}

/* Record one value of a command option; only a repeatable one may come again. */
static int
cmdline_value(struct cmdline *cl, const struct option_spec *o, const char *value, char **err)
{
	size_t k = (size_t)(o - option_table);

	if (cl->nval[k] > 0 && !(o->flag & OPTS_REPEATABLE)) {
		*err = xprintf("option --%s given more than once", o->name);
		return -EINVAL;
	}
	cl->optval[k] = xreallocarray(cl->optval[k], cl->nval[k] + 1, sizeof(char *));
	cl->optval[k][cl->nval[k]++] = value;
	return 0;
}

/*
 * Handle the option argv[*i] ("--name" or "--name=value"), taking its
 * value from argv[*i + 1] where needed; a flag takes none.
 */
static int
cmdline_option(struct cmdline *cl, int argc, char **argv, int *i, char **err)
{
	const char *a = argv[*i] + 2, *eq = strchr(a, '='), *value = eq ? eq + 1 : NULL;
	size_t len = eq ? (size_t)(eq - a) : strlen(a);
	const struct option_spec *o = NULL;
	const char **slot = NULL;
	bool *flag = NULL;

	if (option_is(a, len, "json"))
		flag = &cl->json;
	else if (option_is(a, len, "help"))
		flag = &cl->help;
	else if (option_is(a, len, "version"))
		flag = &cl->version;
	if (flag != NULL) {
		if (eq != NULL) {
			*err = xprintf("option --%.*s takes no value", (int)len, a);
			return -EINVAL;
		}
		*flag = true;
		return 0;
	}
	if (option_is(a, len, "socket"))
		slot = &cl->socket;
	else if ((o = option_find(a, len)) == NULL) {
		*err = xprintf("unknown option '--%.*s' (see seedctl --help)", (int)len, a);
		return -EINVAL;
	} else if (o->arg.kind == ARG_FLAG && eq != NULL) {
		*err = xprintf("option --%.*s takes no value", (int)len, a);
		return -EINVAL;
	} else if (o->arg.kind == ARG_FLAG)
		value = "";
	if (value == NULL) {
		if (*i + 1 >= argc) {
			*err = xprintf("option --%.*s needs a value", (int)len, a);
			return -EINVAL;
		}
		value = argv[++*i];
	}
	if (slot == NULL)
		return cmdline_value(cl, o, value, err);
	if (*slot != NULL) {
		*err = xprintf("option --%.*s given more than once", (int)len, a);
		return -EINVAL;
	}
	*slot = value;
	return 0;
}

/* Split argv into options and positional words; options may appear anywhere before "--". */
static int
cmdline_parse(struct cmdline *cl, int argc, char **argv, char **err)
{
	bool dashdash = false;
	int r;

	cl->pos = xcalloc((size_t)argc + 1, sizeof(char *));
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];

		if (dashdash || a[0] != '-' || a[1] == '\0')
			cl->pos[cl->npos++] = a;
		else if (strcmp(a, "--") == 0)
			dashdash = true;
		else if (strcmp(a, "-h") == 0)
			cl->help = true;
		else if (a[1] == '-') {
			if ((r = cmdline_option(cl, argc, argv, &i, err)) < 0)
				return r;
		} else {
			*err = xprintf("unknown option '%s' (see seedctl --help)", a);
			return -EINVAL;
		}
	}
	return 0;
}

int
commands_parse_size(const char *s, int64_t *ret)
{
	static const char units[] = "KMGT";
	const char *u;
	char *end;
	unsigned long long v;
	int shift = 0;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || v == 0)
		return -EINVAL;
	if (*end != '\0') {
		char c = *end >= 'a' && *end <= 'z' ? (char)(*end - 'a' + 'A') : *end;
		if ((u = strchr(units, c)) == NULL)
			return -EINVAL;
		shift = 10 * (int)(u - units + 1);
		end++;
		if (strcmp(end, "") != 0 && strcmp(end, "iB") != 0 && strcmp(end, "B") != 0)
			return -EINVAL;
	}
	if (v > (unsigned long long)INT64_MAX >> shift)
		return -EINVAL;
	*ret = (int64_t)(v << shift);
	return 0;
}

/* Read a key file, trimmed of surrounding white space; the content is a secret. */
static int
read_keyfile(const char *path, char **ret)
{
	_cleanup_close_ int fd = -1;
	char buf[KEYFILE_MAX + 1], *s, *e;
	size_t len = 0;
	ssize_t n;
	int r = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return -errno;
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		len += (size_t)n;
	}
	if (r == 0 && len > KEYFILE_MAX)
		r = -EFBIG;
	if (r == 0) {
		buf[len] = '\0';
		for (s = buf; *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'; s++)
			;
		for (e = buf + len; e > s && strchr(" \t\r\n", e[-1]) != NULL; e--)
			;
		if (e == s || memchr(s, '\0', (size_t)(e - s)) != NULL)
			r = -ENODATA;
		else
			*ret = xstrndup(s, (size_t)(e - s));
	}
	explicit_bzero(buf, sizeof(buf));
	return r;
}

/* Make path absolute: resolved if it exists, else joined to the working directory. */
static char *
path_absolute(const char *path)
{
	char *p, *cwd;

	if ((p = realpath(path, NULL)) != NULL)
		return p;
	if (path[0] == '/' || (cwd = getcwd(NULL, 0)) == NULL)
		return xstrdup(path);
	p = xprintf("%s%s%s", cwd, strcmp(cwd, "/") == 0 ? "" : "/", path);
	free(cwd);
	return p;
}

/* Turn one argument's text into its parameter value, per its kind; label names it in errors. */
static int
arg_convert(const struct arg_spec *a, const char *label, const char *text, json_t **ret,
	    char **err)
{
	_cleanup_free_ char *s = NULL;
	int64_t size;
	int r;

	if (!utf8_valid(text, strlen(text))) {
		*err = xprintf("%s is not valid UTF-8", label);
		return -EINVAL;
	}
	switch (a->kind) {
	case ARG_JOB:
		if (!job_name_valid(text)) {
			*err = xprintf("invalid job name '%s': use %d to %d letters, digits, "
				       "'-', '_' or '.'", text, JOB_NAME_MIN, JOB_NAME_MAX);
			return -EINVAL;
		}
		break;
	case ARG_PATH:
		if (*text == '\0') {
			*err = xprintf("%s must not be empty", label);
			return -EINVAL;
		}
		s = path_absolute(text);
		if (strlen(s) > PATH_PARAM_MAX || !utf8_valid(s, strlen(s))) {
			*err = xprintf("%s '%s' is too long or not valid UTF-8", label, text);
			return -EINVAL;
		}
		text = s;
		break;
	case ARG_TEXT:
		if (*text == '\0' || strlen(text) > TEXT_PARAM_MAX) {
			*err = xprintf("%s must be 1 to %d bytes long", label, TEXT_PARAM_MAX);
			return -EINVAL;
		}
		break;
	case ARG_SIZE:
		if (commands_parse_size(text, &size) < 0) {
			*err = xprintf("invalid %s '%s': expected a positive number of bytes, "
				       "optionally with a K, M, G or T suffix", label, text);
			return -EINVAL;
		}
		*ret = json_integer(size);
		return 0;
	case ARG_GLOB: {
		const char *why = exclude_pattern_check(text);
		if (why != NULL) {
			*err = xprintf("invalid %s '%s': %s", label, text, why);
			return -EINVAL;
		}
		break;
	}
	case ARG_FLAG:
		*ret = json_true();
		return 0;
	case ARG_KEYFILE:
		if ((r = read_keyfile(text, &s)) < 0) {
			*err = xprintf("cannot use %s '%s': %s", label, text,
				       r == -ENODATA ? "no key in it" : strerror(-r));
			return -EINVAL;
		}
		if (!utf8_valid(s, strlen(s))) {
			explicit_bzero(s, strlen(s));
			*err = xprintf("cannot use %s '%s': not valid UTF-8", label, text);
			return -EINVAL;
		}
		*ret = json_string(s);
		explicit_bzero(s, strlen(s));
		return 0;
	}
	*ret = json_string(text);
	return 0;
}

/* "job create NAME --staging DIR [--container C]" */
static char *
command_synopsis(const struct command *c)
{
	char *s = xstrdup(c->name), *next;

	for (int i = 0; i < c->max_args; i++) {
		const struct arg_spec *a = &c->args[i];
		next = xprintf(a->optional ? "%s [%s]" : "%s %s", s, a->metavar);
		free(s);
		s = next;
	}
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		const struct option_spec *o = &option_table[i];
		if (!(c->options & o->flag))
			continue;
		if (o->arg.kind == ARG_FLAG)
			next = xprintf("%s [--%s]", s, o->name);
		else if (c->required & o->flag)
			next = xprintf("%s --%s %s", s, o->name, o->arg.metavar);
		else if (o->flag & OPTS_REPEATABLE)
			next = xprintf("%s [--%s %s ...]", s, o->name, o->arg.metavar);
		else
			next = xprintf("%s [--%s %s]", s, o->name, o->arg.metavar);
		free(s);
		s = next;
	}
	return s;
}

/* Option o's n values as its parameter: one value, or an array of them (repeatable). */
static int
option_params(const struct option_spec *o, const char **val, size_t n, json_t *params, char **err)
{
	_cleanup_free_ char *label = xprintf("--%s", o->name);
	json_t *a = (o->flag & OPTS_REPEATABLE) ? json_array() : NULL, *v;
	int r = 0;

	for (size_t k = 0; r == 0 && k < n; k++) {
		if ((r = arg_convert(&o->arg, label, val[k], &v, err)) < 0)
			break;
		if (a != NULL)
			json_array_append_new(a, v);
		else
			json_object_set_new(params, o->arg.param, v);
	}
	if (a != NULL && r == 0)
		json_object_set_new(params, o->arg.param, a);
	else
		json_decref(a);
	/* The key file's name too ("bitlockerKeyFile"): seedd names it in a refusal. */
	if (r == 0 && o->arg.kind == ARG_KEYFILE) {
		_cleanup_free_ char *name = xprintf("%sFile", o->arg.param);
		_cleanup_free_ char *file = path_absolute(val[0]);
		json_object_set_new(params, name, json_string(file));
	}
	return r;
}

/* Check counts and options of c against the command line and build the call's parameters. */
static int
command_params(const struct command *c, char **args, int nargs, const struct cmdline *cl,
	       json_t **ret, char **err)
{
	json_t *params = json_object(), *v;
	int r = -EINVAL;

	if (nargs < c->min_args) {
		_cleanup_free_ char *syn = command_synopsis(c);
		*err = xprintf("%s: missing %s (usage: seedctl %s)", c->name,
			       c->args[nargs].metavar, syn);
	} else if (nargs > c->max_args)
		*err = xprintf("%s: unexpected argument '%s'", c->name, args[c->max_args]);
	else
		r = 0;
	for (size_t i = 0; r == 0 && i < OPTION_COUNT; i++) {
		const struct option_spec *o = &option_table[i];
		if (cl->nval[i] > 0 && !(c->options & o->flag)) {
			*err = xprintf("%s: option --%s does not apply", c->name, o->name);
			r = -EINVAL;
		} else if (cl->nval[i] == 0 && (c->required & o->flag)) {
			*err = xprintf("%s: missing --%s %s", c->name, o->name, o->arg.metavar);
			r = -EINVAL;
		}
	}
	for (int i = 0; r == 0 && i < nargs; i++)
		if ((r = arg_convert(&c->args[i], c->args[i].metavar, args[i], &v, err)) == 0)
			json_object_set_new(params, c->args[i].param, v);
	for (size_t i = 0; r == 0 && i < OPTION_COUNT; i++)
		if (cl->nval[i] > 0)
			r = option_params(&option_table[i], cl->optval[i], cl->nval[i], params, err);
	/*
	 * --all is the protocol's default: without it, seedctl asks to leave out
	 * done and cancelled jobs where it lists every job (not watch NAME).
	 */
	if (r == 0 && (c->options & OPT_ALL)) {
		bool all = json_object_get(params, "all") != NULL;
		json_object_del(params, "all");
		if (!all && json_object_get(params, "name") == NULL)
			json_object_set_new(params, "hideFinished", json_true());
	}
	if (r < 0) {
		json_decref(params);
		return r;
	}
	*ret = params;
	return 0;
}

/*
 * Help on the command words in pos: all commands (none given), one
 * command's usage, or a group's ("job"). strict ("seedctl help WORDS"):
 * words that name nothing are bad usage; with --help they get the full help.
 */
static int
help_fill(struct invocation *inv, char **pos, int npos, bool strict, char **err)
{
	const struct command *c;
	const char *w0;
	char *e = NULL;
	int words;

	inv->action = INVOCATION_HELP;
	if (npos == 0)
		return 0;
	if (command_resolve(pos, npos, &c, &words, &e) == 0 && (!strict || words == npos)) {
		inv->command = c;
		free(e);
		return 0;
	}
	free(e);
	e = NULL;
	if (npos == 1 && command_match(pos[0], 0, NULL, 0, &c, &e) == 0 &&
	    command_word(c, 1, &w0) != 0) {
		size_t n0 = command_word(c, 0, &w0);
		inv->help_group = xstrndup(w0, n0);
		return 0;
	}
	free(e);
	if (!strict)
		return 0;
	/* Again, for its message: what is wrong with the words. */
	e = NULL;
	if (command_resolve(pos, npos, &c, &words, &e) == 0)
		e = xprintf("help: unexpected argument '%s'", pos[words]);
	*err = e;
	return -EINVAL;
}

static int
invocation_fill(struct invocation *inv, const struct cmdline *cl, char **err)
{
	const char *sock = cl->socket, *env = getenv("SEEDD_SOCKET");
	const struct command *c;
	int words, r;

	inv->json = cl->json;
	if (cl->help)
		return help_fill(inv, cl->pos, cl->npos, false, err);
	if (cl->version) {
		inv->action = INVOCATION_VERSION;
		return 0;
	}
	if (sock == NULL)
		sock = env != NULL && *env != '\0' ? env : DEFAULT_SOCKET;
	if (*sock == '\0') {
		*err = xstrdup("--socket must not be empty");
		return -EINVAL;
	}
	if ((r = command_resolve(cl->pos, cl->npos, &c, &words, err)) < 0)
		return r;
	if (c->method == NULL)
		return help_fill(inv, cl->pos + words, cl->npos - words, true, err);
	if ((r = command_params(c, cl->pos + words, cl->npos - words, cl, &inv->params, err)) < 0)
		return r;
	inv->action = INVOCATION_CALL;
	inv->command = c;
	inv->method = xprintf("%s.%s", SEEDD_INTERFACE, c->method);
	inv->socket = xstrdup(sock);
	return 0;
}

int
commands_build(int argc, char **argv, struct invocation *ret, char **err)
{
	struct cmdline cl = {0};
	int r;

	*ret = (struct invocation){0};
	*err = NULL;
	if ((r = cmdline_parse(&cl, argc, argv, err)) == 0)
		r = invocation_fill(ret, &cl, err);
	free(cl.pos);
	for (size_t i = 0; i < OPTION_COUNT; i++)
		free(cl.optval[i]);
	if (r < 0) {
		invocation_done(ret);
		return SEEDCTL_EXIT_USAGE;
	}
	return SEEDCTL_EXIT_OK;
}

bool
commands_want_json(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--json") == 0)
			return true;
	return false;
}

void
invocation_done(struct invocation *inv)
{
	free(inv->method);
	free(inv->socket);
	free(inv->help_group);
	json_decref(inv->params);
	*inv = (struct invocation){0};
}

void
commands_usage(FILE *f, const struct command *c)
{
	_cleanup_free_ char *syn = command_synopsis(c);

	fprintf(f, "usage: seedctl [--socket PATH] [--json] %s\n\n%s\n", syn, c->about);
}

void
commands_usage_group(FILE *f, const char *group)
{
	fprintf(f, "usage: seedctl [--socket PATH] [--json] %s COMMAND ...\n\nCommands:\n", group);
	for (size_t i = 0; i < commands_count; i++) {
		_cleanup_free_ char *syn = NULL;
		if (!command_in_group(&commands_table[i], group, strlen(group)))
			continue;
		syn = command_synopsis(&commands_table[i]);
		fprintf(f, "  %s\n      %s\n", syn, commands_table[i].about);
	}
}

void
commands_help(FILE *f)
{
	fputs("usage: seedctl [--socket PATH] [--json] COMMAND ...\n\n"
	      "Control seedd, the offline seeding daemon for Azure Import/Export.\n\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < commands_count; i++) {
		_cleanup_free_ char *syn = command_synopsis(&commands_table[i]);
		fprintf(f, "  %s\n      %s\n", syn, commands_table[i].about);
	}
	fputs("\nOptions (anywhere on the command line):\n"
	      "  --socket PATH  seedd's socket (default: $SEEDD_SOCKET, else " DEFAULT_SOCKET ")\n"
	      "  --json         print the reply as one JSON document (watch: one a line)\n"
	      "  -h, --help     show this help, or a command's usage\n"
	      "  --version      show seedctl's version\n\n"
	      "Exit status: 0 ok, 1 seedd refused, 2 bad usage, 3 seedd unreachable.\n"
	      "Command words may be abbreviated to a unique prefix.\n",
	      f);
}
