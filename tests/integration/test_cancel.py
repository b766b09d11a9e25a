"""Cancel during a copy never waits for the copy threads on the loop: with
a slow drive (the slowdrive.c shim: every drive write and fdatasync takes
SLOW_MS), CancelJob is answered and another connection's GetStatus stays
under 100 ms while the drive threads wind down (before, the loop joined
them: CancelJob and every GetStatus behind it waited for the block in
flight). The same for a cancel while indexing a staging tree whose every
stat is slow. The threads do end: the daemon's thread count comes back, a
second cancelled job's threads are still winding down when SIGTERM comes
and seedd exits 0 within 10 s, and a restart finds both jobs cancelled."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Conn, Daemon, check, skip  # noqa: E402

MiB = 1 << 20
SLOW_MS = 400
LIMIT = 0.100
CONF = "[Drives]\nRequireNTFS=no\n"


def threads(d):
    return len(os.listdir("/proc/%d/task" % d.proc.pid))


def job(d, name):
    return d.call("io.seedd.GetJob", {"name": name})["parameters"]["job"]


def copying_job(d, name, slow):
    """A job of three 24 MiB files whose drive prep is copying onto a slow drive."""
    staging = os.path.join(d.tmp, "staging-" + name)
    os.makedirs(staging)
    for i in range(3):
        with open(os.path.join(staging, "f%d.bin" % i), "wb") as f:
            f.write(os.urandom(24 * MiB))
    r = d.call("io.seedd.CreateJob", {"name": name, "stagingPath": staging})
    check("parameters" in r, "CreateJob %s: %r" % (name, r))
    deadline = time.time() + 60
    while job(d, name)["phase"] != "indexed":
        check(time.time() < deadline, "%s indexed" % name)
        time.sleep(0.1)
    drive = os.path.join(slow, name)
    os.makedirs(drive)
    r = d.call("io.seedd.AddDrive", {"name": name, "path": drive, "serial": "SLOW-" + name})
    check("parameters" in r, "AddDrive: %r" % r)
    r = d.call("io.seedd.PrepareJob", {"name": name})
    check(r.get("parameters", {}).get("job", {}).get("state") == "drive_prep",
          "PrepareJob: %r" % r)
    time.sleep(1.5)  # the drive threads are inside slow writes now
    check(job(d, name)["state"] == "drive_prep", "%s still copying" % name)


def cancel_sampled(d, name):
    """CancelJob while GetStatus is sampled every 10 ms on another
    connection; (CancelJob's latency, the worst GetStatus from the cancel on)."""
    lat, stop = [], threading.Event()

    def sampler():
        with Conn(d.sock) as b:
            while not stop.is_set():
                t = time.monotonic()
                r = b.call("io.seedd.GetStatus")
                lat.append((t, time.monotonic() - t, "parameters" in r))
                time.sleep(0.010)
    th = threading.Thread(target=sampler)
    th.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    r = d.call("io.seedd.CancelJob", {"name": name})
    took = time.monotonic() - t0
    time.sleep(2 * SLOW_MS / 1000.0)
    stop.set()
    th.join()
    check(r.get("parameters", {}).get("job", {}).get("state") == "cancelled",
          "CancelJob: %r" % r)
    check(all(ok for _, _, ok in lat), "every GetStatus answered")
    after = [l for t, l, _ in lat if t + l >= t0]
    check(after, "GetStatus sampled during the cancel")
    return took, max(after)


def indexing_job(d, name, slow):
    """A job indexing a staging tree below the slow directory (every stat slow)."""
    staging = os.path.join(slow, "staging-" + name)
    os.makedirs(staging)
    for i in range(40):
        with open(os.path.join(staging, "s%02d.txt" % i), "w") as f:
            f.write("x")
    r = d.call("io.seedd.CreateJob", {"name": name, "stagingPath": staging})
    check("parameters" in r, "CreateJob %s: %r" % (name, r))
    time.sleep(1.0)
    check(job(d, name)["phase"] == "indexing", "%s still indexing" % name)


def check_cancel(d, name, what):
    took, worst = cancel_sampled(d, name)
    print("%s: CancelJob %.1f ms; GetStatus worst %.1f ms from the cancel on (a slow call "
          "takes %d ms)" % (what, took * 1e3, worst * 1e3, SLOW_MS), flush=True)
    check(took < LIMIT, "%s: CancelJob took %.0f ms: it waited for the thread" %
          (what, took * 1e3))
    check(worst < LIMIT, "%s: GetStatus took %.0f ms during the cancel" % (what, worst * 1e3))


def main():
    shim = sys.argv[1] if len(sys.argv) > 1 else ""
    sanitize = sys.argv[2] if len(sys.argv) > 2 else "none"
    if sanitize not in ("", "none"):
        skip("built with -Db_sanitize=%s: no LD_PRELOAD" % sanitize)
    if not os.path.exists(shim):
        skip("no slowdrive shim at %r" % shim)
    d = Daemon(CONF)
    slow = os.path.join(d.tmp, "slow")
    d.extra_env = {"LD_PRELOAD": shim, "SEEDD_SLOW_DIR": slow, "SEEDD_SLOW_MS": str(SLOW_MS)}
    d.start()
    try:
        base = threads(d)
        copying_job(d, "slow-one", slow)
        check(threads(d) > base, "drive threads run")
        check_cancel(d, "slow-one", "copying")
        indexing_job(d, "slow-index", slow)
        check_cancel(d, "slow-index", "indexing")
        deadline = time.time() + 20
        while threads(d) > base:
            check(time.time() < deadline, "the drive threads end after the cancel (%d > %d)" %
                  (threads(d), base))
            time.sleep(0.1)
        # SIGTERM while a cancelled job's threads wind down: a clean exit 0.
        copying_job(d, "slow-two", slow)
        r = d.call("io.seedd.CancelJob", {"name": "slow-two"})
        check(r["parameters"]["job"]["state"] == "cancelled", "CancelJob slow-two: %r" % r)
        t0 = time.monotonic()
        d.stop(timeout=10)
        print("SIGTERM during the wind-down: exit in %.1f s" % (time.monotonic() - t0))
        d.extra_env = {}
        d.start()
        for name in ("slow-one", "slow-two", "slow-index"):
            check(job(d, name)["state"] == "cancelled", "%s stays cancelled" % name)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    print("ok")


if __name__ == "__main__":
    main()
