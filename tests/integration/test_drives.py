"""A job's drives and a job's lifetime (issue 12 points 4 and 12).

- A drive that drive prep gave no file ends `unused`: in `drive list` (human
  and JSON), without a manifest.
- `drive remove NAME SERIAL`: refuses a drive holding verified files without
  --force (exit 1, saying so); removes an unused one; with --force the
  files go back to waiting, drive prep copies them to the remaining drive
  and writes its manifest (after drive prep, and while it copies); an
  unknown serial is named.
- `job purge NAME`: refused for an active job (InvalidState, exit 1); a
  cancelled job leaves `job list --all`, `job show` and the database (the
  purger deletes its rows, also after a restart), and its name is free
  again.
- `job list` and `watch` without a name leave out done and cancelled jobs
  unless --all; a failed job stays listed.
"""
import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, fail  # noqa: E402
import prepcheck  # noqa: E402

CONF = "[Drives]\nRequireNTFS=no\n"
MiB = 1 << 20


def add_drive(d, job, serial, cap=16 * MiB):
    path = os.path.join(d.tmp, serial)
    os.mkdir(path)
    d.ctl_json("drive", "add", job, path, "--serial", serial, "--capacity", str(cap))
    return path


def drive_states(d, job):
    return {x["serial"]: x for x in d.ctl_json("drive", "list", job)}


def test_unused_and_remove(d):
    staging = os.path.join(d.tmp, "staging")
    files = {"only.bin": os.urandom(300000)}
    os.makedirs(staging)
    with open(os.path.join(staging, "only.bin"), "wb") as f:
        f.write(files["only.bin"])
    d.ctl_json("job", "create", "drv", "--staging", staging)
    prepcheck.wait_phase(d, "drv", "indexed")
    paths = {s: add_drive(d, "drv", s) for s in ("DRV-A", "DRV-B")}
    d.ctl_json("job", "prepare", "drv")
    prepcheck.wait_phase(d, "drv", "awaiting-azure")
    drives = drive_states(d, "drv")
    used = [s for s, x in drives.items() if x["files"] == 1]
    check(len(used) == 1, "one drive holds the file: %r" % drives)
    full, empty = used[0], ({"DRV-A", "DRV-B"} - set(used)).pop()
    check(drives[empty]["state"] == "unused", "a drive given nothing ends unused, not %r"
          % drives[empty]["state"])
    check(drives[full]["state"] == "manifest-written", "the other is done: %r" % drives[full])
    check(not os.path.exists(os.path.join(paths[empty], "DriveManifest.xml")),
          "an unused drive gets no manifest")
    out = d.ctl("drive", "list", "drv", check_rc=0).stdout
    check(any(empty in ln and "unused" in ln for ln in out.splitlines()),
          "drive list shows unused: %r" % out)
    texts = [e["text"] for e in d.ctl_json("job", "log", "drv")]
    check(any(empty in t and "unused" in t for t in texts), "the log says it: %r" % texts)

    p = d.ctl("drive", "remove", "drv", full, check_rc=1)
    check("--force" in p.stderr and "verified" in p.stderr,
          "a drive with verified files needs --force: %r" % p.stderr)
    p = d.ctl("drive", "remove", "drv", "NO-SUCH", check_rc=1)
    check("NO-SUCH" in p.stderr, "an unknown serial is named: %r" % p.stderr)
    job = d.ctl_json("drive", "remove", "drv", empty)
    check([x["serial"] for x in job["drives"]] == [full], "the unused drive left: %r"
          % job["drives"])
    check(job["phase"] == "awaiting-azure" and job["copiedFiles"] == 1,
          "removing an unused drive changes nothing else: %r" % job["phase"])

    add_drive(d, "drv", "DRV-C")
    job = d.ctl_json("drive", "remove", "drv", full, "--force")
    check(job["copiedFiles"] == 0 and job["phase"] in ("copying", "writing-manifests",
                                                       "awaiting-azure"),
          "its file waits again: %r" % {k: job[k] for k in ("phase", "copiedFiles")})
    job = prepcheck.wait_job(d, "drv", lambda j: j["phase"] == "awaiting-azure" and
                             j["copiedFiles"] == 1, "the file copied again")
    check([(x["serial"], x["state"], x["files"]) for x in job["drives"]] ==
          [("DRV-C", "manifest-written", 1)], "the file is on DRV-C: %r" % job["drives"])
    prepcheck.verify_drives(staging, "drv", "seedd-import", files, job["drives"])
    texts = [e["text"] for e in d.ctl_json("job", "log", "drv")]
    check(any(full in t and "removed" in t and "1 verified" in t for t in texts),
          "the log says what went back: %r" % texts)


def test_remove_while_copying(d):
    """--force while drive prep copies: it stops, the files go to the other drive."""
    staging = os.path.join(d.tmp, "staging-busy")
    files = {"f%d.bin" % i: os.urandom(4 * MiB) for i in range(6)}
    os.makedirs(staging)
    for rel, data in files.items():
        with open(os.path.join(staging, rel), "wb") as f:
            f.write(data)
    d.ctl_json("job", "create", "busy", "--staging", staging)
    prepcheck.wait_phase(d, "busy", "indexed")
    add_drive(d, "busy", "BUSY-A", 64 * MiB)
    add_drive(d, "busy", "BUSY-B", 64 * MiB)
    d.ctl_json("job", "prepare", "busy")
    job = d.ctl_json("drive", "remove", "busy", "BUSY-B", "--force")
    check([x["serial"] for x in job["drives"]] == ["BUSY-A"], "BUSY-B left: %r" % job["drives"])
    job = prepcheck.wait_phase(d, "busy", "awaiting-azure")
    check(job["copiedFiles"] == len(files) and job["drives"][0]["files"] == len(files),
          "every file on BUSY-A: %r" % job["drives"])
    prepcheck.verify_drives(staging, "busy", "seedd-import", files, job["drives"])
    d.ctl_json("job", "cancel", "busy")


def names(jobs):
    return [j["name"] for j in jobs]


def watch_first(d, params):
    """The first job a Watch of every job sends."""
    with d.connect() as c:
        r = c.call("io.seedd.Watch", params, more=True)
    check(r and "parameters" in r, "watch answered: %r" % r)
    return r["parameters"]["job"]["name"]


def purged_rows(db):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        return con.execute("SELECT (SELECT count(*) FROM jobs WHERE purged = 1) + "
                           "(SELECT count(*) FROM files WHERE job_id NOT IN "
                           "(SELECT id FROM jobs))").fetchone()[0]
    finally:
        con.close()


def test_purge_and_list(d):
    p = d.ctl("job", "purge", "drv", check_rc=1)
    check("InvalidState" in p.stderr and "cancel" in p.stderr,
          "an active job is not purged: %r" % p.stderr)
    bad = os.path.join(d.tmp, "bad")
    os.makedirs(bad)
    open(os.path.join(bad, "bad:name"), "w").close()
    d.ctl_json("job", "create", "badn", "--staging", bad)
    prepcheck.wait_state(d, "badn", "failed")
    d.ctl_json("job", "cancel", "drv")

    listed = names(d.ctl_json("job", "list"))
    check(listed == ["badn"], "job list hides cancelled jobs, keeps failed ones: %r" % listed)
    check(names(d.ctl_json("job", "list", "--all")) == ["drv", "busy", "badn"],
          "--all lists all")
    out = d.ctl("job", "list", check_rc=0).stdout
    check("badn" in out and "drv" not in out, "human job list too: %r" % out)
    check(watch_first(d, {"hideFinished": True}) == "badn", "watch hides the cancelled job")
    check(watch_first(d, {}) == "drv", "Watch without hideFinished sends every job")

    reply = d.ctl_json("job", "purge", "drv")
    check(reply == {"name": "drv", "report": None}, "purge answers: %r" % reply)
    check(names(d.ctl_json("job", "list", "--all")) == ["busy", "badn"], "a purged job is gone")
    p = d.ctl("job", "show", "drv", check_rc=1)
    check("JobNotFound" in p.stderr, "job show: %r" % p.stderr)
    status = d.ctl_json("status")
    check(status["jobs"]["cancelled"] == 1, "status counts it no more: %r" % status["jobs"])
    db = os.path.join(d.state, "seedd.db")
    deadline = time.time() + 10
    while purged_rows(db) > 0:
        if time.time() > deadline:
            fail("the purger left rows of the purged job")
        time.sleep(0.05)
    check(d.ctl_json("job", "purge", "badn")["name"] == "badn", "a failed job is purged")
    again = os.path.join(d.tmp, "again")
    os.makedirs(again)
    d.ctl_json("job", "create", "drv", "--staging", again)
    p = d.ctl("--json", "job", "purge", "drv", check_rc=1)
    err = json.loads(p.stdout)
    check(err["error"] == "io.seedd.InvalidState", "--json error: %r" % err)


def test_purge_resumed(d):
    """A purge a crash cut short (the job marked, its rows still there) is
    finished by the purger at the next start."""
    d.stop()
    db = os.path.join(d.state, "seedd.db")
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("UPDATE jobs SET purged = 1, name = '#' || id WHERE name = 'busy'")
    con.close()
    check(purged_rows(db) == 1, "the test did not test")
    d.start()
    deadline = time.time() + 10
    while purged_rows(db) > 0:
        if time.time() > deadline:
            fail("the purger did not finish the purge a restart found")
        time.sleep(0.05)
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    left = con.execute("SELECT count(*) FROM files WHERE job_id NOT IN (SELECT id FROM jobs)"
                       " OR job_id IN (SELECT id FROM jobs WHERE purged = 1)").fetchone()[0]
    con.close()
    check(left == 0, "files of the purged job left: %d" % left)


def main():
    t0 = time.time()
    d = Daemon(CONF).start()
    try:
        test_unused_and_remove(d)
        test_remove_while_copying(d)
        test_purge_and_list(d)
        test_purge_resumed(d)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    print("ok (%.1f s)" % (time.time() - t0))


if __name__ == "__main__":
    main()
