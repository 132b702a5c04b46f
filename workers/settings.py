"""Configuration: four YAML files in one directory, validated into typed objects at start.

Errors name the file, the path inside it and the problem, so a bad deploy fails loudly
before it touches a single lead. YAML is read with the safe loader only: no tag in a
config file can construct an object, and nothing in config is evaluated as code.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import re2
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

M = TypeVar("M", bound="BaseModel")

CONFIG_FILES = ("settings.yaml", "scoring.yaml", "routing.yaml", "reps.yaml")
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
MAX_PATTERN_LENGTH = 200
# Hex digits of a configuration version: 48 bits, no collision among any team's versions.
VERSION_CHARS = 12
# What a published configuration does not decide: how this process connects, stores, logs
# and serves metrics (each worker's own settings.yaml and environment).
PROCESS_SETTINGS = (
    "kafka",
    "metrics",
    "ingest",
    "store",
    "instance_id",
    "log_level",
    "config_source",
)


def compile_pattern(source: str) -> Any:
    """RE2: matching time is linear in the input, so no pattern in config can stall a worker."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 8 << 20
    return re2.compile(source, options)


class Strict(BaseModel):
    """Unknown keys are errors: a typo in config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- settings.yaml
class KafkaSettings(Strict):
    bootstrap_servers: str | None = None
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    topic_prefix: str = ""
    group_id: str = "leadrouter"
    processing_guarantee: Literal["exactly_once", "at_least_once", "auto"] = "auto"
    # group.instance.id: a restarted worker takes its partitions back at once instead of
    # after the session timeout; a stopping one leaves explicitly (runtime/membership.py).
    static_membership: bool = True
    partitions: int = Field(6, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=16)


class MetricsSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)
    campaigns: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


class IngestSettings(Strict):
    max_event_bytes: int = Field(65536, ge=256, le=10 * 1024 * 1024)
    batch_size: int = Field(2000, ge=1, le=100000)


class StoreSettings(Strict):
    kind: Literal["memory", "rocksdb"] = "rocksdb"
    data_dir: str = ".data"


class ConsentSettings(Strict):
    required_countries: tuple[str, ...] = ()


class RegionSettings(Strict):
    """Region follows the country's time-zone area; overrides place the exceptions."""

    overrides: dict[str, str] = Field(default_factory=dict)


class PersonalDataSettings(Strict):
    """How long a person's state is kept with no touch (marketing or sales): 0 keeps it."""

    expire_after_days: float = Field(365, ge=0, le=3650)


class Settings(Strict):
    kafka: KafkaSettings = KafkaSettings()
    metrics: MetricsSettings = MetricsSettings()
    ingest: IngestSettings = IngestSettings()
    store: StoreSettings = StoreSettings()
    consent: ConsentSettings = ConsentSettings()
    regions: RegionSettings = RegionSettings()
    personal_data: PersonalDataSettings = PersonalDataSettings()
    competitor_domains: tuple[str, ...] = ()
    fast_lane_forms: tuple[str, ...] = ("demo-request", "contact-sales")
    fast_lane_email_types: tuple[str, ...] = ("reply",)
    recycle_after_days: float = Field(30, ge=0)
    dedupe_window: int = Field(32, ge=1, le=10000)
    instance_id: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # published: run the latest version on the configuration topic (local files until one
    # is published); files: only this directory's files, whatever is published.
    config_source: Literal["published", "files"] = "published"


# --------------------------------------------------------------------------- scoring.yaml
class SizeBand(Strict):
    gte: int = Field(ge=0)
    points: float


class FitRules(Strict):
    seniority: dict[str, float] = Field(default_factory=dict)
    employees: tuple[SizeBand, ...] = ()
    industry: dict[str, float] = Field(default_factory=dict)
    country: dict[str, float] = Field(default_factory=dict)
    free_mail: float = 0
    known_account: float = 0


class EngagementRules(Strict):
    half_life_days: float = Field(gt=0)
    forms: dict[str, float] = Field(default_factory=dict)
    form_default: float = 0
    email: dict[str, float] = Field(default_factory=dict)
    ad_click: float = 0


class Grades(Strict):
    A: float
    B: float
    C: float

    @model_validator(mode="after")
    def _descending(self) -> Grades:
        if not self.A >= self.B >= self.C:
            raise ValueError(
                f"the grade thresholds must go down from A to C (A >= B >= C), got "
                f"A {self.A:g}, B {self.B:g}, C {self.C:g}"
            )
        return self


class Scoring(Strict):
    mql_threshold: float
    grades: Grades
    fit: FitRules
    engagement: EngagementRules
    seniority_keywords: dict[str, tuple[str, ...]] = Field(default_factory=dict)


# --------------------------------------------------------------------------- routing.yaml
# The flat lead fields a rule may test: what `workers.core.route.facts` gives (a unit test
# holds the two together). A rule on any other name could never match.
LEAD_FIELDS = (
    "trigger",
    "trigger_form",
    "region",
    "country",
    "seniority",
    "score",
    "fit",
    "engagement",
    "grade",
    "free_mail",
    "email_domain",
    "company.domain",
    "company.name",
    "company.employees",
    "company.industry",
    "company.country",
    "account.owner",
    "source.channel",
    "source.platform",
    "source.utm_source",
    "source.utm_campaign",
)


class Condition(Strict):
    """One node of a rule: a field test or a combinator. Exactly one operator per node."""

    field: str | None = None
    eq: Any = None
    in_: tuple[Any, ...] | None = Field(None, alias="in")
    not_in: tuple[Any, ...] | None = None
    gte: float | None = None
    lte: float | None = None
    exists: bool | None = None
    matches: str | None = None
    all: tuple[Condition, ...] | None = None
    any: tuple[Condition, ...] | None = None
    not_: Condition | None = Field(None, alias="not")
    always: bool | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("matches")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if len(value) > MAX_PATTERN_LENGTH:
            raise ValueError(
                f"the pattern is {len(value)} characters long, more than {MAX_PATTERN_LENGTH}"
            )
        try:
            compile_pattern(value)
        except Exception as exc:  # re2 raises its own error type, with a bytes message
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            reason = str(reason).split(":")[0].strip() or "not a pattern"
            raise ValueError(f"invalid pattern {value!r}: {reason}") from None
        return value

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        names = {"in_": "in", "not_": "not"}
        field_ops = [
            names.get(k, k)
            for k in ("eq", "in_", "not_in", "gte", "lte", "exists", "matches")
            if getattr(self, k) is not None or (k == "eq" and "eq" in self.model_fields_set)
        ]
        combinators = [
            names.get(k, k)
            for k in ("all", "any", "not_", "always")
            if getattr(self, k) is not None
        ]
        found = field_ops + combinators
        has = f"this one has {' and '.join(found)}" if found else "this one has none"
        if self.field is not None:
            if combinators or len(field_ops) != 1:
                raise ValueError(
                    f"the test of field {self.field!r} needs exactly one of eq, in, not_in, "
                    f"gte, lte, exists or matches; {has}"
                )
        elif field_ops:
            verb = "needs" if len(field_ops) == 1 else "need"
            raise ValueError(f"{' and '.join(field_ops)} {verb} a field to test: add field")
        elif len(combinators) != 1:
            raise ValueError(
                f"a condition needs a field with one test, or one of all, any, not or always; {has}"
            )
        return self


class Rule(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    when: Condition
    queue: str


class OnSlaBreach(Strict):
    """What the queue desk does when a rep lets a lead's SLA pass with no first touch:
    `notify` counts the breach (as always), `reassign` gives the lead to the next available
    rep of the queue (at most `max_reassignments` times; then `escalate_to`, if set),
    `escalate` moves it to the queue `escalate_to`."""

    action: Literal["notify", "reassign", "escalate"] = "notify"
    max_reassignments: int = Field(1, ge=1, le=20)
    escalate_to: str | None = None

    @model_validator(mode="after")
    def _target(self) -> OnSlaBreach:
        if self.action == "escalate" and self.escalate_to is None:
            raise ValueError("escalate needs escalate_to: the queue the lead moves to")
        return self


class Queue(Strict):
    strategy: Literal["round_robin", "weighted", "least_loaded"]
    sla_minutes: float = Field(gt=0)
    reps: tuple[str, ...] = ()
    on_sla_breach: OnSlaBreach = OnSlaBreach()


class Handout(Strict):
    """How a queue's waiting leads are handed out when reps come in: oldest first, at most
    `per_rep` to each available rep at a time, again every `every_minutes` while leads
    wait, so the first rep online is not flooded with the night's backlog."""

    per_rep: int = Field(3, ge=1, le=1000)
    every_minutes: float = Field(5, gt=0, le=24 * 60)


class Routing(Strict):
    account_owner_precedence: bool = True
    fairness_window_hours: float = Field(24, gt=0, le=24 * 90)
    handout: Handout = Handout()
    queues: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")], Queue]
    rules: tuple[Rule, ...]
    default_queue: str


# --------------------------------------------------------------------------- reps.yaml
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


_CLOCK = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?")


def _clock_time(value: Any) -> Any:
    """A wall-clock time written HH:MM. YAML 1.1 reads an unquoted 9:00 as the number 540
    (base 60), which the validation library would take as seconds past midnight UTC; so only
    text (or a time) is accepted, and the number case is explained."""
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise ValueError(f"{value.isoformat()} has a UTC offset: the rep's time zone applies")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        hours, minutes = divmod(value, 60)
        raise ValueError(
            f"got the number {value}: an unquoted {hours}:{minutes:02d} is a number in YAML; "
            f'write the time in quotes, "{hours:02d}:{minutes:02d}"'
        )
    if isinstance(value, str) and (found := _CLOCK.fullmatch(value.strip())):
        hour, minute, second = found.groups()
        return time(int(hour), int(minute), int(second or 0))
    shown = f"{value!r}" if isinstance(value, str) else _shown(value)
    raise ValueError(f"{shown} is not a time of day written HH:MM (00:00 to 23:59)")


def _calendar_date(value: Any) -> Any:
    """A date written YYYY-MM-DD. A number is refused: it would be read as a Unix time."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a date written YYYY-MM-DD") from None
    raise ValueError(f"{_shown(value)} is not a date written YYYY-MM-DD")


class WorkingHours(Strict):
    start: time
    end: time
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = WEEKDAYS[:5]

    _times = field_validator("start", "end", mode="before")(_clock_time)

    @model_validator(mode="after")
    def _ordered(self) -> WorkingHours:
        if self.start >= self.end:
            raise ValueError(
                f"the working day must start before it ends, got {self.start:%H:%M} to "
                f"{self.end:%H:%M} (a shift past midnight is not supported)"
            )
        return self


class Absence(Strict):
    start: date = Field(alias="from")
    end: date = Field(alias="to")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _dates = field_validator("start", "end", mode="before")(_calendar_date)

    @model_validator(mode="after")
    def _ordered(self) -> Absence:
        if self.start > self.end:
            raise ValueError(
                f"the absence must end on or after its first day, got from "
                f"{self.start.isoformat()} to {self.end.isoformat()}"
            )
        return self


class Rep(Strict):
    name: str
    timezone: str
    weight: float = Field(1, gt=0)
    daily_capacity: int = Field(50, ge=0)
    working_hours: WorkingHours | None = None
    out_of_office: tuple[Absence, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown time zone {value!r}{hint}") from None
        return value


class Reps(Strict):
    reps: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")], Rep]


# --------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class Config:
    settings: Settings
    scoring: Scoring
    routing: Routing
    reps: Reps
    directory: Path
    # Retired keys found and ignored (see RETIRED_SETTINGS); the caller reports them.
    warnings: tuple[ConfigProblem, ...] = ()
    # tests of a field no lead has (also among the warnings): refused by check and publish
    never_match: tuple[ConfigProblem, ...] = ()
    # The content hash of the four files (`config_version`) and their texts, as published.
    version: str = ""
    texts: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path or '(top)'}: {self.message}"


class ConfigError(Exception):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @property
    def count(self) -> str:
        """'1 problem', '3 problems': for the summary line under the list."""
        return count_of(len(self.problems), "problem")


def count_of(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# --------------------------------------------------------------------------- messages
# Every problem the validator can raise is told in the operator's words: the file, the path
# inside it, what was found, what was expected there and an example of a valid value (from
# the bundled config/*.yaml where it has one). The validation library's own messages are
# never shown: they speak of its types ("a valid tuple"), not of queues and reps.


@dataclass(frozen=True)
class Hint:
    """What belongs at one place in a config file, and a valid example written as YAML."""

    expected: str
    example: str


def _h(expected: str, example: str) -> Hint:
    return Hint(expected, example)


# Keyed by site: "Model.key" for a model's key (as written in the file), then "<key>" for the
# keys of a mapping, "*" for its values and "[]" for a list's items. A site whose value is a
# model falls back to the model's own entry. tests/unit/test_config_messages.py holds that
# every site has a hint and that every example is valid (and the bundled value where the
# bundled files set one).
HINTS: dict[str, Hint] = {
    # settings.yaml
    "Settings": _h("the worker settings", "log_level: INFO"),
    "KafkaSettings": _h(
        "the broker connection (kafka)",
        "kafka: {security_protocol: PLAINTEXT, group_id: leadrouter, partitions: 6}",
    ),
    "KafkaSettings.bootstrap_servers": _h(
        "the broker addresses, host:port separated by commas (unset: `leadrouter demo` starts "
        "a broker of its own)",
        "bootstrap_servers: kafka-1:9092,kafka-2:9092",
    ),
    "KafkaSettings.security_protocol": _h(
        "how the worker connects to the broker", "security_protocol: PLAINTEXT"
    ),
    "KafkaSettings.sasl_mechanism": _h(
        "the SASL mechanism (with SASL_PLAINTEXT or SASL_SSL)", "sasl_mechanism: SCRAM-SHA-512"
    ),
    "KafkaSettings.sasl_username": _h("the SASL user name, as text", "sasl_username: leadrouter"),
    "KafkaSettings.sasl_password": _h(
        "the SASL password, as text (better set by LEADROUTER_KAFKA_SASL_PASSWORD)",
        "sasl_password: change-me",
    ),
    "KafkaSettings.ssl_cafile": _h(
        "the path of the CA certificate file (PEM)", "ssl_cafile: /etc/leadrouter/ca.pem"
    ),
    "KafkaSettings.ssl_certfile": _h(
        "the path of the client certificate file (PEM)",
        "ssl_certfile: /etc/leadrouter/client.pem",
    ),
    "KafkaSettings.ssl_keyfile": _h(
        "the path of the client key file (PEM)", "ssl_keyfile: /etc/leadrouter/client.key"
    ),
    "KafkaSettings.topic_prefix": _h(
        "text put in front of every topic name (empty for none)", "topic_prefix: staging."
    ),
    "KafkaSettings.group_id": _h(
        "the consumer group the workers share, as text", "group_id: leadrouter"
    ),
    "KafkaSettings.processing_guarantee": _h(
        "the delivery guarantee (auto: exactly_once where the broker has transactions)",
        "processing_guarantee: auto",
    ),
    "KafkaSettings.static_membership": _h(
        "whether a restarted worker takes its partitions back at once, true or false",
        "static_membership: true",
    ),
    "KafkaSettings.partitions": _h(
        "the partitions of each topic leadrouter creates, a whole number", "partitions: 6"
    ),
    "KafkaSettings.replication_factor": _h(
        "the copies of each partition the brokers keep, a whole number", "replication_factor: 1"
    ),
    "MetricsSettings": _h("the metrics endpoint", "metrics: {host: 127.0.0.1, port: 9464}"),
    "MetricsSettings.host": _h("the address the metrics endpoint listens on", "host: 127.0.0.1"),
    "MetricsSettings.port": _h(
        "the port of the metrics endpoint (0: any free port), a whole number", "port: 9464"
    ),
    "MetricsSettings.campaigns": _h(
        "the list of campaigns kept as metric labels (any other is reported as other)",
        "campaigns: [spring-launch, q4-webinar-series, brand-search]",
    ),
    "MetricsSettings.campaigns[]": _h("a campaign name, as text", "- spring-launch"),
    "MetricsSettings.sources": _h(
        "the list of sources kept as metric labels (any other is reported as other)",
        "sources: [google, linkedin, meta]",
    ),
    "MetricsSettings.sources[]": _h("a source name, as text", "- google"),
    "IngestSettings": _h(
        "the input limits (ingest)", "ingest: {max_event_bytes: 65536, batch_size: 2000}"
    ),
    "IngestSettings.max_event_bytes": _h(
        "the size of the largest event accepted (a larger one is dead-lettered), in bytes, "
        "a whole number",
        "max_event_bytes: 65536",
    ),
    "IngestSettings.batch_size": _h(
        "the most records a worker handles in one batch, a whole number", "batch_size: 2000"
    ),
    "StoreSettings": _h("where a worker keeps its state (store)", "store: {kind: rocksdb}"),
    "StoreSettings.kind": _h("where lead state is kept", "kind: rocksdb"),
    "StoreSettings.data_dir": _h("the directory of the local state, as text", "data_dir: .data"),
    "ConsentSettings": _h(
        "the consent rules (consent)", "consent: {required_countries: [DE, AT, FR]}"
    ),
    "ConsentSettings.required_countries": _h(
        "the list of countries (ISO 3166-1 alpha-2 codes) whose leads need marketing consent "
        "to be routed",
        "required_countries: [DE, AT, FR]",
    ),
    "ConsentSettings.required_countries[]": _h(
        "a country code (ISO 3166-1 alpha-2), as text", "- DE"
    ),
    "PersonalDataSettings": _h(
        "how long a person's data is kept (personal_data)",
        "personal_data: {expire_after_days: 365}",
    ),
    "PersonalDataSettings.expire_after_days": _h(
        "the days a lead or visitor with no touch is kept before its state is removed "
        "(0: kept until erased), a number from 0 to 3650",
        "expire_after_days: 365",
    ),
    "RegionSettings": _h(
        "the region exceptions (regions)", "regions: {overrides: {AE: EMEA, TR: EMEA}}"
    ),
    "RegionSettings.overrides": _h(
        "a mapping from country code to region, for countries whose time-zone area is not "
        "their region",
        "overrides: {AE: EMEA, TR: EMEA}",
    ),
    "RegionSettings.overrides<key>": _h("a country code (ISO 3166-1 alpha-2)", "AE: EMEA"),
    "RegionSettings.overrides*": _h("a region name (AMER, EMEA or APAC), as text", "AE: EMEA"),
    "Settings.competitor_domains": _h(
        "the list of competitors' e-mail domains (their leads are never routed)",
        "competitor_domains: [rivalrouter.com, leadflow-competitor.io]",
    ),
    "Settings.competitor_domains[]": _h("a domain name, as text", "- rivalrouter.com"),
    "Settings.fast_lane_forms": _h(
        "the list of form ids that route a lead at once, whatever its score",
        "fast_lane_forms: [demo-request, contact-sales]",
    ),
    "Settings.fast_lane_forms[]": _h("a form id, as text", "- demo-request"),
    "Settings.fast_lane_email_types": _h(
        "the list of e-mail event types that route a lead at once", "fast_lane_email_types: [reply]"
    ),
    "Settings.fast_lane_email_types[]": _h(
        "an e-mail event type (delivered, open, click, reply, bounce, unsubscribe, spam_complaint)",
        "- reply",
    ),
    "Settings.recycle_after_days": _h(
        "the days after which an idle routed lead may be routed again, a number",
        "recycle_after_days: 30",
    ),
    "Settings.dedupe_window": _h(
        "how many recent event ids each lead remembers to drop repeats, a whole number",
        "dedupe_window: 32",
    ),
    "Settings.instance_id": _h(
        "a name for this worker that stays the same across restarts, as text (unset: the host "
        "name and data directory)",
        "instance_id: worker-1",
    ),
    "Settings.log_level": _h("how much the worker logs", "log_level: INFO"),
    "Settings.config_source": _h(
        "where the worker takes its configuration from: the latest published version "
        "(published) or only its own files (files)",
        "config_source: published",
    ),
    # scoring.yaml
    "Scoring": _h("the scoring settings", "mql_threshold: 60"),
    "Scoring.mql_threshold": _h(
        "the score at which a lead becomes marketing-qualified and is routed, a number",
        "mql_threshold: 60",
    ),
    "Grades": _h(
        "the grade thresholds (the lowest score of grades A, B and C)",
        "grades: {A: 80, B: 60, C: 35}",
    ),
    "Grades.A": _h("the lowest score of grade A, a number", "A: 80"),
    "Grades.B": _h("the lowest score of grade B, a number", "B: 60"),
    "Grades.C": _h("the lowest score of grade C, a number", "C: 35"),
    "FitRules": _h("the fit points (who the lead is)", "fit: {free_mail: -15, known_account: 10}"),
    "FitRules.seniority": _h(
        "a mapping from seniority level to points", "seniority: {c_level: 25, vp: 20}"
    ),
    "FitRules.seniority<key>": _h("a seniority level, as text", "vp: 20"),
    "FitRules.seniority*": _h("the points of that seniority level, a number", "vp: 20"),
    "FitRules.employees": _h(
        "a list of company-size bands, largest first, each the fewest employees (gte) and its "
        "points",
        "employees: [{gte: 5000, points: 20}, {gte: 1000, points: 15}]",
    ),
    "SizeBand": _h(
        "a company-size band (the fewest employees, gte, and its points)",
        "- {gte: 1000, points: 15}",
    ),
    "SizeBand.gte": _h("the fewest employees in the band, a whole number", "gte: 1000"),
    "SizeBand.points": _h("the points of the band, a number", "points: 15"),
    "FitRules.industry": _h(
        "a mapping from industry to points", "industry: {software: 10, financial_services: 8}"
    ),
    "FitRules.industry<key>": _h("an industry name, as text", "software: 10"),
    "FitRules.industry*": _h("the points of that industry, a number", "software: 10"),
    "FitRules.country": _h("a mapping from country code to points", "country: {US: 5, DE: 5}"),
    "FitRules.country<key>": _h("a country code (ISO 3166-1 alpha-2)", "US: 5"),
    "FitRules.country*": _h("the points of that country, a number", "US: 5"),
    "FitRules.free_mail": _h(
        "the points of a free-mail address (usually negative), a number", "free_mail: -15"
    ),
    "FitRules.known_account": _h(
        "the points of a lead from a known account, a number", "known_account: 10"
    ),
    "EngagementRules": _h(
        "the engagement points (what the lead did)",
        "engagement: {half_life_days: 14, ad_click: 3}",
    ),
    "EngagementRules.half_life_days": _h(
        "the days after which a touch counts half, a number", "half_life_days: 14"
    ),
    "EngagementRules.forms": _h(
        "a mapping from form id to points", "forms: {demo-request: 45, webinar: 15}"
    ),
    "EngagementRules.forms<key>": _h("a form id, as text", "demo-request: 45"),
    "EngagementRules.forms*": _h("the points of that form, a number", "demo-request: 45"),
    "EngagementRules.form_default": _h("the points of any other form, a number", "form_default: 5"),
    "EngagementRules.email": _h(
        "a mapping from e-mail event type to points", "email: {click: 5, reply: 25}"
    ),
    "EngagementRules.email<key>": _h("an e-mail event type, as text", "reply: 25"),
    "EngagementRules.email*": _h("the points of that e-mail event, a number", "reply: 25"),
    "EngagementRules.ad_click": _h("the points of an ad click, a number", "ad_click: 3"),
    "Scoring.seniority_keywords": _h(
        "a mapping from seniority level to its job-title keywords (whole words; the first "
        "level that matches wins)",
        "seniority_keywords: {vp: [vp, svp, evp, vice president]}",
    ),
    "Scoring.seniority_keywords<key>": _h(
        "a seniority level, as text", "vp: [vp, svp, evp, vice president]"
    ),
    "Scoring.seniority_keywords*": _h(
        "the list of job-title keywords of that level", "vp: [vp, svp, evp, vice president]"
    ),
    "Scoring.seniority_keywords*[]": _h("a job-title keyword, as text", "- vice president"),
    # routing.yaml
    "Routing": _h("the routing settings", "default_queue: smb"),
    "Routing.account_owner_precedence": _h(
        "whether a lead whose account has an owner goes to the owner's queue first, true or false",
        "account_owner_precedence: true",
    ),
    "Routing.fairness_window_hours": _h(
        "the hours over which a weighted queue counts each rep's leads, a number",
        "fairness_window_hours: 24",
    ),
    "Routing.queues": _h(
        "a mapping from queue name to its strategy, SLA and reps",
        "queues: {smb: {strategy: round_robin, sla_minutes: 1440, reps: [noah.brown, "
        "olivia.davis]}}",
    ),
    "Routing.queues<key>": _h(
        "a queue name (it names the topic leads.routed.<queue>): lower-case letters, digits "
        "and -, starting with a letter or digit, at most 63 characters",
        "enterprise-emea: {strategy: weighted, sla_minutes: 60, reps: [greta.schmidt, "
        "hugo.dubois]}",
    ),
    "Queue": _h(
        "a queue (its strategy, SLA, reps and what an SLA breach does)",
        "smb: {strategy: round_robin, sla_minutes: 1440, reps: [noah.brown, olivia.davis]}",
    ),
    "Queue.strategy": _h("how the queue picks a rep", "strategy: round_robin"),
    "Queue.sla_minutes": _h(
        "the minutes a rep has to first contact a lead before the SLA is breached, a number",
        "sla_minutes: 60",
    ),
    "Queue.reps": _h(
        "the list of the ids (from reps.yaml) of the reps who take this queue's leads",
        "reps: [noah.brown, olivia.davis]",
    ),
    "Queue.reps[]": _h("a rep id from reps.yaml", "- noah.brown"),
    "Queue.on_sla_breach": _h(
        "what happens when a lead's SLA passes with no first touch: action notify, reassign "
        "or escalate, with max_reassignments and escalate_to",
        "on_sla_breach: {action: reassign, max_reassignments: 1, escalate_to: mid-market}",
    ),
    "OnSlaBreach": _h(
        "what happens on an SLA breach (action, max_reassignments, escalate_to)",
        "on_sla_breach: {action: reassign, max_reassignments: 1}",
    ),
    "OnSlaBreach.action": _h(
        "notify (count the breach), reassign (to the next available rep of the queue) or "
        "escalate (to the queue escalate_to)",
        "action: reassign",
    ),
    "OnSlaBreach.max_reassignments": _h(
        "how many times a lead may be reassigned within the queue, a whole number from 1 to 20",
        "max_reassignments: 1",
    ),
    "OnSlaBreach.escalate_to": _h(
        "the queue a breached lead moves to (after its reassignments, with reassign), the "
        "name of another queue",
        "escalate_to: mid-market",
    ),
    "Routing.handout": _h(
        "how waiting leads are handed out as reps come in: per_rep (leads to each available "
        "rep at a time) and every_minutes (how often while leads wait)",
        "handout: {per_rep: 3, every_minutes: 5}",
    ),
    "Handout": _h(
        "how waiting leads are handed out (per_rep, every_minutes)",
        "handout: {per_rep: 3, every_minutes: 5}",
    ),
    "Handout.per_rep": _h(
        "the waiting leads each available rep is given at a time, a whole number from 1 to 1000",
        "per_rep: 3",
    ),
    "Handout.every_minutes": _h(
        "the minutes between hand-outs while leads wait, a number above 0 (at most a day)",
        "every_minutes: 5",
    ),
    "Routing.rules": _h(
        "a list of rules, tried in order (the first that holds chooses the queue), each with "
        "a name, a condition (when) and a queue",
        "rules: [{name: fast-lane, when: {field: trigger, eq: fast_lane}, queue: fast-lane}]",
    ),
    "Rule": _h(
        "a rule (its name, the condition when that must hold, and the queue it chooses)",
        "- {name: fast-lane, when: {field: trigger, eq: fast_lane}, queue: fast-lane}",
    ),
    "Rule.name": _h(
        "a rule name: lower-case letters, digits, - and _, starting with a letter or digit, "
        "at most 63 characters",
        "name: enterprise-emea",
    ),
    "Rule.queue": _h("the name of a queue defined under queues", "queue: enterprise-emea"),
    "Routing.default_queue": _h(
        "the queue of a lead that no rule matches, the name of a queue defined under queues",
        "default_queue: smb",
    ),
    "Condition": _h(
        "a condition (a field with one test: eq, in, not_in, gte, lte, exists or matches; or "
        "one of all, any, not, always)",
        "when: {field: region, eq: EMEA}",
    ),
    "Condition.field": _h(
        "the lead field to test (such as trigger, region, seniority, score or "
        "company.employees), as text",
        "field: region",
    ),
    "Condition.in": _h("the list of values the field may have", "in: [c_level, vp, director]"),
    "Condition.not_in": _h(
        "the list of values the field must not have", "not_in: [education, retail]"
    ),
    "Condition.gte": _h("the smallest value that passes, a number", "gte: 1000"),
    "Condition.lte": _h("the largest value that passes, a number", "lte: 50"),
    "Condition.exists": _h("true (the field has a value) or false (it has none)", "exists: true"),
    "Condition.matches": _h(
        f"a pattern (RE2 syntax) found in the field's text, at most {MAX_PATTERN_LENGTH} "
        "characters",
        r"matches: '^[a-z0-9.-]+\.(com|io|co|net|org)$'",
    ),
    "Condition.all": _h(
        "a list of conditions that must all hold",
        "all: [{field: company.employees, gte: 1000}, {field: region, eq: EMEA}]",
    ),
    "Condition.any": _h(
        "a list of conditions of which one must hold",
        "any: [{field: region, eq: EMEA}, {field: region, eq: APAC}]",
    ),
    "Condition.not": _h("a condition that must not hold", "not: {field: free_mail, eq: true}"),
    "Condition.always": _h("true: the rule always holds (a catch-all)", "always: true"),
    # reps.yaml
    "Reps": _h(
        "the sales reps (reps)", "reps: {ana.silva: {name: Ana Silva, timezone: America/Sao_Paulo}}"
    ),
    "Reps.reps": _h(
        "a mapping from rep id to the rep's name, time zone, hours and capacity",
        "reps: {ana.silva: {name: Ana Silva, timezone: America/Sao_Paulo}}",
    ),
    "Reps.reps<key>": _h(
        "a rep id: letters, digits, ., _ and -, at most 64 characters",
        "ana.silva: {name: Ana Silva, timezone: America/Sao_Paulo}",
    ),
    "Rep": _h(
        "a rep (name and time zone; optionally weight, daily capacity, working hours and "
        "out-of-office dates)",
        "ana.silva: {name: Ana Silva, timezone: America/Sao_Paulo, weight: 1, daily_capacity: 80}",
    ),
    "Rep.name": _h("the rep's name as people read it, as text", "name: Ana Silva"),
    "Rep.timezone": _h("the rep's time zone, an IANA name", "timezone: America/Sao_Paulo"),
    "Rep.weight": _h(
        "the rep's share of a weighted queue's leads, relative to the others, a number",
        "weight: 2",
    ),
    "Rep.daily_capacity": _h(
        "the most leads the rep takes in a day (their own day), a whole number",
        "daily_capacity: 80",
    ),
    "WorkingHours": _h(
        "the working hours in the rep's time zone (start, end, days)",
        "working_hours: {start: '08:00', end: '18:00', days: [mon, tue, wed, thu, fri]}",
    ),
    "WorkingHours.start": _h(
        "the time the working day starts in the rep's time zone, HH:MM in quotes",
        "start: '08:00'",
    ),
    "WorkingHours.end": _h(
        "the time the working day ends in the rep's time zone, HH:MM in quotes", "end: '18:00'"
    ),
    "WorkingHours.days": _h("the list of working days", "days: [mon, tue, wed, thu, fri]"),
    "WorkingHours.days[]": _h("a working day", "- mon"),
    "Rep.out_of_office": _h(
        "a list of absences, each from a date to a date (both included, in the rep's time zone)",
        "out_of_office: [{from: '2026-12-21', to: '2027-01-03'}]",
    ),
    "Absence": _h(
        "an absence (from and to, both included)", "- {from: '2026-12-21', to: '2027-01-03'}"
    ),
    "Absence.from": _h("the first day out of office, a date YYYY-MM-DD", "from: '2026-12-21'"),
    "Absence.to": _h("the last day out of office, a date YYYY-MM-DD", "to: '2027-01-03'"),
}

# The model of each file, in the order they are read and reported.
FILE_MODELS: dict[str, type[BaseModel]] = dict(
    zip(CONFIG_FILES, (Settings, Scoring, Routing, Reps), strict=True)
)


@dataclass(frozen=True)
class Site:
    """One place in a config file's shape: its hint key, the type expected and, for a model's
    own key, its field (whose bounds the message states)."""

    key: str
    type: Any
    field: Any = None


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            kinds = [a for a in get_args(tp) if a is not type(None)]
            if len(kinds) != 1:
                return tp
            tp = kinds[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def model_keys(model: type[BaseModel]) -> dict[str, str]:
    """The keys a model takes as written in a file (aliases such as `in`, `not`, `from`)."""
    return {(f.alias or name): name for name, f in model.model_fields.items()}


def site_of(model: type[BaseModel], loc: tuple[int | str, ...]) -> Site | None:
    """Where `loc` (a path as the validator reports it) lands in `model`'s shape."""
    tp: Any = model
    key, field = model.__name__, None
    i = 0
    while i < len(loc):
        part, tp = loc[i], _unwrap(tp)
        if _is_model(tp):
            name = model_keys(tp).get(str(part))
            if name is None:
                return None
            field = tp.model_fields[name]
            key, tp = f"{tp.__name__}.{field.alias or name}", field.annotation
        elif get_origin(tp) is dict:
            key_type, value_type = get_args(tp)
            field = None
            if i + 1 < len(loc) and loc[i + 1] == "[key]":
                key, tp, i = key + "<key>", key_type, i + 1
            else:
                key, tp = key + "*", value_type
        elif get_origin(tp) is tuple:
            key, tp, field = key + "[]", get_args(tp)[0], None
        else:
            return None
        i += 1
    return Site(key, _unwrap(tp), field)


def hint_for(site: Site | None) -> Hint | None:
    if site is None:
        return None
    hint = HINTS.get(site.key)
    if hint is None and _is_model(site.type):
        hint = HINTS.get(site.type.__name__)
    return hint


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _words(items: list[str], last: str = "or") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def _bounds(field: Any) -> str:
    """The range a numeric key allows, in words: 'from 1 to 1024', 'above 0'."""
    if field is None:
        return ""
    n: dict[str, str] = {}
    for item in field.metadata:
        for name in ("gt", "ge", "lt", "le"):
            if getattr(item, name, None) is not None:
                n[name] = _number(getattr(item, name))
    if "ge" in n and "le" in n:
        return f" from {n['ge']} to {n['le']}"
    words = {"gt": "above {}", "ge": "of {} or more", "lt": "below {}", "le": "at most {}"}
    parts = [words[name].format(n[name]) for name in ("gt", "ge", "lt", "le") if name in n]
    return " " + " and ".join(parts) if parts else ""


def _choices(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return f": one of {_words([str(c) for c in get_args(tp)])}"
    return ""


def _shown(value: Any, limit: int = 60) -> str:
    """A value as the operator wrote it (YAML), shortened."""
    if value is None:
        text = "an empty value"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        text = str(value)
    elif isinstance(value, int | float):
        text = _number(value)
    elif isinstance(value, str):
        text = repr(value)
    else:
        flow = yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip()
        flow = flow.removesuffix("...").strip()
        kind = "the list" if isinstance(value, list | tuple) else "the mapping"
        text = f"{kind} {flow}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _example_value(hint: Hint) -> Any:
    """The value in a hint's example (the example is `key: value` or `- value`)."""
    data = yaml.safe_load(hint.example)
    if isinstance(data, list):
        return data[0]
    return next(iter(data.values()))


def _phrase(problem: str, hint: Hint | None, more: str = "", example: str | None = None) -> str:
    hint = hint or Hint("a value like the one the bundled file has here", "see config/")
    return (
        f"{problem.rstrip('.')}. Expected {hint.expected}{more}; "
        f"for example: {example or hint.example}"
    )


def explain_error(
    model: type[BaseModel],
    error: Mapping[str, Any],
    env_sources: Mapping[tuple[str, ...], str] | None = None,
) -> tuple[str, str]:
    """(path, message) for one of the validator's errors, in the operator's words."""
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    kind, value = error["type"], error.get("input")
    shown_loc = tuple(p for p in loc if p != "[key]")
    path = _format_loc(shown_loc)
    if kind == "extra_forbidden":
        parent = site_of(model, loc[:-1])
        allowed = list(model_keys(parent.type)) if parent and _is_model(parent.type) else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        problem = f"unknown key {str(loc[-1])!r}"
        if close:
            problem += f" (did you mean {close[0]!r}?)"
        hint = hint_for(parent)
        if hint is not None and allowed:
            hint = Hint(f"one of the keys of {hint.expected}: {_words(allowed)}", hint.example)
        return path, _phrase(problem, hint)
    site = site_of(model, loc)
    hint = hint_for(site)
    more = (_bounds(site.field) + _choices(site.type)) if site else ""
    if kind == "missing":
        problem = "missing"
    elif kind == "value_error":
        problem = str(error.get("ctx", {}).get("error", "not accepted"))
    elif isinstance(value, float) and math.isnan(value):
        problem = "got nan, which is not a number"
    elif kind in ("greater_than", "greater_than_equal"):
        problem = f"got {_shown(value)}, which is too small"
    elif kind in ("less_than", "less_than_equal"):
        problem = f"got {_shown(value)}, which is too large"
    elif kind == "string_type" and isinstance(value, int | float | bool):
        problem = f"got {_shown(value)}, not text (in quotes it would be text)"
    elif loc and loc[-1] == "[key]":
        problem = f"the name {_shown(value)} is not allowed"
    elif isinstance(value, int | float) and not isinstance(value, bool):
        problem = f"got the number {_shown(value)}"
    else:
        problem = f"got {_shown(value)}"
    example = None
    var = (env_sources or {}).get(tuple(str(p) for p in shown_loc))
    if var is not None:
        path = f"{path} (set by {var})"
        if hint is not None:
            example = f"{var}={_example_value(hint)}"
    return path, _phrase(problem, hint, more, example)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = {"in_": "in", "not_": "not"}.get(part, part)
            out += f".{part}" if out else part
    return out


def _read_text(path: Path, problems: list[ConfigProblem]) -> str | None:
    """A configuration file's text, or None with the problem recorded."""
    top = HINTS[FILE_MODELS[path.name].__name__] if path.name in FILE_MODELS else None
    if not path.is_file():
        problems.append(
            ConfigProblem(
                str(path),
                "",
                _phrase(
                    "file not found",
                    Hint(
                        f"{path.name} in {path.parent}, beside the other configuration files "
                        f"({_words(list(CONFIG_FILES), 'and')})",
                        f"the bundled {DEFAULT_CONFIG_DIR / path.name}",
                    ),
                ),
            )
        )
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        example = top.example if top else ""
        problems.append(
            ConfigProblem(
                str(path),
                "",
                _phrase(f"not UTF-8 text ({exc.reason})", Hint("a UTF-8 text file", example)),
            )
        )
        return None


def _read_yaml(path: Path, text: str, problems: list[ConfigProblem]) -> dict[str, Any] | None:
    """The file's mapping, or None with the problem recorded. `path` names it in errors:
    a file on disk, or a file of a published version (`reference.config@<version>/...`)."""
    top = HINTS[FILE_MODELS[path.name].__name__] if path.name in FILE_MODELS else None
    plain = Hint("plain YAML like the bundled file's", top.example if top else "")
    try:
        data = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if isinstance(exc, yaml.constructor.ConstructorError):
            tag = re.search(r"tag '([^']*)'", problem or "")
            named = tag.group(1).replace("tag:yaml.org,2002:", "!!") if tag else "this tag"
            problem = f"the tag {named} would build an object, and configuration is plain data"
            plain = Hint("text, numbers, true/false, lists and mappings only", plain.example)
        problems.append(
            ConfigProblem(str(path), where, _phrase(f"not valid YAML: {problem}", plain))
        )
        return None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(
            ConfigProblem(
                str(path),
                "",
                _phrase(
                    f"the file holds {_shown(data)}, not keys and values",
                    Hint("a mapping of keys at the top level", plain.example),
                ),
            )
        )
        return None
    return data


def _validate(
    model: type[M],
    data: dict[str, Any],
    file: str,
    problems: list[ConfigProblem],
    env_sources: Mapping[tuple[str, ...], str] | None = None,
) -> M | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            path, message = explain_error(model, err, env_sources)
            problems.append(ConfigProblem(file, path, message))
        return None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _some(names: list[str], most: int = 6) -> str:
    """Names to pick from, in file order; a long list is cut with a count of the rest."""
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[:most])} and {len(names) - most} more"


def _routing_references(
    file: str, routing: dict[str, Any], reps: dict[str, Any]
) -> list[ConfigProblem]:
    """Names that must point somewhere: rule and default queues, queue reps, unique rules.
    Checked on the raw file so they are reported alongside any type errors."""
    out = []
    # A `queues` that is not a mapping is reported by its own check; naming every rule's
    # queue unknown as well would bury that one line.
    has_queues = isinstance(routing.get("queues"), dict)
    queues = _mapping(routing.get("queues"))
    queue_names = f" ({_some([str(q) for q in queues])})" if queues else " (none is defined)"
    default = routing.get("default_queue")
    if has_queues and default is not None and default not in queues:
        out.append(
            ConfigProblem(
                file,
                "default_queue",
                _phrase(
                    f"default_queue {default!r} is not a queue",
                    HINTS["Routing.default_queue"],
                    queue_names,
                ),
            )
        )
    seen: set[str] = set()
    rules = routing.get("rules")
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        rule = _mapping(rule)
        if has_queues and "queue" in rule and rule["queue"] not in queues:
            out.append(
                ConfigProblem(
                    file,
                    f"rules[{i}].queue",
                    _phrase(f"unknown queue {rule['queue']!r}", HINTS["Rule.queue"], queue_names),
                )
            )
        name = rule.get("name")
        if isinstance(name, str):
            if name in seen:
                out.append(
                    ConfigProblem(
                        file,
                        f"rules[{i}].name",
                        _phrase(
                            f"duplicate rule name {name!r}",
                            Hint(
                                "a name no other rule has (routed leads and metrics name the "
                                "rule that decided)",
                                HINTS["Rule.name"].example,
                            ),
                        ),
                    )
                )
            seen.add(name)
    out += _escalations(file, queues, queue_names)
    if reps:
        known = f" ({_some([str(r) for r in reps])})"
        for qname, queue in queues.items():
            members = _mapping(queue).get("reps")
            for i, rep_id in enumerate(members if isinstance(members, list) else []):
                if rep_id not in reps:
                    out.append(
                        ConfigProblem(
                            file,
                            f"queues.{qname}.reps[{i}]",
                            _phrase(
                                f"unknown rep {rep_id!r} (not in reps.yaml)",
                                Hint("the id of a rep defined in reps.yaml", "- noah.brown"),
                                known,
                            ),
                        )
                    )
    return out


def _escalations(file: str, queues: dict[str, Any], queue_names: str) -> list[ConfigProblem]:
    """Every `escalate_to` names another queue, and following them never comes back: a
    lead escalated round a cycle would move between queues for ever."""
    out = []
    target: dict[str, str] = {}
    for qname, queue in queues.items():
        breach = _mapping(_mapping(queue).get("on_sla_breach"))
        to = breach.get("escalate_to")
        if to is None:
            continue
        path = f"queues.{qname}.on_sla_breach.escalate_to"
        if to not in queues or to == qname:
            what = (
                f"unknown queue {to!r}" if to not in queues else "a queue cannot escalate to itself"
            )
            hint = HINTS["OnSlaBreach.escalate_to"]
            out.append(ConfigProblem(file, path, _phrase(what, hint, queue_names)))
            continue
        target[qname] = to
    reported: set[str] = set()
    for start in target:
        seen = [start]
        while (nxt := target.get(seen[-1])) is not None and nxt not in seen:
            seen.append(nxt)
        if nxt is not None and start == nxt and not reported & set(seen):
            reported |= set(seen)
            cycle = " -> ".join([*seen, start])
            out.append(
                ConfigProblem(
                    file,
                    f"queues.{start}.on_sla_breach.escalate_to",
                    _phrase(
                        f"escalation goes round in a cycle ({cycle})",
                        Hint(
                            "escalations that end in a queue that does not escalate",
                            "escalate_to: smb",
                        ),
                    ),
                )
            )
    return out


def _seniority_keywords(file: str, scoring: Scoring) -> list[ConfigProblem]:
    """A scored seniority level nobody can reach (no job-title keyword names it)."""
    return [
        ConfigProblem(
            file,
            f"fit.seniority.{level}",
            _phrase(
                "level has no entry in seniority_keywords, so no job title reaches it",
                Hint(
                    "every level scored under fit.seniority, except individual (a title no "
                    "keyword matches), to have its job-title keywords under seniority_keywords",
                    "seniority_keywords: {director: [director, head of, head]}",
                ),
            ),
        )
        for level in scoring.fit.seniority
        if level not in scoring.seniority_keywords and level != "individual"
    ]


# Keys that an earlier version accepted and this one no longer reads. A config file written
# for that version still loads, so an upgrade does not fail on it: the key is dropped before
# validation and reported as a warning naming the file and the path. Every other unknown key
# stays an error (Strict), so a typo is still refused.
RETIRED_SETTINGS: dict[tuple[str, ...], str] = {
    ("ingest", "batch_timeout_ms"): (
        "retired setting, ignored: it never had an effect (a batch is what the broker has "
        "ready, up to ingest.batch_size); delete it from this file"
    ),
}


def _drop_retired(file: str, data: dict[str, Any]) -> list[ConfigProblem]:
    out = []
    for path, why in RETIRED_SETTINGS.items():
        node: Any = data
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            del node[path[-1]]
            out.append(ConfigProblem(file, ".".join(path), why))
    return out


def _leaves(model: type[BaseModel], path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every settings key below `model` that holds a value, with its type."""
    out: dict[tuple[str, ...], Any] = {}
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out |= _leaves(kind, (*path, name))
        else:
            out[(*path, name)] = kind
    return out


SETTING_TYPES = _leaves(Settings)
# Every key by its path: LEADROUTER_KAFKA_REPLICATION_FACTOR is kafka.replication_factor.
GENERATED_OVERRIDES = {"LEADROUTER_" + "_".join(p).upper(): p for p in SETTING_TYPES}
# The shorter names documented first (README), which win over the generated ones.
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "LEADROUTER_KAFKA_SECURITY_PROTOCOL": ("kafka", "security_protocol"),
    "LEADROUTER_KAFKA_SASL_MECHANISM": ("kafka", "sasl_mechanism"),
    "LEADROUTER_KAFKA_SASL_USERNAME": ("kafka", "sasl_username"),
    "LEADROUTER_KAFKA_SASL_PASSWORD": ("kafka", "sasl_password"),
    "LEADROUTER_KAFKA_SSL_CAFILE": ("kafka", "ssl_cafile"),
    "LEADROUTER_KAFKA_SSL_CERTFILE": ("kafka", "ssl_certfile"),
    "LEADROUTER_KAFKA_SSL_KEYFILE": ("kafka", "ssl_keyfile"),
    "LEADROUTER_TOPIC_PREFIX": ("kafka", "topic_prefix"),
    "LEADROUTER_GROUP_ID": ("kafka", "group_id"),
    "LEADROUTER_PROCESSING_GUARANTEE": ("kafka", "processing_guarantee"),
    "LEADROUTER_STATIC_MEMBERSHIP": ("kafka", "static_membership"),
    "LEADROUTER_PARTITIONS": ("kafka", "partitions"),
    "LEADROUTER_METRICS_HOST": ("metrics", "host"),
    "LEADROUTER_METRICS_PORT": ("metrics", "port"),
    "LEADROUTER_STORE": ("store", "kind"),
    "LEADROUTER_DATA_DIR": ("store", "data_dir"),
    "LEADROUTER_INSTANCE_ID": ("instance_id",),
    "LEADROUTER_LOG_LEVEL": ("log_level",),
    "LEADROUTER_CONFIG_SOURCE": ("config_source",),
    "LEADROUTER_EXPIRE_AFTER_DAYS": ("personal_data", "expire_after_days"),
    "LEADROUTER_BATCH_SIZE": ("ingest", "batch_size"),
}


def _env_value(path: tuple[str, ...], text: str) -> Any:
    """A variable's text as the key's value: a list as `a,b` (or YAML `[a, b]`), a mapping
    as YAML (`{US: AMER}`); anything else as written, judged by the key's own rules."""
    kind = SETTING_TYPES.get(path)
    origin = get_origin(kind)
    if origin is tuple:
        if text.lstrip().startswith("["):
            return _yaml_or_text(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    if origin is dict:
        return _yaml_or_text(text)
    return text


def _yaml_or_text(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # validation says what the key expects, naming the variable


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    for var, path in _overrides(env).items():  # only those set
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:  # absent, or an empty section in the file
                child = node[part] = {}
            elif not isinstance(child, dict):
                child = {}  # the file's value is not a section: validation says so
            node = child
        node[path[-1]] = _env_value(path, env[var])
    return data


def _overrides(env: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """The variables set in `env` that override a key, in the order they are applied: the
    generated names, then the documented ones (so a documented name wins)."""
    return {
        var: path
        for table in (GENERATED_OVERRIDES, ENV_OVERRIDES)
        for var, path in table.items()
        if env.get(var, "") != ""
    }


def unpublished_overrides(env: Mapping[str, str]) -> list[str]:
    """Variables set for keys that a published version decides (all but the process's own,
    PROCESS_SETTINGS): they change how this process reads its local files, and nothing
    while it runs a published version, nor what `config publish` publishes."""
    return sorted(var for var, path in _overrides(env).items() if path[0] not in PROCESS_SETTINGS)


def _env_sources(env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Which settings came from the environment: a bad one is named by its variable."""
    return {path: var for var, path in _overrides(env).items()}


def config_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Explicit argument, then LEADROUTER_CONFIG_DIR, then the repository's config/."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("LEADROUTER_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


def load_config(
    directory: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    strict: bool = False,
) -> Config:
    """Load and cross-check every file; raise ConfigError listing every problem found.
    Retired keys are not problems: they are ignored and listed in `Config.warnings`.
    `strict` (files to check, publish or try as a candidate): a test of a field no lead
    has is a problem too (`Config.never_match`)."""
    base = config_dir(directory)
    problems: list[ConfigProblem] = []
    texts = {name: _read_text(base / name, problems) for name in CONFIG_FILES}
    config = config_from_texts(texts, base, os.environ if env is None else env, problems)
    if strict and config.never_match:
        raise ConfigError(list(config.never_match))
    return config


def config_version(texts: Mapping[str, str]) -> str:
    """The content hash that names a configuration: the same four files, the same version,
    wherever they come from (a directory or a published record)."""
    digest = hashlib.sha256()
    for name in CONFIG_FILES:
        digest.update(f"{name}\n{texts[name]}\0".encode())
    return digest.hexdigest()[:VERSION_CHARS]


def _sasl_incomplete(file: str, kafka: KafkaSettings) -> list[ConfigProblem]:
    """SASL without its mechanism would pass and fail at the first connection: librdkafka
    falls back to GSSAPI, which this build has no provider for. (The user name and password
    usually come from a secret at run time, so their absence is not judged here.) Judged on
    the settings a process connects with, its file and environment together: a published
    version's are not (each process keeps its own, `with_process_settings`)."""
    if not kafka.security_protocol.startswith("SASL_") or kafka.sasl_mechanism:
        return []
    return [
        ConfigProblem(
            file,
            "kafka.sasl_mechanism",
            f"security_protocol {kafka.security_protocol} needs sasl_mechanism: PLAIN, "
            "SCRAM-SHA-256 or SCRAM-SHA-512 (in the file, or LEADROUTER_KAFKA_SASL_MECHANISM)",
        )
    ]


def _unknown_fields(file: str, routing: Routing) -> list[ConfigProblem]:
    """Tests of a field no lead has (a typo): it reads as missing for every lead, so the
    test answers alike for all (`eq` never holds, `not_in` always). Not an error when a
    configuration is loaded, so a version published before this check still runs;
    `config check` and `config publish` refuse it (`Config.never_match`)."""
    out: list[ConfigProblem] = []

    def walk(cond: Condition, path: str) -> None:
        if cond.field is not None and cond.field not in LEAD_FIELDS:
            close = difflib.get_close_matches(cond.field, LEAD_FIELDS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            out.append(
                ConfigProblem(
                    file,
                    f"{path}.field",
                    f"unknown lead field {cond.field!r}{hint}: no lead has it, so this test "
                    f"answers alike for every lead; the fields are {', '.join(LEAD_FIELDS)}",
                )
            )
        for name, children in (("all", cond.all), ("any", cond.any)):
            for j, child in enumerate(children or ()):
                walk(child, f"{path}.{name}[{j}]")
        if cond.not_ is not None:
            walk(cond.not_, f"{path}.not")

    for i, rule in enumerate(routing.rules):
        walk(rule.when, f"rules[{i}].when")
    return out


def config_from_texts(
    texts: Mapping[str, str | None],
    base: Path,
    env: Mapping[str, str],
    problems: list[ConfigProblem] | None = None,
    *,
    connects: bool = True,
) -> Config:
    """`load_config` on the files' texts (None: missing, already in `problems`); `base`
    names them in errors. `connects`: these are the settings this process connects with
    (False for a published version, whose process settings are replaced by the local
    ones)."""
    problems = [] if problems is None else problems
    warnings: list[ConfigProblem] = []
    raw = {
        name: _read_yaml(base / name, text, problems) if text is not None else None
        for name, text in texts.items()
    }
    if raw["settings.yaml"] is not None:
        warnings += _drop_retired(str(base / "settings.yaml"), raw["settings.yaml"])
        raw["settings.yaml"] = _apply_env(raw["settings.yaml"], env)
    models: dict[str, Any] = {}
    for name, model in FILE_MODELS.items():
        if raw[name] is not None:
            sources = _env_sources(env) if name == "settings.yaml" else None
            models[name] = _validate(model, raw[name], str(base / name), problems, sources)
    if raw["routing.yaml"] is not None:
        known_reps = _mapping(raw["reps.yaml"]).get("reps") if raw["reps.yaml"] else None
        problems += _routing_references(
            str(base / "routing.yaml"), raw["routing.yaml"], _mapping(known_reps)
        )
    scoring: Scoring | None = models.get("scoring.yaml")
    if scoring is not None:
        problems += _seniority_keywords(str(base / "scoring.yaml"), scoring)
    settings: Settings | None = models.get("settings.yaml")
    if connects and settings is not None:
        problems += _sasl_incomplete(str(base / "settings.yaml"), settings.kafka)
    if problems or any(m is None for m in models.values()):
        raise ConfigError(problems)
    never_match = _unknown_fields(str(base / "routing.yaml"), models["routing.yaml"])
    warnings += never_match
    return Config(
        settings=models["settings.yaml"],
        scoring=models["scoring.yaml"],
        routing=models["routing.yaml"],
        reps=models["reps.yaml"],
        directory=base,
        warnings=tuple(warnings),
        never_match=tuple(never_match),
        version=config_version(texts),  # type: ignore[arg-type]
        texts=dict(texts),  # type: ignore[arg-type]
    )


def with_process_settings(config: Config, local: Settings) -> Config:
    """A published configuration as this process runs it: how the process connects,
    stores, logs and serves metrics stays its own (`PROCESS_SETTINGS`, from its local
    settings.yaml and environment); everything else is the published version's."""
    settings = config.settings.model_copy(
        update={key: getattr(local, key) for key in PROCESS_SETTINGS}
    )
    return replace(config, settings=settings)
