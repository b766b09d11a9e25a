"""kill -9 during drive prep, twice (once while the big file is being copied,
once later in the copy or its verification), then restart: nothing is lost,
nothing is copied twice into a manifest, the big file resumes from its
checkpoint, and the job completes with every file byte-identical."""
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, fail  # noqa: E402
import prepcheck  # noqa: E402

MiB = 1 << 20
CONF = "[Drives]\nRequireNTFS=no\n"


def progress(d):
    return d.ctl_json("job", "show", "crashy")


def checkpoint_of(d, rel):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state, "seedd.db"), uri=True)
    row = con.execute("SELECT checkpoint, state FROM files WHERE rel_path=?", (rel,)).fetchone()
    con.close()
    return row


def main():
    d = Daemon(CONF).start()
    staging = os.path.join(d.tmp, "staging")
    files = {"big.bak": os.urandom(640 * MiB)}
    for i in range(1500):
        files["small/%02d/f%04d" % (i % 20, i)] = os.urandom(1 + (i * 53) % 9000)
    for rel, data in files.items():
        p = os.path.join(staging, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    try:
        d.ctl_json("job", "create", "crashy", "--staging", staging)
        prepcheck.wait_phase(d, "crashy", "indexed")
        for serial in ("CRASH-A", "CRASH-B"):
            path = os.path.join(d.tmp, serial)
            os.mkdir(path)
            d.ctl_json("drive", "add", "crashy", path, "--serial", serial,
                       "--capacity", str(300 * MiB if serial == "CRASH-A" else 900 * MiB))
        d.ctl_json("job", "prepare", "crashy")

        # 1: as soon as the big file's first checkpoint (256 MiB) is committed.
        deadline = time.time() + 120
        while time.time() < deadline:
            cp = checkpoint_of(d, "big.bak")
            if cp is not None and (cp[0] > 0 or cp[1] == "verified"):
                d.kill9()
                break
            time.sleep(0.001)
        cp = checkpoint_of(d, "big.bak")
        print("big.bak at the first kill: checkpoint %r" % (cp,))
        check(cp is not None and cp[0] > 0 and cp[1] == "planned",
              "killed inside the big file, after its first checkpoint: %r" % (cp,))
        d.start()
        job = progress(d)
        check(job["state"] == "drive_prep", "resumed in drive_prep: %r" % job["state"])
        # The resume says what was kept, by file and drive.
        deadline = time.time() + 30
        texts = []
        while time.time() < deadline:
            texts = [e["text"] for e in d.ctl_json("job", "log", "crashy")]
            if any(t.startswith("resumed big.bak on CRASH-") for t in texts):
                break
            time.sleep(0.05)
        resumed = [t for t in texts if t.startswith("resumed big.bak on CRASH-")]
        check(resumed and " checkpoint of " in resumed[0] and "MiB" in resumed[0],
              "the job log says where big.bak resumed: %r" % texts[-5:])
        print(resumed[0])

        # 2: a little later: in the rest of the copy or a verification.
        time.sleep(0.3)
        if progress(d)["phase"] == "copying":
            d.kill9()
            d.start()
        job = prepcheck.wait_phase(d, "crashy", "awaiting-azure", timeout=300)
        check(job["copiedFiles"] == len(files), "all files committed once: %d of %d" % (
            job["copiedFiles"], len(files)))
        prepcheck.verify_drives(staging, "crashy", "seedd-import", files, job["drives"])
        leftovers = [f for dr in job["drives"] for root, _, names in os.walk(dr["path"])
                     for f in names if f.endswith(".seedd-tmp")]
        check(not leftovers, "no temporary files left on the drives: %r" % leftovers[:3])
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    print("ok")


if __name__ == "__main__":
    main()
