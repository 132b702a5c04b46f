"""The runtime's broker-free parts, in process: client configurations, SLA timers, the
commit protocol (offsets, watchdog, ordering) over a fake producer, the sink and its dead
letters, and the lag gauge over librdkafka statistics. Record selection, partitions and the
accounts table are in test_runtime_selection.py and test_runtime_state.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from workers.core.topology import DeadLetter
from workers.metrics import Metrics
from workers.runtime import commit
from workers.runtime.clients import LAG_EVERY, TRANSACTION_TIMEOUT_MS, Clients
from workers.runtime.commit import (
    PROBE_KEY,
    Background,
    Committer,
    Stuck,
    next_offsets,
    settle,
    within,
)
from workers.runtime.lag import LagGauge
from workers.runtime.outbox import Outbox
from workers.runtime.sink import DETAIL_LIMIT, KafkaSink, deadletter_headers
from workers.runtime.timers import Timers
from workers.runtime.worker import fatal_error, kafka_failure
from workers.settings import Settings, load_config
from workers.store import MemoryBackend, PartitionState, RocksBackend

CHANGELOG = "p.leadrouter.state-changelog"
SASL_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9093,kafka-2:9093",
    "LEADROUTER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "LEADROUTER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "LEADROUTER_KAFKA_SASL_USERNAME": "router",
    "LEADROUTER_KAFKA_SASL_PASSWORD": "s3cret",
    "LEADROUTER_KAFKA_SSL_CAFILE": "/etc/kafka/ca.pem",
    "LEADROUTER_GROUP_ID": "lr-eu",
}
CONNECTION = {
    "bootstrap.servers": "kafka-1:9093,kafka-2:9093",
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "router",
    "sasl.password": "s3cret",
    "ssl.ca.location": "/etc/kafka/ca.pem",
    "client.id": "leadrouter",
}


def settings(env: dict[str, str]) -> Settings:
    return load_config(env=env).settings


def Msg(topic: str, partition: int, offset: int, ts: int = 0) -> Message:
    """A real `confluent_kafka.Message`, as the consumer hands one over."""
    return Message(topic=topic, partition=partition, offset=offset, timestamp=(1, ts))


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.001)


# ---------------------------------------------------------------------------------- clients
@pytest.fixture
def clients() -> Clients:
    return Clients(settings(SASL_ENV), "host-a1")


def test_every_client_shares_the_connection_settings(clients: Clients):
    configs = [
        clients.producer(transactional=True),
        clients.producer(transactional=False),
        clients.reader("restore"),
        clients.reader("probe", read_committed=True),
        clients.reader("accounts-host-a1", read_committed=True),
        clients.batch_consumer(read_committed=True, stats_cb=print),
    ]
    for conf in configs:
        assert {k: conf[k] for k in CONNECTION} == CONNECTION


def test_transactional_producer_is_identified_by_group_and_instance(clients: Clients):
    exactly_once = clients.producer(transactional=True)
    at_least_once = clients.producer(transactional=False)
    assert exactly_once["transactional.id"] == "lr-eu-host-a1"
    assert exactly_once["transaction.timeout.ms"] == TRANSACTION_TIMEOUT_MS
    # The commit watchdog must outlast librdkafka's own transactional timeout.
    assert commit.COMMIT_DEADLINE * 1000 > TRANSACTION_TIMEOUT_MS
    assert "transactional.id" not in at_least_once
    assert "transaction.timeout.ms" not in at_least_once
    for conf in (exactly_once, at_least_once):
        assert conf["enable.idempotence"] is True and conf["acks"] == "all"


def test_a_second_worker_gets_another_transactional_id():
    one = Clients(settings(SASL_ENV), "host-a1").producer(transactional=True)
    two = Clients(settings(SASL_ENV), "host-b2").producer(transactional=True)
    assert one["transactional.id"] != two["transactional.id"]


def test_readers_have_a_group_per_purpose_and_never_commit(clients: Clients):
    restore = clients.reader("restore")
    probe = clients.reader("probe", read_committed=True)
    accounts = clients.reader(f"accounts-{clients.instance}", read_committed=True)
    assert restore["group.id"] == "lr-eu-restore"
    assert probe["group.id"] == "lr-eu-probe"
    assert accounts["group.id"] == "lr-eu-accounts-host-a1"
    assert restore["isolation.level"] == "read_uncommitted"
    assert probe["isolation.level"] == accounts["isolation.level"] == "read_committed"
    assert all(c["enable.auto.commit"] is False for c in (restore, probe, accounts))


@pytest.mark.parametrize(
    ("read_committed", "level"), [(True, "read_committed"), (False, "read_uncommitted")]
)
def test_batch_consumer_is_the_group_member(clients: Clients, read_committed: bool, level: str):
    gauge = LagGauge(Metrics(), "")
    conf = clients.batch_consumer(read_committed=read_committed, stats_cb=gauge)
    assert conf["group.id"] == "lr-eu"  # the group itself, not a reader's
    assert conf["isolation.level"] == level
    assert conf["enable.auto.commit"] is False  # offsets move with the batch's commit only
    assert conf["auto.offset.reset"] == "earliest"
    assert conf["stats_cb"] is gauge
    assert conf["statistics.interval.ms"] == int(LAG_EVERY * 1000)
    assert conf["group.instance.id"] == clients.instance  # static: a restart takes its own back


def test_static_membership_can_be_turned_off():
    s = settings(
        {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "LEADROUTER_STATIC_MEMBERSHIP": "false"}
    )
    conf = Clients(s, "host-a1").batch_consumer(read_committed=True, stats_cb=print)
    assert "group.instance.id" not in conf


def test_librdkafka_accepts_every_configuration():
    """Property names and values are librdkafka's: a typo fails here, not on a deploy.
    Creating a client does not need a broker (nothing is subscribed or sent)."""
    plain = Clients(settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}), "host-a1")
    quiet = {"log_level": 0}
    for transactional in (True, False):
        Producer({**plain.producer(transactional=transactional), **quiet})
    for conf in (
        plain.reader("restore"),
        plain.reader("probe", read_committed=True),
        plain.batch_consumer(read_committed=True, stats_cb=lambda raw: None),
    ):
        Consumer({**conf, **quiet}).close()


# ----------------------------------------------------------------------------------- timers
def test_timers_come_due_in_order_per_partition_and_only_once():
    timers = Timers()
    timers.set(1, 130.0, "lead-c")
    timers.set(0, 120.0, "lead-b")
    timers.set(1, 100.0, "lead-a")
    timers.set(2, 500.0, "lead-late")
    timers.set(0, 110.0, "lead-x")
    due = timers.due(130.0)
    assert sorted(due) == [(0, "lead-b"), (0, "lead-x"), (1, "lead-a"), (1, "lead-c")]
    for p in (0, 1):
        assert [lead for q, lead in due if q == p] == (
            ["lead-x", "lead-b"] if p == 0 else ["lead-a", "lead-c"]
        )
    assert timers.due(130.0) == []  # removed once returned
    assert timers.due(499.999) == []
    assert timers.due(500.0) == [(2, "lead-late")]


def test_nothing_is_due_early():
    timers = Timers()
    timers.set(3, 1000.0, "lead-a")
    timers.set(3, 1000.5, "lead-b")
    assert timers.due(999.999) == []
    assert timers.due(1000.0) == [(3, "lead-a")]
    assert timers.due(1000.4) == []
    assert timers.due(2000.0) == [(3, "lead-b")]


def test_a_dropped_partition_fires_nothing():
    timers = Timers()
    timers.set(0, 10.0, "mine")
    timers.set(1, 10.0, "moved-away")
    timers.drop(1)
    timers.drop(7)  # never owned: nothing to do
    assert timers.due(100.0) == [(0, "mine")]


def open_timers_state(partition: int, backend: Any) -> PartitionState:
    backend.apply(
        {
            b"s:lead-late": orjson.dumps({"due": 900.0}),
            b"lead-late": orjson.dumps({"queue": "smb"}),
            b"s:lead-soon": orjson.dumps({"due": 100.0}),
            b"q:smb": orjson.dumps({"next": 1}),  # no line: no timer
            b"q:fast-lane": orjson.dumps({"waiting": [["lead-w", 1.0, None]], "wake": 700.0}),
            b"s:lead-mid": orjson.dumps({"due": 500.0}),
            b"v:anon-1": orjson.dumps({"touches": []}),
            b"s:lead-stopped": None,  # stopped by a sales touch: a tombstone
            b"t:after-the-prefix": orjson.dumps({"due": 1.0}),
        },
        None,
    )
    return PartitionState(partition, backend)


@pytest.mark.parametrize("kind", ["memory", "rocksdb"])
def test_restore_rebuilds_the_open_timers_from_state(kind: str, tmp_path: Path):
    backend = MemoryBackend() if kind == "memory" else RocksBackend(tmp_path / "p4")
    state = open_timers_state(4, backend)
    timers = Timers()
    timers.set(4, 50.0, "before-the-restore")  # the restored state replaces it
    timers.set(5, 50.0, "another-partition")
    try:
        assert timers.restore(4, state) == 4
        assert timers.due(99.0) == [(5, "another-partition")]
        assert timers.due(1000.0) == [
            (4, "lead-soon"),
            (4, "lead-mid"),
            (4, "q:fast-lane"),  # the queue desk's hand-out of its waiting line
            (4, "lead-late"),
        ]
    finally:
        backend.close()


# ------------------------------------------------------------------------- commit: offsets
def test_next_offsets_is_one_past_the_highest_offset_per_partition():
    batch = [
        Message(topic="forms", partition=1, offset=17),
        Message(topic="forms", partition=0, offset=4),
        Message(topic="forms", partition=1, offset=12),  # sorted by send time: out of order
        Message(topic="clicks", partition=1, offset=0),
        Message(topic="forms", partition=0, offset=9),
        Message(topic="forms", partition=1, offset=3),
    ]
    got = {(tp.topic, tp.partition, tp.offset) for tp in next_offsets(batch)}
    assert got == {("forms", 1, 18), ("forms", 0, 10), ("clicks", 1, 1)}
    assert len(next_offsets(batch)) == 3
    assert next_offsets([]) == []


# ------------------------------------------------------------------------ commit: watchdog
def test_background_returns_when_the_call_is_done():
    done = []
    work = Background(lambda: done.append(threading.current_thread().name), "flush")
    assert work.wait(5.0) is True
    assert done == ["flush"]  # ran on its own, named thread
    assert work.seconds >= 0


def test_a_failing_call_reraises_in_the_caller():
    def fail() -> None:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker gone"))

    with pytest.raises(KafkaException, match="broker gone"):
        settle(Background(fail, "send_offsets_to_transaction"), 5.0)

    def close(why: str) -> None:
        raise ValueError(why)

    with pytest.raises(ValueError, match="bad state"):
        within(5.0, close, "bad state")


def test_a_call_that_overstays_is_stuck():
    release = threading.Event()
    started = threading.Event()

    def commit_transaction(timeout: float) -> None:
        started.set()
        release.wait(timeout)

    try:
        with pytest.raises(Stuck, match="commit_transaction stuck") as err:
            within(0.05, commit_transaction, 30)
        assert started.is_set()
        assert isinstance(err.value, KafkaException)  # ends the session like any Kafka error
    finally:
        release.set()
    alive = [t for t in threading.enumerate() if t.name == "commit_transaction"]
    wait_for(lambda: not any(t.is_alive() for t in alive))


def test_wait_is_false_while_running_then_true():
    release = threading.Event()
    work = Background(release.wait, "close")
    try:
        assert work.wait(0.01) is False
    finally:
        release.set()
    assert work.wait(5.0) is True


# ------------------------------------------------------------------------ commit: protocol
class FakeProducer:
    """Records every call, in order, into a log shared with the fake consumer."""

    def __init__(self, log: list[tuple[Any, ...]], conf: dict[str, Any] | None = None) -> None:
        self.log = log
        self.conf = conf or {}
        self.full = 0  # produce() raises BufferError this many times
        self.remaining = 0  # what flush() reports left undelivered
        self.callbacks: list[Any] = []
        self.deliver_in_commit = True
        self.init_error: KafkaException | None = None
        self.offsets_error: KafkaException | None = None
        self.offsets_release: threading.Event | None = None

    def produce(self, topic, value=None, key=None, partition=-1, **kw) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("queue full")
        self.log.append(("produce", topic, key, value, partition, kw))
        if "on_delivery" in kw:
            self.callbacks.append((kw["on_delivery"], topic, partition))

    def poll(self, timeout: float) -> int:
        self.log.append(("poll", timeout))
        return 0

    def flush(self, timeout: float) -> int:
        self.log.append(("flush",))
        return self.remaining

    def init_transactions(self, timeout: float) -> None:
        self.log.append(("init_transactions",))
        if self.init_error is not None:
            raise self.init_error

    def begin_transaction(self) -> None:
        self.log.append(("begin_transaction",))

    def send_offsets_to_transaction(self, offsets, metadata, timeout) -> None:
        if self.offsets_release is not None:
            self.offsets_release.wait(5)
        if self.offsets_error is not None:
            raise self.offsets_error
        self.log.append(("send_offsets", [(tp.topic, tp.partition, tp.offset) for tp in offsets]))

    def commit_transaction(self, timeout: float) -> None:
        self.log.append(("commit_transaction", timeout))
        if self.deliver_in_commit:
            for n, (callback, topic, partition) in enumerate(self.callbacks):
                callback(None, Msg(topic, partition if partition >= 0 else 0, 40 + n))
        self.callbacks = []


class FakeConsumer:
    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        self.log = log

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def commit(self, offsets, asynchronous: bool) -> None:
        kind = "commit async" if asynchronous else "commit"
        self.log.append((kind, [(tp.topic, tp.partition, tp.offset) for tp in offsets]))


@pytest.fixture
def plain_clients() -> Clients:
    return Clients(settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}), "host-a1")


def open_committer(
    monkeypatch: pytest.MonkeyPatch, clients: Clients, guarantee: str
) -> tuple[Committer, list[tuple[Any, ...]], list[FakeProducer]]:
    log: list[tuple[Any, ...]] = []
    made: list[FakeProducer] = []

    def producer(conf: dict[str, Any]) -> FakeProducer:
        made.append(FakeProducer(log, conf))
        return made[-1]

    monkeypatch.setattr(commit, "Producer", producer)
    return Committer(clients, guarantee, CHANGELOG), log, made


def test_at_least_once_never_opens_a_transactional_producer(monkeypatch, plain_clients):
    committer, log, made = open_committer(monkeypatch, plain_clients, "at_least_once")
    assert committer.exactly_once is False
    assert len(made) == 1 and "transactional.id" not in made[0].conf
    assert made[0].conf["on_delivery"] == committer.delivered  # every delivery is checked
    assert log == []


def test_exactly_once_initialises_transactions(monkeypatch, plain_clients):
    committer, log, made = open_committer(monkeypatch, plain_clients, "exactly_once")
    assert committer.exactly_once is True
    assert made[0].conf["transactional.id"] == "leadrouter-host-a1"
    assert log == [("init_transactions",)]


def test_exactly_once_refuses_a_broker_without_transactions(monkeypatch, plain_clients):
    log: list[tuple[Any, ...]] = []

    def producer(conf: dict[str, Any]) -> FakeProducer:
        fake = FakeProducer(log, conf)
        fake.init_error = KafkaException(KafkaError(KafkaError._UNSUPPORTED_FEATURE, "no txn"))
        return fake

    monkeypatch.setattr(commit, "Producer", producer)
    with pytest.raises(KafkaException, match="no txn"):
        Committer(plain_clients, "exactly_once", CHANGELOG)


def test_auto_falls_back_to_at_least_once_without_transactions(monkeypatch, plain_clients):
    made: list[FakeProducer] = []

    def producer(conf: dict[str, Any]) -> FakeProducer:
        made.append(FakeProducer([], conf))
        if "transactional.id" in conf:
            made[-1].init_error = KafkaException(KafkaError(KafkaError._UNSUPPORTED_FEATURE))
        return made[-1]

    monkeypatch.setattr(commit, "Producer", producer)
    committer = Committer(plain_clients, "auto", CHANGELOG)
    assert committer.exactly_once is False
    assert committer.producer is made[-1] and "transactional.id" not in made[-1].conf


def test_auto_falls_back_when_a_committed_probe_is_never_delivered(monkeypatch, plain_clients):
    monkeypatch.setattr(Committer, "_probe_partition", lambda self: 0)  # the broker's part
    made: list[FakeProducer] = []

    def producer(conf: dict[str, Any]) -> FakeProducer:
        made.append(FakeProducer([], conf))
        made[-1].deliver_in_commit = False
        return made[-1]

    monkeypatch.setattr(commit, "Producer", producer)
    committer = Committer(plain_clients, "auto", CHANGELOG)
    assert committer.exactly_once is False
    assert len(made) == 2 and "transactional.id" not in made[1].conf
    probe = [e for e in made[0].log if e[0] == "produce"]
    assert probe == [("produce", CHANGELOG, PROBE_KEY, None, 0, probe[0][5])]


def test_auto_uses_transactions_when_the_probe_reads_back(monkeypatch, plain_clients):
    monkeypatch.setattr(Committer, "_probe_partition", lambda self: 0)  # the broker's part
    made: list[FakeProducer] = []
    readers: list[Any] = []

    class Reader:
        def __init__(self, conf: dict[str, Any]) -> None:
            self.conf, self.assigned, self.closed = conf, None, False
            readers.append(self)

        def assign(self, tps: list[TopicPartition]) -> None:
            self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in tps]

        def consume(self, n: int, timeout: float) -> list[Any]:
            return [Message(topic=CHANGELOG, partition=0, offset=40, key=PROBE_KEY)]

        def close(self) -> None:
            self.closed = True

    def producer(conf: dict[str, Any]) -> FakeProducer:
        made.append(FakeProducer([], conf))
        return made[-1]

    monkeypatch.setattr(commit, "Producer", producer)
    monkeypatch.setattr(commit, "Consumer", Reader)
    committer = Committer(plain_clients, "auto", CHANGELOG)
    assert committer.exactly_once is True and len(made) == 1
    (reader,) = readers
    assert reader.conf["isolation.level"] == "read_committed"
    assert reader.conf["group.id"] == "leadrouter-probe"
    assert reader.assigned == [(CHANGELOG, 0, 40)]  # from the probe's own offset
    assert reader.closed


def test_at_least_once_commit_makes_state_durable_then_outputs_then_offsets(
    monkeypatch, plain_clients
):
    """The outbox protocol (runtime/outbox.py): the changelog (with the outbox in it) is
    flushed before any output of the batch's state leaves, and each partition's records are
    one framed run, the last marked as such."""
    committer, log, _ = open_committer(monkeypatch, plain_clients, "at_least_once")
    consumer = FakeConsumer(log)
    batch = [Msg("forms", 0, 5), Msg("forms", 0, 7), Msg("clicks", 2, 1)]
    offsets = committer.begin(batch, consumer)  # type: ignore[arg-type]
    assert log == []  # no transaction to begin
    sent = Outbox(run=7)
    sent.add(3, ("p.leads.routed.smb", -1, b"lead-1", b"{}", [("event", b"x")]))
    states = {3: PartitionState(3, MemoryBackend())}
    sent.store(states)
    (outbox_key,) = sent.stored[3]
    changes = {3: {b"lead-1": b"{}", b"s:lead-1": None, **states[3].pending()}}
    committer.commit(offsets, changes, consumer, sent)  # type: ignore[arg-type]
    kinds = [e[0] if e[0] != "produce" else ("produce", e[1]) for e in log]
    assert kinds == [
        ("produce", CHANGELOG),
        ("produce", CHANGELOG),
        ("produce", CHANGELOG),
        ("produce", CHANGELOG),
        "flush",  # state and outbox durable before the outputs leave
        ("produce", "p.leads.routed.smb"),
        "flush",
        "commit async",  # the next batch does not wait for it
    ]
    assert sorted(log[-1][1]) == [("clicks", 2, 2), ("forms", 0, 8)]
    # a revoke commits the same offsets again and waits, while the member still owns them
    committer.confirm_offsets(consumer)  # type: ignore[arg-type]
    assert log[-1][0] == "commit" and sorted(log[-1][1]) == [("clicks", 2, 2), ("forms", 0, 8)]
    length = len(log)
    committer.confirm_offsets(consumer)  # type: ignore[arg-type]
    assert len(log) == length  # nothing left to confirm
    produced = [e for e in log if e[0] == "produce"]
    changelog = [(e[2], e[4], e[5]["headers"][0][1][:1]) for e in produced if e[1] == CHANGELOG]
    assert sorted(key for key, _, _ in changelog) == sorted(
        [b"lead-1", b"s:lead-1", b"~run", outbox_key.encode()]
    )  # in whatever order the state gives them
    assert {p for _, p, _ in changelog} == {3}
    assert [frame for _, _, frame in changelog] == [b"+", b"+", b"+", b"."]  # the last ends it
    runs = {e[5]["headers"][0][1][1:] for e in produced if e[1] == CHANGELOG}
    assert len(runs) == 1  # one batch id for the run
    routed = next(e for e in produced if e[1] == "p.leads.routed.smb")
    assert (routed[2], routed[3], routed[5]["headers"]) == (b"lead-1", b"{}", [("event", b"x")])
    sent.forget_sent(states)
    assert states[3].pending() == {outbox_key.encode(): None}  # removed with the next batch


def test_at_least_once_commit_without_input_commits_no_offsets(monkeypatch, plain_clients):
    committer, log, _ = open_committer(monkeypatch, plain_clients, "at_least_once")
    consumer = FakeConsumer(log)
    committer.commit(committer.begin([], consumer), {}, consumer)  # type: ignore[arg-type]
    assert [e[0] for e in log] == ["flush"]


def test_a_revoke_confirms_every_offset_committed_without_waiting(monkeypatch, plain_clients):
    """at_least_once: a batch's offsets go without waiting; should one such commit fail, the
    revoke still commits the newest offset of every partition since the last revoke."""
    committer, log, _ = open_committer(monkeypatch, plain_clients, "at_least_once")
    consumer = FakeConsumer(log)
    for batch in ([Msg("forms", 0, 5), Msg("clicks", 1, 3)], [Msg("forms", 0, 9)]):
        committer.commit(committer.begin(batch, consumer), {}, consumer)  # type: ignore[arg-type]
    assert [e[0] for e in log if e[0].startswith("commit")] == ["commit async"] * 2
    committer.confirm_offsets(consumer)  # type: ignore[arg-type]
    assert log[-1][0] == "commit"
    assert sorted(log[-1][1]) == [("clicks", 1, 4), ("forms", 0, 10)]


def test_an_offset_commit_that_finds_the_member_fenced_ends_the_session(monkeypatch, plain_clients):
    """Not waited for, an offset commit's error comes back through the consumer's
    `on_commit`: a fenced static member must start a new session, as the error of a commit
    waited for made it; a commit lost to a rebalance is carried by the next one."""
    committer, _, _ = open_committer(monkeypatch, plain_clients, "at_least_once")
    committer.committed(None, [])
    committer.committed(KafkaError(KafkaError.REBALANCE_IN_PROGRESS), [])
    committer.check()  # nothing to end the session for
    committer.committed(KafkaError(KafkaError.FENCED_INSTANCE_ID), [])
    with pytest.raises(KafkaException) as raised:
        committer.check()
    assert raised.value.args[0].code() == KafkaError.FENCED_INSTANCE_ID


def test_flush_fails_on_undelivered_records_or_delivery_errors(monkeypatch, plain_clients):
    committer, _, (producer,) = open_committer(monkeypatch, plain_clients, "at_least_once")
    producer.remaining = 2
    with pytest.raises(KafkaException, match="2 records undelivered"):
        committer.flush()
    producer.remaining = 0
    committer.delivered(KafkaError(KafkaError._MSG_TIMED_OUT, "timed out"), Msg("out", 0, -1))
    with pytest.raises(KafkaException, match="out: timed out"):
        committer.flush()
    committer.flush()  # the errors were reported once


def test_delivered_tracks_the_changelog_checkpoint(monkeypatch, plain_clients):
    committer, _, _ = open_committer(monkeypatch, plain_clients, "at_least_once")
    for p, offset in [(0, 10), (1, 3), (0, 12), (0, 11), (1, 2)]:
        committer.delivered(None, Msg(CHANGELOG, p, offset))
    committer.delivered(None, Msg("p.leads.routed.smb", 0, 99))
    assert committer.changelog_offsets == {0: 13, 1: 4}
    assert committer.delivery_errors == []


def test_produce_waits_for_room_when_the_queue_is_full(monkeypatch, plain_clients):
    committer, log, (producer,) = open_committer(monkeypatch, plain_clients, "at_least_once")
    producer.full = 2
    committer.produce("out", b"k", b"v", partition=4, headers=[("event", b"lead.assigned")])
    assert [e[0] for e in log] == ["poll", "poll", "produce"]
    assert log[-1] == ("produce", "out", b"k", b"v", 4, {"headers": [("event", b"lead.assigned")]})


def test_exactly_once_batch_is_one_transaction(monkeypatch, plain_clients):
    committer, log, (producer,) = open_committer(monkeypatch, plain_clients, "exactly_once")
    log.clear()
    producer.offsets_release = threading.Event()
    consumer = FakeConsumer(log)
    offsets = committer.begin([Msg("forms", 1, 41), Msg("forms", 1, 40)], consumer)  # type: ignore[arg-type]
    assert log == [("begin_transaction",)]  # offsets join on the helper thread meanwhile
    committer.produce("p.leads.routed.smb", b"lead-1", b"{}", headers=[("event", b"x")])
    changes = {2: {b"a": b"1", b"b": None, b"c": b"3"}, 5: {b"d": b"4"}}
    producer.offsets_release.set()
    committer.commit(offsets, changes, consumer)  # type: ignore[arg-type]
    names = [e[0] for e in log]
    assert names[-1] == "commit_transaction" and log[-1][1] == 15
    assert names.index("send_offsets") < names.index("commit_transaction")
    assert ("send_offsets", [("forms", 1, 42)]) in log
    assert "flush" not in names and "commit" not in names  # the transaction carries the offsets
    # Only each partition's last changelog record reports delivery: it is the checkpoint.
    changelog = [e for e in log if e[0] == "produce" and e[1] == CHANGELOG]
    assert [(e[2], e[4], "on_delivery" in e[5]) for e in changelog] == [
        (b"a", 2, False),
        (b"b", 2, False),
        (b"c", 2, True),
        (b"d", 5, True),
    ]
    assert committer.changelog_offsets == {2: 41, 5: 42}


def test_exactly_once_commit_reraises_a_failed_send_offsets(monkeypatch, plain_clients):
    committer, log, (producer,) = open_committer(monkeypatch, plain_clients, "exactly_once")
    producer.offsets_error = KafkaException(KafkaError(KafkaError._FENCED, "fenced"))
    consumer = FakeConsumer(log)
    offsets = committer.begin([Msg("forms", 0, 1)], consumer)  # type: ignore[arg-type]
    with pytest.raises(KafkaException, match="fenced"):
        committer.commit(offsets, {}, consumer)  # type: ignore[arg-type]
    assert "commit_transaction" not in [e[0] for e in log]


def test_exactly_once_timers_only_batch_sends_no_offsets(monkeypatch, plain_clients):
    committer, log, _ = open_committer(monkeypatch, plain_clients, "exactly_once")
    log.clear()
    consumer = FakeConsumer(log)
    committer.commit(committer.begin([], consumer), {}, consumer)  # type: ignore[arg-type]
    assert [e[0] for e in log] == ["begin_transaction", "commit_transaction"]


# ------------------------------------------------------------------------------------- sink
class RecordingCommitter:
    """What KafkaSink uses of a Committer: `produce`, recorded."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes | None, bytes | None, dict[str, Any]]] = []

    def produce(self, topic, key, value, **kw) -> None:
        self.produced.append((topic, key, value, kw))


@pytest.fixture
def sink() -> tuple[KafkaSink, RecordingCommitter, Timers]:
    committer, timers = RecordingCommitter(), Timers()
    sink = KafkaSink(committer, timers, "p.leadrouter.internal", "p.leads.deadletter")  # type: ignore[arg-type]
    return sink, committer, timers


def letter(detail: str = "`email` is not a valid address") -> DeadLetter:
    return DeadLetter(
        key=b"k-1",
        value=b'{"email": "nope"}',
        headers=[("traceparent", b"00-abc-01"), ("source", b"hubspot")],
        reason="invalid_email",
        detail=detail,
        topic="p.marketing.form-fills",
        partition=3,
        offset=1234,
    )


def test_publish_adds_the_event_header(sink):
    s, committer, _ = sink
    s.publish("p.leads.routed.smb", b"lead-1", b'{"event":"lead.assigned"}', "lead.assigned")
    assert committer.produced == [
        (
            "p.leads.routed.smb",
            b"lead-1",
            b'{"event":"lead.assigned"}',
            {"headers": [("event", b"lead.assigned")]},
        )
    ]


def test_hand_over_goes_to_the_owners_internal_partition(sink):
    s, committer, _ = sink
    s.hand_over(5, b"q:smb", b'{"k":"assign"}')
    assert committer.produced == [
        ("p.leadrouter.internal", b"q:smb", b'{"k":"assign"}', {"partition": 5})
    ]


def test_set_timer_reaches_the_timers(sink):
    s, committer, timers = sink
    s.set_timer(2, 500.0, "lead-1")
    assert committer.produced == []
    assert timers.due(499.0) == []
    assert timers.due(500.0) == [(2, "lead-1")]


def test_dead_letter_keeps_the_record_and_says_why_and_where(sink):
    s, committer, _ = sink
    s.dead_letter(letter())
    ((topic, key, value, kw),) = committer.produced
    assert (topic, key, value) == ("p.leads.deadletter", b"k-1", b'{"email": "nope"}')
    assert kw == {
        "headers": [
            ("traceparent", b"00-abc-01"),
            ("source", b"hubspot"),
            ("error.reason", b"invalid_email"),
            ("error.detail", b"`email` is not a valid address"),
            ("source.topic", b"p.marketing.form-fills"),
            ("source.partition", b"3"),
            ("source.offset", b"1234"),
        ]
    }


def test_dead_letter_of_a_keyless_empty_record():
    headers = deadletter_headers(
        DeadLetter(None, None, [], "invalid_json", "record has no value", "t", 0, -1)
    )
    assert dict(headers) == {
        "error.reason": b"invalid_json",
        "error.detail": b"record has no value",
        "source.topic": b"t",
        "source.partition": b"0",
        "source.offset": b"-1",
    }


def test_long_detail_is_truncated_to_the_limit():
    headers = dict(deadletter_headers(letter("x" * 5000)))
    assert headers["error.detail"] == b"x" * DETAIL_LIMIT
    assert DETAIL_LIMIT == 1000


def test_unencodable_detail_does_not_fail_the_dead_letter():
    headers = dict(deadletter_headers(letter("bad byte \udcff here")))
    assert headers["error.detail"] == b"bad byte ? here"


def test_truncated_detail_is_still_utf8():
    detail = "x" + "é" * 999  # 1999 bytes; byte 1000 is the middle of an "é"
    headers = dict(deadletter_headers(letter(detail)))
    assert len(headers["error.detail"]) <= DETAIL_LIMIT
    headers["error.detail"].decode("utf-8")


# -------------------------------------------------------------------------------------- lag
def partition_stats(pid: int, state: str, **offsets: int) -> dict[str, Any]:
    """One partition of librdkafka's statistics JSON (STATISTICS.md), unknowns -1001."""
    base = {
        "partition": pid,
        "broker": 1,
        "leader": 1,
        "desired": True,
        "unknown": False,
        "msgq_cnt": 0,
        "msgq_bytes": 0,
        "xmit_msgq_cnt": 0,
        "fetchq_cnt": 12,
        "fetchq_size": 4096,
        "fetch_state": state,
        "query_offset": -1001,
        "next_offset": -1001,
        "app_offset": -1001,
        "stored_offset": -1001,
        "stored_leader_epoch": -1,
        "committed_offset": -1001,
        "committed_leader_epoch": -1,
        "eof_offset": -1001,
        "lo_offset": -1001,
        "hi_offset": -1001,
        "ls_offset": -1001,
        "consumer_lag": -1,
        "consumer_lag_stored": -1,
        "leader_epoch": 0,
        "txmsgs": 0,
        "txbytes": 0,
        "rxmsgs": 900,
        "rxbytes": 90000,
        "msgs": 900,
        "rx_ver_drops": 0,
        "msgs_inflight": 0,
        "next_ack_seq": 0,
        "next_err_seq": 0,
        "acked_msgid": 0,
    }
    return {**base, **offsets}


def topic_stats(name: str, *partitions: dict[str, Any]) -> dict[str, Any]:
    return {
        "topic": name,
        "age": 60000,
        "metadata_age": 5000,
        "batchsize": {"min": 0, "max": 0, "avg": 0, "cnt": 0},
        "batchcnt": {"min": 0, "max": 0, "avg": 0, "cnt": 0},
        "partitions": {str(p["partition"]): p for p in partitions},
    }


def stats(*topics: dict[str, Any]) -> str:
    return orjson.dumps(
        {
            "name": "leadrouter#consumer-1",
            "client_id": "leadrouter",
            "type": "consumer",
            "ts": 123456789,
            "time": 1764440000,
            "age": 60000,
            "replyq": 0,
            "msg_cnt": 0,
            "brokers": {},
            "topics": {t["topic"]: t for t in topics},
            "cgrp": {"state": "up", "join_state": "steady", "assignment_size": 4},
        }
    ).decode()


def lag_of(metrics: Metrics, topic: str) -> float | None:
    return metrics.registry.get_sample_value("leadrouter_consumer_lag", {"topic": topic})


def caught_up_and_behind() -> str:
    forms = topic_stats(
        "eu.marketing.form-fills",
        partition_stats(
            0, "active", app_offset=100, committed_offset=90, hi_offset=150, ls_offset=140
        ),
        # No position yet: the committed offset stands in for it.
        partition_stats(1, "offset-query", committed_offset=30, hi_offset=40, ls_offset=35),
        partition_stats(2, "stopped", app_offset=0, hi_offset=10_000, ls_offset=10_000),
        # The unassigned-messages partition: never fetched, whatever its state says.
        partition_stats(-1, "active", hi_offset=10_000, app_offset=0),
    )
    clicks = topic_stats(
        "eu.marketing.ad-clicks",
        partition_stats(0, "active", app_offset=500, hi_offset=480, ls_offset=480),
        partition_stats(1, "active", hi_offset=70),  # neither position nor commit: unknown
    )
    internal = topic_stats(
        "eu.leadrouter.internal",
        partition_stats(4, "active", app_offset=7, hi_offset=9, ls_offset=9),
    )
    return stats(forms, clicks, internal)


def test_lag_per_topic_from_librdkafka_statistics():
    metrics = Metrics()
    metrics.declare([], [])
    gauge = LagGauge(metrics, "eu.")
    gauge(caught_up_and_behind())
    assert lag_of(metrics, "marketing.form-fills") == 50 + 10
    assert lag_of(metrics, "marketing.ad-clicks") == 0  # ahead of a stale watermark: not < 0
    assert lag_of(metrics, "leadrouter.internal") == 2
    assert lag_of(metrics, "eu.marketing.form-fills") is None  # prefix stripped
    assert lag_of(metrics, "sales.activities") == 0  # declared, not in the statistics


def test_read_committed_lag_ends_at_the_last_stable_offset():
    metrics = Metrics()
    gauge = LagGauge(metrics, "eu.")
    gauge.read_committed = True
    gauge(caught_up_and_behind())
    assert lag_of(metrics, "marketing.form-fills") == 40 + 5


def test_statistics_that_are_not_json_change_nothing():
    metrics = Metrics()
    gauge = LagGauge(metrics, "")
    gauge(
        stats(
            topic_stats("sales.activities", partition_stats(0, "active", app_offset=1, hi_offset=4))
        )
    )
    gauge('{"topics": {"sales.activities": ')
    gauge(stats())  # a consumer with no topics yet
    assert lag_of(metrics, "sales.activities") == 3


def test_lag_of_a_topic_no_longer_fetched_is_not_left_stale():
    metrics = Metrics()
    gauge = LagGauge(metrics, "")
    behind = partition_stats(0, "active", app_offset=100, hi_offset=1100)
    gauge(stats(topic_stats("marketing.ad-clicks", behind)))
    assert lag_of(metrics, "marketing.ad-clicks") == 1000
    # A rebalance moved the partition to another worker, which reports its lag itself.
    revoked = partition_stats(0, "none", app_offset=100, hi_offset=1100)
    gauge(stats(topic_stats("marketing.ad-clicks", revoked)))
    assert lag_of(metrics, "marketing.ad-clicks") == 0


def fenced_and_wrapped() -> tuple[KafkaException, SystemError]:
    """A producer's fatal error as confluent-kafka raises it from flush(), and the SystemError
    caused by it that a delivery callback running after it makes (seen when a worker is
    fenced)."""
    fenced = KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    try:
        try:
            raise fenced
        except KafkaException as cause:
            raise SystemError("delivered() returned a result with an exception set") from cause
    except SystemError as wrapped:
        return fenced, wrapped


def test_a_fatal_error_reported_as_a_system_error_is_a_kafka_failure():
    fenced, wrapped = fenced_and_wrapped()
    assert kafka_failure(wrapped)
    assert kafka_failure(fenced)
    assert not kafka_failure(SystemError("a bug of our own"))
    assert not kafka_failure(ValueError("not Kafka"))


def test_a_fatal_producer_error_is_known_also_as_the_cause_of_a_system_error():
    """After a fatal error the session's producer is closed without a flush (worker.py)."""
    fenced, wrapped = fenced_and_wrapped()
    assert fatal_error(wrapped)
    assert fatal_error(fenced)
    # what produce() raises on a producer already fenced: code _FATAL, fatal flag not set
    assert fatal_error(KafkaException(KafkaError(KafkaError._FATAL, "Unable to produce message")))
    assert not fatal_error(KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down")))
    assert not fatal_error(SystemError("returned NULL without setting an exception"))
