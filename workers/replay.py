"""`leadrouter replay`: what a routing or scoring change would have done to real history.

Sales operations change thresholds, territories and reps all the time; the only honest test of
a change is the leads that actually arrived. Replay reads a stretch of history and runs it
through the pipeline twice, with the configuration the worker uses (the baseline) and with the
candidate, and tells which leads would have gone elsewhere, and why, in both decisions' words.

How, and the choices made:
- The pipeline is the worker's own `Topology`, in-process, once per configuration, each with
  fresh state. Both are fed from one read of history, record by record (lockstep), so the
  broker is read once. This process holds every partition, so every hand-over between keys
  is handled at once in memory; nothing is produced to any topic, no consumer group is
  joined and no offset is committed (`workers.history` assigns partitions by hand).
- Ingest (decoding and validating a record against its contract) reads no state and does
  not depend on routing or scoring, so it is done once per record for both configurations
  (`Replay.ingest`, at the clock each side will have); when the two would ingest differently
  (another `ingest.max_event_bytes`), each does its own.
- Topics read: the three marketing inputs and `sales.activities`. Sales activities change
  routing, not only the report: a closing activity frees its rep's open load (the
  least_loaded strategy), a first contact claims a lead waiting in a queue's line, and a
  lost or rejected lead may route again after the recycle period.
- Timers (a lead's SLA, a queue desk's hand-out from its waiting line) fire each at its own
  due time in event time, before the first record after it, as the worker fires them when
  the wall clock passes them: a line handed out at 08:00 is judged at 08:00.
- Event time is the clock: each record's timestamp (its producer's send time, as the worker
  orders a batch by it) is `now` for validation and the clock of the queue desks (working
  hours, daily capacity, fairness windows), never going back. Score decay runs on each
  event's own `occurred_at`, as live.
- Erased people (`leadrouter forget`, workers/erasures.py; the erasure topic as it is now):
  their input events that occurred at or before their erasure are not replayed (counted in
  `erased_events_left_out`): form fills and e-mail events by the lead id of their e-mail, ad
  clicks that carry an e-mail the same way, sales activities by their `lead_id`. An event of
  the person after the erasure is a new lead's, and is replayed. The `changed` sample never
  shows a lead id that was ever erased (such a new lead is counted, not shown).
- Accounts: the `reference.accounts` table as it is now (the compacted topic, read whole
  like the worker does at start), not as it stood during the stretch.
- History lives where the baseline's settings say (broker, topic prefix, security); the
  candidate's `kafka` settings are replaced by the baseline's, so a candidate directory
  copied from elsewhere still reads the same topics.
- State: plain dicts (fastest) up to `DISK_ABOVE` events; above, RocksDB (the worker's
  `workers.store.RocksBackend`) in a temporary directory (TMPDIR), with only recently used
  values decoded in memory, removed afterwards. About 4 KiB of memory per lead in dicts
  would make a million events several GiB; on disk memory stays flat. `--store` overrides.
- Compared per lead, at the end of the stretch: qualification (routed, disqualified and
  why, not qualified), queue, rep (the last one given, after any hand-out from a waiting
  line or reassignment) and grade. The records each configuration would have published are
  kept (the last few per lead), so a changed lead shows both decision traces.
- Counted per configuration from the core's own facts (its `Recorder`) and from what it
  would have published: routings per queue and trigger, MQLs (leads whose score reached the
  configuration's threshold), disqualifications by reason, leads unassigned at routing and
  still waiting at the end, leads given per rep, reps passed over at daily capacity
  (capacity overflows), SLA breaches and reassignments, dead letters by reason.

Where replay can differ from what the live worker did (the faithful test,
tests/integration/test_replay.py, pins the rest):
- Working hours, capacity days and fairness windows are judged at the record's send time,
  the worker judges them at the wall-clock moment it processes the record (milliseconds to
  seconds later): a lead that qualified at the very edge of a rep's shift can differ.
- Rep choice depends on the order in which a queue's leads reach its desk. Replay takes
  records in timestamp order across all partitions (ties by topic, partition, offset); the
  worker in timestamp order within each batch it fetches. Two leads of one queue qualifying
  within one fetch of each other but split across two batches can swap reps under round
  robin or least_loaded.
- A stretch that begins after a lead's earlier history starts that lead from nothing (its
  earlier touches, routing and dedupe memory are not there).
"""

from __future__ import annotations

import dataclasses
import gc
import heapq
import resource
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from topics.vocabulary import SALES_ACTIVITY
from workers.history import moment_text, record_time
from workers.settings import Config

if TYPE_CHECKING:
    from workers.core.enrich import AccountBook
    from workers.core.topology import DeadLetter, Ingested, Record, Topology
    from workers.erasures import Erasure

# Above this many events in the stretch, state goes to RocksDB instead of dicts.
DISK_ABOVE = 200_000
# Records handed to both configurations at a time; on disk, state is flushed after each.
CHUNK = 2000
# Values each on-disk partition keeps decoded: those touched in the current generation of
# about this many, and in the one before.
DISK_KEEP = 4000
SAMPLE = 20
SIDES = ("baseline", "candidate")
# Prefixes of the state keys that are not leads (visitors, queue desks, SLA timers, expiry
# timers: workers/core/privacy.py EXPIRY).
NOT_LEADS = ("v:", "q:", "s:", "x:")
CAPACITY = ": at daily capacity"

ROUTED = "routed"
DISQUALIFIED = "disqualified"
NOT_QUALIFIED = "not_qualified"


# --------------------------------------------------------------------------- recording
class Tally:
    """The facts the core reports (its `Recorder`), counted: what the worker's metrics would
    have shown for this configuration. Called per event, so each method is one increment.
    tests/unit/test_replay.py holds it to every method of the core's `Recorder`."""

    def __init__(self) -> None:
        self.ok: dict[str, int] = {}
        self.duplicates: dict[str, int] = {}
        self.dead_letters: dict[str, int] = {}  # records by reason
        self.dead_letter_topics: dict[str, int] = {}
        self.leads = 0
        self.disqualifications: dict[str, int] = {}
        self.routings: dict[str, int] = {}  # per queue
        self.unassigned_queues: dict[str, int] = {}
        self.unassigned_reasons: dict[str, int] = {}
        self.from_line: dict[str, int] = {}  # per queue: leads handed out from its line
        self.reassignments: dict[str, int] = {}  # "queue action outcome"
        self.activities: dict[str, int] = {}
        self.breaches: dict[str, int] = {}

    def accepted(self, channel: str) -> None:
        self.ok[channel] = self.ok.get(channel, 0) + 1

    def duplicate(self, channel: str) -> None:
        self.duplicates[channel] = self.duplicates.get(channel, 0) + 1

    def invalid(self, topic: str, reason: str) -> None:
        self.dead_letters[reason] = self.dead_letters.get(reason, 0) + 1
        self.dead_letter_topics[topic] = self.dead_letter_topics.get(topic, 0) + 1

    def generated(self, channel: str, source: str) -> None:
        self.leads += 1

    def scored(self, total: float) -> None:
        pass

    def disqualified(self, reason: str) -> None:
        self.disqualifications[reason] = self.disqualifications.get(reason, 0) + 1

    def routed(self, queue: str, rule: str, grade: str, latency: float) -> None:
        self.routings[queue] = self.routings.get(queue, 0) + 1

    def unassigned(self, queue: str, reason: str) -> None:
        self.unassigned_queues[queue] = self.unassigned_queues.get(queue, 0) + 1
        self.unassigned_reasons[reason] = self.unassigned_reasons.get(reason, 0) + 1

    def activity(self, kind: str, outcome: str) -> None:
        self.activities[outcome] = self.activities.get(outcome, 0) + 1

    def speed_to_lead(self, queue: str, seconds: float) -> None:
        pass

    def conversion(self, queue: str, source: str, outcome: str, seconds: float) -> None:
        pass

    def sla_breach(self, queue: str) -> None:
        self.breaches[queue] = self.breaches.get(queue, 0) + 1

    def waited(self, queue: str, seconds: float) -> None:
        self.from_line[queue] = self.from_line.get(queue, 0) + 1

    def reassigned(self, queue: str, action: str, outcome: str) -> None:
        what = f"{queue} {action} {outcome}"
        self.reassignments[what] = self.reassignments.get(what, 0) + 1

    # Replay hands the topology no erasure request and fires no expiry timer: the events of
    # erased people are left out before it (Replay.feed), and a stretch is shorter than the
    # expiry period. Answered all the same, so that no handler fails.
    def erasure(self) -> None:
        pass

    def expired(self, kind: str) -> None:
        pass

    def erased_event(self, channel: str) -> None:
        pass


class DictState(dict):  # type: ignore[type-arg]
    """A partition's state as a plain dict: `get` and `put` are the dict's own C methods."""

    put = dict.__setitem__

    def delete(self, key: str) -> None:
        self.pop(key, None)


# A lead's last few published routings are kept (routed, then handed out or reassigned).
KEPT_ROUTINGS = 4


class Routings:
    """Each lead's last published routings (RoutedLead JSON, as sales would have read them),
    for the traces of changed leads: a dict, or RocksDB when state is on disk."""

    def __init__(self, path: Path | None) -> None:
        self.db: Any
        if path is None:
            self.db = {}
        else:
            from rocksdict import Options, Rdict

            options = Options(raw_mode=True)
            options.create_if_missing(True)
            options.set_write_buffer_size(4 << 20)
            self.db = Rdict(str(path), options)

    def add(self, lead_id: bytes, routed: bytes) -> None:
        """orjson writes no newline: one routing per line."""
        earlier = self.db.get(lead_id)
        if earlier is None:
            self.db[lead_id] = routed
        else:
            kept = earlier.split(b"\n")[-(KEPT_ROUTINGS - 1) :]
            self.db[lead_id] = b"\n".join([*kept, routed])

    def get(self, lead_id: str) -> list[dict[str, Any]]:
        raw = self.db.get(lead_id.encode())
        return [orjson.loads(line) for line in raw.split(b"\n")] if raw else []

    def close(self) -> None:
        if not isinstance(self.db, dict):
            self.db.close()


@dataclass
class Load:
    """Who was given what: per rep the leads given to them (at routing, from a queue's
    waiting line, on a reassignment), taken away after an SLA breach, and passed over at
    daily capacity; per trigger the routings."""

    gives: int = 0
    activities: int = 0
    overflows: int = 0  # published routings in which a rep was passed over at daily capacity
    triggers: dict[str, int] = field(default_factory=dict)
    reps: dict[str, dict[str, int]] = field(default_factory=dict)

    def count(self, event: str, routed: dict[str, Any]) -> None:
        rep = routed.get("rep_id")
        if rep is not None:
            self.gives += 1
            self._rep(rep)["leads"] += 1
        previous = routed.get("previous_rep_id")
        if event == "lead.reassigned" and previous:
            self._rep(previous)["taken_away"] += 1
        trace = (routed.get("reason") or {}).get("trace") or []
        if trace:  # the routing itself (not a later hand-out) opens with what triggered it
            head = trace[0]
            at = head.find(" triggered ")
            if at >= 0:
                trigger = head[at + 11 :].split(":", 1)[0]
                self.triggers[trigger] = self.triggers.get(trigger, 0) + 1
        full = [line for line in trace if CAPACITY in line]
        if full:
            self.overflows += 1
            for line in full:
                name = line.split(" skipped:", 1)[0].removeprefix("account owner ")
                self._rep(name)["at_capacity"] += 1

    def _rep(self, rep: str) -> dict[str, int]:
        stats = self.reps.get(rep)
        if stats is None:
            stats = self.reps[rep] = {"leads": 0, "taken_away": 0, "at_capacity": 0}
        return stats


class Desk:
    """The topology's Sink for one configuration: routings counted and kept, activities
    counted, timers kept in event-time order, dead letters counted (by the Tally)."""

    def __init__(self, routings: Routings, topics: dict[str, str]) -> None:
        self.routings = routings
        self.topic_of = topics  # queue -> its routed topic
        self.load = Load()
        self.timers: list[tuple[float, int, str]] = []

    def publish(self, topic: str, key: bytes, value: bytes, event: str) -> None:
        if event == "lead.activity":
            self.load.activities += 1
            return
        routed = orjson.loads(value)
        if topic != self.topic_of.get(routed.get("queue")):
            return  # the same record for the queue a lead left: counted once, at its new one
        self.load.count(event, routed)
        self.routings.add(key, value)

    def hand_over(self, partition: int, key: bytes, value: bytes) -> None:
        raise AssertionError("replay holds every partition: nothing leaves the process")

    def set_timer(self, partition: int, due: float, key: str) -> None:
        heapq.heappush(self.timers, (due, partition, key))

    def dead_letter(self, letter: DeadLetter) -> None:
        pass  # counted by reason in Tally.dead_letters; nothing is written anywhere


MISSING: Any = object()


class DiskState:
    """A partition's state in RocksDB (`workers.store.RocksBackend`), for stretches too long
    to hold in memory. Values touched in this generation or the one before stay decoded (a
    lead's touches come close together); a value is encoded and written only when it leaves
    memory changed, not after every change, so a busy lead costs one encoding, not one per
    chunk. A generation ends at a chunk's end once DISK_KEEP values were touched."""

    def __init__(self, path: Path) -> None:
        from workers.store import RocksBackend

        self.backend = RocksBackend(path)
        self.hot: dict[str, Any] = {}
        self.warm: dict[str, Any] = {}
        self.changed: set[str] = set()  # changed in memory since last written, hot or warm

    def get(self, key: str) -> dict[str, Any] | None:
        value = self.hot.get(key, MISSING)
        if value is MISSING:
            value = self.warm.pop(key, MISSING)
            if value is MISSING:
                value = self.backend.load(key)
            self.hot[key] = value
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.hot[key] = value
        self.changed.add(key)

    def delete(self, key: str) -> None:
        self.hot[key] = None
        self.changed.add(key)

    def flush(self) -> None:
        """At a chunk's end: once enough was touched, the previous generation leaves memory
        (what changed in it is written) and the current one becomes the previous."""
        if len(self.hot) > DISK_KEEP:
            self._write(self.warm)
            self.warm, self.hot = self.hot, {}

    def write_all(self) -> None:
        """Everything changed to disk: the end of the stretch, before the comparison."""
        self._write(self.warm)
        self._write(self.hot)

    def _write(self, values: dict[str, Any]) -> None:
        changed = self.changed
        writes = {
            key.encode(): None if value is None else orjson.dumps(value)
            for key, value in values.items()
            if key in changed
        }
        if writes:
            self.backend.apply(writes, None)
            changed.difference_update(values)
        values.clear()


class EventClock:
    """The queue desks' clock: the time of the record being handled."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- one configuration
class Side:
    """One configuration's run over the stretch: its topology, state, sink and counts."""

    def __init__(self, name: str, config: Config, accounts: AccountBook, work: Path | None) -> None:
        from workers.core.topology import Topology

        self.name = name
        self.config = config
        self.tally = Tally()
        self.clock = EventClock()
        partitions = config.settings.kafka.partitions
        self.topology: Topology = Topology(config, accounts, self.tally, self.clock, partitions)
        self.disk: list[DiskState] = []
        if work is None:
            self.states: dict[int, Any] = {p: DictState() for p in range(partitions)}
            self.routings = Routings(None)
        else:
            self.disk = [DiskState(work / name / str(p)) for p in range(partitions)]
            self.states = dict(enumerate(self.disk))
            self.routings = Routings(work / name / "routings")
        self.desk = Desk(self.routings, self.topology.routed_topics)
        self.cpu = 0.0

    def feed(self, records: list[Record], ingested: list[Ingested | None] | None = None) -> None:
        """Each record at its own time, after the timers (SLAs, queue desks' hand-outs) that
        came due before it. `ingested`: what ingest made of each record (`Replay.ingest`),
        when it is shared with the other configuration."""
        started = time.process_time()
        topology = self.topology
        process, process_ingested = topology.process, topology.process_ingested
        state_of = self.states.get
        desk, clock, timers = self.desk, self.clock, self.desk.timers
        now = clock.now
        one: list[Record] = [records[0]] if records else []
        for i, record in enumerate(records):
            stamp = record.timestamp()[1] / 1000.0
            if stamp > now:
                now = stamp
            if timers and timers[0][0] <= now:
                self.fire(now)
            clock.now = now
            result = ingested[i] if ingested is not None else None
            if result is None:
                one[0] = record
                process(one, state_of, desk, now)
            else:
                process_ingested(record, result, state_of, desk)
        for state in self.disk:
            state.flush()
        self.cpu += time.process_time() - started

    def fire(self, now: float) -> None:
        """Every timer due by `now`, each at its own time, in time order (one may set
        another): the worker fires a timer as the wall clock passes it, so a queue desk's
        hand-out at 08:00 is judged at 08:00, not when the next record arrives."""
        timers, clock = self.desk.timers, self.clock
        fire, state_of, desk = self.topology.fire, self.states.get, self.desk
        while timers and timers[0][0] <= now:
            due, partition, key = heapq.heappop(timers)
            if due > clock.now:
                clock.now = due
            fire(((partition, key),), state_of, desk)
        if now > clock.now:
            clock.now = now

    def finish(self, until: float) -> None:
        started = time.process_time()
        self.fire(until)
        for state in self.disk:
            state.write_all()
        self.cpu += time.process_time() - started

    def waiting(self) -> dict[str, int]:
        """How many leads still wait in each queue's line at the end."""
        from workers.core.context import queue_desk_key

        out = {}
        for queue in self.config.routing.queues:
            key = queue_desk_key(queue)
            desk = self.lead(self.topology.owner(key), key) or {}
            out[queue] = len(desk.get("waiting") or ())
        return out

    def leads(self, partition: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every lead's final state in one partition."""
        state = self.states[partition]
        if isinstance(state, DictState):
            for key, value in state.items():
                if key[:2] not in NOT_LEADS and value is not None:
                    yield key, value
            return
        for raw_key, raw in state.backend.db.items():
            key = raw_key.decode()
            if key[:2] not in NOT_LEADS and not key.startswith("\x00"):
                yield key, orjson.loads(raw)

    def lead(self, partition: int, key: str) -> dict[str, Any] | None:
        state = self.states[partition]
        if isinstance(state, DictState):
            return state.get(key)
        return state.backend.load(key)

    def close(self) -> None:
        for state in self.disk:
            state.backend.close()
            state.hot.clear()
            state.warm.clear()
        self.routings.close()


# --------------------------------------------------------------------------- both
@dataclass(frozen=True)
class Outcome:
    """Where a lead stands at the end of the stretch under one configuration."""

    status: str  # routed, disqualified, not_qualified
    reason: str | None  # why disqualified
    queue: str | None
    rep: str | None
    grade: str | None
    score: float | None

    @staticmethod
    def of(lead: dict[str, Any] | None) -> Outcome | None:
        if lead is None:
            return None
        score = lead.get("score") or {}
        if lead.get("state") in ("routed", "pending"):
            status, reason = ROUTED, None
        elif lead.get("disqualified"):
            status, reason = DISQUALIFIED, lead["disqualified"]
        else:
            status, reason = NOT_QUALIFIED, None
        routed = status == ROUTED
        return Outcome(
            status,
            reason,
            lead.get("queue") if routed else None,
            lead.get("rep") if routed else None,
            score.get("grade"),
            score.get("total"),
        )


def differences(a: Outcome | None, b: Outcome | None) -> list[str]:
    """What differs between two outcomes of one lead, in the report's words."""
    if a is None or b is None:
        return [] if a == b else ["qualification"]
    out = []
    if (a.status, a.reason) != (b.status, b.reason):
        out.append("qualification")
    if a.status == ROUTED and b.status == ROUTED:
        if a.queue != b.queue:
            out.append("queue")
        if a.rep != b.rep:
            out.append("rep")
    if a.grade != b.grade:
        out.append("grade")
    return out


@dataclass
class Facts:
    """About the run rather than the leads: what was read, how the leads differ, the cost."""

    events: int = 0  # replayed
    erased: int = 0  # events of erased people left out
    per_topic: dict[str, int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)  # changed leads per difference
    wall: float = 0.0
    cpu: float = 0.0  # the whole process, reading included
    sides: dict[str, float] = field(default_factory=dict)  # CPU seconds per configuration
    ingest_cpu: float = 0.0  # decoding and validating the input, once for both
    store: str = "memory"
    peak_rss_mib: float = 0.0

    def per_second(self, side: str) -> float:
        cpu = self.sides.get(side, 0.0)
        return self.events / cpu if cpu > 0 else 0.0


class Replay:
    """The stretch through both configurations in lockstep; then the comparison."""

    def __init__(
        self,
        baseline: Config,
        candidate: Config,
        accounts: AccountBook,
        *,
        disk: bool = False,
        erasures: Mapping[str, Erasure] | None = None,
    ) -> None:
        self.baseline_config = baseline
        self.erasures = erasures or {}  # lead id -> Erasure (workers.erasures)
        self.candidate_config = with_kafka_of(candidate, baseline)
        self.work = Path(tempfile.mkdtemp(prefix="leadrouter-replay-")) if disk else None
        self.sides = [
            Side("baseline", baseline, accounts, self.work),
            Side("candidate", self.candidate_config, accounts, self.work),
        ]
        self.facts = Facts(store="disk" if disk else "memory")
        self._now = 0.0  # the clock `ingest` keeps, as each side's `EventClock` does
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def feed(self, records: Iterable[Record]) -> None:
        """Records in the order to handle them (history's timestamp order), less the events
        of erased people from before their erasure."""
        prefix = len(self.baseline_config.settings.kafka.topic_prefix)
        per_topic = self.facts.per_topic
        stream = iter(records) if not self.erasures else self._unerased(records, prefix)
        while chunk := list(islice(stream, CHUNK)):
            self.facts.events += len(chunk)
            for record in chunk:
                topic = (record.topic() or "")[prefix:]
                per_topic[topic] = per_topic.get(topic, 0) + 1
            ingested = self.ingest(chunk)
            for side in self.sides:
                side.feed(chunk, ingested)
            del chunk
            # Lead state is many long-lived objects: the young generations are collected and
            # the survivors kept out of full collections, as in the worker.
            gc.collect(1)
            gc.freeze()

    def ingest(self, chunk: list[Record]) -> list[Ingested | None] | None:
        """Each record decoded and validated once for both configurations, at the time each
        side's clock will have for it (the latest timestamp so far); None when the two
        would ingest differently (another size limit)."""
        base, cand = (side.topology for side in self.sides)
        if not base.same_ingest(cand):
            return None
        started = time.process_time()
        ingested, now = base.ingested, self._now
        out = []
        for record in chunk:
            stamp = record.timestamp()[1] / 1000.0
            if stamp > now:
                now = stamp
            out.append(ingested(record, now))
        self._now = now
        self.facts.ingest_cpu += time.process_time() - started
        return out

    def _unerased(self, records: Iterable[Record], prefix: int) -> Iterator[Record]:
        """The input events that are not an erased person's from before their erasure."""
        from topics.catalogue import INPUT_KINDS

        erasures, facts = self.erasures, self.facts
        for record in records:
            kind = INPUT_KINDS.get((record.topic() or "")[prefix:])
            if kind is not None and erased_event(kind, record, erasures):
                facts.erased += 1
                continue
            yield record

    def finish(self, until: float) -> None:
        """The end of the stretch: SLA timers due by then fire."""
        for side in self.sides:
            side.finish(until)
        t = self.facts
        t.wall = time.monotonic() - self._wall
        t.cpu = time.process_time() - self._cpu
        t.sides = {side.name: side.cpu for side in self.sides}
        t.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def outcomes(self) -> Iterator[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]:
        """Every lead seen by either configuration: (lead id, baseline state, candidate
        state), partition by partition."""
        base, cand = self.sides
        for p in base.states:
            for key, lead in base.leads(p):
                yield key, lead, cand.lead(p, key)
            for key, lead in cand.leads(p):
                if base.lead(p, key) is None:
                    yield key, None, lead

    def report(self, sample: int = SAMPLE) -> dict[str, Any]:
        """The comparison as JSON-ready data (the keys of DESIGN.md)."""
        base, cand = self.sides
        thresholds = [s.config.scoring.mql_threshold for s in self.sides]
        seen = [0, 0]
        mqls = [0, 0]
        changed: list[tuple[str, Any, Any, list[str]]] = []
        changed_count = 0
        kinds = self.facts.changes
        kinds.clear()
        erased = self.erasures
        for lead_id, a, b in self.outcomes():
            for i, lead in enumerate((a, b)):
                if lead is not None:
                    seen[i] += 1
                    if (lead.get("score") or {}).get("total", 0) >= thresholds[i]:
                        mqls[i] += 1
            oa, ob = Outcome.of(a), Outcome.of(b)
            diff = differences(oa, ob)
            if diff:
                changed_count += 1
                for kind in diff:
                    kinds[kind] = kinds.get(kind, 0) + 1
                # Never shown, even as a new lead after the erasure: counted above only.
                if len(changed) < sample and lead_id not in erased:
                    changed.append((lead_id, a, b, diff))
        # The contract's six top-level keys only; the events of erased people left out of
        # the input are the same for both configurations, told with each.
        erased = {"erased_events_left_out": self.facts.erased}
        return {
            "events": self.facts.events,
            "leads": seen[0],
            "baseline": {**self._side(base, seen[0], mqls[0]), **erased},
            "candidate": {**self._side(cand, seen[1], mqls[1]), **erased},
            "changed_count": changed_count,
            "changed": [self._changed(*c) for c in changed],
        }

    def _side(self, side: Side, seen: int, mqls: int) -> dict[str, Any]:
        tally, load, config = side.tally, side.desk.load, side.config
        waiting = side.waiting()
        queues = {
            name: {
                "strategy": q.strategy,
                "reps": list(q.reps),
                "routed": tally.routings.get(name, 0),
                "unassigned": tally.unassigned_queues.get(name, 0),
                "from_waiting_line": tally.from_line.get(name, 0),
                "waiting_at_end": waiting.get(name, 0),
                "sla_breaches": tally.breaches.get(name, 0),
            }
            for name, q in config.routing.queues.items()
        }
        reps = {
            r: {"leads": 0, "taken_away": 0, "at_capacity": 0}
            for q in config.routing.queues.values()
            for r in q.reps
        }
        return {
            "config": str(config.directory),
            "mql_threshold": config.scoring.mql_threshold,
            "leads": seen,
            "routed": sum(tally.routings.values()),
            "mqls": mqls,
            "routed_by_trigger": dict(sorted(load.triggers.items())),
            "disqualified": dict(sorted(tally.disqualifications.items())),
            "unassigned": sum(tally.unassigned_queues.values()),
            "unassigned_by_reason": dict(sorted(tally.unassigned_reasons.items())),
            "waiting_at_end": sum(waiting.values()),
            "capacity_overflows": load.overflows,
            "reassignments": dict(sorted(tally.reassignments.items())),
            "sla_breaches": sum(tally.breaches.values()),
            "queues": queues,
            "reps": reps | load.reps,
            "activities_published": load.activities,
            "sales_activities": dict(sorted(tally.activities.items())),
            "duplicates": sum(tally.duplicates.values()),
            "dead_letters": dict(sorted(tally.dead_letters.items())),
        }

    def _changed(
        self, lead_id: str, a: dict[str, Any] | None, b: dict[str, Any] | None, diff: list[str]
    ) -> dict[str, Any]:
        email = (a or b or {}).get("email")
        return {
            "lead_id": lead_id,
            "email": email,
            "differs": diff,
            "baseline": self._decision(self.sides[0], lead_id, a),
            "candidate": self._decision(self.sides[1], lead_id, b),
        }

    def _decision(self, side: Side, lead_id: str, lead: dict[str, Any] | None) -> dict[str, Any]:
        """One configuration's decision on a lead, with its trace in the pipeline's words."""
        outcome = Outcome.of(lead)
        if outcome is None:
            return {"status": "not_seen", "trace": ["no record of this lead was accepted"]}
        decision: dict[str, Any] = {
            "status": outcome.status,
            "queue": outcome.queue,
            "rep": outcome.rep,
            "grade": outcome.grade,
            "score": outcome.score,
        }
        threshold = side.config.scoring.mql_threshold
        if outcome.status == ROUTED:
            routings = side.routings.get(lead_id)
            last = (routings[-1] if routings else {}).get("reason") or {}
            trace: list[str] = []
            for routed in routings:  # the routing, then any hand-out or reassignment
                if len(routings) > 1:
                    trace.append(f"[{routed.get('event')}, {routed.get('queue')}]")
                trace += (routed.get("reason") or {}).get("trace") or []
            decision |= {
                "rule": last.get("rule"),
                "assignment": last.get("assignment"),
                "routed_at": routings[0].get("routed_at") if routings else None,
                "trace": trace,
            }
        elif outcome.status == DISQUALIFIED:
            decision |= {
                "reason": outcome.reason,
                "trace": [
                    f"qualified (score {outcome.score:g}, threshold {threshold:g}, or a "
                    f"fast-lane touch) but disqualified: {outcome.reason}"
                ],
            }
        else:
            decision["trace"] = [
                f"not qualified: score {outcome.score:g} at its last touch, threshold "
                f"{threshold:g}, and no fast-lane touch"
            ]
        return decision

    def close(self) -> None:
        for side in self.sides:
            side.close()
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)


def erased_event(kind: str, record: Record, erasures: Mapping[str, Erasure]) -> bool:
    """True for an input event of an erased person that occurred (`occurred_at`, else the
    record's time) at or before their erasure. An event that names no one, or cannot be
    read (it goes to dead letters, counted by reason), is not."""
    raw = record.value()
    if not raw:
        return False
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(event, dict):
        return False
    if kind == SALES_ACTIVITY:
        lead = event.get("lead_id")
        if not isinstance(lead, str):
            return False
        lead = lead.strip()  # as the contract reads it
    else:
        email = event.get("email")
        # An ad click without an e-mail is anonymous (a click id, an anonymous_id): nothing in
        # it leads to a person, so it cannot be attributed to an erased one and is replayed.
        # It joins a lead only through a form fill with the same anonymous_id: one from
        # before the erasure is left out here, so the clicks stay a visitor's; one after it
        # joins them to the new lead, where the live worker drops clicks older than the
        # erasure (its marker): that new lead's score can differ a little.
        if not isinstance(email, str):
            return False
        from topics.contracts import normalise_email
        from workers.core.identity import lead_id

        lead = lead_id(normalise_email(email) or email)  # the worker's own derivation
    erasure = erasures.get(lead)
    if erasure is None:
        return False
    at = record_time(event.get("occurred_at"))
    return erasure.covers(record.timestamp()[1] / 1000 if at is None else at)


def with_kafka_of(candidate: Config, baseline: Config) -> Config:
    """The candidate with the baseline's `kafka` settings: history is where the worker's is."""
    settings = candidate.settings.model_copy(update={"kafka": baseline.settings.kafka})
    return dataclasses.replace(candidate, settings=settings)


# --------------------------------------------------------------------------- printing
def _n(value: float) -> str:
    return f"{value:,.0f}"


def _delta(a: float, b: float) -> str:
    return "" if a == b else f"{b - a:+,.0f}"


def render_summary(report: dict[str, Any], facts: Facts, since: float, until: float) -> str:
    """The report as a person reads it in a terminal."""
    base, cand = report["baseline"], report["candidate"]
    topics = ", ".join(f"{t} {_n(n)}" for t, n in sorted(facts.per_topic.items()))
    erased = base.get("erased_events_left_out") or 0
    lines = [
        f"replay {moment_text(since)} .. {moment_text(until)}: {_n(report['events'])} events "
        f"({topics}), {_n(report['leads'])} leads"
        + (f"; {_n(erased)} events of erased people left out" if erased else ""),
    ]
    if base["dead_letters"]:
        shown = ", ".join(f"{r} {_n(n)}" for r, n in base["dead_letters"].items())
        lines.append(f"malformed records (not routed, counted): {shown}")
    width = 28
    lines += [
        "",
        f"{'':<{width}}{'baseline':>12}{'candidate':>12}{'change':>10}",
    ]

    def row(label: str, a: float, b: float) -> None:
        lines.append(f"{label:<{width}}{_n(a):>12}{_n(b):>12}{_delta(a, b):>10}")

    lines.append(f"{'config':<{width}}{base['config']}  ->  {cand['config']}")
    row("MQL threshold", base["mql_threshold"], cand["mql_threshold"])
    row("leads routed", base["routed"], cand["routed"])
    for trigger in sorted(set(base["routed_by_trigger"]) | set(cand["routed_by_trigger"])):
        row(
            f"  by {trigger}",
            base["routed_by_trigger"].get(trigger, 0),
            cand["routed_by_trigger"].get(trigger, 0),
        )
    row("MQLs (score >= threshold)", base["mqls"], cand["mqls"])
    row("disqualified", sum(base["disqualified"].values()), sum(cand["disqualified"].values()))
    for reason in sorted(set(base["disqualified"]) | set(cand["disqualified"])):
        row(f"  {reason}", base["disqualified"].get(reason, 0), cand["disqualified"].get(reason, 0))
    row("unassigned at routing", base["unassigned"], cand["unassigned"])
    row("  still waiting at the end", base["waiting_at_end"], cand["waiting_at_end"])
    row("capacity overflows", base["capacity_overflows"], cand["capacity_overflows"])
    row("SLA breaches", base["sla_breaches"], cand["sla_breaches"])
    row(
        "reassigned after a breach",
        _moved(base["reassignments"]),
        _moved(cand["reassignments"]),
    )
    lines.append("per queue (routed)")
    for queue in sorted(set(base["queues"]) | set(cand["queues"])):
        row(
            f"  {queue}",
            base["queues"].get(queue, {}).get("routed", 0),
            cand["queues"].get(queue, {}).get("routed", 0),
        )
    lines.append("per rep (leads)")
    for rep in sorted(set(base["reps"]) | set(cand["reps"])):
        a, b = base["reps"].get(rep, {}), cand["reps"].get(rep, {})
        row(f"  {rep}", a.get("leads", 0), b.get("leads", 0))
    kinds = facts.changes
    shown = ", ".join(f"{k} {_n(v)}" for k, v in sorted(kinds.items()))
    lines += [
        "",
        f"changed: {_n(report['changed_count'])} leads" + (f" ({shown})" if shown else ""),
    ]
    for entry in report["changed"][:10]:
        lines.append(
            f"  {entry['email'] or entry['lead_id']}: {_said(entry['baseline'])}  ->  "
            f"{_said(entry['candidate'])}"
        )
    if report["changed_count"] > 10:
        lines.append(f"  ... (--json FILE has {len(report['changed'])} with both traces)")
    lines += [
        "",
        f"{_n(facts.events)} events in {facts.wall:.1f} s "
        f"({_n(facts.events / max(facts.wall, 1e-9))}/s wall); per configuration: "
        + ", ".join(
            f"{name} {facts.sides.get(name, 0):.1f} CPU s ({_n(facts.per_second(name))} events/s)"
            for name in SIDES
        )
        + (
            f"; ingest once for both {facts.ingest_cpu:.1f} CPU s "
            f"({_n(facts.events / facts.ingest_cpu)} events/s)"
            if facts.ingest_cpu
            else ""
        )
        + f"; state in {facts.store}, peak memory {facts.peak_rss_mib:.0f} MiB",
    ]
    return "\n".join(lines) + "\n"


def _moved(reassignments: dict[str, int]) -> int:
    return sum(n for what, n in reassignments.items() if what.endswith(" reassigned"))


def _said(decision: dict[str, Any]) -> str:
    status = decision["status"]
    grade = f" grade {decision['grade']}" if decision.get("grade") else ""
    if status == ROUTED:
        return f"{decision['queue']}/{decision['rep'] or 'unassigned'}{grade}"
    if status == DISQUALIFIED:
        return f"disqualified ({decision['reason']}){grade}"
    if status == NOT_QUALIFIED:
        return f"not qualified (score {decision['score']:g}){grade}"
    return status


# --------------------------------------------------------------------------- the command
def load_accounts(config: Config) -> AccountBook:
    """The accounts table as it is now, read whole as the worker reads it at start."""
    from topics import catalogue as cat
    from workers.core.enrich import AccountBook
    from workers.runtime.accounts import AccountsReader
    from workers.runtime.clients import Clients

    book = AccountBook()
    settings = config.settings
    reader = AccountsReader(
        Clients(settings, "replay"), settings.kafka.topic_prefix + cat.ACCOUNTS, book
    )
    reader.read_once()
    return book


def input_topics(config: Config) -> list[str]:
    """The topics replay reads: the marketing inputs and the sales activities."""
    from topics import catalogue as cat

    return [config.settings.kafka.topic_prefix + t for t in cat.INPUT_KINDS]


@contextmanager
def replayed(
    baseline: Config,
    candidate: Config,
    since: float,
    until: float,
    *,
    store: str = "auto",
    progress: bool = False,
) -> Iterator[Replay]:
    """The stretch read from the broker and run through both configurations: the Replay,
    finished, for its report and outcomes; its stores are removed on leaving.

    Raises click.UsageError for unknown topics and an empty stretch (exit status 2)."""
    from workers import history

    try:
        stretch = history.plan(baseline.settings, input_topics(baseline), since, until)
    except history.UnknownTopic as exc:
        raise click.UsageError(
            f"{exc}: is the topic prefix right? (`leadrouter topics apply` creates the topics)"
        ) from None
    nothing = f"nothing to replay: no records between {moment_text(since)} and {moment_text(until)}"
    if stretch.empty:
        raise click.UsageError(f"{nothing} on {', '.join(stretch.topics)}")
    disk = store == "disk" or (store == "auto" and stretch.total > DISK_ABOVE)
    accounts = load_accounts(baseline)
    from workers.erasures import read_erasures

    erasures = read_erasures(baseline.settings)
    with Replay(baseline, candidate, accounts, disk=disk, erasures=erasures) as run:
        run.feed(history.read(baseline.settings, stretch, progress=progress))
        if run.facts.events == 0:
            if run.facts.erased:
                nothing = (
                    f"nothing to replay between {moment_text(since)} and {moment_text(until)}: "
                    f"its {_n(run.facts.erased)} events are erased people's, from before "
                    "their erasure"
                )
            raise click.UsageError(nothing)
        run.finish(until)
        yield run
