"""`leadrouter` with a log of its full garbage collections (`python -m bench.run --gc-log`).

Runs the same CLI entry point as the console script; the only addition is a gc callback
that appends `<unix time> <pause ms> <objects collected>` for every generation-2 collection
to the file named by BENCH_GC_LOG. The harness sums the pauses inside each measured window.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path


def read(path: Path, start: float, end: float) -> dict[str, float | int]:
    """Full collections that ended inside [start, end]: count, total and longest pause."""
    pauses = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        at, ms, _ = line.split()
        if start <= float(at) <= end:
            pauses.append(float(ms))
    return {
        "gen2_collections": len(pauses),
        "gen2_pause_ms_total": round(sum(pauses), 1),
        "gen2_pause_ms_max": round(max(pauses), 1) if pauses else 0.0,
    }


def main() -> None:
    log = open(os.environ["BENCH_GC_LOG"], "a", buffering=1)  # noqa: SIM115 - process-long
    began = [0.0]

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        elif info["generation"] == 2:
            pause = (time.perf_counter() - began[0]) * 1000
            log.write(f"{time.time():.3f} {pause:.1f} {info['collected']}\n")

    gc.callbacks.append(watch)
    from workers.cli import main as cli

    sys.argv = ["leadrouter", *sys.argv[1:]]
    cli()


if __name__ == "__main__":
    main()
