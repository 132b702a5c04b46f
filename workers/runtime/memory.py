"""Memory policy of a long-running worker: the garbage collector and freed native memory."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable

# Hand freed memory back to the system at most this often, once caught up.
TRIM_EVERY = 10.0


def settle_garbage() -> None:
    """Lead state is millions of small long-lived dicts and lists: a full collection walks
    them all, about a second per 150k leads, stalling every record behind it. After each
    batch the young generations are collected and the survivors frozen out of the
    collector's reach. Freed state is still released by reference counting; only a cycle
    that survives its batch and dies later is never reclaimed, and state is acyclic."""
    gc.collect(1)
    gc.freeze()


def _libc_trim() -> Callable[[], None]:
    """glibc keeps memory freed by librdkafka's threads (a drained read-ahead of up to
    queued.max.messages.kbytes) in per-thread arenas; malloc_trim hands it back."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


release_freed_memory = _libc_trim()
