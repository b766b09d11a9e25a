#!/usr/bin/env python3
"""Keep daemon/core/catalog-ids.h and systemd/seedd.catalog in step.

Always: every MESSAGE_ID in the header has exactly one catalog entry and the
catalog has no other; every entry has Subject: and Defined-By: seedd and a
body. If journalctl works here, the catalog is also compiled with
`journalctl --root=TMP --update-catalog` and every ID must be listed.
Environment: SOURCE_ROOT (the source tree).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

ID_RE = re.compile(r"^[0-9a-f]{32}$")


def header_ids(path):
    ids = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r'\s*#\s*define\s+(SEEDD_MESSAGE_\w+)\s+"([^"]*)"', line)
            if m:
                ids[m.group(2)] = m.group(1)
    return ids


def catalog_entries(path):
    """Return ({id: {"fields": {...}, "body": str}}, [errors])."""
    entries, errors, current = {}, [], None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("-- "):
                ident = line[3:].split()[0] if line[3:].split() else ""
                if not ID_RE.match(ident):
                    errors.append(f"{path}:{lineno}: bad entry id {ident!r}")
                if ident in entries:
                    errors.append(f"{path}:{lineno}: duplicate entry {ident}")
                current = {"fields": {}, "body": "", "in_header": True, "line": lineno}
                entries[ident] = current
            elif current is None:
                if line and not line.startswith("#"):
                    errors.append(f"{path}:{lineno}: text before the first entry")
            elif current["in_header"]:
                if line == "":
                    current["in_header"] = False
                elif ":" in line:
                    key, value = line.split(":", 1)
                    current["fields"][key.strip()] = value.strip()
                else:
                    errors.append(f"{path}:{lineno}: header line without ':'")
            else:
                current["body"] += line + "\n"
    return entries, errors


def random_ids(header, ids):
    """Real random ids (systemd-id128 new: UUID version 4, variant 1), not a counter:
    no two share more than 6 leading or 6 trailing hex digits."""
    errors = []
    for ident, name in ids.items():
        if ident[12] != "4" or ident[16] not in "89ab":
            errors.append(f"{header}: {name} ({ident}) is not a random id (systemd-id128 new)")
    for a in ids:
        for b in ids:
            if a < b and (a[:7] == b[:7] or a[-7:] == b[-7:]):
                errors.append(f"{header}: {ids[a]} and {ids[b]} look sequential: {a} {b}")
    return errors


def failure_wording(catalog, entries, ids):
    """jobctl_fail() logs SEEDD_STATE=failed (the state after, as every entry): the
    failure entry must read well with it, not "failed in state failed"."""
    byname = {name: ident for ident, name in ids.items()}
    entry = entries.get(byname.get("SEEDD_MESSAGE_JOB_FAILED"))
    if entry is None:
        return []
    text = (entry["fields"].get("Subject", "") + "\n" + entry["body"]).replace(
        "@SEEDD_STATE@", "failed").replace("\n", " ")
    if re.search(r"failed in state failed", re.sub(r"\s+", " ", text)):
        return [f"{catalog}: the failure entry reads 'failed in state failed'"]
    return []


def check_files(root):
    header = os.path.join(root, "daemon", "core", "catalog-ids.h")
    catalog = os.path.join(root, "systemd", "seedd.catalog")
    ids = header_ids(header)
    entries, errors = catalog_entries(catalog)
    if not ids:
        errors.append(f"{header}: no SEEDD_MESSAGE_* ids found")
    for ident, name in sorted(ids.items()):
        if not ID_RE.match(ident):
            errors.append(f"{header}: {name} is not 32 lower-case hex digits: {ident!r}")
        if ident not in entries:
            errors.append(f"{catalog}: no entry for {name} ({ident})")
    errors += random_ids(header, ids)
    errors += failure_wording(catalog, entries, ids)
    for ident, entry in sorted(entries.items()):
        where = f"{catalog}:{entry['line']}"
        if ident not in ids:
            errors.append(f"{where}: entry {ident} is not in catalog-ids.h")
        if not entry["fields"].get("Subject"):
            errors.append(f"{where}: entry {ident} lacks Subject:")
        if entry["fields"].get("Defined-By") != "seedd":
            errors.append(f"{where}: entry {ident} lacks Defined-By: seedd")
        if not entry["body"].strip():
            errors.append(f"{where}: entry {ident} has no explanation")
    return ids, catalog, errors


def check_journalctl(ids, catalog):
    """Compile the catalog into a private root; None if that cannot run here."""
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        return None, "journalctl not found"
    with tempfile.TemporaryDirectory(prefix="seedd-catalog-") as tmp:
        catdir = os.path.join(tmp, "usr", "lib", "systemd", "catalog")
        os.makedirs(catdir)
        shutil.copy(catalog, catdir)
        try:
            update = subprocess.run([journalctl, f"--root={tmp}", "--update-catalog"],
                                    capture_output=True, text=True, timeout=60)
            if update.returncode != 0:
                return None, f"journalctl --update-catalog failed: {update.stderr.strip()}"
            listed = subprocess.run([journalctl, f"--root={tmp}", "--list-catalog"],
                                    capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"journalctl did not run: {e}"
        if listed.returncode != 0:
            return None, f"journalctl --list-catalog failed: {listed.stderr.strip()}"
        if "seedd.catalog" in update.stderr and "error" in update.stderr.lower():
            return [f"journalctl: {update.stderr.strip()}"], None
        seen = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
        missing = [f"journalctl --list-catalog lacks {name} ({ident})"
                   for ident, name in sorted(ids.items()) if ident not in seen]
        return missing, None


def main():
    root = os.environ.get("SOURCE_ROOT") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ids, catalog, errors = check_files(root)
    if not errors:
        print(f"header and catalog agree on {len(ids)} ids")
        jerrors, skipped = check_journalctl(ids, catalog)
        if skipped:
            print(f"journalctl check skipped: {skipped}")
        else:
            errors += jerrors
            if not jerrors:
                print(f"journalctl --list-catalog lists all {len(ids)} ids")
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
