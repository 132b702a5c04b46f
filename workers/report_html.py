"""`leadrouter report --html`: the report as one self-contained page with charts.

The charts are SVG drawn here in Python (no chart library, no script needed to draw them):
conversion by score band with the MQL threshold marked, conversion by source, leads per
queue and speed to lead per queue, where a person would rather look than read; the tables
follow. Nothing is fetched: no external script, style sheet, font or image. Every text from
the data (sources and campaigns come from marketing's UTM tags) is escaped.

A small inline script only measures what was drawn (each chart's size, and how many bars
have a non-zero size) and marks the document, so a headless browser test can tell a drawn
page from a blank one (tests/browser/test_report_html.py).
"""

from __future__ import annotations

import html
import math
import re
from typing import Any

from workers.explain import duration

WIDTH = 720
BAR = 22  # height of a horizontal bar, px
GAP = 8
LEFT = 170  # room for the labels of horizontal bars
INK, MUTED, GRID = "#1d2430", "#5b6677", "#e3e7ed"
CONVERSION, WON, LEADS, P50, P90, MQL = (
    "#2f62c0",
    "#1f7a4d",
    "#6b4fbb",
    "#2a9d8f",
    "#e9a23b",
    "#c0392b",
)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _nice_max(value: float) -> float:
    """A round top for an axis: 1, 2, 2.5 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _svg(chart_id: str, title: str, height: int, body: list[str], bars: int) -> str:
    return (
        f"<figure><figcaption>{_e(title)}</figcaption>"
        f'<svg class="chart" id="{chart_id}" data-bars="{bars}" xmlns="http://www.w3.org/2000/svg"'
        f' width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img"'
        f' aria-label="{_e(title)}">' + "".join(body) + "</svg></figure>"
    )


def score_band_chart(report: dict[str, Any]) -> str:
    """Vertical bars: conversion rate (opportunities / leads) and win rate per score band,
    a dashed line where the MQL threshold sits, the leads of each band above its bar."""
    rows = report["by_score_band"]
    height, top, bottom, left, right = 300, 28, 48, 52, 16
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    body: list[str] = []
    if not rows:
        body.append(f'<text x="{left}" y="{top + 20}" fill="{MUTED}">no routed leads</text>')
        return _svg("chart-score-band", "Conversion by score band", height, body, 0)
    peak = _nice_max(max((r["conversion_rate"] or 0) for r in rows))
    for i in range(5):
        share = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{share * 100:g}%</text>"
        )
    slot = plot_w / len(rows)
    width = max(4.0, slot * 0.7)
    bars = 0
    for i, row in enumerate(rows):
        x = left + i * slot + (slot - width) / 2
        for value, colour, kind, w, dx in (
            (row["conversion_rate"] or 0, CONVERSION, "conversion", width, 0.0),
            (row["win_rate"] or 0, WON, "won", width * 0.45, width * 0.275),
        ):
            h = plot_h * value / peak
            body.append(
                f'<rect class="bar {kind}" data-band="{_e(row["band"])}" data-value="{value}"'
                f' x="{x + dx:.1f}" y="{top + plot_h - h:.1f}" width="{w:.1f}" height="{h:.1f}"'
                f' fill="{colour}"><title>{_e(row["band"])}: {kind} {_pct(value)} of '
                f"{row['leads']} leads</title></rect>"
            )
            bars += 1
        body.append(
            f'<text class="tick" x="{x + width / 2:.1f}" y="{top + plot_h + 16}"'
            f' text-anchor="middle">{_e(row["band"])}</text>'
            f'<text class="count" x="{x + width / 2:.1f}" y="{top + plot_h + 30}"'
            f' text-anchor="middle">{row["leads"]}</text>'
        )
    low, high = rows[0]["low"], rows[-1]["high"]
    threshold = report["mql_threshold"]
    if low <= threshold <= high:
        x = left + plot_w * (threshold - low) / (high - low)
        body.append(
            f'<line id="mql-line" class="mql" x1="{x:.1f}" y1="{top - 14}" x2="{x:.1f}"'
            f' y2="{top + plot_h}" stroke="{MQL}" stroke-width="2" stroke-dasharray="6 4"/>'
            f'<text x="{x + 4:.1f}" y="{top - 4}" fill="{MQL}">MQL threshold {threshold:g}</text>'
        )
    body.append(
        f'<text class="tick" x="{left}" y="{height - 4}">score band (leads below);'
        f" bars: conversion rate, inner bar: win rate</text>"
    )
    return _svg("chart-score-band", "Conversion by score band", height, body, bars)


def _horizontal(
    chart_id: str,
    title: str,
    rows: list[dict[str, Any]],
    label: str,
    series: list[tuple[str, str, str, str]],  # (metric key, colour, css class, legend)
    shown: Any,
) -> str:
    """Horizontal bars, one group per row, one bar per series, value written after it."""
    per = len(series) * BAR + GAP
    height = 24 + max(1, len(rows)) * per + 8
    plot_w = WIDTH - LEFT - 80
    values = [row[key] or 0 for row in rows for key, *_ in series]
    peak = _nice_max(max(values, default=0))
    body: list[str] = []
    bars = 0
    for i, row in enumerate(rows):
        y0 = 20 + i * per
        body.append(
            f'<text x="{LEFT - 8}" y="{y0 + len(series) * BAR / 2 + 4:.1f}"'
            f' text-anchor="end">{_e(row[label])}</text>'
        )
        for j, (key, colour, kind, _) in enumerate(series):
            value = row[key] or 0
            w = plot_w * value / peak
            y = y0 + j * BAR
            body.append(
                f'<rect class="bar {kind}" data-row="{_e(row[label])}" data-value="{value}"'
                f' x="{LEFT}" y="{y}" width="{w:.1f}" height="{BAR - 4}" fill="{colour}">'
                f"<title>{_e(row[label])}: {_e(shown(key, row[key]))}</title></rect>"
                f'<text class="value" x="{LEFT + w + 6:.1f}" y="{y + BAR - 8}">'
                f"{_e(shown(key, row[key]))}</text>"
            )
            bars += 1
    if not rows:
        body.append(f'<text x="{LEFT}" y="40" fill="{MUTED}">no routed leads</text>')
    legend_x = LEFT
    for _, colour, _, legend in series:
        body.append(
            f'<rect x="{legend_x}" y="4" width="10" height="10" fill="{colour}"/>'
            f'<text class="tick" x="{legend_x + 14}" y="13">{_e(legend)}</text>'
        )
        legend_x += 14 + 7 * len(legend) + 16
    return _svg(chart_id, title, height, body, bars)


def _shown(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key.endswith("_s"):
        return duration(value)
    if key.endswith(("rate", "share")):
        return _pct(value)
    return str(value)


def _table(title: str, rows: list[dict[str, Any]], label: str, report: dict[str, Any]) -> str:
    head = (
        "<tr><th>" + _e(title) + "</th><th>Leads</th><th>Contacted</th><th>STL p50</th>"
        "<th>STL p90</th><th>SLA breaches</th><th>Opps</th><th>Won</th><th>Conversion</th>"
        "<th>Win rate</th></tr>"
    )
    body = []
    for row in rows:
        name = str(row.get(label, "all"))
        if label == "campaign":
            name = f"{row['source']} / {row['campaign']}"
        mark = ""
        if label == "band" and row.get("mql_threshold_in_band"):
            mark = f' <span class="mql-mark">MQL {report["mql_threshold"]:g}</span>'
        body.append(
            "<tr><td>"
            + _e(name)
            + mark
            + "</td>"
            + "".join(
                f"<td>{_e(_shown(key, row[key]))}</td>"
                for key in (
                    "leads",
                    "contacted_share",
                    "speed_to_lead_p50_s",
                    "speed_to_lead_p90_s",
                    "sla_breaches",
                    "opportunities",
                    "won",
                    "conversion_rate",
                    "win_rate",
                )
            )
            + "</tr>"
        )
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def render_html(report: dict[str, Any]) -> str:
    """The whole page."""
    sources = report["by_source"][:15]
    queues = report["by_queue"]
    charts = [
        score_band_chart(report),
        _horizontal(
            "chart-source",
            "Conversion by source",
            sources,
            "source",
            [
                ("conversion_rate", CONVERSION, "conversion", "conversion (opportunities / leads)"),
                ("win_rate", WON, "won", "win rate (won / leads)"),
            ],
            _shown,
        ),
        _horizontal(
            "chart-queue-leads",
            "Leads per queue",
            queues,
            "queue",
            [("leads", LEADS, "leads", "leads routed")],
            _shown,
        ),
        _horizontal(
            "chart-queue-speed",
            "Speed to lead per queue",
            queues,
            "queue",
            [
                ("speed_to_lead_p50_s", P50, "p50", "speed to lead p50"),
                ("speed_to_lead_p90_s", P90, "p90", "p90"),
            ],
            _shown,
        ),
    ]
    tables = "".join(
        f"<h2>{_e(title)}</h2>" + _table(title, rows, label, report)
        for title, rows, label in (
            ("All leads", [report["totals"]], "all"),
            ("Source", report["by_source"], "source"),
            ("Source / campaign", report["by_campaign"], "campaign"),
            ("Channel", report["by_channel"], "channel"),
            ("Grade", report["by_grade"], "grade"),
            ("Score band", report["by_score_band"], "band"),
            ("Queue", report["by_queue"], "queue"),
        )
    )
    malformed = report["malformed"]
    summary = (
        f"{report['leads']} leads routed from {report['since']} to {report['until'] or 'now'}"
        f" (SLAs judged at {report['judged_at']}); {report['events']} records read"
    )
    if malformed["total"]:
        summary += (
            f"; {malformed['total']} malformed records ("
            + ", ".join(f"{reason} {n}" for reason, n in malformed["by_reason"].items())
            + ")"
        )
    values = {"SUMMARY": _e(summary), "CHARTS": "".join(charts), "TABLES": tables}
    # One pass, so a placeholder written inside a UTM tag is never substituted.
    return re.sub(r"__(SUMMARY|CHARTS|TABLES)__", lambda m: values[m.group(1)], _PAGE)


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>leadrouter report</title>
<style>
  body { margin: 0; padding: 16px 24px 32px; color: #1d2430; background: #fff;
         font: 14px/1.4 system-ui, "DejaVu Sans", sans-serif; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  h2 { font-size: 16px; margin: 24px 0 6px; }
  .summary { color: #5b6677; margin: 0 0 12px; }
  .charts { display: flex; flex-wrap: wrap; gap: 8px 24px; }
  figure { margin: 8px 0; }
  figcaption { font-weight: 600; margin-bottom: 4px; }
  svg text { font: 12px system-ui, "DejaVu Sans", sans-serif; fill: #1d2430; }
  svg text.tick, svg text.count { fill: #5b6677; font-size: 11px; }
  svg text.value { fill: #5b6677; }
  table { border-collapse: collapse; }
  th, td { padding: 3px 10px; border-bottom: 1px solid #e3e7ed; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  .mql-mark { color: #c0392b; font-weight: 600; }
</style>
</head>
<body>
<h1>Lead quality and speed</h1>
<p class="summary">__SUMMARY__</p>
<div class="charts">__CHARTS__</div>
__TABLES__
<script>
(function () {
  var root = document.documentElement;
  try {
    var charts = document.querySelectorAll("svg.chart");
    var sized = 0, drawn = 0, bars = 0;
    charts.forEach(function (chart) {
      var box = chart.getBoundingClientRect();
      if (box.width > 0 && box.height > 0) { sized += 1; }
      chart.querySelectorAll("rect.bar").forEach(function (bar) {
        bars += 1;
        var b = bar.getBoundingClientRect();
        if (b.width > 0 && b.height > 0) { drawn += 1; }
      });
      chart.setAttribute("data-size", Math.round(box.width) + "x" + Math.round(box.height));
    });
    root.setAttribute("data-charts", String(charts.length));
    root.setAttribute("data-charts-sized", String(sized));
    root.setAttribute("data-bars", String(bars));
    root.setAttribute("data-bars-drawn", String(drawn));
    root.setAttribute("data-rendered", "ok");
  } catch (err) {
    root.setAttribute("data-render-error", String(err));
    throw err;
  }
})();
</script>
</body>
</html>
"""
