"""What the benchmark measures with: process CPU and memory from /proc, consumers that count
(and time) a contender's outputs, a paced producer, and Prometheus text scraping.

All times are wall-clock `time.time()` seconds in the harness process, so a send time and a
receive time taken here can be subtracted directly.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)

from tests.support.worker import wait_until

__all__ = ["wait_until"]  # the tests' poll-with-deadline, used across the harness
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- processes
def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process so far (None once it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak resident set so far) of one process, in KiB."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
    except OSError:
        pass
    return out


def dir_bytes(path: Path) -> int:
    """Bytes on disk (allocated blocks) under `path`, like `du -s`."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def cpu_stall_us() -> int | None:
    """Microseconds some runnable task waited for a CPU, machine-wide (Linux PSI)."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(first.rsplit("total=", 1)[1])


def machine_busy_seconds() -> float | None:
    """CPU seconds all CPUs spent not idle since boot (/proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------- metrics
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(url: str, timeout: float = 5) -> dict[str, float] | None:
    """Sum of every sample per metric name in a Prometheus text page, and each labelled
    sample under `name{labels}` as well (None: unreachable)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
    except (OSError, urllib.error.URLError):
        return None
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.match(line)
        if m:
            sums[m.group(1)] = sums.get(m.group(1), 0.0) + float(m.group(3))
            if m.group(2):
                sums[m.group(1) + m.group(2)] = float(m.group(3))
    return sums


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def group_settled(bootstrap: str, group: str, members: int) -> bool:
    """The consumer group is Stable with `members` members, each owning some partitions."""
    from confluent_kafka import ConsumerGroupState, KafkaException
    from confluent_kafka.admin import AdminClient

    client = AdminClient({"bootstrap.servers": bootstrap})
    try:
        desc = client.describe_consumer_groups([group])[group].result(timeout=10)
    except KafkaException:
        return False
    return (
        desc.state == ConsumerGroupState.STABLE
        and len(desc.members) == members
        and all(m.assignment and m.assignment.topic_partitions for m in desc.members)
    )


# ---------------------------------------------------------------------------- statistics
def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 1))))
    return sorted_values[rank - 1]


# ---------------------------------------------------------------------------- consumers
def _partitions(consumer: Consumer, topics: Iterable[str], timeout: float = 30) -> list[str]:
    """Wait until every topic has metadata; returns the topic names."""
    names = list(topics)

    def known() -> bool:
        meta = consumer.list_topics(timeout=5).topics
        return all(n in meta and meta[n].partitions and meta[n].error is None for n in names)

    wait_until(known, timeout, f"metadata for {names}", every=0.2)
    return names


def _high(consumer: Consumer, tp: TopicPartition, timeout: float = 30) -> int:
    """High watermark, retried while a new topic's partition has no leader yet."""
    end = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=5)[1]
        except KafkaException:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def count_records(bootstrap: str, topic: str, timeout: float = 60) -> int:
    """Committed records on `topic` now (read_committed, from the start to each partition's
    end); transaction markers and aborted records are not counted."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-count",  # assign() only: never joins or commits
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        _partitions(consumer, [topic])
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {p: _high(consumer, TopicPartition(topic, p)) for p in meta.partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        left = {p for p, end in ends.items() if end > 0}
        count = 0
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"counting {topic}: partitions {sorted(left)} not read")
            count += sum(1 for m in consumer.consume(10000, 0.2) if m.error() is None)
            for tp in consumer.position([TopicPartition(topic, p) for p in left]):
                if tp.offset >= ends[tp.partition]:
                    left.discard(tp.partition)
        return count
    finally:
        consumer.close()


@dataclass
class OutputWatch:
    """Consumes a contender's output topics on a thread (read_committed) and counts them.

    from_start=True reads from the beginning (throughput runs: the topics are fresh);
    otherwise from the end as it is when the watch starts (latency runs on a warm contender).
    With `sent` (event_id -> send time) every output whose `id_fields` name a sent event
    gives one latency sample: the time the consume call returned minus the send time.
    `floor_topics` (the contender's input topics) are read by the same consumer and give
    samples of kind "floor" by `event_id`: what the broker and the harness alone add, under
    the same conditions at the same moment. They are not counted as outputs.
    """

    bootstrap: str
    topics: list[str]
    from_start: bool = True
    floor_topics: list[str] = field(default_factory=list)
    sent: dict[str, float] | None = None
    id_fields: tuple[str, ...] = ("event_id",)
    count: int = 0
    first_at: float | None = None
    last_at: float | None = None
    samples: list[tuple[float, str]] = field(default_factory=list)  # (seconds, output kind)
    unmatched: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self) -> OutputWatch:
        self._thread = threading.Thread(target=self._run, name="output-watch", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise TimeoutError(f"output watch on {self.topics} did not start: {self.error}")
        if self.error:
            raise self.error
        return self

    def _run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "bench-watch",  # assign() only: never joins or commits
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
                "fetch.error.backoff.ms": 10,
            }
        )
        try:
            names = [*self.topics, *self.floor_topics]
            _partitions(consumer, names)
            meta = consumer.list_topics(timeout=10).topics
            start = OFFSET_BEGINNING if self.from_start else OFFSET_END
            tps = [TopicPartition(t, p, start) for t in names for p in meta[t].partitions]
            if not self.from_start:  # pin "the end" now, not whenever the fetch starts
                tps = [TopicPartition(tp.topic, tp.partition, _high(consumer, tp)) for tp in tps]
            consumer.assign(tps)
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            consumer.close()
            return
        self._ready.set()
        sent = self.sent
        fields = self.id_fields
        floor = frozenset(self.floor_topics)
        try:
            while not self._stop.is_set():
                # consume(n, timeout) blocks until n records or the timeout: never wait in it.
                # Wait for one record with poll(), then take whatever else is there.
                msgs = consumer.consume(10000, 0)
                if not msgs:
                    first = consumer.poll(0.05)
                    if first is None:
                        continue
                    msgs = [first, *consumer.consume(9999, 0)]
                now = time.time()
                got = 0
                for msg in msgs:
                    if msg.error() is not None:
                        continue
                    if floor and msg.topic() in floor:
                        if sent is not None:
                            self._floor(msg.value(), sent, now)
                        continue
                    got += 1
                    if sent is not None:
                        self._sample(msg.value(), sent, fields, now)
                if got:
                    if self.first_at is None:
                        self.first_at = now
                    self.last_at = now
                    self.count += got
        except BaseException as exc:
            self.error = exc
        finally:
            consumer.close()

    def _floor(self, value: bytes | None, sent: dict[str, float], now: float) -> None:
        try:
            doc = orjson.loads(value) if value else None
        except orjson.JSONDecodeError:
            return
        if isinstance(doc, dict):
            at = sent.get(doc.get("event_id"))  # type: ignore[arg-type]
            if at is not None:
                self.samples.append((now - at, "floor"))

    def _sample(
        self, value: bytes | None, sent: dict[str, float], fields: tuple[str, ...], now: float
    ) -> None:
        try:
            doc = orjson.loads(value) if value else None
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            for name in fields:
                at = sent.get(doc.get(name))  # type: ignore[arg-type]
                if at is not None:
                    kind = doc.get("event")
                    self.samples.append((now - at, kind if isinstance(kind, str) else "output"))
                    return
        self.unmatched += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def wait_count(self, expected: int, timeout: float, what: str) -> None:
        def done() -> bool:
            if self.error:
                raise self.error
            return self.count >= expected

        wait_until(done, timeout, f"{what} ({self.count}/{expected} outputs)", every=0.02)


# ---------------------------------------------------------------------------- producers
def fast_producer(bootstrap: str, **extra: Any) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_097_152,
            "acks": "all",
            "partitioner": "murmur2_random",  # what Java producers do with keyed records
            "log_level": 3,  # errors only: a fresh broker's coordinator warnings are noise
            **extra,
        }
    )


def produce_all(producer: Producer, records: Iterable[tuple[str, bytes | None, bytes]]) -> int:
    n = 0
    for topic, key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 20000 == 0:
            producer.poll(0)
    return n


class Gate:
    """Pre-loads records inside one open Kafka transaction; `open()` commits it.

    A read_committed consumer (leadrouter in exactly_once mode) sees none of the records until
    the commit, so the contender can start, join its group and restore its state while the
    data already sits on the broker; the clock starts at the commit.
    """

    def __init__(self, bootstrap: str, name: str) -> None:
        self.producer = fast_producer(
            bootstrap,
            **{"transactional.id": f"bench-gate-{name}", "transaction.timeout.ms": 900_000},
        )
        self.producer.init_transactions(30)
        self.producer.begin_transaction()
        self.count = 0

    def load(self, records: Iterable[tuple[str, bytes | None, bytes]]) -> int:
        self.count += produce_all(self.producer, records)
        remaining = self.producer.flush(120)
        if remaining:
            raise RuntimeError(f"{remaining} records not delivered while pre-loading")
        return self.count

    def open(self) -> float:
        """Commit; returns the time the commit was requested (data is visible from then on)."""
        at = time.time()
        self.producer.commit_transaction(60)
        return at

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.producer.abort_transaction(10)


@dataclass
class PacedSend:
    """What a paced send achieved."""

    sent: int
    measured: int
    seconds: float
    offered_rate: float
    max_behind_s: float


def paced_send(
    bootstrap: str,
    records: Sequence[tuple[str, bytes | None, bytes, str | None]],
    rate: float,
    warmup: float,
    stamp: Callable[[bytes, float], bytes],
    sent_at: dict[str, float],
) -> PacedSend:
    """Send `records` at `rate` per second, stamping each with its send time.

    Records in the first `warmup` seconds are sent but not put in `sent_at`, so they give no
    latency sample. `max_behind_s` is how far the sender ever fell behind its schedule:
    near zero means the offered rate was the one asked for.
    """
    # linger 5 ms: at 2,000/s linger 1 ms made the broker spend ~1.2 cores on tiny produce
    # requests (p99 of the bare round trip 70 ms on this 2-core machine); 5 ms costs it
    # ~0.5 core and gives p50 ~5 ms, p99 ~9 ms. The linger is inside every latency sample;
    # the "floor" samples show it.
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
        }
    )
    start = time.time()
    measured = 0
    behind = 0.0
    first_measured_at: float | None = None
    last_at = start
    warm = int(warmup * rate)
    try:
        for i, (topic, key, value, event_id) in enumerate(records):
            due = start + i / rate
            now = time.time()
            if due > now:
                time.sleep(due - now)
                now = time.time()
            else:
                behind = max(behind, now - due)
            if i >= warm:
                if event_id is not None:
                    sent_at[event_id] = now
                if first_measured_at is None:
                    first_measured_at = now
                measured += 1
            producer.produce(topic, stamp(value, now), key)
            last_at = now
            producer.poll(0)
        producer.flush(60)
    finally:
        producer.flush(10)
    span = last_at - (first_measured_at or start)
    return PacedSend(
        sent=len(records),
        measured=measured,
        seconds=round(span, 3),
        offered_rate=round((measured - 1) / span, 1) if span > 0 and measured > 1 else 0.0,
        max_behind_s=round(behind, 4),
    )
