#!/usr/bin/env bash
# Copies the reference Kafka broker's jars from Maven Central into the cache, once.
# Tests and benchmarks start the broker from $CACHE/kafka-<version>/libs (see
# tests/support/kafka_reference.py); this is a no-op when those jars are already there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pom=$here/pom.xml
cache=${LEADROUTER_CACHE:-$HOME/.cache/leadrouter}
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
[[ -n $version ]] || { echo "fetch.sh: no <kafka.version> in $pom" >&2; exit 1; }
dest=$cache/kafka-$version
# The stamp holds the pom's hash, so editing the pom (e.g. the log4j2 version) re-fetches.
want=$(sha256sum "$pom" | cut -d' ' -f1)
cached() { [[ -f $dest/.complete && $(cat "$dest/.complete") == "$want" ]]; }
if cached; then exit 0; fi

mkdir -p "$cache"
# One fetch at a time (e.g. `make tools` and a test run on a fresh machine): the later one
# waits, then finds the jars in place. This also keeps Maven's local repo single-writer.
exec 9>"$cache/.kafka-fetch.lock"
flock 9
if cached; then exit 0; fi
command -v mvn >/dev/null || { echo "fetch.sh: mvn not found (Java 17 + Maven are required)" >&2; exit 1; }
echo "Fetching Apache Kafka $version jars into $dest ..."
# Build in a scratch dir and swap it in at the end, so an interrupted fetch never
# leaves a half-filled libs/ that looks usable.
tmp=$(mktemp -d "$cache/.kafka-$version.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Maven's output goes to a log (it is noisy even with -q) and is shown only on failure.
if ! mvn -B -Dstyle.color=never -f "$pom" -Dmaven.repo.local="$cache/m2" \
  dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/libs" \
  >"$tmp/mvn.log" 2>&1; then
  tail -n 40 "$tmp/mvn.log" >&2
  echo "fetch.sh: mvn dependency:copy-dependencies failed" >&2
  exit 1
fi
rm -f "$tmp/mvn.log"
ls "$tmp"/libs/kafka_2.13-"$version".jar >/dev/null
echo "$want" > "$tmp/.complete"
rm -rf "$dest"
mv -T "$tmp" "$dest"
trap - EXIT
echo "Kafka $version ready: $dest/libs ($(ls "$dest/libs" | wc -l) jars)"
