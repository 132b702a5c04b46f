"""The report's aggregation on hand-built records: the join of routed leads and sales
activities, speed to lead percentiles, SLA breaches judged at the report's end, score bands
around the MQL threshold, and broken records counted by reason. No broker."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from rich.console import Console

from workers.report import Collector, band_label, band_of, percentile, render_terminal
from workers.report_html import render_html

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp()


def at(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, UTC).isoformat()


def routed(
    lead: str,
    *,
    queue: str = "fast-lane",
    total: float = 70.0,
    grade: str = "B",
    source: str | None = "google",
    channel: str = "form",
    campaign: str | None = "brand-search",
    routed_s: float = 0,
    sla_s: float | None = 300,
    event: str = "lead.assigned",
    rep: str | None = "ana.silva",
) -> bytes:
    return orjson.dumps(
        {
            "event": event,
            "lead_id": lead,
            "queue": queue,
            "rep_id": rep,
            "score": {"total": total, "fit": 20, "engagement": total - 20, "grade": grade},
            "source": {
                "channel": channel,
                "platform": None,
                "utm_source": source,
                "utm_campaign": campaign,
            },
            "routed_at": at(routed_s),
            "sla_due_at": at(routed_s + sla_s) if sla_s is not None else None,
            "reason": {"rule": queue, "assignment": "round_robin", "trace": []},
        }
    )


def act(lead: str, kind: str, seconds: float) -> bytes:
    return orjson.dumps(
        {"event_id": f"{lead}/{kind}/{seconds}", "occurred_at": at(seconds), "lead_id": lead,
         "type": kind, "rep_id": "ana.silva"}
    )  # fmt: skip


def row(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, rows)
    return found[0]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([4, 1, 3, 2], 50) == 2
    assert percentile([4, 1, 3, 2], 90) == 4
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == 9
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50) == 5
    assert percentile([7.5], 50) == percentile([7.5], 90) == 7.5
    assert percentile([], 50) is None


def test_score_bands() -> None:
    assert [band_of(x) for x in (0, 9.99, 10, 59.99, 60, 60.01, -0.5, -10, -10.5)] == [
        0, 0, 1, 5, 6, 6, -1, -1, -2,
    ]  # fmt: skip
    assert band_label(60) == "60-70"
    assert band_label(-10) == "-10-0"


@pytest.fixture
def collected() -> Collector:
    """Five leads, their activities in every order, and the repeats a real topic has."""
    c = Collector(mql_threshold=60)
    # A: an activity read before the lead's assignment; meeting booked before the call.
    c.add_activity(act("A", "contacted", 100))
    c.add_routed(routed("A", total=72, grade="B"))
    c.add_activity(act("A", "meeting_booked", 50))
    c.add_activity(act("A", "opportunity_created", 900))
    c.add_activity(act("A", "won", 5000))
    c.add_routed(routed("A", total=72, grade="B"))  # a re-send: counted once
    c.add_routed(routed("A", event="lead.activity"))
    # B: never contacted, SLA due in an hour, judged after it: a breach; then reassigned.
    c.add_routed(
        routed("B", queue="mid-market", total=45, grade="C", source="linkedin",
               campaign=None, sla_s=3600, routed_s=10)
    )  # fmt: skip
    c.add_routed(routed("B", queue="mid-market", event="lead.reassigned", rep="kai.andersen"))
    # C: contacted late (after its SLA): contacted and breached.
    c.add_routed(routed("C", total=61, grade="B", routed_s=20))
    c.add_activity(act("C", "accepted", 30))  # not a contact
    c.add_activity(act("C", "contacted", 420))
    c.add_activity(act("C", "opportunity_created", 2000))
    c.add_activity(act("C", "lost", 3000))
    # D: SLA not yet due when judged, not contacted: waiting, no breach. No UTM at all.
    c.add_routed(
        routed("D", queue="smb", total=12, grade="D", source=None, channel="ad",
               campaign=None, sla_s=86400, routed_s=30)
    )  # fmt: skip
    # E: contacted after the report's end: not known at its end.
    c.add_routed(routed("E", total=88, grade="A", routed_s=40))
    c.add_activity(act("E", "contacted", 20_000))
    # Activities of a lead routed before the stretch.
    c.add_activity(act("Z", "contacted", 5))
    c.add_activity(act("Z", "won", 6))
    return c


JUDGED = T0 + 7200


def test_join_totals_and_speed_to_lead(collected: Collector) -> None:
    report = collected.report(since=T0 - 60, until=JUDGED, judged_at=JUDGED)
    assert report["leads"] == 5
    assert report["repeated_assignments"] == 1
    assert report["routed_events"] == {
        "lead.activity": 1,
        "lead.assigned": 6,
        "lead.reassigned": 1,
    }
    assert report["events"] == 8 + 11  # routed records + activity records
    assert report["activities"] == {"leads_with_activity": 3, "unmatched_leads": 1}
    totals = report["totals"]
    assert totals == {
        "leads": 5,
        "contacted": 2,  # A (meeting at 50 s) and C (at 420 s); E's contact is after the end
        "contacted_share": 0.4,
        "speed_to_lead_p50_s": 50.0,  # A: 50 s after routing; C: 400 s
        "speed_to_lead_p90_s": 400.0,
        "sla_breaches": 3,  # B (never, due at 3610 s), C (late), E (after the end)
        "reassigned": 1,
        "opportunities": 2,
        "won": 1,
        "conversion_rate": 0.4,
        "win_rate": 0.2,
    }
    assert report["since"] == "2026-11-02T08:59:00Z"
    assert report["judged_at"] == "2026-11-02T11:00:00Z"


def test_judged_earlier_breaches_fewer(collected: Collector) -> None:
    """At 30 minutes B's SLA (an hour) is not due yet: C (late) and E (not yet) breached."""
    report = collected.report(since=T0, until=T0 + 1800, judged_at=T0 + 1800)
    assert report["totals"]["sla_breaches"] == 2
    assert row(report["by_queue"], queue="mid-market")["sla_breaches"] == 0


def test_views(collected: Collector) -> None:
    report = collected.report(since=T0, until=JUDGED, judged_at=JUDGED)
    google = row(report["by_source"], source="google")
    assert (google["leads"], google["contacted"], google["won"], google["sla_breaches"]) == (
        3, 2, 1, 2,
    )  # fmt: skip
    assert row(report["by_source"], source="direct")["leads"] == 1  # D: no UTM
    assert [r["source"] for r in report["by_source"]] == ["google", "direct", "linkedin"]
    assert row(report["by_campaign"], source="linkedin", campaign="(none)")["leads"] == 1
    assert row(report["by_campaign"], source="google", campaign="brand-search")["leads"] == 3
    assert row(report["by_channel"], channel="ad")["leads"] == 1
    assert [r["grade"] for r in report["by_grade"]] == ["A", "B", "C", "D"]
    assert row(report["by_grade"], grade="B")["conversion_rate"] == 1.0  # A and C
    fast = row(report["by_queue"], queue="fast-lane")
    assert (fast["leads"], fast["speed_to_lead_p50_s"], fast["speed_to_lead_p90_s"]) == (
        3, 50.0, 400.0,
    )  # fmt: skip
    assert row(report["by_queue"], queue="smb")["speed_to_lead_p50_s"] is None
    assert row(report["by_queue"], queue="mid-market")["reassigned"] == 1


def test_score_bands_around_the_mql_threshold(collected: Collector) -> None:
    report = collected.report(since=T0, until=JUDGED, judged_at=JUDGED)
    bands = report["by_score_band"]
    # Every band from the lowest lead (12) to the highest (88), empty ones included.
    assert [b["band"] for b in bands] == [
        "10-20", "20-30", "30-40", "40-50", "50-60", "60-70", "70-80", "80-90",
    ]  # fmt: skip
    assert [b["leads"] for b in bands] == [1, 0, 0, 1, 0, 1, 1, 1]
    assert [b["band"] for b in bands if b["mql_threshold_in_band"]] == ["60-70"]
    assert [b["above_mql"] for b in bands] == [False] * 5 + [True] * 3
    assert row(bands, band="70-80")["won"] == 1
    assert row(bands, band="20-30")["conversion_rate"] is None
    assert report["mql_threshold"] == 60 and report["band_width"] == 10


def test_malformed_records_are_counted_by_reason_never_fatal() -> None:
    c = Collector(mql_threshold=60)
    c.add_routed(routed("A"), "leads.routed.fast-lane")
    broken_routed = [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        None,
        orjson.dumps({"event": "lead.assigned", "queue": "smb"}),  # no lead_id
        orjson.dumps({**orjson.loads(routed("B")), "routed_at": "yesterday"}),
        orjson.dumps({**orjson.loads(routed("C")), "event": "lead.deleted"}),
        orjson.dumps({**orjson.loads(routed("D")), "score": {"total": "high"}}),
        orjson.dumps({**orjson.loads(routed("E")), "score": None}),
        orjson.dumps({**orjson.loads(routed("F")), "sla_due_at": "soon"}),
        orjson.dumps({**orjson.loads(routed("G")), "lead_id": 7}),
    ]
    for raw in broken_routed:
        c.add_routed(raw, "leads.routed.fast-lane")
    broken_activities = [
        b"",
        orjson.dumps({"lead_id": "A", "type": "called", "occurred_at": at(5)}),
        orjson.dumps({"lead_id": "A", "type": "contacted", "occurred_at": "5 past 9"}),
        orjson.dumps({"type": "contacted", "occurred_at": at(5)}),
    ]
    for raw in broken_activities:
        c.add_activity(raw)
    c.add_activity(act("A", "contacted", 60))
    report = c.report(since=T0, until=JUDGED, judged_at=JUDGED)
    assert report["leads"] == 1
    assert report["totals"]["speed_to_lead_p50_s"] == 60.0
    assert report["malformed"] == {
        "total": 15,
        "by_reason": {
            "empty_value": 1,
            "invalid_json": 3,
            "invalid_time": 3,
            "invalid_type": 2,
            "invalid_value": 2,
            "missing_field": 3,
            "not_an_object": 1,
        },
        "by_topic": {
            "leads.routed.fast-lane": {
                "empty_value": 1,
                "invalid_json": 2,
                "invalid_time": 2,
                "invalid_type": 2,
                "invalid_value": 1,
                "missing_field": 2,
                "not_an_object": 1,
            },
            "sales.activities": {
                "invalid_json": 1,
                "invalid_time": 1,
                "invalid_value": 1,
                "missing_field": 1,
            },
        },
    }
    assert report["records"] == {"leads.routed.fast-lane": 12, "sales.activities": 5}


def test_an_empty_collector_reports_zeros() -> None:
    report = Collector(mql_threshold=60).report(since=T0, until=None, judged_at=JUDGED)
    assert report["leads"] == 0 and report["by_score_band"] == [] and report["until"] is None
    assert report["totals"]["contacted_share"] is None
    assert report["totals"]["speed_to_lead_p50_s"] is None
    page = render_html(report)
    assert "no routed leads" in page


def test_terminal_tables(collected: Collector) -> None:
    report = collected.report(since=T0, until=JUDGED, judged_at=JUDGED)
    out = io.StringIO()
    render_terminal(report, Console(file=out, width=160, color_system=None))
    text = out.getvalue()
    assert "5 leads routed" in text
    assert re.search(r"60-70 ◀ MQL 60[\s│]+1[\s│]", text), text
    for title in ("Source", "Source / campaign", "Channel", "Grade", "Score band", "Queue"):
        assert re.search(rf"^{re.escape(title)} *$", text, re.M), title
    cells = r"[\s│]+".join(("fast-lane", "3", "66.7%", "50s", "6m 40s", "2", "2", "1", "66.7%"))
    assert re.search(cells.replace(".", r"\."), text), text


def test_html_is_self_contained_with_escaped_data(collected: Collector) -> None:
    collected.add_routed(routed("X", source='<script>alert("x")</script>', campaign="__TABLES__"))
    report = collected.report(since=T0, until=JUDGED, judged_at=JUDGED)
    page = render_html(report)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert page.count("<table>") == 7  # the placeholder in a UTM tag was not substituted
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", page, re.I)
    assert "@import" not in page and "url(" not in page
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}
    ids = re.findall(r'<svg class="chart" id="([^"]+)" data-bars="(\d+)"', page)
    assert ids == [
        ("chart-score-band", str(2 * len(report["by_score_band"]))),
        ("chart-source", str(2 * len(report["by_source"]))),
        ("chart-queue-leads", str(len(report["by_queue"]))),
        ("chart-queue-speed", str(2 * len(report["by_queue"]))),
    ]
    # The MQL line sits at 60 on an axis from 10 to 90: half way across the plot.
    line = re.search(r'<line id="mql-line" class="mql" x1="([\d.]+)"', page)
    assert line is not None
    assert float(line.group(1)) == pytest.approx(
        52 + (720 - 52 - 16) * (60 - 10) / (90 - 10), abs=0.1
    )


def test_a_lead_routed_before_the_stretch_is_not_counted_in_it(collected: Collector) -> None:
    """A Sunday lead handed out from its queue's line on Monday publishes a lead.assigned in
    Monday's stretch, with Sunday's routed_at: it belongs to Sunday's report, not Monday's."""
    collected.add_routed(routed("S", total=70, grade="B", routed_s=-3600))
    assert collected.report(since=T0 - 7200, until=JUDGED, judged_at=JUDGED)["leads"] == 6
    assert collected.report(since=T0 - 60, until=JUDGED, judged_at=JUDGED)["leads"] == 5
