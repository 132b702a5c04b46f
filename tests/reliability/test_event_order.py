"""Issue 15, point 0: event order, not fetch order. A backlog waits for a restarted worker,
written in the worst order for it (each lead's later e-mail touches first, then its form,
then the anonymous ad click that came before the form), with record times as the events
happened; the worker is killed once while it works through it. Every lead is then routed
once, attributed to its ad click, and its rep hears of both e-mail touches that followed
the form, under both guarantees."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from tests.reliability.conftest import Rig
from tests.support.faults import ROUTED, Record, producer_config, read_all
from tests.support.worker import wait_until
from topics import catalogue as cat
from workers.core.identity import lead_id

pytestmark = pytest.mark.integration
LEADS = 600


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


def backlog(tag: str, start: float) -> tuple[list[tuple[str, bytes, dict[str, Any]]], dict]:
    """Per lead: ad click at t, form naming its visitor at t+2, e-mail click at t+3.5 and
    open at t+5; listed e-mails first, then forms, then ad clicks."""
    emails, forms, clicks = [], [], []
    expected = {}
    for n in range(LEADS):
        at = start + n * 0.01
        email = f"{tag}.{n}@order{n % 31}.com"
        visitor = f"{tag}-visitor-{n}"
        lid = lead_id(email)
        later = [f"{tag}-mail-{n}-{kind}" for kind in ("click", "open")]
        expected[lid] = set(later)
        clicks.append(
            (
                cat.AD_CLICKS,
                visitor.encode(),
                {
                    "event_id": f"{tag}-ad-{n}",
                    "occurred_at": iso(at),
                    "platform": "linkedin",
                    "click_id": f"{tag}-ad-{n}",
                    "anonymous_id": visitor,
                    "campaign": "spring-launch",
                },
            )
        )
        forms.append(
            (
                cat.FORM_FILLS,
                lid.encode(),
                {
                    "event_id": f"{tag}-form-{n}",
                    "occurred_at": iso(at + 2),
                    "email": email,
                    "form_id": "contact-sales",
                    "anonymous_id": visitor,
                },
            )
        )
        for delay, event_id in zip((3.5, 5.0), later, strict=True):
            emails.append(
                (
                    cat.EMAIL_EVENTS,
                    lid.encode(),
                    {
                        "event_id": event_id,
                        "occurred_at": iso(at + delay),
                        "email": email,
                        "type": event_id.rsplit("-", 1)[1],
                    },
                )
            )
    return [*emails, *forms, *clicks], expected


def produce_as_it_happened(rig: Rig, records: list[tuple[str, bytes, dict[str, Any]]]) -> None:
    """Each record's time is its event's, as a marketing system that sends when it happens."""
    producer = Producer(producer_config(rig.bootstrap))
    for topic, key, event in records:
        at = datetime.fromisoformat(event["occurred_at"]).timestamp()
        producer.produce(rig.prefix + topic, orjson.dumps(event), key, timestamp=int(at * 1000))
        producer.poll(0)
    assert producer.flush(60) == 0


def routed_by_lead(rig: Rig) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """Each lead's routed records, a byte-identical repeat (at_least_once) left out; and
    how many repeats there were."""
    seen: set[tuple[str, bytes | None, bytes | None]] = set()
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    repeats = 0
    records: list[Record] = read_all(rig.bootstrap, [rig.prefix + t for t in ROUTED])
    for rec in records:
        same = (rec.topic, rec.key, rec.value)
        if same in seen:
            repeats += 1
            continue
        seen.add(same)
        value = orjson.loads(rec.value)
        out[value["lead_id"]].append(value)
    return out, repeats


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_a_backlog_read_out_of_order_keeps_first_touch_and_every_later_touch(
    rig: Rig, figures, guarantee: str
):
    env = {
        "LEADROUTER_PROCESSING_GUARANTEE": "auto" if guarantee == "exactly_once" else guarantee,
        # small batches: the backlog is read over many, partition by partition as fetched
        "LEADROUTER_BATCH_SIZE": "50",
    }
    worker = rig.worker("w1", extra_env=env).launch().wait_ready()  # makes the topics
    worker.kill()
    tag = rig.prefix.rstrip(".")
    records, expected = backlog(tag, time.time() - 30)
    produce_as_it_happened(rig, records)
    worker.launch().wait_ready()
    time.sleep(random.Random(guarantee).uniform(0.2, 1.0))  # somewhere in the backlog
    worker.kill()
    worker.launch().wait_ready()

    last = {"count": -1, "since": time.monotonic()}

    def settled() -> tuple[dict[str, list[dict[str, Any]]], int] | None:
        """Every lead routed with its two touches; or every lead routed and nothing new for
        5 s (then the assertions below say what is missing)."""
        routed, repeats = routed_by_lead(rig)
        count = sum(len(v) for v in routed.values())
        if count != last["count"]:
            last.update(count=count, since=time.monotonic())
        quiet = time.monotonic() - last["since"] > 5 and len(routed) >= LEADS
        return (routed, repeats) if count >= LEADS * 3 or quiet else None

    routed, repeats = wait_until(settled, 120, "every lead routed")
    log = worker.log_text()
    worker.stop()
    assert "Traceback" not in log
    assert f"({guarantee})" in log
    problems = []
    attributed = activities = 0
    for lid, wanted in expected.items():
        kinds = Counter(v["event"] for v in routed.get(lid, []))
        assigned = [v for v in routed.get(lid, []) if v["event"] == "lead.assigned"]
        touched = {v["trigger_event_id"] for v in routed[lid] if v["event"] == "lead.activity"}
        if kinds != Counter({"lead.assigned": 1, "lead.activity": 2}):
            problems.append(f"{lid}: {dict(kinds)}")
        if assigned and (assigned[0]["source"]["channel"], assigned[0]["source"]["platform"]) == (
            "ad",
            "linkedin",
        ):
            attributed += 1
        else:
            problems.append(f"{lid}: source {assigned[0]['source'] if assigned else None}")
        activities += len(touched & wanted)
        if touched != wanted:
            problems.append(f"{lid}: activities {sorted(touched)}")
    figures(
        {
            "leads": LEADS,
            "routed": sum(1 for v in routed.values() for r in v if r["event"] == "lead.assigned"),
            "attributed_to_ad": attributed,
            "activities": activities,
            "repeated": repeats,
        }
    )
    assert not problems, f"{len(problems)} problems: {problems[:10]}"
    if guarantee == "exactly_once":
        assert repeats == 0
