"""A person's data, without a broker, through the whole topology with every message encoded:
an erasure removes everything that names the person (lead, visitor records, SLA timer,
waiting-line entry), keeps only the lead id and the time, drops older events of the person
and lets a later one start a new lead; expiry removes an idle lead or visitor at its time."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import yaml

from tests.support.desk import Pipeline
from topics import catalogue as cat
from topics.messages import Assign, Assigned
from workers.core import privacy
from workers.core.identity import lead_id
from workers.core.privacy import EXPIRY, expiry_key, idle_before
from workers.core.topology import InputRecord
from workers.settings import DEFAULT_CONFIG_DIR, load_config

NOW = 1_796_000_000.0
EMAIL = "ana.persona@acme-corp.com"
LEAD = lead_id(EMAIL)
PERSONAL = (EMAIL, "Ana", "Persona", "+49 30 1234567", "VP Marketing")


def config(tmp_path: Path, expire_days: float = 365, away: bool = False):
    target = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, target, dirs_exist_ok=True)
    reps = yaml.safe_load((target / "reps.yaml").read_text())
    for rep in reps["reps"].values():
        rep.pop("working_hours", None)
        rep["out_of_office"] = [{"from": "2026-01-01", "to": "2027-12-31"}] if away else []
        if not away:
            rep.pop("out_of_office")
    (target / "reps.yaml").write_text(yaml.safe_dump(reps))
    settings = yaml.safe_load((target / "settings.yaml").read_text())
    settings["personal_data"] = {"expire_after_days": expire_days}
    (target / "settings.yaml").write_text(yaml.safe_dump(settings))
    return load_config(target, env={})


def iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat()


def form(n: int, at: float, **extra) -> dict:
    return {
        "event_id": f"f{n}",
        "occurred_at": iso(at),
        "email": EMAIL,
        "form_id": "demo-request",
        "first_name": "Ana",
        "last_name": "Persona",
        "phone": "+49 30 1234567",
        "job_title": "VP Marketing",
        "anonymous_id": "v-ana",
        **extra,
    }


def click(n: int, at: float) -> dict:
    return {
        "event_id": f"c{n}",
        "occurred_at": iso(at),
        "platform": "linkedin",
        "click_id": f"li-{n}",
        "anonymous_id": "v-ana",
    }


def forget(line: Pipeline, at: float, lead: str = LEAD) -> None:
    value = {"format": 1, "lead_id": lead, "requested_at": at, "reason": "art. 17 #1"}
    record = InputRecord(line.prefix + cat.ERASURES, lead.encode(), orjson.dumps(value))
    out = line.topology.run([record], line.state_of, line.now)
    line.published += out.published
    line.invalid += [letter.reason for letter in out.dead_letters]


def expire(line: Pipeline) -> None:
    """The expiry timers due by now, as the worker finds them between batches."""
    end = idle_before(line.now - line.topology.ctx.expire_after)
    due = sorted(k for k in line.state.data if EXPIRY <= k < end)
    out = line.topology.run([], line.state_of, line.now, due=[(0, k) for k in due])
    line.published += out.published


def names_anyone(line: Pipeline) -> list[str]:
    text = orjson.dumps(line.state.data).decode()
    return [p for p in PERSONAL if p in text] + (["v-ana"] if "v-ana" in text else [])


def test_an_erasure_removes_everything_that_names_the_person(tmp_path) -> None:
    line = Pipeline(config(tmp_path), NOW)
    line.send("ad_click", click(1, NOW - 60))
    line.send("form_fill", form(1, NOW))
    ((queue, _, routed),) = line.published
    assert routed["rep_id"] and "Ana" in orjson.dumps(routed).decode()
    assert f"s:{LEAD}" in line.state.data and names_anyone(line)
    desk = line.state.data[f"q:{queue}"]
    open_before = desk["reps"][routed["rep_id"]]["open"]
    line.now = NOW + 30
    forget(line, NOW + 30)
    assert names_anyone(line) == []
    assert line.state.data[LEAD] == {"id": LEAD, "state": "erased", "erased_at": NOW + 30}
    assert f"s:{LEAD}" not in line.state.data and "v:v-ana" not in line.state.data
    # Counts that name no one stay; the lead's open load is released from its rep.
    assert line.state.data[f"q:{queue}"]["reps"][routed["rep_id"]]["open"] == open_before - 1
    assert line.facts.counts[("erasure",)] == 1


def test_older_events_are_dropped_and_a_later_one_is_a_new_lead(tmp_path) -> None:
    line = Pipeline(config(tmp_path), NOW)
    line.send("form_fill", form(1, NOW))
    line.now = NOW + 60
    forget(line, NOW + 60)
    routed_before = len(line.published)
    # A redelivery and a late event from before the erasure: dropped and counted.
    line.send("form_fill", form(1, NOW))
    line.send(
        "email_event",
        {"event_id": "e1", "occurred_at": iso(NOW + 10), "email": EMAIL, "type": "click"},
    )
    activity = {
        "event_id": "s1",
        "occurred_at": iso(NOW + 20),
        "lead_id": LEAD,
        "type": "contacted",
        "rep_id": "x",
    }
    line.send("sales_activity", activity)
    assert len(line.published) == routed_before and names_anyone(line) == []
    assert line.facts.counts[("erased_event", "form")] == 1
    assert line.facts.counts[("erased_event", "email")] == 1
    assert line.facts.counts[("erased_event", "sales")] == 1
    # A form fill after the erasure: a new lead, routed again, knowing nothing of before.
    line.now = NOW + 120
    line.send("form_fill", form(2, NOW + 120))
    (_, _, again) = line.published[-1]
    assert again["event"] == "lead.assigned" and again["trigger_event_id"] == "f2"
    assert line.state.data[LEAD]["erased_at"] == NOW + 60
    assert line.state.data[LEAD]["seen"] == [line.state.data[LEAD]["seen"][0]]
    # ... and an old event still cannot come back into it.
    line.send("form_fill", form(1, NOW))
    assert line.facts.counts[("erased_event", "form")] == 2


def test_a_waiting_lead_leaves_its_line_when_erased(tmp_path) -> None:
    line = Pipeline(config(tmp_path, away=True), NOW)
    line.send("form_fill", form(1, NOW))
    ((queue, _, routed),) = line.published
    assert routed["rep_id"] is None
    assert [e[0] for e in line.state.data[f"q:{queue}"]["waiting"]] == [LEAD]
    forget(line, NOW + 5)
    assert line.state.data[f"q:{queue}"]["waiting"] == []


def test_an_erasure_request_that_is_none_goes_to_dead_letters(tmp_path) -> None:
    line = Pipeline(config(tmp_path), NOW)
    forget(line, NOW, lead="someone@example.com")
    record = InputRecord(line.prefix + cat.ERASURES, b"k", b"{not json")
    out = line.topology.run([record], line.state_of, line.now)
    assert line.invalid == ["invalid_value"]
    assert [d.reason for d in out.dead_letters] == ["invalid_json"]


def test_an_idle_lead_and_its_visitor_expire_at_their_time(tmp_path) -> None:
    day = 86400.0
    line = Pipeline(config(tmp_path, expire_days=2), NOW)
    line.send("ad_click", click(1, NOW))
    line.send("form_fill", form(1, NOW + 3600))
    assert {k: v["keys"] for k, v in line.state.data.items() if k.startswith(EXPIRY)} == {
        expiry_key(NOW): ["v:v-ana"],
        expiry_key(NOW + 3600): [LEAD],
    }
    # A touch a day later: nothing is rewritten now; the timer moves when it comes due.
    line.now = NOW + day
    line.send(
        "email_event",
        {"event_id": "e1", "occurred_at": iso(NOW + day), "email": EMAIL, "type": "open"},
    )
    line.now = NOW + 2 * day + 3600
    expire(line)
    assert LEAD in line.state.data, "touched since: kept"
    assert line.state.data[expiry_key(NOW + day)]["keys"] == [LEAD]
    assert "v:v-ana" not in line.state.data, "the visitor, idle since the form, expired"
    assert line.facts.counts[("expired", "visitor")] == 1
    line.now = NOW + 3 * day - 1
    expire(line)
    assert LEAD in line.state.data, "not before its time"
    line.now = NOW + 3 * day
    expire(line)
    assert LEAD not in line.state.data and f"s:{LEAD}" not in line.state.data
    assert names_anyone(line) == [] and not any(k.startswith(EXPIRY) for k in line.state.data)
    assert line.facts.counts[("expired", "lead")] == 1
    # Expiry keeps no marker: an old event redelivered later starts a new lead.
    line.send(
        "email_event",
        {"event_id": "e1", "occurred_at": iso(NOW + day), "email": EMAIL, "type": "open"},
    )
    assert LEAD in line.state.data


def test_expiry_keeps_the_erasure_marker_of_a_lead_started_after_it(tmp_path) -> None:
    line = Pipeline(config(tmp_path, expire_days=1), NOW)
    line.send("form_fill", form(1, NOW))
    forget(line, NOW + 10)
    line.send("form_fill", form(2, NOW + 20))
    line.now = NOW + 20 + 86400
    expire(line)
    assert line.state.data[LEAD] == {"id": LEAD, "state": "erased", "erased_at": NOW + 10}
    line.send("form_fill", form(1, NOW))
    assert line.facts.counts[("erased_event", "form")] == 1


def test_expiry_turned_off_sets_no_timer(tmp_path) -> None:
    line = Pipeline(config(tmp_path, expire_days=0), NOW)
    line.send("form_fill", form(1, NOW))
    assert not any(k.startswith(EXPIRY) for k in line.state.data)


def test_a_shorter_period_applies_to_every_record_at_once(tmp_path) -> None:
    """A policy lowered from a year to a week (a published configuration) removes what is
    idle for a week now, not a year after it was armed."""
    line = Pipeline(config(tmp_path, expire_days=365), NOW)
    line.send("form_fill", form(1, NOW))
    line.now = NOW + 8 * 86400
    expire(line)
    assert LEAD in line.state.data
    line.topology.reconfigure(config(tmp_path / "week", expire_days=7))
    expire(line)
    assert LEAD not in line.state.data and line.facts.counts[("expired", "lead")] == 1


def test_many_records_in_one_second_share_timers_no_larger_than_a_chunk(
    tmp_path, monkeypatch
) -> None:
    """A bulk import with one event time: timer records stay small (Kafka refuses records
    over 1 MB), and every record still expires."""
    monkeypatch.setattr(privacy, "CHUNK", 3)
    line = Pipeline(config(tmp_path, expire_days=1), NOW)
    for n in range(8):
        event = form(n, NOW) | {"email": f"p{n}@acme-corp.com", "anonymous_id": None}
        line.send("form_fill", event)
    timers = {k: v for k, v in line.state.data.items() if k.startswith(EXPIRY)}
    assert max(len(v["keys"]) for v in timers.values()) <= 3 and len(timers) == 3
    line.now = NOW + 86400
    expire(line)
    assert line.facts.counts[("expired", "lead")] == 8
    assert not any(k.startswith(EXPIRY) for k in line.state.data)
    assert not any(k.startswith("ld_") for k in line.state.data)


def test_an_answer_in_flight_is_not_written_into_the_lead_begun_after_the_erasure(
    tmp_path,
) -> None:
    line = Pipeline(config(tmp_path), NOW)
    answers = []
    line.topology.handlers[Assign] = lambda key, msg, state, fx: answers.append(msg)
    line.send("form_fill", form(1, NOW))  # pending: its desk has not answered
    forget(line, NOW + 10)
    line.send(
        "email_event",
        {"event_id": "e9", "occurred_at": iso(NOW + 20), "email": EMAIL, "type": "open"},
    )
    assert line.state.data[LEAD]["state"] == "new"
    effects = line.handle(
        LEAD, Assigned("fast-lane", "ana.silva", "fast-lane", "round_robin", NOW, NOW + 300, "f1")
    )
    assert line.state.data[LEAD]["state"] == "new" and "rep" not in line.state.data[LEAD]
    assert [type(m).__name__ for _, m in effects.internal] == ["Release"]
    assert [a.lead for a in answers] == [LEAD]  # the request that answer was for


def test_a_click_through_a_visitor_linked_before_the_erasure_does_not_start_them_again(
    tmp_path,
) -> None:
    line = Pipeline(config(tmp_path), NOW)
    line.send("form_fill", form(1, NOW))  # links v-ana to the lead
    line.now = NOW + 10
    forget(line, NOW + 10)
    line.state.data["v:v-ana"] = {"clicks": [], "lead": LEAD}  # a link the fan-out missed
    line.now = NOW + 20
    line.send("ad_click", click(2, NOW + 20))
    assert line.state.data[LEAD]["state"] == "erased" and "v:v-ana" not in line.state.data
    assert line.facts.counts[("erased_event", "ad")] == 1


def test_records_made_while_expiry_was_off_get_a_timer_when_it_is_on(tmp_path) -> None:
    line = Pipeline(config(tmp_path, expire_days=0), NOW)
    line.send("form_fill", form(1, NOW))
    line.topology.reconfigure(config(tmp_path / "on", expire_days=1))
    line.now = NOW + 60
    line.send(
        "email_event",
        {"event_id": "e1", "occurred_at": iso(NOW + 60), "email": EMAIL, "type": "open"},
    )
    assert line.state.data[expiry_key(NOW + 60)]["keys"] == [LEAD]


def test_an_erasure_redelivered_is_carried_out_and_counted_once(tmp_path) -> None:
    line = Pipeline(config(tmp_path), NOW)
    line.send("form_fill", form(1, NOW))
    forget(line, NOW + 10)
    forget(line, NOW + 10)
    assert line.facts.counts[("erasure",)] == 1
