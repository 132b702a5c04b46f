"""CPU per event of the worker's own Python work, without a broker (a development aid).

    .venv/bin/python -m bench.core [--events 100000] [--batch 2000] [--profile]

Feeds the benchmark workload through the same code a worker runs per batch (validate and
re-key, the lead desk, state encoding, output encoding) with the Kafka client calls
replaced by a counter, and prints CPU microseconds per event. The end-to-end figures come
from `bench.run`; this isolates what the Python code costs, so a change to the hot path
can be judged in seconds and without noise from the broker.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Message

from bench import workload
from workers.engine import Worker, _settle_garbage
from workers.store import MemoryBackend, PartitionState


class CountingProducer:
    """Stands in for the Kafka producer: counts what would have been sent."""

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0

    def produce(self, topic: str, value: bytes | None, key: bytes | None, *a: Any, **k: Any):
        self.records += 1
        self.bytes += len(value or b"")


def batches(worker: Worker, events: int, batch: int, seed: int) -> list[list[Message]]:
    work = workload.generate(worker.config, events, seed, time.time())
    prefix = worker.prefix
    messages = [
        Message(topic=prefix + topic, partition=0, offset=i, key=key, value=value, timestamp=(1, i))
        for i, (topic, key, value, _) in enumerate(work.records)
    ]
    return [messages[i : i + batch] for i in range(0, len(messages), batch)]


def run_batch(worker: Worker, batch: list[Message]) -> None:
    """`Worker._process` minus the transaction: the same per-record calls."""
    now = worker.clock()
    for msg in batch:
        worker._ingest(msg, msg.topic(), now)
        worker._drain_local()
    writes = {p: s.pending() for p, s in worker.states.items() if s.dirty}
    worker._send(writes)
    worker._persist(writes)
    worker.metrics.flush()
    _settle_garbage()


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
    worker = Worker(config, serve_metrics=False)
    producer = CountingProducer()
    worker.producer = producer  # type: ignore[assignment]
    worker.internal_partitions = config.settings.kafka.partitions
    for p in range(worker.internal_partitions):
        worker.states[p] = PartitionState(p, MemoryBackend())
    for account in workload.demo_accounts(config):
        worker.accounts.put(account["domain"], account)
    work = batches(worker, args.events, args.batch, args.seed)
    profiler = cProfile.Profile() if args.profile else None
    started = time.process_time()
    if profiler:
        profiler.enable()
    for batch in work:
        run_batch(worker, batch)
    if profiler:
        profiler.disable()
    cpu = time.process_time() - started
    print(
        f"{args.events:,} events in batches of {args.batch}: {cpu:.2f} CPU s, "
        f"{cpu / args.events * 1e6:.1f} µs/event ({args.events / cpu:,.0f} events/s per core); "
        f"{producer.records:,} records out, {producer.bytes / max(1, producer.records):.0f} B avg"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
