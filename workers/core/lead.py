"""The lead (keyed by `lead_id`): what a marketing touch and the queue desk's answer do to it.

A touch runs the pipeline's stages in order: dedupe, identity, enrich, score, then by the
lead's routing state: qualify and route (a new lead), hold (a lead waiting for its queue
desk's answer), or publish as activity (a routed lead; it is not reassigned).
"""

from __future__ import annotations

from typing import Any

from topics.messages import Assign, Assigned, Forget, Handed, Release, Touch, Withdraw
from workers.core import enrich, identity, privacy, publish, qualify, route, score, sla
from workers.core.context import (
    Context,
    Effects,
    State,
    fingerprint,
    queue_desk_key,
    source_label,
    visitor_key,
)
from workers.core.privacy import ERASED, erased_since
from workers.core.visitor import expand_click

# A lead waiting for its queue desk's answer keeps the touches meanwhile (bounded) to publish
# them as activity once routed; with the desk on another worker the wait is a round trip.
MAX_HELD_TOUCHES = 20
# A lead not routed yet keeps its last few touches with their times: one that occurred
# after the touch that later qualifies it is published as activity once it is routed,
# whatever order a backlog was read in.
MAX_EARLY_TOUCHES = 3
# The reps a lead has had, not given it again on a reassignment (bounded: escalations end).
MAX_REPS_REMEMBERED = 25
HELD_FIELDS = ("type", "form_id", "at")  # after its event id and channel, `ch`
ROUTING_FIELDS = (  # forgotten when a lost or rejected lead is routed again
    "queue",
    "rep",
    "routed_at",
    "sla_due",
    "first_contact_at",
    "outcome",
    "given_at",
    "had",
    "reassigned",
    "trigger",
    "answered_at",
    "claimed",
    "closed",
    "rank",
    "sla_breached",
)


def new_lead(lead_id: str) -> dict[str, Any]:
    return {"id": lead_id, "state": "new", "seen": [], "engagement": {}, "flags": {}}


def remember(lead: dict[str, Any], event_id_fingerprint: str, window: int) -> None:
    """Keep the fingerprint in the lead's dedupe memory of its last `window` event ids."""
    seen = lead["seen"]
    seen.append(event_id_fingerprint)
    if len(seen) > window:
        del seen[: len(seen) - window]


def first_touch(touch: Touch) -> dict[str, Any]:
    """First-touch attribution of one touch: channel, ad platform, UTM source and campaign."""
    channel = touch.channel
    utm = touch.get("utm") or {}
    platform = touch.get("platform")
    return {
        "channel": channel,
        "platform": platform,
        "utm_source": (utm.get("source") or platform or ("email" if channel == "email" else None)),
        "utm_campaign": utm.get("campaign") or touch.get("campaign"),
        "event_id": touch.event_id,
        "at": touch.at,
    }


def _held(touch: dict[str, Any], lead_id: str) -> Touch:
    return Touch(touch["ch"], touch["event_id"], touch["at"], 0.0, lead_id, touch)


class Lead:
    """Handles `Touch` and `Assigned` for the lead that owns them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.recorder = ctx.recorder
        self.window = ctx.settings.dedupe_window

    def on_touch(self, lead_id: str, touch: Touch, state: State, fx: Effects) -> None:
        """The stages in order: dedupe, identity, enrich, score, then by routing state."""
        lead = state.get(lead_id)
        if erased_since(lead, touch.at) or (
            # An anonymous click forwarded by a visitor record linked before the erasure:
            # it does not name the person, so it cannot start them again.
            lead is not None and lead["state"] == ERASED and not touch.get("email")
        ):
            self.recorder.erased_event(touch.channel)
            anonymous = touch.get("anonymous_id")
            if anonymous:  # its visitor record, made again on the way here: gone again
                erasure = Forget(lead_id, lead["erased_at"], "", True)  # type: ignore[index]
                fx.internal.append((visitor_key(anonymous), erasure))
            return
        is_new = lead is None or lead["state"] == ERASED
        if is_new:
            # A new lead; after an erasure, it keeps the erasure's time, so an older event
            # of the person redelivered later cannot bring the erased data back.
            erased_at = lead.get("erased_at") if lead is not None else None
            lead = new_lead(lead_id)
            if erased_at is not None:
                lead["erased_at"] = erased_at
        touches = self._dedupe(lead, touch)
        if not touches:
            return
        privacy.touched(self.ctx, state, lead_id, lead, max(touch.at, touch.ingested), is_new)
        for t in touches:  # first-touch attribution: the earliest touch, whatever the order
            first = lead.get("first_touch")
            if first is None or t.at < first["at"]:
                lead["first_touch"] = first_touch(t)
        identity.absorb(lead, touch)
        self._enrich(lead, touch, is_new)
        if is_new:
            first = lead["first_touch"]
            self.recorder.generated(first["channel"], source_label(first))
        self._score(lead, touches, touch.at)
        if lead["state"] == "routed" and _recyclable(lead, touch.at):
            for k in ROUTING_FIELDS:
                lead.pop(k, None)
            lead["state"] = "new"
        if lead["state"] == "routed":
            fx.published.append((lead["queue"], publish.activity(self.ctx, lead, touch)))
        elif lead["state"] == "new":
            self._qualify(lead, touch, fx)
            if lead["state"] == "new":
                _early(lead, touch)
        elif lead["state"] == "pending":  # its queue desk has not answered yet
            _hold(lead, touch)
        state.put(lead_id, lead)

    def _dedupe(self, lead: dict[str, Any], touch: Touch) -> list[Touch]:
        """The touches this one brings that the lead has not seen: none for a repeated event
        id; with a visitor's earlier clicks first (remembered too, so a redelivery of the
        form is a duplicate)."""
        key = fingerprint(touch.event_id)
        if key in lead["seen"]:
            self.recorder.duplicate(touch.channel)
            return []
        remember(lead, key, self.window)
        self.recorder.accepted(touch.channel)
        if not touch.prior:
            return [touch]
        seen = lead["seen"]
        erased_at = lead.get("erased_at") or float("-inf")  # clicks before an erasure: gone
        fresh = [
            (c, k)
            for c in touch.prior
            if c["at"] > erased_at and (k := fingerprint(c["id"])) not in seen
        ]
        for _, k in fresh:
            remember(lead, k, self.window)
        return [*(expand_click(c, lead["id"]) for c, _ in fresh), touch]

    def _enrich(self, lead: dict[str, Any], touch: Touch, is_new: bool) -> None:
        """Derived facts and fit, redone only when identity or the accounts table changed:
        most touches are e-mail events."""
        ctx = self.ctx
        if is_new or touch.channel == "form" or lead.get("enriched") != ctx.accounts.version:
            account = enrich.enrich_lead(
                lead, ctx.accounts, ctx.seniority, ctx.settings.regions.overrides
            )
            lead["fit"] = score.fit(ctx.scoring, lead, account)

    def _score(self, lead: dict[str, Any], touches: list[Touch], now: float) -> None:
        scoring = self.ctx.scoring
        for t in touches:
            detail = t.data.get("form_id" if t.channel == "form" else "type")
            label, points = score.touch_points(scoring, t.channel, detail)
            score.add_touch(lead["engagement"], scoring, label, points, t.at)
        fit_points = sum(p for _, _, p in lead["fit"])
        lead["score"] = score.totals(scoring, fit_points, lead["engagement"], now)
        self.recorder.scored(lead["score"]["total"])

    def _qualify(self, lead: dict[str, Any], touch: Touch, fx: Effects) -> None:
        ctx = self.ctx
        trigger = qualify.trigger(ctx, lead, touch)
        if trigger is None:
            return
        reason = qualify.disqualifier(ctx, lead)
        if reason is not None:
            if lead.get("disqualified") != reason:
                lead["disqualified"] = reason
                self.recorder.disqualified(reason)
            return
        account = ctx.account(lead)
        trace = [
            f"touch {touch.event_id} ({touch.channel}) triggered {trigger}: score "
            f"{lead['score']['total']:g} (threshold {ctx.scoring.mql_threshold:g})",
            *(
                f"score {c['factor']}={c['value']!r}: {c['points']:+g}"
                for c in publish.contributions(ctx, lead, touch.at)
            ),
        ]
        queue, rule, preferred, why = route.decide(
            ctx.routing, ctx.owner_queue, lead, account, touch.get("form_id"), trigger
        )
        trace.append(why)
        lead["state"] = "pending"
        lead["queue"] = queue
        # Touches handled before this one that occurred after it (a backlog read in another
        # order than it happened, after a restart): the rep hears of them once routed.
        later = [_early_touch(*t) for t in lead.pop("early", ()) if t[2] > touch.at]
        if later:
            lead.setdefault("held", []).extend(later)
        draft = publish.draft(ctx, lead, touch, queue, rule, trace)
        fx.internal.append(
            (queue_desk_key(queue), Assign(lead["id"], queue, preferred, touch.at, draft))
        )

    def on_assigned(self, lead_id: str, answer: Assigned, state: State, fx: Effects) -> None:
        lead = state.get(lead_id)
        if lead is None or lead["state"] in (ERASED, "new"):
            # Erased or expired while its desk chose, or a lead begun again since: the rep
            # does not have it.
            if answer.rep is not None:
                fx.internal.append((queue_desk_key(answer.queue), Release(answer.rep)))
            return
        if lead["state"] == "routed" and (lead.get("routed_at") or 0) >= answer.routed_at:
            return  # an answer given again after a crash, which this lead had kept
        lead.update(
            state="routed",
            queue=answer.queue,
            rep=answer.rep,
            rule=answer.rule,
            assignment=answer.assignment,
            routed_at=answer.routed_at,
            sla_due=answer.sla_due,
        )
        if answer.trigger is not None:
            lead["trigger"] = answer.trigger
        lead.pop("recyclable_at", None)
        lead.pop("sla_breached", None)
        # Touches that arrived while the queue desk was deciding happened after the lead
        # qualified: sales get them as activity, as any touch on a routed lead.
        for held in lead.pop("held", ()):
            fx.published.append(
                (answer.queue, publish.activity(self.ctx, lead, _held(held, lead_id)))
            )
        state.put(lead_id, lead)
        sla.start(lead_id, answer.sla_due, state, fx)

    def on_handed(self, lead_id: str, handed: Handed, state: State, fx: Effects) -> None:
        """A desk gave the lead to a rep after its routing: from the waiting line, or after
        an SLA breach. Published to the rep's queue (and, when the lead changes queue, to
        the previous queue's too, so the first rep's tool can take it away). The previous
        rep's counts are taken back here, once the lead has moved; a hand-over the lead does
        not take gives the new rep's back."""
        lead = state.get(lead_id)
        if lead is None or lead.get("state") != "routed":
            self._refuse(lead_id, handed, fx)
            return
        answered = max(lead.get("answered_at") or 0, lead.get("given_at") or 0)
        if handed.at <= max(answered, lead.get("routed_at") or 0):
            return  # given again after a crash: this lead had kept the first answer
        lead["answered_at"] = handed.at
        queues = self.ctx.routing.queues
        if handed.rep is None:  # a reassignment found nobody: the lead stays where it is
            self.recorder.reassigned(lead["queue"], handed.why, "nobody_available")
            queue = queues.get(lead["queue"])
            escalate_to = queue.on_sla_breach.escalate_to if queue is not None else None
            if handed.why == "reassign" and escalate_to is not None:
                fx.internal.append(
                    (queue_desk_key(escalate_to), sla.reassign(lead, escalate_to, "escalate"))
                )
            state.put(lead_id, lead)
            return
        taken = (
            lead.get("first_contact_at") is not None or lead.get("closed") or lead.get("claimed")
        )
        if taken or (handed.previous_rep or None) != lead.get("rep"):
            # A rep touched the lead first, or it moved on meanwhile.
            self._refuse(lead_id, handed, fx)
            state.put(lead_id, lead)
            return
        previous_queue = lead["queue"]
        if handed.previous_rep:  # counts move with the lead: taken back from the last rep
            given = lead.get("given_at") or lead["routed_at"]
            fx.internal.append(
                (
                    queue_desk_key(previous_queue),
                    Withdraw(handed.previous_rep, given, lead_id),
                )
            )
        if handed.why == "waiting":
            self.recorder.waited(handed.queue, handed.waited)
        else:
            self.recorder.reassigned(previous_queue, handed.why, "reassigned")
        lead.update(
            queue=handed.queue,
            rep=handed.rep,
            assignment=handed.assignment,
            given_at=handed.at,
            sla_due=handed.sla_due,
        )
        had = lead.get("had") or ([handed.previous_rep] if handed.previous_rep else [])
        lead["had"] = [*had, handed.rep][-MAX_REPS_REMEMBERED:]
        lead["reassigned"] = lead.get("reassigned", 0) + 1 if handed.why == "reassign" else 0
        routed = publish.handed(self.ctx, lead, handed)
        fx.published.append((handed.queue, routed))
        if previous_queue != handed.queue and handed.previous_rep:
            fx.published.append((previous_queue, routed))
        state.put(lead_id, lead)
        sla.start(lead_id, handed.sla_due, state, fx)

    @staticmethod
    def _refuse(lead_id: str, handed: Handed, fx: Effects) -> None:
        """A hand-over this lead does not take: the desk takes the rep's counts back."""
        if handed.rep is not None:
            fx.internal.append(
                (queue_desk_key(handed.queue), Withdraw(handed.rep, handed.at, lead_id))
            )


def _hold(lead: dict[str, Any], touch: Touch) -> None:
    """Keep a touch that arrived while the queue desk decides, to publish once routed."""
    held = lead.setdefault("held", [])
    data = touch.data
    kept = {"event_id": touch.event_id, "ch": touch.channel}  # the 0.1.0 key order
    held.append(kept | {k: data[k] for k in HELD_FIELDS if k in data})
    del held[:-MAX_HELD_TOUCHES]


def _early(lead: dict[str, Any], touch: Touch) -> None:
    """Remember a touch of a lead not routed yet, as [event id, channel, time, form or
    type] (most leads never qualify: this is kept small)."""
    data = touch.data
    entry = [touch.event_id, touch.channel, touch.at, data.get("form_id") or data.get("type")]
    early = lead.get("early")
    if early is None:
        lead["early"] = [entry]
    else:
        early.append(entry)
        if len(early) > MAX_EARLY_TOUCHES:
            del early[0]


def _early_touch(event_id: str, channel: str, at: float, detail: str | None) -> dict[str, Any]:
    """A remembered early touch as a held one (`_hold`), to publish once routed."""
    held: dict[str, Any] = {"event_id": event_id, "ch": channel, "at": at}
    if detail is not None:
        held["form_id" if channel == "form" else "type"] = detail
    return held


def _recyclable(lead: dict[str, Any], at: float) -> bool:
    due = lead.get("recyclable_at")
    return due is not None and at >= due
