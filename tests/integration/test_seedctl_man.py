#!/usr/bin/env python3
"""seedctl --help and man/seedctl.1 list the same commands and options, and
seedctl's exit status for an unreachable daemon (3) and bad usage (2).

Env: SEEDCTL (the built binary), SOURCE_ROOT (the source tree). Python stdlib only.
"""
import os
import re
import subprocess
import sys
import tempfile


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def run(seedctl, *args, env=None):
    return subprocess.run([seedctl, *args], capture_output=True, text=True, timeout=30, env=env)


def help_commands(text):
    """Command words from the "Commands:" section: the leading lowercase words of each entry."""
    cmds = []
    section = False
    for line in text.splitlines():
        if line == "Commands:":
            section = True
            continue
        if section and not line.strip():
            break
        if section and re.match(r"^  \S", line):
            words = []
            for w in line.split():
                if not re.fullmatch(r"[a-z]+", w):
                    break
                words.append(w)
            cmds.append(" ".join(words))
    return cmds


def man_commands(text):
    """Command words of each ".It Cm" entry in DESCRIPTION (up to the first other macro)."""
    m = re.search(r"^\.Sh DESCRIPTION$(.*?)^\.Sh ", text, re.M | re.S)
    if not m:
        fail("seedctl.1 has no DESCRIPTION section")
    cmds = []
    for line in m.group(1).splitlines():
        if not line.startswith(".It Cm "):
            continue
        words = []
        for w in line.split()[2:]:
            if re.fullmatch(r"[A-Z][a-z][a-z]?", w):  # the next macro: Ar, Op, Fl...
                break
            words.append(w)
        cmds.append(" ".join(words))
    return cmds


def main():
    seedctl = os.environ.get("SEEDCTL")
    root = os.environ.get("SOURCE_ROOT")
    if not seedctl or not root:
        fail("SEEDCTL and SOURCE_ROOT must be set")

    r = run(seedctl, "--help")
    if r.returncode != 0:
        fail("seedctl --help exited %d" % r.returncode)
    helped = help_commands(r.stdout)
    with open(os.path.join(root, "man", "seedctl.1"), encoding="utf-8") as f:
        man = f.read()
    manned = man_commands(man)

    if len(helped) < 14:
        fail("seedctl --help lists only %d commands: %r" % (len(helped), helped))
    for c in helped:
        if c not in manned:
            fail("command '%s' from --help is not a .It Cm entry of seedctl.1" % c)
    for c in manned:
        if c not in helped:
            fail("command '%s' of seedctl.1 is not in seedctl --help" % c)
    if len(set(manned)) != len(manned):
        fail("seedctl.1 lists a command twice: %r" % manned)

    # Every long option in --help is documented as "Fl \-option".
    for opt in sorted(set(re.findall(r"--([a-z][a-z-]+)", r.stdout))):
        if not re.search(r"Fl \\-%s\b" % re.escape(opt), man):
            fail("option --%s from --help is not in seedctl.1" % opt)

    # Exit status: 3 when seedd is unreachable, 2 for bad usage.
    env = dict(os.environ)
    env.pop("SEEDD_SOCKET", None)
    r = run(seedctl, "--socket", "/nonexistent/x", "status", env=env)
    if r.returncode != 3:
        fail("unreachable socket: exit %d, want 3 (stderr: %s)" % (r.returncode, r.stderr))
    if "/nonexistent/x" not in r.stderr:
        fail("unreachable socket: stderr does not name the socket: %r" % r.stderr)
    with tempfile.TemporaryDirectory() as d:
        env["SEEDD_SOCKET"] = os.path.join(d, "none.sock")
        r = run(seedctl, "status", env=env)
        if r.returncode != 3 or env["SEEDD_SOCKET"] not in r.stderr:
            fail("$SEEDD_SOCKET is not used: exit %d, %r" % (r.returncode, r.stderr))
    r = run(seedctl, "job", "bogus", env=env)
    if r.returncode != 2 or "bogus" not in r.stderr:
        fail("seedctl job bogus: exit %d, stderr %r; want 2 naming 'bogus'"
             % (r.returncode, r.stderr))
    if r.stdout:
        fail("seedctl job bogus printed on stdout: %r" % r.stdout)
    print("ok: %d commands in --help and seedctl.1" % len(helped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
