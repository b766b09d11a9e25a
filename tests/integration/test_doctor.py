"""Is the set-up right? `seedd --check-config` on a good and a bad
configuration (file:line), and `seedctl doctor` against the Azure simulator
and Azurite: all ok on a good set-up; then, reloaded into broken ones, each
failure named with what to fix: a wrong client secret (no token), a storage
account ARM does not know, a read-only SAS (the import container not
writable, the vault container missing and not creatable), a blob endpoint
nobody answers, and the drives: one not mounted, one mounted read-only (root
only: a tmpfs in a private mount namespace)."""
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from harness import SEEDD, Daemon, check, fail, skip  # noqa: E402
import azenv  # noqa: E402
import azurite  # noqa: E402
import prepcheck  # noqa: E402

sys.path.insert(0, azenv.SIM_DIR)
import blobstore  # noqa: E402

MARK = "SEEDD_TEST_IN_NAMESPACE"
NAMES = ["daemon", "configuration", "Entra token", "subscription", "resource group",
         "storage account", "import container", "vault container"]


def line_of(path, text):
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if line.startswith(text):
                return i
    fail("%s has no line %r" % (path, text))


def check_config(d, conf_text):
    """--check-config: the summary without secrets, or file:line of the bad value."""
    p = subprocess.run([SEEDD, "--check-config", "--config", d.config], capture_output=True,
                       text=True, timeout=30)
    check(p.returncode == 0 and "%s: valid" % d.config in p.stdout and "[Azure]" in p.stdout
          and "ClientSecretFile=%s" % os.path.join(d.tmp, "client-secret") in p.stdout,
          "a good configuration is valid and summarized: %d %r %r" % (
              p.returncode, p.stdout, p.stderr))
    azenv.no_secrets(p.stdout + p.stderr, "--check-config")
    check(not os.path.exists(d.state) and not os.path.exists(d.sock),
          "--check-config opened no state directory and no socket")
    bad = os.path.join(d.tmp, "bad.conf")
    with open(bad, "w") as f:
        f.write(conf_text.replace("RequestTimeoutSec=3", "RequestTimeoutSec=3000"))
    p = subprocess.run([SEEDD, "--check-config", "--config", bad], capture_output=True,
                       text=True, timeout=30)
    want = "seedd: %s:%d: RequestTimeoutSec=3000: out of range" % (
        bad, line_of(bad, "RequestTimeoutSec="))
    check(p.returncode == 2 and p.stderr.strip() == want and p.stdout == "",
          "a bad value: exit 2 and file:line: %d %r" % (p.returncode, p.stderr))
    secret = os.path.join(d.tmp, "client-secret")
    os.chmod(secret, 0o644)
    p = subprocess.run([SEEDD, "--check-config", "--config", d.config], capture_output=True,
                       text=True, timeout=30)
    os.chmod(secret, 0o600)
    check(p.returncode == 2 and "%s:%d: ClientSecretFile=" % (
        d.config, line_of(d.config, "ClientSecretFile=")) in p.stderr and
          "accessible to others" in p.stderr,
          "a secret readable by others: exit 2 naming its line: %r" % p.stderr)


def doctor(d, want_rc):
    p = d.ctl("--json", "doctor", check_rc=want_rc, timeout=90)
    rep = json.loads(p.stdout)
    human = d.ctl("doctor", check_rc=want_rc, timeout=90).stdout
    azenv.no_secrets(p.stdout + human, "doctor")
    check(azurite.KEY not in p.stdout + human and "sig=" not in p.stdout + human,
          "no storage secret in doctor's output")
    checks = {c["name"]: c for c in rep["checks"]}
    check([c["name"] for c in rep["checks"]][:len(NAMES)] == NAMES,
          "the checks in their order: %r" % [c["name"] for c in rep["checks"]])
    check(rep["ok"] == (want_rc == 0) and rep["writeProbes"] is True,
          "ok and writeProbes: %r" % rep)
    for c in rep["checks"]:
        status = "FAIL" if c["status"] == "fail" else c["status"]
        check(any(ln.startswith(status) and c["name"] in ln for ln in human.splitlines()),
              "a line for %s: %r" % (c["name"], human))
    return checks, human


def status(checks, name, want, *words):
    c = checks.get(name)
    check(c is not None and c["status"] == want and all(w in c["text"] for w in words),
          "%s: want %s with %r, got %r" % (name, want, words, c))


def sas_read_only(blob):
    """An account SAS that may read and list, nothing else (version 2019-12-12)."""
    fields = {"sv": "2019-12-12", "ss": "b", "srt": "sco", "sp": "rl",
              "se": "2099-01-01T00:00:00Z", "spr": "https"}
    to_sign = "\n".join([blob["account"], fields["sp"], fields["ss"], fields["srt"], "",
                         fields["se"], "", fields["spr"], fields["sv"], ""])
    sig = hmac.new(base64.b64decode(blob["key"]), to_sign.encode(), hashlib.sha256).digest()
    fields["sig"] = base64.b64encode(sig).decode()
    return urllib.parse.urlencode(fields)


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def reload(d, text, n):
    with open(d.config, "w") as f:
        f.write(text)
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while d.read_log().count("configuration reloaded") < n and time.time() < deadline:
        time.sleep(0.05)
    check(d.read_log().count("configuration reloaded") >= n, "seedd reloaded")


def add_drives(d, tmpfs):
    staging = os.path.join(d.tmp, "staging")
    os.makedirs(staging)
    with open(os.path.join(staging, "one.bin"), "wb") as f:
        f.write(os.urandom(4096))
    d.ctl_json("job", "create", "doc-job", "--staging", staging)
    prepcheck.wait_phase(d, "doc-job", "indexed")
    paths = {"DOC-DIR": os.path.join(d.tmp, "drive-dir")}
    if tmpfs:
        paths["DOC-TMPFS"] = os.path.join(d.tmp, "drive-tmpfs")
    for serial, path in paths.items():
        os.mkdir(path)
        if serial == "DOC-TMPFS":
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", path], check=True)
        key = os.path.join(d.tmp, "key-" + serial)
        azenv.write_secret(key, azenv.KEYS[0])
        d.ctl_json("drive", "add", "doc-job", path, "--serial", serial, "--capacity", "1M",
                   "--bitlocker-key-file", key)
    return paths


def read_only(d, imp, paths):
    """A user neither root nor in AdminGroup=: the same checks, reading only."""
    if os.geteuid() != 0:
        return
    dirs = [d.tmp, os.path.dirname(d.sock)]
    modes = [os.stat(p).st_mode & 0o7777 for p in dirs]
    for p in dirs:
        os.chmod(p, 0o711)
    os.chmod(d.sock, 0o666)

    def nobody():
        os.setgid(65534)
        os.setgroups([])
        os.setuid(65534)
    p = d.ctl("--json", "doctor", check_rc=0, timeout=90, preexec=nobody)
    rep = json.loads(p.stdout)
    checks = {c["name"]: c for c in rep["checks"]}
    check(rep["writeProbes"] is False, "no write probes for nobody: %r" % rep)
    status(checks, "import container", "ok", imp, "readable", "root or AdminGroup=")
    for serial in paths:
        status(checks, "drive %s (doc-job)" % serial, "ok", "free", "root or AdminGroup=")
    human = d.ctl("doctor", check_rc=0, timeout=90, preexec=nobody).stdout
    check("Writing was not tried" in human, "the last line says so: %r" % human)
    os.chmod(d.sock, 0o660)
    for p, mode in zip(dirs, modes):
        os.chmod(p, mode)


def main():
    if os.environ.get(MARK) != "1" and os.geteuid() == 0 and \
            subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0:
        env = dict(os.environ, **{MARK: "1"})
        sys.exit(subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                                 __file__], env=env).returncode)
    try:
        blob = azurite.info()
    except azurite.Unavailable as e:
        skip(str(e))
    tmpfs = os.environ.get(MARK) == "1"
    d = Daemon()
    sim = azenv.Sim(d.tmp, blob=blob)
    tag = os.urandom(4).hex()
    imp, vault = "doc-imp-" + tag, "doc-vault-" + tag
    good = azenv.config(d.tmp, sim, blob=blob).replace(
        "[Storage]\n", "[Storage]\nImportContainer=%s\n" % imp).replace(
        "[Vault]\nContainer=vault\n", "[Vault]\nContainer=%s\n" % vault)
    with open(d.config, "w") as f:
        f.write(good)
    paths = {}
    try:
        check_config(d, good)
        d.start()
        paths = add_drives(d, tmpfs)

        # A good set-up: every line ok; missing containers created, probes gone.
        checks, human = doctor(d, 0)
        for name in NAMES[2:6]:
            status(checks, name, "ok")
        status(checks, "import container", "ok", imp, "created it", "written and deleted")
        status(checks, "vault container", "ok", vault, "written and deleted")
        for serial in paths:
            status(checks, "drive %s (doc-job)" % serial, "ok", "free", "probe file written")
        bc = blobstore.BlobClient(blob["url"], blob["account"], blob["key"], ca=blob.get("ca"))
        check(bc.list(imp) == [] and bc.list(vault) == [], "the probe blobs are gone")
        check(os.listdir(paths["DOC-DIR"]) == [".seedd-drive.json"],
              "the drive probe left nothing: %r" % os.listdir(paths["DOC-DIR"]))
        check("All %d checks ok." % len(checks) in human, "the closing line: %r" % human)
        read_only(d, imp, paths)

        # Broken: a wrong secret, a read-only SAS, the drives gone or read-only.
        bc.create_container(imp + "x")
        sas = os.path.join(d.tmp, "sas")
        azenv.write_secret(sas, sas_read_only(blob))
        wrong = os.path.join(d.tmp, "wrong-secret")
        azenv.write_secret(wrong, "not-the-secret")
        broken = good.replace("ClientSecretFile=%s" % os.path.join(d.tmp, "client-secret"),
                              "ClientSecretFile=%s" % wrong).replace(
            "AccountKeyFile=%s" % os.path.join(d.tmp, "account-key"), "SasTokenFile=%s" % sas
        ).replace("ImportContainer=%s" % imp, "ImportContainer=%sx" % imp).replace(
            "Container=%s\n" % vault, "Container=%sy\n" % vault)
        reload(d, broken, 1)
        os.rename(paths["DOC-DIR"], paths["DOC-DIR"] + ".away")
        os.mkdir(paths["DOC-DIR"])
        if tmpfs:
            subprocess.run(["mount", "-o", "remount,ro", paths["DOC-TMPFS"]], check=True)
        checks, human = doctor(d, 1)
        status(checks, "Entra token", "fail", "AADSTS7000215", "ClientSecretFile=")
        for name in NAMES[3:6]:
            status(checks, name, "skip", "needs an Entra token")
        status(checks, "import container", "fail", "may not write to container", imp + "x",
               "SasTokenFile=")
        status(checks, "vault container", "fail", "does not exist, and may neither be created",
               vault + "y")
        status(checks, "drive DOC-DIR (doc-job)", "fail", "no seedd marker", "mount drive DOC-DIR")
        if tmpfs:
            status(checks, "drive DOC-TMPFS (doc-job)", "fail", "mounted read-only")
        check("checks failed." in human, "the closing line counts failures: %r" % human)

        # Broken: a storage account ARM does not know; a blob endpoint nobody answers.
        sim.ctl("POST", "/config", {"missingResources": [azenv.account_id(blob)]})
        unreachable = good.replace(blob["url"], "https://127.0.0.1:%d/%s" % (
            closed_port(), blob["account"]))
        reload(d, unreachable, 2)
        checks, _ = doctor(d, 1)
        status(checks, "Entra token", "ok")
        status(checks, "subscription", "ok", azenv.SUB)
        status(checks, "resource group", "ok", azenv.RG)
        status(checks, "storage account", "fail", "not found", "ResourceNotFound", "AccountId=")
        status(checks, "import container", "fail", "cannot reach the blob endpoint",
               "BlobEndpoint=")
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
        sim.stop()
        if tmpfs and paths.get("DOC-TMPFS"):
            subprocess.run(["umount", paths["DOC-TMPFS"]])
    print("ok")


if __name__ == "__main__":
    main()
