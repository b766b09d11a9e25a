/*
 * seedctl's output: replies printed for people (tables, "Key: value" lines,
 * progress bars) or as JSON for scripts. Strings from seedd are printed with
 * control characters replaced, so a file name cannot drive the terminal.
 */
#ifndef SEEDCTL_OUTPUT_H
#define SEEDCTL_OUTPUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Human form of each reply value (the unwrapped parameter; status: all parameters). */
void output_status(FILE *f, json_t *params);
void output_job(FILE *f, json_t *job);
void output_jobs(FILE *f, json_t *jobs);
void output_events(FILE *f, json_t *events);
void output_drive(FILE *f, json_t *drive);
void output_drives(FILE *f, json_t *drives);
void output_plan(FILE *f, json_t *plan);
/* PurgeJob's answer: the job purged, and where its report file stays. */
void output_purged(FILE *f, json_t *reply);
void output_report(FILE *f, json_t *report);
/* Doctor: a line a check (ok, FAIL, skip), the configuration under its line, a closing count. */
void output_doctor(FILE *f, json_t *params);

/* One JSON document and a newline: indented, or compact on one line. */
void output_json(FILE *f, json_t *v, bool compact);

/* "seedctl: io.seedd.JobNotFound: no job named 'x'" */
void output_error(FILE *f, const char *error, json_t *params);
/* The same error with --json: {"error": "io.seedd.JobNotFound", "message": "no job named 'x'"}. */
void output_error_json(FILE *f, const char *error, json_t *params);
/*
 * seedctl's own failure (usage, unreachable, malformed reply): with json the
 * object above with name (SEEDCTL_ERR_*), else "seedctl: message".
 */
void output_failure(FILE *f, bool json, const char *name, const char *message);

/* "1.5 GiB"; plain "N B" below 1 KiB. */
void output_bytes(int64_t n, char buf[static 32]);

/* "2d 3h 4m 5s", leading zero units dropped. */
void output_duration(int64_t seconds, char buf[static 48]);

/*
 * Watch output: with json, one compact Job object a line; on a terminal, one
 * progress line per job (and one per drive while it copies) redrawn in place;
 * else one plain line per change (a line equal to the last one is not
 * repeated). A stage the watch saw end gets a closing summary line.
 */
struct output_watch;
struct output_watch *output_watch_new(FILE *f, bool json, bool tty);
/* Lay lines out for this many columns (default: the terminal's, else 80). */
void output_watch_width(struct output_watch *w, size_t columns);
/* Returns true when the job has failed (its error is on its line). */
bool output_watch_update(struct output_watch *w, json_t *job);
struct output_watch *output_watch_free(struct output_watch *w);

#endif
