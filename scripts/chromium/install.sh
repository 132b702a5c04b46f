#!/usr/bin/env bash
# Installs Chromium from Debian's packages, for tests/browser: the HTML that leadrouter writes
# (`config show --html`) is opened in a real headless browser there.
# Idempotent: does nothing when a chromium binary is already on PATH. `apt-get update` runs
# only when the install needs it (the package is unknown to apt, or the lists are stale).
set -euo pipefail

found() { command -v chromium || command -v chromium-browser || true; }

if [[ -n $(found) ]]; then
  echo "chromium: $("$(found)" --version 2>/dev/null || echo present) at $(found)"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo)
  else
    echo "scripts/chromium/install.sh: chromium is missing and installing it needs root:" >&2
    echo "  apt-get install -y --no-install-recommends chromium fonts-dejavu-core" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
packages=(chromium fonts-dejavu-core)
install() { "${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"; }

if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  echo "chromium: not in the package lists yet: apt-get update"
  "${sudo[@]}" apt-get update -q
fi
if ! install; then
  # Lists older than the mirror's packages (404s): refresh them once and try again.
  echo "chromium: install failed, refreshing the package lists and retrying"
  "${sudo[@]}" apt-get update -q
  install
fi
echo "chromium: $("$(found)" --version) at $(found)"
