"""Azurite (Microsoft's Azure Storage emulator, Blob service) for the
tests: over HTTPS on loopback with a throw-away CA (tests/azure-sim/mkcert.sh).

info() returns {"url", "account", "key", "ca"}: from AZURITE_BLOB_URL,
AZURITE_ACCOUNT, AZURITE_KEY and AZURITE_CA when scripts/test started one
(scripts/services.sh), else from a private Azurite started here once per
process (plain `meson test`), stopped by stop() or at exit.  Raises
Unavailable when Azurite is not installed (run scripts/bootstrap): tests
then skip.  ca_bundle() concatenates CA files, since seedd has one CAFile=.
"""
import atexit
import ctypes
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

ACCOUNT = "devstoreaccount1"
KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
       "K1SZFPTOtr/KBHBeksoGMGw==")
SOURCE_ROOT = os.environ.get("SOURCE_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
START_TIMEOUT = 30

_private = {}


class Unavailable(Exception):
    pass


def info():
    env = {k: os.environ.get("AZURITE_" + k.upper()) for k in
           ("blob_url", "account", "key", "ca")}
    if all(env.values()):
        return {"url": env["blob_url"], "account": env["account"],
                "key": env["key"], "ca": env["ca"]}
    if not _private:
        _start()
    return dict(_private["info"])


def ca_bundle(path, *cas):
    """Write the concatenation of the CA files `cas` to path; returns path."""
    with open(path, "wb") as out:
        for ca in cas:
            with open(ca, "rb") as f:
                data = f.read()
            out.write(data if data.endswith(b"\n") else data + b"\n")
    return path


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _start():
    exe = os.path.join(SOURCE_ROOT, "node_modules", ".bin", "azurite-blob")
    if not os.access(exe, os.X_OK) or not shutil.which("node"):
        raise Unavailable("Azurite is not installed (%s); run "
                          "scripts/bootstrap" % exe)
    tmp = tempfile.mkdtemp(prefix="seedd-azurite-")
    _private["tmp"] = tmp
    atexit.register(stop)
    certs = os.path.join(tmp, "certs")
    subprocess.run(["sh", os.path.join(SOURCE_ROOT, "tests", "azure-sim",
                                       "mkcert.sh"), certs], check=True,
                   stdout=subprocess.DEVNULL)
    log = os.path.join(tmp, "azurite.log")
    with open(log, "wb") as out:
        _private["proc"] = subprocess.Popen(
            [exe, "--blobHost", "127.0.0.1", "--blobPort", "0",
             "--cert", os.path.join(certs, "server.pem"),
             "--key", os.path.join(certs, "server.key"),
             "--location", os.path.join(tmp, "data"), "--skipApiVersionCheck",
             "--silent", "--disableTelemetry"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
    ca = os.path.join(certs, "ca.pem")
    port = _wait_port(_private["proc"], log)
    _wait_answer(port, ca)
    _private["info"] = {"url": "https://127.0.0.1:%d/%s" % (port, ACCOUNT),
                        "account": ACCOUNT, "key": KEY, "ca": ca}


def _wait_port(proc, log):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with open(log, errors="replace") as f:
            m = re.search(r"listens on https://127\.0\.0\.1:(\d+)", f.read())
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    with open(log, errors="replace") as f:
        text = f.read()
    stop()
    raise Unavailable("Azurite did not start: %s" % text[-2000:])


def _wait_answer(port, ca):
    """Until an HTTPS request gets any HTTP answer."""
    ctx = ssl.create_default_context(cafile=ca)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), 2) as s:
                with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                    t.sendall(b"GET /%s?comp=list HTTP/1.1\r\nHost: 127.0.0.1"
                              b"\r\nConnection: close\r\n\r\n" %
                              ACCOUNT.encode())
                    if t.recv(16).startswith(b"HTTP/1.1 "):
                        return
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop()
            raise Unavailable("Azurite on port %d does not answer" % port)
        time.sleep(0.1)


def stop():
    """Stop the private Azurite, if this process started one."""
    proc = _private.pop("proc", None)
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    tmp = _private.pop("tmp", None)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    _private.clear()
