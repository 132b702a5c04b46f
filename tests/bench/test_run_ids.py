"""Topic names the benchmark derives must stay within Kafka's 249 characters, also for the
Quix Streams contender in a `--repeat` round, whose changelog topic's name carries its
consumer group and every input topic, each with the run's prefix."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench.contenders import INPUT_TOPICS
from bench.run import Context, new_run_id

KAFKA_MAX_TOPIC_NAME = 249


def quix_changelog_name(prefix: str) -> str:
    """As quixstreams 3.28 names a store's changelog (`TopicManager._internal_name` with the
    stream id of `concat`-ed topics: their sorted names joined by `--`), for the contender's
    group (`<prefix>group`, bench/run.py) and its default store."""
    stream = "--".join(sorted(prefix + name for name in INPUT_TOPICS))
    return f"changelog__{prefix}group--{stream}--default"


def test_the_quix_changelog_of_a_repeat_round_fits_kafkas_limit():
    run_id = new_run_id(dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=dt.UTC))
    ctx = Context(None, "", None, Path("."), Path("."), run_id, None, None)  # type: ignore[arg-type]
    for tag in ("quix_streams", "quix_streams-r1", "quix_streams-r99"):
        name = quix_changelog_name(ctx.prefix(tag))
        assert len(name) <= KAFKA_MAX_TOPIC_NAME, (len(name), name)


def test_run_ids_differ_within_one_second():
    started = dt.datetime(2026, 12, 1, 1, 2, 3, tzinfo=dt.UTC)
    assert len({new_run_id(started) for _ in range(20)}) > 1
