#!/usr/bin/env python3
"""Test of the simulated datacenter (datacenter.py): drive directories with
hand-written DriveManifest.xml files are imported into Azurite when a job
reaches DataCopy (DataBox) or on POST /jobs/{name}/import (ImportExport);
checks the blobs (length, Content-MD5), the DriveLog error and verbose logs,
copyProgress/driveList, and each import fault (drop, corrupt, rename).
Azurite comes from scripts/services.sh (AZURITE_*) or is started privately
(tests/integration/azurite.py).  Exit 0 = pass, 77 = Azurite missing.
Leaves no process behind.
"""

import sys

sys.dont_write_bytecode = True

import base64  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402
from xml.sax.saxutils import escape  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import azurite  # noqa: E402
import blobstore  # noqa: E402
import datacenter  # noqa: E402
import test_sim as ts  # noqa: E402

BLOCK = 65536
FAILS = []
CHECKS = [0]
T0 = time.time()
GRAMMAR = ["BlobPath", "FilePath", "Snapshot", "Length", "LastModified",
    "ImportDisposition", "BlockList", "PageRangeList", "Metadata",
    "Properties"]


def check(cond, what):
    CHECKS[0] += 1
    if not cond:
        FAILS.append(what)
        print("not ok - %s" % what, flush=True)


def md5hex(data):
    return hashlib.md5(data).hexdigest().upper()


# -- drives -------------------------------------------------------------------

def props_file(root, job, rel, data, bad_hash=False):
    """A properties file for rel (README §5: <Properties> with a Base64
    Content-MD5) and its PropertiesPath element."""
    text = ('<?xml version="1.0" encoding="UTF-8"?>\n<Properties>\n'
        '  <Content-Type>application/x-test</Content-Type>\n'
        '  <Content-MD5>%s</Content-MD5>\n</Properties>\n' %
        blobstore.b64md5(data)).encode()
    rp = os.path.join(job, "props", rel + ".properties")
    path = os.path.join(root, rp)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(text)
    h = md5hex(b"other") if bad_hash else md5hex(text)
    return '        <PropertiesPath Hash="%s">\\%s</PropertiesPath>\n' % (
        h, escape(rp.replace("/", "\\")))


def make_drive(root, serial, job, container, files, absent=(), bad_block=None,
    drive_id=None, props=(), bad_props=()):
    """Write files under root/<job>/ and a DriveManifest.xml in the format
    of drive-format README §1 (blocks of BLOCK bytes, "MD5/<b64>"
    ids).  absent: listed in the manifest, not written; bad_block: (rel,
    index) whose Hash is wrong; props: files given a properties file
    (PropertiesPath after the BlockList), bad_props: ... with a wrong
    Hash.  Returns the manifest's MD5 (hex)."""
    blobs = []
    for rel, data in files.items():
        pp = props_file(root, job, rel, data, rel in bad_props) \
            if rel in props or rel in bad_props else ""
        if rel not in absent:
            path = os.path.join(root, job, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        blocks = []
        for i, off in enumerate(range(0, len(data), BLOCK)):
            chunk = data[off:off + BLOCK]
            digest = hashlib.md5(chunk).digest()
            hexhash = digest.hex().upper()
            if bad_block == (rel, i):
                hexhash = md5hex(b"not this block")
            blocks.append('          <Block Offset="%d" Length="%d" '
                'Id="MD5/%s" Hash="%s"/>' % (off, len(chunk),
                base64.b64encode(digest).decode(), hexhash))
        blobs.append("""      <Blob>
        <BlobPath>%s/%s</BlobPath>
        <FilePath>\\%s\\%s</FilePath>
        <Length>%d</Length>
        <ImportDisposition>rename</ImportDisposition>
        <BlockList>
%s
        </BlockList>
%s      </Blob>""" % (container, escape(rel), job,
            escape(rel.replace("/", "\\")), len(data), "\n".join(blocks), pp))
    text = """<?xml version="1.0" encoding="UTF-8"?>
<DriveManifest Version="2014-11-01">
  <Drive>
    <DriveId>%s</DriveId>
    <ClientCreator>test_datacenter</ClientCreator>
    <BlobList>
%s
    </BlobList>
  </Drive>
</DriveManifest>
""" % (drive_id or serial, "\n".join(blobs))
    os.makedirs(root, exist_ok=True)
    data = text.encode()
    with open(os.path.join(root, "DriveManifest.xml"), "wb") as f:
        f.write(data)
    return md5hex(data)


# -- simulator with the blob options ----------------------------------------

class DcSim(ts.Sim):
    def __init__(self, state, az):
        args = [sys.executable, os.path.join(HERE, "azuresim.py"), "--port",
            "0", "--control-port", "0", "--state-file", state,
            "--blob-endpoint", az["url"], "--blob-account", az["account"],
            "--blob-key", az["key"], "--blob-ca", az["ca"]]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
            text=True)
        info = json.loads(self.proc.stdout.readline())
        self.url, self.control = info["url"], info["control"]


def manifest_ids(data):
    return [("MD5/" + base64.b64encode(hashlib.md5(data[o:o + BLOCK])
        .digest()).decode(), len(data[o:o + BLOCK]))
        for o in range(0, len(data), BLOCK)]


def log_doc(blob, url):
    """Fetch and parse a DriveLog; checks the grammar's shape."""
    root = ET.fromstring(blob.get_url(url))
    kids = [c.tag for c in root]
    check(root.tag == "DriveLog" and root.get("Version") == "2014-11-01",
        "log: DriveLog Version=2014-11-01")
    check(kids[0] == "DriveId" and kids[-1] == "Status" and
        set(kids[1:-1]) <= {"Blob"}, "log: DriveId, Blob*, Status")
    for b in root.findall("Blob"):
        tags = [c.tag for c in b]
        order = [GRAMMAR.index(t) if t in GRAMMAR else -1 for t in tags]
        check(-1 not in order and order == sorted(order) and
            tags[:2] == ["BlobPath", "FilePath"] and b.get("Status"),
            "log: Blob children in grammar order: %s" % tags)
    return root


def by_file(root):
    return {b.findtext("FilePath"): b for b in root.findall("Blob")}


# -- DataBox ------------------------------------------------------------------

def t_databox(api, blob, tmp, tag):
    name = "dc-db-" + tag
    cont = "dcdb-" + tag
    path = ts.job_path(name)
    d1 = {"a/one.bin": os.urandom(4 * BLOCK - 1000),
        "b/two.txt": b"two\n", "empty.dat": b"",
        "drop.bin": os.urandom(1000), "corrupt.bin": os.urandom(BLOCK + 5),
        "rename.txt": b"ours\n", "bad.bin": os.urandom(2 * BLOCK + 7),
        "missing.bin": os.urandom(300), "zeros.bin": bytes(2 * BLOCK)}
    dirs = {s: os.path.join(tmp, name, s) for s in ("D1", "D2", "D3")}
    hashes = {"D1": make_drive(dirs["D1"], "D1", name, cont, d1,
        absent=("missing.bin",), bad_block=("bad.bin", 1),
        props=("a/one.bin", "b/two.txt")),
        "D2": "0" * 32,
        "D3": make_drive(dirs["D3"], "D3", name, cont, {"x": b"x"},
        drive_id="SOMEONE-ELSE"), "D4": ts.HASH}
    make_drive(dirs["D2"], "D2", name, cont, {"y": b"y"})
    body = ts.job_body(["D1", "D2", "D3", "D4"])
    for s, h in hashes.items():
        body["properties"]["details"]["importDiskDetailsCollection"][s][
            "manifestHash"] = h
    _, g = ts.create(api, name, body)
    check(g.status == 200, "databox: job created")
    r = api.arm("POST", path + "/markDevicesShipped",
        {"deliverToDcPackageDetails": {"carrierName": "FedEx",
        "trackingId": "TRK-" + tag}})
    check(r.status == 204, "databox: markDevicesShipped")

    st, out = api.ctl("POST", "/jobs/%s/drives" % name, {"NOPE": tmp})
    check(st == 400, "drives: unknown serial -> 400")
    st, out = api.ctl("POST", "/jobs/%s/drives" % name,
        {"D1": os.path.join(tmp, "nonexistent")})
    check(st == 400, "drives: not a directory -> 400")
    st, out = api.ctl("POST", "/jobs/%s/drives" % name, dirs)
    check(st == 200 and out["drives"]["D1"] == dirs["D1"], "drives: told")
    st, _ = api.ctl("POST", "/jobs/%s/import-faults" % name, {"lose": []})
    check(st == 400, "import-faults: unknown kind -> 400")
    faults = {"drop": ["drop.bin", "nothere.bin"],
        "corrupt": ["\\%s\\corrupt.bin" % name],
        "rename": ["%s/rename.txt" % cont]}
    st, out = api.ctl("POST", "/jobs/%s/import-faults" % name, faults)
    check(st == 200 and out["faults"] == faults, "import-faults: set")

    st, out = api.ctl("POST", "/jobs/%s/advance" % name, {})
    check(st == 200 and out["status"] == "AtAzureDC", "advance AtAzureDC")
    try:
        listed = blob.list(cont)
    except blobstore.BlobError as e:
        listed = [] if e.status == 404 else None
    check(listed == [], "AtAzureDC: nothing imported yet")
    t0 = time.time()
    st, out = api.ctl("POST", "/jobs/%s/advance" % name, {})
    check(st == 200 and out["status"] == "DataCopy", "advance DataCopy "
        "(import took %.1f s)" % (time.time() - t0))

    j = api.arm("GET", path + "?$expand=details").json()
    check(ts.db_errors(j) == [], "DataCopy: job validates against the spec")
    det = j["properties"]["details"]
    cp = {c["serialNumber"]: c for c in det["copyProgress"]}
    ok = ("a/one.bin", "b/two.txt", "empty.dat", "rename.txt", "zeros.bin")
    c1 = cp["D1"]
    check(c1["copyStatus"] == "CompletedWithErrors" and
        c1["totalFilesToProcess"] == 9 and c1["filesProcessed"] == 5 and
        c1["filesErroredOut"] == 4 and c1["totalBytesToProcess"] ==
        sum(map(len, d1.values())) and c1["bytesProcessed"] ==
        sum(len(d1[k]) for k in ok), "D1 copyProgress: %s" % json.dumps(c1))
    check(cp["D2"]["copyStatus"] == "MetadataFilesModifiedOrRemoved" and
        cp["D2"]["error"]["code"] == "ManifestCorrupted",
        "D2: manifest hash mismatch -> ManifestCorrupted")
    check(cp["D3"]["copyStatus"] == "MetadataFilesModifiedOrRemoved" and
        cp["D3"]["error"]["code"] == "ManifestDriveIdMismatch",
        "D3: DriveId mismatch -> ManifestDriveIdMismatch")
    check(cp["D4"]["copyStatus"] == "InProgress",
        "D4 (not told): manual behaviour, InProgress")
    links = {c["serialNumber"]: c for c in det["copyLogDetails"]}
    check(all(links[s]["errorLogLink"].startswith(blob.endpoint +
        "/waimportexport/") for s in ("D1", "D2", "D3")),
        "copyLogDetails: error logs in Azurite's waimportexport")
    check(re.search(r"/%s_D1_\d{8}-\d{6}-\d{3}_verbose\.xml$" % name,
        links["D1"]["verboseLogLink"]) is not None,
        "verbose log named <job>_<serial>_<stamp>_verbose.xml")

    t_databox_blobs(blob, cont, d1)
    t_databox_logs(blob, links, name, cont)

    st, out = api.ctl("GET", "/jobs/%s/import" % name)
    check(st == 200 and out["unmatchedFaults"] == [{"kind": "drop",
        "path": "nothere.bin"}], "import view: unmatched fault reported")
    check(len(out["drives"]["D1"]["faultsApplied"]) == 3,
        "import view: three faults applied on D1")
    st, out = api.ctl("POST", "/jobs/%s/import" % name)
    check(st == 200 and out["imported"] == [], "import again: nothing new")
    for _ in range(3):
        st, out = api.ctl("POST", "/jobs/%s/advance" % name, {})
    check(out["status"] == "CompletedWithErrors", "databox: final status "
        "CompletedWithErrors (%s)" % out["status"])
    j = api.arm("GET", path + "?$expand=details").json()
    cp = {c["serialNumber"]: c for c in j["properties"]["details"]
        ["copyProgress"]}
    check(cp["D1"]["copyStatus"] == "CompletedWithErrors" and
        cp["D4"]["copyStatus"] == "Completed", "final: D1 kept its result, "
        "D4 completed by hand")
    check(len(blob.list(cont)) == 6, "no second import on the way out")


def t_databox_blobs(blob, cont, d1):
    got = {b["name"]: b for b in blob.list(cont)}
    check(sorted(got) == sorted(["a/one.bin", "b/two.txt", "empty.dat",
        "rename.txt", "rename (2).txt", "zeros.bin"]),
        "blobs: imported ones only: %s" % sorted(got))
    for rel in ("a/one.bin", "b/two.txt", "empty.dat", "zeros.bin"):
        b = got.get(rel, {})
        want = blobstore.b64md5(d1[rel]) if rel in ("a/one.bin",
            "b/two.txt") else None
        check(b.get("length") == len(d1[rel]) and b.get("contentMD5") ==
            want, "blob %s: length, Content-MD5 only from a properties "
            "file: %r" % (rel, b.get("contentMD5")))
        check(blob.block_list(cont, rel) == manifest_ids(d1[rel]),
            "blob %s: committed block list = the manifest's ids" % rel)
    check(got["a/one.bin"].get("contentType") == "application/x-test",
        "properties file: Content-Type applied")
    check(blob.get(cont, "a/one.bin") == d1["a/one.bin"],
        "blob a/one.bin: content (4 blocks)")
    check("corrupt.bin" not in got, "corrupt fault: a damaged drive block "
        "is not committed")
    check(blob.get(cont, "rename.txt") == datacenter.PRE_EXISTING and
        blob.get(cont, "rename (2).txt") == d1["rename.txt"],
        "rename fault: ours stored as 'rename (2).txt'")


def t_databox_logs(blob, links, name, cont):
    fp = "\\%s\\%%s" % name
    v = log_doc(blob, links["D1"]["verboseLogLink"])
    e = log_doc(blob, links["D1"]["errorLogLink"])
    check(v.findtext("DriveId") == "D1" and v.findtext("Status") ==
        "CompletedWithErrors" and e.findtext("Status") ==
        "CompletedWithErrors", "D1 logs: DriveId, Status CompletedWithErrors")
    vb = by_file(v)
    check(len(vb) == 9, "verbose log: every blob")
    one = vb[fp % "a\\one.bin"]
    blocks = one.findall("BlockList/Block")
    check(one.get("Status") == "Completed" and len(blocks) == 4 and
        all(b.get("Status") == "Completed" and b.get("Id").startswith("MD5/")
        for b in blocks) and one.find("ImportDisposition").get("Status") ==
        "Created", "verbose: a/one.bin Completed, 4 blocks, Created")
    cor = vb[fp % "corrupt.bin"]
    check(cor.get("Status") == "CompletedWithErrors" and
        [x.get("Status") for x in cor.findall("BlockList/Block")] ==
        ["Corrupted", "Uncommitted"], "verbose: corrupt fault -> first block "
        "Corrupted (the service's MD5 check)")
    pr = one.find("Properties")
    check(pr is not None and pr.get("Status") == "Completed" and
        pr.find("Path") is not None and len(pr.find("Path").get("Hash")) ==
        32, "verbose: Properties Completed with its Path and Hash")
    check(vb[fp % "empty.dat"].find("Properties") is None,
        "verbose: no Properties for a blob without a properties file")
    ren = vb[fp % "rename.txt"]
    disp = ren.find("ImportDisposition")
    check(ren.findtext("BlobPath") == cont + "/rename (2).txt" and
        disp.get("Status") == "Renamed" and disp.text == "rename",
        "verbose: rename -> new BlobPath, ImportDisposition Renamed")
    for rel in ("drop.bin", "missing.bin"):
        b = vb[fp % rel]
        check(b.get("Status") == "FileNotFound" and
            b.find("ImportDisposition").get("Status") == "Cancelled" and
            all(x.get("Status") == "Cancelled" for x in
            b.findall("BlockList/Block")), "verbose: %s FileNotFound" % rel)
    bad = vb[fp % "bad.bin"]
    check(bad.get("Status") == "CompletedWithErrors" and
        [x.get("Status") for x in bad.findall("BlockList/Block")] ==
        ["Uncommitted", "Corrupted", "Uncommitted"],
        "verbose: bad.bin block 1 Corrupted, blob not committed")
    eb = by_file(e)
    check(sorted(eb) == sorted(fp % r for r in ("drop.bin", "missing.bin",
        "bad.bin", "rename.txt", "corrupt.bin")),
        "error log: failed + renamed blobs only")
    check([x.get("Status") for x in eb[fp % "bad.bin"].findall(
        "BlockList/Block")] == ["Corrupted"],
        "error log: only the failed block")
    for s, code in (("D2", "ManifestCorrupted"),
        ("D3", "ManifestDriveIdMismatch")):
        doc = log_doc(blob, links[s]["errorLogLink"])
        check(doc.findtext("Status") == code and not doc.findall("Blob"),
            "%s error log: Status %s, no blobs" % (s, code))


# -- ImportExport ----------------------------------------------------------

def t_importexport(api, blob, tmp, tag):
    name = "dc-ie-" + tag
    cont = "dcie-" + tag
    prov = "Microsoft.ImportExport"
    path = ts.job_path(name, provider=prov)
    files = {"one.bin": os.urandom(BLOCK + 1), "two.txt": b"two\n"}
    drive = os.path.join(tmp, name, "E1")
    mhash = make_drive(drive, "E1", name, cont, files)
    body = {"location": "eastus", "properties": {
        "storageAccountId": "/subscriptions/%s/resourceGroups/rg1/providers/"
        "Microsoft.Storage/storageAccounts/acct1" % ts.SUB,
        "jobType": "Import", "diagnosticsPath": "waimportexport",
        "logLevel": "Verbose", "backupDriveManifest": False,
        "returnAddress": {"recipientName": "Ops", "streetAddress1": "1 Main",
        "city": "Redmond", "stateOrProvince": "WA", "postalCode": "98052",
        "countryOrRegion": "USA", "phone": "4250000000",
        "email": "ops@example.com"},
        "driveList": [{"driveId": "E1", "bitLockerKey": ts.BITLOCKER,
        "manifestFile": "\\DriveManifest.xml", "manifestHash": mhash,
        "driveHeaderHash": ""}]}}
    r = api.arm("PUT", path, body, api="2021-01-01")
    check(r.status == 201, "IE: job created (%d %s)" % (r.status,
        r.body[:300]))
    r = api.arm("PATCH", path, {"properties": {"deliveryPackage": {
        "carrierName": "FedEx", "trackingNumber": "IE-" + tag,
        "driveCount": 1, "shipDate": "2025-01-01"}}}, api="2021-01-01")
    r = api.arm("PATCH", path, {"properties": {"state": "Shipping"}},
        api="2021-01-01")
    check(r.status == 200, "IE: Shipping")
    q = "?kind=importexport"
    st, _ = api.ctl("POST", "/jobs/%s/drives%s" % (name, q), {"E1": drive})
    check(st == 200, "IE: drive told")
    st, out = api.ctl("POST", "/jobs/%s/advance%s" % (name, q), {})
    check(out["status"] == "Received", "IE: Received")
    st, out = api.ctl("POST", "/jobs/%s/import%s" % (name, q))
    check(st == 200 and out["imported"] == ["E1"] and
        out["drives"]["E1"]["status"] == "Completed",
        "IE: explicit import -> Completed")
    g = api.arm("GET", path, api="2021-01-01").json()
    drv = g["properties"]["driveList"][0]
    check(drv["state"] == "Completed" and drv["copyStatus"] == "Completed"
        and drv["percentComplete"] == 100 and drv["bytesSucceeded"] ==
        sum(map(len, files.values())), "IE driveList: %s" % json.dumps(drv))
    check(ts.ie_errors(g) == [], "IE: job validates against the spec")
    v = log_doc(blob, drv["verboseLogUri"])
    e = log_doc(blob, drv["errorLogUri"])
    check(len(v.findall("Blob")) == 2 and not e.findall("Blob") and
        e.findtext("Status") == "Completed", "IE logs: 2 blobs, no errors")
    got = {b["name"]: b for b in blob.list(cont)}
    check(all(got[k]["contentMD5"] is None and got[k]["length"] == len(d)
        and blob.block_list(cont, k) == manifest_ids(d)
        for k, d in files.items()),
        "IE blobs: length + block list, no Content-MD5 (no properties file)")
    for want in ("Transferring", "Packaging", "Completed"):
        st, out = api.ctl("POST", "/jobs/%s/advance%s" % (name, q), {})
        check(out["status"] == want, "IE: advance -> %s" % want)
    check(len(blob.list(cont)) == 2, "IE: imported once")


# -- import options and the newer faults ------------------------------------

def run_job(api, blob, tmp, name, cont, drives, opts, faults=None):
    """A DataBox job over drives {serial: (files, props)} imported with
    import-options opts; returns (copyProgress, copyLogDetails) by serial."""
    dirs = {s: os.path.join(tmp, name, s) for s in drives}
    body = ts.job_body(list(drives))
    for s, (files, props) in drives.items():
        body["properties"]["details"]["importDiskDetailsCollection"][s][
            "manifestHash"] = make_drive(dirs[s], s, name, cont, files,
            props=props)
    ts.create(api, name, body)
    api.arm("POST", ts.job_path(name) + "/markDevicesShipped",
        {"deliverToDcPackageDetails": {"carrierName": "FedEx",
        "trackingId": "TRK-" + name}})
    api.ctl("POST", "/jobs/%s/drives" % name, dirs)
    st, out = api.ctl("POST", "/jobs/%s/import-options" % name, opts)
    check(st == 200 and all(out["options"][k] == v for k, v in
        opts.items()), "import-options set: %r" % out)
    if faults:
        api.ctl("POST", "/jobs/%s/import-faults" % name, faults)
    for _ in range(2):
        api.ctl("POST", "/jobs/%s/advance" % name, {})
    det = api.arm("GET", ts.job_path(name) + "?$expand=details").json()[
        "properties"]["details"]
    return ({c["serialNumber"]: c for c in det["copyProgress"]},
        {c["serialNumber"]: c for c in det["copyLogDetails"]})


def t_options(api, blob, tmp, tag):
    st, _ = api.ctl("POST", "/jobs/dc-db-%s/import-options" % tag,
        {"contentMd5": "sometimes"})
    check(st == 400, "import-options: a bad value -> 400")
    name, cont = "dc-opt-" + tag, "dcopt-" + tag
    f = {n: os.urandom(2 * BLOCK + 11) for n in ("len.bin", "fail.bin",
        "ids.bin", "silent.bin", "props.bin")}
    cp, links = run_job(api, blob, tmp, name, cont, {"O1": (f, ("props.bin",
        "fail.bin")), "O2": ({"x": b"x"}, ())}, {"contentMd5": "always",
        "blockIdsInLog": False, "driveFailure": {"O2": "BitLockerKeyInvalid"}},
        {"length": ["len.bin"], "failed": ["fail.bin"], "blocklist":
        ["ids.bin"], "corrupt-silent": ["silent.bin"]})
    got = {b["name"]: b for b in blob.list(cont)}
    check(all(got[k]["contentMD5"] is not None for k in got),
        "contentMd5=always: every blob has a Content-MD5")
    check(got["len.bin"]["length"] == 2 * BLOCK, "length fault: the last "
        "block is not committed")
    check(got["silent.bin"]["contentMD5"] != blobstore.b64md5(f["silent.bin"])
        and got["silent.bin"]["length"] == len(f["silent.bin"]),
        "corrupt-silent + always: Content-MD5 of the stored bytes")
    ids = blob.block_list(cont, "ids.bin")
    check(ids != manifest_ids(f["ids.bin"]) and [n for _, n in ids] ==
        [n for _, n in manifest_ids(f["ids.bin"])] and blob.get(cont,
        "ids.bin") == f["ids.bin"], "blocklist fault: same bytes, other ids")
    v = by_file(log_doc(blob, links["O1"]["verboseLogLink"]))
    fp = "\\%s\\%%s" % name
    check(v[fp % "fail.bin"].get("Status") == "BlobRequestFailed" and
        v[fp % "len.bin"].get("Status") == "Completed" and
        v[fp % "silent.bin"].get("Status") == "Completed",
        "failed fault logged BlobRequestFailed; length, silent Completed")
    check(all(b.get("Id") is None for x in v.values() for b in
        x.findall("BlockList/Block")), "blockIdsInLog=false: no Id")
    check(cp["O2"]["copyStatus"] == "MetadataFilesModifiedOrRemoved" and
        cp["O2"]["error"]["code"] == "BitLockerKeyInvalid", "driveFailure: "
        "%r" % cp["O2"])
    e = log_doc(blob, links["O2"]["errorLogLink"])
    check(e.findtext("Status") == "BitLockerKeyInvalid" and
        not e.findall("Blob"), "driveFailure: the log names the status only")
    check(not any(k == "x" for k in got), "driveFailure: nothing imported")

    name, cont = "dc-opt2-" + tag, "dcopt2-" + tag
    cp, links = run_job(api, blob, tmp, name, cont, {"P1": ({"p.bin":
        b"props ignored"}, ("p.bin",))}, {"contentMd5": "ignore-properties",
        "verboseLog": "never"})
    got = {b["name"]: b for b in blob.list(cont)}
    check(got["p.bin"]["contentMD5"] is None, "ignore-properties: no "
        "Content-MD5 despite the properties file")
    check(links["P1"].get("verboseLogLink") is None and
        links["P1"]["errorLogLink"], "verboseLog=never: no verbose log link")


def t_manual(tmp):
    sim = ts.Sim(os.path.join(tmp, "manual.json"))
    try:
        api = ts.Api(sim)
        api.ctl("POST", "/clients", {"tenant": ts.TENANT, "clientId": ts.APP,
            "secret": ts.SECRET})
        api.login()
        ts.create(api, "dc-manual")
        st, out = api.ctl("POST", "/jobs/dc-manual/import")
        check(st == 409 and "--blob-endpoint" in out["error"],
            "no --blob-endpoint: import -> 409")
    finally:
        sim.stop()


def t_units():
    check(datacenter.renamed("a.b/Seattle.jpg", 2) == "a.b/Seattle (2).jpg"
        and datacenter.renamed("dir/noext", 3) == "dir/noext (3)" and
        datacenter.renamed(".hidden", 2) == ".hidden (2)",
        "rename rule of README §1.5")


def main():
    try:
        az = azurite.info()
    except azurite.Unavailable as e:
        print("SKIP: %s" % e)
        return 77
    tmp = tempfile.mkdtemp(prefix="datacenter-test-")
    tag = uuid.uuid4().hex[:8]
    sim = DcSim(os.path.join(tmp, "state.json"), az)
    blob = blobstore.BlobClient(az["url"], az["account"], az["key"], az["ca"])
    try:
        api = ts.Api(sim)
        api.ctl("POST", "/clients", {"tenant": ts.TENANT, "clientId": ts.APP,
            "secret": ts.SECRET})
        api.login()
        t_units()
        t_databox(api, blob, tmp, tag)
        t_importexport(api, blob, tmp, tag)
        t_options(api, blob, tmp, tag)
        t_manual(tmp)
    finally:
        code = sim.stop()
        blob.close()
        azurite.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    check(code == 0, "simulator: exit 0 on SIGTERM")
    took = time.time() - T0
    check(took < 60, "finished in %.1f s" % took)
    print("# %d checks, %d failed, %.1f s" % (CHECKS[0], len(FAILS), took))
    return 1 if FAILS else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    sys.exit(main())
