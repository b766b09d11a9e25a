#!/usr/bin/env python3
"""A drive that refuses O_DIRECT, end to end: seedd runs with the nodirect.c
shim preloaded, which fails every pread/pwritev of an O_DIRECT fd on the
drive with EFAULT (opening with O_DIRECT still works, as FUSE allows).

  - drive A: the probe at drive add passes (the shim spares the probe file),
    so the refusal meets the copy: the failed write is redone buffered, the
    job goes on, every file is verified, the drive's row drops to buffered
    (direct_io 0) and the job log and the journal say so once, with the serial;
  - drive B: the probe's own O_DIRECT write and read fail, so the drive is
    recorded buffered from the start and nothing is logged later.

argv: the shim's path, meson's b_sanitize (a sanitizer runtime must come first
in the process, so LD_PRELOAD cannot be used then: skip).
"""
import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, skip  # noqa: E402
import prepcheck  # noqa: E402

MiB = 1 << 20
CONF = "[Drives]\nRequireNTFS=no\n"


def direct_io(d, serial):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state, "seedd.db"), uri=True)
    try:
        return db.execute("SELECT direct_io FROM drives WHERE serial = ?", (serial,)).fetchone()[0]
    finally:
        db.close()


def tree(root, files):
    for rel, data in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)


def prepare(d, job, serial, drive, files):
    staging = os.path.join(d.tmp, job)
    tree(staging, files)
    d.ctl_json("job", "create", job, "--staging", staging)
    prepcheck.wait_phase(d, job, "indexed")
    os.mkdir(drive)
    d.ctl_json("drive", "add", job, drive, "--serial", serial)
    added = direct_io(d, serial)
    d.ctl_json("job", "prepare", job)
    shown = prepcheck.wait_phase(d, job, "awaiting-azure", timeout=120)
    check(shown["verifiedFiles"] == len(files), "every file verified: %r" % shown)
    prepcheck.verify_drives(staging, job, "seedd-import", files, shown["drives"])
    notes = [e["text"] for e in d.ctl_json("job", "log", job) if "O_DIRECT" in e["text"]]
    return added, notes


def main():
    shim = sys.argv[1] if len(sys.argv) > 1 else ""
    sanitize = sys.argv[2] if len(sys.argv) > 2 else "none"
    if sanitize not in ("", "none"):
        skip("built with -Db_sanitize=%s: no LD_PRELOAD" % sanitize)
    if not os.path.exists(shim):
        skip("no nodirect shim at %r" % shim)
    d = Daemon(CONF)
    drive_a, drive_b = os.path.join(d.tmp, "drive-a"), os.path.join(d.tmp, "drive-b")
    d.extra_env = {"LD_PRELOAD": shim, "SEEDD_NODIRECT_DIR": drive_a,
                   "SEEDD_NODIRECT_PROBE_DIR": drive_b}
    d.start()
    files = {"big/a.bin": os.urandom(9 * MiB + 7), "big/b.bin": os.urandom(13 * MiB),
             "small.txt": b"small\n"}
    try:
        added, notes = prepare(d, "nodirect-a", "SEEDD-NODIRECT-A", drive_a, files)
        check(added == 3, "drive A probed as taking O_DIRECT: %r" % added)
        check(direct_io(d, "SEEDD-NODIRECT-A") == 0, "drive A recorded as buffered now")
        check(len(notes) == 1 and "SEEDD-NODIRECT-A" in notes[0] and "Bad address" in notes[0],
              "the job log says it once, with the serial: %r" % notes)
        lines = [ln for ln in d.read_log().splitlines() if "refuses O_DIRECT" in ln]
        check(len(lines) == 1 and "drive=SEEDD-NODIRECT-A" in lines[0],
              "the journal says it once, with the serial: %r" % lines)

        added, notes = prepare(d, "nodirect-b", "SEEDD-NODIRECT-B", drive_b, files)
        check(added == 0, "drive B probed as refusing O_DIRECT: %r" % added)
        check(notes == [], "nothing to say later about drive B: %r" % notes)
        check(any("drive=SEEDD-NODIRECT-B" in ln and "refuses O_DIRECT" in ln
                  for ln in d.read_log().splitlines()), "drive B's attach line says how")
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    print("ok")


if __name__ == "__main__":
    main()
