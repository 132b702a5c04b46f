"""Replay's benchmark (issue 12, point 6): events/s per configuration and peak RSS.

    .venv/bin/python -m bench.replay                    # 300,000 events, memory and disk
    .venv/bin/python -m bench.replay --events 1000000 --store disk
    .venv/bin/python -m bench.replay --bootstrap HOST:PORT   # also through a broker
    (`make bench` runs it after the broker contenders: bench.run --replay-events N)

Every run is a child process of its own, so its peak RSS (VmHWM) is its own. The child runs
`workers.replay.Replay`, the engine of `leadrouter replay`, with the benchmark's configuration
(the shipped one, reps in office around the clock) as the baseline and the same with the MQL
threshold raised to 70 as the candidate:

* `sim`: simulator traffic (seed 7, ~1% malformed, 200 events per second of event time)
  generated inside the child as it is fed, so the input takes no memory;
* `broker`: the same traffic produced to a fresh topic prefix first, then read back with
  `workers.history` exactly as the command does (`workers.replay.replayed`).

Per configuration: events / the CPU seconds of that configuration's pipeline (its `feed`,
timers included). Ingest (decoding and validating each record against its contract) reads
no state and is the same for both configurations, so replay does it once for both: it is
reported apart (`ingest_events_per_s`), as is generating or reading the records
(`input_cpu_s`: the rest of the process's CPU). The target (DESIGN.md) is 50,000 events/s per
configuration on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

MARK = "BENCH_REPLAY "
TARGET = 50_000
EVENT_RATE = 200.0  # events per second of event time in the simulated stretch
CANDIDATE_THRESHOLD = 70


def _status(field: str) -> float:
    """A /proc/self/status figure in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def configs(work: Path, bootstrap: str, prefix: str) -> tuple[Any, Any]:
    """The baseline and the candidate (MQL threshold raised) in `work`."""
    from bench import workload

    base_dir = workload.always_open_config(work / "baseline")
    cand_dir = workload.always_open_config(work / "candidate")
    scoring = yaml.safe_load((cand_dir / "scoring.yaml").read_text())
    scoring["mql_threshold"] = CANDIDATE_THRESHOLD
    (cand_dir / "scoring.yaml").write_text(yaml.safe_dump(scoring))
    return (
        workload.config_for(base_dir, bootstrap, prefix),
        workload.config_for(cand_dir, bootstrap, prefix),
    )


def simulated(config: Any, events: int, seed: int, start: float) -> Iterator[Any]:
    from workers.core.topology import InputRecord
    from workers.simulate import Traffic

    traffic = Traffic(config, seed, 0.01)
    for i in range(events):
        at = start + i / EVENT_RATE
        topic, key, value = traffic.next(at)
        yield InputRecord(topic, key, value, int(at * 1000), i % 6, i)


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One measured run; the result is printed as one JSON line after MARK."""
    from workers.replay import Replay, replayed

    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        base, cand = configs(Path(tmp), args.bootstrap or "127.0.0.1:9", args.prefix or "")
        cpu0, wall0 = time.process_time(), time.monotonic()
        if args.source == "sim":
            from workers.core.enrich import AccountBook
            from workers.demo import demo_accounts

            accounts = AccountBook()
            for account in demo_accounts(base):
                accounts.put(account["domain"], account)
            rss_before = _status("VmRSS")
            start = time.time() - args.events / EVENT_RATE - 60
            with Replay(base, cand, accounts, disk=args.store == "disk") as run:
                run.feed(simulated(base, args.events, args.seed, start))
                run.finish(start + args.events / EVENT_RATE + 1)
                report = run.report(20)
        else:
            rss_before = _status("VmRSS")
            with replayed(base, cand, args.since, args.until, store=args.store) as run:
                report = run.report(20)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    facts = run.facts
    return {
        "source": args.source,
        "store": facts.store,
        "events": facts.events,
        "leads": report["leads"],
        "per_configuration": {
            side: {
                "cpu_s": round(facts.sides[side], 2),
                "events_per_s": round(facts.per_second(side)),
                "routed": report[side]["routed"],
            }
            for side in ("baseline", "candidate")
        },
        "changed_count": report["changed_count"],
        # Decoding and validating the input, done once for both configurations.
        "ingest_cpu_s": round(facts.ingest_cpu, 2),
        "ingest_events_per_s": round(facts.events / facts.ingest_cpu) if facts.ingest_cpu else None,
        "input_cpu_s": round(cpu - sum(facts.sides.values()) - facts.ingest_cpu, 2),
        "process_cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "events_per_s_wall": round(facts.events / wall) if wall > 0 else None,
        "rss_before_mib": round(rss_before, 1),
        "peak_rss_mib": round(_status("VmHWM"), 1),
    }


def run_child(
    source: str,
    store: str,
    events: int,
    *,
    seed: int = 7,
    bootstrap: str | None = None,
    prefix: str | None = None,
    since: float | None = None,
    until: float | None = None,
    timeout: float = 3600,
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.replay",
        "--child",
        "--source",
        source,
        "--store",
        store,
        "--events",
        str(events),
        "--seed",
        str(seed),
    ]
    if bootstrap:
        command += ["--bootstrap", bootstrap, "--prefix", prefix or ""]
        command += ["--since", repr(since), "--until", repr(until)]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        return {"source": source, "store": store, "error": done.stderr[-2000:]}
    return json.loads(lines[-1][len(MARK) :])


def produce_stretch(bootstrap: str, prefix: str, events: int, seed: int) -> tuple[float, float]:
    """The simulator's traffic on a fresh prefix: the stretch it occupies (since, until)."""
    from bench import measure, workload

    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        config_dir = workload.always_open_config(Path(tmp) / "config")
        config = workload.create_topics(config_dir, bootstrap, prefix, [])
    since = time.time() - 1
    records = workload.generate(config, events, seed, time.time())
    producer = measure.fast_producer(bootstrap)
    measure.produce_all(producer, records.for_prefix(prefix))
    if producer.flush(300):
        raise RuntimeError("replay stretch not delivered")
    return since, time.time() + 1


def run_all(
    events: int,
    stores: Sequence[str],
    *,
    seed: int = 7,
    bootstrap: str | None = None,
    say: Any = None,
) -> dict[str, Any]:
    """Every configured run; the broker run only with a broker."""
    say = say or (lambda text: print(f"[bench.replay] {text}", file=sys.stderr, flush=True))
    runs = []
    for store in stores:
        say(f"simulated stretch of {events:,} events, state in {store}")
        runs.append(run_child("sim", store, events, seed=seed))
    if bootstrap:
        prefix = f"bench-replay-{int(time.time())}."
        say(f"producing {events:,} events under {prefix} for the broker run")
        since, until = produce_stretch(bootstrap, prefix, events, seed)
        say("replaying them from the broker (state: auto)")
        runs.append(
            run_child(
                "broker",
                "auto",
                events,
                seed=seed,
                bootstrap=bootstrap,
                prefix=prefix,
                since=since,
                until=until,
            )
        )
    return {"target_events_per_s_per_configuration": TARGET, "runs": runs}


def table(result: dict[str, Any]) -> str:
    head = (
        f"{'replay run':<22}{'events':>10}{'baseline/s':>12}{'candidate/s':>13}"
        f"{'ingest/s':>10}{'input CPU s':>13}{'wall/s':>9}{'RSS before':>12}{'peak RSS':>10}"
    )
    lines = [
        f"replay (target {TARGET:,} events/s per configuration, one core; MiB)",
        head,
        "-" * len(head),
    ]
    for r in result["runs"]:
        label = f"{r['source']}, {r['store']}"
        if r.get("error"):
            lines.append(f"{label:<22}FAILED: {r['error'][-200:]}")
            continue
        per = r["per_configuration"]
        lines.append(
            f"{label:<22}{r['events']:>10,}{per['baseline']['events_per_s']:>12,}"
            f"{per['candidate']['events_per_s']:>13,}{r.get('ingest_events_per_s') or 0:>10,}"
            f"{r['input_cpu_s']:>13.1f}"
            f"{r['events_per_s_wall']:>9,}{r['rss_before_mib']:>12.0f}{r['peak_rss_mib']:>10.0f}"
        )
    lines.append(
        "per configuration: events / CPU s of that configuration's pipeline after ingest; "
        "ingest: decoding and validating the records, once for both configurations; input "
        "CPU: generating (sim) or reading (broker) the records; wall: all of it"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--store", default="memory,disk", help="memory, disk or auto; comma-separated")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--bootstrap", help="also replay the stretch from this broker")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--source", default="sim", choices=["sim", "broker"], help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    p.add_argument("--since", type=float, help=argparse.SUPPRESS)
    p.add_argument("--until", type=float, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.child:
        print(MARK + json.dumps(child(args)), flush=True)
        return None
    result = run_all(args.events, args.store.split(","), seed=args.seed, bootstrap=args.bootstrap)
    print(table(result), flush=True)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
