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
# --no-upgrade is not used: it would refuse to install a missing package's
# missing dependencies only when they are already installed, which is the
# default anyway; install never upgrades packages it does not need to.
$SUDO apt-get install -y -q --no-install-recommends nginx
# Debian's package enables and may start its service (in a container without
# an init it cannot); the tests do not need it, and it would hold port 80.
if command -v service >/dev/null 2>&1; then
	$SUDO service nginx stop >/dev/null 2>&1 || true
fi
command -v nginx || ls /usr/sbin/nginx
