"""Baseline (a): the Python client's ceiling. A hand-written aiokafka loop that passes every
input record through unchanged: getmany → send (pipelined) → wait for the batch's
deliveries → commit the batch's offsets (at least once). No decoding, no state.

    python -m bench.contenders.raw_aiokafka --bootstrap HOST:PORT --prefix P --group G
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import OffsetAndMetadata

from bench.contenders import INPUT_TOPICS, PASS_THROUGH_OUT, report_first_consumed


async def run(bootstrap: str, prefix: str, group: str, batch: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer = AIOKafkaConsumer(
        *(prefix + t for t in INPUT_TOPICS),
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,  # as leadrouter's fetch.wait.max.ms
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=512 * 1024,
    )
    out = prefix + PASS_THROUGH_OUT
    await producer.start()
    await consumer.start()
    first = True
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=batch)
            if not batches:
                continue
            if first:
                report_first_consumed()
                first = False
            deliveries = []
            offsets = {}
            for tp, records in batches.items():
                for record in records:
                    deliveries.append(await producer.send(out, record.value, key=record.key))
                offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "")
            await asyncio.gather(*deliveries)
            await consumer.commit(offsets)
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--batch", type=int, default=2000)  # leadrouter's ingest.batch_size
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, force=True)
    asyncio.run(run(args.bootstrap, args.prefix, args.group, args.batch))


if __name__ == "__main__":
    main()
