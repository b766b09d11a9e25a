#!/usr/bin/env python3
"""The layers of daemon/ call only downward (DESIGN.md §6).

Each folder of daemon/ is a layer; a file may include headers of its own
folder, of a layer below it, and of proto/ or the build's seedd-build.h. An
include that points up, or sideways to a peer, fails the test. With
--symbols BUILD_DIR it also reads each layer's static library with nm: an
undefined symbol must be defined in the library itself or a lower one, so a
call up that dodges the headers (an extern written by hand) fails too.
"""
import os
import re
import subprocess
import sys

# Lower rank = lower floor. Peers share a rank and may not use each other.
RANKS = {
    "proto": 0,
    "store": 1,
    "core": 2,
    "engine": 3, "azure": 3,
    "stages": 4, "ctl": 4,
    "api": 5,
    "main": 6,
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(rel):
    parts = rel.split("/")
    if parts[0] == "proto":
        return "proto"
    if parts[0] == "daemon":
        return parts[1] if len(parts) > 2 else "main"
    return None


def headers(root):
    """Header basename -> layer that holds it."""
    where = {}
    for top in ("proto", "daemon"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in files:
                if f.endswith(".h"):
                    rel = os.path.relpath(os.path.join(dirpath, f), root)
                    layer = layer_of(rel)
                    if f in where and where[f] != layer:
                        sys.exit(f"header {f} is in two layers: {where[f]} and {layer}")
                    where[f] = layer
    return where


def may_use(user, used):
    return user == used or RANKS[used] < RANKS[user]


def check_includes(root):
    where = headers(root)
    bad = []
    for dirpath, _, files in os.walk(os.path.join(root, "daemon")):
        for f in files:
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, root)
            user = layer_of(rel)
            if user not in RANKS:
                bad.append(f"{rel}: folder is no layer (known: {', '.join(RANKS)})")
                continue
            text = open(path, encoding="utf-8").read()
            for m in INCLUDE.finditer(text):
                inc = os.path.basename(m.group(1))
                used = where.get(inc)
                if used is None:
                    continue  # seedd-build.h and other generated headers
                if not may_use(user, used):
                    line = text.count("\n", 0, m.start()) + 1
                    bad.append(f"{rel}:{line}: includes {inc} of layer {used} "
                               f"({user} may use only its own layer and lower ones)")
    return bad


def nm(lib, flags):
    out = subprocess.run(["nm", *flags, lib], capture_output=True, text=True, check=True).stdout
    syms = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.endswith(":"):
            syms.add(parts[-1])
    return syms


def check_symbols(build):
    libs = {}
    for layer in RANKS:
        if layer in ("main",):
            continue
        sub = "proto" if layer == "proto" else f"daemon/{layer}"
        lib = os.path.join(build, sub, f"libseed{layer}.a")
        if os.path.exists(lib):
            libs[layer] = lib
    defined = {l: nm(p, ["--defined-only", "-g"]) for l, p in libs.items()}
    owner = {}
    for layer, syms in defined.items():
        for s in syms:
            owner.setdefault(s, layer)
    bad = []
    for layer, lib in libs.items():
        for s in sorted(nm(lib, ["-u"])):
            used = owner.get(s)
            if used is not None and not may_use(layer, used):
                bad.append(f"libseed{layer}.a calls {s} of layer {used}")
    return bad, len(libs)


def main():
    root = os.environ.get("SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")
    bad = check_includes(root)
    nlibs = 0
    if len(sys.argv) > 2 and sys.argv[1] == "--symbols":
        more, nlibs = check_symbols(sys.argv[2])
        bad += more
    for b in bad:
        print(b)
    if bad:
        print(f"{len(bad)} calls or includes point up or sideways")
        return 1
    print(f"layers ok ({nlibs} libraries read)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
