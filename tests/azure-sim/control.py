"""The control API: plain HTTP + JSON on its own loopback port, for tests
to configure the simulator, move jobs along and inspect what it received.

  GET    /health
  GET    /config                       POST /config {key: value...}
  GET    /clients                      POST /clients {tenant, clientId,
                                           secret, tokenLifetime?, secretExpired?}
  POST   /tokens/expire {clientId?}     expire issued tokens now
  GET    /jobs[?kind=&rg=&name=]        GET /jobs/{name}
  POST   /jobs/{name}/advance           {"status"|"state": X} or {"to": "next"}
                                        (+ "disks"/"drives", "outcome", "error")
  POST   /jobs/{name}/drive-status      {serial, copyStatus, bytesProcessed...}
  GET|POST /jobs/{name}/drives          {serial: "/drive/dir"...}
  GET|POST|DELETE /jobs/{name}/import-faults {drop|corrupt|...: [path]}
  GET|POST|DELETE /jobs/{name}/import-options {contentMd5, verboseLog,
                                        blockIdsInLog, driveFailure}
  GET|POST /jobs/{name}/import          results / import told drives now
                                        (the last three: datacenter.py)
  GET    /faults   POST /faults   DELETE /faults
  GET    /requests[?since=SEQ]          DELETE /requests
  POST   /reset

Job names are matched without case; add ?kind=databox|importexport (and
&rg=, &sub=) when a name is ambiguous.
"""

import json
import re
import time
import urllib.parse

import databox
import datacenter
import importexport
import store as store_mod

FAULTS = ("429", "500", "503", "hang", "reset", "malformed",
    "expired_token", "lro_fail")


class ControlError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def handle(store, method, raw_path, body):
    """Returns (status, object)."""
    split = urllib.parse.urlsplit(raw_path)
    query = {k: v[0] for k, v in urllib.parse.parse_qs(split.query).items()}
    segs = [urllib.parse.unquote(s) for s in split.path.split("/") if s]
    try:
        data = json.loads(body.decode("utf-8")) if body else {}
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        return 400, {"error": "invalid JSON body: %s" % e}
    try:
        with store.lock:
            return _dispatch(store, method, segs, query, data)
    except ControlError as e:
        return e.status, {"error": str(e)}


def _dispatch(store, method, segs, query, data):
    route = (method, tuple(segs[:1]), len(segs))
    if segs == ["health"]:
        return 200, {"ok": True}
    if segs == ["reset"] and method == "POST":
        store.reset()
        store.save()
        return 200, {"ok": True}
    if segs == ["config"]:
        return _config(store, method, data)
    if segs == ["clients"]:
        return _clients(store, method, data)
    if segs == ["tokens", "expire"] and method == "POST":
        return _expire(store, data)
    if segs and segs[0] == "jobs":
        return _jobs(store, method, segs[1:], query, data)
    if segs == ["faults"]:
        return _faults(store, method, data)
    if segs == ["requests"]:
        return _requests(store, method, query)
    raise ControlError(404, "no such control endpoint: %s %s" % (
        route[0], "/" + "/".join(segs)))


def _config(store, method, data):
    if method == "POST":
        for k, v in data.items():
            if k not in store_mod.DEFAULT_CONFIG:
                raise ControlError(400, "unknown config key '%s'" % k)
            _config_type(k, v)
        store.config.update(data)
        store.save()
    elif method != "GET":
        raise ControlError(405, "GET or POST")
    return 200, store.config


def _config_type(k, v):
    want = store_mod.DEFAULT_CONFIG[k]
    if k == "lroRetryAfter" and v is None:
        return
    num = (int, float)
    if isinstance(want, bool):
        ok = isinstance(v, bool)
    elif isinstance(want, num) or want is None:
        ok = isinstance(v, num) and not isinstance(v, bool) and v >= 0
    elif isinstance(want, list):
        ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
    elif isinstance(want, dict):
        ok = isinstance(v, dict) and all(isinstance(x, str)
            for x in v.values())
    else:
        ok = isinstance(v, type(want))
    if k == "initialStatus":
        ok = v in databox.AWAITING
    if k == "validationOverrides":
        ok = ok and all(x in ("Valid", "Invalid", "Skipped")
            for x in v.values())
    if k == "tokenLifetime":
        ok = ok and isinstance(v, int) and v >= 1
    if not ok:
        raise ControlError(400, "config '%s' has the wrong type or value"
            % k)


def _clients(store, method, data):
    if method == "GET":
        return 200, [{k: v for k, v in c.items() if k != "secret"}
            for c in store.clients.values()]
    if method != "POST":
        raise ControlError(405, "GET or POST")
    for k in ("tenant", "clientId", "secret"):
        if not isinstance(data.get(k), str) or not data[k]:
            raise ControlError(400, "'%s' (non-empty string) is required" % k)
    life = data.get("tokenLifetime") or store.config["tokenLifetime"]
    if not isinstance(life, int) or isinstance(life, bool) or life < 1:
        raise ControlError(400, "tokenLifetime must be a positive integer")
    client = {"tenant": data["tenant"], "clientId": data["clientId"],
        "secret": data["secret"], "tokenLifetime": life,
        "secretExpired": bool(data.get("secretExpired", False))}
    store.clients[client["tenant"] + "/" + client["clientId"]] = client
    store.save()
    return 201, {k: v for k, v in client.items() if k != "secret"}


def _expire(store, data):
    n = 0
    for info in store.tokens.values():
        if data.get("clientId") in (None, info["clientId"]):
            info["expiresAt"] = min(info["expiresAt"], time.time())
            n += 1
    store.save()
    return 200, {"expired": n}


# -- jobs -------------------------------------------------------------------

def _summary(job, full=True):
    if job["kind"] == "databox":
        out = {"kind": "databox", "sub": job["sub"], "rg": job["rg"],
            "name": job["name"], "pending": job["pending"],
            "status": job["status"]}
        if full:
            out["job"] = databox.render(job, True)
            out["deliverToDc"] = job.get("deliverToDc")
    else:
        out = {"kind": "importexport", "sub": job["sub"], "rg": job["rg"],
            "name": job["name"], "pending": False, "status": job["state"]}
        if full:
            out["job"] = importexport.render(job, "2021-01-01")
    return out


def _find(store, name, query):
    hits = []
    for job in store.jobs.values():
        if name is not None and job["name"].lower() != name.lower():
            continue
        if query.get("kind") not in (None, job["kind"]):
            continue
        if query.get("rg") and query["rg"].lower() != job["rg"].lower():
            continue
        if query.get("sub") and query["sub"].lower() != job["sub"].lower():
            continue
        hits.append(job)
    return hits


def _one(store, name, query):
    hits = _find(store, name, query)
    if not hits:
        raise ControlError(404, "no job named '%s'" % name)
    if len(hits) > 1:
        raise ControlError(409, "job name '%s' is ambiguous; add ?kind=, "
            "&rg= or &sub=" % name)
    return hits[0]


def _jobs(store, method, rest, query, data):
    if not rest:
        if method != "GET":
            raise ControlError(405, "GET")
        jobs = _find(store, query.get("name"), query)
        return 200, [_summary(j) for j in jobs]
    job = _one(store, rest[0], query)
    if len(rest) == 1 and method == "GET":
        return 200, _summary(job)
    mod = databox if job["kind"] == "databox" else importexport
    if len(rest) == 2 and rest[1] in datacenter.ACTIONS:
        status, out = datacenter.control(job, method, rest[1], data, mod)
        store.save()
        return status, out
    if len(rest) != 2 or method != "POST":
        raise ControlError(404, "use GET /jobs/{name}, POST "
            "/jobs/{name}/advance or /jobs/{name}/drive-status")
    if rest[1] == "advance":
        err = mod.advance(job, data)
    elif rest[1] == "wait-for-action" and mod is databox:
        err = databox.wait_for_action(job, data)
    elif rest[1] == "drive-status":
        serial = data.get("serial") or data.get("serialNumber") or \
            data.get("driveId")
        if not serial:
            raise ControlError(400, "'serial' is required")
        err = mod.drive_update(job, serial, data)
    else:
        raise ControlError(404, "unknown job action '%s'" % rest[1])
    if err:
        raise ControlError(400, err)
    store.save()
    return 200, _summary(job)


# -- faults -----------------------------------------------------------------

def _faults(store, method, data):
    if method == "GET":
        return 200, [_fault_view(f) for f in store.faults]
    if method == "DELETE":
        store.faults = []
        store.lro_failures = []
        return 200, {"ok": True}
    if method != "POST":
        raise ControlError(405, "GET, POST or DELETE")
    kind = str(data.get("fault", ""))
    if kind not in FAULTS:
        raise ControlError(400, "fault must be one of %s" % ", ".join(FAULTS))
    match = data.get("match") or {}
    if not isinstance(match, dict):
        raise ControlError(400, "match must be an object")
    try:
        rx = re.compile(match.get("path_regex") or "")
    except re.error as e:
        raise ControlError(400, "bad path_regex: %s" % e)
    want = str(match.get("method") or "").upper()
    count = data.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ControlError(400, "count must be a positive integer")
    fault = {"fault": kind, "count": count, "remaining": count,
        "spec": {"match": match, **{k: v for k, v in data.items()
        if k not in ("match", "fault", "count")}},
        "match": _matcher(kind, want, rx)}
    for k in ("retry_after", "seconds", "status"):
        if k in data and not isinstance(data[k], (int, float)):
            raise ControlError(400, "%s must be a number" % k)
    return 201, _fault_view(store.add_fault(fault))


def _matcher(kind, method, rx):
    def match(m, path):
        if method and m != method:
            return False
        if kind == "lro_fail" and m not in ("PUT", "PATCH", "DELETE"):
            return False
        return rx.search(path) is not None
    return match


def _fault_view(f):
    return {"id": f["id"], "fault": f["fault"], "count": f["count"],
        "remaining": f["remaining"], **f["spec"]}


def _requests(store, method, query):
    if method == "DELETE":
        store.log = []
        return 200, {"ok": True}
    try:
        since = int(query.get("since", 0))
    except ValueError:
        raise ControlError(400, "since must be an integer")
    return 200, [e for e in store.log if e["seq"] > since]
