"""Qualification: whether a lead that is not routed yet should be, and what keeps it back.

A lead routes once, when a fast-lane touch arrives (forms such as `demo-request`, an e-mail
`reply`) or its score reaches the MQL threshold, unless a disqualifier holds: unsubscribed,
bounced, a spam complaint, a competitor's or disposable domain, missing consent where the
lead's country requires it.
"""

from __future__ import annotations

from typing import Any

from topics.messages import Touch
from topics.vocabulary import COMPETITOR, DISPOSABLE, EMAIL_FLAGS, NO_CONSENT
from workers.core.context import Context

FAST_LANE = "fast_lane"
MQL = "mql"


def trigger(ctx: Context, lead: dict[str, Any], touch: Touch) -> str | None:
    """`fast_lane`, `mql`, or None when this touch does not qualify the lead."""
    channel, data = touch.channel, touch.data
    if (channel == "form" and data.get("form_id") in ctx.fast_forms) or (
        channel == "email" and data.get("type") in ctx.fast_email
    ):
        return FAST_LANE
    if lead["score"]["total"] >= ctx.scoring.mql_threshold:
        return MQL
    return None


def disqualifier(ctx: Context, lead: dict[str, Any]) -> str | None:
    """The first reason that keeps a qualified lead from routing, or None."""
    for flag in EMAIL_FLAGS.values():
        if lead["flags"].get(flag):
            return flag
    if _within(lead.get("domain"), ctx.competitors):
        return COMPETITOR
    if lead.get("disposable"):
        return DISPOSABLE
    country = lead.get("country") or ctx.account(lead).get("country")
    if country in ctx.consent_countries and lead.get("consent") is not True:
        return NO_CONSENT
    return None


def _within(domain: str | None, domains: frozenset[str]) -> bool:
    """`domain` is one of `domains` or below one: a competitor's mail.rival.com is theirs."""
    while domain:
        if domain in domains:
            return True
        domain = domain.partition(".")[2]
    return False
