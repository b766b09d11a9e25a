/*
 * seedctl's printing of replies (see output.h): aligned tables, "Key: value"
 * blocks, JSON documents, error lines and watch progress. Every string that
 * came from seedd passes through safe_dup() or put_safe() before it reaches
 * the terminal. Single-threaded.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>

#include "names.h"
#include "output.h"
#include "util.h"

#define KEY_WIDTH 15
#define BAR_WIDTH 20

static void drives_table(FILE *f, json_t *drives, const char *indent);
static void drive_rate_text(json_t *d, char buf[static 40]);
static void job_rate_text(json_t *job, char buf[static 40]);

/* A copy of s with control characters replaced by '?'. */
static char *
safe_dup(const char *s)
{
	char *d = xstrdup(s ? s : "-");

	for (char *p = d; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return d;
}

static void
put_safe(FILE *f, const char *s)
{
	_cleanup_free_ char *d = safe_dup(s);

	fputs(d, f);
}

/* Display width, counting each UTF-8 sequence as one column. */
static size_t
text_width(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

static const char *
jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "-";
}

static int64_t
jint(json_t *o, const char *key)
{
	return (int64_t)json_integer_value(json_object_get(o, key));
}

/* ---- tables ----------------------------------------------------------- */

struct table {
	size_t ncols, nrows;
	unsigned right; /* bit i: column i is right-aligned */
	char **cells;   /* nrows * ncols, sanitized copies */
};

static void
table_add(struct table *t, ...)
{
	va_list ap;

	t->cells = xreallocarray(t->cells, (t->nrows + 1) * t->ncols, sizeof(char *));
	va_start(ap, t);
	for (size_t i = 0; i < t->ncols; i++)
		t->cells[t->nrows * t->ncols + i] = safe_dup(va_arg(ap, const char *));
	va_end(ap);
	t->nrows++;
}

/* Print the rows, columns two spaces apart, then free the table. */
static void
table_flush(FILE *f, struct table *t, const char *indent)
{
	size_t width[8] = {0};

	for (size_t i = 0; i < t->nrows * t->ncols; i++) {
		size_t w = text_width(t->cells[i]);
		if (w > width[i % t->ncols])
			width[i % t->ncols] = w;
	}
	for (size_t r = 0; r < t->nrows; r++) {
		fputs(indent, f);
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * t->ncols + c];
			int pad = (int)(width[c] - text_width(s));
			bool last = c + 1 == t->ncols;

			if (t->right & (1u << c))
				fprintf(f, "%*s%s%s", pad, "", s, last ? "" : "  ");
			else
				fprintf(f, "%s%*s", s, last ? 0 : pad + 2, "");
		}
		fputc('\n', f);
	}
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	*t = (struct table){0};
}

/* ---- formatting helpers ----------------------------------------------- */

void
output_bytes(int64_t n, char buf[static 32])
{
	format_iec(n, buf);
}

void
output_duration(int64_t s, char buf[static 48])
{
	if (s < 0)
		s = 0;
	if (s >= 86400)
		snprintf(buf, 48, "%" PRId64 "d %" PRId64 "h %" PRId64 "m %" PRId64 "s", s / 86400,
			 s / 3600 % 24, s / 60 % 60, s % 60);
	else if (s >= 3600)
		snprintf(buf, 48, "%" PRId64 "h %" PRId64 "m %" PRId64 "s", s / 3600, s / 60 % 60,
			 s % 60);
	else if (s >= 60)
		snprintf(buf, 48, "%" PRId64 "m %" PRId64 "s", s / 60, s % 60);
	else
		snprintf(buf, 48, "%" PRId64 "s", s);
}

/* One "Key:   value" line; the value is sanitized. */
_printf_(4, 5) static void
kv(FILE *f, const char *indent, const char *key, const char *fmt, ...)
{
	_cleanup_free_ char *v = NULL;
	va_list ap;
	int n, pad;

	va_start(ap, fmt);
	n = vasprintf(&v, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatalx("kv: out of memory");
	pad = KEY_WIDTH - (int)(strlen(indent) + strlen(key));
	fprintf(f, "%s%s:%*s", indent, key, pad > 1 ? pad : 1, "");
	put_safe(f, v);
	fputc('\n', f);
}

static int
percent(int64_t part, int64_t whole)
{
	if (whole <= 0 || part <= 0)
		return 0;
	if (part >= whole)
		return 100;
	return (int)((double)part * 100 / (double)whole);
}

/* ---- replies ---------------------------------------------------------- */

void
output_status(FILE *f, json_t *p)
{
	json_t *jobs = json_object_get(p, "jobs"), *v;
	const char *key;
	char up[48];
	int64_t total = 0;
	struct table t = {.ncols = 2, .right = 2};

	output_duration(jint(p, "uptime"), up);
	kv(f, "", "Version", "%s", jstr(p, "version"));
	kv(f, "", "Uptime", "%s", up);
	/* Known states in the order of a job's life, then any others. */
	for (int s = 0; s < _JOB_STATE_MAX; s++) {
		char n[32];
		if ((v = json_object_get(jobs, job_state_to_string(s))) == NULL)
			continue;
		snprintf(n, sizeof(n), "%" PRId64, (int64_t)json_integer_value(v));
		table_add(&t, job_state_to_string(s), n);
		total += json_integer_value(v);
	}
	json_object_foreach(jobs, key, v) {
		char n[32];
		if (job_state_from_string(key) != _JOB_STATE_INVALID)
			continue;
		snprintf(n, sizeof(n), "%" PRId64, (int64_t)json_integer_value(v));
		table_add(&t, key, n);
		total += json_integer_value(v);
	}
	kv(f, "", "Jobs", "%" PRId64, total);
	table_flush(f, &t, "  ");
}

static void
output_azure(FILE *f, json_t *az)
{
	fputs("Azure:\n", f);
	kv(f, "  ", "Job name", "%s", jstr(az, "jobName"));
	kv(f, "  ", "State", "%s", jstr(az, "state"));
	kv(f, "  ", "Carrier", "%s", jstr(az, "carrier"));
	kv(f, "  ", "Tracking", "%s", jstr(az, "trackingNumber"));
	kv(f, "  ", "Ship by", "%s", jstr(az, "shipDeadline"));
}

/* "k1 n1, k2 n2" of an object of counts. */
static void
counts_line(FILE *f, const char *key, json_t *counts)
{
	char *line = NULL;
	size_t size = 0;
	FILE *m = open_memstream(&line, &size);
	const char *k;
	json_t *v;

	if (m == NULL)
		return;
	json_object_foreach(counts, k, v)
		fprintf(m, "%s%s %" PRId64, ftell(m) > 0 ? ", " : "", k,
			(int64_t)json_integer_value(v));
	if (fclose(m) == 0 && line != NULL)
		kv(f, "  ", key, "%s", *line ? line : "none yet");
	free(line);
}

/* The reconcile: outcomes, how files were verified, drives Azure could not import. */
static void
output_after_import(FILE *f, json_t *after)
{
	json_t *d;
	size_t i;

	if (!json_is_object(after))
		return;
	fputs("After import:\n", f);
	counts_line(f, "Reconciled", json_object_get(after, "import"));
	counts_line(f, "Verified by", json_object_get(after, "verifiedBy"));
	json_array_foreach(json_object_get(after, "driveFailures"), i, d)
		kv(f, "  ", "Drive failed", "%s: %s (Azure imported none of its %" PRId64
		   " files; they go over the network)",
		   jstr(d, "serial"), jstr(d, "status"), jint(d, "files"));
	kv(f, "  ", "Vault verified", "%" PRId64, jint(after, "vaultVerified"));
}

/* What a problem kind is called for people; unknown kinds as seedd names them. */
static const char *
problem_word(const char *kind)
{
	if (strcmp(kind, "invalid") == 0)
		return "refused"; /* a name Azure would refuse */
	return kind;
}

/*
 * The files that are not seeded as they are in staging: "Problems: 3
 * (refused 1, skipped 2)", then each listed one (seedd sends the first few)
 * with its kind, path and reason, and how many are not listed.
 */
static void
output_problems(FILE *f, json_t *job)
{
	json_t *list = json_object_get(job, "problems"), *counts = json_object_get(job, "problemCounts");
	int64_t total = jint(job, "problemCount");
	struct table t = {.ncols = 3};
	const char *k;
	size_t i;
	json_t *p, *v;

	if (total == 0 && json_array_size(list) == 0)
		return;
	if (json_object_size(counts) > 0) {
		char *by = NULL;
		size_t size = 0;
		FILE *m = open_memstream(&by, &size);
		if (m == NULL)
			return;
		json_object_foreach(counts, k, v)
			fprintf(m, "%s%s %" PRId64, ftell(m) > 0 ? ", " : "", problem_word(k),
				(int64_t)json_integer_value(v));
		if (fclose(m) == 0)
			kv(f, "", "Problems", "%" PRId64 " (%s)", total, by ? by : "");
		free(by);
	} else
		kv(f, "", "Problems", "%" PRId64, total);
	json_array_foreach(list, i, p)
		table_add(&t, problem_word(jstr(p, "kind")), jstr(p, "path"),
			  json_is_string(json_object_get(p, "reason")) ? jstr(p, "reason") : "");
	table_flush(f, &t, "  ");
	if (total > (int64_t)json_array_size(list))
		fprintf(f, "  ... and %" PRId64 " more\n",
			total - (int64_t)json_array_size(list));
}

/* The job's --exclude patterns and how many entries they left out (none: no line). */
static void
output_excludes(FILE *f, json_t *job)
{
	json_t *x = json_object_get(job, "excludes"), *v;
	char *pats = NULL;
	size_t size = 0, i;
	FILE *m;

	if (json_array_size(x) == 0 || (m = open_memstream(&pats, &size)) == NULL)
		return;
	json_array_foreach(x, i, v)
		fprintf(m, "%s'%s'", i > 0 ? ", " : "", json_string_value(v));
	if (fclose(m) == 0)
		kv(f, "", "Excluded", "%" PRId64 " entries (--exclude %s)", jint(job, "excluded"),
		   pats);
	free(pats);
}

void
output_job(FILE *f, json_t *job)
{
	json_t *drives = json_object_get(job, "drives");
	int64_t bytes = jint(job, "bytes"), copied = jint(job, "copiedBytes");
	char b[32], c[32];

	output_bytes(bytes, b);
	output_bytes(copied, c);
	kv(f, "", "Name", "%s", jstr(job, "name"));
	kv(f, "", "State", "%s", jstr(job, "state"));
	kv(f, "", "Phase", "%s", jstr(job, "phase"));
	kv(f, "", "Staging path", "%s", jstr(job, "stagingPath"));
	kv(f, "", "Container", "%s", jstr(job, "container"));
	kv(f, "", "Files", "%" PRId64 " (copied %" PRId64 ", verified %" PRId64 ")",
	   jint(job, "files"), jint(job, "copiedFiles"), jint(job, "verifiedFiles"));
	kv(f, "", "Bytes", "%s (copied %s, %d%%)", b, c, percent(copied, bytes));
	if (json_is_integer(json_object_get(job, "indexedFiles"))) {
		output_bytes(jint(job, "indexedBytes"), b);
		kv(f, "", "Indexing", "%" PRId64 " files, %s found so far", jint(job, "indexedFiles"), b);
	}
	if (strcmp(jstr(job, "state"), "drive_prep") == 0) {
		char rate[40], eta[48] = "unknown";
		job_rate_text(job, rate);
		if (json_is_integer(json_object_get(job, "eta")))
			output_duration(jint(job, "eta"), eta);
		kv(f, "", "Rate", "%s, ETA %s", rate, eta);
	}
	if (json_is_string(json_object_get(job, "error")))
		kv(f, "", "Error", "%s", jstr(job, "error"));
	kv(f, "", "Created", "%s", jstr(job, "created"));
	kv(f, "", "Updated", "%s", jstr(job, "updated"));
	output_azure(f, json_object_get(job, "azure"));
	if (json_array_size(drives) == 0)
		kv(f, "", "Drives", "none");
	else {
		fputs("Drives:\n", f);
		drives_table(f, drives, "  ");
	}
	output_after_import(f, json_object_get(job, "afterImport"));
	output_excludes(f, job);
	output_problems(f, job);
}

void
output_jobs(FILE *f, json_t *jobs)
{
	struct table t = {.ncols = 6, .right = 0x18};
	size_t i;
	json_t *j;

	if (json_array_size(jobs) == 0) {
		fputs("No jobs.\n", f);
		return;
	}
	table_add(&t, "NAME", "STATE", "PHASE", "FILES", "BYTES", "UPDATED");
	json_array_foreach(jobs, i, j) {
		char n[32], b[32];
		snprintf(n, sizeof(n), "%" PRId64, jint(j, "files"));
		output_bytes(jint(j, "bytes"), b);
		table_add(&t, jstr(j, "name"), jstr(j, "state"), jstr(j, "phase"), n, b,
			  jstr(j, "updated"));
	}
	table_flush(f, &t, "");
}

void
output_events(FILE *f, json_t *events)
{
	struct table t = {.ncols = 4};
	size_t i;
	json_t *e;

	if (json_array_size(events) == 0) {
		fputs("No events.\n", f);
		return;
	}
	table_add(&t, "TIME", "STATE", "KIND", "TEXT");
	json_array_foreach(events, i, e)
		table_add(&t, jstr(e, "time"), jstr(e, "state"), jstr(e, "kind"), jstr(e, "text"));
	table_flush(f, &t, "");
}

void
output_drive(FILE *f, json_t *d)
{
	char cap[32], used[32];

	output_bytes(jint(d, "capacity"), cap);
	output_bytes(jint(d, "usedBytes"), used);
	kv(f, "", "Serial", "%s", jstr(d, "serial"));
	kv(f, "", "Path", "%s", jstr(d, "path"));
	kv(f, "", "Capacity", "%s", cap);
	kv(f, "", "Used", "%s", used);
	kv(f, "", "Files", "%" PRId64, jint(d, "files"));
	kv(f, "", "State", "%s", jstr(d, "state"));
	if (json_is_object(json_object_get(d, "bitlocker"))) {
		json_t *b = json_object_get(d, "bitlocker");
		kv(f, "", "BitLocker", "%s", jstr(b, "device"));
		kv(f, "", "Volume GUID", "%s", jstr(b, "guid"));
		kv(f, "", "Cipher", "%s", jstr(b, "cipher"));
	} else
		kv(f, "", "BitLocker", "not checked");
}

static void
drives_table(FILE *f, json_t *drives, const char *indent)
{
	struct table t = {.ncols = 8, .right = 0x5c};
	size_t i;
	json_t *d;

	if (json_array_size(drives) == 0) {
		fputs("No drives.\n", f);
		return;
	}
	table_add(&t, "SERIAL", "PATH", "CAPACITY", "USED", "FILES", "STATE", "RATE", "ETA");
	json_array_foreach(drives, i, d) {
		char cap[32], used[32], n[32], rate[40], eta[48] = "-";
		output_bytes(jint(d, "capacity"), cap);
		output_bytes(jint(d, "usedBytes"), used);
		snprintf(n, sizeof(n), "%" PRId64, jint(d, "files"));
		drive_rate_text(d, rate);
		if (json_is_integer(json_object_get(d, "eta")))
			output_duration(jint(d, "eta"), eta);
		table_add(&t, jstr(d, "serial"), jstr(d, "path"), cap, used, n, jstr(d, "state"),
			  rate, eta);
	}
	table_flush(f, &t, indent);
}

/* Each drive's BitLocker volume as AddDrive checked it; "-" where the check was skipped. */
static void
bitlocker_table(FILE *f, json_t *drives)
{
	struct table t = {.ncols = 4};
	size_t i;
	json_t *d;

	table_add(&t, "SERIAL", "BITLOCKER", "VOLUME GUID", "CIPHER");
	json_array_foreach(drives, i, d) {
		json_t *b = json_object_get(d, "bitlocker");
		bool ok = json_is_object(b);
		table_add(&t, jstr(d, "serial"), ok ? jstr(b, "device") : "-",
			  ok ? jstr(b, "guid") : "-", ok ? jstr(b, "cipher") : "-");
	}
	table_flush(f, &t, "");
}

void
output_drives(FILE *f, json_t *drives)
{
	drives_table(f, drives, "");
	if (json_array_size(drives) > 0) {
		fputc('\n', f);
		bitlocker_table(f, drives);
	}
}

/* "  entry" lines of a plan's list (seedd sends the first 100), and how many it left out. */
static void
plan_list(FILE *f, json_t *list, int64_t count)
{
	size_t i;
	json_t *e;

	json_array_foreach(list, i, e) {
		fputs("  ", f);
		put_safe(f, json_string_value(e));
		fputc('\n', f);
	}
	if (count > (int64_t)json_array_size(list))
		fprintf(f, "  ... and %" PRId64 " more\n", count - (int64_t)json_array_size(list));
}

/* The count of a plan's list: its count member, or (an older seedd) the list's length. */
static int64_t
plan_count(json_t *plan, const char *count, const char *list)
{
	json_t *n = json_object_get(plan, count);

	return json_is_integer(n) ? (int64_t)json_integer_value(n)
				  : (int64_t)json_array_size(json_object_get(plan, list));
}

/*
 * What drives the plan still needs, in one story with the files too large
 * for any (issue 12): "2 more of 100.0 MiB", and for files no drive of that
 * size can take, the free space one drive needs for the largest of them.
 */
static void
plan_needs(FILE *f, json_t *plan)
{
	int64_t large = jint(plan, "tooLargeFiles");
	bool none = jint(plan, "drivesAttached") == 0;
	char room[32], need[32], b[32];

	output_bytes(jint(plan, "driveRoom"), room);
	output_bytes(jint(plan, "tooLargeNeeds"), need);
	output_bytes(jint(plan, "tooLargeBytes"), b);
	if (!json_is_integer(json_object_get(plan, "driveRoom"))) { /* an older seedd */
		kv(f, "", "Drives needed", "%" PRId64 " more", jint(plan, "drivesNeeded"));
		return;
	}
	if (large > 0)
		kv(f, "", "Too large", "%" PRId64 " file%s, %s: too large for %s (the largest needs "
		   "a drive with %s free)", large, large == 1 ? "" : "s", b,
		   none ? "a drive of the size assumed" : "any attached drive", need);
	if (large > 0)
		kv(f, "", "Drives needed", "%" PRId64 " more of %s%s, and one with %s free for the "
		   "files too large", jint(plan, "drivesNeeded"), room,
		   none ? " (none attached yet)" : "", need);
	else
		kv(f, "", "Drives needed", "%" PRId64 " more of %s%s", jint(plan, "drivesNeeded"),
		   room, none ? " (none attached yet)" : "");
}

void
output_plan(FILE *f, json_t *plan)
{
	json_t *files = json_object_get(plan, "files"), *e;
	struct table t = {.ncols = 3, .right = 2};
	int64_t refused = plan_count(plan, "invalidCount", "invalidNames");
	int64_t skipped = plan_count(plan, "skippedCount", "skipped");
	int64_t excluded = plan_count(plan, "excludedCount", "excluded");
	char b[32];
	size_t i;

	if (json_array_size(files) > 0) {
		table_add(&t, "PATH", "SIZE", "DRIVE");
		json_array_foreach(files, i, e) {
			json_t *drive = json_object_get(e, "drive");
			output_bytes(jint(e, "size"), b);
			table_add(&t, jstr(e, "path"), b,
				  json_is_string(drive) ? json_string_value(drive)
				  : json_is_true(json_object_get(e, "tooLarge")) ? "(too large)"
										 : "(unplaced)");
		}
		table_flush(f, &t, "");
		fputc('\n', f);
	}
	output_bytes(jint(plan, "unplacedBytes"), b);
	if (json_is_integer(json_object_get(plan, "totalFiles")))
		kv(f, "", "Files", "%" PRId64 "%s", jint(plan, "totalFiles"),
		   json_is_true(json_object_get(plan, "truncated")) ? " (the first 1000 listed)" : "");
	else
		kv(f, "", "Files", "%zu", json_array_size(files));
	kv(f, "", "Unplaced", "%" PRId64 " files, %s", jint(plan, "unplacedFiles"), b);
	plan_needs(f, plan);
	kv(f, "", "Refused names", "%" PRId64 "%s", refused,
	   refused == 0 ? ""
	   : json_is_true(json_object_get(plan, "skipRefused"))
		   ? " (Azure would refuse them; left out: job retry --skip-refused)"
		   : " (Azure would refuse them: rename them, or job retry --skip-refused)");
	plan_list(f, json_object_get(plan, "invalidNames"), refused);
	if (skipped > 0 || json_is_integer(json_object_get(plan, "skippedCount")))
		kv(f, "", "Skipped", "%" PRId64 "%s", skipped,
		   skipped > 0 ? " (not regular files, or unreadable: never copied)" : "");
	plan_list(f, json_object_get(plan, "skipped"), skipped);
	if (excluded > 0 || json_array_size(json_object_get(plan, "excludes")) > 0)
		kv(f, "", "Excluded", "%" PRId64 " (--exclude)", excluded);
	plan_list(f, json_object_get(plan, "excluded"), excluded);
}

void
output_purged(FILE *f, json_t *reply)
{
	json_t *report = json_object_get(reply, "report");

	fputs("Job ", f);
	put_safe(f, jstr(reply, "name"));
	fputs(" purged.", f);
	if (json_is_string(report)) {
		fputs(" Its report stays in ", f);
		put_safe(f, json_string_value(report));
		fputc('.', f);
	}
	fputc('\n', f);
}

void
output_report(FILE *f, json_t *report)
{
	/* The report is a free-form audit document; indented JSON reads well. */
	output_json(f, report, false);
}

/* seedd.conf as the daemon read it: "[Azure] Cloud=Custom ...", wrapped before 100 columns. */
static void
config_lines(FILE *f, json_t *config, const char *indent)
{
	const char *section, *key;
	json_t *keys, *v;

	json_object_foreach(config, section, keys) {
		size_t col;
		if (!json_is_object(keys))
			continue;
		col = strlen(indent) + text_width(section) + 2;
		fprintf(f, "%s[", indent);
		put_safe(f, section);
		fputc(']', f);
		json_object_foreach(keys, key, v) {
			_cleanup_free_ char *item = NULL;
			if (json_is_string(v))
				item = xprintf("%s=%s", key, json_string_value(v));
			else if (json_is_integer(v))
				item = xprintf("%s=%" JSON_INTEGER_FORMAT, key, json_integer_value(v));
			else
				item = xprintf("%s=%s", key, json_is_true(v) ? "yes" : "no");
			if (col + 1 + text_width(item) > 100 && col > strlen(indent) + 4) {
				fprintf(f, "\n%s  ", indent);
				col = strlen(indent) + 2;
			} else {
				fputc(' ', f);
				col++;
			}
			put_safe(f, item);
			col += text_width(item);
		}
		fputc('\n', f);
	}
}

void
output_doctor(FILE *f, json_t *p)
{
	json_t *checks = json_object_get(p, "checks"), *c;
	size_t i, width = 0, failed = 0;

	json_array_foreach(checks, i, c)
		if (text_width(jstr(c, "name")) > width)
			width = text_width(jstr(c, "name"));
	json_array_foreach(checks, i, c) {
		const char *st = jstr(c, "status"), *name = jstr(c, "name");
		bool fail = strcmp(st, "fail") == 0;

		failed += fail;
		fprintf(f, "%-4s  ", fail ? "FAIL" : st);
		put_safe(f, name);
		fprintf(f, "%*s  ", (int)(width - text_width(name)), "");
		put_safe(f, jstr(c, "text"));
		fputc('\n', f);
		if (json_is_object(json_object_get(c, "config")))
			config_lines(f, json_object_get(c, "config"), "      ");
	}
	if (failed > 0)
		fprintf(f, "%zu of %zu checks failed.\n", failed, json_array_size(checks));
	else
		fprintf(f, "All %zu checks ok.\n", json_array_size(checks));
	if (!json_is_true(json_object_get(p, "writeProbes")))
		fputs("Writing was not tried: run seedctl doctor as root or as a member of "
		      "AdminGroup= for that.\n",
		      f);
}

void
output_json(FILE *f, json_t *v, bool compact)
{
	size_t flags = JSON_ENCODE_ANY | (compact ? JSON_COMPACT : JSON_INDENT(2));

	if (v == NULL)
		fputs("null", f);
	else
		json_dumpf(v, f, flags);
	fputc('\n', f);
}

/* What an error's parameters say, in words; NULL to fall back to the raw parameters. */
static char *
error_text(const char *error, json_t *p)
{
	const char *msg = json_string_value(json_object_get(p, "message"));

	if (strcmp(error, SEEDD_ERR_JOB_NOT_FOUND) == 0)
		return xprintf("no job named '%s'", jstr(p, "name"));
	if (strcmp(error, SEEDD_ERR_JOB_EXISTS) == 0)
		return xprintf("a job named '%s' already exists", jstr(p, "name"));
	if (strcmp(error, SEEDD_ERR_INVALID_STATE) == 0)
		return xprintf("job '%s' is %s%s%s", jstr(p, "name"), jstr(p, "state"),
			       msg ? ": " : "", msg ? msg : "");
	if (strcmp(error, SEEDD_ERR_PERMISSION_DENIED) == 0)
		return xprintf("%s needs root or membership of seedd's AdminGroup=",
			       jstr(p, "method"));
	if (strcmp(error, SEEDD_ERR_INVALID_ARGUMENT) == 0)
		return xprintf("%s: %s", jstr(p, "parameter"), jstr(p, "message"));
	if (strcmp(error, SEEDD_ERR_DRIVE_REJECTED) == 0)
		return xstrdup(jstr(p, "reason"));
	if (strcmp(error, SEEDD_ERR_AZURE) == 0)
		return xprintf("%s: %s", json_is_string(json_object_get(p, "code"))
						 ? jstr(p, "code") : jstr(p, "method"),
			       jstr(p, "message"));
	if (strcmp(error, VL_ERR_INVALID_PARAMETER) == 0)
		return xprintf("invalid parameter '%s'", jstr(p, "parameter"));
	if (strcmp(error, VL_ERR_METHOD_NOT_FOUND) == 0)
		return xprintf("unknown method '%s' (seedd too old?)", jstr(p, "method"));
	if (msg != NULL)
		return xstrdup(msg);
	return NULL;
}

void
output_error(FILE *f, const char *error, json_t *params)
{
	_cleanup_free_ char *text = error_text(error, params);

	fputs("seedctl: ", f);
	put_safe(f, error);
	if (text == NULL && json_object_size(params) > 0)
		text = json_dumps(params, JSON_COMPACT);
	if (text != NULL) {
		fputs(": ", f);
		put_safe(f, text);
	}
	fputc('\n', f);
}

/* One compact {"error": NAME, "message": TEXT} line (CONTRACT §4: --json errors). */
static void
error_object(FILE *f, const char *name, const char *message)
{
	json_t *o = json_pack("{s:s,s:s}", "error", name, "message", message);

	if (o == NULL) /* not UTF-8: seedd's own names and texts always are */
		o = json_pack("{s:s,s:s}", "error", name, "message", "(not valid UTF-8)");
	output_json(f, o, true);
	json_decref(o);
}

void
output_error_json(FILE *f, const char *error, json_t *params)
{
	_cleanup_free_ char *text = error_text(error, params);

	if (text == NULL && json_object_size(params) > 0)
		text = json_dumps(params, JSON_COMPACT);
	error_object(f, error, text != NULL ? text : error);
}

void
output_failure(FILE *f, bool json, const char *name, const char *message)
{
	if (json)
		error_object(f, name, message);
	else
		fprintf(f, "seedctl: %s\n", message);
}

/* ---- watch ------------------------------------------------------------ */

/* The lines of one watched job, and its last Job object (for the stage summaries). */
struct watch_job {
	char *name;
	json_t *last;
	char **lines; /* rendered: the job's line, then one per drive with progress */
	size_t nlines;
};

struct output_watch {
	FILE *f;
	bool json, tty;
	size_t width; /* columns; 0: ask the terminal */
	struct watch_job *jobs; /* by first appearance */
	size_t n;
	size_t drawn; /* progress lines on the screen (terminal) */
};

struct output_watch *
output_watch_new(FILE *f, bool json, bool tty)
{
	struct output_watch *w = xcalloc(1, sizeof(*w));

	w->f = f;
	w->json = json;
	w->tty = tty;
	return w;
}

void
output_watch_width(struct output_watch *w, size_t columns)
{
	w->width = columns;
}

static size_t
terminal_width(struct output_watch *w)
{
	struct winsize ws;

	if (w->width > 0)
		return w->width;
	if (ioctl(fileno(w->f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10)
		return ws.ws_col;
	return 80;
}

/*
 * "12.5 MiB/s"; at 0, "idle" when nothing is expected of it (idle true), else
 * "-": a copy that has not been measured yet, or waits.
 */
static void
rate_word(int64_t rate, bool idle, char buf[static 40])
{
	char b[32];

	if (rate <= 0) {
		snprintf(buf, 40, "%s", idle ? "idle" : "-");
		return;
	}
	output_bytes(rate, b);
	snprintf(buf, 40, "%s/s", b);
}

static void
rate_text(int64_t rate, char buf[static 40])
{
	rate_word(rate, true, buf);
}

/* A drive's rate: "idle" once it has all it was given or no copy runs, "-" while unknown. */
static void
drive_rate_text(json_t *d, char buf[static 40])
{
	json_t *eta = json_object_get(d, "eta");

	rate_word(jint(d, "rate"), json_object_get(d, "copiedBytes") == NULL ||
				       (json_is_integer(eta) && json_integer_value(eta) == 0), buf);
}

/* The job's rate: "-" while it copies and nothing is measured, else "idle" at 0. */
static void
job_rate_text(json_t *job, char buf[static 40])
{
	rate_word(jint(job, "rate"), strcmp(jstr(job, "phase"), "copying") != 0, buf);
}

/* "ETA 4m 2s", "ETA ?" when null (unknown). */
static void
eta_text(json_t *eta, char buf[static 56])
{
	char d[48];

	if (!json_is_integer(eta)) {
		snprintf(buf, 56, "ETA ?");
		return;
	}
	output_duration(json_integer_value(eta), d);
	snprintf(buf, 56, "ETA %s", d);
}

/* Cut s after width columns, at a character boundary. */
static void
cut_to_width(char *s, size_t width)
{
	size_t cut = 0, cols = 0;

	if (text_width(s) <= width)
		return;
	for (; s[cut] != '\0'; cut++)
		if (((unsigned char)s[cut] & 0xc0) != 0x80 && cols++ == width)
			break;
	s[cut] = '\0';
}

/*
 * Fit "head  PHASE  tail" into width columns: the phase is shortened (with
 * "~" where it was cut), never the name or the numbers in head and tail;
 * only if even an empty phase does not fit is the line cut at the end.
 */
static char *
fit_line(const char *head, const char *phase, const char *tail, size_t width)
{
	_cleanup_free_ char *ph = safe_dup(phase);
	size_t fixed = text_width(head) + text_width(tail) + 4, pw = text_width(ph);
	char *line;

	if (fixed + pw > width && fixed + 1 < width) {
		/* Keep the first (width - fixed - 1) characters of the phase, then "~". */
		size_t keep = width - fixed - 1, cols = 0;
		char *p = ph;
		for (; *p != '\0'; p++) {
			if (((unsigned char)*p & 0xc0) != 0x80 && cols++ == keep)
				break;
		}
		strcpy(p, "~");
	} else if (fixed + pw > width)
		ph[0] = '\0';
	line = xprintf("%s  %s  %s", head, ph, tail);
	cut_to_width(line, width);
	return line;
}

static void
bar_text(int pct, char bars[static BAR_WIDTH + 3])
{
	int fill = pct * BAR_WIDTH / 100;

	bars[0] = '[';
	for (int i = 0; i < BAR_WIDTH; i++)
		bars[i + 1] = i < fill ? '#' : '-';
	bars[BAR_WIDTH + 1] = ']';
	bars[BAR_WIDTH + 2] = '\0';
}

static bool
job_is(json_t *job, const char *state)
{
	return strcmp(jstr(job, "state"), state) == 0;
}

/*
 * The job's line: "name  state/phase  [bar]  pct%  copied/total  files c/n
 * rate  ETA" while it copies, "name  staging/indexing  N files, X found"
 * while it is indexed, and "name  failed/phase  error: TEXT" once failed.
 */
static char *
watch_job_line(json_t *job, bool bar, size_t width)
{
	int64_t bytes = jint(job, "bytes"), copied = jint(job, "copiedBytes");
	int pct = percent(copied, bytes);
	char b[32], c[32], bars[BAR_WIDTH + 3], rate[48], eta[64];
	_cleanup_free_ char *head = NULL, *phase = NULL, *tail = NULL;

	phase = xprintf("%s/%s", jstr(job, "state"), jstr(job, "phase"));
	head = safe_dup(jstr(job, "name"));
	if (job_is(job, "failed")) {
		_cleanup_free_ char *e = safe_dup(jstr(job, "error"));
		tail = xprintf("error: %s", e);
		return fit_line(head, phase, tail, width);
	}
	if (json_is_integer(json_object_get(job, "indexedFiles"))) {
		output_bytes(jint(job, "indexedBytes"), b);
		tail = xprintf("%" PRId64 " files, %s found", jint(job, "indexedFiles"), b);
		return fit_line(head, phase, tail, width);
	}
	output_bytes(bytes, b);
	output_bytes(copied, c);
	bar_text(pct, bars);
	rate[0] = eta[0] = '\0';
	if (job_is(job, "drive_prep")) {
		/* Rate while it copies; the ETA only once one is known. */
		char r[40], e[56];
		job_rate_text(job, r);
		snprintf(rate, sizeof(rate), "  %s", r);
		if (json_is_integer(json_object_get(job, "eta"))) {
			eta_text(json_object_get(job, "eta"), e);
			snprintf(eta, sizeof(eta), "  %s", e);
		}
	}
	tail = xprintf("%3d%%  %s/%s  files %" PRId64 "/%" PRId64 "%s%s", pct, c, b,
		       jint(job, "copiedFiles"), jint(job, "files"), rate, eta);
	/* The bar only where it leaves the phase room (12 columns, or all of it). */
	if (bar && text_width(head) + text_width(tail) + BAR_WIDTH + 8 +
			   (text_width(phase) < 12 ? text_width(phase) : 12) <= width) {
		char *t = xprintf("%s  %s", bars, tail);
		free(tail);
		tail = t;
	}
	return fit_line(head, phase, tail, width);
}

/* A drive's line while drive prep copies onto it: "  SERIAL  state  96.0 MiB copied  rate  ETA". */
static char *
watch_drive_line(const char *job_name, json_t *dr, bool tty, size_t width)
{
	char c[32], rate[40], eta[56];
	_cleanup_free_ char *serial = safe_dup(jstr(dr, "serial")), *name = safe_dup(job_name);

	char *line;

	output_bytes(jint(dr, "copiedBytes"), c);
	drive_rate_text(dr, rate);
	eta_text(json_object_get(dr, "eta"), eta);
	line = xprintf("%s%s  %s  %s copied  %s  %s", tty ? "  " : name, tty ? "" : "  drive",
		       serial, c, rate, eta);
	cut_to_width(line, width);
	return line;
}

static struct watch_job *
watch_job_get(struct output_watch *w, const char *name)
{
	size_t i;

	for (i = 0; i < w->n && strcmp(w->jobs[i].name, name) != 0; i++)
		;
	if (i == w->n) {
		w->jobs = xreallocarray(w->jobs, w->n + 1, sizeof(*w->jobs));
		w->jobs[i] = (struct watch_job){.name = xstrdup(name)};
		w->n++;
	}
	return &w->jobs[i];
}

static void
lines_free(struct watch_job *wj)
{
	for (size_t i = 0; i < wj->nlines; i++)
		free(wj->lines[i]);
	free(wj->lines);
	wj->lines = NULL;
	wj->nlines = 0;
}

/* The job's line and, on a terminal or while it copies, one per drive with progress. */
static void
watch_render(struct output_watch *w, struct watch_job *wj, json_t *job)
{
	json_t *dr;
	size_t i;

	/* Only a terminal's lines must fit: a log keeps them whole. */
	size_t width = w->tty ? terminal_width(w) - 1 : SIZE_MAX / 2;

	lines_free(wj);
	wj->lines = xcalloc(1 + json_array_size(json_object_get(job, "drives")), sizeof(char *));
	wj->lines[wj->nlines++] = watch_job_line(job, w->tty, width);
	if (!job_is(job, "drive_prep"))
		return;
	json_array_foreach(json_object_get(job, "drives"), i, dr)
		if (json_object_get(dr, "copiedBytes") != NULL)
			wj->lines[wj->nlines++] = watch_drive_line(wj->name, dr, w->tty, width);
}

/* Seconds from one ISO 8601 UTC time to another; -1 if either is not one. */
static int64_t
seconds_from_to(const char *s, const char *t)
{
	struct tm a = {0}, b = {0};

	if (strptime(s, "%Y-%m-%dT%H:%M:%SZ", &a) == NULL ||
	    strptime(t, "%Y-%m-%dT%H:%M:%SZ", &b) == NULL)
		return -1;
	return (int64_t)(timegm(&b) - timegm(&a));
}

/* Seconds between two times of a Job object. */
static int64_t
seconds_between(json_t *job, const char *from, const char *to)
{
	return seconds_from_to(jstr(job, from), jstr(job, to));
}

/*
 * The summary of a state after the Azure job: shipped, imported, vault_copy
 * and cleanup end when the job leaves them; elapsed from the state's start
 * (the previous object's stateSince) to the next one's.
 */
static char *
state_summary(json_t *prev, json_t *job)
{
	static const char *const states[] = {"shipped", "imported", "vault_copy", "cleanup"};
	const char *ps = jstr(prev, "state");
	int64_t secs = seconds_from_to(jstr(prev, "stateSince"), jstr(job, "stateSince"));
	json_t *after = json_object_get(job, "afterImport");
	char el[48], b[32], avg[40];
	size_t i;

	for (i = 0; i < ELEMENTSOF(states) && strcmp(ps, states[i]) != 0; i++)
		;
	if (i == ELEMENTSOF(states) || strcmp(ps, jstr(job, "state")) == 0)
		return NULL;
	output_duration(secs > 0 ? secs : 0, el);
	if (strcmp(ps, "vault_copy") == 0) {
		output_bytes(jint(job, "bytes"), b);
		rate_text(secs > 0 ? jint(job, "bytes") / secs : 0, avg);
		return xprintf("%s: vault copy done: %" PRId64 " files, %s in %s (average %s), "
			       "%" PRId64 " verified in the vault",
			       jstr(job, "name"), jint(job, "files"), b, el, secs > 0 ? avg : "n/a",
			       jint(after, "vaultVerified"));
	}
	return xprintf("%s: %s done in %s", jstr(job, "name"), ps, el);
}

/*
 * The closing summary of a stage the watch saw end: indexing (staging/indexing
 * to anything but a failure or a cancel) and drive prep (copying to
 * awaiting-azure or beyond). NULL when prev -> job ends no stage.
 */
static char *
stage_summary(json_t *prev, json_t *job)
{
	const char *pp = jstr(prev, "phase"), *ph = jstr(job, "phase");
	int64_t secs = seconds_between(job, "stateSince", "updated");
	char b[32], el[48], avg[40];

	if (job_is(job, "failed")) {
		/* The whole error, once, as a line of its own (the progress line may cut it). */
		if (prev != NULL && job_is(prev, "failed"))
			return NULL;
		return xprintf("%s failed (%s): %s", jstr(job, "name"), jstr(job, "phase"),
			       jstr(job, "error"));
	}
	if (prev == NULL || job_is(job, "cancelled"))
		return NULL;
	if (secs < 0)
		secs = 0;
	output_duration(secs, el);
	if (job_is(prev, "staging") && strcmp(pp, "indexing") == 0 &&
	    !(job_is(job, "staging") && strcmp(ph, "indexing") == 0)) {
		output_bytes(jint(job, "bytes"), b);
		return xprintf("%s: indexed %" PRId64 " files, %s in %s", jstr(job, "name"),
			       jint(job, "files"), b, el);
	}
	if (job_is(prev, "drive_prep") &&
	    (strcmp(pp, "copying") == 0 || strcmp(pp, "writing-manifests") == 0 ||
	     strncmp(pp, "needs-drive", 11) == 0) &&
	    (!job_is(job, "drive_prep") || strcmp(ph, "awaiting-azure") == 0)) {
		output_bytes(jint(job, "copiedBytes"), b);
		rate_text(secs > 0 ? jint(job, "copiedBytes") / secs : 0, avg);
		return xprintf("%s: drive prep done: %" PRId64 " files, %s in %s (average %s), "
			       "%" PRId64 " verified",
			       jstr(job, "name"), jint(job, "copiedFiles"), b, el,
			       secs > 0 ? avg : "n/a", jint(job, "verifiedFiles"));
	}
	return state_summary(prev, job);
}

/* Redraw every progress line; the cursor rests at the end of the last one. */
static void
watch_redraw(struct output_watch *w, const char *above)
{
	size_t total = 0, k = 0;

	if (w->drawn > 1)
		fprintf(w->f, "\033[%zuA", w->drawn - 1);
	if (above != NULL) {
		/* A permanent line: it takes the place of the progress lines, which follow it. */
		fputs("\r\033[J", w->f);
		put_safe(w->f, above);
		fputc('\n', w->f);
	}
	for (size_t i = 0; i < w->n; i++)
		for (size_t j = 0; j < w->jobs[i].nlines; j++, k++)
			fprintf(w->f, "%s\r\033[K%s", k > 0 ? "\n" : "", w->jobs[i].lines[j]);
	total = k;
	if (total < w->drawn && above == NULL)
		fputs("\033[J", w->f); /* fewer lines than before: clear the rest */
	w->drawn = total;
}

/* Not a terminal: print the lines that differ from the last ones printed. */
static void
watch_print_changed(struct output_watch *w, struct watch_job *wj, char **old, size_t nold)
{
	for (size_t i = 0; i < wj->nlines; i++) {
		bool same = false;
		for (size_t j = 0; j < nold && !same; j++)
			same = strcmp(old[j], wj->lines[i]) == 0;
		if (!same) {
			put_safe(w->f, wj->lines[i]);
			fputc('\n', w->f);
		}
	}
}

bool
output_watch_update(struct output_watch *w, json_t *job)
{
	struct watch_job *wj = watch_job_get(w, jstr(job, "name"));
	_cleanup_free_ char *summary = stage_summary(wj->last, job);
	bool failed = job_is(job, "failed");

	if (w->json)
		output_json(w->f, job, true);
	else {
		char **old = wj->lines;
		size_t nold = wj->nlines;
		wj->lines = NULL;
		wj->nlines = 0;
		watch_render(w, wj, job);
		if (w->tty)
			watch_redraw(w, summary);
		else {
			watch_print_changed(w, wj, old, nold);
			if (summary != NULL) {
				put_safe(w->f, summary);
				fputc('\n', w->f);
			}
		}
		for (size_t i = 0; i < nold; i++)
			free(old[i]);
		free(old);
	}
	json_decref(wj->last);
	wj->last = json_incref(job);
	fflush(w->f);
	return failed;
}

struct output_watch *
output_watch_free(struct output_watch *w)
{
	if (w == NULL)
		return NULL;
	if (w->tty && w->drawn > 0) {
		fputc('\n', w->f);
		fflush(w->f);
	}
	for (size_t i = 0; i < w->n; i++) {
		free(w->jobs[i].name);
		json_decref(w->jobs[i].last);
		lines_free(&w->jobs[i]);
	}
	free(w->jobs);
	free(w);
	return NULL;
}
