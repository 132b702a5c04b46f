"""`leadrouter config show`: the routing as a person reads it.

Sales operations think of routing as a flow: rules tried in order, each sending the leads it
matches to a queue, each queue handing them to its reps by a strategy. The YAML says the same
in the router's terms; this module says it in words (and draws it, `render_html`) from the
validated configuration, so what is shown is what the worker will do. Who is in office uses
the assignment code's own test (`workers.core.assign.unavailable_because`), at a moment the
caller chooses (now, or a fixed time in tests).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from workers.core.assign import local_time, unavailable_because
from workers.settings import WEEKDAYS, Condition, Config, OnSlaBreach, Rep

FIELD_WORDS = {
    "trigger": "the trigger",
    "trigger_form": "the form that triggered routing",
    "region": "the region",
    "country": "the country",
    "seniority": "the seniority",
    "score": "the score",
    "fit": "the fit score",
    "engagement": "the engagement score",
    "grade": "the grade",
    "email_domain": "the e-mail domain",
    "company.domain": "the company's domain",
    "company.name": "the company's name",
    "company.employees": "the number of employees",
    "company.industry": "the industry",
    "company.country": "the company's country",
    "account.owner": "the account owner",
    "source.channel": "the first touch's channel",
    "source.platform": "the first touch's ad platform",
    "source.utm_source": "the first touch's utm_source",
    "source.utm_campaign": "the first touch's utm_campaign",
}

# Yes/no facts read better as a statement than as "X is true".
FLAG_WORDS = {
    "free_mail": ("the e-mail address is free-mail", "the e-mail address is not free-mail")
}

STRATEGY_WORDS = {
    "round_robin": "round robin: each lead to the next rep in turn",
    "weighted": "weighted: the rep with the fewest leads for their weight",
    "least_loaded": "least loaded: the rep with the fewest open leads",
}


def _value(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _one_of(values: tuple[Any, ...]) -> str:
    shown = [_value(v) for v in values]
    if len(shown) <= 1:
        return "".join(shown)
    return f"{', '.join(shown[:-1])} or {shown[-1]}"


def _membership(values: tuple[Any, ...], inside: bool) -> str:
    """'is one of a, b or c' / 'is neither a nor b'; a single value reads 'is a'."""
    shown = [_value(v) for v in values]
    if len(shown) == 1:
        return f"is {shown[0]}" if inside else f"is not {shown[0]}"
    if inside:
        return f"is one of {_one_of(values)}" if shown else "is one of no value"
    if len(shown) == 2:
        return f"is neither {shown[0]} nor {shown[1]}"
    return f"is none of {_one_of(values)}" if shown else "is anything"


def _op(cond: Condition) -> str:
    return next(
        k
        for k in ("eq", "in_", "not_in", "gte", "lte", "exists", "matches")
        if getattr(cond, k) is not None or (k == "eq" and "eq" in cond.model_fields_set)
    )


def _test(cond: Condition, negated: bool) -> str:
    """One field test in words; `negated` words it as its opposite (for `not`)."""
    field = cond.field or ""
    op = _op(cond)
    if field in FLAG_WORDS and op == "eq" and isinstance(cond.eq, bool):
        yes, no = FLAG_WORDS[field]
        return yes if cond.eq != negated else no
    subject = FIELD_WORDS.get(field, f"`{field}`")
    is_ = "is not" if negated else "is"
    if op == "eq":
        return f"{subject} {is_} {_value(cond.eq)}"
    if op in ("in_", "not_in"):
        values = (cond.in_ if op == "in_" else cond.not_in) or ()
        return f"{subject} {_membership(values, inside=(op == 'in_') != negated)}"
    if op == "gte":
        return f"{subject} {is_} at least {_value(cond.gte)}"
    if op == "lte":
        return f"{subject} {is_} at most {_value(cond.lte)}"
    if op == "exists":
        return f"{subject} is {'known' if bool(cond.exists) != negated else 'unknown'}"
    verb = "does not match" if negated else "matches"
    return f"{subject} {verb} the pattern {cond.matches}"


def describe(cond: Condition, negated: bool = False, nested: bool = False) -> str:
    """A condition in words, as `holds` (workers/core/route.py) evaluates it."""
    if cond.field is not None:
        return _test(cond, negated)
    if cond.not_ is not None:
        return describe(cond.not_, not negated, nested)
    if cond.always is not None:
        return "never" if bool(cond.always) == negated else "always"
    parts = cond.all if cond.all is not None else cond.any or ()
    conjunction = "and" if cond.all is not None else "or"
    if negated:  # De Morgan: not (a and b) is (not a) or (not b)
        conjunction = "or" if conjunction == "and" else "and"
    words = [describe(c, negated, nested=True) for c in parts]
    if not words:  # an empty all holds, an empty any does not
        return "always" if (conjunction == "and") != negated else "never"
    text = f" {conjunction} ".join(words)
    return f"({text})" if nested and len(words) > 1 else text


# --------------------------------------------------------------------------- the view
@dataclass(frozen=True)
class RepView:
    id: str
    name: str
    timezone: str
    hours: str
    local_now: str
    daily_capacity: int
    weight: float
    in_office: bool
    status: str


@dataclass(frozen=True)
class RuleView:
    number: int
    name: str
    condition: str
    queue: str


@dataclass(frozen=True)
class QueueView:
    name: str
    strategy: str
    strategy_words: str
    sla: str
    reached_by: str
    reps: tuple[RepView, ...]
    on_breach: str = ""  # what an SLA breach does beyond counting it, in words

    @property
    def in_office(self) -> int:
        return sum(r.in_office for r in self.reps)


@dataclass(frozen=True)
class RoutingView:
    directory: str
    at: str
    owner_first: bool
    rules: tuple[RuleView, ...]
    default_queue: str
    queues: tuple[QueueView, ...]
    reps_in_no_queue: tuple[str, ...]


def _days(days: tuple[str, ...]) -> str:
    """mon..fri -> 'Mon-Fri'; a gap lists them: 'Mon, Wed, Fri'; all seven: 'every day'."""
    index = sorted(WEEKDAYS.index(d) for d in set(days))
    if len(index) == 7:
        return "every day"
    if not index:
        return "no day"
    names = [WEEKDAYS[i].capitalize() for i in index]
    if len(index) > 2 and index == list(range(index[0], index[-1] + 1)):
        return f"{names[0]}-{names[-1]}"
    return ", ".join(names)


def _hours(rep: Rep) -> str:
    hours = rep.working_hours
    if hours is None:
        return "any time"
    return f"{_days(hours.days)} {hours.start:%H:%M}-{hours.end:%H:%M}"


def _duration(minutes: float) -> str:
    for size, unit in ((1440, "day"), (60, "hour"), (1, "minute")):
        if minutes >= size and (minutes / size).is_integer():
            count = int(minutes / size)
            return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    return f"{minutes:g} minutes"


def _rep_view(rep_id: str, rep: Rep, now: float) -> RepView:
    why = unavailable_because(rep, {}, now)
    if why is not None and why.endswith(f" in {rep.timezone})"):
        why = why.rsplit(" (", 1)[0]  # "(00:00 in Asia/Tokyo)": the zone and time have columns
    local = local_time(rep, now)
    return RepView(
        id=rep_id,
        name=rep.name,
        timezone=rep.timezone,
        hours=_hours(rep),
        local_now=f"{WEEKDAYS[local.weekday()].capitalize()} {local:%H:%M}",
        daily_capacity=rep.daily_capacity,
        weight=rep.weight,
        in_office=why is None,
        status="in office" if why is None else f"away: {why}",
    )


def build_view(config: Config, at: datetime) -> RoutingView:
    """The routing at moment `at` (timezone-aware), as plain data both renderings share."""
    if at.tzinfo is None:
        raise ValueError("`at` needs a time zone: 'now' differs in every rep's zone")
    routing, reps, now = config.routing, config.reps.reps, at.timestamp()
    rules = tuple(
        RuleView(i, rule.name, describe(rule.when), rule.queue)
        for i, rule in enumerate(routing.rules, start=1)
    )

    def first_reached(name: str) -> int:
        numbers = [r.number for r in rules if r.queue == name]
        if numbers:
            return numbers[0]
        return len(rules) + (1 if name == routing.default_queue else 2)

    queues = []
    for name in sorted(routing.queues, key=first_reached):
        queue = routing.queues[name]
        reached = [f"rule {r.number} ({r.name})" for r in rules if r.queue == name]
        if name == routing.default_queue:
            reached.append("the default, when no rule holds")
        if not reached and routing.account_owner_precedence:
            reached.append("no rule: only account owners send leads here")
        elif not reached:
            reached.append("nothing: no rule and not the default, so no lead arrives here")
        queues.append(
            QueueView(
                name=name,
                strategy=queue.strategy,
                strategy_words=STRATEGY_WORDS[queue.strategy],
                sla=_duration(queue.sla_minutes),
                reached_by=", ".join(reached),
                reps=tuple(_rep_view(r, reps[r], now) for r in queue.reps),
                on_breach=_on_breach(queue.on_sla_breach),
            )
        )
    in_a_queue = {r for q in routing.queues.values() for r in q.reps}
    return RoutingView(
        directory=str(config.directory),
        at=at.astimezone(UTC).strftime("%a %Y-%m-%d %H:%M UTC"),
        owner_first=routing.account_owner_precedence,
        rules=rules,
        default_queue=routing.default_queue,
        queues=tuple(queues),
        reps_in_no_queue=tuple(r for r in reps if r not in in_a_queue),
    )


def _on_breach(policy: OnSlaBreach) -> str:
    """What a breach does beyond counting it, as a sentence (nothing for `notify`)."""
    then = f"to {policy.escalate_to}" if policy.escalate_to else ""
    if policy.action == "reassign":
        times = "once" if policy.max_reassignments == 1 else f"{policy.max_reassignments} times"
        out = f"reassigned to the next available rep of the queue, at most {times}"
        return out + (f", then escalated {then}" if then else "")
    if policy.action == "escalate":
        return f"escalated {then}"
    return ""


# --------------------------------------------------------------------------- text
OWNER_FIRST = (
    "Account owners first: a lead whose account is owned by a rep of some queue goes to that "
    "queue, and to the owner when the owner is in office."
)


def _table(rows: list[list[str]], indent: str) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        (indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))).rstrip()
        for row in rows
    ]


def render_text(view: RoutingView) -> str:
    """The routing in words, for a terminal: rules in order, then queues and their reps."""
    out = [f"Routing in {view.directory}, at {view.at}", ""]
    if view.owner_first:
        out += [OWNER_FIRST, ""]
    out.append("Rules, in order (the first that holds chooses the queue):")
    width = max([len(f"{r.number}. {r.name}") for r in view.rules] + [len("otherwise")])
    for rule in view.rules:
        label = f"{rule.number}. {rule.name}".ljust(width)
        out.append(f"  {label}  if {rule.condition}")
        out.append(f"  {' ' * width}  -> {rule.queue}")
    out.append(f"  {'otherwise'.ljust(width)}  -> {view.default_queue}")
    out += ["", "Queues:"]
    for queue in view.queues:
        out.append(
            f"  {queue.name}: {queue.strategy_words}; SLA {queue.sla}; "
            f"{queue.in_office} of {len(queue.reps)} reps in office now"
        )
        out.append(f"    reached by {queue.reached_by}")
        if queue.on_breach:
            out.append(f"    on an SLA breach: {queue.on_breach}")
        rows = [
            [
                rep.id,
                rep.name,
                rep.hours,
                rep.timezone,
                f"now {rep.local_now}",
                f"{rep.daily_capacity}/day"
                + (f", weight {rep.weight:g}" if queue.strategy == "weighted" else ""),
                rep.status,
            ]
            for rep in queue.reps
        ]
        out += _table(rows, "    ") if rows else ["    (no reps: its leads wait unassigned)"]
    if view.reps_in_no_queue:
        out += ["", f"Reps in no queue: {', '.join(view.reps_in_no_queue)}"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- HTML
def _json_for_script(data: Any) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' that could close or open a tag."""
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(view: RoutingView) -> str:
    """One self-contained page: the flow drawn by the inline script from the embedded data
    (rules as decisions in order, queues and reps as leaves), and the same routing as text.
    No network: no external script, style sheet or font."""
    data = asdict(view)
    for queue, shown in zip(data["queues"], view.queues, strict=True):
        queue["in_office"] = shown.in_office
    values = {
        "TITLE": html.escape(f"Routing in {view.directory}"),
        "AT": html.escape(view.at),
        "TEXT": html.escape(render_text(view)),
        "DATA": _json_for_script(data),
    }
    # One pass, so a placeholder written inside a config value is never substituted.
    return re.sub(r"__(TITLE|AT|TEXT|DATA)__", lambda m: values[m.group(1)], _PAGE)


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
  :root { --ink: #1d2430; --muted: #5b6677; --line: #9aa5b4; --yes: #1f7a4d;
          --rule: #fff6e0; --rule-edge: #c98a00; --queue: #e6f0ff; --queue-edge: #2f62c0;
          --rep: #f4f6f9; --rep-edge: #b8c1cd; --on: #22a55b; --off: #c4cbd4; }
  body { margin: 0; font: 14px/1.4 system-ui, "DejaVu Sans", sans-serif; color: var(--ink);
         background: #fff; }
  header { padding: 16px 24px 4px; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  header p { margin: 0; color: var(--muted); }
  #flow { padding: 8px 24px; overflow-x: auto; }
  #flow svg { display: block; }
  #error { color: #b00020; padding: 0 24px; }
  .legend { display: flex; gap: 18px; padding: 0 24px; color: var(--muted); font-size: 13px; }
  .legend span::before { content: ""; display: inline-block; width: 12px; height: 12px;
                         margin-right: 6px; vertical-align: -1px; border-radius: 3px; }
  .legend .l-rule::before { background: var(--rule); border: 1px solid var(--rule-edge); }
  .legend .l-queue::before { background: var(--queue); border: 1px solid var(--queue-edge); }
  .legend .l-on::before { background: var(--on); border-radius: 6px; }
  .legend .l-off::before { background: var(--off); border-radius: 6px; }
  svg text { font-family: system-ui, "DejaVu Sans", sans-serif; fill: var(--ink); }
  .decision path { fill: var(--rule); stroke: var(--rule-edge); stroke-width: 1.5; }
  .start rect { fill: #fff; stroke: var(--ink); stroke-width: 1.5; }
  .queue rect { fill: var(--queue); stroke: var(--queue-edge); stroke-width: 1.5; }
  .owner-leaf rect { fill: var(--queue); stroke: var(--queue-edge); stroke-dasharray: 5 4; }
  .rep rect { fill: var(--rep); stroke: var(--rep-edge); }
  .rep.on circle { fill: var(--on); }
  .rep.off circle { fill: var(--off); }
  .rep.off text { fill: var(--muted); }
  .edge { fill: none; stroke: var(--line); stroke-width: 1.5; }
  .edge.yes { stroke: var(--yes); }
  .edge-label { font-size: 11px; fill: var(--muted); }
  .title { font-weight: 600; font-size: 13px; }
  .small { font-size: 12px; fill: var(--muted); }
  .dim { opacity: 0.25; }
  .hot path, .hot rect { stroke-width: 3; }
  details { padding: 8px 24px 24px; }
  pre { font: 12px/1.45 "DejaVu Sans Mono", monospace; background: #f6f8fa; padding: 12px;
        overflow-x: auto; }
</style>
</head>
<body>
<header>
  <h1>__TITLE__</h1>
  <p>Who is in office: at __AT__. Rules are tried top to bottom; the first that holds
  chooses the queue. Point at a rule, queue or rep to follow its path.</p>
</header>
<div class="legend"><span class="l-rule">rule (a decision)</span>
  <span class="l-queue">queue</span><span class="l-on">rep in office</span>
  <span class="l-off">rep away</span></div>
<div id="error" role="alert"></div>
<div id="flow"></div>
<details><summary>The same routing as text</summary><pre>__TEXT__</pre></details>
<script type="application/json" id="routing-data">__DATA__</script>
<script>
"use strict";
(function () {
  var root = document.documentElement;
  window.addEventListener("error", function (event) {
    root.setAttribute("data-render-error", String(event.message));
    document.getElementById("error").textContent = "Drawing failed: " + event.message;
  });
  var view = JSON.parse(document.getElementById("routing-data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var CHAR = 7.1, LINE = 16;

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }
  function wrap(text, width) {
    var most = Math.max(8, Math.floor(width / CHAR)), lines = [], line = "";
    text.split(" ").forEach(function (word) {
      if (line && (line + " " + word).length > most) { lines.push(line); line = word; }
      else { line = line ? line + " " + word : word; }
    });
    if (line) lines.push(line);
    return lines;
  }
  function label(parent, x, y, lines, cls) {
    var t = el("text", {x: x, y: y, "class": cls || ""}, parent);
    lines.forEach(function (line, i) {
      var span = el("tspan", {x: x, dy: i ? LINE : 0}, t);
      span.textContent = line;
    });
    return t;
  }

  var RULE_X = 20, RULE_W = 380, QUEUE_X = 500, QUEUE_W = 260, REP_X = 820, REP_W = 380;
  var REP_H = 40, REP_GAP = 6, GROUP_GAP = 22, TOP = 20, OWNER_H = 56;

  // Reps column first: it sets the height; each queue is centred on its reps. With account
  // owners first, the owner's-queue leaf takes the top of the queue column.
  var y = TOP + 70 + (view.owner_first ? OWNER_H + GROUP_GAP : 0), queueBox = {}, repBoxes = [];
  view.queues.forEach(function (q) {
    var lines = wrap(q.strategy_words, QUEUE_W - 20);
    var qh = 44 + lines.length * LINE;
    var groupH = Math.max(qh, q.reps.length * (REP_H + REP_GAP) - REP_GAP);
    var qy = y + (groupH - qh) / 2;
    queueBox[q.name] = {x: QUEUE_X, y: qy, w: QUEUE_W, h: qh, q: q, lines: lines};
    q.reps.forEach(function (r, i) {
      var ry = y + (groupH - (q.reps.length * (REP_H + REP_GAP) - REP_GAP)) / 2;
      repBoxes.push({x: REP_X, y: ry + i * (REP_H + REP_GAP), w: REP_W, h: REP_H, r: r,
                     queue: q.name});
    });
    y += groupH + GROUP_GAP;
  });
  var repsBottom = y;

  // Decisions: the account-owner check (when on), the rules in order, then "otherwise".
  var steps = [];
  if (view.owner_first) {
    steps.push({kind: "owner", title: "Account owner?", text:
      "the lead's account is owned by a rep of some queue", queue: null});
  }
  view.rules.forEach(function (rule) {
    steps.push({kind: "rule", title: rule.number + ". " + rule.name, text: "if " +
      rule.condition, queue: rule.queue, rule: rule});
  });
  steps.push({kind: "otherwise", title: "otherwise", text: "no rule held",
              queue: view.default_queue});
  var heights = steps.map(function (s) {
    s.lines = wrap(s.text, RULE_W - 60);
    return 30 + (s.lines.length + 1) * LINE;
  });
  var used = heights.reduce(function (a, b) { return a + b; }, 0);
  var gap = Math.max(34, (repsBottom - (TOP + 70) - used) / Math.max(1, steps.length - 1));
  var sy = TOP + 70;
  steps.forEach(function (s, i) { s.box = {x: RULE_X, y: sy, w: RULE_W, h: heights[i]};
                                   sy += heights[i] + gap; });
  var height = Math.max(repsBottom, sy) + 10;
  var width = REP_X + REP_W + 20;

  var svg = el("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height,
                       role: "img", "aria-label": "routing flow"});
  var edges = el("g", {"class": "edges"}, svg);
  var nodes = el("g", {"class": "nodes"}, svg);

  // Start.
  var start = el("g", {"class": "start"}, nodes);
  el("rect", {x: RULE_X + RULE_W / 2 - 90, y: TOP, width: 180, height: 36, rx: 18}, start);
  label(start, RULE_X + RULE_W / 2 - 70, TOP + 23, ["a qualified lead"], "title");
  el("path", {"class": "edge", d: "M" + (RULE_X + RULE_W / 2) + "," + (TOP + 36) + " V" +
              steps[0].box.y}, edges);

  function curve(x1, y1, x2, y2, cls, data) {
    var mx = (x1 + x2) / 2;
    var p = el("path", {"class": "edge " + cls, d: "M" + x1 + "," + y1 + " C" + mx + "," +
                        y1 + " " + mx + "," + y2 + " " + x2 + "," + y2}, edges);
    Object.keys(data).forEach(function (k) { p.setAttribute("data-" + k, data[k]); });
    return p;
  }

  steps.forEach(function (s, i) {
    var b = s.box, g = el("g", {"class": "decision", "data-kind": s.kind}, nodes);
    if (s.rule) g.setAttribute("data-rule", s.rule.name);
    if (s.queue) g.setAttribute("data-queue", s.queue);
    var tip = 14;  // a decision is drawn with pointed ends, as in a flow chart
    el("path", {d: "M" + (b.x + tip) + "," + b.y + " H" + (b.x + b.w - tip) + " L" +
                (b.x + b.w) + "," + (b.y + b.h / 2) + " L" + (b.x + b.w - tip) + "," +
                (b.y + b.h) + " H" + (b.x + tip) + " L" + b.x + "," + (b.y + b.h / 2) + " Z"},
       g);
    label(g, b.x + 26, b.y + 22, [s.title], "title");
    label(g, b.x + 26, b.y + 22 + LINE, s.lines);
    if (i + 1 < steps.length) {
      var nx = b.x + b.w / 2, next = steps[i + 1].box;
      el("path", {"class": "edge no", d: "M" + nx + "," + (b.y + b.h) + " V" + next.y}, edges);
      label(edges, nx + 6, b.y + b.h + 14, ["no"], "edge-label");
    }
    if (s.kind === "owner") {
      var o = el("g", {"class": "owner-leaf", "data-queue": "account-owner"}, nodes);
      var oy = b.y + b.h / 2 - OWNER_H / 2;
      el("rect", {x: QUEUE_X, y: oy, width: QUEUE_W, height: OWNER_H, rx: 8}, o);
      label(o, QUEUE_X + 12, oy + 22, ["the owner's queue"], "title");
      label(o, QUEUE_X + 12, oy + 22 + LINE, ["to the owner when in office"], "small");
      curve(b.x + b.w, b.y + b.h / 2, QUEUE_X, oy + OWNER_H / 2, "yes",
            {from: "account-owner", to: "account-owner"});
    } else {
      var q = queueBox[s.queue];
      curve(b.x + b.w, b.y + b.h / 2, q.x, q.y + q.h / 2, "yes",
            {from: s.rule ? s.rule.name : s.kind, to: s.queue});
    }
    if (s.kind !== "otherwise") {
      label(edges, b.x + b.w + 6, b.y + b.h / 2 - 6, ["yes"], "edge-label");
    }
  });

  Object.keys(queueBox).forEach(function (name) {
    var b = queueBox[name], q = b.q;
    var g = el("g", {"class": "queue", "data-queue": name}, nodes);
    el("rect", {x: b.x, y: b.y, width: b.w, height: b.h, rx: 8}, g);
    label(g, b.x + 12, b.y + 20, [name + "  (SLA " + q.sla + ")"], "title");
    label(g, b.x + 12, b.y + 20 + LINE, b.lines.concat([q.in_office + " of " + q.reps.length +
          " reps in office now"]), "small");
  });

  repBoxes.forEach(function (b) {
    var r = b.r, q = queueBox[b.queue];
    curve(q.x + q.w, q.y + q.h / 2, b.x, b.y + b.h / 2, "to-rep", {from: b.queue, to: r.id});
    var g = el("g", {"class": "rep " + (r.in_office ? "on" : "off"), "data-rep": r.id,
                     "data-queue": b.queue}, nodes);
    el("rect", {x: b.x, y: b.y, width: b.w, height: b.h, rx: 6}, g);
    el("circle", {cx: b.x + 14, cy: b.y + 14, r: 5}, g);
    label(g, b.x + 26, b.y + 17, [r.name + " (" + r.id + ")"], "title");
    var now = label(g, b.x + b.w - 10, b.y + 17, ["now " + r.local_now], "small");
    now.setAttribute("text-anchor", "end");
    label(g, b.x + 26, b.y + 33, [r.hours + " " + r.timezone], "small");
    var title = el("title", {}, g);
    title.textContent = r.name + ": " + r.status;
  });

  // Pointing at a node lights its path: rule -> queue -> reps, or the rules that reach a queue.
  function related(node) {
    var queue = node.getAttribute("data-queue"), rule = node.getAttribute("data-rule");
    var rep = node.getAttribute("data-rep");
    return function (other) {
      var oq = other.getAttribute("data-queue") || other.getAttribute("data-to");
      if (rep) return other.getAttribute("data-rep") === rep || oq === queue ||
        other.getAttribute("data-to") === rep || (other.classList.contains("decision") &&
        other.getAttribute("data-queue") === queue);
      if (rule) return other.getAttribute("data-rule") === rule ||
        other.getAttribute("data-from") === rule || oq === queue ||
        other.getAttribute("data-from") === queue;
      return oq === queue || other.getAttribute("data-from") === queue ||
        other.getAttribute("data-queue") === queue;
    };
  }
  var all = svg.querySelectorAll(".decision, .queue, .owner-leaf, .rep, .edge");
  Array.prototype.forEach.call(svg.querySelectorAll(".decision, .queue, .rep"), function (n) {
    n.addEventListener("mouseenter", function () {
      var keep = related(n);
      Array.prototype.forEach.call(all, function (o) {
        o.classList.toggle("dim", !keep(o) && o !== n);
      });
      n.classList.add("hot");
    });
    n.addEventListener("mouseleave", function () {
      Array.prototype.forEach.call(all, function (o) { o.classList.remove("dim"); });
      n.classList.remove("hot");
    });
  });

  document.getElementById("flow").appendChild(svg);
  root.setAttribute("data-rules", String(view.rules.length));
  root.setAttribute("data-queues", String(view.queues.length));
  root.setAttribute("data-reps", String(repBoxes.length));
  root.setAttribute("data-rendered", "ok");
})();
</script>
</body>
</html>
"""
