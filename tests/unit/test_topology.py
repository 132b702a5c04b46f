"""The worker's topology in-process, broker-free: the scenarios of
tests/integration/test_pipeline.py (which reads them back from Kafka) over a list of records
and the worker's own in-memory store, with the same assertions on the RoutedLeads.

Run with one process owning every partition, and again with the partitions split between
two topologies that hand records to each other as the internal topic would: the partition
ownership rules must not change what sales receive.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support import expect
from tests.support.desk import Facts
from tests.support.worker import always_open_config
from topics import catalogue as cat
from workers.core.enrich import AccountBook
from workers.core.identity import lead_id
from workers.core.topology import DeadLetter, InputRecord, Topology
from workers.settings import load_config
from workers.store import MemoryBackend, PartitionState

PARTITIONS = 6
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC).timestamp()


class Process:
    """One worker's topology and the partitions it owns."""

    def __init__(self, config, accounts, facts, owned: set[int], clock, defer=False) -> None:
        self.topology = Topology(config, accounts, facts, clock, PARTITIONS, defer_hand_overs=defer)
        self.states = {p: PartitionState(p, MemoryBackend()) for p in owned}


class Lanes:
    """Records in, through one or two processes, RoutedLeads and dead letters out."""

    def __init__(self, config_dir: Path, split: bool, defer: bool = False) -> None:
        self.config = load_config(config_dir, env={})
        self.now = NOW
        self.accounts = AccountBook()
        self.facts = Facts()
        owners = [set(range(0, PARTITIONS, 2)), set(range(1, PARTITIONS, 2))]
        if not split:
            owners = [set(range(PARTITIONS))]
        self.processes = [
            Process(self.config, self.accounts, self.facts, owned, lambda: self.now, defer)
            for owned in owners
        ]
        self.published: list[tuple[str, bytes, dict[str, Any]]] = []
        self.dead: list[DeadLetter] = []
        self.crossed = 0
        self.offset = 0

    def at(self, offset: float = 0) -> str:
        return datetime.fromtimestamp(self.now + offset, UTC).isoformat()

    def send(self, topic: str, value: dict | bytes, key: bytes | None = None) -> None:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        self.offset += 1
        record = InputRecord(topic, key, raw, int(self.now * 1000), 0, self.offset)
        self._run(self.processes[self.offset % len(self.processes)], [record])

    def _run(self, process: Process, records: list[InputRecord]) -> None:
        out = process.topology.run(records, process.states.get, self.now)
        routed = process.topology.routed_topics
        topic_of = {q: t for q, t in routed.items()}
        self.published += [(topic_of[q], k.encode(), v) for q, k, v in out.published]
        self.dead += out.dead_letters
        for partition, key, value in out.handed_over:  # the internal topic, between processes
            self.crossed += 1
            owner = next(p for p in self.processes if partition in p.states)
            internal = process.topology.internal_topic
            self._run(owner, [InputRecord(internal, key, value, 0, partition, self.crossed)])

    def values(self) -> list[dict[str, Any]]:
        return [v for _, _, v in self.published]


@pytest.fixture(params=[False, True], ids=["one-process", "two-processes"])
def lanes(request, tmp_path: Path) -> Lanes:
    return Lanes(always_open_config(tmp_path / "config"), request.param)


def form(lanes: Lanes, email: str, form_id: str, n: int = 1, **extra) -> dict:
    return {
        "event_id": f"{email}/{form_id}/{n}",
        "occurred_at": lanes.at(),
        "email": email,
        "form_id": form_id,
        **extra,
    }


def test_demo_request_routes_at_once_with_rep_and_trace(lanes: Lanes):
    lanes.send(cat.FORM_FILLS, form(lanes, "jane@acme-corp.com", "demo-request", **expect.JANE))
    assert len(lanes.published) == 1
    topic, key, lead = lanes.published[0]
    assert topic == "leads.routed.fast-lane"
    assert key == lead_id("jane@acme-corp.com").encode()
    expect.fast_lane_demo_request(lead, "jane@acme-corp.com/demo-request/1")
    assert "activity" not in lead


def test_mql_lead_lands_on_territory_queue_with_account_data(lanes: Lanes):
    lanes.accounts.put("bigcorp.de", expect.BIGCORP)
    lanes.accounts.put("owned.com", expect.OWNED)
    consent = {"marketing": True}
    lanes.send(
        cat.FORM_FILLS,
        form(lanes, "max@bigcorp.de", "whitepaper", job_title="Engineer", consent=consent),
    )
    lanes.send(cat.FORM_FILLS, form(lanes, "max@bigcorp.de", "pricing", 2, consent=consent))
    lanes.send(cat.FORM_FILLS, form(lanes, "kim@owned.com", "contact-sales"))
    leads = {v["lead_id"]: v for v in lanes.values()}
    assert len(leads) == 2
    expect.territory_and_owner(leads[lead_id("max@bigcorp.de")], leads[lead_id("kim@owned.com")])


def test_anonymous_click_then_form_gives_ad_first_touch(lanes: Lanes):
    lanes.send(
        cat.AD_CLICKS,
        {
            "event_id": "click-1",
            "occurred_at": lanes.at(-600),
            "platform": "linkedin",
            "click_id": "li-77",
            "anonymous_id": "visitor-9",
            "campaign": "spring-launch",
        },
    )
    lanes.send(
        cat.FORM_FILLS,
        form(
            lanes,
            "ola@nordic.se",
            "demo-request",
            anonymous_id="visitor-9",
            utm={"source": "newsletter"},
        ),
    )
    (lead,) = lanes.values()
    expect.ad_first_touch(lead)


def test_touches_on_routed_lead_are_activity_not_reassignment(lanes: Lanes):
    email = "sam@acme-corp.com"
    lanes.send(cat.FORM_FILLS, form(lanes, email, "contact-sales"))
    lanes.send(cat.FORM_FILLS, form(lanes, email, "demo-request", 2))
    lanes.send(
        cat.EMAIL_EVENTS,
        {"event_id": "m1", "occurred_at": lanes.at(), "email": email, "type": "click"},
    )
    leads = lanes.values()
    expect.activity_not_reassignment(leads)
    assert leads[2]["activity"]["type"] == "click"


def test_touches_read_before_the_form_they_followed_reach_the_rep(lanes: Lanes):
    """A backlog read in another order than it happened (after a restart): e-mail clicks
    that occurred after the qualifying form are handled before it. Once routed, the rep
    hears of each click that came after the form, and of none that came before."""
    email = "kim@acme-corp.com"

    def click(event_id: str, offset: float) -> dict:
        return {
            "event_id": event_id,
            "occurred_at": lanes.at(offset),
            "email": email,
            "type": "click",
        }

    lanes.send(cat.EMAIL_EVENTS, click("before", -60))
    lanes.send(cat.EMAIL_EVENTS, click("after-1", 1.5))
    lanes.send(cat.EMAIL_EVENTS, click("after-2", 3.0))
    lanes.send(cat.FORM_FILLS, form(lanes, email, "demo-request"))
    assigned, *activities = lanes.values()
    assert assigned["event"] == "lead.assigned"
    assert assigned["source"]["channel"] == "email"  # the earliest touch, as ever
    assert [a["trigger_event_id"] for a in activities] == ["after-1", "after-2"]
    assert {a["event"] for a in activities} == {"lead.activity"}
    assert {a["rep_id"] for a in activities} == {assigned["rep_id"]}


def test_each_malformed_record_goes_to_dead_letters(lanes: Lanes):
    from tests.integration.test_pipeline import MALFORMED

    for i, (topic, raw, _) in enumerate(MALFORMED):
        lanes.send(topic, raw, key=f"k{i}".encode())
    lanes.send(cat.FORM_FILLS, form(lanes, "after@acme-corp.com", "demo-request"))
    by_key = {d.key: d for d in lanes.dead}
    assert len(lanes.dead) == len(MALFORMED)
    for i, (topic, raw, reason) in enumerate(MALFORMED):
        letter = by_key[f"k{i}".encode()]
        assert letter.value == raw, "the original bytes, unchanged"
        assert letter.reason == reason, (topic, letter)
        assert letter.detail
        assert letter.topic == topic and letter.offset >= 0
    (lead,) = lanes.values()  # and the pipeline kept going
    assert lead["lead_id"] == lead_id("after@acme-corp.com")
    invalid = Counter()
    for (fact, *labels), n in lanes.facts.counts.items():
        if fact == "invalid":
            invalid[tuple(labels)] += n
    assert invalid == Counter((topic, reason) for topic, _, reason in MALFORMED)


def test_redelivered_events_route_nobody_twice(lanes: Lanes):
    emails = [f"lead{i}@firm{i % 7}.com" for i in range(60)]
    for i, email in enumerate(emails):
        lanes.send(cat.FORM_FILLS, form(lanes, email, "demo-request", i))
    for i, email in enumerate(emails[:30]):  # the same events again
        lanes.send(cat.FORM_FILLS, form(lanes, email, "demo-request", i))
    assigned = [v["lead_id"] for v in lanes.values() if v["event"] == "lead.assigned"]
    assert sorted(assigned) == sorted(lead_id(e) for e in emails), "each lead exactly once"
    assert all(v["event"] == "lead.assigned" for v in lanes.values())


def test_two_processes_publish_what_one_does(tmp_path: Path):
    """The same traffic through one process, through two that split the partitions, and
    through one that sends every message between states out (at_least_once): the same
    RoutedLeads, and the records really were handed over."""
    from bench import workload

    config_dir = always_open_config(tmp_path / "config")
    runs = []
    for split, defer in ((False, False), (True, False), (False, True)):
        lanes = Lanes(config_dir, split, defer)
        config = lanes.config
        work = workload.generate(config, 3000, 11, NOW)
        for topic, key, value, _ in work.records:
            lanes.send(topic, value, key)
        runs.append(lanes)
    one, two, deferred = runs
    assert two.crossed > 100 and one.crossed == 0
    assert len(one.published) > 50
    assert sorted(one.published, key=_order) == sorted(two.published, key=_order)
    assert [d.reason for d in one.dead] == [d.reason for d in two.dead]
    # at_least_once (runtime/outbox.py): every message between two states leaves through
    # the sink even when both are held here; the input records are still handled at once
    assert deferred.crossed > 100
    assert sorted(one.published, key=_order) == sorted(deferred.published, key=_order)
    assert [d.reason for d in one.dead] == [d.reason for d in deferred.dead]


def _order(item: tuple[str, bytes, dict[str, Any]]) -> bytes:
    return orjson.dumps(item[2], option=orjson.OPT_SORT_KEYS) + item[0].encode()
