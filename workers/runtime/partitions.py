"""The partitions of the internal topic this worker owns, and their state: restored from
the compacted changelog on assignment (from the local checkpoint when the RocksDB store
has one), dropped on revocation, with their SLA timers."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from workers.connection import data_dir
from workers.runtime.clients import Clients, stable_and_end
from workers.runtime.outbox import Frames, frame_of
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

    def restore(self, partitions: list[int]) -> dict[int, bytes]:
        """Rebuild the state of each partition not held yet from the changelog (from the
        local checkpoint, if any), all with one reader: a restart resumes in the time it
        takes to read what is there, not a fixed wait per partition. Returns the restored
        partitions whose log ends in a run a crash cut short, with its batch id: the caller
        marks it aborted before anything else is written there."""
        backends: dict[int, Any] = {}
        try:
            for p in partitions:
                if p not in self.states and p not in backends:
                    backends[p] = self._backend(p)
            if not backends:
                return {}
            started = time.monotonic()
            applied, cut = self._fill(backends)
            restored = {p: PartitionState(p, backend) for p, backend in backends.items()}
            timers = {p: self.timers.restore(p, state) for p, state in restored.items()}
        except BaseException:
            for p, backend in backends.items():
                self.timers.drop(p)
                backend.close()  # a RocksDB store keeps its lock until closed
            raise
        for p, state in restored.items():
            self.states[p] = state
            log.info(
                "partition %d restored: %d changelog records, %d open SLA timers",
                p,
                applied[p],
                timers[p],
            )
        log.info("%d partitions restored in %.2f s", len(backends), time.monotonic() - started)
        for p in cut:
            log.warning("partition %d: changelog ends in a batch a crash cut short: left out", p)
        return cut

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

    def _start(self, p: int, backend: Any, low: int, high: int) -> int | None:
        """Where partition p's restore begins: its local checkpoint, unless that lies
        outside the log as it is now (its start moved past the checkpoint, so deletions
        since then are gone from it; or the topic is newer than the checkpoint): then the
        local copy is dropped and the whole log read."""
        start = backend.checkpoint()
        if start is not None and not low <= start <= high:
            log.warning(
                "partition %d: local checkpoint %d outside the changelog (%d..%d): rebuilt",
                p,
                start,
                low,
                high,
            )
            backend.clear()
            return None
        return start

    def _log_ends(self, reader: Consumer, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """Each partition's first offset and the end its restore must reach: the end of the
        log, not of what is committed so far. A read_committed reader's watermark is the
        last stable offset, which stops at a transaction still open: the previous owner's
        last batch, committed but its markers not yet written (the broker answers EndTxn
        first), or a dead member's batch, aborted at its transaction timeout. A restore
        that ended there would miss the first kind for good, while the group's offsets
        move past its input, so the restore waits until such a transaction ends."""
        tps = [TopicPartition(self.changelog_topic, p) for p in partitions]
        if not self.read_committed:
            return {tp.partition: reader.get_watermark_offsets(tp, timeout=30) for tp in tps}
        ends: dict[int, tuple[int, int]] = {}
        everything = Consumer(self.clients.reader("restore", read_committed=False))
        try:
            for tp in tps:
                low, stable, end = stable_and_end(reader, everything, tp, 30)
                if end > stable:
                    log.info(
                        "partition %d: a transaction is open in the changelog at offset %d"
                        " (log end %d): the restore waits until it commits or aborts",
                        tp.partition,
                        stable,
                        end,
                    )
                ends[tp.partition] = (low, end)
        finally:
            everything.close()
        return ends

    def _fill(self, backends: dict[int, Any]) -> tuple[dict[int, int], dict[int, bytes]]:
        """Read each partition's changelog up to its end into its backend; returns how
        many records each applied, and the partitions whose log ends in a run a crash cut
        short, with that run's batch id (left out: outbox.py). The end is judged by the
        reader's position, so a log that ends in a transaction marker (never delivered)
        costs no wait."""
        applied = dict.fromkeys(backends, 0)
        frames = {p: Frames() for p in backends}
        reader = Consumer(self.clients.reader("restore", read_committed=self.read_committed))
        try:
            ends: dict[int, int] = {}
            assignment = []
            log_ends = self._log_ends(reader, list(backends))
            for p, backend in backends.items():
                low, high = log_ends[p]
                start = self._start(p, backend, low, high)
                if high > (start if start is not None else low):
                    ends[p] = high
                    begin = start if start is not None else OFFSET_BEGINNING
                    assignment.append(TopicPartition(self.changelog_topic, p, begin))
            if not ends:
                return applied, {}
            reader.assign(assignment)
            deadline = time.monotonic() + RESTORE_DEADLINE
            while ends:
                if time.monotonic() > deadline:
                    left = ", ".join(str(p) for p in sorted(ends))
                    raise KafkaException(f"restore of partition {left} did not finish in time")
                writes: dict[int, dict[bytes, bytes | None]] = {}
                positions: dict[int, int] = {}
                for msg in reader.consume(10000, 0.1):
                    if msg.error():
                        continue
                    p = msg.partition()
                    headers = msg.headers()
                    if headers is None and not frames[p].run:  # as exactly_once writes
                        writes.setdefault(p, {})[msg.key()] = msg.value()
                        positions[p] = msg.offset() + 1
                        continue
                    out = writes.setdefault(p, {})
                    frames[p].take(msg.key(), msg.value(), frame_of(headers), out)
                    if not frames[p].run:  # a checkpoint only between runs
                        positions[p] = msg.offset() + 1
                for p, batch in writes.items():
                    if batch or p in positions:
                        backends[p].apply(batch, positions.get(p))
                        applied[p] += len(batch)
                waiting = [TopicPartition(self.changelog_topic, p) for p in ends]
                for tp in reader.position(waiting):
                    if tp.offset >= ends[tp.partition]:
                        del ends[tp.partition]
        finally:
            reader.close()
        return applied, {p: f.batch for p, f in frames.items() if f.cut}

    def persist(
        self, changes: dict[int, dict[bytes, bytes | None]], checkpoints: dict[int, int]
    ) -> None:
        """After the batch committed on Kafka: its state changes to the local store."""
        for p, writes in changes.items():
            state = self.states.get(p)
            if state is not None:
                state.commit(writes, checkpoints.get(p))

    def dirty(self) -> bool:
        """Changes wait for a batch (sent outbox records to remove, at_least_once)."""
        return any(s.dirty for s in self.states.values())

    def changes(self) -> dict[int, dict[bytes, bytes | None]]:
        """The batch's state changes per partition, encoded once each."""
        return {p: s.pending() for p, s in self.states.items() if s.dirty}
