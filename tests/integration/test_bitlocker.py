#!/usr/bin/env python3
"""Drive prep onto real BitLocker volumes, unlocked as operators do on Linux
without dm-crypt: dislocker-fuse gives the decrypted volume as a regular file,
ntfs-3g mounts that file (fs type "fuse", not "fuseblk"; DESIGN §3a).

For each of the two Windows-made volumes of reference/bitlocker/ (aes-cbc-128
and aes-xts-128): unlock it with its recovery password, make an NTFS inside
the decrypted view (the images' own NTFS is gone), mount it, attach it with
the recovery password as the BitLocker key, prepare a job with files of more
than one block, stop everything, then re-open the volume read-only with the
recovery password seedd stored (the one Azure gets) and check every file and
every block MD5 of the manifest there.

The NTFS made here ends before BitLocker's first metadata block inside the
volume: Windows keeps those blocks out of its NTFS (files in System Volume
Information), mkntfs cannot, and dislocker refuses every write that touches
them with EFAULT, buffered or O_DIRECT alike. A second case makes the NTFS
cover the whole volume and shows just that: a plain buffered write fails with
EFAULT, and seedd's job fails naming the cause instead of blaming O_DIRECT.

Needs root, /dev/fuse, dislocker (dislocker-fuse, dislocker-metadata), ntfs-3g,
mkntfs, tar with xz, and the archive at $SOURCE_ROOT/../shared/reference/
bitlocker/; exits 77 (skip) naming what is missing. Runs in a private mount
namespace; every mount is undone (lazily if need be) in finally blocks.
"""
import configparser
import errno
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import SEEDCTL, Daemon, check, fail, skip  # noqa: E402
import prepcheck  # noqa: E402

MiB = 1 << 20
MARK = "SEEDD_TEST_BITLOCKER_NS"
IMAGES = ("bitlk-aes-cbc-128", "bitlk-aes-xts-128")
CONTAINER = "seedd-import"
# Set by the lead at merge if the BitLocker password check (--bitlocker-device)
# lands: None means "ask seedctl drive add --help".
BITLOCKER_DEVICE_OPTION = None


def run(*argv, check_rc=True, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check_rc and p.returncode != 0:
        fail("%s failed (%d): %s%s" % (" ".join(argv), p.returncode, p.stdout, p.stderr))
    return p


def reference_dir():
    root = os.environ.get("SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")
    return os.path.normpath(os.path.join(root, "..", "shared", "reference", "bitlocker"))


def has_bitlocker_device_option():
    if BITLOCKER_DEVICE_OPTION is not None:
        return BITLOCKER_DEVICE_OPTION
    p = subprocess.run([SEEDCTL, "drive", "add", "--help"], capture_output=True, text=True)
    return "--bitlocker-device" in p.stdout + p.stderr


def config_text():
    """RequireNTFS stays on; RequireBitLocker=no only where the daemon knows the key."""
    conf = "[Drives]\nRequireNTFS=yes\n"
    man = os.path.join(os.environ.get("SOURCE_ROOT", "."), "man", "seedd.conf.5")
    try:
        if "RequireBitLocker" in open(man).read():
            conf += "RequireBitLocker=no\n"
    except OSError:
        pass
    return conf


class Mounts:
    """Mount points of this test, undone last-first (lazily if busy)."""

    def __init__(self):
        self.points = []

    def add(self, point):
        self.points.append(point)

    def undo(self):
        while self.points:
            point = self.points.pop()
            if run("umount", point, check_rc=False).returncode != 0:
                run("umount", "-l", point, check_rc=False)
            # The FUSE daemon behind it exits once unmounted; give it a moment.
            for _ in range(50):
                if not os.path.ismount(point):
                    break
                time.sleep(0.1)


def first_metadata_offset(img):
    """The lowest FVE metadata block offset inside the volume (dislocker-metadata)."""
    p = run("dislocker-metadata", "-V", img)
    offs = [int(m, 16) for m in re.findall(r"metadata header offset:\s+0x([0-9a-fA-F]+)",
                                           p.stdout + p.stderr)]
    check(offs, "dislocker-metadata shows the metadata offsets of %s" % img)
    return min(offs)


def unlock(img, password, dl, mounts, read_only=False):
    os.makedirs(dl, exist_ok=True)
    run("dislocker-fuse", "-V", img, "-p" + password, *(["-r"] if read_only else []), "--", dl)
    mounts.add(dl)
    vol = os.path.join(dl, "dislocker-file")
    check(os.path.isfile(vol), "dislocker shows %s" % vol)
    return vol


def mount_ntfs(vol, mnt, mounts, read_only=False):
    os.makedirs(mnt, exist_ok=True)
    run("ntfs-3g", "-o", "ro" if read_only else "windows_names", vol, mnt)
    mounts.add(mnt)


def mountinfo(mnt):
    """(fs type, source) of the mount at mnt."""
    found = (None, None)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[4] == mnt:
                found = (fields[sep + 1], fields[sep + 2])
    return found


def make_files(staging):
    rnd = os.urandom
    files = {
        "db/full.bak": rnd(9 * MiB + 12345),  # three blocks, the last short
        "db/exact.bak": rnd(4 * MiB),         # one whole block
        "db/over.bak": rnd(4 * MiB + 1),      # a block and a byte
        "logs/a.log": b"small file\n",
        "empty.txt": b"",
    }
    for rel, data in files.items():
        p = os.path.join(staging, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    return files


def add_drive(d, job, mnt, img, serial, key_file, check_rc=0):
    args = ["drive", "add", job, mnt]
    if has_bitlocker_device_option():
        args += ["--bitlocker-device", img]
    args += ["--serial", serial, "--bitlocker-key-file", key_file]
    if check_rc == 0:
        return d.ctl_json(*args)
    return d.ctl(*args, check_rc=None)


def stored_key(d, serial):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state, "seedd.db"), uri=True)
    try:
        rows = db.execute("SELECT s.value FROM secrets s JOIN drives d ON d.id = s.drive_id "
                          "WHERE d.serial = ? AND s.kind = 'bitlocker-key'", (serial,)).fetchall()
    finally:
        db.close()
    check(len(rows) == 1, "one BitLocker key stored for %s: %d" % (serial, len(rows)))
    v = rows[0][0]
    return (v.decode() if isinstance(v, bytes) else v).strip()


def daemon_in(tmp, name):
    path = os.path.join(tmp, name + "-seedd")
    os.makedirs(path)
    return Daemon(config_text(), tmp=path).start()


def prepare_on(tmp, name, img, rp):
    """Unlock, mkntfs (below the first metadata block), prepare a job; returns what to check."""
    dl, mnt = os.path.join(tmp, name + "-dl"), os.path.join(tmp, name + "-mnt")
    job, serial = "bl-" + name[-7:], "SEEDD-" + name.upper()
    mounts = Mounts()
    d = None
    try:
        vol = unlock(img, rp, dl, mounts)
        sectors = first_metadata_offset(img) // 4096 * 8 - 8
        run("mkntfs", "-F", "-Q", "-L", name, vol, str(sectors))
        mount_ntfs(vol, mnt, mounts)
        fstype, source = mountinfo(mnt)
        check(fstype == "fuse" and source == vol,
              "ntfs-3g on dislocker-file is a fuse mount of the file: %s %s" % (fstype, source))

        d = daemon_in(tmp, name)
        staging = os.path.join(d.tmp, "staging")
        files = make_files(staging)
        d.ctl_json("job", "create", job, "--staging", staging)
        prepcheck.wait_phase(d, job, "indexed")
        key_file = os.path.join(d.tmp, "rp.txt")
        with open(key_file, "w") as f:
            f.write(rp + "\n")
        p = d.ctl("drive", "add", job, mnt, "--bitlocker-key-file", key_file, check_rc=1)
        check("not from a disk" in p.stderr and "--serial" in p.stderr,
              "without --serial, the file-backed mount is refused saying why: %r" % p.stderr)
        drive = add_drive(d, job, mnt, img, serial, key_file)
        check(drive["serial"] == serial, "drive added: %r" % drive)
        d.ctl_json("job", "prepare", job)
        shown = prepcheck.wait_phase(d, job, "awaiting-azure", timeout=180)
        check(shown["verifiedFiles"] == len(files), "every file verified: %r" % shown)
        key = stored_key(d, serial)
        check(key == rp, "seedd stores the recovery password given")
        log = d.read_log()
        check(rp not in log, "the recovery password is not in the log")
        d.stop()
        d = None
    finally:
        if d is not None and d.alive():
            d.proc.kill()
        mounts.undo()
    return dl, mnt, job, staging, files, shown["drives"], key


def check_read_only(img, dl, mnt, job, staging, files, drives, key):
    """Re-open the volume as the datacenter does, with the stored key, and check it all."""
    mounts = Mounts()
    try:
        vol = unlock(img, key, dl, mounts, read_only=True)
        mount_ntfs(vol, mnt, mounts, read_only=True)
        check(os.path.exists(os.path.join(mnt, ".seedd-drive.json")), "marker on the volume")
        prepcheck.verify_drives(staging, job, CONTAINER, files, drives)
    finally:
        mounts.undo()


def test_image(tmp, name, img, rp):
    dl, mnt, job, staging, files, drives, key = prepare_on(tmp, name, img, rp)
    check_read_only(img, dl, mnt, job, staging, files, drives, key)
    print("ok: %s: prepared through dislocker + ntfs-3g, verified read-only" % name)


def test_ntfs_over_metadata(tmp, img, rp):
    """An NTFS over the whole decrypted view covers BitLocker's metadata blocks."""
    dl, mnt = os.path.join(tmp, "over-dl"), os.path.join(tmp, "over-mnt")
    mounts = Mounts()
    d = None
    try:
        vol = unlock(img, rp, dl, mounts)
        run("mkntfs", "-F", "-Q", vol)
        mount_ntfs(vol, mnt, mounts)
        d = daemon_in(tmp, "over")
        staging = os.path.join(d.tmp, "staging")
        os.makedirs(staging)
        with open(os.path.join(staging, "big.bin"), "wb") as f:
            f.write(os.urandom(80 * MiB))
        d.ctl_json("job", "create", "bl-over", "--staging", staging)
        prepcheck.wait_phase(d, "bl-over", "indexed")
        key_file = os.path.join(d.tmp, "rp.txt")
        with open(key_file, "w") as f:
            f.write(rp + "\n")
        p = add_drive(d, "bl-over", mnt, img, "SEEDD-OVER", key_file, check_rc=None)
        if p.returncode == 0:
            d.ctl_json("job", "prepare", "bl-over")
            error = prepcheck.wait_state(d, "bl-over", "failed", timeout=180)["error"] or ""
        else:
            error = p.stderr  # the O_DIRECT probe's test file met a metadata block
        print("note: %s" % error.strip())
        check("Bad address" in error and "BitLocker's metadata" in error,
              "the EFAULT is reported with its cause: %r" % error)
        d.stop()
        d = None
        # Not O_DIRECT's doing: plain buffered writes fail the same way.
        err = None
        try:
            with open(os.path.join(mnt, "plain.bin"), "wb") as f:
                for _ in range(90):
                    f.write(b"\xa5" * MiB)
                    f.flush()
        except OSError as e:
            err = e.errno
        check(err == errno.EFAULT, "a buffered write over the metadata fails with EFAULT: %r" %
              err)
    finally:
        if d is not None and d.alive():
            d.proc.kill()
        mounts.undo()
    print("ok: an NTFS over BitLocker's metadata: EFAULT, buffered too, reported as such")


def main():
    if os.geteuid() != 0:
        skip("not root")
    ref = reference_dir()
    archive = os.path.join(ref, "bitlocker-images.tar.xz")
    if not os.path.exists(archive):
        skip("no BitLocker images at %s" % archive)
    for tool in ("dislocker-fuse", "dislocker-metadata", "ntfs-3g", "mkntfs", "tar", "umount"):
        if shutil.which(tool) is None:
            skip("%s not installed (Debian: dislocker, ntfs-3g)" % tool)
    if not os.path.exists("/dev/fuse"):
        skip("no /dev/fuse")
    if os.environ.get(MARK) != "1":
        if run("unshare", "-m", "true", check_rc=False).returncode != 0:
            skip("cannot create a mount namespace")
        env = dict(os.environ, **{MARK: "1"})
        sys.exit(subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                                 __file__], env=env).returncode)

    with tempfile.TemporaryDirectory(prefix="seedd-bitlocker-") as tmp:
        run("tar", "-xJf", archive, "-C", tmp)
        conf = configparser.ConfigParser()
        conf.optionxform = str
        conf.read(os.path.join(tmp, "bitlocker", "images.conf"))
        for name in IMAGES:
            img = os.path.join(tmp, "bitlocker", name + ".img")
            check(os.path.exists(img) and name in conf, "%s in the archive" % name)
            test_image(tmp, name, img, conf[name]["RP"])
        # The volumes were written above: a fresh copy for the last case.
        run("tar", "-xJf", archive, "-C", tmp)
        test_ntfs_over_metadata(tmp, os.path.join(tmp, "bitlocker", IMAGES[1] + ".img"),
                                conf[IMAGES[1]]["RP"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
