"""Abuse of the control socket: each case gets an error reply or a closed
connection, and afterwards the daemon is alive and its jobs unchanged."""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from harness import Daemon, Conn, check, error_of  # noqa: E402

NOBODY = 65534
NOGROUP = 65534


def snapshot(d):
    return json.dumps(d.call("io.seedd.ListJobs")["parameters"]["jobs"], sort_keys=True)


def healthy(d, before, what):
    check(d.alive(), "seedd died after: %s\n%s" % (what, d.read_log()))
    r = d.call("io.seedd.GetStatus")
    check(r and "parameters" in r and "version" in r["parameters"], "status after %s" % what)
    check(snapshot(d) == before, "jobs changed after %s" % what)


def recv_or_eof(c):
    try:
        return c.recv()
    except (ConnectionResetError, socket.timeout, ValueError):
        return None


def case_garbage(d, before):
    with d.connect() as c:
        c.send_raw(b"\x01garbage{{{\0")
        r = c.recv()
        check(error_of(r) == "org.varlink.service.InvalidParameter", "garbage: %r" % r)
        r = c.call("io.seedd.GetStatus")
        check("parameters" in r, "same connection still serves calls after garbage")
        c.send_raw(b"[1,2,3]\0")
        check(error_of(c.recv()) == "org.varlink.service.InvalidParameter", "array message")
        c.send_raw(b'{"method":"io.seedd.GetStatus","parameters":{}}\xff\xfe\0')
        check(error_of(recv_or_eof(c)) == "org.varlink.service.InvalidParameter",
              "invalid UTF-8 after the JSON refused")
        c.send_raw(b'{"method":"io.seedd.GetJob","parameters":{"name":"\xc0\xaf"}}\0')
        r = recv_or_eof(c)
        check(r is None or error_of(r) is not None, "invalid UTF-8 refused: %r" % r)
    healthy(d, before, "garbage")


def case_no_nul_then_close(d, before):
    with d.connect() as c:
        c.send_raw(b'{"method":"io.seedd.CreateJob","parameters":{"name":"half"')
    time.sleep(0.2)
    healthy(d, before, "a message without NUL, then close")


def case_huge(d, before):
    with d.connect() as c:
        big = b'{"method":"io.seedd.GetStatus","parameters":{"x":"' + b"A" * (2 << 20)
        try:
            c.send_raw(big + b'"}}\0')
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = recv_or_eof(c)
        check(r is None or error_of(r) == "org.varlink.service.InvalidParameter",
              "2 MiB message: error or close, got %r" % (r,))
    healthy(d, before, "a 2 MiB message")


def case_types(d, before):
    staging = os.path.join(d.tmp, "staging")
    bad = [
        ("io.seedd.CreateJob", {"name": 123, "stagingPath": staging}, "name"),
        ("io.seedd.CreateJob", {"name": "ok-name", "stagingPath": ["x"]}, "stagingPath"),
        ("io.seedd.CreateJob", {"name": "ok-name"}, "stagingPath"),
        ("io.seedd.CreateJob", {"name": "ok-name", "stagingPath": staging, "evil": 1}, "evil"),
        ("io.seedd.GetJob", {"name": None}, "name"),
        ("io.seedd.GetJob", {"name": "a" * 5000}, "name"),
        ("io.seedd.AddDrive", {"name": "j", "path": "/", "capacity": "lots"}, "capacity"),
        ("io.seedd.AddDrive", {"name": "j", "path": "/", "capacity": -5}, "capacity"),
        ("io.seedd.ShipJob", {"name": "j", "carrier": True, "trackingNumber": "1"}, "carrier"),
    ]
    for method, params, param in bad:
        r = d.call(method, params)
        check(error_of(r) == "org.varlink.service.InvalidParameter" and
              r["parameters"].get("parameter") == param,
              "%s %r: InvalidParameter naming %s, got %r" % (method, params, param, r))
    with d.connect() as c:
        c.send({"method": "io.seedd.GetStatus", "parameters": "notanobject"})
        check(error_of(c.recv()) == "org.varlink.service.InvalidParameter", "parameters type")
        c.send({"method": 42})
        check(error_of(c.recv()) == "org.varlink.service.InvalidParameter", "method type")
        c.send({"method": "io.seedd.GetStatus", "more": "yes"})
        check(error_of(c.recv()) == "org.varlink.service.InvalidParameter", "more type")
    healthy(d, before, "wrong parameter types")


def case_unknown_method(d, before):
    r = d.call("io.seedd.DropAllTables", {})
    check(error_of(r) == "org.varlink.service.MethodNotFound" and
          r["parameters"]["method"] == "io.seedd.DropAllTables", "unknown method: %r" % r)
    healthy(d, before, "an unknown method")


def case_many_messages_one_write(d, before):
    with d.connect() as c:
        msg = json.dumps({"method": "io.seedd.GetStatus", "parameters": {}}).encode() + b"\0"
        c.send_raw(msg * 50)
        for i in range(50):
            r = c.recv()
            check(r and "parameters" in r, "pipelined reply %d" % i)
        # and one message split byte by byte
        for b in msg:
            c.send_raw(bytes([b]))
        check("parameters" in c.recv(), "byte-by-byte message")
    healthy(d, before, "pipelined and split messages")


def case_connection_cap(d, before):
    conns = []
    try:
        for _ in range(40):
            conns.append(Conn(d.sock))
        # Connections past the per-uid cap are closed at once.
        closed = 0
        for c in conns:
            c.s.settimeout(2)
            try:
                c.send({"method": "io.seedd.GetStatus", "parameters": {}})
                if c.recv() is None:
                    closed += 1
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                closed += 1
        check(closed >= 1, "per-uid connection cap closes extra connections")
    finally:
        for c in conns:
            c.close()
    time.sleep(0.2)
    healthy(d, before, "many connections")


def as_user(uid, gid, groups, fn):
    """Run fn in a child with other credentials; its exit code is the result."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            os._exit(fn())
        except BaseException as e:  # noqa: BLE001
            print("child:", e, file=sys.stderr)
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def case_unprivileged(d, before, staging):
    if os.geteuid() != 0:
        print("skip: unprivileged caller cases need root to switch uid")
        return
    os.chmod(d.sock, 0o666)  # let a foreign uid connect; the method check must still hold
    os.chmod(os.path.dirname(d.sock), 0o755)
    os.chmod(d.tmp, 0o755)

    def attempt():
        r = d.call("io.seedd.CreateJob", {"name": "sneaky", "stagingPath": staging})
        if error_of(r) != "io.seedd.PermissionDenied":
            return 1
        for method, params in (("RemoveDrive", {"name": "sneaky", "serial": "S"}),
                               ("PurgeJob", {"name": "sneaky"})):
            if error_of(d.call("io.seedd." + method, params)) != "io.seedd.PermissionDenied":
                return 3
        r = d.call("io.seedd.GetStatus")  # reads stay open
        return 0 if "parameters" in r else 2

    rc = as_user(NOBODY, NOGROUP, [], attempt)
    check(rc == 0, "unprivileged CreateJob, RemoveDrive, PurgeJob refused with "
          "PermissionDenied (%d)" % rc)
    healthy(d, before, "a mutating call from an unprivileged uid")


def case_admin_group(staging_root):
    """With AdminGroup=, a member (primary or supplementary) may mutate."""
    if os.geteuid() != 0:
        print("skip: AdminGroup cases need root to switch uid")
        return
    d = Daemon("[Daemon]\nAdminGroup=nogroup\n").start()
    try:
        os.chmod(os.path.dirname(d.sock), 0o755)
        staging = os.path.join(d.tmp, "staging")
        os.makedirs(staging)
        os.chmod(d.tmp, 0o755)

        def create(name):
            def fn():
                r = d.call("io.seedd.CreateJob", {"name": name, "stagingPath": staging})
                return 0 if r and "parameters" in r else 1
            return fn
        check(as_user(NOBODY, NOGROUP, [], create("by-primary")) == 0,
              "member by primary group may create")
        check(as_user(4242, 4242, [NOGROUP], create("by-supplementary")) == 0,
              "member by supplementary group may create")
        check(as_user(4243, 4243, [], create("by-stranger")) != 0,
              "non-member may not create (nor even connect to the 0660 socket)")
        names = sorted(j["name"] for j in d.call("io.seedd.ListJobs")["parameters"]["jobs"])
        check(names == ["by-primary", "by-supplementary"], "jobs: %r" % names)
    finally:
        d.stop()


def main():
    d = Daemon().start()
    staging = os.path.join(d.tmp, "staging")
    os.makedirs(staging)
    try:
        r = d.call("io.seedd.CreateJob", {"name": "keep-me", "stagingPath": staging})
        check("parameters" in r, "setup job: %r" % r)
        deadline = time.time() + 30
        while time.time() < deadline:  # indexing runs on its own; wait until it is done
            if d.call("io.seedd.GetJob", {"name": "keep-me"})["parameters"]["job"]["phase"] \
                    == "indexed":
                break
            time.sleep(0.05)
        before = snapshot(d)
        case_garbage(d, before)
        case_no_nul_then_close(d, before)
        case_huge(d, before)
        case_types(d, before)
        case_unknown_method(d, before)
        case_many_messages_one_write(d, before)
        case_connection_cap(d, before)
        case_unprivileged(d, before, staging)
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    case_admin_group(staging)
    print("ok")


if __name__ == "__main__":
    main()
