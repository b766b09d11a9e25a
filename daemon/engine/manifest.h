/*
 * DriveManifest.xml writer (format 2014-11-01, drive-format README §1).
 *
 * A streaming writer: blobs go to the file as they are added, so a drive with
 * 1 M blobs never holds them in memory. One writer belongs to one thread (the
 * drive's copy worker). Units are bytes; MD5s are 16 raw bytes. Errors are
 * negative errno values: -EINVAL for input the format cannot carry, -EFBIG
 * for a blob beyond the block limits, I/O errors as the system reports them.
 * The writer never owns dirfd: keep it open until close or abort.
 */
#ifndef SEEDD_MANIFEST_H
#define SEEDD_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#define MANIFEST_VERSION "2014-11-01"
#define MANIFEST_BLOCK_MAX (UINT32_C(4) << 20) /* bytes per block, at most */
#define MANIFEST_BLOCKS_MAX 50000              /* blocks per blob, at most */
#define MANIFEST_BLOCK_ID_LEN 28               /* "MD5/" + 24 base64 characters */

/* ImportDisposition; the documented default is rename (README §1.5). */
enum manifest_disposition {
	MANIFEST_RENAME = 0,
	MANIFEST_NO_OVERWRITE,
	MANIFEST_OVERWRITE,
};

struct manifest_block {
	uint64_t offset;       /* in the file; blocks are contiguous from 0 */
	uint32_t length;       /* 1 .. MANIFEST_BLOCK_MAX */
	unsigned char md5[16]; /* MD5 of bytes [offset, offset + length) */
};

struct manifest_blob {
	const char *blob_path; /* "container/blob name", UTF-8, as lint_blob_path() */
	const char *file_path; /* relative to the drive root, '/'-separated, UTF-8 */
	uint64_t length;       /* file bytes = sum of the block lengths */
	enum manifest_disposition disposition;
	size_t n_blocks; /* 0 only for an empty file (written as an empty BlockList) */
	const struct manifest_block *blocks;
	/*
	 * The blob's properties file (README §5), or NULL for none: relative to
	 * the drive root like file_path, written as <PropertiesPath Hash="...">
	 * after the BlockList, where the grammar puts the per-blob override.
	 */
	const char *properties_path;
	unsigned char properties_hash[16]; /* MD5 of the properties file's bytes */
};

struct manifest_writer;

/*
 * Create (or truncate) tmpname inside dirfd and write the document head:
 * DriveManifest, Drive, DriveId, ClientCreator, BlobList. client_creator is
 * free text; callers pass "seedd " SEEDD_VERSION. drive_id is the serial
 * without spaces. Returns the writer, or NULL with *ret_err set.
 */
struct manifest_writer *manifest_writer_open(int dirfd, const char *tmpname, const char *drive_id,
                                             const char *client_creator, int *ret_err);

/*
 * Append one Blob. The blob and its blocks are checked first (UTF-8 paths
 * without control characters, file_path without a leading '/' or any '\',
 * blocks contiguous from 0 and summing to length); nothing is written for a
 * refused blob and the writer stays usable. -EFBIG: more than
 * MANIFEST_BLOCKS_MAX blocks (the 2014-11-01 format has no way to describe
 * them; keep staged files below 50000 * 4 MiB). After an I/O error only
 * manifest_writer_abort() is left to do.
 */
int manifest_writer_add_blob(struct manifest_writer *w, const struct manifest_blob *b);

/*
 * Finish the document, fsync the file, rename it to final_name inside dirfd
 * (replacing an older one), fsync the directory and put the MD5 of the file's
 * bytes (its manifestHash) into md5_out. Always frees w. On failure md5_out
 * is untouched and the temporary file is removed; only a failed directory
 * fsync leaves the (complete) final file in place. -ENODATA: no blob was
 * added (the grammar needs at least one). The hash is taken from the bytes
 * as written; the caller may re-read the file after a remount to confirm it.
 */
int manifest_writer_close(struct manifest_writer *w, const char *final_name,
                          unsigned char md5_out[16]);

/* Drop the writer and remove the temporary file. Accepts NULL. */
void manifest_writer_abort(struct manifest_writer *w);

/* manifestHash text: 32 upper-case hex digits, as in every official sample. */
void manifest_hash_hex(const unsigned char md5[16], char out[static 33]);

/* Block Id as WAImportExport writes it: "MD5/" + base64 of the raw MD5. */
void manifest_block_id(const unsigned char md5[16], char out[static MANIFEST_BLOCK_ID_LEN + 1]);

/*
 * Properties files [DOC] drive-format/README.md §1.3, §5: a blob imported
 * from its blocks gets a Content-MD5 only from a properties file the
 * manifest names. seedd writes one per distinct content MD5, named after it
 * (MANIFEST_PROPERTIES_NAME_LEN: 32 upper-case hex digits + ".xml"), so
 * blobs of equal content share one file, the name fixes the bytes (a file
 * found on resume is checked by comparing), and no two contents collide.
 * The bytes follow the official sample (examples/properties-sample.xml):
 * the same declaration, <Properties>, four-space indentation, LF endings,
 * and only <Content-MD5> (Base64 of the 16 raw bytes).
 */
#define MANIFEST_PROPERTIES_MAX 160
#define MANIFEST_PROPERTIES_NAME_LEN 36

/* The properties file for content_md5; returns its length (no NUL is counted). */
size_t manifest_properties_bytes(const unsigned char content_md5[16],
                                 char out[static MANIFEST_PROPERTIES_MAX]);

/* Its name: "<HEX-MD5>.xml". */
void manifest_properties_name(const unsigned char content_md5[16],
                              char out[static MANIFEST_PROPERTIES_NAME_LEN + 1]);

/*
 * Make dirfd/<name> hold exactly the properties file of content_md5 and put
 * the MD5 of its bytes (the PropertiesPath Hash) into hash_out. A file that
 * is already there with the right bytes is left alone (returns 0); a missing,
 * short or otherwise different one (a crash mid-write) is rewritten
 * (returns 1). Nothing is synced: the caller syncs the filesystem once
 * before the manifest that names these files is renamed into place.
 */
int manifest_properties_put(int dirfd, const unsigned char content_md5[16],
                            unsigned char hash_out[16]);

#endif
