"""seedctl watch, as an operator sees it (issue 12): on a terminal (a pty of
64 columns) and through a pipe, a job without Azure that goes quiet after
drive prep (phase awaiting-azure) is shown as it is, not frozen at its last
copying line; a failed job shows its error and watch exits 1; a count while
indexing; off a terminal one line per change, never the same line twice;
rates and ETAs; a closing summary; lines that fit the terminal by shortening
the phase, never the numbers. With the slowdrive shim (not under a
sanitizer) indexing and copying are slow enough to be seen in progress."""
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, SEEDCTL  # noqa: E402
import prepcheck  # noqa: E402

MiB = 1 << 20
COLUMNS = 64
SMALL = 80  # with 3 big files: FILES files, and a symlink that is skipped
FILES = SMALL + 3
ESC = re.compile(r"\x1b\[[0-9]*[A-Za-z]")


class PtyWatch:
    """seedctl watch on a pseudo-terminal of COLUMNS columns; reads what it draws."""

    def __init__(self, sock, *args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(SEEDCTL, [SEEDCTL, "--socket", sock, "watch"] + list(args))
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
        self.out = b""

    def read(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.out += data

    def text(self):
        return self.out.decode("utf-8", "replace")

    def drawn(self):
        """Every line as drawn: the pieces after a carriage return, escapes removed."""
        return [ESC.sub("", p).strip("\r\n") for p in re.split(r"\r", self.text()) if p.strip()]

    def stop(self):
        try:
            os.kill(self.pid, 15)
        except ProcessLookupError:
            pass
        self.read(0.3)
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def wait_for(pred, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    check(False, "%s within %d s" % (what, timeout))


def tree(root):
    os.makedirs(root)
    for i in range(3):
        with open(os.path.join(root, "big-%d.bin" % i), "wb") as f:
            f.write(os.urandom(8 * MiB))
    for i in range(SMALL):
        with open(os.path.join(root, "small-%02d.txt" % i), "wb") as f:
            f.write(os.urandom(1000 + 97 * i))
    os.symlink("/etc/hostname", os.path.join(root, "a-link"))
    return "%.1f MiB" % ((3 * 8 * MiB + sum(1000 + 97 * i for i in range(SMALL))) / MiB)


def pipe_lines(p):
    return [l for l in p.stdout.read().splitlines() if l.strip()]


def test_quiet_job(d, slow, shim):
    """The freeze of issue 12: watchers started before the job, stopped after it went quiet."""
    staging = os.path.join(slow, "staging")
    size = tree(staging)
    piped = subprocess.Popen([SEEDCTL, "--socket", d.sock, "watch"], stdout=subprocess.PIPE,
                             text=True)
    tty = PtyWatch(d.sock)
    time.sleep(0.3)  # both watch every job before it exists
    d.ctl_json("job", "create", "quiet-job", "--staging", staging)
    prepcheck.wait_phase(d, "quiet-job", "indexed")
    for serial in ("DISK-1", "DISK-2"):  # one ends before the other (two big files each)
        drive = os.path.join(slow, serial)
        os.mkdir(drive)
        d.ctl_json("drive", "add", "quiet-job", drive, "--serial", serial,
                   "--capacity", str(32 * MiB))
    d.ctl_json("job", "prepare", "quiet-job")
    copying = []
    deadline = time.time() + 120
    while time.time() < deadline:  # the JSON while it copies, for rate and eta
        job = d.ctl_json("job", "show", "quiet-job")
        if job["phase"] == "awaiting-azure":
            break
        if job["phase"] == "copying":
            copying.append(job)
        tty.read(0.1)
    job = prepcheck.wait_phase(d, "quiet-job", "awaiting-azure")
    tty.read(2)  # the job is quiet now: nothing more will change
    piped.terminate()
    lines = pipe_lines(piped)
    tty.stop()

    # 1. No freeze: both show the job as it is, not its last copying line.
    job_lines = [l for l in lines if l.startswith("quiet-job  ")]
    check(job_lines and "drive_prep/awaiting-azure" in job_lines[-1] and "100%" in job_lines[-1],
          "the piped watch ends at awaiting-azure 100%%: %r" % job_lines[-3:])
    drawn = [l for l in tty.drawn() if l.startswith("quiet-job  ")]
    check(drawn and "100%" in drawn[-1] and "files %d/%d" % (FILES, FILES) in drawn[-1]
          and "copying" not in drawn[-1],
          "the terminal's last line is the quiet job at 100%%: %r" % drawn[-3:])

    # 2. Off a terminal: one line per change, never the same line twice in a row.
    for a, b in zip(lines, lines[1:]):
        check(a != b, "a repeated line: %r" % a)
    check(any("drive prep done: %d files, %s in " % (FILES, size) in l and
              "%d verified" % FILES in l for l in lines),
          "the closing summary of drive prep: %r" % lines[-4:])
    check(any(l.startswith("quiet-job: indexed %d files, %s in " % (FILES, size)) for l in lines),
          "the closing summary of indexing: %r" % lines[:6])
    check(not any(re.search(r"\d{6,} bytes", l) for l in lines + tty.drawn()),
          "no raw byte counts: %r" % [l for l in lines if "bytes" in l])

    # 3. The terminal: every line fits, the numbers whole, the phase shortened instead.
    progress = re.compile(r"\d+%  [\d.]+ [KMG]?i?B/[\d.]+ [KMG]?i?B  files \d+/\d+")
    for l in tty.drawn():
        if l.startswith("quiet-job: "):
            continue  # a summary: a permanent line, free to wrap
        check(len(l) < COLUMNS, "a line wider than the terminal (%d): %r" % (len(l), l))
        if l.startswith("quiet-job  ") and "%" in l:
            check(progress.search(l), "numbers cut on the terminal: %r" % l)
    check(any("~" in l for l in drawn), "a long phase is shortened with ~: %r" % drawn)

    # 4. Rates and ETAs: JSON rate 0 when idle, eta null when unknown; human lines show them.
    final = d.ctl_json("job", "show", "quiet-job")
    check(final["rate"] == 0 and final["eta"] is None, "a quiet job: rate 0, eta null: %r" %
          {k: final[k] for k in ("rate", "eta")})
    for dr in final["drives"]:
        check(dr["rate"] == 0 and dr["eta"] is None, "a finished drive's rate is 0: %r" % dr)
    drives = d.ctl_json("drive", "list", "quiet-job")
    check(all(dr["rate"] == 0 for dr in drives), "drive list: idle drives at rate 0")
    out = d.ctl("drive", "list", "quiet-job", check_rc=0).stdout
    check("RATE" in out and "ETA" in out and "idle" in out, "drive list has RATE and ETA: %r" % out)
    out = d.ctl("job", "show", "quiet-job", check_rc=0).stdout
    check(re.search(r"Rate:\s+idle, ETA unknown", out), "job show: rate and ETA: %r" % out)
    check("Problems:" in out and "skipped" in out and "a-link" in out,
          "job show lists the skipped symlink by path: %r" % out)
    if shim:
        check(copying, "the copy was seen in progress")
        live = [dr for j in copying for dr in j["drives"] if "copiedBytes" in dr]
        check(live and all(dr["rate"] >= 0 and (dr["eta"] is None or dr["eta"] >= 0)
                           for dr in live), "live drives have rate and eta: %r" % live[-1:])
        check(any(j["rate"] > 0 and isinstance(j["eta"], int) for j in copying),
              "the job has a rate and an ETA while it copies: %r" %
              [(j["rate"], j["eta"]) for j in copying])
        check(any(re.search(r"files \d+/%d  [\d.]+ [KMG]iB/s" % FILES, l) for l in job_lines),
              "the watch line shows the job's rate: %r" % job_lines)
        check(any(re.search(r"^quiet-job  drive  DISK-1  .* copied  ", l) for l in lines),
              "a drive line with its rate and ETA: %r" % lines)
        check(any(re.search(r"staging/indexing  [1-9]\d* files, .* found", l) for l in lines),
              "a count while indexing: %r" % lines[:5])
        # A drive that has all it was given while the other copies: rate 0, not a decaying tail.
        done = [dr for j in copying for dr in j["drives"]
                if "copiedBytes" in dr and dr["eta"] == 0]
        check(done, "a drive was seen done while the job copied: %r" %
              [j["drives"] for j in copying[-2:]])
        check(all(dr["rate"] == 0 for dr in done),
              "a done drive's rate is 0: %r" % [(dr["serial"], dr["rate"]) for dr in done])
    print("\n".join(lines[:3] + ["..."] + lines[-4:]))


def test_failed_job(d):
    """A failed job: its error is shown and watch exits 1 (with --json too)."""
    staging = os.path.join(d.tmp, "refused")
    os.makedirs(staging)
    with open(os.path.join(staging, "bad:name.txt"), "w") as f:
        f.write("Azure refuses ':'\n")
    d.ctl_json("job", "create", "refused-job", "--staging", staging)
    w = subprocess.Popen([SEEDCTL, "--socket", d.sock, "watch", "refused-job"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = w.communicate(timeout=30)
    check(w.returncode == 1, "watch of a failed job exits 1: %d %r %r" % (w.returncode, out, err))
    check("refused-job failed (" in out and "Azure would refuse" in out,
          "the error is shown: %r" % out)
    p = d.ctl("--json", "watch", "refused-job", check_rc=1)
    last = json.loads(p.stdout.strip().splitlines()[-1])
    check(last["state"] == "failed" and last["error"], "--json: the failed job: %r" % last)
    tty = PtyWatch(d.sock, "refused-job")
    tty.read(3)
    _, status = os.waitpid(tty.pid, 0)
    os.close(tty.fd)
    check(os.WEXITSTATUS(status) == 1, "on a terminal too: exit %d" % os.WEXITSTATUS(status))
    check("Azure would refuse" in tty.text(), "on a terminal the error is shown: %r" % tty.text())


def main():
    shim = os.path.join(os.environ.get("BUILD_ROOT", "build"), "tests", "integration",
                        "slowdrive.so")
    sanitize = sys.argv[1] if len(sys.argv) > 1 else "none"
    d = Daemon("[Drives]\nRequireNTFS=no\n")
    slow = os.path.join(d.tmp, "slow")
    os.mkdir(slow)
    use_shim = sanitize in ("", "none") and os.path.exists(shim)
    if use_shim:
        d.extra_env = {"LD_PRELOAD": shim, "SEEDD_SLOW_DIR": slow, "SEEDD_SLOW_MS": "25"}
    else:
        print("no slowdrive shim (sanitizer %r): progress checks skipped" % sanitize)
    d.start()
    try:
        test_quiet_job(d, slow, use_shim)
        test_failed_job(d)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    print("ok")


if __name__ == "__main__":
    main()
