"""Erased people (`leadrouter forget`) in the history commands, without a broker: the
erasure topic read whole (a stand-in consumer), `explain` refusing an erased lead, `report`
leaving out an erased lead's records from before its erasure, and `replay` leaving out their
input events and never showing them in its sample."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import click
import orjson
import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaError, KafkaException
from rich.console import Console

from tests.support.worker import always_open_config
from tests.unit.test_replay import (
    START,
    config_at,
    form_fill,
    run,
    simulated,
    threshold,
)
from tests.unit.test_report import act
from tests.unit.test_report import routed as routed_value
from tests.unit.test_report_explain import Msg, routed, sales
from topics import catalogue as cat
from workers import erasures as er
from workers import history
from workers import replay as replay_mod
from workers import report as report_mod
from workers.cli import main as leadrouter
from workers.core.enrich import AccountBook
from workers.core.identity import lead_id
from workers.core.privacy import EXPIRY
from workers.core.topology import InputRecord
from workers.erasures import Erasure, decode, encode, fold, read_erasures
from workers.explain import erased_text
from workers.report import Collector
from workers.settings import DEFAULT_CONFIG_DIR, load_config

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp()  # test_report's and explain's T0
JANE = lead_id("jane@acme-corp.com")
REASON = "GDPR art. 17 request #123"


def at(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, UTC).isoformat()


# --------------------------------------------------------------------------- the topic
def test_a_record_round_trips_and_bad_ones_say_why() -> None:
    value = encode(JANE, Erasure(T0, REASON))
    assert orjson.loads(value) == {
        "format": 1,
        "lead_id": JANE,
        "requested_at": T0,
        "reason": REASON,
    }
    assert decode(value) == (JANE, Erasure(T0, REASON))
    good = orjson.loads(value)
    bad = [
        b"{not json",
        b"[1, 2]",
        orjson.dumps({**good, "format": 2}),
        orjson.dumps({k: v for k, v in good.items() if k != "format"}),
        orjson.dumps({**good, "lead_id": "jane@acme-corp.com"}),
        orjson.dumps({**good, "lead_id": JANE + "00"}),
        orjson.dumps({**good, "requested_at": "2026-11-02T09:00:00Z"}),
        orjson.dumps({**good, "requested_at": True}),
        orjson.dumps({**good, "reason": 17}),
    ]
    for raw in bad:
        with pytest.raises(er.NotAnErasure):
            decode(raw)
    assert decode(orjson.dumps({**good, "reason": None}))[1].reason == ""
    assert Erasure(T0, "").covers(T0) and not Erasure(T0, "").covers(T0 + 0.001)


def test_the_last_record_of_a_key_wins_and_a_tombstone_removes_it(caplog) -> None:
    bob = lead_id("bob@acme-corp.com")
    ann = lead_id("ann@acme-corp.com")
    records = [
        (0, 0, JANE.encode(), encode(JANE, Erasure(T0, "first"))),
        (1, 0, bob.encode(), encode(bob, Erasure(T0, "bob"))),
        (0, 1, b"x", b'{"format": 1, "lead_id": "jane@acme-corp.com", "requested_at": 1}'),
        (0, 2, JANE.encode(), encode(JANE, Erasure(T0 + 60, "again"))),
        (1, 1, bob.encode(), None),  # a tombstone
        (2, 0, b"not-its-key", encode(ann, Erasure(T0, "ann"))),  # kept: it names ann
    ]
    with caplog.at_level(logging.WARNING, "leadrouter.erasures"):
        table = fold(records, "privacy.erasures")
    assert table == {JANE: Erasure(T0 + 60, "again"), ann: Erasure(T0, "ann")}
    skipped = [r.getMessage() for r in caplog.records]
    assert any("privacy.erasures[0] offset 1 skipped" in line for line in skipped)
    assert not any("jane@" in line for line in skipped)  # where, never what


class FakeConsumer:
    """What ReferenceReader uses of a confluent_kafka Consumer, over a list of records. It
    has no subscribe and no commit: calling either fails the test."""

    topics: ClassVar[dict[str, Any]] = {}
    records: ClassVar[list[tuple[int, int, bytes | None, bytes | None]]] = []
    made: ClassVar[list[FakeConsumer]] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.assigned: list[Any] = []
        self.closed = False
        self.given = False
        FakeConsumer.made.append(self)

    def list_topics(self, topic: str, timeout: float) -> Any:
        return SimpleNamespace(topics={t: m for t, m in self.topics.items() if t == topic})

    def assign(self, tps: list[Any]) -> None:
        self.assigned = tps

    def get_watermark_offsets(self, tp: Any, timeout: float) -> tuple[int, int]:
        offsets = [o for p, o, _, _ in self.records if p == tp.partition]
        return (0, max(offsets) + 1 if offsets else 0)

    def consume(self, n: int, timeout: float) -> list[Any]:
        if self.given:
            return []
        self.given = True
        return [
            SimpleNamespace(
                error=lambda: None,
                partition=lambda p=p: p,
                offset=lambda o=o: o,
                key=lambda k=k: k,
                value=lambda v=v: v,
            )
            for p, o, k, v in self.records
        ]

    def position(self, tps: list[Any]) -> list[Any]:
        return []

    def close(self) -> None:
        self.closed = True


def settings_with(prefix: str = "") -> Any:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "LEADROUTER_TOPIC_PREFIX": prefix}
    return load_config(DEFAULT_CONFIG_DIR, env=env).settings


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> type[FakeConsumer]:
    from workers.runtime import reference

    monkeypatch.setattr(reference, "Consumer", FakeConsumer)
    FakeConsumer.made = []
    FakeConsumer.records = []
    FakeConsumer.topics = {}
    return FakeConsumer


def topic_meta(partitions: int = 2, error: Any = None) -> Any:
    return SimpleNamespace(partitions=dict.fromkeys(range(partitions)), error=error)


def test_read_erasures_reads_the_whole_topic_without_a_group(broker) -> None:
    broker.topics = {"p.privacy.erasures": topic_meta()}
    broker.records = [
        (0, 0, JANE.encode(), encode(JANE, Erasure(T0, REASON))),
        (1, 0, b"k", b"garbage"),
    ]
    assert read_erasures(settings_with("p.")) == {JANE: Erasure(T0, REASON)}
    [consumer] = broker.made
    assert [(tp.topic, tp.partition) for tp in consumer.assigned] == [
        ("p.privacy.erasures", 0),
        ("p.privacy.erasures", 1),
    ]
    assert consumer.conf["enable.auto.commit"] is False
    assert consumer.conf["isolation.level"] == "read_committed"
    assert consumer.closed


def test_a_missing_topic_is_no_erasures_but_an_unreadable_one_is_an_error(broker) -> None:
    unknown = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
    broker.topics = {"privacy.erasures": topic_meta(0, unknown)}
    assert read_erasures(settings_with()) == {}
    broker.topics = {}  # left out of the broker's answer altogether
    assert read_erasures(settings_with()) == {}
    denied = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    broker.topics = {"privacy.erasures": topic_meta(0, denied)}
    with pytest.raises(KafkaException):
        read_erasures(settings_with())
    assert all(c.closed for c in broker.made)


def test_the_history_modules_import_no_kafka_client() -> None:
    """The CLI imports `replay` (and so this) before it judges any argument."""
    code = (
        "import sys, workers.erasures, workers.replay, workers.report, workers.explain; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'confluent_kafka'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- explain
def invoke(monkeypatch: pytest.MonkeyPatch, args: list[str], erased: dict, records: list) -> Any:
    monkeypatch.setattr(er, "read_erasures", lambda settings: erased)
    monkeypatch.setattr(history, "plan", lambda *a, **kw: history.Plan(0.0, None, ()))
    monkeypatch.setattr(history, "read", lambda *a, **kw: iter(records))
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "LEADROUTER_TOPIC_PREFIX": "p."}
    return CliRunner().invoke(leadrouter, args, env=env)


def test_explain_says_when_a_lead_was_erased_and_shows_nothing_of_it(monkeypatch) -> None:
    assert erased_text(JANE, Erasure(T0, REASON)) == (
        f"{JANE} was erased at 2026-11-02T09:00:00Z ({REASON}): nothing of this person is shown"
    )
    assert "(no reason given)" in erased_text(JANE, Erasure(T0, ""))
    # Routed before the erasure, still on the routed topic until its retention.
    records = [routed(JANE, "lead.assigned", -60), sales(JANE, "contacted", -30)]
    erased = {JANE: Erasure(T0, REASON)}
    for args in (["jane@acme-corp.com"], [JANE, "--json"], ["Jane@Acme-Corp.com"]):
        result = invoke(monkeypatch, ["explain", *args], erased, records)
        assert result.exit_code == 1, result.output
        assert result.output == erased_text(JANE, erased[JANE]) + "\n"
        assert "Jane" not in result.output and "acme" not in result.output.lower()


def test_explain_shows_a_lead_that_was_not_erased(monkeypatch) -> None:
    records = [routed(JANE, "lead.assigned", 10), sales(JANE, "contacted", 130)]
    erased = {lead_id("bob@acme-corp.com"): Erasure(T0 + 9999, REASON)}
    result = invoke(monkeypatch, ["explain", "jane@acme-corp.com"], erased, records)
    assert result.exit_code == 0, result.output
    assert f"lead {JANE}  jane@acme-corp.com" in result.output
    assert "speed to lead" in result.output and "erased" not in result.output


# --------------------------------------------------------------------------- report
def erased_collector() -> Collector:
    """E erased at T0 + 100: its routing, hand-out and first touches before that are left
    out; it came back at T0 + 300 (a new lead, which counts). A is never erased."""
    c = Collector(mql_threshold=60, erasures={"E": Erasure(T0 + 100, REASON)})
    c.add_routed(routed_value("A", routed_s=0))
    c.add_activity(act("A", "contacted", 60))
    c.add_routed(routed_value("E", total=90, grade="A", routed_s=0))
    c.add_routed(routed_value("E", event="lead.reassigned", routed_s=0, rep="ben.carter"))
    c.add_activity(act("E", "contacted", 20))
    c.add_activity(act("E", "won", 100))  # at the very moment of the erasure: left out
    c.add_routed(routed_value("E", total=40, grade="C", routed_s=300, queue="smb"))
    c.add_activity(act("E", "contacted", 400))
    return c


def test_report_leaves_out_an_erased_leads_records_from_before_its_erasure() -> None:
    report = erased_collector().report(since=T0 - 60, until=T0 + 7200, judged_at=T0 + 7200)
    assert report["erased_leads_left_out"] == 1
    assert report["leads"] == 2  # A, and E's new lead after the erasure
    assert report["repeated_assignments"] == 0
    assert report["routed_events"] == {"lead.assigned": 2}  # the reassignment left out
    totals = report["totals"]
    assert (totals["won"], totals["opportunities"], totals["reassigned"]) == (0, 0, 0)
    by_queue = {row["queue"]: row for row in report["by_queue"]}
    assert by_queue["smb"]["leads"] == 1 and by_queue["smb"]["contacted"] == 1
    assert by_queue["smb"]["speed_to_lead_p50_s"] == 100.0  # 400 - 300: the new lead's
    assert by_queue["fast-lane"]["leads"] == 1  # A only
    assert [r["grade"] for r in report["by_grade"]] == ["B", "C"]
    assert report["records"] == {"leads.routed": 4, "sales.activities": 4}  # read, all


def test_report_leaves_out_an_erased_leads_record_it_cannot_place() -> None:
    c = Collector(mql_threshold=60, erasures={"E": Erasure(T0 + 100, REASON)})
    activity = orjson.loads(routed_value("E", event="lead.activity"))
    del activity["routed_at"]
    c.add_routed(orjson.dumps(activity))  # no routed_at and no record time
    c.add_routed(orjson.dumps(activity), stamp=T0 + 200)  # after the erasure: counted
    report = c.report(since=T0 - 60, until=T0 + 7200, judged_at=T0 + 7200)
    assert report["erased_leads_left_out"] == 1
    assert report["routed_events"] == {"lead.activity": 1}


def test_report_without_erasures_counts_everyone() -> None:
    plain = Collector(mql_threshold=60)
    for name in ("A", "E"):
        plain.add_routed(routed_value(name))
    report = plain.report(since=T0 - 60, until=T0 + 7200, judged_at=T0 + 7200)
    assert report["erased_leads_left_out"] == 0 and report["leads"] == 2


def test_report_reads_the_erasures_and_places_records_without_a_time(monkeypatch) -> None:
    config = load_config(DEFAULT_CONFIG_DIR, env={"LEADROUTER_TOPIC_PREFIX": "p."})
    ms = int(T0 * 1000)
    activity = orjson.loads(routed_value("E", event="lead.activity"))
    del activity["routed_at"]  # placed by the record's time, then
    records = [
        Msg("p.leads.routed.fast-lane", b"E", routed_value("E"), ms),
        Msg("p.leads.routed.fast-lane", b"E", orjson.dumps(activity), ms + 50_000),
        Msg("p.leads.routed.fast-lane", b"E", orjson.dumps(activity), ms + 150_000),
        Msg("p.sales.activities", b"E", act("E", "contacted", 30), ms),
        Msg("p.leads.routed.fast-lane", b"A", routed_value("A"), ms),
    ]
    erased = {"E": Erasure(T0 + 100, REASON)}
    monkeypatch.setattr(er, "read_erasures", lambda settings: erased)
    planned = history.Plan(T0 - 60, T0 + 7200, (), total=len(records))
    monkeypatch.setattr(history, "plan", lambda *a, **kw: planned)
    monkeypatch.setattr(history, "read", lambda *a, **kw: iter(records))
    report = report_mod.build(config, T0 - 60, T0 + 7200)
    assert report["erased_leads_left_out"] == 1 and report["leads"] == 1
    assert report["routed_events"] == {"lead.assigned": 1, "lead.activity": 1}
    assert report["totals"]["contacted"] == 0
    out = StringIO()
    report_mod.render_terminal(report, Console(file=out, width=400))
    assert "1 erased leads left out" in out.getvalue()


# --------------------------------------------------------------------------- replay
def typed(topic: str, at_s: float, **value: Any) -> InputRecord:
    value = {"event_id": f"{topic}-{at_s}", "occurred_at": iso(at_s), **value}
    return InputRecord(topic, None, orjson.dumps(value), int(at_s * 1000))


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


@pytest.fixture
def base(tmp_path: Path) -> Any:
    return config_at(always_open_config(tmp_path / "base"))


def test_replay_leaves_out_an_erased_persons_events_from_before_the_erasure(base) -> None:
    sam, kim = "sam.gone@initech-example.com", "kim.here@initech-example.com"
    erased_at = START + 100
    records = [
        form_fill("Sam.Gone@Initech-Example.com", START, "f-1"),  # the same person
        typed(cat.EMAIL_EVENTS, START + 10, email=sam, type="reply"),
        typed(cat.AD_CLICKS, START + 20, email=sam, platform="google", click_id="c-1"),
        typed(cat.AD_CLICKS, START + 30, platform="google", click_id="c-2", anonymous_id="a-9"),
        typed(cat.SALES_ACTIVITIES, START + 40, lead_id=lead_id(sam), type="contacted"),
        form_fill(kim, START + 50, "f-2"),
        form_fill(sam, erased_at, "f-3"),  # at the erasure's very moment: left out
    ]
    erasures = {lead_id(sam): Erasure(erased_at, REASON)}
    report, rp = run(base, base, records, START + 600, erasures=erasures)
    assert report["baseline"]["erased_events_left_out"] == 5
    assert report["events"] == 2  # the anonymous click and kim's form fill
    assert rp.facts.per_topic == {cat.AD_CLICKS: 1, cat.FORM_FILLS: 1}
    side = rp.sides[0]
    assert side.routings.get(lead_id(sam)) == []
    assert report["leads"] == 1 and report["baseline"]["routed"] == 1  # kim
    # Without the erasure, sam is routed (the fast lane: a demo request).
    plain, _ = run(base, base, records, START + 600)
    assert plain["baseline"]["erased_events_left_out"] == 0 and plain["events"] == 7
    assert plain["leads"] == 2 and plain["baseline"]["routed"] == 2


def test_replay_counts_expiry_timers_as_no_lead(base) -> None:
    """The worker keeps an expiry timer per lead and visitor in its state (`x:` keys)."""
    assert EXPIRY in replay_mod.NOT_LEADS
    assert base.settings.personal_data.expire_after_days > 0
    records = [form_fill(f"p{i}@initech-example.com", START + i, f"f-{i}") for i in range(3)]
    report, _ = run(base, base, records, START + 60)
    assert report["leads"] == 3


def test_a_person_who_came_back_after_the_erasure_is_a_new_lead(base) -> None:
    sam = "sam.back@initech-example.com"
    records = [form_fill(sam, START, "f-1"), form_fill(sam, START + 200, "f-2")]
    erasures = {lead_id(sam): Erasure(START + 100, REASON)}
    report, rp = run(base, base, records, START + 600, erasures=erasures)
    assert report["baseline"]["erased_events_left_out"] == 1 and report["events"] == 1
    routings = rp.sides[0].routings.get(lead_id(sam))
    assert routings and {r["trigger_event_id"] for r in routings} == {"f-2"}


def changed_sample(base_dir: Path, tmp_path: Path, erasures: dict | None) -> dict[str, Any]:
    cand = config_at(threshold(always_open_config(tmp_path / "cand"), 75))
    base = config_at(base_dir)
    traffic = simulated(base, 3000)
    report, _ = run(base, cand, traffic, START + 60, sample=10_000, erasures=erasures)
    return report


def test_the_changed_sample_never_shows_an_erased_person(tmp_path: Path) -> None:
    base_dir = always_open_config(tmp_path / "base")
    plain = changed_sample(base_dir, tmp_path / "1", None)
    first = plain["changed"][0]
    gone = first["lead_id"]
    # Erased after the stretch: all of the person's events are left out.
    after = changed_sample(base_dir, tmp_path / "2", {gone: Erasure(START + 3600, REASON)})
    assert after["baseline"]["erased_events_left_out"] > 0
    assert after["events"] == plain["events"] - after["baseline"]["erased_events_left_out"]
    assert gone not in {e["lead_id"] for e in after["changed"]}
    # Erased before the stretch: every event is a new lead's, replayed and counted, but the
    # person is still never shown.
    before = changed_sample(base_dir, tmp_path / "3", {gone: Erasure(START - 3600, REASON)})
    assert before["baseline"]["erased_events_left_out"] == 0 and before["events"] == plain["events"]
    assert before["changed_count"] == plain["changed_count"]
    assert [e["lead_id"] for e in before["changed"]] == [
        e["lead_id"] for e in plain["changed"] if e["lead_id"] != gone
    ]
    shown = orjson.dumps(before["changed"]).decode()
    assert gone not in shown and (first["email"] or gone) not in shown


def test_replayed_reads_the_erasures(base, monkeypatch) -> None:
    sam = "sam.gone@initech-example.com"
    records = [form_fill(sam, START, "f-1"), form_fill("kim@initech-example.com", START, "f-2")]
    planned = history.Plan(START, START + 60, (), total=len(records))
    monkeypatch.setattr(history, "plan", lambda *a, **kw: planned)
    monkeypatch.setattr(history, "read", lambda *a, **kw: iter(records))
    monkeypatch.setattr(replay_mod, "load_accounts", lambda config: AccountBook())
    monkeypatch.setattr(er, "read_erasures", lambda s: {lead_id(sam): Erasure(START, REASON)})
    with replay_mod.replayed(base, base, START, START + 60) as rp:
        report = rp.report()
    assert report["baseline"]["erased_events_left_out"] == 1 and report["events"] == 1
    summary = replay_mod.render_summary(report, rp.facts, START, START + 60)
    assert "1 events of erased people left out" in summary
    # Nothing but an erased person's events: nothing to replay, said so.
    monkeypatch.setattr(history, "read", lambda *a, **kw: iter(records[:1]))
    with (
        pytest.raises(click.UsageError, match="erased people's, from before their erasure"),
        replay_mod.replayed(base, base, START, START + 60),
    ):
        pass
