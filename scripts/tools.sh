#!/usr/bin/env bash
# Provides the outside tools the test suite runs for real: Kafka jars, helm, prometheus/promtool.
# Each installer caches under ${LEADROUTER_CACHE:-~/.cache/leadrouter} and is a no-op when cached.
set -euo pipefail
cd "$(dirname "$0")/.."
for installer in scripts/kafka/fetch.sh scripts/helm/install.sh scripts/prometheus/install.sh; do
  if [[ -f $installer ]]; then bash "$installer"; fi
done
