"""A prepared job through the Azure control plane against the simulator:
create (validate, PUT, long-running operation), ship, every status, imported;
the legacy ImportExport API; cancel rules; tracking uniqueness; the shipping
deadline warning; no secret in any log or JSON output."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check  # noqa: E402
import azenv  # noqa: E402
import prepcheck  # noqa: E402


def test_databox(d, sim):
    files = azenv.prepared_job(d, "dbx-job")
    job = prepcheck.wait_phase(d, "dbx-job", "awaiting-tracking", 90)
    check(job["azure"]["jobName"] == "dbx-job" and job["azure"]["api"] == "DataBox",
          "the Azure job is named after the job: %r" % job["azure"])
    check(job["azure"]["state"] == "AwaitingShipmentDetails", "Azure state shown")
    check(job["azure"]["shipDeadline"], "the shipping deadline is shown")
    puts = azenv.arm_requests(sim, "PUT", "/jobs/dbx-job")
    check(len(puts) == 1, "exactly one PUT created the job: %d" % len(puts))
    body = puts[0]["body"]["properties"]["details"]
    disks = body["importDiskDetailsCollection"]
    check(sorted(disks) == ["DBX-JOB-SN0", "DBX-JOB-SN1"] or len(disks) >= 1,
          "one entry per drive serial: %r" % sorted(disks))
    for dr in job["drives"]:
        if dr["files"]:
            check(disks[dr["serial"]]["manifestHash"] == dr["manifestHash"],
                  "the manifest hash sent is the drive's")
    check(azenv.arm_requests(sim, "POST", "/validateInputs"), "inputs validated first")

    p = d.ctl("job", "ship", "dbx-job", "--carrier", "FedEx", "--tracking", "TRK-0001",
              check_rc=0)
    job = prepcheck.wait_state(d, "dbx-job", "shipped", 60)
    check(job["azure"]["carrier"] == "FedEx" and job["azure"]["trackingNumber"] == "TRK-0001",
          "carrier and tracking shown")
    ships = azenv.arm_requests(sim, "POST", "/markDevicesShipped")
    check(len(ships) == 1 and ships[0]["body"]["deliverToDcPackageDetails"]["trackingId"] ==
          "TRK-0001", "markDevicesShipped sent once with the tracking number")
    p = d.ctl("job", "cancel", "dbx-job", check_rc=1)
    check("shipped" in p.stderr, "a shipped job cannot be cancelled, and seedctl says why")

    for status in ("AtAzureDC", "DataCopy"):
        sim.advance("dbx-job", status)
        prepcheck.wait_job(d, "dbx-job", lambda j, s=status: j["azure"]["state"] == s,
                           "Azure status " + status, 30)
    sim.advance("dbx-job", "Completed")
    job = prepcheck.wait_state(d, "dbx-job", "imported", 30)
    log = " ".join(e["text"] for e in d.ctl_json("job", "log", "dbx-job"))
    check("Azure imported the drives" in log, "the import is logged")
    return files


def test_tracking_unique(d, sim):
    # Two drives, one file: the drive given nothing ends unused and is not named to Azure.
    azenv.prepared_job(d, "dbx-two", drives=2, files={"only.bin": os.urandom(4000)})
    job = prepcheck.wait_phase(d, "dbx-two", "awaiting-tracking", 90)
    states = sorted((dr["files"], dr["state"]) for dr in job["drives"])
    check(states == [(0, "unused"), (1, "manifest-written")], "drive states: %r" % states)
    used = [dr["serial"] for dr in job["drives"] if dr["files"]]
    puts = azenv.arm_requests(sim, "PUT", "/jobs/dbx-two")
    check(len(puts) == 1 and sorted(puts[0]["body"]["properties"]["details"]
                                    ["importDiskDetailsCollection"]) == used,
          "only the drive with files is in the Azure job: %r" % used)
    p = d.ctl("job", "ship", "dbx-two", "--carrier", "DHL", "--tracking", "TRK-0001",
              check_rc=1)
    check("already used" in p.stderr, "a tracking number of another job is refused: %r" %
          p.stderr)
    job = d.ctl_json("job", "cancel", "dbx-two")
    job = prepcheck.wait_state(d, "dbx-two", "cancelled", 30)
    check(azenv.arm_requests(sim, "POST", "/jobs/dbx-two/cancel"), "cancelled in Azure too")


def test_missing_key(d, sim):
    azenv.prepared_job(d, "nokey", drives=1, key_drives=[])
    job = prepcheck.wait_state(d, "nokey", "failed", 90)
    check("BitLocker" in job["error"], "a drive without a key fails clearly: %r" % job["error"])
    check(not azenv.arm_requests(sim, "PUT", "/jobs/nokey"), "nothing was sent to Azure")
    keyf = os.path.join(d.tmp, "nokey-fix")
    azenv.write_secret(keyf, azenv.KEYS[0])
    dr = d.ctl_json("job", "show", "nokey")["drives"][0]
    d.ctl_json("drive", "add", "nokey", dr["path"], "--serial", dr["serial"],
               "--bitlocker-key-file", keyf)
    d.ctl_json("job", "retry", "nokey")
    prepcheck.wait_phase(d, "nokey", "awaiting-tracking", 60)
    check(len(azenv.arm_requests(sim, "PUT", "/jobs/nokey")) == 1, "created once after retry")


def test_list_poll(d, sim):
    """Two shipped DataBox jobs are polled with one list call of the resource group."""
    for name in ("lst-one", "lst-two"):
        azenv.prepared_job(d, name, drives=1)
    for name in ("lst-one", "lst-two"):
        prepcheck.wait_phase(d, name, "awaiting-tracking", 90)
        d.ctl("job", "ship", name, "--carrier", "DHL", "--tracking", "TRK-" + name, check_rc=0)
        prepcheck.wait_state(d, name, "shipped", 60)
    for name in ("lst-one", "lst-two"):
        sim.advance(name, "AtAzureDC")
    for name in ("lst-one", "lst-two"):
        prepcheck.wait_job(d, name, lambda j: j["azure"]["state"] == "AtAzureDC",
                           "AtAzureDC", 30)
    lists = [r for r in sim.requests() if r.get("method") == "GET" and
             r.get("path", "").split("?")[0].endswith("/providers/Microsoft.DataBox/jobs")]
    check(lists, "the shipped jobs were polled with a list call")
    for name in ("lst-one", "lst-two"):
        sim.advance(name, "Completed")
        prepcheck.wait_state(d, name, "imported", 30)


def test_importexport(tmp_root):
    sim = azenv.Sim(os.path.join(tmp_root, "ie"), tls=False)
    d = Daemon()
    with open(d.config, "w") as f:
        f.write(azenv.config(d.tmp, sim, api="ImportExport", extra="ShipDeadlineDays=1\n"))
    d.start()
    try:
        azenv.prepared_job(d, "ie-job")
        job = prepcheck.wait_phase(d, "ie-job", "awaiting-tracking", 90)
        check(job["azure"]["api"] == "ImportExport" and job["azure"]["state"] == "Creating",
              "legacy job created: %r" % job["azure"])
        check("tracking number is due in 1 day" in d.read_log(),
              "the deadline warning reaches the journal (stderr here)")
        d.ctl("job", "ship", "ie-job", "--carrier", "UPS", "--tracking", "1Z-IE-1", check_rc=0)
        prepcheck.wait_state(d, "ie-job", "shipped", 60)
        patches = azenv.arm_requests(sim, "PATCH", "/jobs/ie-job")
        check(patches and patches[0]["body"]["properties"]["state"] == "Shipping",
              "the shipment is a PATCH to state Shipping")
        for state in ("Received", "Transferring", "Completed"):
            sim.advance("ie-job", state)
        prepcheck.wait_state(d, "ie-job", "imported", 30)
        azenv.no_secrets(d.read_log(), "seedd's log (ImportExport)")
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
        test_databox(d, sim)
        test_tracking_unique(d, sim)
        test_missing_key(d, sim)
        test_list_poll(d, sim)
        for name in ("dbx-job", "dbx-two", "nokey"):
            azenv.no_secrets(d.ctl("--json", "job", "show", name).stdout, "job show --json")
            azenv.no_secrets(d.ctl("--json", "job", "report", name).stdout, "job report")
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
