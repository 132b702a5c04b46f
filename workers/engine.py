"""The stream shell: moves records between Kafka and the lead desk, a batch at a time.

One consumer reads the marketing and sales topics (ingest: validate, re-key) and the
internal topic (the desk: leads, visitors and queue desks, each key owned by one
partition). Every batch is one unit: outputs, state changelog and input offsets are
committed together in a Kafka transaction (exactly_once), or produced and flushed before
the offsets are committed (at_least_once, for brokers without transactions; duplicates
are then absorbed by the desk's event-id memory). See docs/architecture.md for why this
is a batch loop and not per-event Faust agents.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import heapq
import logging
import signal
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from kafka.errors import KafkaError as KafkaPythonError

from topics import catalogue as cat
from topics.contracts import Invalid
from workers import admin
from workers.connection import data_dir, instance_id, librdkafka_config
from workers.core.desk import LeadDesk, ingest
from workers.core.enrich import AccountBook
from workers.metrics import Health, Metrics, serve
from workers.settings import Config
from workers.store import MemoryBackend, PartitionState, RocksBackend

log = logging.getLogger("leadrouter.worker")
LAG_EVERY = 5.0
RESTORE_DEADLINE = 180.0
CLICK_WAIT = 0.25
TRIM_EVERY = 10.0
# librdkafka's own timeouts (10 s for the offsets, 15 s to commit) end a slow commit with an
# error; the deadline only catches a call that ignores them (see _within), so it must be
# longer than both together: a commit abandoned while still alive could complete later.
COMMIT_DEADLINE = 40.0


def owner_partition(key: str, partitions: int) -> int:
    """The internal partition that owns `key`. Every record on the internal topic is sent
    to an explicit partition computed here, so all workers agree by construction."""
    return zlib.crc32(key.encode()) % partitions


def _settle_garbage() -> None:
    """Lead state is millions of small long-lived dicts and lists: a full collection walks
    them all, about a second per 150k leads, stalling every record behind it. After each
    batch the young generations are collected and the survivors frozen out of the
    collector's reach. Freed state is still released by reference counting; only a cycle
    that survives its batch and dies later is never reclaimed, and state is acyclic."""
    gc.collect(1)
    gc.freeze()


def _libc_trim() -> Callable[[], None]:
    """glibc keeps memory freed by librdkafka's threads (a drained read-ahead of up to
    queued.max.messages.kbytes) in per-thread arenas; malloc_trim hands it back."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


release_freed_memory = _libc_trim()


def _sent_at(msg: Message) -> int:
    return msg.timestamp()[1]


def _next_offsets(batch: list[Message]) -> list[TopicPartition]:
    """The input positions the batch's commit moves to: one past the highest offset read."""
    ends: dict[tuple[str, int], int] = {}
    for msg in batch:
        if msg.error() is None:
            key = (msg.topic(), msg.partition())
            ends[key] = max(ends.get(key, 0), msg.offset() + 1)
    return [TopicPartition(t, p, o) for (t, p), o in ends.items()]


class Background:
    """A blocking Kafka call on its own thread (confluent-kafka releases the GIL while it
    waits), joined later with a deadline."""

    def __init__(self, call: Callable[[], None], name: str) -> None:
        self.name = name
        self.failure: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, args=(call,), name=name, daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], None]) -> None:
        started = time.perf_counter()
        try:
            call()
        except BaseException as exc:  # handed back to the batch thread by wait()
            self.failure = exc
        self.seconds = time.perf_counter() - started

    def wait(self, seconds: float) -> bool:
        """False when still running after `seconds`; re-raises the call's exception."""
        self._thread.join(seconds)
        if self._thread.is_alive():
            return False
        if self.failure is not None:
            raise self.failure
        return True


class Worker:
    def __init__(
        self,
        config: Config,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        serve_metrics: bool = True,
    ) -> None:
        self.config = config
        s = config.settings
        self.settings = s
        self.clock = clock
        self.metrics = metrics or Metrics(s.metrics.sources, s.metrics.campaigns)
        self.metrics.declare(config.routing.queues, [r.name for r in config.routing.rules])
        self.health = Health()
        self.serve_metrics = serve_metrics
        self.accounts = AccountBook()
        self.desk = LeadDesk(config, self.accounts, self.metrics, clock)
        prefix = s.kafka.topic_prefix
        self.prefix = prefix
        self.internal_topic = prefix + cat.INTERNAL
        self.changelog_topic = prefix + cat.CHANGELOG
        self.accounts_topic = prefix + cat.ACCOUNTS
        self.deadletter_topic = prefix + cat.DEADLETTER
        self.input_kinds = {prefix + t: k for t, k in cat.INPUT_KINDS.items()}
        self.topic_label = {prefix + t: t for t in cat.INPUT_KINDS}
        self.routed_topics = {q: prefix + cat.routed_topic(q) for q in config.routing.queues}
        self.max_bytes = s.ingest.max_event_bytes
        self.batch_size = s.ingest.batch_size
        self.forms_topic = prefix + cat.FORM_FILLS
        self.clicks_topic = prefix + cat.AD_CLICKS
        self.click_seen: dict[int, int] = {}
        self.states: dict[int, PartitionState] = {}
        self.local: deque[tuple[int, str, dict[str, Any]]] = deque()
        self.internal_partitions = 0
        self.timers: dict[int, list[tuple[float, str]]] = {}
        self.changelog_offsets: dict[int, int] = {}
        self.delivery_errors: list[str] = []
        self.stopping = threading.Event()
        self.exactly_once = False
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.accounts_reader: Consumer | None = None
        self.base_conf = librdkafka_config(s)
        self.instance = instance_id(s)
        self.routed_count = 0
        self.abandoned = False

    # ------------------------------------------------------------------ lifecycle
    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def run(self) -> int:
        """Run until stopped; broker trouble restarts the session with backoff, not the process."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        stop_http = None
        if self.serve_metrics:
            m = self.settings.metrics
            _, stop_http = serve(self.metrics.registry, self.health, m.host, m.port)
            log.info("metrics on http://%s:%d/metrics", m.host, m.port)
        backoff = 1.0
        try:
            while not self.stopping.is_set():
                try:
                    self._session()
                    backoff = 1.0
                except (KafkaException, KafkaPythonError) as exc:
                    log.error("Kafka session failed (%s); restarting in %.0f s", exc, backoff)
                    self._teardown()
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
        finally:
            self._teardown()
            if stop_http:
                stop_http()
        log.info("worker stopped")
        return 0

    def _session(self) -> None:
        try:
            admin.ensure_topics(self.config, stop=self.stopping)
        except admin.Stopped:
            return
        self._open_clients()
        self._load_accounts()
        assert self.consumer is not None
        meta = self.consumer.list_topics(self.internal_topic, timeout=30)
        self.internal_partitions = len(meta.topics[self.internal_topic].partitions)
        topics = [*self.input_kinds, self.internal_topic]
        assert self.consumer is not None
        self.consumer.subscribe(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        log.info(
            "worker %s consuming %d topics (%s)",
            self.instance,
            len(topics),
            "exactly_once" if self.exactly_once else "at_least_once",
        )
        trimmed = time.monotonic()
        while not self.stopping.is_set():
            batch = self._next_batch()
            if len(batch) < self.batch_size and time.monotonic() - trimmed > TRIM_EVERY:
                release_freed_memory()  # caught up: a backlog's buffers are free now
                trimmed = time.monotonic()
            self.health.beat()
            self._poll_accounts()
            due = self._due_timers(self.clock())
            if batch or due:
                self._process(batch, due)
        self.consumer.close()  # leaves the group now, so partitions move without a timeout
        self.consumer = None

    def _open_clients(self) -> None:
        guarantee = self.settings.kafka.processing_guarantee
        producer_conf = {
            **self.base_conf,
            "linger.ms": 1,  # every batch ends in a flush (commit) anyway
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
        }
        self.producer = None
        self.exactly_once = False
        if guarantee != "at_least_once":
            self.producer = Producer(
                {
                    **producer_conf,
                    "transactional.id": f"{self.settings.kafka.group_id}-{self.instance}",
                    "transaction.timeout.ms": 15000,
                    # The broker answers EndTxn before it has written the commit markers,
                    # and refuses the next transaction's first request until they are
                    # written (CONCURRENT_TRANSACTIONS, a few ms). librdkafka retries after
                    # retry.backoff.ms, 100 ms by default: a tenth of a second added to
                    # every batch that follows its predecessor closely. Repeated failures
                    # still back off exponentially, to retry.backoff.max.ms.
                    "retry.backoff.ms": 5,
                    "retry.backoff.max.ms": 1000,
                }
            )
            try:
                self.producer.init_transactions(30)
                self.exactly_once = guarantee == "exactly_once" or self._transactions_work()
                if not self.exactly_once:
                    raise KafkaException("a committed transaction was not readable")
            except KafkaException as exc:
                if guarantee == "exactly_once":
                    raise
                log.warning("broker transactions unusable (%s): using at_least_once", exc)
        if not self.exactly_once:
            # Every delivery is checked here. With transactions the commit itself fails on
            # any undelivered record, and a Python callback per record would make the commit
            # (on its own thread) wait for the GIL once per record.
            self.producer = Producer({**producer_conf, "on_delivery": self._delivered})
        self.consumer = Consumer(
            {
                **self.base_conf,
                "group.id": self.settings.kafka.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed" if self.exactly_once else "read_uncommitted",
                "fetch.wait.max.ms": 50,
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000,
                "max.poll.interval.ms": 300000,
                # The read-ahead: memory held only while a backlog exists. 16 MiB is still
                # about two seconds of input at full speed; 64 MiB left a 30 s burst's worker
                # 120-150 MiB above its caught-up size, with no gain in throughput.
                "queued.max.messages.kbytes": 16384,
                # Once the prefetch queue is over its limit librdkafka pauses fetching for
                # this long (1 s by default): long enough for a busy worker to drain the
                # queue and sit idle waiting for the next fetch.
                "fetch.queue.backoff.ms": 20,
                "statistics.interval.ms": int(LAG_EVERY * 1000),
                "stats_cb": self._stats,
            }
        )

    def _transactions_work(self) -> bool:
        """Some Kafka-compatible brokers accept transactions but never expose them to
        read_committed readers: commit a tombstone to the changelog and read it back."""
        assert self.producer is not None
        delivered: list[Message] = []
        self.producer.begin_transaction()
        self.producer.produce(
            self.changelog_topic,
            None,
            b"\x00probe",
            0,
            on_delivery=lambda err, msg: delivered.append(msg) if err is None else None,
        )
        self.producer.commit_transaction(30)
        if not delivered:
            return False
        reader = Consumer(
            {
                **self.base_conf,
                "group.id": f"{self.settings.kafka.group_id}-probe",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        try:
            reader.assign([TopicPartition(self.changelog_topic, 0, delivered[0].offset())])
            end = time.monotonic() + 10
            while time.monotonic() < end:
                for msg in reader.consume(10, 0.5):
                    if msg.error() is None and msg.key() == b"\x00probe":
                        return True
            return False
        finally:
            reader.close()

    def _flush(self) -> None:
        assert self.producer is not None
        remaining = self.producer.flush(60)
        if remaining or self.delivery_errors:
            errors, self.delivery_errors = self.delivery_errors[:5], []
            raise KafkaException(f"{remaining} records undelivered: {errors}")

    def _within(self, seconds: float, call: Callable[..., Any], *args: Any) -> None:
        """librdkafka can ignore a transactional call's own timeout when the coordinator
        goes away (librdkafka #5456, #5511): run it on a thread and give up on it, and on
        the clients, when it overstays; the next session's producer fences the stuck one."""
        self._await(Background(lambda: call(*args), getattr(call, "__name__", "call")), seconds)

    def _await(self, work: Background, seconds: float) -> None:
        if not work.wait(seconds):
            self.abandoned = True
            raise KafkaException(f"{work.name} stuck for {seconds:.0f} s")

    def _teardown(self) -> None:
        for client in (self.consumer, self.accounts_reader):
            if client is not None:
                with contextlib.suppress(KafkaException, RuntimeError):
                    self._within(15, client.close)
        self.consumer = self.accounts_reader = None
        if self.producer is not None and not self.abandoned:
            self.producer.flush(5)
        self.producer = None
        self.abandoned = False
        for p in list(self.states):
            self._drop_partition(p)
        self.health.ready = False

    # ------------------------------------------------------------------ rebalancing
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.topic == self.internal_topic and tp.partition not in self.states:
                self._restore(tp.partition)
        self.health.ready = True
        log.info("assigned %d partitions", len(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.topic == self.internal_topic:
                self._drop_partition(tp.partition)
        log.info("revoked %d partitions", len(partitions))

    def _drop_partition(self, p: int) -> None:
        state = self.states.pop(p, None)
        self.timers.pop(p, None)
        if state is not None:
            state.backend.close()

    def _restore(self, p: int) -> None:
        """Rebuild partition p's state from the changelog (from the local checkpoint if any)."""
        if self.settings.store.kind == "rocksdb":
            path = data_dir(self.settings) / self.settings.kafka.group_id / f"p{p}"
            backend: Any = RocksBackend(path)
        else:
            backend = MemoryBackend()
        start = backend.checkpoint()
        reader = Consumer(
            {
                **self.base_conf,
                "group.id": f"{self.settings.kafka.group_id}-restore",
                "enable.auto.commit": False,
                "isolation.level": "read_committed" if self.exactly_once else "read_uncommitted",
            }
        )
        applied = 0
        try:
            tp = TopicPartition(self.changelog_topic, p)
            low, high = reader.get_watermark_offsets(tp, timeout=30)
            begin = start if start is not None and start >= low else OFFSET_BEGINNING
            if high > (start or low):
                reader.assign([TopicPartition(self.changelog_topic, p, begin)])
                deadline = time.monotonic() + RESTORE_DEADLINE
                position = start or low
                while position < high:
                    if time.monotonic() > deadline:
                        raise KafkaException(f"restore of partition {p} did not finish in time")
                    writes: dict[bytes, bytes | None] = {}
                    for msg in reader.consume(10000, 0.5):
                        if msg.error():
                            continue
                        writes[msg.key()] = msg.value()
                        position = msg.offset() + 1
                    if writes:
                        backend.apply(writes, position)
                        applied += len(writes)
                    else:
                        got = reader.position([tp])[0].offset
                        position = max(position, got)
        finally:
            reader.close()
        heap: list[tuple[float, str]] = []
        for key in backend.keys_with_prefix("s:"):
            timer = backend.load(key)
            if timer:
                heap.append((timer["due"], key[2:]))
        heapq.heapify(heap)
        self.timers[p] = heap
        self.states[p] = PartitionState(p, backend)
        log.info(
            "partition %d restored: %d changelog records, %d open SLA timers", p, applied, len(heap)
        )

    # ------------------------------------------------------------------ accounts
    def _load_accounts(self) -> None:
        """`reference.accounts` is read whole by every worker, before any lead is scored."""
        self.accounts_reader = Consumer(
            {
                **self.base_conf,
                "group.id": f"{self.settings.kafka.group_id}-accounts-{self.instance}",
                "enable.auto.commit": False,
            }
        )
        reader = self.accounts_reader
        meta = reader.list_topics(self.accounts_topic, timeout=30).topics[self.accounts_topic]
        tps = [TopicPartition(self.accounts_topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        reader.assign(tps)
        ends = {tp.partition: reader.get_watermark_offsets(tp, timeout=30)[1] for tp in tps}
        done = {p for p, high in ends.items() if high <= 0}
        deadline = time.monotonic() + RESTORE_DEADLINE
        while len(done) < len(ends) and time.monotonic() < deadline:
            for msg in reader.consume(10000, 0.5):
                if msg.error():
                    continue
                self._account(msg)
                if msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
        log.info("accounts loaded: %d", len(self.accounts.by_domain))

    def _account(self, msg: Message) -> None:
        key = msg.key()
        if not key:
            return
        try:
            value = orjson.loads(msg.value()) if msg.value() is not None else None
        except orjson.JSONDecodeError:
            log.warning("reference.accounts offset %d: not JSON, ignored", msg.offset())
            return
        if value is not None and not isinstance(value, dict):
            return
        self.accounts.put(key.decode("utf-8", "replace"), value)

    def _poll_accounts(self) -> None:
        if self.accounts_reader is not None:
            for msg in self.accounts_reader.consume(1000, 0):
                if not msg.error():
                    self._account(msg)

    # ------------------------------------------------------------------ the batch
    def _next_batch(self) -> list[Message]:
        """Whatever is ready now; when nothing is, wait briefly for the first record only,
        so a quiet stream is not held back by a batch that never fills."""
        assert self.consumer is not None
        batch = self.consumer.consume(self.batch_size, 0)
        if not batch:
            first = self.consumer.poll(0.1)
            if first is None:
                return []
            batch = [first, *self.consumer.consume(self.batch_size - 1, 0)]
        return self._await_clicks(batch)

    def _await_clicks(self, batch: list[Message]) -> list[Message]:
        """Partitions arrive in no particular order across topics: before a form fill that
        names a visitor is handled, read the ad-click partitions up to the form's send time
        (or to their end), so the visitor's clicks are attached and give the first touch.
        Bounded by CLICK_WAIT; costs nothing when the click topic is caught up."""
        assert self.consumer is not None
        forms = self.forms_topic
        waiting = [
            m.timestamp()[1]
            for m in batch
            if m.topic() == forms and m.value() and b'"anonymous_id"' in m.value()
        ]
        self._note_clicks(batch)
        if not waiting:
            return batch
        since = max(waiting)
        deadline = time.monotonic() + CLICK_WAIT
        while not self._clicks_read_to(since) and time.monotonic() < deadline:
            more = self.consumer.consume(self.batch_size, 0.005)
            self._note_clicks(more)
            batch.extend(more)
        return batch

    def _note_clicks(self, messages: list[Message]) -> None:
        clicks = self.clicks_topic
        for m in messages:
            if m.topic() == clicks:
                self.click_seen[m.partition()] = max(
                    self.click_seen.get(m.partition(), 0), m.timestamp()[1]
                )

    def _clicks_read_to(self, since: int) -> bool:
        assert self.consumer is not None
        tps = [tp for tp in self.consumer.assignment() if tp.topic == self.clicks_topic]
        if not tps:
            return True
        for tp in self.consumer.position(tps):
            _, high = self.consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
            if high <= 0 or (tp.offset >= 0 and tp.offset >= high):
                continue  # nothing more to read there
            if self.click_seen.get(tp.partition, 0) >= since:
                continue
            return False
        return True

    def _due_timers(self, now: float) -> list[tuple[int, str]]:
        due = []
        for p, heap in self.timers.items():
            while heap and heap[0][0] <= now:
                due.append((p, heapq.heappop(heap)[1]))
        return due

    def _process(self, batch: list[Message], due: list[tuple[int, str]]) -> None:
        producer = self.producer
        assert producer is not None and self.consumer is not None
        started = time.perf_counter()
        tps = _next_offsets(batch)
        sending: Background | None = None
        if self.exactly_once:
            # Begun before the first record is handled, so outputs stream to the broker
            # while the rest of the batch is processed and the commit waits only for the tail;
            # the input offsets are known already and join the transaction meanwhile too.
            producer.begin_transaction()
            if tps:
                metadata = self.consumer.consumer_group_metadata()
                sending = Background(
                    lambda: producer.send_offsets_to_transaction(tps, metadata, 10),
                    "send_offsets_to_transaction",
                )
        now = self.clock()
        # Topics are fetched partition by partition; the send time puts an ad click ahead of
        # the form fill that followed it even when they arrive in one batch.
        batch.sort(key=_sent_at)
        internal = self.internal_topic
        counted = 0
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                continue
            topic = msg.topic()
            counted += 1
            if topic == internal:
                self._desk(msg)
            else:
                self._ingest(msg, topic, now)
            self._drain_local()
        for p, lead_id in due:
            state = self.states.get(p)
            if state is not None:
                self.desk.on_sla_due(lead_id, state)
        self._drain_local()
        self.metrics.batch_process.observe(time.perf_counter() - started)
        writes = {p: s.pending() for p, s in self.states.items() if s.dirty}
        committing = time.perf_counter()
        if self.exactly_once:
            self._send(writes)
            if sending is not None:
                self._await(sending, COMMIT_DEADLINE)
            self._within(COMMIT_DEADLINE, producer.commit_transaction, 15)
        else:
            self._flush()  # outputs first: state may only say "done" once they are delivered
            self._send(writes)
            self._flush()
            if tps:
                self.consumer.commit(offsets=tps, asynchronous=False)
        self.metrics.batch_commit.observe(time.perf_counter() - committing)
        self._persist(writes)
        self.metrics.flush()
        if counted:
            self.metrics.batch_size.observe(counted)
        _settle_garbage()

    def _send(self, writes: dict[int, dict[bytes, bytes | None]]) -> None:
        """The batch's state changes, to the changelog."""
        produce = self._produce
        changelog = self.changelog_topic
        for p, changes in writes.items():
            last = len(changes) - 1
            for i, (key, value) in enumerate(changes.items()):
                if i == last and self.exactly_once:  # its offset is the partition's checkpoint
                    produce(changelog, key, value, partition=p, on_delivery=self._delivered)
                else:
                    produce(changelog, key, value, partition=p)

    def _persist(self, writes: dict[int, dict[bytes, bytes | None]]) -> None:
        for p, changes in writes.items():
            state = self.states.get(p)
            if state is not None:
                state.commit(changes, self.changelog_offsets.get(p))

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int = -1,
        headers: list[tuple[str, bytes]] | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        """Never waits for the broker: with exactly_once the record joins the batch's open
        transaction; the commit (or the flush, at_least_once) checks that it arrived."""
        producer = self.producer
        assert producer is not None
        while True:
            try:
                if on_delivery is not None:
                    producer.produce(topic, value, key, partition, on_delivery=on_delivery)
                elif headers:
                    producer.produce(topic, value, key, partition, headers=headers)
                else:
                    producer.produce(topic, value, key, partition)
                return
            except BufferError:
                producer.poll(0.05)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.delivery_errors.append(f"{msg.topic()}: {err.str()}")
        elif msg.topic() == self.changelog_topic:
            p = msg.partition()
            if msg.offset() + 1 > self.changelog_offsets.get(p, 0):
                self.changelog_offsets[p] = msg.offset() + 1

    def _ingest(self, msg: Message, topic: str, now: float) -> None:
        kind = self.input_kinds.get(topic)
        if kind is None:
            return
        result = ingest(kind, msg.value(), now, self.max_bytes)
        if isinstance(result, Invalid):
            self._deadletter(msg, result.reason, result.detail, self.topic_label[topic])
            return
        self._hand_over(*result)

    def _hand_over(self, key: str, record: dict[str, Any]) -> None:
        """Send a record to the partition that owns its key. When that partition is ours it is
        handled in this same batch and transaction: the round trip through the internal topic
        only happens between workers."""
        p = owner_partition(key, self.internal_partitions)
        if p in self.states:
            self.local.append((p, key, record))
        else:
            self._produce(self.internal_topic, key.encode(), orjson.dumps(record), partition=p)

    def _drain_local(self) -> None:
        local = self.local
        while local:
            p, key, record = local.popleft()
            self._handle(p, key, record, None)

    def _deadletter(
        self,
        msg: Message | None,
        reason: str,
        detail: str,
        topic_label: str,
        parked: tuple[int, str, dict[str, Any]] | None = None,
    ) -> None:
        if msg is not None:
            key, value = msg.key(), msg.value()
            headers = list(msg.headers() or [])
            source = (msg.topic(), msg.partition(), msg.offset())
        else:  # a record handed over inside this worker: it never had an offset
            assert parked is not None
            key, value, headers = parked[1].encode(), orjson.dumps(parked[2]), []
            source = (self.internal_topic, parked[0], -1)
        headers += [
            ("error.reason", reason.encode()),
            ("error.detail", detail.encode("utf-8", "replace")[:1000]),
            ("source.topic", source[0].encode()),
            ("source.partition", str(source[1]).encode()),
            ("source.offset", str(source[2]).encode()),
        ]
        self._produce(self.deadletter_topic, key, value, headers=headers)
        if topic_label != "internal":
            self.metrics.event(topic_label, "invalid")
        self.metrics.deadletter(reason)

    def _desk(self, msg: Message) -> None:
        key = msg.key().decode() if msg.key() else ""
        try:
            record = orjson.loads(msg.value())
        except orjson.JSONDecodeError as exc:
            self._deadletter(msg, "processing_error", str(exc), "internal")
            return
        self._handle(msg.partition(), key, record, msg)

    def _handle(self, p: int, key: str, record: dict[str, Any], msg: Message | None) -> None:
        state = self.states.get(p)
        if state is None:  # not ours any more: a rebalance raced this batch
            return
        try:
            effects = self.desk.handle(key, record, state)
        except Exception as exc:  # a bug must not stop the stream: park the record
            log.exception("internal record for partition %d failed", p)
            why = f"{type(exc).__name__}: {exc}"
            self._deadletter(msg, "processing_error", why, "internal", (p, key, record))
            return
        for out_key, out in effects.internal:
            self._hand_over(out_key, out)
        for queue, lead_id, routed in effects.published:
            self._produce(
                self.routed_topics[queue],
                lead_id.encode(),
                orjson.dumps(routed),
                headers=[("event", routed["event"].encode())],
            )
            self.routed_count += 1
        for timer in effects.timers:
            heapq.heappush(self.timers.setdefault(p, []), timer)

    def _stats(self, raw: str) -> None:
        """librdkafka's periodic statistics carry each assigned partition's lag: no extra
        broker round trips on the processing thread."""
        try:
            stats = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        lag: dict[str, int] = {}
        for topic, info in (stats.get("topics") or {}).items():
            name = topic[len(self.prefix) :] if topic.startswith(self.prefix) else topic
            for pid, part in (info.get("partitions") or {}).items():
                if pid == "-1" or part.get("fetch_state") not in ("active", "offset-query"):
                    continue
                end = part.get("ls_offset" if self.exactly_once else "hi_offset", -1)
                position = part.get("app_offset", -1)
                if position < 0:
                    position = part.get("committed_offset", -1)
                if end >= 0 and position >= 0:
                    lag[name] = lag.get(name, 0) + max(0, end - position)
        for name, value in lag.items():
            self.metrics.consumer_lag.labels(name).set(value)
