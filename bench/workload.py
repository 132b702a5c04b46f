"""The benchmark's input: realistic events from leadrouter's own simulator, generated once
and produced unchanged into each contender's topics."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.contenders import INPUT_TOPICS, PASS_THROUGH_OUT
from tests.support.worker import always_open_config
from topics import catalogue as cat
from workers import admin
from workers.demo import demo_accounts
from workers.settings import Config, load_config
from workers.simulate import Person, Traffic, iso_now

# What a latency-run record carries before it is sent: the occurred_at of time 0 is replaced
# by the send time (same length, so the record size does not change).
EPOCH_STAMP = iso_now(0.0).encode()
assert set(INPUT_TOPICS) == {cat.FORM_FILLS, cat.EMAIL_EVENTS, cat.AD_CLICKS}
__all__ = ["INPUT_TOPICS", "PASS_THROUGH_OUT", "always_open_config", "demo_accounts"]


def config_for(config_dir: Path, bootstrap: str, prefix: str) -> Config:
    return load_config(
        config_dir,
        env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "LEADROUTER_TOPIC_PREFIX": prefix},
    )


def routed_topics(config: Config, prefix: str) -> list[str]:
    return [prefix + cat.routed_topic(q) for q in config.routing.queues]


def create_topics(config_dir: Path, bootstrap: str, prefix: str, extra: list[str]) -> Config:
    """Every topic of leadrouter's catalogue under `prefix` (6 partitions, the same for every
    contender), plus `extra` topics with the same partition count."""
    config = config_for(config_dir, bootstrap, prefix)
    admin.apply(config, only_missing=True)
    if extra:
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        client = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
        try:
            client.create_topics(
                [NewTopic(prefix + t, config.settings.kafka.partitions, 1) for t in extra],
                validate_only=False,
            )
        except TopicAlreadyExistsError:
            pass
        finally:
            client.close()
    return config


@dataclass
class Workload:
    """Records as (topic without prefix, key, value, event_id or None)."""

    records: list[tuple[str, bytes | None, bytes, str | None]]

    @property
    def count(self) -> int:
        return len(self.records)

    @property
    def bytes(self) -> int:
        return sum(len(r[2]) for r in self.records)

    def for_prefix(self, prefix: str) -> Iterator[tuple[str, bytes | None, bytes]]:
        for topic, key, value, _ in self.records:
            yield prefix + topic, key, value

    def describe(self) -> dict[str, Any]:
        by_topic: dict[str, int] = {}
        keys = set()
        unkeyed = 0
        for topic, key, _, _ in self.records:
            by_topic[topic] = by_topic.get(topic, 0) + 1
            if key is None:
                unkeyed += 1
            else:
                keys.add(key)
        sizes = sorted(len(r[2]) for r in self.records)
        return {
            "events": self.count,
            "bytes": self.bytes,
            "avg_event_bytes": round(self.bytes / max(1, self.count), 1),
            "min_event_bytes": sizes[0] if sizes else 0,
            "max_event_bytes": sizes[-1] if sizes else 0,
            "by_topic": by_topic,
            "distinct_keys": len(keys),
            "unkeyed_records": unkeyed,
        }


def _event_id(value: bytes) -> str | None:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    event_id = doc.get("event_id") if isinstance(doc, dict) else None
    return event_id if isinstance(event_id, str) else None


def generate(
    config: Config, count: int, seed: int, stamp: float, malformed_share: float = 0.01
) -> Workload:
    """`count` simulator records (form fills, e-mail events, ad clicks, ~1% malformed)."""
    traffic = Traffic(config, seed, malformed_share)
    cut = len(traffic.prefix)  # records are kept without any prefix
    records = []
    for _ in range(count):
        topic, key, value = traffic.next(stamp)
        records.append((topic[cut:], key, value, _event_id(value)))
    return Workload(records)


def stamp_send_time(value: bytes, now: float) -> bytes:
    return value.replace(EPOCH_STAMP, iso_now(now).encode(), 1)


def distinct_form_fills(config: Config, count: int, seed: int, stamp: float) -> Iterator[bytes]:
    """`count` form fills, each from a different person (a distinct e-mail), for the memory
    run: a million leads in the table."""
    traffic = Traffic(config, seed, 0.0)
    rng = random.Random(seed)
    firms = traffic.companies
    for i in range(count):
        company = firms[i % len(firms)] if rng.random() < 0.75 else None
        domain = company.domain if company else rng.choice(["gmail.com", "outlook.com"])
        person = Person(
            email=f"lead{i}.{rng.randrange(1_000_000)}@{domain}",
            first="Lead",
            last=f"Number{i}",
            title=rng.choice(["CEO", "VP Sales", "Analyst", "Marketing Manager", "CTO"]),
            company=company,
            country=company.country if company else "US",
            anonymous_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            phone=f"+1 415 555 {rng.randrange(1000, 9999)}" if rng.random() < 0.4 else None,
            consent=rng.random() < 0.85,
        )
        yield orjson.dumps(traffic.form_fill(stamp, person))
