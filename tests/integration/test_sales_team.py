"""The simulated sales team, a Faust app, on the reference broker: a real worker routes
leads, the app reads them with the Record models of `topics.records` and answers on
`sales.activities`, and the worker counts the answers. It reads committed leads only, and
it stops cleanly, on its own and inside `run_simulation`."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import orjson
import pytest
from confluent_kafka import Consumer, Producer

from tests.integration.test_pipeline import ROUTED, form
from tests.support.faults import watermarks
from tests.support.metrics import scrape, value
from tests.support.worker import LEADROUTER, wait_until
from topics import catalogue as cat
from workers.admin import ensure_topics
from workers.sales_team import SalesTeamApp
from workers.settings import Config, load_config
from workers.simulate import SalesTeam, run_simulation

pytestmark = pytest.mark.integration

FAST = 0.000002  # sales delays scaled: a week's wait becomes about a second


def lane_config(lane) -> Config:
    return load_config(
        lane.config_dir,
        env={
            "KAFKA_BOOTSTRAP_SERVERS": lane.bootstrap,
            "LEADROUTER_TOPIC_PREFIX": lane.prefix,
            "LEADROUTER_GROUP_ID": lane.group,
        },
    )


def test_faust_sales_team_answers_routed_leads(lane, started):
    worker = started()
    config = lane_config(lane)
    before = set(threading.enumerate())
    sales = SalesTeamApp(config, SalesTeam(config, seed=4, delay_scale=FAST)).start()
    try:
        emails = [f"buyer{n}@acme-corp.com" for n in range(10)]
        for email in emails:
            lane.topics.send(cat.FORM_FILLS, form(email, "demo-request"), key=email.encode())
        lane.topics.flush()
        routed = {
            orjson.loads(r.value)["lead_id"]
            for r in lane.topics.read(ROUTED, lambda r: len(r) >= 10, 90, "ten routed leads")
        }
        assert len(routed) == 10
        wait_until(lambda: sales.counts.routed_seen >= 10, 90, "the app to read every lead")
        # 12% of leads are forgotten on purpose (the SLA timer's business); not nine in ten
        wait_until(lambda: sales.team.queue == [] and sales.counts.sales >= 5, 60, "answers")
        answers = [
            orjson.loads(r.value)
            for r in lane.topics.read(
                [cat.SALES_ACTIVITIES],
                lambda r: len(r) >= sales.counts.sales,
                60,
                "every answer on sales.activities",
                drain=True,
            )
        ]
        assert sales.error is None
        assert sales.counts.routed_seen == 10
        assert len(answers) == sales.counts.sales
        assert {a["lead_id"] for a in answers} <= routed
        assert {a["type"] for a in answers} >= {"contacted"}
        assert all(a["rep_id"] for a in answers)

        def counted():
            samples = scrape(worker.metrics_url)
            total = value(samples, "leadrouter_sales_activities_total")
            return samples if total >= len(answers) else None

        samples = wait_until(counted, 60, "the worker to count every answer")
        assert value(samples, "leadrouter_sales_activities_total", outcome="ok") == len(answers)
        contacted = {a["lead_id"] for a in answers if a["type"] in ("contacted", "meeting_booked")}
        assert value(samples, "leadrouter_speed_to_lead_seconds_count") == len(contacted)
    finally:
        sales.stop()
    assert not sales._thread.is_alive()
    assert set(threading.enumerate()) - before == set()  # its own and its consumer's


def test_sales_team_reads_committed_leads_only(lane):
    """A lead whose transaction was aborted is never seen; the committed one after it is."""
    config = lane_config(lane)
    ensure_topics(config)
    sales = SalesTeamApp(config, SalesTeam(config, seed=1, delay_scale=FAST)).start()
    try:
        assert sales.wait_ready(60), sales.error
        producer = Producer(
            {"bootstrap.servers": lane.bootstrap, "transactional.id": f"{lane.group}-test"}
        )
        producer.init_transactions(30)
        topic = lane.prefix + cat.routed_topic("fast-lane")
        for lead_id, commit in (("ld_aborted", False), ("ld_committed", True)):
            producer.begin_transaction()
            lead = {**routed_lead(), "lead_id": lead_id}
            producer.produce(topic, orjson.dumps(lead), lead_id.encode(), partition=0)
            producer.flush(30)
            if commit:
                producer.commit_transaction(30)
            else:
                producer.abort_transaction(30)
        # Same partition, aborted first: had it been visible, it was read before the other.
        wait_until(lambda: sales.counts.routed_seen >= 1, 60, "the committed lead")
        assert sales.counts.routed_seen == 1
        assert sales.error is None
    finally:
        sales.stop()


def test_run_simulation_answers_and_stops_when_told(lane, started):
    worker = started()
    config = lane_config(lane)
    stop = threading.Event()
    result: dict[str, dict[str, int]] = {}
    sim = threading.Thread(
        target=lambda: result.update(
            stats=run_simulation(
                config, rate=100, duration=600, seed=2, sales_delay_scale=FAST, stop=stop
            )
        )
    )
    sim.start()
    try:
        wait_until(
            lambda: value(scrape(worker.metrics_url), "leadrouter_sales_activities_total") > 0,
            120,
            "simulated answers to reach the worker",
        )
    finally:
        stop.set()
        started_stop = time.monotonic()
        sim.join(60)
    assert not sim.is_alive(), "run_simulation did not return after stop was set"
    assert time.monotonic() - started_stop < 30
    stats = result["stats"]
    assert set(stats) == {"marketing", "sales", "routed_seen"}
    assert stats["marketing"] > 0 and stats["routed_seen"] > 0 and stats["sales"] > 0
    assert not [t for t in threading.enumerate() if t.name == "simulated-sales"]


def routed_lead() -> dict:
    """A RoutedLead value as the worker writes it (the fields of topics/public.py)."""
    return {
        "event": "lead.assigned",
        "lead_id": "ld_x",
        "queue": "fast-lane",
        "rep_id": "ana.silva",
        "email": "x@acme-corp.com",
        "name": None,
        "phone": None,
        "job_title": None,
        "seniority": None,
        "region": "amer",
        "company": {
            "domain": "acme-corp.com",
            "name": None,
            "employees": None,
            "industry": None,
            "country": None,
        },
        "score": {
            "total": 40.0,
            "fit": 10.0,
            "engagement": 30.0,
            "grade": "C",
            "contributions": [],
        },
        "reason": {"rule": "fast-lane", "assignment": "round_robin", "trace": ["test"]},
        "source": {"channel": "form", "platform": None, "utm_source": None, "utm_campaign": None},
        "trigger_event_id": "f1",
        "generated_at": "2026-11-25T15:00:00.000Z",
        "routed_at": "2026-11-25T15:00:00.100Z",
        "sla_due_at": "2026-11-25T15:05:00.100Z",
    }


def test_simulate_stopped_by_sigterm_flushes_and_leaves_nothing_behind(lane, tmp_path):
    """`leadrouter simulate` under a supervisor (a test, a container) ends with SIGTERM: it
    stops as at --duration, so every record it counted is on the broker, the sales team's
    Faust app leaves and its data directory goes, and the counts are printed."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": lane.bootstrap,
        "LEADROUTER_TOPIC_PREFIX": lane.prefix,
        "LEADROUTER_GROUP_ID": lane.group,
        "TMPDIR": str(scratch),
    }
    command = [str(LEADROUTER), "simulate", "--rate", "100", "--duration", "600", "--seed", "4"]
    process = subprocess.Popen(
        [*command, "--config", str(lane.config_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        # the sales team's app has started once Faust has laid out its data directory
        wait_until(
            lambda: list(scratch.glob("leadrouter-sales-*/v1")),
            90,
            "the simulated sales team to start",
        )
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()[-3000:]
    counts = dict(part.split("=") for part in out.decode().split())
    assert set(counts) == {"marketing", "sales", "routed_seen"}, out
    inputs = [lane.prefix + t for t in (cat.FORM_FILLS, cat.EMAIL_EVENTS, cat.AD_CLICKS)]
    assert int(counts["marketing"]) > 0
    # a fresh prefix, nothing deleted yet: the high watermarks count every record written
    reader = Consumer({"bootstrap.servers": lane.bootstrap, "group.id": "count", "log_level": 3})
    try:
        on_topics = sum(watermarks(reader, inputs).values())
    finally:
        reader.close()
    assert on_topics == int(counts["marketing"]), "not all flushed"
    assert not list(scratch.iterdir()), "the sales team's data directory was left behind"
