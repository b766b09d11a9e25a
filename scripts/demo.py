#!/usr/bin/env python3
"""One seedd job through its whole life on sample data, against the local
Azure emulation: the simulator of Entra ID and ARM (whose "datacenter"
imports the shipped drive directories) and Azurite for Blob storage.
Prints progress, every stage the job went through and its timeline; exits 0
only if the job is done after every stage. Removes its temporary directory
(sample data, drive directories, the fake secrets) at the end."""
import os
import shutil
import sys
import time

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("SOURCE_ROOT", top)
os.environ.setdefault("SEEDD", os.path.join(top, "build", "daemon", "seedd"))
os.environ.setdefault("SEEDCTL", os.path.join(top, "build", "client", "seedctl"))
sys.path.insert(0, os.path.join(top, "tests", "integration"))

from harness import Daemon  # noqa: E402
import azenv  # noqa: E402
import azurite  # noqa: E402
import prepcheck  # noqa: E402


STAGES = ["staging", "drive_prep", "shipped", "imported", "vault_copy", "cleanup", "done"]


def say(text):
    print("== " + text, flush=True)


def iec(n):
    """1536 -> "1.5 KiB", as seedctl prints sizes."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return "%d %s" % (n, unit) if unit == "B" else "%.1f %s" % (n, unit)
        n /= 1024.0


def stages_seen(d, name):
    """The job's states in the order its log shows them, each once."""
    seen = []
    for e in d.ctl_json("job", "log", name):
        if e.get("state") and e["state"] not in seen:
            seen.append(e["state"])
    return seen


def after_text(after):
    imp = after["import"]
    return ("%s; %d verified in the vault container; staging files: %d deleted, %d kept; "
            "verified by %s" % (", ".join("%d %s" % (imp[k], k) for k in
                                          ("ok", "missing", "corrupt", "renamed", "failed",
                                           "repaired") if k in imp),
                               after["vaultVerified"], after["stagingDeleted"],
                               after["stagingKept"],
                               ", ".join("%s %d" % kv for kv in sorted(after["verifiedBy"].items()))
                               or "nothing"))


def sample_tree(root):
    files = {"sql/full-2026-11-25.bak": os.urandom(24 << 20),
             "sql/diff-2026-11-25.bak": os.urandom(3 << 20),
             "logs/empty.log": b""}
    for i in range(60):
        files["files/share-%02d/doc-%03d.txt" % (i % 6, i)] = os.urandom(512 + i * 211)
    for rel, data in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    return files


def progress(d, name, until, timeout=300):
    last = None
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = d.ctl_json("job", "show", name)
        line = "%s / %s  copied %s of %s" % (j["state"], j["phase"], iec(j["copiedBytes"]),
                                             iec(j["bytes"]))
        if line != last:
            print("   " + line, flush=True)
            last = line
        if until(j):
            return j
        if j["state"] == "failed":
            raise SystemExit("the job failed: %s" % j["error"])
        time.sleep(0.2)
    raise SystemExit("timed out")


def main():
    blob = azurite.info()
    d = Daemon()
    sim = azenv.Sim(d.tmp, blob=blob)
    with open(d.config, "w") as f:
        f.write(azenv.config(d.tmp, sim, blob=blob))
    d.start()
    name = "demo-seed"
    try:
        staging = os.path.join(d.tmp, "staging-" + name)
        say("staging: sample backup in %s" % staging)
        files = sample_tree(staging)
        say("seedctl job create %s --staging %s" % (name, staging))
        d.ctl_json("job", "create", name, "--staging", staging)
        progress(d, name, lambda j: j["phase"] == "indexed")
        for i in range(2):
            path = os.path.join(d.tmp, "drive-%d" % i)
            os.mkdir(path)
            key = os.path.join(d.tmp, "bitlocker-%d.txt" % i)
            azenv.write_secret(key, azenv.KEYS[i])
            say("seedctl drive add %s %s --serial DEMO-DISK-%d" % (name, path, i))
            d.ctl_json("drive", "add", name, path, "--serial", "DEMO-DISK-%d" % i,
                       "--capacity", str((40 if i == 0 else 16) << 20),
                       "--bitlocker-key-file", key)
        say("seedctl job plan %s" % name)
        lines = d.ctl("job", "plan", name, check_rc=0).stdout.rstrip().splitlines()
        print("\n".join(lines[:8] + ["   ... (%d more lines)" % (len(lines) - 16)] + lines[-8:])
              if len(lines) > 20 else "\n".join(lines))
        say("seedctl doctor (is the set-up right?)")
        doc = d.ctl("doctor", timeout=120)
        print(doc.stdout.rstrip(), flush=True)
        if doc.returncode != 0:
            raise SystemExit("seedctl doctor found a problem (exit %d)" % doc.returncode)
        say("seedctl job prepare %s (copy, verify, manifests, Azure job)" % name)
        d.ctl_json("job", "prepare", name)
        job = progress(d, name, lambda j: j["phase"] == "awaiting-tracking")
        sim.ctl("POST", "/jobs/%s/drives" % name,
                {dr["serial"]: dr["path"] for dr in job["drives"] if dr["files"]})
        say("seedctl job ship %s --carrier DHL --tracking DEMO-TRACK-1" % name)
        d.ctl("job", "ship", name, "--carrier", "DHL", "--tracking", "DEMO-TRACK-1", check_rc=0)
        progress(d, name, lambda j: j["state"] == "shipped")
        for status in ("AtAzureDC", "DataCopy", "Completed"):
            say("Azure (simulated): %s" % status)
            sim.advance(name, status)
        job = progress(d, name, lambda j: j["state"] == "done")
        seen = stages_seen(d, name)
        say("stages: %s" % " -> ".join(seen))
        say("timeline (seedctl job log %s)" % name)
        print(d.ctl("job", "log", name, check_rc=0).stdout)
        after = job["afterImport"]
        say("after the import: %s" % after_text(after))
        d.stop()
        # The datacenter imports as documented; a clean import re-sends nothing.
        ok = job["state"] == "done" and after["vaultVerified"] == len(files) and \
            after["import"].get("repaired", 0) == 0 and seen == STAGES
        say("job %s: %s after %d of %d stages; %d files verified in the vault container, "
            "%d repaired over the network" % (name, job["state"], len(seen), len(STAGES),
                                             after["vaultVerified"],
                                             after["import"].get("repaired", 0)))
        return 0 if ok else 1
    finally:
        if d.alive():
            d.proc.kill()
        sim.stop()
        shutil.rmtree(d.tmp, ignore_errors=True)
        say("removed %s (sample data, drive directories, fake secrets)%s" %
            (d.tmp, "" if not os.path.exists(d.tmp) else ": FAILED, still there"))


if __name__ == "__main__":
    sys.exit(main())
