#!/bin/sh
# systemd-analyze verify on the built seedd.service and seedd.socket, with
# ExecStart= pointed at the built seedd so the command check is real. Any
# message about our units fails the test; noise about the host's own units is
# shown and ignored. Also checks that every Documentation=man: page exists in
# man/ and that the service's exposure score stays "OK" (at most 4.0).
# Environment: BUILD_ROOT, SOURCE_ROOT, SEEDD (from meson).
set -u

if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "systemd-analyze not found: skipped"
	exit 77
fi
: "${BUILD_ROOT:?BUILD_ROOT not set}" "${SOURCE_ROOT:?SOURCE_ROOT not set}"
SEEDD=${SEEDD:-$BUILD_ROOT/daemon/seedd}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/seedd-verify.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0

for unit in seedd.service seedd.socket; do
	if [ ! -f "$BUILD_ROOT/systemd/$unit" ]; then
		echo "FAIL: $BUILD_ROOT/systemd/$unit was not built"
		exit 1
	fi
	cp "$BUILD_ROOT/systemd/$unit" "$tmp/$unit"
done
if [ ! -x "$SEEDD" ]; then
	echo "FAIL: seedd binary $SEEDD missing"
	exit 1
fi
sed -i "s|^ExecStart=.*|ExecStart=$SEEDD|" "$tmp/seedd.service"
grep -q "^ExecStart=$SEEDD\$" "$tmp/seedd.service" || { echo "FAIL: no ExecStart= line"; exit 1; }

# Man pages are checked against the source tree below, not the host's man.
systemd-analyze verify --man=no "$tmp/seedd.socket" "$tmp/seedd.service" >"$tmp/out" 2>&1
rc=$?
if grep -i 'seedd' "$tmp/out" >"$tmp/ours"; then
	echo "FAIL: systemd-analyze verify complains about our units:"
	cat "$tmp/ours"
	fail=1
elif [ "$rc" -ne 0 ]; then
	echo "note: systemd-analyze verify exited $rc for reasons unrelated to seedd:"
	cat "$tmp/out"
fi

# Every Documentation=man:NAME(SECTION) must be a page in man/.
for unit in seedd.service seedd.socket; do
	for ref in $(sed -n 's/^Documentation=//p' "$tmp/$unit"); do
		case "$ref" in
		man:*)
			page=${ref#man:}
			name=${page%%(*}
			sect=${page#*(}
			sect=${sect%)}
			if [ ! -f "$SOURCE_ROOT/man/$name.$sect" ]; then
				echo "FAIL: $unit: Documentation=$ref but no man/$name.$sect"
				fail=1
			fi
			;;
		esac
	done
done

# Hardening must not regress: systemd-analyze rates exposure 0 (best) to 10.
if systemd-analyze security --offline=yes --no-pager "$tmp/seedd.service" >"$tmp/sec" 2>&1; then
	score=$(sed -n 's/.*Overall exposure level for seedd.service: \([0-9.]*\).*/\1/p' "$tmp/sec")
	if [ -z "$score" ]; then
		echo "note: no exposure score in systemd-analyze security output"
	elif awk "BEGIN { exit !($score > 4.0) }"; then
		echo "FAIL: seedd.service exposure $score is above 4.0"
		fail=1
	else
		echo "seedd.service exposure level $score"
	fi
else
	echo "note: systemd-analyze security --offline unavailable here: skipped"
fi

# sysusers.d and tmpfiles.d snippets, applied to an empty root.
if command -v systemd-sysusers >/dev/null 2>&1 && command -v systemd-tmpfiles >/dev/null 2>&1; then
	root="$tmp/root"
	mkdir -p "$root/etc" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d"
	cp "$SOURCE_ROOT/systemd/seedd-sysusers.conf" "$root/usr/lib/sysusers.d/seedd.conf"
	cp "$SOURCE_ROOT/systemd/seedd-tmpfiles.conf" "$root/usr/lib/tmpfiles.d/seedd.conf"
	if ! systemd-sysusers --root="$root" >"$tmp/sysusers" 2>&1 ||
	    grep -iv '^creating' "$tmp/sysusers" | grep -q .; then
		echo "FAIL: systemd-sysusers:"
		cat "$tmp/sysusers"
		fail=1
	elif ! grep -q '^seedd:x:[0-9]*:[0-9]*:[^:]*:/var/lib/seedd:' "$root/etc/passwd" ||
	    ! grep -q '^seedd:x:' "$root/etc/group"; then
		echo "FAIL: sysusers did not create user and group seedd"
		fail=1
	elif ! systemd-tmpfiles --root="$root" --create >"$tmp/tmpfiles" 2>&1; then
		echo "FAIL: systemd-tmpfiles:"
		cat "$tmp/tmpfiles"
		fail=1
	else
		uid=$(sed -n 's/^seedd:x:\([0-9]*\):.*/\1/p' "$root/etc/passwd")
		got=$(stat -c '%a %u' "$root/var/lib/seedd" 2>/dev/null)
		if [ "$got" != "700 $uid" ]; then
			echo "FAIL: /var/lib/seedd is '$got', want '700 $uid'"
			fail=1
		else
			echo "sysusers and tmpfiles snippets applied"
		fi
	fi
else
	echo "note: systemd-sysusers or systemd-tmpfiles missing: snippets not checked"
fi

[ "$fail" -eq 0 ] && echo "seedd.service and seedd.socket verified"
exit "$fail"
