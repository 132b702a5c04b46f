"""Event contracts: every reason code, and what a valid record becomes."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pytest
from email_validator import validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from topics.contracts import Invalid, _plain, parse

NOW = time.time()
MAX = 65536


def form(**over):
    event = {
        "event_id": "e1",
        "occurred_at": "2026-11-27T10:00:00+01:00",
        "email": "  Jane.Doe@Example.COM ",
        "form_id": "demo-request",
        "utm": {"source": "google", "campaign": "spring"},
        "consent": {"marketing": True},
        "unknown_extra": {"kept": "ignored"},
    }
    event.update(over)
    return orjson.dumps({k: v for k, v in event.items() if v is not ...})


def test_valid_form_fill_is_normalised():
    out = parse("form_fill", form(), NOW, MAX)
    assert not isinstance(out, Invalid)
    assert out["email"] == "jane.doe@example.com"
    assert out["event_id"] == "e1"
    assert out["at"] == datetime(2026, 11, 27, 9, 0, tzinfo=UTC).timestamp()
    assert out["utm"]["source"] == "google"
    assert out["consent"] is True


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{", "invalid_encoding"),
        (b'{"event_id": ', "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (form(event_id=...), "missing_field"),
        (form(email=...), "missing_field"),
        (form(event_id=42), "invalid_type"),
        (form(employees="ten"), "invalid_type"),
        (form(employees=True), "invalid_type"),
        (form(utm="google"), "invalid_type"),
        (form(consent={"marketing": "yes"}), "invalid_type"),
        (form(country="XX"), "invalid_value"),
        (form(occurred_at="yesterday"), "invalid_time"),
        (form(occurred_at="2026-11-27T10:00:00"), "invalid_time"),
        (form(occurred_at="1970-01-01T00:00:00Z"), "invalid_time"),
        (form(occurred_at="2999-01-01T00:00:00Z"), "invalid_time"),
        (form(email="not-an-address"), "invalid_email"),
        (form(email="a@@b.com"), "invalid_email"),
        (form(first_name="x" * 100_000), "too_large"),
    ],
)
def test_each_malformed_record_has_a_stable_reason(raw, reason):
    out = parse("form_fill", raw, NOW, MAX)
    assert isinstance(out, Invalid), out
    assert out.reason == reason
    assert out.detail


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("2026-11-27t10:00:00z", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),  # lower case
        ("2026-11-27T10:00:00z", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("2026-11-27T10:00:00.1234567891Z", datetime(2026, 11, 27, 10, 0, 0, 123456, UTC)),
    ],
)
def test_every_rfc3339_time_is_taken(written, meant):
    """RFC 3339 allows what Python's fromisoformat refuses: `t` and `z` in lower case, a
    fraction of any length. Report, explain and replay
    read the times on the topics the same way (a contact the worker took is no breach)."""
    from workers.history import record_time

    out = parse("form_fill", form(occurred_at=written), NOW, MAX)
    assert not isinstance(out, Invalid), out
    assert out["at"] == meant.timestamp()
    assert record_time(written) == meant.timestamp()


@pytest.mark.parametrize(
    "written",
    [
        "2026-11-27T10:00:61Z",
        "2026-11-27T24:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-11-27T10:00:00.Z",
        "2026-06-30T23:59:60Z",  # a leap second: none since 2016, and clocks smear them
    ],
)
def test_a_time_rfc3339_does_not_allow_is_invalid(written):
    out = parse("form_fill", form(occurred_at=written), NOW, MAX)
    assert isinstance(out, Invalid) and out.reason == "invalid_time"


def test_email_event_and_ad_click_and_activity():
    base = {"event_id": "x", "occurred_at": "2026-11-27T10:00:00Z"}
    email = parse(
        "email_event", orjson.dumps({**base, "email": "a@b.io", "type": "reply"}), NOW, MAX
    )
    assert email["type"] == "reply"
    bad_type = parse(
        "email_event", orjson.dumps({**base, "email": "a@b.io", "type": "x"}), NOW, MAX
    )
    assert isinstance(bad_type, Invalid) and bad_type.reason == "invalid_value"
    click = parse(
        "ad_click", orjson.dumps({**base, "platform": "google", "click_id": "c"}), NOW, MAX
    )
    assert click["email"] is None and click["click_id"] == "c"
    act = parse(
        "sales_activity", orjson.dumps({**base, "lead_id": "ld_1", "type": "won"}), NOW, MAX
    )
    assert act["type"] == "won"
    missing = parse("sales_activity", orjson.dumps({**base, "type": "won"}), NOW, MAX)
    assert isinstance(missing, Invalid) and missing.reason == "missing_field"


@given(
    st.from_regex(
        r"[a-z0-9._%+'!#-]{1,20}@[a-z0-9.-]{1,20}\.(com|io|de|co\.uk|test|local|x|xn--p1ai)",
        fullmatch=True,
    )
)
@settings(max_examples=1500, deadline=None)
def test_fast_email_path_agrees_with_email_validator(address):
    """The regex shortcut may only accept what the library accepts, unchanged."""
    if _plain(address):
        assert validate_email(address, check_deliverability=False).normalized == address


def test_an_account_keeps_what_is_typed_right_and_says_what_is_not():
    from topics.contracts import account

    value = {"domain": "a.io", "name": 7, "employees": "1200 ", "owner": "ana.silva", "x": 1}
    taken, wrong = account(value)
    assert taken == {"domain": "a.io", "employees": 1200, "owner": "ana.silva", "x": 1}
    assert wrong == ["`name` must be text, not int: left out"]
    for bad in (True, -5, 2.5, "lots"):
        taken, wrong = account({"employees": bad})
        assert "employees" not in taken and len(wrong) == 1, bad
    assert account({"employees": 40.0}) == ({"employees": 40}, [])
