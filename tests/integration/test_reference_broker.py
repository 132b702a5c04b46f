"""The reference Kafka broker really behaves like the Kafka the project runs against.

Every other integration test trusts this broker, so these check the properties they rely
on: metadata, a produce/consume round trip, transactions on a single node, data kept
across a stop/start of the same broker, and the SASL_SSL/SCRAM listener.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.helpers import create_ssl_context
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from tests.support.kafka_reference import ReferenceBroker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def unique(prefix: str) -> str:
    """A fresh topic/group name, so tests sharing the session broker never see each other."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Send with acks=all and wait for every ack, so the data is really on the broker."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5)
    try:
        for value in values:
            producer.send(topic, value=value, key=b"k").get(timeout=30)
    finally:
        producer.close(timeout=10)


def consume_values(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list[bytes]:
    """Read `count` values from the start of `topic` through a fresh consumer group."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique("g"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value for r in records)
    finally:
        consumer.close()
    return got


def test_answers_metadata(kafka_broker: ReferenceBroker) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    try:
        cluster = admin.describe_cluster()
        assert [(b["host"], b["port"]) for b in cluster["brokers"]] == [
            ("127.0.0.1", kafka_broker.port)
        ]
        assert cluster["cluster_id"] == kafka_broker.cluster_id
        topic = unique("meta")
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        wait_until(lambda: topic in admin.list_topics(), 30, f"topic {topic} in metadata")
    finally:
        admin.close()


def test_round_trip_with_kafka_python(kafka_bootstrap: str) -> None:
    topic = unique("roundtrip")  # auto-created on first produce
    produce(kafka_bootstrap, topic, [b"hello"])
    assert consume_values(kafka_bootstrap, topic, 1) == [b"hello"]


def test_transactional_producer_commits(kafka_bootstrap: str) -> None:
    """A single node must host the transaction coordinator (RF 1, min ISR 1) for EOS."""
    topic = unique("txn")

    async def scenario() -> list[bytes]:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap,
            transactional_id=unique("txn-producer"),
            enable_idempotence=True,
        )
        await producer.start()
        try:
            # Aborted first, then committed, on one partition: by the time the read_committed
            # consumer sees the committed value it has passed (and must have hidden) the other.
            await producer.begin_transaction()
            await producer.send_and_wait(topic, b"aborted", partition=0)
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send_and_wait(topic, b"committed", partition=0)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=unique("g"),
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        got: list[bytes] = []
        try:
            deadline = time.monotonic() + 30
            while b"committed" not in got and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                got.extend(r.value for records in batches.values() for r in records)
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(scenario()) == [b"committed"]


def test_stop_and_start_keeps_data_and_address(kafka_broker: ReferenceBroker) -> None:
    before = kafka_broker.bootstrap_servers
    old_pid = kafka_broker.pid
    topic = unique("restart")
    produce(before, topic, [b"survives"])

    kafka_broker.stop_broker()
    assert not kafka_broker.is_running
    kafka_broker.start_broker()

    assert kafka_broker.is_running
    assert kafka_broker.pid != old_pid
    assert kafka_broker.bootstrap_servers == before
    assert consume_values(before, topic, 1) == [b"survives"]


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[ReferenceBroker]:
    """A broker of its own with the SASL_SSL/SCRAM listener (the session one has none)."""
    with ReferenceBroker(sasl_ssl=True) as broker:
        yield broker


def test_sasl_ssl_scram_accepts_right_password(sasl_broker: ReferenceBroker) -> None:
    topic = unique("sasl")

    async def produce_over_sasl() -> int:
        producer = AIOKafkaProducer(
            bootstrap_servers=sasl_broker.sasl_ssl_bootstrap_servers,
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_plain_username=sasl_broker.sasl_username,
            sasl_plain_password=sasl_broker.sasl_password,
            ssl_context=create_ssl_context(cafile=str(sasl_broker.ca_file)),
        )
        await producer.start()
        try:
            return (await producer.send_and_wait(topic, b"secret")).offset
        finally:
            await producer.stop()

    assert asyncio.run(produce_over_sasl()) == 0
    # SCRAM-SHA-256 works too, here with kafka-python, and sees what went in over SHA-512.
    consumer = KafkaConsumer(
        topic,
        **sasl_broker.sasl_ssl_client_config("SCRAM-SHA-256"),
        group_id=unique("g"),
        auto_offset_reset="earliest",
    )
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value for r in records)
    finally:
        consumer.close()
    assert got == [b"secret"]


def test_sasl_ssl_scram_rejects_wrong_password(sasl_broker: ReferenceBroker) -> None:
    async def connect_with_wrong_password() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=sasl_broker.sasl_ssl_bootstrap_servers,
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_plain_username=sasl_broker.sasl_username,
            sasl_plain_password=sasl_broker.sasl_password + "-wrong",
            ssl_context=create_ssl_context(cafile=str(sasl_broker.ca_file)),
        )
        try:
            await producer.start()
        finally:
            await producer.stop()

    with pytest.raises(KafkaConnectionError):
        asyncio.run(connect_with_wrong_password())
    # The refusal must be the broker's SCRAM check, not a TLS or network problem.
    wait_until(
        lambda: (
            "invalid credentials with SASL mechanism SCRAM-SHA-512"
            in sasl_broker.log_path.read_text(errors="replace")
        ),
        10,
        "the broker to log the failed SCRAM authentication",
    )
