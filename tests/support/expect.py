"""What sales must receive for the pipeline scenarios, asserted alike on RoutedLeads read
back from Kafka (tests/integration/test_pipeline.py) and on those the topology publishes
in-process (tests/unit/test_topology.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

JANE = {
    "first_name": "Jane",
    "last_name": "Doe",
    "job_title": "VP of Sales",
    "country": "US",
    "phone": "(415) 555-2671",
    "utm": {"source": "google", "campaign": "brand-search"},
}
BIGCORP = {"name": "BigCorp GmbH", "employees": 8000, "industry": "software", "country": "DE"}
OWNED = {
    "name": "Owned Inc",
    "employees": 300,
    "industry": "retail",
    "country": "US",
    "owner": "ben.carter",
}


def fast_lane_demo_request(lead: dict[str, Any], trigger_event_id: str) -> None:
    """Jane's demo request: fast lane at once, first rep in turn, with its whole trace."""
    assert lead["event"] == "lead.assigned"
    assert lead["rep_id"] == "ana.silva"  # first in turn of the fast-lane round robin
    assert lead["name"] == "Jane Doe"
    assert lead["phone"] == "+14155552671"
    assert lead["score"]["grade"] in "ABCD" and lead["score"]["total"] > 0
    assert lead["reason"]["rule"] == "fast-lane"
    assert lead["reason"]["assignment"] == "round_robin"
    trace = lead["reason"]["trace"]
    assert any("triggered fast_lane" in step for step in trace)
    assert any(step.startswith("score seniority='vp'") for step in trace)
    assert any("rule fast-lane matched" in step for step in trace)
    assert any("round_robin: next in turn is ana.silva" in step for step in trace)
    assert lead["source"]["utm_source"] == "google"
    assert lead["trigger_event_id"] == trigger_event_id
    routed = datetime.fromisoformat(lead["routed_at"])
    due = datetime.fromisoformat(lead["sla_due_at"])
    assert due - routed == timedelta(minutes=5)


def territory_and_owner(big: dict[str, Any], owned: dict[str, Any]) -> None:
    """An MQL at a known German enterprise, and a lead whose account has an owner."""
    assert big["queue"] == "enterprise-emea"
    assert big["company"] == {"domain": "bigcorp.de", **BIGCORP}
    assert big["rep_id"] in ("greta.schmidt", "hugo.dubois")
    assert big["reason"]["assignment"] == "weighted"
    assert owned["rep_id"] == "ben.carter" and owned["reason"]["rule"] == "account-owner"


def ad_first_touch(lead: dict[str, Any]) -> None:
    """An anonymous LinkedIn click ten minutes before the form is the lead's first touch."""
    assert lead["source"]["channel"] == "ad"
    assert lead["source"]["platform"] == "linkedin"
    assert lead["source"]["utm_campaign"] == "spring-launch"
    generated = datetime.fromisoformat(lead["generated_at"])
    assert generated < datetime.fromisoformat(lead["routed_at"]) - timedelta(seconds=500)


def activity_not_reassignment(leads: list[dict[str, Any]]) -> None:
    """A routed lead's later touches reach its owner as activity, on the same queue and rep."""
    assert [v["event"] for v in leads] == ["lead.assigned", "lead.activity", "lead.activity"]
    assert len({(v["queue"], v["rep_id"]) for v in leads}) == 1
