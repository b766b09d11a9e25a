"""One seedd per state directory (issue 11, point 5). A second seedd on the
same state directory, with a socket of its own, exits 1 naming the pid that
holds <state>/seedd.lock, on stderr and in the journal, and leaves the
first one and its jobs alone; of two started at once exactly one runs; a
first seedd killed with -9 leaves no lock behind. The journal part runs in a
private mount namespace with its own systemd-journald (as test_journald.py)."""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check  # noqa: E402

MARK = "SEEDD_STATELOCK_IN_NAMESPACE"


def second_on(a):
    """A Daemon on a's state directory, with its own socket and log."""
    b = Daemon(tmp=tempfile.mkdtemp(prefix="seedd-test-"))
    b.state = a.state
    return b


def run_second(a):
    b = second_on(a)
    try:
        return subprocess.run(b.argv(), capture_output=True, text=True, timeout=10, env=b.env())
    except subprocess.TimeoutExpired:
        check(False, "a second seedd on the same state dir still runs after 10 s")


def case_second_refused(a):
    staging = os.path.join(a.tmp, "staging")
    os.makedirs(staging)
    a.ctl_json("job", "create", "locked-job", "--staging", staging)
    # Compare once indexing is over: the list changes while it runs (CreateJob answers first).
    deadline = time.monotonic() + 20
    while a.ctl_json("job", "show", "locked-job")["phase"] != "indexed":
        check(time.monotonic() < deadline, "the empty job is indexed within 20 s")
        time.sleep(0.05)
    before = a.ctl_json("job", "list")
    p = run_second(a)
    want = "in use by seedd pid %d" % a.proc.pid
    print("second seedd: exit %d, stderr %r" % (p.returncode, p.stderr.strip()))
    check(p.returncode == 1, "a second seedd on the same state dir exits 1, not %d:\n%s" %
          (p.returncode, p.stderr))
    check(want in p.stderr and "seedd.lock" in p.stderr,
          "its error names the holder's pid %d and the lock: %r" % (a.proc.pid, p.stderr))
    check(a.alive(), "the first seedd is still running")
    check(a.ctl_json("job", "list") == before, "the first seedd's jobs are unchanged")
    with open(os.path.join(a.state, "seedd.lock")) as f:
        check(f.read().strip() == str(a.proc.pid), "the lock file holds the holder's pid")
    return p


def case_kill9_releases(a):
    a.kill9()
    b = second_on(a).start()
    try:
        jobs = b.ctl_json("job", "list")
        check(any(j["name"] == "locked-job" for j in jobs),
              "after kill -9 of the holder, a new seedd runs on the state dir: %r" % jobs)
        b.stop()
    finally:
        if b.alive():
            b.proc.kill()


def case_race(tries=3):
    """Two seedd started at the same moment on one fresh state dir: one runs."""
    for _ in range(tries):
        a = Daemon()
        b = second_on(a)
        pa = subprocess.Popen(a.argv(), stderr=subprocess.PIPE, text=True, env=a.env())
        pb = subprocess.Popen(b.argv(), stderr=subprocess.PIPE, text=True, env=b.env())
        try:
            time.sleep(1.5)
            alive = [p for p in (pa, pb) if p.poll() is None]
            dead = [p for p in (pa, pb) if p.poll() is not None]
            check(len(alive) == 1 and len(dead) == 1 and dead[0].returncode == 1,
                  "of two seedd started at once on one state dir, %d run" % len(alive))
            err = dead[0].stderr.read()
            check("in use by seedd pid %d" % alive[0].pid in err, "the loser names the "
                  "winner %d: %r" % (alive[0].pid, err))
        finally:
            for p in (pa, pb):
                if p.poll() is None:
                    p.terminate()
                    p.wait(10)
                p.stderr.close()


def in_namespace():
    """With a journal: the refusal is an error entry in it, and on stderr."""
    from test_journald import entries, start_journald  # noqa: E402
    jd = start_journald()
    a = Daemon().start()
    try:
        p = case_second_refused(a)
        time.sleep(0.3)
        want = "in use by seedd pid %d" % a.proc.pid
        es = [e for e in entries() if want in e.get("MESSAGE", "")]
        check(es and es[0].get("PRIORITY") == "3", "the refusal is an error in the journal: %r"
              % es)
        check(want in p.stderr, "and on stderr with a journal: %r" % p.stderr)
        a.stop()
    finally:
        if a.alive():
            a.proc.kill()
        jd.kill()
    print("ok (journal)")


def main():
    if os.environ.get(MARK):
        return in_namespace()
    a = Daemon().start()
    try:
        case_second_refused(a)
        case_kill9_releases(a)
    finally:
        if a.alive():
            a.proc.kill()
    case_race()
    if os.geteuid() == 0 and os.path.exists("/lib/systemd/systemd-journald") and \
            subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0:
        env = dict(os.environ, **{MARK: "1"})
        p = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                            __file__], env=env)
        check(p.returncode == 0, "the journal part failed")
    else:
        print("journal part skipped: needs root, unshare -m and systemd-journald")
    print("ok")


if __name__ == "__main__":
    main()
