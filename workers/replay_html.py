"""`leadrouter replay --html`: the comparison as one page a sales-ops lead can open anywhere.

What a person would rather look at than read: the load on each rep before and after the
change (the question "who gets swamped?"), the leads per queue, and why leads were held back;
then the changed leads with both decision traces, as text. The charts are inline SVG drawn
here, with no script at all: the page needs no network, no font and no JavaScript to render,
so it can be attached to a ticket and opened offline. Every value from history or config is
escaped: a rep's name or a trace line is text, never markup.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

from workers.history import moment_text

BASELINE_FILL = "#8a99ad"  # what the worker does now
CANDIDATE_FILL = "#e07b1a"  # what the candidate would do
OVERFLOW_FILL = "#c0392b"  # reps passed over at daily capacity

BAR = 12  # height of one bar
GAP = 6  # between one row's bars and the next row
LABEL = 210  # width of the label column
PLOT = 520  # width of the longest bar
VALUE = 90  # room for the value after a bar


def _n(value: float) -> str:
    return f"{value:,.0f}"


def paired_bars(
    chart: str, title: str, rows: list[tuple[str, str | None, float, float]], note: str = ""
) -> str:
    """A horizontal bar pair per row (baseline above, candidate below), rows grouped under
    headings: (label, group heading or None, baseline, candidate)."""
    top = 34
    most = max([1.0, *(max(a, b) for _, _, a, b in rows)])
    body: list[str] = []
    y = top
    group: str | None = None
    for label, heading, a, b in rows:
        if heading is not None and heading != group:
            group = heading
            y += 6
            body.append(f'<text class="group" x="0" y="{y + 10}">{escape(heading)}</text>')
            y += 18
        body.append(f'<g class="row" data-label="{escape(label)}">')
        body.append(
            f'<text class="label" x="{LABEL - 8}" y="{y + BAR + 3}" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        for i, (side, value, fill) in enumerate(
            (("baseline", a, BASELINE_FILL), ("candidate", b, CANDIDATE_FILL))
        ):
            width = round(PLOT * value / most, 1)
            by = y + i * BAR
            body.append(
                f'<rect class="bar {side}" x="{LABEL}" y="{by}" width="{width}" '
                f'height="{BAR - 1}" fill="{fill}" data-value="{value:g}"/>'
            )
            body.append(
                f'<text class="value" x="{LABEL + width + 6}" y="{by + BAR - 2}">{_n(value)}</text>'
            )
        body.append("</g>")
        y += 2 * BAR + GAP
    height = y + 10
    width = LABEL + PLOT + VALUE
    legend = (
        f'<g class="legend"><rect x="{LABEL}" y="8" width="12" height="12" '
        f'fill="{BASELINE_FILL}"/><text x="{LABEL + 18}" y="18">baseline</text>'
        f'<rect x="{LABEL + 110}" y="8" width="12" height="12" fill="{CANDIDATE_FILL}"/>'
        f'<text x="{LABEL + 128}" y="18">candidate</text></g>'
    )
    return (
        f'<section class="chart" id="{chart}"><h2>{escape(title)}</h2>'
        + (f'<p class="note">{escape(note)}</p>' if note else "")
        + f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'data-rows="{len(rows)}">{legend}{"".join(body)}</svg></section>'
    )


def rep_rows(report: dict[str, Any]) -> list[tuple[str, str | None, float, float]]:
    """Each rep under the queue(s) they serve, in the queues' order in config."""
    base, cand = report["baseline"], report["candidate"]
    rows = []
    placed: set[str] = set()
    for queue, members in _queue_members(report).items():
        for rep in members:
            placed.add(rep)
            rows.append(
                (
                    rep,
                    queue,
                    base["reps"].get(rep, {}).get("leads", 0),
                    cand["reps"].get(rep, {}).get("leads", 0),
                )
            )
    for rep in sorted((set(base["reps"]) | set(cand["reps"])) - placed):
        a, b = base["reps"].get(rep, {}), cand["reps"].get(rep, {})
        rows.append((rep, "other", a.get("leads", 0), b.get("leads", 0)))
    return rows


def _queue_members(report: dict[str, Any]) -> dict[str, list[str]]:
    """The reps of each queue in either configuration, in config order."""
    members: dict[str, list[str]] = {}
    for side in ("baseline", "candidate"):
        for queue, stats in report[side]["queues"].items():
            known = members.setdefault(queue, [])
            known += [r for r in stats.get("reps", ()) if r not in known]
    return members


def render_html(report: dict[str, Any], since: float, until: float) -> str:
    """The whole page, self-contained."""
    base, cand = report["baseline"], report["candidate"]
    queues = list(dict.fromkeys([*base["queues"], *cand["queues"]]))
    queue_rows = [
        (
            q,
            None,
            base["queues"].get(q, {}).get("routed", 0),
            cand["queues"].get(q, {}).get("routed", 0),
        )
        for q in queues
    ]
    reasons = sorted(set(base["disqualified"]) | set(cand["disqualified"]))
    held_rows = [
        ("routed", None, base["routed"], cand["routed"]),
        ("MQLs (score at threshold)", None, base["mqls"], cand["mqls"]),
        ("unassigned", None, base["unassigned"], cand["unassigned"]),
        ("capacity overflows", None, base["capacity_overflows"], cand["capacity_overflows"]),
        *(
            (
                f"disqualified: {r}",
                None,
                base["disqualified"].get(r, 0),
                cand["disqualified"].get(r, 0),
            )
            for r in reasons
        ),
    ]
    charts = [
        paired_bars(
            "rep-load",
            "Load per rep: leads assigned, before and after",
            rep_rows(report),
            "Grouped by queue. A rep at daily capacity is passed over; see capacity overflows.",
        ),
        paired_bars("queue-load", "Leads routed per queue", queue_rows),
        paired_bars("outcomes", "Routed, qualified and held back", held_rows),
    ]
    changed = "".join(_changed(entry) for entry in report["changed"])
    summary = (
        f"{_n(report['events'])} events, {_n(report['leads'])} leads, "
        f"{moment_text(since)} to {moment_text(until)}. Baseline {escape(base['config'])} "
        f"(MQL threshold {base['mql_threshold']:g}); candidate {escape(cand['config'])} "
        f"(MQL threshold {cand['mql_threshold']:g}). "
        f"{_n(report['changed_count'])} leads would be decided differently."
    )
    values = {
        "SUMMARY": summary,
        "CHARTS": "".join(charts),
        "CHARTCOUNT": str(len(charts)),
        "SHOWN": str(len(report["changed"])),
        "CHANGED": changed or "<p>No lead would be decided differently.</p>",
    }
    # One pass, so a placeholder written inside a value from history is never substituted.
    return re.sub(r"__(SUMMARY|CHARTS|CHARTCOUNT|SHOWN|CHANGED)__", lambda m: values[m[1]], _PAGE)


def _changed(entry: dict[str, Any]) -> str:
    who = escape(entry.get("email") or entry["lead_id"])
    differs = escape(", ".join(entry["differs"]))
    columns = "".join(
        f'<div class="decision {side}"><h4>{side}: {escape(_said(entry[side]))}</h4><ol>'
        + "".join(f"<li>{escape(str(line))}</li>" for line in entry[side].get("trace") or [])
        + "</ol></div>"
        for side in ("baseline", "candidate")
    )
    return (
        f'<details class="changed"><summary><b>{who}</b> <span>({differs})</span> '
        f"{escape(_said(entry['baseline']))} &#8594; {escape(_said(entry['candidate']))}"
        f'</summary><div class="pair">{columns}</div></details>'
    )


def _said(decision: dict[str, Any]) -> str:
    status = decision.get("status")
    if status == "routed":
        return f"{decision.get('queue')} / {decision.get('rep') or 'unassigned'}"
    if status == "disqualified":
        return f"disqualified ({decision.get('reason')})"
    if status == "not_qualified":
        return f"not qualified (score {decision.get('score', 0):g})"
    return str(status)


_PAGE = """<!doctype html>
<html lang="en" data-charts="__CHARTCOUNT__" data-changed-shown="__SHOWN__">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>leadrouter replay</title>
<style>
  body { margin: 0; padding: 16px 24px 32px; font: 14px/1.4 system-ui, "DejaVu Sans",
         sans-serif; color: #1d2430; background: #fff; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  h2 { font-size: 16px; margin: 24px 0 4px; }
  p { margin: 0 0 8px; color: #5b6677; }
  svg text { font-family: system-ui, "DejaVu Sans", sans-serif; font-size: 12px;
             fill: #1d2430; }
  svg .group { font-weight: 600; fill: #2f62c0; }
  svg .value { fill: #5b6677; font-size: 11px; }
  .chart { break-inside: avoid; }
  details.changed { border-top: 1px solid #e3e7ee; padding: 6px 0; }
  details.changed summary { cursor: pointer; }
  details.changed summary span { color: #5b6677; }
  .pair { display: flex; gap: 24px; flex-wrap: wrap; }
  .decision { flex: 1 1 420px; }
  .decision h4 { margin: 8px 0 4px; font-size: 13px; }
  .decision.baseline h4 { color: #4d5b70; }
  .decision.candidate h4 { color: #a4520b; }
  .decision ol { margin: 0; padding-left: 20px; font: 12px/1.45 "DejaVu Sans Mono", monospace; }
</style>
</head>
<body>
<h1>Replay: what the candidate configuration would have done</h1>
<p>__SUMMARY__</p>
__CHARTS__
<h2>Changed leads, with both decision traces</h2>
__CHANGED__
</body>
</html>
"""
