"""What every entity handler shares: the configuration with what is derived from it once,
the accounts table, the recorder of facts and the clock; and the small protocols between
the domain core and whatever runs it (state, recorder, effects).

State is a key-value view owned by one partition: leads by lead id, visitors by
`v:<anonymous_id>`, queue desks (with their waiting lines and timers) by `q:<queue>`, open
SLA timers by `s:<lead_id>`. Values
are plain dicts: they are the state changelog's versioned format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from topics.messages import Message
from topics.public import RoutedLead
from workers.core import enrich
from workers.settings import Config

VISITOR = "v:"
QUEUE_DESK = "q:"
SLA_TIMER = "s:"


def visitor_key(anonymous_id: str) -> str:
    return VISITOR + anonymous_id


def queue_desk_key(queue: str) -> str:
    return QUEUE_DESK + queue


def sla_key(lead_id: str) -> str:
    return SLA_TIMER + lead_id


class State(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...
    def put(self, key: str, value: dict[str, Any]) -> None: ...
    def delete(self, key: str) -> None: ...


class Recorder(Protocol):
    """The facts the core reports; the runtime turns them into Prometheus metrics."""

    def accepted(self, channel: str) -> None: ...
    def duplicate(self, channel: str) -> None: ...
    def invalid(self, topic: str, reason: str) -> None: ...
    def generated(self, channel: str, source: str) -> None: ...
    def scored(self, total: float) -> None: ...
    def disqualified(self, reason: str) -> None: ...
    def routed(self, queue: str, rule: str, grade: str, latency: float) -> None: ...
    def unassigned(self, queue: str, reason: str) -> None: ...
    def activity(self, kind: str, outcome: str) -> None: ...
    def speed_to_lead(self, queue: str, seconds: float) -> None: ...
    def conversion(self, queue: str, source: str, outcome: str, seconds: float) -> None: ...
    def sla_breach(self, queue: str) -> None: ...
    def waited(self, queue: str, seconds: float) -> None: ...
    def reassigned(self, queue: str, action: str, outcome: str) -> None: ...
    def erasure(self) -> None: ...
    def expired(self, kind: str) -> None: ...
    def erased_event(self, channel: str) -> None: ...


@dataclass(slots=True)
class Effects:
    """What a handler asks of the runtime: `internal` (key, message) for the key's owner,
    `published` (queue, RoutedLead) for sales, `timers` (due, key): a lead's SLA by its
    lead id, a queue desk's hand-out by `q:<queue>`."""

    internal: list[tuple[str, Message]] = field(default_factory=list)
    published: list[tuple[str, RoutedLead]] = field(default_factory=list)
    timers: list[tuple[float, str]] = field(default_factory=list)


class Context:
    """The configuration and what is derived from it once, the accounts, facts and clock."""

    def __init__(
        self,
        config: Config,
        accounts: enrich.AccountBook,
        recorder: Recorder,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.settings = config.settings
        self.scoring = config.scoring
        self.routing = config.routing
        self.accounts = accounts
        self.recorder = recorder
        self.clock = clock
        self.seniority = enrich.SeniorityMatcher(config.scoring.seniority_keywords)
        settings = config.settings
        self.fast_forms = frozenset(settings.fast_lane_forms)
        self.fast_email = frozenset(settings.fast_lane_email_types)
        self.competitors = frozenset(d.lower() for d in settings.competitor_domains)
        self.consent_countries = frozenset(settings.consent.required_countries)
        days = settings.personal_data.expire_after_days
        self.expire_after = days * 86400.0 if days else None  # seconds; None: kept
        self.owner_queue: dict[str, str] = {}
        for name, queue in config.routing.queues.items():
            for rep in queue.reps:
                self.owner_queue.setdefault(rep, name)

    def account(self, lead: dict[str, Any]) -> dict[str, Any]:
        """The lead's matched account, or an empty dict."""
        domain = lead.get("account_domain")
        return (self.accounts.by_domain.get(domain) if domain else None) or {}


def fingerprint(event_id: str) -> str:
    """A short fixed-size fingerprint of an event id: a lead's dedupe memory stays small."""
    return hashlib.blake2b(event_id.encode(), digest_size=5).hexdigest()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def source_label(source: dict[str, Any] | None) -> str:
    """The bounded `source` metric label of a first touch."""
    if not source:
        return "direct"
    return (source.get("utm_source") or "direct").lower()
