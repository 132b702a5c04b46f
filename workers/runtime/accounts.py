"""The `reference.accounts` table: read whole by every worker before any lead is scored,
then followed between batches. Every worker holds all of it (firmographics and owners are
small and read on every enrichment)."""

from __future__ import annotations

import logging
import time

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from workers.core.enrich import AccountBook
from workers.runtime.clients import Clients

log = logging.getLogger("leadrouter.worker")
LOAD_DEADLINE = 180.0


class AccountsReader:
    def __init__(self, clients: Clients, topic: str, book: AccountBook) -> None:
        self.clients = clients
        self.topic = topic
        self.book = book
        self.reader: Consumer | None = None

    def load(self) -> None:
        """Everything on the topic now, before the worker consumes anything else."""
        self.reader = reader = Consumer(
            self.clients.reader(f"accounts-{self.clients.instance}", read_committed=True)
        )
        meta = reader.list_topics(self.topic, timeout=30).topics[self.topic]
        tps = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        reader.assign(tps)
        marks = {tp.partition: reader.get_watermark_offsets(tp, timeout=30) for tp in tps}
        ends = {p: high for p, (_, high) in marks.items()}
        done = {p for p, (low, high) in marks.items() if high <= low}
        deadline = time.monotonic() + LOAD_DEADLINE
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
        log.info("accounts loaded: %d", len(self.book.by_domain))

    def poll(self) -> None:
        """Changes since the last call, without waiting."""
        if self.reader is not None:
            for msg in self.reader.consume(1000, 0):
                if not msg.error():
                    self._apply(msg)

    def _apply(self, msg: Message) -> None:
        key = msg.key()
        if not key:
            return
        try:
            value = orjson.loads(msg.value()) if msg.value() is not None else None
        except orjson.JSONDecodeError:
            log.warning("reference.accounts offset %d: not JSON, ignored", msg.offset())
            return
        if value is not None and not isinstance(value, dict):
            return
        self.book.put(key.decode("utf-8", "replace"), value)

    def close(self) -> Consumer | None:
        """The reader, for the caller to close under its watchdog."""
        reader, self.reader = self.reader, None
        return reader
