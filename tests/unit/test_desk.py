"""The lead desk end to end without a broker: qualification, routing, activity,
visitor joins, disqualifiers, feedback, SLA timers, dedupe and recycling."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from tests.support.desk import Pipeline
from topics import messages
from topics.messages import Assign, Assigned
from topics.public import encode_routed
from workers.core.identity import lead_id
from workers.settings import load_config

CONFIG = load_config(env={})
# Wednesday 15:00 UTC: São Paulo, New York and Paris reps are at work, Tokyo is not.
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC).timestamp()


def at(offset: float = 0) -> str:
    return datetime.fromtimestamp(NOW + offset, UTC).isoformat()


def form(email: str, form_id: str, n: int = 1, offset: float = 0, **extra) -> dict:
    return {
        "event_id": f"{email}-{form_id}-{n}",
        "occurred_at": at(offset),
        "email": email,
        "form_id": form_id,
        **extra,
    }


@pytest.fixture
def line() -> Pipeline:
    return Pipeline(CONFIG, NOW)


def test_demo_request_routes_at_once_to_fast_lane(line: Pipeline):
    line.send(
        "form_fill",
        form(
            "jane@acme.com",
            "demo-request",
            first_name="Jane",
            job_title="VP Marketing",
            country="US",
            utm={"source": "google", "campaign": "brand-search"},
        ),
    )
    assert len(line.published) == 1
    queue, key, lead = line.published[0]
    assert (queue, key) == ("fast-lane", lead_id("jane@acme.com"))
    assert lead["event"] == "lead.assigned"
    assert lead["rep_id"] == "ana.silva"
    assert lead["reason"]["rule"] == "fast-lane"
    assert lead["reason"]["assignment"] == "round_robin"
    trace = "\n".join(lead["reason"]["trace"])
    assert "triggered fast_lane" in trace
    assert "score seniority='vp': +20" in trace
    assert "rule fast-lane matched: trigger='fast_lane' eq 'fast_lane'" in trace
    assert "daisuke.ito skipped: outside working hours (00:00 in Asia/Tokyo)" in trace
    assert lead["source"] == {
        "channel": "form",
        "platform": None,
        "utm_source": "google",
        "utm_campaign": "brand-search",
    }
    assert lead["generated_at"].startswith("2026-11-25T15:00:00")
    assert lead["sla_due_at"].startswith("2026-11-25T15:05:00")
    assert line.facts.counts[("routed", "fast-lane", "fast-lane", lead["score"]["grade"])] == 1
    assert line.timers and line.timers[0][0] == pytest.approx(NOW + 300)


def test_mql_threshold_routes_by_rules(line: Pipeline):
    line.accounts.put(
        "bigcorp.de",
        {"name": "BigCorp GmbH", "employees": 8000, "industry": "software", "country": "DE"},
    )
    email = "max@bigcorp.de"
    line.send(
        "form_fill", form(email, "whitepaper", job_title="Engineer", consent={"marketing": True})
    )
    lead = line.state.get(lead_id(email))
    assert (
        lead["score"]["fit"] == 2 + 20 + 10 + 5 + 10
    )  # individual, 8000 staff, software, DE, known
    assert lead["score"]["total"] == 57 < CONFIG.scoring.mql_threshold
    assert line.published == []
    line.send("form_fill", form(email, "pricing", n=2, consent={"marketing": True}))
    assert [p[0] for p in line.published] == ["enterprise-emea"]
    routed = line.published[0][2]
    assert routed["company"]["name"] == "BigCorp GmbH"
    assert routed["reason"]["rule"] == "enterprise-emea"
    assert "triggered mql" in routed["reason"]["trace"][0]


def test_routed_once_then_activity_without_reassignment(line: Pipeline):
    email = "sam@acme.io"
    line.send("form_fill", form(email, "contact-sales"))
    line.send("form_fill", form(email, "demo-request", n=2))
    line.send(
        "email_event", {"event_id": "e9", "occurred_at": at(60), "email": email, "type": "click"}
    )
    events = [p[2]["event"] for p in line.published]
    assert events == ["lead.assigned", "lead.activity", "lead.activity"]
    reps = {p[2]["rep_id"] for p in line.published}
    assert len(reps) == 1
    assert line.published[2][2]["activity"]["type"] == "click"


@pytest.mark.parametrize("older_state", [False, True], ids=["fingerprints", "plain-list"])
def test_redelivered_assign_request_routes_once(line: Pipeline, older_state: bool):
    records: list[tuple[str, dict]] = []
    handlers = line.topology.handlers

    def spy(handle):
        def spied(key: str, message, state, effects):
            records.append((key, orjson.loads(messages.encode(message))))
            return handle(key, message, state, effects)

        return spied

    for kind in (Assign, Assigned):
        handlers[kind] = spy(handlers[kind])
    line.send("form_fill", form("jane@acme.com", "demo-request"))
    assert len(line.published) == 1 and [r["k"] for _, r in records] == ["assign", "assigned"]
    (key, request), (lead, answer) = records
    desk = line.state.data[key]
    if older_state:  # a queue desk written before its memory was fingerprinted
        desk["recent"] = [f"{request['lead']}/{request['draft']['trigger_event_id']}"]
    before = orjson.loads(orjson.dumps(desk))
    fx = line.handle(key, decoded(request))
    after = line.state.data[key]
    assert fx.published == [] and after["reps"] == before["reps"] and after["rr"] == before["rr"]
    if older_state:  # nothing remembered to answer with
        assert fx.internal == []
        return
    # Answered again with the same rep and time, for a lead that lost the first answer in a
    # crash (at_least_once): it is routed as sales were told; a lead that kept it is unchanged.
    assert [(k, messages.wire(m)) for k, m in fx.internal] == [(lead, answer)]
    routed = orjson.loads(orjson.dumps(line.state.data[lead]))
    line.handle(lead, decoded(answer))
    assert line.state.data[lead] == routed
    line.state.data[lead].update(state="pending", rep=None, routed_at=None)
    line.handle(lead, decoded(answer))
    assert line.state.data[lead] == routed


def test_touch_while_the_queue_desk_decides_is_published_once_routed(line: Pipeline):
    """With the queue desk on another worker its answer is a round trip away: a touch in
    between is sales' to see once the lead is routed, not lost in the wait."""
    stash: list[tuple[str, Assign]] = []
    handlers = line.topology.handlers
    on_assign = handlers[Assign]
    handlers[Assign] = lambda key, message, state, effects: stash.append((key, message))
    email = "kim@acme.io"
    line.send("form_fill", form(email, "demo-request"))
    line.send(
        "email_event", {"event_id": "e-wait", "occurred_at": at(5), "email": email, "type": "click"}
    )
    assert line.published == [] and len(stash) == 1
    handlers[Assign] = on_assign
    fx = line.handle(*stash[0])
    answer_key, answer = fx.internal[0]
    line.published += [(q, r.lead_id, orjson.loads(encode_routed(r))) for q, r in fx.published]
    published = line.handle(answer_key, answer).published
    line.published += [(q, r.lead_id, orjson.loads(encode_routed(r))) for q, r in published]
    events = [(p[2]["event"], p[2]["trigger_event_id"]) for p in line.published]
    assert events == [("lead.assigned", "kim@acme.io-demo-request-1"), ("lead.activity", "e-wait")]
    activity = line.published[1][2]
    assert activity["rep_id"] == line.published[0][2]["rep_id"] is not None
    assert activity["activity"]["type"] == "click"
    assert "held" not in line.state.data[lead_id(email)]


def decoded(wire: dict):
    return messages.decode(orjson.dumps(wire))


def test_anonymous_ad_click_becomes_first_touch(line: Pipeline):
    line.send(
        "ad_click",
        {
            "event_id": "c1",
            "occurred_at": at(-3600),
            "platform": "linkedin",
            "click_id": "li-1",
            "anonymous_id": "v-42",
            "campaign": "spring",
        },
    )
    assert line.published == [] and line.state.get("v:v-42")["clicks"]
    line.send(
        "form_fill",
        form("ola@nordic.se", "demo-request", anonymous_id="v-42", utm={"source": "newsletter"}),
    )
    lead = line.published[0][2]
    assert lead["source"]["channel"] == "ad"
    assert lead["source"]["platform"] == "linkedin"
    assert lead["source"]["utm_campaign"] == "spring"
    assert lead["generated_at"].startswith(at(-3600)[:19])
    # a later click by the same visitor goes straight to the lead
    line.send(
        "ad_click",
        {
            "event_id": "c2",
            "occurred_at": at(60),
            "platform": "google",
            "click_id": "g-1",
            "anonymous_id": "v-42",
        },
    )
    assert line.published[-1][2]["event"] == "lead.activity"


def test_duplicate_event_is_processed_once(line: Pipeline):
    event = form("dup@acme.com", "webinar")
    line.send("form_fill", event)
    line.send("form_fill", event)
    lead = line.state.get(lead_id("dup@acme.com"))
    assert lead["engagement"]["by"]["form:webinar"][1] == 1
    assert line.facts.counts[("duplicate", "form")] == 1
    assert line.facts.counts[("accepted", "form")] == 1


def test_dedupe_window_edge(line: Pipeline):
    """A lead recognises a repeat among its last `dedupe_window` event ids (settings.yaml);
    one older than that is processed again. At the edge: the window-th newest id is still a
    duplicate, the one before it is not."""
    window = CONFIG.settings.dedupe_window
    email = "edge@acme.com"

    def opened(n: int) -> dict:
        return {"event_id": f"open-{n}", "occurred_at": at(n), "email": email, "type": "open"}

    for n in range(window + 1):
        line.send("email_event", opened(n))
    line.send("email_event", opened(1))  # the window-th newest: still remembered
    assert line.facts.counts[("duplicate", "email")] == 1
    line.send("email_event", opened(0))  # one past the window: processed again
    assert line.facts.counts[("duplicate", "email")] == 1
    assert line.facts.counts[("accepted", "email")] == window + 2
    lead = line.state.get(lead_id(email))
    assert len(lead["seen"]) == window


@pytest.mark.parametrize(
    ("email", "events", "reason"),
    [
        ("a@mailinator.com", [], "disposable"),
        ("b@rivalrouter.com", [], "competitor"),
        ("b@mail.rivalrouter.com", [], "competitor"),  # a subdomain is the competitor's too
        ("c@acme.com", [("email_event", "unsubscribe")], "unsubscribed"),
        ("d@acme.com", [("email_event", "bounce")], "bounced"),
    ],
)
def test_disqualifiers_keep_a_lead_from_routing(line: Pipeline, email, events, reason):
    for i, (kind, typ) in enumerate(events):
        line.send(kind, {"event_id": f"x{i}", "occurred_at": at(), "email": email, "type": typ})
    line.send("form_fill", form(email, "demo-request"))
    line.send("form_fill", form(email, "demo-request", n=2))
    assert line.published == []
    assert line.facts.counts[("disqualified", reason)] == 1  # counted once per lead


def test_consent_required_by_country(line: Pipeline):
    line.send("form_fill", form("k@firma.de", "demo-request", country="DE"))
    assert line.published == []
    assert line.facts.counts[("disqualified", "no_consent")] == 1
    line.send(
        "form_fill",
        form("k@firma.de", "demo-request", n=2, country="DE", consent={"marketing": True}),
    )
    assert len(line.published) == 1


def test_account_owner_takes_precedence(line: Pipeline):
    line.accounts.put("owned.com", {"name": "Owned", "employees": 50, "owner": "ben.carter"})
    line.send("form_fill", form("x@owned.com", "demo-request"))
    queue, _, lead = line.published[0]
    assert (queue, lead["rep_id"]) == ("fast-lane", "ben.carter")
    assert lead["reason"]["rule"] == "account-owner"
    assert lead["reason"]["assignment"] == "account_owner"


def test_speed_to_lead_conversion_and_sla(line: Pipeline):
    line.send("form_fill", form("fast@acme.com", "demo-request", utm={"source": "google"}))
    line.send("form_fill", form("slow@acme.com", "demo-request", utm={"source": "google"}))
    fast, slow = lead_id("fast@acme.com"), lead_id("slow@acme.com")
    line.now = NOW + 120
    line.send(
        "sales_activity",
        {
            "event_id": "s1",
            "occurred_at": at(120),
            "lead_id": fast,
            "type": "contacted",
            "rep_id": "ana.silva",
        },
    )
    assert ("speed_to_lead", "fast-lane", 120.0) in line.facts.observed
    line.now = NOW + 301
    line.fire_timers()
    assert line.facts.counts[("sla_breach", "fast-lane")] == 1  # only the untouched lead
    line.send(
        "sales_activity",
        {"event_id": "s2", "occurred_at": at(3600), "lead_id": fast, "type": "won"},
    )
    assert ("conversion", "fast-lane", "google", "won", 3600.0) in line.facts.observed
    line.send(
        "sales_activity",
        {"event_id": "s3", "occurred_at": at(10), "lead_id": "ld_nope", "type": "contacted"},
    )
    assert line.facts.counts[("activity", "contacted", "unknown_lead")] == 1
    line.send(
        "sales_activity",
        {"event_id": "s4", "occurred_at": at(4000), "lead_id": slow, "type": "accepted"},
    )
    line.send(
        "sales_activity",
        {"event_id": "s2", "occurred_at": at(3600), "lead_id": fast, "type": "won"},
    )
    assert line.facts.counts[("activity", "won", "duplicate")] == 1
    assert line.state.get("q:fast-lane")["reps"]["ana.silva"]["open"] == 0  # released


def test_a_late_first_contact_is_a_breach_whichever_comes_first(line: Pipeline):
    """Contacted at 15:08 for an SLA due at 15:05: one breach, whether its timer fires first,
    or the contact is read first (in the timer's batch, or from a backlog) and stops it."""
    for email, contact_first in (("timer.first@acme.com", False), ("contact.first@acme.com", True)):
        line.send("form_fill", form(email, "demo-request"))
        lead = lead_id(email)
        due = line.published[-1][2]["sla_due_at"]
        assert due.endswith("T15:05:00.000Z"), due  # the fast lane's 5 minutes
        line.now = NOW + 600
        if not contact_first:
            line.fire_timers()
        line.send(
            "sales_activity",
            {
                "event_id": f"c-{email}",
                "occurred_at": at(480),
                "lead_id": lead,
                "type": "contacted",
                "rep_id": line.published[-1][2]["rep_id"],
            },
        )
        line.fire_timers()  # a stopped timer, or one already fired: nothing more
        line.now = NOW
    assert line.facts.counts[("sla_breach", "fast-lane")] == 2
    assert [o for o in line.facts.observed if o[0] == "speed_to_lead"] == [
        ("speed_to_lead", "fast-lane", 480.0),
        ("speed_to_lead", "fast-lane", 480.0),
    ]
    # in time, it is none
    line.send("form_fill", form("on.time@acme.com", "demo-request"))
    line.now = NOW + 120
    line.send(
        "sales_activity",
        {
            "event_id": "c-on-time",
            "occurred_at": at(120),
            "lead_id": lead_id("on.time@acme.com"),
            "type": "contacted",
        },
    )
    line.advance(NOW + 900)
    assert line.facts.counts[("sla_breach", "fast-lane")] == 2


def test_rejected_lead_is_recyclable_after_the_period(line: Pipeline):
    email = "again@acme.com"
    line.send("form_fill", form(email, "demo-request"))
    lid = lead_id(email)
    line.send(
        "sales_activity",
        {"event_id": "r1", "occurred_at": at(60), "lead_id": lid, "type": "rejected"},
    )
    line.send("form_fill", form(email, "demo-request", n=2, offset=86400))
    assert [p[2]["event"] for p in line.published] == ["lead.assigned", "lead.activity"]
    days = CONFIG.settings.recycle_after_days
    line.now = NOW + days * 86400 + 120
    line.send("form_fill", form(email, "demo-request", n=3, offset=days * 86400 + 120))
    assert [p[2]["event"] for p in line.published][-1] == "lead.assigned"
