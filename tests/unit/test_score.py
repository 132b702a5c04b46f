"""Scoring: fit and engagement apart, half-life decay, negative signals, grades."""

from __future__ import annotations

import pytest

from workers.core import score
from workers.settings import load_config

SCORING = load_config().scoring
DAY = 86400.0


def running(*touches) -> dict:
    engagement: dict = {}
    for label, points, at in touches:
        score.add_touch(engagement, SCORING, label, points, at)
    return engagement


def test_engagement_halves_every_half_life():
    half = SCORING.engagement.half_life_days * DAY
    label, points = score.touch_points(SCORING, "form", "webinar")
    assert (label, points) == ("form:webinar", 15)
    eng = running((label, points, 1000.0))
    fresh = score.engagement_contributions(SCORING, eng, 1000.0)
    old = score.engagement_contributions(SCORING, eng, 1000.0 + half)
    older = score.engagement_contributions(SCORING, eng, 1000.0 + 2 * half)
    assert fresh[0]["points"] == 15
    assert old[0]["points"] == pytest.approx(7.5)
    assert older[0]["points"] == pytest.approx(3.75)


def test_running_sum_equals_decaying_each_touch_in_any_order():
    half = SCORING.engagement.half_life_days * DAY
    touches = [("form:webinar", 15, 0.0), ("email:click", 5, 3 * DAY), ("form:webinar", 15, DAY)]
    now = 10 * DAY
    expected = sum(p * 0.5 ** ((now - at) / half) for _, p, at in touches)
    for order in (touches, touches[::-1], [touches[1], touches[0], touches[2]]):
        got = score.engagement_contributions(SCORING, running(*order), now)
        assert sum(c["points"] for c in got) == pytest.approx(expected, abs=0.02)
        assert {c["factor"]: c["value"] for c in got} == {"form:webinar": 2, "email:click": 1}


def test_negative_signals_subtract():
    eng = running(("form:pricing", 25, 0.0), ("email:unsubscribe", -30, 0.0))
    contributions = score.engagement_contributions(SCORING, eng, 0.0)
    assert sum(c["points"] for c in contributions) == -5


def test_fit_lists_each_contribution():
    fit = score.fit_contributions(
        SCORING,
        seniority="vp",
        employees=1500,
        industry="software",
        country="US",
        free_mail=True,
        known_account=True,
    )
    got = {c["factor"]: c["points"] for c in fit}
    assert got == {
        "seniority": 20,
        "employees": 15,
        "industry": 10,
        "country": 5,
        "free_mail": -15,
        "known_account": 10,
    }


def test_total_is_clamped_and_graded():
    fit = [{"factor": "seniority", "value": "vp", "points": 20}]
    eng = [{"factor": "form:demo-request", "value": 1, "points": 45}]

    def engagement(points: float) -> dict:
        return {"at": 1000.0, "by": {"form:demo-request": [points, 1]}}

    result = score.totals(SCORING, 20, engagement(45), 1000.0)
    assert (result["total"], result["fit"], result["engagement"]) == (65, 20, 45)
    assert result["grade"] == "B"
    assert score.engagement_contributions(SCORING, engagement(45), 1000.0) == eng
    assert fit[0]["points"] + eng[0]["points"] == result["total"]
    assert score.totals(SCORING, 0, engagement(500), 1000.0)["total"] == 100
    assert score.totals(SCORING, 0, engagement(-50), 1000.0)["grade"] == "D"
    assert score.grade(SCORING, 80) == "A" and score.grade(SCORING, 35) == "C"
