"""at_least_once without a transaction: a batch's outputs are written into the state they came
from (the outbox), made durable with it, sent only then, and sent again after a crash.

A batch's records on a changelog partition are one framed run (the `lr.batch` header: `+`
and the batch's id on each record but the last, `.` and the id on the last), so a run a
crash cut short is recognised on restore and left out whole: the state of a partition is
always that of a whole batch. The restorer then writes an abort mark (`x`) after the cut
run, so later restores leave it out too, whatever compaction has removed of it. Each state
partition's outputs of a batch (routed leads, records for other partitions, dead letters of
its messages) are outbox keys `o:<batch>:<n>` in that same run; they are removed once sent,
and a restored partition sends whatever outbox keys it still holds. A consumer may so see an
output twice after a crash: the same record, byte for byte (docs/architecture.md, "Delivery
guarantees").

The format is versioned (`"f": 1`) like every internal record.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OUTBOX = "o:"
# A state partition's last batch id, and the last record from each partition it handled:
# state keys of the runtime, next to the topology's.
LAST_RUN, RECEIVED = "~run", "~received"
SENDER = "lr.from"
FRAME = "lr.batch"
MORE, LAST, ABORT = b"+", b".", b"x"
ABORT_KEY = b"\x00abort:"
FORMAT = 1
# An outbox record stays well below Kafka's default 1 MB record limit.
CHUNK_BYTES = 256 * 1024

Output = tuple[str, int, bytes | None, bytes | None, list[tuple[str, bytes]] | None]
Produce = Callable[..., None]


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode()


def _raw(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def encode(outputs: list[Output]) -> dict[str, Any]:
    return {
        "f": FORMAT,
        "out": [
            [topic, partition, _text(key), _text(value), [[h, _text(v)] for h, v in headers or ()]]
            for topic, partition, key, value, headers in outputs
        ],
    }


def decode(value: dict[str, Any]) -> list[Output]:
    """An outbox record's outputs; ValueError for a format this release does not know."""
    if value.get("f") != FORMAT:
        raise ValueError(f"outbox record of format {value.get('f')!r}")
    return [
        (topic, partition, _raw(key), _raw(raw), [(h, _raw(v) or b"") for h, v in headers] or None)
        for topic, partition, key, raw, headers in value["out"]
    ]


def _size(output: Output) -> int:
    _, _, key, value, headers = output
    return 64 + len(key or b"") + len(value or b"") + sum(len(v) + 16 for _, v in headers or ())


@dataclass
class Outbox:
    """One batch's outputs per state partition, until they are stored with its state.
    `run`: the batch's id, above any earlier batch's of the same partitions (next_run)."""

    run: int
    by_partition: dict[int, list[Output]] = field(default_factory=dict)
    stored: dict[int, list[str]] = field(default_factory=dict)
    messages: dict[int, int] = field(default_factory=dict)

    def add(self, partition: int, output: Output) -> None:
        self.by_partition.setdefault(partition, []).append(output)

    def message(self, partition: int, output: Output) -> None:
        """A record for another partition's state: numbered, so that its receiver knows
        it again when a crash makes it come twice (admit)."""
        n = self.messages.get(partition, 0)
        self.messages[partition] = n + 1
        topic, to, key, value, _ = output
        mark = f"{partition}:{self.run:x}:{n}".encode()
        self.add(partition, (topic, to, key, value, [(SENDER, mark)]))

    def store(self, states: dict[int, Any]) -> None:
        """Into each partition's state, as keys of this batch, in records of CHUNK_BYTES."""
        batch = f"{time.time_ns():x}"
        for p, outputs in self.by_partition.items():
            state = states.get(p)
            if state is None:  # revoked during the batch: its work is redone by the owner
                continue
            state.put(LAST_RUN, self.run)
            keys = self.stored.setdefault(p, [])
            chunk: list[Output] = []
            size = 0
            for output in outputs:
                chunk.append(output)
                size += _size(output)
                if size >= CHUNK_BYTES:
                    keys.append(_put(state, batch, len(keys), chunk))
                    chunk, size = [], 0
            if chunk:
                keys.append(_put(state, batch, len(keys), chunk))

    def send(self, produce: Produce) -> None:
        for p, outputs in self.by_partition.items():
            if p in self.stored:
                for output in outputs:
                    send(produce, output)

    def forget_sent(self, states: dict[int, Any]) -> None:
        """Sent and delivered: the outbox keys go with the next batch's changes."""
        for p, keys in self.stored.items():
            state = states.get(p)
            if state is not None:
                for key in keys:
                    state.delete(key)


def _put(state: Any, batch: str, n: int, chunk: list[Output]) -> str:
    key = f"{OUTBOX}{batch}:{n}"
    state.put(key, encode(chunk))
    return key


def send(produce: Produce, output: Output) -> None:
    topic, partition, key, value, headers = output
    produce(topic, key, value, partition=partition, headers=headers)


def left_in(state: Any) -> dict[str, list[Output]]:
    """The outbox keys a restored partition still holds: outputs not known to be sent."""
    left = {}
    for key in state.keys_with_prefix(OUTBOX):
        value = state.get(key)
        if value is not None:
            left[key] = decode(value)
    return left


class Frames:
    """Restore's view of one changelog partition: records of a framed run are held until its
    last record, dropped on an abort mark; records outside any run apply at once."""

    def __init__(self) -> None:
        self.run: dict[bytes, bytes | None] = {}
        self.batch = b""

    def take(self, key: bytes, value: bytes | None, frame: bytes | None, out: dict) -> None:
        """Add one record; whole runs are moved into `out`."""
        if frame is not None and frame[:1] == ABORT:
            if frame[1:] != self.batch:  # not the held run's: that one was whole
                out.update(self.run)
            self.run, self.batch = {}, b""
            return
        if frame is None or frame[1:] != self.batch:
            # A record outside a run, or another run while one is held: the held run was
            # whole and compaction removed its last record (a run a crash cut short is
            # always followed by its abort mark before anything else is written).
            out.update(self.run)
            self.run, self.batch = {}, b""
        if frame is None:
            out[key] = value
            return
        self.run[key] = value
        if frame[:1] == LAST:
            out.update(self.run)
            self.run, self.batch = {}, b""
        else:
            self.batch = frame[1:]

    @property
    def cut(self) -> bool:
        """At the end of the log: a run was left unfinished by a crash."""
        return bool(self.run)


def frame_of(headers: list[tuple[str, bytes]] | None) -> bytes | None:
    return header(headers, FRAME)


def abort_mark(instance: str, batch: bytes) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """The record written after the cut run of `batch`: a key of its own, never compacted
    away, naming the run it ends (a whole run whose last record compaction removed may
    come just before it)."""
    key = ABORT_KEY + f"{instance}:{time.time_ns():x}".encode()
    return key, b"{}", [(FRAME, ABORT + batch)]


def next_run(previous: int, states: dict[int, Any]) -> int:
    """A batch id above `previous` and above the last of every partition held (a partition
    taken over from another worker keeps counting up whatever that worker's clock said)."""
    last = max((state.get(LAST_RUN) or 0 for state in states.values()), default=0)
    return max(time.time_ns(), previous + 1, last + 1)


def admit(records: list[Any], states: dict[int, Any], internal_topic: str) -> list[Any]:
    """The records to handle: a numbered record (Outbox.message) its receiver has handled
    already is left out. Each receiving partition keeps, with its state, the last number
    it handled from each sender partition; a sender's records reach it in order."""
    out = []
    for msg in records:
        if msg.topic() == internal_topic:
            mark = header(msg.headers(), SENDER)
            state = states.get(msg.partition()) if mark is not None else None
            if state is not None:
                sender, run, n = mark.split(b":")
                number = [int(run, 16), int(n)]
                received = state.get(RECEIVED) or {}
                last = received.get(sender.decode())
                if last is not None and number <= last:
                    continue
                received[sender.decode()] = number
                state.put(RECEIVED, received)
        out.append(msg)
    return out


def header(headers: list[tuple[str, bytes]] | None, name: str) -> bytes | None:
    if headers:
        for key, value in headers:
            if key == name:
                return value
    return None
