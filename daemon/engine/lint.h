/*
 * Azure naming rules for an import: container names, blob names (which are
 * also the file paths seedd writes on the NTFS import drive) and the
 * manifest's BlobPath.
 *
 * Pure functions, callable from any thread. Lengths of blob names are counted
 * in UTF-16 code units, the unit the service counts in (see lint.c). Every
 * *reason is a static string naming the broken rule: never free it. A NULL
 * reason pointer is allowed when the caller only wants the verdict.
 */
#ifndef SEEDD_LINT_H
#define SEEDD_LINT_H

#include <stdbool.h>
#include <stddef.h>

#define LINT_CONTAINER_MIN 3
#define LINT_CONTAINER_MAX 63
#define LINT_BLOB_NAME_MAX 1024    /* UTF-16 code units */
#define LINT_BLOB_SEGMENTS_MAX 254 /* '/'-separated path segments */
#define LINT_TMP_SUFFIX ".seedd-tmp" /* copy.h's COPY_TMP_SUFFIX: refused in names */
#define LINT_SEGMENT_MAX 255       /* UTF-16 code units per segment (NTFS name) */

/* True if name is a valid container name for an import (never "$root"). */
bool lint_container_name(const char *name, const char **reason);

/*
 * True if the len bytes at name form a blob name (without the container) that
 * Azure accepts and that can also be stored as a relative path on an NTFS
 * drive mounted with ntfs-3g -o windows_names. Embedded NULs are rejected.
 */
bool lint_blob_name(const char *name, size_t len, const char **reason);

/*
 * "<container>/<job_prefix>/<rel_path>", the manifest's BlobPath. A NULL or
 * empty job_prefix is left out. Nothing is trimmed or checked: lint the
 * container and the blob name ("<job_prefix>/<rel_path>") separately.
 * Returns an xmalloc'd string the caller frees.
 */
char *lint_blob_path(const char *container, const char *job_prefix, const char *rel_path);

#endif
