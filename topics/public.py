"""The public contract as types: what every public topic's value holds (DESIGN.md).

Declared once here; the JSON Schemas in `topics/schemas/` are generated from these types
(`python -m topics.schemas`), and the Faust `Record` models in `topics/records.py` follow
them. Input types describe what a valid record holds after validation; the worker checks
raw records itself (`topics.contracts.parse`, stable reason codes). `RoutedLead` is what the
worker builds and publishes: `encode_routed` is its only encoder. No Kafka import here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from topics import catalogue as cat
from topics.vocabulary import ACTIVITY_TYPES, AD_PLATFORMS, EMAIL_TYPES, ROUTED_EVENTS

EmailType = Literal[EMAIL_TYPES]  # type: ignore[valid-type]
AdPlatform = Literal[AD_PLATFORMS]  # type: ignore[valid-type]
ActivityType = Literal[ACTIVITY_TYPES]  # type: ignore[valid-type]
RoutedEvent = Literal[ROUTED_EVENTS]  # type: ignore[valid-type]
Channel = Literal["form", "email", "ad"]
Grade = Literal["A", "B", "C", "D"]


# ------------------------------------------------------------------ inputs
@dataclass(kw_only=True)
class Utm:
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    term: str | None = None
    content: str | None = None


@dataclass(kw_only=True)
class Consent:
    marketing: bool | None = None


@dataclass(kw_only=True)
class FormFill:
    """`marketing.form-fills`: a person filled a form. Unknown extra fields are ignored."""

    event_id: str
    occurred_at: str = field(metadata={"format": "date-time"})
    email: str = field(metadata={"format": "email"})
    form_id: str
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    job_title: str | None = None
    phone: str | None = None
    country: str | None = field(default=None, metadata={"pattern": "^[A-Za-z]{2}$"})
    employees: int | None = None
    anonymous_id: str | None = None
    page_url: str | None = None
    utm: Utm | None = None
    consent: Consent | None = None


@dataclass(kw_only=True)
class EmailEvent:
    """`marketing.email-events`: what a person did with a marketing e-mail."""

    event_id: str
    occurred_at: str = field(metadata={"format": "date-time"})
    email: str = field(metadata={"format": "email"})
    type: EmailType
    campaign: str | None = None
    url: str | None = None


@dataclass(kw_only=True)
class AdClick:
    """`marketing.ad-clicks`: without `email` it is anonymous, kept by `anonymous_id`."""

    event_id: str
    occurred_at: str = field(metadata={"format": "date-time"})
    platform: AdPlatform
    click_id: str
    campaign: str | None = None
    ad_group: str | None = None
    keyword: str | None = None
    cost_micros: int | None = None
    anonymous_id: str | None = None
    email: str | None = field(default=None, metadata={"format": "email"})
    landing_url: str | None = None


@dataclass(kw_only=True)
class SalesActivity:
    """`sales.activities`, keyed by `lead_id`: what a sales tool did with a routed lead."""

    event_id: str
    occurred_at: str = field(metadata={"format": "date-time"})
    lead_id: str
    type: ActivityType
    rep_id: str | None = None
    reason: str | None = None


@dataclass(kw_only=True)
class Account:
    """`reference.accounts` (compacted, keyed by domain; a null value deletes)."""

    domain: str | None = None
    name: str | None = None
    employees: int | None = None
    industry: str | None = None
    country: str | None = None
    owner: str | None = None


# ------------------------------------------------------------------ output
@dataclass(slots=True)
class Company:
    domain: str | None
    name: str | None
    employees: int | None
    industry: str | None
    country: str | None


@dataclass(slots=True)
class Score:
    """Total, its two parts and grade; `contributions` explain each point."""

    total: float
    fit: float
    engagement: float
    grade: Grade
    contributions: list[dict[str, Any]]


@dataclass(slots=True)
class Reason:
    """Why the lead went where it went: the rule, the assignment strategy and each step."""

    rule: str | None
    assignment: str | None
    trace: list[str]
    # The configuration version that decided it (`config publish`; the content hash of the
    # local files when none is published). Set on every published record.
    config_version: str | None = None


@dataclass(slots=True)
class Source:
    """The lead's first touch (first-touch attribution)."""

    channel: Channel | None
    platform: str | None
    utm_source: str | None
    utm_campaign: str | None


@dataclass(slots=True)
class Activity:
    """On `lead.activity`: the touch that reached a lead already routed."""

    channel: Channel
    type: str
    occurred_at: str = field(metadata={"format": "date-time"})


@dataclass(slots=True)
class RoutedLead:
    """`leads.routed.<queue>`, keyed by `lead_id`; the `event` header repeats `event`."""

    event: RoutedEvent
    lead_id: str
    queue: str
    rep_id: str | None
    email: str | None = field(metadata={"format": "email"})
    name: str | None
    phone: str | None
    job_title: str | None
    seniority: str | None
    region: str | None
    company: Company
    score: Score
    reason: Reason
    source: Source
    trigger_event_id: str
    generated_at: str | None = field(metadata={"format": "date-time"})
    routed_at: str | None = field(metadata={"format": "date-time"})
    sla_due_at: str | None = field(metadata={"format": "date-time"})
    activity: Activity | None = None
    previous_rep_id: str | None = None


def encode_routed(lead: RoutedLead) -> bytes:
    """The record value on `leads.routed.<queue>`: JSON, `activity` only on `lead.activity`
    and `previous_rep_id` only on `lead.reassigned` (both last, so one cut drops them)."""
    out = orjson.dumps(lead)
    if lead.previous_rep_id is None:
        if lead.activity is None:
            return out[: out.rfind(b',"activity":null')] + b"}"
        return out[: out.rfind(b',"previous_rep_id":null')] + b"}"
    if lead.activity is None:
        cut = out.rfind(b',"activity":null')
        return out[:cut] + out[cut + len(b',"activity":null') :]
    return out


PUBLIC_VALUES: dict[str, type] = {
    cat.FORM_FILLS: FormFill,
    cat.EMAIL_EVENTS: EmailEvent,
    cat.AD_CLICKS: AdClick,
    cat.SALES_ACTIVITIES: SalesActivity,
    cat.ACCOUNTS: Account,
    cat.routed_topic("<queue>"): RoutedLead,
}
