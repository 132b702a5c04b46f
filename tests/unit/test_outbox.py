"""at_least_once's outbox (workers/runtime/outbox.py) without a broker: outputs kept in state
and read back, in records under Kafka's size limit, and numbered messages that a receiver
recognises when a crash delivers them again."""

from __future__ import annotations

from typing import Any

import orjson
from confluent_kafka import Message

from workers.runtime import outbox
from workers.runtime.outbox import LAST_RUN, RECEIVED, SENDER, Outbox
from workers.store import MemoryBackend, PartitionState

INTERNAL = "leadrouter.internal"


def test_outputs_kept_in_state_read_back_byte_for_byte():
    kept = Outbox(run=1)
    outputs = [
        ("leadrouter.leads.routed.smb", -1, b"lead-1", b'{"a":1}', [("event", b"lead.assigned")]),
        ("leadrouter.dead-letter", -1, None, b"\xff\xfe not utf-8", [("error.reason", b"x")]),
        (INTERNAL, 4, b"q:smb", b"{}", None),
    ]
    for output in outputs:
        kept.add(3, output)
    state = PartitionState(3, MemoryBackend())
    kept.store({3: state})
    (key,) = kept.stored[3]
    assert key.startswith(outbox.OUTBOX) and state.get(LAST_RUN) == 1
    written = state.pending()  # as the changelog has it, then as a restore reads it
    back = PartitionState(3, MemoryBackend())
    back.backend.apply(written, None)
    assert outbox.left_in(back) == {key: outputs}


def test_a_big_batch_is_kept_in_records_under_the_size_limit():
    kept = Outbox(run=2)
    value = b"v" * 10_000
    for i in range(200):
        kept.add(0, ("t", -1, str(i).encode(), value, None))
    state = PartitionState(0, MemoryBackend())
    kept.store({0: state})
    keys = kept.stored[0]
    sizes = [len(orjson.dumps(state.get(k))) for k in keys]
    assert len(keys) > 5 and max(sizes) < 1_000_000
    read = [out for k in keys for out in outbox.decode(state.get(k))]
    assert [o[2] for o in read] == [str(i).encode() for i in range(200)]


def test_a_record_of_an_unknown_format_is_refused():
    try:
        outbox.decode({"f": 2, "out": []})
    except ValueError as exc:
        assert "format 2" in str(exc)
    else:
        raise AssertionError("a newer outbox format must not be sent as if understood")


def test_sent_outbox_keys_go_with_the_next_batch_and_revoked_partitions_keep_nothing():
    kept = Outbox(run=3)
    kept.add(1, ("t", -1, b"k", b"v", None))
    kept.add(9, ("t", -1, b"k", b"v", None))  # revoked while the batch ran
    state = PartitionState(1, MemoryBackend())
    kept.store({1: state})
    assert list(kept.stored) == [1]
    state.pending()
    sent: list[tuple[Any, ...]] = []
    kept.send(lambda *args, **kw: sent.append((args, kw)))
    assert len(sent) == 1  # only what was stored with its state leaves
    kept.forget_sent({1: state})
    assert state.pending() == {kept.stored[1][0].encode(): None}


def message(partition: int, mark: bytes | None, offset: int = 0) -> Message:
    headers = [(SENDER, mark)] if mark is not None else None
    return Message(topic=INTERNAL, partition=partition, offset=offset, value=b"{}", headers=headers)


def test_a_numbered_message_handled_once_is_left_out_when_it_comes_again():
    sender = Outbox(run=0x10)
    for _ in range(3):
        sender.message(2, (INTERNAL, 5, b"q:smb", b"{}", None))
    marks = [out[4][0][1] for out in sender.by_partition[2]]
    assert marks == [b"2:10:0", b"2:10:1", b"2:10:2"]
    receiver = PartitionState(5, MemoryBackend())
    states = {5: receiver}
    first = outbox.admit([message(5, m) for m in marks[:2]], states, INTERNAL)
    assert len(first) == 2 and receiver.get(RECEIVED) == {"2": [0x10, 1]}
    # after a crash: the sender's outbox sent again, whole
    again = outbox.admit([message(5, m) for m in marks], states, INTERNAL)
    assert [m.headers()[0][1] for m in again] == [b"2:10:2"]
    # the sender's next batch, and another sender with lower numbers: both handled
    later = outbox.admit([message(5, b"2:11:0"), message(5, b"4:3:0")], states, INTERNAL)
    assert len(later) == 2 and receiver.get(RECEIVED) == {"2": [0x11, 0], "4": [3, 0]}


def test_unnumbered_records_and_partitions_held_elsewhere_pass_through():
    states = {5: PartitionState(5, MemoryBackend())}
    records = [
        message(5, None),  # an input record handed over: the lead's event-id memory dedupes
        message(1, b"2:10:0"),  # not ours any more: the topology skips it
        Message(topic="marketing.form-fills", partition=5, offset=1, value=b"{}"),
    ]
    assert outbox.admit(records, states, INTERNAL) == records
    assert states[5].get(RECEIVED) is None


def test_batch_ids_count_up_past_what_a_partition_saw_on_another_worker():
    state = PartitionState(0, MemoryBackend())
    state.put(LAST_RUN, 2**80)  # a worker whose clock ran far ahead had it before
    first = outbox.next_run(0, {0: state})
    assert first == 2**80 + 1
    assert outbox.next_run(first, {0: state}) == first + 1
    assert outbox.next_run(0, {}) > 0
