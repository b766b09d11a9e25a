"""After the import, against Azurite and the simulator's datacenter (which
imports the shipped drive directories for real, as documented: the
manifest's blocks and ids, Put Block List, Content-MD5 only from properties
files): a clean import ends in `done` with every file verified in the vault
and nothing repaired, with Content-MD5 from properties files, without them
(ignore-properties), with the old always-MD5 datacenter and without a
verbose log; each fault class (missing, corrupt block, wrong length,
renamed, failed blob status, differing block list) is found by the
reconcile, repaired from staging and verified; a drive-level failure
(BitLockerKeyInvalid) is named per drive;
a staging file changed after indexing is kept and reported; kill -9 during
the vault copy and during cleanup resume; nothing is deleted before its vault
copy is verified."""
import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, skip, SEEDCTL  # noqa: E402
import azenv  # noqa: E402
import azurite  # noqa: E402
import prepcheck  # noqa: E402

sys.path.insert(0, os.path.join(os.environ.get("SOURCE_ROOT", "."), "tests", "azure-sim"))
import blobstore  # noqa: E402


def tree(n_small=40):
    files = {"db/full.bak": os.urandom(9 * (1 << 20) + 7), "logs/empty.log": b"",
             "naïve/résumé.txt": b"unicode\n"}
    for i in range(n_small):
        files["docs/%02d/f-%03d.txt" % (i % 5, i)] = os.urandom(1 + (i * 97) % 12000)
    return files


def blobs(store, container, prefix):
    try:
        return {b["name"]: b for b in store.list(container, prefix)}
    except blobstore.BlobError as e:
        if e.status == 404:
            return {}
        raise


def ship_and_import(d, sim, name, faults=None, options=None):
    prepcheck.wait_phase(d, name, "awaiting-tracking", 120)
    job = d.ctl_json("job", "show", name)
    sim.ctl("POST", "/jobs/%s/drives" % name,
            {dr["serial"]: dr["path"] for dr in job["drives"] if dr["files"]})
    if faults:
        sim.ctl("POST", "/jobs/%s/import-faults" % name, faults)
    if options:
        sim.ctl("POST", "/jobs/%s/import-options" % name, options)
    d.ctl("job", "ship", name, "--carrier", "DHL", "--tracking", "T-" + name, check_rc=0)
    prepcheck.wait_state(d, name, "shipped", 60)
    for status in ("AtAzureDC", "DataCopy", "Completed"):
        sim.advance(name, status)


def check_vault(store, name, files):
    vault = blobs(store, "vault", name + "/")
    for rel, data in files.items():
        b = vault.get("%s/%s" % (name, rel))
        check(b is not None, "%s is in the vault" % rel)
        check(b["length"] == len(data), "vault length of %s" % rel)
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        check(b.get("contentMD5") == md5, "vault Content-MD5 of %s" % rel)
        check(store.get("vault", "%s/%s" % (name, rel)) == data, "vault bytes of %s" % rel)
    left = blobs(store, "seedd-import", name + "/")
    check(not left, "the job's import blobs are deleted: %r" % sorted(left)[:3])


def manifest_has_properties(d, name):
    """Whether seedd's manifests carry PropertiesPath (Content-MD5 from properties files)."""
    for dr in d.ctl_json("job", "show", name)["drives"]:
        p = os.path.join(dr["path"], "DriveManifest.xml")
        if dr["files"] and os.path.exists(p) and b"<PropertiesPath" in open(p, "rb").read():
            return True
    return False


def check_clean(d, name, n, want_method):
    job = prepcheck.wait_state(d, name, "done", 180)
    imp, by = job["afterImport"]["import"], job["afterImport"].get("verifiedBy", {})
    print("# %s: import %r, verified by %r" % (name, imp, by), flush=True)
    if imp.get("repaired"):
        print("# notOk: %r" % job["afterImport"]["notOk"][:4])
        print("# log: " + " | ".join(e["text"] for e in d.ctl_json("job", "log", name))[-3000:])
    check(imp.get("repaired", 0) == 0, "%s: a clean documented import repairs nothing: %r" %
          (name, imp))
    check(imp["ok"] == n, "%s: every file reconciled ok: %r" % (name, imp))
    check(by.get(want_method) == n and sum(by.values()) == n,
          "%s: every file verified by %s: %r" % (name, want_method, by))
    return job


# NotifyCommand= (issue 12): appends its environment to out/EVENT-JOB.env.
NOTIFY = "#!/bin/sh\nenv >> \"%s/$SEEDD_EVENT-$SEEDD_JOB.env\"\n"
JOB_STATE_ID = "28d7a9b5c75549149c483cae0fe0b433"


def check_notified(d, name, blob):
    """The imported and done events of a job ran NotifyCommand=, with no secret in its env."""
    for event in ("imported", "done"):
        path = os.path.join(d.tmp, "notify", "%s-%s.env" % (event, name))
        deadline = time.time() + 10
        while not os.path.exists(path) and time.time() < deadline:
            time.sleep(0.05)
        check(os.path.exists(path), "NotifyCommand ran for %s of %s" % (event, name))
        text = open(path).read()
        env = dict(l.partition("=")[::2] for l in text.splitlines())
        check(env.get("SEEDD_EVENT") == event and env.get("SEEDD_JOB") == name and
              env.get("MESSAGE_ID") == JOB_STATE_ID and name in env.get("SEEDD_TEXT", ""),
              "the %s event's environment: %r" % (event, env))
        azenv.no_secrets(text, "NotifyCommand's environment")
        check(blob["key"] not in text, "the account key is not in NotifyCommand's environment")


def test_clean(d, sim, store, store_blob):
    files = tree()
    staging = os.path.join(d.tmp, "staging-clean")
    azenv.prepared_job(d, "clean", drives=2, files=files)
    watch = subprocess.Popen([SEEDCTL, "--socket", d.sock, "watch", "clean"],
                             stdout=subprocess.PIPE, text=True)
    ship_and_import(d, sim, "clean")
    props = manifest_has_properties(d, "clean")
    job = check_clean(d, "clean", len(files), "content-md5" if props else "block-list")
    out = watch.communicate(timeout=30)[0]
    check(watch.returncode == 0, "the watch of a done job exits 0: %d" % watch.returncode)
    check("clean: shipped done in " in out and "clean: vault copy done: %d files, " % len(files)
          in out and "%d verified in the vault" % len(files) in out,
          "the watch sums up the stages after the import:\n%s" % out)
    print("\n".join(l for l in out.splitlines() if l.startswith("clean: ")))
    check(job["afterImport"]["vaultVerified"] == len(files), "every vault copy verified")
    text = d.ctl("job", "show", "clean", check_rc=0).stdout
    check("Verified by" in text and "repaired 0" in text, "job show says how:\n%s" % text)
    check_vault(store, "clean", files)
    check(not any(os.path.isfile(os.path.join(r, f)) for r, _, fs in
                  os.walk(os.path.join(d.tmp, "staging-clean")) for f in fs),
          "the staging files are deleted")
    rep = d.ctl_json("job", "report", "clean")
    check(rep["reportFile"] and os.path.exists(rep["reportFile"]), "the report file exists")
    full = json.load(open(rep["reportFile"]))
    check(len(full["files"]) == len(files), "the report lists every file")
    one = [f for f in full["files"] if f["path"] == "db/full.bak"][0]
    check(one["md5"] == hashlib.md5(files["db/full.bak"]).hexdigest() and
          one["vault"] == "verified" and one["cleanup"] == "staging-deleted",
          "per-file hash and outcome: %r" % one)
    check(any(e["kind"] == "transition" and e["state"] == "done" for e in full["events"]),
          "every transition is in the report")
    check_notified(d, "clean", store_blob)
    # Purged, the done job leaves the listings; its report file stays and is named.
    purged = d.ctl_json("job", "purge", "clean")
    check(purged == {"name": "clean", "report": rep["reportFile"]} and
          os.path.exists(rep["reportFile"]), "purge keeps the report file: %r" % purged)
    check("clean" not in [j["name"] for j in d.ctl_json("job", "list", "--all")],
          "a purged job is not listed")


def test_clean_variants(d, sim, store):
    """The same clean import through the datacenter's switches: properties
    files ignored, the old always-MD5 behaviour, no verbose log and no block
    ids in the logs."""
    for name, opts, method in (
            ("noprops", {"contentMd5": "ignore-properties"}, "block-list"),
            ("always", {"contentMd5": "always"}, "content-md5"),
            ("noverbose", {"contentMd5": "ignore-properties", "verboseLog": "never",
                           "blockIdsInLog": False}, "block-list-no-verbose-log")):
        files = tree(8)
        azenv.prepared_job(d, name, drives=1, files=files)
        ship_and_import(d, sim, name, options=opts)
        check_clean(d, name, len(files), method)
        check_vault(store, name, files)


FAULTS = {"drop": "docs/00/f-000.txt", "corrupt": "db/full.bak", "rename": "docs/01/f-001.txt",
          "length": "docs/02/f-002.txt", "failed": "docs/03/f-003.txt",
          "blocklist": "docs/04/f-004.txt"}


def test_faults(d, sim, store):
    files = tree(12)
    azenv.prepared_job(d, "faulty", drives=1, files=files)
    ship_and_import(d, sim, "faulty", {k: [v] for k, v in FAULTS.items()},
                    {"contentMd5": "ignore-properties"})
    job = prepcheck.wait_state(d, "faulty", "done", 180)
    imp, by = job["afterImport"]["import"], job["afterImport"].get("verifiedBy", {})
    print("# faulty: import %r, verified by %r" % (imp, by), flush=True)
    check(imp["repaired"] == len(FAULTS), "every fault class repaired: %r" % imp)
    check(by.get("repaired-upload") == len(FAULTS) and
          by.get("block-list") == len(files) - len(FAULTS), "verified by: %r" % by)
    bad = {b["path"]: b["detail"] for b in job["afterImport"]["notOk"]}
    log = " ".join(e["text"] for e in d.ctl_json("job", "log", "faulty"))
    print("# faulty log: %s" % log[log.find("reconciling"):log.find("copying-to-vault")],
          flush=True)
    check(set(bad) == set(FAULTS.values()), "the repaired files are listed: %r" % bad)
    check_vault(store, "faulty", files)
    check("repaired db/full.bak" in log, "repairs are logged")
    rep = json.load(open(d.ctl_json("job", "report", "faulty")["reportFile"]))
    methods = {f["path"]: f.get("verifiedBy") for f in rep["files"]}
    check(methods["db/full.bak"] == "repaired-upload" and
          methods["docs/00/f-005.txt"] == "block-list", "the report says how: %r" %
          {k: methods[k] for k in ("db/full.bak", "docs/00/f-005.txt")})


def test_drive_failure(d, sim, store):
    files = tree(10)
    azenv.prepared_job(d, "drivefail", drives=2, files=files)
    prepcheck.wait_phase(d, "drivefail", "awaiting-tracking", 120)
    drives = [dr for dr in d.ctl_json("job", "show", "drivefail")["drives"] if dr["files"]]
    check(len(drives) == 2, "both drives carry files")
    bad = drives[0]
    ship_and_import(d, sim, "drivefail", options={
        "contentMd5": "ignore-properties", "driveFailure": {bad["serial"]: "BitLockerKeyInvalid"}})
    # Uploading a whole drive is the WAN transfer the disks were to avoid:
    # seedd stops and asks; `job retry` is the operator's yes.
    job = prepcheck.wait_state(d, "drivefail", "failed", 180)
    err = job["error"] or ""
    print("# drivefail: failed: %s" % err, flush=True)
    check("%s: BitLockerKeyInvalid" % bad["serial"] in err and "job retry drivefail" in err,
          "the error names the drive, its status and the way on: %r" % err)
    imp = (job.get("afterImport") or {}).get("import") or {}
    check(imp.get("repaired", 0) == 0, "nothing was uploaded before the operator agreed: %r" % imp)
    d.kill9()
    d.start()
    job = prepcheck.wait_state(d, "drivefail", "failed", 30)
    check(job["error"] == err, "a restart keeps the job waiting for the operator")
    d.ctl("job", "retry", "drivefail", check_rc=0)
    job = prepcheck.wait_state(d, "drivefail", "done", 180)
    imp = job["afterImport"]["import"]
    fails = job["afterImport"]["driveFailures"]
    print("# drivefail: import %r, drive failures %r" % (imp, fails), flush=True)
    check(fails == [{"serial": bad["serial"], "status": "BitLockerKeyInvalid",
                     "files": bad["files"]}], "the drive-level failure is named: %r" % fails)
    dj = [dr for dr in job["drives"] if dr["serial"] == bad["serial"]][0]
    check(dj["azure"]["logStatus"] == "BitLockerKeyInvalid", "job show names it per drive")
    check(imp["repaired"] == bad["files"] and imp.get("missing", 0) == 0,
          "its files were repaired over the network, not shown as missing: %r" % imp)
    details = {b["detail"] for b in job["afterImport"]["notOk"]}
    check(all("BitLockerKeyInvalid" in (x or "") for x in details), "details: %r" % details)
    text = d.ctl("job", "show", "drivefail", check_rc=0).stdout
    check("Drive failed" in text and "%s: BitLockerKeyInvalid" % bad["serial"] in text,
          "seedctl job show names the failed drive:\n%s" % text)
    log = " ".join(e["text"] for e in d.ctl_json("job", "log", "drivefail"))
    check("drive %s: Azure could not import it: BitLockerKeyInvalid" % bad["serial"] in log,
          "the job log names it")
    check_vault(store, "drivefail", files)
    rep = json.load(open(d.ctl_json("job", "report", "drivefail")["reportFile"]))
    check(rep["job"]["afterImport"]["driveFailures"] == fails and
          [x["azure"]["logStatus"] for x in rep["job"]["drives"] if x["serial"] == bad["serial"]]
          == ["BitLockerKeyInvalid"], "the report names it")


def test_changed_staging(d, sim, store):
    files = tree(6)
    azenv.prepared_job(d, "changed", drives=1, files=files)
    path = os.path.join(d.tmp, "staging-changed", "docs", "01", "f-001.txt")
    prepcheck.wait_phase(d, "changed", "awaiting-tracking", 120)
    with open(path, "ab") as f:
        f.write(b"changed after indexing")
    ship_and_import(d, sim, "changed")
    job = prepcheck.wait_state(d, "changed", "done", 180)
    check(os.path.exists(path), "a staging file changed after indexing is not deleted")
    check(job["afterImport"]["stagingKept"] == 1, "and it is reported")
    log = " ".join(e["text"] for e in d.ctl_json("job", "log", "changed"))
    check("kept a staging file: docs/01/f-001.txt" in log, "the log names it")


def test_crashes(d, sim, store):
    files = tree(300)
    azenv.prepared_job(d, "crashy", drives=1, files=files)
    ship_and_import(d, sim, "crashy")
    for state in ("imported", "vault_copy", "cleanup"):
        order = ("imported", "vault_copy", "cleanup", "done")
        prepcheck.wait_job(d, "crashy", lambda j, s=state: j["state"] in order and
                           order.index(j["state"]) >= order.index(s), state, 180)
        job = d.ctl_json("job", "show", "crashy")
        if job["state"] == state:
            print("# crashy: kill -9 in %s (phase %s)" % (state, job["phase"]), flush=True)
            d.kill9()
            # Nothing deleted without a verified vault copy, at any moment.
            vault = blobs(store, "vault", "crashy/")
            gone = set("crashy/" + r for r in files) - set(blobs(store, "seedd-import",
                                                                "crashy/"))
            check(gone <= set(vault), "import blobs deleted only after their vault copy")
            d.start()
    job = prepcheck.wait_state(d, "crashy", "done", 180)
    imp, by = job["afterImport"]["import"], job["afterImport"]["verifiedBy"]
    print("# crashy: import %r, verified by %r" % (imp, by), flush=True)
    check(imp.get("repaired", 0) == 0 and imp["ok"] == len(files) and
          sum(by.values()) == len(files), "kill -9 during the reconcile re-sends nothing: %r %r" %
          (imp, by))
    check_vault(store, "crashy", files)
    check_report_rewritten(d, "crashy", files)


def check_report_rewritten(d, name, files):
    """The report file is written on a thread after `done`: kill -9 between
    the transition and the file (no file, or a torn temporary one) ends with
    the whole report written at the next start, and GetJobReport names it."""
    path = os.path.join(d.state, "reports", name + ".json")
    check(os.path.exists(path), "the report file exists: %s" % path)
    d.kill9()
    os.unlink(path)
    with open(path + ".tmp", "w") as f:
        f.write('{"torn": ')
    d.start()
    rep = d.call("io.seedd.GetJobReport", {"name": name})["parameters"]["report"]
    check(rep["reportFile"] == path, "GetJobReport names the rewritten file: %r" %
          rep["reportFile"])
    full = json.load(open(path))
    check(len(full["files"]) == len(files) and full["job"]["state"] == "done",
          "the rewritten report is whole: %d files, %s" % (len(full["files"]),
                                                           full["job"]["state"]))
    check(any(e["kind"] == "transition" and e["state"] == "done" for e in full["events"]),
          "the rewritten report holds the done transition")
    check(not os.path.exists(path + ".tmp"), "the temporary file is gone")
    for _ in range(50):  # the first write's note, and the rewrite's
        if sum("audit report written" in e["text"]
               for e in d.ctl_json("job", "log", name)) >= 2:
            break
        time.sleep(0.1)
    else:
        check(False, "the journal notes the rewritten report")


def test_importexport(blob, store):
    """The legacy API end to end: seedd asks for the verbose log (logLevel
    Verbose) and a clean documented import re-sends nothing."""
    d = Daemon()
    sim = azenv.Sim(d.tmp, blob=blob)
    with open(d.config, "w") as f:
        f.write(azenv.config(d.tmp, sim, api="ImportExport", blob=blob))
    d.start()
    try:
        files = tree(8)
        azenv.prepared_job(d, "iejob", drives=1, files=files)
        prepcheck.wait_phase(d, "iejob", "awaiting-tracking", 120)
        puts = azenv.arm_requests(sim, "PUT", "/jobs/iejob")
        check(puts and puts[0]["body"]["properties"]["logLevel"] == "Verbose",
              "the ImportExport job asks for the verbose log")
        job = d.ctl_json("job", "show", "iejob")
        sim.ctl("POST", "/jobs/iejob/drives?kind=importexport",
                {dr["serial"]: dr["path"] for dr in job["drives"] if dr["files"]})
        d.ctl("job", "ship", "iejob", "--carrier", "UPS", "--tracking", "1Z-IE-POST", check_rc=0)
        prepcheck.wait_state(d, "iejob", "shipped", 60)
        for state in ("Received", "Transferring", "Completed"):
            sim.advance("iejob", state)
        check_clean(d, "iejob", len(files), "content-md5" if
                    manifest_has_properties(d, "iejob") else "block-list")
        check_vault(store, "iejob", files)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
        sim.stop()


def main():
    try:
        blob = azurite.info()
    except azurite.Unavailable as e:
        skip("Azurite is not installed (run scripts/bootstrap): %s" % e)
    d = Daemon()
    sim = azenv.Sim(d.tmp, blob=blob)
    store = blobstore.BlobClient(blob["url"], blob["account"], blob["key"], blob.get("ca"))
    notify = os.path.join(d.tmp, "notify.sh")
    os.mkdir(os.path.join(d.tmp, "notify"))
    with open(notify, "w") as f:
        f.write(NOTIFY % os.path.join(d.tmp, "notify"))
    os.chmod(notify, 0o700)
    with open(d.config, "w") as f:
        f.write(azenv.config(d.tmp, sim, blob=blob).replace(
            "[Daemon]\n", "[Daemon]\nNotifyCommand=%s\n" % notify, 1))
    d.start()
    try:
        test_clean(d, sim, store, blob)
        test_clean_variants(d, sim, store)
        test_faults(d, sim, store)
        test_drive_failure(d, sim, store)
        test_changed_staging(d, sim, store)
        test_crashes(d, sim, store)
        d.stop()
        azenv.no_secrets(d.read_log(), "seedd's log")
        check(blob["key"] not in d.read_log(), "the account key is not logged")
    finally:
        if d.alive():
            d.proc.kill()
        sim.stop()
    test_importexport(blob, store)
    print("ok")


if __name__ == "__main__":
    main()
