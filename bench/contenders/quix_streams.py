"""Contender (d): a stateful Quix Streams application, written the way its documentation shows.

One `Application` (confluent-kafka underneath, RocksDB state backed by a changelog topic,
processing_guarantee="exactly-once"), one `StreamingDataFrame` per input topic joined with
`concat` into one stream (Quix's way to process several topics as one, with one state store
for all three; keys are partitioned alike, so a lead's state is in one place). Per event:
decode (bytes, then orjson, so malformed records can go to the dead-letter topic as faust_naive
sends them: no key or not a JSON object), then a stateful `apply` that reads and writes two
values of the lead's state (a touch count and the time it was last seen), adds the count to
the event, and `to_topic` to the output (JSON). Everything else is Quix's defaults, among them
its commit interval (5 s): with exactly-once, outputs become visible to read_committed
consumers when a checkpoint commits, so that interval is most of its latency (`concat`'s
timestamp alignment adds about a second: bench/README.md; `--commit-interval` to try another).

Runs in its own virtualenv (`.venv-quix`, bench/quix_venv.py): quixstreams pins
confluent-kafka<2.13, leadrouter confluent-kafka~=2.16. It imports nothing of leadrouter.

    .venv-quix/bin/python -m bench.contenders.quix_streams --bootstrap HOST:PORT --prefix P \
        --group G --state-dir DIR
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import orjson
from quixstreams import Application, State

from bench.contenders import DEADLETTER, INPUT_TOPICS, PASS_THROUGH_OUT, report_first_consumed


def build(
    bootstrap: str, prefix: str, group: str, state_dir: str, commit_interval: float
) -> tuple[Application, dict[str, int]]:
    """The application, and what its callbacks counted (for the line printed at exit)."""
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        processing_guarantee="exactly-once",
        auto_offset_reset="earliest",
        commit_interval=commit_interval,
        state_dir=state_dir,
        loglevel="WARNING",
    )
    inputs = [
        app.topic(prefix + name, key_deserializer="bytes", value_deserializer="bytes")
        for name in INPUT_TOPICS
    ]
    out = app.topic(prefix + PASS_THROUGH_OUT, key_serializer="bytes", value_serializer="json")
    deadletter = app.topic(prefix + DEADLETTER, key_serializer="bytes", value_serializer="bytes")

    first = [True]
    seen = {"deadletter": 0, "outputs": 0, "max_touches": 0}

    def decode(value: bytes, key: bytes | None, timestamp: int, headers: Any) -> Any:
        """The event as a dict, or the record's bytes unchanged if it has no key or is not a
        JSON object (a dead letter)."""
        if first[0]:
            report_first_consumed()
            first[0] = False
        if key is None:
            return value
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
        return data if isinstance(data, dict) else value

    def valid(value: Any) -> bool:
        return isinstance(value, dict)

    def invalid(value: Any) -> bool:
        if isinstance(value, dict):
            return False
        seen["deadletter"] += 1
        return True

    def touch(event: dict[str, Any], state: State) -> dict[str, Any]:
        count = state.get("touches", 0) + 1
        previous = state.get("last_seen")
        state.set("touches", count)
        state.set("last_seen", time.time())
        event["touches"] = count
        event["previous_seen"] = previous
        seen["outputs"] += 1
        if count > seen["max_touches"]:
            seen["max_touches"] = count
        return event

    frames = [app.dataframe(topic) for topic in inputs]
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    sdf = sdf.apply(decode, metadata=True)
    # Two branches of the decoded stream (Quix's branching): bad records out as they came in,
    # good ones through the lead's state to the output.
    sdf.filter(invalid).to_topic(deadletter)
    sdf.filter(valid).apply(touch, stateful=True).to_topic(out)
    return app, seen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--commit-interval", type=float, default=5.0)  # Quix's default
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, force=True)
    app, seen = build(args.bootstrap, args.prefix, args.group, args.state_dir, args.commit_interval)
    app.run()  # until SIGTERM; then it commits its last checkpoint and returns
    # Counted in processing (so also what a later-aborted checkpoint processed): for the
    # harness to check that the state did its work (a lead touched more than once).
    print("BENCH done " + " ".join(f"{k}={v}" for k, v in seen.items()), flush=True)


if __name__ == "__main__":
    main()
