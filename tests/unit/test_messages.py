"""Upgrades lose nothing: the internal messages and the state that the previous release
(0.1.0) wrote, captured from it (tests/fixtures/*-0.1.0.*), are read by this one, and what
this one writes is what that one reads, so old and new workers can share a group during a
rolling deploy."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.support.desk import Pipeline
from topics import messages
from topics.messages import Assign
from workers.core.identity import lead_id
from workers.core.privacy import expiry_key
from workers.settings import load_config

FIXTURES = Path(__file__).parent.parent / "fixtures"
CONFIG = load_config(env={})
OLD_RECORDS = [
    orjson.loads(line) for line in (FIXTURES / "internal-0.1.0.jsonl").read_bytes().splitlines()
]
OLD_STATE = orjson.loads((FIXTURES / "state-0.1.0.json").read_bytes())
NOW = OLD_STATE["now"]
EMAIL = "ola@nordic.se"


def at(offset: float) -> str:
    return datetime.fromtimestamp(NOW + offset, UTC).isoformat()


@pytest.mark.parametrize("record", OLD_RECORDS, ids=[r["value"]["k"] for r in OLD_RECORDS])
def test_previous_release_records_decode_and_encode_unchanged(record: dict):
    message = messages.decode(orjson.dumps(record["value"]))
    assert record["value"]["k"] == type(message).KIND
    assert orjson.loads(messages.encode(message)) == record["value"]


def test_every_kind_on_the_wire_is_covered():
    kinds = {r["value"]["k"] for r in OLD_RECORDS}
    assert kinds == {"touch", "visitor", "assign", "assigned", "activity", "release"}


def test_unknown_kind_is_refused_clearly():
    with pytest.raises(messages.UnknownMessage, match="'teleport'"):
        messages.decode(b'{"k": "teleport"}')


def test_same_input_publishes_what_the_previous_release_published():
    line = Pipeline(CONFIG, NOW)
    line.send(
        "ad_click",
        {
            "event_id": "c1",
            "occurred_at": at(-600),
            "platform": "linkedin",
            "click_id": "li-1",
            "anonymous_id": "v-1",
            "campaign": "spring",
        },
    )
    line.send(
        "form_fill",
        {
            "event_id": "f1",
            "occurred_at": at(0),
            "email": EMAIL,
            "form_id": "demo-request",
            "anonymous_id": "v-1",
            "first_name": "Ola",
            "utm": {"source": "newsletter"},
            "consent": {"marketing": True},
            "country": "SE",
        },
    )
    line.send(
        "email_event",
        {"event_id": "e1", "occurred_at": at(60), "email": EMAIL, "type": "click"}
        | {"campaign": "nurture"},
    )
    lead = lead_id(EMAIL)
    for n, (kind, offset) in enumerate((("contacted", 120), ("won", 180)), start=1):
        line.send(
            "sales_activity",
            {
                "event_id": f"s{n}",
                "occurred_at": at(offset),
                "lead_id": lead,
                "type": kind,
                "rep_id": "x",
            },
        )
    published = [p[2] for p in line.published]
    # Only added since: the configuration version that decided each record.
    assert {p["reason"].pop("config_version") for p in published} == {CONFIG.version}
    assert published == OLD_STATE["published"]
    # Only added since: the lead's qualifying event id (`trigger`, for what a desk publishes
    # later from the lead's state: a hand-out from the waiting line, a reassignment).
    now = line.state.data
    assert now[lead].pop("trigger") == "f1"
    # And the expiry of personal data: each record's latest touch, and its timer (a key).
    assert now[lead].pop("active") == NOW + 180 and now["v:v-1"].pop("active") == NOW
    # (from when the worker first saw each: the click's event time is older; the timer is
    # moved only when it comes due)
    assert now[lead].pop("idle_since") == NOW and now["v:v-1"].pop("idle_since") == NOW
    timers = {k: now[k]["keys"] for k in now if k.startswith("x:")}
    assert timers == {expiry_key(NOW): ["v:v-1", lead]}
    assert {k: v for k, v in now.items() if not k.startswith("x:")} == OLD_STATE["state"]


def test_state_written_by_the_previous_release_is_continued():
    line = Pipeline(CONFIG, NOW + 300)
    line.state.data = orjson.loads(orjson.dumps(OLD_STATE["state"]))
    line.send(
        "email_event", {"event_id": "e2", "occurred_at": at(240), "email": EMAIL, "type": "open"}
    )
    (queue, key, activity), *_ = line.published
    routed = OLD_STATE["published"][0]
    assert (queue, key) == (routed["queue"], routed["lead_id"])
    assert activity["event"] == "lead.activity" and activity["rep_id"] == routed["rep_id"]
    line.send(
        "email_event", {"event_id": "e1", "occurred_at": at(60), "email": EMAIL, "type": "click"}
    )
    assert len(line.published) == 1, "an event the old release processed is a duplicate"
    # A lead from before expiry existed gets its timer on its first touch since.
    old_lead = line.state.data[routed["lead_id"]]
    assert old_lead["active"] == NOW + 300  # seen then (the event says 240)
    assert line.state.data[expiry_key(old_lead["idle_since"])]["keys"] == [routed["lead_id"]]


def test_state_bytes_are_what_the_previous_release_wrote():
    """A lead waiting for its queue desk, holding two touches: the changelog value is the
    same bytes 0.1.0 wrote (key order included), so compaction and diffing tools see no
    change from an upgrade."""
    old = orjson.loads((FIXTURES / "state-0.1.0-pending.json").read_bytes())
    line = Pipeline(CONFIG, old["now"])
    line.topology.handlers[Assign] = lambda key, message, state, effects: None  # deciding
    email = "kim@acme.io"

    def sent(offset: float) -> str:
        return datetime.fromtimestamp(old["now"] + offset, UTC).isoformat()

    line.send(
        "form_fill",
        {"event_id": "p1", "occurred_at": sent(0), "email": email, "form_id": "demo-request"},
    )
    line.send(
        "email_event", {"event_id": "p2", "occurred_at": sent(5), "email": email, "type": "click"}
    )
    line.send(
        "form_fill",
        {"event_id": "p3", "occurred_at": sent(9), "email": email, "form_id": "pricing"},
    )
    # Only added since: the lead's latest touch (`active`, for expiry) and its expiry timer.
    data = line.state.data
    lead = data[lead_id(email)]
    assert lead.pop("active") == old["now"] + 9
    assert lead.pop("idle_since") == old["now"]
    assert {k: v["keys"] for k, v in data.items() if k.startswith("x:")} == {
        expiry_key(old["now"]): [lead_id(email)]
    }
    written = {k: orjson.dumps(v).decode() for k, v in data.items() if not k.startswith("x:")}
    assert written == old["bytes"]
