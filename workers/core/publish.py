"""Publication: the RoutedLead that sales tools receive, built here and nowhere else.

A lead that qualifies is drafted on its own partition (everything sales need to know about
the person, the score and the routing decision) and completed by its queue's desk (rep,
strategy, times and the assignment steps), which publishes it. A touch on a lead already
routed is published as `lead.activity` to the lead's queue.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from topics.messages import Assigned, Handed, Touch
from topics.public import Activity, Company, Reason, RoutedLead, Score, Source
from topics.vocabulary import LEAD_ACTIVITY, LEAD_ASSIGNED, LEAD_REASSIGNED
from workers.core import score
from workers.core.context import Context, iso


def contributions(ctx: Context, lead: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """The score's explanation: built only for leads that are published."""
    engagement = score.engagement_contributions(ctx.scoring, lead["engagement"], now)
    fit = [{"factor": f, "value": v, "points": p} for f, v, p in lead["fit"]]
    return fit + engagement


def _routed_lead(
    ctx: Context, lead: dict[str, Any], touch: Touch, event: str, reason: Reason
) -> RoutedLead:
    account = ctx.account(lead)
    first = lead.get("first_touch") or {}
    name = " ".join(p for p in (lead.get("first_name"), lead.get("last_name")) if p) or None
    s = lead["score"]
    return RoutedLead(
        event=event,  # type: ignore[arg-type]
        lead_id=lead["id"],
        queue=lead.get("queue"),  # type: ignore[arg-type]
        rep_id=lead.get("rep"),
        email=lead.get("email"),
        name=name,
        phone=lead.get("phone_e164"),
        job_title=lead.get("job_title"),
        seniority=lead.get("seniority"),
        region=lead.get("region"),
        company=Company(
            domain=account.get("domain") or lead.get("domain"),
            name=account.get("name") or lead.get("company_name"),
            employees=account.get("employees") or lead.get("employees"),
            industry=account.get("industry"),
            country=account.get("country") or lead.get("country"),
        ),
        score=Score(
            s["total"], s["fit"], s["engagement"], s["grade"], contributions(ctx, lead, touch.at)
        ),
        reason=reason,
        source=Source(
            first.get("channel"),
            first.get("platform"),
            first.get("utm_source"),
            first.get("utm_campaign"),
        ),
        trigger_event_id=touch.event_id,
        generated_at=iso(first.get("at")),
        routed_at=iso(lead.get("routed_at")),
        sla_due_at=iso(lead.get("sla_due")),
    )


def draft(
    ctx: Context, lead: dict[str, Any], touch: Touch, queue: str, rule: str, trace: list[str]
) -> RoutedLead:
    """The `lead.assigned` record of a lead that qualified, before its desk picks a rep."""
    out = _routed_lead(ctx, lead, touch, LEAD_ASSIGNED, Reason(rule, None, trace))
    out.queue = queue
    return out


def assigned(draft: RoutedLead, answer: Assigned, steps: list[str]) -> RoutedLead:
    """The draft completed by the queue desk's answer: what is published."""
    return replace(
        draft,
        rep_id=answer.rep,
        routed_at=iso(answer.routed_at),
        sla_due_at=iso(answer.sla_due),
        reason=Reason(draft.reason.rule, answer.assignment, [*draft.reason.trace, *steps]),
    )


def handed(ctx: Context, lead: dict[str, Any], answer: Handed) -> RoutedLead:
    """A lead given to a rep after its routing (the lead's state already updated):
    `lead.assigned` from the waiting line, `lead.reassigned` from another rep. `routed_at`
    stays the routing's: speed to lead runs from there."""
    trigger = Touch("form", lead.get("trigger") or "", answer.at, 0.0, lead["id"], {})
    event = LEAD_ASSIGNED if answer.previous_rep is None else LEAD_REASSIGNED
    trace = [f"given to {answer.rep} in {answer.queue} ({answer.why})", *answer.steps]
    out = _routed_lead(
        ctx, lead, trigger, event, Reason(lead.get("rule"), answer.assignment, trace)
    )
    out.previous_rep_id = answer.previous_rep
    return out


def activity(ctx: Context, lead: dict[str, Any], touch: Touch) -> RoutedLead:
    """A touch on a routed lead, for its owner: published as activity, not reassigned."""
    trace = [
        f"lead already routed to {lead.get('queue')} ({lead.get('rep') or 'unassigned'}):"
        f" touch {touch.event_id} published as activity, not reassigned"
    ]
    out = _routed_lead(
        ctx, lead, touch, LEAD_ACTIVITY, Reason(lead.get("rule"), lead.get("assignment"), trace)
    )
    out.activity = Activity(
        touch.channel,  # type: ignore[arg-type]
        touch.get("type") or touch.get("form_id") or "ad_click",
        iso(touch.at),  # type: ignore[arg-type]
    )
    return out
