"""Issue 11, points 4 and 6, end to end on the built seedd:
- `drive add --serial` of a plain directory is refused under RequireNTFS=yes
  (the default), saying a directory is a drive only with RequireNTFS=no;
- a hard link in staging (here to a file outside it) is indexed and named:
  the job log, `job show --json` problems (kind hardlink), the report (links);
- a BitLocker recovery password leaves the database when the job is
  cancelled: the job log and the report say when, never the value, and the
  database file no longer holds it;
- seedd is not dumpable (no core file)."""
import os
import shutil
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check  # noqa: E402
import prepcheck  # noqa: E402

KEY = "111111-222222-333333-444444-555555-666666-000000-111111"


def staging_with_link(tmp):
    staging = os.path.join(tmp, "staging")
    os.makedirs(os.path.join(staging, "sub"))
    open(os.path.join(staging, "plain.txt"), "w").write("plain\n")
    outside = os.path.join(tmp, "outside-secret.txt")
    open(outside, "w").write("not for the vault\n")
    os.link(outside, os.path.join(staging, "sub", "linked.txt"))
    return staging


def sub(tmp, name):
    path = os.path.join(tmp, name)
    os.makedirs(path)
    return path


def test_directory_refused(tmp):
    d = Daemon("", tmp=sub(tmp, "ntfs-yes")).start()
    try:
        staging = os.path.join(d.tmp, "st")
        os.makedirs(staging)
        open(os.path.join(staging, "f"), "w").write("f\n")
        d.ctl_json("job", "create", "dirjob", "--staging", staging)
        prepcheck.wait_phase(d, "dirjob", "indexed")
        drive = os.path.join(d.tmp, "drive")
        os.makedirs(drive)
        p = d.ctl("drive", "add", "dirjob", drive, "--serial", "DIR-1", check_rc=1)
        # On ext4 here: refused as not NTFS (test_ntfs.py has the directory on NTFS).
        check("not NTFS" in p.stderr,
              "a directory is refused under RequireNTFS=yes, saying why: %r" % p.stderr)
        drives = d.ctl_json("drive", "list", "dirjob")
        check(not (drives.get("drives") if isinstance(drives, dict) else drives),
              "no drive attached: %r" % drives)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()


def test_links_and_secrets(tmp):
    d = Daemon("[Drives]\nRequireNTFS=no\n", tmp=sub(tmp, "ntfs-no")).start()
    try:
        staging = staging_with_link(d.tmp)
        d.ctl_json("job", "create", "linkjob", "--staging", staging)
        prepcheck.wait_phase(d, "linkjob", "indexed")
        job = d.ctl_json("job", "show", "linkjob")
        links = [p for p in job["problems"] if p["kind"] == "hardlink"]
        check([p["path"] for p in links] == ["sub/linked.txt"],
              "the hard link is a problem in job show: %r" % job["problems"])
        check("2 hard links" in links[0]["reason"], "with its link count: %r" % links)
        check(job["problemCount"] == 1 and job["files"] == 2,
              "counted once, and still indexed to be copied: %r" % job)
        log = d.ctl("job", "log", "linkjob", check_rc=0).stdout
        check("hard link sub/linked.txt: 2 links" in log, "the job log names it: %r" % log)

        drive = os.path.join(d.tmp, "drive")
        os.makedirs(drive)
        keyf = os.path.join(d.tmp, "key")
        with open(keyf, "w") as f:
            f.write(KEY + "\n")
        os.chmod(keyf, 0o600)
        d.ctl_json("drive", "add", "linkjob", drive, "--serial", "LINK-1",
                   "--bitlocker-key-file", keyf)
        db = os.path.join(d.state, "seedd.db")
        con = sqlite3.connect(db)
        check(con.execute("SELECT count(*) FROM secrets").fetchone()[0] == 1, "key stored")
        con.close()
        d.ctl_json("job", "cancel", "linkjob")
        prepcheck.wait_state(d, "linkjob", "cancelled")
        con = sqlite3.connect(db)
        check(con.execute("SELECT count(*) FROM secrets").fetchone()[0] == 0,
              "no secret left once cancelled")
        con.close()
        log = d.ctl("job", "log", "linkjob", check_rc=0).stdout
        check("1 BitLocker recovery password deleted from the database" in log,
              "the job log says when: %r" % log)
        report = d.ctl("--json", "job", "report", "linkjob", check_rc=0).stdout
        check("secrets-deleted" in report, "and the report")
        check('"links": 2' in report or '"links":2' in report, "the report names the link")
        d.stop()
        for path in (db, db + "-wal"):
            if os.path.exists(path):
                check(KEY.encode() not in open(path, "rb").read(),
                      "%s holds no copy of the key" % path)
        for text, where in ((log, "job log"), (report, "report"), (d.read_log(), "seedd's log")):
            check(KEY not in text, "the key reached the %s" % where)
    finally:
        if d.alive():
            d.proc.kill()


def test_not_dumpable(tmp):
    """seedd makes itself non-dumpable (no core file): the kernel then gives
    its /proc/PID files to root. Run as nobody, so that the owner tells."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        print("note: not root or no setpriv: the non-dumpable check is skipped")
        return
    base = sub(tmp, "nobody")
    os.chmod(tmp, 0o755)
    os.chown(base, 65534, 65534)
    d = Daemon("", tmp=base)
    os.chmod(d.config, 0o644)
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] + d.argv()
    logf = open(d.log, "ab")
    d.proc = subprocess.Popen(argv, stdout=logf, stderr=logf, env=d.env())
    logf.close()
    try:
        d.wait_ready()
        st = os.stat("/proc/%d/environ" % d.proc.pid)
        check(st.st_uid == 0, "seedd (uid 65534) is not dumpable: /proc/PID/environ is owned "
              "by uid %d" % st.st_uid)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()


def main():
    import tempfile
    tmp = tempfile.mkdtemp(prefix="seedd-secrets-links-")
    test_directory_refused(tmp)
    test_links_and_secrets(tmp)
    test_not_dumpable(tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
