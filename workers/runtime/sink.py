"""The topology's output to Kafka: routed leads, hand-overs to other workers' partitions,
dead letters (one path for every error kind) and timers."""

from __future__ import annotations

from workers.core.topology import DeadLetter, Topology
from workers.runtime.commit import Committer
from workers.runtime.outbox import Outbox
from workers.runtime.timers import Timers

DETAIL_LIMIT = 1000


def deadletter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The record's own headers, then why it failed and where it came from (DESIGN.md)."""
    return [
        *letter.headers,
        ("error.reason", letter.reason.encode()),
        ("error.detail", _truncated(letter.detail, DETAIL_LIMIT)),
        ("source.topic", letter.topic.encode()),
        ("source.partition", str(letter.partition).encode()),
        ("source.offset", str(letter.offset).encode()),
    ]


def _truncated(text: str, limit: int) -> bytes:
    """At most `limit` bytes of UTF-8, cut between characters."""
    return text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore").encode()


class KafkaSink:
    """A `workers.core.topology.Sink` that produces into the batch's unit of work."""

    def __init__(
        self,
        committer: Committer,
        timers: Timers,
        internal_topic: str,
        deadletter_topic: str,
    ) -> None:
        self.produce = committer.produce
        self.timers = timers
        self.internal_topic = internal_topic
        self.deadletter_topic = deadletter_topic

    def publish(self, topic: str, key: bytes, value: bytes, event: str) -> None:
        self.produce(topic, key, value, headers=[("event", event.encode())])

    def hand_over(self, partition: int, key: bytes, value: bytes) -> None:
        self.produce(self.internal_topic, key, value, partition=partition)

    def set_timer(self, partition: int, due: float, key: str) -> None:
        self.timers.set(partition, due, key)

    def dead_letter(self, letter: DeadLetter) -> None:
        self.produce(
            self.deadletter_topic, letter.key, letter.value, headers=deadletter_headers(letter)
        )


class OutboxSink(KafkaSink):
    """at_least_once: what a partition's state sends (routed leads, records for other
    partitions, dead letters of its messages) waits in the batch's outbox and is sent once
    that state is durable (outbox.py); what an input record causes before it reaches any
    state (its dead letter, its hand-over to another worker) is produced at once, as it
    changes nothing that a crash could lose."""

    def __init__(
        self,
        committer: Committer,
        timers: Timers,
        internal_topic: str,
        deadletter_topic: str,
        topology: Topology,
        outbox: Outbox,
    ) -> None:
        super().__init__(committer, timers, internal_topic, deadletter_topic)
        self.topology = topology
        self.outbox = outbox

    def publish(self, topic: str, key: bytes, value: bytes, event: str) -> None:
        self._out(topic, -1, key, value, [("event", event.encode())])

    def hand_over(self, partition: int, key: bytes, value: bytes) -> None:
        p = self.topology.handling
        if p is None:
            self.produce(self.internal_topic, key, value, partition=partition)
        else:
            self.outbox.message(p, (self.internal_topic, partition, key, value, None))

    def dead_letter(self, letter: DeadLetter) -> None:
        self._out(self.deadletter_topic, -1, letter.key, letter.value, deadletter_headers(letter))

    def _out(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None,
    ) -> None:
        p = self.topology.handling
        if p is None:
            self.produce(topic, key, value, partition=partition, headers=headers)
        else:
            self.outbox.add(p, (topic, partition, key, value, headers))
