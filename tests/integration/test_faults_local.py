"""Local faults in the middle of drive prep, and what the operator sees
(issue 11, point 8): a drive that returns EIO part way through a write and a
drive that vanishes (tests/integration/faultfs.py, a FUSE passthrough); the
state directory's file system full during a copy and during a transition,
and the database made read-only (a small tmpfs under the state dir). Each
ends with the job failed or seedd stopped naming the cause, the database
intact, and after the fault is gone (and `job retry` or a restart) the job
finishing with every file on the drive once, byte for byte, and no file
that was verified before the fault written again.

Root only: a private mount namespace (unshare -m) for the tmpfs and FUSE
mounts; FUSE needs /dev/fuse and Debian's python3-fusepy."""
import json
import os
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, fail, skip  # noqa: E402
import prepcheck  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
CONF = "[Drives]\nRequireNTFS=no\n"
MARK = "SEEDD_TEST_IN_NAMESPACE"
SYS_PYTHON = "/usr/bin/python3"  # Debian's, which has python3-fusepy
FAULTFS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faultfs.py")
STATE_SIZE = "24m"


class FaultDrive:
    """A faultfs mount over a backing directory; set() changes its mode."""

    def __init__(self, tmp, name):
        base = os.path.join(tmp, "ffs-" + name)
        self.backing, self.path = base + "-backing", base
        self.control, self.log = base + ".control", base + ".log"
        os.makedirs(self.backing)
        os.makedirs(self.path)
        self.stamp = 0
        self.set({"mode": "ok"})
        self.start()

    def set(self, mode):
        with open(self.control, "w") as f:
            json.dump(mode, f)
        self.stamp += 1  # a distinct mtime, however fast the calls come
        os.utime(self.control, ns=(self.stamp * 10**9, self.stamp * 10**9))

    def lines(self):
        with open(self.log) as f:
            return f.read().splitlines()

    def start(self):
        err = self.path + ".err"
        self.proc = subprocess.Popen([SYS_PYTHON, FAULTFS, self.backing, self.path,
                                      self.control, self.log],
                                     stdout=subprocess.DEVNULL, stderr=open(err, "a"))
        deadline = time.time() + 10
        while not os.path.ismount(self.path):
            if self.proc.poll() is not None or time.time() > deadline:
                fail("faultfs did not mount: %s" % open(err).read())
            time.sleep(0.02)

    def crash(self):
        """The FUSE process dies (as dislocker or ntfs-3g might, or when the
        disk under them is pulled): every call on the mount is ENOTCONN."""
        self.proc.kill()
        self.proc.wait(10)

    def stop(self):
        subprocess.run(["umount", "-l", self.path], capture_output=True)
        self.proc.terminate()
        self.proc.wait(10)


def staged(d, name, n_small=40, big=0, n_mid=0):
    """Small files are copied in synced groups, mid-sized ones (over 1 MiB)
    one by one, each committed as it is verified."""
    staging = os.path.join(d.tmp, "staging-" + name)
    files = {"docs/%02d/f-%03d.bin" % (i % 4, i): os.urandom(20 * KiB + i * 997)
             for i in range(n_small)}
    files.update({"mid/m-%02d.bin" % i: os.urandom(MiB + 4 * KiB * (i + 1))
                  for i in range(n_mid)})
    if big:
        files["db/full.bak"] = os.urandom(big)
    for rel, data in files.items():
        p = os.path.join(staging, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    d.ctl_json("job", "create", name, "--staging", staging)
    prepcheck.wait_phase(d, name, "indexed")
    return staging, files


def db_rows(d, sql, *args):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state, "seedd.db"), uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def verified_paths(d, name):
    return {r[0] for r in db_rows(d, "SELECT f.rel_path FROM files f JOIN jobs j ON "
                                     "j.id = f.job_id WHERE j.name = ? AND f.state = "
                                     "'verified'", name)}


def db_intact(d):
    check(db_rows(d, "PRAGMA integrity_check")[0][0] == "ok", "the database is intact")


def written_after(drive, name, mark):
    """Staging paths a drive file was opened for writing for, after log line `mark`."""
    out = set()
    for line in drive.lines()[mark:]:
        if line.startswith("open-w /%s/" % name):
            rel = line.split(" ", 1)[1][len(name) + 2:]
            out.add(rel[:-len(".seedd-tmp")] if rel.endswith(".seedd-tmp") else rel)
    return out


def wait_copying(d, name, at_least=1, timeout=60):
    return prepcheck.wait_job(d, name, lambda j: j["verifiedFiles"] >= at_least or
                              j["state"] != "drive_prep" or j["phase"] != "copying",
                              "some files verified", timeout)


def finish_and_check(d, name, staging, files, drive, before, mark):
    job = prepcheck.wait_phase(d, name, "awaiting-azure", 120)
    prepcheck.verify_drives(staging, name, "seedd-import", files, job["drives"])
    again = written_after(drive, name, mark) & before
    check(not again, "%s: files verified before the fault were written again: %r" %
          (name, sorted(again)[:5]))
    db_intact(d)
    return job


def test_drive_eio(d):
    """A write fails with EIO part way through a file: the job fails naming the
    file, the drive and the error; `job retry` finishes it."""
    name = "eio"
    staging, files = staged(d, name, big=9 * MiB)
    drive = FaultDrive(d.tmp, name)
    d.ctl_json("drive", "add", name, drive.path, "--serial", "FAULT-EIO")
    drive.set({"mode": "eio", "after": 9 * MiB + 600 * KiB})
    d.ctl_json("job", "prepare", name)
    job = prepcheck.wait_state(d, name, "failed", 60)
    err = job["error"] or ""
    print("# eio: %s" % err, flush=True)
    check(any(l.startswith("fault EIO write") for l in drive.lines()), "the EIO was injected")
    check("Input/output error" in err and "FAULT-EIO" in err and drive.path in err and
          "copying " in err and "seedctl job retry" in err,
          "the error names the copy, the drive, EIO and the way on: %r" % err)
    text = d.ctl("job", "show", name, check_rc=0).stdout
    check("Input/output error" in text, "seedctl job show prints the error:\n%s" % text)
    before = verified_paths(d, name)
    check(before, "some files were verified before the fault")
    db_intact(d)
    mark = len(drive.lines())
    drive.set({"mode": "ok"})
    d.ctl_json("job", "retry", name)
    state = d.ctl_json("job", "show", name)["state"]
    check(state == "drive_prep", "the retry resumes the failed step, drive prep: %r" % state)
    finish_and_check(d, name, staging, files, drive, before, mark)
    drive.stop()


def test_drive_vanished(d):
    """The drive goes away mid-copy (every call ENODEV): the job fails naming the
    drive; once it is back, `job retry` finishes without re-copying."""
    name = "gone"
    staging, files = staged(d, name, n_small=120)
    drive = FaultDrive(d.tmp, name)
    d.ctl_json("drive", "add", name, drive.path, "--serial", "FAULT-GONE")
    drive.set({"mode": "vanished", "after": 1 * MiB})
    d.ctl_json("job", "prepare", name)
    job = prepcheck.wait_job(d, name, lambda j: j["state"] != "drive_prep" or
                             j["phase"] != "copying", "the end of copying", 60)
    err = job["error"] or ""
    print("# vanished: %s / %s: %s" % (job["state"], job["phase"], err), flush=True)
    check(job["state"] == "failed", "a vanished drive fails the job: %r" % job)
    check("FAULT-GONE" in err and "No such device" in err and "drive is gone" in err,
          "the error names the drive and the cause: %r" % err)
    before = verified_paths(d, name)
    db_intact(d)
    mark = len(drive.lines())
    drive.set({"mode": "ok"})
    d.ctl_json("job", "retry", name)
    finish_and_check(d, name, staging, files, drive, before, mark)
    drive.stop()


def index_many(d):
    """A job over 3000 empty files: rows enough to outgrow any log left."""
    staging = os.path.join(d.tmp, "staging-many")
    for i in range(3000):
        p = os.path.join(staging, "d%02d" % (i % 30), "e-%04d" % i)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        open(p, "w").close()
    d.ctl("job", "create", "many", "--staging", staging)


def wait_paused(drive, timeout=30):
    deadline = time.time() + timeout
    while not any(l.startswith("paused ") for l in drive.lines()):
        if time.time() > deadline:
            fail("the copy never reached the paused drive")
        time.sleep(0.02)


def test_drive_unplugged(d):
    """The drive's FUSE process dies mid-copy (ENOTCONN); the operator mounts
    it again at the same path and retries."""
    name = "unplug"
    staging, files = staged(d, name, n_small=20, n_mid=6)
    drive = FaultDrive(d.tmp, name)
    d.ctl_json("drive", "add", name, drive.path, "--serial", "FAULT-UNPLUG")
    drive.set({"mode": "pause", "after": 4 * MiB})
    d.ctl_json("job", "prepare", name)
    wait_paused(drive)
    drive.crash()
    job = prepcheck.wait_state(d, name, "failed", 60)
    err = job["error"] or ""
    print("# unplugged: %s" % err, flush=True)
    check(verified_paths(d, name), "some files were verified before the drive went")
    check("FAULT-UNPLUG" in err and "not connected" in err and "drive is gone" in err,
          "the error names the drive and the cause: %r" % err)
    before = verified_paths(d, name)
    db_intact(d)
    subprocess.run(["umount", "-l", drive.path], check=True)
    mark = len(drive.lines())
    drive.set({"mode": "ok"})
    drive.start()
    d.ctl_json("job", "retry", name)
    finish_and_check(d, name, staging, files, drive, before, mark)
    drive.stop()


def fill(path):
    """Fill the file system of path; returns the filler's name."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (256 * KiB))
                f.flush()
        except OSError:
            pass
    return filler


def check_stopped(d, log_at, cause, timeout=30, provoke=None):
    """seedd stops with exit status 1 and one line naming the state dir, the
    cause and the way out: a store it cannot write must not leave jobs
    hanging in a phase that no longer moves. provoke(), if given, runs once
    after 5 s without a stop: more to write, past what the log had room for."""
    try:
        rc = d.proc.wait(5 if provoke else timeout)
    except subprocess.TimeoutExpired:
        rc = None
    if rc is None and provoke is not None:
        print("# no stop yet: more to write", flush=True)
        provoke()
    try:
        rc = d.proc.wait(timeout) if rc is None else rc
    except subprocess.TimeoutExpired:
        fail("seedd went on with a database it cannot write (%s):\n%s" % (
            cause, d.read_log()[log_at:][-3000:]))
    log = d.read_log()[log_at:]
    line = [l for l in log.splitlines() if "cannot be written:" in l]
    print("# exit %d: %s" % (rc, line[:1]), flush=True)
    check(rc == 1, "seedd exits 1 when its database cannot be written: %d" % rc)
    check(len(line) == 1 and d.state in line[0] and cause in line[0] and
          "start seedd again" in line[0], "one clear line names the cause: %r" % line)


def test_state_full_copy(d):
    """The state dir's file system fills during the copy: seedd says so and
    stops; with space back and a restart the job finishes. SQLite reuses
    the space of its write-ahead log once that is checkpointed, so a full
    file system bites only when the log must grow: seedd is restarted first
    (closing the database removes the log) and the copy commits more than
    the little log the job's start leaves."""
    name = "fullcopy"
    d.stop()
    d.start()
    staging, files = staged(d, name, n_small=20, n_mid=16)
    drive = FaultDrive(d.tmp, name)
    d.ctl_json("drive", "add", name, drive.path, "--serial", "FULL-COPY")
    drive.set({"mode": "pause", "after": 3 * MiB})
    d.ctl_json("job", "prepare", name)
    wait_paused(drive)
    prepcheck.wait_job(d, name, lambda j: j["verifiedFiles"] > 0, "a first commit", 10)
    log_at = len(d.read_log())
    wal = os.path.join(d.state, "seedd.db-wal")
    print("# the log before the fill: %d bytes" % (os.path.getsize(wal) if os.path.exists(wal)
                                                   else 0), flush=True)
    filler = fill(d.state)
    drive.set({"mode": "ok"})
    check_stopped(d, log_at, "No space left on device", provoke=lambda: index_many(d))
    os.unlink(filler)
    subprocess.run(["mount", "-o", "remount,size=48m", d.state], check=True)
    before = verified_paths(d, name)
    check(before, "some files were verified before the state dir filled")
    db_intact(d)
    mark = len(drive.lines())
    d.start()
    job = d.ctl_json("job", "show", name)
    check(job["state"] == "drive_prep", "the job resumes by itself: %r" % job["state"])
    finish_and_check(d, name, staging, files, drive, before, mark)
    drive.stop()


def prepare_refused(d, name, cause):
    """`job prepare` (a transition) on a database that cannot be written: the
    command fails, seedd stops, the job is still where it was; once the
    database is writable again and seedd restarted, the same command works."""
    log_at = len(d.read_log())
    p = d.ctl("job", "prepare", name)
    print("# prepare: exit %d: %s" % (p.returncode, (p.stderr or p.stdout).strip()), flush=True)
    check(p.returncode == 1 and "recording the plan failed" in p.stderr,
          "prepare answers that it failed, and why: %r" % p.stderr)
    check_stopped(d, log_at, cause)


def plain_drive_job(d, name):
    staging, files = staged(d, name, n_small=10)
    path = os.path.join(d.tmp, "drive-" + name)
    os.mkdir(path)
    d.ctl_json("drive", "add", name, path, "--serial", name.upper())
    return staging, files


def after_restart(d, name, staging, files):
    d.start()
    job = d.ctl_json("job", "show", name)
    check(job["state"] == "staging" and job["phase"] == "indexed",
          "the transition was not half recorded: %s / %s" % (job["state"], job["phase"]))
    db_intact(d)
    d.ctl_json("job", "prepare", name)
    job = prepcheck.wait_phase(d, name, "awaiting-azure", 60)
    prepcheck.verify_drives(staging, name, "seedd-import", files, job["drives"])


def test_state_full_transition(d):
    name = "fulltr"
    staging, files = plain_drive_job(d, name)
    filler = fill(d.state)
    prepare_refused(d, name, "No space left on device")
    os.unlink(filler)
    subprocess.run(["mount", "-o", "remount,size=64m", d.state], check=True)
    after_restart(d, name, staging, files)


def test_db_readonly(d):
    """The state dir's file system read-only (remounted so, as after errors):
    seedd refuses to start, naming the database and the cause; made writable
    again, seedd starts and the job goes on. (Linux refuses to remount a file
    system read-only while a file on it is open for writing, so this is the
    start of seedd, not a running one.)"""
    name = "rodb"
    staging, files = plain_drive_job(d, name)
    d.stop()
    subprocess.run(["mount", "-o", "remount,ro", d.state], check=True)
    try:
        log_at = len(d.read_log())
        d.start(wait=False)
        rc = d.proc.wait(20)
        log = d.read_log()[log_at:]
        print("# read-only state dir: exit %d: %s" % (rc, log.strip()[-400:]), flush=True)
        check(rc == 1, "seedd exits 1 on a read-only state dir: %d" % rc)
        check(d.state in log and ("read-only" in log.lower() or "readonly" in log.lower()),
              "the error names the state dir and the cause: %r" % log)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", d.state], check=True)
    d.start()
    d.ctl_json("job", "prepare", name)
    job = prepcheck.wait_phase(d, name, "awaiting-azure", 60)
    prepcheck.verify_drives(staging, name, "seedd-import", files, job["drives"])


def main():
    if os.environ.get(MARK) != "1":
        if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"],
                                               capture_output=True).returncode != 0:
            skip("needs root and a private mount namespace")
        env = dict(os.environ, **{MARK: "1"})
        sys.exit(subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                                 __file__], env=env).returncode)
    if not os.path.exists("/dev/fuse") or subprocess.run(
            [SYS_PYTHON, "-c", "import fusepy"], capture_output=True).returncode != 0:
        skip("needs /dev/fuse and python3-fusepy (scripts/bootstrap)")
    d = Daemon(CONF)
    os.makedirs(d.state)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + STATE_SIZE, "seedd-state",
                    d.state], check=True)
    d.start()
    t0 = time.time()
    try:
        for t in (test_drive_eio, test_drive_vanished, test_drive_unplugged, test_state_full_copy,
                  test_state_full_transition, test_db_readonly):
            t1 = time.time()
            t(d)
            print("# %s: %.1f s" % (t.__name__, time.time() - t1), flush=True)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
        subprocess.run(["umount", "-l", d.state], capture_output=True)
    print("ok (%.1f s)" % (time.time() - t0))


if __name__ == "__main__":
    main()
