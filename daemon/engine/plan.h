/*
 * The drive planner: which staged file goes onto which attached drive, and
 * how many more drives the rest needs.
 *
 * Pure code, any thread, no I/O. Units are bytes (uint64_t). Drives and files
 * are identified by their index in the caller's arrays; their ids are only
 * carried along. plan_compute() fills a struct plan whose arrays it allocates
 * (xmalloc: it aborts on OOM rather than failing); free them with plan_done().
 * Errors are negative errno values.
 */
#ifndef SEEDD_PLAN_H
#define SEEDD_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PLAN_BLOCK_SIZE (UINT64_C(4) << 20) /* manifest block size, as manifest.h */

/*
 * What a file costs on a drive beyond its data bytes, so that the manifest
 * (written last) and the filesystem's own metadata always fit. A file fits
 * on a drive if cost(file) <= the drive's free bytes - drive_base - the cost
 * of the files already placed there, where
 *   cost = round_up(size, cluster) + fs_per_file + per_file + name_bytes
 *          + per_block * ceil(size / PLAN_BLOCK_SIZE).
 */
struct plan_cost {
	uint64_t drive_base;  /* per drive: manifest head and tail, slack */
	uint64_t per_file;    /* manifest bytes of one <Blob> without its names */
	uint64_t per_block;   /* manifest bytes of one <Block .../> line */
	uint64_t cluster;     /* file data rounds up to this (NTFS cluster); 0 or 1: none */
	uint64_t fs_per_file; /* filesystem metadata per file (NTFS MFT record, index entry) */
};

/*
 * The default, deliberately generous. A <Blob> without BlobPath/FilePath text
 * is about 250 bytes of markup and its PropertiesPath line about 150 more plus
 * the job's name, so 768 leaves room for names of ~300 bytes when
 * plan_file.name_bytes is 0; a <Block> line is about 140 bytes, so 200.
 * 64 KiB covers the XML head/tail and rounding. Clusters of 4 KiB are NTFS's
 * default up to 16 TB volumes; 8 KiB per file covers two 1 KiB MFT records
 * (4 KiB on 4Kn-formatted volumes): the file's and its properties file's (one
 * per distinct content, so at most one per file), and directory index entries.
 * For 1 M small files that is ~8.8 GB held back, which beats an ENOSPC halfway
 * through a drive.
 */
#define PLAN_COST_DEFAULT                                                                          \
	((struct plan_cost){                                                                       \
	    .drive_base = 64 * 1024,                                                               \
	    .per_file = 768,                                                                       \
	    .per_block = 200,                                                                      \
	    .cluster = 4096,                                                                       \
	    .fs_per_file = 8192,                                                                   \
	})

struct plan_file {
	int64_t id;          /* caller's file id, carried along */
	uint64_t size;       /* bytes; 0 is fine (it still costs manifest space) */
	uint64_t name_bytes; /* escaped BlobPath + FilePath bytes if known, else 0 */
};

struct plan_drive {
	int64_t id;    /* caller's drive id, carried along */
	uint64_t free; /* bytes seedd may use on it (free space, capped by --capacity) */
};

struct plan_drive_use {
	uint64_t files;   /* files placed on the drive */
	uint64_t bytes;   /* their data bytes (sum of sizes) */
	uint64_t charged; /* bytes counted against free: data, cost, drive_base */
};

struct plan {
	size_t n_files, n_drives;
	int32_t *file_drive;                     /* [n_files]: drive index, or -1 if unplaced */
	struct plan_drive_use *use;              /* [n_drives] */
	uint64_t unplaced_files, unplaced_bytes; /* everything with file_drive == -1 */
	/* Additional empty drives of `capacity` bytes the placeable rest needs
	 * (first-fit decreasing); 0 if everything was placed. */
	uint64_t drives_needed;
	uint64_t capacity; /* largest attached free bytes, or the nominal capacity */
	/* Unplaced files whose cost exceeds `capacity` (included in unplaced_*):
	 * no drive of that size can take them; they are not in drives_needed. */
	uint64_t too_large_files, too_large_bytes;
	/* The free bytes an empty drive needs to take the largest of them (its
	 * cost and drive_base); 0 if there is none. */
	uint64_t too_large_need;
};

/* Bytes file f takes on a drive under cost c, data included (saturating). */
uint64_t plan_file_cost(const struct plan_cost *c, const struct plan_file *f);

/*
 * Place files[0..n_files) onto drives[0..n_drives): largest file first (ties:
 * lower index first), each into the drive with the most room left (ties: lower
 * drive index) if it fits there, else it stays unplaced. nominal_capacity is
 * the size assumed for additional drives when none is attached (it is ignored
 * otherwise). cost may be NULL for PLAN_COST_DEFAULT.
 * Time O(n log n + n * n_drives), memory O(n) in flat arrays.
 * Returns 0, or -EINVAL (n_files or n_drives too large for the index types,
 * or nothing to size additional drives with: no drive attached, files to
 * place and nominal_capacity 0). On error *ret is untouched.
 */
int plan_compute(const struct plan_file *files, size_t n_files, const struct plan_drive *drives,
                 size_t n_drives, const struct plan_cost *cost, uint64_t nominal_capacity,
                 struct plan *ret);

/*
 * Is file f (unplaced in p, computed under cost c, NULL for the default) one
 * of the too-large ones: more than an empty drive of p->capacity could take?
 */
bool plan_file_too_large(const struct plan *p, const struct plan_cost *c,
			 const struct plan_file *f);

/* Free the arrays of a plan filled by plan_compute(); safe to call twice. */
void plan_done(struct plan *p);

#endif
