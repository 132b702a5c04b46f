"""Rep assignment: strategies, capacity, working hours across zones, leave, fairness."""

from __future__ import annotations

from datetime import UTC, datetime

from workers.core import assign
from workers.settings import Queue, Rep

# Wednesday 2026-11-25 15:00 UTC: 10:00 in New York, 16:00 in Berlin, 00:00 Thursday in Tokyo.
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC).timestamp()
HOURS = {"start": "09:00", "end": "17:00"}


def rep(tz="America/New_York", **kw) -> Rep:
    return Rep.model_validate({"name": "x", "timezone": tz, **kw})


def queue(strategy, reps) -> Queue:
    return Queue(strategy=strategy, sla_minutes=5, reps=tuple(reps))


def run(strategy, reps, n, desk=None, now=NOW, window=24):
    desk = {} if desk is None else desk
    q = queue(strategy, reps)
    # One lead a minute, as a queue sees them.
    return [assign.pick_rep("q", q, reps, desk, now + 60 * i, window)[0] for i in range(n)], desk


def test_round_robin_takes_turns():
    reps = {"a": rep(), "b": rep(), "c": rep()}
    picked, _ = run("round_robin", reps, 6)
    assert picked == ["a", "b", "c", "a", "b", "c"]


def test_weighted_follows_weights():
    reps = {"a": rep(weight=3), "b": rep(weight=1)}
    picked, _ = run("weighted", reps, 40)
    assert picked.count("a") == 30 and picked.count("b") == 10


def test_least_loaded_prefers_fewest_open_leads():
    reps = {"a": rep(), "b": rep()}
    desk = {"reps": {"a": {"open": 5}, "b": {"open": 1}}}
    picked, desk = run("least_loaded", reps, 1, desk)
    assert picked == ["b"]
    assign.release(desk, "a")
    assert desk["reps"]["a"]["open"] == 4


def test_daily_capacity_is_honoured_then_unassigned():
    reps = {"a": rep(daily_capacity=2), "b": rep(daily_capacity=1)}
    picked, _ = run("round_robin", reps, 4)
    assert picked == ["a", "b", "a", None]


def test_capacity_resets_on_the_reps_next_local_day():
    reps = {"a": rep(daily_capacity=1)}
    _, desk = run("round_robin", reps, 1)
    assert run("round_robin", reps, 1, desk)[0] == [None]
    tomorrow = NOW + 86400
    assert run("round_robin", reps, 1, desk, now=tomorrow)[0] == ["a"]


def test_working_hours_in_each_reps_time_zone():
    reps = {
        "tokyo": rep("Asia/Tokyo", working_hours=HOURS),
        "berlin": rep("Europe/Berlin", working_hours=HOURS),
        "ny": rep("America/New_York", working_hours=HOURS),
    }
    desk: dict = {}
    q = queue("round_robin", reps)
    chosen, trace = assign.pick_rep("q", q, reps, desk, NOW, 24)
    assert chosen == "berlin"
    assert any("tokyo skipped: outside working hours (00:00 in Asia/Tokyo)" in t for t in trace)
    saturday = datetime(2026, 11, 28, 15, 0, tzinfo=UTC).timestamp()
    chosen, trace = assign.pick_rep("q", q, reps, {}, saturday, 24)
    assert chosen is None
    assert any("not a working day (sat" in t for t in trace)
    assert trace[-1].startswith("nobody in q is available")


def test_out_of_office_dates_are_inclusive_in_local_time():
    away = [{"from": "2026-11-20", "to": "2026-11-25"}]
    reps = {"a": rep(out_of_office=away), "b": rep()}
    picked, _ = run("round_robin", reps, 2)
    assert picked == ["b", "b"]
    back = datetime(2026, 11, 26, 15, 0, tzinfo=UTC).timestamp()
    assert run("round_robin", reps, 1, now=back)[0] == ["a"]


def test_rep_back_from_leave_rejoins_rotation_without_flood():
    """After a week away, a weighted rep is not handed every lead until counts even out."""
    away = [{"from": "2026-11-18", "to": "2026-11-25"}]
    reps = {"a": rep(), "b": rep(), "c": rep(out_of_office=away)}
    _, desk = run("weighted", reps, 30)  # a and b share 30 leads while c is away
    assert assign.window_count(desk["reps"]["a"], NOW, 24) == 15
    back = datetime(2026, 11, 26, 15, 0, tzinfo=UTC).timestamp()
    picked, _ = run("weighted", reps, 9, desk, now=back, window=48)
    assert picked.count("c") == 3, picked  # one in three, not nine in a row
    assert max(len(run_) for run_ in "".join(p or "-" for p in picked).split("a")) <= 2


def test_fairness_counts_only_the_rolling_window():
    reps = {"a": rep(), "b": rep()}
    desk: dict = {}
    for _ in range(10):
        assign.record_assignment(desk, "a", reps["a"], NOW - 30 * 3600, 24)
    assert assign.window_count(desk["reps"]["a"], NOW, 24) == 0
    picked, _ = run("weighted", reps, 4, desk)
    assert sorted(picked) == ["a", "a", "b", "b"]


def test_account_owner_is_preferred_when_available():
    reps = {"a": rep(), "owner": rep(daily_capacity=1)}
    q = queue("round_robin", reps)
    desk: dict = {}
    assert assign.pick_rep("q", q, reps, desk, NOW, 24, "owner")[0] == "owner"
    chosen, trace = assign.pick_rep("q", q, reps, desk, NOW, 24, "owner")
    assert chosen == "a"
    assert "account owner owner skipped: at daily capacity (1)" in trace


def test_an_owner_a_later_version_took_out_of_the_queue_is_not_given_its_leads():
    reps = {"a": rep(), "owner": rep()}
    q = queue("round_robin", {"a": reps["a"]})
    assert assign.pick_rep("q", q, reps, {}, NOW, 24, "owner")[0] == "a"
