"""Local state per owned partition, backed by a compacted changelog topic.

Reads go through a per-batch cache of decoded values; writes are collected and flushed once
per batch (one changelog record per changed key, however often it changed). The backend is
a plain dict (memory) or RocksDB (rocksdict) under LEADROUTER_DATA_DIR; both hold the same
orjson bytes, so the two behave alike. RocksDB also keeps the changelog offset it has
applied, so a restarted worker replays only what it has not seen.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol

import orjson

CHECKPOINT = b"\x00checkpoint"


class Backend(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def apply(self, writes: dict[bytes, bytes | None], checkpoint: int | None) -> None: ...
    def checkpoint(self) -> int | None: ...
    def keys_with_prefix(self, prefix: bytes) -> list[bytes]: ...
    def close(self) -> None: ...


class MemoryBackend:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def apply(self, writes: dict[bytes, bytes | None], checkpoint: int | None) -> None:
        for key, value in writes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

    def checkpoint(self) -> int | None:
        return None  # nothing survives the process: replay the whole changelog

    def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        return [k for k in self.data if k.startswith(prefix)]

    def close(self) -> None:
        self.data.clear()


class RocksBackend:
    def __init__(self, path: Path) -> None:
        from rocksdict import Options, Rdict, WriteBatch

        self._write_batch = WriteBatch
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self.db = Rdict(str(path), options)
        self.path = path

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

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

    def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        out = []
        it = self.db.iter()
        it.seek(prefix)
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                break
            out.append(key)
            it.next()
        del it
        return out

    def close(self) -> None:
        self.db.close()

    def destroy(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)


class PartitionState:
    """The desk's State for one partition: cached reads, batched writes."""

    def __init__(self, partition: int, backend: Backend) -> None:
        self.partition = partition
        self.backend = backend
        self.cache: dict[str, dict[str, Any] | None] = {}
        self.dirty: set[str] = set()

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self.cache:
            return self.cache[key]
        raw = self.backend.get(key.encode())
        value = orjson.loads(raw) if raw is not None else None
        self.cache[key] = value
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.cache[key] = value
        self.dirty.add(key)

    def delete(self, key: str) -> None:
        self.cache[key] = None
        self.dirty.add(key)

    def pending(self) -> dict[bytes, bytes | None]:
        """The batch's changes, encoded once each: what goes to the changelog and the store."""
        out: dict[bytes, bytes | None] = {}
        for key in self.dirty:
            value = self.cache[key]
            out[key.encode()] = None if value is None else orjson.dumps(value)
        return out

    def commit(self, writes: dict[bytes, bytes | None], checkpoint: int | None) -> None:
        self.backend.apply(writes, checkpoint)
        self.dirty.clear()
        self.cache.clear()

    def discard(self) -> None:
        """Forget uncommitted changes (an aborted batch)."""
        self.dirty.clear()
        self.cache.clear()
