"""The JSON Schemas of the public topics: committed files equal what the types generate,
and real samples (the simulator's traffic and sales answers, the demo's accounts, routed
leads from the in-process pipeline) validate with a real JSON Schema validator, while
values that break the contract do not."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from tests.support.desk import Pipeline
from topics import catalogue as cat
from topics import schemas
from topics.public import PUBLIC_VALUES
from topics.records import RoutedLead
from workers.settings import load_config
from workers.simulate import SalesTeam, Traffic

CONFIG = load_config(env={})
# Wednesday 15:00 UTC: reps in São Paulo, New York and Paris are at work.
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC).timestamp()


def validator(topic: str) -> Draft202012Validator:
    schema = schemas.load(topic)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors(topic: str, value: Any) -> list[str]:
    return [e.message for e in validator(topic).iter_errors(value)]


def test_committed_schemas_equal_the_generated_ones():
    assert schemas.differences() == []
    assert schemas.main(["--check"]) == 0
    assert sorted(p.name for p in schemas.SCHEMA_DIR.glob("*.schema.json")) == sorted(
        schemas.generate_all()
    )


def test_check_fails_on_a_stale_or_missing_file(tmp_path: Path):
    shutil.copytree(schemas.SCHEMA_DIR, tmp_path, dirs_exist_ok=True)
    stale = tmp_path / "sales.activities.schema.json"
    stale.write_text(stale.read_text().replace('"lead_id",', '"lead",'))
    (tmp_path / "leads.routed.schema.json").unlink()
    assert schemas.main(["--check", "--dir", str(tmp_path)]) == 1
    assert schemas.differences(tmp_path) == [
        "leads.routed.schema.json: missing",
        "sales.activities.schema.json: differs from the types",
    ]


@pytest.mark.parametrize("topic", sorted(PUBLIC_VALUES))
def test_every_schema_is_valid_draft_2020_12(topic: str):
    schema = schemas.load(topic)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_one_schema_serves_every_routed_queue_and_deadletter_has_none():
    assert schemas.file_name("leads.routed.fast-lane") == "leads.routed.schema.json"
    assert schemas.load("leads.routed.smb") == schemas.load("leads.routed.<queue>")
    with pytest.raises(KeyError):
        schemas.load(cat.DEADLETTER)


def test_simulated_marketing_traffic_validates():
    traffic = Traffic(CONFIG, seed=11, malformed_share=0.0)
    seen: dict[str, int] = {}
    for topic, _, value in traffic.stream(600, now=time.time()):
        assert errors(topic, orjson.loads(value)) == [], topic
        seen[topic] = seen.get(topic, 0) + 1
    assert set(seen) == {cat.FORM_FILLS, cat.EMAIL_EVENTS, cat.AD_CLICKS}


def test_simulated_malformed_records_do_not_validate():
    """The simulator's bad records that a schema can see (a missing `event_id`, an e-mail
    without `@`, a number for `event_id`) are refused; `--check` would be pointless if the
    schemas accepted anything."""
    traffic = Traffic(CONFIG, seed=5, malformed_share=1.0)
    refused = 0
    for _ in range(200):
        topic, raw = traffic.malformed(time.time())
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if (
            "event_id" not in value
            or not isinstance(value["event_id"], str)
            or value.get("email") == "not-an-address"
        ):
            assert errors(topic, value), value
            refused += 1
    assert refused > 50


def routed_leads() -> list[dict[str, Any]]:
    """RoutedLead JSON from the worker's own topology, in-process: an assignment and an
    activity on the routed lead."""
    line = Pipeline(CONFIG, NOW)
    at = datetime.fromtimestamp(NOW, UTC).isoformat()
    email = "jane@acme.com"
    line.send(
        "form_fill",
        {
            "event_id": "f1",
            "occurred_at": at,
            "email": email,
            "form_id": "demo-request",
            "first_name": "Jane",
            "job_title": "VP Marketing",
            "country": "US",
            "utm": {"source": "google", "campaign": "brand-search"},
        },
    )
    line.send("email_event", {"event_id": "e1", "occurred_at": at, "email": email, "type": "click"})
    leads = [lead for _, _, lead in line.published]
    assert [lead["event"] for lead in leads] == ["lead.assigned", "lead.activity"]
    return leads


def test_routed_leads_validate():
    for lead in routed_leads():
        assert errors("leads.routed.fast-lane", lead) == []


@pytest.mark.parametrize(
    "breach",
    [
        lambda lead: lead.pop("lead_id"),
        lambda lead: lead["score"].pop("grade"),
        lambda lead: lead.update(event="lead.deleted"),
        lambda lead: lead["reason"].update(trace="not a list"),
        lambda lead: lead.update(email="no-at-sign"),
    ],
    ids=["no lead_id", "no score.grade", "unknown event", "trace not a list", "bad email"],
)
def test_a_routed_lead_that_breaks_the_contract_does_not_validate(breach):
    lead = routed_leads()[0]
    breach(lead)
    with pytest.raises(ValidationError):
        validator("leads.routed.fast-lane").validate(lead)


def test_simulated_sales_answers_validate():
    """The simulated team's answers to real routed leads, read as the Faust Record."""
    team = SalesTeam(CONFIG, seed=1, delay_scale=0.001)
    leads = routed_leads()
    for n in range(40):
        data = json.loads(json.dumps(leads[0]))
        data["lead_id"] = f"{data['lead_id']}-{n}"
        team.on_routed(RoutedLead.from_data(data), NOW)
    team.on_routed(RoutedLead.from_data(leads[1]), NOW)  # an activity: not answered
    waiting = {**leads[0], "lead_id": "ld_waiting", "rep_id": None}
    team.on_routed(RoutedLead.from_data(waiting), NOW)  # in its queue's line: nobody has it
    answers = list(team.due(NOW + 10**9))
    assert len({a.lead_id for a in answers}) > 20
    assert "ld_waiting" not in {a.lead_id for a in answers}
    assert {a.rep_id for a in answers} == {leads[0]["rep_id"]}
    for answer in answers:
        value = orjson.loads(orjson.dumps(answer))
        assert errors(cat.SALES_ACTIVITIES, value) == []
    value.pop("type")
    assert errors(cat.SALES_ACTIVITIES, value) == ["'type' is a required property"]


def test_demo_accounts_validate():
    from workers.demo import demo_accounts

    accounts = demo_accounts(CONFIG)
    assert accounts
    for account in accounts:
        assert errors(cat.ACCOUNTS, account) == []
    assert errors(cat.ACCOUNTS, {**accounts[0], "employees": "many"})
