"""The topology: the whole pipeline as one pure object, runnable with or without a broker.

    ingest -> identity -> enrich -> score -> qualify -> route -> assign -> publish

It takes records (topic, key, value, timestamp: the interface of a Kafka message, which a
`confluent_kafka.Message` has and `InputRecord` offers anywhere else) and a state per
partition, and tells a `Sink` what to publish, what to hand to another key's owner, which
timers to set and what goes to dead letters. Every piece of state has one owning partition
(`owner`); a message for a key whose partition this process holds is handled at once, in
the same batch, and only travels through the internal topic between processes.

The worker, the tests' in-process pipeline, the CPU benchmark and replay all drive this
object; `run` collects a sink's calls for those that want lists.
"""

from __future__ import annotations

import logging
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from topics import catalogue as cat
from topics import messages
from topics.contracts import Invalid
from topics.messages import (
    Assign,
    Assigned,
    Claimed,
    DeskDue,
    ExpiryDue,
    Feedback,
    Forget,
    Handed,
    Message,
    Reassign,
    Release,
    SlaDue,
    Touch,
    UnknownMessage,
    VisitorTouch,
    Withdraw,
)
from topics.public import encode_routed
from topics.vocabulary import PROCESSING_ERROR
from workers import erasures
from workers.core.context import QUEUE_DESK, Context, Effects, Recorder, State, queue_desk_key
from workers.core.enrich import AccountBook
from workers.core.feedback import SalesFeedback
from workers.core.ingest import ingest
from workers.core.lead import Lead
from workers.core.privacy import EXPIRY, Privacy
from workers.core.queue_desk import QueueDesk
from workers.core.sla import Sla
from workers.core.visitor import Visitor
from workers.settings import Config

log = logging.getLogger("leadrouter.topology")
INTERNAL_LABEL = "internal"

Handler = Callable[[str, Any, State, Effects], None]
# What ingest makes of an input record: the owner's key and its message, or why it is invalid.
Ingested = tuple[str, Message] | Invalid


class Record(Protocol):
    """One input record, as Kafka hands it over (`confluent_kafka.Message` is one)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...
    def timestamp(self) -> tuple[int, int]: ...


class InputRecord:
    """A record from anywhere but a Kafka client: tests, replay, the CPU benchmark."""

    __slots__ = ("_headers", "_key", "_offset", "_partition", "_timestamp", "_topic", "_value")

    def __init__(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int = 0,
        partition: int = 0,
        offset: int = -1,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._topic, self._key, self._value = topic, key, value
        self._timestamp, self._partition, self._offset = timestamp_ms, partition, offset
        self._headers = headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)  # CreateTime


@dataclass(slots=True)
class DeadLetter:
    """A record that could not be processed, unchanged, with why and where it came from."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int


class Sink(Protocol):
    """Where the topology's results go: a Kafka producer in the worker, lists in `run`."""

    def publish(self, topic: str, key: bytes, value: bytes, event: str) -> None: ...
    def hand_over(self, partition: int, key: bytes, value: bytes) -> None: ...
    def set_timer(self, partition: int, due: float, key: str) -> None: ...
    def dead_letter(self, letter: DeadLetter) -> None: ...


@dataclass
class Outputs:
    """What `run` collected: routed leads as a consumer reads them (queue, lead id, JSON
    object), records for other processes' partitions, timers and dead letters."""

    published: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    handed_over: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    timers: list[tuple[int, float, str]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class Collector:
    """A Sink that keeps everything in lists (`Outputs`)."""

    def __init__(self, topology: Topology) -> None:
        self.queue_of = {topic: q for q, topic in topology.routed_topics.items()}
        self.out = Outputs()

    def publish(self, topic: str, key: bytes, value: bytes, event: str) -> None:
        queue = self.queue_of.get(topic) or topic.rsplit(cat.ROUTED_PREFIX, 1)[-1]
        self.out.published.append((queue, key.decode(), orjson.loads(value)))

    def hand_over(self, partition: int, key: bytes, value: bytes) -> None:
        self.out.handed_over.append((partition, key, value))

    def set_timer(self, partition: int, due: float, key: str) -> None:
        self.out.timers.append((partition, due, key))

    def dead_letter(self, letter: DeadLetter) -> None:
        self.out.dead_letters.append(letter)


class RoutedTopics(dict[str, str]):
    """Queue -> its routed topic. A lead routed to a queue a later version removed still
    has its activity and reassignment published on that queue's topic (it exists)."""

    def __init__(self, prefix: str, queues: Iterable[str]) -> None:
        super().__init__((q, prefix + cat.routed_topic(q)) for q in queues)
        self.prefix = prefix

    def __missing__(self, queue: str) -> str:
        topic = self[queue] = self.prefix + cat.routed_topic(queue)
        return topic


def owner_partition(key: str, partitions: int) -> int:
    """The internal partition that owns `key`. Every record on the internal topic is sent
    to an explicit partition computed here, so all workers agree by construction."""
    return zlib.crc32(key.encode()) % partitions


class Topology:
    """The pipeline over records; state and output are the caller's (see module doc)."""

    def __init__(
        self,
        config: Config,
        accounts: AccountBook,
        recorder: Recorder,
        clock: Callable[[], float],
        partitions: int,
        *,
        round_trip: bool = False,
        defer_hand_overs: bool = False,
    ) -> None:
        """`partitions`: of the internal topic. `round_trip`: encode and decode every
        message handed over in-process, as if it crossed to another worker (tests).
        `defer_hand_overs`: a message one partition's state sends to another goes to the
        sink even when the other is ours (at_least_once: the outbox sends it once the
        sender's state is durable, so no partition's state depends on another's that a
        crash may lose); records from the input topics are still handled here at once."""
        settings = config.settings
        self.accounts = accounts
        self.recorder = recorder
        self.clock = clock
        self.partitions = partitions
        self.round_trip = round_trip
        self.max_bytes = settings.ingest.max_event_bytes
        prefix = settings.kafka.topic_prefix
        self.internal_topic = prefix + cat.INTERNAL
        self.input_kinds = {prefix + t: kind for t, kind in cat.INPUT_KINDS.items()}
        self.topic_label = {prefix + t: t for t in cat.INPUT_KINDS}
        self.erasure_topic = prefix + cat.ERASURES
        self._local: deque[tuple[int, str, Message]] = deque()
        self.defer_hand_overs = defer_hand_overs
        # The partition whose state a message is being handled for (None: an input record):
        # what its outputs belong to, for a sink that keeps them with that state.
        self.handling: int | None = None
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Run `config` from the next record on (a published version switched to between
        batches). State is untouched: counts, round-robin positions, open leads and waiting
        lines carry over; how the process connects (topics, partitions) does not change."""
        self.config = config
        self.version = config.version
        self.ctx = Context(config, self.accounts, self.recorder, self.clock)
        self.routed_topics = RoutedTopics(config.settings.kafka.topic_prefix, config.routing.queues)
        self.desk = desk = QueueDesk(self.ctx)
        lead, visitor, privacy = Lead(self.ctx), Visitor(self.ctx), Privacy(self.ctx)
        self.handlers: dict[type, Handler] = {
            Touch: lead.on_touch,
            VisitorTouch: visitor.on_touch,
            Assign: desk.on_assign,
            Assigned: lead.on_assigned,
            Release: desk.on_release,
            Reassign: desk.on_reassign,
            Claimed: desk.on_claimed,
            Withdraw: desk.on_withdraw,
            DeskDue: desk.on_due,
            Handed: lead.on_handed,
            Feedback: SalesFeedback(self.ctx).on_activity,
            SlaDue: Sla(self.ctx).on_due,
            Forget: privacy.on_forget,
            ExpiryDue: privacy.on_expiry_due,
        }

    def wake_desks(self, state_of: Callable[[int], State | None], sink: Sink) -> None:
        """After a switch: every owned desk with leads waiting judges its line again at
        once (a rep added or back from leave may take them now), at the pace its queue's
        hand-out allows."""
        for queue in self.config.routing.queues:
            key = queue_desk_key(queue)
            p = self.owner(key)
            state = state_of(p)
            if state is not None:
                effects = Effects()
                self.desk.wake(key, state, effects)
                for due, timer in effects.timers:
                    sink.set_timer(p, due, timer)

    def owner(self, key: str) -> int:
        return owner_partition(key, self.partitions)

    # ------------------------------------------------------------------ driving
    def process(
        self,
        records: Iterable[Record],
        state_of: Callable[[int], State | None],
        sink: Sink,
        now: float,
    ) -> None:
        """Each record in the given order, with every hand-over it causes inside this
        process, before the next. `state_of(p)` is None for partitions held elsewhere."""
        internal = self.internal_topic
        self._local.clear()  # nothing left over from a call that raised
        for record in records:
            self.handling = None
            topic = record.topic()
            if topic == internal:
                self._internal(record, state_of, sink)
            else:
                self._ingest(record, topic, now, state_of, sink)  # type: ignore[arg-type]
            if self._local:
                self._drain(state_of, sink)

    def fire(
        self,
        due: Iterable[tuple[int, str]],
        state_of: Callable[[int], State | None],
        sink: Sink,
    ) -> None:
        """Timers that came due: (partition, key): a lead's SLA (its lead id) or a queue
        desk's hand-out (`q:<queue>`)."""
        for p, key in due:
            if key.startswith(QUEUE_DESK):
                message: Message = DeskDue(key[len(QUEUE_DESK) :])
            elif key.startswith(EXPIRY):
                message = ExpiryDue(key)
            else:
                message = SlaDue(key)
            self._handle(p, key, message, state_of, sink, None)
            self._drain(state_of, sink)

    def run(
        self,
        records: Iterable[Record],
        state_of: Callable[[int], State | None],
        now: float,
        due: Iterable[tuple[int, str]] = (),
    ) -> Outputs:
        """`process`, then `fire` the timers `due`, into lists."""
        collector = Collector(self)
        self.process(records, state_of, collector, now)
        self.fire(due, state_of, collector)
        return collector.out

    # ------------------------------------------------------------------ steps
    def _ingest(
        self,
        record: Record,
        topic: str,
        now: float,
        state_of: Callable[[int], State | None],
        sink: Sink,
    ) -> None:
        kind = self.input_kinds.get(topic)
        if kind is None:
            if topic == self.erasure_topic:
                self._erasure(record, state_of, sink)
            return
        result = ingest(kind, record.value(), now, self.max_bytes)
        self._route(record, topic, result, state_of, sink)

    def ingested(self, record: Record, now: float) -> Ingested | None:
        """What ingest makes of an input record (None: not an input topic's). It reads no
        state, so replay takes it once for both configurations (`same_ingest`)."""
        kind = self.input_kinds.get(record.topic())  # type: ignore[arg-type]
        if kind is None:
            return None
        return ingest(kind, record.value(), now, self.max_bytes)

    def same_ingest(self, other: Topology) -> bool:
        """Whether `other` ingests every record as this one does (topics and size limit)."""
        return self.input_kinds == other.input_kinds and self.max_bytes == other.max_bytes

    def process_ingested(
        self,
        record: Record,
        result: Ingested,
        state_of: Callable[[int], State | None],
        sink: Sink,
    ) -> None:
        """`process` of one input record whose ingest (`ingested`) is already done."""
        self._local.clear()
        self.handling = None
        self._route(record, record.topic(), result, state_of, sink)  # type: ignore[arg-type]
        if self._local:
            self._drain(state_of, sink)

    def _route(
        self,
        record: Record,
        topic: str,
        result: Ingested,
        state_of: Callable[[int], State | None],
        sink: Sink,
    ) -> None:
        """An ingested record to its owner, or to dead letters with why it is invalid."""
        if isinstance(result, Invalid):
            label = self.topic_label[topic]
            self.recorder.invalid(label, result.reason)
            sink.dead_letter(_letter(record, result.reason, result.detail))
            return
        self._hand_over(*result, state_of, sink)

    def _erasure(self, record: Record, state_of: Callable[[int], State | None], sink: Sink) -> None:
        """An erasure request (`leadrouter forget`) to the lead's owner; a record that is
        none goes to dead letters like any bad input."""
        value = record.value()
        if value is None:
            return  # a tombstone: the request stays carried out (its marker is kept)
        request = erasure_request(value)
        if isinstance(request, Invalid):
            self.recorder.invalid(cat.ERASURES, request.reason)
            sink.dead_letter(_letter(record, request.reason, request.detail))
            return
        self._hand_over(request.lead, request, state_of, sink)

    def _internal(
        self, record: Record, state_of: Callable[[int], State | None], sink: Sink
    ) -> None:
        partition: int = record.partition()  # type: ignore[assignment]
        if state_of(partition) is None:
            # Not ours. The worker's record selection drops the records of a partition
            # revoked while the batch was gathered, since handling none of them while the
            # batch's commit moves past them would lose them; none should arrive here.
            return
        raw_key = record.key()
        key = raw_key.decode() if raw_key else ""
        try:
            message = messages.decode(record.value())  # type: ignore[arg-type]
        except Exception as exc:  # not a message this release knows: parked, never fatal
            self.recorder.invalid(INTERNAL_LABEL, PROCESSING_ERROR)
            sink.dead_letter(_letter(record, PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"))
            return
        self._handle(partition, key, message, state_of, sink, record)

    def _hand_over(
        self, key: str, message: Message, state_of: Callable[[int], State | None], sink: Sink
    ) -> None:
        """To the partition that owns the key: handled here when that partition is ours."""
        p = owner_partition(key, self.partitions)
        if state_of(p) is not None:
            if self.round_trip:
                message = messages.decode(messages.encode(message))
            self._local.append((p, key, message))
        else:
            sink.hand_over(p, key.encode(), messages.encode(message))

    def _drain(self, state_of: Callable[[int], State | None], sink: Sink) -> None:
        local = self._local
        while local:
            p, key, message = local.popleft()
            self._handle(p, key, message, state_of, sink, None)

    def _handle(
        self,
        p: int,
        key: str,
        message: Message,
        state_of: Callable[[int], State | None],
        sink: Sink,
        record: Record | None,
    ) -> None:
        state = state_of(p)
        if state is None:  # not ours any more: a rebalance raced this batch
            return
        effects = Effects()
        self.handling = p  # reset by the caller of the next message
        try:
            self.handlers[type(message)](key, message, state, effects)
        except Exception as exc:  # a bug must not stop the stream: park the message
            log.exception("internal message for partition %d failed", p)
            why = f"{type(exc).__name__}: {exc}"
            self.recorder.invalid(INTERNAL_LABEL, PROCESSING_ERROR)
            if record is None:  # handed over inside this process: it never had an offset
                record = InputRecord(
                    self.internal_topic, key.encode(), _parked(message), partition=p, offset=-1
                )
            sink.dead_letter(_letter(record, PROCESSING_ERROR, why))
            return
        if self.defer_hand_overs:
            for out_key, out in effects.internal:
                sink.hand_over(self.owner(out_key), out_key.encode(), messages.encode(out))
        else:
            for out_key, out in effects.internal:
                self._hand_over(out_key, out, state_of, sink)
        for queue, routed in effects.published:
            routed.reason.config_version = self.version
            sink.publish(
                self.routed_topics[queue],
                routed.lead_id.encode(),
                encode_routed(routed),
                routed.event,
            )
        for due, key in effects.timers:
            sink.set_timer(p, due, key)


def erasure_request(value: bytes) -> Forget | Invalid:
    """The erasure a record on the erasure topic asks for (format 1), or why it is none."""
    try:
        lead, erasure = erasures.decode(value)
    except erasures.NotAnErasure as exc:
        return Invalid(exc.reason, str(exc))
    return Forget(lead, erasure.requested_at, erasure.reason, True)


def _parked(message: Message) -> bytes:
    try:
        return messages.encode(message)
    except UnknownMessage:
        return orjson.dumps(
            {"k": message.KIND, **{s: getattr(message, s) for s in message.__slots__}}
        )


def _letter(record: Record, reason: str, detail: str) -> DeadLetter:
    return DeadLetter(
        record.key(),
        record.value(),
        list(record.headers() or []),
        reason,
        detail,
        record.topic() or "",
        record.partition() if record.partition() is not None else -1,  # type: ignore[arg-type]
        record.offset() if record.offset() is not None else -1,  # type: ignore[arg-type]
    )
