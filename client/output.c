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

#include "names.h"
#include "output.h"
#include "util.h"

#define KEY_WIDTH 15
#define BAR_WIDTH 20

static void drives_table(FILE *f, json_t *drives, const char *indent);

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
	struct table t = {.ncols = 6, .right = 0x1c};
	size_t i;
	json_t *d;

	if (json_array_size(drives) == 0) {
		fputs("No drives.\n", f);
		return;
	}
	table_add(&t, "SERIAL", "PATH", "CAPACITY", "USED", "FILES", "STATE");
	json_array_foreach(drives, i, d) {
		char cap[32], used[32], n[32];
		output_bytes(jint(d, "capacity"), cap);
		output_bytes(jint(d, "usedBytes"), used);
		snprintf(n, sizeof(n), "%" PRId64, jint(d, "files"));
		table_add(&t, jstr(d, "serial"), jstr(d, "path"), cap, used, n, jstr(d, "state"));
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

void
output_plan(FILE *f, json_t *plan)
{
	json_t *files = json_object_get(plan, "files"), *e;
	json_t *bad = json_object_get(plan, "invalidNames");
	struct table t = {.ncols = 3, .right = 2};
	char b[32];
	size_t i;

	if (json_array_size(files) > 0) {
		table_add(&t, "PATH", "SIZE", "DRIVE");
		json_array_foreach(files, i, e) {
			json_t *drive = json_object_get(e, "drive");
			output_bytes(jint(e, "size"), b);
			table_add(&t, jstr(e, "path"), b,
				  json_is_string(drive) ? json_string_value(drive) : "(unplaced)");
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
	kv(f, "", "Drives needed", "%" PRId64 " more", jint(plan, "drivesNeeded"));
	kv(f, "", "Invalid names", "%zu", json_array_size(bad));
	json_array_foreach(bad, i, e) {
		fputs("  ", f);
		put_safe(f, json_string_value(e));
		fputc('\n', f);
	}
}

void
output_report(FILE *f, json_t *report)
{
	/* The report is a free-form audit document; indented JSON reads well. */
	output_json(f, report, false);
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

/* ---- watch ------------------------------------------------------------ */

struct output_watch {
	FILE *f;
	bool json, tty;
	size_t n;     /* jobs seen */
	char **names; /* by first appearance */
	char **lines; /* last rendered progress line of each */
	size_t drawn; /* lines on the screen */
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

static size_t
terminal_width(FILE *f)
{
	struct winsize ws;

	if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10)
		return ws.ws_col;
	return 80;
}

/* "name  state/phase  [#####---------------]  25%  1.0 GiB/4.0 GiB" */
static char *
watch_line(json_t *job, bool bar)
{
	int64_t bytes = jint(job, "bytes"), copied = jint(job, "copiedBytes");
	int pct = percent(copied, bytes), fill = pct * BAR_WIDTH / 100;
	char b[32], c[32], bars[BAR_WIDTH + 3], *line;

	output_bytes(bytes, b);
	output_bytes(copied, c);
	bars[0] = '[';
	for (int i = 0; i < BAR_WIDTH; i++)
		bars[i + 1] = i < fill ? '#' : '-';
	bars[BAR_WIDTH + 1] = ']';
	bars[BAR_WIDTH + 2] = '\0';
	line = xprintf("%s  %s/%s  %s%s%3d%%  %s/%s  files %" PRId64 "/%" PRId64,
		       jstr(job, "name"), jstr(job, "state"), jstr(job, "phase"),
		       bar ? bars : "", bar ? "  " : "", pct, c, b, jint(job, "copiedFiles"),
		       jint(job, "files"));
	return line;
}

/* Redraw every progress line; the cursor rests at the end of the last one. */
static void
watch_redraw(struct output_watch *w)
{
	size_t width = terminal_width(w->f) - 1;

	if (w->drawn > 1)
		fprintf(w->f, "\033[%zuA", w->drawn - 1);
	for (size_t i = 0; i < w->n; i++) {
		_cleanup_free_ char *s = safe_dup(w->lines[i]);
		size_t cut = width;

		if (strlen(s) > cut) {
			/* Cut at a character boundary. */
			while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
				cut--;
			s[cut] = '\0';
		}
		fprintf(w->f, "%s\r\033[K%s", i > 0 ? "\n" : "", s);
	}
	w->drawn = w->n;
}

void
output_watch_update(struct output_watch *w, json_t *job)
{
	const char *name = jstr(job, "name");
	size_t i;

	if (w->json)
		output_json(w->f, job, true);
	else if (!w->tty) {
		_cleanup_free_ char *line = watch_line(job, false);
		put_safe(w->f, line);
		fputc('\n', w->f);
	} else {
		for (i = 0; i < w->n && strcmp(w->names[i], name) != 0; i++)
			;
		if (i == w->n) {
			w->names = xreallocarray(w->names, w->n + 1, sizeof(char *));
			w->lines = xreallocarray(w->lines, w->n + 1, sizeof(char *));
			w->names[i] = xstrdup(name);
			w->lines[i] = NULL;
			w->n++;
		}
		free(w->lines[i]);
		w->lines[i] = watch_line(job, true);
		watch_redraw(w);
	}
	fflush(w->f);
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
		free(w->names[i]);
		free(w->lines[i]);
	}
	free(w->names);
	free(w->lines);
	free(w);
	return NULL;
}
