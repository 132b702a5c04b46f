"""`leadrouter explain` on hand-built records: an e-mail resolves to the worker's lead id,
the lead's records are picked out of everyone's and put in the order they happened, and the
text shows each decision's trace, score contributions, queue, rep and times. No broker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest

from workers.core.identity import lead_id
from workers.explain import NotALead, collect, duration, render_json, render_text, resolve

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp()
JANE = lead_id("jane@acme-corp.com")


def at(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, UTC).isoformat()


@dataclass
class Msg:
    """What the history reader yields, as far as explain uses it."""

    _topic: str
    _key: bytes | None
    _value: bytes | None
    _ms: int

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ms)


def routed(lead: str, event: str, seconds: float, published: float = 0, **extra) -> Msg:
    value = {
        "event": event,
        "lead_id": lead,
        "queue": "fast-lane",
        "rep_id": "ana.silva",
        "email": "jane@acme-corp.com",
        "name": "Jane Doe",
        "company": {"domain": "acme-corp.com", "name": "Acme", "employees": 250},
        "score": {
            "total": 77.0,
            "fit": 32.0,
            "engagement": 45.0,
            "grade": "B",
            "contributions": [
                {"factor": "seniority", "value": "vp", "points": 20},
                {"factor": "form", "value": "demo-request", "points": 45},
            ],
        },
        "reason": {
            "rule": "fast-lane",
            "assignment": "round_robin",
            "trace": ["triggered fast_lane by form demo-request", "rule fast-lane matched"],
        },
        "source": {"channel": "form", "platform": None, "utm_source": "google",
                   "utm_campaign": "brand-search"},
        "trigger_event_id": "e1",
        "generated_at": at(-5),
        "routed_at": at(seconds),
        "sla_due_at": at(seconds + 300),
        **extra,
    }  # fmt: skip
    stamp = int((T0 + published) * 1000)
    return Msg("p.leads.routed.fast-lane", lead.encode(), orjson.dumps(value), stamp)


def sales(lead: str, kind: str, seconds: float) -> Msg:
    value = {"event_id": kind, "occurred_at": at(seconds), "lead_id": lead, "type": kind,
             "rep_id": "ana.silva"}  # fmt: skip
    return Msg("p.sales.activities", lead.encode(), orjson.dumps(value), int(T0 * 1000))


def test_resolve() -> None:
    assert resolve(" Jane@Acme-Corp.com ") == (JANE, "jane@acme-corp.com")
    assert JANE.startswith("ld_") and resolve(JANE) == (JANE, None)
    for bad in ("jane", "ld_", "jane@", "@acme.com", "jane@localhost", "12345"):
        with pytest.raises(NotALead):
            resolve(bad)


def test_the_leads_history_in_time_order() -> None:
    other = lead_id("bob@acme-corp.com")
    records = [
        routed(other, "lead.assigned", 0),
        sales(JANE, "contacted", 130),  # read before the assignment: put after it
        routed(JANE, "lead.assigned", 10),
        routed(
            JANE,
            "lead.activity",
            0,
            published=600.5,  # passed on to the rep half a second after the click
            activity={"channel": "email", "type": "click", "occurred_at": at(600)},
        ),
        routed(  # keeps the routing's routed_at: placed when it was published
            JANE,
            "lead.reassigned",
            10,
            published=400.5,
            rep_id="ben.carter",
            previous_rep_id="ana.silva",
            reason={
                "rule": "fast-lane",
                "assignment": "round_robin",
                "trace": ["SLA passed with no first touch: reassigned"],
            },
        ),
        sales(other, "contacted", 20),
        Msg("p.sales.activities", JANE.encode(), b"{broken " + JANE.encode(), 0),
    ]
    history = collect(JANE, "jane@acme-corp.com", records, "p.sales.activities")
    assert history.records_read == 7
    assert history.malformed == 1
    kinds = [(e.kind, e.value.get("event") or e.value.get("type")) for e in history.entries]
    assert kinds == [
        ("routed", "lead.assigned"),
        ("sales", "contacted"),
        ("routed", "lead.reassigned"),
        ("routed", "lead.activity"),
    ]
    text = render_text(history)
    assert text.splitlines()[0] == f"lead {JANE}  jane@acme-corp.com"
    assert "Jane Doe, Acme, 250 employees" in text
    assert "2026-11-02T09:00:10Z  lead.assigned  fast-lane -> ana.silva" in text
    assert "rule fast-lane, assignment round_robin, SLA due 2026-11-02T09:05:10Z" in text
    assert "first touch form (google / brand-search)" in text
    assert "score 77.0 (fit 32.0, engagement 45.0), grade B" in text
    assert "+20  seniority = vp" in text and "+45  form = demo-request" in text
    assert "1. triggered fast_lane by form demo-request" in text
    assert "sales contacted by ana.silva  (2m 0s after routing: speed to lead)" in text
    assert "lead.reassigned  fast-lane: ben.carter (was ana.silva)" in text
    assert "SLA passed with no first touch: reassigned" in text
    assert "touch email click at 2026-11-02T09:10:00Z" in text
    data = render_json(history)
    assert data["lead_id"] == JANE and data["malformed"] == 1
    assert [e["at"] for e in data["events"]] == [
        "2026-11-02T09:00:10.000Z",
        "2026-11-02T09:02:10.000Z",
        "2026-11-02T09:06:40.500Z",
        "2026-11-02T09:10:00.500Z",
    ]
    assert data["events"][0]["value"]["reason"]["trace"][1] == "rule fast-lane matched"


def test_nobody_routed() -> None:
    history = collect(JANE, None, [sales(JANE, "contacted", 5)], "p.sales.activities")
    assert history.routed == [] and len(history.entries) == 1


def test_duration() -> None:
    assert [duration(s) for s in (0.25, 45, 125, 3 * 3600 + 1200, 3 * 86400 + 4 * 3600)] == [
        "0.25s", "45s", "2m 5s", "3h 20m", "3d 4h",
    ]  # fmt: skip
