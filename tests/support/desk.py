"""The whole pipeline in-process, without a broker: the worker's own `Topology` over a dict
state and a recorder of reported facts. Every message handed over is encoded and decoded
on the way, as if it crossed to another worker, so the wire format is exercised too."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from topics import catalogue as cat
from topics.messages import Message
from workers.core.context import Effects
from workers.core.enrich import AccountBook
from workers.core.topology import InputRecord, Topology
from workers.settings import Config

TOPIC_OF_KIND = {kind: topic for topic, kind in cat.INPUT_KINDS.items()}


class DictState:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        return orjson.loads(orjson.dumps(value)) if value is not None else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = orjson.loads(orjson.dumps(value))

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


class Facts:
    """A Recorder that counts what the core reports, keyed by method and arguments."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[Any, ...]] = Counter()
        self.observed: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str):
        def record(*args: Any) -> None:
            if name in ("speed_to_lead", "conversion", "routed", "scored", "waited"):
                self.observed.append((name, *args))
                args = args[:-1]
            self.counts[(name, *args)] += 1

        return record


class Pipeline:
    """Sends records through the topology, one process owning every partition, and
    collects what sales would receive (queue, lead id, RoutedLead as JSON)."""

    def __init__(self, config: Config, now: float, partitions: int = 6) -> None:
        self.now = now
        self.state = DictState()
        self.facts = Facts()
        self.accounts = AccountBook()
        self.prefix = config.settings.kafka.topic_prefix
        self.topology = Topology(
            config, self.accounts, self.facts, lambda: self.now, partitions, round_trip=True
        )
        self.published: list[tuple[str, str, dict[str, Any]]] = []
        self.timers: list[tuple[float, str]] = []
        self.invalid: list[str] = []

    def state_of(self, partition: int) -> DictState:
        return self.state

    def send(self, kind: str, event: dict[str, Any] | bytes) -> None:
        raw = event if isinstance(event, bytes) else orjson.dumps(event)
        record = InputRecord(self.prefix + TOPIC_OF_KIND[kind], None, raw)
        out = self.topology.run([record], self.state_of, self.now)
        self.published += out.published
        self.timers += [(due, key) for _, due, key in out.timers]
        self.invalid += [letter.reason for letter in out.dead_letters]

    def handle(self, key: str, message: Message) -> Effects:
        """One message to its entity's handler, effects returned and not carried out."""
        effects = Effects()
        self.topology.handlers[type(message)](key, message, self.state, effects)
        return effects

    def fire_timers(self) -> None:
        """The timers due by now (SLAs and queue desks' hand-outs), as the worker fires them
        between batches; those they set are kept for later."""
        due = sorted(t for t in self.timers if t[0] <= self.now)
        self.timers = [t for t in self.timers if t[0] > self.now]
        owned = [(self.topology.owner(key), key) for _, key in due]
        out = self.topology.run([], self.state_of, self.now, due=owned)
        self.published += out.published
        self.timers += [(at, key) for _, at, key in out.timers]

    def advance(self, to: float) -> None:
        """Let the clock run to `to`, firing each timer at its own time, in order."""
        while due := [at for at, _ in self.timers if at <= to]:
            self.now = max(self.now, min(due))
            self.fire_timers()
        self.now = to
