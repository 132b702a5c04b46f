"""The Grafana dashboard: (a) its structure, (b) every PromQL expression in it and in the
Prometheus rules file, run by a real Prometheus against a real worker's /metrics."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.prometheus import PrometheusQueryError, PrometheusServer, Sample

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "leadrouter" / "dashboards" / "leadrouter.json"
RULES = ROOT / "helm" / "leadrouter" / "rules" / "leadrouter-alerts.yaml"

DATASOURCE_UID = "${datasource}"

# The public metrics (DESIGN.md) and their labels; Prometheus adds job and instance.
METRIC_LABELS: dict[str, set[str]] = {
    "leadrouter_events_total": {"topic", "outcome"},
    "leadrouter_deadletters_total": {"reason"},
    "leadrouter_leads_generated_total": {"channel", "source"},
    "leadrouter_leads_routed_total": {"queue", "rule", "grade"},
    "leadrouter_leads_unassigned_total": {"queue", "reason"},
    "leadrouter_leads_disqualified_total": {"reason"},
    "leadrouter_route_latency_seconds": set(),
    "leadrouter_speed_to_lead_seconds": {"queue"},
    "leadrouter_time_to_conversion_seconds": {"queue", "outcome"},
    "leadrouter_lead_outcomes_total": {"queue", "source", "outcome"},
    "leadrouter_sla_breaches_total": {"queue"},
    "leadrouter_sales_activities_total": {"type", "outcome"},
    "leadrouter_lead_score": set(),
    "leadrouter_consumer_lag": {"topic"},
    "leadrouter_batch_seconds": {"phase"},
    # The queue desks' waiting lines (a worker shows the queues whose desk it owns) and
    # what happens to a lead when its SLA passes.
    "leadrouter_leads_waiting": {"queue"},
    "leadrouter_waiting_oldest_seconds": {"queue"},
    "leadrouter_lead_wait_seconds": {"queue"},
    "leadrouter_leads_reassigned_total": {"queue", "action", "outcome"},
    # The configuration version a worker runs (published, or its files), since when, its
    # switches without a restart, and the records of the config topic it refused.
    "leadrouter_config_info": {"version"},
    "leadrouter_config_switched_timestamp_seconds": set(),
    "leadrouter_config_switches_total": set(),
    "leadrouter_config_refused_total": {"reason"},
}
HISTOGRAMS = {
    "leadrouter_route_latency_seconds",
    "leadrouter_speed_to_lead_seconds",
    "leadrouter_time_to_conversion_seconds",
    "leadrouter_lead_score",
    "leadrouter_batch_seconds",
    "leadrouter_lead_wait_seconds",
}
TARGET_LABELS = {"job", "instance"}
# Identifiers and free text never become labels (DESIGN.md, Conversion feedback and metrics).
FORBIDDEN_LABELS = {
    "email",
    "lead_id",
    "event_id",
    "click_id",
    "anonymous_id",
    "rep_id",
    "phone",
    "first_name",
    "last_name",
    "name",
    "company",
    "domain",
    "url",
    "page_url",
    "detail",
}

# What Grafana puts in place of its built-in variables, for running the queries here.
BUILTIN_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}
VARIABLE_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
SELECTOR_RE = re.compile(
    r"(?<![\w:])((?:[a-z_]+:)?leadrouter_[a-z_]+(?::[a-z0-9_]+)?)\s*(\{[^}]*\})?"
)
MATCHER_RE = re.compile(r"(\w+)\s*(=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"")
GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
LEGEND_RE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?(\w+)\s*\)\s*$", re.DOTALL)


# --- reading the dashboard and the rules --------------------------------------------


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))  # collapsed rows hold their panels


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in iter_panels(dashboard["panels"]) if p.get("type") != "row"]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else query


def load_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"panel {panel['title']!r} target {target.get('refId')}", target)
        for panel in data_panels(dashboard)
        for target in panel.get("targets", [])
    ]


# --- PromQL helpers (enough of the grammar for these files) --------------------------


def substitute(expr: str, defined: set[str]) -> str:
    """Grafana variables in `expr` replaced: template variables by `.*`, built-ins by values."""

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in BUILTIN_VARIABLES:
            return BUILTIN_VARIABLES[name]
        if name in defined:
            return ".*"
        raise ValueError(f"undefined variable ${name} in {expr!r}")

    return VARIABLE_RE.sub(replace, expr)


def _depths(expr: str) -> list[int]:
    """Nesting depth of (), [] and {} at each character; -1 inside string literals."""
    depths: list[int] = []
    depth = 0
    quote: str | None = None
    escaped = False
    for char in expr:
        if quote:
            depths.append(-1)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
            continue
        if char in "\"'`":
            quote = char
            depths.append(-1)
            continue
        if char in "([{":
            depths.append(depth)
            depth += 1
            continue
        if char in ")]}":
            depth -= 1
        depths.append(depth)
    return depths


def _unwrap(expr: str) -> str:
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")"):
        depths = _depths(expr)
        # the opening paren closes at the very end only if nothing in between is at depth 0
        if any(d == 0 for d in depths[1:-1]):
            break
        expr = expr[1:-1].strip()
    return expr


def split_set_operations(expr: str) -> list[str]:
    """Operands of the top-level `and` / `or` / `unless` of `expr`."""
    depths = _depths(expr)
    parts: list[str] = []
    start = 0
    keyword = re.compile(r"(?<![\w:])(and|or|unless)(?![\w:])(\s*(?:on|ignoring)\s*\([^)]*\))?")
    for match in keyword.finditer(expr):
        if depths[match.start()] != 0 or match.start() < start:
            continue
        parts.append(expr[start : match.start()])
        start = match.end()
    parts.append(expr[start:])
    return [_unwrap(p) for p in parts]


THRESHOLD_RE = re.compile(
    r"^(?P<signal>.*?)\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$",
    re.DOTALL,
)


def strip_threshold(expr: str) -> str:
    """`signal > 0.05` -> `signal` when the comparison is the top-level operator."""
    expr = _unwrap(expr)
    match = THRESHOLD_RE.match(expr)
    if match is None:
        return expr
    signal = match.group("signal")
    # the operator must be outside any brackets or strings
    if _depths(expr)[len(signal)] != 0 or _depths(signal + " ")[-1] != 0:
        return expr
    return _unwrap(signal)


def alert_signals(expr: str) -> list[str]:
    """The expressions an alert compares with its thresholds."""
    return [strip_threshold(part) for part in split_set_operations(expr)]


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, matchers text) of every leadrouter metric selector in `expr`."""
    depths = _depths(expr)
    return [
        (m.group(1), m.group(2) or "") for m in SELECTOR_RE.finditer(expr) if depths[m.start()] >= 0
    ]


def base_metric(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
            return name.removesuffix(suffix)
    return name


def label_names(expr: str) -> set[str]:
    """Label names an expression matches on or groups by."""
    names = {m.group(1) for m in MATCHER_RE.finditer(expr)}
    for group in GROUPING_RE.finditer(expr):
        names.update(n.strip() for n in group.group(1).split(",") if n.strip())
    names.discard("__name__")
    return names


def label_values_query(query: str) -> tuple[str, str]:
    """`label_values(sel, label)` -> (PromQL giving one series per value, label)."""
    match = LABEL_VALUES_RE.match(query)
    assert match, f"not a label_values() query: {query!r}"
    selector, label = match.group(1), match.group(2)
    selector = selector or f'{{{label}!=""}}'
    return f"count by ({label}) ({selector})", label


# --- (a) structure --------------------------------------------------------------------


def test_dashboard_basics() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "leadrouter"
    assert dashboard["title"].strip()
    assert 36 <= dashboard["schemaVersion"] <= 41
    ids = [p["id"] for p in iter_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in iter_panels(dashboard["panels"]):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_datasource_is_a_variable() -> None:
    variable = variables(load_dashboard()).get("datasource")
    assert variable is not None, "no datasource variable"
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"


def test_every_panel_has_a_title_targets_the_datasource_variable_and_a_unit() -> None:
    dashboard = load_dashboard()
    panels = data_panels(dashboard)
    assert len(panels) >= 10
    for panel in panels:
        title = panel.get("title", "").strip()
        assert title, f"panel {panel['id']} has no title"
        assert panel.get("description", "").strip(), f"{title}: no description"
        assert panel.get("datasource") == {"type": "prometheus", "uid": DATASOURCE_UID}, title
        assert panel.get("targets"), f"{title}: no targets"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{title}: duplicate refIds"
        for target in panel["targets"]:
            assert target.get("datasource", {}).get("uid") == DATASOURCE_UID, title
            assert target.get("expr", "").strip(), f"{title}: empty query"


def test_titles_are_unique_and_say_what_is_shown() -> None:
    titles = [p["title"] for p in data_panels(load_dashboard())]
    assert len(titles) == len(set(titles))
    text = " ".join(titles).lower()
    for topic in (
        "leads generated",
        "speed to lead",
        "conversion rate",
        "time to conversion",
        "sla breaches",
        "routing latency",
        "dead letters",
        "consumer lag",
        "leads waiting",
        "oldest waiting lead",
        "wait for a rep",
        "reassignments and escalations",
        "workers per config version",
        "config version each worker runs",
        "time since the last config switch",
        "configs refused",
    ):
        assert topic in text, f"no panel about {topic}"


def test_every_public_metric_is_on_the_dashboard() -> None:
    shown = {
        base_metric(metric)
        for _, target in dashboard_targets(load_dashboard())
        for metric, _ in selectors(target["expr"])
    }
    assert set(METRIC_LABELS) - shown == set(), "metrics with no panel"


def row_panels(title: str) -> list[dict[str, Any]]:
    """The panels of the row titled `title`: its own (collapsed) or those below it."""
    panels = load_dashboard()["panels"]
    rows = [i for i, p in enumerate(panels) if p.get("type") == "row"]
    at = next(i for i in rows if panels[i]["title"] == title)
    end = next((i for i in rows if i > at), len(panels))
    return [*panels[at]["panels"], *panels[at + 1 : end]]


def test_waiting_leads_have_their_row() -> None:
    """The queue desks' waiting lines and SLA reassignments have a row of their own, whose
    panels show the waiting, the oldest wait, the wait p50/p90 and the reassignments."""
    row = row_panels("Waiting leads")
    exprs = " ".join(t["expr"] for p in row for t in p["targets"])
    for metric in (
        "leadrouter_leads_waiting{",
        "leadrouter_waiting_oldest_seconds{",
        "leadrouter_lead_wait_seconds_bucket{",
        "leadrouter_leads_reassigned_total{",
    ):
        assert metric in exprs, f"no {metric} in the Waiting leads row"
    # Each worker shows only the queues whose desk it owns: counts add up over workers,
    # the oldest wait is the largest.
    assert "sum by (queue) (leadrouter_leads_waiting{" in exprs
    assert "max by (queue) (leadrouter_waiting_oldest_seconds{" in exprs
    for quantile in ("0.5", "0.9"):
        assert f"histogram_quantile({quantile}, sum by (queue, le) (" in exprs
    assert re.search(r"sum by \([^)]*\baction\b[^)]*\) \(rate\(leadrouter_leads_reass", exprs)


def test_configuration_has_its_row() -> None:
    """Published configuration versions have a row: the workers per version (a rollout is
    one line rising to every worker), the version each worker runs, the time since the last
    switch and the config records the workers refused."""
    row = {p["title"]: p for p in row_panels("Configuration")}
    exprs = " ".join(t["expr"] for p in row.values() for t in p["targets"])
    assert "count by (version) (leadrouter_config_info{" in exprs
    assert "count(count by (version) (leadrouter_config_info{" in exprs
    assert "time() - max(leadrouter_config_switched_timestamp_seconds{" in exprs
    assert "sum(increase(leadrouter_config_switches_total{" in exprs
    assert "sum by (reason) (increase(leadrouter_config_refused_total{" in exprs
    # The version of each worker: one row per scrape target, with how long it has run it.
    table = row["Config version each worker runs"]
    assert table["type"] == "table"
    by_worker = {t["refId"]: t for t in table["targets"]}
    assert "max by (instance, version) (leadrouter_config_info{" in by_worker["A"]["expr"]
    since = "max by (instance) (leadrouter_config_switched_timestamp_seconds{"
    assert since in by_worker["B"]["expr"]
    assert all(t["instant"] and t["format"] == "table" for t in by_worker.values())
    assert [x["id"] for x in table["transformations"]] == ["merge", "organize"]
    assert row["Time since the last config switch"]["fieldConfig"]["defaults"]["unit"] == "s"


def test_queue_and_source_variables_exist_and_filter_the_panels() -> None:
    dashboard = load_dashboard()
    defined = variables(dashboard)
    for name, metric_label in (("queue", "queue"), ("source", "source")):
        variable = defined.get(name)
        assert variable is not None, f"no ${name} variable"
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == DATASOURCE_UID
        assert variable.get("includeAll") and variable.get("allValue") == ".*"
        query = variable_query(variable)
        _, label = label_values_query(query)
        assert label == metric_label, query
    # Every selector of a metric that has the label is filtered by the variable.
    used = {"queue": 0, "source": 0}
    for where, target in dashboard_targets(dashboard):
        for metric, matchers in selectors(target["expr"]):
            labels = METRIC_LABELS.get(base_metric(metric), set())
            for name in used:
                if name in labels:
                    assert f'{name}=~"${name}"' in matchers, f"{where}: {metric} not by ${name}"
                    used[name] += 1
    assert all(used.values()), used


def test_queries_use_only_known_metrics_and_their_labels() -> None:
    dashboard = load_dashboard()
    defined = set(variables(dashboard))
    for where, target in dashboard_targets(dashboard):
        expr = target["expr"]
        substitute(expr, defined)  # raises on an undefined variable
        found = selectors(expr)
        assert found, f"{where}: no leadrouter metric in {expr!r}"
        allowed = set(TARGET_LABELS)
        for metric, _ in found:
            base = base_metric(metric)
            assert base in METRIC_LABELS, f"{where}: unknown metric {metric}"
            if base in HISTOGRAMS:
                assert metric != base, f"{where}: use {metric}_bucket/_sum/_count"
                allowed |= {"le"} if metric.endswith("_bucket") else set()
            allowed |= METRIC_LABELS[base]
        assert label_names(expr) <= allowed, f"{where}: {label_names(expr) - allowed}"
        legend = set(LEGEND_RE.findall(target.get("legendFormat", "")))
        assert legend <= allowed, f"{where}: legend uses {legend - allowed}"


def test_no_identifier_or_free_text_label_anywhere() -> None:
    dashboard = load_dashboard()
    used: dict[str, set[str]] = {}
    for where, target in dashboard_targets(dashboard):
        legend = set(LEGEND_RE.findall(target.get("legendFormat", "")))
        used[where] = label_names(target["expr"]) | legend
    for name, variable in variables(dashboard).items():
        if variable["type"] == "query":
            query, label = label_values_query(variable_query(variable))
            used[f"variable {name}"] = label_names(query) | {label}
    for rule in load_rules():
        where = f"rule {rule.get('alert') or rule.get('record')}"
        text = " ".join(str(v) for v in rule.get("annotations", {}).values())
        used[where] = label_names(rule["expr"]) | set(re.findall(r"\$labels\.(\w+)", text))
    for where, labels in used.items():
        assert not labels & FORBIDDEN_LABELS, f"{where} uses {labels & FORBIDDEN_LABELS}"


def test_promql_helpers() -> None:
    assert substitute('x{q=~"$queue"}[$__rate_interval]', {"queue"}) == 'x{q=~".*"}[1m]'
    assert substitute('x{q=~"${queue:regex}"}', {"queue"}) == 'x{q=~".*"}'
    with pytest.raises(ValueError, match="undefined"):
        substitute('x{q=~"$nope"}', {"queue"})
    assert alert_signals("sum by (job) (rate(a[5m])) > 0") == ["sum by (job) (rate(a[5m]))"]
    assert alert_signals("(a / b) > 0.05\nand\nsum(c) >= 10") == ["a / b", "sum(c)"]
    assert alert_signals('a{x="and > 1"} == 0') == ['a{x="and > 1"}']
    assert alert_signals("histogram_quantile(0.9, x) > 9e2") == ["histogram_quantile(0.9, x)"]
    assert alert_signals("absent(a)") == ["absent(a)"]
    assert alert_signals("sum(a > 1)") == ["sum(a > 1)"]
    assert selectors('rate(leadrouter_x_total{a="b"}[1m]) / leadrouter_y') == [
        ("leadrouter_x_total", '{a="b"}'),
        ("leadrouter_y", ""),
    ]
    assert label_values_query('label_values(m{j=~"$j"}, queue)') == (
        'count by (queue) (m{j=~"$j"})',
        "queue",
    )


# --- (b) every expression against a real Prometheus and a real worker ----------------


Check = Callable[[list[Sample]], bool]


def non_empty(result: list[Sample]) -> bool:
    return bool(result)


def with_label(label: str) -> Check:
    return lambda result: any(s.labels.get(label) for s in result)


def expressions_to_run() -> tuple[dict[str, tuple[str, Check]], dict[str, str]]:
    """(queries that must return series, alert expressions that must only evaluate)."""
    dashboard = load_dashboard()
    defined = set(variables(dashboard))
    must_return: dict[str, tuple[str, Check]] = {}
    must_evaluate: dict[str, str] = {}

    def add(where: str, promql: str, check: Check = non_empty) -> None:
        must_return[where] = (promql, check)
        for metric, matchers in selectors(promql):
            must_return.setdefault(f"selector {metric}{matchers}", (metric + matchers, non_empty))

    for where, target in dashboard_targets(dashboard):
        add(where, substitute(target["expr"], defined))
    for name, variable in variables(dashboard).items():
        if variable["type"] == "query":
            query, label = label_values_query(variable_query(variable))
            add(f"variable ${name}", substitute(query, defined), with_label(label))
    for rule in load_rules():
        if "record" in rule:
            add(f"recording rule {rule['record']}", rule["expr"])
            add(f"recorded series {rule['record']}", rule["record"])
        else:
            must_evaluate[f"alert {rule['alert']}"] = rule["expr"]
            for i, signal in enumerate(alert_signals(rule["expr"])):
                add(f"alert {rule['alert']} signal {i}", signal)
    return must_return, must_evaluate


def test_every_expression_returns_data_from_a_live_worker(worker_metrics_url: str) -> None:
    must_return, must_evaluate = expressions_to_run()
    failures: dict[str, str] = {}
    with PrometheusServer([worker_metrics_url], rule_files=[RULES]) as prom:
        # rate()/increase() need two samples; three leave room for one slow scrape.
        prom.wait_until_scraped(samples=3, timeout=60)
        groups = prom.wait_for_rule_evaluations(timeout=60)
        for group in groups:
            for rule in group["rules"]:
                if rule.get("health") != "ok":
                    failures[f"rule {rule['name']}"] = f"{rule['health']}: {rule.get('lastError')}"
        for where, promql in must_evaluate.items():
            try:
                prom.query(promql)
            except PrometheusQueryError as err:
                failures[where] = str(err)
        # Simulated traffic fills some series later than others: poll them all together.
        pending = dict(must_return)
        deadline = time.monotonic() + 90
        while pending:
            for where, (promql, check) in list(pending.items()):
                try:
                    if check(prom.query(promql)):
                        del pending[where]
                except PrometheusQueryError as err:
                    failures[where] = str(err)
                    del pending[where]
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        for where, (promql, _) in pending.items():
            failures[where] = f"no series after 90s: {promql}"
    if failures:
        report = "\n".join(f"{where}: {why}" for where, why in sorted(failures.items()))
        pytest.fail(f"{len(failures)} expression(s) failed:\n{report}", pytrace=False)
