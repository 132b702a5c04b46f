"""Owned partitions and the accounts table without a broker: state set up directly or
restored through a fake reader standing in for the changelog, timers with it, and the
accounts table read whole and followed."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from workers.core.enrich import AccountBook
from workers.runtime import partitions, reference
from workers.runtime.accounts import AccountsReader
from workers.runtime.clients import Clients
from workers.runtime.commit import PROBE_KEY
from workers.runtime.outbox import ABORT, FRAME, LAST, MORE, Outbox, abort_mark
from workers.runtime.partitions import Partitions
from workers.runtime.timers import Timers
from workers.runtime.worker import Worker
from workers.settings import Settings, load_config
from workers.store import MemoryBackend, PartitionState, RocksBackend

CHANGELOG = "leadrouter.state-changelog"
ACCOUNTS = "reference.accounts"


def settings(**env: str) -> Settings:
    return load_config(env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", **env}).settings


def Msg(
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None = None,
    error: KafkaError | None = None,
) -> Message:
    """A real `confluent_kafka.Message`, as a reader hands one over."""
    return Message(
        partition=partition, offset=offset, key=key, value=value, headers=headers, error=error
    )


def js(value: Any) -> bytes:
    return orjson.dumps(value)


class Log:
    """One partition of a topic: records at their offsets, and the watermarks."""

    def __init__(self, records: list[tuple[Any, ...]], low: int = 0) -> None:
        """`records`: (key, value) or, framed (runtime/outbox.py), (key, value, headers)."""
        self.records = {low + i: kv for i, kv in enumerate(records)}
        self.low = low
        self.high = low + len(records)

    def drop(self, *offsets: int) -> Log:
        """Offsets that are never delivered: compacted away, or transaction markers."""
        for o in offsets:
            self.records.pop(o)
        return self


class Reader:
    """A hand-assigned consumer over `logs` (partition -> Log); at most `per_fetch`
    records of each partition a call. Its position moves past offsets that are never delivered, as
    librdkafka's does past transaction markers."""

    made: ClassVar[list[Reader]] = []

    def __init__(self, conf: dict[str, Any], logs: dict[int, Log], per_fetch: int = 2) -> None:
        self.conf = conf
        self.logs = logs
        self.per_fetch = per_fetch
        self.assigned: list[tuple[str, int, int]] = []
        self.positions: dict[int, int] = {}
        self.consumed = 0
        self.closed = False
        self.inject: deque[Msg] = deque()
        Reader.made.append(self)

    def list_topics(self, topic: str, timeout: float) -> Any:
        meta = SimpleNamespace(partitions={p: object() for p in self.logs})
        return SimpleNamespace(topics={topic: meta})

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = 0, cached=False):
        log = self.logs[tp.partition]
        return (log.low, log.high)

    def assign(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self.assigned.append((tp.topic, tp.partition, tp.offset))
            log = self.logs[tp.partition]
            self.positions[tp.partition] = log.low if tp.offset < 0 else tp.offset

    def consume(self, num_messages: int, timeout: float) -> list[Msg]:
        self.consumed += 1
        out: list[Msg] = []
        while self.inject:
            out.append(self.inject.popleft())
        for p, position in self.positions.items():
            log = self.logs[p]
            taken = 0
            while position < log.high and taken < self.per_fetch and len(out) < num_messages:
                if position in log.records:
                    out.append(Msg(p, position, *log.records[position]))
                    taken += 1
                position += 1
            if not any(o in log.records for o in range(position, log.high)):
                position = max(position, log.high)  # only markers left: skipped
            self.positions[p] = position
        return out

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.positions.get(tp.partition, -1001))
            for tp in tps
        ]

    def close(self) -> None:
        self.closed = True


class Clock:
    """Time as the readers' loops see it: each look at the clock is a turn of the loop,
    which waits up to consume()'s 0.5 s. A loop that never ends fails fast."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 0.5
        return self.now


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> dict[int, Log]:
    """The changelog (or the accounts topic): partition -> Log; every reader opened reads it."""
    topic: dict[int, Log] = {}
    Reader.made = []
    factory = lambda conf: Reader(conf, topic)  # noqa: E731
    monkeypatch.setattr(partitions, "Consumer", factory)
    monkeypatch.setattr(reference, "Consumer", factory)
    clock = Clock()
    monkeypatch.setattr(partitions, "time", clock)
    monkeypatch.setattr(reference, "time", clock)
    return topic


def owned(s: Settings, timers: Timers | None = None) -> Partitions:
    return Partitions(s, Clients(s, "host-a1"), CHANGELOG, timers or Timers())


# ------------------------------------------------------------------- partitions, no restore
def test_changes_are_each_dirty_partitions_writes_once():
    parts = owned(settings(LEADROUTER_STORE="memory"))
    parts.states = {p: PartitionState(p, MemoryBackend()) for p in (0, 1, 2)}
    parts.states[0].put("lead-1", {"score": 10})
    parts.states[0].put("lead-1", {"score": 20})  # twice in the batch: one write
    parts.states[0].put("s:lead-1", {"due": 5.0})
    parts.states[2].delete("lead-9")
    changes = parts.changes()
    assert changes == {
        0: {b"lead-1": js({"score": 20}), b"s:lead-1": js({"due": 5.0})},
        2: {b"lead-9": None},
    }
    assert parts.changes() == {}  # taken: the next batch starts clean


def test_persist_after_commit_keeps_what_a_later_batch_changed():
    parts = owned(settings(LEADROUTER_STORE="memory"))
    state = parts.states[3] = PartitionState(3, MemoryBackend())
    state.put("lead-1", {"n": 1})
    state.put("s:lead-1", {"due": 9.0})
    parts.persist(parts.changes(), {3: 17})
    state.delete("s:lead-1")
    state.delete("lead-2")
    changes = parts.changes()
    state.put("lead-2", {"n": 2})  # the next batch re-created it before this one persisted
    parts.persist(changes, {3: 19})
    parts.persist({7: {b"x": None}}, {7: 1})  # a partition no longer owned: ignored
    assert parts.state_of(3) is state
    assert state.get("lead-1") == {"n": 1}
    assert state.get("s:lead-1") is None and "s:lead-1" not in state.values
    assert state.get("lead-2") == {"n": 2}


def test_drop_closes_the_state_and_stops_its_timers():
    timers = Timers()
    parts = owned(settings(LEADROUTER_STORE="memory"), timers)
    kept, dropped = MemoryBackend(), MemoryBackend()
    parts.states = {0: PartitionState(0, kept), 1: PartitionState(1, dropped)}
    parts.states[1].put("lead-1", {"n": 1})
    timers.set(0, 10.0, "stays")
    timers.set(1, 10.0, "goes")
    parts.drop(1)
    parts.drop(5)  # never owned
    assert parts.state_of(1) is None and dropped.data == {}
    assert parts.changes() == {}  # its pending writes went with it
    assert timers.due(11.0) == [(0, "stays")]
    parts.drop_all()
    assert parts.states == {} and timers.heaps == {}


def test_an_owned_partition_is_not_restored_again(logs):
    parts = owned(settings(LEADROUTER_STORE="memory"))
    state = parts.states[2] = PartitionState(2, MemoryBackend())
    parts.restore([2])
    assert parts.states[2] is state and Reader.made == []


def test_rocksdb_persist_writes_the_checkpoint(tmp_path: Path):
    parts = owned(settings(LEADROUTER_STORE="rocksdb", LEADROUTER_DATA_DIR=str(tmp_path)))
    backend = RocksBackend(tmp_path / "p0")
    parts.states[0] = PartitionState(0, backend)
    try:
        parts.states[0].put("lead-1", {"n": 1})
        parts.persist(parts.changes(), {0: 42})
        assert backend.checkpoint() == 42
        assert backend.load("lead-1") == {"n": 1}
    finally:
        parts.drop_all()


# ---------------------------------------------------------------------- partitions, restore
def changelog() -> Log:
    return Log(
        [
            (b"lead-1", js({"queue": "smb", "score": 40})),
            (b"s:lead-1", js({"due": 500.0})),
            (b"lead-2", js({"queue": "smb"})),
            (b"q:smb", js({"next": 1})),
            (b"s:lead-2", js({"due": 100.0})),
            (PROBE_KEY, None),  # the transaction probe's tombstone (partition 0)
            (b"lead-1", js({"queue": "smb", "score": 55})),
            (b"s:lead-2", None),  # SLA stopped by a sales touch
            (b"v:anon-1", js({"touches": 1})),
        ]
    )


def test_restore_replays_the_changelog_and_its_timers(logs):
    logs[0] = changelog()
    timers = Timers()
    parts = owned(settings(LEADROUTER_STORE="memory"), timers)
    parts.restore([0])
    state = parts.state_of(0)
    assert state is not None
    assert state.get("lead-1") == {"queue": "smb", "score": 55}  # the latest value wins
    assert state.get("s:lead-2") is None and state.get("lead-2") == {"queue": "smb"}
    assert sorted(state.values) == ["lead-1", "lead-2", "q:smb", "s:lead-1", "v:anon-1"]
    assert timers.due(1000.0) == [(0, "lead-1")]
    (reader,) = Reader.made
    assert reader.assigned == [(CHANGELOG, 0, OFFSET_BEGINNING)]
    assert reader.conf["group.id"] == "leadrouter-restore"
    assert reader.conf["isolation.level"] == "read_uncommitted"
    assert reader.closed


def test_restore_skips_error_events_and_keeps_the_last_value_of_a_fetch(logs, monkeypatch):
    logs[1] = Log([(b"lead-1", js({"n": 1})), (b"lead-1", js({"n": 3})), (b"lead-2", js({}))])

    def reader(conf: dict[str, Any]) -> Reader:
        made = Reader(conf, logs)
        made.inject.append(Msg(1, -1, None, None, error=KafkaError(KafkaError._TRANSPORT)))
        return made

    monkeypatch.setattr(partitions, "Consumer", reader)
    parts = owned(settings(LEADROUTER_STORE="memory"))
    parts.read_committed = True
    parts.restore([1])
    assert Reader.made[0].conf["isolation.level"] == "read_committed"
    state = parts.state_of(1)
    assert state is not None and sorted(state.values) == ["lead-1", "lead-2"]
    assert state.get("lead-1") == {"n": 3}  # both in one fetch: the later one wins


def test_restore_ends_at_trailing_transaction_markers(logs):
    # exactly_once: every batch's changelog records end in a commit marker, which a reader
    # never receives; the restore must not wait for it.
    logs[0] = Log([(b"lead-1", js({"n": 1}))] * 5 + [(None, None)] * 2).drop(5, 6)
    parts = owned(settings(LEADROUTER_STORE="memory"))
    parts.restore([0])
    assert parts.state_of(0) is not None
    assert Reader.made[0].consumed <= 4


def test_restore_of_an_empty_partition_reads_nothing(logs):
    logs[2] = Log([])
    parts = owned(settings(LEADROUTER_STORE="memory"))
    parts.restore([2])
    state = parts.state_of(2)
    assert state is not None and state.values == {}
    (reader,) = Reader.made
    assert reader.assigned == [] and reader.consumed == 0 and reader.closed


def test_a_restore_that_cannot_finish_fails_and_owns_nothing(logs, monkeypatch):
    logs[0] = Log([(b"lead-1", js({"n": 1}))] * 3)
    monkeypatch.setattr(partitions, "RESTORE_DEADLINE", -1.0)
    timers = Timers()
    parts = owned(settings(LEADROUTER_STORE="memory"), timers)
    with pytest.raises(KafkaException, match="restore of partition 0 did not finish"):
        parts.restore([0])
    assert parts.state_of(0) is None and timers.heaps == {}
    assert Reader.made[0].closed


def test_rocksdb_restore_resumes_from_the_local_checkpoint(logs, tmp_path: Path):
    s = settings(LEADROUTER_STORE="rocksdb", LEADROUTER_DATA_DIR=str(tmp_path))
    logs[0] = changelog()
    first = owned(s)
    first.restore([0])
    state = first.state_of(0)
    assert state is not None and state.backend.checkpoint() == 9
    assert (tmp_path / "leadrouter" / "p0").is_dir()
    first.drop(0)  # revoked; the local store stays on disk
    more = [(b"lead-3", js({"n": 3})), (b"s:lead-3", js({"due": 50.0})), (b"s:lead-1", None)]
    for i, kv in enumerate(more):
        logs[0].records[9 + i] = kv
    logs[0].high = 12
    timers = Timers()
    again = owned(s, timers)
    again.restore([0])
    try:
        (_, reader) = Reader.made
        assert reader.assigned == [(CHANGELOG, 0, 9)]  # only what the store has not seen
        state = again.state_of(0)
        assert state is not None
        assert state.get("lead-1") == {"queue": "smb", "score": 55}
        assert state.get("lead-3") == {"n": 3} and state.get("s:lead-1") is None
        assert state.backend.checkpoint() == 12
        assert timers.due(1000.0) == [(0, "lead-3")]
    finally:
        again.drop_all()


def test_rocksdb_checkpoint_older_than_the_log_replays_it_whole(logs, tmp_path: Path):
    s = settings(LEADROUTER_STORE="rocksdb", LEADROUTER_DATA_DIR=str(tmp_path))
    stale = RocksBackend(tmp_path / "leadrouter" / "p0")
    stale.apply({b"lead-0": js({"old": True})}, 3)
    stale.close()
    logs[0] = Log([(b"lead-1", js({"n": 1})), (b"lead-2", js({"n": 2}))], low=10)
    parts = owned(s)
    parts.restore([0])
    try:
        assert Reader.made[0].assigned == [(CHANGELOG, 0, OFFSET_BEGINNING)]
        state = parts.state_of(0)
        assert state is not None and state.get("lead-2") == {"n": 2}
        assert state.backend.checkpoint() == 12
    finally:
        parts.drop_all()


@pytest.mark.parametrize(
    ("case", "checkpoint", "low", "records"),
    [
        ("before the log start", 3, 10, 2),
        ("past the log end: a recreated topic", 50, 0, 2),
        ("past the end of a recreated, empty topic", 50, 0, 0),
    ],
)
def test_rocksdb_checkpoint_outside_the_log_is_not_trusted(
    logs, tmp_path: Path, case: str, checkpoint: int, low: int, records: int
):
    s = settings(LEADROUTER_STORE="rocksdb", LEADROUTER_DATA_DIR=str(tmp_path))
    stale = RocksBackend(tmp_path / "leadrouter" / "p0")
    stale.apply({b"lead-0": js({"deleted": "since"})}, checkpoint)
    stale.close()
    logs[0] = Log([(f"lead-{n + 1}".encode(), js({"n": n})) for n in range(records)], low=low)
    parts = owned(s)
    parts.restore([0])
    try:
        state = parts.state_of(0)
        assert state is not None
        assert state.get("lead-0") is None
        assert sorted(state.keys_with_prefix("lead-")) == [f"lead-{n + 1}" for n in range(records)]
        assert state.backend.checkpoint() == (low + records if records else None)
    finally:
        parts.drop_all()


# ------------------------------------------------- at_least_once: framed runs (outbox.py)
def run(batch: bytes, *records: tuple[bytes, bytes | None]) -> list[tuple[Any, ...]]:
    """One batch's records on a changelog partition as at_least_once writes them."""
    last = len(records) - 1
    return [
        (key, value, [(FRAME, (LAST if i == last else MORE) + batch)])
        for i, (key, value) in enumerate(records)
    ]


def abort(batch: bytes) -> tuple[Any, ...]:
    key, value, headers = abort_mark("host-a1", batch)
    return (key, value, headers)


def test_restore_leaves_out_a_batch_a_crash_cut_short(logs, tmp_path: Path):
    """A crash in the middle of a batch's changelog writes: the restored state is that of
    the last whole batch, the restore says which batch was cut, and the local checkpoint
    stays before it, so the next restore reads the cut batch again (and its abort mark)."""
    s = settings(LEADROUTER_STORE="rocksdb", LEADROUTER_DATA_DIR=str(tmp_path))
    logs[0] = Log(
        [
            (b"lead-1", js({"n": 1})),  # written by exactly_once: no frame
            *run(b"a", (b"lead-1", js({"n": 2})), (b"q:smb", js({"rr": 1}))),
            *run(b"b", (b"lead-1", js({"n": 3})), (b"lead-2", js({"n": 1}))),
        ]
    )
    del logs[0].records[4]  # b's last record never reached the broker
    logs[0].high = 4
    parts = owned(s)
    assert parts.restore([0]) == {0: b"b"}
    try:
        state = parts.state_of(0)
        assert state is not None
        assert state.get("lead-1") == {"n": 2} and state.get("q:smb") == {"rr": 1}
        assert state.get("lead-2") is None
        assert state.backend.checkpoint() == 3
    finally:
        parts.drop_all()


def test_an_abort_mark_keeps_a_cut_batch_out_of_every_later_restore(logs):
    logs[0] = Log(
        [
            *run(b"a", (b"lead-1", js({"n": 1}))),
            *run(b"b", (b"lead-1", js({"n": 2})), (b"lead-2", js({"n": 2})))[:1],  # cut
            abort(b"b"),
            *run(b"c", (b"lead-3", js({"n": 3})), (b"lead-4", js({"n": 4}))),
        ]
    )
    parts = owned(settings(LEADROUTER_STORE="memory"))
    assert parts.restore([0]) == {}
    state = parts.state_of(0)
    assert state is not None
    assert state.get("lead-1") == {"n": 1} and state.get("lead-2") is None
    assert state.get("lead-3") == {"n": 3} and state.get("lead-4") == {"n": 4}
    assert not state.keys_with_prefix("\x00")  # the mark is no state


@pytest.mark.parametrize("after", ["another batch", "an unframed record", "another's abort"])
def test_a_whole_batch_whose_last_record_compaction_removed_still_counts(logs, after: str):
    following = {
        "another batch": run(b"c", (b"lead-3", js({"n": 3}))),
        "an unframed record": [(b"lead-3", js({"n": 3}))],
        "another's abort": [abort(b"b")],  # b cut, then all of it compacted away
    }[after]
    logs[0] = Log(
        [*run(b"a", (b"lead-1", js({"n": 1})), (b"lead-2", js({"n": 1}))), *following]
    ).drop(1)  # a's last record: lead-2 was written again later (and that too is gone here)
    parts = owned(settings(LEADROUTER_STORE="memory"))
    parts.restore([0])
    state = parts.state_of(0)
    assert state is not None and state.get("lead-1") == {"n": 1}


def test_assignment_marks_a_cut_batch_and_sends_what_its_outbox_still_holds(logs):
    """On assignment: an abort mark after the cut batch, before anything else is written
    there; outputs the restored state still holds in its outbox sent again, then removed."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "LEADROUTER_STORE": "memory"}
    worker = Worker(load_config(env=env), serve_metrics=False)
    routed = ("leadrouter.leads.routed.smb", -1, b"lead-1", b"{}", [("event", b"lead.assigned")])
    held = Outbox(run=5)
    held.add(2, routed)
    state = PartitionState(2, MemoryBackend())
    held.store({2: state})
    whole = [(k, v) for k, v in state.pending().items()]
    logs[2] = Log([*run(b"a", *whole), *run(b"b", (b"lead-1", js({"n": 2})), (b"x", None))[:1]])
    sent: list[list[Any]] = []
    worker.committer = SimpleNamespace(send_now=sent.append)  # type: ignore[assignment]
    worker.on_assign(None, [TopicPartition("leadrouter.internal", 2)])  # type: ignore[arg-type]
    ((mark,), (again,)) = sent
    assert mark[:2] == (CHANGELOG, 2) and mark[4] == [(FRAME, ABORT + b"b")]
    assert again == routed
    restored = worker.partitions.state_of(2)
    assert restored is not None and restored.pending() == {held.stored[2][0].encode(): None}


def test_rebalance_restores_and_drops_only_internal_partitions(logs):
    config = load_config(
        env={
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
            "LEADROUTER_STORE": "memory",
            "LEADROUTER_TOPIC_PREFIX": "eu.",
        }
    )
    worker = Worker(config, serve_metrics=False)
    logs[1], logs[4] = changelog(), Log([])
    internal = "eu.leadrouter.internal"
    worker.on_assign(
        None,  # type: ignore[arg-type]
        [
            TopicPartition(internal, 1),
            TopicPartition("eu.marketing.form-fills", 4),
            TopicPartition(internal, 4),
        ],
    )
    assert sorted(worker.partitions.states) == [1, 4] and worker.health.ready
    assert Reader.made[0].assigned == [("eu.leadrouter.state-changelog", 1, OFFSET_BEGINNING)]
    assert worker.timers.due(1000.0) == [(1, "lead-1")]
    worker.timers.set(4, 10.0, "lead-4")
    worker.on_revoke(None, [TopicPartition("eu.marketing.form-fills", 1)])  # type: ignore[arg-type]
    assert sorted(worker.partitions.states) == [1, 4]
    worker.on_revoke(None, [TopicPartition(internal, 4)])  # type: ignore[arg-type]
    assert sorted(worker.partitions.states) == [1]
    assert worker.timers.due(1000.0) == []


# ------------------------------------------------------------------------------- accounts
def account(name: str, **extra: Any) -> bytes:
    return js({"name": name, "employees": 250, "industry": "software", **extra})


def accounts_topic() -> dict[int, Log]:
    return {
        0: Log(
            [
                (b"acme.io", account("Acme")),
                (b"globex.com", account("Globex")),
                (b"acme.io", account("Acme Corp", owner="ana.silva")),
                (b"initech.com", account("Initech")),
            ]
        ),
        1: Log([]),
        2: Log(
            [
                (None, account("Keyless")),  # no key: no domain to file it under
                (b"broken.io", b"{not json"),
                (b"list.io", b"[1, 2]"),
                (b"Initrode.COM", account("Initrode")),
                (b"globex.com", None),  # account removed
                # a CRM sync's employees as words: that field is left out, the rest taken
                (b"initrode.com", account("Initrode Inc", employees="many")),
            ]
        ),
    }


def test_accounts_are_read_whole_before_anything_else(logs, caplog):
    logs.update(accounts_topic())
    book = AccountBook()
    s = settings()
    reader = AccountsReader(Clients(s, "host-a1"), ACCOUNTS, book)
    reader.load()
    assert sorted(book.by_domain) == ["acme.io", "initech.com", "initrode.com"]
    assert book.by_domain["acme.io"]["owner"] == "ana.silva"
    assert book.match(None, "Initrode")[1] == "company_name"
    initrode = book.by_domain["initrode.com"]
    assert initrode["name"] == "Initrode Inc" and "employees" not in initrode
    assert (
        "reference.accounts offset 5 (initrode.com): `employees` must be a whole number, not "
        "'many': left out"
    ) in caplog.text
    (consumer,) = Reader.made
    assert consumer.conf["group.id"] == "leadrouter-accounts-host-a1"
    assert consumer.conf["isolation.level"] == "read_committed"
    assert sorted(consumer.assigned) == [(ACCOUNTS, p, OFFSET_BEGINNING) for p in (0, 1, 2)]
    assert consumer.consumed == 3  # two records a fetch per partition: done, no extra wait


def test_accounts_are_followed_between_batches(logs):
    logs.update(accounts_topic())
    book = AccountBook()
    reader = AccountsReader(Clients(settings(), "host-a1"), ACCOUNTS, book)
    reader.poll()  # before load: nothing to follow yet
    assert Reader.made == []
    reader.load()
    logs[1].records[0] = (b"hooli.com", account("Hooli"))
    logs[1].high = 1
    logs[0].records[4] = (b"acme.io", None)
    logs[0].high = 5
    consumer = Reader.made[0]
    consumer.inject.append(Msg(1, -1, None, None, error=KafkaError(KafkaError._TRANSPORT)))
    reader.poll()
    assert sorted(book.by_domain) == ["hooli.com", "initech.com", "initrode.com"]
    assert reader.close() is consumer and not consumer.closed  # the caller closes it
    reader.poll()
    assert reader.close() is None


@pytest.mark.parametrize("tail", ["commit marker", "emptied partition"])
def test_accounts_load_ends_at_the_end_of_the_log(logs, tail: str):
    if tail == "commit marker":
        logs[0] = Log([(b"acme.io", account("Acme")), (None, None)]).drop(1)
    else:
        logs[0] = Log([], low=7)
    logs[1] = Log([(b"globex.com", account("Globex"))])
    AccountsReader(Clients(settings(), "host-a1"), ACCOUNTS, AccountBook()).load()
    waited = Reader.made[0].consumed * 0.5
    assert waited <= 1.5, f"waited {waited:.0f} s of LOAD_DEADLINE {reference.LOAD_DEADLINE:.0f}"


def test_accounts_load_ends_at_a_marker_while_another_partition_is_busy(logs, monkeypatch):
    # Partition 0 ends in a commit marker; partition 1 is being written all the while (a
    # sync job): every fetch brings a record of it, none of partition 0.
    logs[0] = Log([(b"acme.io", account("Acme")), (None, None)]).drop(1)
    logs[1] = Log([(b"globex.com", account("Globex"))])
    consume = Reader.consume

    def busy(self: Reader, num_messages: int, timeout: float) -> list[Msg]:
        out = consume(self, num_messages, timeout)
        n = logs[1].high
        logs[1].records[n] = (f"new-{n}.com".encode(), account(f"New {n}"))
        logs[1].high = n + 1
        return out

    monkeypatch.setattr(Reader, "consume", busy)
    book = AccountBook()
    AccountsReader(Clients(settings(), "host-a1"), ACCOUNTS, book).load()
    assert "acme.io" in book.by_domain and "globex.com" in book.by_domain
    waited = Reader.made[0].consumed * 0.5
    assert waited <= 2.5, f"waited {waited:.0f} s of LOAD_DEADLINE {reference.LOAD_DEADLINE:.0f}"


def test_teardown_skips_the_flush_of_a_fatal_producer_and_survives_a_failing_one():
    """confluent-kafka's flush of a fenced producer has raised a SystemError with no
    exception set, which ended a worker that should have restarted its session."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "LEADROUTER_STORE": "memory"}
    worker = Worker(load_config(env=env), serve_metrics=False)
    flushed: list[float] = []

    def flush(timeout: float) -> int:
        flushed.append(timeout)
        raise SystemError("<method 'flush' of 'cimpl.Producer' objects> returned NULL")

    worker.committer = SimpleNamespace(producer=SimpleNamespace(flush=flush))  # type: ignore[assignment]
    worker._teardown(flush=False)  # after a fatal error
    assert flushed == [] and worker.committer is None
    worker.committer = SimpleNamespace(producer=SimpleNamespace(flush=flush))  # type: ignore[assignment]
    worker._teardown()  # any other session end: the flush is best effort
    assert flushed == [5] and worker.committer is None
