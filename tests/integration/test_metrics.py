"""MetricsFile= as real parsers read it (issue 12 point 7, issue 11 point 3).

A job is indexed and copied onto a directory drive, its Azure job and ship
deadline are set in the store (no Azure here), and the file seedd writes at
start must pass `promtool check metrics` (Debian package prometheus) and the
OpenMetrics parser of python3-prometheus-client (Debian package
python3-prometheus-client; both installed by scripts/bootstrap): every family
in one block with HELP and TYPE once, counters ending in _total, per-drive
bytes and rate, files by state, seconds to the tracking deadline.

Then a symlink planted at PATH.tmp, pointing at a file seedd could write,
must not be followed, and the file is 0644 although seedd runs under umask
0077 (as the unit's UMask= does).
"""
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, fail  # noqa: E402
import prepcheck  # noqa: E402

MiB = 1 << 20


def om_parser():
    """The OpenMetrics parser of Debian's python3-prometheus-client (in /usr/lib/python3)."""
    try:
        from prometheus_client.openmetrics import parser
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            from prometheus_client.openmetrics import parser
        except ImportError:
            fail("python3-prometheus-client is not installed (scripts/bootstrap installs it)")
    return parser.text_string_to_metric_families


def promtool(path):
    exe = shutil.which("promtool")
    if exe is None:
        fail("promtool is not installed (Debian package prometheus; scripts/bootstrap installs it)")
    with open(path, "rb") as f:
        p = subprocess.run([exe, "check", "metrics"], stdin=f, capture_output=True, timeout=30)
    out = (p.stdout + p.stderr).decode(errors="replace")
    check(p.returncode == 0 and out.strip() == "",
          "promtool check metrics: exit %d: %s" % (p.returncode, out))


def grouped(text):
    """Each family's lines are contiguous, HELP and TYPE once each, before its samples."""
    seen, current, meta = set(), None, {}
    for line in text.splitlines():
        if line == "# EOF":
            break
        if line.startswith("# "):
            kind, name = line.split()[1:3]
            meta.setdefault(name, []).append(kind)
            fam = name
        else:
            name = line.split("{")[0].split()[0]
            fam = name if name in meta else name.rsplit("_", 1)[0]
            check(fam in meta, "sample %r before its family's HELP/TYPE" % line)
        if fam != current:
            check(fam not in seen, "family %s appears in two places" % fam)
            seen.add(fam)
            current = fam
    for name, kinds in meta.items():
        check(sorted(kinds) == ["HELP", "TYPE"], "%s has HELP/TYPE %r" % (name, kinds))
    check(text.endswith("# EOF\n"), "file ends with # EOF")


def samples(text):
    fams = {}
    for fam in om_parser()(text):
        if fam.type == "counter":
            for s in fam.samples:
                check(s.name.endswith("_total") or s.name.endswith("_created"),
                      "counter sample %s does not end in _total" % s.name)
        fams[fam.name] = {tuple(sorted(s.labels.items())): s.value for s in fam.samples}
    return fams


def test_content(d, path, staging, now):
    text = open(path).read()
    promtool(path)
    grouped(text)
    fams = samples(text)
    check(fams["seedd_up"][()] == 1, "seedd_up 1")
    start = fams["seedd_start_time_seconds"][()]
    check(abs(start - time.time()) < 60, "start time is now-ish: %r" % start)
    check(fams["seedd_jobs"][(("state", "drive_prep"),)] == 1, "one job in drive_prep")
    files = {k[1][1]: v for k, v in fams["seedd_job_files"].items() if k[0] == ("job", "metrics")}
    check(files.get("verified") == 3 and files.get("skipped") == 1 and files.get("indexed") == 0,
          "files by state: %r" % files)
    drv = (("job", "metrics"), ("serial", 'DISK-1'))
    check(fams["seedd_drive_bytes"].get(drv) == 3 * MiB + 10,
          "drive bytes with an escaped serial: %r" % fams["seedd_drive_bytes"])
    check(fams["seedd_drive_capacity_bytes"].get(drv) == 64 * MiB, "drive capacity")
    check(fams["seedd_drive_copy_rate_bytes_per_second"].get(drv) == 0, "idle drive rate 0")
    left = fams["seedd_job_tracking_deadline_seconds"].get((("job", "metrics"),))
    check(left is not None and 3600 - 120 < left <= 3600 + 5,
          "seconds to the tracking deadline: %r" % left)


def test_symlink(d, path):
    victim = os.path.join(d.tmp, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    os.chmod(victim, 0o600)
    os.unlink(path)
    os.symlink(victim, path + ".tmp")
    d.start()
    deadline = time.time() + 10
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.05)
    check(open(victim).read() == "precious\n", "the planted symlink was followed")
    check(stat.S_IMODE(os.stat(victim).st_mode) == 0o600, "victim's mode changed")
    st = os.lstat(path)
    check(stat.S_ISREG(st.st_mode), "metrics file is a regular file")
    check(stat.S_IMODE(st.st_mode) == 0o644, "metrics file mode is %o under umask 0077, want 644"
          % stat.S_IMODE(st.st_mode))
    check(not os.path.lexists(path + ".tmp"), "the temp name is gone after the rename")
    check("seedd_up 1" in open(path).read(), "metrics written after the planted link")


def main():
    d = Daemon()
    path = os.path.join(d.tmp, "metrics.prom")
    with open(d.config, "w") as f:
        f.write("[Daemon]\nMetricsFile=%s\n[Drives]\nRequireNTFS=no\nRequireBitLocker=no\n" % path)
    staging = os.path.join(d.tmp, "staging")
    os.makedirs(staging)
    for name, size in (("a.bin", 2 * MiB), ("b.bin", MiB), ("c.txt", 10)):
        with open(os.path.join(staging, name), "wb") as f:
            f.write(os.urandom(size))
    os.mkfifo(os.path.join(staging, "fifo"))
    drive = os.path.join(d.tmp, "drive")
    os.mkdir(drive)
    d.start()
    try:
        d.ctl_json("job", "create", "metrics", "--staging", staging)
        prepcheck.wait_phase(d, "metrics", "indexed")
        d.ctl_json("drive", "add", "metrics", drive, "--serial", 'DISK-1',
                   "--capacity", str(64 * MiB))
        d.ctl_json("job", "prepare", "metrics")
        prepcheck.wait_phase(d, "metrics", "awaiting-azure")
        d.stop()
        # The Azure job as stage-azure records it, an hour before the deadline.
        now = int(time.time())
        db = sqlite3.connect(os.path.join(d.state, "seedd.db"))
        db.execute("UPDATE jobs SET ship_deadline = ?, azure_created = ? WHERE name = 'metrics'",
                   (now + 3600, now))
        db.commit()
        db.close()
        d.start()
        test_content(d, path, staging, now)
        d.stop()
        os.umask(0o077)
        test_symlink(d, path)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    shutil.rmtree(d.tmp, ignore_errors=True)
    print("ok: metrics pass promtool and the OpenMetrics parser; temp symlink not followed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
