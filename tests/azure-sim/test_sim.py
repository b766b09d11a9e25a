#!/usr/bin/env python3
"""Self-test of the Azure simulator: starts azuresim.py (HTTP, and HTTPS
with a throw-away CA from mkcert.sh when openssl is installed), drives
every API and control endpoint, and checks the answers against the
recorded traffic (fixtures/recorded.json) and the vendored specs.
Exit 0 when every check passes.  Leaves no process behind.
"""

import sys

sys.dont_write_bytecode = True

import email.utils  # noqa: E402
import hashlib  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import validate  # noqa: E402

SUB = "00000000-0000-0000-0000-000000000000"
SUB2 = "11111111-2222-3333-4444-555555555555"
TENANT, APP, SECRET = "tenant-1", "app-1", "s3cr3t-Value~1"
ARM_SCOPE = "https://management.azure.com/.default"
BITLOCKER = "111111-222222-333333-444444-555555-666666-777777-888888"
HASH = "69512026C1E8D4401816A2E5B8D7420D"
FAILS = []
CHECKS = [0]
T0 = time.time()


def check(cond, what):
    CHECKS[0] += 1
    if not cond:
        FAILS.append(what)
        print("not ok - %s" % what, flush=True)


# -- process and HTTP helpers -----------------------------------------------

class Sim:
    def __init__(self, state, tls=None):
        args = [sys.executable, os.path.join(HERE, "azuresim.py"),
            "--port", "0", "--control-port", "0", "--state-file", state]
        if tls:
            args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
            stderr=None, text=True)
        line = self.proc.stdout.readline()
        info = json.loads(line)
        self.url, self.control = info["url"], info["control"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def h(self, name):
        return self.headers.get(name.lower())


def request(url, method="GET", body=None, headers=None, timeout=10, ca=None):
    u = urllib.parse.urlsplit(url)
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=ca)
        conn = http.client.HTTPSConnection(u.hostname, u.port,
            timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port,
            timeout=timeout)
    path = u.path + ("?" + u.query if u.query else "")
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = dict(headers or {}, **{"Content-Type": "application/json"})
    elif isinstance(body, str):
        body = body.encode()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()},
            data)
    finally:
        conn.close()


class Api:
    """ARM + control calls against one simulator."""

    def __init__(self, sim, ca=None):
        self.sim, self.ca, self.token = sim, ca, None

    def ctl(self, method, path, body=None):
        r = request(self.sim.control + path, method, body)
        return r.status, (r.json() if r.body else None)

    def get_token(self, secret=SECRET, scope=ARM_SCOPE, tenant=TENANT,
        client=APP):
        form = urllib.parse.urlencode({"grant_type": "client_credentials",
            "client_id": client, "client_secret": secret, "scope": scope})
        return request("%s/%s/oauth2/v2.0/token" % (self.sim.url, tenant),
            "POST", form, {"Content-Type":
            "application/x-www-form-urlencoded"}, ca=self.ca)

    def login(self):
        r = self.get_token()
        self.token = r.json()["access_token"]
        return r

    def arm(self, method, path, body=None, api="2025-07-01", token=None,
        timeout=10, extra=None):
        url = path if path.startswith("http") else self.sim.url + path
        if api is not None and "api-version=" not in url:
            url += ("&" if "?" in url else "?") + "api-version=" + api
        h = dict(extra or {})
        tok = token if token is not None else self.token
        if tok:
            h["Authorization"] = "Bearer " + tok
        return request(url, method, body, h, timeout=timeout, ca=self.ca)


def job_path(name, rg="rg1", sub=SUB, provider="Microsoft.DataBox"):
    return "/subscriptions/%s/resourceGroups/%s/providers/%s/jobs/%s" % (
        sub, rg, provider, name)


def job_body(serials=("SER1",), **over):
    disks = {s: {"bitLockerKey": BITLOCKER, "manifestFile":
        "\\DriveManifest.xml", "manifestHash": HASH} for s in serials}
    det = {"jobDetailsType": "DataBoxCustomerDisk",
        "contactDetails": {"contactName": "Ops", "phone": "14255550100",
        "emailList": ["ops@example.com"]},
        "shippingAddress": {"streetAddress1": "1 Main St", "city": "Redmond",
        "stateOrProvince": "WA", "country": "US", "postalCode": "98052"},
        "returnToCustomerPackageDetails": {"carrierName": "FedEx",
        "carrierAccountNumber": "ACCT-9876"},
        "importDiskDetailsCollection": disks,
        "dataImportDetails": [{"accountDetails": {"dataAccountType":
        "StorageAccount", "storageAccountId": "/subscriptions/%s/"
        "resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/"
        "acct1" % SUB}, "logCollectionLevel": "Verbose"}],
        "keyEncryptionKey": {"kekType": "MicrosoftManaged"}}
    det.update(over)
    return {"location": "westus", "sku": {"name": "DataBoxCustomerDisk"},
        "properties": {"transferType": "ImportToAzure", "details": det}}


def run_lro(api, resp, limit=10):
    """Follow Location until a non-202; returns (final, polls)."""
    polls = 0
    while resp.status == 202 and polls < limit:
        loc = resp.h("Location")
        resp = api.arm("GET", loc, api=None)
        polls += 1
    return resp, polls


def create(api, name, body=None, rg="rg1"):
    r = api.arm("PUT", job_path(name, rg), body or job_body())
    final, _ = run_lro(api, r)
    return r, final


def db_errors(obj, definition="JobResource"):
    return validate.databox().validate(definition, obj, "response")[0]


def ie_errors(obj, definition="JobResponse"):
    return validate.importexport().validate(definition, obj, "response")[0]


# -- tests ------------------------------------------------------------------

def t_entra(api):
    r = api.login()
    body = r.json()
    check(r.status == 200, "token: 200")
    check(list(body) == ["token_type", "expires_in", "ext_expires_in",
        "access_token"], "token: recorded key order")
    check(body["token_type"] == "Bearer" and body["expires_in"] == 3599
        and body["ext_expires_in"] == 3599, "token: Bearer, 3599 s")
    check(r.h("Cache-Control") == "no-store, no-cache", "token: no-store")
    r = api.get_token(secret="wrong")
    e = r.json()
    check(r.status == 401 and e["error"] == "invalid_client" and
        e["error_codes"] == [7000215] and e["error_description"].startswith(
        "AADSTS7000215: Invalid client secret is provided.\r\nTrace ID: "),
        "token: wrong secret -> 401 invalid_client AADSTS7000215")
    check(set(e) == {"error", "error_description", "error_codes",
        "timestamp", "trace_id", "correlation_id", "error_uri"},
        "token: recorded error keys")
    r = api.get_token(tenant="nope")
    check(r.status == 400 and r.json()["error_codes"] == [90002],
        "token: unknown tenant -> 400 AADSTS90002")
    r = api.get_token(client="nope")
    check(r.status == 400 and r.json()["error"] == "unauthorized_client",
        "token: unknown client -> 400 unauthorized_client")
    r = api.get_token(scope="https://management.azure.com/user_impersonation")
    check(r.status == 400 and r.json()["error"] == "invalid_scope",
        "token: bad scope -> 400 invalid_scope")
    basic = "Basic " + __import__("base64").b64encode(
        ("%s:%s" % (APP, SECRET)).encode()).decode()
    r = request(api.sim.url + "/%s/oauth2/v2.0/token" % TENANT, "POST",
        "grant_type=client_credentials&scope=" + urllib.parse.quote(
        ARM_SCOPE), {"Authorization": basic, "Content-Type":
        "application/x-www-form-urlencoded"})
    check(r.status == 200, "token: client_secret_basic accepted")
    r = request(api.sim.url + "/%s/v2.0/.well-known/openid-configuration"
        % TENANT)
    check(r.status == 200 and r.json()["token_endpoint"].startswith(
        api.sim.url), "openid-configuration points at the simulator")


def t_arm_auth(api):
    r = api.arm("GET", job_path("nosuch"), token="")
    check(r.status == 401 and r.json()["error"]["code"] ==
        "AuthenticationFailed" and 'error="invalid_token"' in
        (r.h("WWW-Authenticate") or ""), "arm: no token -> 401 + challenge")
    r = api.arm("GET", job_path("nosuch"), token="garbage")
    check(r.status == 401 and r.json()["error"]["code"] ==
        "InvalidAuthenticationToken", "arm: unknown token -> 401")
    st = api.get_token(scope="https://storage.azure.com/.default").json()
    r = api.arm("GET", job_path("nosuch"), token=st["access_token"])
    check(r.status == 401 and r.json()["error"]["code"] ==
        "InvalidAuthenticationTokenAudience", "arm: storage token -> 401")
    api.ctl("POST", "/clients", {"tenant": TENANT, "clientId": "short",
        "secret": "x", "tokenLifetime": 1})
    tok = api.get_token(client="short", secret="x").json()
    check(tok["expires_in"] == 1, "token: configured lifetime")
    r = api.arm("GET", job_path("nosuch"), token=tok["access_token"])
    check(r.status == 404, "arm: fresh short token accepted")
    time.sleep(1.2)
    r = api.arm("GET", job_path("nosuch"), token=tok["access_token"])
    check(r.status == 401 and r.json()["error"]["code"] ==
        "ExpiredAuthenticationToken" and "is earlier than current UTC time"
        in r.json()["error"]["message"], "arm: expired token -> 401 Expired")
    r = api.arm("GET", job_path("nosuch"), api=None)
    check(r.status == 400 and r.json()["error"]["code"] ==
        "MissingApiVersionParameter", "arm: no api-version -> 400")
    r = api.arm("GET", job_path("nosuch"), api="2019-09-01")
    check(r.status == 400 and r.json()["error"]["code"] ==
        "NoRegisteredProviderFound", "arm: unknown api-version -> 400")
    r = api.arm("GET", job_path("nosuch"), api="2025-02-01")
    e = r.json()["error"]
    check(r.status == 404 and e["code"] == "ResourceNotFound" and
        r.h("x-ms-failure-cause") == "gateway", "arm: recorded 404 shape")


def _normalise(obj):
    obj = json.loads(json.dumps(obj))
    obj.pop("systemData", None)
    obj["properties"].pop("startTime", None)
    return obj


def t_recorded_databox(api, rec):
    """Replay the recorded customer-disk create; compare the final GET
    with the recorded one, byte for byte apart from times/systemData."""
    d = rec["databoxCreate"]
    check(db_errors(d["response"]) == [],
        "validator accepts the recorded DataBox GET")
    path = job_path(d["name"], d["rg"], d["sub"])
    r = api.arm("PUT", path, d["request"], api=d["apiVersion"])
    check(r.status == 202 and r.body == b"" and r.h("Content-Length") ==
        "0", "create: 202, empty body [rec]")
    loc = r.h("Location") or ""
    check("/providers/Microsoft.DataBox/locations/westus/operationResults/"
        in loc and 2800 < len(loc) < 4096, "create: long operationResults "
        "Location [rec]")
    check(r.h("x-ms-ratelimit-remaining-subscription-writes") is not None,
        "create: ratelimit writes header")
    check(r.h("Retry-After") is None, "create: no Retry-After [rec]")
    g = api.arm("GET", path, api=d["apiVersion"])
    check(g.status == 404, "create: job invisible while the LRO runs")
    p1 = api.arm("GET", loc, api=None)
    check(p1.status == 202 and p1.h("Location") != loc and
        "operationResults" in p1.h("Location"), "poll 1: 202 + new Location")
    p2 = api.arm("GET", p1.h("Location"), api=None)
    want = "%s%s?api-version=%s" % (api.sim.url, path, d["apiVersion"])
    check(p2.status == 202 and p2.h("Location") == want,
        "poll 2: 202 + Location = job [rec]")
    g = api.arm("GET", p2.h("Location"), api=None)
    check(g.status == 200 and g.h("Content-Type") ==
        "application/json; charset=utf-8", "GET job: 200 json")
    check(g.h("x-ms-ratelimit-remaining-subscription-reads") is not None,
        "GET: ratelimit reads header")
    got, want_body = g.json(), d["response"]
    got_norm, want_norm = _normalise(got), _normalise(want_body)
    got_norm["properties"]["details"]["contactDetails"]["emailList"] = \
        want_norm["properties"]["details"]["contactDetails"]["emailList"]
    check(json.dumps(got_norm) == json.dumps(want_norm),
        "GET job equals the recorded response (key order included)")
    if json.dumps(got_norm) != json.dumps(want_norm):
        print("# got  %s\n# want %s" % (json.dumps(got_norm),
            json.dumps(want_norm)))
    check(g.body.startswith(b'{\r\n  "properties": {\r\n'),
        "GET job: CRLF pretty-print [rec]")
    check(db_errors(got) == [], "GET job validates against the spec")
    check("bitLockerKey" not in g.body.decode() and "carrierAccountNumber"
        not in g.body.decode(), "GET job: secrets never echoed")
    return d


def t_put_rules(api):
    bad = job_body()
    del bad["properties"]["details"]["importDiskDetailsCollection"]
    cases = [
        ("missing importDiskDetailsCollection", "jobA", bad, 400),
        ("bad transferType enum", "jobB", _with(job_body(),
        ["properties", "transferType"], "ImportToAzur"), 400),
        ("11 disks", "jobC", job_body(["S%02d" % i for i in range(11)]), 400),
        ("missing manifestHash", "jobD", _with(job_body(), ["properties",
        "details", "importDiskDetailsCollection", "SER1", "manifestHash"],
        None), 400),
        ("bad job name (2 chars)", "jb", job_body(), 400),
        ("bad job name (pattern)", "job%20name!", job_body(), 400),
        ("missing carrierAccountNumber", "jobE", _with(job_body(),
        ["properties", "details", "returnToCustomerPackageDetails",
        "carrierAccountNumber"], None), 400),
        ("missing sku", "jobF", {k: v for k, v in job_body().items()
        if k != "sku"}, 400)]
    for what, name, body, status in cases:
        r = api.arm("PUT", job_path(name), body)
        ok = r.status == status
        try:
            e = r.json()["error"]
            ok = ok and isinstance(e["code"], str) and \
                isinstance(e["message"], str)
        except (ValueError, KeyError, TypeError):
            ok = False
        check(ok, "PUT %s -> %d ARM error" % (what, status))
        check(db_errors(r.json(), "ApiError") == [],
            "PUT %s: error body validates as ApiError" % what)
    r = api.arm("PUT", job_path("jobG"), b"{not json")
    check(r.status == 400 and r.json()["error"]["code"] ==
        "InvalidRequestContent", "PUT broken JSON -> 400")
    r = api.arm("PUT", job_path("jobH"), job_body(), api="2025-02-01",
        extra={})
    final, _ = run_lro(api, r)
    check(final.status == 200, "PUT at api 2025-02-01 accepted")
    _, jobs = api.ctl("GET", "/jobs?kind=databox&rg=rg1")
    names = {j["name"] for j in jobs}
    check(not names & {"jobA", "jobB", "jobC", "jobD", "jobE", "jobF",
        "jobG"}, "rejected PUTs created nothing")
    api.ctl("POST", "/config", {"strict": True})
    r = api.arm("PUT", job_path("jobS"), _with(job_body(), ["properties",
        "details", "importDiskDetailsCollection", "SER1", "bitLockerKey"],
        "xxx"))
    check(r.status == 400, "strict: malformed bitLockerKey -> 400")
    api.ctl("POST", "/config", {"strict": False})


def _with(body, path, value):
    body = json.loads(json.dumps(body))
    node = body
    for k in path[:-1]:
        node = node[k]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return body


def t_reput(api):
    _, first = create(api, "job-idem")
    check(first.status == 200, "create job-idem")
    r = api.arm("PUT", job_path("job-idem"), job_body())
    check(r.status == 200 and r.json()["name"] == "job-idem",
        "identical re-PUT -> 200 with the job")
    r = api.arm("PUT", job_path("job-idem"), job_body(["OTHER"]))
    check(r.status == 409, "different re-PUT -> 409")
    r = api.arm("PUT", job_path("job-idem2"), job_body())
    r2 = api.arm("PUT", job_path("job-idem2"), job_body())
    check(r.status == 202 and r2.status == 202 and
        r.h("Location").split("?")[0] == r2.h("Location").split("?")[0],
        "re-PUT while creating -> 202, same operation")
    _, log = api.ctl("GET", "/requests")
    puts = [e for e in log if e["method"] == "PUT" and
        e["path"].endswith("/job-idem") and e["status"] == 202]
    check(len(puts) == 1, "exactly one PUT created job-idem")


def t_lifecycle(api):
    _, g = create(api, "job-life", job_body(["D1", "D2"]))
    path = job_path("job-life")
    r = api.arm("POST", path + "/markDevicesShipped",
        {"deliverToDcPackageDetails": {"carrierName": "FedEx",
        "trackingId": "TRK1"}})
    check(r.status == 204 and r.body == b"", "markDevicesShipped -> 204")
    j = api.arm("GET", path).json()
    check(j["properties"]["status"] == "ShippedToAzureDC" and
        j["properties"]["details"]["deliverToDcPackageDetails"] ==
        {"carrierName": "FedEx", "trackingId": "TRK1"} and
        not j["properties"]["isCancellable"], "shipped: status + echo")
    r = api.arm("POST", path + "/markDevicesShipped",
        {"deliverToDcPackageDetails": {"carrierName": "FedEx",
        "trackingId": "TRK1"}})
    check(r.status == 409, "markDevicesShipped twice -> 409")
    r = api.arm("POST", path + "/cancel", {"reason": "late"})
    check(r.status == 409, "cancel after shipping -> 409")
    r = api.arm("DELETE", path)
    check(r.status == 409, "delete while active -> 409")
    st, out = api.ctl("POST", "/jobs/job-life/advance", {"to": "next"})
    check(st == 200 and out["status"] == "AtAzureDC", "advance -> AtAzureDC")
    j = api.arm("GET", path + "?$expand=details").json()
    cp = j["properties"]["details"]["copyProgress"]
    check([c["serialNumber"] for c in cp] == ["D1", "D2"] and
        all(c["copyStatus"] == "NotStarted" for c in cp),
        "AtAzureDC: copyProgress per serial, NotStarted")
    check("copyProgress" not in api.arm("GET", path).json()["properties"]
        ["details"], "without $expand: no copyProgress [rec]")
    st, out = api.ctl("POST", "/jobs/job-life/advance", {"status":
        "DataCopy", "disks": {"D1": {"bytesProcessed": 10,
        "totalBytesToProcess": 100, "totalFilesToProcess": 3}}})
    check(st == 200 and out["status"] == "DataCopy", "advance -> DataCopy")
    st, _ = api.ctl("POST", "/jobs/job-life/drive-status", {"serial": "D2",
        "copyStatus": "Bogus"})
    check(st == 400, "drive-status: bad copyStatus -> 400")
    st, _ = api.ctl("POST", "/jobs/job-life/drive-status", {"serial": "D2",
        "copyStatus": "CompletedWithErrors", "bytesProcessed": 5,
        "totalBytesToProcess": 5, "filesErroredOut": 1,
        "errorLogLink": "https://acct1.blob.core.windows.net/logs/D2.xml"})
    check(st == 200, "drive-status: D2 CompletedWithErrors")
    j = api.arm("GET", path + "?$expand=details").json()
    det = j["properties"]["details"]
    cp = {c["serialNumber"]: c for c in det["copyProgress"]}
    check(cp["D1"]["copyStatus"] == "InProgress" and
        cp["D1"]["bytesProcessed"] == 10, "DataCopy: D1 InProgress 10 B")
    logs = {c["serialNumber"]: c for c in det["copyLogDetails"]}
    check(logs["D2"]["errorLogLink"].endswith("/logs/D2.xml") and
        logs["D1"]["copyLogDetailsType"] == "DataBoxCustomerDisk" and
        "verboseLogLink" in logs["D1"], "copyLogDetails with links")
    check(db_errors(j) == [], "expanded job validates against the spec")
    for want in ("PreparingToShipFromAzureDC", "ShippedToCustomer",
        "CompletedWithErrors"):
        st, out = api.ctl("POST", "/jobs/job-life/advance", {"to": "next"})
        check(st == 200 and out["status"] == want, "advance -> %s" % want)
    j = api.arm("GET", path + "?$expand=details").json()
    cp = {c["serialNumber"]: c for c in j["properties"]["details"]
        ["copyProgress"]}
    check(cp["D1"]["copyStatus"] == "Completed" and
        cp["D1"]["bytesProcessed"] == 100, "finished: D1 Completed 100 B")
    check(j["properties"]["isDeletable"] and
        j["properties"]["details"]["returnPackage"]["carrierName"] ==
        "FedEx", "finished: deletable, return package")
    stages = {s["stageName"]: s["stageStatus"] for s in
        j["properties"]["details"]["jobStages"]}
    check(stages.get("DataCopy") == "Succeeded" and
        stages.get("CompletedWithErrors") == "SucceededWithErrors",
        "jobStages follow the status")
    check(db_errors(j) == [], "finished job validates against the spec")
    st, _ = api.ctl("POST", "/jobs/job-life/advance", {"to": "next"})
    check(st == 400, "advance past a final status -> 400")
    _, g2 = create(api, "job-all")
    seq = ["AwaitingShipmentDetails", "ShippedToAzureDC", "AtAzureDC",
        "DataCopy", "PreparingToShipFromAzureDC", "ShippedToCustomer",
        "Completed"]
    got = [api.arm("GET", job_path("job-all")).json()["properties"]
        ["status"]]
    for _ in seq[1:]:
        got.append(api.ctl("POST", "/jobs/job-all/advance", {})[1]
            ["status"])
    check(got == seq, "default path: %s" % " -> ".join(got))
    st, _ = api.ctl("POST", "/jobs/job-all/advance", {"status": "Nope"})
    check(st == 400, "advance to a non-StageName -> 400")
    r = api.arm("DELETE", job_path("job-all"))
    final, _ = run_lro(api, r)
    check(final.status == 204, "delete completed job -> LRO 204")


def t_patch_and_more(api):
    path = job_path("job-idem")
    r = api.arm("PATCH", path, {"properties": {"details": {"contactDetails":
        {"contactName": "New Name", "phone": "1", "emailList":
        ["new@example.com"]}}}})
    check(r.status == 202 and "operationResults" in r.h("Location"),
        "PATCH -> 202 + operationResults Location [rec]")
    final, polls = run_lro(api, r)
    check(final.status == 200 and final.json()["properties"]["details"]
        ["contactDetails"]["contactName"] == "New Name",
        "PATCH LRO ends with the updated job")
    r = api.arm("PATCH", path, {"properties": {"details": {"contactDetails":
        {"contactName": "x"}}}})
    check(r.status == 400, "PATCH with incomplete contactDetails -> 400")
    r = api.arm("GET", "/subscriptions/%s/providers/Microsoft.DataBox/jobs"
        % SUB)
    check(r.status == 200 and "job-idem" in [j["name"] for j in
        r.json()["value"]], "list by subscription")
    r = api.arm("POST", path + "/listCredentials")
    sec = r.json()["value"][0]["jobSecrets"]
    check(r.status == 200 and sec["jobSecretsType"] == "DataBoxCustomerDisk"
        and sec["diskSecrets"][0]["bitLockerKey"] == BITLOCKER,
        "listCredentials returns the disk secrets [spec]")
    check(db_errors(r.json(), "UnencryptedCredentialsList") == [],
        "listCredentials answer validates")
    _, g = create(api, "job-auto")
    api.arm("POST", job_path("job-auto") + "/markDevicesShipped",
        {"deliverToDcPackageDetails": {"carrierName": "DHL",
        "trackingId": "TRK-AUTO"}})
    api.ctl("POST", "/config", {"autoAdvanceSeconds": 0.2})
    seen = []
    for _ in range(3):
        time.sleep(0.25)
        seen.append(api.arm("GET", job_path("job-auto")).json()
            ["properties"]["status"])
    api.ctl("POST", "/config", {"autoAdvanceSeconds": 0})
    check(seen == ["AtAzureDC", "DataCopy", "PreparingToShipFromAzureDC"],
        "autoAdvanceSeconds moves one status per period: %s" % seen)


def t_cancel_delete(api):
    _, g = create(api, "job-cancel")
    path = job_path("job-cancel")
    r = api.arm("POST", path + "/cancel", {})
    check(r.status == 400, "cancel without reason -> 400")
    r = api.arm("POST", path + "/cancel", {"reason": "CancelTest"})
    check(r.status == 204, "cancel while awaiting shipment -> 204 [rec]")
    p = api.arm("GET", path).json()["properties"]
    check(p["status"] == "Cancelled" and p["cancellationReason"] ==
        "CancelTest" and not p["isCancellable"] and p["isDeletable"] and
        not p["isCancellableWithoutFee"], "cancelled job flags [rec]")
    r = api.arm("DELETE", path)
    check(r.status == 202 and "-deleteorder?" in r.h("Location"),
        "DELETE -> 202, operation id ends -deleteorder [rec]")
    final, polls = run_lro(api, r)
    check(final.status == 204 and final.body == b"" and polls >= 2,
        "delete LRO ends in 204 [rec]")
    r = api.arm("GET", path)
    check(r.status == 404, "deleted job -> 404")
    r = api.arm("DELETE", path)
    check(r.status == 204, "DELETE missing job -> 204 [spec]")


def t_paging(api):
    api.ctl("POST", "/config", {"pageSize": 2, "lroSeconds": 0})
    for i in range(5):
        r = api.arm("PUT", job_path("page%d" % i, rg="rg-page"), job_body())
        check(r.status == 202, "PUT page%d" % i)
    url = "/subscriptions/%s/resourceGroups/rg-page/providers/" \
        "Microsoft.DataBox/jobs" % SUB
    names, pages = [], 0
    r = api.arm("GET", url)
    while True:
        pages += 1
        body = r.json()
        check(r.status == 200 and db_errors(body, "JobResourceList") == [],
            "list page %d validates" % pages)
        names += [j["name"] for j in body["value"]]
        if "nextLink" not in body or pages > 5:
            break
        check("$skipToken=" in body["nextLink"], "nextLink has $skipToken")
        r = api.arm("GET", body["nextLink"], api=None)
    check(pages == 3 and sorted(names) == ["page%d" % i for i in range(5)],
        "paging: 3 pages, 5 jobs")
    api.ctl("POST", "/config", {"pageSize": 50, "lroSeconds": 30})


def t_validate_inputs(api):
    body = {"validationCategory": "JobCreationValidation",
        "individualRequestDetails": [
        {"validationType": "ValidateAddress", "deviceType":
        "DataBoxCustomerDisk", "shippingAddress": job_body()["properties"]
        ["details"]["shippingAddress"]},
        {"validationType": "ValidateSubscriptionIsAllowedToCreateJob"},
        {"validationType": "ValidateSkuAvailability", "deviceType":
        "DataBoxCustomerDisk", "transferType": "ImportToAzure",
        "country": "US", "location": "westus"}]}
    url = "/subscriptions/%s/providers/Microsoft.DataBox/locations/westus/" \
        "validateInputs" % SUB
    r = api.arm("POST", url, body)
    check(r.status == 200 and r.json()["properties"]["status"] ==
        "AllValidToProceed", "validateInputs -> AllValidToProceed")
    check(db_errors(r.json(), "ValidationResponse") == [],
        "validateInputs answer validates")
    api.ctl("POST", "/config", {"validationOverrides":
        {"ValidateAddress": "Invalid"}})
    r = api.arm("POST", url, body)
    check(r.json()["properties"]["status"] == "InputsRevisitRequired",
        "validateInputs override -> InputsRevisitRequired")
    api.ctl("POST", "/config", {"validationOverrides": {}})
    del body["individualRequestDetails"][2]["country"]
    r = api.arm("POST", url, body)
    check(r.status == 400, "validateInputs with a missing field -> 400")


def t_faults(api):
    path = job_path("job-idem")

    def fault(spec):
        st, f = api.ctl("POST", "/faults", spec)
        check(st == 201, "add fault %s" % spec["fault"])
        return f

    fault({"fault": "429", "match": {"method": "GET", "path_regex":
        "jobs/job-idem$"}, "count": 2, "retry_after": 3})
    for i in range(2):
        r = api.arm("GET", path)
        check(r.status == 429 and r.h("Retry-After") == "3" and
            r.json()["error"]["code"] == "TooManyRequests",
            "429 #%d with Retry-After" % (i + 1))
    check(api.arm("GET", path).status == 200, "fault consumed after count")
    for code in ("500", "503"):
        fault({"fault": code, "match": {"path_regex": "job-idem"}})
        r = api.arm("GET", path)
        check(r.status == int(code) and "error" in r.json(),
            "%s with ARM error body" % code)
    fault({"fault": "malformed", "match": {"path_regex": "job-idem"}})
    r = api.arm("GET", path)
    try:
        json.loads(r.body)
        parsed = True
    except ValueError:
        parsed = False
    check(r.status == 200 and not parsed and len(r.body) > 10,
        "malformed: 200 with truncated JSON")
    fault({"fault": "expired_token", "match": {"path_regex": "job-idem"}})
    r = api.arm("GET", path)
    check(r.status == 401 and r.json()["error"]["code"] ==
        "ExpiredAuthenticationToken", "expired_token with a valid token")
    fault({"fault": "reset", "match": {"path_regex": "job-idem"}})
    try:
        api.arm("GET", path)
        reset = False
    except (ConnectionError, http.client.HTTPException, OSError):
        reset = True
    check(reset, "reset: connection dropped without an answer")
    fault({"fault": "hang", "seconds": 3, "match": {"path_regex":
        "job-idem"}})
    t = time.time()
    try:
        api.arm("GET", path, timeout=0.7)
        hung = False
    except (socket.timeout, TimeoutError, OSError):
        hung = True
    check(hung and time.time() - t < 2, "hang: client times out")
    fault({"fault": "500", "match": {"path_regex": "oauth2"}})
    r = api.get_token()
    check(r.status == 500 and r.json()["error"] == "server_error",
        "fault on the token endpoint uses Entra's shape")
    fault({"fault": "lro_fail", "match": {"method": "PUT", "path_regex":
        "job-lrofail"}, "status": 409, "code": "Conflict"})
    r = api.arm("PUT", job_path("job-lrofail"), job_body())
    final, _ = run_lro(api, r)
    check(r.status == 202 and final.status == 409 and
        final.json()["error"]["code"] == "Conflict",
        "lro_fail: operationResults answers the error")
    check(api.arm("GET", job_path("job-lrofail")).status == 404,
        "lro_fail: no job left behind")
    st, faults = api.ctl("GET", "/faults")
    check(st == 200 and all(f["remaining"] == 0 for f in faults),
        "all faults consumed")
    _, log = api.ctl("GET", "/requests")
    check({e["fault"] for e in log} >= {"429", "500", "503", "malformed",
        "expired_token", "reset", "hang", "lro_fail"}, "faults in the log")


def t_importexport(api, rec):
    d = rec["importExportCreate"]
    prov = "Microsoft.ImportExport"
    path = job_path(d["name"], d["rg"], d["sub"], prov)
    r = api.arm("PUT", path, d["request"], api=d["apiVersion"])
    check(r.status == 201 and r.h("Content-Type") == "application/json",
        "IE PUT -> 201 application/json [rec]")
    got, want = r.json(), d["response"]
    got.pop("systemData", None)
    check(json.dumps(got) == json.dumps(want),
        "IE PUT answer equals the recorded one (key order included)")
    if json.dumps(got) != json.dumps(want):
        print("# got  %s\n# want %s" % (json.dumps(got), json.dumps(want)))
    check(ie_errors(r.json()) == [], "IE PUT answer validates")
    r = api.arm("PUT", path, d["request"], api=d["apiVersion"])
    check(r.status == 200, "IE identical re-PUT -> 200")
    g = api.arm("GET", path, api="2021-01-01").json()
    want = rec["importExportGet"]["response"]
    check(ie_errors(want) == [], "validator accepts the recorded IE GET")
    g.pop("systemData")
    check(list(g) == list(want) and list(g["properties"]) ==
        list(want["properties"]) and g["location"] == want["location"],
        "IE GET: same keys, order and display location as recorded")
    g = api.arm("GET", path, api="2016-11-01").json()
    check(g["location"] == "East US" and "systemData" not in g,
        "IE GET: display location, no systemData at 2016-11-01 [rec]")
    check(g["properties"]["driveList"][0]["state"] == "Specified" and
        "bitLockerKey" not in json.dumps(g), "IE GET: drive Specified, no key")
    r = api.arm("PATCH", path, {"properties": {"deliveryPackage": {
        "carrierName": "pwsh", "driveCount": 0, "trackingNumber":
        "pwsh20200000"}}}, api="2021-01-01")
    p = r.json()["properties"]
    check(r.status == 200 and p["state"] == "Creating" and
        p["deliveryPackage"] == {"carrierName": "pwsh", "trackingNumber":
        "pwsh20200000", "driveCount": 0}, "IE PATCH deliveryPackage [rec]")
    r = api.arm("PATCH", path, {"properties": {"state": "Bogus"}},
        api="2021-01-01")
    check(r.status == 400, "IE PATCH state other than Shipping -> 400")
    r = api.arm("PATCH", path, {"properties": {"state": "Shipping"}},
        api="2021-01-01")
    check(r.status == 200 and r.json()["properties"]["state"] == "Shipping",
        "IE PATCH state Shipping")
    r = api.arm("PATCH", path, {"properties": {"cancelRequested": True}},
        api="2021-01-01")
    check(r.status == 409, "IE cancel after Shipping -> 409")
    r = api.arm("DELETE", path, api="2021-01-01")
    check(r.status == 409, "IE delete while Shipping -> 409")
    states = []
    for _ in range(4):
        st, out = api.ctl("POST", "/jobs/%s/advance?kind=importexport"
            % d["name"], {})
        states.append(out.get("status"))
    check(states == ["Received", "Transferring", "Packaging", "Completed"],
        "IE path: %s" % " -> ".join(map(str, states)))
    g = api.arm("GET", path, api="2021-01-01").json()
    drv = g["properties"]["driveList"][0]
    check(drv["state"] == "ShippedBack" and drv["percentComplete"] == 100 and
        "errorLogUri" in drv and g["properties"]["returnPackage"]
        ["driveCount"] == 1, "IE completed: drive shipped back, logs")
    check(ie_errors(g) == [], "IE completed job validates")
    lst = api.arm("GET", "/subscriptions/%s/resourceGroups/%s/providers/%s/"
        "jobs" % (d["sub"], d["rg"], prov), api="2021-01-01").json()
    check("driveList" not in lst["value"][0]["properties"],
        "IE resource-group list omits driveList [rec]")
    lst = api.arm("GET", "/subscriptions/%s/providers/%s/jobs" % (d["sub"],
        prov), api="2021-01-01").json()
    check("driveList" in lst["value"][0]["properties"],
        "IE subscription list has driveList [rec]")
    keys = api.arm("POST", path + "/listBitLockerKeys",
        api="2021-01-01").json()
    check(keys["value"][0]["bitLockerKey"] == d["request"]["properties"]
        ["driveList"][0]["bitLockerKey"], "IE listBitLockerKeys [rec]")
    r = api.arm("DELETE", path, api="2021-01-01")
    check(r.status == 200 and r.body == b"", "IE delete Completed -> 200")
    t_importexport_more(api, prov)


def t_importexport_more(api, prov):
    body = {"location": "westus", "properties": {"storageAccountId":
        "/subscriptions/%s/resourceGroups/rg1/providers/Microsoft.Storage/"
        "storageAccounts/acct1" % SUB, "jobType": "Import",
        "driveList": [{"driveId": "D%d" % i, "bitLockerKey": BITLOCKER,
        "manifestFile": "\\DriveManifest.xml", "manifestHash": HASH}
        for i in range(11)]}}
    path = job_path("ie2", provider=prov)
    r = api.arm("PUT", path, body, api="2021-01-01")
    check(r.status == 400, "IE 11 drives -> 400")
    body["properties"]["driveList"] = body["properties"]["driveList"][:2]
    r = api.arm("PUT", path, body, api="2021-01-01")
    check(r.status == 201 and r.json()["properties"]["shippingInformation"]
        ["city"] == "Santa Clara", "IE westus shipping address [rec]")
    r = api.arm("PATCH", path, {"properties": {"state": "Shipping"}},
        api="2021-01-01")
    check(r.status == 400, "IE Shipping without deliveryPackage -> 400")
    r = api.arm("PATCH", path, {"properties": {"cancelRequested": True}},
        api="2021-01-01")
    check(r.status == 200 and r.json()["properties"]["cancelRequested"] and
        r.json()["properties"]["state"] == "Creating",
        "IE cancelRequested while Creating [rec]")
    r = api.arm("GET", path, api="2020-08-01")
    check("systemData" in r.json(), "IE systemData from 2020-08-01")
    api.ctl("POST", "/config", {"provisioningSeconds": 1})
    path = job_path("ie3", provider=prov)
    r = api.arm("PUT", path, body, api="2020-08-01")
    g1 = api.arm("GET", path, api="2020-08-01").json()
    time.sleep(1.1)
    g2 = api.arm("GET", path, api="2020-08-01").json()
    check(r.status == 201 and r.json()["properties"]["provisioningState"] ==
        "Creating" and g1["properties"]["provisioningState"] == "Creating" and
        g2["properties"]["provisioningState"] == "Succeeded",
        "provisioningSeconds: Creating, then Succeeded")
    api.ctl("POST", "/config", {"provisioningSeconds": 0})


def t_log(api):
    _, log = api.ctl("GET", "/requests")
    text = json.dumps(log)
    check(SECRET not in text and BITLOCKER not in text and "ACCT-9876" not
        in text, "request log holds no secret")
    check(api.token not in text, "request log holds no bearer token")
    arm_entries = [e for e in log if e.get("server") == "arm"]
    check(arm_entries and all(e["headers"].get("Authorization") in
        (None, "REDACTED") for e in log), "Authorization redacted")
    check(any(e["hasBearer"] for e in arm_entries) and
        any(not e["hasBearer"] for e in arm_entries), "hasBearer flag")
    put = [e for e in log if e["method"] == "PUT" and
        e["path"].endswith("/job-idem")][0]
    key = put["body"]["properties"]["details"]["importDiskDetailsCollection"]
    check(key["SER1"]["bitLockerKey"] == "REDACTED sha256=" +
        hashlib.sha256(BITLOCKER.encode()).hexdigest(),
        "logged bitLockerKey is a digest of the sent key")
    check(all(isinstance(e["status"], int) or e["fault"] in ("reset",
        "hang") for e in log if e["seq"] < log[-1]["seq"]),
        "every answered request logged with its status")


def t_restart(api, state, rec):
    name = rec["databoxCreate"]["name"]
    code = api.sim.stop()
    check(code == 0, "SIGTERM: exit 0")
    api.sim = Sim(state)
    r = api.arm("GET", job_path(name, rec["databoxCreate"]["rg"]),
        api="2025-02-01")
    check(r.status == 200, "restart: job and token survive")


def t_tls(tmp):
    certs = os.path.join(tmp, "certs")
    subprocess.run([os.path.join(HERE, "mkcert.sh"), certs], check=True,
        stdout=subprocess.DEVNULL)
    sim = Sim(os.path.join(tmp, "tls-state.json"),
        (os.path.join(certs, "server.pem"), os.path.join(certs, "server.key")))
    try:
        check(sim.url.startswith("https://127.0.0.1:"), "TLS: https URL")
        api = Api(sim, ca=os.path.join(certs, "ca.pem"))
        api.ctl("POST", "/clients", {"tenant": TENANT, "clientId": APP,
            "secret": SECRET})
        check(api.login().status == 200, "TLS: token over https")
        _, g = create(api, "job-tls")
        check(g.status == 200, "TLS: create LRO over https")
        check(g.json()["name"] == "job-tls", "TLS: job body")
        local = sim.url.replace("127.0.0.1", "localhost")
        r = request(local + "/%s/v2.0/.well-known/openid-configuration"
            % TENANT, ca=api.ca)
        check(r.status == 200, "TLS: certificate valid for localhost")
        try:
            request(sim.url, ca=None)
            verified = False
        except ssl.SSLError:
            verified = True
        check(verified, "TLS: untrusted without the CA")
    finally:
        sim.stop()



def t_mitigate(api):
    """Waiting for the customer [spec example] and the mitigate call [spec]."""
    _, g = create(api, "job-mit", job_body(["M1", "M2"]))
    path = job_path("job-mit")
    r = api.arm("POST", path + "/mitigate", {"customerResolutionCode":
        "Resume"})
    check(r.status == 409, "mitigate while not waiting -> 409")
    api.arm("POST", path + "/markDevicesShipped", {"deliverToDcPackageDetails":
        {"carrierName": "FedEx", "trackingId": "TRK-MIT"}})
    st, _ = api.ctl("POST", "/jobs/job-mit/wait-for-action", {})
    check(st == 400, "control: cannot wait before the DC")
    api.ctl("POST", "/jobs/job-mit/advance", {"status": "DataCopy"})
    st, _ = api.ctl("POST", "/jobs/job-mit/wait-for-action", {"actions":
        ["Resume", "MoveToCleanUpDevice"], "disks": {"M2": {"error": {"code":
        "DiskCopyError", "message": "two files"}, "actions": ["Resume"]}}})
    check(st == 200, "control: wait-for-action")
    j = api.arm("GET", path + "?$expand=details").json()
    p = j["properties"]
    check(p["status"] == "DataCopy" and p["error"]["code"] ==
        "SsemUserCopyErrorWaitingForAction" and p["error"]["target"] ==
        "CopyIntervention", "waiting: status stays, error as in the example")
    check(p["details"]["actions"] == ["Resume", "MoveToCleanUpDevice"],
        "waiting: details.actions")
    check([s["stageStatus"] for s in p["details"]["jobStages"] if
        s["stageName"] == "DataCopy"] == ["WaitingForCustomerAction"],
        "waiting: the DataCopy stage is WaitingForCustomerAction")
    m2 = [c for c in p["details"]["copyProgress"] if c["serialNumber"] ==
        "M2"][0]
    check(m2["error"]["code"] == "DiskCopyError" and m2["actions"] ==
        ["Resume"], "waiting: per-disk error and actions")
    check(db_errors(j) == [], "waiting job validates against the spec: %r"
        % db_errors(j)[:2])
    for body, want, what in (
        ({"customerResolutionCode": "Bogus"}, 400, "code outside the enum"),
        ({}, 400, "neither form"),
        ({"customerResolutionCode": "Resume",
          "serialNumberCustomerResolutionMap": {"M1": "Resume"}}, 400,
         "both forms"),
        ({"serialNumberCustomerResolutionMap": {"NOPE": "Resume"}}, 400,
         "unknown serial"),
        ({"customerResolutionCode": "Restart"}, 400, "action not offered")):
        r = api.arm("POST", path + "/mitigate", body)
        check(r.status == want, "mitigate %s -> %d (got %d)" % (what, want,
            r.status))
    r = api.arm("POST", path + "/mitigate",
        {"serialNumberCustomerResolutionMap": {"M2": "Resume"}})
    check(r.status == 204 and r.body == b"", "mitigate per serial -> 204")
    p = api.arm("GET", path + "?$expand=details").json()["properties"]
    check("error" not in p and p["details"]["actions"] == [] and
        p["details"]["lastMitigationActionOnJob"]["customerResolution"] ==
        "Resume", "mitigated: error and actions gone, last action recorded")
    check(db_errors(api.arm("GET", path + "?$expand=details").json()) == [],
        "mitigated job validates against the spec")
    _, log = api.ctl("GET", "/requests")
    mit = [e for e in log if e["path"].endswith("/mitigate") and
        e["status"] == 204]
    check(mit[-1]["body"] == {"serialNumberCustomerResolutionMap":
        {"M2": "Resume"}}, "the mitigate body is in the request log")


def t_switches(api):
    """Each switch for an [inferred] behaviour gives its alternative."""
    api.ctl("POST", "/config", {"rePutConflict": True})
    create(api, "job-sw1")
    r = api.arm("PUT", job_path("job-sw1"), job_body())
    check(r.status == 409, "rePutConflict: identical re-PUT -> 409")
    api.ctl("POST", "/config", {"rePutConflict": False, "getWhileCreating":
        True})
    r = api.arm("PUT", job_path("job-sw2"), job_body())
    g = api.arm("GET", job_path("job-sw2"))
    check(r.status == 202 and g.status == 200 and
        g.json()["properties"]["status"] == "AwaitingShipmentDetails",
        "getWhileCreating: GET finds a job still being created")
    api.ctl("POST", "/config", {"getWhileCreating": False,
        "createNoLocation": True, "lroSeconds": 1})
    r = api.arm("PUT", job_path("job-sw3"), job_body())
    check(r.status == 202 and r.h("Location") is None and
        r.h("Azure-AsyncOperation") is None,
        "createNoLocation: 202 without Location")
    check(api.arm("GET", job_path("job-sw3")).status == 404,
        "createNoLocation: 404 while the operation runs")
    time.sleep(1.2)
    check(api.arm("GET", job_path("job-sw3")).status == 200,
        "createNoLocation: the job appears when the operation ends")
    api.ctl("POST", "/config", {"createNoLocation": False, "lroSeconds": 30,
        "lroRetryAfter": 3, "lroRetryAfterDate": True})
    r = api.arm("PUT", job_path("job-sw4"), job_body())
    ra = r.h("Retry-After") or ""
    when = email.utils.parsedate_to_datetime(ra).timestamp() if ra else 0
    check(ra.endswith(" GMT") and 2 <= when - time.time() <= 4.5,
        "lroRetryAfterDate: Retry-After is an HTTP-date 3 s ahead: %r" % ra)
    api.ctl("POST", "/config", {"lroRetryAfter": None,
        "lroRetryAfterDate": False})
    api.ctl("POST", "/faults", {"fault": "hang", "then": "execute",
        "seconds": 0.5, "match": {"method": "PUT", "path_regex":
        "job-sw5$"}})
    try:
        r = api.arm("PUT", job_path("job-sw5"), job_body(), timeout=5)
        dropped = r.status is None
    except Exception:
        dropped = True
    st, out = api.ctl("GET", "/jobs/job-sw5")
    check(dropped and st == 200, "hang then execute: no answer, job made")
    api.ctl("POST", "/config", {"createAsyncOperation": True, "lroPolls": 1})
    r = api.arm("PUT", job_path("job-sw6"), job_body())
    aop = r.h("Azure-AsyncOperation") or ""
    check(r.status == 202 and "/operationStatuses/" in aop and r.h("Location"),
        "createAsyncOperation: 202 with Azure-AsyncOperation and Location")
    s1 = api.arm("GET", aop, api=None).json()
    s2 = api.arm("GET", aop, api=None).json()
    check(s1["status"] == "InProgress" and s2["status"] == "Succeeded" and
        api.arm("GET", job_path("job-sw6")).status == 200,
        "createAsyncOperation: InProgress, then Succeeded and the job exists")
    api.ctl("POST", "/faults", {"fault": "lro_fail", "code": "Nope",
        "match": {"method": "PUT", "path_regex": "job-sw7$"}})
    aop = api.arm("PUT", job_path("job-sw7"), job_body()).h(
        "Azure-AsyncOperation")
    api.arm("GET", aop, api=None)
    s2 = api.arm("GET", aop, api=None).json()
    check(s2["status"] == "Failed" and s2["error"]["code"] == "Nope" and
        api.arm("GET", job_path("job-sw7")).status == 404,
        "createAsyncOperation + lro_fail: Failed with the error, no job")
    api.ctl("POST", "/config", {"createAsyncOperation": False})
    # ImportExport: the spec follows the api-version.
    e20 = validate.importexport("2020-08-01").validate("DriveStatus",
        {"percentComplete": 2 ** 40}, "request")[0]
    e21 = validate.importexport("2021-01-01").validate("DriveStatus",
        {"percentComplete": 2 ** 40}, "request")[0]
    check(e20 and not e21, "ImportExport: 2020-08-01 spec (int32) for "
        "2020-08-01, the preview's (int64) for 2021-01-01")


def main():
    with open(os.path.join(HERE, "fixtures", "recorded.json")) as f:
        rec = json.load(f)
    tmp = tempfile.mkdtemp(prefix="azuresim-test-")
    state = os.path.join(tmp, "state.json")
    sim = Sim(state)
    api = Api(sim)
    try:
        st, _ = api.ctl("POST", "/clients", {"tenant": TENANT,
            "clientId": APP, "secret": SECRET})
        check(st == 201, "control: register client")
        for test in (t_entra, t_arm_auth):
            test(api)
        t_recorded_databox(api, rec)
        for test in (t_put_rules, t_reput, t_patch_and_more, t_lifecycle,
            t_cancel_delete,
            t_paging, t_validate_inputs, t_faults, t_mitigate, t_switches):
            test(api)
        t_importexport(api, rec)
        t_log(api)
        t_restart(api, state, rec)
        if shutil.which("openssl"):
            t_tls(tmp)
        else:
            print("# openssl not found: HTTPS part skipped")
    finally:
        api.sim.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    took = time.time() - T0
    check(took < 60, "finished in %.1f s" % took)
    print("# %d checks, %d failed, %.1f s" % (CHECKS[0], len(FAILS), took))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
