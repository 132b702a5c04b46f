"""Every config problem in the operator's words: the file, the path inside it, what was found,
what was expected there and an example of a valid value, never the validation library's
vocabulary. A table of broken inputs (at least one per kind of problem and per file) goes
through `leadrouter config check`, and each full message is asserted. Beside it: every place
in the four files has a hint whose example is valid (and the bundled value, where the bundled
files set one), and a wrong value put anywhere in the bundled files is still told in words.

Also `leadrouter config show`, in text: the routing as a person reads it.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel, TypeAdapter, ValidationError

from workers.cli import main
from workers.routing_view import build_view, describe
from workers.settings import (
    DEFAULT_CONFIG_DIR,
    FILE_MODELS,
    HINTS,
    Condition,
    Site,
    _example_value,
    _unwrap,
    explain_error,
    hint_for,
    load_config,
    model_keys,
)

# Words of the validation library (pydantic) that must never reach an operator.
VOCABULARY = (
    "Input should be",
    "valid tuple",
    "valid dictionary",
    "dict_type",
    "tuple_type",
    "model_type",
    "literal_error",
    "string_pattern",
    "pydantic",
    "Field required",
    "Extra inputs",
    "Value error",
    "For further information",
    "[type=",
    "errors.pydantic.dev",
    "instance of",
)


def speaks_plainly(message: str) -> None:
    said = [word for word in VOCABULARY if word.lower() in message.lower()]
    assert not said, f"library vocabulary {said} in: {message}"
    assert ". Expected " in message and "; for example: " in message, message


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    file: str
    edit: Callable[[Any], Any] | None = None
    text: Callable[[str], str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    remove: bool = False
    expect: list[tuple[str, str]] = field(default_factory=list)

    def apply(self, directory: Path) -> None:
        path = directory / self.file
        if self.remove:
            path.unlink()
        elif self.text is not None:
            path.write_text(self.text(path.read_text()))
        elif self.edit is not None:
            data = yaml.safe_load(path.read_text())
            self.edit(data)
            path.write_text(yaml.safe_dump(data, sort_keys=False))


def setitem(path: list[Any], value: Any) -> Callable[[Any], None]:
    def edit(data: Any) -> None:
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return edit


def delitem(path: list[Any]) -> Callable[[Any], None]:
    def edit(data: Any) -> None:
        node = data
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return edit


def rename_rep(data: Any) -> None:
    data["reps"]["Paul Jones"] = {"name": "Paul Jones", "timezone": "Europe/Paris"}


# `start: 8:00` without quotes: YAML 1.1 reads it as the number 480 (base 60).
UNQUOTED_TIME = (
    '{start: "08:00", end: "18:00", days: [mon, tue, wed, thu, fri]}',
    '{start: 8:00, end: "18:00", days: [mon, tue, wed, thu, fri]}',
)

CASES = [
    Case(
        "settings-unknown-key",
        "extra_forbidden",
        "settings.yaml",
        setitem(["kafak"], {}),
        expect=[
            (
                "kafak",
                (
                    "unknown key 'kafak' (did you mean 'kafka'?). Expected one of the keys "
                    "of the worker settings: kafka, metrics, ingest, store, consent, "
                    "regions, personal_data, competitor_domains, fast_lane_forms, "
                    "fast_lane_email_types, "
                    "recycle_after_days, dedupe_window, instance_id, log_level or "
                    "config_source; for example: log_level: INFO"
                ),
            ),
        ],
    ),
    Case(
        "settings-choice",
        "literal_error",
        "settings.yaml",
        setitem(["kafka", "security_protocol"], "TLS"),
        expect=[
            (
                "kafka.security_protocol",
                (
                    "got 'TLS'. Expected how the worker connects to the broker: one of "
                    "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; for example: "
                    "security_protocol: PLAINTEXT"
                ),
            ),
        ],
    ),
    Case(
        "settings-whole-number",
        "int_parsing",
        "settings.yaml",
        setitem(["kafka", "partitions"], "many"),
        expect=[
            (
                "kafka.partitions",
                (
                    "got 'many'. Expected the partitions of each topic leadrouter creates, a "
                    "whole number from 1 to 1024; for example: partitions: 6"
                ),
            ),
        ],
    ),
    Case(
        "settings-fraction",
        "int_from_float",
        "settings.yaml",
        setitem(["ingest", "batch_size"], 1.5),
        expect=[
            (
                "ingest.batch_size",
                (
                    "got the number 1.5. Expected the most records a worker handles in one "
                    "batch, a whole number from 1 to 100000; for example: batch_size: 2000"
                ),
            ),
        ],
    ),
    Case(
        "settings-too-large",
        "less_than_equal",
        "settings.yaml",
        setitem(["kafka", "partitions"], 5000),
        expect=[
            (
                "kafka.partitions",
                (
                    "got 5000, which is too large. Expected the partitions of each topic "
                    "leadrouter creates, a whole number from 1 to 1024; for example: "
                    "partitions: 6"
                ),
            ),
        ],
    ),
    Case(
        "settings-too-small",
        "greater_than_equal",
        "settings.yaml",
        setitem(["recycle_after_days"], -1),
        expect=[
            (
                "recycle_after_days",
                (
                    "got -1, which is too small. Expected the days after which an idle "
                    "routed lead may be routed again, a number of 0 or more; for example: "
                    "recycle_after_days: 30"
                ),
            ),
        ],
    ),
    Case(
        "settings-not-a-number",
        "nan",
        "settings.yaml",
        setitem(["recycle_after_days"], float("nan")),
        expect=[
            (
                "recycle_after_days",
                (
                    "got nan, which is not a number. Expected the days after which an idle "
                    "routed lead may be routed again, a number of 0 or more; for example: "
                    "recycle_after_days: 30"
                ),
            ),
        ],
    ),
    Case(
        "settings-list",
        "tuple_type",
        "settings.yaml",
        setitem(["metrics", "campaigns"], "spring-launch"),
        expect=[
            (
                "metrics.campaigns",
                (
                    "got 'spring-launch'. Expected the list of campaigns kept as metric "
                    "labels (any other is reported as other); for example: campaigns: "
                    "[spring-launch, q4-webinar-series, brand-search]"
                ),
            ),
        ],
    ),
    Case(
        "settings-text",
        "string_type",
        "settings.yaml",
        setitem(["kafka", "group_id"], 7),
        expect=[
            (
                "kafka.group_id",
                (
                    "got 7, not text (in quotes it would be text). Expected the consumer "
                    "group the workers share, as text; for example: group_id: leadrouter"
                ),
            ),
        ],
    ),
    Case(
        "settings-section",
        "model_type",
        "settings.yaml",
        setitem(["kafka"], "localhost:9092"),
        expect=[
            (
                "kafka",
                (
                    "got 'localhost:9092'. Expected the broker connection (kafka); for "
                    "example: kafka: {security_protocol: PLAINTEXT, group_id: leadrouter, "
                    "partitions: 6}"
                ),
            ),
        ],
    ),
    Case(
        "settings-mapping",
        "dict_type",
        "settings.yaml",
        setitem(["regions", "overrides"], ["AE"]),
        expect=[
            (
                "regions.overrides",
                (
                    "got the list [AE]. Expected a mapping from country code to region, for "
                    "countries whose time-zone area is not their region; for example: "
                    "overrides: {AE: EMEA, TR: EMEA}"
                ),
            ),
        ],
    ),
    Case(
        "settings-env",
        "env",
        "settings.yaml",
        env={"LEADROUTER_METRICS_PORT": "metrics"},
        expect=[
            (
                "metrics.port (set by LEADROUTER_METRICS_PORT)",
                (
                    "got 'metrics'. Expected the port of the metrics endpoint (0: any free "
                    "port), a whole number from 0 to 65535; for example: "
                    "LEADROUTER_METRICS_PORT=9464"
                ),
            ),
        ],
    ),
    Case(
        "settings-yaml-tag",
        "yaml_tag",
        "settings.yaml",
        text=lambda t: "log_level: !!python/object/apply:os.system ['true']\n",
        expect=[
            (
                "line 1, column 12",
                (
                    "not valid YAML: the tag !!python/object/apply:os.system would build an "
                    "object, and configuration is plain data. Expected text, numbers, "
                    "true/false, lists and mappings only; for example: log_level: INFO"
                ),
            ),
        ],
    ),
    Case(
        "scoring-missing",
        "missing",
        "scoring.yaml",
        delitem(["mql_threshold"]),
        expect=[
            (
                "mql_threshold",
                (
                    "missing. Expected the score at which a lead becomes marketing-qualified "
                    "and is routed, a number; for example: mql_threshold: 60"
                ),
            ),
        ],
    ),
    Case(
        "scoring-number",
        "float_parsing",
        "scoring.yaml",
        setitem(["fit", "free_mail"], "minus fifteen"),
        expect=[
            (
                "fit.free_mail",
                (
                    "got 'minus fifteen'. Expected the points of a free-mail address "
                    "(usually negative), a number; for example: free_mail: -15"
                ),
            ),
        ],
    ),
    Case(
        "scoring-positive",
        "greater_than",
        "scoring.yaml",
        setitem(["engagement", "half_life_days"], 0),
        expect=[
            (
                "engagement.half_life_days",
                (
                    "got 0, which is too small. Expected the days after which a touch counts "
                    "half, a number above 0; for example: half_life_days: 14"
                ),
            ),
        ],
    ),
    Case(
        "scoring-grades",
        "value_error",
        "scoring.yaml",
        setitem(["grades"], {"A": 35, "B": 60, "C": 80}),
        expect=[
            (
                "grades",
                (
                    "the grade thresholds must go down from A to C (A >= B >= C), got A 35, "
                    "B 60, C 80. Expected the grade thresholds (the lowest score of grades "
                    "A, B and C); for example: grades: {A: 80, B: 60, C: 35}"
                ),
            ),
        ],
    ),
    Case(
        "scoring-band",
        "missing",
        "scoring.yaml",
        setitem(["fit", "employees", 0], {"gte": 5000}),
        expect=[
            (
                "fit.employees[0].points",
                "missing. Expected the points of the band, a number; for example: points: 15",
            ),
        ],
    ),
    Case(
        "scoring-keywords",
        "cross_check",
        "scoring.yaml",
        setitem(["fit", "seniority", "executive"], 22),
        expect=[
            (
                "fit.seniority.executive",
                (
                    "level has no entry in seniority_keywords, so no job title reaches it. "
                    "Expected every level scored under fit.seniority, except individual (a "
                    "title no keyword matches), to have its job-title keywords under "
                    "seniority_keywords; for example: seniority_keywords: {director: "
                    "[director, head of, head]}"
                ),
            ),
        ],
    ),
    Case(
        "scoring-key-type",
        "string_type",
        "scoring.yaml",
        setitem(["fit", "country", 1], 5),
        expect=[
            (
                "fit.country[1]",
                (
                    "got 1, not text (in quotes it would be text). Expected a country code "
                    "(ISO 3166-1 alpha-2); for example: US: 5"
                ),
            ),
        ],
    ),
    Case(
        "scoring-broken-yaml",
        "yaml_syntax",
        "scoring.yaml",
        text=lambda t: "mql_threshold: [60,\n",
        expect=[
            (
                "line 2, column 1",
                (
                    "not valid YAML: did not find expected node content. Expected plain YAML "
                    "like the bundled file's; for example: mql_threshold: 60"
                ),
            ),
        ],
    ),
    Case(
        "routing-rules-list",
        "tuple_type",
        "routing.yaml",
        setitem(["rules"], 7),
        expect=[
            (
                "rules",
                (
                    "got the number 7. Expected a list of rules, tried in order (the first "
                    "that holds chooses the queue), each with a name, a condition (when) and "
                    "a queue; for example: rules: [{name: fast-lane, when: {field: trigger, "
                    "eq: fast_lane}, queue: fast-lane}]"
                ),
            ),
        ],
    ),
    Case(
        "routing-unknown-key",
        "extra_forbidden",
        "routing.yaml",
        setitem(["queues", "smb", "stratgy"], "round_robin"),
        expect=[
            (
                "queues.smb.stratgy",
                (
                    "unknown key 'stratgy' (did you mean 'strategy'?). Expected one of the "
                    "keys of a queue (its strategy, SLA, reps and what an SLA breach does): "
                    "strategy, sla_minutes, reps or on_sla_breach; for example: smb: "
                    "{strategy: round_robin, sla_minutes: 1440, reps: [noah.brown, "
                    "olivia.davis]}"
                ),
            ),
        ],
    ),
    Case(
        "routing-strategy",
        "literal_error",
        "routing.yaml",
        setitem(["queues", "smb", "strategy"], "luck"),
        expect=[
            (
                "queues.smb.strategy",
                (
                    "got 'luck'. Expected how the queue picks a rep: one of round_robin, "
                    "weighted or least_loaded; for example: strategy: round_robin"
                ),
            ),
        ],
    ),
    Case(
        "routing-sla",
        "greater_than",
        "routing.yaml",
        setitem(["queues", "smb", "sla_minutes"], 0),
        expect=[
            (
                "queues.smb.sla_minutes",
                (
                    "got 0, which is too small. Expected the minutes a rep has to first "
                    "contact a lead before the SLA is breached, a number above 0; for "
                    "example: sla_minutes: 60"
                ),
            ),
        ],
    ),
    Case(
        "routing-window",
        "less_than_equal",
        "routing.yaml",
        setitem(["fairness_window_hours"], 10000),
        expect=[
            (
                "fairness_window_hours",
                (
                    "got 10000, which is too large. Expected the hours over which a weighted "
                    "queue counts each rep's leads, a number above 0 and at most 2160; for "
                    "example: fairness_window_hours: 24"
                ),
            ),
        ],
    ),
    Case(
        "routing-flag",
        "bool_parsing",
        "routing.yaml",
        setitem(["account_owner_precedence"], "sometimes"),
        expect=[
            (
                "account_owner_precedence",
                (
                    "got 'sometimes'. Expected whether a lead whose account has an owner "
                    "goes to the owner's queue first, true or false; for example: "
                    "account_owner_precedence: true"
                ),
            ),
        ],
    ),
    Case(
        "routing-rule-name",
        "string_pattern_mismatch",
        "routing.yaml",
        setitem(["rules", 0, "name"], "Fast Lane"),
        expect=[
            (
                "rules[0].name",
                (
                    "got 'Fast Lane'. Expected a rule name: lower-case letters, digits, - "
                    "and _, starting with a letter or digit, at most 63 characters; for "
                    "example: name: enterprise-emea"
                ),
            ),
        ],
    ),
    Case(
        "routing-queue-name",
        "string_pattern_mismatch",
        "routing.yaml",
        lambda d: d.update(queues={**d["queues"], "Partners": d["queues"]["smb"]}),
        expect=[
            (
                "queues.Partners",
                (
                    "the name 'Partners' is not allowed. Expected a queue name (it names the "
                    "topic leads.routed.<queue>): lower-case letters, digits and -, starting "
                    "with a letter or digit, at most 63 characters; for example: "
                    "enterprise-emea: {strategy: weighted, sla_minutes: 60, reps: "
                    "[greta.schmidt, hugo.dubois]}"
                ),
            ),
        ],
    ),
    Case(
        "routing-condition",
        "value_error",
        "routing.yaml",
        setitem(["rules", 0, "when"], {"field": "trigger", "eq": "fast_lane", "in": ["mql"]}),
        expect=[
            (
                "rules[0].when",
                (
                    "the test of field 'trigger' needs exactly one of eq, in, not_in, gte, "
                    "lte, exists or matches; this one has eq and in. Expected a condition (a "
                    "field with one test: eq, in, not_in, gte, lte, exists or matches; or "
                    "one of all, any, not, always); for example: when: {field: region, eq: "
                    "EMEA}"
                ),
            ),
        ],
    ),
    Case(
        "routing-pattern",
        "value_error",
        "routing.yaml",
        setitem(["rules", 5, "when", "all", 1, "matches"], "(com|io"),
        expect=[
            (
                "rules[5].when.all[1].matches",
                (
                    "invalid pattern '(com|io': missing ). Expected a pattern (RE2 syntax) "
                    "found in the field's text, at most 200 characters; for example: "
                    "matches: '^[a-z0-9.-]+\\.(com|io|co|net|org)$'"
                ),
            ),
        ],
    ),
    Case(
        "routing-queues-mapping",
        "dict_type",
        "routing.yaml",
        setitem(["queues"], ["fast-lane", "smb"]),
        expect=[
            (
                "queues",
                (
                    "got the list [fast-lane, smb]. Expected a mapping from queue name to "
                    "its strategy, SLA and reps; for example: queues: {smb: {strategy: "
                    "round_robin, sla_minutes: 1440, reps: [noah.brown, olivia.davis]}}"
                ),
            ),
        ],
    ),
    Case(
        "routing-unknown-queue",
        "cross_check",
        "routing.yaml",
        setitem(["rules", 2, "queue"], "emea"),
        expect=[
            (
                "rules[2].queue",
                (
                    "unknown queue 'emea'. Expected the name of a queue defined under queues "
                    "(fast-lane, enterprise-amer, enterprise-emea, enterprise-apac, "
                    "mid-market, smb); for example: queue: enterprise-emea"
                ),
            ),
        ],
    ),
    Case(
        "routing-default-queue",
        "cross_check",
        "routing.yaml",
        setitem(["default_queue"], "small-business"),
        expect=[
            (
                "default_queue",
                (
                    "default_queue 'small-business' is not a queue. Expected the queue of a "
                    "lead that no rule matches, the name of a queue defined under queues "
                    "(fast-lane, enterprise-amer, enterprise-emea, enterprise-apac, "
                    "mid-market, smb); for example: default_queue: smb"
                ),
            ),
        ],
    ),
    Case(
        "routing-duplicate-rule",
        "cross_check",
        "routing.yaml",
        setitem(["rules", 3, "name"], "enterprise-emea"),
        expect=[
            (
                "rules[3].name",
                (
                    "duplicate rule name 'enterprise-emea'. Expected a name no other rule "
                    "has (routed leads and metrics name the rule that decided); for example: "
                    "name: enterprise-emea"
                ),
            ),
        ],
    ),
    Case(
        "routing-unknown-rep",
        "cross_check",
        "routing.yaml",
        lambda d: d["queues"]["smb"]["reps"].append("nora.brown"),
        expect=[
            (
                "queues.smb.reps[2]",
                (
                    "unknown rep 'nora.brown' (not in reps.yaml). Expected the id of a rep "
                    "defined in reps.yaml (ana.silva, ben.carter, chloe.martin, daisuke.ito, "
                    "emma.johnson, frank.miller and 9 more); for example: - noah.brown"
                ),
            ),
        ],
    ),
    Case(
        "routing-not-a-mapping",
        "top_level",
        "routing.yaml",
        text=lambda t: "- fast-lane\n- smb\n",
        expect=[
            (
                "(top)",
                (
                    "the file holds the list [fast-lane, smb], not keys and values. Expected "
                    "a mapping of keys at the top level; for example: default_queue: smb"
                ),
            ),
        ],
    ),
    Case(
        "reps-id",
        "string_pattern_mismatch",
        "reps.yaml",
        lambda d: d["reps"].update(
            {"Paul Jones": {"name": "Paul Jones", "timezone": "Europe/Paris"}}
        ),
        expect=[
            (
                "reps.Paul Jones",
                (
                    "the name 'Paul Jones' is not allowed. Expected a rep id: letters, "
                    "digits, ., _ and -, at most 64 characters; for example: ana.silva: "
                    "{name: Ana Silva, timezone: America/Sao_Paulo}"
                ),
            ),
        ],
    ),
    Case(
        "reps-zone",
        "value_error",
        "reps.yaml",
        setitem(["reps", "ben.carter", "timezone"], "America/New_Yrok"),
        expect=[
            (
                "reps.ben.carter.timezone",
                (
                    "unknown time zone 'America/New_Yrok' (did you mean "
                    "'America/New_York'?). Expected the rep's time zone, an IANA name; for "
                    "example: timezone: America/Sao_Paulo"
                ),
            ),
        ],
    ),
    Case(
        "reps-unquoted-time",
        "time",
        "reps.yaml",
        text=lambda t: t.replace(
            '{start: "08:00", end: "18:00", days: [mon, tue, wed, thu, fri]}',
            '{start: 8:00, end: "18:00", days: [mon, tue, wed, thu, fri]}',
            1,
        ),
        expect=[
            (
                "reps.ana.silva.working_hours.start",
                (
                    "got the number 480: an unquoted 8:00 is a number in YAML; write the "
                    'time in quotes, "08:00". Expected the time the working day starts in '
                    "the rep's time zone, HH:MM in quotes; for example: start: '08:00'"
                ),
            ),
        ],
    ),
    Case(
        "reps-time",
        "time",
        "reps.yaml",
        setitem(["reps", "ana.silva", "working_hours", "end"], "18h"),
        expect=[
            (
                "reps.ana.silva.working_hours.end",
                (
                    "'18h' is not a time of day written HH:MM (00:00 to 23:59). Expected the "
                    "time the working day ends in the rep's time zone, HH:MM in quotes; for "
                    "example: end: '18:00'"
                ),
            ),
        ],
    ),
    Case(
        "reps-shift",
        "value_error",
        "reps.yaml",
        setitem(["reps", "ana.silva", "working_hours", "start"], "19:00"),
        expect=[
            (
                "reps.ana.silva.working_hours",
                (
                    "the working day must start before it ends, got 19:00 to 18:00 (a shift "
                    "past midnight is not supported). Expected the working hours in the "
                    "rep's time zone (start, end, days); for example: working_hours: {start: "
                    "'08:00', end: '18:00', days: [mon, tue, wed, thu, fri]}"
                ),
            ),
        ],
    ),
    Case(
        "reps-day",
        "literal_error",
        "reps.yaml",
        setitem(["reps", "ana.silva", "working_hours", "days", 4], "friday"),
        expect=[
            (
                "reps.ana.silva.working_hours.days[4]",
                (
                    "got 'friday'. Expected a working day: one of mon, tue, wed, thu, fri, "
                    "sat or sun; for example: - mon"
                ),
            ),
        ],
    ),
    Case(
        "reps-date",
        "date",
        "reps.yaml",
        setitem(["reps", "frank.miller", "out_of_office", 0, "to"], "2027-01-32"),
        expect=[
            (
                "reps.frank.miller.out_of_office[0].to",
                (
                    "'2027-01-32' is not a date written YYYY-MM-DD. Expected the last day "
                    "out of office, a date YYYY-MM-DD; for example: to: '2027-01-03'"
                ),
            ),
        ],
    ),
    Case(
        "reps-absence",
        "value_error",
        "reps.yaml",
        setitem(["reps", "frank.miller", "out_of_office", 0, "to"], "2026-12-01"),
        expect=[
            (
                "reps.frank.miller.out_of_office[0]",
                (
                    "the absence must end on or after its first day, got from 2026-12-21 to "
                    "2026-12-01. Expected an absence (from and to, both included); for "
                    "example: - {from: '2026-12-21', to: '2027-01-03'}"
                ),
            ),
        ],
    ),
    Case(
        "reps-capacity",
        "int_from_float",
        "reps.yaml",
        setitem(["reps", "ana.silva", "daily_capacity"], 80.5),
        expect=[
            (
                "reps.ana.silva.daily_capacity",
                (
                    "got the number 80.5. Expected the most leads the rep takes in a day "
                    "(their own day), a whole number of 0 or more; for example: "
                    "daily_capacity: 80"
                ),
            ),
        ],
    ),
    Case(
        "reps-weight",
        "greater_than",
        "reps.yaml",
        setitem(["reps", "emma.johnson", "weight"], 0),
        expect=[
            (
                "reps.emma.johnson.weight",
                (
                    "got 0, which is too small. Expected the rep's share of a weighted "
                    "queue's leads, relative to the others, a number above 0; for example: "
                    "weight: 2"
                ),
            ),
        ],
    ),
    Case(
        "reps-name",
        "missing",
        "reps.yaml",
        delitem(["reps", "ana.silva", "name"]),
        expect=[
            (
                "reps.ana.silva.name",
                (
                    "missing. Expected the rep's name as people read it, as text; for "
                    "example: name: Ana Silva"
                ),
            ),
        ],
    ),
    Case(
        "reps-rep",
        "model_type",
        "reps.yaml",
        setitem(["reps", "ana.silva"], "Ana Silva"),
        expect=[
            (
                "reps.ana.silva",
                (
                    "got 'Ana Silva'. Expected a rep (name and time zone; optionally weight, "
                    "daily capacity, working hours and out-of-office dates); for example: "
                    "ana.silva: {name: Ana Silva, timezone: America/Sao_Paulo, weight: 1, "
                    "daily_capacity: 80}"
                ),
            ),
        ],
    ),
    Case(
        "reps-missing-file",
        "file",
        "reps.yaml",
        remove=True,
        expect=[
            (
                "(top)",
                (
                    "file not found. Expected reps.yaml in <DIR>, beside the other "
                    "configuration files (settings.yaml, scoring.yaml, routing.yaml and "
                    "reps.yaml); for example: the bundled <BUNDLED>/reps.yaml"
                ),
            ),
        ],
    ),
    Case(
        "routing-field-less",
        "value_error",
        "routing.yaml",
        setitem(["rules", 0, "when"], {"eq": "fast_lane"}),
        expect=[
            (
                "rules[0].when",
                (
                    "eq needs a field to test: add field. Expected a condition (a field with "
                    "one test: eq, in, not_in, gte, lte, exists or matches; or one of all, "
                    "any, not, always); for example: when: {field: region, eq: EMEA}"
                ),
            ),
        ],
    ),
    Case(
        "routing-empty-condition",
        "value_error",
        "routing.yaml",
        setitem(["rules", 0, "when"], {}),
        expect=[
            (
                "rules[0].when",
                (
                    "a condition needs a field with one test, or one of all, any, not or "
                    "always; this one has none. Expected a condition (a field with one test: "
                    "eq, in, not_in, gte, lte, exists or matches; or one of all, any, not, "
                    "always); for example: when: {field: region, eq: EMEA}"
                ),
            ),
        ],
    ),
]

# Each kind of problem the validator raises, and each file, has at least one case.
KINDS = {
    "missing",
    "extra_forbidden",
    "literal_error",
    "int_parsing",
    "int_from_float",
    "float_parsing",
    "bool_parsing",
    "string_type",
    "tuple_type",
    "dict_type",
    "model_type",
    "greater_than",
    "greater_than_equal",
    "less_than_equal",
    "string_pattern_mismatch",
    "value_error",
    "time",
    "date",
    "nan",
    "env",
    "cross_check",
    "yaml_syntax",
    "yaml_tag",
    "top_level",
    "file",
}


def test_the_table_covers_every_kind_and_every_file() -> None:
    assert {c.kind for c in CASES} >= KINDS
    for name in FILE_MODELS:
        kinds = {c.kind for c in CASES if c.file == name}
        assert len(kinds) >= 5, (name, kinds)
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_config_check_says_it_in_words(case: Case, tmp_path: Path) -> None:
    directory = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, directory)
    case.apply(directory)
    env = {"KAFKA_BOOTSTRAP_SERVERS": "", **case.env}
    result = CliRunner().invoke(main, ["config", "check", str(directory)], env=env)
    assert result.exit_code == 1, result.output
    fill = {"<DIR>": str(directory), "<BUNDLED>": str(DEFAULT_CONFIG_DIR)}
    expected = []
    for path, message in case.expect:
        for token, value in fill.items():
            message = message.replace(token, value)
        expected.append(f"{directory / case.file}: {path}: {message}")
    count = "1 problem" if len(expected) == 1 else f"{len(expected)} problems"
    assert result.stderr.splitlines() == [*expected, count]
    for _, message in case.expect:
        speaks_plainly(message)


def test_the_count_is_grammatical(tmp_path: Path) -> None:
    directory = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, directory)
    for case in CASES:
        if case.id in ("routing-sla", "routing-window"):
            case.apply(directory)
    result = CliRunner().invoke(main, ["config", "check", str(directory)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "2 problems"
    # A command refusing bad config says it the same way.
    refused = CliRunner().invoke(main, ["topics", "check", "--config", str(directory)])
    assert refused.exit_code == 2
    assert refused.stderr.splitlines()[0] == "leadrouter: configuration is invalid (2 problems):"


# --------------------------------------------------------------------------- hints
def _sites(tp: Any, key: str, seen: set[type]) -> Iterator[tuple[str, Any, Any]]:
    """(site key, type, field) of every place in a model's shape, as `site_of` names them."""
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return
        seen.add(tp)
        for name, info in tp.model_fields.items():
            child = f"{tp.__name__}.{info.alias or name}"
            yield child, _unwrap(info.annotation), info
            yield from _sites(info.annotation, child, seen)
    elif get_origin(tp) is dict:
        key_type, value_type = get_args(tp)
        yield key + "<key>", _unwrap(key_type), key_type
        yield key + "*", _unwrap(value_type), None
        yield from _sites(value_type, key + "*", seen)
    elif get_origin(tp) is tuple:
        yield key + "[]", _unwrap(get_args(tp)[0]), None
        yield from _sites(get_args(tp)[0], key + "[]", seen)


def all_sites() -> list[tuple[str, Any, Any]]:
    seen: set[type] = set()
    out = []
    for model in FILE_MODELS.values():
        out.append((model.__name__, model, None))
        out += list(_sites(model, model.__name__, seen))
    return [(k, t, f) for k, t, f in out if t is not Any]


def test_every_place_in_the_files_has_a_hint() -> None:
    missing = [key for key, tp, _ in all_sites() if hint_for(Site(key, tp)) is None]
    assert missing == []
    known = {key for key, _, _ in all_sites()} | {
        t.__name__ for _, t, _ in all_sites() if isinstance(t, type)
    }
    assert set(HINTS) - known == set(), "hints for places that do not exist"


def _checked_type(tp: Any, info: Any) -> Any:
    """The type with its bounds and pattern, to validate an example against."""
    if info is None or not hasattr(info, "metadata"):
        return info if info is not None else tp
    annotation = info.annotation
    return annotation if not info.metadata else _annotated(annotation, info.metadata)


def _annotated(tp: Any, metadata: list[Any]) -> Any:
    from typing import Annotated

    return Annotated[(tp, *metadata)]


@pytest.mark.parametrize("key", sorted(HINTS))
def test_every_example_is_valid_where_it_is_shown(key: str) -> None:
    sites = {k: (t, f) for k, t, f in all_sites()}
    hint = HINTS[key]
    data = yaml.safe_load(hint.example)
    speaks_plainly(f"x. Expected {hint.expected}; for example: {hint.example}")
    if key in FILE_MODELS_BY_NAME:  # a file's own hint shows one of its keys
        FILE_MODELS_BY_NAME[key].model_validate({**bundled(key), **data})
        return
    if key in sites:
        tp, info = sites[key]
    else:  # a model's own hint
        tp, info = next(t for _, t, _ in all_sites() if getattr(t, "__name__", "") == key), None
    if key.endswith("<key>"):
        TypeAdapter(info).validate_python(next(iter(data)))
    else:
        TypeAdapter(_checked_type(tp, info)).validate_python(_example_value(hint))


FILE_MODELS_BY_NAME = {model.__name__: model for model in FILE_MODELS.values()}


def bundled(model_name: str) -> dict[str, Any]:
    name = next(n for n, m in FILE_MODELS.items() if m.__name__ == model_name)
    return yaml.safe_load((DEFAULT_CONFIG_DIR / name).read_text())


def _values(tp: Any, key: str, value: Any, out: dict[str, list[Any]]) -> None:
    """Every bundled value by site key (and by model name), as `site_of` names the sites."""
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        out.setdefault(tp.__name__, []).append(value)
        if not isinstance(value, dict):
            return
        keys = model_keys(tp)
        for written, child in value.items():
            if written in keys:
                info = tp.model_fields[keys[written]]
                site = f"{tp.__name__}.{info.alias or keys[written]}"
                out.setdefault(site, []).append(child)
                _values(info.annotation, site, child, out)
    elif get_origin(tp) is dict and isinstance(value, dict):
        _, value_type = get_args(tp)
        for k, v in value.items():
            out.setdefault(key + "<key>", []).append(k)
            out.setdefault(key + "*", []).append(v)
            _values(value_type, key + "*", v, out)
    elif get_origin(tp) is tuple and isinstance(value, list):
        for item in value:
            out.setdefault(key + "[]", []).append(item)
            _values(get_args(tp)[0], key + "[]", item, out)


def _within(example: Any, shipped: Any) -> bool:
    """The example is the bundled value, or a part of it (some keys, some items)."""
    if isinstance(example, dict) and isinstance(shipped, dict):
        return all(k in shipped and _within(v, shipped[k]) for k, v in example.items())
    if isinstance(example, list) and isinstance(shipped, list):
        return all(any(_within(e, s) for s in shipped) for e in example)
    return example == shipped


def test_examples_are_the_bundled_values() -> None:
    found: dict[str, list[Any]] = {}
    for name, model in FILE_MODELS.items():
        _values(
            model, model.__name__, yaml.safe_load((DEFAULT_CONFIG_DIR / name).read_text()), found
        )
    checked = 0
    for key, hint in HINTS.items():
        shipped = [v for v in found.get(key, []) if v not in (None, "", [], {})]
        if not shipped:
            continue  # the bundled files leave it unset: the example is the hint's own
        data = yaml.safe_load(hint.example)
        if key in FILE_MODELS_BY_NAME:
            example = data
        elif key.endswith("<key>"):
            example = next(iter(data))
        else:
            example = _example_value(hint)
        assert any(_within(example, s) for s in shipped), (key, example, shipped[:3])
        checked += 1
    assert checked >= 80  # most hints show what the bundled files say


# --------------------------------------------------------------------------- anywhere
WRONG = (7, 1.5, -1, "x", "Bad Name", True, None, [1], {"k": 1})


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))


def _told(model: type[BaseModel], data: Any) -> list[str]:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return [explain_error(model, error)[1] for error in exc.errors()]
    return []


@pytest.mark.parametrize("name", list(FILE_MODELS))
def test_a_wrong_value_anywhere_is_told_in_words(name: str) -> None:
    """Every value of the bundled file, and every key of its mappings, replaced in turn by
    wrong ones: each message is in words, with what was expected and an example."""
    model, shipped = FILE_MODELS[name], yaml.safe_load((DEFAULT_CONFIG_DIR / name).read_text())
    messages = 0
    for path in _paths(shipped):
        if not path:
            continue
        for wrong in WRONG:
            data = copy.deepcopy(shipped)
            node = data
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = wrong
            for message in _told(model, data):
                speaks_plainly(message)
                assert "see config/" not in message, message  # no place without a hint
                messages += 1
            if isinstance(node, dict):  # the key itself, renamed
                data = copy.deepcopy(shipped)
                parent = data
                for part in path[:-1]:
                    parent = parent[part]
                parent[f"Bad Key {path[-1]}"] = parent.pop(path[-1])
                for message in _told(model, data):
                    speaks_plainly(message)
                    messages += 1
    assert messages > 100


# --------------------------------------------------------------------------- config show
SMALL_ROUTING = """
account_owner_precedence: false
queues:
  fast: {strategy: round_robin, sla_minutes: 5, reps: [ana, ben]}
  big: {strategy: weighted, sla_minutes: 90, reps: [cleo]}
  rest: {strategy: least_loaded, sla_minutes: 2880, reps: []}
  partners: {strategy: round_robin, sla_minutes: 60, reps: [dan]}
rules:
  - name: hot
    when: {any: [{field: trigger, eq: fast_lane}, {field: grade, in: [A]}]}
    queue: fast
  - name: big-unowned
    when:
      all:
        - {field: company.employees, gte: 1000}
        - {not: {field: account.owner, exists: true}}
        - {any: [{field: region, in: [EMEA, APAC]}, {field: country, not_in: [US, CA]}]}
        - {field: company.industry, not_in: [education, government, nonprofit]}
    queue: big
  - name: keep-small
    when: {not: {all: [{field: score, lte: 20}, {field: free_mail, eq: true}]}}
    queue: rest
  - name: catch-all
    when: {always: true}
    queue: rest
default_queue: rest
"""

SMALL_REPS = """
reps:
  ana: {name: Ana, timezone: Europe/Paris,
        working_hours: {start: "09:00", end: "17:00", days: [mon, tue, wed, thu, fri]}}
  ben: {name: Ben, timezone: America/New_York, daily_capacity: 10,
        out_of_office: [{from: "2026-11-30", to: "2026-12-04"}]}
  cleo: {name: Cleo, timezone: Asia/Tokyo, weight: 2,
         working_hours: {start: "09:00", end: "18:00"}}
  dan: {name: Dan, timezone: UTC,
        working_hours: {start: "08:00", end: "16:00", days: [mon, wed, fri]}}
  eve: {name: Eve, timezone: Europe/London}
"""

SMALL_TEXT = """\
Routing in {directory}, at Tue 2026-12-01 15:00 UTC

Rules, in order (the first that holds chooses the queue):
  1. hot          if the trigger is fast_lane or the grade is A
                  -> fast
  2. big-unowned  if the number of employees is at least 1000 and the account owner is unknown and \
(the region is one of EMEA or APAC or the country is neither US nor CA) and the industry is \
none of \
education, government or nonprofit
                  -> big
  3. keep-small   if the score is not at most 20 or the e-mail address is not free-mail
                  -> rest
  4. catch-all    if always
                  -> rest
  otherwise       -> rest

Queues:
  fast: round robin: each lead to the next rep in turn; SLA 5 minutes; 1 of 2 reps in office now
    reached by rule 1 (hot)
    ana  Ana  Mon-Fri 09:00-17:00  Europe/Paris      now Tue 16:00  50/day  in office
    ben  Ben  any time             America/New_York  now Tue 10:00  10/day  away: out of \
office until 2026-12-04
  big: weighted: the rep with the fewest leads for their weight; SLA 90 minutes; 0 of 1 reps \
in office now
    reached by rule 2 (big-unowned)
    cleo  Cleo  Mon-Fri 09:00-18:00  Asia/Tokyo  now Wed 00:00  50/day, weight 2  away: \
outside working hours
  rest: least loaded: the rep with the fewest open leads; SLA 2 days; 0 of 0 reps in office now
    reached by rule 3 (keep-small), rule 4 (catch-all), the default, when no rule holds
    (no reps: its leads wait unassigned)
  partners: round robin: each lead to the next rep in turn; SLA 1 hour; 0 of 1 reps in office now
    reached by nothing: no rule and not the default, so no lead arrives here
    dan  Dan  Mon, Wed, Fri 08:00-16:00  UTC  now Tue 15:00  50/day  away: not a working day

Reps in no queue: eve
"""


@pytest.fixture
def small_config(tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, directory)
    (directory / "routing.yaml").write_text(SMALL_ROUTING)
    (directory / "reps.yaml").write_text(SMALL_REPS)
    return directory


def test_config_show_reads_the_routing_aloud(small_config: Path) -> None:
    result = CliRunner().invoke(
        main, ["config", "show", "--config", str(small_config), "--at", "2026-12-01T16:00:00+01:00"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == SMALL_TEXT.format(directory=small_config)


def test_config_show_with_account_owners_first(small_config: Path) -> None:
    routing = small_config / "routing.yaml"
    routing.write_text(
        routing.read_text().replace(
            "account_owner_precedence: false", "account_owner_precedence: true"
        )
    )
    result = CliRunner().invoke(
        main, ["config", "show", "--config", str(small_config), "--at", "2026-12-01T15:00:00Z"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[2] == (
        "Account owners first: a lead whose account is owned by a rep of some queue goes to "
        "that queue, and to the owner when the owner is in office."
    )
    partners = lines.index(
        "  partners: round robin: each lead to the next rep in turn; SLA 1 hour; "
        "0 of 1 reps in office now"
    )
    assert lines[partners + 1] == "    reached by no rule: only account owners send leads here"


def test_config_show_of_the_bundled_routing() -> None:
    result = CliRunner().invoke(main, ["config", "show", "--at", "2026-12-22T15:00:00Z"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"Routing in {DEFAULT_CONFIG_DIR}, at Tue 2026-12-22 15:00 UTC"
    config = load_config(DEFAULT_CONFIG_DIR, env={})
    rule_lines = [line for line in lines if line.startswith("  ") and ". " in line[:8]]
    assert [line.split()[1] for line in rule_lines] == [r.name for r in config.routing.rules]
    assert (
        "  6. senior-buyer     if the seniority is one of c_level, vp or director and the "
        "e-mail domain matches the pattern ^[a-z0-9.-]+\\.(com|io|co|net|org)$"
    ) in lines
    assert "  otherwise           -> smb" in lines
    frank = next(line for line in lines if line.lstrip().startswith("frank.miller"))
    assert frank.endswith("away: out of office until 2027-01-03")
    # Every rep of every queue is listed once under its queue.
    listed = [line.split()[0] for line in lines if line.startswith("    ") and "now " in line]
    assert listed == [r for q in config.routing.queues.values() for r in q.reps] or sorted(
        listed
    ) == sorted(r for q in config.routing.queues.values() for r in q.reps)


def test_who_is_in_office_follows_the_clock(small_config: Path) -> None:
    """The same reps a moment apart, each on their own clock: Ana leaves at 17:00 in Paris,
    Cleo starts at 09:00 in Tokyo, Ben's absence ends with his last day in New York."""
    config = load_config(small_config, env={})

    def present(at: str) -> set[str]:
        view = build_view(config, datetime.fromisoformat(at))
        return {r.id for q in view.queues for r in q.reps if r.in_office}

    assert present("2026-12-01T15:59:00Z") == {"ana"}  # 16:59 in Paris
    assert present("2026-12-01T16:00:00Z") == set()  # 17:00 in Paris: gone
    assert present("2026-12-02T00:00:00Z") == {"cleo"}  # 09:00 in Tokyo
    assert present("2026-12-05T00:00:00Z") == set()  # Fri 19:00 in New York: Ben still away
    assert present("2026-12-05T05:00:00Z") == {"ben"}  # Sat 00:00 there: back, any time
    with pytest.raises(ValueError, match="time zone"):
        build_view(config, datetime(2026, 12, 1, 15))


@pytest.mark.parametrize(
    ("condition", "words"),
    [
        ({"field": "region", "eq": "EMEA"}, "the region is EMEA"),
        ({"not": {"field": "region", "eq": "EMEA"}}, "the region is not EMEA"),
        ({"field": "grade", "in": ["A", "B"]}, "the grade is one of A or B"),
        ({"not": {"field": "grade", "in": ["A"]}}, "the grade is not A"),
        ({"field": "country", "not_in": ["US", "CA"]}, "the country is neither US nor CA"),
        ({"field": "score", "gte": 60.0}, "the score is at least 60"),
        ({"field": "fit", "lte": 12.5}, "the fit score is at most 12.5"),
        ({"field": "account.owner", "exists": False}, "the account owner is unknown"),
        ({"not": {"field": "account.owner", "exists": False}}, "the account owner is known"),
        (
            {"field": "company.name", "matches": "^Acme"},
            "the company's name matches the pattern ^Acme",
        ),
        ({"field": "free_mail", "eq": False}, "the e-mail address is not free-mail"),
        ({"field": "utm_x", "eq": None}, "`utm_x` is empty"),
        ({"always": True}, "always"),
        ({"not": {"always": True}}, "never"),
        (
            {"not": {"any": [{"field": "region", "eq": "AMER"}, {"field": "score", "gte": 80}]}},
            "the region is not AMER and the score is not at least 80",
        ),
        (
            {
                "all": [
                    {"any": [{"field": "a", "eq": 1}, {"field": "b", "eq": 2}]},
                    {"field": "c", "eq": 3},
                ]
            },
            "(`a` is 1 or `b` is 2) and `c` is 3",
        ),
    ],
)
def test_conditions_in_words(condition: dict[str, Any], words: str) -> None:
    assert describe(Condition.model_validate(condition)) == words


def test_a_config_that_cannot_load_is_not_shown(tmp_path: Path) -> None:
    directory = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, directory)
    (directory / "routing.yaml").write_text("rules: 7\n")
    result = CliRunner().invoke(main, ["config", "show", "--config", str(directory)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{directory / 'routing.yaml'}: rules: got the number 7." in result.stderr
