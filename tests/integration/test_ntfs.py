#!/usr/bin/env python3
"""drive_probe() and AddDrive's checks on real filesystems on loop devices.

Each image is attached to a loop device and mounted inside a private mount
namespace (unshare), so nothing shows up in the host's mount table:
  - NTFS (mkntfs) on a whole loop device, mounted with ntfs-3g: fuseblk,
    is_ntfs, mount root, disk = the loop device; AddDrive's checks pass and
    write the marker, which then refuses another job; mounted read-only, the
    drive is refused;
  - NTFS in an image file, mounted with ntfs-3g straight on the file (as on
    dislocker's dislocker-file, tests/integration/test_bitlocker.py): fuse,
    is_ntfs by the boot sector, no disk and no serial;
  - NTFS in partition 1 of a loop device: disk = the loop device (partition
    walked up to its disk);
  - ext4: not NTFS, refused under RequireNTFS;
  - the NTFS loop device under RequireBitLocker=yes: no BitLocker volume under
    it (no dm-crypt mapping), refused naming --bitlocker-device;
  - the in-kernel ntfs3 driver, if this kernel has it.
Needs root, losetup, unshare, mkntfs, ntfs-3g, mkfs.ext4 and /dev/fuse; exits
77 (skip) naming what is missing. The probe helper (tests/unit/probe-drive) comes
as argv[1] or $PROBE_DRIVE.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

MIB = 1 << 20
IMAGE_SIZE = 64 * MIB
PART_START = 2048  # sectors
JOB = "ntfs-test-job"


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(77)


def run(*argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True)


class Loops:
    """Loop devices attached by this test, detached at the end."""

    def __init__(self):
        self.devs = []

    def attach(self, image, partscan=False):
        args = ["losetup", "--find", "--show"] + (["-P"] if partscan else []) + [image]
        p = run(*args, check=False)
        if p.returncode != 0:
            skip(f"no loop device: {p.stderr.strip()}")
        dev = p.stdout.strip()
        self.devs.append(dev)
        return dev

    def detach_all(self):
        for dev in self.devs:
            if os.path.exists(dev + "p1"):
                run("delpart", dev, "1", check=False)
            for _ in range(20):
                if run("losetup", "-d", dev, check=False).returncode == 0:
                    break
                time.sleep(0.1)


def probe(probe_drive, mount_argv, mnt, job=None, require_bitlocker=False, subdir=None):
    """Mount in a private namespace, run probe-drive (on subdir of the mount,
    made there, with --serial as AddDrive passes it, if given), unmount;
    return its JSON."""
    script = '''
mnt=$1; probe=$2; job=$3; sub=$4; shift 4
"$@" >&2 || exit 90
target=$mnt
if [ -n "$sub" ]; then target=$mnt/$sub; mkdir -p "$target" || exit 92; fi
"$probe" "$target" $job; rc=$?
[ -z "$sub" ] || rmdir "$target"
umount "$mnt" || rc=91
exit $rc
'''
    argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
            mnt, probe_drive, job or "", subdir or ""] + mount_argv
    env = dict(os.environ, PROBE_REQUIRE_BITLOCKER="1" if require_bitlocker else "0",
               PROBE_SERIAL_DIRECTORY="1" if subdir else "0")
    p = subprocess.run(argv, capture_output=True, text=True, env=env)
    if p.returncode == 90:
        raise AssertionError(f"mount {mount_argv} failed: {p.stderr.strip()}")
    assert p.returncode == 0, f"probe-drive failed ({p.returncode}): {p.stderr.strip()}"
    return json.loads(p.stdout)


def expect(cond, what, got):
    if not cond:
        raise AssertionError(f"{what}: got {json.dumps(got)}")


def make_image(path, mbr_partition=False):
    with open(path, "wb") as f:
        f.truncate(IMAGE_SIZE)
        if mbr_partition:
            sectors = IMAGE_SIZE // 512 - PART_START
            mbr = bytearray(512)
            mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x07, b"\0\0\0",
                                       PART_START, sectors)
            mbr[510:512] = b"\x55\xaa"
            f.seek(0)
            f.write(mbr)


def partition_node(dev):
    """dev's partition 1: the kernel's scan, else added by hand (kernels without MBR support)."""
    node = dev + "p1"
    for _ in range(20):
        if os.path.exists(node):
            return node
        time.sleep(0.1)
    sectors = IMAGE_SIZE // 512 - PART_START
    if run("addpart", dev, "1", str(PART_START), str(sectors), check=False).returncode != 0:
        return None
    for _ in range(20):
        if os.path.exists(node):
            return node
        time.sleep(0.1)
    return None


def check_ntfs_probe(j, dev, mnt):
    expect(j["is_ntfs"], "is_ntfs", j)
    expect(j["fs_type"].startswith("fuse"), "fs_type fuseblk", j)
    expect(j["is_mount_root"], "is_mount_root", j)
    expect(j["mount_point"] == os.path.realpath(mnt), "mount_point", j)
    expect(j["source"] == dev, "source", j)
    expect(60 * MIB < j["total_bytes"] <= IMAGE_SIZE, "total_bytes", j)
    expect(0 < j["free_bytes"] <= j["total_bytes"], "free_bytes", j)


def test_ntfs_whole(tmp, loops, probe_drive, mnt):
    img = os.path.join(tmp, "ntfs.img")
    make_image(img)
    dev = loops.attach(img)
    run("mkntfs", "-F", "-Q", "-L", "seedd-test", dev)
    ntfs3g = ["ntfs-3g", "-o", "windows_names", dev, mnt]

    j = probe(probe_drive, ntfs3g, mnt, JOB)
    check_ntfs_probe(j, dev, mnt)
    expect(not j["read_only"], "read_only", j)
    expect(j["disk"] == dev, "disk", j)
    a = j["attach"]
    expect(a["error"] is None, "attach", j)
    expect(a["used_bytes"] == 0 and a["capacity"] == j["free_bytes"], "capacity", j)
    expect(len(a["uuid"]) == 32 and a["recheck"] == 0, "marker", j)

    j = probe(probe_drive, ntfs3g, mnt, "other-job")
    expect(j["attach"]["error"] is not None and JOB in j["attach"]["message"],
           "another job is refused", j)
    j = probe(probe_drive, ntfs3g, mnt, JOB)
    expect(j["attach"]["error"] is None, "our own drive again", j)

    expect(j["bitlocker_device"] is None, "no BitLocker volume under a plain loop device", j)
    j = probe(probe_drive, ntfs3g, mnt, JOB, require_bitlocker=True)
    msg = j["attach"].get("message") or ""
    expect("not on a BitLocker volume" in msg and "--bitlocker-device" in msg,
           "RequireBitLocker=yes refuses NTFS without BitLocker", j)

    # A plain directory on the NTFS volume, with --serial: not a drive under
    # RequireNTFS=yes (issue 11).
    j = probe(probe_drive, ntfs3g, mnt, JOB, subdir="plain-dir")
    msg = j["attach"].get("message") or ""
    expect(j["is_ntfs"] and not j["is_mount_root"], "a directory on NTFS", j)
    expect("not the root of a mounted filesystem" in msg and "RequireNTFS=no" in msg,
           "--serial does not admit a directory under RequireNTFS=yes", j)

    j = probe(probe_drive, ["ntfs-3g", "-o", "ro", dev, mnt], mnt, JOB)
    expect(j["read_only"] and j["is_ntfs"], "read-only probe", j)
    expect("read-only" in (j["attach"].get("message") or ""), "read-only refused", j)
    print(f"ok: ntfs-3g on {dev}")


def test_ntfs_file(tmp, probe_drive, mnt):
    """ntfs-3g straight on a regular file, as on dislocker's dislocker-file: "fuse"."""
    img = os.path.join(tmp, "file.img")
    make_image(img)
    run("mkntfs", "-F", "-Q", img)
    j = probe(probe_drive, ["ntfs-3g", "-o", "windows_names", img, mnt], mnt, JOB)
    expect(j["fs_type"] == "fuse" and j["source"] == img, "a fuse mount of the file", j)
    expect(j["is_ntfs"] and j["source_is_file"], "NTFS by the file's boot sector", j)
    expect(j["disk"] is None and j["serial"] is None, "no disk, no serial", j)
    expect(j["is_mount_root"] and not j["read_only"], "mount root, writable", j)
    expect(j["attach"]["error"] is None, "attachable with a given serial", j)
    print(f"ok: ntfs-3g on the image file {img}")


def test_ntfs_partition(tmp, loops, probe_drive, mnt):
    img = os.path.join(tmp, "part.img")
    make_image(img, mbr_partition=True)
    dev = loops.attach(img, partscan=True)
    part = partition_node(dev)
    if part is None:
        print(f"note: no partition node for {dev}; partition case skipped")
        return
    run("mkntfs", "-F", "-Q", part)
    j = probe(probe_drive, ["ntfs-3g", part, mnt], mnt)
    check_ntfs_probe(j, part, mnt)
    expect(j["disk"] == dev, "disk of a partition", j)
    print(f"ok: ntfs-3g on {part}, disk {dev}")


def test_ext4(tmp, loops, probe_drive, mnt):
    img = os.path.join(tmp, "ext4.img")
    make_image(img)
    run("mkfs.ext4", "-q", "-F", img)
    dev = loops.attach(img)
    j = probe(probe_drive, ["mount", "-t", "ext4", dev, mnt], mnt, JOB)
    expect(not j["is_ntfs"], "ext4 is not NTFS", j)
    expect(j["fs_type"] == "ext4" and j["is_mount_root"], "fs_type ext4", j)
    expect(j["disk"] == dev, "disk", j)
    expect("not NTFS but ext4" in (j["attach"].get("message") or ""), "RequireNTFS", j)
    print(f"ok: ext4 on {dev}")


def test_ntfs3(tmp, loops, probe_drive, mnt):
    with open("/proc/filesystems") as f:
        if not any(line.split()[-1] == "ntfs3" for line in f if line.strip()):
            print("note: no ntfs3 in this kernel; ntfs3 case skipped")
            return
    img = os.path.join(tmp, "ntfs3.img")
    make_image(img)
    dev = loops.attach(img)
    run("mkntfs", "-F", "-Q", dev)
    j = probe(probe_drive, ["mount", "-t", "ntfs3", dev, mnt], mnt)
    expect(j["is_ntfs"] and j["fs_type"] == "ntfs3", "ntfs3", j)
    print(f"ok: ntfs3 on {dev}")


def main():
    probe_drive = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PROBE_DRIVE")
    if not probe_drive or not os.access(probe_drive, os.X_OK):
        print("probe-drive helper not given (argv[1] or PROBE_DRIVE)", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        skip("not root")
    for tool in ("losetup", "unshare", "mkntfs", "ntfs-3g", "mkfs.ext4", "addpart", "delpart"):
        if shutil.which(tool) is None:
            skip(f"{tool} not installed (Debian: ntfs-3g, util-linux, e2fsprogs)")
    if not os.path.exists("/dev/fuse"):
        skip("no /dev/fuse")
    if not os.path.exists("/dev/loop-control"):
        skip("no loop devices")
    if run("unshare", "--mount", "--propagation", "private", "true", check=False).returncode:
        skip("cannot create a mount namespace")

    loops = Loops()
    with tempfile.TemporaryDirectory(prefix="seedd-ntfs-") as tmp:
        mnt = os.path.join(tmp, "mnt")
        os.mkdir(mnt)
        try:
            test_ntfs_whole(tmp, loops, probe_drive, mnt)
            test_ntfs_file(tmp, probe_drive, mnt)
            test_ntfs_partition(tmp, loops, probe_drive, mnt)
            test_ext4(tmp, loops, probe_drive, mnt)
            test_ntfs3(tmp, loops, probe_drive, mnt)
        finally:
            loops.detach_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
