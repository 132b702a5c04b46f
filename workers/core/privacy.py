"""A person's data: erased on request (`leadrouter forget`), or expired when idle.

Erasure goes to the lead's owner, which removes everything it holds about the person (the
lead with its dedupe memory and held touches, its SLA timer) and sends the same request to
the records that name the lead elsewhere: its visitor records (`v:<anonymous_id>`) and its
queue desk's waiting line. In place of the lead it keeps only what lets it refuse the past:
the lead id (a one-way fingerprint of the e-mail) and the erasure's time. An event of the
person that occurred before that time (a redelivery, a replay) is dropped and counted; a
later one starts a new lead. Every removal is a tombstone or that marker on the changelog,
so compaction removes the person there too. Capacity and fairness counts stay: they name
no one (an open lead erased is released from its rep's open load).

Expiry is the same removal without a marker, by a timer. Each second of a partition with
records that became idle-tracked in it has a key `x:<second, 12 digits>` listing them, so
the keys sort by time; the worker reads the seconds idle for longer than the configured
period between batches (`ExpiryDue`), so a shorter period published later applies to every
record at once. A record joins the list of its second once, when it is created, and moves
only when that second comes due and the record was touched since (so touches cost nothing,
and a batch of new leads writes one timer record per second, not one per lead).
"""

from __future__ import annotations

from typing import Any

from topics.messages import ExpiryDue, Forget, Release
from workers.core import sla
from workers.core.context import QUEUE_DESK, VISITOR, Context, Effects, State, queue_desk_key
from workers.core.context import visitor_key as visitor_key_of

ERASED = "erased"
EXPIRY = "x:"
_DUE_DIGITS = 12
DAY = 86400.0
CHUNK = 1000  # keys in one timer record: about 30 KB


def expiry_key(idle_since: float) -> str:
    """The timer of the records idle since that second: keys sort by time in a partition."""
    return f"{EXPIRY}{int(idle_since):0{_DUE_DIGITS}d}"


def idle_before(moment: float) -> str:
    """The first expiry key of a record touched after `moment` (the end of a scan: records
    idle since `now - period` or longer are due)."""
    return f"{EXPIRY}{int(moment) + 1:0{_DUE_DIGITS}d}"


def erased_since(value: dict[str, Any] | None, at: float) -> bool:
    """True when `value` (a lead's state) remembers an erasure at or after `at`: an event
    of the person from before their erasure."""
    erased = value.get("erased_at") if value else None
    return erased is not None and at <= erased


def last_active(value: dict[str, Any]) -> float:
    """The latest touch of a lead or visitor (event time); older records: their newest time."""
    active = value.get("active")
    if active is not None:
        return float(active)
    clicks = value.get("clicks") or []
    times = [
        value.get("routed_at"),
        (value.get("engagement") or {}).get("at"),
        (value.get("first_touch") or {}).get("at"),
        *(c.get("at") for c in clicks),
    ]
    return max((t for t in times if t is not None), default=0.0)


def touched(
    ctx: Context, state: State, key: str, value: dict[str, Any], seen: float, new: bool = False
) -> None:
    """A lead or visitor was touched at `seen`: when the worker took the event in, or the
    event's time if later (a backfilled old event does not make a fresh record look idle).
    Its expiry timer is set the first time expiry finds it untimed (a `new` record, one from
    before expiry existed or from while it was off), else moved lazily."""
    if ctx.expire_after and "idle_since" not in value:
        _arm(state, key, value, seen if new else max(seen, last_active(value)))
    active = value.get("active")
    if active is None or seen > active:
        value["active"] = seen


def _arm(state: State, key: str, value: dict[str, Any], idle_since: float) -> None:
    """The record joins its second's timer, `x:<second>`: a head listing up to CHUNK keys;
    a full head's keys move to a chunk `x:<second>:<its first key>`, named in the head, so no
    timer record outgrows CHUNK keys (Kafka refuses records over 1 MB) whatever arrives in
    one second. The second is kept in the record (to leave the timer with it)."""
    second = value["idle_since"] = int(idle_since)
    head_key = expiry_key(second)
    head = state.get(head_key)
    if head is None:
        state.put(head_key, {"keys": [key], "chunks": []})
        return
    keys = head["keys"]
    keys.append(key)
    if len(keys) >= CHUNK:
        chunk = f"{head_key}:{keys[0]}"
        state.put(chunk, {"keys": keys})
        head["keys"] = []
        head.setdefault("chunks", []).append(chunk)
    state.put(head_key, head)


def _disarm(state: State, key: str, value: dict[str, Any]) -> None:
    """The record leaves its second's timer (erased or removed before it came due)."""
    if value.get("idle_since") is None:
        return
    head_key = expiry_key(value["idle_since"])
    head = state.get(head_key)
    if head is None:
        return
    for timer_key in (head_key, *head.get("chunks", ())):
        timer = head if timer_key == head_key else state.get(timer_key)
        if timer is not None and key in timer["keys"]:
            timer["keys"].remove(key)
            state.put(timer_key, timer)
            return


class Privacy:
    """Handles `Forget` (lead, visitor records, queue desk) and `ExpiryDue`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.recorder = ctx.recorder

    def on_forget(self, key: str, request: Forget, state: State, fx: Effects) -> None:
        if key.startswith(VISITOR):
            visitor = state.get(key)
            if visitor is not None:
                _disarm(state, key, visitor)
                state.delete(key)
                if not request.erase:
                    self.recorder.expired("visitor")  # with its lead: counted once, here
            return
        if key.startswith(QUEUE_DESK):
            desk = state.get(key)
            line = desk.get("waiting") if desk else None
            if line and any(entry[0] == request.lead for entry in line):
                desk["waiting"] = [e for e in line if e[0] != request.lead]  # type: ignore[index]
                state.put(key, desk)  # type: ignore[arg-type]
            return
        lead = state.get(key)
        if request.erase and (lead or {}).get("erased_at", -1.0) >= request.at:
            return  # this erasure (or a later one) was carried out already: a redelivery
        self._remove(key, lead, request, state, fx)
        if request.erase:
            self.recorder.erasure()

    def on_expiry_due(self, key: str, due: ExpiryDue, state: State, fx: Effects) -> None:
        """A second's timer came due: each record in it that is still idle is removed; one
        touched since joins the timer of its latest touch."""
        timer = state.get(key)
        period = self.ctx.expire_after
        if timer is None or not period:
            return  # handled already, or expiry turned off (the records stay)
        state.delete(key)  # a head's chunks are timers of their own, due with it
        now = self.ctx.clock()
        for target in timer["keys"]:
            value = state.get(target)
            if value is None or value.get("state") == ERASED:
                continue  # gone already, or a marker (kept: it names no one)
            active = last_active(value)
            if active + period > now:
                _arm(state, target, value, active)  # touched since: due again later
                state.put(target, value)
            elif target.startswith(VISITOR):
                state.delete(target)
                self.recorder.expired("visitor")
            else:
                value.pop("idle_since", None)  # this timer, deleted above
                self._remove(target, value, Forget(target, now, "expired", False), state, fx)
                self.recorder.expired("lead")

    def _remove(
        self,
        lead_id: str,
        lead: dict[str, Any] | None,
        request: Forget,
        state: State,
        fx: Effects,
    ) -> None:
        """The lead and what names it elsewhere; a marker in its place when erased (now, or
        before this lead began: an expiry keeps that earlier marker)."""
        before = (lead or {}).get("erased_at")
        erased_at = max(request.at, before or 0.0) if request.erase else before
        if lead is not None and lead.get("state") != ERASED:
            for anonymous in lead.get("anonymous_ids") or ():
                fx.internal.append((visitor_key_of(anonymous), request))
            queue = lead.get("queue")
            if queue is not None:
                # Its place in a waiting line: its queue's, or one it was escalated to.
                for desk_queue in dict.fromkeys([queue, *self.ctx.routing.queues]):
                    fx.internal.append((queue_desk_key(desk_queue), request))
                if lead.get("rep") is not None and not lead.get("closed"):
                    fx.internal.append((queue_desk_key(queue), Release(lead["rep"])))
            sla.stop(lead_id, state)
            _disarm(state, lead_id, lead)
        if erased_at is not None:
            state.put(lead_id, {"id": lead_id, "state": ERASED, "erased_at": erased_at})
        elif lead is not None:
            state.delete(lead_id)
