# Services the tests and the demo use, started on loopback and stopped on
# exit. Sourced by scripts/test and scripts/demo (bash); paths are relative to
# $top (the source tree), else to the current directory.
#
# services_start: Azurite's Blob service (node_modules/.bin/azurite-blob, from
# `npm ci`) over HTTPS with a throw-away CA (tests/azure-sim/mkcert.sh), on
# 127.0.0.1 and a port the kernel picks, data in a temporary directory; waits
# until it answers, then exports AZURITE_BLOB_URL
# (https://127.0.0.1:PORT/devstoreaccount1), AZURITE_ACCOUNT, AZURITE_KEY (the
# emulator's well-known key) and AZURITE_CA (the CA's PEM file), which
# tests/integration/azurite.py reads.
# services_stop: stops it and removes the temporary directory; safe to call
# twice or after a failed start.

_services_dir=
_services_azurite_pid=

services_start() {
	local root=${top:-$PWD} port='' i
	local bin=$root/node_modules/.bin/azurite-blob
	if [[ ! -x $bin ]] || ! command -v node >/dev/null; then
		echo "services: $bin or node is missing; run scripts/bootstrap" >&2
		return 1
	fi
	_services_dir=$(mktemp -d /tmp/seedd-services.XXXXXX) || return 1
	if ! sh "$root/tests/azure-sim/mkcert.sh" "$_services_dir/certs" >/dev/null; then
		echo "services: could not make the test certificates" >&2
		services_stop
		return 1
	fi
	"$bin" --blobHost 127.0.0.1 --blobPort 0 \
		--cert "$_services_dir/certs/server.pem" --key "$_services_dir/certs/server.key" \
		--location "$_services_dir/azurite" --skipApiVersionCheck --silent \
		--disableTelemetry </dev/null >"$_services_dir/azurite.log" 2>&1 &
	_services_azurite_pid=$!
	for ((i = 0; i < 300; i++)); do
		port=$(sed -n 's|.*listens on https://127\.0\.0\.1:\([0-9]*\).*|\1|p' \
			"$_services_dir/azurite.log")
		[[ -n $port ]] && break
		kill -0 "$_services_azurite_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [[ -z $port ]] || ! _services_answers "$port" "$_services_dir/certs/ca.pem"; then
		echo "services: Azurite did not start:" >&2
		cat "$_services_dir/azurite.log" >&2
		services_stop
		return 1
	fi
	export AZURITE_BLOB_URL=https://127.0.0.1:$port/devstoreaccount1
	export AZURITE_ACCOUNT=devstoreaccount1
	export AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
	export AZURITE_CA=$_services_dir/certs/ca.pem
	echo "services: Azurite at $AZURITE_BLOB_URL"
}

# Any HTTP answer over verified TLS within 30 s.
_services_answers() {
	local i out
	for ((i = 0; i < 300; i++)); do
		out=$(openssl s_client -quiet -verify_return_error -CAfile "$2" \
			-connect "127.0.0.1:$1" -servername 127.0.0.1 2>/dev/null \
			<<<$'GET /devstoreaccount1?comp=list HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r') || true
		[[ $out == HTTP/1.1\ * ]] && return 0
		kill -0 "$_services_azurite_pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

services_stop() {
	local i
	if [[ -n $_services_azurite_pid ]]; then
		kill "$_services_azurite_pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			kill -0 "$_services_azurite_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$_services_azurite_pid" 2>/dev/null || true
		wait "$_services_azurite_pid" 2>/dev/null || true
		_services_azurite_pid=
	fi
	if [[ -n $_services_dir ]]; then
		rm -rf "$_services_dir"
		_services_dir=
	fi
	unset AZURITE_BLOB_URL AZURITE_ACCOUNT AZURITE_KEY AZURITE_CA
	return 0
}
