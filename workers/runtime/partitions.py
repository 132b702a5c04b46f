"""The partitions of the internal topic this worker owns, and their state: restored from
the compacted changelog on assignment (from the local checkpoint when the RocksDB store
has one), dropped on revocation, with their SLA timers."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from workers.connection import data_dir
from workers.runtime.clients import Clients
from workers.runtime.timers import Timers
from workers.settings import Settings
from workers.store import MemoryBackend, PartitionState, RocksBackend

log = logging.getLogger("leadrouter.worker")
RESTORE_DEADLINE = 180.0


class Partitions:
    """`states[p]` for each owned partition p; `state_of(p)` is the topology's view."""

    def __init__(
        self, settings: Settings, clients: Clients, changelog_topic: str, timers: Timers
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.changelog_topic = changelog_topic
        self.timers = timers
        self.states: dict[int, PartitionState] = {}
        self.read_committed = False

    def state_of(self, partition: int) -> PartitionState | None:
        return self.states.get(partition)

    def assign(self, partition: int) -> None:
        if partition not in self.states:
            self._restore(partition)

    def drop(self, partition: int) -> None:
        state = self.states.pop(partition, None)
        self.timers.drop(partition)
        if state is not None:
            state.backend.close()

    def drop_all(self) -> None:
        for p in list(self.states):
            self.drop(p)

    def _backend(self, p: int) -> Any:
        if self.settings.store.kind == "rocksdb":
            path = data_dir(self.settings) / self.settings.kafka.group_id / f"p{p}"
            return RocksBackend(path)
        return MemoryBackend()

    def _restore(self, p: int) -> None:
        """Rebuild partition p's state from the changelog (from the local checkpoint if any)."""
        backend = self._backend(p)
        try:
            self._fill(p, backend)
        except BaseException:
            backend.close()  # a RocksDB store keeps its lock until closed
            raise

    def _fill(self, p: int, backend: Any) -> None:
        start = backend.checkpoint()
        reader = Consumer(self.clients.reader("restore", read_committed=self.read_committed))
        applied = 0
        try:
            tp = TopicPartition(self.changelog_topic, p)
            low, high = reader.get_watermark_offsets(tp, timeout=30)
            if start is not None and not low <= start <= high:
                # A local copy from outside the log as it is now (its start moved past the
                # checkpoint: deletions since then are gone from it; or the topic is newer
                # than the checkpoint): only a full restore is right.
                log.warning(
                    "partition %d: local checkpoint %d outside the changelog (%d..%d): rebuilt",
                    p,
                    start,
                    low,
                    high,
                )
                backend.clear()
                start = None
            begin = start if start is not None else OFFSET_BEGINNING
            if high > (start or low):
                reader.assign([TopicPartition(self.changelog_topic, p, begin)])
                deadline = time.monotonic() + RESTORE_DEADLINE
                position = start or low
                while position < high:
                    if time.monotonic() > deadline:
                        raise KafkaException(f"restore of partition {p} did not finish in time")
                    writes: dict[bytes, bytes | None] = {}
                    for msg in reader.consume(10000, 0.5):
                        if msg.error():
                            continue
                        writes[msg.key()] = msg.value()
                        position = msg.offset() + 1
                    if writes:
                        backend.apply(writes, position)
                        applied += len(writes)
                    else:
                        got = reader.position([tp])[0].offset
                        position = max(position, got)
        finally:
            reader.close()
        state = PartitionState(p, backend)
        timers = self.timers.restore(p, state)
        self.states[p] = state
        log.info(
            "partition %d restored: %d changelog records, %d open SLA timers", p, applied, timers
        )

    def persist(
        self, changes: dict[int, dict[bytes, bytes | None]], checkpoints: dict[int, int]
    ) -> None:
        """After the batch committed on Kafka: its state changes to the local store."""
        for p, writes in changes.items():
            state = self.states.get(p)
            if state is not None:
                state.commit(writes, checkpoints.get(p))

    def changes(self) -> dict[int, dict[bytes, bytes | None]]:
        """The batch's state changes per partition, encoded once each."""
        return {p: s.pending() for p, s in self.states.items() if s.dirty}
