"""Nobody left waiting, on the reference broker with a real worker: a lead routed while the
fast lane's only rep is off waits in the queue desk's line and is handed to her when her
working day begins during the test; a lead whose SLA of seconds passes with no touch is
reassigned to the next rep and published as `lead.reassigned`.

The working day starts a few seconds after the lead is routed (a rep's hours may be given to
the second); the test waits for the hand-out with a deadline, and checks from the records
that it came at the start of the day, not before."""

from __future__ import annotations

import signal
import time
from datetime import datetime

import orjson
import pytest
import yaml

from tests.integration.test_pipeline import ROUTED, form
from tests.support.metrics import scrape, value
from tests.support.worker import patience, wait_until, working_day_starting_in
from workers.core.identity import lead_id

pytestmark = pytest.mark.integration
# Time from sending the lead to its rep's working day: enough to route it (and see it wait)
# first on a loaded machine; the test checks that it did.
DAY_STARTS_IN = patience(25)
SLA_SECONDS = patience(10)


def edit(path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def records(lane, until, what):
    found = lane.topics.read(
        ROUTED, lambda r: until([orjson.loads(x.value) for x in r]), patience(60), what
    )
    return [orjson.loads(r.value) for r in found]


def test_a_waiting_lead_is_handed_out_when_the_reps_day_begins(lane, started):
    zone, hours, day_starts = working_day_starting_in(DAY_STARTS_IN)

    def one_rep_starting_soon(reps):
        reps["reps"]["ana.silva"].update(timezone=zone, working_hours=hours)

    edit(lane.config_dir / "reps.yaml", one_rep_starting_soon)
    edit(
        lane.config_dir / "routing.yaml",
        lambda r: r["queues"]["fast-lane"].update(reps=["ana.silva"]),
    )
    worker = started()
    email = "early@acme-corp.com"
    lane.topics.send("marketing.form-fills", form(email, "demo-request"))
    lane.topics.flush()
    waiting = records(lane, lambda r: len(r) >= 1, "the lead routed to the line")
    assert [(v["event"], v["rep_id"]) for v in waiting] == [("lead.assigned", None)]
    assert "waits in fast-lane's line (1 waiting)" in waiting[0]["reason"]["trace"][-1]
    assert datetime.fromisoformat(waiting[0]["routed_at"]).timestamp() < day_starts, (
        "routed after the rep's day began: too slow a machine for this test "
        "(LEADROUTER_TEST_SLOWDOWN stretches it)"
    )
    wait_until(
        lambda: (
            value(scrape(worker.metrics_url), "leadrouter_leads_waiting", queue="fast-lane") == 1
        ),
        patience(30),
        "the waiting lead in the metrics",
    )
    # The line and its timer live in the changelog: a worker killed while the lead waits is
    # replaced by one with no local state, which restores them and hands the lead out once.
    worker.stop(signal.SIGKILL)
    worker = started("w2")
    assert value(scrape(worker.metrics_url), "leadrouter_leads_waiting", queue="fast-lane") == 1
    assert time.time() < day_starts, "restarted after the rep's day began: too slow a machine"

    handed = lane.topics.read(
        ROUTED, lambda r: len(r) >= 2, patience(60), "the hand-out", group=lane.group
    )
    handed = [orjson.loads(r.value) for r in handed]
    assert [(v["event"], v["rep_id"], v["lead_id"]) for v in handed] == [
        ("lead.assigned", None, lead_id(email)),
        ("lead.assigned", "ana.silva", lead_id(email)),
    ]
    given = handed[1]
    assert given["routed_at"] == waiting[0]["routed_at"]  # speed to lead runs from routing
    sla_from = datetime.fromisoformat(given["sla_due_at"]).timestamp() - 5 * 60
    assert sla_from >= day_starts - 0.01, "handed out before the rep's day began"
    assert given["reason"]["trace"][1].startswith("waited ")

    def emptied():
        s = scrape(worker.metrics_url)
        return s if value(s, "leadrouter_leads_waiting", queue="fast-lane") == 0 else None

    samples = wait_until(emptied, patience(30), "the line to be empty in the metrics")
    assert value(samples, "leadrouter_lead_wait_seconds_count", queue="fast-lane") == 1


def test_a_lead_nobody_touches_within_its_sla_is_reassigned(lane, started):
    def short_sla_reassign(routing):
        routing["queues"]["fast-lane"].update(
            sla_minutes=SLA_SECONDS / 60,
            reps=["ana.silva", "ben.carter"],
            on_sla_breach={"action": "reassign", "max_reassignments": 1},
        )

    edit(lane.config_dir / "routing.yaml", short_sla_reassign)
    worker = started()
    email = "ignored@acme-corp.com"
    lane.topics.send("marketing.form-fills", form(email, "demo-request"))
    lane.topics.flush()
    found = records(lane, lambda r: any(v["event"] == "lead.reassigned" for v in r), "reassignment")
    first, moved = found[0], next(v for v in found if v["event"] == "lead.reassigned")
    assert first["event"] == "lead.assigned" and first["rep_id"] == "ana.silva"
    assert (moved["lead_id"], moved["rep_id"], moved["previous_rep_id"]) == (
        lead_id(email),
        "ben.carter",
        "ana.silva",
    )
    assert moved["routed_at"] == first["routed_at"]
    breach = datetime.fromisoformat(first["sla_due_at"]).timestamp()
    given = datetime.fromisoformat(moved["sla_due_at"]).timestamp() - SLA_SECONDS
    assert given >= breach - 0.01, "reassigned before the SLA had passed"

    def counted():
        s = scrape(worker.metrics_url)
        labels = {"queue": "fast-lane", "action": "reassign", "outcome": "reassigned"}
        return s if value(s, "leadrouter_leads_reassigned_total", **labels) else None

    samples = wait_until(counted, patience(30), "the reassignment in the metrics")
    labels = {"queue": "fast-lane", "action": "reassign", "outcome": "reassigned"}
    assert value(samples, "leadrouter_leads_reassigned_total", **labels) == 1
    assert value(samples, "leadrouter_sla_breaches_total", queue="fast-lane") == 1
