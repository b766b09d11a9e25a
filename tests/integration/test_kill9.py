"""kill -9 loses nothing that was committed: every job whose CreateJob or
CancelJob got a success reply is there, in that state, after a restart."""
import os
import random
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, error_of  # noqa: E402


def writer(d, staging, prefix, acked, stop):
    """Create (and cancel every third) job as fast as the daemon answers; record acks."""
    i = 0
    while not stop.is_set():
        name = "%s-%05d" % (prefix, i)
        try:
            with d.connect() as c:
                r = c.call("io.seedd.CreateJob", {"name": name, "stagingPath": staging})
                if r is None or error_of(r):
                    return
                acked[name] = "staging"
                if i % 3 == 0:
                    # Sent but not yet answered: either state may be on disk.
                    acked[name] = "staging|cancelled"
                    r = c.call("io.seedd.CancelJob", {"name": name})
                    if r is None or error_of(r):
                        return
                    acked[name] = "cancelled"
        except (OSError, ValueError):
            return
        i += 1


def main():
    d = Daemon().start()
    staging = os.path.join(d.tmp, "staging")
    os.makedirs(staging)
    total = 0
    try:
        for rnd in range(3):
            acked = {}
            stop = threading.Event()
            t = threading.Thread(target=writer, args=(d, staging, "r%d" % rnd, acked, stop))
            t.start()
            time.sleep(0.3 + random.Random(rnd).random() * 0.7)
            d.kill9()
            stop.set()
            t.join(10)
            check(len(acked) > 0, "round %d: the writer made progress before the kill" % rnd)
            d.start()
            with d.connect() as c:
                for name, state in acked.items():
                    r = c.call("io.seedd.GetJob", {"name": name})
                    check(not error_of(r), "acknowledged job %s lost by kill -9: %r" % (name, r))
                    got = r["parameters"]["job"]["state"]
                    check(got in state.split("|"),
                          "job %s is %s, acknowledged as %s" % (name, got, state))
            con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state, "seedd.db"),
                                  uri=True)
            check(con.execute("PRAGMA integrity_check").fetchone()[0] == "ok",
                  "database intact after kill -9")
            con.close()
            total += len(acked)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    print("ok: %d acknowledged jobs survived three kill -9" % total)


if __name__ == "__main__":
    main()
