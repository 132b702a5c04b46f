"""Erasure requests (`leadrouter forget`) as the history commands read them.

`privacy.erasures` is compacted and keyed by lead id; each record is
`{"format": 1, "lead_id": "ld_<20 hex>", "requested_at": <epoch seconds>, "reason": "<text>"}`.
It names no one: the lead id is a one-way fingerprint of the e-mail
(`workers.core.identity.lead_id`). `explain`, `report` and `replay` read it whole before
they read history, so that nothing of an erased person that occurred at or before the
erasure is shown, counted or replayed, although the worker's own records of them stay on
the routed topics and dead letters until their retention.

Read like the other reference topics (`workers.runtime.reference.ReferenceReader`):
partitions assigned by hand, no consumer group joined, nothing committed. A missing topic
means no erasures; a topic that cannot be read (no permission, a broker gone) is an error,
never an empty table: an empty table would show the people it should hide. Records that are
not erasure requests are skipped with a log line. Compaction keeps a key's last record, so
the last one read wins, and a tombstone removes the key (as compaction will).

Nothing at the top of this module imports a Kafka client (the CLI imports `replay`, which
imports this, before any argument is judged: tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from topics import catalogue as cat
from workers.core.identity import LEAD_ID
from workers.settings import Settings

log = logging.getLogger("leadrouter.erasures")

FORMAT = 1


@dataclass(frozen=True, slots=True)
class Erasure:
    """One person's erasure: when it was asked for (epoch seconds) and why."""

    requested_at: float
    reason: str

    def covers(self, at: float) -> bool:
        """True for a record of the person that occurred at or before the erasure."""
        return at <= self.requested_at


class NotAnErasure(ValueError):
    """A record of the erasure topic that is not a format 1 erasure request; `reason` is a
    dead-letter code (topics.vocabulary.INVALID_REASONS)."""

    def __init__(self, detail: str, reason: str = "invalid_value") -> None:
        super().__init__(detail)
        self.reason = reason


def encode(lead_id: str, erasure: Erasure) -> bytes:
    """The record's value for `lead_id` (its key is the lead id, UTF-8)."""
    return orjson.dumps(
        {
            "format": FORMAT,
            "lead_id": lead_id,
            "requested_at": erasure.requested_at,
            "reason": erasure.reason,
        }
    )


def decode(value: bytes) -> tuple[str, Erasure]:
    """(lead id, erasure) of one record's value; NotAnErasure says why it is none."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise NotAnErasure("not JSON", "invalid_json") from None
    if not isinstance(obj, dict):
        raise NotAnErasure("not a JSON object", "not_an_object")
    if obj.get("format") != FORMAT:
        raise NotAnErasure(f"format {obj.get('format')!r}, this release reads format {FORMAT}")
    lead_id, at, reason = obj.get("lead_id"), obj.get("requested_at"), obj.get("reason")
    if not isinstance(lead_id, str) or not LEAD_ID.fullmatch(lead_id):
        raise NotAnErasure("lead_id is not ld_ followed by 20 hex digits")
    if not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at):
        raise NotAnErasure("requested_at is not a time in epoch seconds")
    if reason is not None and not isinstance(reason, str):
        raise NotAnErasure("reason is not text")
    return lead_id, Erasure(float(at), reason or "")


def fold(
    records: Iterable[tuple[int, int, bytes | None, bytes | None]], topic: str
) -> dict[str, Erasure]:
    """The table from records (partition, offset, key, value) in offset order per partition:
    a key's last record wins; a tombstone (no value) removes it; a record that is not an
    erasure request is skipped, with a log line that shows where it is but not its content."""
    table: dict[str, Erasure] = {}
    for partition, offset, key, value in records:
        if value is None:
            if key:
                table.pop(key.decode("utf-8", "replace"), None)
            continue
        try:
            lead_id, erasure = decode(value)
        except NotAnErasure as exc:
            log.warning("%s[%d] offset %d skipped: %s", topic, partition, offset, exc)
            continue
        if key is not None and key != lead_id.encode():
            # Kept: whoever wrote it meant to erase the person its value names.
            log.warning("%s[%d] offset %d: key is not its lead_id", topic, partition, offset)
        table[lead_id] = erasure
    return table


def topic_of(settings: Settings) -> str:
    return settings.kafka.topic_prefix + cat.ERASURES


def read_erasures(settings: Settings) -> dict[str, Erasure]:
    """Every erasure on the broker now: lead id -> Erasure. Raises KafkaException when the
    topic cannot be read whole (a missing topic is no erasures)."""
    from workers.runtime.clients import Clients

    topic = topic_of(settings)
    reader = _reader_class()(Clients(settings, f"cli-{os.getpid()}"), topic)
    reader.read_once()
    if reader.missing:
        log.info("%s: no such topic, so no erasures", topic)
        return {}
    return fold(reader.records, topic)


def _reader_class() -> type[Any]:
    """The reader, defined on first use: its base imports confluent_kafka."""
    from confluent_kafka import KafkaError, KafkaException, Message

    from workers.runtime.reference import LOAD_DEADLINE, ReferenceReader

    class ErasureReader(ReferenceReader):
        purpose = "erasures"

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.records: list[tuple[int, int, bytes | None, bytes | None]] = []
            self.missing = False

        def _apply(self, msg: Message) -> None:
            self.records.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

        def load(self) -> None:
            started = time.monotonic()
            with contextlib.suppress(KeyError):  # a broker may leave a missing topic out
                super().load()
            assert self.reader is not None
            answer = self.reader.list_topics(self.topic, timeout=30).topics.get(self.topic)
            error = None if answer is None else answer.error
            if answer is None or (
                error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
            ):
                self.missing = True
            elif error is not None:  # no permission, say: an empty table would be a lie
                raise KafkaException(error)
            elif time.monotonic() - started >= LOAD_DEADLINE:
                raise KafkaException(
                    f"{self.topic} was not read to its end in {LOAD_DEADLINE:.0f} s"
                )

    return ErasureReader
