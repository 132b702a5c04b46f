"""`leadrouter explain EMAIL|LEAD_ID`: one lead's history as sales and marketing ops read it.

"Why did this lead go to that rep?" is answered from what the worker published, not from
its state: every `lead.assigned`, `lead.activity` and `lead.reassigned` on the routed
topics, with its decision trace, score contributions, queue, rep and times, and what sales
did with the lead (`sales.activities`), in time order. An e-mail is turned into its lead id
by the worker's own function (workers/core/identity.py), so no worker needs to run.

An erased person (`leadrouter forget`, workers/erasures.py) is not explained: the command
says when they were erased and why, and shows none of their records, not even those
published before the erasure that the routed topics keep until their retention.

Nothing at the top of this module imports a Kafka client (the CLI loads it lazily).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from topics import catalogue as cat
from topics.vocabulary import ACTIVITY_TYPES, FIRST_CONTACT
from workers.core.context import iso
from workers.core.identity import LEAD_ID, lead_id
from workers.history import moment_text, record_time
from workers.settings import Config

if TYPE_CHECKING:
    from workers.erasures import Erasure

ROUTED_KIND = "routed"
SALES_KIND = "sales"


class NotALead(ValueError):
    """The argument is neither an e-mail address nor a lead id."""


def resolve(target: str) -> tuple[str, str | None]:
    """(lead id, e-mail or None): an e-mail becomes its lead id as the worker derives it."""
    text = target.strip()
    if "@" in text:
        from topics.contracts import normalise_email

        local, _, domain = text.partition("@")
        email = normalise_email(text) if local and "." in domain else None
        if email is None:
            raise NotALead(f"{target!r} is not an e-mail address")
        return lead_id(email), email
    if LEAD_ID.fullmatch(text):
        return text, None
    raise NotALead(
        f"{target!r} is neither an e-mail address nor a lead id: give the address the lead "
        "used (jane@acme-corp.com) or its lead id (ld_ followed by 20 hex digits)"
    )


def erased_text(lead_id: str, erasure: Erasure) -> str:
    """What explain says of an erased lead, instead of anything about the person."""
    reason = erasure.reason or "no reason given"
    return (
        f"{lead_id} was erased at {moment_text(erasure.requested_at)} ({reason}): "
        "nothing of this person is shown"
    )


def topics_for(config: Config) -> tuple[list[str], str]:
    """Every routed topic of the configured queues, and the sales activities topic (full
    names, with the configured prefix)."""
    prefix = config.settings.kafka.topic_prefix
    routed = [prefix + cat.routed_topic(q) for q in config.routing.queues]
    return routed, prefix + cat.SALES_ACTIVITIES


@dataclass
class Entry:
    """One thing that happened to the lead: a record of a routed topic or of sales."""

    at: float  # routed_at; a lead.activity's publication; a sales activity's occurred_at
    topic: str
    kind: str  # ROUTED_KIND or SALES_KIND
    value: dict[str, Any]


@dataclass
class History:
    lead_id: str
    email: str | None
    entries: list[Entry] = field(default_factory=list)
    records_read: int = 0
    malformed: int = 0  # this lead's records that could not be read as JSON objects

    @property
    def routed(self) -> list[Entry]:
        return [e for e in self.entries if e.kind == ROUTED_KIND]


def collect(lead_id: str, email: str | None, records: Iterable[Any], sales_topic: str) -> History:
    """The lead's records among `records` (confluent_kafka Messages, or anything with
    topic(), key(), value(), timestamp()), in the order they happened."""
    history = History(lead_id, email)
    needle = lead_id.encode()
    order: list[tuple[float, int, Entry]] = []
    for n, msg in enumerate(records):
        history.records_read += 1
        raw = msg.value()
        if raw is None or needle not in raw:
            continue  # cheap: most records are other leads'
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if msg.key() == needle:
                history.malformed += 1
            continue
        if not isinstance(value, dict) or value.get("lead_id") != lead_id:
            if msg.key() == needle:
                history.malformed += 1
            continue
        stamp = msg.timestamp()[1] / 1000
        if msg.topic() == sales_topic:
            at = record_time(value.get("occurred_at")) or stamp
            kind = SALES_KIND
        else:
            kind = ROUTED_KIND
            # An activity is placed when it was passed on to the rep (the record's time):
            # touches held while the lead waited for its rep happened before the routing.
            # A hand-out from a waiting line and a reassignment keep the routing's
            # `routed_at`: they too are placed when they were published.
            at = stamp
            trace = (value.get("reason") or {}).get("trace") or [""]
            later = value.get("event") != "lead.assigned" or str(trace[0]).startswith("given to ")
            if not later:
                at = record_time(value.get("routed_at")) or stamp
            if history.email is None and isinstance(value.get("email"), str):
                history.email = value["email"]
        order.append((at, n, Entry(at, msg.topic(), kind, value)))
    history.entries = [entry for _, _, entry in sorted(order, key=lambda t: (t[0], t[1]))]
    return history


def _iso(moment: float | None) -> str:
    return moment_text(moment) if moment is not None else "-"


def duration(seconds: float) -> str:
    """A span as a person says it: 45s, 12m 5s, 3h 20m, 2d 4h."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def _points(value: Any) -> str:
    return f"{value:+g}" if isinstance(value, int | float) else str(value)


def _contribution(c: Any) -> str:
    if not isinstance(c, dict):
        return str(c)
    points = _points(c.get("points"))
    rest = {k: v for k, v in c.items() if k not in ("points", "factor", "value")}
    what = str(c.get("factor", "?"))
    if c.get("value") is not None:
        what += f" = {c['value']}"
    extra = "".join(f", {k} {v}" for k, v in rest.items())
    return f"{points:>7}  {what}{extra}"


def render_text(history: History) -> str:
    """The lead's history for a terminal."""
    lines: list[str] = []
    first = history.routed[0].value if history.routed else {}
    company = first.get("company") or {}
    who = ", ".join(
        part
        for part in (
            first.get("name"),
            company.get("name") or company.get("domain"),
            f"{company['employees']} employees" if company.get("employees") else None,
        )
        if part
    )
    lines.append(f"lead {history.lead_id}  {history.email or ''}".rstrip())
    if who:
        lines.append(f"  {who}")
    routed_at: float | None = None
    first_contact_done = False
    for entry in history.entries:
        v = entry.value
        if entry.kind == SALES_KIND:
            by = f" by {v['rep_id']}" if v.get("rep_id") else ""
            after = ""
            if routed_at is not None:
                after = f"  ({duration(entry.at - routed_at)} after routing"
                if v.get("type") in FIRST_CONTACT and not first_contact_done:
                    after += ": speed to lead"
                    first_contact_done = True
                after += ")"
            reason = f", reason {v['reason']}" if v.get("reason") else ""
            if v.get("type") not in ACTIVITY_TYPES:
                after += "  (not an activity type the worker knows: dead-lettered)"
            lines.append(f"{_iso(entry.at)}  sales {v.get('type')}{by}{reason}{after}")
            continue
        event = v.get("event", "?")
        rep = v.get("rep_id") or "unassigned"
        if event == "lead.reassigned":
            head = f"{v.get('queue')}: {rep} (was {v.get('previous_rep_id') or 'unassigned'})"
        else:
            head = f"{v.get('queue')} -> {rep}"
        lines.append(f"{_iso(entry.at)}  {event}  {head}")
        if event == "lead.activity":
            act = v.get("activity") or {}
            touched = _iso(record_time(act.get("occurred_at")))
            lines.append(f"    touch {act.get('channel')} {act.get('type')} at {touched}")
            continue
        if event == "lead.assigned" and routed_at is None:
            routed_at = entry.at
        reason = v.get("reason") or {}
        sla_due = record_time(v.get("sla_due_at"))
        lines.append(
            f"    rule {reason.get('rule') or '-'}, assignment {reason.get('assignment') or '-'}"
            f", SLA due {_iso(sla_due)}"
            + (f", config {reason['config_version']}" if reason.get("config_version") else "")
        )
        source = v.get("source") or {}
        origin = " / ".join(
            str(source[k]) for k in ("utm_source", "platform", "utm_campaign") if source.get(k)
        )
        lines.append(
            f"    first touch {source.get('channel') or '-'}"
            + (f" ({origin})" if origin else "")
            + f", generated {_iso(record_time(v.get('generated_at')))}"
            + f", trigger {v.get('trigger_event_id')}"
        )
        score = v.get("score") or {}
        lines.append(
            f"    score {score.get('total')} (fit {score.get('fit')}, engagement "
            f"{score.get('engagement')}), grade {score.get('grade')}"
        )
        for c in score.get("contributions") or ():
            lines.append(f"      {_contribution(c)}")
        trace = reason.get("trace") or []
        if trace:
            lines.append("    trace:")
            lines.extend(f"      {i}. {step}" for i, step in enumerate(trace, 1))
    return "\n".join(lines) + "\n"


def render_json(history: History) -> dict[str, Any]:
    """`--json`: `lead_id`, `email`, `records_read`, `malformed`, and `events` in time order,
    each `at` (RFC 3339), `topic`, `kind` (`routed` or `sales`) and `value` (the record as
    it is on the topic)."""
    return {
        "lead_id": history.lead_id,
        "email": history.email,
        "records_read": history.records_read,
        "malformed": history.malformed,
        "events": [
            {"at": iso(e.at), "topic": e.topic, "kind": e.kind, "value": e.value}
            for e in history.entries
        ],
    }
