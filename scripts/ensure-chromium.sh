#!/bin/sh
# Installs Debian's chromium for the console's browser tests when it is
# missing, and prints the path of the browser binary. Called by the
# Makefile's test target; safe to run again (does nothing when present).
set -eu
find_chromium() {
	for b in "${CLEARANCE_CHROMIUM:-}" chromium chromium-browser google-chrome; do
		[ -n "$b" ] || continue
		if command -v "$b" >/dev/null 2>&1; then
			command -v "$b"
			return 0
		fi
	done
	return 1
}
if find_chromium; then
	exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
echo "ensure-chromium: installing Debian's chromium (browser tests of the console)" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
find_chromium
