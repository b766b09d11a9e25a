#!/usr/bin/env python3
"""Loopback simulator of Microsoft Entra ID (token endpoint) and Azure
Resource Manager for Microsoft.DataBox customer-disk jobs and legacy
Microsoft.ImportExport jobs, for seedd's integration tests.

  azuresim.py --port 0 --state-file F [--tls-cert C --tls-key K]
              [--control-port 0] [--verbose]
              [--blob-endpoint URL --blob-account NAME --blob-key KEY
               [--blob-ca CAFILE]]

Once both servers listen it prints one JSON line on stdout,
{"url": "http(s)://127.0.0.1:PORT", "control": "http://127.0.0.1:CPORT"},
and serves until SIGTERM or SIGINT.  Python 3 standard library only.

This file owns the HTTP side: sockets, TLS, reading requests, faults,
the request log, common ARM headers and writing answers.  The APIs live in
entra.py, databox.py and importexport.py; the control API in control.py.
With --blob-endpoint the simulated datacenter imports the drives the
tests point it at into that storage account (Azurite): datacenter.py.
"""

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import hashlib  # noqa: E402
import http.server  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.parse  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import arm  # noqa: E402
import blobstore  # noqa: E402
import control  # noqa: E402
import databox  # noqa: E402
import datacenter  # noqa: E402
import entra  # noqa: E402
import importexport  # noqa: E402
import resources  # noqa: E402
from store import Store  # noqa: E402

SECRET_KEYS = ("bitLockerKey", "carrierAccountNumber", "client_secret",
    "client_assertion", "sharePassword", "access_token")
MAX_BODY = 8 * 1024 * 1024
STOP = threading.Event()


def redact(value):
    """Replace secrets in a logged body by 'REDACTED sha256=<hex>' so tests
    can check what was sent without the log holding the secret."""
    if isinstance(value, dict):
        return {k: (_digest(v) if k in SECRET_KEYS and isinstance(v, str)
            else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _digest(text):
    return "REDACTED sha256=" + hashlib.sha256(text.encode()).hexdigest()


def _log_body(body, ctype):
    if not body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"binary": len(body)}
    if "x-www-form-urlencoded" in (ctype or ""):
        form = urllib.parse.parse_qs(text, keep_blank_values=True)
        return redact({k: v[0] for k, v in form.items()})
    try:
        return redact(json.loads(text))
    except ValueError:
        return {"text": text[:4096]}


class ArmHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "azuresim/1"
    timeout = 120

    def setup(self):
        ctx = self.server.tls
        if ctx is not None:
            self.request.settimeout(10)
            try:
                self.request = ctx.wrap_socket(self.request,
                    server_side=True)
            except (ssl.SSLError, OSError):
                self.request.close()
                raise
            self.request.settimeout(None)
        super().setup()

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, socket.timeout):
            pass

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("azuresim: %s\n" % (fmt % args))

    def do_GET(self):
        self._serve()

    do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = self.rfile.readline(65537)
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n",
                        b""):
                        pass
                    return out
                out += self.rfile.read(n)
                self.rfile.readline(65537)
                if len(out) > MAX_BODY:
                    raise ValueError("body too large")
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(n) if n else b""

    def _base(self):
        host = self.headers.get("Host")
        if not host:
            return self.server.url
        return "%s://%s" % ("https" if self.server.tls else "http", host)

    def _serve(self):
        store = self.server.store
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self.send_error(400)
            return
        split = urllib.parse.urlsplit(self.path)
        auth = self.headers.get("Authorization") or ""
        headers = {k: ("REDACTED" if k.lower() == "authorization" else v)
            for k, v in self.headers.items()}
        entry = {"time": time.time(), "method": self.command,
            "path": split.path,
            "query": {k: (v[0] if len(v) == 1 else v) for k, v in
            urllib.parse.parse_qs(split.query,
            keep_blank_values=True).items()},
            "headers": headers,
            "hasBearer": auth.lower().startswith("bearer "),
            "body": _log_body(body, self.headers.get("Content-Type")),
            "status": None, "fault": None}
        entry = store.log_append(entry)
        req = arm.Request(self.command, self.path, self.headers, body,
            self._base(), entry)
        entry["server"] = "entra" if entra.route(req) else "arm"
        resp = self._with_faults(store, req)
        if resp is not None:
            self._send(store, req, resp)

    def _with_faults(self, store, req):
        fault = store.take_fault(req.method, req.path)
        if fault is None:
            return self._dispatch(store, req)
        req.entry["fault"] = fault["fault"]
        spec = fault["spec"]
        kind = fault["fault"]
        if kind == "lro_fail":
            with store.lock:
                store.lro_failures.append({"status": int(spec.get("status",
                    500)), "code": spec.get("code", "InternalServerError"),
                    "message": spec.get("message", "The long-running "
                    "operation failed (simulated lro_fail fault).")})
            return self._dispatch(store, req)
        if kind == "reset":
            self._reset()
            return None
        if kind == "hang" and spec.get("then") == "execute":
            # The request is carried out, then the answer is lost: a client
            # timeout after the service acted (e.g. a create PUT).
            resp = self._dispatch(store, req)
            req.entry["executedStatus"] = resp.status
            STOP.wait(float(spec.get("seconds", 120)))
            self.close_connection = True
            return None
        if kind == "hang":
            STOP.wait(float(spec.get("seconds", 120)))
            if spec.get("then", "close") == "answer" and not STOP.is_set():
                return self._dispatch(store, req)
            self.close_connection = True
            return None
        if kind == "malformed":
            return self._malformed(store, req)
        if kind == "expired_token":
            tok = req.headers.get("Authorization", "").partition(" ")[2]
            with store.lock:
                info = store.tokens.get(tok.strip(), {})
            exp = min(info.get("expiresAt", time.time()), time.time()) - 1
            return arm.expired_error(req, store, exp)
        return self._http_fault(req, kind, spec)

    def _http_fault(self, req, kind, spec):
        status = int(kind)
        ra = spec.get("retry_after", 1 if status == 429 else None)
        extra = [("Retry-After", str(int(ra)))] if ra is not None else []
        if req.entry["server"] == "entra":
            return entra.fault_error(req, status, extra)
        code, msg = {
            429: ("TooManyRequests", "The request is being throttled as the "
            "limit has been reached for operation type - "
            "Requests_ObservationWindow_00:05:00. For more information, "
            "refer to - https://aka.ms/armthrottling"),
            500: ("InternalServerError", "Encountered internal server "
            "error. Diagnostic information: timestamp '%s' (simulated)."
            % time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())),
            503: ("ServiceUnavailable", "The service is temporarily "
            "unavailable. Please retry the request later (simulated).")
            }[status]
        return arm.error(status, code, msg, headers=extra)

    def _malformed(self, store, req):
        """200 with a body cut in half.  A GET is answered from real
        state first; other requests are not executed."""
        body = b'{"properties":{"transferType":"ImportToAzure","status":"Aw'
        if req.method == "GET":
            real = self._dispatch(store, req)
            if real.status == 200 and len(real.body) > 2:
                body = real.body[:len(real.body) // 2]
        return arm.Response(200, body, arm.JSON_UTF8)

    def _reset(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def _dispatch(self, store, req):
        try:
            handler = entra.route(req)
            if handler is not None:
                return handler(store, req)
            bad = arm.check_auth(store, req)
            if bad is not None:
                return bad
            if databox.is_databox(req):
                return databox.handle(store, req)
            if importexport.is_importexport(req):
                return importexport.handle(store, req)
            if resources.is_resource(req):
                return resources.handle(store, req)
            return arm.error(404, "NotFound", "No HTTP resource was found "
                "that matches the request URI '%s'." % req.path)
        except Exception:
            traceback.print_exc()
            return arm.error(500, "InternalServerError",
                "The simulator failed while handling the request.")

    def _send(self, store, req, resp):
        headers = list(resp.headers)
        if req.entry["server"] == "arm":
            segs = [s.lower() for s in req.segments]
            sub = req.segments[segs.index("subscriptions") + 1] \
                if "subscriptions" in segs[:1] and len(segs) > 1 else None
            headers = arm.common_headers(store, req, arm.rw_kind(req.method),
                sub) + headers
        req.entry["status"] = resp.status
        self.send_response(resp.status)
        for k, v in headers:
            self.send_header(k, v)
        if resp.body and resp.ctype:
            self.send_header("Content-Type", resp.ctype)
        if resp.status != 204 and resp.status >= 200:
            self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if resp.body and self.command != "HEAD" and resp.status != 204:
            self.wfile.write(resp.body)
        if self.server.verbose:
            sys.stderr.write("azuresim: %s %s -> %d\n" % (req.method,
                req.path, resp.status))


class ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "azuresim-control/1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        try:
            status, obj = control.handle(self.server.store, self.command,
                self.path, body)
        except Exception as e:
            traceback.print_exc()
            status, obj = 500, {"error": "control failed: %s" % e}
        data = json.dumps(obj, indent=1).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


def _server(handler, port, store, tls=None, verbose=False):
    srv = Server(("127.0.0.1", port), handler)
    srv.store = store
    srv.tls = tls
    srv.verbose = verbose
    scheme = "https" if tls else "http"
    srv.url = "%s://127.0.0.1:%d" % (scheme, srv.server_address[1])
    return srv


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--state-file", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--blob-endpoint")
    ap.add_argument("--blob-account")
    ap.add_argument("--blob-key")
    ap.add_argument("--blob-ca")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if args.blob_endpoint:
        if not (args.blob_account and args.blob_key):
            ap.error("--blob-endpoint needs --blob-account and --blob-key")
        datacenter.install(datacenter.AzuriteDataCenter(blobstore.BlobClient(
            args.blob_endpoint, args.blob_account, args.blob_key,
            args.blob_ca)))
    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    store = Store(args.state_file)
    api = _server(ArmHandler, args.port, store, tls, args.verbose)
    ctl = _server(ControlHandler, args.control_port, store)
    for srv in (api, ctl):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *a: STOP.set())
    signal.signal(signal.SIGINT, lambda *a: STOP.set())
    print(json.dumps({"url": api.url, "control": ctl.url}), flush=True)
    while not STOP.wait(3600):
        pass
    for srv in (api, ctl):
        srv.shutdown()
        srv.server_close()
    with store.lock:
        store.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
