"""ReadBandwidthMax= (issue 12, point 10): a capped drive prep of a small
file set (one file through the copier's pipeline, one read inline, a group of
small ones) takes at least its size / the cap; a reload that lifts the cap
frees a prep that is running (otherwise it would take half a minute more).
Only lower time bounds: how fast the machine is says nothing here."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check  # noqa: E402
import prepcheck  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
CAP = 4 * MiB


def tree(root, files):
    os.makedirs(root)
    total = 0
    for rel, size in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(os.urandom(size))
        total += size
    return total


def prepare(d, name, files):
    staging = os.path.join(d.tmp, name)
    total = tree(staging, files)
    d.ctl_json("job", "create", name, "--staging", staging)
    prepcheck.wait_phase(d, name, "indexed")
    drive = os.path.join(d.tmp, name + "-drive")
    os.mkdir(drive)
    d.ctl_json("drive", "add", name, drive, "--serial", "T-" + name.upper())
    return total


def config(d, cap):
    with open(d.config, "w") as f:
        f.write("[Drives]\nRequireNTFS=no\nReadBandwidthMax=%s\n" % cap)


def test_capped(d):
    files = {"big.bin": 5 * MiB + 4321, "mid.bin": 2 * MiB}
    files.update({"small/%02d.txt" % i: 40 * KiB for i in range(24)})
    total = prepare(d, "capped", files)
    t0 = time.monotonic()
    d.ctl_json("job", "prepare", "capped")
    job = prepcheck.wait_phase(d, "capped", "awaiting-azure", timeout=60)
    took = time.monotonic() - t0
    check(job["verifiedFiles"] == len(files), "every file verified: %r" % job)
    floor = total / CAP
    check(took >= floor, "a capped prep of %d bytes at %d bytes/s took %.2f s, under %.2f s" % (
        total, CAP, took, floor))
    print("capped: %d bytes in %.2f s (floor %.2f s)" % (total, took, floor))


def test_reload_lifts(d):
    """At 64 KiB/s this would take 32 s; the reload lifts the cap mid-copy."""
    config(d, "64K")
    d.proc.send_signal(1)
    prepcheck.wait_job(d, "capped", lambda j: True, "a reload", 5)
    deadline = time.time() + 5
    while d.read_log().count("configuration reloaded") < 1 and time.time() < deadline:
        time.sleep(0.05)
    prepare(d, "lifted", {"a.bin": 2 * MiB})
    d.ctl_json("job", "prepare", "lifted")
    prepcheck.wait_job(d, "lifted", lambda j: j["phase"] == "copying", "copying", 10)
    config(d, "0")
    d.proc.send_signal(1)
    prepcheck.wait_phase(d, "lifted", "awaiting-azure", timeout=20)
    check("lifted: reads from staging are no longer capped" in d.read_log(),
          "the running prep took the new cap:\n%s" % d.read_log())


def main():
    d = Daemon()
    config(d, "4M")
    d.start()
    try:
        test_capped(d)
        test_reload_lifts(d)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    print("ok")


if __name__ == "__main__":
    main()
