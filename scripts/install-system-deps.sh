#!/usr/bin/env bash
# Installs the system programs cuaflow's machines and test suite use, skipping
# what is already there: Chromium (browser machines), Xvfb and xdotool (desktop
# machines), sshd (the ssh machine's tests), ImageMagick, Tk (the desktop
# tests' window) and PostgreSQL. Debian/Ubuntu only; safe to run again.
set -euo pipefail

packages=(chromium xvfb xdotool openssh-server imagemagick python3-tk postgresql)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for package in "${packages[@]}"; do
    if ! installed "$package"; then
        missing+=("$package")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "system dependencies: all installed (${packages[*]})"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "system dependencies missing: ${missing[*]}; install them with your package manager" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi

echo "system dependencies: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
echo "system dependencies: installed ${missing[*]}"
