"""The Azure side of integration tests: the loopback simulator of Entra ID
and ARM (tests/azure-sim) over HTTPS with a throw-away CA that seedd trusts
through CAFile=, a seedd.conf pointing at it, and the simulator's control
API."""
import json
import os
import subprocess
import sys
import urllib.request

from harness import check, fail

SIM_DIR = os.path.join(os.environ.get("SOURCE_ROOT", "."), "tests", "azure-sim")
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0b1f6b25-7e5b-4cd9-9e4f-0d1c4e1f2a3b"
SECRET = "s3cr3t~Value.For_The_Simulator-1234"
CARRIER_ACCOUNT = "CARRIER-ACCT-998877"
SUB = "fa68082f-8ff7-4a25-95c7-ce9da541242f"
RG = "seedd-test-rg"
ACCOUNT_ID = ("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Storage/"
              "storageAccounts/seeddtestacct" % (SUB, RG))


def account_id(blob=None):
    """AccountId= for a set-up: with Azurite, its account (seedctl doctor
    checks that AccountId= and AccountName= name one account)."""
    return ACCOUNT_ID if blob is None else ACCOUNT_ID.replace("seeddtestacct", blob["account"])
KEYS = ["111111-222222-333333-444444-555555-666666-000000-111111",
        "000011-000022-000033-000044-000055-000066-000077-000088"]


class Sim:
    def __init__(self, tmp, tls=True, blob=None):
        self.tmp = tmp
        self.dir = os.path.join(tmp, "sim")
        os.makedirs(self.dir, exist_ok=True)
        args = [sys.executable, os.path.join(SIM_DIR, "azuresim.py"), "--port", "0",
                "--control-port", "0", "--state-file", os.path.join(self.dir, "state.json")]
        self.ca = None
        if tls:
            subprocess.run(["sh", os.path.join(SIM_DIR, "mkcert.sh"), self.dir], check=True)
            self.ca = os.path.join(self.dir, "ca.pem")
            args += ["--tls-cert", os.path.join(self.dir, "server.pem"),
                     "--tls-key", os.path.join(self.dir, "server.key")]
        if blob is not None:
            args += ["--blob-endpoint", blob["url"], "--blob-account", blob["account"],
                     "--blob-key", blob["key"]]
            if blob.get("ca"):
                args += ["--blob-ca", blob["ca"]]
        self.log = open(os.path.join(self.dir, "sim.log"), "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if not line:
            fail("the Azure simulator did not start: %s" % open(self.log.name).read())
        info = json.loads(line)
        self.url, self.control = info["url"], info["control"]
        self.ctl("POST", "/clients", {"tenant": TENANT, "clientId": CLIENT, "secret": SECRET})

    def ctl(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.control + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            fail("simulator control %s %s: %d %s" % (method, path, e.code, e.read()[:500]))

    def requests(self):
        return self.ctl("GET", "/requests")

    def fault(self, kind, method=None, path_regex=None, count=1, **kw):
        body = {"fault": kind, "count": count,
                "match": {k: v for k, v in (("method", method), ("path_regex", path_regex))
                          if v}}
        body.update(kw)
        return self.ctl("POST", "/faults", body)

    def advance(self, name, status, **kw):
        body = {"status": status}
        body.update(kw)
        return self.ctl("POST", "/jobs/%s/advance" % name, body)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def write_secret(path, value):
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)


def config(tmp, sim, api="DataBox", extra="", blob=None):
    secret = os.path.join(tmp, "client-secret")
    acct = os.path.join(tmp, "carrier-account")
    if not os.path.exists(secret):
        write_secret(secret, SECRET)
    write_secret(acct, CARRIER_ACCOUNT)
    cas = [c for c in (sim.ca, blob and blob.get("ca")) if c]
    ca = ""
    if cas:
        import azurite
        ca = "CAFile=%s\n" % azurite.ca_bundle(os.path.join(tmp, "ca-bundle.pem"), *cas)
    return """[Daemon]
PollIntervalSec=1
[Azure]
Cloud=Custom
JobApi=%s
TenantId=%s
ClientId=%s
ClientSecretFile=%s
SubscriptionId=%s
ResourceGroup=%s
Location=westus
AuthorityHost=%s
ResourceManagerEndpoint=%s
%sOperationPollSec=1
RequestTimeoutSec=3
[Storage]
AccountId=%s
%s[Shipping]
ContactName=Backup Operator
Phone=+1 425 555 0100
Email=ops@example.com
CompanyName=Example Backup Site
StreetAddress1=1 Microsoft Way
City=Redmond
StateOrProvince=WA
PostalCode=98052
Country=US
ReturnCarrier=FedEx
ReturnCarrierAccountNumberFile=%s
[Drives]
RequireNTFS=no
%s""" % (api, TENANT, CLIENT, secret, SUB, RG, sim.url, sim.url, ca, account_id(blob),
         storage_account_lines(tmp, blob), acct, extra + vault_lines(blob))


def storage_account_lines(tmp, blob):
    if blob is None:
        return ""
    key = os.path.join(tmp, "account-key")
    write_secret(key, blob["key"])
    return "AccountName=%s\nAccountKeyFile=%s\nBlobEndpoint=%s\n" % (
        blob["account"], key, blob["url"])


def vault_lines(blob):
    return "[Vault]\nContainer=vault\nAccessTier=Cool\n" if blob is not None else ""


def drive_room(datas):
    """Capacity a drive needs for these files under the planner's cost
    (daemon/engine/plan.h, PLAN_COST_DEFAULT): 4 KiB clusters, 8 KiB of
    filesystem records, 768 bytes of manifest and 200 a 4 MiB block per file,
    64 KiB per drive; and 1 MiB to spare."""
    cost = 0
    for data in datas:
        blocks = max(1, -(-len(data) // (4 << 20)))
        cost += -(-len(data) // 4096) * 4096 + 8192 + 768 + 200 * blocks
    return cost + (64 << 10) + (1 << 20)


def prepared_job(d, name, drives=2, key_drives=None, files=None):
    """Create a job over a small staging tree and `drives` directory drives
    with BitLocker keys; return the staging files."""
    import prepcheck
    staging = os.path.join(d.tmp, "staging-" + name)
    custom = files is not None
    if files is None:
        files = {"a/one.bin": os.urandom(300000), "b/two.txt": b"two\n",
                 "c.dat": os.urandom(5000)}
    for rel, data in files.items():
        p = os.path.join(staging, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        open(p, "wb").write(data)
    d.ctl_json("job", "create", name, "--staging", staging)
    prepcheck.wait_phase(d, name, "indexed")
    for i in range(drives):
        path = os.path.join(d.tmp, "%s-drive-%d" % (name, i))
        os.mkdir(path)
        keyf = os.path.join(d.tmp, "%s-key-%d" % (name, i))
        write_secret(keyf, KEYS[i % len(KEYS)])
        args = ["drive", "add", name, path, "--serial", "%s-SN%d" % (name.upper(), i),
                "--capacity", str(drive_room(files.values()) if custom else
                                  200000 + i * 400000 if drives > 1 else 2000000)]
        if key_drives is None or i in key_drives:
            args += ["--bitlocker-key-file", keyf]
        d.ctl_json(*args)
    d.ctl_json("job", "prepare", name)
    return files


def arm_requests(sim, method, suffix):
    return [r for r in sim.requests() if r.get("method") == method and
            r.get("path", "").split("?")[0].endswith(suffix)]


def no_secrets(text, where):
    for s in [SECRET, CARRIER_ACCOUNT] + KEYS:
        check(s not in text, "a secret reached %s" % where)
