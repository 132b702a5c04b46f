"""The queue desk (`q:<queue>`): one owner per queue picks the rep for each lead routed to
it, so capacity and fairness counts stay exact however many workers run. It completes and
publishes the lead's RoutedLead and answers the lead with where it went.

The desk remembers its last RECENT_ASSIGNMENTS requests: one seen again (a redelivery) is
answered again with the rep chosen the first time, and never routed twice.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from topics.messages import Assign, Assigned, Release
from workers.core import assign, publish
from workers.core.context import Context, Effects, State, fingerprint

RECENT_ASSIGNMENTS = 2000


def recent_assignments(desk: dict[str, Any]) -> dict[str, Any]:
    """The queue's last RECENT_ASSIGNMENTS routings, fingerprinted, oldest first, each with
    its rep and time so a redelivered request can be answered again: a mapping so a
    redelivery is found without a scan, short keys so the desk's changelog record stays
    small although it is rewritten every batch. Older state kept a list of the plain
    "lead/event" strings; it is converted on first use (without answers to give again)."""
    recent = desk.get("recent")
    if isinstance(recent, dict):
        return recent
    desk["recent"] = {fingerprint(attempt): 1 for attempt in recent or ()}
    return desk["recent"]


class QueueDesk:
    """Handles `Assign` and `Release` for the queue that owns them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.recorder = ctx.recorder

    def on_assign(self, key: str, request: Assign, state: State, fx: Effects) -> None:
        ctx = self.ctx
        queue_name = request.queue
        queue = ctx.routing.queues[queue_name]
        desk = state.get(key) or {}
        recent = recent_assignments(desk)
        attempt = fingerprint(f"{request.lead}/{request.draft.trigger_event_id}")
        done = recent.get(attempt)
        if done is not None:  # a redelivered request: this routing was done already
            if isinstance(done, list):
                # Answered again, not routed again: without transactions a crash can lose the
                # lead's side (its state and the answer handed to it) while this desk's
                # state was written, and the lead would wait for an answer forever.
                rep, routed_at = done
                fx.internal.append((request.lead, self._answer(request, rep, routed_at)))
            return
        now = ctx.clock()
        rep, steps = assign.pick_rep(
            queue_name,
            queue,
            ctx.config.reps.reps,
            desk,
            now,
            ctx.routing.fairness_window_hours,
            request.preferred,
        )
        recent[attempt] = [rep, int(now * 1000) / 1000]  # ms, never after the first answer
        if len(recent) > RECENT_ASSIGNMENTS:
            for oldest in list(islice(recent, len(recent) - RECENT_ASSIGNMENTS)):
                del recent[oldest]
        state.put(key, desk)
        answer = self._answer(request, rep, now)
        routed = publish.assigned(request.draft, answer, steps)
        fx.published.append((queue_name, routed))
        self.recorder.routed(
            queue_name, routed.reason.rule, routed.score.grade, max(0.0, now - request.at)
        )
        if rep is None:
            self.recorder.unassigned(queue_name, "no_rep_available")
        fx.internal.append((request.lead, answer))

    def _answer(self, request: Assign, rep: str | None, routed_at: float) -> Assigned:
        """Where the lead went, by which rule and strategy."""
        queue = self.ctx.routing.queues[request.queue]
        if rep is None:
            strategy = "unassigned"
        elif rep == request.preferred:
            strategy = "account_owner"
        else:
            strategy = queue.strategy
        return Assigned(
            request.queue,
            rep,
            request.draft.reason.rule,
            strategy,
            routed_at,
            routed_at + queue.sla_minutes * 60,
        )

    def on_release(self, key: str, release: Release, state: State, fx: Effects) -> None:
        desk = state.get(key) or {}
        assign.release(desk, release.rep)
        state.put(key, desk)
