"""The Azure answers the simulator's default reading never gives, and the
plausible alternatives to its [inferred] behaviours (tests/azure-sim README,
"Switches"), each run against seedd:

* validateInputs CertainInputValidationsSkipped: the job is created, the job
  log names the skipped checks;
* a create PUT that timed out after Azure acted, with the job invisible while
  it is created (the default) or visible at once (getWhileCreating): a GET by
  name comes first, one PUT only;
* a creation that outlasts seedd's looks: the second PUT is answered 202 with
  the same operation (the default) or 409 (rePutConflict), which sends seedd
  back to GET;
* a create answered 202 without Location (createNoLocation);
* an operation's Retry-After as an HTTP-date (lroRetryAfterDate);
* a create followed through Azure-AsyncOperation (createAsyncOperation), and
  its Failed status;
* a job that ends Completed although a disk's copy had errors;
* DataBox WaitingForCustomerAction with properties.error and per-disk errors:
  Azure's code and message in the phase, the job's error and the journal
  (stderr here); `seedctl job mitigate` over the mitigate call;
* ImportExport at api-version 2020-08-01; a job shown with provisioningState
  Creating after its PUT (provisioningSeconds) is waited for; a drive's state
  wins over its
  copyStatus, and a job whose state runs ahead of its drives
  (jobAheadOfDrives) is imported only when every drive has completed.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check  # noqa: E402
import azenv  # noqa: E402
import prepcheck  # noqa: E402


def sim_config(sim, **kw):
    sim.ctl("POST", "/config", kw)


def job_requests(sim, name):
    """(method, path tail, status) of every ARM request about job name, in order."""
    out = []
    for r in sim.requests():
        p = r.get("path", "")
        if "/jobs/" + name in p and r.get("server") == "arm":
            out.append((r["method"], p.split("/jobs/" + name, 1)[1], r.get("status"), r))
    return out


def one_job(sim, name):
    jobs = [j for j in sim.ctl("GET", "/jobs") if j["name"].lower() == name.lower()]
    check(len(jobs) == 1, "exactly one Azure job named %s: %d" % (name, len(jobs)))


def job_log(d, name):
    return "\n".join(e.get("text", "") for e in d.ctl_json("job", "log", name))


def ship_and_import(d, sim, name, tracking):
    d.ctl("job", "ship", name, "--carrier", "DHL", "--tracking", tracking, check_rc=0)
    prepcheck.wait_state(d, name, "shipped", 60)
    for status in ("AtAzureDC", "DataCopy", "Completed"):
        sim.advance(name, status)
    prepcheck.wait_state(d, name, "imported", 60)


def test_validate_skipped(d, sim):
    name = "a-skip"
    sim_config(sim, validationOverrides={"ValidateCreateOrderLimit": "Skipped"})
    azenv.prepared_job(d, name, drives=1)
    prepcheck.wait_phase(d, name, "awaiting-tracking", 90)
    v = [r for r in sim.requests() if r["path"].endswith("/validateInputs")][-1]
    check(v["status"] == 200, "validateInputs answered")
    text = job_log(d, name)
    check("CertainInputValidationsSkipped" in text and "ValidateCreateOrderLimit" in text,
          "the job log names the skipped validation: %r" % text)
    sim_config(sim, validationOverrides={})
    one_job(sim, name)


def put_timed_out(d, sim, name, **config):
    """The create PUT is carried out but its answer never comes (RequestTimeoutSec=3)."""
    sim_config(sim, **config)
    sim.fault("hang", method="PUT", path_regex="/jobs/%s$" % name, then="execute", seconds=6)
    azenv.prepared_job(d, name, drives=1)
    return prepcheck.wait_phase(d, name, "awaiting-tracking", 120)


def first_after_put(reqs):
    """The request that followed the first PUT."""
    i = [k for k, r in enumerate(reqs) if r[0] == "PUT"][0]
    return reqs[i + 1] if i + 1 < len(reqs) else None


def test_put_timeout(d, sim):
    # Default reading: 404 while the create operation runs (lroSeconds 4).
    name = "a-timeout"
    put_timed_out(d, sim, name, lroSeconds=4)
    reqs = job_requests(sim, name)
    puts = [r for r in reqs if r[0] == "PUT"]
    check(len(puts) == 1 and puts[0][3]["fault"] == "hang",
          "one PUT, the one that timed out: %r" % [(m, s) for m, _, s, _ in reqs])
    nxt = first_after_put(reqs)
    check(nxt is not None and nxt[0] == "GET" and nxt[1] == "",
          "a GET of the job by name follows the timed-out PUT: %r" % (nxt,))
    check("found by name" in d.read_log(), "the journal says how the job was found")
    one_job(sim, name)
    ship_and_import(d, sim, name, "TRK-" + name)


def test_get_while_creating(d, sim):
    # Alternative: the job is readable while being created.
    name = "a-visible"
    put_timed_out(d, sim, name, lroSeconds=60, getWhileCreating=True)
    reqs = job_requests(sim, name)
    check(len([r for r in reqs if r[0] == "PUT"]) == 1, "one PUT")
    nxt = first_after_put(reqs)
    check(nxt[0] == "GET" and nxt[2] == 200, "the GET after the PUT found it: %r" % (nxt[:3],))
    sim_config(sim, getWhileCreating=False, lroSeconds=0)
    one_job(sim, name)
    ship_and_import(d, sim, name, "TRK-" + name)


def test_reput_conflict(d, sim):
    # Alternative: every re-PUT is 409; the create outlasts seedd's 10 looks.
    name = "a-conflict"
    put_timed_out(d, sim, name, lroSeconds=16, rePutConflict=True)
    reqs = job_requests(sim, name)
    puts = [r for r in reqs if r[0] == "PUT"]
    check(len(puts) == 2 and puts[1][2] == 409,
          "after 10 looks one more PUT, answered 409: %r" % [(m, s) for m, _, s, _ in reqs])
    i = reqs.index(puts[1])
    check(all(r[0] == "GET" for r in reqs[reqs.index(puts[0]) + 1:i]) and
          reqs[i + 1][0] == "GET", "only GETs between the PUTs, and a GET after the 409")
    sim_config(sim, rePutConflict=False, lroSeconds=30)
    one_job(sim, name)
    ship_and_import(d, sim, name, "TRK-" + name)


def test_reput_while_creating(d, sim):
    # Default reading: a creation that outlasts seedd's 10 looks; the re-PUT (identical
    # body) is answered 202 with the same operation, which seedd follows.
    name = "a-reput"
    put_timed_out(d, sim, name, lroSeconds=14, lroPolls=30)
    puts = [r for r in job_requests(sim, name) if r[0] == "PUT"]
    check(len(puts) == 2 and puts[1][2] == 202, "one more PUT after 10 looks, answered 202: %r"
          % [r[2] for r in puts])
    sim_config(sim, lroSeconds=30, lroPolls=1)
    one_job(sim, name)


def test_no_location(d, sim):
    name = "a-noloc"
    sim_config(sim, createNoLocation=True, lroSeconds=3)
    azenv.prepared_job(d, name, drives=1)
    prepcheck.wait_phase(d, name, "awaiting-tracking", 90)
    reqs = job_requests(sim, name)
    puts = [r for r in reqs if r[0] == "PUT"]
    check(len(puts) == 1 and puts[0][2] == 202, "one PUT, answered 202")
    check(first_after_put(reqs)[0] == "GET", "followed by a GET of the job")
    check(not [r for r in sim.requests() if "/operationResults/" in r["path"]
               and r["time"] > puts[0][3]["time"]], "no operation was polled")
    sim_config(sim, createNoLocation=False, lroSeconds=30)
    one_job(sim, name)


def test_retry_after_date(d, sim):
    name = "a-radate"
    sim_config(sim, lroRetryAfter=2, lroRetryAfterDate=True, lroPolls=2)
    azenv.prepared_job(d, name, drives=1)
    prepcheck.wait_phase(d, name, "awaiting-tracking", 90)
    put = [r for r in job_requests(sim, name) if r[0] == "PUT"][0][3]
    polls = [r for r in sim.requests() if "/operationResults/" in r["path"] and
             r["time"] > put["time"]]
    times = [put["time"]] + [r["time"] for r in polls]
    gaps = [b - a for a, b in zip(times, times[1:])]
    check(len(polls) == 3 and min(gaps) >= 1.4,
          "polls wait for the HTTP-date (2-3 s), not OperationPollSec=1: %r" % gaps)
    sim_config(sim, lroRetryAfter=None, lroRetryAfterDate=False, lroPolls=1)


def test_async_operation(d, sim):
    # Alternative: the create's 202 carries Azure-AsyncOperation (ARM's other LRO form).
    name = "a-async"
    sim_config(sim, createAsyncOperation=True, lroPolls=2)
    azenv.prepared_job(d, name, drives=1)
    prepcheck.wait_phase(d, name, "awaiting-tracking", 90)
    put = [r for r in job_requests(sim, name) if r[0] == "PUT"]
    later = [r for r in sim.requests() if r["time"] > put[0][3]["time"]]
    check(len(put) == 1 and len([r for r in later if "/operationStatuses/" in r["path"]]) == 3
          and not [r for r in later if "/operationResults/" in r["path"]],
          "the operation is followed through Azure-AsyncOperation only")
    name = "a-asyncfail"
    sim.fault("lro_fail", method="PUT", path_regex="/jobs/%s$" % name, code="QuotaExceeded",
              message="too many orders")
    azenv.prepared_job(d, name, drives=1)
    job = prepcheck.wait_state(d, name, "failed", 90)
    check("QuotaExceeded: too many orders" in job["error"],
          "a Failed operation status fails the step with Azure's error: %r" % job["error"])
    check(len([r for r in job_requests(sim, name) if r[0] == "PUT"]) == 1, "and is not resent")
    sim_config(sim, createAsyncOperation=False, lroPolls=1)


def test_completed_with_disk_errors(d, sim):
    # Alternative: the job ends "Completed" although a disk's copy had errors.
    name = "a-diskerr"
    azenv.prepared_job(d, name, drives=1)
    prepcheck.wait_phase(d, name, "awaiting-tracking", 90)
    d.ctl("job", "ship", name, "--carrier", "DHL", "--tracking", "TRK-" + name, check_rc=0)
    prepcheck.wait_state(d, name, "shipped", 60)
    sim.advance(name, "AtAzureDC")
    sim.advance(name, "DataCopy", disks={"%s-SN0" % name.upper(): {
        "copyStatus": "CompletedWithErrors", "filesErroredOut": 2}})
    sim.advance(name, "Completed")
    job = prepcheck.wait_state(d, name, "imported", 60)
    check(job["phase"] == "import-problems", "a disk with errors is a problem whatever the "
          "job's final status: %r" % job["phase"])


def test_waiting_for_action(d, sim):
    name = "a-wait"
    azenv.prepared_job(d, name, drives=2)
    prepcheck.wait_phase(d, name, "awaiting-tracking", 90)
    p = d.ctl("job", "mitigate", name, "--action", "Resume")
    check(p.returncode == 1 and "InvalidState" in p.stderr,
          "mitigate before shipping is refused: %r" % p.stderr)
    d.ctl("job", "ship", name, "--carrier", "DHL", "--tracking", "TRK-" + name, check_rc=0)
    prepcheck.wait_state(d, name, "shipped", 60)
    sim.advance(name, "AtAzureDC")
    sim.advance(name, "DataCopy")
    serial = "%s-SN1" % name.upper()
    sim.ctl("POST", "/jobs/%s/wait-for-action" % name, {
        "actions": ["Resume", "MoveToCleanUpDevice"],
        "disks": {serial: {"error": {"code": "DiskCopyError", "message": "3 files failed"},
                           "actions": ["Resume"]}}})
    job = prepcheck.wait_job(d, name, lambda j: "SsemUserCopyErrorWaitingForAction" in
                             (j.get("phase") or ""), "the phase names Azure's code", 60)
    check("waiting for customer action" in job["phase"] and "Resume" in job["phase"],
          "the phase: %r" % job["phase"])
    check(job["state"] == "shipped" and "SsemUserCopyErrorWaitingForAction" in
          (job.get("error") or "") and "DiskCopyError: 3 files failed" in job["error"] and
          serial in job["error"], "the job's error has Azure's codes and messages: %r" %
          job.get("error"))
    log = d.read_log()
    check("Azure is waiting for the customer" in log and
          "seedctl job mitigate %s" % name in log, "the journal says what to do")
    check(log.count("Azure is waiting for the customer") == 1, "said once, not every poll")
    p = d.ctl("job", "mitigate", name, "--action", "Bogus")
    check(p.returncode == 1 and "InvalidArgument" in p.stderr, "an unknown action is refused")
    p = d.ctl("job", "mitigate", name, "--action", "Resume", "--serial", "NOPE")
    check(p.returncode == 1 and "NOPE" in p.stderr, "an unknown serial is refused")
    p = d.ctl("job", "mitigate", name, "--action", "Restart")
    check(p.returncode == 1 and "InvalidMitigationAction" in p.stderr,
          "Azure's refusal reaches the operator: %r" % p.stderr)
    out = d.ctl_json("job", "mitigate", name, "--action", "Resume", "--serial", serial)
    check(out["name"] == name, "mitigate replies with the job")
    sent = [r for r in sim.requests() if r["path"].endswith("/jobs/%s/mitigate" % name) and
            r["status"] == 204]
    check(len(sent) == 1 and sent[0]["body"] == {"serialNumberCustomerResolutionMap":
                                                 {serial: "Resume"}} and
          sent[0]["query"].get("api-version") == "2025-07-01",
          "the documented mitigate call: %r" % [r["body"] for r in sent])
    prepcheck.wait_job(d, name, lambda j: not j.get("error"), "the error is cleared", 30)
    check("mitigate sent: Resume for drive %s" % serial in job_log(d, name),
          "the job log records the answer")
    sim.advance(name, "Completed")
    prepcheck.wait_state(d, name, "imported", 60)


def two_drive_job(d, name):
    """A job whose two drives both carry a file (400 kB drives, 200 kB files)."""
    staging = os.path.join(d.tmp, "staging-" + name)
    os.makedirs(staging)
    for f in ("x.bin", "y.bin"):
        open(os.path.join(staging, f), "wb").write(os.urandom(200000))
    d.ctl_json("job", "create", name, "--staging", staging)
    prepcheck.wait_phase(d, name, "indexed")
    for i in range(2):
        path = os.path.join(d.tmp, "%s-drive-%d" % (name, i))
        os.mkdir(path)
        keyf = os.path.join(d.tmp, "%s-key-%d" % (name, i))
        azenv.write_secret(keyf, azenv.KEYS[i])
        d.ctl_json("drive", "add", name, path, "--serial", "%s-SN%d" % (name.upper(), i),
                   "--capacity", "400000", "--bitlocker-key-file", keyf)
    d.ctl_json("job", "prepare", name)


def test_importexport(tmp_root):
    sim = azenv.Sim(os.path.join(tmp_root, "ie-answers"), tls=False)
    d = Daemon()
    with open(d.config, "w") as f:
        f.write(azenv.config(d.tmp, sim, api="ImportExport"))
    d.start()
    try:
        name = "ie-state"
        # Alternatives: the job shows provisioningState Creating for 4 s after its PUT,
        # and its state runs ahead of its drives'.
        sim_config(sim, jobAheadOfDrives=True, provisioningSeconds=4)
        two_drive_job(d, name)
        prepcheck.wait_phase(d, name, "awaiting-tracking", 90)
        reqs = job_requests(sim, name)
        put = [r for r in reqs if r[0] == "PUT"]
        gets = [r for r in reqs[reqs.index(put[0]) + 1:] if r[0] == "GET"]
        check(len(put) == 1 and put[0][2] == 201 and len(gets) >= 3 and
              gets[-1][3]["time"] - put[0][3]["time"] >= 3.5,
              "seedd waits for provisioning to end, GETting the job: %r" %
              [(m, st) for m, _, st, _ in reqs])
        sim_config(sim, provisioningSeconds=0)
        d.ctl("job", "ship", name, "--carrier", "UPS", "--tracking", "1Z-IES", check_rc=0)
        prepcheck.wait_state(d, name, "shipped", 60)
        versions = {r["query"].get("api-version") for r in sim.requests()
                    if "Microsoft.ImportExport" in r["path"]}
        check(versions == {"2020-08-01"}, "ImportExport at the stable 2020-08-01: %r" % versions)
        sn0, sn1 = "%s-SN0" % name.upper(), "%s-SN1" % name.upper()
        sim.advance(name, "Received")
        sim.advance(name, "Transferring")
        sim.advance(name, "Packaging")
        # The job says Packaging, its drives are still Transferring: not imported.
        time.sleep(3)
        job = d.ctl_json("job", "show", name)
        check(job["state"] == "shipped", "not imported while a drive has not completed")
        # state wins over copyStatus, both ways.
        sim.ctl("POST", "/jobs/%s/drive-status" % name, {
            "serial": sn0, "state": "CompletedMoreInfo", "copyStatus": "Completed"})
        time.sleep(2)
        check(d.ctl_json("job", "show", name)["state"] == "shipped",
              "still not imported: %s is Transferring" % sn1)
        sim.ctl("POST", "/jobs/%s/drive-status" % name, {
            "serial": sn1, "state": "Completed", "copyStatus": "Failed"})
        job = prepcheck.wait_state(d, name, "imported", 60)
        check(job["phase"] == "import-problems", "CompletedMoreInfo is a problem: %r" %
              job["phase"])
        text = [t for t in job_log(d, name).splitlines() if "Azure finished" in t]
        check(len(text) == 1 and "drive %s: CompletedMoreInfo (copy status: Completed)" % sn0
              in text[0] and sn1 not in text[0],
              "the problem is the drive whose state says so, not the one whose copyStatus "
              "does: %r" % text)
        drives = {x["serial"]: x for x in d.ctl_json("drive", "list", name)}
        check(drives[sn0]["azure"]["copyStatus"] == "CompletedMoreInfo" and
              drives[sn1]["azure"]["copyStatus"] == "Completed",
              "the drives keep their state: %r" % {k: v.get("azure") for k, v in drives.items()})
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
        sim.stop()


def main():
    d = Daemon()
    sim = azenv.Sim(d.tmp)
    with open(d.config, "w") as f:
        f.write(azenv.config(d.tmp, sim))
    d.start()
    try:
        test_validate_skipped(d, sim)
        test_put_timeout(d, sim)
        test_get_while_creating(d, sim)
        test_reput_conflict(d, sim)
        test_reput_while_creating(d, sim)
        test_no_location(d, sim)
        test_retry_after_date(d, sim)
        test_async_operation(d, sim)
        test_completed_with_disk_errors(d, sim)
        test_waiting_for_action(d, sim)
        d.stop()
        azenv.no_secrets(d.read_log(), "seedd's log")
    finally:
        if d.alive():
            d.proc.kill()
        sim.stop()
    test_importexport(d.tmp)
    print("ok")


if __name__ == "__main__":
    main()
