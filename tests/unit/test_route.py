"""Routing rules: every operator, combinators, first match wins, bounded patterns."""

from __future__ import annotations

import time

import pytest

from workers.core.route import choose_queue, holds
from workers.settings import Condition, load_config

LEAD = {
    "region": "EMEA",
    "company.employees": 1200,
    "seniority": "vp",
    "email_domain": "acme.com",
    "free_mail": False,
    "score": 72.5,
    "account.owner": None,
}


def c(**kw) -> Condition:
    return Condition.model_validate(kw)


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ({"field": "region", "eq": "EMEA"}, True),
        ({"field": "region", "eq": "AMER"}, False),
        ({"field": "region", "in": ["AMER", "EMEA"]}, True),
        ({"field": "region", "not_in": ["AMER", "EMEA"]}, False),
        ({"field": "company.employees", "gte": 1000}, True),
        ({"field": "company.employees", "lte": 1000}, False),
        ({"field": "missing", "gte": 0}, False),
        ({"field": "free_mail", "gte": 0}, False),  # a bool is not a number
        ({"field": "account.owner", "exists": False}, True),
        ({"field": "region", "exists": True}, True),
        ({"field": "email_domain", "matches": r"\.com$"}, True),
        ({"field": "email_domain", "matches": r"^gmail"}, False),
        ({"field": "score", "matches": "7"}, False),  # patterns only test strings
        ({"all": [{"field": "region", "eq": "EMEA"}, {"field": "seniority", "eq": "vp"}]}, True),
        ({"all": [{"field": "region", "eq": "EMEA"}, {"field": "seniority", "eq": "ceo"}]}, False),
        ({"any": [{"field": "region", "eq": "APAC"}, {"field": "seniority", "eq": "vp"}]}, True),
        ({"not": {"field": "free_mail", "eq": True}}, True),
        ({"always": True}, True),
    ],
)
def test_operators(cond, expected):
    assert holds(c(**cond), LEAD) is expected


def test_first_match_wins_and_explains():
    routing = load_config().routing
    queue, rule, why = choose_queue(routing, {**LEAD, "trigger": "mql"})
    assert (queue, rule) == ("enterprise-emea", "enterprise-emea")
    assert "company.employees=1200" in why and "region='EMEA'" in why
    fast = choose_queue(routing, {**LEAD, "trigger": "fast_lane"})
    assert fast[:2] == ("fast-lane", "fast-lane")
    small = choose_queue(routing, {"trigger": "mql", "company.employees": 5, "free_mail": True})
    assert small[:2] == ("smb", "default")


def test_catastrophic_pattern_runs_in_linear_time():
    cond = c(field="email_domain", matches="(a+)+$")
    start = time.perf_counter()
    assert holds(cond, {"email_domain": "a" * 5000 + "!"}) is False
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "bad",
    [
        {"field": "x"},
        {"field": "x", "eq": 1, "gte": 2},
        {"all": [], "any": []},
        {"field": "x", "matches": "("},
        {"field": "x", "matches": "a" * 500},
        {"field": "x", "matches": r"(a)\1"},  # backreferences are not regular: RE2 refuses
        {"field": "x", "unknown_op": 1},
    ],
)
def test_bad_conditions_are_rejected(bad):
    with pytest.raises(ValueError):
        Condition.model_validate(bad)
