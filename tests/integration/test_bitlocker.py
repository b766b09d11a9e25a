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

The recovery password is checked by seedd against the volume at `drive add`
(libcryptsetup, --bitlocker-device naming the image dislocker opened, under the
default RequireBitLocker=yes): the right one is taken and the volume's GUID and
cipher are recorded and shown; another volume's password is refused naming the
key file and the device, also when it replaces the key of an attached drive; a
dislocker mount without --bitlocker-device, an NTFS that is not on BitLocker
and a directory are refused; with RequireNTFS=no or RequireBitLocker=no the
check is skipped and the job log says so. Where the kernel has dm-crypt,
`cryptsetup open --type bitlk` + ntfs-3g (fuseblk on /dev/mapper) is found
through device-mapper without --bitlocker-device; else that case is skipped,
saying why.

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
import json
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
# The BitLocker password check (--bitlocker-device) is in seedctl; None would
# mean "ask seedctl drive add --help".
BITLOCKER_DEVICE_OPTION = True


def run(*argv, check_rc=True, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check_rc and p.returncode != 0:
        fail("%s failed (%d): %s%s" % (" ".join(argv), p.returncode, p.stdout, p.stderr))
    return p


def reference_dir():
    """shared/reference/bitlocker next to the source tree, or next to its parent (worktrees)."""
    root = os.environ.get("SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")
    found = None
    for up in ("..", os.path.join("..", "..")):
        found = os.path.normpath(os.path.join(root, up, "shared", "reference", "bitlocker"))
        if os.path.isdir(found):
            break
    return found


def has_bitlocker_device_option():
    if BITLOCKER_DEVICE_OPTION is not None:
        return BITLOCKER_DEVICE_OPTION
    p = subprocess.run([SEEDCTL, "drive", "add", "--help"], capture_output=True, text=True)
    return "--bitlocker-device" in p.stdout + p.stderr


def config_text(extra=""):
    """The defaults that matter here: RequireNTFS=yes, RequireBitLocker=yes."""
    return "[Drives]\nRequireNTFS=yes\n" + extra


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
    if img is not None and has_bitlocker_device_option():
        args += ["--bitlocker-device", img]
    args += ["--serial", serial]
    if key_file is not None:
        args += ["--bitlocker-key-file", key_file]
    if check_rc == 0:
        return d.ctl_json(*args)
    return d.ctl(*args, check_rc=None)


def write_key(path, key):
    with open(path, "w") as f:
        f.write(key + "\n")
    return path


def job_log(d, job):
    return [e["text"] for e in d.ctl_json("job", "log", job)]


def check_refused(p, what, *needles):
    text = p.stderr
    check(p.returncode == 1 and "DriveRejected" in text, "%s is refused: %d %r" %
          (what, p.returncode, text))
    for n in needles:
        check(n in text, "%s: the refusal names %r: %r" % (what, n, text))


def check_password(d, job, mnt, img, serial, rp, wrong, meta):
    """At drive add: the wrong password refused, the right one checked and the volume shown."""
    wrong_file = write_key(os.path.join(d.tmp, "other-volume-rp.txt"), wrong)
    key_file = write_key(os.path.join(d.tmp, "rp.txt"), rp)
    p = add_drive(d, job, mnt, None, serial, key_file, check_rc=None)
    check_refused(p, "a dislocker mount without --bitlocker-device", "--bitlocker-device",
                  "RequireBitLocker=yes")
    t0 = time.monotonic()
    p = add_drive(d, job, mnt, img, serial, wrong_file, check_rc=None)
    t_wrong = time.monotonic() - t0
    check_refused(p, "another volume's recovery password", wrong_file, img, "does not open",
                  meta["GUID"])
    check(wrong not in p.stderr + p.stdout, "the refused password is not echoed")
    check(d.ctl_json("drive", "list", job) == [], "nothing recorded for a refused drive")

    # Attached without a key: the volume is loaded, nothing checked yet (said so).
    drive = add_drive(d, job, mnt, img, serial, None)
    bl = drive.get("bitlocker")
    check(bl == {"device": img, "guid": meta["GUID"], "cipher": meta["CIPHER"]},
          "the volume is recorded: %r" % drive)
    check(any("no recovery password given yet" in t for t in job_log(d, job)),
          "the log says no password was checked yet")
    # The key given later for the attached drive is checked against that volume.
    p = d.ctl("drive", "add", job, mnt, "--serial", serial, "--bitlocker-key-file", wrong_file,
              check_rc=None)
    check_refused(p, "a wrong key for the attached drive", wrong_file, img)
    t0 = time.monotonic()
    drive = add_drive(d, job, mnt, None, serial, key_file)
    t_right = time.monotonic() - t0
    check(drive["serial"] == serial and drive["bitlocker"] == bl, "key stored: %r" % drive)
    check(any("checked against its BitLocker volume" in t for t in job_log(d, job)),
          "the log says the key was checked")
    print("note: %s: drive add with a wrong password took %.2f s, the key check %.2f s" %
          (meta["CIPHER"], t_wrong, t_right))

    listed = d.ctl_json("drive", "list", job)
    check(listed[0]["bitlocker"] == bl, "drive list --json shows the volume: %r" % listed)
    human = d.ctl("drive", "list", job, check_rc=0).stdout
    check(meta["GUID"] in human and meta["CIPHER"] in human and img in human,
          "drive list shows device, GUID and cipher: %r" % human)
    cbc = "AES-CBC" in " ".join(job_log(d, job))
    check(cbc == ("cbc" in meta["CIPHER"]), "AES-CBC warned only for CBC: %r" % job_log(d, job))
    if cbc:
        check("Azure's docs are unclear" in d.read_log(), "the journal warns about AES-CBC")
    rep = d.ctl_json("job", "report", job)
    check(rep["job"]["drives"][0]["bitlocker"] == bl, "the report carries the volume")
    check(rp not in json.dumps(rep) and rp not in human, "the key is in no output")
    return key_file


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


def prepare_on(tmp, name, img, rp, wrong, meta):
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
        key_file = write_key(os.path.join(d.tmp, "rp.txt"), rp)
        p = d.ctl("drive", "add", job, mnt, "--bitlocker-key-file", key_file, check_rc=1)
        check("not from a disk" in p.stderr and "--serial" in p.stderr,
              "without --serial, the file-backed mount is refused saying why: %r" % p.stderr)
        check_password(d, job, mnt, img, serial, rp, wrong, meta)
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


def test_image(tmp, name, img, rp, wrong, meta):
    dl, mnt, job, staging, files, drives, key = prepare_on(tmp, name, img, rp, wrong, meta)
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
        key_file = write_key(os.path.join(d.tmp, "rp.txt"), rp)
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


def test_not_bitlocker(tmp, rp):
    """Under RequireBitLocker=yes: an NTFS without BitLocker, and a directory, are refused."""
    plain, mnt = os.path.join(tmp, "plain-ntfs.img"), os.path.join(tmp, "plain-mnt")
    with open(plain, "wb") as f:
        f.truncate(64 * MiB)
    run("mkntfs", "-F", "-Q", plain)
    mounts = Mounts()
    d = None
    try:
        mount_ntfs(plain, mnt, mounts)
        d = daemon_in(tmp, "plain")
        staging = os.path.join(d.tmp, "staging")
        make_files(staging)
        d.ctl_json("job", "create", "bl-plain", "--staging", staging)
        prepcheck.wait_phase(d, "bl-plain", "indexed")
        key_file = write_key(os.path.join(d.tmp, "rp.txt"), rp)
        p = add_drive(d, "bl-plain", mnt, None, "SEEDD-PLAIN", key_file, check_rc=None)
        check_refused(p, "NTFS on a file without BitLocker", "not on a BitLocker volume",
                      "RequireBitLocker=yes")
        p = add_drive(d, "bl-plain", mnt, plain, "SEEDD-PLAIN", key_file, check_rc=None)
        check_refused(p, "an NTFS image named as the BitLocker device", plain,
                      "is not a BitLocker volume")
        empty = os.path.join(d.tmp, "dir-drive")
        os.makedirs(empty)
        p = add_drive(d, "bl-plain", empty, None, "SEEDD-DIR", key_file, check_rc=None)
        check_refused(p, "a directory under the defaults", "not NTFS")
        check(d.ctl_json("drive", "list", "bl-plain") == [], "no drive recorded")
        d.stop()
        d = None
    finally:
        if d is not None and d.alive():
            d.proc.kill()
        mounts.undo()
    print("ok: drives not on BitLocker are refused under RequireBitLocker=yes")


def test_skipped(tmp):
    """Directory drives: RequireNTFS=no or RequireBitLocker=no skip the check, said in the log."""
    for name, conf, why in (
            ("skipntfs", "[Drives]\nRequireNTFS=no\n", "RequireNTFS=no"),
            ("skipbl", "[Drives]\nRequireNTFS=no\nRequireBitLocker=no\n",
             "RequireBitLocker=no")):
        path = os.path.join(tmp, name + "-seedd")
        os.makedirs(path)
        d = Daemon(conf, tmp=path).start()
        try:
            staging = os.path.join(d.tmp, "staging")
            make_files(staging)
            drive_dir = os.path.join(d.tmp, "drive")
            os.makedirs(drive_dir)
            d.ctl_json("job", "create", "bl-" + name, "--staging", staging)
            prepcheck.wait_phase(d, "bl-" + name, "indexed")
            drive = d.ctl_json("drive", "add", "bl-" + name, drive_dir, "--serial", "DIR-1")
            check(drive.get("bitlocker") is None, "nothing recorded when skipped: %r" % drive)
            log = job_log(d, "bl-" + name)
            check(any("BitLocker check skipped (%s" % why in t for t in log),
                  "the job log says the check was skipped (%s): %r" % (why, log))
            check("BitLocker check skipped (%s" % why in d.read_log(), "and the journal")
            human = d.ctl("drive", "list", "bl-" + name, check_rc=0).stdout
            check("DIR-1" in human and " - " in human, "drive list shows '-': %r" % human)
            d.stop()
        finally:
            if d.alive():
                d.proc.kill()
    print("ok: RequireNTFS=no and RequireBitLocker=no skip the check and say so")


def dm_crypt_missing():
    """Why `cryptsetup open --type bitlk` cannot work here, or None."""
    if shutil.which("cryptsetup") is None:
        return "cryptsetup not installed (Debian: cryptsetup-bin)"
    if not os.path.exists("/dev/mapper/control"):
        return "no device-mapper in this kernel (/dev/mapper/control missing)"
    return None  # dm-crypt itself: cryptsetup open says if it is missing


def test_cryptsetup_bitlk(tmp, img, rp, wrong, meta):
    """cryptsetup open --type bitlk + ntfs-3g (fuseblk): found through device-mapper."""
    why = dm_crypt_missing()
    if why is not None:
        print("skip: cryptsetup bitlk + ntfs-3g on /dev/mapper: %s" % why)
        return False
    name, mnt = "seedd-test-bitlk", os.path.join(tmp, "dm-mnt")
    p = subprocess.run(["cryptsetup", "open", "--type", "bitlk", "--key-file=-", img, name],
                       input=rp, capture_output=True, text=True)
    if p.returncode != 0:
        print("skip: cryptsetup bitlk + ntfs-3g on /dev/mapper: cryptsetup open failed: %s" %
              p.stderr.strip())
        return False
    mapper = "/dev/mapper/" + name
    mounts = Mounts()
    d = None
    try:
        sectors = first_metadata_offset(img) // 4096 * 8 - 8
        run("mkntfs", "-F", "-Q", mapper, str(sectors))
        mount_ntfs(mapper, mnt, mounts)
        fstype, source = mountinfo(mnt)
        check(fstype == "fuseblk", "ntfs-3g on the dm-crypt device is fuseblk: %s" % fstype)
        d = daemon_in(tmp, "dm")
        staging = os.path.join(d.tmp, "staging")
        make_files(staging)
        d.ctl_json("job", "create", "bl-dm", "--staging", staging)
        prepcheck.wait_phase(d, "bl-dm", "indexed")
        wrong_file = write_key(os.path.join(d.tmp, "wrong.txt"), wrong)
        p = add_drive(d, "bl-dm", mnt, None, "SEEDD-DM", wrong_file, check_rc=None)
        check_refused(p, "a wrong password on a cryptsetup mapping", wrong_file,
                      "does not open")
        key_file = write_key(os.path.join(d.tmp, "rp.txt"), rp)
        drive = add_drive(d, "bl-dm", mnt, None, "SEEDD-DM", key_file)
        bl = drive.get("bitlocker") or {}
        check(bl.get("guid") == meta["GUID"] and bl.get("device", "").startswith("/dev/loop"),
              "the BitLocker device found through dm slaves: %r" % drive)
        d.stop()
        d = None
    finally:
        if d is not None and d.alive():
            d.proc.kill()
        mounts.undo()
        run("cryptsetup", "close", name, check_rc=False)
    print("ok: cryptsetup bitlk + ntfs-3g (fuseblk) found through device-mapper")
    return True


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
        test_skipped(tmp)
        test_not_bitlocker(tmp, conf[IMAGES[0]]["RP"])
        test_cryptsetup_bitlk(tmp, os.path.join(tmp, "bitlocker", IMAGES[1] + ".img"),
                              conf[IMAGES[1]]["RP"], conf[IMAGES[0]]["RP"], conf[IMAGES[1]])
        for i, name in enumerate(IMAGES):
            img = os.path.join(tmp, "bitlocker", name + ".img")
            check(os.path.exists(img) and name in conf, "%s in the archive" % name)
            other = conf[IMAGES[1 - i]]["RP"]  # well-formed, of the other volume
            test_image(tmp, name, img, conf[name]["RP"], other, conf[name])
        # The volumes were written above: a fresh copy for the last case.
        run("tar", "-xJf", archive, "-C", tmp)
        test_ntfs_over_metadata(tmp, os.path.join(tmp, "bitlocker", IMAGES[1] + ".img"),
                                conf[IMAGES[1]]["RP"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
