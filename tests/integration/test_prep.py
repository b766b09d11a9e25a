"""Drive prep end to end: a mixed staging tree over two capacity-limited
directory drives; every file byte-identical on exactly one drive and in its
DriveManifest.xml with correct block MD5s; names Azure would refuse; a
staging file changed mid-copy."""
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, fail  # noqa: E402
import prepcheck  # noqa: E402

MiB = 1 << 20
CONF = "[Drives]\nRequireNTFS=no\n"


def mixed_tree(root):
    rnd = os.urandom
    files = {
        "db/full-backup.bak": rnd(13 * MiB + 12345),
        "db/diff-1.bak": rnd(4 * MiB),
        "empty.log": b"",
        "naïve/résumé.txt": b"unicode names\n",
        "日本/データ.bin": rnd(70000),
    }
    for i in range(300):
        files["docs/%02d/file-%03d.txt" % (i % 10, i)] = rnd(1 + (i * 37) % 16384)
    for rel, data in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    os.symlink("/etc/passwd", os.path.join(root, "docs", "passwd-link"))
    os.mkfifo(os.path.join(root, "a-fifo"))
    return files


def test_mixed(d):
    staging = os.path.join(d.tmp, "staging")
    files = mixed_tree(staging)
    d.ctl_json("job", "create", "mixed", "--staging", staging)
    job = prepcheck.wait_phase(d, "mixed", "indexed")
    check(job["files"] == len(files), "indexed %d of %d files" % (job["files"], len(files)))
    check(job["bytes"] == sum(len(v) for v in files.values()), "indexed bytes")
    kinds = {p["path"]: p["kind"] for p in job["problems"]}
    check(kinds.get("docs/passwd-link") == "skipped" and kinds.get("a-fifo") == "skipped",
          "symlink and fifo reported as skipped: %r" % job["problems"])
    p = d.ctl("job", "prepare", "mixed", check_rc=1)
    check("attach a drive" in p.stderr, "prepare without drives refused: %r" % p.stderr)

    drives = []
    for serial, cap in (("SEEDD-TEST-A", 12 * MiB), ("SEEDD-TEST-B", 64 * MiB)):
        path = os.path.join(d.tmp, serial)
        os.mkdir(path)
        drive = d.ctl_json("drive", "add", "mixed", path, "--serial", serial,
                           "--capacity", str(cap))
        check(drive["serial"] == serial and drive["capacity"] == cap, "drive added: %r" % drive)
        drives.append(path)
    p = d.ctl("drive", "add", "mixed", drives[0], "--serial", "SEEDD-TEST-A", check_rc=1)
    check("DriveRejected" in p.stderr, "same drive twice refused: %r" % p.stderr)
    foreign = os.path.join(d.tmp, "foreign")
    os.mkdir(foreign)
    open(os.path.join(foreign, "someone-elses.doc"), "w").close()
    p = d.ctl("drive", "add", "mixed", foreign, "--serial", "X1", check_rc=1)
    check("someone-elses.doc" in p.stderr, "foreign data refused, naming it: %r" % p.stderr)
    p = d.ctl("drive", "add", "mixed", foreign, "--serial", "X2", "--bitlocker-key-file",
              "/dev/null", check_rc=None)
    check(p.returncode != 0, "an empty BitLocker key is refused")

    plan = d.ctl_json("job", "plan", "mixed")
    check(plan["unplacedFiles"] == 0 and plan["drivesNeeded"] == 0, "plan places all: %r" %
          {k: plan[k] for k in ("unplacedFiles", "unplacedBytes", "drivesNeeded")})
    check(any("passwd-link" in n for n in plan["skipped"]) and
          not any("passwd-link" in n for n in plan["invalidNames"]),
          "plan lists skipped entries, apart from refused names: %r" % plan)
    placed = {f["path"]: f["drive"] for f in plan["files"]}
    check(placed["db/full-backup.bak"] == "SEEDD-TEST-B", "largest file to the roomiest drive")

    job = d.ctl_json("job", "prepare", "mixed")
    check(job["state"] == "drive_prep", "prepare enters drive_prep")
    job = prepcheck.wait_phase(d, "mixed", "awaiting-azure", timeout=120)
    check(job["copiedFiles"] == len(files) and job["verifiedFiles"] == len(files),
          "every file copied and verified: %r" % {k: job[k] for k in
                                                  ("copiedFiles", "verifiedFiles")})
    prepcheck.verify_drives(staging, "mixed", "seedd-import", files, job["drives"])
    check(not os.path.exists(os.path.join(drives[0], "mixed", "docs", "passwd-link")) and
          not os.path.exists(os.path.join(drives[1], "mixed", "docs", "passwd-link")),
          "the symlink is not copied")
    log = d.ctl_json("job", "log", "mixed")
    check(any("DriveManifest.xml written" in e["text"] for e in log), "manifest events logged")


def test_invalid_names(d):
    staging = os.path.join(d.tmp, "badnames")
    os.makedirs(staging)
    for name in ("ok.txt", "bad:name.txt", "trailing-dot."):
        open(os.path.join(staging, name), "w").write("x")
    d.ctl_json("job", "create", "badnames", "--staging", staging)
    job = prepcheck.wait_state(d, "badnames", "failed")
    check("2 file names" in (job["error"] or ""), "the error counts the offenders: %r" % job)
    paths = sorted(p["path"] for p in job["problems"] if p["kind"] == "invalid")
    check(paths == ["bad:name.txt", "trailing-dot."], "offenders listed: %r" % paths)
    texts = " ".join(e["text"] for e in d.ctl_json("job", "log", "badnames"))
    check("bad:name.txt" in texts, "offenders named in the log")
    p = d.ctl("job", "prepare", "badnames", check_rc=1)
    check("InvalidState" in p.stderr, "prepare blocked: %r" % p.stderr)
    os.rename(os.path.join(staging, "bad:name.txt"), os.path.join(staging, "good-name.txt"))
    os.remove(os.path.join(staging, "trailing-dot."))
    d.ctl_json("job", "retry", "badnames")
    job = prepcheck.wait_phase(d, "badnames", "indexed")
    check(job["files"] == 2 and job["problemCount"] == 0, "fixed names index: %r" % job)


def test_changed_mid_copy(d):
    staging = os.path.join(d.tmp, "changing")
    os.makedirs(staging)
    big = os.path.join(staging, "growing.bak")
    with open(big, "wb") as f:
        f.write(os.urandom(192 * MiB))
    d.ctl_json("job", "create", "changing", "--staging", staging)
    prepcheck.wait_phase(d, "changing", "indexed")
    drive = os.path.join(d.tmp, "drive-c")
    os.mkdir(drive)
    d.ctl_json("drive", "add", "changing", drive, "--serial", "SEEDD-TEST-C")
    d.ctl_json("job", "prepare", "changing")
    deadline = time.time() + 30
    while time.time() < deadline:
        job = d.ctl_json("job", "show", "changing")
        if job["copiedBytes"] > 0 or job["phase"] != "copying":
            break
        time.sleep(0.02)
    with open(big, "ab") as f:
        f.write(b"appended while seedd was copying")
    job = prepcheck.wait_phase(d, "changing", "awaiting-azure", timeout=120)
    data = open(big, "rb").read()
    check(job["bytes"] == len(data), "the job counts the new size")
    got = open(os.path.join(drive, "changing", "growing.bak"), "rb").read()
    check(hashlib.md5(got).digest() == hashlib.md5(data).digest(),
          "the drive holds the changed file, not a half-changed one")
    prepcheck.verify_drives(staging, "changing", "seedd-import", {"growing.bak": data},
                            job["drives"])
    texts = [e["text"] for e in d.ctl_json("job", "log", "changing")]
    check(any("growing.bak" in t and "changed while it was copied" in t for t in texts),
          "the job log names the changed file: %r" % texts)


def test_vanished(d):
    """A staging file deleted after indexing is reported as skipped, never a failed job."""
    staging = os.path.join(d.tmp, "vanish")
    files = {"keep-%d.bin" % i: os.urandom(3000) for i in range(3)}
    os.makedirs(staging)
    for rel, data in files.items():
        with open(os.path.join(staging, rel), "wb") as f:
            f.write(data)
    with open(os.path.join(staging, "gone.bin"), "wb") as f:
        f.write(b"x" * 5000)
    d.ctl_json("job", "create", "vanish", "--staging", staging)
    prepcheck.wait_phase(d, "vanish", "indexed")
    os.remove(os.path.join(staging, "gone.bin"))
    drive = os.path.join(d.tmp, "drive-v")
    os.mkdir(drive)
    d.ctl_json("drive", "add", "vanish", drive, "--serial", "SEEDD-TEST-V")
    d.ctl_json("job", "prepare", "vanish")
    job = prepcheck.wait_phase(d, "vanish", "awaiting-azure", timeout=60)
    check(job["files"] == 3, "the vanished file left the job: %r" % job["files"])
    check(any(p["path"] == "gone.bin" and "vanished" in (p["reason"] or "")
              for p in job["problems"]), "and is reported: %r" % job["problems"])
    texts = [e["text"] for e in d.ctl_json("job", "log", "vanish")]
    check(any("gone.bin" in t and "vanished" in t for t in texts),
          "the job log names the vanished file: %r" % texts)
    out = d.ctl("job", "show", "vanish", check_rc=0).stdout
    check("Problems:" in out and "gone.bin" in out and "skipped" in out,
          "job show lists the vanished file by path: %r" % out)
    prepcheck.verify_drives(staging, "vanish", "seedd-import", files, job["drives"])


def main():
    d = Daemon(CONF).start()
    try:
        test_mixed(d)
        test_invalid_names(d)
        test_changed_mid_copy(d)
        test_vanished(d)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    print("ok")


if __name__ == "__main__":
    main()
