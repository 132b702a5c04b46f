"""The changelog records of a batch are its values as they stand at its end.

`PartitionState` encodes a value when the handler that put it settles (while the value is in
the CPU's caches), not at the batch's end. That is right only while every change to a value
is followed by its `put` in the same handler. This test runs simulated marketing traffic,
the simulated sales team's answers and every timer (SLA, queue desks' hand-outs from their
waiting lines) through the worker's topology and store, batch by batch, and holds each
batch's records to a fresh encoding of the values at its end.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson

from tests.support.desk import Facts
from topics import catalogue as cat
from workers.core.enrich import AccountBook
from workers.core.topology import DeadLetter, InputRecord, Topology
from workers.demo import demo_accounts
from workers.settings import DEFAULT_CONFIG_DIR, load_config
from workers.simulate import SalesTeam, Traffic
from workers.store import MemoryBackend, PartitionState

PARTITIONS = 6
START = datetime(2026, 11, 25, 5, 45, tzinfo=UTC).timestamp()  # Wednesday, before Paris opens


class Sink:
    """The sales team hears of every routed lead; timers are kept to fire in time order."""

    def __init__(self, team: SalesTeam, clock: list[float]) -> None:
        self.team, self.clock = team, clock
        self.timers: list[tuple[float, int, str]] = []
        self.routed = 0

    def publish(self, topic: str, key: bytes, value: bytes, event: str) -> None:
        lead = orjson.loads(value)
        self.routed += event != "lead.activity"
        self.team.on_routed(
            SimpleNamespace(**{**lead, "source": SimpleNamespace(**lead["source"])}),
            self.clock[0],
        )

    def hand_over(self, partition: int, key: bytes, value: bytes) -> None:
        raise AssertionError("one process holds every partition")

    def set_timer(self, partition: int, due: float, key: str) -> None:
        heapq.heappush(self.timers, (due, partition, key))

    def dead_letter(self, letter: DeadLetter) -> None:
        pass


def test_each_batch_writes_its_values_as_they_stand_at_its_end() -> None:
    config = load_config(DEFAULT_CONFIG_DIR, env={})
    accounts = AccountBook()
    for account in demo_accounts(config):
        accounts.put(account["domain"], account)
    clock = [START]
    topology = Topology(config, accounts, Facts(), lambda: clock[0], PARTITIONS)
    states = {p: PartitionState(p, MemoryBackend()) for p in range(PARTITIONS)}
    team = SalesTeam(config, 7, delay_scale=0.05)
    sink = Sink(team, clock)
    traffic = Traffic(config, 7, 0.01)
    settled = late = slas = desks = 0
    for batch in range(60):  # 60 batches of 300 events, 10 events a second: 30 minutes
        records: list[Any] = []
        for i in range(300):
            at = START + (batch * 300 + i) / 10
            topic, key, value = traffic.next(at)
            records.append(InputRecord(topic, key, value, int(at * 1000)))
        clock[0] = at
        for activity in team.due(clock[0]):
            records.append(
                InputRecord(
                    cat.SALES_ACTIVITIES,
                    activity.lead_id.encode(),
                    orjson.dumps(asdict(activity)),
                    int(clock[0] * 1000),
                )
            )
        topology.process(records, states.get, sink, clock[0])
        due = []
        while sink.timers and sink.timers[0][0] <= clock[0]:
            _, p, key = heapq.heappop(sink.timers)
            due.append((p, key))
        topology.fire(due, states.get, sink)
        desks += sum(key.startswith("q:") for _, key in due)
        slas += sum(key.startswith("ld_") for _, key in due)
        for state in states.values():
            settled += sum(state.encoded.get(key) is not None for key in state.dirty)
            late += sum(key not in state.encoded for key in state.dirty)
            writes = state.pending()
            for key, value in writes.items():
                now = state.values[key.decode()]
                assert value == (None if now is None else orjson.dumps(now)), key
            state.commit(writes, None)
    # Both ways were taken, and the traffic did what it is here to do.
    assert settled > 5000 and late > 100
    assert sink.routed > 300 and slas > 100 and desks > 0
