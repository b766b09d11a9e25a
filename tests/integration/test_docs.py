#!/usr/bin/env python3
"""README, seedd.conf(5), the example config and scripts/demo in step (issue 12 point 13).

- README's install commands use their own build directory, not one that
  scripts/demo or scripts/test configure (a debug build with prefix
  /usr/local there made `meson setup … --prefix=/usr` fail with "Directory
  already configured"); setup, ninja and install name the same directory.
- What meson installs from this build (`meson introspect --installed`): the
  example config beside the file seedd reads whatever the prefix, and the
  completion and man pages under the prefix.
- A reload is described the same in README, seedd.conf(5) RELOADING and the
  example config: every key at its next use, the same two exceptions.
- scripts/demo (scripts/demo.py, run against Azurite and the simulator) prints
  counts as text, shows every stage, and removes its temporary directory with
  the fake secrets; README's sample output is of that kind.

Env: SOURCE_ROOT, BUILD_ROOT, SEEDD, SEEDCTL; AZURITE_* when services.sh runs
(else azurite.py starts a private one).
"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import check, fail  # noqa: E402

ROOT = os.environ["SOURCE_ROOT"]
BUILD = os.environ["BUILD_ROOT"]
STAGES = "staging -> drive_prep -> shipped -> imported -> vault_copy -> cleanup -> done"


def read(*path):
    with open(os.path.join(ROOT, *path), encoding="utf-8") as f:
        return f.read()


def check_install_commands(readme):
    m = re.search(r"^Install \(.*?^```\n(.*?)^```", readme, re.M | re.S)
    check(m is not None, "README has an Install block")
    block = m.group(1)
    setup = re.findall(r"meson setup (\S+)", block)
    check(len(setup) == 1, "one meson setup in README's install block: %r" % setup)
    bdir = setup[0]
    check(re.search(r"ninja -C %s\b" % re.escape(bdir), block) and
          re.search(r"meson install -C %s\b" % re.escape(bdir), block),
          "ninja and meson install use %s too: %r" % (bdir, block))
    check("--prefix=/usr" in block and "--buildtype=release" in block, "release build for /usr")
    used = {"build"}  # scripts/demo: build/; scripts/test: run_suite DIR
    for script in ("demo", "test"):
        text = read("scripts", script)
        used |= set(re.findall(r"meson setup (?:\"?)([\w.-]+)", text))
        used |= set(re.findall(r"run_suite ([\w.-]+)", text))
    check(bdir not in used, "README installs from %s, which scripts/demo or scripts/test "
          "configure as a debug build: %r" % (bdir, used))
    check("/etc/seedd/seedd.conf.example" in block, "README copies the installed example")


def check_installed():
    p = subprocess.run(["meson", "introspect", "--installed", BUILD], capture_output=True,
                       text=True, timeout=60)
    check(p.returncode == 0, "meson introspect --installed: %s" % p.stderr)
    dests = list(json.loads(p.stdout).values())
    opts = json.loads(subprocess.run(["meson", "introspect", "--buildoptions", BUILD],
                                     capture_output=True, text=True, timeout=60).stdout)
    prefix = next(o["value"] for o in opts if o["name"] == "prefix")
    with open(os.path.join(BUILD, "seedd-build.h"), encoding="utf-8") as f:
        conf = re.search(r'SEEDD_CONFIG_PATH "([^"]+)"', f.read()).group(1)
    example = [x for x in dests if x.endswith("/seedd.conf.example")]
    check(example == [os.path.join(os.path.dirname(conf), "seedd.conf.example")],
          "example config installed at %r, seedd reads %s" % (example, conf))
    for tail in ("/bash-completion/completions/seedctl", "/zsh/site-functions/_seedctl",
                 "/man/man1/seedctl.1", "/bin/seedctl", "/sbin/seedd"):
        hits = [x for x in dests if x.endswith(tail)]
        check(len(hits) == 1 and hits[0].startswith(prefix + "/"),
              "%s installed under the prefix %s: %r" % (tail, prefix, hits))


def reload_texts(readme):
    conf5 = read("man", "seedd.conf.5")
    m = re.search(r"^\.Sh RELOADING$(.*?)^\.Sh ", conf5, re.M | re.S)
    check(m is not None, "seedd.conf.5 has RELOADING")
    man = re.sub(r"\n\.[A-Z][a-z] ?|\n", " ", m.group(1)).replace(" Ns ", "")
    ex = read("systemd", "seedd.conf.example")
    ex = " ".join(line.lstrip("# ") for line in ex.split("\n[", 1)[0].splitlines())
    m = re.search(r"`systemctl reload seedd`(.*?)\n\n", readme, re.S)
    check(m is not None, "README describes systemctl reload")
    return {"README": m.group(1).replace("\n", " "), "seedd.conf.5": man, "example": ex}


def check_reload(readme):
    for name, text in reload_texts(readme).items():
        flat = re.sub(r"\s+", " ", text)
        check("Verify" in flat, "%s: reload does not name the Verify= exception: %r" % (name, flat))
        check("socket" in flat and "group" in flat,
              "%s: reload does not name the socket group exception" % name)
        check(not re.search(r"(PollIntervalSec|OperationPollSec|CAFile|Storage)[^.]*only at the "
                            r"next start", flat),
              "%s says Azure settings need a restart: %r" % (name, flat))
        for k in ("PollIntervalSec", "OperationPollSec", "CAFile", "Storage"):
            check(k in flat, "%s: reload does not say %s applies" % (name, k))


def check_demo_sample(readme):
    m = re.search(r"^## What `scripts/demo` prints$(.*?)^## ", readme, re.M | re.S)
    check(m is not None, "README shows the demo's output")
    sample = m.group(1)
    check("{'" not in sample and "': " not in sample, "README's demo sample prints a Python dict")
    check("== stages: " + STAGES in sample, "README's demo sample shows every stage")
    check("== removed " in sample, "README's demo sample removes its temp dir")


def run_demo():
    env = dict(os.environ, SEEDD=os.environ["SEEDD"], SEEDCTL=os.environ["SEEDCTL"])
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "demo.py")],
                       capture_output=True, text=True, timeout=240, env=env)
    out = p.stdout
    check(p.returncode == 0, "demo.py exit %d:\n%s\n%s" % (p.returncode, out, p.stderr[-3000:]))
    check("{'" not in out and "': " not in out, "the demo prints a Python dict:\n%s" % out)
    check("== stages: " + STAGES + "\n" in out, "the demo shows every stage:\n%s" % out)
    check(re.search(r"== after the import: \d+ ok, \d+ missing", out), "counts as text")
    m = re.search(r"^== removed (\S+) ", out, re.M)
    check(m is not None, "the demo says which temp dir it removed")
    check(not os.path.exists(m.group(1)), "the demo left %s behind" % m.group(1))
    tmp = re.search(r"sample backup in (\S+)/staging-", out).group(1)
    check(tmp == m.group(1), "the removed dir is the demo's: %s vs %s" % (tmp, m.group(1)))


def main():
    readme = read("README.md")
    check_install_commands(readme)
    check_installed()
    check_reload(readme)
    check_demo_sample(readme)
    run_demo()
    print("ok: install commands, reload docs and the demo in step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
