"""Local state per owned partition, backed by a compacted changelog topic.

Values are plain dicts, kept decoded between batches; writes are collected and flushed once
per batch (one changelog record per changed key, however often it changed). The backend is a
dict (memory) or RocksDB (rocksdict) under LEADROUTER_DATA_DIR, which also keeps the changelog
offset it has applied, so a restarted worker replays only what it has not seen.

Values are changed in place before their batch commits. That is safe because a batch that
fails to commit ends the session: its partitions are dropped and restored from the changelog.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Protocol

import orjson

CHECKPOINT = b"\x00checkpoint"
Value = dict[str, Any]


class Backend(Protocol):
    def load(self, key: str) -> Value | None: ...
    def apply(self, writes: dict[bytes, bytes | None], checkpoint: int | None) -> None: ...
    def checkpoint(self) -> int | None: ...
    def clear(self) -> None: ...
    def keys_with_prefix(self, prefix: str) -> list[str]: ...
    def keys_between(self, low: str, high: str, limit: int) -> list[str]: ...
    def close(self) -> None: ...


class MemoryBackend:
    """Decoded values in a dict: the state lives only as long as the process."""

    def __init__(self) -> None:
        self.data: dict[str, Value] = {}

    def load(self, key: str) -> Value | None:
        return self.data.get(key)

    def apply(self, writes: dict[bytes, bytes | None], checkpoint: int | None) -> None:
        """Restore path: changelog records, encoded."""
        for key, value in writes.items():
            if value is None:
                self.data.pop(key.decode(), None)
            else:
                self.data[key.decode()] = orjson.loads(value)

    def checkpoint(self) -> int | None:
        return None  # nothing survives the process: replay the whole changelog

    def clear(self) -> None:
        self.data.clear()

    def keys_with_prefix(self, prefix: str) -> list[str]:
        return [k for k in self.data if k.startswith(prefix)]

    def keys_between(self, low: str, high: str, limit: int) -> list[str]:
        """Keys in [low, high), in order, at most `limit` (a scan: no index in a dict)."""
        data = self.data
        return sorted(k for k in data if low <= k < high and data[k] is not None)[:limit]

    def close(self) -> None:
        self.data.clear()


# RocksDB's defaults (a 64 MiB memtable, two of them, per database) let each owned partition
# hold up to 128 MiB of recent writes in memory before flushing: a burst of lead updates
# stayed in the worker's RSS long after it ended. Small memtables flush sooner; reads that
# miss the decoded-value cache go to one block cache shared by every partition.
MEMTABLE_BYTES = 4 << 20
BLOCK_CACHE_BYTES = 32 << 20


@functools.cache
def _shared_block_cache() -> Any:
    from rocksdict import Cache

    return Cache(BLOCK_CACHE_BYTES)


class RocksBackend:
    def __init__(self, path: Path) -> None:
        from rocksdict import BlockBasedOptions, Options, Rdict, WriteBatch

        self._write_batch = WriteBatch
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(MEMTABLE_BYTES)
        options.set_max_write_buffer_number(2)
        table = BlockBasedOptions()
        table.set_block_cache(_shared_block_cache())
        options.set_block_based_table_factory(table)
        self.db = Rdict(str(path), options)
        self.path = path

    def load(self, key: str) -> Value | None:
        raw = self.db.get(key.encode())
        return orjson.loads(raw) if raw is not None else None

    def apply(self, writes: dict[bytes, bytes | None], checkpoint: int | None) -> None:
        batch = self._write_batch(raw_mode=True)
        for key, value in writes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if checkpoint is not None:
            batch.put(CHECKPOINT, str(checkpoint).encode())
        self.db.write(batch)

    def checkpoint(self) -> int | None:
        raw = self.db.get(CHECKPOINT)
        return int(raw) if raw else None

    def clear(self) -> None:
        """Forget the local copy (and its checkpoint): it is rebuilt from the changelog."""
        batch = self._write_batch(raw_mode=True)
        it = self.db.iter()
        it.seek_to_first()
        while it.valid():
            batch.delete(it.key())
            it.next()
        del it
        self.db.write(batch)

    def keys_with_prefix(self, prefix: str) -> list[str]:
        out = []
        it = self.db.iter()
        it.seek(prefix.encode())
        while it.valid():
            key = it.key()
            if not key.startswith(prefix.encode()):
                break
            out.append(key.decode())
            it.next()
        del it
        return out

    def keys_between(self, low: str, high: str, limit: int) -> list[str]:
        """Keys in [low, high), in order, at most `limit`: a seek and a short walk."""
        out: list[str] = []
        bound = high.encode()
        it = self.db.iter()
        it.seek(low.encode())
        while it.valid() and len(out) < limit:
            key = it.key()
            if key >= bound:
                break
            out.append(key.decode())
            it.next()
        del it
        return out

    def close(self) -> None:
        self.db.close()


class PartitionState:
    """The desk's State for one partition: decoded values kept between batches (all of them
    for the memory backend, the most recent `cache_size` for RocksDB), writes per batch."""

    def __init__(self, partition: int, backend: Backend, cache_size: int = 20_000) -> None:
        self.partition = partition
        self.backend = backend
        self.memory = isinstance(backend, MemoryBackend)
        self.values: dict[str, Value | None] = (
            backend.data if isinstance(backend, MemoryBackend) else {}  # type: ignore[assignment]
        )
        self.cache_size = cache_size
        self.dirty: set[str] = set()

    def get(self, key: str) -> Value | None:
        values = self.values
        if key in values:
            return values[key]
        if self.memory:
            return None
        value = self.backend.load(key)
        values[key] = value
        return value

    def put(self, key: str, value: Value) -> None:
        self.values[key] = value
        self.dirty.add(key)

    def delete(self, key: str) -> None:
        self.values[key] = None
        self.dirty.add(key)

    def pending(self) -> dict[bytes, bytes | None]:
        """The batch's changes, encoded once each: what goes to the changelog and the store.
        Taking them starts the next batch's set, which may be built while this one commits."""
        values = self.values
        writes = {
            key.encode(): None if values[key] is None else orjson.dumps(values[key])
            for key in self.dirty
        }
        self.dirty = set()
        return writes

    def commit(self, writes: dict[bytes, bytes | None], checkpoint: int | None) -> None:
        """After the batch committed on Kafka: persist it locally. A later batch may already
        have changed the same keys in memory; those stay as they are."""
        if self.memory:
            values = self.values
            for key, value in writes.items():
                if value is None:
                    name = key.decode()
                    if values.get(name) is None:
                        values.pop(name, None)
        else:
            self.backend.apply(writes, checkpoint)
            if len(self.values) > self.cache_size:  # cheap and rare: hot leads come back at once
                self.values = {key: self.values[key] for key in self.dirty}

    def keys_with_prefix(self, prefix: str) -> list[str]:
        return self.backend.keys_with_prefix(prefix)

    def keys_between(self, low: str, high: str, limit: int) -> list[str]:
        """Persisted keys in [low, high), in order (asked between batches, all persisted)."""
        return self.backend.keys_between(low, high, limit)
