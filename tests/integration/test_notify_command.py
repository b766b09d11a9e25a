"""NotifyCommand= (issue 12, point 11): the command runs with only the event
in its environment on catalogued events (a job that fails, a job that needs
a drive), a hanging command is killed with its process group after
NotifyTimeoutSec= while seedd keeps answering, and the configuration refuses
a command that is not an absolute path to an executable file."""
import os
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import SEEDD, Daemon, check, fail  # noqa: E402
import prepcheck  # noqa: E402

MiB = 1 << 20
FAILED_ID = "b8bb0e4612ee41fd95814a4935b681a6"
NEEDS_DRIVE_ID = "b78f194fde564e84a5b933243231f310"
ALLOWED = {"PATH", "SEEDD_JOB", "SEEDD_EVENT", "MESSAGE_ID", "SEEDD_TEXT"}
SHELL_OWN = {"PWD", "SHLVL", "_", "OLDPWD"}  # what sh itself sets

# Appends its environment to out/EVENT-JOB.env; a job named hang-* makes it
# wait on a child, whose pid it records, so only a group kill ends both.
SCRIPT = """#!/bin/sh
out=%s
env >> "$out/$SEEDD_EVENT-$SEEDD_JOB.env"
case "$SEEDD_JOB" in
hang-*)
	sleep 60 &
	echo "$$ $!" > "$out/hang.pids"
	wait
	echo finished > "$out/hang.finished"
	;;
esac
"""


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            env[k] = v
    return env


def wait_file(path, d, what, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return
        time.sleep(0.05)
    fail("%s: %s not written in %d s\n%s" % (what, path, timeout, d.read_log()))


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def bad_names(d, name):
    staging = os.path.join(d.tmp, name)
    os.makedirs(staging)
    open(os.path.join(staging, "bad:name.txt"), "w").write("x")
    d.ctl_json("job", "create", name, "--staging", staging)


def test_failed(d, out):
    """The quickest failure: a name Azure refuses fails the job at indexing."""
    bad_names(d, "broken")
    prepcheck.wait_state(d, "broken", "failed")
    path = os.path.join(out, "failed-broken.env")
    wait_file(path, d, "the failed event")
    env = read_env(path)
    check(env.get("SEEDD_JOB") == "broken" and env.get("SEEDD_EVENT") == "failed",
          "job and event: %r" % env)
    check(env.get("MESSAGE_ID") == FAILED_ID, "the catalogued MESSAGE_ID: %r" % env)
    check("broken" in env.get("SEEDD_TEXT", "") and "failed" in env["SEEDD_TEXT"],
          "the journal line's text: %r" % env)
    check(env.get("PATH") == "/usr/local/bin:/usr/bin:/bin", "a minimal PATH: %r" % env)
    extra = set(env) - ALLOWED - SHELL_OWN
    check(not extra, "nothing of seedd's environment reaches the command: %r" % extra)


def test_needs_drive(d, out):
    staging = os.path.join(d.tmp, "big")
    os.makedirs(staging)
    with open(os.path.join(staging, "big.bin"), "wb") as f:
        f.write(os.urandom(2 * MiB))
    d.ctl_json("job", "create", "big", "--staging", staging)
    prepcheck.wait_phase(d, "big", "indexed")
    drive = os.path.join(d.tmp, "small-drive")
    os.mkdir(drive)
    d.ctl_json("drive", "add", "big", drive, "--serial", "SMALL-1", "--capacity", "1M")
    d.ctl_json("job", "prepare", "big")
    path = os.path.join(out, "needs-drive-big.env")
    wait_file(path, d, "the needs-drive event")
    env = read_env(path)
    check(env.get("MESSAGE_ID") == NEEDS_DRIVE_ID and env.get("SEEDD_JOB") == "big",
          "needs-drive event: %r" % env)
    check(NEEDS_DRIVE_ID in d.read_log() or "needs another drive" in d.read_log(),
          "the catalogued line is logged")


def test_hang(d, out):
    """A command that hangs is killed, its child too; seedd answers meanwhile."""
    bad_names(d, "hang-1")
    pids_path = os.path.join(out, "hang.pids")
    wait_file(pids_path, d, "the hanging command")
    script_pid, child_pid = (int(x) for x in open(pids_path).read().split())
    check(pid_alive(script_pid) and pid_alive(child_pid), "the command is running")
    t0 = time.time()
    answers = 0
    while pid_alive(script_pid) or pid_alive(child_pid):
        st = d.ctl_json("status")  # the loop answers while the command hangs
        check(st["version"], "status answered")
        answers += 1
        if time.time() - t0 > 15:
            fail("the hanging command was not killed:\n%s" % d.read_log())
        time.sleep(0.1)
    check(answers >= 1, "seedd answered during the timeout (%d calls)" % answers)
    check(not os.path.exists(os.path.join(out, "hang.finished")), "the command did not finish")
    deadline = time.time() + 5
    while "killed after 1 s" not in d.read_log() and time.time() < deadline:
        time.sleep(0.05)
    check("killed after 1 s" in d.read_log(), "the kill is logged:\n%s" % d.read_log())


def test_exit_status(d, tmp):
    """A failing command's exit status is logged (after a reload to another command)."""
    failing = os.path.join(tmp, "fails.sh")
    with open(failing, "w") as f:
        f.write("#!/bin/sh\nexit 7\n")
    os.chmod(failing, 0o755)
    with open(d.config, "w") as f:
        f.write("[Daemon]\nNotifyCommand=%s\nNotifyTimeoutSec=1\n"
                "[Drives]\nRequireNTFS=no\n" % failing)
    d.proc.send_signal(1)
    deadline = time.time() + 5
    while "configuration reloaded" not in d.read_log() and time.time() < deadline:
        time.sleep(0.05)
    bad_names(d, "exits")
    deadline = time.time() + 10
    while "exit status 7" not in d.read_log() and time.time() < deadline:
        time.sleep(0.05)
    check("exit status 7" in d.read_log(), "the exit status is logged:\n%s" % d.read_log())


def test_config_refused(tmp):
    plain = os.path.join(tmp, "not-executable")
    open(plain, "w").write("#!/bin/sh\n")
    os.chmod(plain, 0o644)
    for value, why in (("relative/notify", "not an absolute path"),
                       (plain, "not executable"), (tmp, "not a regular file"),
                       (os.path.join(tmp, "missing"), "no such file")):
        conf = os.path.join(tmp, "bad.conf")
        with open(conf, "w") as f:
            f.write("[Daemon]\nNotifyCommand=%s\n" % value)
        p = subprocess.run([SEEDD, "--config", conf, "--state-dir", os.path.join(tmp, "x"),
                            "--socket", os.path.join(tmp, "x.sock")],
                           capture_output=True, text=True, timeout=20)
        check(p.returncode == 2, "NotifyCommand=%s refused with exit 2: %d" % (value, p.returncode))
        check("bad.conf:2" in p.stderr and why in p.stderr,
              "the error names file:line and why (%s): %r" % (why, p.stderr))


def main():
    d = Daemon()
    out = os.path.join(d.tmp, "out")
    os.mkdir(out)
    script = os.path.join(d.tmp, "notify.sh")
    with open(script, "w") as f:
        f.write(SCRIPT % out)
    os.chmod(script, stat.S_IRWXU)
    with open(d.config, "w") as f:
        f.write("[Daemon]\nNotifyCommand=%s\nNotifyTimeoutSec=1\n"
                "[Drives]\nRequireNTFS=no\n" % script)
    d.extra_env["SEEDD_TEST_SECRET"] = "must-not-leak"
    d.start()
    try:
        test_failed(d, out)
        test_needs_drive(d, out)
        test_hang(d, out)
        test_exit_status(d, d.tmp)
        test_config_refused(d.tmp)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    print("ok")


if __name__ == "__main__":
    main()
