"""Fault injection for the reliability tests: steady traffic with a ledger of every record
sent, workers that can be killed at any moment, and an audit that reads every output back
and accounts for each input record.

The audit's rules (what "nothing lost, nothing duplicated" means here):
- a lead whose touches include a fast-lane form is `lead.assigned` exactly once; a lead
  without one is never assigned;
- a touch sent only after its lead's `lead.assigned` was seen on the broker is published
  as exactly one `lead.activity` carrying its event id (the lead is routed by then);
- every valid event of a lead is in that lead's dedupe memory (`seen` in the state
  changelog) exactly once, and a record sent twice changes nothing the second time;
- every invalid record is on the dead-letter topic exactly once, unchanged, with its
  reason; nothing valid is dead-lettered;
- the fast lane's fairness state (`q:fast-lane` in the changelog) agrees with the
  assignments on the routed topic: per-rep open and windowed counts, round-robin pointer,
  the recent-assignment memory.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from tests.support.worker import (
    LEADROUTER,
    WorkerProcess,
    always_open_config,
    wait_until,
    working_day_starting_in,
)
from topics import catalogue as cat
from workers.core.context import fingerprint as seen_key
from workers.core.identity import lead_id
from workers.runtime.clients import stable_and_end
from workers.runtime.outbox import FRAME, Frames

QUEUES = ("fast-lane", "enterprise-amer", "enterprise-emea", "enterprise-apac", "mid-market", "smb")
ROUTED = tuple(cat.routed_topic(q) for q in QUEUES)
INPUTS = tuple(cat.INPUT_KINDS)
FAST_LANE_REPS = ("ana.silva", "ben.carter", "chloe.martin", "daisuke.ito")
# The desk's memory of recent assignments per queue (workers.core.queue_desk.RECENT_ASSIGNMENTS).
RECENT_MEMORY = 2000
Rec = tuple[str, bytes | None, bytes]  # topic (without prefix), key, value


def iso(offset: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()


def roomy_config(target: Path) -> Path:
    """The shipped config with every rep available at any hour and without a daily cap, so
    the fast lane's round robin is exact: each lead goes to the next rep in turn."""
    always_open_config(target)
    reps_file = target / "reps.yaml"
    reps = yaml.safe_load(reps_file.read_text())
    for rep in reps["reps"].values():
        rep["daily_capacity"] = 1_000_000
    reps_file.write_text(yaml.safe_dump(reps))
    return target


def waiting_config(target: Path, day_starts_in: float, sla_seconds: float) -> tuple[Path, float]:
    """`roomy_config`, but the fast lane's reps begin their working day `day_starts_in`
    seconds from now (its leads wait in the queue's line until then, and are all handed out
    at once), and a fast-lane lead nobody touches within `sla_seconds` is reassigned once.
    Returns the directory and the moment the reps' day begins."""
    roomy_config(target)
    zone, hours, day_starts = working_day_starting_in(day_starts_in)
    reps_file, routing_file = target / "reps.yaml", target / "routing.yaml"
    reps = yaml.safe_load(reps_file.read_text())
    for rep_id in FAST_LANE_REPS:
        reps["reps"][rep_id].update(timezone=zone, working_hours=hours)
    reps_file.write_text(yaml.safe_dump(reps))
    routing = yaml.safe_load(routing_file.read_text())
    routing["handout"] = {"per_rep": 1000, "every_minutes": 1}
    routing["queues"]["fast-lane"].update(
        sla_minutes=sla_seconds / 60, on_sla_breach={"action": "reassign", "max_reassignments": 1}
    )
    routing_file.write_text(yaml.safe_dump(routing))
    return target, day_starts


def waiting_scenario(tmp: Path) -> dict[str, Any]:
    """The run options of the fault tests' waiting-line scenario: the fast lane's reps begin
    their day 20 s in, and a lead nobody touches within 12 s is reassigned once; the audit
    waits for the last of those SLA timers."""
    sla = 12.0
    config, day_starts = waiting_config(tmp / "waiting-config", day_starts_in=20, sla_seconds=sla)
    return {"config_dir": config, "timers_from": day_starts, "timers_for": sla + 3}


def assert_waited_and_reassigned(figures: dict[str, Any]) -> None:
    """The scenario happened: leads were handed out of the line and reassigned, and none
    is still waiting (forgotten)."""
    assert figures["handed_out"] > 0 and figures["reassigned"] > 0, figures
    assert figures["waiting"] == 0, figures


def timers_run_out(started_by: float, seconds: float) -> None:
    """Wait until SLA timers of `seconds`, the last started by `started_by` or by now
    (whichever is later: a waiting line handed out when the reps' day begins starts them
    then, however early the traffic ended), have all fired."""
    quiet = max(time.time(), started_by) + seconds
    wait_until(lambda: time.time() >= quiet, quiet - time.time() + 5, "the last SLA timers")


# --------------------------------------------------------------------------- workers
class CrashableWorker(WorkerProcess):
    """A `leadrouter worker` that can also be launched without waiting and killed."""

    def launch(self) -> CrashableWorker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child
        self.process = subprocess.Popen(
            [str(LEADROUTER), "worker", "--config", str(self.config_dir)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 90) -> CrashableWorker:
        try:
            wait_until(self.ready, timeout, "the worker to be ready")
        except AssertionError:
            self.stop(signal.SIGKILL)
            raise AssertionError(f"worker not ready; log:\n{self.log_tail()}") from None
        return self

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye to the group."""
        self.stop(signal.SIGKILL)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class MemoryWatch:
    """Samples a process's RSS every `every` seconds on a thread; `peak` is the highest."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid = pid
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-watch", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), rss_mb(self.pid)))
            except (OSError, AssertionError):
                return
            self._stop.wait(self.every)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def peak(self) -> float:
        return max((mb for _, mb in self.samples), default=0.0)

    def peak_since(self, since: float) -> float:
        return max((mb for t, mb in self.samples if t >= since), default=0.0)


# --------------------------------------------------------------------------- traffic
def _invalid_templates() -> list[tuple[str, str, Any]]:
    """(topic, reason, n -> bytes) for the malformed share of steady traffic."""
    return [
        (cat.FORM_FILLS, "invalid_json", lambda n: b'{"event_id": "broken-%d", ' % n),
        (cat.FORM_FILLS, "invalid_encoding", lambda n: b'{"event_id": "\xff\xfe%d"}' % n),
        (cat.EMAIL_EVENTS, "not_an_object", lambda n: b"[%d, 2, 3]" % n),
        (
            cat.FORM_FILLS,
            "missing_field",
            lambda n: orjson.dumps({"occurred_at": iso(), "email": f"m{n}@x.io", "form_id": "x"}),
        ),
        (
            cat.EMAIL_EVENTS,
            "invalid_type",
            lambda n: orjson.dumps(
                {"event_id": n, "occurred_at": iso(), "email": "a@b.io", "type": "open"}
            ),
        ),
        (
            cat.AD_CLICKS,
            "invalid_time",
            lambda n: orjson.dumps(
                {
                    "event_id": f"t{n}",
                    "occurred_at": "1999-12-31T23:59:59+00:00",
                    "platform": "google",
                    "click_id": f"c{n}",
                }
            ),
        ),
        (
            cat.FORM_FILLS,
            "invalid_email",
            lambda n: orjson.dumps(
                {"event_id": f"e{n}", "occurred_at": iso(), "email": f"no-at-{n}", "form_id": "x"}
            ),
        ),
        (
            cat.SALES_ACTIVITIES,
            "invalid_value",
            lambda n: orjson.dumps(
                {"event_id": f"s{n}", "occurred_at": iso(), "lead_id": "l", "type": "teleported"}
            ),
        ),
    ]


@dataclass
class PlannedLead:
    email: str
    routable: bool  # had a fast-lane form: must be assigned exactly once
    seen: list[str] = field(default_factory=list)  # valid event ids it must remember once
    gated: list[str] = field(default_factory=list)  # sent after routing: one activity each
    clicks: list[str] = field(default_factory=list)  # anonymous clicks joined to the lead
    anonymous: str | None = None


@dataclass
class Ledger:
    """Everything the test sent, and what each record must lead to."""

    leads: dict[str, PlannedLead] = field(default_factory=dict)
    invalid: dict[bytes, tuple[str, str, bytes]] = field(default_factory=dict)
    valid: int = 0
    resent: int = 0

    @property
    def sent(self) -> int:
        return self.valid + self.resent + len(self.invalid)


class Mix:
    """Deterministic (seeded) realistic traffic: new leads that ask for a demo (some after
    anonymous ad clicks), leads that only read a whitepaper, touches on routed leads,
    records sent twice, and malformed records. Scores stay far below the MQL threshold, so
    a lead is routed only by its fast-lane form, whatever order topics are read in."""

    def __init__(self, seed: int, tag: str, *, invalid_share: float = 0.1) -> None:
        self.rng = random.Random(seed)
        self.tag = tag
        self.ledger = Ledger()
        self.invalid_share = invalid_share
        self.n = 0
        self.resendable: list[Rec] = []
        self.routed: list[str] = []  # leads seen assigned that may take more touches
        self.assigned_seen = 0  # lead.assigned records seen on the broker so far
        self.templates = _invalid_templates()

    def _id(self, kind: str) -> str:
        self.n += 1
        return f"{self.tag}-{kind}-{self.n}"

    def _valid(self, plan: PlannedLead, rec: Rec, event_id: str, *, click: bool = False):
        self.ledger.valid += 1
        if click:
            plan.clicks.append(event_id)
        else:
            plan.seen.append(event_id)
            self.resendable.append(rec)
            if len(self.resendable) > 5000:
                del self.resendable[:1000]
        return rec

    def new_lead(self, routable: bool) -> list[Rec]:
        n = self.n
        email = f"{self.tag}.{n}@company{n % 97}.com"
        lid = lead_id(email)
        plan = self.ledger.leads[lid] = PlannedLead(email, routable)
        out: list[Rec] = []
        anonymous = None
        if routable and self.rng.random() < 0.25:
            anonymous = plan.anonymous = f"{self.tag}-visitor-{n}"
            for _ in range(self.rng.randint(1, 2)):
                eid = self._id("click")
                click = {
                    "event_id": eid,
                    "occurred_at": iso(-120),
                    "platform": self.rng.choice(["google", "linkedin", "meta"]),
                    "click_id": eid,
                    "anonymous_id": anonymous,
                    "campaign": "spring-launch",
                }
                rec = (cat.AD_CLICKS, anonymous.encode(), orjson.dumps(click))
                out.append(self._valid(plan, rec, eid, click=True))
        eid = self._id("form")
        event: dict[str, Any] = {
            "event_id": eid,
            "occurred_at": iso(),
            "email": email,
            "form_id": self.rng.choice(["demo-request", "contact-sales"])
            if routable
            else "whitepaper",
            "first_name": "Test",
            "last_name": f"Lead{n}",
            "company": f"Company {n % 97}",
            "phone": f"+1 415 555 {1000 + n % 9000:04d}",
            "utm": {"source": "google", "campaign": "brand-search"},
        }
        if anonymous:
            event["anonymous_id"] = anonymous
        out.append(self._valid(plan, (cat.FORM_FILLS, lid.encode(), orjson.dumps(event)), eid))
        return out

    def touch(self, lid: str) -> Rec:
        """A low-value touch on a lead already seen routed: must become one lead.activity."""
        plan = self.ledger.leads[lid]
        eid = self._id("touch")
        plan.gated.append(eid)
        if self.rng.random() < 0.3:
            event = {
                "event_id": eid,
                "occurred_at": iso(),
                "email": plan.email,
                "form_id": "whitepaper",
            }
            rec = (cat.FORM_FILLS, lid.encode(), orjson.dumps(event))
        else:
            event = {
                "event_id": eid,
                "occurred_at": iso(),
                "email": plan.email,
                "type": self.rng.choice(["open", "click", "delivered"]),
                "campaign": "spring-launch",
            }
            rec = (cat.EMAIL_EVENTS, lid.encode(), orjson.dumps(event))
        return self._valid(plan, rec, eid)

    def invalid(self) -> Rec:
        topic, reason, build = self.rng.choice(self.templates)
        n = self.n
        self.n += 1
        if self.rng.random() < 0.02:
            topic, reason = cat.FORM_FILLS, "too_large"
            value = b'{"event_id": "big-%d", "pad": "' % n + b"x" * 70_000 + b'"}'
        else:
            value = build(n)
        key = f"{self.tag}-bad-{n}".encode()
        self.ledger.invalid[key] = (topic, reason, value)
        return (topic, key, value)

    def note_routed(self, lids: Iterable[str]) -> None:
        for lid in lids:
            self.assigned_seen += 1
            plan = self.ledger.leads.get(lid)
            if plan is not None and plan.routable:
                self.routed.append(lid)

    def step(self) -> list[Rec]:
        r = self.rng.random()
        if r < self.invalid_share:
            return [self.invalid()]
        r = self.rng.random()
        if r < 0.05 and self.resendable:
            self.ledger.resent += 1
            return [self.rng.choice(self.resendable[-2000:])]
        if r < 0.55 and self.routed:
            i = self.rng.randrange(max(0, len(self.routed) - 500), len(self.routed))
            lid = self.routed[i]
            rec = self.touch(lid)
            if len(self.ledger.leads[lid].seen) >= 8:  # keep well inside the dedupe window
                self.routed[i] = self.routed[-1]
                self.routed.pop()
            return [rec]
        return self.new_lead(routable=r < 0.88)


def producer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 180_000,
        "queue.buffering.max.messages": 1_000_000,
        "log_level": 3,
        **extra,
    }


class Traffic:
    """Sends `mix` at `rate` records/s on a thread (idempotent producer: a broker outage is
    ridden out, never duplicated), and follows the routed topics so that touches are only
    sent to leads already routed."""

    def __init__(self, bootstrap: str, prefix: str, mix: Mix, rate: float) -> None:
        self.prefix = prefix
        self.mix = mix
        self.rate = rate
        self.producer = Producer(producer_config(bootstrap))
        self.follower = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"follow-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "log_level": 3,
            }
        )
        meta = self.follower.list_topics(timeout=30).topics
        self.follower.assign(
            [
                TopicPartition(prefix + t, p, OFFSET_BEGINNING)
                for t in ROUTED
                for p in meta[prefix + t].partitions
            ]
        )
        self.acked = 0
        self.failed: list[str] = []
        self.produced = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self.error: BaseException | None = None

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            self.acked += 1
        else:
            self.failed.append(err.str())

    def _send(self, rec: Rec) -> None:
        topic, key, value = rec
        while True:
            try:
                self.producer.produce(self.prefix + topic, value, key, on_delivery=self._delivered)
                self.produced += 1
                return
            except BufferError:
                self.producer.poll(0.05)

    def _follow(self) -> None:
        routed = []
        for msg in self.follower.consume(5000, 0):
            if msg.error() or msg.key() is None:
                continue
            headers = dict(msg.headers() or [])
            if headers.get("event") == b"lead.assigned":
                routed.append(msg.key().decode())
        self.mix.note_routed(routed)

    def _run(self) -> None:
        try:
            budget = 0.0
            last = time.monotonic()
            while not self._stop.is_set():
                self._follow()
                now = time.monotonic()
                budget = min(budget + self.rate * (now - last), self.rate + 1000)
                last = now
                while budget >= 1:
                    for rec in self.mix.step():
                        self._send(rec)
                        budget -= 1
                self.producer.poll(0)
                self._stop.wait(0.01)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self, flush_timeout: float = 120) -> None:
        """Stop sending and wait until every record is acknowledged by the broker."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        remaining = self.producer.flush(flush_timeout)
        self.follower.close()
        if self.error is not None:
            raise AssertionError(f"traffic thread failed: {self.error!r}") from self.error
        assert remaining == 0, f"{remaining} records still unacknowledged"
        assert not self.failed, f"{len(self.failed)} records failed: {self.failed[:3]}"
        assert self.acked == self.produced == self.mix.ledger.sent, (
            self.acked,
            self.produced,
            self.mix.ledger.sent,
        )

    def close(self) -> None:
        """Teardown: stop without checks (for finally blocks)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self.producer.flush(5)
        with contextlib.suppress(RuntimeError):  # already closed
            self.follower.close()


def produce_all(bootstrap: str, prefix: str, records: Iterable[Rec]) -> int:
    """Send records as fast as the broker takes them; return how many were acknowledged."""
    producer = Producer(producer_config(bootstrap, **{"message.max.bytes": 2_000_000}))
    acked, failed = [0], []

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            acked[0] += 1
        else:
            failed.append(err.str())

    count = 0
    for topic, key, value in records:
        while True:
            try:
                producer.produce(prefix + topic, value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        producer.poll(0)
    assert producer.flush(120) == 0, "records left unacknowledged"
    assert not failed, f"{len(failed)} records failed: {failed[:3]}"
    assert acked[0] == count
    return count


# --------------------------------------------------------------------------- reading back
@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def _reader(bootstrap: str, **extra: Any) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"audit-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "fetch.max.bytes": 52_428_800,
            "log_level": 3,
            **extra,
        }
    )


def read_all(bootstrap: str, topics: Iterable[str], timeout: float = 120) -> list[Record]:
    """Every committed record of `topics` (full names), from the beginning to the end."""
    consumer = _reader(bootstrap)
    try:
        meta = consumer.list_topics(timeout=30).topics
        tps = []
        for topic in topics:
            assert topic in meta, f"topic {topic} does not exist"
            tps += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta[topic].partitions]
        consumer.assign(tps)
        pending = {(tp.topic, tp.partition) for tp in tps}
        out: list[Record] = []
        end = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < end, f"reading {sorted(pending)[:3]} did not finish"
            for msg in consumer.consume(10000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard((msg.topic(), msg.partition()))
                    continue
                out.append(
                    Record(
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                        msg.key(),
                        msg.value(),
                        dict(msg.headers() or []),
                    )
                )
        return out
    finally:
        consumer.close()


def latest_state(bootstrap: str, prefix: str) -> dict[str, Any]:
    """The desk's state as the changelog has it: the last committed value of every key,
    read as a restore reads it (a batch a crash cut short is left out: runtime/outbox.py)."""
    writes: dict[bytes, bytes | None] = {}
    frames: dict[int, Frames] = defaultdict(Frames)
    for rec in sorted(read_all(bootstrap, [prefix + cat.CHANGELOG]), key=_position):
        frames[rec.partition].take(rec.key, rec.value, rec.headers.get(FRAME), writes)
    state = {k.decode(): orjson.loads(v) for k, v in writes.items() if v is not None}
    return {k: v for k, v in state.items() if not k.startswith("\x00")}


def _position(rec: Record) -> tuple[int, int]:
    return rec.partition, rec.offset


def _partitions(consumer: Consumer, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of `topics`, from one metadata request."""
    meta = consumer.list_topics(timeout=30).topics
    return [TopicPartition(topic, p) for topic in topics for p in meta[topic].partitions]


def watermarks(consumer: Consumer, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """Each partition's high watermark as `consumer` sees it (the inputs: no transactions)."""
    return {
        (tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=30)[1]
        for tp in _partitions(consumer, topics)
    }


def stable_ends(
    committed: Consumer, everything: Consumer, topics: Iterable[str]
) -> tuple[dict[tuple[str, int], int], list[tuple[str, int]]]:
    """Each partition's last stable offset, and the partitions whose log end is past it: a
    transaction is open there, and no read_committed reader reads past its first record
    until it ends (`stable_and_end`, as the worker's restore asks it)."""
    stable: dict[tuple[str, int], int] = {}
    still_open: list[tuple[str, int]] = []
    for tp in _partitions(committed, topics):
        _, last_stable, end = stable_and_end(committed, everything, tp, 30)
        stable[(tp.topic, tp.partition)] = last_stable
        if end > last_stable:
            still_open.append((tp.topic, tp.partition))
    return stable, still_open


# What a broker answers while a group's coordinator moves or loads: asked again.
PASSING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError._TIMED_OUT,
}


def wait_settled(bootstrap: str, prefix: str, group: str, timeout: float = 120) -> None:
    """Wait until the group has committed every input record, no transaction is open on the
    internal, changelog and output topics, and for two seconds nothing new has appeared
    there nor been consumed from the internal one: all work is done, so a duplicate that is
    coming has come.

    A member killed in a transaction leaves it open until the broker aborts it at its
    timeout. Until then the internal topic stops at that transaction's first record for
    every reader, so the work behind it stands still without being done: seen as 1,938 leads
    "never assigned" when the audit ran in that pause (test_rebalance.py)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "log_level": 3}
    )  # never subscribes: only reads the group's committed offsets
    everything = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_uncommitted",
            "log_level": 3,
        }
    )  # its watermarks are the log ends, open transactions included
    inputs = [prefix + t for t in INPUTS]
    others = [prefix + t for t in (*ROUTED, cat.DEADLETTER, cat.INTERNAL, cat.CHANGELOG)]
    try:
        end = time.monotonic() + timeout
        last: dict[tuple[str, int], int] | None = None
        stable_since = time.monotonic()
        while True:
            try:
                ends = watermarks(consumer, inputs)
                tps = [TopicPartition(t, p) for t, p in ends]
                committed = {
                    (tp.topic, tp.partition): tp.offset
                    for tp in consumer.committed(tps, timeout=30)
                }
                behind = {tp: high for tp, high in ends.items() if high > max(committed[tp], 0)}
                outputs, still_open = stable_ends(consumer, everything, others)
                internal = [TopicPartition(t, p) for t, p in outputs if t == prefix + cat.INTERNAL]
                for tp in consumer.committed(internal, timeout=30):
                    outputs[("committed", tp.partition)] = tp.offset
            except KafkaException as exc:  # a group's coordinator still loading: ask again
                error = exc.args[0] if exc.args else None
                if not isinstance(error, KafkaError) or error.code() not in PASSING:
                    raise
                if time.monotonic() > end:
                    raise
                stable_since = time.monotonic()
                time.sleep(0.3)
                continue
            now = time.monotonic()
            if behind or still_open or outputs != last:
                stable_since = now
            last = outputs
            if not behind and not still_open and now - stable_since >= 2.0:
                return
            if now > end:
                raise AssertionError(
                    f"not settled after {timeout:.0f}s: uncommitted input {behind}, "
                    f"transactions open in {still_open}"
                )
            time.sleep(0.3)
    finally:
        consumer.close()
        everything.close()


# --------------------------------------------------------------------------- the audit
@dataclass
class Audit:
    sent: int = 0
    valid: int = 0
    invalid: int = 0
    resent: int = 0
    leads: int = 0
    assigned: int = 0
    waiting: int = 0
    handed: int = 0
    reassigned: int = 0
    activities: int = 0
    deadletters: int = 0
    lost: int = 0
    duplicated: int = 0
    repeated: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def distinct(self, records: list[Record]) -> list[Record]:
        """Records with a byte-identical one before them on the same topic left out, and
        counted as repeated."""
        seen: set[tuple[Any, ...]] = set()
        out = []
        for rec in records:
            same = (rec.topic, rec.key, rec.value, tuple(sorted(rec.headers.items())))
            if same in seen:
                self.repeated += 1
            else:
                seen.add(same)
                out.append(rec)
        return out

    def figures(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "valid": self.valid,
            "resent": self.resent,
            "invalid": self.invalid,
            "leads": self.leads,
            "routed": self.assigned,
            "waiting": self.waiting,
            "handed_out": self.handed,
            "reassigned": self.reassigned,
            "activities": self.activities,
            "dlq": self.deadletters,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "repeated": self.repeated,
        }

    def summary(self) -> str:
        figures = " ".join(f"{k}={v}" for k, v in self.figures().items())
        shown = "\n  ".join(self.problems[:25])
        more = f"\n  ... and {len(self.problems) - 25} more" if len(self.problems) > 25 else ""
        return f"{figures}\n  {shown}{more}" if self.problems else figures


def audit(
    bootstrap: str,
    prefix: str,
    ledger: Ledger,
    *,
    exact_activity: bool = True,
    round_robin_exact: bool = True,
    repeats: bool = False,
) -> Audit:
    """Account for every record in `ledger` against what is on the broker now.

    round_robin_exact: the fast lane's turns are even and its pointer exact (every rep always
    available, nobody reassigned); without it, only each rep's counts are held to the leads
    they have in the end.

    repeats: at_least_once, where a crash may deliver an output again byte for byte (the
    outbox sent again, an input's dead letter made again): such repeats are counted apart
    (`repeated`) and the rest held to the same rules; a second record that differs in
    anything is still a duplicate.

    exact_activity: each gated touch must be one lead.activity. True when one worker owns
    every partition; with several, a touch handed over locally can overtake the internal
    record that marks its lead routed, and is then counted without being published."""
    a = Audit(
        sent=ledger.sent,
        valid=ledger.valid,
        invalid=len(ledger.invalid),
        resent=ledger.resent,
        leads=len(ledger.leads),
    )
    routed = read_all(bootstrap, [prefix + t for t in ROUTED])
    if repeats:
        routed = a.distinct(routed)
    assigned: dict[str, list[dict[str, Any]]] = defaultdict(list)
    # given later, from a queue's waiting line (lead.assigned) or after an SLA breach
    # (lead.reassigned, on the new queue and, when the queue changes, the previous one too)
    later: dict[str, dict[tuple[str | None, str | None], dict[str, Any]]] = defaultdict(dict)
    later_count: Counter[tuple[str, str | None, str | None]] = Counter()
    activity: Counter[str] = Counter()
    activity_lead: dict[str, str] = {}
    for rec in routed:
        value = orjson.loads(rec.value)
        lid = rec.key.decode() if rec.key else None
        if lid != value.get("lead_id"):
            a.problem(f"routed record key {lid!r} is not its lead_id {value.get('lead_id')!r}")
        handed_out = value["event"] == "lead.assigned" and value["reason"]["trace"][0].startswith(
            "given to "
        )
        if value["event"] == "lead.reassigned" or handed_out:
            hand = (value.get("previous_rep_id"), value["rep_id"])
            later[value["lead_id"]][hand] = value
            if value["queue"] == rec.topic.removeprefix(prefix + cat.ROUTED_PREFIX):
                later_count[(value["lead_id"], *hand)] += 1
        elif value["event"] == "lead.assigned":
            assigned[value["lead_id"]].append(value)
        elif value["event"] == "lead.activity":
            activity[value["trigger_event_id"]] += 1
            activity_lead[value["trigger_event_id"]] = value["lead_id"]
        else:
            a.problem(f"routed record with unknown event {value['event']!r}")
    a.assigned = sum(len(v) for v in assigned.values())
    a.activities = sum(activity.values())
    for (lid, previous, rep), n in later_count.items():
        if n > 1:
            a.duplicated += n - 1
            a.problem(f"lead {lid} given by {previous} to {rep} {n} times")
    a.handed = sum(1 for hands in later.values() for p, _ in hands if p is None)
    a.reassigned = sum(1 for hands in later.values() for p, _ in hands if p is not None)

    state = latest_state(bootstrap, prefix)
    in_line = {
        entry[0]
        for key, desk in state.items()
        if key.startswith("q:")
        for entry in desk.get("waiting", ())
    }
    a.waiting = len(in_line)
    # each lead's last hand: routed, then handed out and reassigned, in time order
    hands_of = {
        lid: sorted(later.get(lid, {}).values(), key=lambda v: v["sla_due_at"]) for lid in assigned
    }
    final = [hands[-1] if hands else assigned[lid][0] for lid, hands in hands_of.items()]
    allowed: set[str] = set()
    for lid, plan in ledger.leads.items():
        got = assigned.get(lid, [])
        if plan.routable:
            if not got:
                a.lost += 1
                a.problem(f"lead {lid} ({plan.email}) was never assigned")
            elif len(got) > 1:
                a.duplicated += len(got) - 1
                a.problem(f"lead {lid} assigned {len(got)} times: {[g['rep_id'] for g in got]}")
        elif got:
            a.problem(f"lead {lid} has no fast-lane form but was assigned")
        lead = state.get(lid)
        if lead is None:
            a.lost += len(plan.seen)
            a.problem(f"lead {lid}: no state in the changelog")
            continue
        seen = Counter(lead.get("seen", ()))
        for eid in plan.seen:
            n = seen[seen_key(eid)]
            if n == 0:
                a.lost += 1
                a.problem(f"lead {lid}: event {eid} is not in its dedupe memory")
            elif n > 1:
                a.duplicated += n - 1
                a.problem(f"lead {lid}: event {eid} remembered {n} times")
        if plan.routable and got:
            hands = hands_of[lid]
            if hands and got[0]["rep_id"] is None and hands[0].get("previous_rep_id") is not None:
                a.problem(f"lead {lid} reassigned before any rep had it")
            if got[0]["rep_id"] is None and not hands and lid not in in_line:
                a.lost += 1
                a.problem(f"lead {lid} waits for a rep but is in no queue's line")
            first = hands[-1] if hands else got[0]
            if (lead.get("state"), lead.get("queue"), lead.get("rep")) != (
                "routed",
                first["queue"],
                first["rep_id"],
            ):
                a.problem(
                    f"lead {lid}: state {lead.get('state')}/{lead.get('queue')}/"
                    f"{lead.get('rep')} disagrees with its assignment "
                    f"{first['queue']}/{first['rep_id']}"
                )
        for eid in plan.gated:
            n = activity[eid]
            if n > 1:
                a.duplicated += n - 1
                a.problem(f"touch {eid} published {n} times")
            elif n == 0 and exact_activity:
                a.lost += 1
                a.problem(f"touch {eid} on routed lead {lid} was never published")
        allowed.update(plan.gated)
        for eid in plan.clicks:  # joined before or after the form: at most one activity
            if activity[eid] > 1:
                a.duplicated += activity[eid] - 1
                a.problem(f"click {eid} published {activity[eid]} times")
        allowed.update(plan.clicks)
        if plan.anonymous:
            visitor = state.get("v:" + plan.anonymous) or {}
            if visitor.get("lead") != lid or visitor.get("clicks"):
                a.problem(f"visitor {plan.anonymous} not joined to {lid}: {visitor}")
    for lid in assigned.keys() - ledger.leads.keys():
        a.problem(f"assignment of a lead nobody sent: {lid}")
    for eid in activity.keys() - allowed:
        a.problem(f"activity for an unexpected touch {eid} (lead {activity_lead[eid]})")

    dead = read_all(bootstrap, [prefix + cat.DEADLETTER])
    if repeats:
        dead = a.distinct(dead)
    a.deadletters = len(dead)
    by_key: dict[bytes | None, list[Record]] = defaultdict(list)
    for rec in dead:
        by_key[rec.key].append(rec)
    for key, (topic, reason, raw) in ledger.invalid.items():
        got_dead = by_key.get(key, [])
        if not got_dead:
            a.lost += 1
            a.problem(f"invalid record {key!r} ({reason}) is not in the dead-letter topic")
            continue
        if len(got_dead) > 1:
            a.duplicated += len(got_dead) - 1
            # Where each copy came from and where it landed: one source offset dead-lettered
            # again is the worker's doing; copies of the input, the producer's.
            where = ", ".join(
                f"{r.headers.get('source.partition', b'?').decode()}"
                f"@{r.headers.get('source.offset', b'?').decode()}"
                f" -> {r.partition}@{r.offset}"
                for r in got_dead
            )
            a.problem(f"invalid record {key!r} dead-lettered {len(got_dead)} times: {where}")
        rec = got_dead[0]
        headers = {k: v.decode("utf-8", "replace") for k, v in rec.headers.items()}
        if headers.get("error.reason") != reason:
            a.problem(f"{key!r}: reason {headers.get('error.reason')!r}, expected {reason!r}")
        if rec.value != raw:
            a.problem(f"{key!r}: dead letter is not the original bytes")
        if headers.get("source.topic") != prefix + topic:
            a.problem(f"{key!r}: source.topic {headers.get('source.topic')!r}")
        if not headers.get("error.detail"):
            a.problem(f"{key!r}: no error.detail")
    for key in by_key.keys() - ledger.invalid.keys():
        rec = by_key[key][0]
        a.problem(
            f"valid record dead-lettered: key {key!r} "
            f"reason {rec.headers.get('error.reason')!r} {rec.headers.get('error.detail')!r}"
        )
    fast = [v for v in final if v["queue"] == "fast-lane"]
    for text in fairness_problems(
        state.get("q:fast-lane"), fast, FAST_LANE_REPS, round_robin_exact=round_robin_exact
    ):
        a.problem(text)
    return a


def fairness_problems(
    desk: dict[str, Any] | None,
    assigned: list[dict[str, Any]],
    reps: tuple[str, ...],
    *,
    round_robin_exact: bool = True,
) -> list[str]:
    """The queue desk's state must tell the same story as the assignments published: each
    rep's open and windowed counts, the round-robin pointer, the recent-assignment memory;
    and with everyone available the round robin is even to within one lead."""
    if not assigned:
        return [] if desk is None else ["queue desk state without any assignment"]
    if desk is None:
        return ["no queue desk state in the changelog although leads were assigned"]
    problems = []
    per_rep = Counter(v["rep_id"] for v in assigned)
    stats = desk.get("reps", {})
    for rep in reps:
        s = stats.get(rep, {})
        window = sum((s.get("hours") or {}).values())
        if s.get("open", 0) != per_rep[rep] or window != per_rep[rep]:
            problems.append(
                f"fairness: {rep} has {per_rep[rep]} assignments on the topic, state says "
                f"open={s.get('open', 0)} window={window}"
            )
    if None in per_rep:
        problems.append(f"fairness: {per_rep[None]} leads left unassigned with reps available")
    if not round_robin_exact:
        return problems
    counts = [per_rep[r] for r in reps]
    if max(counts) - min(counts) > 1:
        problems.append(f"fairness: round robin uneven: {dict(zip(reps, counts, strict=True))}")
    if desk.get("rr") != len(assigned) % len(reps):
        problems.append(f"fairness: pointer rr={desk.get('rr')} after {len(assigned)} leads")
    recent = desk.get("recent", {})
    expected = {seen_key(f"{v['lead_id']}/{v['trigger_event_id']}") for v in assigned}
    if len(assigned) <= RECENT_MEMORY and set(recent) != expected:
        problems.append(
            f"fairness: recent-assignment memory ({len(recent)}) differs from the "
            f"{len(expected)} assignments"
        )
    return problems


def environ_without_kafka() -> dict[str, str]:
    """The test's environment minus any broker settings a developer may have exported."""
    return {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("LEADROUTER_") or k.startswith("KAFKA_"))
    }
