"""Reading a stretch of the topics' history, for `replay`, `explain` and `report`.

History is read by time, not by offset: each partition's stretch is found with
`offsets_for_times`, and the records of every partition and topic are merged into one stream
in timestamp order, so a what-if or a report sees events in the order they happened. The
reader assigns partitions by hand (no consumer group is joined, nothing is committed: the
worker's group and offsets are never touched), reads `read_committed` (an aborted
transaction's records are not history), and holds at most `BUFFER` records per partition,
pausing a partition whose buffer is full, so a week of traffic is read in bounded memory.

Nothing at the top of this module imports a Kafka client: the CLI judges `--since/--until`
with `Moment` before any client is loaded (tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import heapq
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from workers.connection import answered
from workers.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

# Records held per partition before it is paused: the merge needs a head from every
# partition, so memory is about BUFFER x partitions x record size, whatever the stretch.
BUFFER = 1000
CONSUME_BATCH = 500
# How long planning and reading wait on the broker before giving up.
BROKER_TIMEOUT = 30.0
T = TypeVar("T")
FAR_FUTURE_MS = 253402300799000  # 9999-12-31T23:59:59Z
# Reading gives up when no partition moves for this long (a broker gone for good).
STALL_TIMEOUT = 120.0

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class UnknownTopic(ValueError):
    """Topics the broker does not have: named, so the operator sees which prefix is wrong."""

    def __init__(self, topics: Sequence[str]) -> None:
        self.topics = tuple(topics)
        names = ", ".join(self.topics)
        super().__init__(
            f"the broker has no topic {names}"
            if len(self.topics) == 1
            else f"the broker has no topics {names}"
        )


def record_time(text: Any) -> float | None:
    """A time as the records on the topics write it (ISO 8601; no offset means UTC), in
    epoch seconds; None when it is not one (a malformed record is counted, not fatal)."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        from topics.contracts import rfc3339_rest  # what the worker also took (rare)

        try:
            moment = rfc3339_rest(text)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class Moment(click.ParamType):
    """`--since/--until`: an ISO 8601 date or date-time (naive means UTC), a span ago
    (`30s`, `15m`, `2h`, `7d`, `1w`) or `now`; as epoch seconds. An operator asking "what
    happened in the last two hours" should not have to write a timestamp."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: Any) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        text = str(value).strip()
        moment = parse_moment(text)
        if moment is None:
            option = param.opts[0] if param is not None and param.opts else "--since"
            self.fail(
                f"{text!r} is not a time: write an ISO 8601 date or date-time (UTC unless it "
                "has an offset), a span ago such as 30s, 15m, 2h or 7d, or now; for example "
                f"{option} 2h or {option} 2026-12-01T09:00:00Z",
                param,
                ctx,
            )
        return moment


def parse_moment(text: str, now: float | None = None) -> float | None:
    """Epoch seconds for what `Moment` accepts, or None."""
    now = time.time() if now is None else now
    text = text.strip()
    if text.lower() == "now":
        return now
    span = _SPAN.match(text.lower())
    if span:
        return now - float(span.group(1)) * _UNIT_SECONDS[span.group(2)]
    if not text or not text[0].isdigit():
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def check_stretch(since: float, until: float | None) -> None:
    """An empty or backwards stretch is a mistake in the command line, not an empty result."""
    if until is not None and until <= since:
        raise click.UsageError(
            f"--until ({moment_text(until)}) must be after --since ({moment_text(since)})"
        )


def moment_text(moment: float) -> str:
    """A moment as people write it in UTC: 2026-12-01T09:00:00Z."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Span:
    """One partition's stretch: offsets [start, end)."""

    start: int
    end: int

    @property
    def count(self) -> int:
        return max(0, self.end - self.start)


@dataclass
class Plan:
    """What `read` will read: per (topic, partition) the offsets found by time."""

    since: float
    until: float | None
    topics: tuple[str, ...]
    partitions: dict[tuple[str, int], Span] = field(default_factory=dict)
    total: int = 0  # records in the offset ranges: an upper bound of what is read
    per_topic: dict[str, int] = field(default_factory=dict)
    # False on a broker without a time index (the embedded Tansu answers every
    # offsets_for_times with the first offset, and its high watermark can lag the log):
    # each partition is then read from its start to its live end, records kept by their
    # timestamps, and `total` is only an estimate.
    by_time: bool = True
    planned_at: float = 0.0  # records stamped later are not history yet (without a time index)

    @property
    def empty(self) -> bool:
        return self.total == 0


def _reader(settings: Settings) -> Consumer:
    """A hand-assigned, never-committing read_committed consumer with the project's
    connection settings (SASL/SSL included)."""
    from confluent_kafka import Consumer

    from workers.runtime.clients import Clients

    conf = Clients(settings, "history").reader("history", read_committed=True)
    conf.update(
        {
            "enable.auto.offset.store": False,
            "queued.max.messages.kbytes": 16384,
            "fetch.queue.backoff.ms": 20,
            "fetch.wait.max.ms": 10,
            "statistics.interval.ms": 0,
        }
    )
    conf.pop("stats_cb", None)
    return Consumer(conf)


def _answered(ask: Callable[[], T]) -> T:
    """A metadata answer, asked again while the broker says so, up to BROKER_TIMEOUT."""
    return answered(ask, BROKER_TIMEOUT)


def plan(settings: Settings, topics: Sequence[str], since: float, until: float | None) -> Plan:
    """Find each partition's stretch by time; refuse topics the broker does not have."""
    from confluent_kafka import KafkaException, TopicPartition

    reader = _reader(settings)
    try:
        metadata = reader.list_topics(timeout=BROKER_TIMEOUT).topics
        missing = [t for t in topics if t not in metadata or metadata[t].error is not None]
        if missing:
            raise UnknownTopic(missing)
        tps = [TopicPartition(t, p) for t in topics for p in sorted(metadata[t].partitions)]
        result = Plan(since=since, until=until, topics=tuple(topics), planned_at=time.time())
        if not tps:
            return result
        highs = {
            (tp.topic, tp.partition): _answered(
                lambda tp=tp: reader.get_watermark_offsets(tp, timeout=BROKER_TIMEOUT)
            )
            for tp in tps
        }

        def times(moment_ms: int) -> list[TopicPartition]:
            query = [TopicPartition(tp.topic, tp.partition, moment_ms) for tp in tps]
            found = reader.offsets_for_times(query, timeout=BROKER_TIMEOUT)
            for tp in found:
                if tp.error is not None:
                    raise KafkaException(tp.error)
            return found

        def at(moment: float) -> dict[tuple[str, int], int]:
            found = _answered(lambda: times(int(moment * 1000)))
            offsets = {}
            for tp in found:
                # -1: no record at or after the moment, so the stretch ends at the end.
                high = highs[(tp.topic, tp.partition)][1]
                offsets[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else high
            return offsets

        probe = _answered(
            lambda: reader.offsets_for_times(
                [TopicPartition(tp.topic, tp.partition, FAR_FUTURE_MS) for tp in tps],
                timeout=BROKER_TIMEOUT,
            )
        )
        # A broker with a time index finds no record stamped in the year 9999.
        result.by_time = all(tp.offset < 0 for tp in probe)
        if result.by_time:
            starts = at(since)
            ends = at(until) if until is not None else {k: h for k, (_, h) in highs.items()}
        else:
            starts = {k: low for k, (low, _) in highs.items()}
            ends = {k: high for k, (_, high) in highs.items()}
        for key in starts:
            span = Span(starts[key], max(starts[key], ends[key]))
            result.partitions[key] = span
            result.per_topic[key[0]] = result.per_topic.get(key[0], 0) + span.count
            result.total += span.count
        for topic in topics:
            result.per_topic.setdefault(topic, 0)
        return result
    finally:
        reader.close()


def read(settings: Settings, plan: Plan, *, progress: bool = False) -> Iterator[Message]:
    """Every record of the plan with since <= timestamp < until, in timestamp order across
    all partitions and topics (ties by topic, partition, offset).

    A k-way merge of the partitions: a record is given out only when every unfinished
    partition has a record buffered, so the order is exact as long as each partition is in
    time order (the producer's clock; a record whose time is out of its partition's order
    comes out where its partition is at). Closing the generator closes the consumer."""
    work = {key: span for key, span in plan.partitions.items() if span.count > 0}
    if not work:
        return
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    exact = plan.by_time
    ceiling_ms = int((plan.until if plan.until is not None else plan.planned_at) * 1000)
    since_ms = int(plan.since * 1000)
    until_ms = int(plan.until * 1000) if plan.until is not None else None
    buffers: dict[tuple[str, int], deque[Message]] = {key: deque() for key in work}
    last: dict[tuple[str, int], int] = {key: span.start - 1 for key, span in work.items()}
    open_: set[tuple[str, int]] = set(work)  # partitions not yet at their end offset
    paused: set[tuple[str, int]] = set()
    rewind: set[tuple[str, int]] = set()  # paused with records dropped after the pause
    heads: list[tuple[int, str, int, int, Message]] = []
    bar = _Progress(plan) if progress and sys.stderr.isatty() else None
    reader = _reader(settings)

    def tp(key: tuple[str, int]) -> Any:
        return TopicPartition(key[0], key[1])

    def close_partition(key: tuple[str, int]) -> None:
        open_.discard(key)
        if key not in paused:
            reader.pause([tp(key)])
            paused.add(key)

    def settle(quiet: bool = False) -> None:
        """Close the starving partitions whose position is past their end: a partition may
        end in a transaction marker or in aborted records, which are never delivered.
        (position() is local: no round trip to the broker.) Without a time index the end
        is only a floor: a partition past it closes once a wait brought nothing (`quiet`)."""
        if not (exact or quiet):
            return
        asked = [k for k in starving if k in open_ and not buffers[k] and k not in rewind]
        if asked:
            for where in reader.position([tp(key) for key in asked]):
                key = (where.topic, where.partition)
                if where.offset >= work[key].end and where.offset > last[key]:
                    close_partition(key)

    def take() -> list[Message]:
        """What has arrived, or else wait a little for the first record to come."""
        messages = reader.consume(CONSUME_BATCH, 0)
        if not messages:
            messages = reader.consume(1, 0.1)
            if messages:
                messages += reader.consume(CONSUME_BATCH - 1, 0)
        return messages

    def fetch() -> int:
        """Records into their partition's buffer; full ones paused. Returns how many
        records came."""
        settle()
        if not any(k in open_ for k in starving):
            return 0
        messages = take()
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal() or err.code() in (
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                    KafkaError.TOPIC_AUTHORIZATION_FAILED,
                ):
                    raise KafkaException(err)
                continue  # transient, or end of partition: librdkafka retries by itself
            key = (msg.topic(), msg.partition())
            offset = msg.offset()
            if key not in open_ or offset <= last[key]:
                continue  # past the end, or a repeat after a rewind
            if key in paused:
                # Fetched before the pause took effect: dropped, and read again from here
                # when the partition is resumed, so the buffer never outgrows BUFFER.
                rewind.add(key)
                continue
            end = work[key].end
            if offset >= end and exact:
                close_partition(key)
                continue
            stamp = msg.timestamp()[1]
            if stamp >= ceiling_ms and not exact:
                close_partition(key)  # written after the plan: past the live end
                continue
            last[key] = offset
            if bar is not None:
                bar.read(key[0])
            if stamp >= since_ms and (until_ms is None or stamp < until_ms):
                buffers[key].append(msg)
            if offset + 1 >= end and exact:
                close_partition(key)
            elif len(buffers[key]) >= BUFFER and key not in paused:
                reader.pause([tp(key)])
                paused.add(key)
        settle(quiet=not messages)
        return len(messages)

    def push_head(key: tuple[str, int]) -> None:
        """The partition's next record into the merge, or the partition marked starving."""
        buffer = buffers[key]
        if not buffer:
            if key in open_:
                starving.add(key)
            return
        msg = buffer.popleft()
        heapq.heappush(heads, (msg.timestamp()[1], key[0], key[1], msg.offset(), msg))
        if key in paused and key in open_ and len(buffer) <= BUFFER // 2:
            if key in rewind:
                rewind.discard(key)
                reader.seek(TopicPartition(key[0], key[1], last[key] + 1))
            reader.resume([tp(key)])
            paused.discard(key)

    starving: set[tuple[str, int]] = set(work)  # open, buffer empty, no head in the merge
    try:
        reader.assign([TopicPartition(t, p, span.start) for (t, p), span in work.items()])
        moved = time.monotonic()
        while True:
            # A record is given out only when every partition that may still give one has
            # its head in the merge.
            while starving:
                came = fetch()
                fed = [k for k in starving if buffers[k] or k not in open_]
                for key in fed:
                    starving.discard(key)
                    push_head(key)
                if fed or came:
                    moved = time.monotonic()
                elif time.monotonic() - moved > STALL_TIMEOUT:
                    names = ", ".join(f"{t}[{p}]" for t, p in sorted(starving))
                    raise KafkaException(
                        f"history: no progress for {STALL_TIMEOUT:.0f}s reading {names}"
                    )
            if not heads:
                break
            _, topic, partition, _, msg = heapq.heappop(heads)
            push_head((topic, partition))
            yield msg
    finally:
        reader.close()
        if bar is not None:
            bar.close()


class _Progress:
    """A rich progress bar per topic (records read of the plan's total), refreshed a few
    times a second so it costs nothing per record."""

    def __init__(self, plan: Plan) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.tasks = {
            topic: self.progress.add_task(topic, total=plan.per_topic.get(topic, 0))
            for topic in plan.topics
        }
        self.counts = dict.fromkeys(plan.topics, 0)
        self.shown = time.monotonic()
        self.progress.start()

    def read(self, topic: str) -> None:
        self.counts[topic] += 1
        now = time.monotonic()
        if now - self.shown > 0.2:
            self.shown = now
            self._update()

    def _update(self) -> None:
        for topic, task in self.tasks.items():
            self.progress.update(task, completed=self.counts[topic])

    def close(self) -> None:
        self._update()
        self.progress.stop()
