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
    committed), then Put Block List with those ids ([DOC] drive-format
    README §0 step 5, §1.3).  Content-MD5 comes ONLY from the blob's
    properties file ([DOC] §1.2, §5): PropertiesPath of the Blob, else of
    its BlobList; its Hash must be the file's MD5 (else Properties
    Status="Corrupted"), a missing file is FileNotFound, unreadable XML
    XmlReadFailed (each makes the blob CompletedWithErrors; its blocks are
    still committed [INFERRED]); <Content-MD5> (Base64) and <Content-Type>
    are set on Put Block List.  No properties file: no Content-MD5.  ImportDisposition rename (default): an existing
    blob makes us store "name (2).ext" (README §1.5, on the last path
    segment) and log Status="Renamed" with the new BlobPath; overwrite:
    Overwritten; no-overwrite: Skipped (nothing uploaded).  A missing file
    is FileNotFound with every block Cancelled.  PageRangeList: Failed
    (not simulated).
  * logs (DriveLog Version="2014-11-01", element order of the grammar):
    verbose = every blob and block; error = blobs that failed or were
    renamed/skipped, with only their failed blocks.  The error log is
    always written, the verbose log when the job asked for it ([DOC]
    README §4.1: ImportExport logLevel, DataBox logCollectionLevel
    Verbose), as block blobs "<job>_<serial>_<YYYYMMDD-HHMMSS-fff>_error.xml"
    and "_verbose.xml" in container "waimportexport" (ImportExport: the
    job's diagnosticsPath), and linked from copyLogDetails (DataBox) or
    driveList errorLogUri/verboseLogUri (ImportExport).
  * progress: DataBox copyStatus Completed | CompletedWithErrors |
    MetadataFilesModifiedOrRemoved (manifest failures, with error.code =
    the drive status) | StorageAccountNotAccessible (logs unwritable),
    bytes/files processed = blobs imported fine; ImportExport drive state
    Completed (drive status Completed) or CompletedMoreInfo, copyStatus =
    the drive status, percentComplete 100, bytesSucceeded.

Options (POST /jobs/{name}/import-options {...}, GET shows them, DELETE
resets; applied by the next import), each the documented behaviour by
default and a switch for an alternative:
  contentMd5     "properties" [DOC] README §1.2, §5: from properties files
                 only; "always" [no basis: the simulator's old behaviour]:
                 MD5 of the bytes uploaded on every blob; "ignore-properties"
                 [INFERRED alternative]: properties files not applied, no
                 blob gets a Content-MD5 (Properties not logged).
  verboseLog     "logLevel" [DOC] README §4.1: only when the job asked for
                 Verbose; "always"; "never" [INFERRED alternative: the
                 verbose log missing although asked for].
  blockIdsInLog  true [SAMPLE] log-verbose-sample.xml carries Id; false
                 [INFERRED alternative]: logged Blocks have no Id.
  driveFailure   {"SERIAL": "STATUS"}: that drive fails at drive level
                 with STATUS (README §4.3, e.g. BitLockerKeyInvalid,
                 ManifestCorrupted, ManifestDriveIdMismatch) before any blob
                 is imported; its logs hold only DriveId and Status [DOC
                 §4.2; that nothing is imported then is INFERRED].

Faults (POST /jobs/{name}/import-faults {"drop": [...], "corrupt": [...],
"rename": [...], ...}, applied by the next import).  A path names a blob by its
FilePath ("job/a/b.bin", "/" or "\\" separators, leading one optional), by
that path without its first segment ("a/b.bin", the staging path under
the job directory) or by its BlobPath ("container/name"):
  drop     the file is treated as absent: FileNotFound, nothing uploaded;
  corrupt  the drive's copy of the first block is damaged (one byte
           flipped as read): the service's MD5 check against the manifest
           Hash fails, the block is Corrupted, the blob CompletedWithErrors
           and not committed [DOC §0 step 5, §4.3];
  corrupt-silent  one byte of the first block is flipped after that check
           (before Put Block): the log says Completed; with contentMd5
           "always" the Content-MD5 is the MD5 of the stored bytes, else
           nothing Azure records shows it (what block-list verification
           cannot see) [INFERRED: a service-side fault];
  rename   a blob with other content is put at BlobPath first, so the
           import renames (or skips, overwrites) ours;
  length   the last block is left out of Put Block List: the blob is
           short, the log still says Completed [INFERRED];
  failed   the blob is committed but logged Status="BlobRequestFailed"
           with its last block Failed [INFERRED];
  blocklist  the blocks are put and committed under other ids (base64 of
           the 4-byte LE index, the service's export form [SAMPLE]): the
           same bytes, a committed block list that differs from the
           manifest.
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
ACTIONS = ("drives", "import-faults", "import-options", "import")
FAULT_KINDS = ("drop", "corrupt", "corrupt-silent", "rename", "length",
    "failed", "blocklist")
OPTIONS = {"contentMd5": "properties", "verboseLog": "logLevel",
    "blockIdsInLog": True, "driveFailure": {}}
OPTION_VALUES = {"contentMd5": ("properties", "always", "ignore-properties"),
    "verboseLog": ("logLevel", "always", "never")}
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
        blobs = [_blob(b, _props_path(bl, True)) for bl in
            disk.findall("BlobList") for b in bl.findall("Blob")]
    except (ValueError, TypeError, AttributeError) as e:
        raise DriveError("ManifestFormatInvalid", "%s: %s" % (rel, e))
    return blobs


def _props_path(el, list_level):
    """PropertiesPath of a BlobList or Blob as {path, hash, global}, or
    None ([DOC] README §1.2: a Blob's overrides its list's)."""
    p = el.find("PropertiesPath")
    if p is None:
        return None
    return {"path": (p.text or "").strip(), "global": list_level,
        "hash": (p.get("Hash") or "").strip().upper()}


def _blob(el, list_props=None):
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
        "properties": _props_path(el, False) or list_props,
        "propertiesStatus": None, "blocks": []}
    for i, blk in enumerate(el.findall("BlockList/Block")):
        b["blocks"].append({"offset": int(blk.get("Offset")),
            "length": int(blk.get("Length")),
            "id": blk.get("Id") or _index_id(i), "hash": blk.get("Hash").strip().upper(),
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
        self.options = options(job)

    def run(self):
        forced = self.options["driveFailure"].get(self.serial)
        try:
            if forced:
                raise DriveError(forced, "drive-level failure %s (simulated "
                    "by import-options driveFailure)" % forced)
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
        first = bool(b["blocks"]) and b["blocks"][0]["length"] > 0
        damaged = first and self._fault(b, "corrupt")
        silent = first and not damaged and self._fault(b, "corrupt-silent")
        other_ids = self._fault(b, "blocklist")
        whole = hashlib.md5()
        ids = []
        for i, blk in enumerate(b["blocks"]):
            f.seek(blk["offset"])
            data = f.read(blk["length"])
            if len(data) < blk["length"]:
                blk["status"] = "FileUnexpectedEnd"
                continue
            if i == 0 and damaged:
                data = _flip(data)
            # [DOC] README §0 step 5: each block's MD5 against the manifest.
            if hashlib.md5(data).hexdigest().upper() != blk["hash"]:
                blk["status"] = "Corrupted"
                continue
            if i == 0 and silent:
                data = _flip(data)
            bid = _index_id(i) if other_ids else blk["id"]
            self.client.put_block(container, name, bid, data)
            blk["status"] = "Uncommitted"
            ids.append(bid)
            whole.update(data)
        if any(blk["status"] != "Uncommitted" for blk in b["blocks"]):
            b["status"] = "CompletedWithErrors"
            return
        props = self._properties(b)
        if self.options["contentMd5"] == "always":
            # No basis: the simulator's behaviour before issue 9.
            props["Content-MD5"] = base64.b64encode(whole.digest()).decode()
        if ids and self._fault(b, "length"):
            ids.pop()
        self.client.put_block_list(container, name, ids,
            props.get("Content-MD5"), props.get("Content-Type") or
            "application/octet-stream")
        self._set_blocks(b, "Completed")
        b["status"] = "Completed" if b["propertiesStatus"] in (None,
            "Completed") else "CompletedWithErrors"
        if self._fault(b, "failed"):
            b["status"] = "BlobRequestFailed"
            if b["blocks"]:
                b["blocks"][-1]["status"] = "Failed"
        b["contentMD5"] = props.get("Content-MD5")

    def _properties(self, b):
        """The blob's properties file as {name: value}, its status in
        b["propertiesStatus"] ([DOC] README §1.3, §4.3, §5)."""
        pp = b["properties"]
        if pp is None or self.options["contentMd5"] == "ignore-properties":
            b["properties"] = None
            return {}
        rel = _rel(pp["path"])
        if rel is None:
            b["propertiesStatus"] = "FileNameInvalid"
            return {}
        try:
            with open(os.path.join(self.root, rel), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            b["propertiesStatus"] = "FileNotFound"
            return {}
        except OSError:
            b["propertiesStatus"] = "FileAccessDenied"
            return {}
        if hashlib.md5(data).hexdigest().upper() != pp["hash"]:
            b["propertiesStatus"] = "Corrupted"
            return {}
        try:
            root = ET.fromstring(data)
        except ET.ParseError:
            b["propertiesStatus"] = "XmlReadFailed"
            return {}
        if root.tag != "Properties":
            b["propertiesStatus"] = "XmlReadFailed"
            return {}
        b["propertiesStatus"] = "Completed"
        return {c.tag: (c.text or "").strip() for c in root
            if c.tag in ("Content-MD5", "Content-Type")}

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
        kinds = ("error", "verbose") if self._verbose() else ("error",)
        try:
            self.client.create_container(container)
            for kind in kinds:
                name = "%s%s_%s_%s_%s.xml" % (prefix, self.job["name"],
                    self.serial, stamp, kind)
                self.client.put_blob(container, name,
                    drive_log(self.serial, self.blobs, self.status,
                    kind == "error", self.options["blockIdsInLog"]),
                    "application/xml")
                self.logs[kind] = {"blob": container + "/" + name,
                    "url": self.client.url(container, name)}
        except (blobstore.BlobError, OSError) as e:
            self.logs = {}
            self.message = "could not write the copy logs: %s" % e

    def _verbose(self):
        """[DOC] README §4.1: the verbose log only with logLevel /
        logCollectionLevel Verbose; the switch can force it either way."""
        mode = self.options["verboseLog"]
        if mode != "logLevel":
            return mode == "always"
        if self.kind == "importexport":
            return self.job["props"].get("logLevel") == "Verbose"
        return any(d.get("logCollectionLevel") == "Verbose" for d in
            self.job["details"].get("dataImportDetails", []))

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
            "dispositionStatus", "fault", "contentMD5", "propertiesStatus")}
            for b in self.blobs]
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
            out["verboseLogLink"] = self.logs.get("verbose", {}).get("url")
        return out

    def _ie_progress(self):
        out = {"state": "Completed" if self.status == "Completed" and
            self.logs else "CompletedMoreInfo",
            "copyStatus": self.status, "percentComplete": 100,
            "bytesSucceeded": self.counters()["bytesProcessed"]}
        if self.logs:
            out["errorLogUri"] = self.logs["error"]["url"]
            out["verboseLogUri"] = self.logs.get("verbose", {}).get("url")
        return out


def _flip(data):
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


def _index_id(i):
    """The service's own block id form (export samples [SAMPLE])."""
    return base64.b64encode(struct.pack("<I", i)).decode()


def options(job):
    out = dict(OPTIONS)
    out.update(job.get("dcOptions") or {})
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


def drive_log(serial, blobs, status, errors_only, block_ids=True):
    """A DriveLog document (bytes), in the grammar's element order."""
    out = ['<?xml version="1.0" encoding="utf-8"?>',
        '<DriveLog Version="%s">' % LOG_VERSION,
        "  <DriveId>%s</DriveId>" % escape(serial)]
    for b in blobs:
        failed = b["status"] != "Completed" or b["dispositionStatus"] in \
            ("Renamed", "Skipped") or b["propertiesStatus"] not in (None,
            "Completed")
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
            out.extend(_block_list(blocks, block_ids))
        out.extend(_properties_log(b))
        out.append("  </Blob>")
    out.append("  <Status>%s</Status>" % escape(status))
    out.append("</DriveLog>")
    return ("\n".join(out) + "\n").encode("utf-8")


def _properties_log(b):
    """[SAMPLE] log-verbose-sample.xml: <Properties Status><Path Hash> for
    a blob's own file, GlobalPath for its list's default."""
    pp = b["properties"]
    if pp is None or b["propertiesStatus"] is None:
        return []
    tag = "GlobalPath" if pp["global"] else "Path"
    return ["    <Properties Status=%s>" % quoteattr(b["propertiesStatus"]),
        "      <%s Hash=%s>%s</%s>" % (tag, quoteattr(pp["hash"]),
        escape(pp["path"]), tag), "    </Properties>"]


def _block_list(blocks, block_ids=True):
    if not blocks:
        return ["    <BlockList />"]
    out = ["    <BlockList>"]
    for blk in blocks:
        bid = " Id=%s" % quoteattr(blk["id"]) if block_ids else ""
        out.append('      <Block Offset="%d" Length="%d"%s Hash=%s '
            'Status=%s />' % (blk["offset"], blk["length"], bid,
            quoteattr(blk["hash"]), quoteattr(blk["status"] or
            "Cancelled")))
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
    if action == "import-options":
        return _ctl_options(job, method, data)
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


def _ctl_options(job, method, data):
    if method == "POST":
        for k, v in data.items():
            if k not in OPTIONS:
                return 400, {"error": "unknown option '%s' (use %s)" % (k,
                    ", ".join(OPTIONS))}
            if k in OPTION_VALUES and v not in OPTION_VALUES[k]:
                return 400, {"error": "'%s' must be one of %s" % (k,
                    ", ".join(OPTION_VALUES[k]))}
            if k == "blockIdsInLog" and not isinstance(v, bool):
                return 400, {"error": "'blockIdsInLog' must be a boolean"}
            if k == "driveFailure" and not (isinstance(v, dict) and all(
                isinstance(x, str) and x for x in v.values())):
                return 400, {"error": "'driveFailure' must map serials to "
                    "drive status codes"}
        job.setdefault("dcOptions", {}).update(data)
    elif method == "DELETE":
        job["dcOptions"] = {}
    elif method != "GET":
        return 405, {"error": "GET, POST or DELETE"}
    return 200, {"options": options(job)}
