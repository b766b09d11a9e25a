"""Checks shared by the drive-prep tests: wait for a job, and prove the drives
hold every staged file exactly once, byte for byte, with a DriveManifest.xml
whose blobs, lengths and block MD5s match, and whose every blob names a
properties file (PropertiesPath, after the BlockList as the 2014-11-01
grammar puts it) that is on the drive, has the MD5 the Hash attribute says,
and carries the file's whole-file Content-MD5 (drive-format README §1.2,
§1.3, §5)."""
import base64
import hashlib
import os
import time
import xml.etree.ElementTree as ET

from harness import check, fail

BLOCK = 4 << 20


def wait_job(d, name, pred, what, timeout=60):
    deadline = time.time() + timeout
    job = None
    while time.time() < deadline:
        job = d.ctl_json("job", "show", name)
        if pred(job):
            return job
        if job["state"] == "failed" and "failed" not in what:
            fail("job %s failed while waiting for %s: %s" % (name, what, job["error"]))
        time.sleep(0.1)
    fail("job %s did not reach %s in %d s: %r\n%s" % (name, what, timeout, job, d.read_log()))


def wait_phase(d, name, phase, timeout=60):
    return wait_job(d, name, lambda j: j["phase"] == phase, "phase " + phase, timeout)


def wait_state(d, name, state, timeout=60):
    return wait_job(d, name, lambda j: j["state"] == state, "state " + state, timeout)


def manifest_blobs(path):
    root = ET.parse(path).getroot()
    check(root.tag == "DriveManifest" and root.get("Version") == "2014-11-01",
          "manifest root element and version")
    drive = root.find("Drive")
    blobs = []
    for bl in drive.findall("BlobList"):
        for b in bl.findall("Blob"):
            blocks = [(int(x.get("Offset")), int(x.get("Length")), x.get("Id"), x.get("Hash"))
                      for x in b.find("BlockList").findall("Block")]
            pp = b.find("PropertiesPath")
            blobs.append({"BlobPath": b.findtext("BlobPath"), "FilePath": b.findtext("FilePath"),
                          "Length": int(b.findtext("Length")), "blocks": blocks,
                          "order": [c.tag for c in b],
                          "PropertiesPath": None if pp is None else pp.text,
                          "PropertiesHash": None if pp is None else pp.get("Hash")})
    return drive.findtext("DriveId"), blobs


BLOB_ORDER = ["BlobPath", "FilePath", "Length", "ImportDisposition", "BlockList", "PropertiesPath"]
PROPS_HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n<Properties>\n'


def verify_properties(drive_path, job, b, data):
    """The blob's PropertiesPath: on the drive, its Hash, its Content-MD5 = the file's MD5."""
    rel = b["FilePath"]
    check(b["order"] == BLOB_ORDER, "element order of %s: %r" % (rel, b["order"]))
    path, want = b["PropertiesPath"], b["PropertiesHash"]
    check(path is not None and path.startswith("\\" + job + "\\"),
          "PropertiesPath of %s under the job's directory: %r" % (rel, path))
    local = os.path.join(drive_path, *path[1:].split("\\"))
    check(os.path.isfile(local), "properties file of %s on the drive: %s" % (rel, local))
    raw = open(local, "rb").read()
    check(want == hashlib.md5(raw).hexdigest().upper(),
          "PropertiesPath Hash of %s is the MD5 of %s" % (rel, path))
    check(raw.startswith(PROPS_HEAD), "properties file %s has the sample's head" % path)
    root = ET.fromstring(raw)
    check(root.tag == "Properties" and [c.tag for c in root] == ["Content-MD5"],
          "properties file %s: <Properties> with <Content-MD5> only" % path)
    check(root.findtext("Content-MD5") == base64.b64encode(hashlib.md5(data).digest()).decode(),
          "Content-MD5 in %s is the MD5 of %s" % (path, rel))


def verify_drives(staging, job, container, files, drives):
    """files: {rel path: bytes}; drives: the job's drive objects."""
    seen = {}
    for dr in drives:
        mpath = os.path.join(dr["path"], "DriveManifest.xml")
        if dr["files"] == 0:
            continue
        check(os.path.exists(mpath), "manifest on drive %s" % dr["serial"])
        raw = open(mpath, "rb").read()
        check(dr["manifestHash"] == hashlib.md5(raw).hexdigest().upper(),
              "drive %s records the manifest's MD5" % dr["serial"])
        drive_id, blobs = manifest_blobs(mpath)
        check(drive_id == dr["serial"], "DriveId is the serial")
        check(len(blobs) == dr["files"], "drive %s: %d blobs for %d files" % (
            dr["serial"], len(blobs), dr["files"]))
        for b in blobs:
            check(b["FilePath"].startswith("\\" + job + "\\"), "FilePath form: %r" % b["FilePath"])
            rel = b["FilePath"][len(job) + 2:].replace("\\", "/")
            check(rel in files, "manifest names a staged file: %r" % rel)
            check(rel not in seen, "%s on two drives or twice in a manifest" % rel)
            seen[rel] = dr["serial"]
            check(b["BlobPath"] == "%s/%s/%s" % (container, job, rel), "BlobPath of %s" % rel)
            data = files[rel]
            check(b["Length"] == len(data), "Length of %s" % rel)
            on_drive = open(os.path.join(dr["path"], job, rel), "rb").read()
            check(on_drive == data, "%s byte-identical on drive %s" % (rel, dr["serial"]))
            verify_properties(dr["path"], job, b, data)
            expect = [(o, min(BLOCK, len(data) - o)) for o in range(0, len(data), BLOCK)]
            check([(o, n) for o, n, _, _ in b["blocks"]] == expect, "blocks of %s" % rel)
            for o, n, bid, h in b["blocks"]:
                md5 = hashlib.md5(data[o:o + n]).digest()
                check(h == md5.hex().upper(), "block hash of %s at %d" % (rel, o))
                check(bid == "MD5/" + base64.b64encode(md5).decode(), "block id of %s" % rel)
    missing = set(files) - set(seen)
    check(not missing, "files on no drive: %r" % sorted(missing)[:5])
