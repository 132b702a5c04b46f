"""CPU per event of the worker's own Python work, without a broker (a development aid).

    .venv/bin/python -m bench.core [--events 100000] [--batch 2000] [--profile]

Feeds the benchmark workload, as librdkafka message objects, through what a worker runs per
batch: its topology (validate and re-key, every entity handler, output encoding), its sink
and its commit protocol's changelog writes (state encoding, the store), with the Kafka
producer replaced by a counter, and prints CPU microseconds per event. The end-to-end
figures come from `bench.run`; this isolates what the Python code costs, so a change to the
hot path can be judged in seconds and without broker noise.
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
from topics import catalogue as cat
from workers.core.enrich import AccountBook
from workers.core.topology import Topology
from workers.metrics import Metrics
from workers.runtime.clients import Clients
from workers.runtime.commit import Committer
from workers.runtime.memory import settle_garbage
from workers.runtime.sink import KafkaSink
from workers.runtime.timers import Timers
from workers.settings import Config
from workers.store import MemoryBackend, PartitionState


class CountingProducer:
    """Stands in for the Kafka producer: counts what would have been sent."""

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0

    def produce(self, topic: str, value: bytes | None, key: bytes | None, *a: Any, **k: Any):
        self.records += 1
        self.bytes += len(value or b"")


def batches(config: Config, events: int, batch: int, seed: int) -> list[list[Message]]:
    """The workload as the consumer hands it over (librdkafka's own message objects)."""
    work = workload.generate(config, events, seed, time.time())
    prefix = config.settings.kafka.topic_prefix
    messages = [
        Message(topic=prefix + topic, partition=0, offset=i, key=key, value=value, timestamp=(1, i))
        for i, (topic, key, value, _) in enumerate(work.records)
    ]
    return [messages[i : i + batch] for i in range(0, len(messages), batch)]


def run_batch(
    topology: Topology,
    partitions: dict[int, PartitionState],
    sink: KafkaSink,
    committer: Committer,
    metrics: Metrics,
    batch: list[Message],
) -> None:
    """What the worker does per batch (runtime/worker.py), minus the broker calls."""
    topology.process(batch, partitions.get, sink, time.time())
    changes = {p: s.pending() for p, s in partitions.items() if s.dirty}
    committer.send_changes(changes)
    for p, writes in changes.items():
        partitions[p].commit(writes, None)
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
    producer = CountingProducer()
    prefix = s.kafka.topic_prefix
    committer = Committer(
        Clients(s, "bench"), "at_least_once", prefix + cat.CHANGELOG, producer=producer
    )
    sink = KafkaSink(committer, Timers(), prefix + cat.INTERNAL, prefix + cat.DEADLETTER)
    work = batches(config, args.events, args.batch, args.seed)
    profiler = cProfile.Profile() if args.profile else None
    started = time.process_time()
    if profiler:
        profiler.enable()
    for batch in work:
        run_batch(topology, states, sink, committer, metrics, batch)
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
