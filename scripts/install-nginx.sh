#!/bin/sh
# Installs nginx for the wss:// proxy tests (./tlsproxy) when it is missing.
# Idempotent: exits 0 at once when nginx is already on PATH (or in
# /usr/sbin). Installs only nginx and what it depends on: no upgrade of other
# packages, no recommended extras. The package's own service is never
# started by the tests; they run nginx as a foreground process with their
# own prefix and config. Debian/Ubuntu only (apt-get); runs apt-get through
# sudo when not root.
set -eu

for b in nginx /usr/sbin/nginx; do
	if command -v "$b" >/dev/null 2>&1; then
		echo "install-nginx: found $(command -v "$b")"
		exit 0
	fi
done

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-nginx: no apt-get here; install nginx yourself (the tlsproxy tests skip without it)" >&2
	exit 1
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "install-nginx: not root and no sudo; run as root: apt-get install -y --no-install-recommends nginx" >&2
		exit 1
	fi
	SUDO=sudo
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# Refuse rather than upgrade: if installing nginx would upgrade a package
# that is already installed (a dependency needing a newer version), say so
# and stop. A simulated run lists upgrades as "Inst NAME [OLD-VERSION] ...".
plan=$(apt-get install -s -q --no-install-recommends nginx)
upgrades=$(printf '%s\n' "$plan" | grep -E '^Inst [^ ]+ \[' || true)
if [ -n "$upgrades" ]; then
	echo "install-nginx: installing nginx would upgrade installed packages; not doing it:" >&2
	printf '%s\n' "$upgrades" >&2
	exit 1
fi
$SUDO apt-get install -y -q --no-install-recommends --no-upgrade nginx
# Debian's package may try to start its own service (in a container without
# an init it cannot); the tests never use it, and it would hold port 80.
if command -v service >/dev/null 2>&1; then
	$SUDO service nginx stop >/dev/null 2>&1 || true
fi
command -v nginx || ls /usr/sbin/nginx
