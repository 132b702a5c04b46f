"""Record selection: which records form the next batch, and in which order they are handled.

A batch is whatever the consumer has ready; when nothing is, it waits briefly for the first
record only, so a quiet stream is not held back by a batch that never fills. Partitions
arrive in no particular order across topics, so before a form fill that names an anonymous
visitor is handled, the ad-click partitions are read up to the form's send time (bounded by
CLICK_WAIT; an end not known yet, as after a restart, is waited for), and the batch is
handled in send-time order: an ad click goes ahead of the form fill that followed it, and
gives the lead its first touch.

A batch is gathered over several consumer calls, and the group can rebalance during any of
them (the rebalance callbacks run inside `consume` and `poll`). Records gathered before a
revocation belong to partitions that another member now reads from the committed offsets, or
that this one reads again from there (an eager rebalance revokes everything first): they are
dropped, never handled, or the batch's commit would move the group past records nobody
handled. librdkafka itself drops the outdated records of the call the rebalance happened in.
"""

from __future__ import annotations

import heapq
import logging
import time

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

# At most this long for the ad clicks before a form that names a visitor: after a restart
# the click partitions' first fetch (offsets, then records) can take a few hundred ms.
CLICK_WAIT = 1.0
FIRST_RECORD_WAIT = 0.1
VISITOR_FIELD = b'"anonymous_id"'
log = logging.getLogger("leadrouter.worker")


def _sent_at(msg: Message) -> int:
    return msg.timestamp()[1]


def in_send_order(records: list[Message]) -> list[Message]:
    """Topics are fetched partition by partition; handling in send-time order puts an ad
    click ahead of the form fill that followed it even when they arrive in one batch. Each
    partition keeps its log order: when send times within a partition disagree with its
    offsets (producers on different clocks), the partition heads are merged instead, the
    earliest head first, as Kafka Streams chooses among a task's partitions."""
    by_time = sorted(records, key=_sent_at)
    last: dict[tuple[str, int], int] = {}
    for msg in by_time:
        where = (msg.topic(), msg.partition())
        offset = msg.offset()
        if last.get(where, -1) > offset:
            break
        last[where] = offset
    else:
        return by_time
    partitions: dict[tuple[str, int], list[Message]] = {}
    for msg in records:
        partitions.setdefault((msg.topic(), msg.partition()), []).append(msg)
    for run in partitions.values():
        run.sort(key=_offset)
    return list(heapq.merge(*partitions.values(), key=_sent_at))


def _offset(msg: Message) -> int:
    return msg.offset()


class Selection:
    def __init__(self, consumer: Consumer, batch_size: int, forms_topic: str, clicks_topic: str):
        self.consumer = consumer
        self.batch_size = batch_size
        self.forms_topic = forms_topic
        self.clicks_topic = clicks_topic
        self.click_seen: dict[int, int] = {}
        self._revoked: set[tuple[str, int]] = set()

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """The worker's revocation callback (also for lost partitions) tells selection, so
        the batch being gathered drops what it holds from them."""
        self._revoked.update((tp.topic, tp.partition) for tp in partitions)
        for tp in partitions:
            if tp.topic == self.clicks_topic:
                self.click_seen.pop(tp.partition, None)

    def next_batch(self) -> tuple[list[Message], int]:
        """The next batch in handling order, without error events; and how many records
        the consumer returned (a full batch means a backlog)."""
        batch: list[Message] = []
        self._consume(batch, self.batch_size, 0)
        if not batch:
            first = self.consumer.poll(FIRST_RECORD_WAIT)
            self._revoked.clear()  # `first` is of the assignment as it is after the call
            if first is None:
                return [], 0
            batch.append(first)
            self._consume(batch, self.batch_size - 1, 0)
        self._await_clicks(batch)
        fetched = len(batch)
        records = []
        for msg in batch:
            err = msg.error()
            if err is None:
                records.append(msg)
            elif err.fatal():
                raise KafkaException(err)
        return in_send_order(records), fetched

    def _await_clicks(self, batch: list[Message]) -> None:
        """Reads on until the ad clicks sent before a visitor's form are in the batch.
        Costs nothing when the click topic is caught up."""
        forms = self.forms_topic
        waiting = [
            m.timestamp()[1]
            for m in batch
            if m.topic() == forms and m.value() and VISITOR_FIELD in m.value()
        ]
        self._note_clicks(batch)
        if not waiting:
            return
        since = max(waiting)
        deadline = time.monotonic() + CLICK_WAIT
        while not self._clicks_read_to(since) and time.monotonic() < deadline:
            self._note_clicks(self._consume(batch, self.batch_size, 0.005))

    def _consume(self, batch: list[Message], count: int, timeout: float) -> list[Message]:
        """More records for the batch being gathered; when partitions were revoked during the
        call, first what the batch held from them is dropped (the records of the call itself
        are of the current assignment)."""
        more = self.consumer.consume(count, timeout)
        if self._revoked:
            gone, self._revoked = self._revoked, set()
            held = len(batch)
            batch[:] = [m for m in batch if (m.topic(), m.partition()) not in gone]
            if held > len(batch):
                log.info(
                    "rebalance while a batch was gathered: %d records of revoked partitions"
                    " left to be read again from the committed offsets",
                    held - len(batch),
                )
        batch.extend(more)
        return more

    def _note_clicks(self, messages: list[Message]) -> None:
        clicks = self.clicks_topic
        seen = self.click_seen
        for m in messages:
            if m.topic() == clicks:
                seen[m.partition()] = max(seen.get(m.partition(), 0), m.timestamp()[1])

    def _clicks_read_to(self, since: int) -> bool:
        consumer = self.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic == self.clicks_topic]
        if not tps:
            return True
        for tp in consumer.position(tps):
            _, high = consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
            if high == 0 or (tp.offset >= 0 and tp.offset >= high >= 0):
                continue  # nothing more to read there
            # (an end not known yet, as just after an assignment, is not an end: wait)
            if self.click_seen.get(tp.partition, 0) >= since:
                continue
            return False
        return True
