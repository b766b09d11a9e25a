"""Drive space: a job that outgrows its drives waits in phase needs-drive
(naming the missing bytes) and continues when a drive is added; a real ENOSPC
on a small tmpfs moves the file to another drive (root only: a private mount
namespace)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, skip  # noqa: E402
import prepcheck  # noqa: E402

MiB = 1 << 20
CONF = "[Drives]\nRequireNTFS=no\n"
MARK = "SEEDD_TEST_IN_NAMESPACE"


def write_tree(root, files):
    for rel, data in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)


def test_needs_drive(d):
    staging = os.path.join(d.tmp, "staging-nd")
    files = {"a.bin": os.urandom(3 * MiB), "b.bin": os.urandom(3 * MiB),
             "c.bin": os.urandom(3 * MiB)}
    write_tree(staging, files)
    d.ctl_json("job", "create", "roomy", "--staging", staging)
    prepcheck.wait_phase(d, "roomy", "indexed")
    one = os.path.join(d.tmp, "nd-1")
    os.mkdir(one)
    d.ctl_json("drive", "add", "roomy", one, "--serial", "ND-1", "--capacity", str(4 * MiB))
    plan = d.ctl_json("job", "plan", "roomy")
    check(plan["unplacedFiles"] == 2 and plan["drivesNeeded"] >= 1,
          "the plan says what is missing: %r" % plan)
    d.ctl_json("job", "prepare", "roomy")
    job = prepcheck.wait_job(d, "roomy", lambda j: j["phase"].startswith("needs-drive"),
                             "needs-drive")
    check("6.0 MiB have no drive" in job["phase"] and "2 files" in job["phase"],
          "the phase names the missing bytes: %r" % job["phase"])
    two = os.path.join(d.tmp, "nd-2")
    os.mkdir(two)
    d.ctl_json("drive", "add", "roomy", two, "--serial", "ND-2", "--capacity", str(16 * MiB))
    job = prepcheck.wait_phase(d, "roomy", "awaiting-azure")
    prepcheck.verify_drives(staging, "roomy", "seedd-import", files, job["drives"])


# What a 1000-byte file costs a drive under the planner's default (plan.h): a 4 KiB
# cluster, 8 KiB of filesystem records, 768 bytes of manifest and one <Block> line.
SMALL_COST = 4096 + 8192 + 768 + 200
DRIVE_BASE = 64 * 1024


def test_room_counted(d):
    """Files placed after the plan (here: those the plan left waiting) count a
    drive's room as the planner does, by cost, not by their bytes: before,
    drive prep put all 200 small files on a drive the plan says holds 100."""
    staging = os.path.join(d.tmp, "staging-small")
    write_tree(staging, {"s/%03d" % i: os.urandom(1000) for i in range(200)})
    d.ctl_json("job", "create", "small", "--staging", staging)
    prepcheck.wait_phase(d, "small", "indexed")
    drive = os.path.join(d.tmp, "sm-1")
    os.mkdir(drive)
    cap = DRIVE_BASE + 100 * SMALL_COST + 1000
    d.ctl_json("drive", "add", "small", drive, "--serial", "SM-1", "--capacity", str(cap))
    plan = d.ctl_json("job", "plan", "small")
    check(plan["unplacedFiles"] == 100, "the plan places 100 of 200: %r" % plan["unplacedFiles"])
    d.ctl_json("job", "prepare", "small")
    job = prepcheck.wait_job(d, "small", lambda j: j["phase"].startswith("needs-drive") or
                             j["phase"] == "awaiting-azure", "needs-drive")
    check(job["phase"].startswith("needs-drive: 100 files"),
          "the 100 that do not fit wait for a drive: %r" % job["phase"])
    d.ctl_json("job", "cancel", "small")


def test_enospc(d):
    if os.environ.get(MARK) != "1":
        print("skip: ENOSPC case needs root and a private mount namespace")
        return
    staging = os.path.join(d.tmp, "staging-full")
    files = {"x/big-%d.bin" % i: os.urandom(5 * MiB) for i in range(3)}
    write_tree(staging, files)
    d.ctl_json("job", "create", "fills", "--staging", staging)
    prepcheck.wait_phase(d, "fills", "indexed")
    small = os.path.join(d.tmp, "tmpfs-drive")
    os.mkdir(small)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", small], check=True)
    d.ctl_json("drive", "add", "fills", small, "--serial", "TMPFS-1")
    big = os.path.join(d.tmp, "big-drive")
    os.mkdir(big)
    d.ctl_json("drive", "add", "fills", big, "--serial", "BIG-1", "--capacity", str(6 * MiB))
    # Someone fills the tmpfs after it was attached: the plan no longer holds.
    with open(os.path.join(small, "filler"), "wb") as f:
        f.write(b"\0" * (9 * MiB))
    d.ctl_json("job", "prepare", "fills")
    job = prepcheck.wait_job(d, "fills", lambda j: j["phase"] == "awaiting-azure" or
                             j["phase"].startswith("needs-drive"), "end of copying", 120)
    log = " ".join(e["text"] for e in d.ctl_json("job", "log", "fills"))
    check("TMPFS-1 is full" in log, "the full drive is reported: %r" % log[-500:])
    states = {dr["serial"]: dr["state"] for dr in job["drives"]}
    check(states["TMPFS-1"] in ("full", "manifest-written"), "drive states: %r" % states)
    if job["phase"].startswith("needs-drive"):
        extra = os.path.join(d.tmp, "extra-drive")
        os.mkdir(extra)
        d.ctl_json("drive", "add", "fills", extra, "--serial", "EXTRA-1")
        job = prepcheck.wait_phase(d, "fills", "awaiting-azure", 120)
    os.remove(os.path.join(small, "filler"))
    prepcheck.verify_drives(staging, "fills", "seedd-import", files, job["drives"])
    subprocess.run(["umount", small])


def main():
    if os.environ.get(MARK) != "1" and os.geteuid() == 0 and \
            subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0:
        env = dict(os.environ, **{MARK: "1"})
        sys.exit(subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                                 __file__], env=env).returncode)
    d = Daemon(CONF).start()
    try:
        test_needs_drive(d)
        test_room_counted(d)
        test_enospc(d)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    print("ok")


if __name__ == "__main__":
    main()
