/*
 * probe-drive PATH [JOB]: print drive_probe() of PATH as one JSON object (a
 * test helper for tests/integration/test_ntfs.py; not installed). With JOB,
 * also run AddDrive's checks (RequireNTFS=yes, --serial TEST-SERIAL when none
 * is probed), write the marker on success and check the root again, under
 * "attach". With $PROBE_REQUIRE_BITLOCKER=1 the checks run under
 * RequireBitLocker=yes. Exit 0, or 1 with the error on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drive.h"
#include "proto/util.h"

static json_t *
probe_json(const struct drive_probe *p)
{
	return json_pack("{s:s, s:b, s:b, s:s, s:s, s:b, s:b, s:s?, s:s?, s:I, s:I, s:s?}",
	                 "mount_point", p->mount_point, "is_mount_root", p->is_mount_root,
	                 "read_only", p->read_only, "fs_type", p->fs_type, "source", p->source,
	                 "is_ntfs", p->is_ntfs, "source_is_file", p->source_is_file, "disk",
	                 p->disk, "serial", p->serial, "total_bytes", (json_int_t)p->total_bytes,
	                 "free_bytes", (json_int_t)p->free_bytes, "bitlocker_device",
	                 p->bitlocker_device);
}

/* AddDrive's checks, the marker, and the foreign check once the marker is ours. */
static json_t *
attach_json(const struct drive_probe *p, const char *job)
{
	/* PROBE_SERIAL_DIRECTORY=1: what AddDrive asks with --serial (a directory allowed). */
	const char *serial_dir = getenv("PROBE_SERIAL_DIRECTORY");
	bool with_serial = serial_dir != NULL && strcmp(serial_dir, "1") == 0;
	struct drive_attach_args a = {
	    .job_name = job,
	    .serial = with_serial ? "DIR-SERIAL" : p->serial != NULL ? NULL : "TEST-SERIAL",
	    .allow_directory = with_serial,
	    .require_ntfs = true,
	    .require_bitlocker = getenv("PROBE_REQUIRE_BITLOCKER") != NULL &&
	                         strcmp(getenv("PROBE_REQUIRE_BITLOCKER"), "1") == 0,
	};
	struct drive_attach at = {0};
	char uuid[DRIVE_UUID_LEN + 1];
	_cleanup_free_ char *err = NULL;
	_cleanup_close_ int fd = -1;
	json_t *o;
	int r;

	if ((r = drive_attach_check(p->mount_point, &a, &at, &err)) < 0)
		return json_pack("{s:s, s:s}", "error", strerror(-r), "message", err);
	fd = open(p->mount_point, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	r = fd < 0 ? -errno : drive_marker_write(fd, job, at.serial, uuid);
	if (r < 0) {
		drive_attach_done(&at);
		return json_pack("{s:s, s:s}", "error", strerror(-r), "message", "marker write");
	}
	r = drive_check_foreign(fd, job, &err);
	o = json_pack("{s:n, s:s, s:I, s:I, s:s, s:i}", "error", "serial", at.serial, "capacity",
	              (json_int_t)at.capacity, "used_bytes", (json_int_t)at.used_bytes, "uuid",
	              uuid, "recheck", r);
	drive_attach_done(&at);
	return o;
}

int
main(int argc, char **argv)
{
	struct drive_probe p = {0};
	char *err = NULL;
	json_t *o;

	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: probe-drive PATH [JOB]\n");
		return 2;
	}
	if (drive_probe(argv[1], &p, &err) < 0) {
		fprintf(stderr, "probe-drive: %s\n", err);
		free(err);
		return 1;
	}
	o = probe_json(&p);
	if (o != NULL && argc == 3)
		json_object_set_new(o, "attach", attach_json(&p, argv[2]));
	if (o == NULL || json_dumpf(o, stdout, JSON_COMPACT) < 0)
		return 1;
	putchar('\n');
	json_decref(o);
	drive_probe_done(&p);
	return 0;
}
