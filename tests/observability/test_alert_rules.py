"""The Prometheus rules file: promtool accepts it, its unit tests pass, and it follows the
conventions (LeadRouter* CamelCase alerts, severity, summary/description, a firing and a
not-firing test case for every alert)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.prometheus import PrometheusNotFoundError, find_binary

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "helm" / "leadrouter" / "rules"
RULES = RULES_DIR / "leadrouter-alerts.yaml"
RULES_TEST = RULES_DIR / "leadrouter-alerts.test.yaml"

SEVERITIES = {"critical", "warning", "info"}


@pytest.fixture(scope="module")
def promtool() -> str:
    try:
        return find_binary("promtool")
    except PrometheusNotFoundError as err:
        pytest.fail(str(err), pytrace=False)


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load_rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_check_rules(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests(promtool: str) -> None:
    result = run_promtool(promtool, "test", "rules", RULES_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_file_is_a_plain_rules_file() -> None:
    # The Helm chart embeds this file verbatim as a PrometheusRule spec: only `groups`,
    # one YAML document, and no Helm template syntax outside Prometheus' own {{ $... }}.
    text = RULES.read_text()
    docs = list(yaml.safe_load_all(text))
    assert len(docs) == 1
    assert set(docs[0]) == {"groups"}
    for group in docs[0]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}, group["name"]
    assert not re.search(r"\{\{-?\s*(\.|include|tpl|template)", text)


def test_alert_conventions() -> None:
    alerts = [rule for rule in load_rules() if "alert" in rule]
    assert alerts
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in alerts:
        name = rule["alert"]
        assert re.fullmatch(r"LeadRouter[A-Z][A-Za-z0-9]+", name), name
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), f"{name}: no summary"
        assert annotations.get("description", "").strip(), f"{name}: no description"


def test_recording_rule_names() -> None:
    records = [rule["record"] for rule in load_rules() if "record" in rule]
    assert records
    for name in records:
        # level:metric:operations (prometheus.io recording rule naming)
        assert re.fullmatch(r"[a-z_]+:leadrouter_[a-z_]+:[a-z0-9_]+", name), name


def test_the_areas_the_issue_asks_for_are_alerted_on() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in load_rules() if "alert" in rule}
    wanted = {
        "leadrouter_sla_breaches_total": "SLA breaches",
        "leadrouter_speed_to_lead_seconds_bucket": "speed to lead p90",
        "leadrouter_deadletters_total": "dead-letter rate",
        "leadrouter_consumer_lag": "consumer lag growing",
        "leadrouter_events_total": "no events arriving",
        "leadrouter_waiting_oldest_seconds": "leads waiting too long for a rep",
        "leadrouter_config_refused_total": "a published config the workers refuse",
        "leadrouter_config_info": "config versions that do not converge",
    }
    for metric, what in wanted.items():
        assert any(metric in expr for expr in exprs.values()), f"no alert on {what}"


def test_every_alert_has_a_firing_and_a_quiet_test_case() -> None:
    alerts = {rule["alert"] for rule in load_rules() if "alert" in rule}
    tests = yaml.safe_load(RULES_TEST.read_text())
    assert tests["rule_files"] == [RULES.name]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        assert case.get("input_series"), case.get("name")
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts - fires == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown not firing"
    assert (fires | quiet) - alerts == set(), "tests for alerts that do not exist"
