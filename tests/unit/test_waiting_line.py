"""Nobody left waiting, with a clock and no broker: a queue's waiting line handed out as reps
come in (oldest first, fairly, without a flood), and SLA breaches reassigned, then
escalated. The whole topology runs (every message encoded and decoded on the way)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.desk import Pipeline
from workers.core.identity import lead_id
from workers.settings import DEFAULT_CONFIG_DIR, load_config

# Sunday 2026-11-29 20:00 UTC: the fast lane's two reps (09:00-17:00 UTC, Mon-Fri) are off.
SUNDAY_EVENING = datetime(2026, 11, 29, 20, 0, tzinfo=UTC).timestamp()
MONDAY_NINE = datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp()
WEEKDAY = datetime(2026, 11, 25, 10, 0, tzinfo=UTC).timestamp()
MINUTE = 60.0


def config(tmp: Path, on_sla_breach: dict[str, Any] | None = None, **handout: Any):
    """The shipped configuration with a fast lane of two reps in UTC office hours."""
    target = tmp / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, target)
    reps_file, routing_file = target / "reps.yaml", target / "routing.yaml"
    reps = yaml.safe_load(reps_file.read_text())
    for rep_id in ("ana.silva", "ben.carter"):
        reps["reps"][rep_id].update(
            timezone="UTC",
            working_hours={
                "start": "09:00",
                "end": "17:00",
                "days": ["mon", "tue", "wed", "thu", "fri"],
            },
        )
    for rep_id in ("kai.andersen", "lena.fischer", "maya.patel"):  # mid-market: always in
        reps["reps"][rep_id].pop("out_of_office", None)
    reps_file.write_text(yaml.safe_dump(reps))
    routing = yaml.safe_load(routing_file.read_text())
    routing["queues"]["fast-lane"]["reps"] = ["ana.silva", "ben.carter"]
    if on_sla_breach is not None:
        routing["queues"]["fast-lane"]["on_sla_breach"] = on_sla_breach
    if handout:
        routing["handout"] = handout
    routing_file.write_text(yaml.safe_dump(routing))
    return load_config(target, env={})


def demo_request(line: Pipeline, n: int) -> str:
    email = f"buyer{n}@acme{n}.com"
    line.send(
        "form_fill",
        {
            "event_id": f"form-{n}",
            "occurred_at": datetime.fromtimestamp(line.now, UTC).isoformat(),
            "email": email,
            "form_id": "demo-request",
            "country": "US",
        },
    )
    return lead_id(email)


def contacted(line: Pipeline, lead: str, rep: str, n: int) -> None:
    line.send(
        "sales_activity",
        {
            "event_id": f"act-{n}",
            "occurred_at": datetime.fromtimestamp(line.now, UTC).isoformat(),
            "lead_id": lead,
            "type": "contacted",
            "rep_id": rep,
        },
    )


def events(line: Pipeline, kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(q, v) for q, _, v in line.published if v["event"] == kind]


def desk(line: Pipeline, queue: str = "fast-lane") -> dict[str, Any]:
    return line.state.data.get(f"q:{queue}") or {}


def test_waiting_leads_are_handed_out_when_the_first_working_day_begins(tmp_path: Path):
    line = Pipeline(config(tmp_path), SUNDAY_EVENING)
    leads = []
    for n in range(4):
        leads.append(demo_request(line, n))
        line.now += 10 * MINUTE
    first = events(line, "lead.assigned")
    assert [v["rep_id"] for _, v in first] == [None] * 4
    assert "waits in fast-lane's line (4 waiting)" in first[-1][1]["reason"]["trace"][-1]
    assert [e[0] for e in desk(line)["waiting"]] == leads
    assert line.facts.counts[("unassigned", "fast-lane", "no_rep_available")] == 4
    # The desk's timer is the reps' working day, not a poll: nothing happens overnight.
    line.advance(MONDAY_NINE - 1)
    assert len(events(line, "lead.assigned")) == 4
    line.advance(MONDAY_NINE)
    handed = events(line, "lead.assigned")[4:]
    assert [v["lead_id"] for _, v in handed] == leads  # oldest first
    assert [v["rep_id"] for _, v in handed] == ["ana.silva", "ben.carter"] * 2  # both, in turn
    assert all(v["routed_at"] == first[i][1]["routed_at"] for i, (_, v) in enumerate(handed))
    assert handed[0][1]["sla_due_at"].startswith("2026-11-30T09:05:00")
    assert handed[0][1]["reason"]["trace"][1] == "waited 13 h in fast-lane's line for a rep"
    waits = sorted(o[2] for o in line.facts.observed if o[0] == "waited")
    assert waits == [MONDAY_NINE - SUNDAY_EVENING - m * 10 * MINUTE for m in (3, 2, 1, 0)]
    assert "waiting" not in desk(line) and "wake" not in desk(line)
    assert desk(line)["reps"]["ana.silva"]["open"] == 2


def test_a_backlog_is_paced_so_the_first_reps_are_not_flooded(tmp_path: Path):
    line = Pipeline(config(tmp_path, per_rep=2, every_minutes=10), SUNDAY_EVENING)
    for n in range(7):
        demo_request(line, n)
    line.advance(MONDAY_NINE)
    assert [v["rep_id"] for _, v in events(line, "lead.assigned")[7:]] == [
        "ana.silva",
        "ben.carter",
    ] * 2
    assert len(desk(line)["waiting"]) == 3
    line.advance(MONDAY_NINE + 10 * MINUTE)
    assert len(events(line, "lead.assigned")) == 7 + 4 + 3
    assert "waiting" not in desk(line)


def test_a_new_lead_joins_the_end_of_the_line_and_lets_the_oldest_out(tmp_path: Path):
    line = Pipeline(config(tmp_path, per_rep=1, every_minutes=60), SUNDAY_EVENING)
    old = [demo_request(line, n) for n in range(4)]
    line.advance(MONDAY_NINE)  # one each: two still wait, for an hour
    assert [e[0] for e in desk(line)["waiting"]] == old[2:]
    line.now += MINUTE
    new = demo_request(line, 9)
    latest = {v["lead_id"]: v for _, v in events(line, "lead.assigned")[-2:]}
    assert latest[old[2]]["rep_id"] is not None
    assert latest[new]["rep_id"] is None
    assert "1 earlier leads wait in fast-lane" in latest[new]["reason"]["trace"][-2]
    assert [e[0] for e in desk(line)["waiting"]] == [old[3], new]


def test_a_lead_a_rep_takes_while_it_waits_leaves_the_line(tmp_path: Path):
    line = Pipeline(config(tmp_path), SUNDAY_EVENING)
    taken, other = demo_request(line, 1), demo_request(line, 2)
    line.now += 30 * MINUTE
    contacted(line, taken, "ben.carter", 1)
    assert [e[0] for e in desk(line)["waiting"]] == [other]
    assert desk(line)["reps"]["ben.carter"]["open"] == 1
    line.advance(MONDAY_NINE)
    assert [v["lead_id"] for _, v in events(line, "lead.assigned")[2:]] == [other]
    speed = [o for o in line.facts.observed if o[0] == "speed_to_lead"]
    assert speed == [("speed_to_lead", "fast-lane", 30 * MINUTE)]  # from routing, once


def test_a_breach_reassigns_then_escalates_after_n(tmp_path: Path):
    policy = {"action": "reassign", "max_reassignments": 1, "escalate_to": "mid-market"}
    line = Pipeline(config(tmp_path, policy), WEEKDAY)
    lead = demo_request(line, 1)
    ((_, assigned),) = events(line, "lead.assigned")
    assert assigned["rep_id"] == "ana.silva"
    line.advance(WEEKDAY + 5 * MINUTE)
    ((queue, moved),) = events(line, "lead.reassigned")
    assert (queue, moved["rep_id"], moved["previous_rep_id"]) == (
        "fast-lane",
        "ben.carter",
        "ana.silva",
    )
    assert moved["routed_at"] == assigned["routed_at"]
    assert moved["sla_due_at"].startswith("2026-11-25T10:10:00")
    assert (
        "SLA of fast-lane passed with no first touch by ana.silva: reassign"
        in moved["reason"]["trace"]
    )
    reps = desk(line)["reps"]
    assert (reps["ana.silva"]["open"], reps["ben.carter"]["open"]) == (0, 1)
    assert reps["ana.silva"]["day"][1] == 0 and reps["ben.carter"]["day"][1] == 1
    line.advance(WEEKDAY + 10 * MINUTE)
    escalated = events(line, "lead.reassigned")[1:]
    # Published to the new queue's rep and to the previous queue, whose rep loses it.
    assert [q for q, _ in escalated] == ["mid-market", "fast-lane"]
    assert escalated[0][1]["queue"] == "mid-market"
    assert escalated[0][1]["previous_rep_id"] == "ben.carter"
    assert escalated[0][1]["rep_id"] in ("kai.andersen", "lena.fischer", "maya.patel")
    assert desk(line)["reps"]["ben.carter"]["open"] == 0
    assert line.facts.counts[("sla_breach", "fast-lane")] == 1  # a lead breaches once
    assert line.facts.counts[("reassigned", "fast-lane", "reassign", "reassigned")] == 1
    assert line.facts.counts[("reassigned", "fast-lane", "escalate", "reassigned")] == 1
    assert line.state.data[lead]["queue"] == "mid-market"
    line.advance(WEEKDAY + 5 * 3600)  # mid-market notifies only: nothing more moves
    assert len(events(line, "lead.reassigned")) == 3


def test_a_first_touch_in_time_stops_the_escalation(tmp_path: Path):
    line = Pipeline(config(tmp_path, {"action": "reassign"}), WEEKDAY)
    lead = demo_request(line, 1)
    line.now += 4 * MINUTE
    contacted(line, lead, "ana.silva", 1)
    line.advance(WEEKDAY + 60 * MINUTE)
    assert events(line, "lead.reassigned") == []
    assert line.facts.counts[("sla_breach", "fast-lane")] == 0


def test_notify_counts_the_breach_and_moves_nothing(tmp_path: Path):
    line = Pipeline(config(tmp_path, {"action": "notify"}), WEEKDAY)
    demo_request(line, 1)
    line.advance(WEEKDAY + 60 * MINUTE)
    assert events(line, "lead.reassigned") == []
    assert line.facts.counts[("sla_breach", "fast-lane")] == 1


def test_nobody_to_reassign_to_leaves_the_lead_with_its_rep(tmp_path: Path):
    line = Pipeline(config(tmp_path, {"action": "reassign", "max_reassignments": 3}), WEEKDAY)
    lead = demo_request(line, 1)
    line.advance(WEEKDAY + 5 * MINUTE)  # to ben
    line.advance(WEEKDAY + 10 * MINUTE)  # both have had it: nobody left
    assert [v["rep_id"] for _, v in events(line, "lead.reassigned")] == ["ben.carter"]
    assert line.state.data[lead]["rep"] == "ben.carter"
    assert line.facts.counts[("reassigned", "fast-lane", "reassign", "nobody_available")] == 1


@pytest.mark.parametrize(
    "policy, problem",
    [
        ({"action": "escalate"}, "escalate needs escalate_to"),
        ({"action": "escalate", "escalate_to": "nowhere"}, "unknown queue 'nowhere'"),
        ({"action": "escalate", "escalate_to": "fast-lane"}, "cannot escalate to itself"),
    ],
)
def test_escalation_targets_are_checked(tmp_path: Path, policy, problem):
    from workers.settings import ConfigError

    with pytest.raises(ConfigError) as failed:
        config(tmp_path, policy)
    assert any(problem in str(p) and "on_sla_breach" in str(p) for p in failed.value.problems)


def test_an_escalation_cycle_is_refused(tmp_path: Path):
    from workers.settings import ConfigError

    target = tmp_path / "cycle"
    shutil.copytree(DEFAULT_CONFIG_DIR, target)
    routing = yaml.safe_load((target / "routing.yaml").read_text())
    routing["queues"]["smb"]["on_sla_breach"] = {"action": "escalate", "escalate_to": "mid-market"}
    routing["queues"]["mid-market"]["on_sla_breach"] = {"action": "escalate", "escalate_to": "smb"}
    (target / "routing.yaml").write_text(yaml.safe_dump(routing))
    with pytest.raises(ConfigError) as failed:
        load_config(target, env={})
    assert any("cycle" in str(p) for p in failed.value.problems)


def test_config_show_says_what_a_breach_does(tmp_path: Path):
    from workers.routing_view import build_view, render_text

    policy = {"action": "reassign", "max_reassignments": 2, "escalate_to": "mid-market"}
    text = render_text(build_view(config(tmp_path, policy), datetime.now(UTC)))
    assert (
        "on an SLA breach: reassigned to the next available rep of the queue, at most 2 "
        "times, then escalated to mid-market"
    ) in text
    assert text.count("on an SLA breach") == 1  # the other queues only count a breach


def test_overnight_the_desk_wakes_when_a_rep_may_come_in_not_every_round(tmp_path: Path):
    line = Pipeline(config(tmp_path), SUNDAY_EVENING)
    demo_request(line, 1)
    midnight = datetime(2026, 11, 30, 0, 0, tzinfo=UTC).timestamp()
    assert desk(line)["wake"] == midnight  # a new day for the reps (UTC): not 20:05
    line.advance(midnight)
    assert desk(line)["wake"] == MONDAY_NINE  # then their working day


def test_a_lead_rejected_while_it_waits_leaves_the_line(tmp_path: Path):
    line = Pipeline(config(tmp_path), SUNDAY_EVENING)
    spam, other = demo_request(line, 1), demo_request(line, 2)
    line.send(
        "sales_activity",
        {
            "event_id": "reject-1",
            "occurred_at": datetime.fromtimestamp(line.now, UTC).isoformat(),
            "lead_id": spam,
            "type": "rejected",
        },
    )
    assert [e[0] for e in desk(line)["waiting"]] == [other]
    line.advance(MONDAY_NINE)
    assert [v["lead_id"] for _, v in events(line, "lead.assigned")[2:]] == [other]


def test_a_lead_routed_again_after_it_was_lost_is_escalated_like_a_new_one(tmp_path: Path):
    policy = {"action": "reassign", "max_reassignments": 1}
    line = Pipeline(config(tmp_path, policy), WEEKDAY)
    lead = demo_request(line, 1)
    contacted(line, lead, "ana.silva", 1)
    line.send(
        "sales_activity",
        {
            "event_id": "lost-1",
            "occurred_at": datetime.fromtimestamp(line.now, UTC).isoformat(),
            "lead_id": lead,
            "type": "lost",
            "rep_id": "ana.silva",
        },
    )
    line.now = line.now + 35 * 86400  # past the 30-day recycle period: Wednesday, 10:00
    line.send(
        "form_fill",
        {
            "event_id": "form-again",
            "occurred_at": datetime.fromtimestamp(line.now, UTC).isoformat(),
            "email": "buyer1@acme1.com",
            "form_id": "demo-request",
        },
    )
    again = [v for _, v in events(line, "lead.assigned") if v["lead_id"] == lead]
    assert len(again) == 2
    line.advance(line.now + 5 * MINUTE)
    moved = [v for _, v in events(line, "lead.reassigned") if v["lead_id"] == lead]
    assert [v["previous_rep_id"] for v in moved] == [again[1]["rep_id"]]
    assert line.facts.counts[("sla_breach", "fast-lane")] == 1


def test_a_first_touch_that_beats_the_reassignment_keeps_every_count(tmp_path: Path):
    """The SLA fired and the desk chose ben; ana's call reaches the lead before the answer.
    The lead stays ana's; ben's count is taken back; ana's was never touched. A message
    delivered twice (at_least_once) changes nothing more."""
    line = Pipeline(config(tmp_path, {"action": "reassign"}), WEEKDAY)
    lead = demo_request(line, 1)
    line.now += 5 * MINUTE
    request = sla_reassign(line, lead)
    first = line.handle("q:fast-lane", request).internal
    assert line.handle("q:fast-lane", request).internal == []  # redelivered: nothing again
    ((_, handed),) = first
    assert handed.rep == "ben.carter"
    contacted(line, lead, "ana.silva", 1)
    ((desk_key, withdraw),) = line.handle(lead, handed).internal
    assert (withdraw.rep, withdraw.at) == ("ben.carter", handed.at)
    line.handle(desk_key, withdraw)
    line.handle(desk_key, withdraw)  # redelivered: taken back once
    reps = desk(line)["reps"]
    assert (reps["ana.silva"]["open"], reps["ana.silva"]["day"][1]) == (1, 1)
    assert (reps["ben.carter"]["open"], reps["ben.carter"]["day"][1]) == (0, 0)
    assert line.state.data[lead]["rep"] == "ana.silva"
    assert events(line, "lead.reassigned") == []


def sla_reassign(line: Pipeline, lead: str):
    from workers.core import sla

    return sla.reassign(line.state.data[lead], "fast-lane", "reassign")
