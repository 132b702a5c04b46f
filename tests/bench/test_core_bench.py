"""`python -m bench.core`, the broker-free CPU-per-event tool, on a tiny workload: it drives
the worker's own batch code, so a change there that breaks it shows up here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_core_bench_runs_the_workers_batch_code():
    done = subprocess.run(
        [sys.executable, "-m", "bench.core", "--events", "600", "--batch", "200"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = re.search(
        r"600 events in batches of 200: .* ([\d.]+) µs/event .*; ([\d,]+) records out", done.stdout
    )
    assert line, done.stdout
    assert float(line.group(1)) > 0
    assert int(line.group(2).replace(",", "")) > 0  # changelog, routed and dead-letter records
