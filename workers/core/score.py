"""Lead score: fit (who the lead is) plus engagement (what they did, decaying with a
half-life), with every contribution listed so a rep can see why a lead scored what it did."""

from __future__ import annotations

from typing import Any

from workers.settings import Scoring

DAY = 86400.0


def touch_points(scoring: Scoring, channel: str, detail: str | None) -> tuple[str, float]:
    """Label and undecayed points of one touch, from the configured tables."""
    rules = scoring.engagement
    if channel == "form":
        return f"form:{detail}", rules.forms.get(detail or "", rules.form_default)
    if channel == "email":
        return f"email:{detail}", rules.email.get(detail or "", 0.0)
    return "ad_click", rules.ad_click


def grade(scoring: Scoring, total: float) -> str:
    g = scoring.grades
    return "A" if total >= g.A else "B" if total >= g.B else "C" if total >= g.C else "D"


def fit_contributions(
    scoring: Scoring,
    *,
    seniority: str | None,
    employees: int | None,
    industry: str | None,
    country: str | None,
    free_mail: bool,
    known_account: bool,
) -> list[dict[str, Any]]:
    rules = scoring.fit
    out: list[dict[str, Any]] = []
    if seniority is not None and seniority in rules.seniority:
        out.append(
            {"factor": "seniority", "value": seniority, "points": rules.seniority[seniority]}
        )
    if employees is not None:
        for band in rules.employees:
            if employees >= band.gte:
                out.append({"factor": "employees", "value": employees, "points": band.points})
                break
    if industry and industry in rules.industry:
        out.append({"factor": "industry", "value": industry, "points": rules.industry[industry]})
    if country and country in rules.country:
        out.append({"factor": "country", "value": country, "points": rules.country[country]})
    if free_mail and rules.free_mail:
        out.append({"factor": "free_mail", "value": True, "points": rules.free_mail})
    if known_account and rules.known_account:
        out.append({"factor": "known_account", "value": True, "points": rules.known_account})
    return out


def add_touch(
    engagement: dict[str, Any], scoring: Scoring, label: str, points: float, at: float
) -> None:
    """Fold one touch into the lead's running engagement: per kind of touch, the points
    decayed to one reference time. Exact (decay is multiplicative), and the lead's state
    stays the size of the touch vocabulary however many touches it has had."""
    if points == 0:
        return
    half_life = scoring.engagement.half_life_days * DAY
    ref = engagement.get("at")
    by = engagement.setdefault("by", {})
    if ref is None:
        engagement["at"] = ref = at
    elif at > ref:  # move the reference forward: everything so far decays
        factor = 0.5 ** ((at - ref) / half_life)
        for entry in by.values():
            entry[0] *= factor
        engagement["at"] = ref = at
    entry = by.setdefault(label, [0.0, 0])
    entry[0] += points * 0.5 ** ((ref - at) / half_life)
    entry[1] += 1


def engagement_contributions(
    scoring: Scoring, engagement: dict[str, Any], now: float
) -> list[dict[str, Any]]:
    """Each kind of touch's points halved per half-life of age. Age counts to `now`, the
    time of the touch being scored, so a replay scores the same."""
    ref = engagement.get("at")
    if ref is None:
        return []
    factor = 0.5 ** (max(0.0, now - ref) / (scoring.engagement.half_life_days * DAY))
    return [
        {"factor": label, "value": count, "points": round(points * factor, 2)}
        for label, (points, count) in engagement.get("by", {}).items()
    ]


def totals(scoring: Scoring, fit_points: float, engagement: dict[str, Any], now: float) -> dict:
    """The score without its explanation, for the many touches that route nobody; equal to
    the sum of the explanation's figures (`engagement_contributions`) because it rounds each
    contribution the same way."""
    ref = engagement.get("at")
    engagement_total = 0.0
    if ref is not None:
        factor = 0.5 ** (max(0.0, now - ref) / (scoring.engagement.half_life_days * DAY))
        engagement_total = sum(round(p * factor, 2) for p, _ in engagement["by"].values())
    fit_total = round(fit_points, 2)
    engagement_total = round(engagement_total, 2)
    total = round(min(100.0, max(0.0, fit_total + engagement_total)), 2)
    return {
        "total": total,
        "fit": fit_total,
        "engagement": engagement_total,
        "grade": grade(scoring, total),
    }


def fit(scoring: Scoring, lead: dict[str, Any], account: dict[str, Any]) -> list[list[Any]]:
    """The lead's fit contributions as the lead's state keeps them: [factor, value, points]."""
    return [
        [c["factor"], c["value"], c["points"]]
        for c in fit_contributions(
            scoring,
            seniority=lead.get("seniority"),
            employees=lead.get("employees") or account.get("employees"),
            industry=account.get("industry"),
            country=lead.get("country") or account.get("country"),
            free_mail=bool(lead.get("free_mail")),
            known_account=bool(account),
        )
    ]
