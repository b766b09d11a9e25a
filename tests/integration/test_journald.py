"""seedd's structured journal fields, checked in a real systemd-journald that
runs in a private mount namespace (tmpfs on /run and on /var/log/journal,
so the host's journal is never touched)."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, skip  # noqa: E402

JOURNALD = "/lib/systemd/systemd-journald"
MARK = "SEEDD_TEST_IN_NAMESPACE"


def catalog_ids():
    path = os.path.join(os.environ["SOURCE_ROOT"], "daemon", "core", "catalog-ids.h")
    ids = {}
    for m in re.finditer(r'#define\s+(SEEDD_MESSAGE_\w+)\s+"([0-9a-f]{32})"', open(path).read()):
        ids[m.group(1)] = m.group(2)
    return ids


def reexec_in_namespace():
    if os.geteuid() != 0:
        skip("needs root to unshare a mount namespace and run systemd-journald")
    if not os.path.exists(JOURNALD) or not shutil.which("journalctl"):
        skip("systemd-journald or journalctl is not installed")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        skip("unshare -m is refused here: %s" % probe.stderr.decode().strip())
    env = dict(os.environ, **{MARK: "1"})
    p = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                        __file__], env=env)
    sys.exit(p.returncode)


def start_journald():
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    os.makedirs("/run/systemd/journal")
    os.makedirs("/run/log/journal")
    if os.path.isdir("/var/log/journal"):
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/var/log/journal"], check=True)
    jd = subprocess.Popen([JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.exists("/run/systemd/journal/socket"):
            return jd
        time.sleep(0.05)
    jd.kill()
    check(False, "systemd-journald did not create its socket")


def entries():
    out = subprocess.run(["journalctl", "-D", "/run/log/journal", "-o", "json", "--no-pager",
                          "SYSLOG_IDENTIFIER=seedd"], capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def find(es, **fields):
    return [e for e in es if all(e.get(k) == v for k, v in fields.items())]


def main():
    if os.environ.get(MARK) != "1":
        reexec_in_namespace()
    ids = catalog_ids()
    jd = start_journald()
    d = Daemon().start()
    try:
        staging = os.path.join(d.tmp, "staging")
        os.makedirs(staging)
        d.ctl_json("job", "create", "journal-job", "--staging", staging)
        d.ctl_json("job", "cancel", "journal-job")
        d.stop()
        time.sleep(0.3)
        es = entries()
        check(len(es) > 0, "seedd wrote to the journal (stderr: %r)" % d.read_log()[:500])
        check(find(es, MESSAGE_ID=ids["SEEDD_MESSAGE_STARTED"]), "a catalogued start message")
        created = find(es, MESSAGE_ID=ids["SEEDD_MESSAGE_JOB_CREATED"], SEEDD_JOB="journal-job")
        check(created and created[0].get("SEEDD_STATE") == "staging",
              "job creation carries SEEDD_JOB and SEEDD_STATE: %r" % created)
        cancelled = find(es, MESSAGE_ID=ids["SEEDD_MESSAGE_JOB_CANCELLED"],
                         SEEDD_JOB="journal-job", SEEDD_STATE="cancelled")
        check(cancelled, "cancellation catalogued with its state")
        check(all("PRIORITY" in e for e in es), "every entry has a priority")
        check(find(es, MESSAGE_ID=ids["SEEDD_MESSAGE_STOPPED"]), "a catalogued stop message")
        check("journal-job" not in d.read_log(), "with a journal, nothing goes to stderr")
    finally:
        if d.alive():
            d.proc.kill()
        jd.kill()
    print("ok: %d journal entries checked" % len(es))


if __name__ == "__main__":
    main()
