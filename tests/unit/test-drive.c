/*
 * drive.c: probing (a plain directory, "/", a tmpfs mounted in a private mount
 * namespace when we may), the foreign-data check, the marker, job usage, the
 * serial and job-directory rules and the AddDrive decision.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "drive.h"
#include "proto/util.h"

#define JOB "backup-2024"
#define TMPFS_MAGIC_ 0x01021994
#define EXT4_MAGIC_ 0xEF53

static char *
make_tmpdir(void)
{
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char *dir = xprintf("%s/test-drive-XXXXXX", base);

	check(mkdtemp(dir) != NULL);
	return dir;
}

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
rm_rf(const char *dir)
{
	check(nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS) == 0);
}

static void
put_file(int dirfd, const char *name, size_t len)
{
	_cleanup_free_ char *buf = xcalloc(1, len + 1);
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	check(fd >= 0);
	check(write(fd, buf, len) == (ssize_t)len);
	check(fsync(fd) == 0);
	close(fd);
}

static int
open_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	check(fd >= 0);
	return fd;
}

static void
test_probe_dir(void)
{
	_cleanup_free_ char *dir = make_tmpdir(), *real = NULL, *link = NULL, *file = NULL;
	struct drive_probe p = {0};
	char *err = NULL;
	struct statfs sf;

	check(drive_probe(dir, &p, &err) == 0);
	check(err == NULL);
	real = realpath(dir, NULL);
	check_str(p.mount_point, real);
	check(!p.is_mount_root);
	check(p.fs_type != NULL && p.fs_type[0] != '\0');
	check(p.source != NULL);
	check(statfs(dir, &sf) == 0);
	if (sf.f_type == TMPFS_MAGIC_)
		check_str(p.fs_type, "tmpfs");
	else if (sf.f_type == EXT4_MAGIC_)
		check(strcmp(p.fs_type, "ext4") == 0 || strcmp(p.fs_type, "ext3") == 0 ||
		      strcmp(p.fs_type, "ext2") == 0);
	check(!p.is_ntfs);
	check(p.total_bytes > 0);
	check(p.free_bytes >= 0 && p.free_bytes <= p.total_bytes);
	drive_probe_done(&p);
	check(p.mount_point == NULL);

	/* A symlink resolves to the directory. */
	link = xprintf("%s.lnk", dir);
	check(symlink(dir, link) == 0);
	check(drive_probe(link, &p, &err) == 0);
	check_str(p.mount_point, real);
	drive_probe_done(&p);
	check(unlink(link) == 0);

	/* A file is refused, a missing path too; ret stays untouched. */
	file = xprintf("%s/f", dir);
	put_file(AT_FDCWD, file, 1);
	p.free_bytes = 42;
	check_int(drive_probe(file, &p, &err), -ENOTDIR);
	check(err != NULL && strstr(err, "f") != NULL);
	check_int(p.free_bytes, 42);
	free(err);
	err = NULL;
	check(unlink(file) == 0);
	check_int(drive_probe(file, &p, &err), -ENOENT);
	check(err != NULL && strstr(err, file) != NULL);
	free(err);
	rm_rf(dir);
}

static void
test_probe_root(void)
{
	struct drive_probe p = {0};
	char *err = NULL;

	check(drive_probe("/", &p, &err) == 0);
	check_str(p.mount_point, "/");
	check(p.is_mount_root);
	check(p.fs_type != NULL && p.fs_type[0] != '\0');
	check(p.source != NULL && p.source[0] != '\0');
	check(p.serial == NULL || drive_serial_valid(p.serial, NULL));
	check(p.serial == NULL || p.disk != NULL);
	fprintf(stderr, "/: %s on %s, disk %s, serial %s, ntfs %d\n", p.fs_type, p.source,
	        p.disk ? p.disk : "(none)", p.serial ? p.serial : "(none)", p.is_ntfs);
	drive_probe_done(&p);
}

static void
test_serial(void)
{
	_cleanup_free_ char *longest = xmalloc(DRIVE_SERIAL_MAX + 2);
	const char *why = NULL;

	check(drive_serial_valid("WD-WCC3F1234567", NULL));
	check(drive_serial_valid("S3Z9NB0K123456X", NULL));
	check(drive_serial_valid("a", NULL));
	check(drive_serial_valid("with inner space", NULL));
	memset(longest, 'A', DRIVE_SERIAL_MAX);
	longest[DRIVE_SERIAL_MAX] = '\0';
	check(drive_serial_valid(longest, NULL));
	longest[DRIVE_SERIAL_MAX] = 'A';
	longest[DRIVE_SERIAL_MAX + 1] = '\0';
	check(!drive_serial_valid(longest, &why));
	check(strstr(why, "128") != NULL);
	check(!drive_serial_valid(NULL, NULL));
	check(!drive_serial_valid("", &why));
	check(!drive_serial_valid(" WD123", NULL));
	check(!drive_serial_valid("WD123 ", &why));
	check(strstr(why, "space") != NULL);
	check(!drive_serial_valid("WD\t123", NULL));
	check(!drive_serial_valid("WD\x7f", NULL));
	check(!drive_serial_valid("WD\xc3\xa9", &why));
	check(strstr(why, "ASCII") != NULL);
}

static void
test_job_dir_valid(void)
{
	static const char *const bad[] = {
	    "ab",
	    "CON",
	    "nul",
	    "com1",
	    "abc.",
	    "DriveManifest.xml",
	    "drivemanifest.XML",
	    ".seedd-drive.json",
	    ".Trash",
	    ".Trash-1000",
	    "a/b",
	    "a b",
	};
	const char *why = NULL;

	check(drive_job_dir_valid(JOB, NULL));
	check(drive_job_dir_valid(".hidden-job", NULL));
	check(drive_job_dir_valid(".Trash-x", NULL));
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		why = NULL;
		if (drive_job_dir_valid(bad[i], &why))
			fprintf(stderr, "accepted: %s\n", bad[i]);
		check(!drive_job_dir_valid(bad[i], &why));
		check(why != NULL);
	}
	_cleanup_free_ char *fp = drive_file_path(JOB, "a/b.txt");
	check_str(fp, JOB "/a/b.txt");
}

static void
test_marker(void)
{
	_cleanup_free_ char *dir = make_tmpdir(), *job = NULL, *uuid = NULL, *text = NULL;
	char u1[DRIVE_UUID_LEN + 1], u2[DRIVE_UUID_LEN + 1];
	int root = open_dir(dir), fd;
	struct stat st;
	ssize_t n;

	check_int(drive_marker_read(root, &job, &uuid), -ENOENT);
	check(job == NULL);
	check(drive_marker_write(root, JOB, "WD-123", u1) == 0);
	check_int(strlen(u1), DRIVE_UUID_LEN);
	check(drive_marker_read(root, &job, &uuid) == 0);
	check_str(job, JOB);
	check_str(uuid, u1);
	/* Atomic: no temporary file is left, and the file is what we wrote. */
	check(fstatat(root, DRIVE_MARKER_TMP, &st, 0) < 0 && errno == ENOENT);
	check((fd = openat(root, DRIVE_MARKER_NAME, O_RDONLY)) >= 0);
	text = xcalloc(1, DRIVE_MARKER_MAX + 1);
	check((n = read(fd, text, DRIVE_MARKER_MAX)) > 0);
	close(fd);
	check(strstr(text, "\"serial\": \"WD-123\"") != NULL);
	check(strstr(text, "\"created\": \"20") != NULL);

	/* Rewriting for the same job gives a fresh uuid; another job may not take it over. */
	check(drive_marker_write(root, JOB, NULL, u2) == 0);
	check(strcmp(u1, u2) != 0);
	free(job);
	free(uuid);
	job = uuid = NULL;
	check(drive_marker_read(root, NULL, &uuid) == 0);
	check_str(uuid, u2);
	check_int(drive_marker_write(root, "other-job", NULL, u1), -EBUSY);
	check_int(drive_marker_write(root, "CON", NULL, u1), -EINVAL);
	check(drive_marker_read(root, &job, NULL) == 0);
	check_str(job, JOB);

	/* Garbage, a bad uuid and a directory are not markers. */
	check((fd = openat(root, DRIVE_MARKER_NAME, O_WRONLY | O_TRUNC)) >= 0);
	check(write(fd, "{\"job\": \"" JOB "\", \"uuid\": \"xyz\"}", 33) == 33);
	close(fd);
	check_int(drive_marker_read(root, NULL, NULL), -EBADMSG);
	check(unlinkat(root, DRIVE_MARKER_NAME, 0) == 0);
	check(mkdirat(root, DRIVE_MARKER_NAME, 0755) == 0);
	check_int(drive_marker_read(root, NULL, NULL), -EBADMSG);
	close(root);
	rm_rf(dir);
}

/* check_foreign on root: expect r, and (if given) the message mentions needle. */
static void
expect_foreign(int root, const char *job, int r, const char *needle)
{
	char *err = NULL;

	check_int(drive_check_foreign(root, job, &err), r);
	if (r == 0)
		check(err == NULL);
	else {
		check(err != NULL);
		if (needle != NULL && strstr(err, needle) == NULL)
			fprintf(stderr, "message: %s\n", err);
		check(needle == NULL || strstr(err, needle) != NULL);
	}
	free(err);
}

static void
test_foreign(void)
{
	_cleanup_free_ char *dir = make_tmpdir();
	char uuid[DRIVE_UUID_LEN + 1];
	int root = open_dir(dir);

	expect_foreign(root, JOB, 0, NULL);
	expect_foreign(root, "CON", -EINVAL, "CON");

	/* System directories are fine, as directories only. */
	check(mkdirat(root, "System Volume Information", 0755) == 0);
	check(mkdirat(root, "$RECYCLE.BIN", 0755) == 0);
	check(mkdirat(root, "lost+found", 0755) == 0);
	check(mkdirat(root, ".Trash-1000", 0755) == 0);
	expect_foreign(root, JOB, 0, NULL);
	put_file(root, ".Trash-x", 1);
	expect_foreign(root, JOB, -EEXIST, "\".Trash-x\"");
	check(unlinkat(root, ".Trash-x", 0) == 0);

	/* A stray file is named; of several, the first by byte order and the count. */
	put_file(root, "photo.jpg", 10);
	expect_foreign(root, JOB, -EEXIST, "\"photo.jpg\"");
	put_file(root, "bad\nname", 1);
	put_file(root, "zzz", 1);
	expect_foreign(root, JOB, -EEXIST, "\"bad\\x0aname\" and 2 more");
	check(unlinkat(root, "photo.jpg", 0) == 0);
	check(unlinkat(root, "bad\nname", 0) == 0);
	check(unlinkat(root, "zzz", 0) == 0);

	/* A marker write cut short leaves its temporary file: still ours to replace. */
	put_file(root, DRIVE_MARKER_TMP, 3);
	expect_foreign(root, JOB, 0, NULL);
	check(unlinkat(root, DRIVE_MARKER_TMP, 0) == 0);

	/* Our data directory and manifest without a marker are not ours. */
	check(mkdirat(root, JOB, 0755) == 0);
	expect_foreign(root, JOB, -EEXIST, JOB);
	check(drive_marker_write(root, JOB, "SER1", uuid) == 0);
	put_file(root, DRIVE_MANIFEST_NAME, 100);
	put_file(root, DRIVE_MANIFEST_TMP, 100);
	expect_foreign(root, JOB, 0, NULL);

	/* The marker names this job: another job is refused with its name. */
	expect_foreign(root, "other-job", -EBUSY, JOB);

	/* Another job's directory next to ours is foreign. */
	check(mkdirat(root, "other-job", 0755) == 0);
	expect_foreign(root, JOB, -EEXIST, "\"other-job\"");
	check(unlinkat(root, "other-job", AT_REMOVEDIR) == 0);

	/* Our data directory must be a directory. */
	check(unlinkat(root, JOB, AT_REMOVEDIR) == 0);
	put_file(root, JOB, 1);
	expect_foreign(root, JOB, -EEXIST, JOB);
	check(unlinkat(root, JOB, 0) == 0);

	/* An unreadable marker is foreign data, named. */
	put_file(root, DRIVE_MARKER_NAME, 5);
	expect_foreign(root, JOB, -EEXIST, DRIVE_MARKER_NAME);
	close(root);
	rm_rf(dir);
}

static void
test_usage(void)
{
	_cleanup_free_ char *dir = make_tmpdir();
	int root = open_dir(dir), jfd, sfd;
	int64_t bytes = -1;

	check(drive_job_usage(root, JOB, &bytes) == 0);
	check_int(bytes, 0);
	check(mkdirat(root, JOB, 0755) == 0);
	jfd = openat(root, JOB, O_RDONLY | O_DIRECTORY);
	check(jfd >= 0);
	put_file(jfd, "a", 100000);
	check(mkdirat(jfd, "d", 0755) == 0);
	sfd = openat(jfd, "d", O_RDONLY | O_DIRECTORY);
	check(sfd >= 0);
	put_file(sfd, "b", 300000);
	check(symlinkat("/", sfd, "loop") == 0);
	put_file(root, DRIVE_MANIFEST_NAME, 50000);
	put_file(root, "foreign", 1000000);
	check(drive_job_usage(root, JOB, &bytes) == 0);
	check(bytes >= 450000);
	check(bytes < 1000000);
	check_int(drive_job_usage(root, "CON", &bytes), -EINVAL);
	close(sfd);
	close(jfd);
	close(root);
	rm_rf(dir);
}

static struct drive_probe
fake_probe(void)
{
	return (struct drive_probe){
	    .mount_point = (char *)"/mnt/d1",
	    .is_mount_root = true,
	    .fs_type = (char *)"fuseblk",
	    .source = (char *)"/dev/mapper/bitlk-1",
	    .is_ntfs = true,
	    .serial = (char *)"WD-PROBED",
	    .total_bytes = 1000000,
	    .free_bytes = 800000,
	};
}

static void
expect_decide(const struct drive_probe *p, const struct drive_attach_args *a, int64_t used, int r,
              const char *serial, int64_t cap, const char *needle)
{
	char *s = NULL, *err = NULL;
	int64_t c = -1;

	check_int(drive_decide(p, a, used, &s, &c, &err), r);
	if (r == 0) {
		check(err == NULL);
		check_str(s, serial);
		check_int(c, cap);
	} else {
		check(s == NULL && c == -1);
		check(err != NULL);
		if (strstr(err, needle) == NULL)
			fprintf(stderr, "message: %s\n", err);
		check(strstr(err, needle) != NULL);
	}
	free(s);
	free(err);
}

static void
test_decide(void)
{
	struct drive_probe p = fake_probe();
	struct drive_attach_args a = {.job_name = JOB, .require_ntfs = true};

	expect_decide(&p, &a, 0, 0, "WD-PROBED", 800000, NULL);
	/* Our files already there count as used and as part of the capacity. */
	expect_decide(&p, &a, 150000, 0, "WD-PROBED", 950000, NULL);
	/* --capacity caps, but never below what is already there. */
	a.capacity = 500000;
	expect_decide(&p, &a, 0, 0, "WD-PROBED", 500000, NULL);
	expect_decide(&p, &a, 600000, 0, "WD-PROBED", 600000, NULL);
	a.capacity = 5000000;
	expect_decide(&p, &a, 0, 0, "WD-PROBED", 800000, NULL);
	a.capacity = -1;
	expect_decide(&p, &a, 0, -EINVAL, NULL, 0, "negative");
	a.capacity = 0;
	/* --serial overrides; none at all is an error naming the path. */
	a.serial = "GIVEN-1";
	expect_decide(&p, &a, 0, 0, "GIVEN-1", 800000, NULL);
	a.serial = "bad ";
	expect_decide(&p, &a, 0, -EINVAL, NULL, 0, "given serial");
	a.serial = NULL;
	p.serial = NULL;
	expect_decide(&p, &a, 0, -ENXIO, NULL, 0,
	              "cannot probe the disk serial of /mnt/d1; give --serial");
	/* ntfs-3g on dislocker's dislocker-file: no disk below, the error says so. */
	p.source = (char *)"/run/dl/dislocker-file";
	p.fs_type = (char *)"fuse";
	p.source_is_file = true;
	expect_decide(&p, &a, 0, -ENXIO, NULL, 0,
	              "mounted from the file /run/dl/dislocker-file, not from a disk");
	expect_decide(&p, &a, 0, -ENXIO, NULL, 0, "give --serial");
	a.serial = "WD-GIVEN";
	expect_decide(&p, &a, 0, 0, "WD-GIVEN", 800000, NULL);
	a.serial = NULL;
	p = fake_probe();
	/* Filesystem rules. */
	p.is_ntfs = false;
	expect_decide(&p, &a, 0, -EMEDIUMTYPE, NULL, 0, "not NTFS but fuseblk");
	a.require_ntfs = false;
	expect_decide(&p, &a, 0, 0, "WD-PROBED", 800000, NULL);
	p.read_only = true;
	expect_decide(&p, &a, 0, -EROFS, NULL, 0, "read-only");
	p.read_only = false;
	p.is_mount_root = false;
	expect_decide(&p, &a, 0, -EINVAL, NULL, 0, "not the root of a mounted filesystem");
	a.allow_directory = true;
	expect_decide(&p, &a, 0, 0, "WD-PROBED", 800000, NULL);
	/* --serial admits a directory only with RequireNTFS=no (issue 11), even on NTFS. */
	a.require_ntfs = true;
	a.serial = "DIR-1";
	p.is_ntfs = true;
	expect_decide(&p, &a, 0, -EINVAL, NULL, 0, "not the root of a mounted filesystem");
	expect_decide(&p, &a, 0, -EINVAL, NULL, 0, "only with RequireNTFS=no");
	p.is_ntfs = false; /* elsewhere: named as not NTFS, as before */
	expect_decide(&p, &a, 0, -EMEDIUMTYPE, NULL, 0, "not NTFS but fuseblk");
	p.is_mount_root = true;
	p.is_ntfs = true;
	expect_decide(&p, &a, 0, 0, "DIR-1", 800000, NULL);
}

static void
test_attach_dir(void)
{
	_cleanup_free_ char *dir = make_tmpdir();
	struct drive_attach_args a = {.job_name = JOB, .serial = "TEST-1"};
	struct drive_attach at = {0};
	int root = open_dir(dir);
	char *err = NULL;

	/* Not a mount root: refused before the root is even looked at. */
	put_file(root, "stray", 1);
	check_int(drive_attach_check(dir, &a, &at, &err), -EINVAL);
	check(strstr(err, "not the root") != NULL);
	free(err);
	err = NULL;
	a.allow_directory = true;
	check_int(drive_attach_check(dir, &a, &at, &err), -EEXIST);
	check(strstr(err, "\"stray\"") != NULL);
	free(err);
	err = NULL;
	check(unlinkat(root, "stray", 0) == 0);
	check(drive_attach_check(dir, &a, &at, &err) == 0);
	check(err == NULL);
	check_str(at.serial, "TEST-1");
	check_int(at.used_bytes, 0);
	check(at.capacity == at.probe.free_bytes);
	drive_attach_done(&at);
	check(at.serial == NULL);
	close(root);
	rm_rf(dir);
}

/* In a private mount namespace: a tmpfs is a mount root of type tmpfs with its size. */
static int
tmpfs_child(const char *dir)
{
	struct drive_attach_args a = {.job_name = JOB};
	struct drive_attach at = {0};
	struct drive_probe p = {0};
	char uuid[DRIVE_UUID_LEN + 1];
	char *err = NULL;
	int root;

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("seedd-test", dir, "tmpfs", 0, "size=8m,mode=0755") < 0) {
		fprintf(stderr, "tmpfs test skipped: %s\n", strerror(errno));
		return TEST_SKIP;
	}
	check(drive_probe(dir, &p, &err) == 0);
	check(p.is_mount_root);
	check_str(p.fs_type, "tmpfs");
	check_str(p.source, "seedd-test");
	check(!p.is_ntfs);
	check(p.serial == NULL && p.disk == NULL);
	check_int(p.total_bytes, 8 << 20);
	check(p.free_bytes > (7 << 20) && p.free_bytes <= p.total_bytes);
	drive_probe_done(&p);

	/* No serial to probe on a tmpfs. */
	check_int(drive_attach_check(dir, &a, &at, &err), -ENXIO);
	check(strstr(err, "give --serial") != NULL);
	free(err);
	err = NULL;

	/* Our files count as used; free space shrinks by as much, capacity stays. */
	a.serial = "TMPFS-1";
	root = open_dir(dir);
	check(mkdirat(root, "lost+found", 0700) == 0);
	check(drive_marker_write(root, JOB, a.serial, uuid) == 0);
	check(mkdirat(root, JOB, 0755) == 0);
	int jfd = openat(root, JOB, O_RDONLY | O_DIRECTORY);
	check(jfd >= 0);
	put_file(jfd, "big", 1 << 20);
	close(jfd);
	check(drive_attach_check(dir, &a, &at, &err) == 0);
	check(at.probe.is_mount_root);
	check(at.used_bytes >= 1 << 20 && at.used_bytes < 2 << 20);
	check_int(at.capacity, at.probe.free_bytes + at.used_bytes);
	drive_attach_done(&at);

	/* A bind mount of a subdirectory is a mount but not the volume's root. */
	_cleanup_free_ char *sub = xprintf("%s/%s", dir, JOB), *bind = xprintf("%s/bind", dir);
	check(mkdirat(root, "bind", 0755) == 0);
	check(mount(sub, bind, NULL, MS_BIND, NULL) == 0);
	check(drive_probe(bind, &p, &err) == 0);
	check_str(p.mount_point, bind);
	check(!p.is_mount_root);
	check_str(p.fs_type, "tmpfs");
	drive_probe_done(&p);
	check(umount(bind) == 0);
	close(root);
	check(umount(dir) == 0);
	return 0;
}

static void
test_tmpfs(void)
{
	_cleanup_free_ char *dir = make_tmpdir();
	int status;
	pid_t pid;

	if (geteuid() != 0) {
		fprintf(stderr, "tmpfs test skipped: not root\n");
		check(rmdir(dir) == 0);
		return;
	}
	pid = fork();
	check(pid >= 0);
	if (pid == 0)
		_exit(tmpfs_child(dir));
	check(waitpid(pid, &status, 0) == pid);
	check(WIFEXITED(status));
	check(WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == TEST_SKIP);
	check(rmdir(dir) == 0);
}

/* One mountinfo line (proc(5)) with the given type and source; xmalloc'd. */
static char *
mountinfo_line(const char *fs_type, const char *source)
{
	return xprintf("46 27 0:41 / /mnt/disk1 rw,relatime shared:7 - %s %s "
	               "rw,user_id=0,group_id=0,allow_other\n",
	               fs_type, source);
}

static void
expect_mount(const char *fs_type, const char *source, bool ntfs, bool file)
{
	_cleanup_free_ char *line = mountinfo_line(fs_type, source);
	bool is_ntfs = !ntfs, is_file = !file;

	check_int(drive_mountinfo_ntfs(line, &is_ntfs, &is_file), 0);
	if (is_ntfs != ntfs || is_file != file)
		fprintf(stderr, "mountinfo: %s", line);
	check(is_ntfs == ntfs);
	check(is_file == file);
}

/* Write a 512-byte boot sector with the given OEM id at dir/name; returns the path. */
static char *
boot_sector_file(const char *dir, const char *name, const char *oem)
{
	char *path = xprintf("%s/%s", dir, name);
	unsigned char sector[512] = {0xeb, 0x52, 0x90};
	FILE *f = fopen(path, "we");

	memcpy(sector + 3, oem, 8);
	check(f != NULL);
	check(fwrite(sector, 1, sizeof(sector), f) == sizeof(sector));
	check(fclose(f) == 0);
	return path;
}

/*
 * The NTFS verdict for each kind of mount an operator may hand seedd: ntfs-3g
 * on a device (fuseblk: cryptsetup's dm-crypt device, a disk) or on a regular
 * file (fuse: dislocker's dislocker-file), with or without a subtype; ntfs3;
 * dislocker's own mount; others.
 */
static void
test_mountinfo_ntfs(void)
{
	_cleanup_free_ char *dir = make_tmpdir();
	_cleanup_free_ char *ntfs = boot_sector_file(dir, "dislocker-file", "NTFS    ");
	_cleanup_free_ char *fat = boot_sector_file(dir, "fat.img", "MSDOS5.0");
	_cleanup_free_ char *spaced = xprintf("%s/my disk", dir);
	_cleanup_free_ char *spaced_file = NULL, *escaped = NULL;
	bool a, b;

	check(mkdir(spaced, 0755) == 0);
	spaced_file = boot_sector_file(spaced, "dislocker-file", "NTFS    ");
	escaped = xprintf("%s/my\\040disk/dislocker-file", dir);

	expect_mount("fuse", ntfs, true, true);     /* ntfs-3g on dislocker-file */
	expect_mount("fuseblk", ntfs, true, true);  /* the same through a loop device's view */
	expect_mount("fuse", escaped, true, true);  /* mountinfo's \040 for a space */
	expect_mount("fuse", fat, false, true);     /* some other FUSE on an image */
	expect_mount("fuse.ntfs-3g", "/dev/mapper/bitlk-1", true, false);
	expect_mount("fuseblk.ntfs-3g", "/dev/sdb1", true, false);
	expect_mount("fuseblk.lowntfs-3g", "/dev/sdb1", true, false);
	expect_mount("ntfs3", "/dev/sdb1", true, false);
	expect_mount("ntfs", "/dev/sdb1", true, false);
	/* dislocker's own mount (the directory holding dislocker-file) is no NTFS. */
	expect_mount("fuse.dislocker-fuse", "dislocker-fuse", false, false);
	/* A FUSE filesystem with another subtype is not read for a boot sector. */
	expect_mount("fuse.sshfs", ntfs, false, true);
	expect_mount("fuse", "/nonexistent/dislocker-file", false, false);
	expect_mount("ext4", ntfs, false, true);
	expect_mount("tmpfs", "tmpfs", false, false);
	check_int(drive_mountinfo_ntfs("46 27 0:41 / /mnt rw\n", &a, &b), -EBADMSG);
	check_int(drive_mountinfo_ntfs("x 27 0:41 / /mnt rw - fuse /x rw\n", &a, &b), -EBADMSG);

	check(unlink(spaced_file) == 0 && rmdir(spaced) == 0);
	check(unlink(ntfs) == 0 && unlink(fat) == 0 && rmdir(dir) == 0);
}

/* A fake sysfs directory of a dm device: dm/uuid and slaves/ as the kernel shows them. */
static char *
fake_dm(const char *base, const char *name, const char *uuid, const char *const *slaves)
{
	char *dir = xprintf("%s/%s", base, name);
	_cleanup_free_ char *dm = xprintf("%s/dm", dir), *sl = xprintf("%s/slaves", dir);

	check(mkdir(dir, 0755) == 0 && mkdir(sl, 0755) == 0);
	if (uuid != NULL) {
		check(mkdir(dm, 0755) == 0);
		_cleanup_free_ char *f = xprintf("%s/uuid", dm);
		FILE *out = fopen(f, "we");
		check(out != NULL && fprintf(out, "%s\n", uuid) > 0 && fclose(out) == 0);
	}
	for (size_t i = 0; slaves != NULL && slaves[i] != NULL; i++) {
		_cleanup_free_ char *link = xprintf("%s/%s", sl, slaves[i]);
		check(symlink("../../sdb1", link) == 0);
	}
	return dir;
}

/* The device-mapper half of the BitLocker lookup: cryptsetup's BITLK uuid, one slave. */
static void
test_dm_bitlk(void)
{
	_cleanup_free_ char *base = make_tmpdir();
	static const char *const one[] = {"sdb1", NULL}, *const two[] = {"sdb1", "sdc1", NULL};
	static const struct {
		const char *name, *uuid;
		const char *const *slaves;
		int want;
	} cases[] = {
	    /* cryptsetup open --type bitlk: "CRYPT-BITLK-<GUID without dashes>-<name>"
	       (dm_prepare_uuid in cryptsetup's lib/libdevmapper.c) */
	    {"bitlk", "CRYPT-BITLK-8f595209f5b949a085d4cb8f80258c27-disk1", one, 1},
	    {"luks", "CRYPT-LUKS2-0123456789abcdef0123456789abcdef-disk1", one, 0},
	    {"plain", "CRYPT-PLAIN-disk1", one, 0},
	    {"lvm", "LVM-abcdef", one, 0},
	    {"nouuid", NULL, one, 0},          /* not a dm device at all */
	    {"noslave", "CRYPT-BITLK-x-y", NULL, 0},
	    {"twoslaves", "CRYPT-BITLK-x-y", two, 0},
	    {"lower", "crypt-bitlk-x-y", one, 0}, /* the kernel keeps the case cryptsetup gave */
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		_cleanup_free_ char *dir = fake_dm(base, cases[i].name, cases[i].uuid, cases[i].slaves);
		char *name = NULL;
		int r = drive_dm_bitlk_slave(dir, &name);

		if (r != cases[i].want)
			fprintf(stderr, "%s: %d\n", cases[i].name, r);
		check_int(r, cases[i].want);
		if (r == 1)
			check_str(name, "sdb1");
		else
			check(name == NULL);
		free(name);
	}
	rm_rf(base);
}

/* The archive of reference/bitlocker (as in test-bitlocker.c); NULL if absent. */
static char *
bitlocker_archive(void)
{
	const char *root = getenv("SOURCE_ROOT");
	static const char *const rel[] = {"/../shared/reference/bitlocker/bitlocker-images.tar.xz",
	                                  "/../../shared/reference/bitlocker/bitlocker-images.tar.xz"};

	for (size_t i = 0; root != NULL && i < ELEMENTSOF(rel); i++) {
		char *p = xprintf("%s%s", root, rel[i]);
		if (access(p, R_OK) == 0)
			return p;
		free(p);
	}
	return NULL;
}

/* drive_bitlocker_check's decision, on a directory drive: skips, refusals, the volume. */
static void
test_bitlocker_decision(void)
{
	_cleanup_free_ char *dir = make_tmpdir(), *archive = bitlocker_archive(), *cmd = NULL;
	_cleanup_free_ char *img = xprintf("%s/bitlocker/bitlk-aes-xts-128.img", dir);
	_cleanup_free_ char *plain = xprintf("%s/plain.img", dir);
	/* reference/bitlocker/images.conf, [bitlk-aes-xts-128] and [bitlk-aes-cbc-128] RP= */
	const char *rp = "235818-357951-253979-013365-241120-245575-342914-591910";
	const char *other = "042647-302313-590458-071500-554323-116567-412181-516978";
	struct drive_attach_args a = {.job_name = JOB, .require_ntfs = true};
	struct drive_attach at = {.probe.mount_point = xstrdup(dir)};
	char *err = NULL;
	int fd;

	/* RequireBitLocker=no: skipped, said so. */
	check_int(drive_bitlocker_check(&a, &at, &err), 0);
	check(strstr(at.bitlocker_note, "RequireBitLocker=no") != NULL && at.bitlocker_device == NULL);
	free(TAKE_PTR(at.bitlocker_note));
	/* RequireBitLocker=yes, no volume under a plain directory: refused unless RequireNTFS=no. */
	a.require_bitlocker = true;
	check_int(drive_bitlocker_check(&a, &at, &err), -EMEDIUMTYPE);
	check(strstr(err, "--bitlocker-device") != NULL && strstr(err, dir) != NULL);
	free(TAKE_PTR(err));
	a.require_ntfs = false;
	check_int(drive_bitlocker_check(&a, &at, &err), 0);
	check(strstr(at.bitlocker_note, "RequireNTFS=no") != NULL && at.bitlocker_device == NULL);
	free(TAKE_PTR(at.bitlocker_note));
	/* A named device that is no BitLocker volume is refused, naming it. */
	fd = open(plain, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	check(fd >= 0 && ftruncate(fd, 1 << 20) == 0);
	close(fd);
	a.bitlocker_device = plain;
	check_int(drive_bitlocker_check(&a, &at, &err), -EMEDIUMTYPE);
	check(strstr(err, plain) != NULL && strstr(err, "not a BitLocker volume") != NULL);
	free(TAKE_PTR(err));

	if (archive == NULL) {
		printf("BitLocker image cases skipped: no reference/bitlocker archive\n");
		drive_attach_done(&at);
		rm_rf(dir);
		return;
	}
	cmd = xprintf("tar -xJf '%s' -C '%s'", archive, dir);
	check(system(cmd) == 0);
	a.bitlocker_device = img;
	a.bitlocker_key = other;
	a.bitlocker_key_file = "/root/keys/disk1.txt";
	check_int(drive_bitlocker_check(&a, &at, &err), -EPERM);
	check(strstr(err, "/root/keys/disk1.txt") != NULL && strstr(err, img) != NULL);
	check(strstr(err, other) == NULL && strstr(err, "8f595209-f5b9-49a0-85d4-cb8f80258c27"));
	check(at.bitlocker_device == NULL);
	free(TAKE_PTR(err));
	a.bitlocker_key = rp;
	check_int(drive_bitlocker_check(&a, &at, &err), 0);
	check(err == NULL && at.bitlocker_note == NULL);
	check_str(at.bitlocker_device, img);
	check_str(at.bitlocker_guid, "8f595209-f5b9-49a0-85d4-cb8f80258c27");
	check_str(at.bitlocker_cipher, "aes-xts-plain64");
	drive_attach_done(&at);
	/* Without a key (given later): the volume is loaded, and the note says nothing was checked. */
	at.probe.mount_point = xstrdup(dir);
	a.bitlocker_key = NULL;
	check_int(drive_bitlocker_check(&a, &at, &err), 0);
	check_str(at.bitlocker_guid, "8f595209-f5b9-49a0-85d4-cb8f80258c27");
	check(strstr(at.bitlocker_note, "no recovery password") != NULL);
	drive_attach_done(&at);
	rm_rf(dir);
}

int
main(void)
{
	test_serial();
	test_job_dir_valid();
	test_probe_dir();
	test_probe_root();
	test_marker();
	test_foreign();
	test_usage();
	test_decide();
	test_mountinfo_ntfs();
	test_attach_dir();
	test_tmpfs();
	test_dm_bitlk();
	test_bitlocker_decision();
	return 0;
}
