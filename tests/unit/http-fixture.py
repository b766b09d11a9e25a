#!/usr/bin/env python3
"""HTTP(S) server for test-azure-http: binds 127.0.0.1 on a free port, prints
the port on stdout, serves until killed.

  http-fixture.py [--tls CERT KEY]

Endpoints (any method unless noted; a query string such as ?id=x makes a
separate counter for the stateful ones):
  /ok                 200 JSON, with X-Test: Value
  /status/NNN         NNN with a small JSON body
  /retry-after/N      429 + Retry-After: N + ratelimit header, then 200
  /retry-date/N       503 + Retry-After: <HTTP-date N s ahead>, then 200
  /flaky/K            503 K times, then 200 {"attempt": n}
  /hang               sleeps 30 s before answering
  /reset              closes the connection with an RST, no answer
  /big                5 MiB body with Content-Length
  /big-chunked        5 MiB body, chunked (no length)
  /headers            JSON echo: method, path, request headers, body
  /location           202 with a 4 KiB Location header
  /many-headers       200 with 150 headers
  /long-header        200 with one 20 KiB header
  /count              JSON: how many requests each path got
"""
import email.utils
import json
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {}
lock = threading.Lock()


def bump(path):
    with lock:
        counts[path] = counts.get(path, 0) + 1
        return counts[path]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=b"", headers=(), chunked=False):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if chunked:
            step = 65536
            for i in range(0, len(body), step):
                part = body[i:i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self):
        body = self.read_body()
        full = self.path
        path = full.split("?", 1)[0]
        parts = path.strip("/").split("/")
        n = bump(full)
        if path == "/count":
            with lock:
                return self.reply(200, dict(counts))
        if path == "/ok":
            return self.reply(200, {"ok": True}, [("X-Test", "Value")])
        if parts[0] == "status" and len(parts) == 2:
            code = int(parts[1])
            return self.reply(code, {"status": code} if code not in (204, 304) else b"")
        if parts[0] == "retry-after" and len(parts) == 2:
            if n == 1:
                return self.reply(429, {"error": "throttled"}, [
                    ("Retry-After", parts[1]),
                    ("x-ms-ratelimit-remaining-subscription-reads", "0")])
            return self.reply(200, {"attempt": n})
        if parts[0] == "retry-date" and len(parts) == 2:
            if n == 1:
                when = email.utils.formatdate(time.time() + int(parts[1]), usegmt=True)
                return self.reply(503, {"error": "busy"}, [("Retry-After", when)])
            return self.reply(200, {"attempt": n})
        if parts[0] == "flaky" and len(parts) == 2:
            if n <= int(parts[1]):
                return self.reply(503, {"error": "flaky", "attempt": n})
            return self.reply(200, {"attempt": n})
        if path == "/hang":
            time.sleep(30)
            return self.reply(200, {"late": True})
        if path == "/reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return None
        if path == "/big":
            return self.reply(200, b"x" * (5 << 20))
        if path == "/big-chunked":
            return self.reply(200, b"x" * (5 << 20), chunked=True)
        if path == "/headers":
            return self.reply(200, {
                "method": self.command,
                "path": full,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            })
        if path == "/location":
            loc = "https://management.example/operationResults/op?t=" + "a" * 4096
            return self.reply(202, b"", [("Location", loc)])
        if path == "/many-headers":
            return self.reply(200, {}, [("X-H%d" % i, "v") for i in range(150)])
        if path == "/long-header":
            return self.reply(200, {}, [("X-Long", "y" * 20480)])
        return self.reply(404, {"error": "no such endpoint"})

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # clients that hang up early are part of the tests


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
