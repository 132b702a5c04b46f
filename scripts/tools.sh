#!/usr/bin/env bash
# Provides the outside tools the test suite runs for real: Kafka jars, helm, prometheus/promtool,
# and Chromium (headless, for the HTML checks in tests/browser).
# Each installer caches under ${LEADROUTER_CACHE:-~/.cache/leadrouter} and is a no-op when cached
# (Chromium comes from the system's packages and is a no-op when installed).
set -euo pipefail
cd "$(dirname "$0")/.."
for installer in scripts/kafka/fetch.sh scripts/helm/install.sh scripts/prometheus/install.sh \
  scripts/chromium/install.sh; do
  if [[ -f $installer ]]; then bash "$installer"; fi
done
