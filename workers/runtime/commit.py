"""The commit protocol: how a batch's outputs, state changelog and input offsets become
durable together.

exactly_once: one Kafka transaction per batch. It is begun before the batch's first record
is handled, so outputs stream to the broker while the rest is processed; the input offsets
(known once the batch is read) join it on a helper thread meanwhile; the commit waits only
for the tail. at_least_once (brokers without usable transactions, or chosen for latency): the
changelog with the batch's outputs in it (outbox.py) is flushed, then the outputs are sent,
then the input offsets are committed without waiting (a revoke waits for them).

librdkafka can ignore a transactional call's own timeout when the coordinator goes away
(librdkafka #5456, #5511): such calls run on a helper thread under a watchdog, and the
session gives up on the clients when one overstays; the next session's producer fences the
stuck one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from workers.runtime.clients import Clients, fatal, stable_and_end
from workers.runtime.outbox import FRAME, LAST, MORE, Outbox, Output, send

log = logging.getLogger("leadrouter.worker")
# librdkafka's own timeouts (10 s for the offsets, 15 s to commit) end a slow commit with an
# error; the deadline only catches a call that ignores them, so it must be longer than both
# together: a commit abandoned while still alive could complete later.
COMMIT_DEADLINE = 40.0
PROBE_KEY = b"\x00probe"


class Stuck(KafkaException):
    """A Kafka call overstayed its watchdog: the session's clients are abandoned."""


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


def settle(work: Background, seconds: float) -> None:
    """Wait for `work`; `Stuck` when it overstays."""
    if not work.wait(seconds):
        raise Stuck(f"{work.name} stuck for {seconds:.0f} s")


def within(seconds: float, call: Callable[..., Any], *args: Any) -> None:
    """Run a blocking Kafka call under a watchdog of `seconds`."""
    settle(Background(lambda: call(*args), getattr(call, "__name__", "call")), seconds)


def next_offsets(batch: list[Message]) -> list[TopicPartition]:
    """The input positions the batch's commit moves to: one past the highest offset read."""
    ends: dict[tuple[str, int], int] = {}
    for msg in batch:
        key = (msg.topic(), msg.partition())
        ends[key] = max(ends.get(key, 0), msg.offset() + 1)
    return [TopicPartition(t, p, o) for (t, p), o in ends.items()]


class Committer:
    """The producer of one session and the protocol its batches commit by."""

    def __init__(
        self,
        clients: Clients,
        guarantee: str,
        changelog_topic: str,
        producer: Producer | None = None,
    ) -> None:
        """`producer`: one already made (at_least_once), for `bench.core`'s counter."""
        self.clients = clients
        self.changelog_topic = changelog_topic
        self.delivery_errors: list[str] = []
        # Per changelog partition, one past the last offset written: the local checkpoint.
        self.changelog_offsets: dict[int, int] = {}
        self.exactly_once = False
        self.producer = producer if producer is not None else self._open(guarantee)
        self._offsets: Background | None = None
        # at_least_once: the input offsets committed without waiting since the last revoke,
        # per partition; a revoke commits them again and waits (`confirm_offsets`), so a
        # planned hand-over re-reads nothing. A crash may lose them, as it may lose a batch:
        # reading it again is safe.
        self.unconfirmed: dict[tuple[str, int], int] = {}
        self.commit_failure: KafkaError | None = None

    def committed(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's `on_commit`: the answer to an offset commit, served by its poll. A
        fatal one (this static member fenced) ends the session at the next turn of the loop
        (`check`), as the error of a commit waited for did; any other leaves the offsets to
        the next batch's commit or the revoke's."""
        if err is None:
            return
        if fatal(err) or err.code() == KafkaError.FENCED_INSTANCE_ID:
            self.commit_failure = err
        else:
            log.info("offset commit not done (%s): the next one carries them", err.str())

    def check(self) -> None:
        """Raises the fatal error an offset commit met, if one did."""
        if self.commit_failure is not None:
            raise KafkaException(self.commit_failure)

    def _open(self, guarantee: str) -> Producer:
        if guarantee != "at_least_once":
            producer = Producer(self.clients.producer(transactional=True))
            try:
                producer.init_transactions(30)
                self.exactly_once = guarantee == "exactly_once" or self._transactions_work(producer)
                if not self.exactly_once:
                    raise KafkaException("a committed transaction was not readable")
                return producer
            except KafkaException as exc:
                if guarantee == "exactly_once":
                    raise
                log.warning("broker transactions unusable (%s): using at_least_once", exc)
        # Every delivery is checked here. With transactions the commit itself fails on any
        # undelivered record, and a Python callback per record would make the commit (on
        # its own thread) wait for the GIL once per record.
        return Producer(
            {**self.clients.producer(transactional=False), "on_delivery": self.delivered}
        )

    def _transactions_work(self, producer: Producer) -> bool:
        """Some Kafka-compatible brokers accept transactions but never expose them to
        read_committed readers: commit a tombstone to the changelog and read it back."""
        delivered: list[Message] = []
        partition = self._probe_partition()
        producer.begin_transaction()
        producer.produce(
            self.changelog_topic,
            None,
            PROBE_KEY,
            partition,
            on_delivery=lambda err, msg: delivered.append(msg) if err is None else None,
        )
        producer.commit_transaction(30)
        if not delivered:
            return False
        reader = Consumer(self.clients.reader("probe", read_committed=True))
        try:
            reader.assign([TopicPartition(self.changelog_topic, partition, delivered[0].offset())])
            end = time.monotonic() + 10
            while time.monotonic() < end:
                for msg in reader.consume(10, 0.5):
                    if msg.error() is None and msg.key() == PROBE_KEY:
                        return True
            return False
        finally:
            reader.close()

    def _probe_partition(self) -> int:
        """A changelog partition that no transaction holds open now: its last stable offset
        is its end. A member that died mid-batch holds its transaction open until the broker
        aborts it (up to `transaction.timeout.ms` and the broker's check interval later), and
        a read_committed reader reads nothing past it meanwhile: a probe behind it would time
        out and take a dead member for a broker without usable transactions, and this worker
        would run at_least_once in a group that runs exactly_once. Partition 0 when none is
        found (a broker that does not report the last stable offset, as the embedded one) or
        the offsets cannot be had (a topic just made: "not leader for partition" for a while),
        as before: a question about where to probe must not decide the guarantee."""
        committed = Consumer(self.clients.reader("probe", read_committed=True))
        everything = Consumer(self.clients.reader("probe", read_committed=False))
        try:
            meta = everything.list_topics(self.changelog_topic, timeout=10)
            for p in sorted(meta.topics[self.changelog_topic].partitions):
                tp = TopicPartition(self.changelog_topic, p)
                try:
                    _, stable, end = stable_and_end(committed, everything, tp, 10)
                except KafkaException:
                    continue
                if stable == end:
                    return p
        except KafkaException as exc:
            log.info("changelog offsets not known (%s): probing partition 0", exc)
        finally:
            committed.close()
            everything.close()
        return 0

    # ------------------------------------------------------------------ one batch
    def begin(self, batch: list[Message], consumer: Consumer) -> list[TopicPartition]:
        """Start the batch's unit of work; returns the offsets its commit moves to."""
        offsets = next_offsets(batch)
        if self.exactly_once:
            # Begun before the first record is handled, so outputs stream to the broker
            # while the rest of the batch is processed and the commit waits only for the tail;
            # the input offsets are known already and join the transaction meanwhile too.
            producer = self.producer
            producer.begin_transaction()
            if offsets:
                metadata = consumer.consumer_group_metadata()
                self._offsets = Background(
                    lambda: producer.send_offsets_to_transaction(offsets, metadata, 10),
                    "send_offsets_to_transaction",
                )
        return offsets

    def commit(
        self,
        offsets: list[TopicPartition],
        changes: dict[int, dict[bytes, bytes | None]],
        consumer: Consumer,
        outbox: Outbox | None = None,
    ) -> None:
        """The batch's state changes to the changelog, then everything made durable.

        at_least_once: the state (with its outbox) first, each partition's changes one
        framed run; only once it is durable the outputs; then the input offsets, without
        waiting (the next batch's state recognises what this one did if they are lost)."""
        if self.exactly_once:
            self.send_changes(changes)
            if self._offsets is not None:
                offsets_sent, self._offsets = self._offsets, None
                settle(offsets_sent, COMMIT_DEADLINE)
            within(COMMIT_DEADLINE, self.producer.commit_transaction, 15)
        else:
            self.send_changes(changes, framed=True)
            self.flush()
            if outbox is not None:
                outbox.send(self.produce)
                self.flush()
            if offsets:
                consumer.commit(offsets=offsets, asynchronous=True)
                self.unconfirmed.update(((tp.topic, tp.partition), tp.offset) for tp in offsets)

    def confirm_offsets(self, consumer: Consumer) -> None:
        """at_least_once, at a revoke or before leaving: the offsets committed without
        waiting are committed again, and waited for, while this member still owns them."""
        unconfirmed, self.unconfirmed = self.unconfirmed, {}
        if unconfirmed:
            offsets = [TopicPartition(t, p, o) for (t, p), o in unconfirmed.items()]
            consumer.commit(offsets=offsets, asynchronous=False)

    def send_changes(
        self, changes: dict[int, dict[bytes, bytes | None]], *, framed: bool = False
    ) -> None:
        """The batch's state changes to the changelog, one record per changed key;
        `framed`: each partition's as one run (outbox.py), so a cut run is recognised."""
        produce = self.produce
        changelog = self.changelog_topic
        batch = f"{time.time_ns():x}".encode()
        more, last = [(FRAME, MORE + batch)], [(FRAME, LAST + batch)]
        for p, writes in changes.items():
            end = len(writes) - 1
            for i, (key, value) in enumerate(writes.items()):
                if framed:
                    produce(changelog, key, value, partition=p, headers=last if i == end else more)
                elif i == end and self.exactly_once:  # its offset is the partition's checkpoint
                    produce(changelog, key, value, partition=p, on_delivery=self.delivered)
                else:
                    produce(changelog, key, value, partition=p)

    def send_now(self, outputs: list[Output]) -> None:
        """Records sent between batches (an abort mark, outputs left in a restored outbox),
        durable when this returns: in a transaction of their own with exactly_once."""
        if not outputs:
            return
        if self.exactly_once:
            self.producer.begin_transaction()
        for output in outputs:
            send(self.produce, output)
        if self.exactly_once:
            within(COMMIT_DEADLINE, self.producer.commit_transaction, 15)
        else:
            self.flush()

    # ------------------------------------------------------------------ producing
    def produce(
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
        while True:
            try:
                if on_delivery is not None:
                    producer.produce(
                        topic, value, key, partition, on_delivery=on_delivery, headers=headers
                    )
                elif headers:
                    producer.produce(topic, value, key, partition, headers=headers)
                else:
                    producer.produce(topic, value, key, partition)
                return
            except BufferError:
                producer.poll(0.05)

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.delivery_errors.append(f"{msg.topic()}: {err.str()}")
        elif msg.topic() == self.changelog_topic:
            p = msg.partition()
            if msg.offset() + 1 > self.changelog_offsets.get(p, 0):
                self.changelog_offsets[p] = msg.offset() + 1

    def flush(self) -> None:
        remaining = self.producer.flush(60)
        if remaining or self.delivery_errors:
            errors, self.delivery_errors = self.delivery_errors[:5], []
            raise KafkaException(f"{remaining} records undelivered: {errors}")
