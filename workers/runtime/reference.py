"""Reference topics every worker reads whole and then follows: the accounts table and
the published configuration. Read by hand-assigned partitions, never by the group: every
worker holds all of it."""

from __future__ import annotations

import logging
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from workers.connection import answered
from workers.runtime.clients import Clients

log = logging.getLogger("leadrouter.worker")
LOAD_DEADLINE = 180.0


class ReferenceReader:
    """Reads a compacted topic from its beginning to its end at `load`, then what arrives
    at each `poll`; each record goes to `_apply`."""

    purpose = "reference"

    def __init__(self, clients: Clients, topic: str) -> None:
        self.clients = clients
        self.topic = topic
        self.reader: Consumer | None = None

    def load(self) -> None:
        """Everything on the topic now, before the worker consumes anything else."""
        self.reader = reader = Consumer(
            self.clients.reader(f"{self.purpose}-{self.clients.instance}", read_committed=True)
        )
        meta = reader.list_topics(self.topic, timeout=30).topics[self.topic]
        tps = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        reader.assign(tps)
        deadline = time.monotonic() + LOAD_DEADLINE
        marks = {
            tp.partition: answered(lambda tp=tp: reader.get_watermark_offsets(tp, timeout=30), 60)
            for tp in tps
        }
        ends = {p: high for p, (_, high) in marks.items()}
        done = {p for p, (low, high) in marks.items() if high <= low}
        while len(done) < len(ends) and time.monotonic() < deadline:
            messages = reader.consume(10000, 0.5)
            for msg in messages:
                if msg.error():
                    continue
                self._apply(msg)
                if msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
            # A partition may end in a marker, never delivered: ask where each one stands.
            waiting = [TopicPartition(self.topic, p) for p in ends if p not in done]
            for tp in reader.position(waiting) if waiting else ():
                if tp.offset >= ends[tp.partition]:
                    done.add(tp.partition)

    def read_once(self) -> None:
        """`load`, then close: a command's one look at the topic."""
        try:
            self.load()
        finally:
            consumer = self.close()
            if consumer is not None:
                consumer.close()

    def poll(self) -> None:
        """Changes since the last call, without waiting."""
        if self.reader is not None:
            for msg in self.reader.consume(1000, 0):
                if not msg.error():
                    self._apply(msg)

    def _apply(self, msg: Message) -> None:
        raise NotImplementedError

    def close(self) -> Consumer | None:
        """The reader, for the caller to close under its watchdog."""
        reader, self.reader = self.reader, None
        return reader
