"""Timers of the partitions this worker owns: leads' SLAs and queue desks' hand-outs, a heap
per partition, rebuilt from the partition's state on restore and dropped with it. Fired by
the batch loop between batches. A timer moved later leaves its earlier entry in the heap;
its handler finds it early and ignores it."""

from __future__ import annotations

import heapq

from workers.core.context import QUEUE_DESK, SLA_TIMER
from workers.store import PartitionState


class Timers:
    def __init__(self) -> None:
        self.heaps: dict[int, list[tuple[float, str]]] = {}

    def set(self, partition: int, due: float, key: str) -> None:
        heapq.heappush(self.heaps.setdefault(partition, []), (due, key))

    def due(self, now: float) -> list[tuple[int, str]]:
        """(partition, key) of every timer due by `now`, removed: a lead id or `q:<queue>`."""
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
        for key in state.keys_with_prefix(QUEUE_DESK):
            desk = state.get(key)  # a few per partition, read again by the next batch
            if desk and desk.get("wake") is not None:
                heap.append((desk["wake"], key))
        heapq.heapify(heap)
        self.heaps[partition] = heap
        return len(heap)

    def drop(self, partition: int) -> None:
        self.heaps.pop(partition, None)
