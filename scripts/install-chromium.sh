#!/bin/sh
# Installs Chromium for the browser end-to-end tests (./browser) when it is
# missing. Idempotent: exits 0 at once when a Chromium is already on PATH.
# Debian/Ubuntu only (apt-get); runs apt-get through sudo when not root.
# Installs Chromium and what it depends on, without recommended packages,
# and upgrades nothing else.
set -eu

for b in chromium chromium-browser google-chrome; do
	if command -v "$b" >/dev/null 2>&1; then
		echo "install-chromium: found $(command -v "$b")"
		exit 0
	fi
done

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-chromium: no apt-get here; install Chromium yourself (the browser tests skip without it)" >&2
	exit 1
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "install-chromium: not root and no sudo; run as root: apt-get install -y chromium" >&2
		exit 1
	fi
	SUDO=sudo
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# Debian ships the browser as "chromium"; Ubuntu's "chromium-browser" is a
# snap shim that does not work in containers.
$SUDO apt-get install -y -q --no-install-recommends chromium
command -v chromium
