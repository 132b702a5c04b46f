"""Record selection without a broker: a fake consumer hands out prepared fetches, and a fake
clock stands in for the time the consumer would have waited, so the click wait is bounded
by CLICK_WAIT without a test ever sleeping."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from workers.runtime import selection
from workers.runtime.selection import CLICK_WAIT, FIRST_RECORD_WAIT, Selection

FORMS = "p.marketing.form-fills"
CLICKS = "p.marketing.ad-clicks"
EMAILS = "p.marketing.email-events"
INTERNAL = "p.leadrouter.internal"
OFFSET_INVALID = -1001


def Msg(
    topic: str,
    partition: int,
    offset: int,
    ts: int,
    value: bytes | None = b"{}",
    error: KafkaError | None = None,
) -> Message:
    """A real `confluent_kafka.Message`, as the consumer hands one over."""
    return Message(
        topic=topic, partition=partition, offset=offset, timestamp=(1, ts), value=value, error=error
    )


def form(offset: int, ts: int, visitor: bool = True, partition: int = 0) -> Msg:
    anonymous = b', "anonymous_id": "anon-1"' if visitor else b""
    value = b'{"email": "ana@acme.io"' + anonymous + b"}"
    return Msg(FORMS, partition, offset, ts, value)


def click(offset: int, ts: int, partition: int = 0) -> Msg:
    return Msg(CLICKS, partition, offset, ts, b'{"anonymous_id": "anon-1", "click_id": "c"}')


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeConsumer:
    """consume() returns the next prepared fetch (then nothing), tracks positions like the
    real consumer and advances the clock by the time the call would have waited."""

    def __init__(self, clock: Clock, *fetches: list[Msg]) -> None:
        self.clock = clock
        self.fetches = deque(fetches)
        self.first: deque[Msg] = deque()
        self.assigned: list[tuple[str, int]] = []
        self.high: dict[tuple[str, int], int] = {}
        self.positions: dict[tuple[str, int], int] = {}
        self.calls: list[tuple[str, Any, float]] = []

    def consume(self, num_messages: int, timeout: float) -> list[Msg]:
        self.calls.append(("consume", num_messages, timeout))
        assert self.clock.now < 1010.0, "still waiting after 10 s"  # a wait without bound
        out = self.fetches.popleft() if self.fetches else []
        if callable(out):  # a rebalance callback runs inside the call, then its records
            out = out()
        assert len(out) <= num_messages
        if not out:
            self.clock.now += timeout
        for m in out:
            if m.error() is None:
                where = (m.topic(), m.partition())
                self.positions[where] = m.offset() + 1
                if self.high.get(where) == OFFSET_INVALID:  # learnt from the fetch
                    self.high[where] = m.offset() + 1
        return out

    def poll(self, timeout: float) -> Msg | None:
        self.calls.append(("poll", None, timeout))
        if self.first:
            first = self.first.popleft()
            return first() if callable(first) else first
        self.clock.now += timeout
        return None

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.assigned]

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic,
                tp.partition,
                self.positions.get((tp.topic, tp.partition), OFFSET_INVALID),
            )
            for tp in tps
        ]

    def get_watermark_offsets(
        self, tp: TopicPartition, timeout: float | None = None, cached: bool = False
    ) -> tuple[int, int]:
        assert cached, "the batch loop must not ask the broker for watermarks"
        return (0, self.high.get((tp.topic, tp.partition), 0))

    def one_click_unread(self) -> None:
        """Click partition 0 ends at offset 7 and is read to 6: one click not read yet."""
        self.high[(CLICKS, 0)] = 7
        self.positions[(CLICKS, 0)] = 6

    def consumes(self) -> int:
        return sum(1 for c in self.calls if c[0] == "consume")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(selection, "time", clock)
    return clock


def select(consumer: FakeConsumer, batch_size: int = 100) -> Selection:
    return Selection(consumer, batch_size, FORMS, CLICKS)  # type: ignore[arg-type]


def order(records: list[Msg]) -> list[tuple[str, int]]:
    return [(m.topic(), m.offset()) for m in records]


def test_records_are_handled_in_send_time_order(clock):
    fetch = [
        Msg(EMAILS, 0, 10, ts=5003),
        Msg(EMAILS, 0, 11, ts=5007),
        form(20, ts=5005, visitor=False),
        Msg(INTERNAL, 3, 7, ts=5001),
        Msg("p.sales.activities", 1, 2, ts=5004),
    ]
    consumer = FakeConsumer(clock, fetch)
    records, fetched = select(consumer).next_batch()
    assert order(records) == [
        (INTERNAL, 7),
        (EMAILS, 10),
        ("p.sales.activities", 2),
        (FORMS, 20),
        (EMAILS, 11),
    ]
    assert fetched == 5
    assert consumer.calls == [("consume", 100, 0)]  # what was ready: nothing waited for


def test_equal_send_times_keep_the_order_they_were_read_in(clock):
    fetch = [Msg(EMAILS, 0, n, ts=7000) for n in range(5)]
    records, _ = select(FakeConsumer(clock, fetch)).next_batch()
    assert [m.offset() for m in records] == [0, 1, 2, 3, 4]


def test_records_of_one_partition_keep_their_log_order(clock):
    # Two workers hand over to the same internal partition; the second one's clock is 40 ms
    # behind: its record is later in the log but carries an earlier send time.
    fetch = [Msg(INTERNAL, 2, 100, ts=9040), Msg(INTERNAL, 2, 101, ts=9000)]
    records, _ = select(FakeConsumer(clock, fetch)).next_batch()
    assert [m.offset() for m in records] == [100, 101]


def test_a_partition_out_of_send_order_is_merged_by_its_head(clock):
    # The internal partition's later record carries an earlier send time; the other
    # partitions still go in send-time order around it, and the click before the form.
    fetch = [
        form(40, ts=9030),
        Msg(INTERNAL, 2, 100, ts=9040),
        Msg(INTERNAL, 2, 101, ts=9000),
        click(6, ts=9020),
        Msg(EMAILS, 1, 3, ts=9050),
    ]
    records, fetched = select(FakeConsumer(clock, fetch)).next_batch()
    assert order(records) == [
        (CLICKS, 6),
        (FORMS, 40),
        (INTERNAL, 100),
        (INTERNAL, 101),
        (EMAILS, 3),
    ]
    assert fetched == 5


def test_error_events_are_dropped_but_counted_as_fetched(clock):
    eof = Msg(EMAILS, 0, 12, ts=-1, value=None, error=KafkaError(KafkaError._PARTITION_EOF))
    transport = Msg(EMAILS, 0, -1, ts=-1, value=None, error=KafkaError(KafkaError._TRANSPORT))
    fetch = [Msg(EMAILS, 0, 11, ts=5000), eof, transport]
    records, fetched = select(FakeConsumer(clock, fetch)).next_batch()
    assert order(records) == [(EMAILS, 11)]
    assert fetched == 3


def test_a_fatal_error_ends_the_batch_with_an_exception(clock):
    fatal = KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)
    fetch = [Msg(EMAILS, 0, 11, ts=5000), Msg(EMAILS, 0, -1, ts=-1, value=None, error=fatal)]
    with pytest.raises(KafkaException, match="fenced by a newer instance"):
        select(FakeConsumer(clock, fetch)).next_batch()


def test_an_idle_stream_waits_briefly_for_the_first_record_only(clock):
    consumer = FakeConsumer(clock)
    assert select(consumer).next_batch() == ([], 0)
    assert consumer.calls == [("consume", 100, 0), ("poll", None, FIRST_RECORD_WAIT)]


def test_the_first_record_after_a_quiet_spell_brings_what_is_ready_with_it(clock):
    consumer = FakeConsumer(clock, [], [Msg(EMAILS, 0, 2, ts=30), Msg(EMAILS, 0, 3, ts=31)])
    consumer.first.append(Msg(EMAILS, 0, 1, ts=29))
    records, fetched = select(consumer, batch_size=10).next_batch()
    assert order(records) == [(EMAILS, 1), (EMAILS, 2), (EMAILS, 3)]
    assert fetched == 3
    assert consumer.calls == [
        ("consume", 10, 0),
        ("poll", None, FIRST_RECORD_WAIT),
        ("consume", 9, 0),  # the rest of the batch, without waiting
    ]


def test_a_visitor_form_waits_for_the_click_that_preceded_it(clock):
    consumer = FakeConsumer(clock, [form(40, ts=8000)], [click(6, ts=7990)])
    consumer.assigned = [(FORMS, 0), (CLICKS, 0)]
    consumer.one_click_unread()
    records, fetched = select(consumer).next_batch()
    assert order(records) == [(CLICKS, 6), (FORMS, 40)]  # the click is the first touch
    assert fetched == 2
    assert consumer.consumes() == 2  # caught up after one more fetch: no further waiting
    assert clock.now == 1000.0


def test_a_click_sent_after_the_form_ends_the_wait_on_its_partition(clock):
    # The partition still has unread records, but a click sent after the form was read:
    # everything the form could follow on that partition has been read.
    consumer = FakeConsumer(clock, [form(40, ts=8000)], [click(6, ts=7990), click(7, ts=8010)])
    consumer.assigned = [(CLICKS, 0)]
    consumer.high[(CLICKS, 0)] = 50
    consumer.positions[(CLICKS, 0)] = 6
    records, _ = select(consumer).next_batch()
    assert order(records) == [(CLICKS, 6), (FORMS, 40), (CLICKS, 7)]
    assert consumer.consumes() == 2


def test_the_click_wait_is_bounded(clock):
    consumer = FakeConsumer(clock, [form(40, ts=8000)])  # the clicks never arrive
    consumer.assigned = [(CLICKS, 0), (CLICKS, 1)]
    consumer.one_click_unread()
    started = clock.now
    records, fetched = select(consumer).next_batch()
    assert order(records) == [(FORMS, 40)]  # handled without its click
    assert fetched == 1
    waited = clock.now - started
    assert CLICK_WAIT <= waited < CLICK_WAIT + 0.01
    assert all(c[2] <= 0.01 for c in consumer.calls[1:])  # short waits, re-checked each time


def test_a_caught_up_click_topic_costs_nothing(clock):
    consumer = FakeConsumer(clock, [form(40, ts=8000)])
    consumer.assigned = [(CLICKS, 0), (CLICKS, 1), (CLICKS, 2)]
    consumer.high.update({(CLICKS, 0): 7, (CLICKS, 1): 0})  # 2: empty, no watermark cached
    consumer.positions[(CLICKS, 0)] = 7
    records, _ = select(consumer).next_batch()
    assert order(records) == [(FORMS, 40)]
    assert consumer.consumes() == 1 and clock.now == 1000.0


def test_forms_without_a_visitor_or_without_click_partitions_do_not_wait(clock):
    behind = FakeConsumer(clock, [form(40, ts=8000, visitor=False)])
    behind.assigned = [(CLICKS, 0)]
    behind.high[(CLICKS, 0)] = 7
    select(behind).next_batch()
    unassigned = FakeConsumer(clock, [form(41, ts=8000)])
    unassigned.assigned = [(FORMS, 0)]
    select(unassigned).next_batch()
    assert behind.consumes() == unassigned.consumes() == 1
    assert clock.now == 1000.0


def test_clicks_seen_in_earlier_batches_count(clock):
    consumer = FakeConsumer(clock, [click(6, ts=8010)], [form(40, ts=8000)])
    consumer.assigned = [(CLICKS, 0)]
    consumer.high[(CLICKS, 0)] = 50  # far behind, but it has read past the form's time
    chosen = select(consumer)
    chosen.next_batch()
    records, _ = chosen.next_batch()
    assert order(records) == [(FORMS, 40)]
    assert consumer.consumes() == 2 and clock.now == 1000.0


def test_after_an_assignment_an_end_not_known_yet_is_waited_for(clock):
    # A restart with a backlog: the click partition has not been fetched yet, so neither
    # its position nor its end is known; its click (sent before the form) is the next fetch.
    consumer = FakeConsumer(clock, [form(40, ts=8000)], [], [click(6, ts=7990)])
    consumer.assigned = [(CLICKS, 0)]
    consumer.high[(CLICKS, 0)] = OFFSET_INVALID
    records, _ = select(consumer).next_batch()
    assert order(records) == [(CLICKS, 6), (FORMS, 40)]
    assert clock.now - 1000.0 < CLICK_WAIT


def revoking(chosen: Selection, revoked: list[tuple[str, int]], *then: Msg) -> Any:
    """A consumer call in which the worker's revocation callback runs, then returns `then`
    (records of the assignment as it is after the callback)."""

    def call() -> list[Msg]:
        chosen.revoked([TopicPartition(t, p) for t, p in revoked])
        return list(then)

    return call


def test_records_gathered_before_a_revocation_are_not_handled(clock):
    # The group rebalances while a visitor's form waits for its click: the form's partition
    # and an e-mail partition go to another member, which reads them from the committed
    # offsets. Handling them here would commit offsets past records nobody handled.
    consumer = FakeConsumer(clock, [form(40, ts=8000), Msg(EMAILS, 1, 5, ts=7000)])
    consumer.assigned = [(CLICKS, 0)]
    consumer.one_click_unread()
    chosen = select(consumer)
    consumer.fetches.append(
        revoking(chosen, [(FORMS, 0), (EMAILS, 1)], Msg(INTERNAL, 2, 9, ts=7500))
    )
    consumer.fetches.append([click(6, ts=7990)])
    records, fetched = chosen.next_batch()
    assert order(records) == [(INTERNAL, 9), (CLICKS, 6)]
    assert fetched == 2


def test_a_partition_revoked_and_assigned_again_is_read_once(clock):
    # An eager rebalance revokes every partition, then assigns some back; those are read
    # again from the committed offset, so the copies gathered before are dropped and the
    # records the call returned after the callback are kept.
    consumer = FakeConsumer(clock, [form(40, ts=8000), Msg(EMAILS, 0, 3, ts=7000)])
    consumer.assigned = [(CLICKS, 0)]
    consumer.one_click_unread()
    chosen = select(consumer)
    consumer.fetches.append(
        revoking(
            chosen,
            [(FORMS, 0), (EMAILS, 0), (CLICKS, 0)],
            form(40, ts=8000),
            Msg(EMAILS, 0, 3, ts=7000),
        )
    )
    consumer.fetches.append([click(6, ts=7990)])
    records, _ = chosen.next_batch()
    assert order(records) == [(EMAILS, 3), (CLICKS, 6), (FORMS, 40)]


def test_a_revocation_during_the_wait_for_the_first_record_keeps_that_record(clock):
    # The partition was revoked and assigned back inside the poll: its record is read
    # from the committed offset, after the callback.
    consumer = FakeConsumer(clock, [], [Msg(EMAILS, 0, 4, ts=31)])
    chosen = select(consumer, batch_size=10)
    consumer.first.append(
        lambda: (chosen.revoked([TopicPartition(EMAILS, 0)]), Msg(EMAILS, 0, 3, ts=30))[1]
    )
    records, _ = chosen.next_batch()
    assert order(records) == [(EMAILS, 3), (EMAILS, 4)]
