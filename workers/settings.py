"""Configuration: four YAML files in one directory, validated into typed objects at start.

Errors name the file, the path inside it and the problem, so a bad deploy fails loudly
before it touches a single lead. YAML is read with the safe loader only: no tag in a
config file can construct an object, and nothing in config is evaluated as code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


class Settings(Strict):
    kafka: KafkaSettings = KafkaSettings()
    metrics: MetricsSettings = MetricsSettings()
    ingest: IngestSettings = IngestSettings()
    store: StoreSettings = StoreSettings()
    consent: ConsentSettings = ConsentSettings()
    regions: RegionSettings = RegionSettings()
    competitor_domains: tuple[str, ...] = ()
    fast_lane_forms: tuple[str, ...] = ("demo-request", "contact-sales")
    fast_lane_email_types: tuple[str, ...] = ("reply",)
    recycle_after_days: float = Field(30, ge=0)
    dedupe_window: int = Field(32, ge=1, le=10000)
    instance_id: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


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
            raise ValueError("grade thresholds must satisfy A >= B >= C")
        return self


class Scoring(Strict):
    mql_threshold: float
    grades: Grades
    fit: FitRules
    engagement: EngagementRules
    seniority_keywords: dict[str, tuple[str, ...]] = Field(default_factory=dict)


# --------------------------------------------------------------------------- routing.yaml
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

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        field_ops = [
            k
            for k in ("eq", "in_", "not_in", "gte", "lte", "exists", "matches")
            if getattr(self, k) is not None or (k == "eq" and "eq" in self.model_fields_set)
        ]
        combinators = [k for k in ("all", "any", "not_", "always") if getattr(self, k) is not None]
        if self.field is not None:
            if combinators or len(field_ops) != 1:
                raise ValueError(
                    "a field test needs exactly one of eq, in, not_in, gte, lte, exists, matches"
                )
        elif field_ops or len(combinators) != 1:
            raise ValueError(
                "a condition needs `field` with one test, or one of all/any/not/always"
            )
        if self.matches is not None:
            if len(self.matches) > MAX_PATTERN_LENGTH:
                raise ValueError(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
            try:
                compile_pattern(self.matches)
            except Exception as exc:  # re2 raises its own error type
                raise ValueError(f"invalid pattern: {exc}") from None
        return self


class Rule(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    when: Condition
    queue: str


class Queue(Strict):
    strategy: Literal["round_robin", "weighted", "least_loaded"]
    sla_minutes: float = Field(gt=0)
    reps: tuple[str, ...] = ()


class Routing(Strict):
    account_owner_precedence: bool = True
    fairness_window_hours: float = Field(24, gt=0, le=24 * 90)
    queues: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")], Queue]
    rules: tuple[Rule, ...]
    default_queue: str


# --------------------------------------------------------------------------- reps.yaml
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class WorkingHours(Strict):
    start: time
    end: time
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = WEEKDAYS[:5]

    @model_validator(mode="after")
    def _ordered(self) -> WorkingHours:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class Absence(Strict):
    start: date = Field(alias="from")
    end: date = Field(alias="to")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


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
            raise ValueError(f"unknown time zone {value!r}") from None
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


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = {"in_": "in", "not_": "not"}.get(part, part)
            out += f".{part}" if out else part
    return out


def _read_yaml(path: Path, problems: list[ConfigProblem]) -> dict[str, Any] | None:
    if not path.is_file():
        problems.append(ConfigProblem(str(path), "", "file not found"))
        return None
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        problems.append(ConfigProblem(str(path), where, f"not valid YAML: {problem}"))
        return None
    except UnicodeDecodeError as exc:
        problems.append(ConfigProblem(str(path), "", f"not UTF-8: {exc.reason}"))
        return None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(ConfigProblem(str(path), "", "must be a mapping at the top level"))
        return None
    return data


def _validate(
    model: type[M], data: dict[str, Any], file: str, problems: list[ConfigProblem]
) -> M | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if p not in ("function-after[_one_operator()]",))
            message = err["msg"].removeprefix("Value error, ")
            problems.append(ConfigProblem(file, _format_loc(loc), message))
        return None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _routing_references(
    file: str, routing: dict[str, Any], reps: dict[str, Any]
) -> list[ConfigProblem]:
    """Names that must point somewhere: rule and default queues, queue reps, unique rules.
    Checked on the raw file so they are reported alongside any type errors."""
    out = []
    queues = _mapping(routing.get("queues"))
    default = routing.get("default_queue")
    if default is not None and default not in queues:
        out.append(
            ConfigProblem(file, "default_queue", f"default_queue {default!r} is not a queue")
        )
    seen: set[str] = set()
    rules = routing.get("rules")
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        rule = _mapping(rule)
        if "queue" in rule and rule["queue"] not in queues:
            out.append(ConfigProblem(file, f"rules[{i}].queue", f"unknown queue {rule['queue']!r}"))
        name = rule.get("name")
        if isinstance(name, str):
            if name in seen:
                out.append(ConfigProblem(file, f"rules[{i}].name", f"duplicate rule name {name!r}"))
            seen.add(name)
    if reps:
        for qname, queue in queues.items():
            members = _mapping(queue).get("reps")
            for i, rep_id in enumerate(members if isinstance(members, list) else []):
                if rep_id not in reps:
                    out.append(
                        ConfigProblem(
                            file,
                            f"queues.{qname}.reps[{i}]",
                            f"unknown rep {rep_id!r} (not in reps.yaml)",
                        )
                    )
    return out


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
    "LEADROUTER_PARTITIONS": ("kafka", "partitions"),
    "LEADROUTER_METRICS_HOST": ("metrics", "host"),
    "LEADROUTER_METRICS_PORT": ("metrics", "port"),
    "LEADROUTER_STORE": ("store", "kind"),
    "LEADROUTER_DATA_DIR": ("store", "data_dir"),
    "LEADROUTER_INSTANCE_ID": ("instance_id",),
    "LEADROUTER_LOG_LEVEL": ("log_level",),
    "LEADROUTER_BATCH_SIZE": ("ingest", "batch_size"),
}


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    for var, path in ENV_OVERRIDES.items():
        if var in env and env[var] != "":
            node = data
            for part in path[:-1]:
                node = node.setdefault(part, {}) if isinstance(node.get(part), dict | None) else {}
            node[path[-1]] = env[var]
    return data


def config_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Explicit argument, then LEADROUTER_CONFIG_DIR, then the repository's config/."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("LEADROUTER_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


def load_config(
    directory: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Load and cross-check every file; raise ConfigError listing every problem found.
    Retired keys are not problems: they are ignored and listed in `Config.warnings`."""
    base = config_dir(directory)
    env = os.environ if env is None else env
    problems: list[ConfigProblem] = []
    warnings: list[ConfigProblem] = []
    raw = {name: _read_yaml(base / name, problems) for name in CONFIG_FILES}
    if raw["settings.yaml"] is not None:
        warnings += _drop_retired(str(base / "settings.yaml"), raw["settings.yaml"])
        raw["settings.yaml"] = _apply_env(raw["settings.yaml"], env)
    models: dict[str, Any] = {}
    for name, model in zip(CONFIG_FILES, (Settings, Scoring, Routing, Reps), strict=True):
        if raw[name] is not None:
            models[name] = _validate(model, raw[name], str(base / name), problems)
    if raw["routing.yaml"] is not None:
        known_reps = _mapping(raw["reps.yaml"]).get("reps") if raw["reps.yaml"] else None
        problems += _routing_references(
            str(base / "routing.yaml"), raw["routing.yaml"], _mapping(known_reps)
        )
    scoring: Scoring | None = models.get("scoring.yaml")
    if scoring is not None:
        for level in scoring.fit.seniority:
            if level not in scoring.seniority_keywords and level != "individual":
                problems.append(
                    ConfigProblem(
                        str(base / "scoring.yaml"),
                        f"fit.seniority.{level}",
                        "level has no entry in seniority_keywords",
                    )
                )
    if problems or any(m is None for m in models.values()):
        raise ConfigError(problems)
    return Config(
        settings=models["settings.yaml"],
        scoring=models["scoring.yaml"],
        routing=models["routing.yaml"],
        reps=models["reps.yaml"],
        directory=base,
        warnings=tuple(warnings),
    )
