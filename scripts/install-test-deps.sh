#!/bin/sh
# Installs the Debian packages the packaging tests use, when they are
# missing: systemd (systemd-analyze verify of packaging/herald.service) and
# podman with runc (build and run packaging/Dockerfile; crun, podman's default
# runtime, fails on hosts with hybrid cgroups). Idempotent: a tool already
# on PATH is not touched. Installs only the named packages and their
# dependencies (--no-install-recommends) and upgrades nothing else.
# Debian/Ubuntu only; runs apt-get through sudo when not root. Exits 1,
# saying why, when it cannot install; the tests then skip (CI, with
# HERALD_REQUIRE_PACKAGING=1, fails instead).
#
# To add a tool: append "command:package" to TOOLS.
set -eu

TOOLS="systemd-analyze:systemd podman:podman runc:runc"

missing=
for t in $TOOLS; do
	cmd=${t%%:*}
	pkg=${t#*:}
	if command -v "$cmd" >/dev/null 2>&1; then
		echo "install-test-deps: found $(command -v "$cmd")"
	else
		missing="$missing $pkg"
	fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-test-deps: no apt-get here; install$missing yourself (the packaging tests skip without them)" >&2
	exit 1
fi
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "install-test-deps: not root and no sudo; run as root: apt-get install --no-install-recommends$missing" >&2
		exit 1
	fi
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-test-deps: installing$missing"
$SUDO apt-get update -q
# shellcheck disable=SC2086 # $missing is a list of package names
$SUDO apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 $missing
