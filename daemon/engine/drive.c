/*
 * Drives (drive.h): probing a mounted drive (mountinfo, statvfs, the NTFS boot
 * sector, the disk serial through sd-device), the foreign-data check at its
 * root, seedd's marker file and the AddDrive decision.
 *
 * Blocking calls for a worker thread (or a short call on the loop); no state,
 * no SQLite, no libevent. Messages for operators are built here because only
 * this module knows what it found; callers pass them on as DriveRejected.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <systemd/sd-device.h>
#include <time.h>
#include <unistd.h>

#include "bitlocker.h"
#include "copy.h"
#include "drive.h"
#include "lint.h"
#include "names.h"
#include "util.h"

#define DM_DEPTH_MAX 16     /* dm/partition hops from the mounted device to its disk */
#define USAGE_DEPTH_MAX 300 /* directory levels below <job>: 254 blob segments and slack */
#define NTFS_OEM_ID "NTFS    "
#define DM_UUID_BITLK "CRYPT-BITLK-" /* cryptsetup's dm uuid prefix for a BITLK mapping */

/* One line of /proc/self/mountinfo (proc(5)). */
struct mount_entry {
	uint64_t mnt_id;
	dev_t dev;
	bool root_is_fs_root; /* the mount shows the filesystem's root, not a subdirectory */
	char *mount_point, *fs_type, *source;
};

static void
mount_entry_done(struct mount_entry *m)
{
	free(m->mount_point);
	free(m->fs_type);
	free(m->source);
	*m = (struct mount_entry){0};
}

/* Undo mountinfo's octal escapes ("\040" for a space) in place. */
static void
unescape_octal(char *s)
{
	char *w = s;

	for (; *s != '\0'; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else
			*w++ = *s;
	}
	*w = '\0';
}

/* Split one mountinfo line into m (strings copied). -EBADMSG if malformed. */
static int
parse_mountinfo_line(char *line, struct mount_entry *m)
{
	char *field[6], *save = NULL, *tok, *fs_type, *source;
	unsigned maj, min;
	unsigned long long id;
	size_t n = 0;

	for (tok = strtok_r(line, " \n", &save); tok != NULL && n < 6;
	     tok = strtok_r(NULL, " \n", &save))
		field[n++] = tok;
	if (n < 6)
		return -EBADMSG;
	/* Optional fields run up to a lone "-"; the filesystem type and source follow. */
	while (tok != NULL && strcmp(tok, "-") != 0)
		tok = strtok_r(NULL, " \n", &save);
	if (tok == NULL || (fs_type = strtok_r(NULL, " \n", &save)) == NULL ||
	    (source = strtok_r(NULL, " \n", &save)) == NULL)
		return -EBADMSG;
	if (sscanf(field[0], "%llu", &id) != 1 || sscanf(field[2], "%u:%u", &maj, &min) != 2)
		return -EBADMSG;
	unescape_octal(field[4]);
	unescape_octal(fs_type);
	unescape_octal(source);
	*m = (struct mount_entry){
	    .mnt_id = id,
	    .dev = makedev(maj, min),
	    .root_is_fs_root = strcmp(field[3], "/") == 0,
	    .mount_point = xstrdup(field[4]),
	    .fs_type = xstrdup(fs_type),
	    .source = xstrdup(source),
	};
	return 0;
}

/* True if mount point mp (at least min_len long) contains path; both absolute and canonical. */
static bool
path_under(const char *mp, const char *path, size_t min_len)
{
	size_t n = strlen(mp);

	if (n < min_len)
		return false;
	if (strcmp(mp, "/") == 0)
		return true;
	return strncmp(mp, path, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/*
 * Find the mount holding path: the entry with mount id mnt_id when the kernel
 * gave one (statx STATX_MNT_ID), else the longest mount point above path, the
 * later line winning (an overmount is listed after what it covers).
 */
static int
mountinfo_find(const char *path, uint64_t mnt_id, struct mount_entry *ret)
{
	struct mount_entry best = {0}, m;
	_cleanup_free_ char *line = NULL;
	size_t cap = 0, best_len = 0;
	FILE *f;
	bool found = false;

	if ((f = fopen("/proc/self/mountinfo", "re")) == NULL)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		if (parse_mountinfo_line(line, &m) < 0)
			continue;
		if (mnt_id != 0 ? m.mnt_id == mnt_id : path_under(m.mount_point, path, best_len)) {
			mount_entry_done(&best);
			best_len = strlen(m.mount_point);
			best = m;
			found = true;
		} else
			mount_entry_done(&m);
	}
	fclose(f);
	if (!found)
		return -ENOENT;
	*ret = best;
	return 0;
}

/* The statx facts the probe wants; a kernel without them leaves them unknown. */
static int
stat_mount(const char *path, uint64_t *ret_mnt_id, int *ret_is_root)
{
	struct statx stx;

	if (statx(AT_FDCWD, path, 0, STATX_TYPE | STATX_MNT_ID, &stx) < 0)
		return -errno;
	if (!S_ISDIR(stx.stx_mode))
		return -ENOTDIR;
	*ret_mnt_id = (stx.stx_mask & STATX_MNT_ID) ? stx.stx_mnt_id : 0;
	*ret_is_root = (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
	                   ? !!(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT)
	                   : -1;
	return 0;
}

/*
 * The block device under a mount: the mount's own device number when it is a
 * real block device (ext4, fuseblk, ntfs3), else the source if that names a
 * block device node (FUSE and btrfs have anonymous device numbers).
 */
static int
mount_block_device(const struct mount_entry *m, sd_device **ret)
{
	struct stat st;

	if (major(m->dev) != 0 && sd_device_new_from_devnum(ret, 'b', m->dev) >= 0)
		return 0;
	if (m->source[0] == '/' && stat(m->source, &st) == 0 && S_ISBLK(st.st_mode))
		return sd_device_new_from_devnum(ret, 'b', st.st_rdev);
	return -ENODEV;
}

/* True if the first sector of the device (or image file) at node carries NTFS's OEM id. */
static bool
boot_sector_is_ntfs(const char *node)
{
	_cleanup_close_ int fd = -1;
	unsigned char sector[512];

	if ((fd = open(node, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0)
		return false;
	if (pread(fd, sector, sizeof(sector), 0) != (ssize_t)sizeof(sector))
		return false;
	return memcmp(sector + 3, NTFS_OEM_ID, 8) == 0;
}

static bool
fs_type_is_ntfs(const char *fs_type)
{
	const char *subtype;

	if (strcmp(fs_type, "ntfs3") == 0 || strcmp(fs_type, "ntfs") == 0)
		return true;
	/* "fuseblk.ntfs-3g": FUSE shows a subtype when the driver sets one. */
	if (strncmp(fs_type, "fuse", 4) != 0 || (subtype = strchr(fs_type, '.')) == NULL)
		return false;
	return strcmp(subtype, ".ntfs-3g") == 0 || strcmp(subtype, ".lowntfs-3g") == 0;
}

/*
 * NTFS by the type, else by the boot sector at node (the source's device or
 * regular file; may be NULL) for a FUSE mount without a subtype: ntfs-3g
 * shows "fuseblk" on a block device (a disk, cryptsetup's dm-crypt device)
 * and "fuse" on a regular file (dislocker's dislocker-file, an image).
 */
static bool
mount_is_ntfs(const struct mount_entry *m, const char *node)
{
	if (fs_type_is_ntfs(m->fs_type))
		return true;
	if (strcmp(m->fs_type, "fuse") != 0 && strcmp(m->fs_type, "fuseblk") != 0)
		return false;
	return node != NULL && boot_sector_is_ntfs(node);
}

/* True if the mount's source is a regular file: FUSE on a file, no disk under it. */
static bool
source_is_file(const struct mount_entry *m)
{
	struct stat st;

	return m->source[0] == '/' && stat(m->source, &st) == 0 && S_ISREG(st.st_mode);
}

int
drive_mountinfo_ntfs(const char *line, bool *ret_is_ntfs, bool *ret_source_is_file)
{
	_cleanup_free_ char *copy = xstrdup(line);
	struct mount_entry m = {0};
	struct stat st;
	const char *node = NULL;
	int r;

	if ((r = parse_mountinfo_line(copy, &m)) < 0)
		return r;
	if (m.source[0] == '/' && stat(m.source, &st) == 0 &&
	    (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
		node = m.source;
	*ret_is_ntfs = mount_is_ntfs(&m, node);
	*ret_source_is_file = source_is_file(&m);
	mount_entry_done(&m);
	return 0;
}

/*
 * The name of the one entry in the sysfs directory's slaves/: 1 and *ret set
 * if exactly one, 0 if none (a disk or partition), -ENOTUNIQ if several (a
 * dm device over several disks has no single serial).
 */
static int
sysfs_only_slave(const char *sysdir, char **ret)
{
	_cleanup_free_ char *dir = xprintf("%s/slaves", sysdir), *name = NULL;
	struct dirent *de;
	DIR *d;
	int n = 0;

	if ((d = opendir(dir)) == NULL)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n++ == 0)
			name = xstrdup(de->d_name);
	}
	closedir(d);
	if (n > 1)
		return -ENOTUNIQ;
	if (n == 1)
		*ret = TAKE_PTR(name);
	return n;
}

static int
only_slave(sd_device *dev, char **ret)
{
	const char *syspath;

	if (sd_device_get_syspath(dev, &syspath) < 0)
		return -ENODEV;
	return sysfs_only_slave(syspath, ret);
}

/* Walk from a mounted block device to its whole disk: dm slaves, then partition -> disk. */
static int
walk_to_disk(sd_device *dev, sd_device **ret)
{
	sd_device *cur = sd_device_ref(dev), *next;
	const char *devtype;
	int r = 0;

	for (int hop = 0; hop < DM_DEPTH_MAX; hop++) {
		_cleanup_free_ char *slave = NULL;

		if (sd_device_get_devtype(cur, &devtype) >= 0 &&
		    strcmp(devtype, "partition") == 0) {
			r = sd_device_get_parent_with_subsystem_devtype(cur, "block", "disk",
			                                                &next);
			if (r < 0)
				break;
			next = sd_device_ref(next);
		} else if ((r = only_slave(cur, &slave)) == 0) {
			*ret = cur;
			return 0;
		} else if (r < 0 ||
		           (r = sd_device_new_from_subsystem_sysname(&next, "block", slave)) < 0)
			break;
		sd_device_unref(cur);
		cur = next;
	}
	sd_device_unref(cur);
	return r < 0 ? r : -ELOOP;
}

/* Trim ASCII whitespace at both ends; NULL if nothing is left or it is no DriveId. */
static char *
serial_clean(const char *s, size_t len)
{
	_cleanup_free_ char *out = NULL;

	while (len > 0 && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len > 0 && (isspace((unsigned char)s[len - 1]) || s[len - 1] == '\0'))
		len--;
	if (len == 0)
		return NULL;
	out = xstrndup(s, len);
	return drive_serial_valid(out, NULL) ? TAKE_PTR(out) : NULL;
}

/* SCSI VPD page 0x80 (unit serial number), which libata fills with the ATA serial. */
static char *
serial_from_vpd(sd_device *disk)
{
	_cleanup_free_ char *file = NULL;
	_cleanup_close_ int fd = -1;
	unsigned char buf[256];
	const char *syspath;
	ssize_t n;
	size_t len;

	if (sd_device_get_syspath(disk, &syspath) < 0)
		return NULL;
	file = xprintf("%s/device/vpd_pg80", syspath);
	if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0 || (n = read(fd, buf, sizeof(buf))) < 4 ||
	    buf[1] != 0x80)
		return NULL;
	len = (size_t)buf[2] << 8 | buf[3];
	if (len > (size_t)n - 4)
		len = (size_t)n - 4;
	return serial_clean((const char *)buf + 4, len);
}

/*
 * The disk's serial: udev's ID_SERIAL_SHORT, else ID_SERIAL; without a udev
 * database (containers, early boot) the kernel's own attributes: "serial"
 * (virtio), "device/serial" (NVMe, USB), the VPD page (SCSI/SATA).
 */
static char *
disk_serial(sd_device *disk)
{
	static const char *const props[] = {"ID_SERIAL_SHORT", "ID_SERIAL"};
	static const char *const attrs[] = {"serial", "device/serial"};
	const char *v;
	char *s;

	for (size_t i = 0; i < ELEMENTSOF(props); i++)
		if (sd_device_get_property_value(disk, props[i], &v) >= 0 &&
		    (s = serial_clean(v, strlen(v))) != NULL)
			return s;
	for (size_t i = 0; i < ELEMENTSOF(attrs); i++)
		if (sd_device_get_sysattr_value(disk, attrs[i], &v) >= 0 &&
		    (s = serial_clean(v, strlen(v))) != NULL)
			return s;
	return serial_from_vpd(disk);
}

int
drive_dm_bitlk_slave(const char *sysdir, char **ret_name)
{
	_cleanup_free_ char *file = xprintf("%s/dm/uuid", sysdir), *name = NULL;
	char uuid[256];
	ssize_t len;
	int fd;

	if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
	len = read(fd, uuid, sizeof(uuid) - 1);
	close(fd);
	if (len < 0)
		return -errno;
	uuid[len] = '\0';
	if (strncmp(uuid, DM_UUID_BITLK, strlen(DM_UUID_BITLK)) != 0)
		return 0;
	if (sysfs_only_slave(sysdir, &name) != 1)
		return 0;
	*ret_name = TAKE_PTR(name);
	return 1;
}

/* The BitLocker volume under a cryptsetup BITLK mapping: "/dev/<slave>", or NULL. */
static char *
bitlk_backing(sd_device *dev)
{
	_cleanup_(sd_device_unrefp) sd_device *slave = NULL;
	_cleanup_free_ char *name = NULL;
	const char *syspath, *node;

	if (sd_device_get_syspath(dev, &syspath) < 0 || drive_dm_bitlk_slave(syspath, &name) <= 0)
		return NULL;
	if (sd_device_new_from_subsystem_sysname(&slave, "block", name) >= 0 &&
	    sd_device_get_devname(slave, &node) >= 0)
		return xstrdup(node);
	return xprintf("/dev/%s", name);
}

/* Fill p's device facts (is_ntfs, serial) from the mount's block device, if any. */
static void
probe_device(const struct mount_entry *m, struct drive_probe *p)
{
	_cleanup_(sd_device_unrefp) sd_device *dev = NULL, *disk = NULL;
	const char *node = NULL;

	p->source_is_file = source_is_file(m);
	if (mount_block_device(m, &dev) >= 0)
		(void)sd_device_get_devname(dev, &node);
	else if (p->source_is_file)
		node = m->source; /* ntfs-3g on dislocker's dislocker-file or an image */
	p->is_ntfs = mount_is_ntfs(m, node);
	if (dev != NULL)
		p->bitlocker_device = bitlk_backing(dev);
	if (dev == NULL || walk_to_disk(dev, &disk) < 0)
		return;
	node = NULL;
	if (sd_device_get_devname(disk, &node) >= 0)
		p->disk = xstrdup(node);
	p->serial = disk_serial(disk);
}

int
drive_probe(const char *path, struct drive_probe *ret, char **ret_err)
{
	_cleanup_free_ char *real = NULL;
	struct mount_entry m = {0};
	struct drive_probe p = {0};
	struct statvfs sv;
	uint64_t mnt_id = 0;
	int is_root = 0, r;

	if ((real = realpath(path, NULL)) == NULL) {
		r = -errno;
		xasprintf(ret_err, "cannot resolve %s: %s", path, strerror(-r));
		return r;
	}
	if ((r = stat_mount(real, &mnt_id, &is_root)) >= 0 &&
	    (r = mountinfo_find(real, mnt_id, &m)) == -ENOENT && mnt_id != 0)
		r = mountinfo_find(real, 0, &m);
	if (r < 0) {
		xasprintf(ret_err, "cannot probe %s: %s", real,
		          r == -ENOENT ? "not found in /proc/self/mountinfo" : strerror(-r));
		return r;
	}
	if (statvfs(real, &sv) < 0) {
		r = -errno;
		mount_entry_done(&m);
		xasprintf(ret_err, "cannot statvfs %s: %s", real, strerror(-r));
		return r;
	}
	/* A bind mount of a subdirectory is a mount root, but not the volume's root. */
	p.is_mount_root =
	    (is_root >= 0 ? is_root : strcmp(m.mount_point, real) == 0) && m.root_is_fs_root;
	p.read_only = (sv.f_flag & ST_RDONLY) != 0;
	p.total_bytes = (int64_t)sv.f_blocks * (int64_t)sv.f_frsize;
	p.free_bytes = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
	probe_device(&m, &p);
	p.mount_point = TAKE_PTR(real);
	p.fs_type = TAKE_PTR(m.fs_type);
	p.source = TAKE_PTR(m.source);
	mount_entry_done(&m);
	*ret = p;
	return 0;
}

void
drive_probe_done(struct drive_probe *p)
{
	free(p->mount_point);
	free(p->fs_type);
	free(p->source);
	free(p->disk);
	free(p->bitlocker_device);
	free(p->serial);
	*p = (struct drive_probe){0};
}

bool
drive_serial_valid(const char *serial, const char **reason)
{
	const char *why = NULL;
	size_t n = serial != NULL ? strlen(serial) : 0;

	if (n == 0)
		why = "serial is empty";
	else if (n > DRIVE_SERIAL_MAX)
		why = "serial is longer than 128 characters";
	else if (serial[0] == ' ' || serial[n - 1] == ' ')
		why = "serial starts or ends with a space";
	for (size_t i = 0; why == NULL && i < n; i++)
		if (serial[i] < 0x20 || serial[i] > 0x7e)
			why = "serial holds a character that is not printable ASCII";
	if (reason != NULL && why != NULL)
		*reason = why;
	return why == NULL;
}

/* ".Trash" or ".Trash-<digits>" (the freedesktop.org trash of a volume). */
static bool
is_trash_name(const char *name)
{
	if (strncasecmp(name, ".Trash", 6) != 0)
		return false;
	if (name[6] == '\0')
		return true;
	if (name[6] != '-' || name[7] == '\0')
		return false;
	for (const char *c = name + 7; *c != '\0'; c++)
		if (!isdigit((unsigned char)*c))
			return false;
	return true;
}

bool
drive_job_dir_valid(const char *job_name, const char **reason)
{
	static const char *const reserved[] = {
	    DRIVE_MARKER_NAME,
	    DRIVE_MARKER_TMP,
	    DRIVE_MANIFEST_NAME,
	    DRIVE_MANIFEST_TMP,
	};
	const char *why = NULL;

	if (!job_name_valid(job_name))
		why = "not a valid job name";
	else if (!lint_blob_name(job_name, strlen(job_name), &why))
		;
	else if (is_trash_name(job_name))
		why = "the name of a trash directory";
	for (size_t i = 0; why == NULL && i < ELEMENTSOF(reserved); i++)
		if (strcasecmp(job_name, reserved[i]) == 0)
			why = "the name of a file seedd keeps at the drive root";
	if (reason != NULL && why != NULL)
		*reason = why;
	return why == NULL;
}

char *
drive_file_path(const char *job_name, const char *rel_path)
{
	return xprintf("%s/%s", job_name, rel_path);
}

/* name with control bytes, quotes and (in invalid UTF-8) high bytes as \xNN. */
static char *
quote_name(const char *name)
{
	bool utf8 = utf8_valid(name, strlen(name));
	char *out = xmalloc(strlen(name) * 4 + 1), *w = out;

	for (const unsigned char *c = (const unsigned char *)name; *c != '\0'; c++) {
		if (*c < 0x20 || *c == 0x7f || *c == '"' || *c == '\\' || (*c >= 0x80 && !utf8))
			w += sprintf(w, "\\x%02x", *c);
		else
			*w++ = (char)*c;
	}
	*w = '\0';
	return out;
}

/* The file type of name in dirfd without following a symlink, or 0. */
static mode_t
entry_type(int dirfd, const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return st.st_mode & S_IFMT;
}

/* True if name at the root is allowed; ours: the marker names this job (else there is none). */
static bool
entry_allowed(int dirfd, const char *name, const char *job_name, bool ours)
{
	static const char *const system_dirs[] = {"System Volume Information", "$RECYCLE.BIN",
	                                          "lost+found"};
	mode_t type = entry_type(dirfd, name);

	for (size_t i = 0; i < ELEMENTSOF(system_dirs); i++)
		if (strcasecmp(name, system_dirs[i]) == 0)
			return type == S_IFDIR;
	if (is_trash_name(name))
		return type == S_IFDIR;
	if (strcmp(name, DRIVE_MARKER_NAME) == 0)
		return ours;
	if (strcmp(name, DRIVE_MARKER_TMP) == 0 || strcmp(name, COPY_PROBE_NAME) == 0)
		return type == S_IFREG;
	if (strcmp(name, DRIVE_MANIFEST_NAME) == 0 || strcmp(name, DRIVE_MANIFEST_TMP) == 0)
		return type == S_IFREG && ours;
	if (strcmp(name, job_name) == 0)
		return type == S_IFDIR && ours;
	return false;
}

/* The marker's verdict: 1 if it names this job, 0 if there is none, else an error and a message. */
static int
check_marker(int root, const char *job_name, char **ret_err)
{
	_cleanup_free_ char *job = NULL;
	int r;

	r = drive_marker_read(root, &job, NULL);
	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		xasprintf(ret_err, "the drive's %s is not a seedd marker: %s", DRIVE_MARKER_NAME,
		          strerror(-r));
		return -EEXIST;
	}
	if (strcmp(job, job_name) != 0) {
		xasprintf(ret_err, "the drive belongs to job %s (see its %s)", job,
		          DRIVE_MARKER_NAME);
		return -EBUSY;
	}
	return 1;
}

int
drive_check_foreign(int drive_root_fd, const char *job_name, char **ret_err)
{
	_cleanup_free_ char *first = NULL, *quoted = NULL;
	const char *why;
	struct dirent *de;
	size_t n = 0;
	bool ours;
	DIR *d;
	int fd, r;

	if (!drive_job_dir_valid(job_name, &why)) {
		xasprintf(ret_err, "job name %s cannot name a directory on the drive: %s", job_name,
		          why);
		return -EINVAL;
	}
	if ((r = check_marker(drive_root_fd, job_name, ret_err)) < 0)
		return r;
	ours = r > 0;
	if ((fd = openat(drive_root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (d = fdopendir(fd)) == NULL) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		xasprintf(ret_err, "cannot list the drive's root: %s", strerror(-r));
		return r;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    entry_allowed(drive_root_fd, de->d_name, job_name, ours))
			continue;
		if (n++ == 0 || strcmp(de->d_name, first) < 0) {
			free(first);
			first = xstrdup(de->d_name);
		}
	}
	closedir(d);
	if (n == 0)
		return 0;
	quoted = quote_name(first);
	if (n == 1)
		xasprintf(ret_err, "the drive holds data seedd did not write: \"%s\"", quoted);
	else
		xasprintf(ret_err, "the drive holds data seedd did not write: \"%s\" and %zu more",
		          quoted, n - 1);
	return -EEXIST;
}

static int
write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
random_uuid(char out[static DRIVE_UUID_LEN + 1])
{
	unsigned char raw[DRIVE_UUID_LEN / 2];
	size_t got = 0;

	while (got < sizeof(raw)) {
		ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		sprintf(out + 2 * i, "%02x", raw[i]);
	return 0;
}

/* The marker document; xmalloc'd. */
static char *
marker_json(const char *job_name, const char *uuid, const char *serial)
{
	char created[32], *text;
	json_t *o;

	format_iso8601(time(NULL), created);
	o = json_pack("{s:s, s:s, s:s?, s:s}", "job", job_name, "uuid", uuid, "serial", serial,
	              "created", created);
	if (o == NULL || (text = json_dumps(o, JSON_INDENT(2))) == NULL)
		fatalx("drive: cannot build the marker");
	json_decref(o);
	return text;
}

/* Write text to DRIVE_MARKER_TMP, fsync, rename over the marker, fsync the root. */
static int
marker_replace(int root, const char *text)
{
	_cleanup_close_ int fd = -1;
	int r;

	fd = openat(root, DRIVE_MARKER_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	            0644);
	if (fd < 0)
		return -errno;
	if ((r = write_all(fd, text, strlen(text))) < 0 || (r = write_all(fd, "\n", 1)) < 0)
		goto fail;
	if (fsync(fd) < 0 || close(TAKE_FD(fd)) < 0 ||
	    renameat(root, DRIVE_MARKER_TMP, root, DRIVE_MARKER_NAME) < 0) {
		r = -errno;
		goto fail;
	}
	return fsync(root) < 0 ? -errno : 0;
fail:
	(void)unlinkat(root, DRIVE_MARKER_TMP, 0);
	return r;
}

int
drive_marker_write(int drive_root_fd, const char *job_name, const char *serial,
                   char uuid_out[static DRIVE_UUID_LEN + 1])
{
	_cleanup_free_ char *job = NULL, *text = NULL;
	char uuid[DRIVE_UUID_LEN + 1];
	int r;

	if (!drive_job_dir_valid(job_name, NULL))
		return -EINVAL;
	r = drive_marker_read(drive_root_fd, &job, NULL);
	if (r >= 0 && strcmp(job, job_name) != 0)
		return -EBUSY;
	if ((r = random_uuid(uuid)) < 0)
		return r;
	text = marker_json(job_name, uuid, serial);
	if ((r = marker_replace(drive_root_fd, text)) < 0)
		return r;
	memcpy(uuid_out, uuid, sizeof(uuid));
	return 0;
}

static bool
uuid_valid(const char *s)
{
	if (strlen(s) != DRIVE_UUID_LEN)
		return false;
	for (; *s != '\0'; s++)
		if (!isxdigit((unsigned char)*s))
			return false;
	return true;
}

int
drive_marker_read(int drive_root_fd, char **ret_job, char **ret_uuid)
{
	_cleanup_close_ int fd = -1;
	char buf[DRIVE_MARKER_MAX];
	const char *job, *uuid;
	struct stat st;
	ssize_t n;
	json_t *o;
	int r = -EBADMSG;

	fd = openat(drive_root_fd, DRIVE_MARKER_NAME,
	            O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return errno == ELOOP ? -EBADMSG : -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_size > DRIVE_MARKER_MAX)
		return -EBADMSG;
	if ((n = pread(fd, buf, sizeof(buf), 0)) < 0)
		return -errno;
	if ((o = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		return -EBADMSG;
	if (json_unpack(o, "{s:s, s:s}", "job", &job, "uuid", &uuid) == 0 && job_name_valid(job) &&
	    uuid_valid(uuid)) {
		if (ret_job != NULL)
			*ret_job = xstrdup(job);
		if (ret_uuid != NULL)
			*ret_uuid = xstrdup(uuid);
		r = 0;
	}
	json_decref(o);
	return r;
}

/* Bytes a file takes: its size or its allocation, whichever is larger. */
static int64_t
st_bytes(const struct stat *st)
{
	int64_t alloc = (int64_t)st->st_blocks * 512;

	return alloc > st->st_size ? alloc : st->st_size;
}

/* Sum st_bytes over everything below the directory fd (which this closes). */
static int
usage_walk(int fd, int depth, int64_t *sum)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int r = 0;

	if (depth > USAGE_DEPTH_MAX) {
		close(fd);
		return -ELOOP;
	}
	if ((d = fdopendir(fd)) == NULL) {
		r = -errno;
		close(fd);
		return r;
	}
	while (r == 0 && (de = readdir(d)) != NULL) {
		int sub;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		*sum += st_bytes(&st);
		if (!S_ISDIR(st.st_mode))
			continue;
		sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		r = sub < 0 ? -errno : usage_walk(sub, depth + 1, sum);
	}
	closedir(d);
	return r;
}

int
drive_job_usage(int drive_root_fd, const char *job_name, int64_t *ret_bytes)
{
	static const char *const files[] = {DRIVE_MANIFEST_NAME, DRIVE_MANIFEST_TMP};
	struct stat st;
	int64_t sum = 0;
	int fd, r;

	if (!drive_job_dir_valid(job_name, NULL))
		return -EINVAL;
	for (size_t i = 0; i < ELEMENTSOF(files); i++)
		if (fstatat(drive_root_fd, files[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode))
			sum += st_bytes(&st);
	fd = openat(drive_root_fd, job_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT)
		return -errno;
	if (fd >= 0) {
		if (fstat(fd, &st) == 0)
			sum += st_bytes(&st);
		if ((r = usage_walk(fd, 0, &sum)) < 0)
			return r;
	}
	*ret_bytes = sum;
	return 0;
}

/* Which serial goes to Azure: --serial, else the probed one. */
static int
decide_serial(const struct drive_probe *p, const struct drive_attach_args *a, char **ret,
              char **ret_err)
{
	const char *serial = a->serial != NULL ? a->serial : p->serial, *why;

	if (serial == NULL && p->source_is_file) {
		/* dislocker's dislocker-file, an image: the disk below is not to be seen. */
		xasprintf(ret_err,
		          "%s is mounted from the file %s, not from a disk, so its serial cannot be "
		          "probed; give --serial with the serial of the disk that ships",
		          p->mount_point, p->source);
		return -ENXIO;
	}
	if (serial == NULL) {
		xasprintf(ret_err, "cannot probe the disk serial of %s; give --serial",
		          p->mount_point);
		return -ENXIO;
	}
	if (!drive_serial_valid(serial, &why)) {
		xasprintf(ret_err, "%s serial of %s is not usable as a DriveId: %s",
		          a->serial != NULL ? "the given" : "the probed", p->mount_point, why);
		return -EINVAL;
	}
	*ret = xstrdup(serial);
	return 0;
}

/* The refusals that need only the probe: not a mount root, read-only, not NTFS. */
static int
check_probe(const struct drive_probe *p, const struct drive_attach_args *a, char **ret_err)
{
	if (!p->is_mount_root && !a->allow_directory) {
		xasprintf(ret_err, "%s is not the root of a mounted filesystem", p->mount_point);
		return -EINVAL;
	}
	if (p->read_only) {
		xasprintf(ret_err, "%s is mounted read-only (a hibernated or dirty NTFS volume?)",
		          p->mount_point);
		return -EROFS;
	}
	if (a->require_ntfs && !p->is_ntfs) {
		xasprintf(ret_err, "%s is not NTFS but %s (RequireNTFS=yes)", p->mount_point,
		          p->fs_type);
		return -EMEDIUMTYPE;
	}
	/*
	 * A directory that is not a volume's root is a test drive: --serial
	 * (allow_directory) admits it only with RequireNTFS=no, else a plain
	 * directory on an NTFS volume would pass for a drive (issue 11).
	 */
	if (!p->is_mount_root && a->require_ntfs) {
		xasprintf(ret_err,
		          "%s is not the root of a mounted filesystem (a directory is a drive only "
		          "with RequireNTFS=no, for tests)",
		          p->mount_point);
		return -EINVAL;
	}
	return 0;
}

int
drive_decide(const struct drive_probe *p, const struct drive_attach_args *a, int64_t used_bytes,
             char **ret_serial, int64_t *ret_capacity, char **ret_err)
{
	int64_t cap;
	int r;

	if ((r = check_probe(p, a, ret_err)) < 0)
		return r;
	if (a->capacity < 0 || used_bytes < 0) {
		xasprintf(ret_err, "capacity must not be negative");
		return -EINVAL;
	}
	if ((r = decide_serial(p, a, ret_serial, ret_err)) < 0)
		return r;
	cap = p->free_bytes > INT64_MAX - used_bytes ? INT64_MAX : p->free_bytes + used_bytes;
	if (a->capacity > 0 && a->capacity < cap)
		cap = a->capacity;
	*ret_capacity = cap > used_bytes ? cap : used_bytes;
	return 0;
}

/* drive_check_foreign and drive_job_usage on the probed mount point. */
static int
check_root(const struct drive_probe *p, const char *job_name, int64_t *ret_used, char **ret_err)
{
	_cleanup_close_ int fd = -1;
	int r;

	fd = open(p->mount_point, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		xasprintf(ret_err, "cannot open %s: %s", p->mount_point, strerror(-r));
		return r;
	}
	if ((r = drive_check_foreign(fd, job_name, ret_err)) < 0)
		return r;
	if ((r = drive_job_usage(fd, job_name, ret_used)) < 0) {
		xasprintf(ret_err, "cannot measure job %s's files on %s: %s", job_name,
		          p->mount_point, strerror(-r));
		return r;
	}
	return 0;
}

/* Why the check does not run, or NULL if it must. */
static const char *
bitlocker_skip_reason(const struct drive_attach_args *a, const char *dev)
{
	if (a->bitlocker_device != NULL)
		return NULL; /* named by the operator: always checked */
	if (!a->require_bitlocker)
		return "RequireBitLocker=no";
	if (dev == NULL && !a->require_ntfs)
		return "RequireNTFS=no and no BitLocker volume found under it";
	return NULL;
}

/* The refusal for what bitlocker_volume_check/load said of dev. */
static void
bitlocker_refusal(const struct drive_attach_args *a, const char *mp, const char *dev,
                  const struct bitlocker_volume *v, int r, char **ret_err)
{
	if (r == -EMEDIUMTYPE)
		xasprintf(ret_err, "%s, the device under %s, is not a BitLocker volume%s", dev, mp,
		          a->require_bitlocker ? " (RequireBitLocker=yes)" : "");
	else if (r == -EPERM && a->bitlocker_key_file != NULL)
		xasprintf(ret_err,
		          "the recovery password in %s does not open the BitLocker volume %s "
		          "(GUID %s): Azure could not unlock this drive",
		          a->bitlocker_key_file, dev, v->guid);
	else if (r == -EPERM)
		xasprintf(ret_err,
		          "the recovery password given does not open the BitLocker volume %s "
		          "(GUID %s): Azure could not unlock this drive",
		          dev, v->guid);
	else
		xasprintf(ret_err, "cannot check the BitLocker volume %s under %s: %s", dev, mp,
		          strerror(-r));
}

int
drive_bitlocker_check(const struct drive_attach_args *a, struct drive_attach *at, char **ret_err)
{
	const char *dev = a->bitlocker_device ? a->bitlocker_device : at->probe.bitlocker_device;
	const char *mp = at->probe.mount_point, *skip = bitlocker_skip_reason(a, dev);
	struct bitlocker_volume v = {0};
	int r;

	if (skip != NULL) {
		at->bitlocker_note = xprintf("BitLocker check skipped (%s)", skip);
		return 0;
	}
	if (dev == NULL) {
		xasprintf(ret_err,
		          "%s is not on a BitLocker volume seedd can find (RequireBitLocker=yes): "
		          "unlock it with cryptsetup open --type bitlk, or give --bitlocker-device "
		          "with the BitLocker device %s",
		          mp, at->probe.source_is_file ? "dislocker opened" : "under it");
		return -EMEDIUMTYPE;
	}
	r = a->bitlocker_key != NULL ? bitlocker_volume_check(dev, a->bitlocker_key, &v)
	                             : bitlocker_volume_load(dev, &v);
	if (r < 0) {
		bitlocker_refusal(a, mp, dev, &v, r, ret_err);
		bitlocker_volume_done(&v);
		return r;
	}
	at->bitlocker_device = xstrdup(dev);
	at->bitlocker_guid = TAKE_PTR(v.guid);
	at->bitlocker_cipher = TAKE_PTR(v.cipher);
	if (a->bitlocker_key == NULL)
		at->bitlocker_note =
		    xprintf("BitLocker volume %s found; no recovery password given yet, so none "
		            "checked",
		            dev);
	return 0;
}

int
drive_attach_check(const char *path, const struct drive_attach_args *a, struct drive_attach *ret,
                   char **ret_err)
{
	struct drive_attach at = {0};
	int r;

	if ((r = drive_probe(path, &at.probe, ret_err)) < 0)
		return r;
	if ((r = check_probe(&at.probe, a, ret_err)) < 0 ||
	    (r = check_root(&at.probe, a->job_name, &at.used_bytes, ret_err)) < 0 ||
	    (r = drive_decide(&at.probe, a, at.used_bytes, &at.serial, &at.capacity, ret_err)) <
	        0 ||
	    (r = drive_bitlocker_check(a, &at, ret_err)) < 0) {
		drive_attach_done(&at);
		return r;
	}
	*ret = at;
	return 0;
}

const char *
drive_write_hint(int r)
{
	if (r == -EFAULT)
		return "; the drive refused the write (on a dislocker mount: its NTFS covers "
		       "BitLocker's metadata blocks, which dislocker never lets anyone overwrite; "
		       "an NTFS that Windows made does not)";
	if (r == -EIO)
		return "; the drive reported an I/O error: check it (the kernel log, smartctl) or "
		       "use another, then `seedctl job retry`";
	if (r == -ENODEV || r == -ENOTCONN || r == -ENXIO)
		return "; the drive is gone (unplugged, or the dislocker or ntfs-3g mount ended): "
		       "attach and mount it at the same path again, then `seedctl job retry`";
	return "";
}

void
drive_attach_done(struct drive_attach *a)
{
	drive_probe_done(&a->probe);
	free(a->serial);
	free(a->bitlocker_device);
	free(a->bitlocker_guid);
	free(a->bitlocker_cipher);
	free(a->bitlocker_note);
	*a = (struct drive_attach){0};
}
