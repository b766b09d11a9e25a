# Services the tests use, started on loopback and stopped on exit. Sourced by
# scripts/test and scripts/demo. Azurite and tests/azure-sim join here with
# the Azure issues; nothing to start yet.
services_start() {
	return 0
}

services_stop() {
	return 0
}
