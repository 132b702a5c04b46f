"""SLA timers of the partitions this worker owns: a heap per partition, rebuilt from the
partition's state on restore and dropped with it. Fired by the batch loop between batches."""

from __future__ import annotations

import heapq

from workers.core.context import SLA_TIMER
from workers.store import PartitionState


class Timers:
    def __init__(self) -> None:
        self.heaps: dict[int, list[tuple[float, str]]] = {}

    def set(self, partition: int, due: float, lead_id: str) -> None:
        heapq.heappush(self.heaps.setdefault(partition, []), (due, lead_id))

    def due(self, now: float) -> list[tuple[int, str]]:
        """(partition, lead id) of every timer due by `now`, removed."""
        out = []
        for p, heap in self.heaps.items():
            while heap and heap[0][0] <= now:
                out.append((p, heapq.heappop(heap)[1]))
        return out

    def restore(self, partition: int, state: PartitionState) -> int:
        """The partition's open timers from its state; returns how many."""
        heap: list[tuple[float, str]] = []
        for key in state.keys_with_prefix(SLA_TIMER):
            timer = state.backend.load(key)  # not cached: most are never read again
            if timer:
                heap.append((timer["due"], key[len(SLA_TIMER) :]))
        heapq.heapify(heap)
        self.heaps[partition] = heap
        return len(heap)

    def drop(self, partition: int) -> None:
        self.heaps.pop(partition, None)
