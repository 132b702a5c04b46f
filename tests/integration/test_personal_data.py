"""A person's data on the reference broker with real workers and the real `leadrouter forget`:
a routed lead erased under traffic leaves nothing of the person in the worker's state, in the
state changelog once compacted, or in a restarted worker; a redelivered old event of the
person is dropped and counted, a new one after the erasure is a new lead; two workers and a
rebalance change nothing of that; an idle lead expires at its time."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from tests.integration.test_live_config import leadrouter
from tests.integration.test_pipeline import ROUTED
from tests.support.metrics import scrape, value
from tests.support.traffic import SteadyForms
from tests.support.worker import patience, wait_until
from topics import catalogue as cat
from workers.core.identity import lead_id

pytestmark = pytest.mark.integration
EMAIL = "ana.persona@acme-corp.com"
LEAD = lead_id(EMAIL)
VISITOR = "v-ana-persona"
PERSONAL = [EMAIL, "Persona", "+49 30 1234567", "VP Marketing", VISITOR]


def iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat()


def ana(event_id: str, at: float) -> dict:
    return {
        "event_id": event_id,
        "occurred_at": iso(at),
        "email": EMAIL,
        "form_id": "demo-request",
        "first_name": "Ana",
        "last_name": "Persona",
        "phone": "+49 30 1234567",
        "job_title": "VP Marketing",
        "anonymous_id": VISITOR,
    }


def names_ana(raw: bytes | None) -> list[str]:
    text = (raw or b"").decode(errors="replace")
    return [p for p in PERSONAL if p in text]


def someone_else(n: int) -> dict:
    """Another person's demo request: traffic beside Ana's, which keeps the changelog growing
    (its segments roll, so compaction can run)."""
    form = ana(f"other-{n}", time.time())
    form.update(email=f"other{n}@globex.com", anonymous_id=None, phone=None)
    form.update(first_name="Other", last_name="Person", job_title="Engineer")
    return form


def compact_quickly(lane) -> None:
    """The changelog rolls a segment every second and is cleaned as soon as it can be, so a
    test sees compaction within the broker's cleaner cycle instead of days."""
    leadrouter(lane, "topics", "apply", "--config", str(lane.config_dir))
    admin = KafkaAdminClient(bootstrap_servers=lane.bootstrap)
    try:
        configs = {
            "segment.ms": "1000",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "1000",
            "min.compaction.lag.ms": "0",
        }
        resource = ConfigResource(
            ConfigResourceType.TOPIC, lane.prefix + cat.CHANGELOG, configs=configs
        )
        admin.alter_configs([resource], incremental=True, raise_on_unknown=False)
    finally:
        admin.close()


def routed_to_ana(lane) -> list[dict]:
    records = lane.topics.read(ROUTED, lambda r: True, patience(30), "routed", drain=True)
    return [v for r in records if (v := orjson.loads(r.value))["lead_id"] == LEAD]


def changelog_naming_ana(lane) -> list[str]:
    records = lane.topics.read(
        [cat.CHANGELOG], lambda r: True, patience(30), "changelog", drain=True
    )
    found = []
    for r in records:
        key = (r.key or b"").decode(errors="replace")
        hits = names_ana(r.value) + ([VISITOR] if VISITOR in key else [])
        if hits:
            found.append(f"offset {r.offset} {key}: {hits}")
    return found


def local_state_naming_ana(data_dir: Path) -> list[str]:
    """Every key and value of the stopped worker's RocksDB stores, read back."""
    from rocksdict import AccessType, Options, Rdict

    found = []
    for current in data_dir.rglob("CURRENT"):
        db = Rdict(str(current.parent), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            for key, raw in db.items():
                if names_ana(key + b" " + raw):
                    found.append(f"{current.parent.name} {key!r}")
        finally:
            db.close()
    return found


def metric(worker, name: str, **labels: str) -> float:
    return value(scrape(worker.metrics_url), name, **labels)


def test_an_erased_lead_leaves_nothing_and_cannot_come_back(lane, started):
    compact_quickly(lane)
    worker = started()
    with SteadyForms(lane, someone_else):
        routed_at = time.time()
        lane.topics.send(cat.FORM_FILLS, ana("ana-1", routed_at))
        lane.topics.flush()
        wait_until(lambda: routed_to_ana(lane), patience(60), "Ana's lead routed")
        assert changelog_naming_ana(lane), "before: the changelog holds her state"
        done = leadrouter(
            lane, "forget", EMAIL, "--reason", "art. 17 #1", "--config", str(lane.config_dir)
        )
        assert LEAD in done.stdout
        wait_until(lambda: metric(worker, "leadrouter_erasures_total") == 1, patience(30), "erased")
        wait_until(lambda: not changelog_naming_ana(lane), patience(120), "the changelog compacted")
    worker.stop()
    assert local_state_naming_ana(worker_data(worker)) == []
    # A worker restored from the changelog knows nothing of her, and refuses her past.
    again = started("w2")
    assert local_state_naming_ana(worker_data(again)) == []
    lane.topics.send(cat.FORM_FILLS, ana("ana-1", routed_at))  # a redelivery
    lane.topics.flush()
    wait_until(
        lambda: metric(again, "leadrouter_erased_events_total") == 1, patience(30), "dropped"
    )
    assert len(routed_to_ana(lane)) == 1, "the old event routed nothing"
    explained = leadrouter(lane, "explain", EMAIL, "--config", str(lane.config_dir), check=False)
    assert explained.returncode == 1 and "was erased at" in explained.stderr
    assert "Persona" not in explained.stdout + explained.stderr
    # A form fill after the erasure: a new lead.
    lane.topics.send(cat.FORM_FILLS, ana("ana-2", time.time()))
    lane.topics.flush()
    wait_until(lambda: len(routed_to_ana(lane)) == 2, patience(60), "the new lead routed")
    assert routed_to_ana(lane)[-1]["trigger_event_id"] == "ana-2"


def worker_data(worker) -> Path:
    return Path(worker.env["LEADROUTER_DATA_DIR"])


def test_two_workers_and_a_rebalance_keep_the_erasure(lane, started):
    first, second = started("w1"), started("w2")
    sent_at = time.time()
    lane.topics.send(cat.FORM_FILLS, ana("ana-1", sent_at))
    lane.topics.flush()
    wait_until(lambda: routed_to_ana(lane), patience(60), "Ana's lead routed")
    leadrouter(lane, "forget", LEAD, "--config", str(lane.config_dir))
    erased = lambda: sum(metric(w, "leadrouter_erasures_total") for w in (first, second))  # noqa: E731
    wait_until(lambda: erased() == 1, patience(30), "erased on the owner")
    third = started("w3")
    first.stop()  # her partition moves (or not): whoever owns it restored the marker
    lane.topics.send(cat.FORM_FILLS, ana("ana-1b", sent_at - 5))  # older than the erasure
    lane.topics.flush()
    dropped = lambda: sum(  # noqa: E731
        metric(w, "leadrouter_erased_events_total") for w in (second, third)
    )
    wait_until(lambda: dropped() == 1, patience(60), "the old event dropped after the rebalance")
    lane.topics.send(cat.FORM_FILLS, ana("ana-2", time.time()))
    lane.topics.flush()
    wait_until(lambda: len(routed_to_ana(lane)) == 2, patience(60), "a new lead")


def test_an_idle_lead_expires_at_its_time(lane, started):
    period = 20.0
    worker = started(extra_env={"LEADROUTER_EXPIRE_AFTER_DAYS": str(period / 86400)})
    sent = time.time()
    lane.topics.send(cat.FORM_FILLS, ana("ana-1", sent))
    lane.topics.flush()
    wait_until(lambda: routed_to_ana(lane), patience(60), "Ana's lead routed")
    expired_at = wait_until(
        lambda: metric(worker, "leadrouter_expired_total", kind="lead") == 1 and time.time(),
        patience(90),
        "the lead expired",
    )
    assert expired_at >= sent + period, "not before its time"
    assert metric(worker, "leadrouter_expired_total", kind="visitor") == 1
    # No marker: an event from before the expiry starts a new lead, routed again.
    lane.topics.send(cat.FORM_FILLS, ana("ana-0", sent - 60))
    lane.topics.flush()
    wait_until(lambda: len(routed_to_ana(lane)) == 2, patience(60), "routed as a new lead")
    assert metric(worker, "leadrouter_erased_events_total") == 0
