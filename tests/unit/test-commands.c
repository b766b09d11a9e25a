/*
 * seedctl's command table and client: argv -> method + parameters, usage
 * errors (exit 2, naming the bad input), generated help, and call_run()
 * against a forked fake seedd for exit status and output.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "call.h"
#include "commands.h"
#include "output.h"
#include "test.h"
#include "util.h"
#include "varlink.h"

#define MAX_ARGS 14

static char tmpdir[PATH_MAX];

/* Run commands_build on a NULL-terminated word list (argv[0] is added). */
static int
build(const char *const *words, struct invocation *inv, char **err)
{
	char *argv[MAX_ARGS + 2] = {(char *)"seedctl"};
	int argc = 1;

	for (; words[argc - 1] != NULL; argc++)
		argv[argc] = (char *)words[argc - 1];
	return commands_build(argc, argv, inv, err);
}

/* ---- argv -> call ------------------------------------------------------ */

struct build_case {
	const char *argv[MAX_ARGS];
	const char *method;
	const char *params;
	bool json;
};

static const struct build_case build_cases[] = {
	{{"status"}, "io.seedd.GetStatus", "{}", false},
	{{"--json", "status"}, "io.seedd.GetStatus", "{}", true},
	{{"status", "--json"}, "io.seedd.GetStatus", "{}", true},
	{{"job", "create", "backup1", "--staging", "/", "--container", "c1"},
	 "io.seedd.CreateJob",
	 "{\"name\":\"backup1\",\"stagingPath\":\"/\",\"container\":\"c1\"}", false},
	{{"job", "create", "--staging=/", "backup1"}, "io.seedd.CreateJob",
	 "{\"name\":\"backup1\",\"stagingPath\":\"/\"}", false},
	/* Without --all, seedctl asks to leave out done and cancelled jobs. */
	{{"job", "list"}, "io.seedd.ListJobs", "{\"hideFinished\":true}", false},
	{{"job", "list", "--all"}, "io.seedd.ListJobs", "{}", false},
	{{"drive", "remove", "abc", "WD-1"}, "io.seedd.RemoveDrive",
	 "{\"name\":\"abc\",\"serial\":\"WD-1\"}", false},
	{{"drive", "remove", "--force", "abc", "WD-1"}, "io.seedd.RemoveDrive",
	 "{\"name\":\"abc\",\"serial\":\"WD-1\",\"force\":true}", false},
	{{"job", "purge", "abc"}, "io.seedd.PurgeJob", "{\"name\":\"abc\"}", false},
	{{"job", "show", "abc"}, "io.seedd.GetJob", "{\"name\":\"abc\"}", false},
	{{"job", "log", "a.b-c_d"}, "io.seedd.GetJobLog", "{\"name\":\"a.b-c_d\"}", false},
	{{"drive", "add", "abc", "/", "--serial", "WD-1", "--capacity", "2G"}, "io.seedd.AddDrive",
	 "{\"name\":\"abc\",\"path\":\"/\",\"serial\":\"WD-1\",\"capacity\":2147483648}", false},
	{{"drive", "add", "abc", "/"}, "io.seedd.AddDrive", "{\"name\":\"abc\",\"path\":\"/\"}",
	 false},
	{{"drive", "list", "abc"}, "io.seedd.ListDrives", "{\"name\":\"abc\"}", false},
	{{"job", "plan", "abc"}, "io.seedd.PlanJob", "{\"name\":\"abc\"}", false},
	{{"job", "prepare", "abc"}, "io.seedd.PrepareJob", "{\"name\":\"abc\"}", false},
	{{"job", "ship", "abc", "--carrier", "UPS", "--tracking", "1Z 999"}, "io.seedd.ShipJob",
	 "{\"name\":\"abc\",\"carrier\":\"UPS\",\"trackingNumber\":\"1Z 999\"}", false},
	{{"job", "cancel", "abc"}, "io.seedd.CancelJob", "{\"name\":\"abc\"}", false},
	{{"job", "retry", "abc"}, "io.seedd.RetryJob", "{\"name\":\"abc\"}", false},
	{{"job", "retry", "--skip-refused", "abc"}, "io.seedd.RetryJob",
	 "{\"name\":\"abc\",\"skipRefused\":true}", false},
	/* --exclude repeats, in order, as one array. */
	{{"job", "create", "abc", "--staging", "/", "--exclude", "**/*.tmp", "--exclude=cache"},
	 "io.seedd.CreateJob",
	 "{\"name\":\"abc\",\"stagingPath\":\"/\",\"excludes\":[\"**/*.tmp\",\"cache\"]}",
	 false},
	{{"job", "report", "abc", "--json"}, "io.seedd.GetJobReport", "{\"name\":\"abc\"}", true},
	{{"watch"}, "io.seedd.Watch", "{\"hideFinished\":true}", false},
	{{"watch", "--all"}, "io.seedd.Watch", "{}", false},
	{{"watch", "abc"}, "io.seedd.Watch", "{\"name\":\"abc\"}", false},
	{{"doctor"}, "io.seedd.Doctor", "{}", false},
	{{"job", "mitigate", "abc", "--action", "Resume", "--serial", "WD-1"}, "io.seedd.MitigateJob",
	 "{\"name\":\"abc\",\"action\":\"Resume\",\"serial\":\"WD-1\"}", false},
	{{"job", "mitigate", "abc", "--action", "None"}, "io.seedd.MitigateJob",
	 "{\"name\":\"abc\",\"action\":\"None\"}", false},
	/* Unique prefixes of command words. */
	{{"st"}, "io.seedd.GetStatus", "{}", false},
	{{"j", "sho", "abc"}, "io.seedd.GetJob", "{\"name\":\"abc\"}", false},
	{{"dr", "l", "abc"}, "io.seedd.ListDrives", "{\"name\":\"abc\"}", false},
	{{"job", "rep", "abc"}, "io.seedd.GetJobReport", "{\"name\":\"abc\"}", false},
	/* "--" ends options, so a name may start with a dash. */
	{{"job", "show", "--", "-ab"}, "io.seedd.GetJob", "{\"name\":\"-ab\"}", false},
	{{"drive", "add", "abc", "/", "--capacity", "4096"}, "io.seedd.AddDrive",
	 "{\"name\":\"abc\",\"path\":\"/\",\"capacity\":4096}", false},
};

static void
test_build(void)
{
	for (size_t i = 0; i < ELEMENTSOF(build_cases); i++) {
		const struct build_case *c = &build_cases[i];
		struct invocation inv;
		char *err = NULL;
		json_t *want = json_loads(c->params, 0, NULL);
		int r = build(c->argv, &inv, &err);

		if (r != SEEDCTL_EXIT_OK)
			fprintf(stderr, "case %zu (%s): %s\n", i, c->method, err);
		check_int(r, SEEDCTL_EXIT_OK);
		check(err == NULL);
		check_int(inv.action, INVOCATION_CALL);
		check_str(inv.method, c->method);
		check(want != NULL);
		if (!json_equal(inv.params, want)) {
			char *got = json_dumps(inv.params, JSON_COMPACT);
			fprintf(stderr, "case %zu: params %s, want %s\n", i, got, c->params);
			check(false);
		}
		check_int(inv.json, c->json);
		check_int(inv.command->stream, strcmp(c->method, "io.seedd.Watch") == 0);
		json_decref(want);
		invocation_done(&inv);
	}
}

static void
test_socket_choice(void)
{
	struct invocation inv;
	char *err = NULL;

	unsetenv("SEEDD_SOCKET");
	check_int(build((const char *[]){"status", NULL}, &inv, &err), 0);
	check_str(inv.socket, "/run/seedd/seedd.sock");
	invocation_done(&inv);

	setenv("SEEDD_SOCKET", "/tmp/env.sock", 1);
	check_int(build((const char *[]){"status", NULL}, &inv, &err), 0);
	check_str(inv.socket, "/tmp/env.sock");
	invocation_done(&inv);

	check_int(build((const char *[]){"status", "--socket", "/tmp/opt.sock", NULL}, &inv, &err), 0);
	check_str(inv.socket, "/tmp/opt.sock");
	invocation_done(&inv);
	check_int(build((const char *[]){"--socket=/tmp/eq.sock", "status", NULL}, &inv, &err), 0);
	check_str(inv.socket, "/tmp/eq.sock");
	invocation_done(&inv);

	setenv("SEEDD_SOCKET", "", 1); /* empty counts as unset */
	check_int(build((const char *[]){"status", NULL}, &inv, &err), 0);
	check_str(inv.socket, "/run/seedd/seedd.sock");
	invocation_done(&inv);
	unsetenv("SEEDD_SOCKET");
}

static void
test_actions(void)
{
	struct invocation inv;
	char *err = NULL;

	check_int(build((const char *[]){"--help", NULL}, &inv, &err), 0);
	check_int(inv.action, INVOCATION_HELP);
	check(inv.command == NULL);
	invocation_done(&inv);
	check_int(build((const char *[]){"-h", NULL}, &inv, &err), 0);
	check_int(inv.action, INVOCATION_HELP);
	invocation_done(&inv);
	check_int(build((const char *[]){"job", "ship", "--help", NULL}, &inv, &err), 0);
	check_int(inv.action, INVOCATION_HELP);
	check_str(inv.command->name, "job ship");
	invocation_done(&inv);
	/* Help for an unknown command is the full help, not an error. */
	check_int(build((const char *[]){"job", "bogus", "-h", NULL}, &inv, &err), 0);
	check_int(inv.action, INVOCATION_HELP);
	check(inv.command == NULL);
	check(err == NULL);
	invocation_done(&inv);
	check_int(build((const char *[]){"--version", NULL}, &inv, &err), 0);
	check_int(inv.action, INVOCATION_VERSION);
	invocation_done(&inv);
}

/* ---- usage errors -------------------------------------------------------- */

struct usage_case {
	const char *argv[MAX_ARGS];
	const char *names; /* must appear in the message */
};

static const struct usage_case usage_cases[] = {
	{{NULL}, "no command"},
	{{"bogus"}, "'bogus'"},
	{{"job", "bogus"}, "'job bogus'"},
	{{"job"}, "subcommand"},
	{{"job", "l", "abc"}, "ambiguous command 'job l'"},
	{{"job", "show"}, "missing NAME"},
	{{"drive", "add", "abc"}, "missing PATH"},
	{{"job", "show", "abc", "extra"}, "'extra'"},
	{{"job", "list", "abc"}, "'abc'"},
	{{"job", "create", "abc", "--staging", "/", "--exclude", "/abs"}, "'/abs'"},
	{{"job", "create", "abc", "--staging", "/", "--exclude", "a//b"}, "'a//b'"},
	{{"job", "retry", "abc", "--skip-refused=1"}, "--skip-refused takes no value"},
	{{"job", "show", "abc", "--skip-refused"}, "--skip-refused does not apply"},
	{{"job", "create", "abc", "--staging", "/", "--container", "a", "--container", "b"},
	 "--container given more than once"},
	{{"status", "now"}, "'now'"},
	{{"job", "show", "ab"}, "'ab'"},
	{{"job", "show", "abcdefghijklmnopqrstuvwxy"}, "'abcdefghijklmnopqrstuvwxy'"},
	{{"job", "show", "a/b/c"}, "'a/b/c'"},
	{{"job", "show", "caf\xc3\xa9"}, "invalid job name"},
	{{"job", "show", "ab\xff"}, "NAME is not valid UTF-8"},
	{{"watch", "ab"}, "'ab'"},
	{{"watch", "abc", "def"}, "'def'"},
	{{"job", "create", "abc"}, "missing --staging"},
	{{"job", "create", "abc", "--staging"}, "--staging needs a value"},
	{{"job", "create", "abc", "--staging", ""}, "--staging"},
	{{"job", "create", "abc", "--staging", "/", "--staging", "/"},
	 "--staging given more than once"},
	{{"job", "ship", "abc", "--carrier", "UPS"}, "missing --tracking"},
	{{"job", "ship", "abc", "--carrier", "", "--tracking", "1"}, "--carrier"},
	{{"job", "show", "abc", "--carrier", "UPS"}, "--carrier does not apply"},
	{{"status", "--staging", "/"}, "--staging does not apply"},
	{{"drive", "add", "abc", "/", "--capacity", "0"}, "--capacity '0'"},
	{{"drive", "add", "abc", "/", "--capacity", "12Q"}, "--capacity '12Q'"},
	{{"drive", "add", "abc", "/", "--capacity", "-5"}, "--capacity '-5'"},
	{{"drive", "add", "abc", "/", "--capacity", "1.5G"}, "--capacity '1.5G'"},
	{{"drive", "add", "abc", "/", "--capacity", "8388608T"}, "--capacity '8388608T'"},
	{{"drive", "add", "abc", "/", "--capacity", ""}, "--capacity ''"},
	{{"drive", "add", "abc", "/", "--bitlocker-key-file", "/nonexistent/key"},
	 "/nonexistent/key"},
	{{"--frobnicate", "status"}, "'--frobnicate'"},
	{{"status", "--frob=1"}, "'--frob'"},
	{{"-x", "status"}, "'-x'"},
	{{"--json=yes", "status"}, "--json takes no value"},
	{{"drive", "remove", "abc", "WD-1", "--force=yes"}, "--force takes no value"},
	{{"job", "show", "abc", "--all"}, "--all does not apply"},
	{{"drive", "remove", "abc"}, "missing SERIAL"},
	{{"status", "--socket"}, "--socket needs a value"},
	{{"--socket", "", "status"}, "--socket"},
};

static void
test_usage_errors(void)
{
	for (size_t i = 0; i < ELEMENTSOF(usage_cases); i++) {
		const struct usage_case *c = &usage_cases[i];
		struct invocation inv;
		char *err = NULL;

		check_int(build(c->argv, &inv, &err), SEEDCTL_EXIT_USAGE);
		check(err != NULL);
		if (strstr(err, c->names) == NULL) {
			fprintf(stderr, "usage case %zu: '%s' does not name '%s'\n", i, err, c->names);
			check(false);
		}
		check(inv.params == NULL && inv.method == NULL && inv.socket == NULL);
		free(err);
	}
}

static void
test_parse_size(void)
{
	static const struct {
		const char *s;
		int64_t v; /* 0: refused */
	} cases[] = {
		{"1", 1},
		{"4096", 4096},
		{"1K", 1024},
		{"1k", 1024},
		{"3M", 3 << 20},
		{"2G", INT64_C(2) << 30},
		{"2GiB", INT64_C(2) << 30},
		{"2GB", INT64_C(2) << 30},
		{"4T", INT64_C(4) << 40},
		{"8388607T", INT64_C(8388607) << 40},
		{"9223372036854775807", INT64_MAX},
		{"9223372036854775808", 0},
		{"99999999999999999999", 0},
		{"8388608T", 0},
		{"0", 0},
		{"0K", 0},
		{"", 0},
		{"K", 0},
		{"-1", 0},
		{"+1", 0},
		{" 1", 0},
		{"1 ", 0},
		{"1 G", 0},
		{"1P", 0},
		{"1Gx", 0},
		{"1.5G", 0},
		{"0x10", 0},
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		int64_t v = -1;
		int r = commands_parse_size(cases[i].s, &v);

		if (cases[i].v == 0) {
			check_int(r, -EINVAL);
			check_int(v, -1);
		} else {
			check_int(r, 0);
			check_int(v, cases[i].v);
		}
	}
}

/* ---- files: relative paths and key files ------------------------------- */

static void
write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	check(fd >= 0);
	check_int(write(fd, data, len), len);
	close(fd);
}

static void
test_paths(void)
{
	_cleanup_free_ char *stage = NULL, *missing = NULL, *old = getcwd(NULL, 0);
	struct invocation inv;
	char *err = NULL;

	check(old != NULL);
	check_int(chdir(tmpdir), 0);
	check_int(mkdir("stage", 0700), 0);
	stage = xprintf("%s/stage", tmpdir);
	missing = xprintf("%s/not/there", tmpdir);

	check_int(build((const char *[]){"job", "create", "abc", "--staging", "stage", NULL}, &inv,
			&err),
		  0);
	check_str(json_string_value(json_object_get(inv.params, "stagingPath")), stage);
	invocation_done(&inv);
	check_int(build((const char *[]){"job", "create", "abc", "--staging", "./stage/../stage/",
					 NULL},
			&inv, &err),
		  0);
	check_str(json_string_value(json_object_get(inv.params, "stagingPath")), stage);
	invocation_done(&inv);
	/* A path that does not exist is sent absolute; seedd judges it. */
	check_int(build((const char *[]){"drive", "add", "abc", "not/there", NULL}, &inv, &err), 0);
	check_str(json_string_value(json_object_get(inv.params, "path")), missing);
	invocation_done(&inv);
	/* --bitlocker-device is a path too, sent absolute; only drive add takes it. */
	check_int(build((const char *[]){"drive", "add", "abc", "/", "--bitlocker-device", "stage",
					 NULL},
			&inv, &err),
		  0);
	check_str(json_string_value(json_object_get(inv.params, "bitlockerDevice")), stage);
	check(json_object_get(inv.params, "bitlockerKeyFile") == NULL);
	invocation_done(&inv);
	check_int(build((const char *[]){"job", "show", "abc", "--bitlocker-device", "/dev/sdb1",
					 NULL},
			&inv, &err),
		  SEEDCTL_EXIT_USAGE);
	check(strstr(err, "--bitlocker-device does not apply") != NULL);
	free(err);
	err = NULL;
	check_int(chdir(old), 0);
}

static void
test_keyfile(void)
{
	_cleanup_free_ char *key = xprintf("%s/key", tmpdir), *bad = xprintf("%s/bad", tmpdir);
	const char *argv[] = {"drive", "add", "abc", "/", "--bitlocker-key-file", key, NULL};
	const char *argv_bad[] = {"drive", "add", "abc", "/", "--bitlocker-key-file", bad, NULL};
	char big[5000], *err = NULL;
	struct invocation inv;

	write_file(key, " \t123456-234567-345678-456789-567890-678901-789012-890123\r\n\n", 61);
	check_int(build(argv, &inv, &err), 0);
	check_str(json_string_value(json_object_get(inv.params, "bitlockerKey")),
		  "123456-234567-345678-456789-567890-678901-789012-890123");
	/* The file's name goes along, for seedd's refusal of a key that does not open the volume. */
	check_str(json_string_value(json_object_get(inv.params, "bitlockerKeyFile")), key);
	invocation_done(&inv);

	/* Refused key files; the message names the file and never shows the content. */
	write_file(bad, " \n\t\n", 4);
	check_int(build(argv_bad, &inv, &err), SEEDCTL_EXIT_USAGE);
	check(strstr(err, bad) != NULL);
	free(err);
	write_file(bad, "SECRETKEY\xff", 10);
	check_int(build(argv_bad, &inv, &err), SEEDCTL_EXIT_USAGE);
	check(strstr(err, bad) != NULL && strstr(err, "SECRET") == NULL);
	free(err);
	memset(big, '1', sizeof(big));
	write_file(bad, big, sizeof(big));
	check_int(build(argv_bad, &inv, &err), SEEDCTL_EXIT_USAGE);
	check(strstr(err, bad) != NULL && strstr(err, "1111") == NULL);
	free(err);
	check_int(build((const char *[]){"drive", "add", "abc", "/", "--bitlocker-key-file", tmpdir,
					 NULL},
			&inv, &err),
		  SEEDCTL_EXIT_USAGE);
	check(strstr(err, tmpdir) != NULL);
	free(err);
	unlink(bad);
	unlink(key);
}

/* ---- help ---------------------------------------------------------------- */

static void
test_help(void)
{
	/* CONTRACT §4, independent of the table. */
	static const char *const contract[] = {
		"status", "job create NAME --staging DIR [--container C] [--exclude GLOB ...]",
		"job list [--all]",
		"job show NAME", "job log NAME",
		("drive add NAME PATH [--serial S] [--capacity BYTES] [--bitlocker-key-file F] "
		 "[--bitlocker-device DEV]"),
		"drive list NAME", "job plan NAME", "job prepare NAME",
		"job ship NAME --carrier C --tracking T", "job cancel NAME",
		"job retry NAME [--skip-refused]",
		"job report NAME", "watch [NAME] [--all]", "job mitigate NAME --action A [--serial S]",
		"drive remove NAME SERIAL [--force]", "doctor", "job purge NAME", "help [COMMAND]",
	};
	char *text = NULL, *line;
	size_t len = 0, entries = 0;
	FILE *f = open_memstream(&text, &len);

	commands_help(f);
	fclose(f);
	for (size_t i = 0; i < ELEMENTSOF(contract); i++) {
		_cleanup_free_ char *want = xprintf("\n  %s\n", contract[i]);
		if (strstr(text, want) == NULL) {
			fprintf(stderr, "help lacks '%s'\n", contract[i]);
			check(false);
		}
	}
	for (size_t i = 0; i < commands_count; i++)
		check(strstr(text, commands_table[i].name) != NULL);
	for (line = text; line != NULL; line = strchr(line + 1, '\n'))
		if (strncmp(line, "\n  ", 3) == 0 && line[3] >= 'a' && line[3] <= 'z')
			entries++;
	check_int(entries, commands_count);
	check_int(commands_count, ELEMENTSOF(contract));
	for (const char *o = "--socket\0--json\0--help\0--version\0"; *o; o += strlen(o) + 1)
		check(strstr(text, o) != NULL);
	free(text);

	f = open_memstream(&text, &len);
	commands_usage(f, &commands_table[5]);
	fclose(f);
	check(strstr(text, "seedctl [--socket PATH] [--json] drive add NAME PATH") != NULL);
	free(text);
}

/* "seedctl help [COMMAND]": answered by seedctl, never a call. */
static void
test_help_command(void)
{
	struct invocation inv;
	char *err = NULL;

	check_int(build((const char *[]){"help", NULL}, &inv, &err), SEEDCTL_EXIT_OK);
	check(inv.action == INVOCATION_HELP && inv.command == NULL && inv.method == NULL);
	invocation_done(&inv);
	check_int(build((const char *[]){"help", "job", "sho", NULL}, &inv, &err), SEEDCTL_EXIT_OK);
	check(inv.action == INVOCATION_HELP && inv.command != NULL);
	check_str(inv.command->name, "job show");
	invocation_done(&inv);
	check_int(build((const char *[]){"he", "drive", NULL}, &inv, &err), SEEDCTL_EXIT_OK);
	check(inv.action == INVOCATION_HELP && inv.command == NULL);
	check_str(inv.help_group, "drive");
	invocation_done(&inv);
	check_int(build((const char *[]){"help", "nosuch", NULL}, &inv, &err), SEEDCTL_EXIT_USAGE);
	check(strstr(err, "nosuch") != NULL);
	free(err);
	err = NULL;
	check_int(build((const char *[]){"help", "status", "x", NULL}, &inv, &err),
		  SEEDCTL_EXIT_USAGE);
	check(strstr(err, "'x'") != NULL);
	free(err);
}

/* ---- call_run against a fake seedd -------------------------------------- */

struct fake {
	const char *method;     /* expected call */
	const char *params;     /* expected parameters, JSON */
	bool more;
	const char *replies[5]; /* sent as they are, each with a NUL */
};

/* The child: answer one connection as scripted; exit 0 only if the call was as expected. */
_noreturn_ static void
fake_serve(int lfd, const struct fake *fk)
{
	struct vl_reader r;
	json_t *call = NULL, *want = json_loads(fk->params, 0, NULL);
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), ok;

	vl_reader_init(&r);
	if (fd < 0 || vl_recv(fd, &r, &call, 5000) < 0)
		_exit(10);
	ok = strcmp(json_string_value(json_object_get(call, "method")), fk->method) == 0 &&
	     json_equal(json_object_get(call, "parameters"), want) &&
	     json_is_true(json_object_get(call, "more")) == fk->more;
	for (size_t i = 0; i < ELEMENTSOF(fk->replies) && fk->replies[i] != NULL; i++)
		if (write(fd, fk->replies[i], strlen(fk->replies[i]) + 1) < 0)
			_exit(11);
	close(fd);
	_exit(ok ? 0 : 12);
}

static pid_t
fake_start(const char *path, const struct fake *fk)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	pid_t pid;

	check(lfd >= 0);
	unlink(path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	check_int(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	check_int(listen(lfd, 4), 0);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	check(pid >= 0);
	if (pid == 0)
		fake_serve(lfd, fk);
	close(lfd);
	return pid;
}

struct run_result {
	int status;
	char *out, *err;
};

/* Build argv (with --socket path), run it against fk (NULL: no server), collect output. */
static void
run(const char *path, const struct fake *fk, const char *const *words, struct run_result *res)
{
	const char *argv[MAX_ARGS + 1] = {"--socket", path};
	struct invocation inv;
	char *err = NULL;
	size_t n = 2, olen, elen;
	FILE *out, *errf;
	pid_t pid = fk ? fake_start(path, fk) : -1;
	int status;

	for (size_t i = 0; words[i] != NULL; i++)
		argv[n++] = words[i];
	argv[n] = NULL;
	check_int(build(argv, &inv, &err), 0);
	out = open_memstream(&res->out, &olen);
	errf = open_memstream(&res->err, &elen);
	res->status = call_run(&inv, out, errf);
	fclose(out);
	fclose(errf);
	invocation_done(&inv);
	if (pid > 0) {
		check_int(waitpid(pid, &status, 0), pid);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fprintf(stderr, "fake seedd: status %d for %s\n", status, fk->method);
		check(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
}

static void
run_done(struct run_result *res)
{
	free(res->out);
	free(res->err);
}

#define JOB                                                                                        \
	"{\"name\":\"backup1\",\"state\":\"drive_prep\",\"phase\":\"copying\",\"stagingPath\":"   \
	"\"/srv/\\u001b[2Jx\",\"container\":\"backup1\",\"files\":1200,\"bytes\":1610612736,"    \
	"\"copiedFiles\":600,\"copiedBytes\":805306368,\"verifiedFiles\":500,\"drives\":[],"     \
	"\"azure\":{\"jobName\":null,\"state\":null,\"carrier\":null,\"trackingNumber\":null,"   \
	"\"shipDeadline\":null},\"error\":null,\"created\":\"2026-11-25T10:00:00Z\","             \
	"\"updated\":\"2026-11-25T11:00:00Z\"}"

static void
test_run_show(const char *sock)
{
	static const struct fake fk = {"io.seedd.GetJob", "{\"name\":\"backup1\"}", false,
				       {"{\"parameters\":{\"job\":" JOB "}}"}};
	struct run_result res;
	json_t *got, *want = json_loads(JOB, 0, NULL);

	/* --json: exactly the Job object, unwrapped, one document. */
	run(sock, &fk, (const char *[]){"--json", "job", "show", "backup1", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_OK);
	check_str(res.err, "");
	got = json_loads(res.out, 0, NULL);
	check(got != NULL);
	check(json_equal(got, want));
	json_decref(got);
	run_done(&res);

	/* Human: key-value lines, sizes in binary units, no escape from the path. */
	run(sock, &fk, (const char *[]){"job", "show", "backup1", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_OK);
	check(strstr(res.out, "Name:") != NULL && strstr(res.out, "backup1") != NULL);
	check(strstr(res.out, "1.5 GiB (copied 768.0 MiB, 50%)") != NULL);
	check(strchr(res.out, '\033') == NULL);
	run_done(&res);
	json_decref(want);
}

/* out is exactly one JSON object {"error": name, "message": TEXT} and a newline. */
static void
check_json_error(const char *out, const char *name, const char *message)
{
	json_error_t e;
	json_t *o = json_loads(out, 0, &e);

	check(o != NULL && json_is_object(o) && json_object_size(o) == 2);
	check(strchr(out, '\n') == out + strlen(out) - 1);
	check_str(json_string_value(json_object_get(o, "error")), name);
	check(json_is_string(json_object_get(o, "message")));
	if (message != NULL)
		check_str(json_string_value(json_object_get(o, "message")), message);
	json_decref(o);
}

static void
test_run_errors(const char *sock)
{
	static const struct fake notfound = {
		"io.seedd.RetryJob", "{\"name\":\"xyz\"}", false,
		{"{\"error\":\"io.seedd.JobNotFound\",\"parameters\":{\"name\":\"x\"}}"}};
	static const struct fake state = {
		"io.seedd.CancelJob", "{\"name\":\"xyz\"}", false,
		{"{\"error\":\"io.seedd.InvalidState\",\"parameters\":{\"name\":\"xyz\",\"state\":"
		 "\"done\",\"message\":\"too late\\u001b]0;\"}}"}};
	static const struct fake silent = {"io.seedd.GetStatus", "{}", false, {NULL}};
	static const struct fake garbled = {"io.seedd.GetStatus", "{}", false, {"{\"foo\":1}"}};
	static const struct fake notjson = {"io.seedd.GetStatus", "{}", false, {"not json"}};
	static const struct fake nokey = {"io.seedd.GetJob", "{\"name\":\"xyz\"}", false,
					  {"{\"parameters\":{}}"}};
	_cleanup_free_ char *nowhere = xprintf("%s/nowhere.sock", tmpdir);
	struct run_result res;

	run(sock, &notfound, (const char *[]){"job", "retry", "xyz", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	check_str(res.err, "seedctl: io.seedd.JobNotFound: no job named 'x'\n");
	check_str(res.out, "");
	run_done(&res);

	/* --json: the error is one object on stdout, same exit status (CONTRACT §4). */
	run(sock, &notfound, (const char *[]){"--json", "job", "retry", "xyz", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	check_str(res.out, "{\"error\":\"io.seedd.JobNotFound\",\"message\":\"no job named 'x'\"}\n");
	check_str(res.err, "");
	run_done(&res);
	run(sock, &state, (const char *[]){"--json", "job", "cancel", "xyz", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	check_json_error(res.out, "io.seedd.InvalidState", "job 'xyz' is done: too late\033]0;");
	run_done(&res);
	run(nowhere, NULL, (const char *[]){"--json", "status", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_UNREACHABLE);
	check_json_error(res.out, SEEDCTL_ERR_UNREACHABLE, NULL);
	check_str(res.err, "");
	run_done(&res);
	run(sock, &silent, (const char *[]){"--json", "status", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_UNREACHABLE);
	check_json_error(res.out, SEEDCTL_ERR_UNREACHABLE, NULL);
	run_done(&res);
	run(sock, &garbled, (const char *[]){"--json", "status", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	check_json_error(res.out, SEEDCTL_ERR_MALFORMED, NULL);
	run_done(&res);

	run(sock, &state, (const char *[]){"job", "cancel", "xyz", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	check(strstr(res.err, "io.seedd.InvalidState: job 'xyz' is done: too late") != NULL);
	check(strchr(res.err, '\033') == NULL);
	run_done(&res);

	run(nowhere, NULL, (const char *[]){"status", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_UNREACHABLE);
	check(strncmp(res.err, "seedctl: cannot reach seedd at ", 31) == 0);
	check(strstr(res.err, nowhere) != NULL);
	run_done(&res);

	run(sock, &silent, (const char *[]){"status", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_UNREACHABLE);
	check(strstr(res.err, "before a reply") != NULL);
	run_done(&res);

	run(sock, &garbled, (const char *[]){"status", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	check(strstr(res.err, "malformed") != NULL);
	run_done(&res);
	run(sock, &notjson, (const char *[]){"status", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	run_done(&res);
	run(sock, &nokey, (const char *[]){"--json", "job", "show", "xyz", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	check_json_error(res.out, SEEDCTL_ERR_MALFORMED, "malformed reply from seedd: no 'job' in it");
	run_done(&res);
}

static void
test_run_status(const char *sock)
{
	static const struct fake fk = {
		"io.seedd.GetStatus", "{}", false,
		{"{\"parameters\":{\"version\":\"0.1.0\",\"uptime\":93784,\"jobs\":"
		 "{\"done\":2,\"staging\":1}}}"}};
	struct run_result res;

	run(sock, &fk, (const char *[]){"status", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_OK);
	check(strstr(res.out, "0.1.0") != NULL);
	check(strstr(res.out, "1d 2h 3m 4s") != NULL);
	/* Jobs per state in the order of a job's life. */
	check(strstr(res.out, "staging") != NULL && strstr(res.out, "done") != NULL);
	check(strstr(res.out, "staging") < strstr(res.out, "done"));
	run_done(&res);

	run(sock, &fk, (const char *[]){"status", "--json", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_OK);
	check(strstr(res.out, "\"uptime\": 93784") != NULL);
	run_done(&res);
}

#define DOCTOR_REPLY(ok, status)                                                                   \
	"{\"parameters\":{\"ok\":" ok ",\"writeProbes\":false,\"checks\":["                   \
	"{\"name\":\"daemon\",\"status\":\"ok\",\"text\":\"seedd 0.1.0\"},"                 \
	"{\"name\":\"configuration\",\"status\":\"ok\",\"text\":\"/etc/seedd/seedd.conf\","   \
	"\"config\":{\"file\":\"/etc/seedd/seedd.conf\",\"Vault\":{\"Container\":\"v\"}}},"     \
	"{\"name\":\"Entra token\",\"status\":\"" status "\",\"text\":\"no token\"}]}}"

/* Doctor: a line a check, the configuration under its line; exit 1 when a check failed. */
static void
test_run_doctor(const char *sock)
{
	static const struct fake good = {"io.seedd.Doctor", "{}", false,
					 {DOCTOR_REPLY("true", "ok")}};
	static const struct fake bad = {"io.seedd.Doctor", "{}", false,
					{DOCTOR_REPLY("false", "fail")}};
	struct run_result res;

	run(sock, &good, (const char *[]){"doctor", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_OK);
	check(strstr(res.out, "ok    daemon         seedd 0.1.0\n") != NULL);
	check(strstr(res.out, "\n      [Vault] Container=v\n") != NULL);
	check(strstr(res.out, "All 3 checks ok.\n") != NULL);
	check(strstr(res.out, "Writing was not tried") != NULL);
	run_done(&res);
	run(sock, &bad, (const char *[]){"doctor", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	check(strstr(res.out, "FAIL  Entra token    no token\n") != NULL);
	check(strstr(res.out, "1 of 3 checks failed.\n") != NULL);
	run_done(&res);
	run("/nonexistent/seedd.sock", NULL, (const char *[]){"doctor", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_UNREACHABLE);
	check(strstr(res.err, "/nonexistent/seedd.sock") != NULL &&
	      strstr(res.err, "systemctl status seedd") != NULL);
	run_done(&res);
	run(sock, &bad, (const char *[]){"--json", "doctor", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	check(strstr(res.out, "\"ok\": false") != NULL);
	run_done(&res);
}

#define WATCH_REPLY(pct, more)                                                                     \
	"{\"parameters\":{\"job\":{\"name\":\"abc\",\"state\":\"drive_prep\",\"bytes\":100,"      \
	"\"copiedBytes\":" #pct "}}" more "}"

static void
test_run_watch(const char *sock)
{
	static const struct fake three = {
		"io.seedd.Watch", "{\"name\":\"abc\"}", true,
		{WATCH_REPLY(10, ",\"continues\":true"), WATCH_REPLY(50, ",\"continues\":true"),
		 WATCH_REPLY(100, "")}};
	static const struct fake closes = {
		"io.seedd.Watch", "{\"hideFinished\":true}", true,
		{WATCH_REPLY(10, ",\"continues\":true"), WATCH_REPLY(20, ",\"continues\":true")}};
	static const struct fake fails = {
		"io.seedd.Watch", "{\"name\":\"abc\"}", true,
		{WATCH_REPLY(10, ",\"continues\":true"),
		 "{\"error\":\"io.seedd.JobNotFound\",\"parameters\":{\"name\":\"abc\"}}"}};
	static const struct fake silent = {"io.seedd.Watch", "{\"hideFinished\":true}", true,
					   {NULL}};
	static const struct fake failed_job = {
		"io.seedd.Watch", "{\"name\":\"abc\"}", true,
		{WATCH_REPLY(10, ",\"continues\":true"),
		 "{\"parameters\":{\"job\":{\"name\":\"abc\",\"state\":\"failed\","
		 "\"phase\":\"indexing\",\"error\":\"disk gone\"}}}"}};
	struct run_result res;
	size_t lines = 0;

	run(sock, &three, (const char *[]){"watch", "abc", "--json", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_OK);
	for (char *l = strtok(res.out, "\n"); l != NULL; l = strtok(NULL, "\n")) {
		json_t *j = json_loads(l, 0, NULL);
		check(json_is_object(j));
		check_str(json_string_value(json_object_get(j, "name")), "abc");
		check(strchr(l, ' ') == NULL); /* compact */
		json_decref(j);
		lines++;
	}
	check_int(lines, 3);
	run_done(&res);

	run(sock, &three, (const char *[]){"watch", "abc", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_OK);
	check(strstr(res.out, " 10%") && strstr(res.out, " 50%") && strstr(res.out, "100%"));
	check(strchr(res.out, '\r') == NULL); /* not a terminal: plain lines */
	run_done(&res);

	run(sock, &closes, (const char *[]){"watch", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_OK);
	run_done(&res);

	run(sock, &fails, (const char *[]){"watch", "abc", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	check(strstr(res.err, "io.seedd.JobNotFound") != NULL);
	run_done(&res);

	/* --json: the progress lines, then the error as the last line, nothing on stderr. */
	run(sock, &fails, (const char *[]){"--json", "watch", "abc", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	check_str(res.err, "");
	check(strrchr(res.out, '{') != NULL);
	check_json_error(strstr(res.out, "\n") + 1, "io.seedd.JobNotFound", "no job named 'abc'");
	run_done(&res);

	run(sock, &silent, (const char *[]){"watch", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_UNREACHABLE);
	run_done(&res);

	/* A job that ends failed: its error is printed and watch exits 1 (--json too). */
	run(sock, &failed_job, (const char *[]){"watch", "abc", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	check(strstr(res.out, "abc failed (indexing): disk gone") != NULL);
	run_done(&res);
	run(sock, &failed_job, (const char *[]){"watch", "abc", "--json", NULL}, &res);
	check_int(res.status, SEEDCTL_EXIT_REFUSED);
	run_done(&res);
}

/* ---- output helpers -------------------------------------------------- */

/* Lines of one watch update each, as printed (not a terminal) or drawn (a terminal of w columns). */
static char *
watch_text(bool tty, size_t width, const char *const *jobs)
{
	char *text = NULL;
	size_t len;
	FILE *f = open_memstream(&text, &len);
	struct output_watch *w = output_watch_new(f, false, tty);

	if (width > 0)
		output_watch_width(w, width);
	for (size_t i = 0; jobs[i] != NULL; i++) {
		json_t *j = json_loads(jobs[i], 0, NULL);
		check(j != NULL);
		output_watch_update(w, j);
		json_decref(j);
	}
	output_watch_free(w);
	fclose(f);
	return text;
}

#define COPYING(copied, rate, eta)                                                                 \
	"{\"name\":\"abc\",\"state\":\"drive_prep\",\"phase\":\"copying\",\"bytes\":"          \
	"209715200,\"copiedBytes\":" #copied ",\"files\":4,\"copiedFiles\":1,\"rate\":" #rate     \
	",\"eta\":" #eta ",\"updated\":\"2026-12-06T00:00:20Z\",\"stateSince\":"                 \
	"\"2026-12-06T00:00:00Z\",\"verifiedFiles\":1,\"drives\":[{\"serial\":\"DISK-2\","       \
	"\"copiedBytes\":" #copied ",\"rate\":" #rate ",\"eta\":" #eta "}]}"

static void
test_output_watch_lines(void)
{
	const char *const same[] = {COPYING(1048576, 0, null), COPYING(1048576, 0, null), NULL};
	const char *const done[] = {
	    COPYING(104857600, 10485760, 10),
	    "{\"name\":\"abc\",\"state\":\"drive_prep\",\"phase\":\"awaiting-azure\",\"bytes\":"
	    "209715200,\"copiedBytes\":209715200,\"files\":4,\"copiedFiles\":4,\"verifiedFiles\":4,"
	    "\"rate\":0,\"eta\":null,\"updated\":\"2026-12-06T00:00:20Z\",\"stateSince\":"
	    "\"2026-12-06T00:00:00Z\",\"drives\":[]}",
	    NULL};
	const char *const vault[] = {
	    "{\"name\":\"abc\",\"state\":\"vault_copy\",\"phase\":\"copying-to-vault\",\"bytes\":"
	    "209715200,\"files\":4,\"stateSince\":\"2026-12-06T00:00:00Z\"}",
	    "{\"name\":\"abc\",\"state\":\"cleanup\",\"phase\":\"deleting-staging-files\","
	    "\"bytes\":209715200,\"files\":4,\"stateSince\":\"2026-12-06T00:01:40Z\","
	    "\"afterImport\":{\"vaultVerified\":4}}",
	    NULL};
	const char *const indexing[] = {
	    "{\"name\":\"abc\",\"state\":\"staging\",\"phase\":\"indexing\",\"indexedFiles\":1234,"
	    "\"indexedBytes\":1610612736}",
	    NULL};
	const char *const narrow[] = {
	    "{\"name\":\"abc\",\"state\":\"drive_prep\",\"phase\":\"needs-drive: 3 files, 1.5 GiB "
	    "have no drive with room\",\"bytes\":209715200,\"copiedBytes\":104857600,\"files\":4,"
	    "\"copiedFiles\":1,\"rate\":0,\"eta\":null,\"drives\":[]}",
	    NULL};
	char *t;

	/* Not a terminal: an unchanged job prints no second line; rate and ETA; the job's drives. */
	t = watch_text(false, 0, same);
	/* Nothing measured yet: the rate is "-", not "idle". */
	check(strstr(t, "abc  drive_prep/copying    0%  1.0 MiB/200.0 MiB  files 1/4  -\n") == t);
	check(strstr(t, "abc  drive  DISK-2  1.0 MiB copied  -  ETA ?\n") != NULL);
	check(strstr(strchr(t, '\n') + 1, "drive_prep/copying") == NULL); /* once */
	free(t);
	/* A closing summary: files, bytes, elapsed, average rate, verified. */
	t = watch_text(false, 0, done);
	check(strstr(t, "files 1/4  10.0 MiB/s  ETA 10s\n") != NULL);
	check(strstr(t, "abc  drive  DISK-2  100.0 MiB copied  10.0 MiB/s  ETA 10s\n") != NULL);
	check(strstr(t, "abc: drive prep done: 4 files, 200.0 MiB in 20s (average 10.0 MiB/s), "
			"4 verified\n") != NULL);
	free(t);
	/* The vault copy's summary, from its start to the next state's. */
	t = watch_text(false, 0, vault);
	check(strstr(t, "abc: vault copy done: 4 files, 200.0 MiB in 1m 40s (average 2.0 MiB/s), "
			"4 verified in the vault\n") != NULL);
	free(t);
	/* A count while indexing. */
	t = watch_text(false, 0, indexing);
	check_str(t, "abc  staging/indexing  1234 files, 1.5 GiB found\n");
	free(t);
	/* A narrow terminal: the phase is shortened, the numbers stay whole, no bar. */
	t = watch_text(true, 62, narrow);
	check(strstr(t, "\033[Kabc  drive_prep/~   50%  100.0 MiB/200.0 MiB  files 1/4  idle") != NULL);
	check(strchr(t, '[') == strrchr(t, '[')); /* the escape's only: no bar */
	free(t);
	/* Narrower still: the phase goes, the numbers stay. */
	t = watch_text(true, 50, narrow);
	check(strstr(t, "\033[Kabc     50%  100.0 MiB/200.0 MiB  files 1/4  idle") != NULL);
	free(t);
	/* A wide one: the whole phase, and the bar. */
	t = watch_text(true, 160, narrow);
	check(strstr(t, "have no drive with room  [##########----------]   50%") != NULL);
	free(t);
}

static void
test_output(void)
{
	static const struct {
		int64_t n;
		const char *s;
	} bytes[] = {
		{0, "0 B"},           {1023, "1023 B"},           {1024, "1.0 KiB"},
		{1536, "1.5 KiB"},    {1610612736, "1.5 GiB"},    {INT64_C(1) << 40, "1.0 TiB"},
		{INT64_MAX, "8.0 EiB"}, {-5, "-5 B"},
	};
	char buf[48], *text = NULL;
	size_t len;
	FILE *f;
	struct output_watch *w;
	json_t *a = json_loads("{\"name\":\"one\",\"bytes\":100,\"copiedBytes\":40}", 0, NULL);
	json_t *b = json_loads("{\"name\":\"two\",\"bytes\":0,\"copiedBytes\":0}", 0, NULL);

	for (size_t i = 0; i < ELEMENTSOF(bytes); i++) {
		output_bytes(bytes[i].n, buf);
		check_str(buf, bytes[i].s);
	}
	output_duration(59, buf);
	check_str(buf, "59s");
	output_duration(3600, buf);
	check_str(buf, "1h 0m 0s");

	/* A terminal: one line per job, redrawn in place. */
	f = open_memstream(&text, &len);
	w = output_watch_new(f, false, true);
	output_watch_update(w, a);
	output_watch_update(w, a);
	output_watch_update(w, b);
	output_watch_update(w, a);
	output_watch_free(w);
	fclose(f);
	check(strstr(text, "[########------------]   40%") != NULL);
	check(strstr(text, "\033[1A") != NULL); /* back up over the second job's line */
	check(strncmp(text, "\r\033[K", 4) == 0);
	check(text[len - 1] == '\n');
	free(text);
	json_decref(a);
	json_decref(b);
	test_output_watch_lines();
}

int
main(void)
{
	_cleanup_free_ char *sock = NULL;
	char tmpl[] = "/tmp/test-commands.XXXXXX";

	check(mkdtemp(tmpl) != NULL);
	check(realpath(tmpl, tmpdir) != NULL);
	sock = xprintf("%s/seedd.sock", tmpdir);

	test_build();
	test_socket_choice();
	test_actions();
	test_usage_errors();
	test_parse_size();
	test_paths();
	test_keyfile();
	test_help();
	test_help_command();
	test_run_show(sock);
	test_run_errors(sock);
	test_run_status(sock);
	test_run_doctor(sock);
	test_run_watch(sock);
	test_output();

	unlink(sock);
	{
		_cleanup_free_ char *stage = xprintf("%s/stage", tmpdir);
		rmdir(stage);
	}
	check_int(rmdir(tmpdir), 0);
	return 0;
}
