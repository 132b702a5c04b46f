"""Baseline (b): the usual way. One faust-streaming agent over the three marketing topics that,
for each event, decodes it (orjson), looks the lead's key up in a table and updates it (a
touch count), and `await`s a send of the decoded event plus that count. Records that are not
JSON objects go to the dead-letter topic. Stock settings (at_least_once, memory table store,
faust's own consumer and producer settings); logging configured explicitly at WARNING, which
FAUST-NOTES.md shows matters.

    python -m bench.contenders.faust_naive --bootstrap HOST:PORT --prefix P --group G
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

import faust
import orjson
from faust.worker import Worker

from bench.contenders import DEADLETTER, INPUT_TOPICS, PASS_THROUGH_OUT, report_first_consumed


def build(bootstrap: str, prefix: str, group: str, datadir: str) -> faust.App:
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=datadir,  # faust's default is `<group>-data` in the working directory
        topic_partitions=6,
        topic_replication_factor=1,
        web_enabled=False,
    )
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(*(prefix + t for t in INPUT_TOPICS), **raw)
    out = app.topic(prefix + PASS_THROUGH_OUT, **raw)
    deadletter = app.topic(prefix + DEADLETTER, **raw)
    touches = app.Table(
        "touches",
        default=int,
        partitions=6,
        schema=faust.Schema(key_serializer="raw", value_serializer="json"),
    )
    first = [True]

    @app.agent(source)
    async def route(stream: faust.StreamT) -> None:
        async for event in stream.events():
            if first[0]:
                report_first_consumed()
                first[0] = False
            key = event.key
            try:
                data = orjson.loads(event.value)
            except orjson.JSONDecodeError:
                data = None
            if key is None or not isinstance(data, dict):
                await deadletter.send(key=key, value=event.value)
                continue
            count = touches[key] + 1
            touches[key] = count
            data["touches"] = count
            await out.send(key=key, value=orjson.dumps(data))

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--group", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    # faust makes its data directory even with the memory store: one of the run's own,
    # removed with the process, so that no run leaves a folder behind in the checkout
    datadir = tempfile.TemporaryDirectory(prefix="bench-faust-")
    app = build(args.bootstrap, args.prefix, args.group, datadir.name)
    worker = Worker(
        app,
        loglevel=os.environ.get("BENCH_FAUST_LOGLEVEL", "WARNING"),
        quiet=True,
        redirect_stdouts=False,
        override_logging=True,
    )
    # Without a terminal faust's progress spinner still installs a handler and sets the root
    # logger to DEBUG (FAUST-NOTES: ~3 log records built per sent event). No spinner: the
    # root logger stays at WARNING.
    worker.spinner = None

    @app.task
    async def check_logging() -> None:
        # The FAUST-NOTES trap: make sure no library is left at DEBUG on the hot path.
        levels = {
            name: logging.getLogger(name).getEffectiveLevel()
            for name in ("", "faust", "aiokafka", "mode")
        }
        print(f"BENCH log_levels={levels}", flush=True)

    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
