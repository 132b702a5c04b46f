"""Record selection across a real rebalance (reference broker): a batch is gathered over
several consumer calls, and the group can rebalance during any of them. What was gathered
before the revocation is not handed over: another member reads those partitions from the
committed offsets, and this one reads again from there what it is given back.

Without this, a member that handles such records commits offsets past records nobody
handled (a worker SIGKILLed mid-stream, then the rebalance at its session timeout, lost
leads this way in `test_workers_join_and_leave_repeatedly`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.worker import unique, wait_until
from workers.runtime import selection
from workers.runtime.selection import Selection

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
PARTITIONS = 2
FORMS_PER_PARTITION = 20


def member(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "heartbeat.interval.ms": 300,
            "session.timeout.ms": 6000,
        }
    )


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[tuple[str, str]]:
    """A forms and a clicks topic of two partitions: visitors' forms, the clicks before them."""
    prefix = unique("sel")
    forms, clicks = f"{prefix}.marketing.form-fills", f"{prefix}.marketing.ad-clicks"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics(
        [NewTopic(t, PARTITIONS, 1) for t in (forms, clicks)]
    ).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    sent = int(time.time() * 1000)
    for p in range(PARTITIONS):
        producer.produce(clicks, b'{"anonymous_id": "v"}', partition=p, timestamp=sent - 1000)
        for n in range(FORMS_PER_PARTITION):
            form = {"email": f"ana{p}.{n}@acme.io", "anonymous_id": "v"}
            producer.produce(forms, orjson.dumps(form), partition=p, timestamp=sent + n)
    assert producer.flush(30) == 0
    yield forms, clicks
    admin.delete_topics([forms, clicks])


def test_a_rebalance_while_a_batch_is_gathered_hands_over_only_current_records(
    kafka_bootstrap: str, topics: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    forms, clicks = topics
    group = unique("g")
    # The wait for the clicks before a visitor's form ends only once they are read, which
    # here is after the rebalance: until then the click partitions stay paused.
    monkeypatch.setattr(selection, "CLICK_WAIT", 60.0)
    a = member(kafka_bootstrap, group)
    chosen = Selection(a, 1000, forms, clicks)
    assignments: list[list[tuple[str, int]]] = []
    revocations: list[float] = []

    def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        click_tps = [tp for tp in partitions if tp.topic == clicks]
        if not assignments:
            consumer.pause(click_tps)
        else:  # librdkafka keeps a partition's pause across assignments
            consumer.resume(click_tps)
        assignments.append(sorted((tp.topic, tp.partition) for tp in partitions))

    def on_revoke(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        chosen.revoked(partitions)  # as the worker's callback does
        revocations.append(time.monotonic())

    a.subscribe([forms, clicks], on_assign=on_assign, on_revoke=on_revoke)
    result: dict[str, Any] = {}

    def gather() -> None:
        try:
            batch: list[Message] = []
            while not batch:
                batch, _ = chosen.next_batch()
            result["batch"] = batch
        except BaseException as exc:
            result["error"] = exc

    gathering = threading.Thread(target=gather, daemon=True)
    gathering.start()
    b = member(kafka_bootstrap, group)
    stop_b = threading.Event()
    try:
        form_tps = [TopicPartition(forms, p) for p in range(PARTITIONS)]

        def forms_read() -> bool:
            return bool(assignments) and all(
                tp.offset == FORMS_PER_PARTITION for tp in a.position(form_tps)
            )

        # Every form is in the batch being gathered, which now waits for their clicks.
        wait_until(forms_read, 60, "the first member to read every form")
        b.subscribe([forms, clicks])

        def run_b() -> None:
            while not stop_b.is_set():
                b.poll(0.1)

        polling_b = threading.Thread(target=run_b, daemon=True)
        polling_b.start()
        gathering.join(90)
        assert not gathering.is_alive(), "the batch was never handed over"
        assert "error" not in result, result.get("error")
    finally:
        stop_b.set()
    polling_b.join(10)
    b.close()
    a.close()
    batch = result["batch"]
    assert revocations, "no rebalance happened while the batch was gathered"
    assert len(assignments) == 2, assignments
    owned = set(assignments[-1])
    where = [(m.topic(), m.partition(), m.offset()) for m in batch]
    assert len(where) == len(set(where)), "a record handed over twice"
    assert {(t, p) for t, p, _ in where} <= owned, (where, owned)
    # A forms partition it was given back is read again from the start (nothing committed).
    for t, p in owned:
        offsets = sorted(o for t2, p2, o in where if (t2, p2) == (t, p))
        assert offsets == list(range(len(offsets))), (t, p, offsets)
