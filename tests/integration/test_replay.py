"""`leadrouter replay` on the reference broker: faithful to what a real worker published,
a what-if with a changed MQL threshold through the command itself, nothing written to any
topic, and the refusals that need a broker (unknown topics, an empty stretch).

Faithful (issue 12, point 2): a worker routes simulator traffic, then sales activities for
what it routed interleaved with more traffic (a closing activity frees a rep's open load,
which the least_loaded queue reads); replaying that stretch with the worker's configuration
gives the same queue and rep for every lead the worker published, and routes no other lead.

The intended exception, which this test avoids rather than hides: rep choice depends on the
order leads reach their queue's desk. Replay takes records in timestamp order; the worker in
timestamp order within each batch it fetches. Two records sent so close together that one
batch holds the later and the next batch the earlier could swap two reps. Here every record
is sent with its own strictly increasing timestamp and acknowledged before the next is sent,
so the broker's logs hold them in send order and no fetch can return a later record without
the earlier. Times of day are the other exception: the worker judges working hours at its
wall clock, replay at the record's send time; the lane's config has reps in office around the
clock, so a lead near a shift change cannot differ.
"""

from __future__ import annotations

import time
import types
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration.conftest import Lane
from tests.support.worker import patience
from topics import catalogue as cat
from workers import admin
from workers.cli import main as leadrouter
from workers.demo import demo_accounts
from workers.replay import ROUTED, Outcome, replayed
from workers.settings import Config, load_config
from workers.simulate import SalesTeam, Traffic

pytestmark = pytest.mark.integration

KEYS = ["events", "leads", "baseline", "candidate", "changed_count", "changed"]
FIRST, SECOND = 800, 800  # marketing records before and after the sales team answers


class Sender:
    """Each record with its own, strictly increasing timestamp, acknowledged before the next
    is sent: the logs hold the stretch in send order."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        self.prefix = prefix
        self.last = 0

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        stamp = max(self.last + 1, int(time.time() * 1000))
        self.last = stamp
        self.producer.send(self.prefix + topic, value=value, key=key, timestamp_ms=stamp).get(30)

    def close(self) -> None:
        self.producer.close()


def routed_records(lane: Lane, config: Config) -> list[dict[str, Any]]:
    """Every record the worker published to its queues, once it has processed everything."""
    records = lane.topics.read(
        [cat.routed_topic(q) for q in config.routing.queues],
        lambda got: True,
        patience(120),
        "the worker's routed leads",
        group=lane.group,
    )
    out = []
    for r in records:
        value = orjson.loads(r.value)
        if r.topic == lane.prefix + cat.routed_topic(value["queue"]):  # not a copy to a queue left
            out.append(value | {"_at": (r.timestamp, r.partition, r.offset)})
    return out


def decisions(published: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    """Each lead's queue and rep as sales last heard them (routing, hand-out, reassignment)."""
    latest: dict[str, dict[str, Any]] = {}
    for value in sorted(published, key=lambda v: v["_at"]):
        if value["event"] in ("lead.assigned", "lead.reassigned"):
            latest[value["lead_id"]] = value
    return {lead: (v["queue"], v["rep_id"]) for lead, v in latest.items()}


def answer_as_sales(team: SalesTeam, published: list[dict[str, Any]]) -> list[Any]:
    """The simulated sales team's activities for what was routed, due at once."""
    for value in published:
        source = types.SimpleNamespace(utm_source=(value.get("source") or {}).get("utm_source"))
        team.on_routed(types.SimpleNamespace(**{**value, "source": source}), time.time())
    return list(team.due(time.time() + 10**9))


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


def offsets(bootstrap: str, prefix: str) -> dict[tuple[str, int], int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        names = [t for t in consumer.topics() if t.startswith(prefix)]
        tps = [TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t)]
        return {(tp.topic, tp.partition): o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def groups(bootstrap: str) -> set[str]:
    client = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {g["group_id"] for g in client.list_groups()}
    finally:
        client.close()


@pytest.fixture(scope="module")
def history(kafka_broker: Any, tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """A stretch of simulator traffic and sales answers, routed by a real worker, which is
    stopped once it has processed everything (so the broker stays as it is meanwhile)."""
    tmp = tmp_path_factory.mktemp("replay")
    lane = Lane(kafka_broker, tmp)
    try:
        yield record_history(lane, tmp)
    finally:
        lane.close()


def record_history(lane: Lane, tmp: Path) -> dict[str, Any]:
    env = {"KAFKA_BOOTSTRAP_SERVERS": lane.bootstrap, "LEADROUTER_TOPIC_PREFIX": lane.prefix}
    config = load_config(lane.config_dir, env=env)
    admin.ensure_topics(config)
    admin.load_accounts(config, demo_accounts(config))
    since = time.time() - 1
    worker = lane.worker().start()
    traffic = Traffic(config, seed=12, malformed_share=0.02)
    sender = Sender(lane.bootstrap, lane.prefix)
    cut = len(lane.prefix)
    activities = 0
    try:
        for _ in range(FIRST):
            topic, key, value = traffic.next(time.time())
            sender.send(topic[cut:], key, value)
        first = routed_records(lane, config)
        answers = answer_as_sales(SalesTeam(config, seed=3, delay_scale=0.0), first)
        assert Counter(a.type for a in answers)["rejected"] > 0  # closings free open load
        every = max(1, SECOND // max(1, len(answers)))
        for i in range(SECOND):
            topic, key, value = traffic.next(time.time())
            sender.send(topic[cut:], key, value)
            if i % every == 0 and answers:
                activity = answers.pop(0)
                sender.send(cat.SALES_ACTIVITIES, activity.lead_id.encode(), orjson.dumps(activity))
                activities += 1
        for activity in answers:
            sender.send(cat.SALES_ACTIVITIES, activity.lead_id.encode(), orjson.dumps(activity))
            activities += 1
    finally:
        sender.close()
    published = routed_records(lane, config)
    until = time.time()
    assert worker.stop() == 0, worker.log_tail()
    return {
        "config": config,
        "env": env,
        "since": since,
        "until": until,
        "published": published,
        "sent": FIRST + SECOND + activities,
        "tmp": tmp,
    }


def test_replay_with_the_workers_config_decides_as_the_worker_did(history):
    config, published = history["config"], history["published"]
    worker = decisions(published)
    assert len(worker) > 40 and len({q for q, _ in worker.values()}) >= 4
    assert sum(1 for v in published if v["event"] == "lead.activity") > 0
    with replayed(config, config, history["since"], history["until"]) as run:
        replayed_ = {}
        for lead_id, lead, _ in run.outcomes():
            outcome = Outcome.of(lead)
            if outcome is not None and outcome.status == ROUTED:
                replayed_[lead_id] = (outcome.queue, outcome.rep)
        report = run.report(0)
        read = run.facts.per_topic
    differ = {
        k: (worker.get(k), replayed_.get(k))
        for k in set(worker) | set(replayed_)
        if worker.get(k) != replayed_.get(k)
    }
    assert not differ, f"{len(differ)} of {len(worker)} leads differ (worker, replay): {differ}"
    assert report["changed_count"] == 0
    assert read[cat.SALES_ACTIVITIES] > 0 and read[cat.FORM_FILLS] > 0
    routed = sum(
        1
        for v in published
        if v["event"] == "lead.assigned"
        and v["reason"]["trace"]
        and " triggered " in v["reason"]["trace"][0]
    )
    assert report["baseline"]["routed"] == routed
    dead = report["baseline"]["dead_letters"]
    assert sum(dead.values()) > 0  # the simulator's malformed share, counted, not fatal


def test_a_higher_mql_threshold_through_the_command(history):
    env, tmp = history["env"], history["tmp"]
    candidate = tmp / "candidate"
    candidate.mkdir()
    for name in ("settings.yaml", "routing.yaml", "reps.yaml", "scoring.yaml"):
        (candidate / name).write_text((history["config"].directory / name).read_text())
    scoring = yaml.safe_load((candidate / "scoring.yaml").read_text())
    scoring["mql_threshold"] = 75
    (candidate / "scoring.yaml").write_text(yaml.safe_dump(scoring))
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    prefix = env["LEADROUTER_TOPIC_PREFIX"]
    before, groups_before = offsets(bootstrap, prefix), groups(bootstrap)
    out_json, out_html = tmp / "replay.json", tmp / "replay.html"
    args = [
        "--since",
        iso(history["since"]),
        "--until",
        iso(history["until"]),
        "--config",
        str(candidate),
        "--baseline",
        str(history["config"].directory),
        "--json",
        str(out_json),
        "--html",
        str(out_html),
    ]
    result = CliRunner().invoke(leadrouter, ["replay", *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = orjson.loads(out_json.read_bytes())
    assert list(report) == KEYS
    b, c = report["baseline"], report["candidate"]
    assert (b["mql_threshold"], c["mql_threshold"]) == (60, 75)
    assert c["routed_by_trigger"].get("mql", 0) < b["routed_by_trigger"]["mql"]
    assert report["changed_count"] > 0 and report["changed"]
    assert report["events"] == history["sent"]
    assert "changed:" in result.output and "leads routed" in result.output
    assert out_html.read_text().count('class="bar baseline"') > 10
    # Nothing written to any topic, no consumer group made.
    assert offsets(bootstrap, prefix) == before
    assert groups(bootstrap) == groups_before


def test_unknown_topics_and_an_empty_stretch_exit_2(kafka_broker, lane):
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "LEADROUTER_TOPIC_PREFIX": "no-such-prefix.",
    }
    config_dir = str(lane.config_dir)
    result = CliRunner().invoke(
        leadrouter, ["replay", "--since", "1h", "--config", config_dir], env=env
    )
    assert result.exit_code == 2
    assert "the broker has no topics no-such-prefix.marketing.form-fills" in result.output
    env["LEADROUTER_TOPIC_PREFIX"] = lane.prefix
    config = load_config(lane.config_dir, env=env)
    admin.ensure_topics(config)
    # A record today in every partition (so every leader is elected), none in 2020.
    for topic in cat.INPUT_KINDS:
        for p in range(config.settings.kafka.partitions):
            lane.topics.producer.send(lane.prefix + topic, value=b"{}", partition=p)
    lane.topics.flush()
    result = CliRunner().invoke(
        leadrouter,
        ["replay", "--since", "2020-01-01", "--until", "2020-01-02", "--config", config_dir],
        env=env,
    )
    assert result.exit_code == 2
    assert "nothing to replay: no records between 2020-01-01T00:00:00Z and " in result.output
