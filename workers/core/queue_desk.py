"""The queue desk (`q:<queue>`): one owner per queue picks the rep for each lead routed to
it, so capacity and fairness counts stay exact however many workers run. It completes and
publishes the lead's RoutedLead and answers the lead with where it went.

A lead that finds nobody available waits in the desk's line, in order of arrival. The desk
sets its own timer for the next moment a rep may come in (a working day starting, a new
local day) and hands waiting leads out then, oldest first, by the queue's strategy, within
capacity, and at most `handout.per_rep` to each rep per `handout.every_minutes`, so the
first rep online is not handed the whole night's backlog. While the line is not empty a new
lead joins its end, and lets the oldest out when someone is free: one in, one out.

It also gives a lead to another rep when its SLA passed with no first touch (`Reassign`,
from the lead's SLA timer): the previous rep's counts move with the lead.

The desk remembers its last RECENT_ASSIGNMENTS requests: one seen again (a redelivery) is
answered again with the rep chosen the first time, and never routed twice.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from topics.messages import Assign, Assigned, Claimed, DeskDue, Handed, Reassign, Release, Withdraw
from workers.core import assign, publish
from workers.core.context import Context, Effects, State, fingerprint
from workers.settings import Queue

RECENT_ASSIGNMENTS = 2000
# A queue nobody ever takes leads from must not grow its record without bound: beyond this
# many waiting, a lead is published unassigned as before and counted (`line_full`).
MAX_WAITING = 5000
# How often a desk whose queue its configuration lacks looks again (a switch may bring it).
RECHECK = 60.0
# A line entry: lead id, waiting since, preferred rep, then for a lead escalated here from
# another queue: its previous rep, previous queue and the reps it has had.
WAITING, WAKE, ROUND = "waiting", "wake", "round"


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


def seen_before(desk: dict[str, Any], what: str) -> bool:
    """Whether this desk has handled `what` (a reassignment or a withdrawal, named by lead
    and time) already: redelivered after a crash, it changes nothing the second time."""
    recent = recent_assignments(desk)
    key = fingerprint(what)
    if key in recent:
        return True
    keep_recent(recent, key, 1)
    return False


def keep_recent(recent: dict[str, Any], key: str, answer: Any) -> None:
    """Keep `answer` under `key` in the desk's memory, forgetting the oldest beyond
    RECENT_ASSIGNMENTS."""
    recent[key] = answer
    if len(recent) > RECENT_ASSIGNMENTS:
        for oldest in list(islice(recent, len(recent) - RECENT_ASSIGNMENTS)):
            del recent[oldest]


def waiting_line(desk: dict[str, Any] | None) -> tuple[int, float | None]:
    """How many leads wait in a desk's line and since when the oldest has waited."""
    line = (desk or {}).get(WAITING) or []
    return len(line), (line[0][1] if line else None)


def duration(seconds: float) -> str:
    """A wait as a person says it: 45 s, 12 min, 3 h 20 min."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


class QueueDesk:
    """Handles `Assign`, `Reassign`, `Claimed`, `Withdraw`, `Release` and its own timer
    (`DeskDue`) for the queue that owns them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.recorder = ctx.recorder
        self.handout = ctx.routing.handout

    def on_assign(self, key: str, request: Assign, state: State, fx: Effects) -> None:
        ctx = self.ctx
        queue_name = request.queue
        queue = ctx.routing.queues.get(queue_name)
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
        if queue is not None:
            self._hand_out(queue_name, queue, desk, now, fx, extra=1)
        line = desk.get(WAITING)
        if queue is None:
            # A queue of a configuration version this desk's worker does not run (yet): a
            # rollout under way, or a version it refused. The lead waits in the line until
            # a worker that runs it owns the desk or this one switches.
            rep = None
            steps = [
                f"{queue_name} is not in the configuration this desk runs "
                f"({ctx.config.version}): the lead waits for a worker that runs it"
            ]
        elif line:
            rep = None
            steps = [f"{len(line)} earlier leads wait in {queue_name}: this one joins the line"]
        else:
            rep, steps = assign.pick_rep(
                queue_name,
                queue,
                ctx.config.reps.reps,
                desk,
                now,
                ctx.routing.fairness_window_hours,
                request.preferred,
            )
        if rep is None:
            self._join(queue_name, desk, [request.lead, now, request.preferred], steps)
            self._arm(key, queue, desk, now, fx)
        keep_recent(recent, attempt, [rep, int(now * 1000) / 1000])  # ms: never after the answer
        state.put(key, desk)
        answer = self._answer(request, rep, now)
        routed = publish.assigned(request.draft, answer, steps)
        fx.published.append((queue_name, routed))
        self.recorder.routed(
            queue_name, routed.reason.rule, routed.score.grade, max(0.0, now - request.at)
        )
        fx.internal.append((request.lead, answer))

    def _answer(self, request: Assign, rep: str | None, routed_at: float) -> Assigned:
        """Where the lead went, by which rule and strategy. A queue this desk does not know
        yet gets the shortest SLA it knows: a waiting lead's breach is only counted."""
        routing = self.ctx.routing
        queue = routing.queues.get(request.queue)
        sla_minutes = (
            queue.sla_minutes
            if queue is not None
            else min(q.sla_minutes for q in routing.queues.values())
        )
        return Assigned(
            request.queue,
            rep,
            request.draft.reason.rule,
            self._strategy(queue, rep, request.preferred),
            routed_at,
            routed_at + sla_minutes * 60,
            request.draft.trigger_event_id,
        )

    @staticmethod
    def _strategy(queue: Queue | None, rep: str | None, preferred: str | None) -> str:
        if rep is None or queue is None:
            return "unassigned"
        return "account_owner" if rep == preferred else queue.strategy

    def _join(self, queue_name: str, desk: dict[str, Any], entry: list[Any], steps: list[str]):
        """Put a lead at the end of the line (or, the line full, leave it unassigned)."""
        line = desk.setdefault(WAITING, [])
        if len(line) >= MAX_WAITING:
            steps.append(f"{queue_name}'s line is full ({MAX_WAITING}): lead left unassigned")
            self.recorder.unassigned(queue_name, "line_full")
            return
        line.append(entry)
        steps.append(
            f"waits in {queue_name}'s line ({len(line)} waiting), handed out oldest first as "
            "reps come in"
        )
        self.recorder.unassigned(queue_name, "no_rep_available")

    # ------------------------------------------------------------------ the line
    def _hand_out(
        self,
        queue_name: str,
        queue: Queue,
        desk: dict[str, Any],
        now: float,
        fx: Effects,
        extra: int = 0,
    ) -> None:
        """Waiting leads to available reps, oldest first, each rep at most `per_rep` in a
        round of `every_minutes`; `extra` leads beyond that (a new lead arriving lets the
        oldest out, so the line never grows while someone is free)."""
        line = desk.get(WAITING)
        if not line:
            return
        ctx = self.ctx
        reps = ctx.config.reps.reps
        start, given = desk.get(ROUND) or (0.0, {})
        if now >= start + self.handout.every_minutes * 60:
            start, given = now, {}
        i = 0
        while i < len(line):
            lead_id, since, preferred, *moved = line[i]
            exclude = set(moved[2]) if moved else set()
            full = {
                r: "given its share of waiting leads for now"
                for r, n in given.items()
                if n >= self.handout.per_rep
            }
            pick = (queue_name, queue, reps, desk, now, ctx.routing.fairness_window_hours)
            rep, steps = assign.pick_rep(*pick, preferred, exclude, full)
            if rep is None and extra and full:
                rep, steps = assign.pick_rep(*pick, preferred, exclude)
                extra -= rep is not None
            if rep is None:
                if exclude:  # only reps this escalated lead has had are free: the next one
                    i += 1
                    continue
                break
            line.pop(i)
            given[rep] = given.get(rep, 0) + 1
            waited = max(0.0, now - since)
            previous_rep, why = (moved[0], "escalate") if moved else (None, "waiting")
            steps.insert(0, f"waited {duration(waited)} in {queue_name}'s line for a rep")
            self._give(
                lead_id,
                queue_name,
                queue,
                rep,
                previous_rep,
                preferred,
                why,
                now,
                steps,
                fx,
                waited,
            )
        if line:
            desk[ROUND] = [start, given]
        else:
            desk.pop(WAITING, None)
            desk.pop(ROUND, None)

    def _give(
        self,
        lead_id: str,
        queue_name: str,
        queue: Queue,
        rep: str | None,
        previous_rep: str | None,
        preferred: str | None,
        why: str,
        now: float,
        steps: list[str],
        fx: Effects,
        waited: float = 0.0,
    ) -> None:
        answer = Handed(
            lead_id,
            queue_name,
            rep,
            previous_rep,
            self._strategy(queue, rep, preferred),
            why,
            now,
            now + queue.sla_minutes * 60,
            waited,
            steps,
        )
        fx.internal.append((lead_id, answer))

    def _arm(
        self, key: str, queue: Queue | None, desk: dict[str, Any], now: float, fx: Effects
    ) -> None:
        """The desk's timer: while leads wait, the next moment a rep may come in or the
        next round of the hand-out, whichever is first; for a queue this desk's
        configuration does not have, a look every RECHECK seconds (a switch may bring it)."""
        if not desk.get(WAITING):
            desk.pop(WAKE, None)
            return
        if queue is None:
            desk[WAKE] = wake = now + RECHECK
            fx.timers.append((wake, key))
            return
        start, given = desk.get(ROUND) or (now, {})
        reps = self.ctx.config.reps.reps
        moments = [assign.next_change(reps[r], now) for r in queue.reps if r in reps]
        if given or not moments:  # reps had their share this round: the next round
            moments.append(start + self.handout.every_minutes * 60)
        wake = min(moments)
        wake = max(wake, now + 1.0)
        if desk.get(WAKE) != wake:
            desk[WAKE] = wake
            fx.timers.append((wake, key))

    def wake(self, key: str, state: State, fx: Effects) -> None:
        """Judge the line at once (the configuration changed): its timer is due now."""
        desk = state.get(key)
        if desk and desk.get(WAITING):
            desk[WAKE] = now = self.ctx.clock()
            fx.timers.append((now, key))
            state.put(key, desk)

    def on_due(self, key: str, due: DeskDue, state: State, fx: Effects) -> None:
        """The desk's timer fired: hand out what can be, and set the next."""
        desk = state.get(key)
        now = self.ctx.clock()
        if not desk or desk.get(WAKE) is None or desk[WAKE] > now + 0.001:
            return  # a timer that was moved since: its latest entry is still to come
        queue = self.ctx.routing.queues.get(due.queue)
        del desk[WAKE]
        if queue is not None:  # a queue removed from the configuration keeps its line
            self._hand_out(due.queue, queue, desk, now, fx)
        self._arm(key, queue, desk, now, fx)
        state.put(key, desk)

    # ------------------------------------------------------------------ after routing
    def on_reassign(self, key: str, request: Reassign, state: State, fx: Effects) -> None:
        """Another rep for a lead whose SLA passed. The previous rep's counts are taken back
        by the lead (`Withdraw`) once it has moved: a first touch may still beat the move."""
        ctx = self.ctx
        queue = ctx.routing.queues.get(request.queue)
        if queue is None:
            return
        desk = state.get(key) or {}
        if seen_before(desk, f"r/{request.lead}/{request.given_at}"):
            return  # redelivered: the lead has (or will have) the first answer
        now = ctx.clock()
        breach = (
            f"SLA of {request.previous_queue} passed with no first touch by "
            f"{request.previous_rep}: {request.why}"
        )
        rep, steps = assign.pick_rep(
            request.queue,
            queue,
            ctx.config.reps.reps,
            desk,
            now,
            ctx.routing.fairness_window_hours,
            None,
            set(request.exclude),
        )
        steps.insert(0, breach)
        if rep is None and request.why == "escalate":
            entry = [
                request.lead,
                now,
                None,
                request.previous_rep,
                request.previous_queue,
                request.exclude,
            ]
            self._join(request.queue, desk, entry, steps)
            self._arm(key, queue, desk, now, fx)
        else:
            self._give(
                request.lead,
                request.queue,
                queue,
                rep,
                request.previous_rep,
                None,
                request.why,
                now,
                steps,
                fx,
            )
        state.put(key, desk)

    def on_claimed(self, key: str, claim: Claimed, state: State, fx: Effects) -> None:
        """A rep took a waiting lead themselves: out of the line, into their counts."""
        desk = state.get(key)
        if not desk:
            return
        line = desk.get(WAITING) or []
        kept = [entry for entry in line if entry[0] != claim.lead]
        if len(kept) == len(line):
            return
        ctx = self.ctx
        rep = ctx.config.reps.reps.get(claim.rep or "")
        if rep is not None:
            assign.record_assignment(
                desk, claim.rep, rep, ctx.clock(), ctx.routing.fairness_window_hours
            )
        if kept:
            desk[WAITING] = kept
        else:
            desk.pop(WAITING, None)
            desk.pop(ROUND, None)
            desk.pop(WAKE, None)
        state.put(key, desk)

    def on_withdraw(self, key: str, withdraw: Withdraw, state: State, fx: Effects) -> None:
        desk = state.get(key) or {}
        if seen_before(desk, f"w/{withdraw.lead}/{withdraw.at}"):
            return
        rep = self.ctx.config.reps.reps.get(withdraw.rep)
        assign.withdraw(desk, withdraw.rep, rep, withdraw.at)
        state.put(key, desk)

    def on_release(self, key: str, release: Release, state: State, fx: Effects) -> None:
        desk = state.get(key) or {}
        assign.release(desk, release.rep)
        state.put(key, desk)
