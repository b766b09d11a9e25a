"""The simulated Azure datacenter: what happens to the shipped drives once
a job reaches the DC.  The API front ends (databox.py, importexport.py)
only call the three hooks below and never look inside a drive.

Hooks, each returning per-serial progress updates to merge ({} = none):
  received(kind, job, drives)      all drives arrived (AtAzureDC/Received)
  copy_started(kind, job, drives)  the job entered DataCopy/Transferring
  copy(kind, job, drives)          the job left the copy stage (the first
                                   status after it, whichever it is)
kind is "databox" | "importexport", job the simulator's job record, and
drives a list of dicts: serial, manifestFile, manifestHash,
storageAccountId.

ManualDataCenter (the default) copies nothing: copy results come from the
control API (POST /jobs/{name}/drive-status, or "disks"/"drives" of
POST /jobs/{name}/advance).  A drive nobody reported on finishes as fully
copied with whatever byte counts it had.

AzuriteDataCenter (azuresim.py --blob-endpoint URL --blob-account NAME
--blob-key KEY [--blob-ca FILE]) really imports the drives the tests told
it about (control: POST /jobs/{name}/drives {"SERIAL": "/dir", ...}) into
that one storage account, whatever account the job names.  The import
runs synchronously, under the store lock, in copy_started (or in copy when
the job skipped the copy stage, or on POST /jobs/{name}/import), once per
drive; drives nobody told it about keep the manual behaviour.  Per drive:

  * DriveManifest.xml (manifestFile, backslash form, from the drive root):
    MD5 (32 hex) or SHA-256 (64 hex) must equal manifestHash, else drive
    status ManifestCorrupted; DriveId must equal the serial, else
    ManifestDriveIdMismatch; also ManifestNotFound, ManifestNameInvalid,
    ManifestFormatInvalid.  Drive failures copy nothing.
  * each Blob: FilePath read from the drive, one Put Block per manifest
    Block (Id as in the manifest, else base64 of the 4-byte LE index),
    each block's MD5 checked against Hash (mismatch: block Corrupted, short
    file: FileUnexpectedEnd; the blob is then CompletedWithErrors and not
    committed), then Put Block List with x-ms-blob-content-md5 = MD5 of
    the bytes uploaded.  ImportDisposition rename (default): an existing
    blob makes us store "name (2).ext" (README §1.5, on the last path
    segment) and log Status="Renamed" with the new BlobPath; overwrite:
    Overwritten; no-overwrite: Skipped (nothing uploaded).  A missing file
    is FileNotFound with every block Cancelled.  PageRangeList: Failed
    (not simulated).
  * logs (DriveLog Version="2014-11-01", element order of the grammar):
    verbose = every blob and block; error = blobs that failed or were
    renamed/skipped, with only their failed blocks.  Both are always
    written, as block blobs "<job>_<serial>_<YYYYMMDD-HHMMSS-fff>_error.xml"
    and "_verbose.xml" in container "waimportexport" (ImportExport: the
    job's diagnosticsPath), and linked from copyLogDetails (DataBox) or
    driveList errorLogUri/verboseLogUri (ImportExport).
  * progress: DataBox copyStatus Completed | CompletedWithErrors |
    MetadataFilesModifiedOrRemoved (manifest failures, with error.code =
    the drive status) | StorageAccountNotAccessible (logs unwritable),
    bytes/files processed = blobs imported fine; ImportExport drive state
    Completed (drive status Completed) or CompletedMoreInfo, copyStatus =
    the drive status, percentComplete 100, bytesSucceeded.

Faults (POST /jobs/{name}/import-faults {"drop": [...], "corrupt": [...],
"rename": [...]}, applied by the next import).  A path names a blob by its
FilePath ("job/a/b.bin", "/" or "\\" separators, leading one optional), by
that path without its first segment ("a/b.bin", the staging path under
the job directory) or by its BlobPath ("container/name"):
  drop     the file is treated as absent: FileNotFound, nothing uploaded;
  corrupt  one byte of the first block is flipped before Put Block; the
           log still says Completed (silent corruption) and the blob's
           Content-MD5 is the MD5 of the corrupted bytes;
  rename   a blob with other content is put at BlobPath first, so the
           import renames (or skips, overwrites) ours.
"""

import base64
import datetime
import hashlib
import os
import struct
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

import blobstore

LOG_VERSION = "2014-11-01"
LOG_CONTAINER = "waimportexport"
ACTIONS = ("drives", "import-faults", "import")
FAULT_KINDS = ("drop", "corrupt", "rename")
DISPOSITIONS = ("rename", "no-overwrite", "overwrite")
PRE_EXISTING = b"A blob that was in the account before the import " \
    b"(simulated 'rename' fault).\n"


class ManualDataCenter:
    name = "manual"

    def received(self, kind, job, drives):
        return {}

    def copy_started(self, kind, job, drives):
        return {}

    def copy(self, kind, job, drives):
        return {}


class AzuriteDataCenter(ManualDataCenter):
    name = "azurite"

    def __init__(self, client):
        self.client = client

    def copy_started(self, kind, job, drives):
        return self.run(kind, job, drives)

    def copy(self, kind, job, drives):
        return self.run(kind, job, drives)

    def run(self, kind, job, drives):
        """Import every told, not yet imported drive.  Returns the
        progress updates of the drives imported now."""
        told = job.get("dcDrives") or {}
        done = job.setdefault("dcImported", {})
        out = {}
        for d in drives:
            if d["serial"] not in told or d["serial"] in done:
                continue
            imp = DriveImport(self.client, kind, job, d, told[d["serial"]])
            try:
                imp.run()
            finally:
                self.client.close()
            done[d["serial"]] = imp.summary()
            out[d["serial"]] = imp.progress()
        return out


_CURRENT = ManualDataCenter()


def current():
    return _CURRENT


def install(dc):
    global _CURRENT
    _CURRENT = dc


# -- manifest ---------------------------------------------------------------

class DriveError(Exception):
    """A drive-level failure; str() is the message, .status the code."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _rel(path):
    """A drive path in manifest form to relative POSIX form, or None if
    it leaves the drive."""
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        return None
    return "/".join(parts)


def read_manifest(root, drive):
    """Returns the manifest's blobs (list of dicts) or raises
    DriveError."""
    rel = _rel(drive.get("manifestFile") or "")
    if rel is None:
        raise DriveError("ManifestNameInvalid", "manifestFile %r is not a "
            "path on the drive" % drive.get("manifestFile"))
    try:
        with open(os.path.join(root, rel), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DriveError("ManifestNotFound", "%s is not on the drive" % rel)
    except OSError as e:
        raise DriveError("ReadManifestFailed", "%s: %s" % (rel, e.strerror))
    want = (drive.get("manifestHash") or "").strip().upper()
    algo = hashlib.sha256 if len(want) == 64 else hashlib.md5
    if algo(data).hexdigest().upper() != want:
        raise DriveError("ManifestCorrupted", "the hash of %s is not the "
            "job's manifestHash %s" % (rel, want))
    try:
        top = ET.fromstring(data)
    except ET.ParseError as e:
        raise DriveError("ManifestFormatInvalid", "%s: %s" % (rel, e))
    disk = top.find("Drive")
    if top.tag != "DriveManifest" or disk is None:
        raise DriveError("ManifestFormatInvalid", "%s: no DriveManifest/"
            "Drive" % rel)
    if (disk.findtext("DriveId") or "").strip() != drive["serial"]:
        raise DriveError("ManifestDriveIdMismatch", "DriveId %r in %s is "
            "not the drive's serial %r" % (disk.findtext("DriveId"), rel,
            drive["serial"]))
    try:
        blobs = [_blob(b) for bl in disk.findall("BlobList")
            for b in bl.findall("Blob")]
    except (ValueError, TypeError, AttributeError) as e:
        raise DriveError("ManifestFormatInvalid", "%s: %s" % (rel, e))
    return blobs


def _blob(el):
    path = (el.findtext("BlobPath") or "").strip()
    if "/" not in path.strip("/"):
        raise ValueError("BlobPath %r is not container/name" % path)
    disp = (el.findtext("ImportDisposition") or "rename").strip()
    if disp not in DISPOSITIONS:
        raise ValueError("ImportDisposition %r" % disp)
    b = {"blobPath": path, "requestedBlobPath": path,
        "filePath": (el.findtext("FilePath") or "").strip(),
        "length": int(el.findtext("Length")), "disposition": disp,
        "dispositionStatus": None, "status": None, "fault": None,
        "contentMD5": None, "pageBlob": el.find("PageRangeList") is not None,
        "blocks": []}
    for i, blk in enumerate(el.findall("BlockList/Block")):
        b["blocks"].append({"offset": int(blk.get("Offset")),
            "length": int(blk.get("Length")),
            "id": blk.get("Id") or base64.b64encode(struct.pack("<I",
            i)).decode(), "hash": blk.get("Hash").strip().upper(),
            "status": None})
    return b


def fault_keys(blob):
    rel = _rel(blob["filePath"]) or blob["filePath"]
    keys = {rel, blob["requestedBlobPath"]}
    if "/" in rel:
        keys.add(rel.split("/", 1)[1])
    return keys


def _norm_fault(path):
    return _rel(path) or path


# -- one drive ----------------------------------------------------------------

class DriveImport:
    def __init__(self, client, kind, job, drive, root):
        self.client = client
        self.kind = kind
        self.job = job
        self.drive = drive
        self.root = root
        self.serial = drive["serial"]
        self.faults = {k: [_norm_fault(p) for p in v] for k, v in
            (job.get("dcFaults") or {}).items()}
        self.blobs = []
        self.status = None
        self.message = None
        self.applied = []
        self.logs = {}
        self.containers = set()

    def run(self):
        try:
            self.blobs = read_manifest(self.root, self.drive)
        except DriveError as e:
            self.status, self.message = e.status, str(e)
        for b in self.blobs:
            self._import(b)
        if self.status is None:
            self.status = self._drive_status()
        self._write_logs()

    def _drive_status(self):
        if any(b["status"] != "Completed" for b in self.blobs):
            return "CompletedWithErrors"
        if any(b["dispositionStatus"] in ("Renamed", "Skipped")
            for b in self.blobs):
            return "CompletedWithWarnings"
        return "Completed"

    def _fault(self, blob, kind):
        keys = fault_keys(blob)
        for p in self.faults.get(kind, []):
            if p in keys:
                self.applied.append({"kind": kind, "path": p})
                blob["fault"] = kind
                return True
        return False

    def _set_blocks(self, blob, status):
        for blk in blob["blocks"]:
            blk["status"] = status

    def _import(self, b):
        if b["pageBlob"]:
            b["status"] = "Failed"
            return
        rel = _rel(b["filePath"])
        if rel is None:
            b["status"] = "FileNameInvalid"
            self._set_blocks(b, "Cancelled")
            return
        try:
            f = None if self._fault(b, "drop") else \
                open(os.path.join(self.root, rel), "rb")
        except FileNotFoundError:
            f = None
        except OSError:
            b["status"] = "FileAccessDenied"
            self._set_blocks(b, "Cancelled")
            return
        if f is None:
            b["status"] = "FileNotFound"
            b["dispositionStatus"] = "Cancelled"
            self._set_blocks(b, "Cancelled")
            return
        with f:
            try:
                self._upload(b, f)
            except (blobstore.BlobError, OSError) as e:
                b["status"] = "BlobRequestFailed"
                b["error"] = str(e)
                for blk in b["blocks"]:
                    if blk["status"] in (None, "Uncommitted"):
                        blk["status"] = "BlobRequestFailed"

    def _upload(self, b, f):
        container, name = b["requestedBlobPath"].split("/", 1)
        if container not in self.containers:
            self.client.create_container(container)
            self.containers.add(container)
        if self._fault(b, "rename"):
            self.client.put_blob(container, name, PRE_EXISTING)
        name = self._disposition(b, container, name)
        if name is None:
            b["status"] = "Completed"
            self._set_blocks(b, "Cancelled")
            return
        b["blobPath"] = container + "/" + name
        corrupt = bool(b["blocks"]) and b["blocks"][0]["length"] > 0 and \
            self._fault(b, "corrupt")
        whole = hashlib.md5()
        for blk in b["blocks"]:
            f.seek(blk["offset"])
            data = f.read(blk["length"])
            if len(data) < blk["length"]:
                blk["status"] = "FileUnexpectedEnd"
                continue
            if hashlib.md5(data).hexdigest().upper() != blk["hash"]:
                blk["status"] = "Corrupted"
                continue
            if corrupt and blk is b["blocks"][0] and data:
                i = len(data) // 2
                data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
            self.client.put_block(container, name, blk["id"], data)
            blk["status"] = "Uncommitted"
            whole.update(data)
        if any(blk["status"] != "Uncommitted" for blk in b["blocks"]):
            b["status"] = "CompletedWithErrors"
            return
        md5 = base64.b64encode(whole.digest()).decode()
        self.client.put_block_list(container, name,
            [blk["id"] for blk in b["blocks"]], md5)
        self._set_blocks(b, "Completed")
        b["status"] = "Completed"
        b["contentMD5"] = md5

    def _disposition(self, b, container, name):
        """The name to write, or None to skip."""
        exists = self.client.exists(container, name)
        if not exists:
            b["dispositionStatus"] = "Created"
            return name
        if b["disposition"] == "overwrite":
            b["dispositionStatus"] = "Overwritten"
            return name
        if b["disposition"] == "no-overwrite":
            b["dispositionStatus"] = "Skipped"
            return None
        n = 2
        while self.client.exists(container, renamed(name, n)):
            n += 1
        b["dispositionStatus"] = "Renamed"
        return renamed(name, n)

    # -- logs and results -------------------------------------------------

    def _log_place(self):
        path = LOG_CONTAINER
        if self.kind == "importexport":
            path = self.job["props"].get("diagnosticsPath") or LOG_CONTAINER
        container, _, prefix = path.strip("/").partition("/")
        return container, prefix + "/" if prefix else ""

    def _write_logs(self):
        container, prefix = self._log_place()
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y%m%d-%H%M%S-%f")[:-3]
        try:
            self.client.create_container(container)
            for kind in ("error", "verbose"):
                name = "%s%s_%s_%s_%s.xml" % (prefix, self.job["name"],
                    self.serial, stamp, kind)
                self.client.put_blob(container, name,
                    drive_log(self.serial, self.blobs, self.status,
                    kind == "error"), "application/xml")
                self.logs[kind] = {"blob": container + "/" + name,
                    "url": self.client.url(container, name)}
        except (blobstore.BlobError, OSError) as e:
            self.logs = {}
            self.message = "could not write the copy logs: %s" % e

    def counters(self):
        ok = [b for b in self.blobs if b["status"] == "Completed"]
        return {"totalFilesToProcess": len(self.blobs),
            "totalBytesToProcess": sum(b["length"] for b in self.blobs),
            "filesProcessed": len(ok),
            "bytesProcessed": sum(b["length"] for b in ok),
            "filesErroredOut": len(self.blobs) - len(ok)}

    def summary(self):
        """What GET /jobs/{name}/import shows (kept in the job)."""
        blobs = [{k: b[k] for k in ("filePath", "blobPath",
            "requestedBlobPath", "length", "status", "disposition",
            "dispositionStatus", "fault", "contentMD5")} for b in self.blobs]
        return {"serial": self.serial, "path": self.root,
            "status": self.status, "message": self.message,
            "errorLog": self.logs.get("error", {}).get("blob"),
            "verboseLog": self.logs.get("verbose", {}).get("blob"),
            "errorLogUrl": self.logs.get("error", {}).get("url"),
            "verboseLogUrl": self.logs.get("verbose", {}).get("url"),
            "counters": self.counters(), "faultsApplied": self.applied,
            "blobs": blobs}

    def progress(self):
        if self.kind == "importexport":
            return self._ie_progress()
        c = self.counters()
        out = dict(c, logs=True)
        if not self.logs:
            out["copyStatus"] = "StorageAccountNotAccessible"
        elif self.status in ("Completed", "CompletedWithWarnings"):
            out["copyStatus"] = "Completed"
        elif self.status == "CompletedWithErrors":
            out["copyStatus"] = "CompletedWithErrors"
        else:
            out["copyStatus"] = "MetadataFilesModifiedOrRemoved"
        if out["copyStatus"] not in ("Completed", "CompletedWithErrors"):
            out["error"] = {"code": self.status if self.logs else
                "StorageAccountNotAccessible", "message": self.message or "",
                "details": [], "additionalInfo": []}
        if self.logs:
            out["errorLogLink"] = self.logs["error"]["url"]
            out["verboseLogLink"] = self.logs["verbose"]["url"]
        return out

    def _ie_progress(self):
        out = {"state": "Completed" if self.status == "Completed" and
            self.logs else "CompletedMoreInfo",
            "copyStatus": self.status, "percentComplete": 100,
            "bytesSucceeded": self.counters()["bytesProcessed"]}
        if self.logs:
            out["errorLogUri"] = self.logs["error"]["url"]
            out["verboseLogUri"] = self.logs["verbose"]["url"]
        return out


def renamed(name, n):
    """README §1.5: "a/Seattle.jpg" -> "a/Seattle (2).jpg", "a/b" ->
    "a/b (2)"; the dot must be in the last path segment."""
    head, sep, last = name.rpartition("/")
    stem, dot, ext = last.rpartition(".")
    if dot and stem:
        last = "%s (%d).%s" % (stem, n, ext)
    else:
        last = "%s (%d)" % (last, n)
    return head + sep + last


def drive_log(serial, blobs, status, errors_only):
    """A DriveLog document (bytes), in the grammar's element order."""
    out = ['<?xml version="1.0" encoding="utf-8"?>',
        '<DriveLog Version="%s">' % LOG_VERSION,
        "  <DriveId>%s</DriveId>" % escape(serial)]
    for b in blobs:
        failed = b["status"] != "Completed" or b["dispositionStatus"] in \
            ("Renamed", "Skipped")
        if errors_only and not failed:
            continue
        out.append("  <Blob Status=%s>" % quoteattr(b["status"]))
        out.append("    <BlobPath>%s</BlobPath>" % escape(b["blobPath"]))
        out.append("    <FilePath>%s</FilePath>" % escape(b["filePath"]))
        out.append("    <Length>%d</Length>" % b["length"])
        if b["dispositionStatus"]:
            out.append("    <ImportDisposition Status=%s>%s"
                "</ImportDisposition>" % (quoteattr(b["dispositionStatus"]),
                escape(b["disposition"])))
        blocks = [blk for blk in b["blocks"] if not errors_only or
            blk["status"] not in ("Completed", "Uncommitted")]
        if not b["pageBlob"]:
            out.extend(_block_list(blocks))
        out.append("  </Blob>")
    out.append("  <Status>%s</Status>" % escape(status))
    out.append("</DriveLog>")
    return ("\n".join(out) + "\n").encode("utf-8")


def _block_list(blocks):
    if not blocks:
        return ["    <BlockList />"]
    out = ["    <BlockList>"]
    for blk in blocks:
        out.append('      <Block Offset="%d" Length="%d" Id=%s Hash=%s '
            'Status=%s />' % (blk["offset"], blk["length"],
            quoteattr(blk["id"]), quoteattr(blk["hash"]),
            quoteattr(blk["status"] or "Cancelled")))
    out.append("    </BlockList>")
    return out


# -- control API -----------------------------------------------------------

def _serials(job):
    if job["kind"] == "databox":
        return list(job["details"]["importDiskDetailsCollection"])
    return list(job["driveOrder"])


def unmatched_faults(job):
    applied = {(a["kind"], a["path"]) for d in
        (job.get("dcImported") or {}).values() for a in d["faultsApplied"]}
    return [{"kind": k, "path": p} for k, paths in
        (job.get("dcFaults") or {}).items() for p in paths
        if (k, _norm_fault(p)) not in applied]


def control(job, method, action, data, mod):
    """The datacenter's control endpoints under /jobs/{name}/.  mod is the
    job's API module (databox or importexport).  Returns (status,
    object)."""
    if action == "drives":
        return _ctl_drives(job, method, data)
    if action == "import-faults":
        return _ctl_faults(job, method, data)
    if method == "GET":
        return 200, _import_view(job, [])
    if method != "POST":
        return 405, {"error": "GET or POST"}
    if not isinstance(current(), AzuriteDataCenter):
        return 409, {"error": "the simulator was started without "
            "--blob-endpoint: there is no storage to import into"}
    if job.get("pending"):
        return 409, {"error": "job '%s' is still being created"
            % job["name"]}
    updates = current().run(job["kind"], job, mod._drives(job))
    mod._merge(job, updates)
    return 200, _import_view(job, list(updates))


def _import_view(job, now):
    return {"datacenter": current().name, "imported": now,
        "drives": job.get("dcImported") or {},
        "unmatchedFaults": unmatched_faults(job)}


def _ctl_drives(job, method, data):
    if method == "POST":
        known = _serials(job)
        for serial, path in data.items():
            if serial not in known:
                return 400, {"error": "job '%s' has no drive '%s'" % (
                    job["name"], serial)}
            if not isinstance(path, str) or not os.path.isdir(path):
                return 400, {"error": "drive '%s': %r is not a directory"
                    % (serial, path)}
        job.setdefault("dcDrives", {}).update(
            {s: os.path.abspath(p) for s, p in data.items()})
    elif method != "GET":
        return 405, {"error": "GET or POST"}
    return 200, {"drives": job.get("dcDrives") or {}}


def _ctl_faults(job, method, data):
    if method == "POST":
        for k, v in data.items():
            if k not in FAULT_KINDS:
                return 400, {"error": "unknown fault '%s' (use %s)" % (k,
                    ", ".join(FAULT_KINDS))}
            if not isinstance(v, list) or not all(isinstance(p, str) and p
                for p in v):
                return 400, {"error": "'%s' must be a list of paths" % k}
        job["dcFaults"] = {k: list(v) for k, v in data.items()}
    elif method == "DELETE":
        job["dcFaults"] = {}
    elif method != "GET":
        return 405, {"error": "GET, POST or DELETE"}
    return 200, {"faults": job.get("dcFaults") or {},
        "unmatched": unmatched_faults(job)}
