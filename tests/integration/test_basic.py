"""The built seedd driven by seedctl: jobs, errors, watch, reload, restart."""
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, fail, error_of, SEEDCTL  # noqa: E402

JOB_FIELDS = ["name", "state", "phase", "stagingPath", "files", "bytes", "copiedFiles",
              "copiedBytes", "verifiedFiles", "drives", "azure", "error", "created", "updated"]
AZURE_FIELDS = ["jobName", "state", "carrier", "trackingNumber", "shipDeadline"]


def test_status_and_files(d):
    st = d.ctl_json("status")
    check(st["version"], "status has a version")
    check(st["jobs"].get("staging") == 0, "no jobs at start: %r" % st)
    check(stat.S_IMODE(os.stat(d.sock).st_mode) == 0o660, "socket mode is 0660")
    db = os.path.join(d.state, "seedd.db")
    check(stat.S_IMODE(os.stat(db).st_mode) == 0o600, "database mode is 0600")
    p = d.ctl("status", check_rc=0)
    check("staging" in p.stdout, "human status lists states: %r" % p.stdout)


def test_create(d, staging):
    job = d.ctl_json("job", "create", "backup-01", "--staging", staging)
    for k in JOB_FIELDS:
        check(k in job, "job object has %s: %r" % (k, job))
    for k in AZURE_FIELDS:
        check(k in job["azure"], "azure object has %s" % k)
    check(job["state"] == "staging", "new job is staging")
    check(job["stagingPath"] == staging, "staging path recorded")
    check(job["error"] is None, "no error")
    check(job["created"].endswith("Z") and "T" in job["created"], "ISO 8601 UTC time")

    p = d.ctl("job", "create", "backup-01", "--staging", staging, check_rc=1)
    check("JobExists" in p.stderr, "duplicate refused with JobExists: %r" % p.stderr)
    p = d.ctl("job", "create", "x", "--staging", staging, check_rc=2)
    check("x" in p.stderr, "bad name named: %r" % p.stderr)
    p = d.ctl("job", "create", "backup-02", "--staging", staging + "/missing", check_rc=1)
    check("InvalidArgument" in p.stderr and "missing" in p.stderr,
          "missing staging dir refused, naming it: %r" % p.stderr)
    r = d.call("io.seedd.CreateJob", {"name": "bad name!", "stagingPath": staging})
    check(error_of(r) == "io.seedd.InvalidArgument", "daemon checks names too: %r" % r)
    r = d.call("io.seedd.CreateJob", {"name": "okname", "stagingPath": staging,
                                      "container": "Bad_Container"})
    check(error_of(r) == "io.seedd.InvalidArgument", "bad container refused: %r" % r)


def test_list_show_log(d):
    jobs = d.ctl_json("job", "list")
    check(isinstance(jobs, list) and len(jobs) == 1, "one job listed: %r" % jobs)
    job = d.ctl_json("job", "show", "backup-01")
    check(job["name"] == "backup-01", "show names the job")
    p = d.ctl("job", "show", "nosuchjob", check_rc=1)
    check("JobNotFound" in p.stderr, "unknown job: %r" % p.stderr)
    log = d.ctl_json("job", "log", "backup-01")
    check(len(log) >= 1 and log[0]["kind"] == "created", "log starts with created: %r" % log)
    p = d.ctl("job", "list", check_rc=0)
    check("backup-01" in p.stdout, "human list shows the job")
    drives = d.ctl_json("drive", "list", "backup-01")
    check(drives == [], "no drives yet: %r" % drives)
    rep = d.ctl_json("job", "report", "backup-01")
    check(rep["job"]["name"] == "backup-01" and len(rep["events"]) >= 1,
          "report carries job and events")


def test_wrong_state(d):
    p = d.ctl("job", "ship", "backup-01", "--carrier", "DHL", "--tracking", "123", check_rc=1)
    check("InvalidState" in p.stderr and "awaiting-tracking" in p.stderr,
          "ship before drive prep is refused, saying why: %r" % p.stderr)
    job = d.ctl_json("job", "show", "backup-01")
    check(job["state"] == "staging" and job["azure"]["trackingNumber"] is None,
          "refused calls changed nothing")
    p = d.ctl("job", "prepare", "backup-01", check_rc=1)
    check("InvalidState" in p.stderr, "prepare without drives is refused: %r" % p.stderr)


def test_cancel_retry(d, staging):
    p = d.ctl("job", "retry", "backup-01", check_rc=1)
    check("InvalidState" in p.stderr and "staging" in p.stderr,
          "retry of a staging job names the state: %r" % p.stderr)
    d.ctl_json("job", "create", "backup-03", "--staging", staging)
    job = d.ctl_json("job", "cancel", "backup-03")
    check(job["state"] == "cancelled", "cancelled")
    p = d.ctl("job", "cancel", "backup-03", check_rc=1)
    check("InvalidState" in p.stderr, "second cancel refused: %r" % p.stderr)
    kinds = [e["kind"] for e in d.ctl_json("job", "log", "backup-03")]
    check(kinds[0] == "created" and kinds[-1] == "cancelled", "events: %r" % kinds)


def test_watch(d, staging):
    d.ctl_json("job", "create", "watched", "--staging", staging)
    w = subprocess.Popen([SEEDCTL, "--socket", d.sock, "--json", "watch", "watched"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = w.stdout.readline()
    check(json.loads(first)["state"] == "staging", "watch starts with the current state")
    d.ctl_json("job", "cancel", "watched")
    out, err = w.communicate(timeout=10)
    check(w.returncode == 0, "watch ends with exit 0 (%d): %s" % (w.returncode, err))
    last = json.loads(out.strip().splitlines()[-1])
    check(last["state"] == "cancelled", "watch ends with the final state: %r" % out)


def test_retry_failed(d):
    """A failed job (made so in the store while seedd is down) resumes its step."""
    d.stop()
    con = sqlite3.connect(os.path.join(d.state, "seedd.db"))
    con.execute("UPDATE jobs SET state='failed', failed_state='staging', error='disk gone' "
                "WHERE name='backup-01'")
    con.commit()
    con.close()
    d.start()
    job = d.ctl_json("job", "show", "backup-01")
    check(job["state"] == "failed" and job["error"] == "disk gone", "failed job shown: %r" % job)
    job = d.ctl_json("job", "retry", "backup-01")
    check(job["state"] == "staging" and job["error"] is None, "retry resumes: %r" % job)
    check(d.ctl_json("job", "log", "backup-01")[-1]["kind"] == "retry", "retry logged")


def test_reload(d):
    with open(d.config, "w") as f:
        f.write("[Daemon]\nPollIntervalSec=notanumber\n")
    d.proc.send_signal(1)  # SIGHUP with a bad file: keep running on the old config
    time.sleep(0.5)
    check(d.alive(), "bad config on reload does not kill seedd")
    d.ctl("status", check_rc=0)
    with open(d.config, "w") as f:
        f.write("[Daemon]\nPollIntervalSec=60\n")
    d.proc.send_signal(1)
    time.sleep(0.3)
    d.ctl("status", check_rc=0)


def test_varlink_service(d):
    r = d.call("org.varlink.service.GetInfo")
    check("io.seedd" in r["parameters"]["interfaces"], "GetInfo lists io.seedd: %r" % r)
    r = d.call("org.varlink.service.GetInterfaceDescription", {"interface": "io.seedd"})
    desc = r["parameters"]["description"]
    check(desc.startswith("#") or "interface io.seedd" in desc, "description returned")
    for m in ("GetStatus", "CreateJob", "ListJobs", "GetJob", "PlanJob", "PrepareJob",
              "ShipJob", "CancelJob", "RetryJob", "GetJobLog", "GetJobReport", "AddDrive",
              "ListDrives", "Watch", "RemoveDrive", "PurgeJob"):
        check("method %s(" % m in desc, "interface describes %s" % m)
        r = d.call("io.seedd." + m, {})
        check(error_of(r) != "org.varlink.service.MethodNotFound", "%s is answered" % m)
    r = d.call("org.varlink.service.GetInterfaceDescription", {"interface": "com.example"})
    check(error_of(r) == "org.varlink.service.InterfaceNotFound", "unknown interface")


def test_second_instance_and_bad_config(d):
    other = Daemon(tmp=d.tmp)
    other.state = d.state + "-other"  # the same state dir would be refused first (its lock)
    p = subprocess.run(other.argv(), capture_output=True, text=True, timeout=10,
                       env=other.env())
    check(p.returncode == 1 and "already listening" in p.stderr,
          "a second seedd on a live socket exits 1: %d %r" % (p.returncode, p.stderr))
    bad = os.path.join(d.tmp, "bad.conf")
    with open(bad, "w") as f:
        f.write("[Daemon]\n\nNoSuchKey=1\n")
    p = subprocess.run([os.environ.get("SEEDD"), "--config", bad, "--state-dir", d.state,
                        "--socket", d.sock + "2"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 2 and "bad.conf:3" in p.stderr,
          "bad config exits 2 naming file:line: %d %r" % (p.returncode, p.stderr))
    p = subprocess.run([os.environ.get("SEEDD"), "--bogus"], capture_output=True, timeout=10)
    check(p.returncode == 2, "bad option exits 2")


def test_unreachable(d):
    p = subprocess.run([SEEDCTL, "--socket", d.tmp + "/nope.sock", "status"],
                       capture_output=True, text=True)
    check(p.returncode == 3, "unreachable daemon exits 3: %d" % p.returncode)


def test_metrics(d):
    text = open(os.path.join(d.tmp, "metrics.prom")).read()
    check("seedd_up 1" in text, "metrics file written: %r" % text[:200])
    check('seedd_jobs{state="staging"}' in text, "jobs per state in the metrics")


def main():
    d = Daemon()
    with open(d.config, "w") as f:
        f.write("[Daemon]\nMetricsFile=%s/metrics.prom\n" % d.tmp)
    d.start()
    staging = os.path.join(d.tmp, "staging")
    os.makedirs(staging)
    try:
        test_status_and_files(d)
        test_metrics(d)
        test_create(d, staging)
        test_list_show_log(d)
        test_wrong_state(d)
        test_cancel_retry(d, staging)
        test_watch(d, staging)
        test_varlink_service(d)
        test_second_instance_and_bad_config(d)
        test_reload(d)
        test_retry_failed(d)
        test_unreachable(d)
        d.stop()
        check(not os.path.exists(d.sock), "socket removed on stop")
    finally:
        if d.alive():
            d.proc.kill()
    print("ok")


if __name__ == "__main__":
    main()
