"""Issue 6, point 1 (the "another way" half): producers deliver at least once, so every
input record may arrive twice, and DESIGN.md promises that a repeated event_id is
processed once. With the broker out of the way (the lead desk over an in-memory state, as
the worker runs it), each scenario is played twice, once with one record delivered a
second time, and the two runs must end identical: the same routed leads and activities,
the same state, the same facts reported (apart from the duplicate being counted as one).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from tests.support.desk import Pipeline
from workers.settings import load_config

CONFIG = load_config(env={})
# A Wednesday at 15:00 UTC: reps in the Americas and Europe are at work.
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat()


def form(n: str, email: str, form_id: str, minutes: float = 0, **extra: Any) -> tuple:
    event = {"event_id": n, "occurred_at": at(minutes), "email": email, "form_id": form_id}
    return ("form_fill", event | extra)


def mail(n: str, email: str, kind: str, minutes: float = 0) -> tuple:
    return (
        "email_event",
        {"event_id": n, "occurred_at": at(minutes), "email": email, "type": kind},
    )


def click(n: str, visitor: str, minutes: float = -30) -> tuple:
    event = {"event_id": n, "occurred_at": at(minutes), "platform": "google", "click_id": n}
    return ("ad_click", event | {"anonymous_id": visitor, "campaign": "brand-search"})


def activity(n: str, email: str, kind: str, minutes: float = 1) -> tuple:
    from workers.core.identity import lead_id

    event = {"event_id": n, "occurred_at": at(minutes), "lead_id": lead_id(email), "type": kind}
    return ("sales_activity", event)


A = "ana.buyer@acme-corp.com"
SCENARIOS = {
    # name: (records in order, index of the record delivered again right after the last)
    "form before routing": ([form("f1", A, "whitepaper")], 0),
    "demo request after routing": ([form("f1", A, "demo-request")], 0),
    "touch after routing": ([form("f1", A, "demo-request"), mail("m1", A, "click")], 1),
    "touch before routing": ([mail("m1", A, "open"), form("f1", A, "demo-request")], 0),
    "sales activity": ([form("f1", A, "demo-request"), activity("s1", A, "contacted")], 1),
    "anonymous click before the join": (
        [click("c1", "v9"), form("f1", A, "whitepaper", anonymous_id="v9")],
        None,  # resent at once, before the form fill
    ),
    "anonymous click after the join": (
        [click("c1", "v9"), form("f1", A, "whitepaper", anonymous_id="v9")],
        0,
    ),
    "click after the join, then routed": (
        [
            click("c1", "v9"),
            form("f1", A, "whitepaper", anonymous_id="v9"),
            form("f2", A, "demo-request", 5),
        ],
        0,
    ),
}


def play(records: list[tuple], again: int | None) -> Pipeline:
    line = Pipeline(CONFIG, NOW.timestamp() + 600)
    for i, (kind, event) in enumerate(records):
        line.send(kind, event)
        if again is None and i == 0:
            line.send(kind, event)
    if again is not None:
        kind, event = records[again]
        line.send(kind, orjson.loads(orjson.dumps(event)))
    return line


def facts(line: Pipeline) -> dict:
    """What the desk reported, without the duplicate counters themselves."""
    return {
        k: v
        for k, v in line.facts.counts.items()
        if k[0] != "duplicate" and not (k[0] == "activity" and k[-1] == "duplicate")
    }


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_record_delivered_twice_changes_nothing(name):
    records, again = SCENARIOS[name]
    once = Pipeline(CONFIG, NOW.timestamp() + 600)
    for kind, event in records:
        once.send(kind, event)
    twice = play(records, again)
    assert twice.published == once.published, "routed leads or activities differ"
    assert twice.state.data == once.state.data, "the state differs"
    assert facts(twice) == facts(once), "reported facts (metrics) differ"
    assert sum(n for k, n in twice.facts.counts.items() if "duplicate" in k) == 1
