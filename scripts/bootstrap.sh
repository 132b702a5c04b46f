#!/usr/bin/env bash
# Creates .venv and installs leadrouter with its pinned dependencies; does nothing when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
stamp=.venv/.installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then exit 0; fi
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade 'pip>=24' >/dev/null
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev,bench]'
echo "$want" > "$stamp"
