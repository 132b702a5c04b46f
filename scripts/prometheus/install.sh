#!/usr/bin/env bash
# Makes `prometheus` and `promtool` available for the observability tests.
# Uses Debian's `prometheus` package (bookworm: 2.42); the .deb files are kept in
# ${LEADROUTER_CACHE:-~/.cache/leadrouter}/apt so a re-install does not download again.
# Idempotent: does nothing when both binaries already run. Never leaves the Debian
# service running: service starts are refused by a policy-rc.d while installing.
set -euo pipefail

min_version=2.37

have_tools() {
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || return 1
  local v
  v=$(promtool --version 2>&1 | sed -n 's/^promtool, version \([0-9][0-9.]*\).*/\1/p')
  [[ -n $v ]] || return 1
  # true when $v >= $min_version
  [[ $(printf '%s\n%s\n' "$min_version" "$v" | sort -V | head -n1) == "$min_version" ]]
}

if have_tools; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "scripts/prometheus/install.sh: apt-get not found; install prometheus >= $min_version" \
    "(prometheus and promtool on PATH) by hand" >&2
  exit 1
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
    echo "scripts/prometheus/install.sh: must run as root (or with sudo) to apt-get install" >&2
    exit 1
  fi
fi

cache=${LEADROUTER_CACHE:-$HOME/.cache/leadrouter}/apt
mkdir -p "$cache/partial"

# Refuse service starts during the install, unless a policy is already in place.
policy=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
  if [[ $created_policy == 1 ]]; then "${sudo[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 0755 "$policy"
  created_policy=1
fi

apt_opts=(-o "Dir::Cache::archives=$cache" -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0)
export DEBIAN_FRONTEND=noninteractive
if [[ ${LEADROUTER_APT_UPDATE:-1} != 0 ]]; then
  "${sudo[@]}" apt-get update -qq
fi
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${apt_opts[@]}" prometheus >/dev/null

# Belt and braces: if an init system started the packaged service anyway, stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  "${sudo[@]}" systemctl stop prometheus || true
  "${sudo[@]}" systemctl disable prometheus >/dev/null 2>&1 || true
fi
if [[ -f /run/prometheus.pid ]] && kill -0 "$(cat /run/prometheus.pid)" 2>/dev/null; then
  "${sudo[@]}" kill "$(cat /run/prometheus.pid)" || true
fi

if ! have_tools; then
  echo "scripts/prometheus/install.sh: prometheus/promtool >= $min_version still not usable" >&2
  exit 1
fi
echo "prometheus: $(promtool --version 2>&1 | head -n1)"
