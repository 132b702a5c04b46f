"""Picking a rep within a queue: round robin, weighted or least loaded, honouring each rep's
working hours and out-of-office dates in their own time zone and their daily capacity.

Fairness is counted over a rolling window (hourly buckets), and a rep's standing is never
more than the rest of the queue's lowest: a rep back from leave rejoins the rotation
instead of receiving every lead until the counts even out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from workers.settings import WEEKDAYS, Queue, Rep

HOUR = 3600.0
JOINING = "joining"  # a rep's stats: new to a least-loaded queue, counted from the others' floor


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_time(rep: Rep, now: float) -> datetime:
    return datetime.fromtimestamp(now, _zone(rep.timezone))


def unavailable_because(rep: Rep, stats: dict[str, Any], now: float) -> str | None:
    """Why `rep` cannot take a lead at `now`, or None when they can."""
    local = local_time(rep, now)
    today = local.date()
    for absence in rep.out_of_office:
        if absence.start <= today <= absence.end:
            return f"out of office until {absence.end.isoformat()}"
    hours = rep.working_hours
    if hours is not None:
        if WEEKDAYS[local.weekday()] not in hours.days:
            return f"not a working day ({WEEKDAYS[local.weekday()]} in {rep.timezone})"
        if not hours.start <= local.time() < hours.end:
            return f"outside working hours ({local.strftime('%H:%M')} in {rep.timezone})"
    day, count = stats.get("day") or (None, 0)
    if day == today.isoformat() and count >= rep.daily_capacity:
        return f"at daily capacity ({rep.daily_capacity})"
    if rep.daily_capacity == 0:
        return "daily capacity is 0"
    return None


def window_count(stats: dict[str, Any], now: float, window_hours: float) -> int:
    oldest = int(now // HOUR) - int(window_hours) + 1
    return sum(count for hour, count in (stats.get("hours") or {}).items() if int(hour) >= oldest)


def record_assignment(
    desk: dict[str, Any], rep_id: str, rep: Rep, now: float, window_hours: float
) -> None:
    """Count an assignment in the queue desk's state: window buckets, today, open load."""
    stats = desk.setdefault("reps", {}).setdefault(rep_id, {})
    hour = str(int(now // HOUR))
    hours = stats.setdefault("hours", {})
    hours[hour] = hours.get(hour, 0) + 1
    oldest = int(now // HOUR) - int(window_hours) + 1
    for stale in [h for h in hours if int(h) < oldest]:
        del hours[stale]
    today = local_time(rep, now).date().isoformat()
    day, count = stats.get("day") or (None, 0)
    stats["day"] = [today, count + 1 if day == today else 1]
    stats["open"] = stats.get("open", 0) + 1
    stats["last"] = now


def withdraw(desk: dict[str, Any], rep_id: str, rep: Rep | None, at: float) -> None:
    """Take back the counts of a lead `rep_id` was given at `at` and no longer has (it was
    reassigned): open load, today's count and the fairness window move with the lead."""
    stats = desk.setdefault("reps", {}).setdefault(rep_id, {})
    stats["open"] = max(0, stats.get("open", 0) - 1)
    hours = stats.get("hours") or {}
    hour = str(int(at // HOUR))
    if hours.get(hour, 0) > 0:
        hours[hour] -= 1
    day, count = stats.get("day") or (None, 0)
    if rep is not None and day == local_time(rep, at).date().isoformat() and count > 0:
        stats["day"] = [day, count - 1]


def next_change(rep: Rep, now: float) -> float:
    """The next moment `rep` may become available: their working day's start later today,
    or their next local midnight (a new day: capacity, absences and working days change)."""
    zone = _zone(rep.timezone)
    local = datetime.fromtimestamp(now, zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
    out = midnight.timestamp()
    hours = rep.working_hours
    if hours is not None and local.time() < hours.start:
        start = datetime.combine(local.date(), hours.start, zone).timestamp()
        out = min(out, start)
    return out


def release(desk: dict[str, Any], rep_id: str) -> None:
    """A lead of `rep_id` closed (won, lost, rejected): one less open for least_loaded."""
    stats = desk.setdefault("reps", {}).setdefault(rep_id, {})
    stats["open"] = max(0, stats.get("open", 0) - 1)


def pick_rep(
    queue_name: str,
    queue: Queue,
    reps: dict[str, Rep],
    desk: dict[str, Any],
    now: float,
    window_hours: float,
    preferred: str | None = None,
    exclude: frozenset[str] | set[str] = frozenset(),
    skipped: dict[str, str] | None = None,
) -> tuple[str | None, list[str]]:
    """The rep for the next lead of this queue and the steps that chose them, passing over
    the reps in `exclude` and those `skipped` names with why (a reason for the trace).

    Mutates `desk` (the queue's state) when a rep is chosen.
    """
    trace: list[str] = []
    all_stats = desk.setdefault("reps", {})
    # The owner is a rep of this queue when routed; a version since may have moved them.
    if preferred is not None and preferred in queue.reps and preferred not in exclude:
        why = (skipped or {}).get(preferred) or unavailable_because(
            reps[preferred], all_stats.get(preferred, {}), now
        )
        if why is None:
            trace.append(f"account owner {preferred} is available")
            record_assignment(desk, preferred, reps[preferred], now, window_hours)
            return preferred, trace
        trace.append(f"account owner {preferred} skipped: {why}")

    available: list[str] = []
    for rep_id in queue.reps:
        if rep_id in exclude:
            trace.append(f"{rep_id} skipped: had this lead already")
            continue
        why = (skipped or {}).get(rep_id) or unavailable_because(
            reps[rep_id], all_stats.get(rep_id, {}), now
        )
        if why is None:
            available.append(rep_id)
        else:
            trace.append(f"{rep_id} skipped: {why}")
    if not available:
        trace.append(f"nobody in {queue_name} is available")
        return None, trace

    if queue.strategy == "round_robin":
        start = desk.get("rr", 0) % len(queue.reps)
        ordered = queue.reps[start:] + queue.reps[:start]
        chosen = next(r for r in ordered if r in available)
        desk["rr"] = (queue.reps.index(chosen) + 1) % len(queue.reps)
        trace.append(f"round_robin: next in turn is {chosen}")
    else:
        chosen = _fairest(queue.strategy, available, reps, all_stats, now, window_hours, trace)
    record_assignment(desk, chosen, reps[chosen], now, window_hours)
    return chosen, trace


def _fairest(
    strategy: str,
    available: list[str],
    reps: dict[str, Rep],
    all_stats: dict[str, Any],
    now: float,
    window_hours: float,
    trace: list[str],
) -> str:
    if strategy == "weighted":
        load = {
            r: window_count(all_stats.get(r, {}), now, window_hours) / reps[r].weight
            for r in available
        }
        _rejoin(load, available, reps, all_stats, now, trace)
        what = "assignments in window / weight"
    else:
        _join_at_floor(available, all_stats, now, trace)
        load = _open_loads(available, all_stats)
        what = "open leads"
    chosen = min(available, key=lambda r: (load[r], all_stats.get(r, {}).get("last", 0.0)))
    shown = ", ".join(f"{r}={load[r]:g}" for r in available)
    trace.append(f"{strategy}: lowest {what} among available ({shown}) is {chosen}")
    return chosen


def _join_at_floor(
    available: list[str], all_stats: dict[str, Any], now: float, trace: list[str]
) -> None:
    """A rep new to a least-loaded queue (added by a configuration change) is counted as
    the least loaded of the others until their own open count reaches it, not from zero:
    else they would take every lead until it caught up. They share the lowest load's turns."""
    known = [all_stats[r].get("open", 0) for r in available if r in all_stats]
    floor = min(known, default=0)
    for rep_id in available:
        if rep_id not in all_stats and floor > 0:
            all_stats[rep_id] = {"open": 0, JOINING: True}
            trace.append(f"{rep_id} joins the queue counted from its lowest open load ({floor})")


def _open_loads(available: list[str], all_stats: dict[str, Any]) -> dict[str, float]:
    """Open leads per rep; a joining rep's is the lowest of the others' until theirs is."""
    raw = {r: float(all_stats.get(r, {}).get("open", 0)) for r in available}
    load = dict(raw)
    settled = [r for r in available if not all_stats.get(r, {}).get(JOINING)]
    for rep_id in available:
        stats = all_stats.get(rep_id, {})
        if stats.get(JOINING):
            floor = min((raw[r] for r in settled), default=raw[rep_id])
            if raw[rep_id] >= floor:
                del stats[JOINING]
            else:
                load[rep_id] = floor
    return load


def _rejoin(
    load: dict[str, float],
    available: list[str],
    reps: dict[str, Rep],
    all_stats: dict[str, Any],
    now: float,
    trace: list[str],
) -> None:
    """A rep more than two steps behind everyone else (back from leave, new, or off shift)
    is credited up to the pack, so they rejoin the rotation instead of taking every lead
    until the window evens out. The credit rolls out of the window like an assignment."""
    # Weighted rotation keeps every rep within one step (1/weight) of the others.
    step = max(1 / reps[r].weight for r in available)
    for rep_id in available:
        others = [v for r, v in load.items() if r != rep_id]
        if not others:
            return
        weight = reps[rep_id].weight
        floor = min(others)
        if load[rep_id] < floor - 2 * step:
            credit = int((floor - step - load[rep_id]) * weight)
            if credit <= 0:
                continue
            stats = all_stats.setdefault(rep_id, {})
            hours = stats.setdefault("hours", {})
            hour = str(int(now // HOUR))
            hours[hour] = hours.get(hour, 0) + credit
            load[rep_id] += credit / weight
            trace.append(f"{rep_id} rejoins the rotation: credited {credit} to catch up")
