#!/bin/sh
# Installs promtool (Debian package "prometheus") for the alert-rule tests
# (server/deploy_test.go) when it is missing. Idempotent: exits 0 at once
# when promtool is on PATH. Debian/Ubuntu only; apt-get through sudo when
# not root.
#
# The package also ships the Prometheus server and a service for it. This
# script must not leave one running: while installing, a policy-rc.d that
# refuses every service start is put in place (unless one already exists),
# so neither invoke-rc.d nor deb-systemd-invoke starts it; under systemd
# the unit is then disabled and stopped as well.
set -eu

if command -v promtool >/dev/null 2>&1; then
	echo "install-promtool: found $(command -v promtool)"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-promtool: no apt-get here; install promtool yourself (the rule tests skip without it)" >&2
	exit 1
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "install-promtool: not root and no sudo; run as root: apt-get install -y --no-install-recommends prometheus" >&2
		exit 1
	fi
	SUDO=sudo
fi

policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# install-promtool: no service starts while it installs\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
	made_policy=1
fi
cleanup() {
	if [ -n "$made_policy" ]; then
		$SUDO rm -f "$policy"
	fi
}
trap cleanup EXIT INT TERM

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 prometheus

# Belt and braces where systemd runs the machine: the server is not wanted.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	$SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
command -v promtool
