"""Sales feedback and metrics on the reference broker: speed to lead from real activities,
SLA breaches raised by a timer, conversions, and exact metric values scraped over HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import yaml

from tests.integration.test_pipeline import ROUTED, form, now
from tests.support.metrics import scrape, value
from tests.support.worker import wait_until
from topics import catalogue as cat
from workers.core.identity import lead_id

pytestmark = pytest.mark.integration


def short_sla(config_dir, minutes: float) -> None:
    path = config_dir / "routing.yaml"
    routing = yaml.safe_load(path.read_text())
    routing["queues"]["fast-lane"]["sla_minutes"] = minutes
    path.write_text(yaml.safe_dump(routing))


def activity(lead: str, kind: str, at: datetime, n: str) -> dict:
    return {
        "event_id": n,
        "occurred_at": at.isoformat(),
        "lead_id": lead,
        "type": kind,
        "rep_id": "ana.silva",
    }


def test_speed_to_lead_sla_breach_and_conversion(lane, started):
    short_sla(lane.config_dir, 0.05)  # three seconds
    worker = started()
    lane.topics.send(
        cat.FORM_FILLS, form("quick@acme-corp.com", "demo-request", utm={"source": "linkedin"})
    )
    lane.topics.send(
        cat.FORM_FILLS, form("ignored@acme-corp.com", "demo-request", utm={"source": "google"})
    )
    lane.topics.flush()
    routed = {
        orjson.loads(r.value)["lead_id"]: orjson.loads(r.value)
        for r in lane.topics.read(ROUTED, lambda r: len(r) >= 2, 60, "two routed leads")
    }
    quick = routed[lead_id("quick@acme-corp.com")]
    routed_at = datetime.fromisoformat(quick["routed_at"])
    lane.topics.send(
        cat.SALES_ACTIVITIES,
        activity(quick["lead_id"], "contacted", routed_at + timedelta(seconds=2), "a1"),
        key=quick["lead_id"].encode(),
    )
    lane.topics.flush()

    def breached():
        samples = scrape(worker.metrics_url)
        return samples if value(samples, "leadrouter_sla_breaches_total") >= 1 else None

    samples = wait_until(breached, 30, "the SLA timer to flag the untouched lead")
    assert value(samples, "leadrouter_sla_breaches_total", queue="fast-lane") == 1
    assert value(samples, "leadrouter_speed_to_lead_seconds_count", queue="fast-lane") == 1
    assert value(samples, "leadrouter_speed_to_lead_seconds_sum", queue="fast-lane") == (
        pytest.approx(2.0, abs=0.01)
    )
    # conversion: opportunity then won, measured from routing
    for kind, secs, n in (("opportunity_created", 3600, "a2"), ("won", 7200, "a3")):
        lane.topics.send(
            cat.SALES_ACTIVITIES,
            activity(quick["lead_id"], kind, routed_at + timedelta(seconds=secs), n),
            key=quick["lead_id"].encode(),
        )
    lane.topics.send(
        cat.SALES_ACTIVITIES, activity("ld_unknown", "contacted", datetime.now(UTC), "a4")
    )
    lane.topics.flush()

    def converted():
        s = scrape(worker.metrics_url)
        return s if value(s, "leadrouter_sales_activities_total", outcome="unknown_lead") else None

    samples = wait_until(converted, 30, "conversion metrics")
    assert (
        value(
            samples, "leadrouter_time_to_conversion_seconds_count", queue="fast-lane", outcome="won"
        )
        == 1
    )
    assert value(
        samples, "leadrouter_time_to_conversion_seconds_sum", queue="fast-lane", outcome="won"
    ) == pytest.approx(7200, abs=0.01)
    assert value(samples, "leadrouter_lead_outcomes_total", source="linkedin", outcome="won") == 1
    assert (
        value(
            samples, "leadrouter_sales_activities_total", type="contacted", outcome="unknown_lead"
        )
        == 1
    )
    # a breach is raised once, not again when a late touch arrives
    late = routed[lead_id("ignored@acme-corp.com")]
    lane.topics.send(
        cat.SALES_ACTIVITIES,
        activity(late["lead_id"], "contacted", datetime.now(UTC), "a5"),
        key=late["lead_id"].encode(),
    )
    lane.topics.flush()
    samples = wait_until(
        lambda: (
            (s := scrape(worker.metrics_url))
            and value(s, "leadrouter_speed_to_lead_seconds_count", queue="fast-lane") == 2
            and s
        ),
        30,
        "the late first touch",
    )
    assert value(samples, "leadrouter_sla_breaches_total", queue="fast-lane") == 1


def test_metric_values_after_known_input(lane, started):
    worker = started()
    send = lane.topics.send
    send(cat.FORM_FILLS, form("a@acme-corp.com", "demo-request", utm={"source": "google"}))
    send(cat.FORM_FILLS, form("a@acme-corp.com", "demo-request", utm={"source": "google"}))  # dup
    send(cat.FORM_FILLS, form("b@acme-corp.com", "webinar", utm={"source": "tiktok-influencer"}))
    send(cat.FORM_FILLS, form("c@mailinator.com", "demo-request"))
    send(
        cat.EMAIL_EVENTS,
        {"event_id": "m1", "occurred_at": now(), "email": "d@acme-corp.com", "type": "open"},
    )
    send(
        cat.AD_CLICKS,
        {
            "event_id": "c1",
            "occurred_at": now(),
            "platform": "meta",
            "click_id": "x",
            "anonymous_id": "v1",
        },
    )
    send(cat.FORM_FILLS, b"{broken")
    send(cat.EMAIL_EVENTS, b'{"event_id": "e"}')
    lane.topics.flush()

    def settled():
        s = scrape(worker.metrics_url)
        total = value(s, "leadrouter_events_total")
        return s if total >= 8 and value(s, "leadrouter_leads_routed_total") >= 1 else None

    s = wait_until(settled, 60, "all eight records counted")
    forms = "marketing.form-fills"
    assert value(s, "leadrouter_events_total", topic=forms, outcome="ok") == 3
    assert value(s, "leadrouter_events_total", topic=forms, outcome="duplicate") == 1
    assert value(s, "leadrouter_events_total", topic=forms, outcome="invalid") == 1
    assert (
        value(s, "leadrouter_events_total", topic="marketing.email-events", outcome="invalid") == 1
    )
    assert value(s, "leadrouter_events_total", topic="marketing.ad-clicks", outcome="ok") == 1
    assert value(s, "leadrouter_deadletters_total", reason="invalid_json") == 1
    assert value(s, "leadrouter_deadletters_total", reason="missing_field") == 1
    assert value(s, "leadrouter_leads_generated_total", channel="form", source="google") == 1
    assert value(s, "leadrouter_leads_generated_total", channel="form", source="other") == 1
    assert value(s, "leadrouter_leads_generated_total", channel="form", source="direct") == 1
    assert value(s, "leadrouter_leads_generated_total", channel="email", source="email") == 1
    assert value(s, "leadrouter_leads_routed_total", queue="fast-lane", rule="fast-lane") == 1
    assert value(s, "leadrouter_leads_disqualified_total", reason="disposable") == 1
    assert value(s, "leadrouter_route_latency_seconds_count") == 1
    assert value(s, "leadrouter_lead_score_count") == 4
    # bounded labels: no address, lead id or free text anywhere in a label
    for (name, labels), _ in s.items():
        for _, label_value in labels:
            assert "@" not in label_value and not label_value.startswith("ld_"), (name, labels)
            assert re.fullmatch(r"[A-Za-z0-9_.+:-]{0,64}|\+Inf", label_value), (name, labels)
