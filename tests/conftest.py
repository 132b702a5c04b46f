"""Shared fixtures. The reference Kafka broker is started once per session, on first use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kafka_reference import ReferenceBroker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[ReferenceBroker]:
    """One real Kafka 4 broker for the whole session; stopped at the end, pass or fail.

    Tests that stop/start it (stop_broker/start_broker) must leave it running.
    """
    with ReferenceBroker() as broker:
        yield broker


@pytest.fixture
def kafka_bootstrap(kafka_broker: ReferenceBroker) -> str:
    """bootstrap_servers of the session broker, e.g. "127.0.0.1:40123"."""
    return kafka_broker.bootstrap_servers
