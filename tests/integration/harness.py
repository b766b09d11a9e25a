"""Test harness: start the built seedd on a temporary state dir and socket,
drive it with the built seedctl or raw varlink calls, stop it.

Environment (set by meson): SEEDD, SEEDCTL, SOURCE_ROOT, BUILD_ROOT.
"""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SEEDD = os.environ.get("SEEDD", "build/daemon/seedd")
SEEDCTL = os.environ.get("SEEDCTL", "build/client/seedctl")
SKIP = 77

# Temp dirs of this test, removed when it ends (a run of the suite left ~3 GB
# in /tmp each time). SEEDD_KEEP_TMP=1 keeps them; a failed test keeps its
# own and names them, so the evidence stays for whoever looks.
_tmpdirs = []
_failed = False


def _mounted_under(path):
    try:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
    except OSError:
        return True
    return any(p == path or p.startswith(path + "/") for p in points)


def _clean_tmpdirs():
    if os.environ.get("SEEDD_KEEP_TMP") or _failed:
        if _tmpdirs:
            print("kept: " + " ".join(_tmpdirs), file=sys.stderr)
        return
    for d in _tmpdirs:
        if os.path.isdir(d) and not _mounted_under(os.path.realpath(d)):
            shutil.rmtree(d, ignore_errors=True)


atexit.register(_clean_tmpdirs)
_excepthook = sys.excepthook


def _note_failure(*exc):
    global _failed
    _failed = True
    _excepthook(*exc)


sys.excepthook = _note_failure


def fail(msg):
    global _failed
    _failed = True
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def skip(reason):
    print("SKIP: " + reason)
    sys.exit(SKIP)


class Daemon:
    """One seedd process on its own temp dir."""

    def __init__(self, config_text=None, tmp=None, env=None):
        if tmp is None:
            tmp = tempfile.mkdtemp(prefix="seedd-test-")
            _tmpdirs.append(tmp)
        self.tmp = tmp
        self.state = os.path.join(self.tmp, "state")
        self.sock = os.path.join(self.tmp, "run", "seedd.sock")
        self.config = os.path.join(self.tmp, "seedd.conf")
        self.log = os.path.join(self.tmp, "seedd.log")
        self.proc = None
        self.extra_env = env or {}
        if config_text is not None or not os.path.exists(self.config):
            with open(self.config, "w") as f:
                f.write(config_text or "")

    def env(self):
        e = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC",
                  "STATE_DIRECTORY", "RUNTIME_DIRECTORY", "CREDENTIALS_DIRECTORY"):
            e.pop(k, None)
        e.update(self.extra_env)
        return e

    def argv(self):
        return [SEEDD, "--config", self.config, "--state-dir", self.state,
                "--socket", self.sock]

    def start(self, wait=True):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=logf, stderr=logf,
                                     env=self.env())
        logf.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                fail("seedd exited early with %d:\n%s" % (self.proc.returncode, self.read_log()))
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.sock)
                s.close()
                return
            except OSError:
                time.sleep(0.05)
        fail("seedd did not listen within %d s:\n%s" % (timeout, self.read_log()))

    def read_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM; the daemon must exit 0 within timeout seconds."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail("seedd did not stop within %d s of SIGTERM" % timeout)
        check(rc == 0, "seedd exited %d on SIGTERM:\n%s" % (rc, self.read_log()))
        return rc

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def ctl(self, *args, check_rc=None, input=None, timeout=60, preexec=None):
        """Run seedctl against this daemon; return CompletedProcess."""
        p = subprocess.run([SEEDCTL, "--socket", self.sock] + list(args),
                           capture_output=True, text=True, timeout=timeout,
                           input=input, preexec_fn=preexec)
        if check_rc is not None and p.returncode != check_rc:
            fail("seedctl %s: exit %d, expected %d\nstdout: %s\nstderr: %s\nlog:\n%s" % (
                " ".join(args), p.returncode, check_rc, p.stdout, p.stderr, self.read_log()))
        return p

    def ctl_json(self, *args):
        p = self.ctl("--json", *args, check_rc=0)
        try:
            return json.loads(p.stdout)
        except ValueError:
            fail("seedctl --json %s printed no JSON: %r" % (" ".join(args), p.stdout))

    def connect(self):
        return Conn(self.sock)

    def call(self, method, params=None, **kw):
        with self.connect() as c:
            return c.call(method, params, **kw)


class Conn:
    """A raw varlink connection."""

    def __init__(self, path, timeout=10):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        self.s.close()

    def send_raw(self, data):
        self.s.sendall(data)

    def send(self, msg):
        self.send_raw(json.dumps(msg).encode() + b"\0")

    def recv(self):
        """One message, or None on EOF."""
        while b"\0" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, more=False):
        m = {"method": method, "parameters": params or {}}
        if more:
            m["more"] = True
        self.send(m)
        return self.recv()


def error_of(reply):
    return reply.get("error") if reply else None


def make_tree(root, files):
    """files: {relative path: bytes}."""
    for rel, data in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
