"""In-memory harness for the lead desk: a dict state and a recorder of reported facts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from workers.core.desk import Effects, LeadDesk, ingest
from workers.core.enrich import AccountBook
from workers.settings import Config


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
    """A Recorder that counts what the desk reports, keyed by method and arguments."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[Any, ...]] = Counter()
        self.observed: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str):
        def record(*args: Any) -> None:
            if name in ("speed_to_lead", "conversion", "routed", "scored"):
                self.observed.append((name, *args))
                args = args[:-1]
            self.counts[(name, *args)] += 1

        return record


class Pipeline:
    """Runs records through ingest and the desk until no internal record is left,
    as the worker does across partitions, and collects what sales would receive."""

    def __init__(self, config: Config, now: float) -> None:
        self.now = now
        self.state = DictState()
        self.facts = Facts()
        self.accounts = AccountBook()
        self.desk = LeadDesk(config, self.accounts, self.facts, lambda: self.now)
        self.published: list[tuple[str, str, dict[str, Any]]] = []
        self.timers: list[tuple[float, str]] = []
        self.invalid: list[str] = []

    def send(self, kind: str, event: dict[str, Any] | bytes) -> None:
        raw = event if isinstance(event, bytes) else orjson.dumps(event)
        result = ingest(kind, raw, self.now, 65536)
        if not isinstance(result, tuple):
            self.invalid.append(result.reason)
            return
        pending = [result]
        while pending:
            key, record = pending.pop(0)
            fx: Effects = self.desk.handle(key, orjson.loads(orjson.dumps(record)), self.state)
            pending += fx.internal
            self.published += fx.published
            self.timers += fx.timers

    def fire_timers(self) -> None:
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, lead_id in due:
            self.desk.on_sla_due(lead_id, self.state)
