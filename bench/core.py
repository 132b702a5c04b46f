"""CPU per event of the worker's own Python work, without a broker (a development aid).

    .venv/bin/python -m bench.core [--events 100000] [--batch 2000] [--profile]

Feeds the benchmark workload through the worker's topology (validate and re-key, every
entity handler, output encoding) and the per-batch state work (changelog encoding, the
store), with the Kafka producer replaced by a counter, and prints CPU microseconds per
event. The end-to-end figures come from `bench.run`; this isolates what the Python code
costs, so a change to the hot path can be judged in seconds and without broker noise.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from bench import workload
from workers.core.enrich import AccountBook
from workers.core.topology import DeadLetter, InputRecord, Topology
from workers.metrics import Metrics
from workers.runtime.memory import settle_garbage
from workers.settings import Config
from workers.store import MemoryBackend, PartitionState


class CountingSink:
    """Stands in for the Kafka producer: counts what would have been sent."""

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0

    def _count(self, value: bytes | None) -> None:
        self.records += 1
        self.bytes += len(value or b"")

    def publish(self, topic: str, key: bytes, value: bytes, event: str) -> None:
        self._count(value)

    def hand_over(self, partition: int, key: bytes, value: bytes) -> None:
        self._count(value)

    def set_timer(self, partition: int, due: float, lead_id: str) -> None:
        pass

    def dead_letter(self, letter: DeadLetter) -> None:
        self._count(letter.value)


def batches(config: Config, events: int, batch: int, seed: int) -> list[list[InputRecord]]:
    work = workload.generate(config, events, seed, time.time())
    prefix = config.settings.kafka.topic_prefix
    records = [
        InputRecord(prefix + topic, key, value, timestamp_ms=i, offset=i)
        for i, (topic, key, value, _) in enumerate(work.records)
    ]
    return [records[i : i + batch] for i in range(0, len(records), batch)]


def run_batch(
    topology: Topology,
    states: dict[int, PartitionState],
    sink: CountingSink,
    metrics: Metrics,
    batch: list[InputRecord],
) -> None:
    """What the worker does per batch, minus the transaction."""
    topology.process(batch, states.get, sink, time.time())
    changes = {p: s.pending() for p, s in states.items() if s.dirty}
    for writes in changes.values():
        for value in writes.values():
            sink._count(value)  # the changelog records
    for p, writes in changes.items():
        states[p].commit(writes, None)
    metrics.flush()
    settle_garbage()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="print the top of a cProfile run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config_dir = workload.always_open_config(Path(tmp) / "config")
        config = workload.config_for(config_dir, "127.0.0.1:9", "bench.")
    s = config.settings
    metrics = Metrics(s.metrics.sources, s.metrics.campaigns)
    metrics.declare(config.routing.queues, [r.name for r in config.routing.rules])
    accounts = AccountBook()
    for account in workload.demo_accounts(config):
        accounts.put(account["domain"], account)
    partitions = s.kafka.partitions
    topology = Topology(config, accounts, metrics, time.time, partitions)
    states = {p: PartitionState(p, MemoryBackend()) for p in range(partitions)}
    sink = CountingSink()
    work = batches(config, args.events, args.batch, args.seed)
    profiler = cProfile.Profile() if args.profile else None
    started = time.process_time()
    if profiler:
        profiler.enable()
    for batch in work:
        run_batch(topology, states, sink, metrics, batch)
    if profiler:
        profiler.disable()
    cpu = time.process_time() - started
    print(
        f"{args.events:,} events in batches of {args.batch}: {cpu:.2f} CPU s, "
        f"{cpu / args.events * 1e6:.1f} µs/event ({args.events / cpu:,.0f} events/s per core); "
        f"{sink.records:,} records out, {sink.bytes / max(1, sink.records):.0f} B avg"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
