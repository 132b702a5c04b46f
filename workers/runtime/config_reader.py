"""The published configuration (`reference.config`), followed by every worker.

At start the worker runs the latest record that is a valid configuration (its local files
when none is); between batches it switches to each newer valid one. A record that is not
one (corrupt, hand-written, from a newer release, failing validation) is refused with a log
line and a counter, and the worker keeps the version it runs: it never stops routing for a
bad publish. The last record wins, whatever its version: publishing an earlier version
again is a rollback.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from confluent_kafka import KafkaException, Message, Producer

from workers.config_versions import Published, Refused, checked, read_record, runnable
from workers.metrics import Metrics
from workers.runtime.clients import Clients
from workers.runtime.reference import ReferenceReader
from workers.settings import Config, Settings

log = logging.getLogger("leadrouter.config")


class ConfigReader(ReferenceReader):
    purpose = "config"

    def __init__(
        self,
        clients: Clients,
        topic: str,
        local: Config,
        metrics: Metrics,
        refused: set[int] | None = None,
    ) -> None:
        super().__init__(clients, topic)
        self.local = local
        self.metrics = metrics
        self.refused = set() if refused is None else refused  # offsets already reported
        self._arrived: list[tuple[int, bytes | None]] = []

    def _apply(self, msg: Message) -> None:
        self._arrived.append((msg.offset(), msg.value()))

    def latest(self) -> tuple[Config, Published] | None:
        """After `load`: the newest valid version on the topic, or None (local files).
        Records after it that are refused are reported; older ones are history."""
        arrived, self._arrived = self._arrived, []
        for offset, value in reversed(arrived):
            if value is None:
                continue  # a tombstone: compaction's business, not a version
            found = self._judge(offset, value)
            if found is not None:
                return found
        return None

    def newer(self, running: str) -> tuple[Config, Published] | None:
        """Records that arrived since the last call: the last valid one when it is not the
        version running (a republished earlier version included), else None."""
        self.poll()
        arrived, self._arrived = self._arrived, []
        chosen = None
        for offset, value in arrived:
            if value is not None:
                chosen = self._judge(offset, value) or chosen
        if chosen is None or chosen[0].version == running:
            return None
        return chosen

    def _judge(self, offset: int, value: bytes) -> tuple[Config, Published] | None:
        try:
            published = read_record(value, offset)
            config = runnable(published, self.local, self.topic)
        except Refused as exc:
            if offset in self.refused:
                return None  # reported when first read (an earlier session)
            self.refused.add(offset)
            self.metrics.config_refused.labels(exc.reason).inc()
            log.error(
                "%s offset %d refused (%s): %s; keeping the configuration this worker runs",
                self.topic,
                offset,
                exc.reason,
                exc.detail,
            )
            return None
        for warning in config.warnings:
            log.warning("%s", warning)
        return config, published


class _Collector(ReferenceReader):
    """Reads the topic whole, once, for the `config` commands."""

    purpose = "config-cli"

    def __init__(self, clients: Clients, topic: str) -> None:
        super().__init__(clients, topic)
        self.records: list[tuple[int, bytes | None]] = []

    def _apply(self, msg: Message) -> None:
        self.records.append((msg.offset(), msg.value()))


def read_versions(
    settings: Settings, topic: str
) -> tuple[list[Published], list[tuple[int, Refused]]]:
    """The versions workers would run, each once at its latest publishing (as compaction
    keeps them), oldest first; and the records that are none (offset, why)."""
    reader = _Collector(Clients(settings, f"cli-{os.getpid()}"), topic)
    reader.read_once()
    versions: list[Published] = []
    refused: list[tuple[int, Refused]] = []
    for offset, value in reader.records:
        if value is None:
            continue
        try:
            published = read_record(value, offset)
            checked(published, topic)
        except Refused as exc:
            refused.append((offset, exc))
            continue
        versions = [p for p in versions if p.version != published.version] + [published]
    return versions, refused


def publish(settings: Settings, topic: str, key: str, value: bytes) -> int:
    """Write one record (a version, an erasure request) and wait until the broker has it:
    its offset."""
    producer = Producer(Clients(settings, "cli").producer(transactional=False))
    delivered: list[Any] = []
    producer.produce(
        topic, key=key.encode(), value=value, on_delivery=lambda e, m: delivered.append((e, m))
    )
    producer.flush(60)
    if not delivered:
        raise KafkaException(f"{topic}: no answer from the broker in 60 s")
    error, msg = delivered[0]
    if error is not None:
        raise KafkaException(error)
    return int(msg.offset())


def topic_exists(settings: Settings, topic: str) -> bool:
    """Whether the broker has `topic` (asked without creating it)."""
    from confluent_kafka.admin import AdminClient

    conf = {k: v for k, v in Clients(settings, "cli").base.items() if k != "logger"}
    found = AdminClient(conf).list_topics(topic, timeout=30).topics.get(topic)
    return found is not None and found.error is None
