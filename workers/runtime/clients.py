"""Every librdkafka client the worker opens, configured here and nowhere else: the batch
consumer, the producer (transactional or not) and the short-lived readers (changelog
restore, the transaction probe, the accounts table).

Every client logs through Python logging (`logger`, workers/logs.py) rather than librdkafka's
own stderr lines, so a broker outage is a few lines in the worker's format instead of one
line per client every ~50 ms. The readers' statistics tell the log when a broker answers
again (the accounts reader is polled on every turn of the worker's loop; the batch
consumer's statistics feed the lag gauge)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from workers.connection import librdkafka_config
from workers.logs import kafka_logger
from workers.settings import Settings

# Statistics (and so the lag metric) every LAG_EVERY seconds.
LAG_EVERY = 5.0
# librdkafka's transactional timeouts; the commit watchdog (commit.py) must outlast both.
TRANSACTION_TIMEOUT_MS = 15000


def fatal(err: KafkaError) -> bool:
    """An error after which the client can do nothing more. A call on a client that has
    already failed reports code `_FATAL` without the fatal flag ("Unable to produce message:
    Local: Fatal error"), so the code counts as well as the flag."""
    return err.fatal() or err.code() == KafkaError._FATAL


class Clients:
    """Client configurations for one worker: its connection settings, group and identity."""

    def __init__(self, settings: Settings, instance: str) -> None:
        self.base = {**librdkafka_config(settings), "logger": kafka_logger()}
        self.group = settings.kafka.group_id
        self.instance = instance
        self.static = settings.kafka.static_membership

    def producer(self, *, transactional: bool) -> dict[str, Any]:
        conf: dict[str, Any] = {
            **self.base,
            "linger.ms": 1,  # every batch ends in a flush (commit) anyway
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
        }
        if transactional:
            conf.update(
                {
                    "transactional.id": f"{self.group}-{self.instance}",
                    "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                    # The broker answers EndTxn before it has written the commit markers,
                    # and refuses the next transaction's first request until they are
                    # written (CONCURRENT_TRANSACTIONS, a few ms). librdkafka retries after
                    # retry.backoff.ms, 100 ms by default: a tenth of a second added to
                    # every batch that follows its predecessor closely. Repeated failures
                    # still back off exponentially, to retry.backoff.max.ms.
                    "retry.backoff.ms": 5,
                    "retry.backoff.max.ms": 1000,
                }
            )
        return conf

    def reader(self, purpose: str, *, read_committed: bool = False) -> dict[str, Any]:
        """A consumer that is assigned partitions by hand and never commits: `purpose`
        names its group (restore, probe, accounts-<instance>), which it never joins."""
        return {
            **self.base,
            "group.id": f"{self.group}-{purpose}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            "statistics.interval.ms": int(LAG_EVERY * 1000),
            "stats_cb": kafka_logger().stats,
        }

    def batch_consumer(self, *, read_committed: bool, stats_cb: Any) -> dict[str, Any]:
        """The worker's group member: the input topics and the internal topic. A static
        member (group.instance.id, the worker's instance) restarted within the session
        timeout takes its partitions back at once, without a rebalance."""
        static = {"group.instance.id": self.instance} if self.static else {}
        return {
            **self.reader("", read_committed=read_committed),
            **static,
            "group.id": self.group,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
            "max.poll.interval.ms": 300000,
            # The read-ahead: memory held only while a backlog exists. 16 MiB is still
            # about two seconds of input at full speed; 64 MiB left a 30 s burst's worker
            # 120-150 MiB above its caught-up size, with no gain in throughput.
            "queued.max.messages.kbytes": 16384,
            # Once the prefetch queue is over its limit librdkafka pauses fetching for
            # this long (1 s by default): long enough for a busy worker to drain the
            # queue and sit idle waiting for the next fetch.
            "fetch.queue.backoff.ms": 20,
            "statistics.interval.ms": int(LAG_EVERY * 1000),
            "stats_cb": stats_cb,
        }


def stable_and_end(
    committed: Consumer, everything: Consumer, tp: TopicPartition, timeout: float
) -> tuple[int, int, int]:
    """A partition's first offset, last stable offset and log end, from a read_committed and
    a read_uncommitted reader. The last two differ while a transaction is open there: a
    read_committed reader reads nothing past it until it commits or aborts."""
    low, stable = committed.get_watermark_offsets(tp, timeout=timeout)
    _, end = everything.get_watermark_offsets(tp, timeout=timeout)
    return low, stable, end
