"""The anonymous visitor (`v:<anonymous_id>`): ad clicks without an e-mail wait here until a
form fill with the same visitor id names the person; the form then carries them to the lead
as its first touches (first-touch attribution). Later clicks go straight to the lead."""

from __future__ import annotations

from typing import Any

from topics.messages import Touch, VisitorTouch
from workers.core import privacy
from workers.core.context import Context, Effects, State

MAX_VISITOR_CLICKS = 20


def compact_click(touch: Touch) -> dict[str, Any]:
    """A click as the visitor's state keeps it (a versioned format: the state changelog)."""
    return {
        "id": touch.event_id,
        "at": touch.at,
        "platform": touch.get("platform"),
        "campaign": touch.get("campaign"),
        "click_id": touch.get("click_id"),
    }


def expand_click(click: dict[str, Any], lead: str | None) -> Touch:
    """A kept click as the lead's touch."""
    data = {
        "event_id": click["id"],
        "at": click["at"],
        "platform": click["platform"],
        "campaign": click.get("campaign"),
    }
    return Touch("ad", click["id"], click["at"], 0.0, lead, data)


class Visitor:
    """Handles `VisitorTouch`: keeps anonymous clicks, or joins them to the lead."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.recorder = ctx.recorder

    def on_touch(self, key: str, touch: VisitorTouch, state: State, fx: Effects) -> None:
        visitor = state.get(key)
        new = visitor is None
        if visitor is None:
            visitor = {"clicks": [], "lead": None}
        privacy.touched(self.ctx, state, key, visitor, max(touch.at, touch.ingested), new)
        if touch.lead is None:  # an anonymous ad click
            if visitor["lead"] is not None:  # already known: it is the lead's touch
                lead = visitor["lead"]
                fx.internal.append(
                    (
                        lead,
                        Touch(
                            touch.channel,
                            touch.event_id,
                            touch.at,
                            touch.ingested,
                            lead,
                            touch.data,
                        ),
                    )
                )
                state.put(key, visitor)  # its latest touch (expiry)
                return
            if any(c["id"] == touch.event_id for c in visitor["clicks"]):
                self.recorder.duplicate(touch.channel)
                return
            self.recorder.accepted(touch.channel)
            visitor["clicks"].append(compact_click(touch))
            visitor["clicks"] = visitor["clicks"][-MAX_VISITOR_CLICKS:]
            state.put(key, visitor)
            return
        # A form fill naming this visitor: their earlier clicks become the lead's touches.
        forwarded = Touch(
            touch.channel,
            touch.event_id,
            touch.at,
            touch.ingested,
            touch.lead,
            touch.data,
            visitor["clicks"],
        )
        visitor["lead"], visitor["clicks"] = touch.lead, []
        state.put(key, visitor)
        fx.internal.append((touch.lead, forwarded))
