"""Microsoft.ImportExport jobs (the legacy API, api-versions 2016-11-01,
2020-08-01 and 2021-01-01): synchronous PUT/GET/PATCH/DELETE, lists,
listBitLockerKeys, the locations list, plus the state machine the control
API drives.

Shapes follow the recordings (Azure CLI 2016-11-01, Az PowerShell
2021-01-01) [rec], the 2021-01-01 spec and its examples [spec]; see
README.md for the basis of each behaviour.
"""

import copy
import datetime
import hashlib
import json
import os
import re
import time

import arm
import datacenter
import store as store_mod
import validate

RTYPE = "Microsoft.ImportExport/jobs"
CTYPE = arm.JSON_PLAIN  # [rec] "application/json", no charset
MAX_DRIVES = 10  # [spec] "List of up to ten drives"
PATH = ["Creating", "Shipping", "Received", "Transferring", "Packaging"]
TERMINAL = ("Completed", "Closed", "Canceled")
DRIVE_FIELDS = ("state", "copyStatus", "percentComplete", "bytesSucceeded",
    "verboseLogUri", "errorLogUri", "manifestUri")
ALIASES = {"bytesProcessed": "bytesSucceeded", "errorLogLink": "errorLogUri",
    "verboseLogLink": "verboseLogUri"}
_ADDRESS = ("recipientName", "streetAddress1", "streetAddress2", "city",
    "stateOrProvince", "postalCode", "countryOrRegion", "phone", "email")
_HASH_RE = re.compile(r"^[0-9A-Fa-f]{32}([0-9A-Fa-f]{32})?$")
_KEY_RE = re.compile(r"^\d{6}(-\d{6}){7}$")

_LOCATIONS = None


def spec(req=None):
    """The spec of the request's api-version (validate.importexport)."""
    return validate.importexport(req.q("api-version") if req is not None else None)


def locations():
    """The recorded Locations_List body [rec], loaded once."""
    global _LOCATIONS
    if _LOCATIONS is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
            "fixtures", "importexport-locations.json")
        with open(path, encoding="utf-8") as f:
            _LOCATIONS = json.load(f)["value"]
    return _LOCATIONS


def _norm(loc):
    return loc.replace(" ", "").lower()


def location_info(loc):
    """The Location for 'westus' or 'West US', or None."""
    for item in locations():
        if _norm(item["id"].rpartition("/")[2]) == _norm(loc) or \
            _norm(item["name"]) == _norm(loc):
            return item
    return None


def key(sub, rg, name):
    return "importexport/%s/%s/%s" % (sub.lower(), rg.lower(), name.lower())


# -- routing ----------------------------------------------------------------

_RG = ["subscriptions", "{sub}", "resourceGroups", "{rg}", "providers",
    "Microsoft.ImportExport"]
_SUB = ["subscriptions", "{sub}", "providers", "Microsoft.ImportExport"]
_TEN = ["providers", "Microsoft.ImportExport"]
ROUTES = [
    (_TEN + ["locations"], {"GET": "locations"}),
    (_TEN + ["locations", "{loc}"], {"GET": "location"}),
    (_SUB + ["jobs"], {"GET": "list_sub"}),
    (_RG + ["jobs"], {"GET": "list_rg"}),
    (_RG + ["jobs", "{name}"], {"GET": "get", "PUT": "put",
        "PATCH": "patch", "DELETE": "delete"}),
    (_RG + ["jobs", "{name}", "listBitLockerKeys"], {"POST": "keys"}),
]


def is_importexport(req):
    return "microsoft.importexport" in [s.lower() for s in req.segments]


def handle(store, req):
    import databox
    for pattern, methods in ROUTES:
        params = databox._match(req.segments, pattern)
        if params is None:
            continue
        name = methods.get(req.method)
        if name is None:
            return arm.error(405, "MethodNotAllowed",
                "The requested resource does not support http method "
                "'%s'." % req.method, ctype=CTYPE)
        checks = [arm.check_subscription(params["sub"])] \
            if "sub" in params else []
        if "rg" in params:
            checks.append(arm.check_resource_group(params["rg"]))
        checks.append(arm.check_api_version(req,
            store.config["importExportApiVersions"], "jobs"))
        for bad in checks:
            if bad is not None:
                return bad
        with store.lock:
            settle(store)
            return globals()["h_" + name](store, req, **params)
    return arm.error(404, "InvalidResourceType", "The resource type could "
        "not be found in the namespace 'Microsoft.ImportExport' for api "
        "version '%s'." % (req.q("api-version") or ""))


def _ok(status, obj):
    return arm.Response(status, arm.compact(obj), CTYPE)


def _bad(problems):
    return arm.bad_content(problems, ctype=CTYPE)


def _conflict(code, message):
    return arm.error(409, code, message, ctype=CTYPE)


# -- rendering --------------------------------------------------------------

def _address(a):
    return {k: a.get(k, "") for k in _ADDRESS}


def _shipping_info(loc):
    info = location_info(loc)
    if info is None:
        return None
    p = info["properties"]
    keys = ("recipientName", "streetAddress1", "streetAddress2", "city",
        "stateOrProvince", "postalCode", "countryOrRegion", "phone")
    return {k: p[k] for k in keys if k in p}


def _render_drive(d):
    out = {k: d[k] for k in ("driveId", "manifestFile", "manifestHash",
        "driveHeaderHash") if k in d}
    out["state"] = d.get("state", "Specified")
    for k in ("copyStatus", "percentComplete", "bytesSucceeded",
        "verboseLogUri", "errorLogUri", "manifestUri"):
        if k in d:
            out[k] = d[k]
    return out


def render(job, api, drives=True, display=True):
    """The JobResponse.  PUT echoes the location as sent; GET, list and
    PATCH use the display name [rec].  The resource-group list leaves out
    driveList [rec].  systemData from 2020-08-01 on [README, spec]."""
    p = job["props"]
    props = {"storageAccountId": p["storageAccountId"],
        "jobType": p["jobType"]}
    if "returnAddress" in p:
        props["returnAddress"] = _address(p["returnAddress"])
    if "returnShipping" in p:
        props["returnShipping"] = dict(p["returnShipping"])
    if job.get("shippingInformation"):
        props["shippingInformation"] = dict(job["shippingInformation"])
    if "deliveryPackage" in p:
        props["deliveryPackage"] = dict(p["deliveryPackage"])
    if job.get("returnPackage"):
        props["returnPackage"] = dict(job["returnPackage"])
    props.update({"diagnosticsPath": p["diagnosticsPath"],
        "logLevel": p["logLevel"],
        "backupDriveManifest": p["backupDriveManifest"],
        "cancelRequested": job["cancelRequested"], "state": job["state"]})
    if job["state"] not in ("Creating", "Shipping", "Received"):
        props["percentComplete"] = _percent(job)
    if drives:
        props["driveList"] = [_render_drive(job["drives"][i])
            for i in job["driveOrder"]]
    # "Succeeded" as recorded; config provisioningSeconds is the [inferred]
    # alternative of a job shown before its provisioning ends.
    props["provisioningState"] = "Creating" if time.time() < job.get(
        "provisionedAt", 0) else "Succeeded"
    props["encryptionKey"] = copy.deepcopy(p["encryptionKey"])
    out = {}
    if api >= "2020-08-01":
        out["systemData"] = {"createdBy": job["createdBy"],
            "createdByType": "Application", "createdAt": job["createdAt"],
            "lastModifiedBy": job["createdBy"],
            "lastModifiedByType": "Application",
            "lastModifiedAt": job["modifiedAt"]}
    out["properties"] = props
    out["identity"] = copy.deepcopy(job["identity"])
    out["id"] = "/subscriptions/%s/resourceGroups/%s/providers/%s/%s" % (
        job["sub"], job["rg"], RTYPE, job["name"])
    out["name"] = job["name"]
    out["type"] = RTYPE
    loc = job["location"]
    if display:
        info = location_info(loc)
        loc = info["name"] if info else loc
    out["location"] = loc
    if job.get("tags"):
        out["tags"] = copy.deepcopy(job["tags"])
    return out


def _percent(job):
    vals = [int(d.get("percentComplete", 0)) for d in job["drives"].values()]
    return sum(vals) // len(vals) if vals else 0


# -- request checks ---------------------------------------------------------

def _schema(req, definition):
    try:
        body = req.json()
    except arm.BadBody as e:
        return None, _bad([arm.problem("", "InvalidJson", str(e))])
    errors, warnings = spec(req).validate(definition, body, "request")
    req.warn(warnings)
    return body, (_bad(errors) if errors else None)


def _put_rules(store, req, body):
    """Rules beyond the schema for an import job [inferred unless
    noted].  Returns (problems, unsupported-message|None)."""
    p = arm.problem
    props = body.get("properties")
    out = []
    if not body.get("location"):
        out.append(p("location", "MissingRequiredProperty",
            "Required property 'location' not found in JSON."))
    elif location_info(body["location"]) is None:
        return [p("location", "LocationNotAvailableForResourceType",
            "The provided location '%s' is not available for resource "
            "type '%s'." % (body["location"], RTYPE))], None
    if not isinstance(props, dict):
        return out + [p("properties", "MissingRequiredProperty",
            "Required property 'properties' not found in JSON.")], None
    if props.get("jobType") == "Export":
        return [], "The simulator models only Import jobs."
    for f in ("storageAccountId", "jobType"):
        if not props.get(f):
            out.append(p("properties." + f, "MissingRequiredProperty",
                "Required property '%s' not found in JSON." % f))
    if props.get("jobType") not in (None, "", "Import"):
        out.append(p("properties.jobType", "InvalidJobType",
            "jobType must be 'Import' or 'Export'."))
    out += _drive_rules(store, req, props.get("driveList"))
    return out, None


def _drive_rules(store, req, drives):
    p = arm.problem
    if not drives:
        # [spec] "The drive list is a required element for an import job"
        return [p("properties.driveList", "MissingRequiredProperty",
            "driveList is required for an import job.")]
    if len(drives) > MAX_DRIVES:
        return [p("properties.driveList", "TooManyDrives",
            "A job can contain at most %d drives; %d given."
            % (MAX_DRIVES, len(drives)))]
    out, soft, seen = [], [], set()
    for i, d in enumerate(drives):
        path = "properties.driveList[%d]" % i
        did = d.get("driveId", "")
        for f in ("driveId", "bitLockerKey", "manifestFile",
            "manifestHash"):
            if not d.get(f):
                out.append(p(path + "." + f, "MissingRequiredProperty",
                    "Required property '%s' not found in JSON." % f))
        if " " in did:
            # [spec] "hardware serial number, without spaces"
            out.append(p(path + ".driveId", "InvalidDriveId",
                "driveId must not contain spaces."))
        if did in seen:
            out.append(p(path + ".driveId", "DuplicateDriveId",
                "driveId '%s' appears twice." % did))
        seen.add(did)
        if d.get("manifestHash") and not _HASH_RE.match(d["manifestHash"]):
            soft.append(p(path + ".manifestHash", "InvalidManifestHash",
                "manifestHash is not a Base16 hash."))
        if d.get("bitLockerKey") and not _KEY_RE.match(d["bitLockerKey"]):
            soft.append(p(path + ".bitLockerKey", "InvalidBitLockerKey",
                "bitLockerKey is not a 48-digit recovery password."))
    if soft and not store.config.get("strict"):
        req.warn(soft)
        soft = []
    return out + soft


def _job_props(props):
    """The JobDetails kept for rendering: defaults filled [rec, spec
    descriptions]; bitLockerKey is kept apart (never echoed [rec])."""
    out = {"storageAccountId": props["storageAccountId"],
        "jobType": props["jobType"],
        "diagnosticsPath": props.get("diagnosticsPath", "waimportexport"),
        "logLevel": props.get("logLevel", "Error"),
        "backupDriveManifest": bool(props.get("backupDriveManifest", False)),
        "encryptionKey": copy.deepcopy(props.get("encryptionKey",
        {"kekType": "MicrosoftManaged"}))}
    for k in ("returnAddress", "returnShipping", "deliveryPackage"):
        if k in props:
            out[k] = copy.deepcopy(props[k])
    return out


def _drive_record(d):
    out = {k: d[k] for k in ("driveId", "manifestFile", "manifestHash",
        "driveHeaderHash") if k in d}
    out["state"] = "Specified"
    return out


# -- handlers ---------------------------------------------------------------

def h_locations(store, req):
    return _ok(200, {"value": locations()})


def h_location(store, req, loc):
    info = location_info(loc)
    if info is None:
        return arm.error(404, "ResourceNotFound", "The location '%s' was "
            "not found." % loc, ctype=CTYPE)
    return _ok(200, info)


def _list(store, req, jobs, drives):
    top = req.q("$top")
    if top is not None:
        try:
            n = int(top)
        except ValueError:
            n = -1
        if not 0 <= n <= 100:
            # [spec] "The value cannot exceed 100."
            return _bad([arm.problem("$top", "InvalidTop",
                "$top must be an integer between 0 and 100.")])
        jobs = jobs[:n]
    chunk, link = arm.page(req, jobs, store.config["pageSize"])
    api = req.q("api-version")
    body = {"value": [render(j, api, drives=drives) for j in chunk]}
    if link:
        body["nextLink"] = link
    return _ok(200, body)


def _jobs(store, sub, rg=None):
    out = [j for j in store.jobs.values() if j.get("kind") == "importexport"
        and j["sub"].lower() == sub.lower()
        and (rg is None or j["rg"].lower() == rg.lower())]
    return sorted(out, key=lambda j: (j["rg"].lower(), j["name"].lower()))


def h_list_sub(store, req, sub):
    return _list(store, req, _jobs(store, sub), True)


def h_list_rg(store, req, sub, rg):
    return _list(store, req, _jobs(store, sub, rg), False)


def h_get(store, req, sub, rg, name):
    job = store.jobs.get(key(sub, rg, name))
    if job is None:
        return arm.not_found(RTYPE, name, rg)
    return _ok(200, render(job, req.q("api-version")))


def h_put(store, req, sub, rg, name):
    body, bad = _schema(req, "PutJobParameters")
    if bad is not None:
        return bad
    problems, unsupported = _put_rules(store, req, body)
    if unsupported:
        return arm.error(400, "SimulatorUnsupported", unsupported,
            ctype=CTYPE)
    if problems:
        return _bad(problems)
    api = req.q("api-version")
    job = store.jobs.get(key(sub, rg, name))
    if job is not None:
        if body == job["request"]:
            return _ok(200, render(job, api, display=False))
        if job["state"] != "Creating":
            return _conflict("InvalidJobState", "Job '%s' is in state '%s' "
                "and can no longer be replaced." % (name, job["state"]))
        _fill(job, body)
        store.save()
        return _ok(200, render(job, api, display=False))
    tok = req.token or {}
    now = arm.now_z()
    job = {"kind": "importexport", "sub": sub, "rg": rg, "name": name,
        "state": "Creating", "cancelRequested": False,
        "createdBy": tok.get("clientId", "unknown"), "createdAt": now,
        "stages": {"Creating": now}, "statusChangedAt": time.time()}
    cur = store.config.get("provisioningSeconds") or 0
    if cur > 0:
        job["provisionedAt"] = time.time() + cur
    _fill(job, body)
    store.jobs[key(sub, rg, name)] = job
    store.save()
    return _ok(201, render(job, api, display=False))


def _fill(job, body):
    props = body["properties"]
    job["request"] = body
    job["location"] = body["location"]
    job["tags"] = copy.deepcopy(body.get("tags") or {})
    job["identity"] = {"type": "None"}
    job["props"] = _job_props(props)
    job["shippingInformation"] = _shipping_info(body["location"])
    job["drives"] = {d["driveId"]: _drive_record(d)
        for d in props["driveList"]}
    job["driveOrder"] = [d["driveId"] for d in props["driveList"]]
    job["keys"] = {d["driveId"]: d["bitLockerKey"]
        for d in props["driveList"]}
    job["returnPackage"] = None
    job["modifiedAt"] = arm.now_z()


def h_patch(store, req, sub, rg, name):
    job = store.jobs.get(key(sub, rg, name))
    if job is None:
        return arm.not_found(RTYPE, name, rg)
    body, bad = _schema(req, "UpdateJobParameters")
    if bad is not None:
        return bad
    upd = body.get("properties") or {}
    err = _patch_rules(job, upd)
    if err is not None:
        return err
    p = job["props"]
    for k in ("returnAddress", "returnShipping", "deliveryPackage"):
        if k in upd:
            p[k] = copy.deepcopy(upd[k])
    for k in ("logLevel", "backupDriveManifest"):
        if k in upd:
            p[k] = upd[k]
    for d in upd.get("driveList") or []:
        rec = job["drives"][d["driveId"]]
        for f in ("manifestFile", "manifestHash", "driveHeaderHash"):
            if f in d:
                rec[f] = d[f]
        if "bitLockerKey" in d:
            job["keys"][d["driveId"]] = d["bitLockerKey"]
    if "tags" in body:
        job["tags"] = copy.deepcopy(body["tags"])
    if upd.get("cancelRequested"):
        # [rec] the job stays "Creating" with cancelRequested true.
        job["cancelRequested"] = True
    if upd.get("state") == "Shipping":
        set_state(job, "Shipping")
    job["modifiedAt"] = arm.now_z()
    store.save()
    return _ok(200, render(job, req.q("api-version")))


def _patch_rules(job, upd):
    """PATCH rules from the spec descriptions and docs; conflict codes
    [inferred]."""
    p = arm.problem
    state = job["state"]
    if state in TERMINAL:
        return _conflict("InvalidJobState", "Job '%s' is in state '%s' and "
            "cannot be updated." % (job["name"], state))
    if "cancelRequested" in upd:
        if upd["cancelRequested"] is not True:
            return _bad([p("properties.cancelRequested", "InvalidValue",
                "If specified, cancelRequested must be true.")])
        if state != "Creating":
            # [doc] a job can be cancelled only while it is Creating.
            return _conflict("JobNotCancellable", "Job '%s' in state '%s' "
                "cannot be cancelled." % (job["name"], state))
    want = upd.get("state")
    if want not in (None, "", "Shipping"):
        return _bad([p("properties.state", "InvalidValue",
            "If specified, state must be 'Shipping'.")])
    if want == "Shipping":
        if state != "Creating" or job["cancelRequested"]:
            return _conflict("InvalidJobState", "Job '%s' in state '%s' "
                "cannot move to Shipping." % (job["name"], state))
        for f in ("returnAddress", "deliveryPackage"):
            if f not in upd and f not in job["props"]:
                # [spec] both must be set in this or an earlier request.
                return _bad([p("properties." + f, "MissingRequiredProperty",
                    "%s must be set before the state can be Shipping."
                    % f)])
    for d in upd.get("driveList") or []:
        if d.get("driveId") not in job["drives"]:
            return _bad([p("properties.driveList", "UnknownDrive",
                "Drive '%s' is not part of the job." % d.get("driveId"))])
        if state != "Creating":
            return _conflict("InvalidJobState", "Drives can only be changed "
                "while the job is Creating.")
    return None


def h_delete(store, req, sub, rg, name):
    job = store.jobs.get(key(sub, rg, name))
    if job is None:
        # Not in the spec (200 only); ARM's usual answer [inferred].
        return arm.Response(204)
    if job["state"] not in ("Creating", "Completed"):
        # [spec] "Only jobs in the Creating or Completed states can be
        # deleted."
        return _conflict("JobNotDeletable", "Job '%s' in state '%s' cannot "
            "be deleted." % (name, job["state"]))
    del store.jobs[key(sub, rg, name)]
    store.save()
    return arm.Response(200)


def h_keys(store, req, sub, rg, name):
    job = store.jobs.get(key(sub, rg, name))
    if job is None:
        return arm.not_found(RTYPE, name, rg)
    return _ok(200, {"value": [{"driveId": i, "bitLockerKey": job["keys"][i]}
        for i in job["driveOrder"]]})


# -- state machine (control API) --------------------------------------------

def settle(store):
    step = store.config.get("autoAdvanceSeconds") or 0
    if step <= 0:
        return
    now = time.time()
    changed = False
    for job in list(store.jobs.values()):
        if job.get("kind") != "importexport":
            continue
        if job["state"] in ("Creating",) + TERMINAL:
            continue
        if now - job.get("statusChangedAt", now) >= step:
            set_state(job, next_state(job))
            changed = True
    if changed:
        store.save()


def next_state(job):
    state = job["state"]
    if state in PATH:
        i = PATH.index(state)
        return PATH[i + 1] if i + 1 < len(PATH) else \
            job.get("outcome") or outcome(job)
    return None


def outcome(job):
    """Completed without errors, Closed with errors [doc]."""
    for d in job["drives"].values():
        if d.get("state") in ("CompletedMoreInfo", "NeverReceived"):
            return "Closed"
    return "Completed"


def _log_uri(job, drive_id, kind):
    acct = job["props"]["storageAccountId"].rstrip("/").rpartition("/")[2]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y%m%d-%H%M%S-%f")[:-3]
    # Naming as in the spec example ListJobsInSubscription.json [spec].
    return "https://%s.blob.core.windows.net/%s/waies/%s_%s_%s_%s.xml" % (
        acct, job["props"]["diagnosticsPath"], job["name"], drive_id, stamp,
        kind)


def _drives(job):
    acct = job["props"]["storageAccountId"]
    return [{"serial": i, "manifestFile": job["drives"][i].get(
        "manifestFile"), "manifestHash": job["drives"][i].get("manifestHash"),
        "storageAccountId": acct} for i in job["driveOrder"]]


def set_state(job, state):
    """Enter a job state; drive states follow [doc drive-state table]."""
    dc = datacenter.current()
    drives = job["drives"]
    if state == "Received":
        _merge(job, dc.received("importexport", job, _drives(job)))
        for d in drives.values():
            if d["state"] == "Specified":
                d["state"] = "Received"
    if state == "Transferring":
        for i, d in drives.items():
            if d["state"] in ("Specified", "Received"):
                d["state"] = "Transferring"
            d.setdefault("copyStatus", "InProgress")
            d.setdefault("percentComplete", 0)
            d.setdefault("bytesSucceeded", 0)
            d.setdefault("errorLogUri", _log_uri(job, i, "error"))
            if job["props"]["logLevel"] == "Verbose":
                d.setdefault("verboseLogUri", _log_uri(job, i, "verbose"))
            if job["props"]["backupDriveManifest"]:
                d.setdefault("manifestUri", _log_uri(job, i, "manifest"))
        _merge(job, dc.copy_started("importexport", job, _drives(job)))
    ahead = (store_mod.current().config.get("jobAheadOfDrives")
        if store_mod.current() else False)
    if state in ("Packaging",) + TERMINAL[:2] and not job.get("copied") \
        and not ahead:
        # [inferred] the drives finish when the job leaves Transferring;
        # config jobAheadOfDrives is the alternative: the job's state runs
        # ahead and each drive's state is set on its own (control API).
        job["copied"] = True
        _merge(job, _aliased(dc.copy("importexport", job, _drives(job))))
        for d in drives.values():
            if d["state"] in ("Specified", "Received", "Transferring"):
                d["state"] = "Completed"
                # copyStatus is free text [spec "Detailed status about the
                # data transfer process"]; its words are [inferred], and
                # config copyStatusCompleted sets other ones.
                d["copyStatus"] = _copy_text()
                d["percentComplete"] = 100
    if state in TERMINAL[:2]:
        _ship_back(job)
    now = arm.now_z()
    job["state"] = state
    job.setdefault("stages", {})[state] = now
    job["statusChangedAt"] = time.time()
    job["modifiedAt"] = now


def _copy_text():
    cur = store_mod.current()
    return (cur.config.get("copyStatusCompleted") if cur else None) or \
        "Completed"


def _ship_back(job):
    for d in job["drives"].values():
        if d["state"] in ("Completed", "CompletedMoreInfo"):
            d["state"] = "ShippedBack"
    if job.get("returnPackage"):
        return
    ret = job["props"].get("returnShipping") or \
        job["props"].get("deliveryPackage") or {}
    job["returnPackage"] = {"carrierName": ret.get("carrierName", ""),
        "trackingNumber": "SIM" + hashlib.sha1(job["name"].encode())
        .hexdigest()[:10].upper(), "driveCount": len(job["drives"]),
        "shipDate": time.strftime("%m/%d/%Y", time.gmtime())}


def _aliased(updates):
    return {s: {ALIASES.get(k, k): v for k, v in f.items()}
        for s, f in (updates or {}).items()}


def _merge(job, updates):
    for serial, fields in (updates or {}).items():
        if serial in job["drives"]:
            job["drives"][serial].update(fields)


def drive_update(job, serial, fields):
    """Control API: set one drive's status.  Returns an error string or
    None."""
    if not isinstance(fields, dict) or not isinstance(serial, str):
        return "per-disk data must be an object keyed by serial number"
    if serial not in job["drives"]:
        return "job '%s' has no drive '%s'" % (job["name"], serial)
    clean = {}
    for k, v in fields.items():
        if k in ("serial", "driveId", "serialNumber"):
            continue
        k = ALIASES.get(k, k)
        if k not in DRIVE_FIELDS:
            return "unknown field '%s' (allowed: %s)" % (k,
                ", ".join(DRIVE_FIELDS + tuple(ALIASES)))
        clean[k] = v
    if "state" in clean:
        enum = spec().definition("DriveStatus")["properties"]["state"]["enum"]
        if clean["state"] not in enum:
            return "state must be one of %s" % ", ".join(enum)
    if "percentComplete" in clean and not (isinstance(
        clean["percentComplete"], int) and 0 <= clean["percentComplete"]
        <= 100):
        return "percentComplete must be an integer 0..100"
    job["drives"][serial].update(clean)
    job["modifiedAt"] = arm.now_z()
    return None


def advance(job, body):
    """Control API: {"state": X} | {"to": "next"}, optional "drives":
    {driveId: fields} and "outcome" ("Completed" | "Closed")."""
    drives = body.get("drives") or body.get("disks") or {}
    if not isinstance(drives, dict):
        return "drives must be an object keyed by driveId"
    for serial, fields in drives.items():
        err = drive_update(job, serial, fields)
        if err:
            return err
    if "outcome" in body:
        if not isinstance(body["outcome"], str) or \
            body["outcome"] not in TERMINAL[:2]:
            return "outcome must be Completed or Closed"
        job["outcome"] = body["outcome"]
    target = body.get("state") or body.get("status")
    if target is None:
        if body.get("to", "next") != "next":
            target = body["to"]
        else:
            target = next_state(job)
            if target is None:
                return "job '%s' is in final state '%s'" % (job["name"],
                    job["state"])
    if not isinstance(target, str) or not target:
        return "state must be a non-empty string"
    set_state(job, target)
    return None
