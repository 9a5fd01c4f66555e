#!/bin/sh
# Installs nginx for the wss:// proxy tests (./tlsproxy) when it is missing;
# `install-nginx.sh haproxy` installs HAProxy too, for the tests that run the
# documented HAProxy configuration. Idempotent: installs only what is not
# already on PATH (or in /usr/sbin), and only those packages and what they
# depend on: no recommended extras, and it refuses to upgrade any package
# already installed. The packages' own services are never used: the tests
# run the proxies as foreground processes with their own config. Debian or
# Ubuntu only (apt-get); runs apt-get through sudo when not root.
set -eu

want=nginx
[ "${1:-}" = haproxy ] && want="nginx haproxy"
missing=
for p in $want; do
	if command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ]; then
		echo "install-nginx: found $p"
	else
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-nginx: no apt-get here; install$missing yourself (the tlsproxy tests skip without it)" >&2
	exit 1
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "install-nginx: not root and no sudo; run as root: apt-get install -y --no-install-recommends$missing" >&2
		exit 1
	fi
	SUDO=sudo
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# Refuse rather than upgrade: if installing would upgrade a package
# that is already installed (a dependency needing a newer version), say so
# and stop. A simulated run lists upgrades as "Inst NAME [OLD-VERSION] ...".
plan=$(apt-get install -s -q --no-install-recommends $missing)
upgrades=$(printf '%s\n' "$plan" | grep -E '^Inst [^ ]+ \[' || true)
if [ -n "$upgrades" ]; then
	echo "install-nginx: installing$missing would upgrade installed packages; not doing it:" >&2
	printf '%s\n' "$upgrades" >&2
	exit 1
fi
$SUDO apt-get install -y -q --no-install-recommends --no-upgrade $missing
# Debian's packages may try to start their own services (in a container
# without an init they cannot); the tests never use them, and nginx's would
# hold port 80.
for p in $missing; do
	if command -v service >/dev/null 2>&1; then
		$SUDO service "$p" stop >/dev/null 2>&1 || true
	fi
	command -v "$p" || ls "/usr/sbin/$p"
done
