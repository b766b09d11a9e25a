/*
 * The per-file copy engine of drive prep: staging file -> drive file with an
 * MD5 per block (the manifest's Block/@Hash) and of the whole file (the blob's
 * Content-MD5), written under a temporary name, made durable, re-read from
 * the drive and compared, then renamed into place.
 *
 * Blocking calls for a drive worker thread. A struct copier belongs to one
 * worker; it keeps its threads (reader, hashers, syncer, verifier) and its
 * buffers alive across files, so a small file costs no thread or allocation.
 * Nothing here touches SQLite, libevent or curl; results go back to the
 * caller, which reports to the loop.
 */
#ifndef SEEDD_COPY_H
#define SEEDD_COPY_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COPY_BLOCK_SIZE (4u << 20) /* the manifest's block size: 4 MiB */
#define COPY_BLOCK_SIZE_MIN 4096u
#define COPY_BLOCK_SIZE_MAX (64u << 20)
#define COPY_CHECKPOINT_EVERY 64u /* blocks between checkpoints: 256 MiB */
struct throttle;

#define COPY_TMP_SUFFIX ".seedd-tmp"
#define COPY_DETAIL_MAX 256

/*
 * What a drive takes of O_DIRECT (DESIGN §3a), as copy_direct_probe() finds at
 * AddDrive and the drive's row keeps; FUSE drives may refuse it (EINVAL,
 * EFAULT, EOPNOTSUPP). Without COPY_DIRECT_WRITE the copier writes through
 * the page cache (sync_file_range, fdatasync, POSIX_FADV_DONTNEED); without
 * COPY_DIRECT_READ it re-reads after POSIX_FADV_DONTNEED. (The EFAULT seen
 * on ntfs-3g over dislocker's dislocker-file is not O_DIRECT's: dislocker
 * refuses any write over BitLocker's metadata blocks, buffered ones too.)
 */
#define COPY_DIRECT_WRITE 1u /* whole-block O_DIRECT writes complete */
#define COPY_DIRECT_READ 2u  /* O_DIRECT reads give back what was written */
#define COPY_DIRECT_ALL (COPY_DIRECT_WRITE | COPY_DIRECT_READ)
#define COPY_PROBE_NAME ".seedd-direct-probe.seedd-tmp" /* at the drive root, while probing */

/* One block of a copied file: [offset, offset + length) and its MD5. */
struct copy_block {
	uint64_t offset;
	uint32_t length;
	unsigned char md5[16];
};

/*
 * Progress of a partly copied file: blocks [0, n_blocks) of the temporary file
 * tmp_name (in the destination's directory) are on the drive and durable
 * (fdatasync'd), with these hashes.
 */
struct copy_checkpoint {
	const char *tmp_name;
	size_t n_blocks;
	const struct copy_block *blocks;
};

/* Called from the copying thread after each block with the bytes done so far; keep it cheap. */
typedef void (*copy_progress_cb)(uint64_t bytes_done, void *userdata);

/*
 * Called from the copying thread after the temporary file was fdatasync'd: every
 * checkpoint_every blocks, and once more when a cancel or pause stops the copy.
 * cp and its arrays are valid only during the call: persist a copy.
 */
typedef void (*copy_checkpoint_cb)(const struct copy_checkpoint *cp, void *userdata);

struct copy_request {
	int src_dirfd;             /* the staging root */
	const char *src_path;      /* relative to it, '/'-separated, no "." or ".." */
	uint64_t expected_size;    /* from the index */
	int64_t expected_mtime_ns; /* from the index */

	int dst_dirfd;        /* the drive root */
	const char *dst_path; /* relative to it; parent directories are created */
	const char *tmp_name; /* temporary file name in dst's directory; NULL: the
	                       * checkpoint's, else copy_tmp_name() */

	uint32_t block_size; /* 0: COPY_BLOCK_SIZE; else a multiple of 4096 up to 64 MiB */
	const struct copy_checkpoint *resume; /* NULL: start from the beginning */
	uint32_t checkpoint_every;            /* blocks; 0: COPY_CHECKPOINT_EVERY */

	bool verify;     /* re-read the drive file and compare block MD5s */
	bool defer_sync; /* batch mode for small files, see copier_copy() */

	const atomic_bool *cancel;     /* may be NULL */
	const atomic_bool *pause;      /* may be NULL */
	struct throttle *throttle;     /* paces the reads of the source; NULL: none */
	copy_progress_cb progress;     /* may be NULL */
	copy_checkpoint_cb checkpoint; /* may be NULL */
	void *userdata;
};

struct copy_result {
	uint64_t bytes;        /* file size */
	unsigned char md5[16]; /* of the whole file */
	size_t n_blocks;
	/* n_blocks entries (NULL for an empty file); free with copy_result_done() */
	struct copy_block *blocks;
	bool verified;                /* the drive copy was re-read and matched */
	char tmp_name[NAME_MAX + 1];  /* the temporary name used (for a checkpoint) */
	char detail[COPY_DETAIL_MAX]; /* what failed, for the log (the caller adds the errno
	                               * text); "" on success */
	/*
	 * > 0: during this call an O_DIRECT write or re-read of the drive failed
	 * with this errno (EIO: it came back short or wrong, while a buffered
	 * re-read matched) and was redone buffered; the copier has dropped
	 * direct_what from copier_direct() for good. Set whatever the call returns.
	 */
	int direct_error;
	unsigned direct_what;
};

struct copier;

struct copier *copier_new(void);
struct copier *copier_free(struct copier *c);

/*
 * The O_DIRECT use of the drive this copier writes to: COPY_DIRECT_* flags,
 * COPY_DIRECT_ALL for a new copier. The copier drops flags itself when the
 * drive refuses O_DIRECT at run time (copy_result.direct_error).
 */
void copier_set_direct(struct copier *c, unsigned flags);
unsigned copier_direct(const struct copier *c);

/*
 * Find what the drive at dirfd takes of O_DIRECT: create COPY_PROBE_NAME,
 * write one block of COPY_BLOCK_SIZE with O_DIRECT (buffered if that fails or
 * comes back short), fdatasync, read it back with O_DIRECT and compare, then
 * remove it. *ret_flags: COPY_DIRECT_* of what worked. Returns 0, or -errno
 * if even buffered I/O fails (-EIO: the drive did not give back what was
 * written; -ENOSPC: no room for the probe). detail is NULL or
 * COPY_DETAIL_MAX bytes.
 */
int copy_direct_probe(int dirfd, unsigned *ret_flags, char *detail);

/*
 * Tests only: make the copier's O_DIRECT writes (COPY_DIRECT_WRITE) or
 * re-reads (COPY_DIRECT_READ) of the drive fail with -err, as a FUSE drive's
 * EFAULT does; which 0 turns it off. Process-wide.
 */
void copy_test_direct_fault(unsigned which, int err);

/*
 * Copy one staging file onto the drive: re-stat (size and mtime must match the
 * index), read in blocks with hashing overlapping I/O, write the temporary
 * file, stat the source again, fdatasync, rename into place, fsync the
 * directory. With verify, every block is read back from the device (cache
 * dropped) and compared before the rename, so the final name only ever holds
 * verified bytes; a file of over one block is checked block by block as its
 * write-back completes, overlapping the copy (see copy.c). Missing parent
 * directories are created (and their parents fsync'd). res is always
 * initialised; free it with copy_result_done().
 *
 * defer_sync is a batch mode for small files, where per-file fsyncs and
 * renames would cost more than the copy: the final name is written directly
 * (no temporary name) and nothing is fsync'd or verified (checkpoints still
 * sync). The caller copies a batch, calls syncfs() on the drive, then
 * copier_verify_batch(), and reports none of the batch before that; a crash
 * leaves unreported, possibly partial files that the next copy overwrites.
 *
 * Returns 0, or:
 *   -ESTALE     the source is not the indexed file (size, mtime or type differ,
 *               before or during the copy): re-index it
 *   -ENOSPC     the drive is full (or over quota): plan the file for another drive
 *   -ECANCELED  the cancel or pause flag was seen between runs of blocks (up
 *               to 4 blocks are written at once); the temporary file and
 *               the last checkpoint stay valid for a resume
 *   -EIO        the re-read did not match (detail names the block), or an I/O error
 *   -ELOOP      a symlink in the source or destination path
 *   -EINVAL     a bad request (path with "." or "..", bad block size)
 *   other       -errno from the system
 * On any error but -ECANCELED the temporary file is removed and any checkpoint
 * of this file is void.
 */
int copier_copy(struct copier *c, const struct copy_request *req, struct copy_result *res);

/* copier_copy() with a copier of its own (spawns a thread for a file over one block). */
int copy_file(const struct copy_request *req, struct copy_result *res);

/*
 * Re-read path (relative to dirfd, no symlinks followed) from the device,
 * bypassing the page cache (O_DIRECT, else POSIX_FADV_DONTNEED, so call it on
 * data that is already durable), and compare its size and block MD5s with
 * blocks. Returns 0, -EIO on a mismatch (detail names the block), -ECANCELED,
 * or -errno. detail is NULL or COPY_DETAIL_MAX bytes. On a FUSE drive
 * (ntfs-3g) this drops only the file's pages, not those of the block device
 * under the FUSE daemon: the worker should drop that device's cache too.
 */
int copier_verify(struct copier *c, int dirfd, const char *path, const struct copy_block *blocks,
                  size_t n_blocks, const atomic_bool *cancel, char *detail);
int copy_verify(int dirfd, const char *path, const struct copy_block *blocks, size_t n_blocks,
                char *detail);

struct copy_verify_item {
	const char *path; /* relative to the drive root */
	const struct copy_block *blocks;
	size_t n_blocks;
	int result; /* set: as copier_verify() returns */
};

/*
 * copier_verify() of many files, for the defer_sync batch mode: the device
 * reads of up to 64 small files (of at most one block) are issued together
 * (POSIX_FADV_DONTNEED, then WILLNEED), so they overlap instead of paying the
 * device's latency one file at a time. Larger files are verified one by one.
 * Returns 0 if every item matched, else the first item's error; after a cancel,
 * every item not checked has -ECANCELED.
 */
int copier_verify_batch(struct copier *c, int dirfd, struct copy_verify_item *items, size_t n,
                        const atomic_bool *cancel);

/*
 * Delete the temporary file of dst_path (tmp_name, or the default name) on the
 * drive, e.g. when a checkpoint cannot be used. 0 if it is gone.
 */
int copy_file_remove_partial(int dst_dirfd, const char *dst_path, const char *tmp_name);

/*
 * Have the kernel start reading a staging file into the page cache (opened as
 * copier_copy() opens it: below src_dirfd, no symlinks), so that a later copy
 * of it does not wait for the device. Returns 0 or -errno; nothing is read
 * into our memory.
 */
int copy_prefetch(int src_dirfd, const char *src_path);

/* The default temporary name for dst_path: its last component + COPY_TMP_SUFFIX, cut to fit. */
int copy_tmp_name(const char *dst_path, char buf[static NAME_MAX + 1]);

void copy_result_done(struct copy_result *res);

#endif
