"""`leadrouter report`: lead quality and speed by source, campaign, grade, score band and
queue, from the topics' history, so marketing and sales argue over the same numbers.

Routed leads (the first `lead.assigned` of each lead in the stretch) are joined with what
sales did with them (`sales.activities`):

- speed to lead: routed_at to the first `contacted` or `meeting_booked` (its occurred_at),
  as the worker's `leadrouter_speed_to_lead_seconds` measures it (never negative);
- an SLA breach: no first contact by `sla_due_at`, judged at the report's end (`--until`,
  or now): a lead whose SLA is not yet due and is still waiting is not a breach;
- opportunities: leads with `opportunity_created` or `won`; won: leads with `won`;
- conversion rate: opportunities / leads; win rate: won / leads;
- percentiles are nearest-rank (p50 of 1, 2, 3, 4 s is 2 s).

Erased people (`leadrouter forget`, workers/erasures.py) are left out: a routed record whose
`routed_at` (the routing's time, which its hand-outs, reassignments and activities keep), or a
sales activity whose `occurred_at`, is at or before the lead's erasure is not counted
anywhere; `erased_leads_left_out` counts the erased leads with a record left out. A lead
routed again after its erasure (the person filled in a form later) is a new lead and counts.

Broken records in history (not JSON, a field missing, a time that does not parse, a value
out of the vocabulary) are counted by reason and topic, never fatal: a report on a week of
traffic should not die on one bad record a sales tool wrote.

The aggregation (`Collector`) is plain code over bytes, tested by hand-built records; the
reading is `workers.history`. Nothing at the top imports a Kafka client.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from topics import catalogue as cat
from topics.vocabulary import ACTIVITY_TYPES, FIRST_CONTACT, LEAD_ASSIGNED, ROUTED_EVENTS
from workers.history import moment_text, record_time
from workers.settings import Config

if TYPE_CHECKING:
    from workers.erasures import Erasure

BAND_WIDTH = 10.0
GRADES = ("A", "B", "C", "D")
# Metric keys of every row, in the order the tables show them.
METRICS = (
    "leads",
    "contacted",
    "contacted_share",
    "speed_to_lead_p50_s",
    "speed_to_lead_p90_s",
    "sla_breaches",
    "reassigned",
    "opportunities",
    "won",
    "conversion_rate",
    "win_rate",
)
DIMENSIONS = ("source", "channel", "campaign", "grade", "score_band", "queue")


class EmptyStretch(ValueError):
    """Nothing on the topics between the two times: most likely a mistake in the times."""


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of `values` (sorted or not); None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def band_of(total: float, width: float = BAND_WIDTH) -> int:
    """The number of the score band holding `total`: band n is [n x width, (n+1) x width)."""
    return math.floor(total / width)


def band_label(low: float, width: float = BAND_WIDTH) -> str:
    return f"{low:g}-{low + width:g}"


def iso(moment: float | None) -> str | None:
    return moment_text(moment) if moment is not None else None


@dataclass(slots=True)
class Lead:
    """A routed lead as the report sees it: its first assignment."""

    queue: str
    rep_id: str | None
    source: str
    channel: str
    campaign: str
    grade: str
    score: float
    routed_at: float
    sla_due_at: float | None
    reassigned: bool = False


@dataclass(slots=True)
class Outcome:
    """What sales did with a lead, folded as activities arrive (in any order)."""

    first_contact_at: float | None = None
    opportunity: bool = False
    won: bool = False


class Malformed(Exception):
    """A record the report cannot use, with a stable reason code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _object(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise Malformed("empty_value")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Malformed("invalid_json") from None
    if not isinstance(value, dict):
        raise Malformed("not_an_object")
    return value


def _text(value: dict[str, Any], name: str) -> str:
    found = value.get(name)
    if found is None or found == "":
        raise Malformed("missing_field")
    if not isinstance(found, str):
        raise Malformed("invalid_type")
    return found


def _label(value: Any, default: str) -> str:
    return value.strip().lower() if isinstance(value, str) and value.strip() else default


@dataclass
class Collector:
    """Folds routed leads and sales activities into per-lead facts; `report()` aggregates.

    Activities are kept per lead whether or not the lead's assignment has been seen yet, so
    the join does not depend on the order the two topics are read in. Records of an erased
    lead from before its erasure are left out (`erased` keeps which leads had some)."""

    mql_threshold: float
    band_width: float = BAND_WIDTH
    erasures: Mapping[str, Erasure] = field(default_factory=dict)
    erased: set[str] = field(default_factory=set)
    leads: dict[str, Lead] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    reassigned: set[str] = field(default_factory=set)
    records: Counter[str] = field(default_factory=Counter)  # per topic kind
    events: Counter[str] = field(default_factory=Counter)  # routed events by type
    repeated_assignments: int = 0
    malformed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (topic, reason)

    def add_routed(
        self, raw: bytes | None, topic: str = "leads.routed", stamp: float | None = None
    ) -> None:
        """One routed record; `stamp` (the record's time) places it when it has no
        `routed_at`, for the erasures."""
        self.records[topic] += 1
        try:
            self._routed(_object(raw), stamp)
        except Malformed as bad:
            self.malformed[(topic, bad.reason)] += 1

    def add_activity(self, raw: bytes | None, topic: str = cat.SALES_ACTIVITIES) -> None:
        self.records[topic] += 1
        try:
            self._activity(_object(raw))
        except Malformed as bad:
            self.malformed[(topic, bad.reason)] += 1

    def _routed(self, value: dict[str, Any], stamp: float | None = None) -> None:
        event = _text(value, "event")
        if event not in ROUTED_EVENTS:
            raise Malformed("invalid_value")
        lead_id = _text(value, "lead_id")
        erasure = self.erasures.get(lead_id) if self.erasures else None
        if erasure is not None:
            at = record_time(value.get("routed_at"))
            at = stamp if at is None else at
            if at is None or erasure.covers(at):  # no time at all: left out too
                self.erased.add(lead_id)
                return
        if event != LEAD_ASSIGNED:
            self.events[event] += 1
            if event == "lead.reassigned":
                self.reassigned.add(lead_id)
            return
        queue = _text(value, "queue")
        routed_at = record_time(_text(value, "routed_at"))
        if routed_at is None:
            raise Malformed("invalid_time")
        score = value.get("score")
        if not isinstance(score, dict) or score.get("total") is None:
            raise Malformed("missing_field")
        total = score["total"]
        if not isinstance(total, int | float) or isinstance(total, bool):
            raise Malformed("invalid_type")
        if not math.isfinite(total):
            raise Malformed("invalid_value")
        due_text = value.get("sla_due_at")
        due = record_time(due_text)
        if due_text is not None and due is None:
            raise Malformed("invalid_time")
        self.events[event] += 1
        if lead_id in self.leads:
            self.repeated_assignments += 1  # a re-send, or routed again after recycling
            return
        source = value.get("source") if isinstance(value.get("source"), dict) else {}
        self.leads[lead_id] = Lead(
            queue=queue,
            rep_id=value.get("rep_id") if isinstance(value.get("rep_id"), str) else None,
            source=_label(source.get("utm_source"), "direct"),
            channel=_label(source.get("channel"), "unknown"),
            campaign=_label(source.get("utm_campaign"), "(none)"),
            grade=score.get("grade") if score.get("grade") in GRADES else "?",
            score=float(total),
            routed_at=routed_at,
            sla_due_at=due,
        )

    def _activity(self, value: dict[str, Any]) -> None:
        lead_id = _text(value, "lead_id")
        kind = _text(value, "type")
        if kind not in ACTIVITY_TYPES:
            raise Malformed("invalid_value")
        at = record_time(_text(value, "occurred_at"))
        if at is None:
            raise Malformed("invalid_time")
        erasure = self.erasures.get(lead_id) if self.erasures else None
        if erasure is not None and erasure.covers(at):
            self.erased.add(lead_id)
            return
        outcome = self.outcomes.get(lead_id)
        if outcome is None:
            outcome = self.outcomes[lead_id] = Outcome()
        if kind in FIRST_CONTACT and (
            outcome.first_contact_at is None or at < outcome.first_contact_at
        ):
            outcome.first_contact_at = at
        if kind in ("opportunity_created", "won"):
            outcome.opportunity = True
        if kind == "won":
            outcome.won = True

    def report(self, *, since: float, until: float | None, judged_at: float) -> dict[str, Any]:
        """The report as JSON-ready data (keys documented in README, "Lead quality")."""
        groups: dict[str, dict[Any, _Group]] = {d: {} for d in DIMENSIONS}
        everything = _Group()
        matched = 0
        counted = 0
        for lead_id, lead in self.leads.items():
            if lead.routed_at < since:  # handed out in the stretch, routed before it
                continue
            counted += 1
            outcome = self.outcomes.get(lead_id)
            matched += outcome is not None
            keys = {
                "source": lead.source,
                "channel": lead.channel,
                "campaign": (lead.source, lead.campaign),
                "grade": lead.grade,
                "score_band": band_of(lead.score, self.band_width),
                "queue": lead.queue,
            }
            fact = _fact(lead, outcome, lead_id in self.reassigned, judged_at)
            everything.add(fact)
            for dimension, key in keys.items():
                group = groups[dimension].get(key)
                if group is None:
                    group = groups[dimension][key] = _Group()
                group.add(fact)
        unmatched = sum(1 for lead_id in self.outcomes if lead_id not in self.leads)
        malformed_by_reason: Counter[str] = Counter()
        malformed_by_topic: dict[str, dict[str, int]] = {}
        for (topic, reason), n in sorted(self.malformed.items()):
            malformed_by_reason[reason] += n
            malformed_by_topic.setdefault(topic, {})[reason] = n
        return {
            "since": iso(since),
            "until": iso(until),
            "judged_at": iso(judged_at),
            "events": sum(self.records.values()),
            "records": dict(sorted(self.records.items())),
            "routed_events": dict(sorted(self.events.items())),
            "leads": counted,
            "repeated_assignments": self.repeated_assignments,
            "erased_leads_left_out": len(self.erased),
            "activities": {
                "leads_with_activity": matched,
                "unmatched_leads": unmatched,
            },
            "mql_threshold": self.mql_threshold,
            "band_width": self.band_width,
            "totals": everything.metrics(),
            "by_source": _rows(groups["source"], "source"),
            "by_channel": _rows(groups["channel"], "channel"),
            "by_campaign": [
                {"source": key[0], "campaign": key[1], **group.metrics()}
                for key, group in sorted(
                    groups["campaign"].items(), key=lambda kv: (-kv[1].leads, kv[0])
                )
            ],
            "by_grade": [
                {"grade": g, **groups["grade"][g].metrics()}
                for g in (*GRADES, "?")
                if g in groups["grade"]
            ],
            "by_score_band": self._bands(groups["score_band"]),
            "by_queue": _rows(groups["queue"], "queue"),
            "malformed": {
                "total": sum(self.malformed.values()),
                "by_reason": dict(malformed_by_reason),
                "by_topic": malformed_by_topic,
            },
        }

    def _bands(self, groups: dict[Any, _Group]) -> list[dict[str, Any]]:
        """Every band from the lowest to the highest seen (empty ones too, so a chart's
        axis is even), each marked where the MQL threshold falls."""
        if not groups:
            return []
        width = self.band_width
        rows = []
        for n in range(min(groups), max(groups) + 1):
            edge = n * width
            group = groups.get(n) or _Group()
            rows.append(
                {
                    "band": band_label(edge, width),
                    "low": edge,
                    "high": edge + width,
                    "mql_threshold_in_band": edge <= self.mql_threshold < edge + width,
                    "above_mql": edge >= self.mql_threshold,
                    **group.metrics(),
                }
            )
        return rows


@dataclass(slots=True)
class _Fact:
    speed: float | None
    contacted: bool
    breached: bool
    reassigned: bool
    opportunity: bool
    won: bool


def _fact(lead: Lead, outcome: Outcome | None, reassigned: bool, judged_at: float) -> _Fact:
    first = outcome.first_contact_at if outcome is not None else None
    if first is not None and first > judged_at:
        first = None  # contact after the report's end is not yet known at its end
    due = lead.sla_due_at
    breached = due is not None and due <= judged_at and (first is None or first > due)
    return _Fact(
        speed=max(0.0, first - lead.routed_at) if first is not None else None,
        contacted=first is not None,
        breached=breached,
        reassigned=reassigned,
        opportunity=outcome is not None and outcome.opportunity,
        won=outcome is not None and outcome.won,
    )


class _Group:
    __slots__ = (
        "breaches",
        "contacted",
        "leads",
        "opportunities",
        "reassigned",
        "speeds",
        "won",
    )

    def __init__(self) -> None:
        self.leads = self.contacted = self.breaches = self.reassigned = 0
        self.opportunities = self.won = 0
        self.speeds: list[float] = []

    def add(self, fact: _Fact) -> None:
        self.leads += 1
        self.contacted += fact.contacted
        if fact.speed is not None:
            self.speeds.append(fact.speed)
        self.breaches += fact.breached
        self.reassigned += fact.reassigned
        self.opportunities += fact.opportunity
        self.won += fact.won

    def metrics(self) -> dict[str, Any]:
        def share(n: int) -> float | None:
            return round(n / self.leads, 4) if self.leads else None

        def seconds(p: float) -> float | None:
            found = percentile(self.speeds, p)
            return round(found, 3) if found is not None else None

        return {
            "leads": self.leads,
            "contacted": self.contacted,
            "contacted_share": share(self.contacted),
            "speed_to_lead_p50_s": seconds(50),
            "speed_to_lead_p90_s": seconds(90),
            "sla_breaches": self.breaches,
            "reassigned": self.reassigned,
            "opportunities": self.opportunities,
            "won": self.won,
            "conversion_rate": share(self.opportunities),
            "win_rate": share(self.won),
        }


def _rows(groups: dict[Any, _Group], name: str) -> list[dict[str, Any]]:
    """Rows by leads, most first (ties by name)."""
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1].leads, str(kv[0])))
    return [{name: key, **group.metrics()} for key, group in ordered]


# --------------------------------------------------------------------------- reading
def topics_for(config: Config) -> list[str]:
    """Every routed topic of the configured queues and `sales.activities` (full names)."""
    prefix = config.settings.kafka.topic_prefix
    return [prefix + cat.routed_topic(q) for q in config.routing.queues] + [
        prefix + cat.SALES_ACTIVITIES
    ]


def collect(
    config: Config, records: Iterable[Any], erasures: Mapping[str, Erasure] | None = None
) -> Collector:
    """Fold history records (confluent_kafka Messages or alike) into a Collector, leaving
    out what `erasures` (lead id -> Erasure, workers.erasures.read_erasures) covers."""
    prefix = config.settings.kafka.topic_prefix
    cut = len(prefix)
    sales = prefix + cat.SALES_ACTIVITIES
    collector = Collector(mql_threshold=config.scoring.mql_threshold, erasures=erasures or {})
    add_routed, add_activity = collector.add_routed, collector.add_activity
    for msg in records:
        topic = msg.topic()
        if topic == sales:
            add_activity(msg.value(), cat.SALES_ACTIVITIES)
        else:
            add_routed(msg.value(), topic[cut:], msg.timestamp()[1] / 1000)
    return collector


def build(
    config: Config, since: float, until: float | None, *, progress: bool = False
) -> dict[str, Any]:
    """Plan, read and aggregate, erased people left out. Raises history.UnknownTopic, or
    EmptyStretch when there is nothing on the topics in the stretch."""
    from workers import history
    from workers.erasures import read_erasures

    topics = topics_for(config)
    judged_at = until if until is not None else time.time()
    plan = history.plan(config.settings, topics, since, until)
    if plan.empty:
        raise EmptyStretch(
            f"nothing on the routed topics or {cat.SALES_ACTIVITIES} between {iso(since)} and "
            f"{iso(until) if until is not None else 'now'}: check --since/--until "
            "(and the topic prefix)"
        )
    erasures = read_erasures(config.settings)
    records = history.read(config.settings, plan, progress=progress)
    collector = collect(config, records, erasures)
    return collector.report(since=since, until=until, judged_at=judged_at)


# --------------------------------------------------------------------------- terminal
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    from workers.explain import duration

    return duration(value)


def render_terminal(report: dict[str, Any], console: Any = None) -> None:
    """The report as rich tables (one per view) on `console` (stdout by default)."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console(width=None if Console().is_terminal else 140)
    malformed = report["malformed"]
    console.print(
        f"[bold]Lead quality[/bold] {report['since']} to {report['until'] or 'now'} "
        f"(SLAs judged at {report['judged_at']}): {report['leads']} leads routed, "
        f"{report['events']} records read"
        + (
            f", {malformed['total']} malformed ("
            + ", ".join(f"{r} {n}" for r, n in malformed["by_reason"].items())
            + ")"
            if malformed["total"]
            else ""
        )
        + (
            f", {report['erased_leads_left_out']} erased leads left out"
            if report.get("erased_leads_left_out")
            else ""
        ),
        highlight=False,
    )
    views = (
        ("by_source", "Source", "source"),
        ("by_campaign", "Source / campaign", "campaign"),
        ("by_channel", "Channel", "channel"),
        ("by_grade", "Grade", "grade"),
        ("by_score_band", "Score band", "band"),
        ("by_queue", "Queue", "queue"),
    )
    for key, title, name in (("totals", "All leads", None), *views):
        rows = [report["totals"]] if key == "totals" else report[key]
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        table.add_column(title if name else "", no_wrap=True)
        for header in (
            "Leads",
            "Contacted",
            "STL p50",
            "STL p90",
            "SLA breaches",
            "Opps",
            "Won",
            "Conversion",
            "Win rate",
        ):
            table.add_column(header, justify="right", no_wrap=True)
        for row in rows:
            label = "all" if name is None else str(row.get(name))
            if name == "campaign":
                label = f"{row['source']} / {row['campaign']}"
            if name == "band" and row["mql_threshold_in_band"]:
                label += f" ◀ MQL {report['mql_threshold']:g}"
            table.add_row(
                label,
                str(row["leads"]),
                _pct(row["contacted_share"]),
                _secs(row["speed_to_lead_p50_s"]),
                _secs(row["speed_to_lead_p90_s"]),
                str(row["sla_breaches"]),
                str(row["opportunities"]),
                str(row["won"]),
                _pct(row["conversion_rate"]),
                _pct(row["win_rate"]),
            )
        console.print()
        console.print(table)
