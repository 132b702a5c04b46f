"""The SLA of a routed lead: a timer per lead (`s:<lead_id>`, owned with the lead) set when
its queue desk answers, stopped by the first sales touch; when it fires first, the lead's
SLA is breached. Detected by the timer, not only when a late touch arrives."""

from __future__ import annotations

from topics.messages import SlaDue
from workers.core.context import Context, Effects, State, sla_key


def start(lead_id: str, due: float, state: State, fx: Effects) -> None:
    state.put(sla_key(lead_id), {"due": due})
    fx.timers.append((due, lead_id))


def stop(lead_id: str, state: State) -> None:
    state.delete(sla_key(lead_id))


class Sla:
    """Handles `SlaDue`: a breach unless sales touched the lead in time."""

    def __init__(self, ctx: Context) -> None:
        self.recorder = ctx.recorder

    def on_due(self, _key: str, due: SlaDue, state: State, fx: Effects) -> None:
        lead_id = due.lead
        if state.get(sla_key(lead_id)) is None:
            return
        stop(lead_id, state)
        lead = state.get(lead_id)
        if lead is None or lead.get("first_contact_at") is not None or lead.get("sla_breached"):
            return
        lead["sla_breached"] = True
        state.put(lead_id, lead)
        self.recorder.sla_breach(lead["queue"])
