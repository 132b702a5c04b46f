"""The SLA of a routed lead: a timer per lead (`s:<lead_id>`, owned with the lead) set when
a rep is given it (or it waits for one), stopped by the first sales touch; when it fires
first, the lead's SLA is breached. Detected by the timer, not only when a late touch
arrives; a late first touch read before its timer fired is a breach too. A breach is
counted once per lead; what else happens is the queue's
`on_sla_breach`: nothing more (`notify`), another rep of the queue (`reassign`, at most
`max_reassignments` times, then `escalate_to` if set), or the queue `escalate_to`. A lead
waiting in its queue's line has nobody to take it from: its breach is counted only."""

from __future__ import annotations

from typing import Any

from topics.messages import Reassign, SlaDue
from workers.core.context import Context, Effects, State, queue_desk_key, sla_key

# A timer re-armed later leaves its earlier heap entry behind; that one finds this much
# time still to run and is ignored.
EARLY = 0.001


def start(lead_id: str, due: float, state: State, fx: Effects) -> None:
    state.put(sla_key(lead_id), {"due": due})
    fx.timers.append((due, lead_id))


def stop(lead_id: str, state: State) -> None:
    state.delete(sla_key(lead_id))


def first_contact(
    ctx: Context, lead_id: str, lead: dict[str, Any], at: float, state: State
) -> None:
    """The first sales touch stops the timer. Made after the SLA, it is a breach even when
    it is read before its timer fires (in the same batch, or from a backlog after a
    restart), as `leadrouter report` counts it, whatever the order of the two."""
    stop(lead_id, state)
    due = lead.get("sla_due")
    if due is not None and at > due and not lead.get("sla_breached"):
        lead["sla_breached"] = True
        ctx.recorder.sla_breach(lead["queue"])


def reassign(lead: dict[str, Any], queue: str, why: str) -> Reassign:
    """The request to `queue`'s desk for another rep than those the lead has had."""
    rep = lead["rep"]
    return Reassign(
        lead["id"],
        queue,
        rep,
        lead["queue"],
        list(lead.get("had") or [rep]),
        why,
        lead.get("sla_due") or 0.0,
        lead.get("given_at") or lead.get("routed_at") or 0.0,
    )


class Sla:
    """Handles `SlaDue`: a breach unless sales touched the lead in time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.recorder = ctx.recorder

    def on_due(self, _key: str, due: SlaDue, state: State, fx: Effects) -> None:
        lead_id = due.lead
        timer = state.get(sla_key(lead_id))
        if timer is None or timer["due"] > self.ctx.clock() + EARLY:
            return
        stop(lead_id, state)
        lead = state.get(lead_id)
        if lead is None or lead.get("first_contact_at") is not None or lead.get("closed"):
            return
        queue = lead["queue"]
        if not lead.get("sla_breached"):
            lead["sla_breached"] = True
            self.recorder.sla_breach(queue)
        state.put(lead_id, lead)
        policy = (
            self.ctx.routing.queues[queue].on_sla_breach
            if queue in self.ctx.routing.queues
            else None
        )
        if lead.get("rep") is None or policy is None:
            return
        if policy.action == "reassign" and lead.get("reassigned", 0) < policy.max_reassignments:
            fx.internal.append((queue_desk_key(queue), reassign(lead, queue, "reassign")))
        elif policy.action != "notify" and policy.escalate_to is not None:
            target = policy.escalate_to
            fx.internal.append((queue_desk_key(target), reassign(lead, target, "escalate")))
