"""Faults on the Azure side, and what the operator sees (issue 11, point 8),
one daemon and one private Azurite (restartable on its port and data dir)
for all of them:

- the wall clock jumping forward and back around the tracking deadline's
  warnings (the test-only clock hook SEEDD_TEST_CLOCK_FILE, core/daemon.c):
  each warning fires once, when its threshold is crossed, never again at a
  later check, and never on a backward jump;
- Resource Manager refusing connections while the job is shipped, first
  while the shipment is sent (it waits in phase `shipping`, naming the
  outage once past the HTTP retries), then while the shipped job is polled
  (it stays `shipped` without an error, the journal says seedd will try
  again); either way it goes on when Resource Manager is back, with one
  Azure job;
- Azurite stopped and restarted during the repair upload and during the
  vault copy (the test checks the job was still in that phase when Azurite
  was down): the job ends `done` with every file verified in the vault and
  each damaged file repaired exactly once.
"""
import base64
import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, fail, skip  # noqa: E402
import azenv  # noqa: E402
import azurite  # noqa: E402
import prepcheck  # noqa: E402

sys.path.insert(0, azenv.SIM_DIR)
import blobstore  # noqa: E402

DAY = 86400
LONG = os.environ.get("SEEDD_LONG_TESTS") == "1"
MiB = 1 << 20


class RestartableAzurite:
    """A private Azurite whose stop() and start() keep its port and its data."""

    def __init__(self, tmp):
        self.exe = os.path.join(azurite.SOURCE_ROOT, "node_modules", ".bin", "azurite-blob")
        if not os.access(self.exe, os.X_OK):
            raise azurite.Unavailable("no %s" % self.exe)
        self.dir = os.path.join(tmp, "azurite")
        certs = os.path.join(self.dir, "certs")
        subprocess.run(["sh", os.path.join(azenv.SIM_DIR, "mkcert.sh"), certs], check=True,
                       stdout=subprocess.DEVNULL)
        self.cert, self.key = os.path.join(certs, "server.pem"), os.path.join(certs, "server.key")
        self.ca = os.path.join(certs, "ca.pem")
        self.port, self.starts, self.proc = 0, 0, None
        self.start()

    def start(self):
        self.starts += 1
        log = os.path.join(self.dir, "azurite-%d.log" % self.starts)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [self.exe, "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                 "--cert", self.cert, "--key", self.key,
                 "--location", os.path.join(self.dir, "data"), "--skipApiVersionCheck",
                 "--silent", "--disableTelemetry"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=azurite._die_with_parent)
        port = azurite._wait_port(self.proc, log)
        check(self.port in (0, port), "Azurite came back on its port")
        self.port = port
        azurite._wait_answer(port, self.ca)

    def stop(self):
        self.proc.terminate()  # Azurite saves its metadata on SIGTERM
        self.proc.wait(20)

    def info(self):
        return {"url": "https://127.0.0.1:%d/%s" % (self.port, azurite.ACCOUNT),
                "account": azurite.ACCOUNT, "key": azurite.KEY, "ca": self.ca}


def sim_down(sim):
    sim.proc.terminate()
    sim.proc.wait(10)
    sim.proc.stdout.close()


def sim_up(sim, blob):
    """The simulator again, on the same ports, with its saved state."""
    port = urllib.parse.urlparse(sim.url).port
    cport = urllib.parse.urlparse(sim.control).port
    args = [sys.executable, os.path.join(azenv.SIM_DIR, "azuresim.py"), "--port", str(port),
            "--control-port", str(cport), "--state-file", os.path.join(sim.dir, "state.json"),
            "--tls-cert", os.path.join(sim.dir, "server.pem"),
            "--tls-key", os.path.join(sim.dir, "server.key"),
            "--blob-endpoint", blob["url"], "--blob-account", blob["account"],
            "--blob-key", blob["key"], "--blob-ca", blob["ca"]]
    sim.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=sim.log, text=True)
    if not sim.proc.stdout.readline():
        fail("the simulator did not come back on port %d" % port)


def log_since(d, at):
    return d.read_log()[at:]


# ---- the clock ---------------------------------------------------------------

def set_clock(d, offset):
    """Move seedd's wall clock to now + offset seconds, and have seedd look at
    the deadlines (a reload restarts the Azure stage, which checks them)."""
    path = d.extra_env["SEEDD_TEST_CLOCK_FILE"]
    with open(path + ".new", "w") as f:
        f.write("%d\n" % offset)
    os.rename(path + ".new", path)
    before = d.read_log().count("configuration reloaded")
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while d.read_log().count("configuration reloaded") == before:
        if time.time() > deadline:
            fail("seedd did not reload")
        time.sleep(0.02)
    # The deadline check runs right after the reload line, on the same loop turn.
    d.call("io.seedd.GetJob", {"name": "clock"})


def warnings(d, at):
    return [l for l in log_since(d, at).splitlines() if "the tracking number is due in" in l]


def test_clock(d):
    """The deadline is 14 days after Azure created the job; warnings at 7, 3
    and 1 days before it."""
    job = d.ctl_json("job", "show", "clock")
    due = job["azure"]["shipDeadline"]
    check(due, "the job has a shipping deadline: %r" % job["azure"])
    at = len(d.read_log())
    steps = [  # (days the clock moves ahead of the real one, warnings expected so far)
        (6.5, []),                          # 7.5 days left: nothing yet
        (7.2, ["due in 7 days"]),            # crossed T-7: one warning
        (7.3, ["due in 7 days"]),            # checked again: not repeated
        (1.0, ["due in 7 days"]),            # back 6 days: no new warning, no repeat
        (7.4, ["due in 7 days"]),            # forward again over T-7: still once
        (-30, ["due in 7 days"]),            # far back: nothing
        (11.5, ["due in 7 days", "due in 3 days"]),  # T-3, once
        (13.2, ["due in 7 days", "due in 3 days", "due in 1 day "]),
        (13.5, ["due in 7 days", "due in 3 days", "due in 1 day "]),
        (2.0, ["due in 7 days", "due in 3 days", "due in 1 day "]),
    ]
    for days, want in steps:
        set_clock(d, int(days * DAY))
        got = warnings(d, at)
        check(len(got) == len(want) and all(w in g for w, g in zip(want, got)),
              "clock +%.1f days: warnings %r, expected %r" % (days, got, want))
    check(all("seedctl job ship clock" in w for w in warnings(d, at)),
          "each warning says what to do")
    set_clock(d, 0)
    job = d.ctl_json("job", "show", "clock")
    check(job["state"] == "drive_prep" and job["phase"] == "awaiting-tracking" and
          job["error"] is None, "the job waits as before: %r" % {k: job[k] for k in
                                                                  ("state", "phase", "error")})


# ---- Resource Manager refusing connections -------------------------------------

def outage(d, sim, blob, name, seconds, ok, first=None):
    """Resource Manager refuses connections for `seconds` (first() runs at its
    start); ok(job) must hold at every look meanwhile. Returns seedd's log of
    the outage and the job as last seen."""
    at = len(d.read_log())
    sim_down(sim)
    if first is not None:
        first()
    t0 = time.time()
    while True:
        job = d.ctl_json("job", "show", name)
        check(ok(job), "while Resource Manager refuses connections the job waits: %r" %
              {k: job[k] for k in ("state", "phase", "error")})
        if time.time() - t0 >= seconds:
            break
        time.sleep(0.25)
    sim_up(sim, blob)
    return log_since(d, at), job


def test_rm_down(d, sim, blob):
    """Resource Manager refusing connections while the job is shipped: first
    while the shipment is sent, then while the shipped job is polled.

    PollIntervalSec=1 here, so an outage of DOWN seconds spans as many polls
    as DOWN minutes would at PollIntervalSec=60. Each request is itself
    retried 5 times, 1, 2, 4 and 8 s apart, before the stage hears of the
    failure: a short outage is bridged there. SEEDD_LONG_TESTS=1 keeps
    Resource Manager down 25 s, past those retries (25 minutes at
    PollIntervalSec=60): then the shipment waits in phase `shipping`, naming
    the outage, and the journal says the poll will try again."""
    down = 25 if LONG else 2
    name = "clock"
    job = d.ctl_json("job", "show", name)
    sim.ctl("POST", "/jobs/%s/drives" % name,
            {dr["serial"]: dr["path"] for dr in job["drives"] if dr["files"]})
    log, job = outage(d, sim, blob, name, down, lambda j: j["state"] == "drive_prep" and
                      j["phase"].startswith("shipping") and j["error"] is None,
                      lambda: d.ctl("job", "ship", name, "--carrier", "DHL", "--tracking",
                                    "T-CLOCK", check_rc=0))
    print("# Resource Manager down %d s while shipping: %s" % (down, job["phase"]), flush=True)
    if LONG:
        check("Resource Manager unreachable" in job["phase"] and "trying again" in job["phase"],
              "the phase says why the shipment waits: %r" % job["phase"])
        check("sending the shipment: Resource Manager unreachable" in log,
              "and the journal: %s" % log[-2000:])
    prepcheck.wait_state(d, name, "shipped", 60)
    sim.advance(name, "AtAzureDC")
    prepcheck.wait_job(d, name, lambda j: "AtAzureDC" in j["phase"], "phase AtAzureDC", 30)
    log, job = outage(d, sim, blob, name, down, lambda j: j["state"] == "shipped" and
                      "AtAzureDC" in j["phase"] and j["error"] is None)
    print("# Resource Manager down %d s while polling: %s" % (down, job["phase"]), flush=True)
    check(not LONG or "polling Azure failed, will try again" in log,
          "the journal says seedd will try again:\n%s" % log[-2000:])
    check(not LONG or "AtAzureDC: Resource Manager unreachable" in job["phase"],
          "the phase says why nothing moves: %r" % job["phase"])
    for status in ("DataCopy", "Completed"):
        sim.advance(name, status)
    job = prepcheck.wait_state(d, name, "done", 120)
    jobs = sim.ctl("GET", "/jobs")
    jobs = jobs.get("value", jobs.get("jobs", [])) if isinstance(jobs, dict) else jobs
    check(len([j for j in jobs if j.get("name", "").lower() == name]) == 1,
          "exactly one Azure job")
    return job


# ---- Azurite stopped and restarted -----------------------------------------------

def wait_phase_fast(d, name, phase, timeout=120):
    """Poll GetJob on one connection, as fast as seedd answers: the phase may last
    well under a second."""
    deadline = time.time() + timeout
    with d.connect() as c:
        while time.time() < deadline:
            job = c.call("io.seedd.GetJob", {"name": name})["parameters"]["job"]
            if job["phase"] == phase:
                return True
            if job["state"] in ("done", "failed"):
                return False
            time.sleep(0.002)
    fail("job %s never reached phase %s" % (name, phase))


def restart_azurite_in(d, az, name, phase):
    check(wait_phase_fast(d, name, phase), "caught the job in phase %s" % phase)
    az.stop()
    job = d.ctl_json("job", "show", name)
    print("# Azurite stopped; the job is in %s / %s" % (job["state"], job["phase"]), flush=True)
    check(job["phase"] == phase, "Azurite stopped while the job was still in %s: %s" % (
        phase, job["phase"]))
    time.sleep(1)
    job = d.ctl_json("job", "show", name)
    check(job["state"] != "failed", "Azurite down for a second fails nothing: %r" % job["error"])
    az.start()
    print("# Azurite restarted during %s" % phase, flush=True)


def check_vault(store, name, files):
    vault = {b["name"]: b for b in store.list("vault", name + "/")}
    for rel, data in files.items():
        b = vault.get("%s/%s" % (name, rel))
        check(b is not None and b["length"] == len(data) and
              b.get("contentMD5") == base64.b64encode(hashlib.md5(data).digest()).decode(),
              "%s verified in the vault: %r" % (rel, b))


def test_azurite_restarts(d, sim, az, store):
    name = "azr"
    files = {"big/b-%d.bak" % i: os.urandom(8 * MiB + i) for i in range(3)}
    files.update({"docs/f-%03d.txt" % i: os.urandom(100 + i * 37) for i in range(200)})
    azenv.prepared_job(d, name, drives=1, files=files)
    prepcheck.wait_phase(d, name, "awaiting-tracking", 120)
    job = d.ctl_json("job", "show", name)
    sim.ctl("POST", "/jobs/%s/drives" % name,
            {dr["serial"]: dr["path"] for dr in job["drives"] if dr["files"]})
    dropped = sorted(f for f in files if f.startswith("big/"))
    sim.ctl("POST", "/jobs/%s/import-faults" % name, {"drop": dropped})
    d.ctl("job", "ship", name, "--carrier", "DHL", "--tracking", "T-AZR", check_rc=0)
    prepcheck.wait_state(d, name, "shipped", 60)
    for status in ("AtAzureDC", "DataCopy", "Completed"):
        sim.advance(name, status)
    restart_azurite_in(d, az, name, "repairing")
    restart_azurite_in(d, az, name, "copying-to-vault")
    job = prepcheck.wait_state(d, name, "done", 180)
    imp = job["afterImport"]["import"]
    print("# %s: import %r, vault verified %d" % (name, imp, job["afterImport"]["vaultVerified"]),
          flush=True)
    check(imp["repaired"] == len(dropped), "each dropped file repaired once: %r" % imp)
    check(imp["ok"] == len(files) - len(dropped), "the rest as imported: %r" % imp)
    check(job["afterImport"]["vaultVerified"] == len(files), "every file verified in the vault")
    check_vault(store, name, files)
    log = " ".join(e["text"] for e in d.ctl_json("job", "log", name))
    for f in dropped:
        check(log.count("repaired %s" % f) == 1, "%s repaired exactly once" % f)


def main():
    d = Daemon(env={})
    try:
        az = RestartableAzurite(d.tmp)
    except azurite.Unavailable as e:
        skip("Azurite is not installed (run scripts/bootstrap): %s" % e)
    blob = az.info()
    sim = azenv.Sim(d.tmp, blob=blob)
    store = blobstore.BlobClient(blob["url"], blob["account"], blob["key"], blob["ca"])
    clock = os.path.join(d.tmp, "clock-offset")
    d.extra_env["SEEDD_TEST_CLOCK_FILE"] = clock
    with open(d.config, "w") as f:
        f.write(azenv.config(d.tmp, sim, blob=blob))
    d.start()
    t0 = time.time()
    try:
        azenv.prepared_job(d, "clock", drives=1)
        prepcheck.wait_phase(d, "clock", "awaiting-tracking", 120)
        for name, t in (("clock", lambda: test_clock(d)),
                        ("rm-down", lambda: test_rm_down(d, sim, blob)),
                        ("azurite", lambda: test_azurite_restarts(d, sim, az, store))):
            t1 = time.time()
            t()
            print("# %s: %.1f s" % (name, time.time() - t1), flush=True)
        d.stop()
        azenv.no_secrets(d.read_log(), "seedd's log")
    finally:
        if d.alive():
            d.proc.kill()
        sim.stop()
        az.stop()
    print("ok (%.1f s)" % (time.time() - t0))


if __name__ == "__main__":
    main()
