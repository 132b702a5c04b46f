"""Event contracts: what marketing systems and sales tools may send, checked per record.

`parse` turns raw bytes into a plain dict or an `Invalid` with a stable reason code; the
record then goes on unchanged to the dead-letter topic with that code. Unknown extra
fields are kept and ignored. Pure functions: no Kafka here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson
import pycountry
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from topics import vocabulary
from topics.vocabulary import AD_CLICK, EMAIL_EVENT, FORM_FILL, SALES_ACTIVITY

EMAIL_TYPES = frozenset(vocabulary.EMAIL_TYPES)
AD_PLATFORMS = frozenset(vocabulary.AD_PLATFORMS)
ACTIVITY_TYPES = frozenset(vocabulary.ACTIVITY_TYPES)
UTM_KEYS = ("source", "medium", "campaign", "term", "content")
MAX_STRING = 2000
MAX_ID = 256
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)

REASONS = vocabulary.INVALID_REASONS


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a record was rejected: `reason` is a stable code, `detail` is for humans."""

    reason: str
    detail: str


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.invalid = Invalid(reason, detail)


def _str(event: dict[str, Any], key: str, *, required: bool = False, limit: int = MAX_STRING):
    value = event.get(key)
    if (  # the usual case first: a trimmed string within the limit
        value.__class__ is str
        and 0 < len(value) <= limit
        and not value[0].isspace()
        and not value[-1].isspace()
    ):
        return value
    if value is None:
        if required:
            raise _Reject("missing_field", f"`{key}` is required")
        return None
    if not isinstance(value, str):
        raise _Reject("invalid_type", f"`{key}` must be a string, not {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise _Reject("missing_field", f"`{key}` is empty")
    if len(value) > limit:
        raise _Reject("invalid_value", f"`{key}` is longer than {limit} characters")
    return value or None


def _int(event: dict[str, Any], key: str) -> int | None:
    value = event.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Reject("invalid_type", f"`{key}` must be an integer, not {type(value).__name__}")
    if not 0 <= value < 2**53:
        raise _Reject("invalid_value", f"`{key}` is out of range")
    return value


def _enum(event: dict[str, Any], key: str, allowed: frozenset[str]) -> str:
    value = _str(event, key, required=True, limit=64)
    if value not in allowed:
        raise _Reject("invalid_value", f"`{key}` must be one of {', '.join(sorted(allowed))}")
    return value


# RFC 3339 date-time: the offset is required and nothing may stand between it and the time
# (Python's fromisoformat alone accepts more than that).
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def rfc3339_rest(raw: str) -> datetime:
    """What `fromisoformat` leaves to RFC 3339 (tried only when it refuses): a lower-case
    `t` or `z`, and more than six digits of a second. (A leap second's :60 stays refused:
    none has been inserted since 2016, and clocks smear them.) Also how report, explain and
    replay read the times of the records they find, so they read every time the worker
    took. ValueError when it is none."""
    text = raw.upper()
    head, _, rest = text.partition(".")
    if rest:  # the fraction: six digits are a microsecond, the rest is below it
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    return datetime.fromisoformat(text)


def _time(event: dict[str, Any], now: float) -> float:
    raw = event.get("occurred_at")
    if raw is None:
        raise _Reject("missing_field", "`occurred_at` is required")
    if not isinstance(raw, str):
        raise _Reject("invalid_type", "`occurred_at` must be an RFC 3339 string")
    if not _RFC3339.fullmatch(raw):
        raise _Reject("invalid_time", "`occurred_at` is not an RFC 3339 date-time with offset")
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        try:
            when = rfc3339_rest(raw)
        except ValueError:
            raise _Reject("invalid_time", "`occurred_at` is not a valid date-time") from None
    if when < EARLIEST or when.timestamp() > now + FUTURE_SLACK.total_seconds():
        raise _Reject("invalid_time", "`occurred_at` is implausibly far in the past or future")
    return when.timestamp()


# Plain ASCII addresses (nearly all of them) that email-validator would accept unchanged;
# anything else (quoting, IDN, odd domains) is decided by email-validator itself.
_PLAIN_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)


def _plain(candidate: str) -> bool:
    if not _PLAIN_EMAIL.fullmatch(candidate):
        return False
    local, _, domain = candidate.rpartition("@")
    return (
        len(local) <= 64
        and "--" not in domain  # punycode and its look-alikes: the library decides
        and domain.rpartition(".")[2] not in SPECIAL_USE_DOMAIN_NAMES
    )


@lru_cache(maxsize=65536)
def normalise_email(raw: str) -> str | None:
    """Trimmed, lower-cased, syntax-checked address, or None; cached because leads repeat."""
    candidate = raw.strip().lower()
    if len(candidate) > 254 or "@" not in candidate:
        return None
    if _plain(candidate):
        return candidate
    try:
        return validate_email(candidate, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def _email(event: dict[str, Any], *, required: bool) -> str | None:
    raw = _str(event, "email", required=required, limit=320)
    if raw is None:
        return None
    email = normalise_email(raw)
    if email is None:
        raise _Reject("invalid_email", "`email` is not a valid address")
    return email


def _dict(event: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = event.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Reject("invalid_type", f"`{key}` must be an object")
    return value


def _form_fill(event: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "email": _email(event, required=True),
        "form_id": _str(event, "form_id", required=True, limit=128),
    }
    for key in ("first_name", "last_name", "company", "job_title", "phone", "page_url"):
        out[key] = _str(event, key)
    out["anonymous_id"] = _str(event, "anonymous_id", limit=MAX_ID)
    country = _str(event, "country", limit=8)
    if country is not None:
        country = country.upper()
        if country not in COUNTRIES:
            raise _Reject("invalid_value", "`country` is not an ISO 3166-1 alpha-2 code")
    out["country"] = country
    out["employees"] = _int(event, "employees")
    utm = _dict(event, "utm")
    out["utm"] = {k: _str(utm, k, limit=256) for k in UTM_KEYS} if utm is not None else None
    consent = _dict(event, "consent")
    marketing = None
    if consent is not None:
        marketing = consent.get("marketing")
        if marketing is not None and not isinstance(marketing, bool):
            raise _Reject("invalid_type", "`consent.marketing` must be a boolean")
    out["consent"] = marketing
    return out


def _email_event(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "email": _email(event, required=True),
        "type": _enum(event, "type", EMAIL_TYPES),
        "campaign": _str(event, "campaign", limit=256),
        "url": _str(event, "url"),
    }


def _ad_click(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "platform": _enum(event, "platform", AD_PLATFORMS),
        "click_id": _str(event, "click_id", required=True, limit=MAX_ID),
        "campaign": _str(event, "campaign", limit=256),
        "ad_group": _str(event, "ad_group", limit=256),
        "keyword": _str(event, "keyword", limit=256),
        "cost_micros": _int(event, "cost_micros"),
        "anonymous_id": _str(event, "anonymous_id", limit=MAX_ID),
        "email": _email(event, required=False),
        "landing_url": _str(event, "landing_url"),
    }


def _sales_activity(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "lead_id": _str(event, "lead_id", required=True, limit=MAX_ID),
        "rep_id": _str(event, "rep_id", limit=MAX_ID),
        "type": _enum(event, "type", ACTIVITY_TYPES),
        "reason": _str(event, "reason"),
    }


_PARSERS = {
    FORM_FILL: _form_fill,
    EMAIL_EVENT: _email_event,
    AD_CLICK: _ad_click,
    SALES_ACTIVITY: _sales_activity,
}


def parse(kind: str, raw: bytes | None, now: float, max_bytes: int) -> dict[str, Any] | Invalid:
    """Decode and check one record of `kind`; return its normalised fields or why not.

    The result carries `event_id`, `at` (occurred, epoch seconds) and the kind's fields.
    """
    if raw is None:
        return Invalid("invalid_json", "record has no value")
    if len(raw) > max_bytes:
        return Invalid("too_large", f"record is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return Invalid("invalid_encoding", "record is not UTF-8")
        return Invalid("invalid_json", f"not JSON: {str(exc)[:200]}")
    if not isinstance(event, dict):
        return Invalid("not_an_object", f"expected a JSON object, got {type(event).__name__}")
    try:
        fields = _PARSERS[kind](event)
        fields["event_id"] = _str(event, "event_id", required=True, limit=MAX_ID)
        fields["at"] = _time(event, now)
    except _Reject as rejected:
        return rejected.invalid
    return fields


ACCOUNT_TEXT = ("domain", "name", "industry", "country", "owner")


def account(value: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A `reference.accounts` value typed as the Account contract says, and what was wrong
    with it. Other writers than `leadrouter accounts load` (a CRM sync) reach this topic;
    a wrongly typed field failed the scoring of every lead of its domain. Such a field is
    dropped and said, the rest of the account kept (its owner still routes); a whole
    number written as 500.0 or "500" is taken as the number it is."""
    out, wrong = dict(value), []
    for key in ACCOUNT_TEXT:
        text = out.get(key)
        if text is not None and not isinstance(text, str):
            wrong.append(f"`{key}` must be text, not {type(text).__name__}: left out")
            del out[key]
    employees = out.get("employees")
    if employees is not None:
        number = _whole(employees)
        if number is None:
            wrong.append(f"`employees` must be a whole number, not {employees!r:.40}: left out")
            del out["employees"]
        else:
            out["employees"] = number
    return out, wrong


def _whole(value: Any) -> int | None:
    """A count of people: an int, or a float or digits that are one; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
