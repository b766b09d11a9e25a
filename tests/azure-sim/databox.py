"""Microsoft.DataBox jobs, customer-disk SKU (the current Import/Export
API): create/get/update/delete with Location LROs, list with nextLink,
markDevicesShipped, cancel, listCredentials, validateInputs, plus the
status machine the control API drives.

Shapes follow the customer-disk recordings (api 2025-02-01) [rec] and the
2025-07-01 spec [spec]; see README.md for the basis of each behaviour.
"""

import copy
import datetime
import hashlib
import re
import time
import uuid

import arm
import datacenter
import validate

RTYPE = "Microsoft.DataBox/jobs"
SKU = "DataBoxCustomerDisk"
MAX_DISKS = 10  # [doc] "10 drives per job"

AWAITING = ("AwaitingShipmentDetails", "Created")
# The default path a customer-disk job takes [doc portal table, inferred
# mapping to the StageName enum]; the last step is the job's outcome.
PATH = ["ShippedToAzureDC", "AtAzureDC", "DataCopy",
    "PreparingToShipFromAzureDC", "ShippedToCustomer"]
TERMINAL = ("Completed", "CompletedWithErrors", "CompletedWithWarnings",
    "Cancelled", "Failed_IssueReportedAtCustomer",
    "Failed_IssueDetectedAtAzureDC", "Aborted")
AFTER_COPY = ("PreparingToShipFromAzureDC", "ShippedToCustomer", "Completed",
    "CompletedWithErrors", "CompletedWithWarnings")
DISPLAY = {"AwaitingShipmentDetails": "Awaiting shipment information",
    "Created": "Created", "ShippedToAzureDC": "Shipped",
    "AtAzureDC": "Received", "DataCopy": "Data copy in progress",
    "PreparingToShipFromAzureDC": "Preparing to ship",
    "ShippedToCustomer": "Shipped to customer", "Completed": "Completed",
    "CompletedWithErrors": "Data copy completed with errors",
    "CompletedWithWarnings": "Data copy completed with warnings",
    "Failed_IssueDetectedAtAzureDC": "Data copy failed",
    "Cancelled": "Canceled"}
COPY_FAILED = ("Failed", "NotReturned", "HardwareError", "DeviceFormatted",
    "DeviceMetadataModified", "StorageAccountNotAccessible",
    "UnsupportedData", "DriveNotReceived", "UnsupportedDrive",
    "OtherServiceError", "OtherUserError", "DriveNotDetected",
    "DriveCorrupted", "MetadataFilesModifiedOrRemoved", "CompletedWithErrors")
PROGRESS_COUNTERS = ("bytesProcessed", "totalBytesToProcess",
    "filesProcessed", "totalFilesToProcess", "invalidFilesProcessed",
    "invalidFileBytesUploaded", "renamedContainerCount", "filesErroredOut",
    "directoriesErroredOut", "invalidDirectoriesProcessed")
DEFAULT_NOTIFY = ["AtAzureDC", "DataCopy", "Created", "ShippedToCustomer"]

_HASH_RE = re.compile(r"^[0-9A-Fa-f]{32}$")
_KEY_RE = re.compile(r"^\d{6}(-\d{6}){7}$")


def spec():
    return validate.databox()


def key(sub, rg, name):
    return "databox/%s/%s/%s" % (sub.lower(), rg.lower(), name.lower())


# -- routing ----------------------------------------------------------------

def _match(segs, pattern):
    """Case-insensitive segment match; '{x}' captures."""
    if len(segs) != len(pattern):
        return None
    out = {}
    for s, p in zip(segs, pattern):
        if p.startswith("{"):
            out[p[1:-1]] = s
        elif s.lower() != p.lower():
            return None
    return out


_RG = ["subscriptions", "{sub}", "resourceGroups", "{rg}", "providers",
    "Microsoft.DataBox"]
_SUB = ["subscriptions", "{sub}", "providers", "Microsoft.DataBox"]
ROUTES = [
    (_RG + ["jobs"], {"GET": "list_rg"}),
    (_SUB + ["jobs"], {"GET": "list_sub"}),
    (_RG + ["jobs", "{name}"], {"GET": "get", "PUT": "put",
        "PATCH": "patch", "DELETE": "delete"}),
    (_RG + ["jobs", "{name}", "markDevicesShipped"],
        {"POST": "mark_shipped"}),
    (_RG + ["jobs", "{name}", "cancel"], {"POST": "cancel"}),
    (_RG + ["jobs", "{name}", "listCredentials"],
        {"POST": "list_credentials"}),
    (_RG + ["jobs", "{name}", "mitigate"], {"POST": "mitigate"}),
    (_SUB + ["locations", "{loc}", "operationResults", "{op}"],
        {"GET": "op_result"}),
    (_SUB + ["locations", "{loc}", "operationStatuses", "{op}"],
        {"GET": "op_status"}),
    (_SUB + ["locations", "{loc}", "validateInputs"],
        {"POST": "validate_inputs"}),
    (_RG + ["locations", "{loc}", "validateInputs"],
        {"POST": "validate_inputs"}),
]


def is_databox(req):
    segs = [s.lower() for s in req.segments]
    return "microsoft.databox" in segs


def route(req):
    """(handler, params) for a DataBox path, or an error Response."""
    for pattern, methods in ROUTES:
        params = _match(req.segments, pattern)
        if params is None:
            continue
        name = methods.get(req.method)
        if name is None:
            return arm.error(405, "MethodNotAllowed",
                "The requested resource does not support http method '%s'."
                % req.method)
        return globals()["h_" + name], params
    return arm.error(404, "InvalidResourceType",
        "The resource type could not be found in the namespace "
        "'Microsoft.DataBox' for api version '%s'."
        % (req.q("api-version") or ""))


def handle(store, req):
    r = route(req)
    if isinstance(r, arm.Response):
        return r
    handler, params = r
    for check in (arm.check_subscription(params["sub"]),
        arm.check_resource_group(params["rg"]) if "rg" in params else None):
        if check is not None:
            return check
    loc = None
    with store.lock:
        job = store.jobs.get(key(params["sub"], params["rg"], params["name"])) \
            if "name" in params else None
        loc = job["location"] if job else None
    bad = arm.check_api_version(req, store.config["databoxApiVersions"],
        "jobs", loc)
    if bad is not None:
        return bad
    if "name" in params:
        bad = _check_name(params["name"])
        if bad is not None:
            return bad
    with store.lock:
        settle(store)
        resp = handler(store, req, **params)
        return resp


def _check_name(name):
    """3-24 characters, ^[-\\w\\.]+$ [spec]; the error code is
    [inferred]."""
    if 3 <= len(name) <= 24 and re.match(r"^[-\w\.]+$", name):
        return None
    return arm.error(400, "InvalidResourceName",
        "The job name '%s' is invalid. Job names must be between 3 and 24 "
        "characters long and use letters, digits, '-', '_' and '.' only."
        % name, target="jobName")


def _answer(store, req, sub, status, body=b"", extra=None, ctype=None):
    """A success answer; azuresim adds the common ARM headers."""
    if body and ctype is None:
        ctype = arm.JSON_UTF8
    return arm.Response(status, body, ctype, extra)


# -- rendering --------------------------------------------------------------

def _flags(status):
    early = status in AWAITING
    return {"isCancellable": early, "isDeletable": status in TERMINAL,
        "isShippingAddressEditable": early}


def _account_name(account_id):
    return account_id.rstrip("/").rpartition("/")[2]


def _first_account(job):
    for d in job["details"].get("dataImportDetails", []):
        acct = d.get("accountDetails", {})
        if "storageAccountId" in acct:
            return acct
    return {}


def _progress_entry(job, serial):
    acct = _first_account(job)
    p = job["progress"].get(serial, {})
    e = {"serialNumber": serial, "copyStatus": p.get("copyStatus",
        "NotStarted"),
        "storageAccountName": _account_name(acct.get("storageAccountId", "")),
        "transferType": job["transferType"],
        "dataAccountType": acct.get("dataAccountType", "StorageAccount"),
        "accountId": acct.get("storageAccountId", "")}
    for name in PROGRESS_COUNTERS:
        e[name] = int(p.get(name, 0))
    e["isEnumerationInProgress"] = bool(p.get("isEnumerationInProgress",
        False))
    if p.get("error"):
        e["error"] = p["error"]
    e["actions"] = list(p.get("actions", []))
    return e


def _log_entry(job, serial):
    p = job["progress"].get(serial, {})
    acct = _account_name(_first_account(job).get("storageAccountId", ""))
    base = "https://%s.blob.core.windows.net/databoxcopylog/%s_%s" % (acct,
        job["name"], serial)
    e = {"copyLogDetailsType": SKU, "serialNumber": serial,
        "errorLogLink": p.get("errorLogLink", base + "_error.xml")}
    verbose = any(d.get("logCollectionLevel") == "Verbose"
        for d in job["details"].get("dataImportDetails", []))
    if "verboseLogLink" in p or verbose:
        e["verboseLogLink"] = p.get("verboseLogLink", base + "_verbose.xml")
    return e


def _stages(job):
    """jobStages for $expand=details [inferred: no customer-disk
    recording shows them]: the default path, the current stage
    InProgress (or its final stage status), passed ones Succeeded."""
    status, seen = job["status"], job["stages"]
    final = status if status in TERMINAL and status != "Cancelled" \
        else "Completed"
    names = [seen.get("_initial", "AwaitingShipmentDetails")] + PATH + \
        [final]
    if status == "Cancelled":
        names.append("Cancelled")
    out = []
    for n in names:
        e = {"stageName": n, "displayName": DISPLAY.get(n, n)}
        if n == status and job.get("waiting"):
            # [spec] examples/JobsGetWaitingForAction.json: the stage that
            # waits says so; the status stays (DataCopy there).
            e["stageStatus"] = "WaitingForCustomerAction"
        elif n == status:
            e["stageStatus"] = _final_stage_status(status) \
                if status in TERMINAL else "InProgress"
        elif n in seen:
            e["stageStatus"] = "Succeeded"
        else:
            e["stageStatus"] = "None"
        if n in seen:
            e["stageTime"] = seen[n]
        out.append(e)
    return out


def _final_stage_status(status):
    return {"Completed": "Succeeded", "CompletedWithErrors":
        "SucceededWithErrors", "CompletedWithWarnings":
        "SucceededWithWarnings", "Cancelled": "Cancelled"}.get(status,
        "Failed")


def _dc_address(job):
    """datacenterAddress from the recorded Import/Export DC list, mapped
    to DatacenterAddressLocationResponse [inferred]."""
    import importexport
    loc = importexport.location_info(job["location"])
    if loc is None:
        return None
    p = loc["properties"]
    return {"datacenterAddressType": "DatacenterAddressLocation",
        "supportedCarriersForReturnShipment": p.get("supportedCarriers", []),
        "dataCenterAzureLocation": job["location"],
        "contactPersonName": p.get("recipientName", ""),
        "company": "Microsoft", "street1": p.get("streetAddress1", ""),
        "street2": p.get("streetAddress2", ""), "street3": "",
        "city": p.get("city", ""), "state": p.get("stateOrProvince", ""),
        "zip": p.get("postalCode", ""), "country": p.get("countryOrRegion", ""),
        "phone": p.get("phone", ""), "phoneExtension": "",
        "addressType": "Commercial",
        "additionalShippingInformation":
        p.get("additionalShippingInformation", "")}


def _empty_package():
    return {"trackingUrl": "", "carrierName": "", "trackingId": ""}


def render(job, expand):
    """The JobResource as GET returns it.  Without $expand: the recorded
    shape [rec]; with $expand=details (and in lists, like the DataBox-SKU
    list [rec]) also copyProgress, jobStages, copyLogDetails, packages and
    datacenterAddress [inferred]."""
    status = job["status"]
    d = job["details"]
    serials = list(d["importDiskDetailsCollection"])
    det = {"importDiskDetailsCollection":
        copy.deepcopy(d["importDiskDetailsCollection"]),
        "returnToCustomerPackageDetails":
        copy.deepcopy(d["returnToCustomerPackageDetails"])}
    if job.get("deliverToDc"):
        det["deliverToDcPackageDetails"] = dict(job["deliverToDc"])
    det["enableManifestBackup"] = d["enableManifestBackup"]
    if expand:
        det["copyProgress"] = [_progress_entry(job, s) for s in serials
            if s in job["progress"]]
        det["jobStages"] = _stages(job)
    for name in ("contactDetails", "shippingAddress"):
        if name in d:
            det[name] = copy.deepcopy(d[name])
    if expand:
        det["deliveryPackage"] = _empty_package()
        det["returnPackage"] = dict(job.get("returnPackage")
            or _empty_package())
    for name in ("dataImportDetails", "dataExportDetails", "jobDetailsType",
        "preferences", "reverseShippingDetails"):
        det[name] = copy.deepcopy(d[name])
    if expand:
        det["copyLogDetails"] = [_log_entry(job, s) for s in serials
            if job["progress"].get(s, {}).get("logs")]
    det["keyEncryptionKey"] = copy.deepcopy(d["keyEncryptionKey"])
    if "expectedDataSizeInTeraBytes" in d:
        det["expectedDataSizeInTeraBytes"] = d["expectedDataSizeInTeraBytes"]
    if expand:
        det["actions"] = list((job.get("waiting") or {}).get("actions", []))
        if job.get("lastMitigation"):
            det["lastMitigationActionOnJob"] = dict(job["lastMitigation"])
        addr = _dc_address(job)
        if addr:
            det["datacenterAddress"] = addr
    props = {"transferType": job["transferType"]}
    props.update(_flags(status))
    props.update({"reverseShippingDetailsUpdate": "NotSupported",
        "reverseTransportPreferenceUpdate": "NotSupported",
        "isPrepareToShipEnabled": False, "status": status,
        "startTime": job["startTime"]})
    if job.get("error"):
        props["error"] = copy.deepcopy(job["error"])
    props["details"] = det
    if job.get("cancellationReason") is not None:
        props["cancellationReason"] = job["cancellationReason"]
    props.update({"deliveryType": "NonScheduled",
        "deliveryInfo": {"scheduledDateTime": "0001-01-01T00:00:00+00:00"},
        "isCancellableWithoutFee": status in AWAITING,
        "allDevicesLost": False})
    return {"properties": props,
        "systemData": {"createdBy": job["createdBy"],
        "createdByType": job["createdByType"], "createdAt": job["createdAt"],
        "lastModifiedBy": job["modifiedBy"],
        "lastModifiedByType": job["createdByType"],
        "lastModifiedAt": job["modifiedAt"]},
        "location": job["location"], "tags": copy.deepcopy(job["tags"]),
        "sku": {"name": SKU, "model": SKU},
        "identity": copy.deepcopy(job["identity"]),
        "name": job["name"],
        "id": "/subscriptions/%s/resourceGroups/%s/providers/%s/%s" % (
        job["sub"], job["rg"], RTYPE, job["name"]),
        "type": RTYPE}


# -- request checks ---------------------------------------------------------

def _schema(req, definition):
    """Parse and check a body against a spec definition.  Returns (body,
    error Response|None)."""
    try:
        body = req.json()
    except arm.BadBody as e:
        return None, arm.bad_content([arm.problem("", "InvalidJson",
            str(e))])
    errors, warnings = spec().validate(definition, body, "request")
    req.warn(warnings)
    if errors:
        return body, arm.bad_content(errors)
    return body, None


def _create_rules(store, req, body):
    """Service rules beyond the schema, for a customer-disk import
    [inferred unless noted].  Returns problems (list)."""
    out = []
    p = arm.problem
    sku = body["sku"]["name"]
    props = body["properties"]
    det = props.get("details")
    if sku != SKU:
        return [p("sku.name", "SimulatorUnsupported", "The simulator "
            "models only DataBoxCustomerDisk jobs, not '%s'." % sku)]
    if props["transferType"] != "ImportToAzure":
        return [p("properties.transferType", "SimulatorUnsupported",
            "The simulator models only ImportToAzure customer-disk jobs.")]
    if det is None:
        return [p("properties.details", "MissingRequiredProperty",
            "Job details are required to create a DataBoxCustomerDisk job.")]
    if det["jobDetailsType"] != sku:
        out.append(p("properties.details.jobDetailsType", "SkuMismatch",
            "jobDetailsType '%s' does not match sku '%s'."
            % (det["jobDetailsType"], sku)))
    disks = det.get("importDiskDetailsCollection")
    if not disks:
        out.append(p("properties.details.importDiskDetailsCollection",
            "MissingRequiredProperty", "importDiskDetailsCollection must "
            "list at least one disk for an ImportToAzure job."))
    elif len(disks) > MAX_DISKS:
        out.append(p("properties.details.importDiskDetailsCollection",
            "TooManyDisks", "A job can contain at most %d disks; %d given."
            % (MAX_DISKS, len(disks))))
    if not det.get("dataImportDetails"):
        out.append(p("properties.details.dataImportDetails",
            "MissingRequiredProperty", "dataImportDetails must name the "
            "destination storage account."))
    ret = det.get("returnToCustomerPackageDetails", {})
    for f in ("carrierName", "carrierAccountNumber"):
        if not ret.get(f):
            # [doc] the carrier account number is required for the return.
            out.append(p("properties.details.returnToCustomerPackageDetails."
                + f, "MissingRequiredProperty",
                "returnToCustomerPackageDetails.%s is required for a "
                "customer disk job." % f))
    out += _disk_rules(store, req, disks or {})
    return out


def _disk_rules(store, req, disks):
    """Format checks on per-disk values.  The service accepted "xxxx"
    and "xxx" [rec], so these are warnings unless config strict."""
    probs = []
    base = "properties.details.importDiskDetailsCollection"
    for serial, disk in disks.items():
        path = "%s['%s']" % (base, serial)
        if not serial.strip() or " " in serial:
            probs.append(arm.problem(path, "InvalidSerialNumber",
                "Disk serial number '%s' is empty or has spaces." % serial))
        if not disk.get("manifestFile"):
            probs.append(arm.problem(path + ".manifestFile",
                "InvalidManifestFile", "manifestFile is empty."))
        if not _HASH_RE.match(disk.get("manifestHash", "")):
            probs.append(arm.problem(path + ".manifestHash",
                "InvalidManifestHash", "manifestHash is not a Base16 MD5 "
                "(32 hex digits) [spec description]."))
        if not _KEY_RE.match(disk.get("bitLockerKey", "")):
            probs.append(arm.problem(path + ".bitLockerKey",
                "InvalidBitLockerKey", "bitLockerKey is not a 48-digit "
                "recovery password (8 groups of 6 digits)."))
    if probs and not store.config.get("strict"):
        req.warn(probs)
        return []
    return probs


def _echo_details(det, job_name):
    """The details as GET echoes them: secrets dropped, defaults filled
    [rec]."""
    backup = bool(det.get("enableManifestBackup", False))
    acct = ""
    for d in det.get("dataImportDetails", []):
        acct = _account_name(d.get("accountDetails", {}).get(
            "storageAccountId", "")) or acct
    disks = {}
    for serial, disk in det["importDiskDetailsCollection"].items():
        e = {"manifestFile": disk["manifestFile"],
            "manifestHash": disk["manifestHash"]}
        if backup:
            e["backupManifestCloudPath"] = ("https://%s.blob.core.windows.net"
                "/databoxcustomerdiskmanifests/%s/%s/%s" % (acct, job_name,
                serial, disk["manifestFile"].lstrip("\\/")))
        disks[serial] = e
    ret = {k: v for k, v in det["returnToCustomerPackageDetails"].items()
        if k != "carrierAccountNumber"}
    out = {"importDiskDetailsCollection": disks,
        "returnToCustomerPackageDetails": ret, "enableManifestBackup": backup}
    out["contactDetails"] = _echo_contact(det["contactDetails"])
    if "shippingAddress" in det:
        out["shippingAddress"] = _echo_address(det["shippingAddress"])
    out["dataImportDetails"] = [_echo_import(d)
        for d in det.get("dataImportDetails", [])]
    out["dataExportDetails"] = []
    out["jobDetailsType"] = det["jobDetailsType"]
    prefs = copy.deepcopy(det.get("preferences", {}))
    prefs.setdefault("encryptionPreferences", {"doubleEncryption": "Disabled"})
    out["preferences"] = prefs
    out["reverseShippingDetails"] = copy.deepcopy(
        det.get("reverseShippingDetails", {}))
    out["keyEncryptionKey"] = copy.deepcopy(det.get("keyEncryptionKey",
        {"kekType": "MicrosoftManaged"}))
    if "expectedDataSizeInTeraBytes" in det:
        out["expectedDataSizeInTeraBytes"] = det["expectedDataSizeInTeraBytes"]
    return out


def _echo_contact(c):
    out = {"emailList": list(c["emailList"]),
        "notificationPreference": copy.deepcopy(c.get(
        "notificationPreference", [{"stageName": s, "sendNotification": True}
        for s in DEFAULT_NOTIFY])),
        "contactName": c["contactName"], "phone": c["phone"]}
    for k in ("phoneExtension", "mobile"):
        if k in c:
            out[k] = c[k]
    return out


_ADDRESS_ORDER = ("streetAddress1", "streetAddress2", "streetAddress3", "city",
    "stateOrProvince", "country", "postalCode", "zipExtendedCode",
    "companyName", "addressType", "skipAddressValidation",
    "taxIdentificationNumber")


def _echo_address(a):
    a = dict(a)
    a.setdefault("addressType", "None")
    return {k: a[k] for k in _ADDRESS_ORDER if k in a}


def _echo_import(d):
    acct = {k: v for k, v in d["accountDetails"].items()
        if k not in ("dataAccountType", "sharePassword")}
    acct["dataAccountType"] = d["accountDetails"]["dataAccountType"]
    return {"logCollectionLevel": d.get("logCollectionLevel", "Error"),
        "accountDetails": acct}


def _who(req):
    tok = req.token or {}
    return tok.get("clientId", "unknown"), "Application"


# -- operations -------------------------------------------------------------

def _new_op(store, kind, job, api, opid=None, body=None):
    op = {"id": opid or str(uuid.uuid4()), "kind": kind, "job": _job_key(job),
        "sub": job["sub"], "rg": job["rg"], "name": job["name"],
        "location": job["location"].lower().replace(" ", ""),
        "apiVersion": api, "polls": 0, "started": time.time(), "done": False,
        "body": body, "fail": None}
    if store.lro_failures:
        op["fail"] = store.lro_failures.pop(0)
    store.ops[op["id"]] = op
    return op


def _job_key(job):
    return key(job["sub"], job["rg"], job["name"])


def _accepted(store, req, sub, op):
    if op["kind"] == "create" and store.config.get("createNoLocation"):
        # [inferred] alternative: 202 with neither Location nor
        # Azure-AsyncOperation; the job appears when the operation ends
        # (after lroSeconds).
        return _answer(store, req, sub, 202, b"", arm.retry_after(store))
    loc = arm.op_location(req, store, op)
    extra = []
    if op["kind"] == "create" and store.config.get("createAsyncOperation"):
        # [inferred] alternative: the ARM RPC's Azure-AsyncOperation header
        # (besides Location), whose status resource says Succeeded/Failed.
        extra = [("Azure-AsyncOperation", "%s/subscriptions/%s/providers/"
            "Microsoft.DataBox/locations/%s/operationStatuses/%s"
            "?api-version=%s" % (arm.op_base(req, store), op["sub"], op["location"],
            op["id"], op["apiVersion"]))]
    return _answer(store, req, sub, 202, b"",
        extra + [("Location", loc)] + arm.retry_after(store))


def _finish(store, op):
    """Apply a finished operation to its job (once)."""
    if op["done"]:
        return
    op["done"] = True
    job = store.jobs.get(op["job"])
    if job is None:
        return
    if op["fail"]:
        if op["kind"] == "create":
            del store.jobs[op["job"]]
        return
    if op["kind"] == "create":
        job["pending"] = False
        now = arm.now_iso()
        job["startTime"] = now
        job["stages"] = {"_initial": job["status"], job["status"]: now}
        job["statusChangedAt"] = time.time()
    elif op["kind"] == "update":
        _apply_patch(job, op["body"])
    elif op["kind"] == "delete":
        del store.jobs[op["job"]]


def settle(store):
    """Finish operations whose time is up and auto-advance jobs."""
    now = time.time()
    changed = False
    for op in list(store.ops.values()):
        if not op["done"] and now - op["started"] >= \
            store.config["lroSeconds"]:
            _finish(store, op)
            changed = True
    step = store.config.get("autoAdvanceSeconds") or 0
    for job in list(store.jobs.values()) if step > 0 else []:
        if job.get("kind") != "databox" or job["pending"]:
            continue
        if job["status"] in AWAITING or job["status"] in TERMINAL:
            continue
        if now - job.get("statusChangedAt", now) >= step:
            set_status(job, next_status(job))
            changed = True
    if changed:
        store.save()


# -- handlers ---------------------------------------------------------------

def _visible(store, sub, rg, name):
    job = store.jobs.get(key(sub, rg, name))
    if job is None or job["pending"]:
        return None
    return job


def h_get(store, req, sub, rg, name):
    job = _visible(store, sub, rg, name)
    pending = store.jobs.get(key(sub, rg, name))
    if job is None and pending is not None and \
        store.config.get("getWhileCreating"):
        # The plausible alternative to 404-while-creating [inferred]: the
        # job is readable, in its initial status, before its create
        # operation has finished.
        job = pending
    if job is None:
        return arm.not_found(RTYPE, name, rg)
    expand = (req.q("$expand") or "").lower() == "details"
    return _answer(store, req, sub, 200, arm.pretty(render(job, expand)))


def _list(store, req, sub, jobs):
    jobs = sorted(jobs, key=lambda j: (j["rg"].lower(), j["name"].lower()))
    chunk, link = arm.page(req, jobs, store.config["pageSize"])
    body = {"value": [render(j, True) for j in chunk]}
    if link:
        body["nextLink"] = link
    return _answer(store, req, sub, 200, arm.compact(body))


def h_list_rg(store, req, sub, rg):
    jobs = [j for j in store.jobs.values() if j.get("kind") == "databox"
        and not j["pending"] and j["sub"].lower() == sub.lower()
        and j["rg"].lower() == rg.lower()]
    return _list(store, req, sub, jobs)


def h_list_sub(store, req, sub):
    jobs = [j for j in store.jobs.values() if j.get("kind") == "databox"
        and not j["pending"] and j["sub"].lower() == sub.lower()]
    return _list(store, req, sub, jobs)


def h_put(store, req, sub, rg, name):
    body, bad = _schema(req, "JobResource")
    if bad is not None:
        return bad
    problems = _create_rules(store, req, body)
    if problems:
        code = "SimulatorUnsupported" if problems[0]["code"] == \
            "SimulatorUnsupported" else None
        if code:
            return arm.error(400, code, problems[0]["message"],
                target=problems[0]["path"])
        return arm.bad_content(problems)
    api = req.q("api-version")
    existing = store.jobs.get(key(sub, rg, name))
    if existing is not None:
        return _re_put(store, req, sub, rg, name, existing, body)
    job = _new_job(store, req, sub, rg, name, body)
    store.jobs[_job_key(job)] = job
    op = _new_op(store, "create", job, api)
    job["createOp"] = op["id"]
    store.save()
    return _accepted(store, req, sub, op)


def _re_put(store, req, sub, rg, name, job, body):
    """PUT on an existing name.  The spec says PUT cannot update a job;
    the real answer is unrecorded.  The simulator treats an identical body
    as an idempotent retry and a different one as 409 [inferred].  With
    config rePutConflict every re-PUT is 409, the plausible alternative."""
    if body != job["request"] or store.config.get("rePutConflict"):
        return arm.error(409, "ResourceAlreadyExists",
            "A job named '%s' already exists in resource group '%s'. "
            "Existing job cannot be updated with this API and should "
            "instead be updated with the Update job API." % (name, rg))
    op = store.ops.get(job.get("createOp"))
    if job["pending"] and op is not None:
        return _accepted(store, req, sub, op)
    return _answer(store, req, sub, 200, arm.pretty(render(job, False)))


def _new_job(store, req, sub, rg, name, body):
    det = body["properties"]["details"]
    who, who_type = _who(req)
    now = arm.now_iso()
    status = store.config.get("initialStatus") or "AwaitingShipmentDetails"
    return {"kind": "databox", "sub": sub, "rg": rg, "name": name,
        "location": body["location"], "tags": body.get("tags", {}),
        "identity": body.get("identity", {"type": "None"}),
        "request": body, "pending": True, "status": status,
        "transferType": body["properties"]["transferType"],
        "startTime": now, "createdAt": now, "modifiedAt": now,
        "createdBy": who, "createdByType": who_type, "modifiedBy": who,
        "details": _echo_details(det, name), "deliverToDc": None,
        "progress": {}, "stages": {}, "cancellationReason": None,
        "error": None, "returnPackage": None, "outcome": None}


def h_patch(store, req, sub, rg, name):
    job = _visible(store, sub, rg, name)
    if job is None:
        return arm.not_found(RTYPE, name, rg)
    body, bad = _schema(req, "JobResourceUpdateParameter")
    if bad is not None:
        return bad
    if job["status"] in TERMINAL:
        return arm.error(409, "InvalidJobState",
            "Job '%s' is in status '%s' and cannot be updated."
            % (name, job["status"]))
    op = _new_op(store, "update", job, req.q("api-version"), body=body)
    store.save()
    return _accepted(store, req, sub, op)


def _apply_patch(job, body):
    upd = (body.get("properties") or {}).get("details") or {}
    d = job["details"]
    if "contactDetails" in upd:
        d["contactDetails"] = _echo_contact(upd["contactDetails"])
    if "shippingAddress" in upd:
        d["shippingAddress"] = _echo_address(upd["shippingAddress"])
    for k in ("reverseShippingDetails", "keyEncryptionKey"):
        if k in upd:
            d[k] = copy.deepcopy(upd[k])
    if "preferences" in upd:
        prefs = copy.deepcopy(upd["preferences"])
        prefs.setdefault("encryptionPreferences",
            {"doubleEncryption": "Disabled"})
        d["preferences"] = prefs
    if "returnToCustomerPackageDetails" in upd:
        d["returnToCustomerPackageDetails"] = {k: v for k, v in
            upd["returnToCustomerPackageDetails"].items()
            if k != "carrierAccountNumber"}
    if "tags" in body:
        job["tags"] = copy.deepcopy(body["tags"])
    if "identity" in body:
        job["identity"] = copy.deepcopy(body["identity"])
    job["modifiedAt"] = arm.now_iso()


def h_delete(store, req, sub, rg, name):
    job = store.jobs.get(key(sub, rg, name))
    if job is None:
        # [spec] 204: "Resource does not exist."
        return _answer(store, req, sub, 204)
    if job["pending"]:
        return arm.error(409, "InvalidJobState",
            "Job '%s' is still being created." % name)
    if job["status"] not in TERMINAL:
        return arm.error(409, "JobNotDeletable",
            "Job '%s' is in status '%s' and cannot be deleted; cancel it "
            "first." % (name, job["status"]))
    for op in store.ops.values():
        if op["job"] == _job_key(job) and op["kind"] == "delete":
            return _accepted(store, req, sub, op)
    # [rec] the delete operation id is the create operation id +
    # "-deleteorder".
    opid = (job.get("createOp") or str(uuid.uuid4())) + "-deleteorder"
    op = _new_op(store, "delete", job, req.q("api-version"), opid=opid)
    store.save()
    return _accepted(store, req, sub, op)


def h_op_result(store, req, sub, loc, op):
    rec = store.ops.get(op)
    if rec is None or rec["sub"].lower() != sub.lower():
        return arm.error(404, "ResourceNotFound",
            "The operation '%s' was not found." % op)
    arm.check_signature(req, rec)
    if not rec["done"]:
        rec["polls"] += 1
        if rec["polls"] <= store.config["lroPolls"]:
            store.save()
            return _accepted(store, req, sub, rec)
        _finish(store, rec)
        store.save()
    if rec["fail"]:
        f = rec["fail"]
        return arm.error(f["status"], f["code"], f["message"])
    if rec["kind"] == "delete":
        return _answer(store, req, sub, 204)
    url = "%s/subscriptions/%s/resourceGroups/%s/providers/%s/%s" \
        "?api-version=%s" % (req.base, rec["sub"], rec["rg"], RTYPE,
        rec["name"], rec["apiVersion"])
    return _answer(store, req, sub, 202, b"", [("Location", url)])


def h_op_status(store, req, sub, loc, op):
    """Azure-AsyncOperation status resource [doc ARM async operations]:
    200 {id, name, status: InProgress|Succeeded|Failed, startTime,
    endTime?, error?}; lroPolls answers InProgress, like operationResults."""
    rec = store.ops.get(op)
    if rec is None or rec["sub"].lower() != sub.lower():
        return arm.error(404, "ResourceNotFound",
            "The operation '%s' was not found." % op)
    if not rec["done"]:
        rec["polls"] += 1
        if rec["polls"] > store.config["lroPolls"]:
            _finish(store, rec)
        store.save()
    body = {"id": req.path, "name": rec["id"], "status": "InProgress",
        "startTime": datetime.datetime.fromtimestamp(rec["started"],
        datetime.timezone.utc).isoformat()}
    if rec["done"]:
        body["status"] = "Failed" if rec["fail"] else "Succeeded"
        body["endTime"] = arm.now_iso()
        if rec["fail"]:
            body["error"] = {"code": rec["fail"]["code"],
                "message": rec["fail"]["message"]}
    return _answer(store, req, sub, 200, arm.compact(body))


def h_mark_shipped(store, req, sub, rg, name):
    job = _visible(store, sub, rg, name)
    if job is None:
        return arm.not_found(RTYPE, name, rg)
    body, bad = _schema(req, "MarkDevicesShippedRequest")
    if bad is not None:
        return bad
    pkg = body["deliverToDcPackageDetails"]
    missing = [f for f in ("carrierName", "trackingId") if not pkg.get(f)]
    if missing:
        return arm.bad_content([arm.problem(
            "deliverToDcPackageDetails." + f, "MissingRequiredProperty",
            "deliverToDcPackageDetails.%s is required." % f)
            for f in missing])
    if job["status"] not in AWAITING:
        return arm.error(409, "InvalidJobState",
            "Devices of job '%s' cannot be marked shipped in status '%s'."
            % (name, job["status"]))
    for other in store.jobs.values():
        dc = other.get("deliverToDc") or {}
        if other is not job and dc.get("trackingId") == pkg["trackingId"]:
            # [doc] one tracking number per job; the API behaviour is
            # unknown, so only warn.
            req.warn([arm.problem("deliverToDcPackageDetails.trackingId",
                "DuplicateTrackingId", "Tracking number already used by "
                "job '%s'." % other["name"])])
    job["deliverToDc"] = {"carrierName": pkg["carrierName"],
        "trackingId": pkg["trackingId"]}
    set_status(job, "ShippedToAzureDC")
    store.save()
    return _answer(store, req, sub, 204)


def h_cancel(store, req, sub, rg, name):
    job = _visible(store, sub, rg, name)
    if job is None:
        return arm.not_found(RTYPE, name, rg)
    body, bad = _schema(req, "CancellationReason")
    if bad is not None:
        return bad
    if job["status"] not in AWAITING:
        return arm.error(409, "JobNotCancellable",
            "Job '%s' in status '%s' cannot be cancelled (isCancellable is "
            "false)." % (name, job["status"]))
    job["cancellationReason"] = body["reason"]
    set_status(job, "Cancelled")
    store.save()
    return _answer(store, req, sub, 204)


def h_list_credentials(store, req, sub, rg, name):
    job = _visible(store, sub, rg, name)
    if job is None:
        return arm.not_found(RTYPE, name, rg)
    det = job["request"]["properties"]["details"]
    secrets = {"jobSecretsType": SKU, "diskSecrets": [
        {"diskSerialNumber": s, "bitLockerKey": d["bitLockerKey"]}
        for s, d in det["importDiskDetailsCollection"].items()],
        "carrierAccountNumber":
        det["returnToCustomerPackageDetails"].get("carrierAccountNumber", "")}
    body = {"value": [{"jobName": job["name"], "jobSecrets": secrets}]}
    return _answer(store, req, sub, 200, arm.compact(body))


def h_validate_inputs(store, req, sub, loc, rg=None):
    body, bad = _schema(req, "ValidationRequest")
    if bad is not None:
        return bad
    overrides = store.config.get("validationOverrides") or {}
    details, statuses = [], []
    for item in body["individualRequestDetails"]:
        vt = item["validationType"]
        status = overrides.get(vt, "Valid")
        statuses.append(status)
        # Per-item shape as in examples/ValidateInputs.json [spec example].
        err = {"additionalInfo": [], "code": "Success",
            "target": "KeyEncryptionKey", "details": []}
        if status != "Valid":
            err = {"additionalInfo": [], "code": "Invalid" + vt[8:],
                "message": "%s reported %s (simulator override)."
                % (vt, status), "details": []}
        entry = {"error": err, "validationType": vt}
        if vt == "ValidateAddress":
            entry["validationStatus"] = status if status != "Skipped" \
                else "Ambiguous"
            entry["alternateAddresses"] = [_echo_address(
                item["shippingAddress"])]
        else:
            entry["status"] = status
        details.append(entry)
    overall = "AllValidToProceed"
    if "Invalid" in statuses:
        overall = "InputsRevisitRequired"
    elif "Skipped" in statuses:
        overall = "CertainInputValidationsSkipped"
    out = {"properties": {"individualResponseDetails": details,
        "status": overall}}
    return _answer(store, req, sub, 200, arm.compact(out))


WAITING_ERROR = {"additionalInfo": [], "code":
    "SsemUserCopyErrorWaitingForAction", "message": "Job has an error in "
    "copy stage and is waiting for customer action.  Please review the error "
    "and select one of the actions provided in the job's "
    "properties.details.actions", "target": "CopyIntervention",
    "details": []}  # [spec] examples/JobsGetWaitingForAction.json


def h_mitigate(store, req, sub, rg, name):
    """POST mitigate [spec]: MitigateJobRequest, 204.  Service rules
    [inferred]: exactly one of customerResolutionCode and
    serialNumberCustomerResolutionMap; serials must be the job's disks; the
    job must be waiting for the customer (409 InvalidJobState) and the code
    one of the actions it offers (400 InvalidMitigationAction).  It ends the
    wait: error and actions cleared, lastMitigationActionOnJob set."""
    job = _visible(store, sub, rg, name)
    if job is None:
        return arm.not_found(RTYPE, name, rg)
    body, bad = _schema(req, "MitigateJobRequest")
    if bad is not None:
        return bad
    code = body.get("customerResolutionCode")
    per = body.get("serialNumberCustomerResolutionMap")
    if (code is None) == (per is None):
        return arm.bad_content([arm.problem("", "InvalidRequestContent",
            "Give exactly one of customerResolutionCode and "
            "serialNumberCustomerResolutionMap.")])
    disks = job["details"]["importDiskDetailsCollection"]
    for serial in per or {}:
        if serial not in disks:
            return arm.bad_content([arm.problem(
                "serialNumberCustomerResolutionMap." + serial,
                "InvalidSerialNumber", "Job '%s' has no disk '%s'."
                % (name, serial))])
    waiting = job.get("waiting")
    if not waiting:
        return arm.error(409, "InvalidJobState", "Job '%s' in status '%s' "
            "is not waiting for a customer action." % (name, job["status"]))
    codes = [code] if code is not None else list(per.values())
    offered = set(waiting.get("actions", []))
    for serial in per or {}:
        offered |= set(job["progress"].get(serial, {}).get("actions", []))
    for c in codes:
        if c not in offered:
            return arm.error(400, "InvalidMitigationAction", "Action '%s' is "
                "not one of the actions the job offers (%s)." % (c,
                ", ".join(sorted(offered)) or "none"))
    for serial in (per or disks):
        p = job["progress"].get(serial)
        if p is not None:
            p.pop("error", None)
            p["actions"] = []
    job["waiting"] = None
    job["error"] = None
    job["lastMitigation"] = {"actionDateTimeInUtc": arm.now_iso(),
        "isPerformedByCustomer": True, "customerResolution": codes[0]}
    job.setdefault("mitigations", []).append(body)
    job["modifiedAt"] = arm.now_iso()
    store.save()
    return _answer(store, req, sub, 204)


def wait_for_action(job, body):
    """Control API: the job waits for the customer in its current status
    [spec example]: properties.error (default: the example's),
    details.actions (default ["MoveToCleanUpDevice"], as in the example),
    optional per-disk "disks": {serial: {"error", "actions"}}.  Returns an
    error string or None."""
    if job["pending"]:
        return "job '%s' is still being created" % job["name"]
    if job["status"] not in ("AtAzureDC", "DataCopy"):
        # The example waits in DataCopy [spec]; AtAzureDC too [inferred].
        return "job '%s' in status '%s' cannot wait for an action" % (
            job["name"], job["status"])
    actions = body.get("actions", ["MoveToCleanUpDevice"])
    err = body.get("error", WAITING_ERROR)
    if not isinstance(actions, list):
        return "actions must be a list of CustomerResolutionCode values"
    for a in actions:
        errors, _ = spec().validate("CustomerResolutionCode", a)
        if errors:
            return "actions must be a list of CustomerResolutionCode values"
    if err is not None:
        errors, _ = spec().validate("CloudError", err, "response")
        if errors or not isinstance(err, dict):
            return "error must be a CloudError object or null"
    for serial, fields in (body.get("disks") or {}).items():
        e = drive_update(job, serial, fields)
        if e:
            return e
    job["waiting"] = {"actions": list(actions)}
    job["error"] = copy.deepcopy(err)
    job["modifiedAt"] = arm.now_iso()
    return None


# -- status machine (control API) -------------------------------------------

def next_status(job):
    status = job["status"]
    if status in AWAITING:
        return PATH[0]
    if status in PATH:
        i = PATH.index(status)
        if i + 1 < len(PATH):
            return PATH[i + 1]
        return job.get("outcome") or outcome(job)
    return None


def outcome(job):
    """Final status from the per-disk results [inferred: the reference
    could not verify which final status a job with errors ends in]."""
    for s in job["details"]["importDiskDetailsCollection"]:
        if job["progress"].get(s, {}).get("copyStatus") in COPY_FAILED:
            return "CompletedWithErrors"
    return "Completed"


def _drives(job):
    acct = _first_account(job).get("storageAccountId", "")
    return [{"serial": s, "manifestFile": d["manifestFile"],
        "manifestHash": d["manifestHash"], "storageAccountId": acct}
        for s, d in job["details"]["importDiskDetailsCollection"].items()]


def set_status(job, status):
    """Enter a status, running the datacenter hooks on the way."""
    dc = datacenter.current()
    serials = list(job["details"]["importDiskDetailsCollection"])
    if status in ("AtAzureDC", "DataCopy") or status in AFTER_COPY:
        for s in serials:
            job["progress"].setdefault(s, {"copyStatus": "NotStarted"})
    if status == "AtAzureDC":
        _merge(job, dc.received("databox", job, _drives(job)))
    if status == "DataCopy" or status in AFTER_COPY:
        for s in serials:
            p = job["progress"][s]
            p["logs"] = True
            if p["copyStatus"] == "NotStarted":
                p["copyStatus"] = "InProgress"
    if status == "DataCopy":
        _merge(job, dc.copy_started("databox", job, _drives(job)))
    if status in AFTER_COPY and not job.get("copied"):
        job["copied"] = True
        _merge(job, dc.copy("databox", job, _drives(job)))
        for s in serials:
            p = job["progress"][s]
            if p["copyStatus"] in ("NotStarted", "InProgress"):
                p["copyStatus"] = "Completed"
                p["bytesProcessed"] = p.get("totalBytesToProcess", 0)
                p["filesProcessed"] = p.get("totalFilesToProcess", 0)
    if status == "ShippedToCustomer" and not job.get("returnPackage"):
        ret = job["details"]["returnToCustomerPackageDetails"]
        job["returnPackage"] = {"trackingUrl": "",
            "carrierName": ret.get("carrierName", ""),
            "trackingId": "SIM" + hashlib.sha1(job["name"].encode())
            .hexdigest()[:10].upper()}
    now = arm.now_iso()
    job["status"] = status
    job["stages"][status] = now
    job["statusChangedAt"] = time.time()
    job["modifiedAt"] = now


def _merge(job, updates):
    for serial, fields in (updates or {}).items():
        job["progress"].setdefault(serial, {"copyStatus": "NotStarted"})
        job["progress"][serial].update(fields)


PROGRESS_FIELDS = PROGRESS_COUNTERS + ("copyStatus", "isEnumerationInProgress",
    "errorLogLink", "verboseLogLink", "error", "actions")


def drive_update(job, serial, fields):
    """Control API: set one disk's progress.  Returns an error string or
    None."""
    if not isinstance(fields, dict) or not isinstance(serial, str):
        return "per-disk data must be an object keyed by serial number"
    if serial not in job["details"]["importDiskDetailsCollection"]:
        return "job '%s' has no disk '%s'" % (job["name"], serial)
    clean = {}
    for k, v in fields.items():
        if k in ("serial", "serialNumber"):
            continue
        if k not in PROGRESS_FIELDS:
            return "unknown field '%s' (allowed: %s)" % (k,
                ", ".join(PROGRESS_FIELDS))
        clean[k] = v
    if "copyStatus" in clean:
        errors, _ = spec().validate("CopyStatus", clean["copyStatus"])
        if errors:
            return errors[0]["message"]
    if "error" in clean:
        errors, _ = spec().validate("CloudError", clean["error"], "response")
        if errors:
            return errors[0]["message"]
    for k in PROGRESS_COUNTERS:
        if k in clean and (not isinstance(clean[k], int)
            or isinstance(clean[k], bool) or clean[k] < 0):
            return "%s must be a non-negative integer" % k
    p = job["progress"].setdefault(serial, {"copyStatus": "NotStarted"})
    p.update(clean)
    if "errorLogLink" in clean or "verboseLogLink" in clean:
        p["logs"] = True
    job["modifiedAt"] = arm.now_iso()
    return None


def advance(job, body):
    """Control API: move the job.  body: {"status": X} | {"to": "next"},
    optional "disks": {serial: fields}, "outcome", "error".  Returns an
    error string or None."""
    if job["pending"]:
        return "job '%s' is still being created" % job["name"]
    disks = body.get("disks") or {}
    if not isinstance(disks, dict):
        return "disks must be an object keyed by serial number"
    for serial, fields in disks.items():
        err = drive_update(job, serial, fields)
        if err:
            return err
    if "outcome" in body:
        if not isinstance(body["outcome"], str) or \
            body["outcome"] not in TERMINAL:
            return "outcome must be one of %s" % ", ".join(TERMINAL)
        job["outcome"] = body["outcome"]
    if "error" in body:
        errors, _ = spec().validate("CloudError", body["error"], "response")
        if errors or not isinstance(body["error"], (dict, type(None))):
            return "error must be a CloudError object or null"
        job["error"] = body["error"]
    target = body.get("status") or body.get("state")
    if target is None and body.get("to", "next") == "next":
        target = next_status(job)
        if target is None:
            return "job '%s' is in final status '%s'" % (job["name"],
                job["status"])
    elif target is None:
        target = body["to"]
    if not isinstance(target, str):
        return "status must be a string"
    errors, _ = spec().validate("StageName", target)
    if errors:
        return errors[0]["message"]
    set_status(job, target)
    return None
