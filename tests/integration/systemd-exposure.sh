#!/bin/sh
# The built seedd.service's exposure as `systemd-analyze security --offline`
# rates it (0 best, 10 worst) must stay at or below 2.0 (issue 11). Each item
# still exposed is justified by a comment in systemd/seedd.service.in.
# Skipped (77) where systemd-analyze or its --offline mode is missing.
# Environment: BUILD_ROOT (from meson).
set -u
LIMIT=2.0

command -v systemd-analyze >/dev/null 2>&1 || { echo "systemd-analyze not found: skipped"; exit 77; }
: "${BUILD_ROOT:?BUILD_ROOT not set}"
unit=$BUILD_ROOT/systemd/seedd.service
[ -f "$unit" ] || { echo "FAIL: $unit was not built"; exit 1; }
if ! systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
	echo "systemd-analyze has no --offline: skipped"
	exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/seedd-exposure.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
cp "$unit" "$tmp/seedd.service"
# The score is read from the text; the exit status only says the threshold.
systemd-analyze security --offline=yes --no-pager "$tmp/seedd.service" >"$tmp/out" 2>&1
score=$(sed -n 's/.*Overall exposure level for seedd.service: \([0-9.]*\).*/\1/p' "$tmp/out")
if [ -z "$score" ]; then
	echo "FAIL: no exposure figure in the output:"
	cat "$tmp/out"
	exit 1
fi
grep '✗' "$tmp/out"
if awk "BEGIN { exit !($score > $LIMIT) }"; then
	echo "FAIL: seedd.service exposure $score is above $LIMIT"
	exit 1
fi
echo "seedd.service exposure $score (limit $LIMIT)"
