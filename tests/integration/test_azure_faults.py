"""Each fault Azure can throw, injected by the simulator on one step of a
job's way from prepared to imported: 429 with Retry-After, 500, 503, a hang
past the timeout, a reset connection, a malformed body, an expired token, a
failed long-running operation, a wrong client secret. After each, the job
reaches `imported`, exactly one Azure job exists for it, and no secret was
logged."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check  # noqa: E402
import azenv  # noqa: E402
import prepcheck  # noqa: E402


def sim_jobs(sim, name):
    jobs = sim.ctl("GET", "/jobs")
    if isinstance(jobs, dict):
        jobs = jobs.get("jobs", jobs.get("value", []))
    return [j for j in jobs if j.get("name", "").lower() == name.lower()]


def to_imported(d, sim, name, tracking):
    prepcheck.wait_phase(d, name, "awaiting-tracking", 120)
    d.ctl("job", "ship", name, "--carrier", "DHL", "--tracking", tracking, check_rc=0)
    prepcheck.wait_state(d, name, "shipped", 120)
    for status in ("AtAzureDC", "DataCopy", "Completed"):
        sim.advance(name, status)
    prepcheck.wait_state(d, name, "imported", 120)
    check(len(sim_jobs(sim, name)) == 1, "exactly one Azure job for %s" % name)


def run(d, sim, name, fault, method, suffix, **kw):
    sim.fault(fault, method=method, path_regex=".*%s$" % suffix.replace("JOB", name), **kw)
    t0 = time.time()
    azenv.prepared_job(d, name, drives=1)
    to_imported(d, sim, name, "TRK-" + name)
    left = [f for f in sim.ctl("GET", "/faults") if f["remaining"] > 0]
    check(not left, "the %s fault was really injected: %r" % (fault, left))
    print("%-14s %-6s %-28s imported in %.1f s" % (fault, method, suffix, time.time() - t0))


def test_lro_fail(d, sim):
    name = "f-lro"
    sim.fault("lro_fail", method="PUT", path_regex=".*/jobs/%s$" % name)
    azenv.prepared_job(d, name, drives=1)
    job = prepcheck.wait_state(d, name, "failed", 120)
    check("creating the Azure job failed" in job["error"], "a failed operation fails the step: %r"
          % job["error"])
    d.ctl_json("job", "retry", name)
    to_imported(d, sim, name, "TRK-" + name)


def test_bad_secret(d, sim):
    name = "f-secret"
    azenv.write_secret(os.path.join(d.tmp, "client-secret"), "not-the-secret")
    d.proc.send_signal(1)
    time.sleep(0.5)
    azenv.prepared_job(d, name, drives=1)
    job = prepcheck.wait_state(d, name, "failed", 120)
    check("invalid_client" in job["error"] and "AADSTS" in job["error"],
          "Entra's refusal is named: %r" % job["error"])
    check(not sim_jobs(sim, name), "nothing was created with a bad secret")
    azenv.write_secret(os.path.join(d.tmp, "client-secret"), azenv.SECRET)
    d.proc.send_signal(1)
    time.sleep(0.5)
    d.ctl_json("job", "retry", name)
    to_imported(d, sim, name, "TRK-" + name)


def main():
    d = Daemon()
    sim = azenv.Sim(d.tmp)
    with open(d.config, "w") as f:
        f.write(azenv.config(d.tmp, sim))
    d.start()
    try:
        run(d, sim, "f-429", "429", "PUT", "/jobs/JOB", count=2, retry_after=1)
        run(d, sim, "f-500", "500", "GET", "/jobs/JOB", count=2)
        run(d, sim, "f-503", "503", "POST", "/jobs/JOB/markDevicesShipped", count=2)
        run(d, sim, "f-hang", "hang", "GET", "/jobs/JOB", count=1, seconds=8)
        run(d, sim, "f-reset", "reset", "PUT", "/jobs/JOB", count=1)
        run(d, sim, "f-malformed", "malformed", "GET", "/jobs/JOB", count=2)
        run(d, sim, "f-expired", "expired_token", "GET", "/jobs/JOB", count=1)
        test_lro_fail(d, sim)
        test_bad_secret(d, sim)
        d.stop()
        azenv.no_secrets(d.read_log(), "seedd's log")
    finally:
        if d.alive():
            d.proc.kill()
        sim.stop()
    print("ok")


if __name__ == "__main__":
    main()
