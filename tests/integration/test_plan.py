"""Planning as an operator reads it (issue 12, point 5), in one daemon run:
a file larger than every attached drive is "too large for any attached drive"
with the room it needs (never "Unplaced: 1" next to "Drives needed: 0 more");
skipped entries (fifo, symlink) are listed apart from names Azure would
refuse; a failed job has a read-only plan; `job create --exclude` leaves
entries out, counts them in job show, the plan and the report, and keeps doing
so after a kill -9 and a re-index; `job retry --skip-refused` goes on without
the refused names, named in the report."""
import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, error_of, make_tree  # noqa: E402
import prepcheck  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
JOB = "planned"
REFUSED = "docs/summary."  # a trailing dot: Azure refuses the name
EXCLUDES = ["**/*.tmp", "cache"]


def make_staging(root):
    make_tree(root, {"small/a.bin": os.urandom(64 * KiB), "small/b.bin": os.urandom(32 * KiB),
                     REFUSED: b"x", "x.tmp": b"t", "small/deep/y.tmp": b"t",
                     "cache/c1": b"c", "cache/sub/c2": b"c"})
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.truncate(3 * MiB)  # sparse: the plan counts its size
    os.mkfifo(os.path.join(root, "pipe"))
    os.symlink("small/a.bin", os.path.join(root, "link"))


def job_unchanged(d, before, what):
    after = d.ctl_json("job", "show", JOB)
    log = d.ctl_json("job", "log", JOB)
    check((after["state"], after["updated"], after["error"]) ==
          (before[0]["state"], before[0]["updated"], before[0]["error"]) and
          len(log) == len(before[1]), "%s changed the job: %r, %d events -> %d"
          % (what, after, len(before[1]), len(log)))


def test_create_and_fail(d, staging):
    r = d.call("io.seedd.CreateJob", {"name": "badglob", "stagingPath": staging,
                                      "excludes": ["ok/*", "/abs"]})
    check(error_of(r) == "io.seedd.InvalidArgument" and
          "/abs" in r["parameters"]["message"], "a bad pattern is refused, named: %r" % r)
    args = ["job", "create", JOB, "--staging", staging]
    for x in EXCLUDES:
        args += ["--exclude", x]
    job = d.ctl_json(*args)
    check(job["excludes"] == EXCLUDES, "the job keeps its patterns: %r" % job["excludes"])
    job = prepcheck.wait_state(d, JOB, "failed")
    check("Azure would refuse" in job["error"] and "--skip-refused" in job["error"],
          "a refused name fails the job, naming the way out: %r" % job["error"])
    # x.tmp, small/deep/y.tmp and the directory cache (not walked: counted once).
    check(job["excluded"] == 3, "excluded entries counted: %r" % job)
    kinds = {p["path"]: p["kind"] for p in job["problems"]}
    check(kinds == {REFUSED: "invalid", "pipe": "skipped", "link": "skipped"},
          "excluded entries are no problems; refused and skipped are: %r" % job["problems"])
    out = d.ctl("job", "show", JOB, check_rc=0).stdout
    check("Excluded:" in out and "3 entries" in out and "'**/*.tmp'" in out,
          "job show names the excludes: %r" % out)


def test_failed_plan(d, staging):
    before = (d.ctl_json("job", "show", JOB), d.ctl_json("job", "log", JOB))
    plan = d.ctl_json("job", "plan", JOB)
    check(plan["invalidNames"] == [n for n in plan["invalidNames"] if n.startswith(REFUSED)]
          and plan["invalidCount"] == 1, "only refused names are invalid: %r" % plan)
    check(sorted(s.split(":")[0] for s in plan["skipped"]) == ["link", "pipe"] and
          plan["skippedCount"] == 2, "skipped entries apart: %r" % plan["skipped"])
    check(plan["excludedCount"] == 3 and plan["excludes"] == EXCLUDES,
          "excluded entries in the plan: %r" % plan)
    check(sorted(f["path"] for f in plan["files"]) == ["big.bin", "small/a.bin", "small/b.bin"],
          "the plan holds only the files to copy: %r" % plan["files"])
    job_unchanged(d, before, "PlanJob of a failed job")

    drive = os.path.join(d.tmp, "drive-1")
    os.mkdir(drive)
    d.ctl_json("drive", "add", JOB, drive, "--serial", "PLAN-1", "--capacity", str(1 * MiB))
    before = (d.ctl_json("job", "show", JOB), d.ctl_json("job", "log", JOB))
    plan = d.ctl_json("job", "plan", JOB)
    big = [f for f in plan["files"] if f["path"] == "big.bin"][0]
    check(big["drive"] is None and big["tooLarge"] and plan["tooLargeFiles"] == 1 and
          plan["tooLargeBytes"] == 3 * MiB and plan["tooLargeNeeds"] > 3 * MiB and
          plan["drivesNeeded"] == 0 and plan["unplacedFiles"] == 1,
          "a file larger than every drive is too large, with the room it needs: %r" % plan)
    out = d.ctl("job", "plan", JOB, check_rc=0).stdout
    check("too large for any attached drive" in out and "3.0 MiB" in out and
          "(too large)" in out, "human plan tells the file is too large: %r" % out)
    need = [ln for ln in out.splitlines() if ln.startswith("Drives needed:")][0]
    check(need.rstrip() != "Drives needed:  0 more" and "free for the files too large" in need,
          "drives needed agrees with the unplaced file: %r" % need)
    check("Invalid names" not in out and "Refused names:  1" in out and
          "Skipped:        2" in out and "Excluded:       3" in out,
          "refused, skipped and excluded apart: %r" % out)
    job_unchanged(d, before, "job plan")


def test_skip_refused(d):
    p = d.ctl("job", "retry", JOB, "--skip-refused=yes", check_rc=2)
    check("takes no value" in p.stderr, "a flag takes no value: %r" % p.stderr)
    job = d.ctl_json("job", "retry", JOB, "--skip-refused")
    check(job["state"] == "staging", "retried: %r" % job)
    job = prepcheck.wait_phase(d, JOB, "indexed")
    check(job["excluded"] == 3, "the re-index keeps the excludes: %r" % job)
    kinds = {p["path"]: p["kind"] for p in job["problems"]}
    check(kinds.get(REFUSED) == "skipped-by-operator", "refused name skipped by the operator: %r"
          % job["problems"])
    rep = d.ctl_json("job", "report", JOB)
    files = {f["path"]: f for f in rep["files"]}
    check("skipped by the operator" in (files[REFUSED]["reason"] or ""),
          "the report names the skipped refused name: %r" % files.get(REFUSED))
    check(files["cache"]["state"] == "excluded" and "'cache'" in files["cache"]["reason"] and
          files["x.tmp"]["state"] == "excluded" and "cache/c1" not in files,
          "the report lists what was excluded, and by which pattern: %r" % rep["files"])
    check(rep["job"]["excluded"] == 3 and rep["job"]["excludes"] == EXCLUDES,
          "the report's job counts the excluded entries: %r" % rep["job"])


def test_kill9_reindex(d):
    """The patterns and --skip-refused live in the store: a restart re-indexes alike."""
    d.kill9()
    con = sqlite3.connect(os.path.join(d.state, "seedd.db"))
    con.execute("UPDATE jobs SET phase = 'indexing' WHERE name = ?", (JOB,))
    con.commit()
    con.close()
    d.start()
    job = prepcheck.wait_phase(d, JOB, "indexed")
    check(job["excluded"] == 3 and job["state"] == "staging",
          "after kill -9 the re-index applies the same excludes and skips: %r" % job)
    log = [e["text"] for e in d.ctl_json("job", "log", JOB)]
    check(sum("3 entries excluded (--exclude)" in t for t in log) >= 2,
          "each index says what it excluded: %r" % log)


def test_prepare_too_large(d):
    """Drive prep tells the same story: the file waits, too large for any attached drive."""
    d.ctl_json("job", "prepare", JOB)
    job = prepcheck.wait_job(d, JOB, lambda j: j["phase"].startswith("needs-drive"),
                             "needs-drive")
    check("1 too large for any attached drive" in job["phase"] and "3.1 MiB free" in job["phase"],
          "needs-drive names the file too large and its need: %r" % job["phase"])
    log = [e["text"] for e in d.ctl_json("job", "log", JOB)]
    check(any("1 of them too large for any attached drive" in t for t in log),
          "drive prep's start says so too: %r" % log)


def main():
    d = Daemon("[Drives]\nRequireNTFS=no\n")
    d.start()
    staging = os.path.join(d.tmp, "staging")
    make_staging(staging)
    try:
        test_create_and_fail(d, staging)
        test_failed_plan(d, staging)
        test_skip_refused(d)
        test_kill9_reindex(d)
        test_prepare_too_large(d)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    print("ok")


if __name__ == "__main__":
    main()
