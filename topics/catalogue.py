"""The topic catalogue: every topic leadrouter reads or writes, with its shape on the broker.

`leadrouter topics apply` creates these; `topics check` compares the broker against them.
Names are the public contract of DESIGN.md; a configurable prefix goes in front of each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from topics.contracts import AD_CLICK, EMAIL_EVENT, FORM_FILL, SALES_ACTIVITY

FORM_FILLS = "marketing.form-fills"
EMAIL_EVENTS = "marketing.email-events"
AD_CLICKS = "marketing.ad-clicks"
SALES_ACTIVITIES = "sales.activities"
ACCOUNTS = "reference.accounts"
# Published configuration versions, keyed by version; one partition keeps them in order.
CONFIG = "reference.config"
# Erasure requests (`leadrouter forget`), keyed by lead id: {"format": 1, "lead_id",
# "requested_at" (epoch seconds), "reason"}. Compacted: the one-way fingerprint and the time
# are kept, so that history read later (replay, explain, report) leaves the person out.
ERASURES = "privacy.erasures"
DEADLETTER = "leads.deadletter"
ROUTED_PREFIX = "leads.routed."
# Internal: records re-keyed by lead, visitor or queue so that each key's state has one owner.
INTERNAL = "leadrouter.internal"
CHANGELOG = "leadrouter.state-changelog"

# What each input topic carries, so the ingest stage knows which contract applies.
INPUT_KINDS: dict[str, str] = {
    FORM_FILLS: FORM_FILL,
    EMAIL_EVENTS: EMAIL_EVENT,
    AD_CLICKS: AD_CLICK,
    SALES_ACTIVITIES: SALES_ACTIVITY,
}

DAY_MS = 24 * 3600 * 1000
WEEK_MS = 7 * DAY_MS


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    public: bool = True


def routed_topic(queue: str) -> str:
    return f"{ROUTED_PREFIX}{queue}"


def catalogue(
    queues: Iterable[str], *, prefix: str = "", partitions: int = 6, replication_factor: int = 1
) -> list[TopicSpec]:
    """Every topic with its partitions and configs; internal ones share the input partitioning."""

    def spec(name: str, config: dict[str, str], public: bool = True) -> TopicSpec:
        return TopicSpec(prefix + name, partitions, replication_factor, config, public)

    retained = {"cleanup.policy": "delete", "retention.ms": str(WEEK_MS)}
    specs = [
        spec(FORM_FILLS, retained),
        spec(EMAIL_EVENTS, retained),
        spec(AD_CLICKS, retained),
        spec(SALES_ACTIVITIES, retained),
        spec(ACCOUNTS, {"cleanup.policy": "compact"}),
        TopicSpec(prefix + CONFIG, 1, replication_factor, {"cleanup.policy": "compact"}),
        spec(ERASURES, {"cleanup.policy": "compact"}),
        spec(DEADLETTER, {"cleanup.policy": "delete", "retention.ms": str(4 * WEEK_MS)}),
    ]
    specs += [spec(routed_topic(q), retained) for q in queues]
    specs += [
        spec(INTERNAL, {"cleanup.policy": "delete", "retention.ms": str(WEEK_MS)}, public=False),
        # An erased or expired person's earlier values are compacted away within a day.
        spec(
            CHANGELOG,
            {"cleanup.policy": "compact", "max.compaction.lag.ms": str(DAY_MS)},
            public=False,
        ),
    ]
    return specs
