"""A hostile Resource Manager (issue 11): the simulator hands out operation
URLs (Location, then Azure-AsyncOperation) on another listener, another port
of localhost. seedd must not follow them: the step fails naming that host
and port, and the other listener never receives an Authorization header
(it receives nothing at all). With the simulator honest again, `job retry`
goes on."""
import http.server
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check  # noqa: E402
import azenv  # noqa: E402
import prepcheck  # noqa: E402


class Recorder(http.server.BaseHTTPRequestHandler):
    seen = []

    def answer(self):
        Recorder.seen.append((self.command, self.path, dict(self.headers)))
        body = b'{"status":"InProgress"}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def log_message(self, *args):
        pass


def hostile_job(d, sim, name, other, async_op):
    sim.ctl("POST", "/config", {"operationBase": other, "createAsyncOperation": async_op})
    azenv.prepared_job(d, name, drives=1)
    deadline = time.time() + 60
    while time.time() < deadline and not Recorder.seen:
        job = d.ctl_json("job", "show", name)
        if job["state"] == "failed":
            break
        time.sleep(0.2)
    auth = [r for r in Recorder.seen if any(k.lower() == "authorization" for k in r[2])]
    check(not auth, "the other listener got Authorization: %r" % [r[:2] for r in auth])
    check(not Recorder.seen, "the other listener was not contacted at all: %r" %
          [r[:2] for r in Recorder.seen])
    job = prepcheck.wait_state(d, name, "failed", 60)
    host = other.split("//", 1)[1]
    check(host in (job["error"] or ""), "the step fails naming %s: %r" % (host, job["error"]))
    check("not followed" in job["error"], "and says why: %r" % job["error"])
    return job


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    other = "http://127.0.0.1:%d" % srv.server_address[1]
    d = Daemon()
    sim = azenv.Sim(d.tmp, tls=False)
    with open(d.config, "w") as f:
        f.write(azenv.config(d.tmp, sim))
    d.start()
    try:
        hostile_job(d, sim, "h-location", other, False)
        hostile_job(d, sim, "h-async", other, True)
        # Honest again: the retry creates the job (one PUT by name, idempotent).
        sim.ctl("POST", "/config", {"operationBase": "", "createAsyncOperation": False})
        d.ctl_json("job", "retry", "h-location")
        prepcheck.wait_phase(d, "h-location", "awaiting-tracking", 120)
        log = d.ctl("job", "log", "h-location", check_rc=0).stdout
        check("127.0.0.1:%d" % srv.server_address[1] in log, "the job log names the host")
        d.stop()
        azenv.no_secrets(d.read_log(), "seedd's log")
    finally:
        if d.alive():
            d.proc.kill()
        sim.stop()
        srv.shutdown()
    print("ok")


if __name__ == "__main__":
    main()
