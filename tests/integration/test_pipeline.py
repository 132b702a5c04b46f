"""The lead pipeline end to end: real JSON events in with kafka-python, `leadrouter worker`
as a separate process, routed leads and dead letters read back from the broker."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tests.support import expect
from topics import catalogue as cat
from workers.core.identity import lead_id

pytestmark = pytest.mark.integration
ROUTED = [
    cat.routed_topic(q)
    for q in (
        "fast-lane",
        "enterprise-amer",
        "enterprise-emea",
        "enterprise-apac",
        "mid-market",
        "smb",
    )
]


def now(offset: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()


def form(email: str, form_id: str, n: int = 1, **extra) -> dict:
    return {
        "event_id": f"{email}/{form_id}/{n}",
        "occurred_at": now(),
        "email": email,
        "form_id": form_id,
        **extra,
    }


def values(records) -> list[dict]:
    return [orjson.loads(r.value) for r in records]


def test_demo_request_routes_at_once_with_rep_and_trace(lane, started):
    started()
    lane.topics.send(cat.FORM_FILLS, form("jane@acme-corp.com", "demo-request", **expect.JANE))
    lane.topics.flush()
    records = lane.topics.read(ROUTED, lambda r: len(r) >= 1, 60, "a routed lead", group=lane.group)
    assert len(records) == 1
    record = records[0]
    assert record.topic == lane.prefix + "leads.routed.fast-lane"
    assert record.key == lead_id("jane@acme-corp.com").encode()
    expect.fast_lane_demo_request(orjson.loads(record.value), "jane@acme-corp.com/demo-request/1")


def test_mql_lead_lands_on_territory_queue_with_account_data(lane, started, tmp_path):
    csv = tmp_path / "accounts.csv"
    csv.write_text(
        "domain,name,employees,industry,country,owner\n"
        "bigcorp.de,BigCorp GmbH,8000,software,DE,\n"
        "owned.com,Owned Inc,300,retail,US,ben.carter\n"
    )
    from click.testing import CliRunner

    from workers.cli import main

    env = {"KAFKA_BOOTSTRAP_SERVERS": lane.bootstrap, "LEADROUTER_TOPIC_PREFIX": lane.prefix}
    result = CliRunner().invoke(
        main, ["accounts", "load", str(csv), "--config", str(lane.config_dir)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "loaded 2 accounts" in result.output
    started()
    lane.topics.send(
        cat.FORM_FILLS,
        form("max@bigcorp.de", "whitepaper", job_title="Engineer", consent={"marketing": True}),
    )
    lane.topics.send(
        cat.FORM_FILLS, form("max@bigcorp.de", "pricing", 2, consent={"marketing": True})
    )
    lane.topics.send(cat.FORM_FILLS, form("kim@owned.com", "contact-sales"))
    lane.topics.flush()
    leads = {
        v["lead_id"]: v
        for v in values(lane.topics.read(ROUTED, lambda r: len(r) >= 2, 60, "two routed leads"))
    }
    expect.territory_and_owner(leads[lead_id("max@bigcorp.de")], leads[lead_id("kim@owned.com")])


def test_anonymous_click_then_form_gives_ad_first_touch(lane, started):
    started()
    lane.topics.send(
        cat.AD_CLICKS,
        {
            "event_id": "click-1",
            "occurred_at": now(-600),
            "platform": "linkedin",
            "click_id": "li-77",
            "anonymous_id": "visitor-9",
            "campaign": "spring-launch",
        },
    )
    lane.topics.flush()
    lane.topics.send(
        cat.FORM_FILLS,
        form(
            "ola@nordic.se", "demo-request", anonymous_id="visitor-9", utm={"source": "newsletter"}
        ),
    )
    lane.topics.flush()
    lead = values(lane.topics.read(ROUTED, lambda r: len(r) >= 1, 60, "routed lead"))[0]
    expect.ad_first_touch(lead)


def test_touches_on_routed_lead_are_activity_not_reassignment(lane, started):
    started()
    email = "sam@acme-corp.com"
    lane.topics.send(cat.FORM_FILLS, form(email, "contact-sales"))
    lane.topics.flush()
    lane.topics.read(ROUTED, lambda r: len(r) >= 1, 60, "first routing")
    lane.topics.send(cat.FORM_FILLS, form(email, "demo-request", 2))
    lane.topics.send(
        cat.EMAIL_EVENTS, {"event_id": "m1", "occurred_at": now(), "email": email, "type": "click"}
    )
    lane.topics.flush()
    leads = values(
        lane.topics.read(ROUTED, lambda r: len(r) >= 3, 60, "two activities", group=lane.group)
    )
    expect.activity_not_reassignment(leads)


MALFORMED = [
    (cat.FORM_FILLS, b"{not json", "invalid_json"),
    (cat.FORM_FILLS, b"\xff\xfe\x00garbage", "invalid_encoding"),
    (cat.FORM_FILLS, b'["an", "array"]', "not_an_object"),
    (
        cat.FORM_FILLS,
        orjson.dumps({"occurred_at": now(), "email": "a@b.io", "form_id": "x"}),
        "missing_field",
    ),
    (
        cat.EMAIL_EVENTS,
        orjson.dumps({"event_id": 7, "occurred_at": now(), "email": "a@b.io", "type": "open"}),
        "invalid_type",
    ),
    (
        cat.AD_CLICKS,
        orjson.dumps(
            {"event_id": "e", "occurred_at": "last tuesday", "platform": "google", "click_id": "c"}
        ),
        "invalid_time",
    ),
    (
        cat.FORM_FILLS,
        orjson.dumps({"event_id": "e", "occurred_at": now(), "email": "nope", "form_id": "x"}),
        "invalid_email",
    ),
    (
        cat.SALES_ACTIVITIES,
        orjson.dumps({"event_id": "e", "occurred_at": now(), "lead_id": "l", "type": "teleported"}),
        "invalid_value",
    ),
    (cat.FORM_FILLS, b'{"event_id": "' + b"x" * 70000 + b'"}', "too_large"),
]


def test_each_malformed_record_goes_to_the_dead_letter_topic(lane, started):
    started()
    for i, (topic, raw, _) in enumerate(MALFORMED):
        lane.topics.send(topic, raw, key=f"k{i}".encode())
    lane.topics.send(cat.FORM_FILLS, form("after@acme-corp.com", "demo-request"))
    lane.topics.flush()
    dead = lane.topics.read(
        [cat.DEADLETTER], lambda r: len(r) >= len(MALFORMED), 60, "dead letters", group=lane.group
    )
    by_key = {r.key: r for r in dead}
    assert len(dead) == len(MALFORMED)
    for i, (topic, raw, reason) in enumerate(MALFORMED):
        record = by_key[f"k{i}".encode()]
        headers = {k: v.decode() for k, v in record.headers}
        assert record.value == raw, "the original bytes, unchanged"
        assert headers["error.reason"] == reason, (topic, headers)
        assert headers["error.detail"]
        assert headers["source.topic"] == lane.prefix + topic
        assert int(headers["source.partition"]) >= 0 and int(headers["source.offset"]) >= 0
    # the worker kept going
    routed = lane.topics.read(ROUTED, lambda r: len(r) >= 1, 60, "the valid lead after them")
    assert orjson.loads(routed[0].value)["lead_id"] == lead_id("after@acme-corp.com")


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "crash"])
def test_restart_mid_stream_routes_nobody_twice(lane, started, how):
    worker = started()
    emails = [f"lead{i}@firm{i % 7}.com" for i in range(60)]
    for i, email in enumerate(emails[:30]):
        lane.topics.send(cat.FORM_FILLS, form(email, "demo-request", i))
    lane.topics.flush()
    lane.topics.read(ROUTED, lambda r: len(r) >= 10, 60, "some leads routed")
    worker.stop(how)
    for i, email in enumerate(emails[30:], start=30):
        lane.topics.send(cat.FORM_FILLS, form(email, "demo-request", i))
    for i, email in enumerate(emails[:30]):  # the same events again, and new touches
        lane.topics.send(cat.FORM_FILLS, form(email, "demo-request", i))
    lane.topics.flush()
    started("w1")
    records = lane.topics.read(
        ROUTED, lambda r: len(r) >= 60, 90, "all sixty leads", group=lane.group
    )
    assigned = [v["lead_id"] for v in values(records) if v["event"] == "lead.assigned"]
    assert sorted(assigned) == sorted(lead_id(e) for e in emails), "each lead exactly once"
