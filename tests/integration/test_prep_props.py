"""Properties files (drive-format README §1.2, §1.3, §5): after drive prep,
every blob's PropertiesPath names a file on the drive whose MD5 is its Hash
and whose Content-MD5 is the file's MD5 (prepcheck.verify_properties).
Files of equal content share one properties file; the directory holds one
file per distinct content and nothing else. Leftovers of an earlier,
crashed run (a half-written file, an empty one, one with other bytes) are
found and rewritten, and the prepared drive is still no foreign data to its
job (drive_check_foreign, through `drive add` on a fresh seedd). Last,
seedd is killed (-9) in the manifest pass of a job of 6000 files and
restarted: the drive ends with every properties file right."""
import base64
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check  # noqa: E402
import prepcheck  # noqa: E402

CONF = "[Drives]\nRequireNTFS=no\n"
JOB = "props"


def props_name(data):
    return hashlib.md5(data).hexdigest().upper() + ".xml"


def props_bytes(data):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Properties>\n'
            '    <Content-MD5>%s</Content-MD5>\n</Properties>\n'
            % base64.b64encode(hashlib.md5(data).digest()).decode()).encode()


def main():
    d = Daemon(CONF).start()
    staging = os.path.join(d.tmp, "staging")
    files = {"same-1.txt": b"same bytes\n", "dir/same-2.txt": b"same bytes\n", "empty": b""}
    for i in range(40):
        files["f/%02d.bin" % i] = os.urandom(1 + i * 997)
    for rel, data in files.items():
        p = os.path.join(staging, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    try:
        d.ctl_json("job", "create", JOB, "--staging", staging)
        prepcheck.wait_phase(d, JOB, "indexed")
        drive = os.path.join(d.tmp, "PROPS-A")
        os.mkdir(drive)
        d.ctl_json("drive", "add", JOB, drive, "--serial", "PROPS-A")

        # What a run killed while writing them leaves behind.
        pdir = os.path.join(drive, JOB, ".seedd-tmp", "properties")
        os.makedirs(pdir)
        good = props_bytes(files["f/03.bin"])
        damaged = {
            props_name(files["f/03.bin"]): good[:len(good) // 2],
            props_name(files["f/04.bin"]): b"",
            props_name(files["empty"]): props_bytes(b"something else"),
        }
        for name, raw in damaged.items():
            with open(os.path.join(pdir, name), "wb") as f:
                f.write(raw)

        d.ctl_json("job", "prepare", JOB)
        job = prepcheck.wait_phase(d, JOB, "awaiting-azure", 120)
        prepcheck.verify_drives(staging, JOB, "seedd-import", files, job["drives"])

        for name in damaged:
            with open(os.path.join(pdir, name), "rb") as f:
                raw = f.read()
            check(raw != damaged[name] and raw.startswith(b"<?xml"),
                  "damaged %s rewritten: %r" % (name, raw[:60]))
        want = sorted({props_name(v) for v in files.values()})
        check(sorted(os.listdir(pdir)) == want,
              "one properties file per distinct content: %d files, %d contents" % (
                  len(os.listdir(pdir)), len(want)))
        _, blobs = prepcheck.manifest_blobs(os.path.join(drive, "DriveManifest.xml"))
        by_file = {b["FilePath"]: b["PropertiesPath"] for b in blobs}
        check(by_file["\\%s\\same-1.txt" % JOB] == by_file["\\%s\\dir\\same-2.txt" % JOB],
              "equal contents share a properties file")

        d.stop()
    finally:
        if d.alive():
            d.proc.kill()

    # A fresh seedd with a job of the same name takes the prepared drive back:
    # drive_check_foreign finds only the marker, NAME/ and the manifest at its root.
    d2 = Daemon(CONF).start()
    try:
        d2.ctl_json("job", "create", JOB, "--staging", staging)
        prepcheck.wait_phase(d2, JOB, "indexed")
        p = d2.ctl("drive", "add", JOB, drive, "--serial", "PROPS-A")
        check(p.returncode == 0, "prepared drive not foreign to its job: %r" % p.stderr)
        d2.stop()
    finally:
        if d2.alive():
            d2.proc.kill()
    kill_in_manifest_pass()
    print("ok")


def kill_in_manifest_pass():
    d = Daemon(CONF).start()
    staging = os.path.join(d.tmp, "staging")
    files = {"s/%02d/%04d" % (i % 30, i): os.urandom(1 + (i * 131) % 3000) for i in range(6000)}
    for rel, data in files.items():
        p = os.path.join(staging, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    try:
        d.ctl_json("job", "create", "killed", "--staging", staging)
        prepcheck.wait_phase(d, "killed", "indexed")
        drive = os.path.join(d.tmp, "PROPS-K")
        os.mkdir(drive)
        d.ctl_json("drive", "add", "killed", drive, "--serial", "PROPS-K")
        d.ctl_json("job", "prepare", "killed")
        pdir = os.path.join(drive, "killed", ".seedd-tmp", "properties")
        deadline = time.time() + 120
        while time.time() < deadline:
            if os.path.isdir(pdir) and len(os.listdir(pdir)) > 0:
                d.kill9()
                break
            time.sleep(0.001)
        n = len(os.listdir(pdir))
        print("killed with %d of %d properties files written" % (n, len(files)))
        check(0 < n, "killed in the manifest pass")
        check(not os.path.exists(os.path.join(drive, "DriveManifest.xml")) or n == len(files),
              "no manifest before every properties file")
        d.start()
        job = prepcheck.wait_phase(d, "killed", "awaiting-azure", 120)
        prepcheck.verify_drives(staging, "killed", "seedd-import", files, job["drives"])
        check(len(os.listdir(pdir)) == len({hashlib.md5(v).digest() for v in files.values()}),
              "one properties file per distinct content after the restart")
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()


if __name__ == "__main__":
    main()
