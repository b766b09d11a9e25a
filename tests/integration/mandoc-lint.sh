#!/bin/sh
# Lint every man page in man/ with mandoc: any message at level warning or
# above fails (style notes, such as references to pages not installed here,
# do not). Environment: SOURCE_ROOT.
set -u

if ! command -v mandoc >/dev/null 2>&1; then
	echo "mandoc not found: skipped"
	exit 77
fi
: "${SOURCE_ROOT:?SOURCE_ROOT not set}"

fail=0
count=0
for page in "$SOURCE_ROOT"/man/*.[1-8]; do
	[ -e "$page" ] || continue
	count=$((count + 1))
	if [ ! -s "$page" ]; then
		echo "FAIL: $page is empty"
		fail=1
		continue
	fi
	out=$(mandoc -T lint -W warning "$page" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
		echo "FAIL: $page (mandoc exit $rc)"
		[ -n "$out" ] && printf '%s\n' "$out"
		fail=1
	fi
done
if [ "$count" -eq 0 ]; then
	echo "FAIL: no man pages in $SOURCE_ROOT/man"
	exit 1
fi
[ "$fail" -eq 0 ] && echo "$count man pages lint clean"
exit "$fail"
