"""One trial of the crash campaign (tests/crash/run): a job's whole life
against the Azure simulator and Azurite while a killer thread sends seedd
kill -9 at random moments and starts it again; the operator (this module's
main loop) repeats its commands until the job is done, then the end state
is checked: `done`, every staged byte in the vault with its Content-MD5, one
Azure job, no import blobs, staging emptied, the database intact.

Everything random comes from the trial's seed (data, drives, job API,
import faults, kill plan), so `run --seed SEED --trials 1` replays a trial's
plan; the moments the kills land still depend on timing, which is why each
kill's position is read from the database as the kill left it (what was
committed when seedd died, where the next start resumes)."""
import base64
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import azenv
import blobstore
from harness import Daemon, SEEDCTL

# The job's life in order: (state, phase) as the database names them.
LIFE = [
    ("staging", "indexing"), ("staging", "indexed"),
    ("drive_prep", "copying"), ("drive_prep", "writing-manifests"),
    ("drive_prep", "awaiting-azure"), ("drive_prep", "creating-azure-job"),
    ("drive_prep", "awaiting-tracking"), ("drive_prep", "shipping"),
    ("shipped", "in-transit"), ("shipped", "azure"),
    ("imported", "reconcile-pending"), ("imported", "import-problems"),
    ("imported", "reconciling"), ("imported", "repairing"),
    ("vault_copy", "copying-to-vault"),
    ("cleanup", "deleting-import-blobs"), ("cleanup", "deleting-staging-files"),
    ("done", "done"),
]
ORDER = {p: i for i, p in enumerate(LIFE)}
ORDER[("drive_prep", "copying (verifying)")] = ORDER[("drive_prep", "copying")]
# Azure's statuses after the shipment, each set by the "datacenter" (the
# simulator's control API) a random moment after the previous one, per API.
AZURE_STEPS = {"DataBox": ("AtAzureDC", "DataCopy", "Completed"),
               "ImportExport": ("Received", "Transferring", "Completed")}
SIM_KIND = {"DataBox": "databox", "ImportExport": "importexport"}
BIG = "big/full.bak"
IMPORT_FAULTS = ("drop", "corrupt", "length", "failed", "blocklist", "rename")


class TrialFailure(Exception):
    pass


def position(row):
    """Where a job is: its (state, phase base) as a LIFE entry, else as read.
    In copying, a db_row() that saw the big file written but not verified
    says "verifying" (copy and read-back interleave file by file; the
    database does not tell them apart)."""
    if row is None:
        return ("none", "")
    state, phase = row[0], (row[1] or "").split(":")[0]
    if state == "done":
        phase = "done"
    if len(row) > 3 and row[3] and phase == "copying":
        phase = "copying (verifying)"
    return (state, phase)


def position_index(pos):
    return ORDER.get(pos, -1)


class Plan:
    """What a trial does, all drawn from its seed."""

    def __init__(self, seed, kills, aim=None):
        rng = random.Random(seed)
        self.seed = seed
        self.name = "crash-%08x" % (seed & 0xffffffff)
        # One file of several 4 MiB blocks (its copy and read-back take a
        # while) and many small ones (the per-file steps after the import).
        self.files = {BIG: rng.randbytes(rng.randrange(12 << 20, 20 << 20))}
        for i in range(rng.randrange(80, 140)):
            self.files["docs/%02d/f-%03d.txt" % (i % 6, i)] = rng.randbytes(rng.randrange(0, 9000))
        self.drives = rng.choice((1, 2))
        self.api = rng.choice(("DataBox", "DataBox", "ImportExport"))
        paths = sorted(p for p in self.files if p.startswith("docs/"))
        self.faults = {}
        if rng.random() < 0.5:  # some trials repair files from staging
            for kind in rng.sample(IMPORT_FAULTS, rng.randint(1, 2)):
                self.faults.setdefault(kind, []).append(paths.pop(rng.randrange(len(paths))))
        # Each kill aims at a point of the life; the kills go in that order.
        # A "phase" kill fires at the first look at that point or a later
        # one (up to 80 ms after it); a "delay" kill a random time up to
        # 1 s after that look, wherever the job is then. aim (`run --aim`):
        # every kill a "phase" kill at that LIFE index, only while the job is there.
        self.kills = []
        for target in sorted(rng.randrange(len(LIFE) - 1) for _ in range(kills)):
            target = target if aim is None else aim
            if rng.random() < 0.3 and aim is None:
                self.kills.append(("delay", target, round(rng.uniform(0.0, 1.0), 3)))
            else:
                # Aimed kills come at once: some phases last a few ms.
                late = 0.08 if aim is None else 0.0
                self.kills.append(("phase", target, round(rng.uniform(0.0, late), 3)))
        self.exact = aim is not None
        self.restart_pause = [round(rng.uniform(0.0, 0.3), 3) for _ in range(kills)]
        self.azure_pause = [round(rng.uniform(0.1, 1.2), 3) for _ in range(3)]


class Trial:
    def __init__(self, plan, blob, timeout, keep=False, verbose=False):
        self.plan = plan
        self.blob = blob
        self.timeout = timeout
        self.keep = keep
        self.verbose = verbose
        self.tmp = tempfile.mkdtemp(prefix="seedd-crash-")
        self.d = Daemon(tmp=self.tmp)
        self.sim = None
        self.kills = []          # one dict per kill: trigger, state, phase, detail
        self.notes = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.killer_error = None
        self.staging = os.path.join(self.tmp, "staging")
        self.con = None
        self.seen = None

    # -- the daemon, started again after each kill -------------------------

    def note(self, text):
        line = "%7.3f %s" % (time.monotonic() - self.t0, text)
        self.notes.append(line)
        if self.verbose:
            print("  " + line, flush=True)

    def start_daemon(self):
        d = self.d
        with open(d.log, "ab") as logf:
            logf.write(b"---- start ----\n")
            proc = subprocess.Popen(d.argv(), stdout=logf, stderr=logf, env=d.env())
        d.proc = proc
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise TrialFailure("seedd exited %d at start" % proc.returncode)
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(d.sock)
                return
            except OSError:
                time.sleep(0.02)
        raise TrialFailure("seedd did not listen within 30 s")

    def db(self):
        """A read-only connection, kept: the killer looks every millisecond."""
        if self.con is None:
            path = os.path.join(self.d.state, "seedd.db")
            if not os.path.exists(path):
                return None
            self.con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=1,
                                       check_same_thread=False)
        return self.con

    def db_state(self):
        """(state, phase) of the job, None before it exists."""
        try:
            con = self.db()
            return con and con.execute("SELECT state, phase FROM jobs WHERE name=?",
                                       (self.plan.name,)).fetchone()
        except sqlite3.Error:
            self.con = None
            return None

    def db_row(self):
        """(state, phase, what is done so far) of the job, read only."""
        try:
            con = self.db()
            row = con and con.execute(
                "SELECT id, state, phase, azure_state FROM jobs WHERE name=?",
                (self.plan.name,)).fetchone()
            if not row:
                return None
            counts = con.execute(
                "SELECT count(*), sum(state='verified'), sum(vault_state='verified'),"
                " sum(cleanup_state IS NOT NULL), max(rel_path=? AND state='planned')"
                " FROM files WHERE job_id=?", (BIG, row[0])).fetchone()
        except sqlite3.Error:
            self.con = None
            return None
        n, ver, vault, clean, big_planned = (c or 0 for c in counts)
        extra = "files %d, on drives %d, in vault %d, cleaned %d, azure %s" % (
            n, ver, vault, clean, row[3] or "-")
        return (row[1], row[2], extra, big_planned and self.big_written())

    def big_written(self):
        """The big file is on a drive at its full length (the temporary file is
        written in whole blocks, cut to length just before its rename), not yet
        recorded as verified: its sync and read-back are under way."""
        want = len(self.plan.files[BIG])
        for i in range(self.plan.drives):
            base = os.path.join(self.tmp, "drive-%d" % i, self.plan.name, BIG)
            for p in (base, base + ".seedd-tmp"):
                try:
                    if os.stat(p).st_size >= want:
                        return True
                except OSError:
                    pass
        return False

    # -- the killer thread ------------------------------------------------

    def killer(self):
        try:
            for i, kill in enumerate(self.plan.kills):
                if not self.wait_trigger(kill):
                    return
                self.kill_once(i, kill)
        except TrialFailure as e:
            self.killer_error = str(e)
        except Exception as e:  # noqa: BLE001 -- any error fails the trial, named
            self.killer_error = "killer: %r" % e

    def wait_trigger(self, kill):
        """Until the kill is due; False once the job is done or the trial stops."""
        reached = None
        while not self.stop.is_set():
            pos = position(self.db_state())
            if pos != self.seen:
                self.seen = pos
                self.note("at %s/%s" % pos)
            if pos[0] in ("done", "failed", "cancelled"):
                return False
            at = position_index(pos)
            if reached is None and (at == kill[1] if self.plan.exact else at >= kill[1]):
                reached = time.monotonic()
            if reached is not None and time.monotonic() - reached >= kill[2]:
                return True
            time.sleep(0.001)
        return False

    def kill_once(self, i, kill):
        with self.lock:
            self.d.proc.send_signal(signal.SIGKILL)
            self.d.proc.wait(10)
        # Read once seedd is gone: what was committed at the kill, which is
        # exactly where the next start resumes.
        row = self.db_row()
        pos = position(row)
        trigger = "%.3f s after %s/%s" % ((kill[2],) + LIFE[kill[1]])
        self.kills.append({"trigger": kill[0], "target": trigger, "state": pos[0], "phase": pos[1],
                           "raw": row[1] if row else "", "detail": row[2] if row else ""})
        self.note("kill %d (%s): %s/%s (%s) %s" % (i + 1, trigger, pos[0], pos[1],
                                                  row[1] if row else "", row[2] if row else ""))
        time.sleep(self.plan.restart_pause[i])
        with self.lock:
            self.start_daemon()
        self.note("restarted")

    # -- the operator ------------------------------------------------------

    def ctl(self, *args):
        """seedctl against the daemon (it fails while seedd is down or killed mid-call)."""
        p = subprocess.run([SEEDCTL, "--socket", self.d.sock] + list(args),
                           capture_output=True, text=True, timeout=60)
        return p

    def show(self):
        p = self.ctl("--json", "job", "show", self.plan.name)
        if p.returncode != 0:
            return None, (p.stderr + p.stdout).strip()  # --json puts errors on stdout
        try:
            return json.loads(p.stdout), ""
        except ValueError:
            return None, "no JSON: %r" % p.stdout[:200]

    def act(self, what, *args):
        p = self.ctl(*args)
        self.note("%s: exit %d %s" % (what, p.returncode, (p.stderr or "").strip()[:200]))
        return p.returncode == 0

    def operator_step(self, st):
        """One look at the job and the next command, repeated until done."""
        job, err = self.show()
        if job is None:
            if "not found" in err.lower() or "JobNotFound" in err:
                self.act("create", "job", "create", self.plan.name, "--staging", self.staging)
            return None
        state, phase = job["state"], (job.get("phase") or "").split(":")[0]
        if state == "failed":
            raise TrialFailure("the job failed: %s" % job.get("error"))
        if state == "staging" and phase == "indexed":
            self.add_drives(job)
        elif state == "drive_prep" and phase == "awaiting-tracking":
            self.ship(job, st)
        elif state == "shipped":
            self.datacenter(st)
        return job

    def add_drives(self, job):
        have = {dr["serial"] for dr in job.get("drives") or []}
        big = max(map(len, self.plan.files.values()))
        total = sum(map(len, self.plan.files.values()))
        # Two drives: the big file and about half the small ones on each.
        cap = total + (2 << 20) if self.plan.drives == 1 else big + (total - big) // 2 + (256 << 10)
        for i in range(self.plan.drives):
            serial = "%s-SN%d" % (self.plan.name.upper(), i)
            if serial in have:
                continue
            path = os.path.join(self.tmp, "drive-%d" % i)
            os.makedirs(path, exist_ok=True)
            keyf = os.path.join(self.tmp, "key-%d" % i)
            azenv.write_secret(keyf, azenv.KEYS[i % len(azenv.KEYS)])
            if not self.act("drive add", "drive", "add", self.plan.name, path, "--serial", serial,
                            "--capacity", str(cap), "--bitlocker-key-file", keyf):
                return
        self.act("prepare", "job", "prepare", self.plan.name)

    def ship(self, job, st):
        if not st.get("drives_told"):
            self.sim_ctl("POST", self.sim_job("drives"),
                         {dr["serial"]: dr["path"] for dr in job["drives"] if dr["files"]})
            if self.plan.faults:
                self.sim_ctl("POST", self.sim_job("import-faults"), self.plan.faults)
            st["drives_told"] = True
        self.act("ship", "job", "ship", self.plan.name, "--carrier", "DHL",
                 "--tracking", "T-" + self.plan.name)

    def sim_job(self, action):
        return "/jobs/%s/%s?kind=%s" % (self.plan.name, action, SIM_KIND[self.plan.api])

    def datacenter(self, st):
        steps = AZURE_STEPS[self.plan.api]
        step = st.setdefault("azure_step", 0)
        if step >= len(steps):
            return
        now = time.monotonic()
        due = st.setdefault("azure_due", now + self.plan.azure_pause[step])
        if now < due:
            return
        self.sim_ctl("POST", self.sim_job("advance"), {"status": steps[step]})
        self.note("azure: %s" % steps[step])
        st["azure_step"] = step + 1
        if step + 1 < len(steps):
            st["azure_due"] = now + self.plan.azure_pause[step + 1]

    def sim_ctl(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.sim.control + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raise TrialFailure("simulator %s %s: %d %s" % (method, path, e.code,
                                                            e.read()[:300]))

    # -- the whole trial ---------------------------------------------------

    def setup(self):
        self.sim = azenv.Sim(self.tmp, blob=self.blob)
        with open(self.d.config, "w") as f:
            f.write(azenv.config(self.tmp, self.sim, api=self.plan.api, blob=self.blob))
        for rel, data in self.plan.files.items():
            p = os.path.join(self.staging, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)

    def run(self):
        self.t0 = time.monotonic()
        try:
            self.setup()
            self.start_daemon()
            killer = threading.Thread(target=self.killer, daemon=True)
            killer.start()
            try:
                self.operate()
            finally:
                self.stop.set()
                killer.join(60)
            if self.killer_error:
                raise TrialFailure(self.killer_error)
            self.check_end()
            return None
        except TrialFailure as e:
            return str(e)
        finally:
            self.teardown()

    def operate(self):
        st = {}
        deadline = self.t0 + self.timeout
        while time.monotonic() < deadline:
            if self.killer_error:
                return
            with self.lock:
                dead = self.d.proc.poll()
            if dead is not None and dead != -signal.SIGKILL:
                raise TrialFailure("seedd exited %d by itself" % dead)
            job = self.operator_step(st)
            if job is not None and job["state"] == "done":
                self.note("done")
                return
            time.sleep(0.05)
        row = self.db_row()
        raise TrialFailure("not done within %d s: %r" % (self.timeout, row))

    def check_end(self):
        self.stop.set()
        job, err = self.show()
        check(job is not None and job["state"] == "done", "the job is not done at the end: %s" % err)
        store = blobstore.BlobClient(self.blob["url"], self.blob["account"], self.blob["key"],
                                     self.blob.get("ca"))
        self.check_vault(store)
        jobs = self.sim_ctl("GET", "/jobs")
        check(len(jobs) == 1 and jobs[0]["name"] == self.plan.name,
              "not exactly one Azure job: %r" % [j["name"] for j in jobs])
        ships = [r for r in self.sim_ctl("GET", "/requests") if is_shipment(r)]
        check(len(ships) == 1, "the shipment was sent to Azure %d times" % len(ships))
        left = [os.path.join(r, f) for r, _, fs in os.walk(self.staging) for f in fs]
        check(not left, "staging files left: %r" % left[:3])
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.d.state, "seedd.db"),
                              uri=True)
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        con.close()
        check(ok == "ok", "the database is damaged: %s" % ok)
        log = self.d.read_log()
        for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            check(bad not in log, "seedd's log has an %s report" % bad)
        for secret in [azenv.SECRET, azenv.CARRIER_ACCOUNT, self.blob["key"]] + azenv.KEYS:
            check(secret not in log, "a secret is in seedd's log")

    def check_vault(self, store):
        name = self.plan.name
        vault = {b["name"]: b for b in listing(store, "vault", name + "/")}
        for rel, data in self.plan.files.items():
            b = vault.get("%s/%s" % (name, rel))
            check(b is not None, "%s is not in the vault" % rel)
            md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
            check(b["length"] == len(data) and b.get("contentMD5") == md5,
                  "wrong vault length or Content-MD5 of %s: %r" % (rel, b))
            check(store.get("vault", "%s/%s" % (name, rel)) == data, "wrong bytes in the vault copy of %s" % rel)
        extra = set(vault) - {"%s/%s" % (name, r) for r in self.plan.files}
        check(not extra, "other blobs in the vault: %r" % sorted(extra)[:3])
        left = listing(store, "seedd-import", name + "/")
        check(not left, "import blobs left: %r" % [b["name"] for b in left][:3])

    def teardown(self):
        if self.d.proc is not None and self.d.proc.poll() is None:
            self.d.proc.kill()
            self.d.proc.wait(10)
        if self.sim is not None:
            self.sim.stop()
        if self.con is not None:
            self.con.close()

    def cleanup(self, passed):
        if passed and not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def is_shipment(r):
    """A request that tells Azure the drives are shipped (either API)."""
    path = r.get("path", "").split("?")[0]
    if r.get("method") == "POST" and path.endswith("/markDevicesShipped"):
        return True
    props = (r.get("body") or {}).get("properties") if isinstance(r.get("body"), dict) else None
    return r.get("method") == "PATCH" and isinstance(props, dict) and \
        props.get("state") == "Shipping"


def check(cond, msg):
    """msg says what is wrong when cond is false."""
    if not cond:
        raise TrialFailure(msg)


def listing(store, container, prefix):
    try:
        return list(store.list(container, prefix))
    except blobstore.BlobError as e:
        if e.status == 404:
            return []
        raise
