#!/usr/bin/env python3
"""seedctl's completion, help and man page against its command table; seedd --help
against seedd(8) (issue 12 point 8).

- The generated bash and zsh completions (build/client/completion/) are run for
  real: bash with COMP_WORDS/COMP_CWORD and the _seedctl function, zsh with the
  script sourced under stubs of compadd and _files. For every command of
  `seedctl --help` (the table) they must offer its words, its options and the
  global ones, files or directories where its arguments are paths, and the
  job names a running seedd lists.
- `seedctl help [COMMAND]` prints what --help prints; an unknown COMMAND is
  bad usage (2), as a JSON error with --json.
- `seedd --help` lists every option of seedd(8) and no other.

Env: SEEDD, SEEDCTL, SOURCE_ROOT, BUILD_ROOT.
"""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, check, fail  # noqa: E402
from test_seedctl_man import help_commands, man_commands  # noqa: E402

SEEDD = os.environ["SEEDD"]
SEEDCTL = os.environ["SEEDCTL"]
ROOT = os.environ["SOURCE_ROOT"]
COMPDIR = os.path.join(os.environ["BUILD_ROOT"], "client", "completion")
GLOBALS = {"--socket", "--json", "--help", "--version"}

ZSH_STUB = r'''
compadd() { [[ $1 == -- ]] && shift; print -rl -- "$@"; }
_files() { if [[ $1 == -/ ]]; then print -r -- "<dirs>"; else print -r -- "<files>"; fi; }
words=("$@"); CURRENT=${#words}
source "$SEEDCTL_ZSH"
'''


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, **kw)


def bash_complete(words):
    """What _seedctl offers for the last word of words ('' for a new word)."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
              'cd "$SEEDCTL_CWD"; _seedctl; printf "%s\\n" "${COMPREPLY[@]}"')
    p = run("bash", "-c", script, "_", os.path.join(COMPDIR, "seedctl"), *words,
            env=dict(os.environ, SEEDCTL_CWD=CWD))
    check(p.returncode == 0, "bash completion of %r: %s" % (words, p.stderr))
    return set(x for x in p.stdout.splitlines() if x)


def zsh_complete(words):
    p = run("zsh", "-f", "-c", ZSH_STUB, "_", *words,
            env=dict(os.environ, SEEDCTL_ZSH=os.path.join(COMPDIR, "_seedctl")), cwd=CWD)
    check(p.returncode in (0, 1) and not p.stderr, "zsh completion of %r: %s" % (words, p.stderr))
    return set(x for x in p.stdout.splitlines() if x)


def synopses():
    """command words -> (argument metavars, option names) from seedctl --help."""
    p = run(SEEDCTL, "--help")
    check(p.returncode == 0, "seedctl --help")
    out = {}
    for cmd in help_commands(p.stdout):
        line = next(ln for ln in p.stdout.splitlines() if ln.startswith("  " + cmd + " ") or
                    ln == "  " + cmd)
        rest = line[len("  " + cmd):]
        opts = set(re.findall(r"(--[a-z][a-z-]*)", rest))
        args = [a.strip("[]") for a in re.sub(r"\[?--[a-z-]+( [A-Z]+)?( \.\.\.)?\]?", "", rest).split()]
        out[cmd] = (args, opts)
    return p.stdout, out


def check_shell(name, complete, table, sock, job):
    firsts = {c.split()[0] for c in table}
    got = complete(["seedctl", ""])
    check(got == firsts, "%s: first words %r, table has %r" % (name, got, firsts))
    for g in {c.split()[0] for c in table if " " in c}:
        subs = {c.split()[1] for c in table if c.split()[0] == g and " " in c}
        got = complete(["seedctl", g, ""])
        check(got == subs, "%s: '%s' offers %r, table has %r" % (name, g, got, subs))
        got = complete(["seedctl", "help", g, ""])
        check(got == subs, "%s: 'help %s' offers %r, table has %r" % (name, g, got, subs))
    for cmd, (args, opts) in table.items():
        words = ["seedctl"] + cmd.split()
        got = complete(words + ["--"])
        want = opts | GLOBALS
        check(want <= got and not (got - want - {"-h"}),
              "%s: options of '%s': %r, want %r" % (name, cmd, got, want))
        for i, meta in enumerate(args):
            # The program as typed is what the job list is asked of: the built one here.
            got = complete([SEEDCTL, "--socket", sock] + cmd.split() + [job] * i + [""])
            if meta == "NAME" and cmd == "job create":
                check(job not in got, "%s: job create offers an existing name" % name)
            elif meta == "NAME":
                check(job in got, "%s: '%s' does not offer job %s: %r" % (name, cmd, job, got))
            elif meta == "PATH":
                check(got == {"<files>"} or {"afile", "adir"} <= got,
                      "%s: '%s' %s offers files: %r" % (name, cmd, meta, got))
            elif meta == "COMMAND":
                check(got == firsts, "%s: help offers %r" % (name, got))
    got = complete(["seedctl", "job", "create", "x", "--staging", ""])
    check(got == {"<dirs>"} or ("adir" in got and "afile" not in got),
          "%s: --staging offers directories only: %r" % (name, got))
    # A value after "=": bash gets "--staging", "=", VALUE as three words.
    split = ["--staging", "=", "adir"] if name == "bash" else ["--staging=adir"]
    got = complete(["seedctl", "job", "create"] + split + [""])
    check(got == set() or got == {"<nothing>"},
          "%s: after --staging=adir, the job name (new: nothing offered): %r" % (name, got))
    got = complete(["seedctl", "drive", "add"] + (["--serial", "=", "S1"] if name == "bash"
                                                  else ["--serial=S1"]) + ["compjob", ""])
    check(got == {"<files>"} or {"afile", "adir"} <= got,
          "%s: after --serial=S1 NAME, PATH offers files: %r" % (name, got))
    if name == "bash":
        got = complete(["seedctl", "job", "create", "x", "--staging", "=", ""])
        check("adir" in got and "afile" not in got, "bash: --staging= offers directories: %r"
              % got)


def check_help(help_text, table):
    p = run(SEEDCTL, "help")
    check(p.returncode == 0 and p.stdout == help_text, "seedctl help differs from --help")
    for cmd in table:
        a, b = run(SEEDCTL, "help", *cmd.split()), run(SEEDCTL, "--help", *cmd.split())
        check(a.returncode == 0 and a.stdout == b.stdout and cmd in a.stdout,
              "seedctl help %s: %r vs %r" % (cmd, a.stdout, b.stdout))
    p = run(SEEDCTL, "help", "job")
    check(p.returncode == 0 and all(c in p.stdout for c in table if c.startswith("job ")),
          "help job lists every job command: %r" % p.stdout)
    p = run(SEEDCTL, "help", "bogus")
    check(p.returncode == 2 and "bogus" in p.stderr, "help bogus: %d %r" % (p.returncode, p.stderr))
    p = run(SEEDCTL, "--json", "help", "bogus")
    check(p.returncode == 2 and p.stderr == "", "--json help bogus: %d %r" % (p.returncode, p.stderr))
    e = json.loads(p.stdout)
    check(e["error"] == "seedctl.Usage" and "bogus" in e["message"] and len(e) == 2,
          "--json usage error: %r" % e)
    p = run(SEEDCTL, "--json", "--socket", "/nonexistent/s", "status")
    e = json.loads(p.stdout)
    check(p.returncode == 3 and e["error"] == "seedctl.Unreachable" and p.stderr == "",
          "--json unreachable: %d %r %r" % (p.returncode, p.stdout, p.stderr))
    with open(os.path.join(ROOT, "man", "seedctl.1"), encoding="utf-8") as f:
        man = f.read()
    check("help" in man_commands(man), "seedctl.1 documents help")


def check_seedd_help():
    p = run(SEEDD, "--help")
    check(p.returncode == 0, "seedd --help exits 0")
    helped = set(re.findall(r"(?<![\w-])--([a-z][a-z-]*)", p.stdout))
    with open(os.path.join(ROOT, "man", "seedd.8"), encoding="utf-8") as f:
        man = f.read()
    m = re.search(r"^\.Ss Options$(.*?)^\.El$", man, re.M | re.S)
    check(m is not None, "seedd.8 has an Options list")
    manned = set(o.replace("\\-", "-") for o in re.findall(r"^\.It Fl (?:h , Fl )?\\-([a-z\\-]+)",
                                                          m.group(1), re.M))
    check(len(manned) >= 5, "seedd.8 Options: %r" % manned)
    check(helped == manned, "seedd --help lists %r, seedd.8 %r" % (sorted(helped), sorted(manned)))
    for line in p.stdout.splitlines():
        if line.startswith("  -"):
            check(len(line.split(None, 2)) >= 2, "option without a description: %r" % line)


CWD = None


def main():
    global CWD
    for f in ("seedctl", "_seedctl"):
        check(os.path.exists(os.path.join(COMPDIR, f)), "completion %s not built" % f)
    if shutil.which("zsh") is None:
        fail("zsh is not installed (scripts/bootstrap installs it)")
    d = Daemon()
    CWD = d.tmp
    os.mkdir(os.path.join(d.tmp, "adir"))
    open(os.path.join(d.tmp, "afile"), "w").close()
    d.start()
    try:
        d.ctl_json("job", "create", "compjob", "--staging", os.path.join(d.tmp, "adir"))
        help_text, table = synopses()
        check(len(table) >= 15 and "help" in table, "table from --help: %r" % list(table))
        check_shell("bash", bash_complete, table, d.sock, "compjob")
        check_shell("zsh", zsh_complete, table, d.sock, "compjob")
        check_help(help_text, table)
        check_seedd_help()
        d.stop()
    finally:
        if d.alive():
            d.proc.kill()
    shutil.rmtree(d.tmp, ignore_errors=True)
    print("ok: bash and zsh completion, help and seedd --help match the table and the man pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
