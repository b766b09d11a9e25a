/*
 * The staging-tree scanner: walks a staging directory depth-first, relative to
 * its fd, and hands the entries to a callback in batches. Files are reported
 * with size and mtime; anything that is not a regular file or a directory is
 * reported as skipped and never followed, opened or read.
 *
 * A blocking call for a worker thread. Memory stays bounded: one open DIR per
 * level of the current path and one batch, never a list of the tree.
 */
#ifndef SEEDD_SCAN_H
#define SEEDD_SCAN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCAN_BATCH_SIZE 1000
#define SCAN_MAX_DEPTH 256

enum scan_kind {
	SCAN_FILE,       /* a regular file: size and mtime_ns are set */
	SCAN_SYMLINK,    /* skipped: not followed */
	SCAN_DEVICE,     /* skipped: block or character device */
	SCAN_SOCKET,     /* skipped */
	SCAN_FIFO,       /* skipped */
	SCAN_UNREADABLE, /* skipped: a directory that could not be opened or read, or an
	                  * entry that could not be stat'ed; error is set */
	SCAN_OTHER_FS,   /* skipped: a directory on another filesystem (a mount point) */
	SCAN_TOO_DEEP,   /* skipped: a directory deeper than max_depth */
	SCAN_OTHER,      /* skipped: any other file type */
	SCAN_EXCLUDED,   /* left out by opt->exclude: not stat'ed, a directory not entered */
	_SCAN_KIND_MAX,
};

struct scan_entry {
	const char *path; /* relative to the staging root, '/'-separated; bytes as on disk
	                   * (not necessarily UTF-8) */
	size_t path_len;
	enum scan_kind kind;
	int error;        /* errno for SCAN_UNREADABLE, else 0 */
	uint64_t size;    /* SCAN_FILE only */
	int64_t mtime_ns; /* SCAN_FILE only */
	uint64_t links;   /* SCAN_FILE only: st_nlink; above 1, a hard link */
	int rule;         /* SCAN_EXCLUDED only: what opt->exclude answered */
	bool dir;         /* SCAN_EXCLUDED only: readdir said it is a directory */
};

struct scan_options {
	size_t batch_size;         /* entries per callback; 0: SCAN_BATCH_SIZE */
	unsigned max_depth;        /* directory levels below the root; 0: SCAN_MAX_DEPTH */
	const atomic_bool *cancel; /* may be NULL */
	/* If set: regular files and their bytes found so far, for a live count. */
	atomic_llong *found_files, *found_bytes;
	/*
	 * If set: asked for every entry's path (as in scan_entry) before the
	 * entry is looked at; an answer >= 0 reports it as SCAN_EXCLUDED with
	 * that rule, and a directory is then not entered. Runs on the scan's thread.
	 */
	int (*exclude)(const char *path, size_t len, void *arg);
	void *exclude_arg;
};

/*
 * Called with up to batch_size entries, valid only during the call. Return 0
 * to go on, or a negative errno to stop the scan, which then returns it.
 */
typedef int (*scan_batch_cb)(const struct scan_entry *entries, size_t n, void *userdata);

/*
 * Walk the tree under staging_dirfd. Directories are entered, not reported
 * (an excluded one is reported, not entered);
 * every file and every skipped entry is reported once. Order is depth-first in
 * readdir order (not sorted: sorting would hold a whole directory in memory).
 * A directory whose st_dev differs from the root's is a mount point and is
 * reported as SCAN_OTHER_FS, not entered (btrfs subvolumes count as such).
 * opt may be NULL. Returns 0, -ECANCELED, the callback's error, or -errno if
 * the root itself cannot be read.
 */
int scan_tree(int staging_dirfd, const struct scan_options *opt, scan_batch_cb cb, void *userdata);

const char *scan_kind_to_string(enum scan_kind k);

#endif
