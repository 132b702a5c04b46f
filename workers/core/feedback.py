"""Sales feedback: a sales activity joined to the lead's routing state. The first
`contacted` (or `meeting_booked`) gives speed to lead and stops the SLA timer; conversions
give time to conversion by outcome; a closing activity releases the rep's open load; a lost
or rejected lead may be routed again after the recycle period."""

from __future__ import annotations

from topics.messages import Claimed, Feedback, Release
from topics.vocabulary import ACTIVITY_TYPES, CLOSING, CONVERSIONS, FIRST_CONTACT, RECYCLING
from workers.core import privacy, sla
from workers.core.context import Context, Effects, State, fingerprint, queue_desk_key, source_label
from workers.core.lead import remember
from workers.core.privacy import ERASED, erased_since

# How far a sale has progressed: the closing activities all rank last.
ACTIVITY_RANK = {
    kind: min(i, ACTIVITY_TYPES.index(CLOSING[0])) for i, kind in enumerate(ACTIVITY_TYPES)
}
DAY = 86400


class SalesFeedback:
    """Handles `Feedback` for the lead it names."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.recorder = ctx.recorder
        self.window = ctx.settings.dedupe_window
        self.recycle_seconds = ctx.settings.recycle_after_days * DAY

    def on_activity(self, lead_id: str, act: Feedback, state: State, fx: Effects) -> None:
        kind = act.type
        lead = state.get(lead_id)
        if erased_since(lead, act.at):  # about a person erased since: dropped
            self.recorder.erased_event("sales")
            return
        if lead is None or lead["state"] == ERASED:
            self.recorder.activity(kind, "unknown_lead")
            return
        key = fingerprint(act.event_id)
        if key in lead["seen"]:
            self.recorder.activity(kind, "duplicate")
            return
        remember(lead, key, self.window)
        privacy.touched(self.ctx, state, lead_id, lead, max(act.at, act.ingested))
        routed_at = lead.get("routed_at")
        rank = ACTIVITY_RANK[kind]
        in_order = routed_at is not None and act.at >= routed_at and rank >= lead.get("rank", 0)
        self.recorder.activity(kind, "ok" if in_order else "out_of_order")
        lead["rank"] = max(rank, lead.get("rank", 0))
        queue = lead.get("queue")
        if routed_at is not None and queue is not None:
            elapsed = max(0.0, act.at - routed_at)
            acted = act.rep_id or kind in FIRST_CONTACT or kind in CLOSING
            if lead.get("rep") is None and not lead.get("claimed") and acted:
                # Sales acted on a lead waiting in its queue's line: it leaves the line.
                lead["rep"], lead["claimed"] = act.rep_id, True
                fx.internal.append((queue_desk_key(queue), Claimed(lead_id, act.rep_id)))
            if kind in FIRST_CONTACT and lead.get("first_contact_at") is None:
                lead["first_contact_at"] = act.at
                self.recorder.speed_to_lead(queue, elapsed)
                sla.first_contact(self.ctx, lead_id, lead, act.at, state)
            if kind in CONVERSIONS and lead.get("outcome") != kind:
                lead["outcome"] = kind
                self.recorder.conversion(
                    queue, source_label(lead.get("first_touch")), kind, elapsed
                )
            if kind in CLOSING and lead.get("rep") and not lead.get("closed"):
                lead["closed"] = True
                fx.internal.append((queue_desk_key(queue), Release(lead["rep"])))
            if kind in RECYCLING:
                lead["recyclable_at"] = act.at + self.recycle_seconds
        state.put(lead_id, lead)
