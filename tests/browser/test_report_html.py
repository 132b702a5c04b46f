"""`leadrouter report --html` in a real headless Chromium: the page's four charts are laid out
with a size, every bar with a value is drawn with a non-zero size, the MQL threshold line is
there, nothing is fetched and the console stays clean; a screenshot in the test's output
folder shows the charts in their colours, not a blank page.

The report comes from hand-built records (a few hundred leads over sources, score bands and
queues) through the same Collector and renderer the command uses, so no broker is needed.
Every browser run has a deadline (the subprocess timeout); nothing sleeps.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tests.browser.chromium import (
    assert_script_error_caught,
    browse,
    root_attributes,
    screenshot,
)
from workers.report import Collector
from workers.report_html import render_html

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp()
WINDOW = (1600, 1300)
CONVERSION_FILL = (0x2F, 0x62, 0xC0)
LEADS_FILL = (0x6B, 0x4F, 0xBB)
MQL_RED = (0xC0, 0x39, 0x2B)
QUEUES = ("fast-lane", "enterprise-emea", "mid-market", "smb")
SOURCES = ("google", "linkedin", "newsletter", "partner", None)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, UTC).isoformat()


def a_week_of_leads(seed: int = 3) -> dict[str, Any]:
    """A report on 400 leads whose conversion grows with their score, as sales would hope."""
    rng = random.Random(seed)
    collector = Collector(mql_threshold=60)
    for n in range(400):
        lead = f"ld_{n:020x}"
        score = rng.uniform(5, 98)
        queue = rng.choice(QUEUES)
        routed_at = n * 600.0
        collector.add_routed(
            orjson.dumps(
                {
                    "event": "lead.assigned",
                    "lead_id": lead,
                    "queue": queue,
                    "rep_id": "ana.silva",
                    "score": {
                        "total": round(score, 1),
                        "grade": "ABCD"[min(3, int(4 - score // 25))],
                    },
                    "source": {
                        "channel": "form",
                        "utm_source": rng.choice(SOURCES),
                        "utm_campaign": rng.choice(("spring", "brand", None)),
                    },
                    "routed_at": _iso(routed_at),
                    "sla_due_at": _iso(routed_at + (300 if queue == "fast-lane" else 3600)),
                }
            )
        )
        if rng.random() < 0.85:
            delay = rng.lognormvariate(0, 1) * (120 if queue == "fast-lane" else 1800)
            collector.add_activity(_activity(lead, "contacted", routed_at + delay))
            if rng.random() < score / 120:
                collector.add_activity(_activity(lead, "opportunity_created", routed_at + 9e4))
                if rng.random() < 0.4:
                    collector.add_activity(_activity(lead, "won", routed_at + 9e5))
    collector.add_activity(b"not json")
    end = T0 + 400 * 600 + 86400
    return collector.report(since=T0, until=end, judged_at=end)


def _activity(lead: str, kind: str, seconds: float) -> bytes:
    return orjson.dumps(
        {"event_id": f"{lead}/{kind}", "occurred_at": _iso(seconds), "lead_id": lead, "type": kind}
    )


def write_page(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    report = a_week_of_leads()
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    return page, report


def bars_with_a_value(report: dict[str, Any]) -> int:
    """How many bars the four charts draw with a non-zero size."""
    bands = report["by_score_band"]
    sources = report["by_source"][:15]
    queues = report["by_queue"]
    values = [r[k] for r in bands for k in ("conversion_rate", "win_rate")]
    values += [r[k] for r in sources for k in ("conversion_rate", "win_rate")]
    values += [r["leads"] for r in queues]
    values += [r[k] for r in queues for k in ("speed_to_lead_p50_s", "speed_to_lead_p90_s")]
    return sum(1 for v in values if v)


def test_charts_render_with_a_size_and_no_console_errors(tmp_path: Path) -> None:
    page, report = write_page(tmp_path)
    run = browse(page, tmp_path, "--dump-dom", f"--window-size={WINDOW[0]},{WINDOW[1]}")
    assert run.console == []
    attrs = root_attributes(run.stdout)
    assert "data-render-error" not in attrs
    assert attrs.get("data-rendered") == "ok"
    assert (attrs["data-charts"], attrs["data-charts-sized"]) == ("4", "4")
    total = sum(
        int(n) for n in re.findall(r'<svg class="chart" id="[^"]+" data-bars="(\d+)"', run.stdout)
    )
    assert attrs["data-bars"] == str(total)
    assert int(attrs["data-bars-drawn"]) == bars_with_a_value(report) >= 30
    sizes = re.findall(r'<svg class="chart" id="([^"]+)"[^>]*data-size="(\d+)x(\d+)"', run.stdout)
    assert [s[0] for s in sizes] == [
        "chart-score-band",
        "chart-source",
        "chart-queue-leads",
        "chart-queue-speed",
    ]
    assert all(int(w) >= 700 and int(h) >= 100 for _, w, h in sizes), sizes
    assert 'id="mql-line"' in run.stdout
    # The tables follow the charts, the threshold's band marked.
    assert run.stdout.count("<table>") == 7
    assert re.search(r'<td>60-70 <span class="mql-mark">MQL 60</span></td>', run.stdout)


def test_screenshot_shows_the_charts(tmp_path: Path) -> None:
    page, _ = write_page(tmp_path)
    colours, total = screenshot(page, tmp_path, WINDOW, blank_above=0.9)
    assert colours[CONVERSION_FILL] > 0.01 * total  # conversion bars, by band and by source
    assert colours[LEADS_FILL] > 0.005 * total  # leads per queue
    assert colours[MQL_RED] > 100  # the threshold line and its label


def test_the_checks_see_a_script_error(tmp_path: Path) -> None:
    """The checks above can fail: a page whose script breaks is caught by the console scan
    and by the error mark the page's own handler sets."""
    page, _ = write_page(tmp_path)
    text = page.read_text(encoding="utf-8")
    broken = text.replace('querySelectorAll("svg.chart")', 'querySelectorAll("svg.chart").nope()')
    assert broken != text
    assert_script_error_caught(page, broken, tmp_path)
