"""Routing rules: an ordered list, first match wins, each naming a sales queue.

Rules are data (see config/routing.yaml), interpreted here; patterns run on RE2, whose
time is linear in the input (values are bounded at ingest), so no pattern can stall.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from workers.settings import Condition, Routing, compile_pattern


@lru_cache(maxsize=256)
def _pattern(source: str) -> Any:
    return compile_pattern(source)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def holds(cond: Condition, lead: Mapping[str, Any]) -> bool:
    """Whether `cond` is true of the flat lead view (dotted keys such as company.employees)."""
    if cond.field is not None:
        value = lead.get(cond.field)
        if cond.exists is not None:
            return (value is not None) == cond.exists
        if "eq" in cond.model_fields_set:
            return value == cond.eq
        if cond.in_ is not None:
            return value in cond.in_
        if cond.not_in is not None:
            return value not in cond.not_in
        if cond.gte is not None:
            number = _number(value)
            return number is not None and number >= cond.gte
        if cond.lte is not None:
            number = _number(value)
            return number is not None and number <= cond.lte
        if cond.matches is not None:
            return isinstance(value, str) and bool(_pattern(cond.matches).search(value))
        return False
    if cond.all is not None:
        return all(holds(c, lead) for c in cond.all)
    if cond.any is not None:
        return any(holds(c, lead) for c in cond.any)
    if cond.not_ is not None:
        return not holds(cond.not_, lead)
    return bool(cond.always)


def _explain(cond: Condition, lead: Mapping[str, Any]) -> str:
    if cond.field is not None:
        op = next(
            k
            for k in ("eq", "in_", "not_in", "gte", "lte", "exists", "matches")
            if getattr(cond, k) is not None or (k == "eq" and "eq" in cond.model_fields_set)
        )
        expected = getattr(cond, op)
        return f"{cond.field}={lead.get(cond.field)!r} {op.rstrip('_')} {expected!r}"
    if cond.all is not None:
        return " and ".join(_explain(c, lead) for c in cond.all)
    if cond.any is not None:
        return " or ".join(_explain(c, lead) for c in cond.any if holds(c, lead))
    if cond.not_ is not None:
        return f"not ({_explain(cond.not_, lead)})"
    return "always"


def choose_queue(routing: Routing, lead: Mapping[str, Any]) -> tuple[str, str, str]:
    """(queue, rule name, why): the first rule that holds, else the default queue."""
    for rule in routing.rules:
        if holds(rule.when, lead):
            return rule.queue, rule.name, f"rule {rule.name} matched: {_explain(rule.when, lead)}"
    return routing.default_queue, "default", "no rule matched: default queue"


def facts(
    lead: Mapping[str, Any], account: Mapping[str, Any], touch_form: str | None, trigger: str
) -> dict[str, Any]:
    """The flat lead fields that routing rules may test (the names in config/routing.yaml)."""
    first = lead.get("first_touch") or {}
    s = lead["score"]
    return {
        "trigger": trigger,
        "trigger_form": touch_form,
        "region": lead.get("region"),
        "country": lead.get("country") or account.get("country"),
        "seniority": lead.get("seniority"),
        "score": s["total"],
        "fit": s["fit"],
        "engagement": s["engagement"],
        "grade": s["grade"],
        "free_mail": bool(lead.get("free_mail")),
        "email_domain": lead.get("domain"),
        "company.domain": account.get("domain") or lead.get("domain"),
        "company.name": account.get("name") or lead.get("company_name"),
        "company.employees": account.get("employees") or lead.get("employees"),
        "company.industry": account.get("industry"),
        "company.country": account.get("country") or lead.get("country"),
        "account.owner": account.get("owner"),
        "source.channel": first.get("channel"),
        "source.platform": first.get("platform"),
        "source.utm_source": first.get("utm_source"),
        "source.utm_campaign": first.get("utm_campaign"),
    }


def decide(
    routing: Routing,
    owner_queue: Mapping[str, str],
    lead: Mapping[str, Any],
    account: Mapping[str, Any],
    touch_form: str | None,
    trigger: str,
) -> tuple[str, str, str | None, str]:
    """(queue, rule, preferred rep, why): the account owner's queue where that takes
    precedence and the owner is a rep of some queue, else the first matching rule."""
    owner = account.get("owner")
    if routing.account_owner_precedence and owner in owner_queue:
        queue = owner_queue[owner]
        why = f"account {lead['account_domain']} is owned by {owner}: queue {queue}"
        return queue, "account-owner", owner, why
    queue, rule, why = choose_queue(routing, facts(lead, account, touch_form, trigger))
    return queue, rule, None, why
