"""Facts derived from a touch: region and time zone of the country, E.164 phone,
seniority from the job title, and the account (firmographics, owner) the lead belongs to."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import phonenumbers
import pytz

from workers.core.identity import company_key

_AREA_REGION = {
    "America": "AMER",
    "Europe": "EMEA",
    "Africa": "EMEA",
    "Atlantic": "EMEA",
    "Asia": "APAC",
    "Australia": "APAC",
    "Pacific": "APAC",
    "Indian": "APAC",
    "Antarctica": "APAC",
}


@lru_cache(maxsize=512)
def country_zone(country: str) -> str | None:
    zones = pytz.country_timezones.get(country)
    return zones[0] if zones else None


def region_of(country: str | None, overrides: Mapping[str, str]) -> str | None:
    """Region from the IANA area of the country's main time zone, with configured exceptions."""
    if not country:
        return None
    if country in overrides:
        return overrides[country]
    zone = country_zone(country)
    return _AREA_REGION.get(zone.split("/", 1)[0]) if zone else None


@lru_cache(maxsize=65536)
def phone_e164(raw: str, country: str | None) -> str | None:
    """E.164 form of a phone number, or None when it cannot be a real number."""
    try:
        number = phonenumbers.parse(raw[:64], country or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class SeniorityMatcher:
    """Job title to seniority level by whole-word keywords; the first configured level wins."""

    def __init__(self, keywords: Mapping[str, tuple[str, ...]]) -> None:
        self._levels = [
            (
                level,
                re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.I),
            )
            for level, words in keywords.items()
            if words
        ]
        self.level = lru_cache(maxsize=16384)(self._level)

    def _level(self, title: str | None) -> str | None:
        if not title:
            return None
        for level, pattern in self._levels:
            if pattern.search(title[:200]):
                return level
        return "individual"


@dataclass
class AccountBook:
    """The `reference.accounts` table: accounts by domain, and a name index for matching."""

    by_domain: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_name: dict[str, str] = field(default_factory=dict)
    version: int = 0  # bumped on every change, so leads know to look their account up again

    def put(self, domain: str, account: dict[str, Any] | None) -> None:
        self.version += 1
        domain = domain.strip().lower()
        old = self.by_domain.pop(domain, None)
        if old and old.get("name"):
            key = company_key(old["name"])
            if self.by_name.get(key) == domain:
                del self.by_name[key]
        if account is None:
            return
        account = {**account, "domain": domain}
        self.by_domain[domain] = account
        if account.get("name"):
            self.by_name[company_key(account["name"])] = domain

    def match(self, domain: str | None, company: str | None) -> tuple[dict[str, Any] | None, str]:
        """The lead's account: by e-mail domain first, then by normalised company name."""
        if domain and domain in self.by_domain:
            return self.by_domain[domain], "domain"
        if company:
            key = company_key(company)
            if key and key in self.by_name:
                return self.by_domain[self.by_name[key]], "company_name"
        return None, "none"


def enrich_lead(
    lead: dict[str, Any],
    accounts: AccountBook,
    seniority: SeniorityMatcher,
    region_overrides: Mapping[str, str],
) -> dict[str, Any]:
    """Derived facts of a lead: its account, region, time zone, phone and seniority. Only
    redone when identity fields or the accounts table changed (most touches are e-mail
    events). Returns the matched account (empty when none)."""
    account, matched_by = accounts.match(
        None if lead.get("free_mail") else lead.get("domain"), lead.get("company_name")
    )
    lead["account_domain"] = account["domain"] if account else None
    lead["account_match"] = matched_by
    lead["enriched"] = accounts.version
    country = lead.get("country") or (account or {}).get("country")
    lead["region"] = region_of(country, region_overrides)
    lead["timezone"] = country_zone(country) if country else None
    if lead.get("phone"):
        lead["phone_e164"] = phone_e164(lead["phone"], country)
    lead["seniority"] = seniority.level(lead.get("job_title"))
    return account or {}
