/*
 * Parser for the copy logs the Azure Import/Export service writes per drive
 * (DriveLog XML, error and verbose; drive-format README §4).
 *
 * The parse copies everything it keeps into plain C structs; no libxml2 type
 * leaks out. Strings are UTF-8 and never NULL unless a field says so. Status
 * strings are kept verbatim (trimmed of surrounding whitespace) so unknown
 * ones can be shown; the verdict turns any status we do not know into
 * DLOG_FAILED. Logs are joined to our own files by FilePath, never BlobPath:
 * a renamed blob logs its new name (README §1.5).
 *
 * Any thread may parse; one struct drivelog belongs to one thread.
 * libxml2 must have been initialised by main() (xmlInitParser).
 */
#ifndef SEEDD_DRIVELOG_H
#define SEEDD_DRIVELOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DRIVELOG_SIZE_MAX (64u << 20) /* bytes of XML we accept */

/* Ordered best to worst: drivelog_find_file() relies on it. */
enum drivelog_verdict {
	DLOG_OK,      /* imported as we asked */
	DLOG_RENAMED, /* imported, but under another blob name (blob_path) */
	DLOG_SKIPPED, /* not imported: the blob existed (no-overwrite) */
	DLOG_FAILED,  /* anything else, unknown statuses included */
};

/* One Block or PageRange, as logged (error logs list only failing ones). */
struct drivelog_block {
	int64_t offset;        /* -1 if absent or malformed */
	int64_t length;        /* -1 if absent or malformed */
	char *status;          /* verbatim; "" if absent */
	bool has_hash;         /* false if absent or malformed */
	unsigned char md5[16]; /* the logged Hash, when has_hash */
};

struct drivelog_blob {
	char *blob_path;          /* as logged: the NEW name when renamed */
	char *file_path;          /* as logged, e.g. "\job\dir\file"; "" if absent */
	char *rel_path;           /* drivelog_file_path_to_rel(file_path) */
	char *status;             /* Blob/@Status verbatim; "" if absent */
	char *disposition;        /* ImportDisposition text (as requested), or NULL */
	char *disposition_status; /* Created, Renamed, Skipped, ... verbatim, or NULL */
	char *metadata_status;    /* Metadata/@Status, or NULL if no Metadata element */
	char *properties_status;  /* Properties/@Status, or NULL if no Properties element */
	int64_t length;           /* -1 if absent or malformed */
	bool page_ranges;         /* blocks came from a PageRangeList */
	struct drivelog_block *blocks;
	size_t n_blocks;
	/*
	 * SKIPPED if the disposition status is Skipped; otherwise FAILED unless
	 * the blob status is Completed, every logged block is Completed with a
	 * valid offset and length, Metadata/Properties (when logged) are
	 * Completed and the disposition status is absent, Created, Overwritten
	 * or Renamed; then RENAMED for Renamed, else OK.
	 */
	enum drivelog_verdict verdict;
};

struct drivelog {
	char *version;      /* DriveLog/@Version, NULL if absent */
	char *drive_id;     /* "" if absent */
	char *drive_status; /* DriveLog/Status text, "" if absent */
	bool drive_ok;      /* Completed or CompletedWithWarnings */
	/*
	 * A drive-level failure (README §4.3: BitLockerKeyInvalid,
	 * ManifestCorrupted, ManifestDriveIdMismatch, DiskNotFound, ...,
	 * unknown statuses included): any status but Completed,
	 * CompletedWithWarnings and CompletedWithErrors, which are about blobs.
	 * Nothing of the drive can be taken as imported. An absent Status is not
	 * one (the blobs decide).
	 */
	bool drive_failed;
	struct drivelog_blob *blobs;
	size_t n_blobs;
	const struct drivelog_blob **by_path; /* private: blobs sorted by rel_path, for lookups */
};

/*
 * Parse len bytes of XML into *ret (written only on success). Errors, each
 * with an xmalloc'd message in *ret_err when ret_err is not NULL:
 * -EMSGSIZE above DRIVELOG_SIZE_MAX; -EBADMSG for anything not a
 * well-formed DriveLog document (the message carries libxml2's line number),
 * and for any DOCTYPE: the service writes none, so entity tricks are refused
 * before they are parsed. Never touches the network or the file system.
 */
int drivelog_parse(const char *xml, size_t len, struct drivelog *ret, char **ret_err);

/* Free what drivelog_parse() filled in and zero *l. Accepts a zeroed struct. */
void drivelog_done(struct drivelog *l);

/* "\job\a\b.txt" -> "job/a/b.txt": drop one leading '\', then '\' -> '/'. xmalloc'd. */
char *drivelog_file_path_to_rel(const char *file_path);

/*
 * The blob logged for a drive-relative path ("job/a/b.txt", as above), or
 * NULL. O(log n). Should the path be logged twice, the worst verdict wins.
 */
const struct drivelog_blob *drivelog_find_file(const struct drivelog *l, const char *rel);

/* Whether a DriveLog/Status is a drive-level failure (see drive_failed); NULL: no. */
bool drivelog_drive_failed_status(const char *status);

/* "OK", "RENAMED", "SKIPPED", "FAILED". */
const char *drivelog_verdict_to_string(enum drivelog_verdict v);

#endif
