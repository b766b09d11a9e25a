"""The loop never waits for a thread that hangs in a staging file system
(the slowdrive.c shim holds every stat and read below the slow directory
while a gate file exists, as a hung NFS or FUSE mount would). A reload
while the staging cleaner is stuck in a stat answers, and the job goes on
once the cleaner wakes (its post is resumed then, so no two cleaners race).
Every job resumed once more (72 jobs created in one loop turn overflow the
hand-offs) while its indexer is stuck answers too, and each walk goes on
and indexes once. A cancel while a repair reader is stuck in a read of a
staging file answers at once, seedctl status answers while the reader is
still stuck, the job is cancelled, and SIGTERM with the reader still stuck
joins it when it wakes and exits 0. Before, the loop joined these threads:
the reload, the resume and the cancel (and every call behind them) waited
for as long as the file system hung.

No Azure service is needed: two jobs are indexed, then put straight into
cleanup (every import blob deleted) and imported in the store; a small
local blob endpoint answers List Blobs with nothing, after the test says
so, which makes every file of the imported job a repair from staging."""
import base64
import hashlib
import http.server
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import SEEDD, Conn, Daemon, check, fail, skip  # noqa: E402
import azenv  # noqa: E402

LIMIT = 1.0  # seconds seedctl may take to answer
EMPTY_LIST = (b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults>'
              b"<Blobs/><NextMarker/></EnumerationResults>")


class Endpoint(http.server.BaseHTTPRequestHandler):
    """List Blobs: nothing, once the test sets go. Anything else: 404."""

    def do_GET(self):
        if "comp=list" in self.path:
            self.server.go.wait(60)
            self.answer(200, EMPTY_LIST)
        else:
            self.answer(404, b"")

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-ms-request-id", "winddown")
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # a request seedd dropped (the reload's)

    do_HEAD = do_PUT = do_POST = do_DELETE = lambda self: self.answer(404, b"")

    def log_message(self, *args):
        pass


class FakeArm:
    """What azenv.config() reads of a simulator: its address and CA."""

    def __init__(self, url):
        self.url = url
        self.ca = None


def endpoint():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    srv.daemon_threads = True
    srv.go = threading.Event()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def job(d, name):
    return d.call("io.seedd.GetJob", {"name": name})["parameters"]["job"]


def wait_for(what, pred, timeout=10):
    deadline = time.monotonic() + timeout
    while not pred():
        check(time.monotonic() < deadline, "within %d s: %s" % (timeout, what))
        time.sleep(0.02)


def status_answers(d, what, n=5):
    """seedctl status, n times over about a second: each answers within LIMIT."""
    worst = 0.0
    for _ in range(n):
        t = time.monotonic()
        try:
            p = d.ctl("status", timeout=5)
        except subprocess.TimeoutExpired:
            fail("%s: seedctl status got no answer in 5 s: the loop waits for the thread" %
                 what)
        took = time.monotonic() - t
        check(p.returncode == 0, "%s: seedctl status: %s" % (what, p.stderr))
        worst = max(worst, took)
        time.sleep(0.2)
    check(worst < LIMIT, "%s: seedctl status took %.2f s" % (what, worst))
    return worst


def staged_job(d, slow, name):
    staging = os.path.join(slow, name)
    os.makedirs(os.path.join(staging, "sub"))
    for i in range(3):
        with open(os.path.join(staging, "sub", "f%d.bin" % i), "wb") as f:
            f.write(os.urandom(4096 + i))
    r = d.call("io.seedd.CreateJob", {"name": name, "stagingPath": staging})
    check("parameters" in r, "CreateJob %s: %r" % (name, r))
    wait_for("%s indexed" % name, lambda: job(d, name)["phase"] == "indexed")
    return staging


def after_import(d, staging):
    """In the store: cln in cleanup with every import blob deleted, rep imported."""
    con = sqlite3.connect(os.path.join(d.state, "seedd.db"))
    with con:
        for name, state, extra in (("cln", "cleanup", ", vault_state='verified', "
                                    "cleanup_state='blob-deleted'"), ("rep", "imported", "")):
            jid = con.execute("SELECT id FROM jobs WHERE name=?", (name,)).fetchone()[0]
            con.execute("UPDATE jobs SET state=?, phase='' WHERE id=?", (state, jid))
            for fid, rel in con.execute("SELECT id, rel_path FROM files WHERE job_id=?",
                                        (jid,)).fetchall():
                with open(os.path.join(staging[name], rel), "rb") as f:
                    md5 = hashlib.md5(f.read()).digest()
                con.execute("UPDATE files SET state='verified', md5=?%s WHERE id=?" % extra,
                            (md5, fid))
    con.close()


def stored_state(d, name):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state, "seedd.db"), uri=True)
    row = con.execute("SELECT state FROM jobs WHERE name=?", (name,)).fetchone()
    con.close()
    return row[0]


def reload_with_cleaner_stuck(d, gate, staging):
    held = gate + ".held"
    wait_for("the staging cleaner of cln is stuck in a stat", lambda: os.path.exists(held))
    check(job(d, "cln")["state"] == "cleanup", "cln is cleaning up")
    d.proc.send_signal(signal.SIGHUP)
    worst = status_answers(d, "reload with the cleaner stuck")
    wait_for("the reload is done", lambda: "configuration reloaded" in d.read_log(), 2)
    check(os.path.exists(gate) and d.alive(), "the cleaner is still stuck")
    print("reload, cleaner stuck: seedctl status worst %.0f ms" % (worst * 1e3), flush=True)
    os.unlink(gate)
    os.unlink(held)
    wait_for("cln done once the cleaner woke", lambda: job(d, "cln")["state"] == "done")
    left = [f for _, _, fs in os.walk(staging) for f in fs]
    check(not left, "the resumed cleanup deleted every staging file: %r" % left)


def resume_storm(d, slow, gate):
    """72 jobs created in one loop turn (9 connections of 8 calls, written
    while seedd is stopped) overflow the hand-offs, so every job is resumed
    once more while its indexer is stuck in a stat: the resume must leave the
    walk going, not join it."""
    held = gate + ".held"
    open(gate, "w").close()
    names = ["storm%02d" % i for i in range(72)]
    for name in names:
        os.makedirs(os.path.join(slow, "storm", name))
        open(os.path.join(slow, "storm", name, "a.txt"), "w").close()
    conns = [Conn(d.sock) for _ in range(9)]
    d.proc.send_signal(signal.SIGSTOP)
    try:
        for i, c in enumerate(conns):
            for name in names[8 * i:8 * i + 8]:
                c.send({"method": "io.seedd.CreateJob", "parameters": {
                    "name": name, "stagingPath": os.path.join(slow, "storm", name)}})
    finally:
        d.proc.send_signal(signal.SIGCONT)
    for c in conns:
        for _ in range(8):
            r = c.recv()
            check(r is not None and "parameters" in r, "CreateJob: %r" % r)
        c.close()
    wait_for("an indexer is stuck in a stat", lambda: os.path.exists(held))
    worst = status_answers(d, "every job resumed again while its indexer is stuck")
    check(os.path.exists(gate), "the indexers are still stuck")
    print("resume storm, indexers stuck: seedctl status worst %.0f ms" % (worst * 1e3),
          flush=True)
    os.unlink(gate)
    os.unlink(held)
    for name in names:
        wait_for("%s indexed" % name, lambda: job(d, name)["phase"] == "indexed")
        check(job(d, name)["files"] == 1, "%s indexed once: %r" % (name, job(d, name)))


def cancel_with_reader_stuck(d, srv, gate):
    held = gate + ".held"
    open(gate, "w").close()
    srv.go.set()  # nothing listed: every file of rep is repaired from staging
    wait_for("the repair reader of rep is stuck in a read", lambda: os.path.exists(held))
    check(job(d, "rep")["phase"] == "repairing", "rep is repairing: %r" % job(d, "rep"))
    t = time.monotonic()
    try:
        p = d.ctl("job", "cancel", "rep", timeout=5)
    except subprocess.TimeoutExpired:
        fail("job cancel got no answer in 5 s: the loop waits for the repair reader")
    took = time.monotonic() - t
    check(p.returncode == 0, "job cancel rep: %s" % p.stderr)
    check(took < LIMIT, "job cancel took %.2f s" % took)
    worst = status_answers(d, "cancel with the reader stuck")
    check(job(d, "rep")["state"] == "cancelled", "rep is cancelled")
    check(os.path.exists(gate), "the reader is still stuck")
    print("cancel, reader stuck: job cancel %.0f ms, seedctl status worst %.0f ms" %
          (took * 1e3, worst * 1e3), flush=True)


def preload(shim, sanitize):
    """LD_PRELOAD for the shim; under ASan its runtime must come first."""
    if "address" not in sanitize:
        return shim
    out = subprocess.run(["ldd", SEEDD], capture_output=True, text=True).stdout
    libs = [l.split("=>")[1].split()[0] for l in out.splitlines()
            if "=>" in l and "libasan" in l]
    if not libs:
        skip("built with -Db_sanitize=%s, but no libasan found to preload first" % sanitize)
    return libs[0] + ":" + shim


def main():
    shim = sys.argv[1] if len(sys.argv) > 1 else ""
    sanitize = sys.argv[2] if len(sys.argv) > 2 else "none"
    if not os.path.exists(shim):
        skip("no slowdrive shim at %r" % shim)
    srv = endpoint()
    url = "http://127.0.0.1:%d" % srv.server_address[1]
    d = Daemon()
    blob = {"account": "seeddwind", "url": url + "/seeddwind",
            "key": base64.b64encode(os.urandom(32)).decode()}
    with open(d.config, "w") as f:
        f.write(azenv.config(d.tmp, FakeArm(url), blob=blob))
    slow, gate = os.path.join(d.tmp, "slow"), os.path.join(d.tmp, "hold")
    d.extra_env = {"LD_PRELOAD": preload(shim, sanitize), "SEEDD_SLOW_DIR": slow, "SEEDD_HOLD": gate}
    d.start()
    try:
        staging = {name: staged_job(d, slow, name) for name in ("cln", "rep")}
        d.stop()
        after_import(d, staging)
        open(gate, "w").close()  # the cleaner sticks in its first stat
        d.start()
        reload_with_cleaner_stuck(d, gate, staging["cln"])
        resume_storm(d, slow, gate)
        cancel_with_reader_stuck(d, srv, gate)
        # SIGTERM with the reader still stuck: shutdown joins it once it wakes.
        threading.Timer(0.5, os.unlink, [gate]).start()
        t = time.monotonic()
        d.stop(timeout=10)
        print("SIGTERM with the reader stuck 0.5 s more: exit 0 in %.1f s" %
              (time.monotonic() - t))
        check(stored_state(d, "rep") == "cancelled", "rep stays cancelled")
    finally:
        if d.alive():
            d.proc.kill()
        srv.shutdown()
    print("ok")


if __name__ == "__main__":
    main()
