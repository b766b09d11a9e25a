/*
 * Drives (CONTRACT §5, DESIGN §3a): what AddDrive must know and check about a
 * mounted drive before seedd writes to it.
 *
 * Blocking calls for a worker thread (or the loop, for a quick check); nothing
 * here touches SQLite or libevent, and every function is thread-safe. Errors
 * are negative errno values; where a function takes ret_err, it also sets
 * *ret_err to an xmalloc'd operator message (the DriveRejected reason) and
 * leaves every other ret_* untouched.
 *
 * Layout seedd writes on a drive, all at its root:
 *   .seedd-drive.json   marker: {"job", "uuid", "serial", "created"}
 *   <job>/<rel path>    the job's files, i.e. manifest FilePath "\<job>\<rel>"
 *   <job>/.seedd-tmp/properties/<MD5>.xml
 *                       one properties file (Content-MD5) per distinct content,
 *                       the manifest's PropertiesPath
 *   DriveManifest.xml   written last (temporary name DRIVE_MANIFEST_TMP)
 * Anything else at the root, apart from the system directories Windows and
 * Linux create themselves, is data seedd did not write: the drive is refused.
 */
#ifndef SEEDD_DRIVE_H
#define SEEDD_DRIVE_H

#include <stdbool.h>
#include <stdint.h>

#define DRIVE_MARKER_NAME ".seedd-drive.json"
#define DRIVE_MARKER_TMP ".seedd-drive.json.seedd-tmp"
#define DRIVE_MANIFEST_NAME "DriveManifest.xml"
#define DRIVE_MANIFEST_TMP "DriveManifest.xml.seedd-tmp"
#define DRIVE_MARKER_MAX 4096 /* bytes; a larger marker is not ours */
#define DRIVE_SERIAL_MAX 128  /* characters of a DriveId we accept */
#define DRIVE_UUID_LEN 32     /* hex digits of the marker's uuid */

struct drive_probe {
	char *mount_point;   /* realpath of the path probed */
	bool is_mount_root;  /* mount_point is the root of a mounted filesystem (a bind mount
	                        of one of its subdirectories is not) */
	bool read_only;      /* mounted read-only (ntfs-3g does so for a hibernated volume) */
	char *fs_type;       /* from /proc/self/mountinfo: "fuseblk", "ntfs3", "ext4", "tmpfs" */
	char *source;        /* mount source: "/dev/mapper/bitlk-1", "/dev/sdb1", "tmpfs" */
	bool is_ntfs;        /* ntfs3/ntfs, fuse with an ntfs-3g subtype, or fuse/fuseblk on a
	                        device or regular file whose boot sector says "NTFS    " */
	bool source_is_file; /* the source is a regular file (ntfs-3g on dislocker's
	                        dislocker-file): no disk, no serial */
	char *disk;          /* the whole disk under the mount (dm slaves and partitions
	                        followed), e.g. "/dev/sdb"; NULL if none */
	char *serial;        /* that disk's serial; NULL if none */
	char *bitlocker_device; /* the mounted device is a BITLK dm-crypt mapping (cryptsetup
	                           open --type bitlk): its one slave, the BitLocker volume,
	                           e.g. "/dev/sdb1"; NULL otherwise (dislocker hides it) */
	int64_t total_bytes; /* statvfs f_blocks * f_frsize */
	int64_t free_bytes;  /* statvfs f_bavail * f_frsize */
};

/*
 * Probe the filesystem holding path, which must be a directory. Never fails
 * because of what it finds: a path that is not a mount root, a filesystem
 * without a block device, a device without a serial or an unreadable boot
 * sector just leave the fields false or NULL. Reading the boot sector of a
 * FUSE mount's device needs read access to it (root or group disk).
 * Errors: those of realpath/stat/statvfs (-ENOENT, -EACCES, ...), -ENOTDIR,
 * -ENOENT if the path is not in /proc/self/mountinfo.
 */
int drive_probe(const char *path, struct drive_probe *ret, char **ret_err);

/*
 * The NTFS verdict drive_probe() reaches for a mount, from one line of
 * /proc/self/mountinfo: by the filesystem type, else for "fuse"/"fuseblk"
 * by the boot sector of the source. *ret_source_is_file: the source is a
 * regular file. -EBADMSG for a malformed line.
 */
int drive_mountinfo_ntfs(const char *line, bool *ret_is_ntfs, bool *ret_source_is_file);

/* Free what a probe holds; the struct is zeroed. Accepts a zeroed struct. */
void drive_probe_done(struct drive_probe *p);

/*
 * The device-mapper half of the BitLocker lookup, on the sysfs directory of a
 * block device (e.g. /sys/devices/virtual/block/dm-0): its dm/uuid starts with
 * "CRYPT-BITLK-" (what cryptsetup gives a BITLK mapping) and slaves/ holds
 * exactly one entry. 1 and *ret_name (xmalloc'd kernel name, "sdb1") if so;
 * 0 if it is no BITLK mapping (no dm/uuid, another prefix, no or several
 * slaves); -errno if dm/uuid cannot be read for another reason.
 */
int drive_dm_bitlk_slave(const char *sysdir, char **ret_name);

/* True if serial can be a DriveId: 1-128 printable ASCII, no space at either end. */
bool drive_serial_valid(const char *serial, const char **reason);

/*
 * True if job_name can name seedd's directory on a drive: a valid job name that
 * is a valid NTFS name (lint_blob_name) and none of the reserved root names
 * above (the marker, the manifest, .Trash*), compared case-insensitively as
 * Windows does. *reason, if given, is a static string.
 */
bool drive_job_dir_valid(const char *job_name, const char **reason);

/* "<job>/<rel_path>": where a staged file lives on the drive. xmalloc'd. */
char *drive_file_path(const char *job_name, const char *rel_path);

/*
 * Is there data at the drive's root that seedd did not write for this job?
 * Allowed: "System Volume Information", "$RECYCLE.BIN", "lost+found", ".Trash"
 * and ".Trash-<uid>" directories; the marker when it names this job (its
 * temporary file when there is no marker or ours); and, only when the marker
 * names this job, the directory <job> and the manifest and its temporary file.
 * drive_root_fd is a directory fd opened for reading; it is not moved.
 * Returns 0 if clean or ours; -EEXIST naming the first foreign entry by byte
 * order (and how many more there are); -EBUSY if the marker names another job
 * (the message names it); -EINVAL for a job name drive_job_dir_valid refuses.
 */
int drive_check_foreign(int drive_root_fd, const char *job_name, char **ret_err);

/*
 * Write the marker atomically: DRIVE_MARKER_TMP, fsync, rename, fsync the
 * root. uuid is new each time: DRIVE_UUID_LEN hex digits from getrandom(),
 * returned in uuid_out. serial may be NULL. -EBUSY if a marker naming another
 * job is there (never overwritten); -EINVAL for a job name drive_job_dir_valid
 * refuses; else the I/O error. On error the temporary file is removed.
 */
int drive_marker_write(int drive_root_fd, const char *job_name, const char *serial,
                       char uuid_out[static DRIVE_UUID_LEN + 1]);

/*
 * Read the marker; *ret_job and *ret_uuid are xmalloc'd (either may be NULL if
 * not wanted). -ENOENT: no marker; -EBADMSG: not a regular file, larger than
 * DRIVE_MARKER_MAX, not JSON, or without a valid job name and uuid.
 */
int drive_marker_read(int drive_root_fd, char **ret_job, char **ret_uuid);

/*
 * Bytes this job's files already take on the drive: everything under <job>
 * (never following symlinks, at most 300 levels deep) plus the manifest and its
 * temporary file, each counted as max(st_size, st_blocks * 512). 0 if none.
 */
int drive_job_usage(int drive_root_fd, const char *job_name, int64_t *ret_bytes);

/* What AddDrive was asked for. */
struct drive_attach_args {
	const char *job_name;
	const char *serial;   /* --serial: overrides the probed one; NULL: probe */
	int64_t capacity;     /* --capacity in bytes; 0: none */
	bool require_ntfs;    /* RequireNTFS= */
	bool allow_directory; /* accept a directory that is not a mount root (tests), */
	                      /* only with require_ntfs false */
	bool require_bitlocker;       /* RequireBitLocker= */
	const char *bitlocker_device; /* --bitlocker-device: where dislocker hides it; NULL: probe */
	const char *bitlocker_key;    /* the recovery password to check; NULL: none given yet */
	const char *bitlocker_key_file; /* where seedctl read it, for messages; NULL: unknown */
};

/* What AddDrive records. */
struct drive_attach {
	struct drive_probe probe;
	char *serial;       /* the DriveId sent to Azure */
	int64_t capacity;   /* bytes seedd may use for this job, used_bytes included */
	int64_t used_bytes; /* this job's files already on the drive */
	/* The BitLocker volume checked (all NULL when the check was skipped). */
	char *bitlocker_device, *bitlocker_guid, *bitlocker_cipher;
	char *bitlocker_note; /* for the job log: why the check was skipped; NULL if it ran */
};

/*
 * The decision, without I/O. Refuses (-EINVAL) a path that is not a mount root
 * unless allow_directory, a read-only mount (-EROFS), a non-NTFS filesystem if
 * require_ntfs (-EMEDIUMTYPE), no serial at all (-ENXIO, "cannot probe the disk
 * serial of PATH; give --serial"), a serial drive_serial_valid refuses and a
 * negative capacity (-EINVAL). Capacity: used_bytes plus the free space, capped
 * by --capacity if given; never below used_bytes, so a drive whose files are
 * already there stays attachable (with no room left). *ret_serial is xmalloc'd.
 */
int drive_decide(const struct drive_probe *p, const struct drive_attach_args *a, int64_t used_bytes,
                 char **ret_serial, int64_t *ret_capacity, char **ret_err);

/*
 * The BitLocker part of AddDrive (CONTRACT §5, DESIGN §3a), after the probe:
 * the volume is --bitlocker-device, else the one found through device-mapper.
 * Skipped (a note, no refusal) under RequireBitLocker=no unless a device is
 * given, and under RequireNTFS=no when none is given or found (directories in
 * tests). Otherwise refuses (-EMEDIUMTYPE) a drive with no BitLocker volume
 * found, or one that is not BITLK, and (-EPERM) a key that does not open it,
 * naming the key file and the device. Without a key the volume is only loaded.
 * Fills at->bitlocker_*. Blocking: libcryptsetup, ~0.3 s with a key.
 */
int drive_bitlocker_check(const struct drive_attach_args *a, struct drive_attach *at,
                          char **ret_err);

/*
 * Everything AddDrive checks, in order: probe, drive_check_foreign, job usage,
 * drive_decide, drive_bitlocker_check. Writes nothing: call
 * drive_marker_write() once the drive is recorded. Errors as above, always
 * with *ret_err set.
 */
int drive_attach_check(const char *path, const struct drive_attach_args *a,
                       struct drive_attach *ret, char **ret_err);

/*
 * What to tell the operator after a write to the drive failed with r: "" or
 * text that starts with "; ". EFAULT: dislocker refuses any write (buffered
 * or O_DIRECT) that touches BitLocker's metadata blocks inside the volume;
 * Windows keeps them out of its NTFS (files in System Volume Information),
 * an NTFS made otherwise (mkntfs inside dislocker-file) may cover them.
 * EIO: the drive's own error. ENODEV, ENOTCONN (a FUSE mount whose process
 * ended), ENXIO: the drive is gone. Both say how to go on.
 */
const char *drive_write_hint(int r);

/* Free what an attach holds; the struct is zeroed. */
void drive_attach_done(struct drive_attach *a);

#endif
