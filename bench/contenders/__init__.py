"""The baselines leadrouter is measured against, each a program run as its own process.

Each prints one line `BENCH first_consumed=<unix time> cpu=<CPU seconds so far>` to stdout
when it has consumed its first input record: the harness starts their clock there.
"""

from __future__ import annotations

import resource
import sys
import time

# Topic names (without prefix), written out here so a baseline imports nothing of leadrouter.
INPUT_TOPICS = ("marketing.form-fills", "marketing.email-events", "marketing.ad-clicks")
PASS_THROUGH_OUT = "bench.out"
DEADLETTER = "leads.deadletter"


def report_first_consumed() -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"BENCH first_consumed={time.time():.6f} cpu={usage.ru_utime + usage.ru_stime:.3f}",
        file=sys.stdout,
        flush=True,
    )
