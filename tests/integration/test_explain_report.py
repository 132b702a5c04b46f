"""`leadrouter explain` and `leadrouter report` on the reference broker, against what a real
worker published: simulator traffic goes through `leadrouter worker`, the simulated sales
team answers the routed leads on `sales.activities` (with a few broken records a careless
sales tool might write), and both commands run as subprocesses, as an operator runs them.
Their output is checked against the records on the topics: exact counts, a lead's trace,
and exit statuses 1 (no such lead) and 2 (bad arguments)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Lane
from tests.integration.test_pipeline import ROUTED
from tests.support.worker import LEADROUTER, patience
from topics import catalogue as cat
from workers.settings import load_config
from workers.simulate import SalesTeam, Traffic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

EVENTS = 600  # sent in rounds of this many until MIN_ASSIGNED leads are routed
MIN_ASSIGNED = 20
UNTIL_AHEAD = 2 * 3600  # the report's end: past every fast-lane SLA, before mid-market's


def leadrouter(lane, *args: str, prefix: str | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": lane.bootstrap,
        "LEADROUTER_TOPIC_PREFIX": lane.prefix if prefix is None else prefix,
        "LEADROUTER_GROUP_ID": lane.group,
    }
    return subprocess.run(
        [str(LEADROUTER), *args, "--config", str(lane.config_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=patience(120),
    )


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


def when(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


@pytest.fixture(scope="module")
def lane(kafka_broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lane]:
    """One lane for the module: the history is built once and read by every test."""
    lane = Lane(kafka_broker, tmp_path_factory.mktemp("explain-report"))
    try:
        yield lane
    finally:
        lane.close()


@pytest.fixture(scope="module")
def history(lane: Lane) -> SimpleNamespace:
    """A worker routes simulator traffic; the sales team answers; returns what is on the
    routed topics and on sales.activities once the worker has processed everything."""
    config = load_config(
        lane.config_dir,
        env={"KAFKA_BOOTSTRAP_SERVERS": lane.bootstrap, "LEADROUTER_TOPIC_PREFIX": lane.prefix},
    )
    lane.worker().start()
    since = time.time() - 1
    producer = lane.topics.producer
    traffic = Traffic(config, seed=11, malformed_share=0.02)
    sent = 0
    while True:  # enough routed leads for every kind of answer (600 events once gave 19)
        for topic, key, value in traffic.stream(EVENTS):
            producer.send(topic, value=value, key=key)
        sent += EVENTS
        lane.topics.flush()
        lane.topics.wait_processed(lane.group, patience(120))
        routed = lane.topics.read(
            ROUTED, lambda r: len(r) > 0, patience(60), "routed leads", drain=True
        )
        leads = [orjson.loads(r.value) for r in routed]
        assigned = [v for v in leads if v["event"] == "lead.assigned"]
        if len(assigned) >= MIN_ASSIGNED or sent >= 5 * EVENTS:
            break
    assert len(assigned) >= MIN_ASSIGNED, f"only {len(assigned)} leads routed from {sent} events"

    team = SalesTeam(config, seed=11, delay_scale=0.0001)
    now = time.time()
    for value in assigned:
        team.on_routed(
            SimpleNamespace(
                event=value["event"],
                lead_id=value["lead_id"],
                rep_id=value["rep_id"],
                queue=value["queue"],
                source=SimpleNamespace(utm_source=value["source"]["utm_source"]),
            ),
            now,
        )
    activities = [
        {
            "event_id": a.event_id,
            "occurred_at": a.occurred_at,
            "lead_id": a.lead_id,
            "type": a.type,
            "rep_id": a.rep_id,
        }
        for a in team.due(now + 10 * 86400)
    ]
    assert {a["type"] for a in activities} >= {"contacted", "opportunity_created"}
    for a in activities:
        lane.topics.send(cat.SALES_ACTIVITIES, a, key=a["lead_id"].encode())
    called = {**activities[0], "type": "called", "event_id": "x1"}  # not a type we know
    broken = [
        b"not json",
        b'{"lead_id": "ld_1", "type": "contacted", "occurred_at": ',
        orjson.dumps(called),
    ]
    for raw in broken:
        lane.topics.send(cat.SALES_ACTIVITIES, raw)
    lane.topics.flush()
    lane.topics.wait_processed(lane.group, patience(120))
    routed = lane.topics.read(ROUTED, lambda r: True, patience(60), "routed", drain=True)
    sales = lane.topics.read(
        [cat.SALES_ACTIVITIES],
        lambda r: len(r) >= len(activities) + len(broken),
        patience(60),
        "every sales activity",
        drain=True,
    )
    assert len(sales) == len(activities) + len(broken)
    return SimpleNamespace(
        config=config,
        since=since,
        routed=routed,
        leads=[orjson.loads(r.value) for r in routed],
        activities=activities,
        called=called,
        sales_records=len(sales),
    )


def expected_report(history: SimpleNamespace, until: float) -> dict[str, Any]:
    """The report's numbers worked out here from the records on the topics, plainly."""
    first: dict[str, dict[str, Any]] = {}
    for value in history.leads:
        if value["event"] == "lead.assigned":
            first.setdefault(value["lead_id"], value)
    contact: dict[str, float] = {}
    opportunity, won = set(), set()
    for a in history.activities:
        at = when(a["occurred_at"])
        if a["type"] in ("contacted", "meeting_booked"):
            contact[a["lead_id"]] = min(at, contact.get(a["lead_id"], math.inf))
        if a["type"] in ("opportunity_created", "won"):
            opportunity.add(a["lead_id"])
        if a["type"] == "won":
            won.add(a["lead_id"])
    per_queue: dict[str, dict[str, Any]] = {}
    speeds: list[float] = []
    breaches = 0
    for lead_id, v in first.items():
        q = per_queue.setdefault(v["queue"], {"leads": 0, "contacted": 0, "sla_breaches": 0})
        q["leads"] += 1
        due, got = when(v["sla_due_at"]), contact.get(lead_id)
        if got is not None:
            q["contacted"] += 1
            speeds.append(max(0.0, got - when(v["routed_at"])))
        if due is not None and due <= until and (got is None or got > due):
            q["sla_breaches"] += 1
            breaches += 1
    speeds.sort()
    return {
        "leads": len(first),
        "contacted": sum(1 for lead_id in first if lead_id in contact),
        "sla_breaches": breaches,
        "opportunities": len(opportunity & set(first)),
        "won": len(won & set(first)),
        "p50": round(speeds[math.ceil(0.5 * len(speeds)) - 1], 3),
        "p90": round(speeds[math.ceil(0.9 * len(speeds)) - 1], 3),
        "per_queue": per_queue,
        "repeats": sum(1 for v in history.leads if v["event"] == "lead.assigned") - len(first),
    }


def test_report_json_matches_the_topics(lane, history, tmp_path: Path) -> None:
    until = time.time() + UNTIL_AHEAD
    out, page = tmp_path / "report.json", tmp_path / "report.html"
    done = leadrouter(
        lane,
        "report",
        "--since",
        iso(history.since),
        "--until",
        iso(until),
        "--json",
        str(out),
        "--html",
        str(page),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    want = expected_report(history, until)
    assert report["events"] == len(history.routed) + history.sales_records
    assert report["leads"] == want["leads"]
    assert report["repeated_assignments"] == want["repeats"]
    totals = report["totals"]
    assert (
        totals["leads"],
        totals["contacted"],
        totals["sla_breaches"],
        totals["opportunities"],
        totals["won"],
    ) == (
        want["leads"],
        want["contacted"],
        want["sla_breaches"],
        want["opportunities"],
        want["won"],
    )
    assert want["sla_breaches"] > 0  # the sales team forgets some fast-lane leads
    assert (totals["speed_to_lead_p50_s"], totals["speed_to_lead_p90_s"]) == (
        want["p50"],
        want["p90"],
    )
    queues = {
        r["queue"]: {k: r[k] for k in ("leads", "contacted", "sla_breaches")}
        for r in report["by_queue"]
    }
    assert queues == want["per_queue"]
    for view in ("by_source", "by_channel", "by_campaign", "by_grade", "by_score_band"):
        assert sum(r["leads"] for r in report[view]) == want["leads"], view
    assert [r["band"] for r in report["by_score_band"] if r["mql_threshold_in_band"]] == ["60-70"]
    # The broken records a sales tool wrote are counted, not fatal.
    assert report["malformed"] == {
        "total": 3,
        "by_reason": {"invalid_json": 2, "invalid_value": 1},
        "by_topic": {"sales.activities": {"invalid_json": 2, "invalid_value": 1}},
    }
    # The terminal tables, and the page with its four charts.
    assert f"{want['leads']} leads routed" in done.stdout
    assert "◀ MQL 60" in done.stdout
    html = page.read_text()
    assert html.count('<svg class="chart"') == 4 and "mql-line" in html


def test_explain_shows_a_leads_decisions_and_sales_answers(lane, history) -> None:
    # The lead whose sales answers include the record of a type the worker does not know.
    answered = {history.called["lead_id"]}
    lead = next(
        v for v in history.leads if v["event"] == "lead.assigned" and v["lead_id"] in answered
    )
    done = leadrouter(lane, "explain", lead["email"].upper(), "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["lead_id"] == lead["lead_id"]
    on_topics = [v for v in history.leads if v["lead_id"] == lead["lead_id"]]
    answers = [a for a in [*history.activities, history.called] if a["lead_id"] == lead["lead_id"]]
    events = shown["events"]
    assert sorted(orjson.dumps(e["value"], option=orjson.OPT_SORT_KEYS) for e in events) == (
        sorted(orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in on_topics + answers)
    )
    assert events[0]["kind"] == "routed" and events[0]["value"] == on_topics[0]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert shown["events"][0]["value"]["reason"]["trace"] == lead["reason"]["trace"]

    text = leadrouter(lane, "explain", lead["lead_id"])
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"lead {lead['lead_id']}  {lead['email']}\n")
    assert f"lead.assigned  {lead['queue']} -> {lead['rep_id'] or 'unassigned'}" in text.stdout
    for step in lead["reason"]["trace"]:
        assert step in text.stdout
    assert f"score {lead['score']['total']} (fit {lead['score']['fit']}" in text.stdout
    assert "sales contacted" in text.stdout
    assert "sales called by" in text.stdout
    assert "not an activity type the worker knows" in text.stdout


def test_not_found_and_bad_arguments(lane, history) -> None:
    nobody = leadrouter(lane, "explain", "nobody@example.org")
    assert nobody.returncode == 1
    assert "leadrouter: no lead ld_" in nobody.stderr
    assert "(nobody@example.org) was routed in the topics' history" in nobody.stderr
    # A lead that was routed, but before --since.
    lead = history.leads[0]
    later = leadrouter(lane, "explain", lead["lead_id"], "--since", "now")
    assert later.returncode == 1 and f"no lead {lead['lead_id']} was routed since" in later.stderr

    empty = leadrouter(lane, "report", "--since", "2020-01-01", "--until", "2020-01-02")
    assert empty.returncode == 2
    assert empty.stderr.splitlines()[-1] == (
        "Error: nothing on the routed topics or sales.activities between 2020-01-01T00:00:00Z "
        "and 2020-01-02T00:00:00Z: check --since/--until (and the topic prefix)"
    )
    for args in (["report", "--since", "1h"], ["explain", "nobody@example.org"]):
        unknown = leadrouter(lane, *args, prefix="no-such-prefix.")
        assert unknown.returncode == 2, unknown.stderr
        last = unknown.stderr.splitlines()[-1]
        assert last.startswith("Error: the broker has no topics no-such-prefix.leads.routed.")
        assert last.endswith(
            "is the topic prefix right (kafka.topic_prefix, LEADROUTER_TOPIC_PREFIX)? "
            "`leadrouter topics apply` creates the catalogue's topics"
        )
    backwards = leadrouter(lane, "report", "--since", "1h", "--until", "2h")
    assert backwards.returncode == 2 and "must be after --since" in backwards.stderr
